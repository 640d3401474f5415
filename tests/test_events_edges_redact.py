"""Event log edges: a field asked to be redacted never reaches the stored bytes, however the
caller spells or wraps it (JSON text as services receive it, enum keys, flattened keys).
"""

from __future__ import annotations

import enum
import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.events.jsonl import event_files
from inferwatch.events.redact import Redaction, hash_value
from inferwatch.events.sinks import Encoder

KEY = b"edge-redact-secret-0123456789abc"
SSN = "ssn-Secret-Zq7"


def _encode(event: dict, drop: list[str], hash_fields: list[str] = ()) -> bytes:
    encoder = Encoder(Redaction(drop, list(hash_fields), KEY if hash_fields else None),
                      max_event_bytes=1 << 20)
    return encoder.encode({"ts": 1.0, **event}).line


def _assert_absent(secret: str, line: bytes) -> None:
    # Raw bytes, then the decoded text: a JSON escape must not hide it either.
    assert secret.encode() not in line
    assert secret not in json.dumps(json.loads(line), ensure_ascii=False)


_DOCUMENT = json.dumps({"ssn": SSN, "age": 41})


@pytest.mark.parametrize("text", [
    "\ufeff" + _DOCUMENT,                                  # a byte order mark from a file
    '{"age": 41, "ssn": "' + SSN + '", "note": "a\tb"}',   # a raw tab in a string
    '{"age": 41, "ssn": "' + SSN + '", "note": "a\nb"}',   # a raw newline in a string
    _DOCUMENT + "\x00",                                    # a C string's terminator
    "\x0c" + _DOCUMENT,                                    # white space JSON does not allow
    json.dumps(_DOCUMENT),                                 # a body encoded twice
], ids=["bom", "tab", "newline", "nul", "form-feed", "double-encoded"])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["text", "bytes"])
def test_json_text_that_strict_json_refuses_is_still_parsed_and_redacted(text, as_bytes):
    payload = text.encode() if as_bytes else text
    line = _encode({"inputs": {"body": payload}}, drop=["inputs.*.ssn"])
    _assert_absent(SSN, line)
    assert json.loads(line)["inputs"]["body"]["age"] == 41


class Field(enum.Enum):
    """A plain enum (no str mix-in) whose values name the fields."""

    SSN = "ssn"
    AGE = "age"


def test_a_plain_enum_key_with_a_str_value_is_redacted_by_that_value():
    line = _encode({"inputs": {Field.SSN: SSN, Field.AGE: 41},
                    "features": {Field.SSN: SSN}},
                   drop=["inputs.ssn"], hash_fields=["features.ssn"])
    _assert_absent(SSN, line)
    stored = json.loads(line)
    assert stored["inputs"] == {"age": 41}
    assert stored["features"] == {"ssn": hash_value(KEY, SSN)}


def test_flattened_dotted_keys_are_redacted_by_the_path_they_spell(tmp_path, make_log):
    # pandas.json_normalize names nested fields "applicant.ssn": the path the user wrote
    # for the nested form must hold for the flattened one.
    frame = pd.json_normalize([{"applicant": {"ssn": SSN, "age": 41,
                                              "contact": {"email": "jo@example.org"}}}])
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, redact=["inputs.applicant.ssn"],
                         hash_fields=["inputs.applicant.contact.email"], secret=KEY)
    # inputs.* rules also name the same key in features (its twin), so another field shows
    # that a path does not spill beyond the fields it names.
    event_log.emit({"request_id": "r-1", "inputs": frame,
                    "stage_outputs": {"applicant.ssn": 5}})
    assert event_log.flush(60)
    data = b"".join(p.read_bytes() for p in sorted(tmp_path.rglob("*"))
                    if p.is_file() and not p.is_symlink())
    _assert_absent(SSN, data)
    assert b"jo@example.org" not in data
    (line,) = event_files(path)[0].read_bytes().splitlines()
    stored = json.loads(line)
    assert stored["inputs"] == [{"applicant.age": 41, "applicant.contact.email":
                                 hash_value(KEY, "jo@example.org")}]
    assert stored["stage_outputs"] == {"applicant.ssn": 5}  # not under a redacted path


def test_dotted_keys_under_wildcards_and_subfields_are_redacted_once():
    line = _encode({"inputs": {"a.ssn": SSN, "b": {"ssn.last4": SSN, "kept": 1},
                               "c.d.ssn": 7}},
                   drop=["inputs.*.ssn"])
    _assert_absent(SSN, line)
    assert json.loads(line)["inputs"] == {"b": {"kept": 1}, "c.d.ssn": 7}
    # A dotted key hashed whole is hashed once, not again through `*`.
    hashed = json.loads(_encode({"inputs": {"a.b": SSN}}, drop=[], hash_fields=["inputs.*"]))
    assert hashed["inputs"] == {"a.b": hash_value(KEY, SSN)}


# --- property: a secret at a redacted position never reaches the bytes ---------------------

_names = st.from_regex(r"[a-z]{1,5}", fullmatch=True).filter(lambda n: n != "ssn")
_plain = st.integers(-1000, 1000) | st.text("abcdef -", max_size=6) | st.none()


def _wrap(draw: st.DrawFn, value: object, depth: int) -> object:
    """`value` inside `depth` levels of the sequences and encodings callers use."""
    for _ in range(depth):
        kind = draw(st.sampled_from(["list", "tuple", "json", "bytes"]))
        if kind == "list":
            value = [value, draw(_plain)]
        elif kind == "tuple":
            value = (draw(_plain), value)
        elif kind == "json":
            text = json.dumps(value, default=bytes.decode)  # nested bytes: JSON text in text
            value = "\ufeff" + text if draw(st.booleans()) else text
        else:
            value = json.dumps(value, default=bytes.decode).encode()
    return value


@st.composite
def _events(draw: st.DrawFn) -> tuple[dict, str, dict]:
    """An event whose `inputs` holds `{"ssn": secret, ...}` somewhere under `inputs.*`."""
    secret = "Sx" + draw(st.uuids()).hex
    others = draw(st.dictionaries(_names, _plain, max_size=3))
    record = {**others, "ssn": secret}
    outer = draw(_names)
    if draw(st.booleans()):
        inputs = {f"{outer}.ssn": secret, **{f"{outer}.{k}": v for k, v in others.items()}}
        kept = {f"{outer}.{k}": v for k, v in others.items()}
    else:
        inputs = {outer: _wrap(draw, [record], draw(st.integers(0, 3)))}
        kept = None
    return {"inputs": inputs, "model": "m"}, secret, kept


@settings(max_examples=300, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_events())
def test_a_secret_at_a_redacted_path_never_reaches_the_bytes(case):
    event, secret, kept = case
    line = _encode(event, drop=["inputs.*.ssn"])
    _assert_absent(secret, line)
    stored = json.loads(line)
    assert stored["model"] == "m"
    if kept is not None:
        assert stored["inputs"] == kept  # the other flattened fields round-trip


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.text(st.characters(codec="utf-8"), max_size=30), st.sampled_from(
    ["\ufeff", "\x00", "\t", "\u2028", "\ud800", "\x1b", " ", "\x85"]))
def test_json_text_with_any_leading_or_inner_junk_keeps_the_secret_out(noise, junk):
    text = junk + '{"ssn": "' + SSN + junk + '", "n": ' + json.dumps(noise) + "}" + junk
    line = _encode({"inputs": {"body": text}}, drop=["inputs.*.ssn"])
    _assert_absent(SSN, line)
    assert b"\n" not in line and b"\r" not in line
    line.decode("utf-8")  # strict: no lone surrogate reached the bytes
