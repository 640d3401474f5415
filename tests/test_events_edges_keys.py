"""Event log edges: mapping keys that are not plain ``str`` must not dodge redaction.

Model servers key features by ``str``-valued enums (``class Feature(str, Enum)``), numpy
strings (column names read from an array) or bytes (msgpack, Redis). ``json.dumps`` writes
such a key as its text; redaction paths name that text, so the stored key must be it too.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from inferwatch.events.clean import clean
from inferwatch.events.field_names import fold_name
from inferwatch.events.jsonl import event_files
from inferwatch.events.redact import Redaction
from inferwatch.events.sinks import Encoder

SECRET = b"edge-secret-for-tests-0123456789"
SSN = "123-45-6789"


class Feature(str, enum.Enum):
    """A str-valued enum, as FastAPI and pydantic schemas declare field names."""

    SSN = "ssn"
    AGE = "age"


class Rank(enum.IntEnum):
    """An int-valued enum."""

    TOP = 3


class Colour(enum.Enum):
    """A plain enum: stored by name, as a value and as a key alike."""

    RED = 1


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*"))
                    if p.is_file() and not p.is_symlink())


def test_a_str_enum_key_is_redacted_on_disk(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, redact=["inputs.ssn"], hash_fields=["features.ssn"],
                         secret=SECRET)
    event_log.emit({"request_id": "r-1", "inputs": {Feature.SSN: SSN, Feature.AGE: 41},
                    "features": {Feature.SSN: SSN}})
    assert event_log.flush(60)
    assert SSN.encode() not in _all_bytes(tmp_path)
    (line,) = event_files(path)[0].read_bytes().splitlines()
    event = json.loads(line)
    assert event["inputs"] == {"age": 41}
    assert set(event["features"]) == {"ssn"}
    assert event["features"]["ssn"].startswith("hmac-sha256:")


def test_numpy_str_and_utf8_bytes_keys_are_redacted(tmp_path, make_log):
    path = tmp_path / "events.db"
    event_log = make_log(path, redact=["inputs.ssn", "features.ssn"])
    event_log.emit({"request_id": "r-1", "inputs": {b"ssn": SSN, b"age": 41},
                    "features": {np.str_("ssn"): SSN, "kept": 1}})
    assert event_log.flush(60)
    assert SSN.encode() not in _all_bytes(tmp_path)


def test_enum_values_and_keys_are_stored_alike():
    cleaned = clean({"action": Feature.SSN, Feature.AGE: Rank.TOP, Rank.TOP: Colour.RED,
                     Colour.RED: [Feature.AGE]})
    # What json.dumps writes for the mixed-in enums; a plain enum by name in both places.
    assert cleaned == {"action": "ssn", "age": 3, "3": "RED", "RED": ["age"]}
    assert json.loads(json.dumps({Feature.AGE: Feature.SSN})) == {"age": "ssn"}


_names = st.text(st.characters(max_codepoint=0x2FF, exclude_categories=("Cc", "Cs"),
                               exclude_characters=".*"), min_size=1, max_size=12)


def _key_forms(name: str) -> st.SearchStrategy[object]:
    """Every way a caller may spell the key `name` in a mapping."""
    member = enum.Enum("Field", {"FIELD": name}, type=str).FIELD  # type: ignore[call-overload]
    return st.sampled_from([name, np.str_(name), name.encode("utf-8"), member])


@given(data=st.data(), name=_names, secret_value=st.text(min_size=8, max_size=40),
       other=st.dictionaries(_names, st.integers(), max_size=4))
def test_any_spelling_of_a_redacted_key_is_redacted(data, name, secret_value, other):
    key = data.draw(_key_forms(name))
    # A key a reader cannot tell from `name` (another case, outer spaces) is redacted too.
    kept = {k: v for k, v in other.items() if fold_name(k) != fold_name(name)}
    inputs = {**kept, key: secret_value}
    encoder = Encoder(Redaction(drop=[f"inputs.{name}"]), max_event_bytes=1 << 20)
    record = encoder.encode({"ts": 1.0, "inputs": inputs})
    stored = json.loads(record.line)
    assert name not in stored["inputs"]
    assert stored["inputs"] == kept
