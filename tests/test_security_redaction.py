"""Redaction holds for every input and output type a model server passes (issue: security).

Each input type is normalised to named fields before redaction, so `redact` and
`hash_fields` reach the field whatever container holds it; what cannot be normalised is
replaced by a marker and counted, never written as its str().
"""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pydantic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from inferwatch.events import EventLog
from inferwatch.events.dropped import DroppedEventsCollector, values_dropped_totals
from inferwatch.events.redact import Redaction, hash_value
from inferwatch.events.sinks import Encoder

SECRET = b"s" * 32
RULES = {"drop": ["inputs.ssn", "prediction.ssn"],
         "hash_fields": ["inputs.email", "prediction.email"]}

WRAPPERS = ("dict", "records", "dataframe", "series", "polars", "dataclass", "pydantic",
            "namedtuple", "structured", "bytes", "json_text", "json_bytes_in_list")


def _wrap(kind: str, rows: list[dict]) -> object:
    """`rows` as a model server might hand them over, in container `kind`."""
    if kind == "dict":
        return rows[0]
    if kind == "records":
        return rows
    if kind == "dataframe":
        return pd.DataFrame(rows)
    if kind == "series":
        return pd.Series(rows[0])
    if kind == "polars":
        return pl.DataFrame(rows)
    names = list(rows[0])
    if kind == "dataclass":
        cls = dataclasses.make_dataclass("Row", names)
        return [cls(**row) for row in rows]
    if kind == "pydantic":
        model = pydantic.create_model("Row", **{n: (type(v), ...) for n, v in rows[0].items()})
        return [model(**row) for row in rows]
    if kind == "namedtuple":
        cls = collections.namedtuple("Row", names)
        return cls(**rows[0])
    if kind == "structured":
        dtype = [(n, f"U{max(len(str(r[n])) for r in rows) + 1}") if isinstance(v, str)
                 else (n, "i8") for n, v in rows[0].items()]
        return np.array([tuple(r[n] for n in names) for r in rows], dtype=dtype)
    if kind == "bytes":
        return json.dumps(rows).encode()
    if kind == "json_text":
        return json.dumps(rows[0], indent=1)
    if kind == "json_bytes_in_list":
        return [json.dumps(row).encode() for row in rows]
    raise AssertionError(kind)


field_names = st.from_regex(r"f_[a-z0-9]{1,6}", fullmatch=True)
other_fields = st.dictionaries(field_names, st.integers(-10**6, 10**6)
                               | st.text("abcxyz -", max_size=8), max_size=4)


@st.composite
def rows_with_secrets(draw):
    """1-3 records, each with a unique ssn and email, and the secrets they hold."""
    extra = draw(other_fields)
    rows, secrets = [], []
    for index in range(draw(st.integers(1, 3))):
        token = draw(st.uuids()).hex
        ssn, email = f"ssn{token}", f"mail{token}@example.org"
        secrets.append((ssn, email))
        rows.append({"ssn": ssn, "email": email, **extra, "f_row": index})
    return rows, secrets


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows_with_secrets(), st.sampled_from(WRAPPERS), st.sampled_from(["inputs", "prediction"]))
def test_redacted_and_hashed_fields_never_reach_the_record_for_any_container(data, kind, where):
    rows, secrets = data
    encoder = Encoder(Redaction(RULES["drop"], RULES["hash_fields"], SECRET))
    record = encoder.encode({"model": "m", where: _wrap(kind, rows)})
    line = record.line.decode()
    stored = json.loads(line)[where]
    for ssn, email in secrets:
        assert ssn not in line and email not in line
        if kind in ("dict", "series", "namedtuple", "json_text"):
            continue  # one row was wrapped; the rest were never in the event
        assert hash_value(SECRET, email) in line
    # The other fields are still there, by name: normalised, not dropped wholesale.
    first = stored[0] if isinstance(stored, list) else stored
    assert first["f_row"] == 0 and "ssn" not in first
    assert first["email"] == hash_value(SECRET, secrets[0][1])
    assert encoder.values_dropped == {}


class _Opaque:
    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __str__(self) -> str:
        return f"Opaque(ssn={self.secret})"

    __repr__ = __str__


@settings(max_examples=100, deadline=None)
@given(st.uuids(), st.sampled_from(["object", "in_dict", "in_list", "free_text", "binary"]))
def test_what_cannot_be_normalised_is_dropped_and_counted_never_written(token, shape):
    secret = f"ssn{token.hex}"
    value = {
        "object": _Opaque(secret),
        "in_dict": {"ssn": _Opaque(secret), "f_a": 1},
        "in_list": [1, _Opaque(secret)],
        "free_text": f"applicant ssn {secret}",
        "binary": b"\xff\xfe" + secret.encode(),
    }[shape]
    encoder = Encoder(Redaction(["inputs.ssn"]))
    line = encoder.encode({"inputs": value}).line.decode()
    assert secret not in line
    assert sum(encoder.values_dropped.values()) >= 1


def test_opting_in_keeps_unstructured_values_but_redaction_still_fails_closed():
    encoder = Encoder(Redaction(["inputs.ssn"]), keep_unstructured=True)
    kept = json.loads(encoder.encode({"outputs": _Opaque("x1")}).line)
    assert kept["outputs"] == "Opaque(ssn=x1)"
    # The same object on a redacted path: its text may hold the field, so it goes.
    redacted = json.loads(encoder.encode({"inputs": _Opaque("x2")}).line)
    assert redacted["inputs"] == {"dropped": "unstructured"}


def test_wildcard_paths_leave_plain_text_alone():
    policy = Redaction(["inputs.*.email"])
    event = policy.apply({"inputs": {"name": "ann", "contact": {"email": "a@x", "tel": 1}}})
    assert event == {"inputs": {"name": "ann", "contact": {"tel": 1}}}


def _read(directory: Path) -> list[dict]:
    # events.jsonl is a link to the newest file: read each file once, not through the link.
    return [json.loads(line) for path in sorted(directory.glob("*.jsonl"))
            if not path.is_symlink() for line in path.read_text().splitlines()]


def test_a_dataframe_input_is_redacted_on_disk_through_instrument(scraper, tmp_path):
    log = EventLog(tmp_path / "events.jsonl", redact=["inputs.ssn"],
                   hash_fields=["inputs.email"], secret=SECRET)
    model = inferwatch.instrument(lambda frame: 0.5, name="credit", version="1", events=log,
                                  registry=scraper.registry)
    frame = pd.DataFrame({"ssn": ["123-45-6789", "987-65-4321"],
                          "email": ["ann@example.org", "bob@example.org"], "age": [41, 52]})
    assert model(frame) == 0.5
    scraper.registry.drain()
    assert log.flush(5)
    disk = "".join(path.read_text() for path in tmp_path.glob("*.jsonl")
                   if not path.is_symlink())
    for secret in ("123-45-6789", "987-65-4321", "ann@example.org", "bob@example.org"):
        assert secret not in disk
    (event,) = _read(tmp_path)
    assert event["inputs"] == [
        {"email": hash_value(SECRET, "ann@example.org"), "age": 41},
        {"email": hash_value(SECRET, "bob@example.org"), "age": 52}]
    log.close()


def test_a_numeric_frame_captured_as_its_values_is_logged_and_redacted_as_a_frame(
        scraper, tmp_path):
    """A frame of one numeric dtype is captured as its values (frame_values.FrameValues),
    not a frame: the log still gets the frame the call saw, named and redacted by column,
    whatever the caller writes into its frame afterwards."""
    log = EventLog(tmp_path / "events.jsonl", redact=["inputs.ssn"], secret=SECRET)
    model = inferwatch.instrument(lambda frame: 0.5, name="credit", version="1", events=log,
                                  registry=scraper.registry)
    frame = pd.DataFrame({"ssn": [123456789, 987654321], "age": [41, 52]})
    assert model(frame) == 0.5
    frame.loc[0, "age"] = 99
    frame["ssn"] = 0
    scraper.registry.drain()
    assert log.flush(5)
    disk = "".join(path.read_text() for path in tmp_path.glob("*.jsonl")
                   if not path.is_symlink())
    assert "123456789" not in disk and "987654321" not in disk
    (event,) = _read(tmp_path)
    assert event["inputs"] == [{"age": 41}, {"age": 52}]
    log.close()


def test_dropped_values_are_counted_in_the_metrics(tmp_path):
    before = values_dropped_totals()["unsupported_type"]
    log = EventLog(tmp_path / "events.jsonl")
    log.emit({"model": "m", "inputs": _Opaque("opaque-secret")})
    assert log.flush(5)
    log.close()
    registry = CollectorRegistry()
    registry.register(DroppedEventsCollector())
    text = generate_latest(registry).decode()
    samples = {(s.name, s.labels.get("reason")): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("inferwatch_event_values_dropped_total", "unsupported_type")] == before + 1
    # A secret with letters: a digit string could turn up inside the timestamp.
    assert "opaque-secret" not in "".join(path.read_text() for path in tmp_path.glob("*.jsonl"))
