"""Redaction edges: field names as users' data spells them, keys with no text of their own,
shared references, mappings that fail, and buffers measured before they are copied.

A redacted field must never reach the disk in clear, whatever its spelling or nesting.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sqlite3
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.events.clean import clean
from inferwatch.events.jsonl import event_files
from inferwatch.events.redact import Redaction, hash_value
from inferwatch.events.sinks import Encoder

KEY = b"redaction-edges-secret-012345678"
SSN = "078-05-1120"
EMAIL = "jane+loans@example.org"


def _encode(event: dict, drop: list[str] = (), hash_fields: list[str] = (),
            **options: object) -> tuple[bytes, dict[str, int]]:
    encoder = Encoder(Redaction(drop=drop, hash_fields=hash_fields, secret=KEY),
                      max_event_bytes=1 << 20, **options)
    record = encoder.encode({"ts": 1.0, "model": "m", **event})
    return record.line, encoder.values_dropped


def _on_disk(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*"))
                    if p.is_file() and not p.is_symlink())


# --- a field spelled apart from the configured path only by what a reader cannot see -------

_INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u00ad", "\u200e", "\u200f", "\u202e",
              "\u2066", "\u2069", "\u2060", "\ufeff", "\ufe0f"]


def _full_width(name: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in name)


@st.composite
def _spellings(draw: st.DrawFn, name: str) -> str:
    """`name` as a CSV header, a spreadsheet or a copy-paste may spell it."""
    spelled = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    if draw(st.booleans()):
        spelled = _full_width(spelled)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(spelled)))
        spelled = spelled[:at] + draw(st.sampled_from(_INVISIBLE)) + spelled[at:]
    pad = st.sampled_from(["", " ", "  ", "\u3000", "\u00a0"])
    return draw(pad) + spelled + draw(pad)


@settings(max_examples=300, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(["ssn", "email", "api_key", "password"]),
       secret=st.from_regex(r"S[a-z0-9]{12}", fullmatch=True))
def test_a_field_spelled_by_case_width_or_invisible_characters_is_still_redacted(
        data, name, secret):
    dropped_key = data.draw(_spellings(name))
    hashed_key = data.draw(_spellings(name))
    event = {"inputs": {dropped_key: secret, "age": 41},
             "features": [{hashed_key: secret, "n": 1}]}
    line, _ = _encode(event, drop=[f"inputs.{name}"], hash_fields=[f"features.{name}"])
    assert secret.encode() not in line
    stored = json.loads(line)
    assert stored["inputs"] == {"age": 41}
    (row,) = stored["features"]
    assert row["n"] == 1
    # Still found by the held value: hash_value() of it is what the log wrote.
    assert list(row.values()).count(hash_value(KEY, secret)) == 1


def test_a_csv_header_with_a_byte_order_mark_and_capitals_is_redacted_on_disk(
        tmp_path, make_log):
    # Excel saves "CSV UTF-8" with a byte order mark; read as plain utf-8 the first column
    # is "\ufeffSSN", and a header may carry stray spaces.
    exported = ("\ufeffSSN, Email ,Income\r\n" + f"{SSN},{EMAIL},52000\r\n").encode("utf-8")
    rows = list(csv.DictReader(io.StringIO(exported.decode("utf-8")),
                               skipinitialspace=False))
    assert list(rows[0]) == ["\ufeffSSN", " Email ", "Income"]
    for name in ("events.jsonl", "events.db"):
        directory = tmp_path / name.split(".")[1]
        directory.mkdir()
        event_log = make_log(directory / name, redact=["inputs.ssn"],
                             hash_fields=["inputs.email"], secret=KEY)
        event_log.emit({"request_id": "r-1", "inputs": rows})
        assert event_log.flush(60)
        data = _on_disk(directory)
        assert SSN.encode() not in data
        assert EMAIL.encode() not in data
        if name.endswith(".jsonl"):
            (line,) = event_files(directory / name)[0].read_bytes().splitlines()
            body = json.loads(line)
        else:
            with sqlite3.connect(directory / name) as db:
                (text,) = db.execute("SELECT body FROM events").fetchone()
            body = json.loads(text)
        assert body["inputs"] == [{" Email ": hash_value(KEY, EMAIL), "Income": "52000"}]


def test_ts_spelled_in_capitals_is_refused_as_ts_is():
    with pytest.raises(ValueError, match="'ts' cannot be redacted"):
        Redaction(drop=["TS"])


# --- a key with no text of its own --------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Applicant:
    ssn: str
    name: str


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")

    __repr__ = __str__


def test_an_object_key_is_never_written_as_its_repr(tmp_path, make_log):
    # Results grouped by applicant, keyed by the applicant record itself.
    path = tmp_path / "events.jsonl"
    event_log = make_log(path)
    event_log.emit({"request_id": "r-1",
                    "prediction": {Applicant(SSN, "Jane"): 0.91, "threshold": 0.5},
                    "inputs": {frozenset({SSN}): 1}})
    assert event_log.flush(60)
    data = _on_disk(tmp_path)
    assert SSN.encode() not in data
    assert b"Jane" not in data
    (line,) = event_files(path)[0].read_bytes().splitlines()
    stored = json.loads(line)
    assert stored["prediction"]["threshold"] == 0.5
    assert stored["prediction"][f"<dropped unsupported_type: {__name__}.Applicant>"] == 0.91


def test_a_key_whose_str_raises_costs_only_that_key():
    counts: dict[str, int] = {}
    cleaned = clean({"inputs": {_Unprintable(): 1, (1, _Unprintable()): 2, "age": 41}},
                    dropped=counts)
    assert cleaned["inputs"] == {
        f"<dropped unsupported_type: {__name__}._Unprintable>": 1,
        "<dropped unsupported_type: builtins.tuple>": 2, "age": 41}
    assert counts == {"unsupported_type": 2}
    line, counted = _encode({"inputs": {_Unprintable(): 7, "ssn": SSN}}, drop=["inputs.ssn"])
    assert SSN.encode() not in line
    assert json.loads(line)["inputs"] == {
        f"<dropped unsupported_type: {__name__}._Unprintable>": 7}
    assert counted == {"unsupported_type": 1}


def test_keys_that_are_plain_values_keep_their_text():
    import datetime
    import uuid
    cleaned = clean({None: 1, True: 2, np.int64(5): 3, np.float32(0.5): 4,
                     uuid.UUID(int=1): 5, datetime.date(2024, 1, 2): 6, ("a", 7): 8})
    assert cleaned == {"None": 1, "True": 2, "5": 3, "0.5": 4,
                       "00000000-0000-0000-0000-000000000001": 5, "2024-01-02": 6, "a.7": 8}


def test_keep_unstructured_keeps_an_object_keys_text():
    cleaned = clean({Applicant("x", "y"): 1}, keep_unstructured=True)
    assert cleaned == {"Applicant(ssn='x', name='y')": 1}


# --- shared references: bounded work --------------------------------------------------------

def test_shared_references_cannot_make_cleaning_exponential():
    # 2**32 paths to walk without a bound on the whole value. Run apart, so a regression
    # is a timeout here, not a writer thread spinning in the test process.
    script = textwrap.dedent("""
        import json, time
        from inferwatch.events.clean import clean
        from inferwatch.events.redact import Redaction, hash_value
        from inferwatch.events.sinks import Encoder
        shared = {"ssn": "078-05-1120"}
        for _ in range(40):
            shared = {"a": shared, "b": [shared, shared]}
        start = time.monotonic()
        encoder = Encoder(Redaction(drop=["inputs.a.ssn"]))
        line = encoder.encode({"ts": 1.0, "inputs": shared, "model": "m"}).line
        hash_value(b"k" * 16, shared)
        cleaned = json.dumps(clean(shared, max_array_bytes=64 * 1024))
        print(json.dumps({"seconds": time.monotonic() - start, "bytes": len(line),
                          "model": json.loads(line)["model"],
                          "marked": '"truncated": "items"' in cleaned}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)
    result = json.loads(done.stdout)
    assert result["seconds"] < 10
    assert result["bytes"] <= 64 * 1024
    assert result["model"] == "m"  # the event is written, its bulk cut
    assert result["marked"]


def test_a_wide_event_within_its_size_is_not_cut_by_the_item_budget():
    rows = [{"a": i, "b": [i, i]} for i in range(30_000)]  # 120,000 items, under 4 MiB
    cleaned = clean(rows, max_array_bytes=4 << 20)
    assert cleaned == [{"a": i, "b": [i, i]} for i in range(30_000)]
    # At the default event size it could not be written anyway: a marker, not a stall.
    assert "truncated" in json.dumps(clean(rows, max_array_bytes=64 * 1024))


# --- a mapping that fails --------------------------------------------------------------------

class _BrokenRow(Mapping):
    """A lazy row from a driver whose connection has gone."""

    def __getitem__(self, key: str) -> object:
        raise ConnectionError("cursor closed")

    def __iter__(self) -> Iterator[str]:
        return iter(["ssn", "age"])

    def __len__(self) -> int:
        return 2


class _BrokenDict(dict):
    def items(self):  # type: ignore[override]
        raise RuntimeError("items")


@pytest.mark.parametrize("broken", [_BrokenRow(), _BrokenDict(ssn=SSN)])
def test_a_mapping_that_raises_costs_only_that_value(tmp_path, make_log, broken):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, redact=["inputs.ssn"])
    event_log.emit({"request_id": "r-1", "inputs": broken, "prediction": 0.7})
    assert event_log.flush(60)
    assert event_log.dropped_counts()["serialize_error"] == 0
    (line,) = event_files(path)[0].read_bytes().splitlines()
    stored = json.loads(line)
    assert SSN.encode() not in line
    assert stored["prediction"] == 0.7
    assert stored["inputs"]["dropped"] == "conversion_error"


# --- dotted keys with empty segments ---------------------------------------------------------

def test_a_multiindex_column_with_an_empty_level_is_redacted():
    frame = pd.DataFrame([[SSN, 41]], columns=pd.MultiIndex.from_tuples(
        [("", "ssn"), ("applicant", "age")]))
    line, _ = _encode({"inputs": frame}, drop=["inputs.ssn"])
    assert SSN.encode() not in line
    assert json.loads(line)["inputs"] == [{"applicant.age": 41}]


# --- buffers are measured, not copied --------------------------------------------------------

def test_a_large_memoryview_is_refused_without_copying_it():
    buffer = np.zeros(32 << 20, dtype=np.uint8)
    view = memoryview(buffer)
    tracemalloc.start()
    try:
        cleaned = clean({"inputs": view}, max_array_bytes=64 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cleaned == {"inputs": {"truncated": "bytes", "length": 32 << 20}}
    assert peak < 4 << 20
    # A view of wide items counts bytes, not items.
    wide = memoryview(np.zeros(10_000, dtype=np.float64))
    assert clean(wide, max_array_bytes=64 * 1024) == {"truncated": "bytes", "length": 80_000}
