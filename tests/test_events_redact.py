"""Cleaning and redaction of events, and their encoding into records."""

from __future__ import annotations

import datetime
import enum
import hashlib
import hmac
import json

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from inferwatch.events.clean import clean, clean_text
from inferwatch.events.redact import (
    HASH_PREFIX,
    Redaction,
    canonical_bytes,
    hash_value,
    parse_path,
)
from inferwatch.events.sinks import Encoder, TooLarge, normalize_error

SECRET = b"k" * 32
UNSAFE = {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)} | {
    "\u2028", "\u2029"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@given(json_values)
def test_clean_leaves_no_control_character_and_stays_strict_json(value):
    cleaned = clean(value)
    for text in _strings(cleaned):
        assert not UNSAFE & set(text)
    encoded = json.dumps(cleaned, allow_nan=False, ensure_ascii=False)
    assert encoded.encode("utf-8").decode("utf-8").splitlines() == [encoded]


@given(st.text())
def test_clean_text_removes_only_unsafe_characters(text):
    assert clean_text(text) == "".join(
        c for c in text if c not in UNSAFE and not 0xD800 <= ord(c) <= 0xDFFF)


def test_clean_converts_what_model_servers_pass():
    class Color(enum.IntEnum):
        RED = 1

    moment = datetime.datetime(2024, 5, 1, 8, 0, tzinfo=datetime.timezone.utc)
    cleaned = clean({
        "array": np.array([[1, 2], [3, 4]], dtype=np.int32),
        "scalar": np.float32(0.5),
        "nan": float("nan"), "inf": float("inf"), "ninf": -np.inf,
        "tuple": (1, "a\nb"), "enum": Color.RED, "when": moment,
        "bytes": b"\xff\x00ok", 7: {"k\r": True},
        "huge": np.zeros(1000), "object": object,
    }, max_array_bytes=1024)
    assert cleaned["array"] == [[1, 2], [3, 4]]
    assert cleaned["scalar"] == 0.5
    assert (cleaned["nan"], cleaned["inf"], cleaned["ninf"]) == ("NaN", "Infinity", "-Infinity")
    assert cleaned["tuple"] == [1, "ab"]
    assert cleaned["enum"] == 1 and type(cleaned["enum"]) is int
    assert cleaned["when"] == "2024-05-01T08:00:00+00:00"
    # Bytes that are not text and objects with no JSON form are never written raw.
    assert cleaned["bytes"] == {"dropped": "binary", "type": "builtins.bytes"}
    assert cleaned["7"] == {"k": True}
    assert cleaned["huge"] == {"truncated": "array", "nbytes": 8000, "shape": [1000],
                               "dtype": "float64"}
    assert cleaned["object"] == {"dropped": "unsupported_type", "type": "builtins.type"}


def test_clean_keeps_unstructured_values_as_text_only_when_asked():
    dropped: dict = {}
    value = {"bytes": b"\xff\x00ok", "object": object}
    assert clean(value, keep_unstructured=True, dropped=dropped) == {
        "bytes": "\\xffok", "object": "<class 'object'>"}
    assert dropped == {}
    clean(value, dropped=dropped)
    assert dropped == {"binary": 1, "unsupported_type": 1}


def test_clean_bounds_depth_of_self_referencing_structures():
    loop: list = []
    loop.append(loop)
    cleaned = clean({"loop": loop})
    depth = 0
    node = cleaned["loop"]
    while isinstance(node, list):
        node, depth = node[0], depth + 1
    assert node == {"truncated": "depth"} and depth < 40


def test_paths_cross_lists_and_wildcards():
    event = clean({"inputs": [{"ssn": "1", "age": 3}, {"ssn": "2"}],
                   "features": {"a": {"email": "x@y"}, "b": {"email": "z@w", "n": 1}}})
    Redaction(drop=["inputs.ssn", "features.*.email"]).apply(event)
    assert event == {"inputs": [{"age": 3}, {}], "features": {"a": {}, "b": {"n": 1}}}


def test_hash_is_a_keyed_hmac_of_the_canonical_value():
    event = clean({"user": "alice", "inputs": {"card": {"n": 4111, "cvc": "1"}}})
    Redaction(hash_fields=["user", "inputs.card"], secret=SECRET).apply(event)
    expected_user = hmac.new(SECRET, b"alice", hashlib.sha256).hexdigest()
    assert event["user"] == HASH_PREFIX + expected_user
    card = json.dumps({"cvc": "1", "n": 4111}, separators=(",", ":")).encode()
    assert event["inputs"]["card"] == HASH_PREFIX + hmac.new(SECRET, card, "sha256").hexdigest()
    assert hash_value(b"x" * 32, "alice") != event["user"]  # another key, another hash


@given(st.text(min_size=1))
def test_hash_never_shows_the_value(value):
    assume(clean(value) == value)  # text the log stores as given (no JSON, no control chars)
    hashed = hash_value(SECRET, value)
    assert hashed.startswith(HASH_PREFIX) and len(hashed) == len(HASH_PREFIX) + 64
    assert hashed == HASH_PREFIX + hmac.new(SECRET, value.encode(), "sha256").hexdigest()
    assert canonical_bytes(value) == value.encode("utf-8")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"hash_fields": ["user"]}, "hash_fields needs a secret"),
    ({"hash_fields": ["user"], "secret": "short"}, "secret: at least 16 bytes"),
    ({"drop": ["a..b"]}, "redact: empty segment"),
    ({"hash_fields": [""], "secret": SECRET}, "hash_fields: field paths must be non-empty"),
    ({"drop": ["x"], "hash_fields": ["x"], "secret": SECRET}, "both in redact and hash_fields"),
    ({"drop": "inputs.ssn"}, "list of field paths"),
])
def test_bad_redaction_settings_name_the_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Redaction(**kwargs)


def test_parse_path():
    assert parse_path("a.*.b", "redact") == ("a", "*", "b")


def test_errors_keep_only_the_type_unless_opted_in():
    assert normalize_error(ValueError("card 4111"), keep_message=False) == {"type": "ValueError"}
    assert normalize_error(ValueError("card 4111"), keep_message=True) == {
        "type": "ValueError", "message": "card 4111"}
    assert normalize_error({"type": "Timeout", "message": "m"}, False) == {"type": "Timeout"}
    assert normalize_error(KeyError, False) == {"type": "KeyError"}
    assert normalize_error("Bad\ntype", False) == {"type": "Badtype"}
    assert normalize_error(None, False) is None


def test_encoder_truncates_bulky_fields_and_keeps_identity():
    encoder = Encoder(max_event_bytes=400)
    record = encoder.encode({"ts": 5.0, "model": "m", "request_id": "r", "inputs": "x" * 1000,
                             "features": list(range(50)), "action": "shown"})
    event = json.loads(record.line)
    assert len(record.line) <= 400
    assert event["inputs"] == {"truncated_bytes": 1002}
    assert event["truncated"] == ["inputs"]
    assert event["features"] == list(range(50)) and event["request_id"] == "r"


def test_encoder_gives_up_only_when_identity_alone_is_too_large():
    encoder = Encoder(max_event_bytes=100)
    with pytest.raises(TooLarge):
        encoder.encode({"model": "m" * 200, "request_id": "r" * 200})


def test_encoder_fills_ts_and_columns():
    record = Encoder().encode({"model": "m", "error": {"type": "E"}, "trace_id": 7}, now=12.5)
    assert (record.ts, record.model, record.error, record.trace_id) == (12.5, "m", "E", "7")
    with pytest.raises(TypeError):
        Encoder().encode(["not", "a", "dict"])  # type: ignore[arg-type]


@settings(max_examples=50)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_encoded_records_are_one_line_of_strict_json(event):
    record = Encoder(max_event_bytes=1 << 20).encode(event, now=1.0)
    text = record.line.decode("utf-8")
    assert text.splitlines() == [text]
    assert not UNSAFE & set(text)
    assert isinstance(json.loads(text), dict)


def test_longdouble_is_a_number_and_clongdouble_a_counted_drop():
    dropped: dict = {}
    cleaned = clean({"x": np.longdouble(1.5), "xs": np.array([0.25], dtype=np.longdouble),
                     "z": np.clongdouble(1 + 2j)}, dropped=dropped)
    assert cleaned["x"] == 1.5 and cleaned["xs"] == [0.25]
    # numpy 1 names the type by its width (complex256 on x86-64), numpy 2 clongdouble.
    assert cleaned["z"] == {"dropped": "unsupported_type",
                            "type": f"numpy.{np.clongdouble.__name__}"}
    assert dropped == {"unsupported_type": 1}


def test_an_int_too_long_to_write_costs_only_itself():
    huge = 10 ** 5000

    class Count(enum.IntEnum):
        MANY = huge

    bounded = 10 ** 640 - 1  # 640 digits: written and read back under any digit limit
    cleaned = clean({"x": huge, "list": [-huge], "enum": Count.MANY, "ok": bounded})
    marker = {"truncated": "int", "bits": huge.bit_length()}
    assert cleaned == {"x": marker, "list": [marker], "enum": marker, "ok": bounded}
    record = Encoder().encode({"ts": huge, "request_id": "r", "inputs": {"x": huge}}, now=3.0)
    event = json.loads(record.line)
    assert event["inputs"]["x"] == marker and record.ts == event["ts"] == 3.0
    assert Encoder().encode({"ts": 10 ** 400}, now=4.0).ts == 4.0  # beyond any float


class _Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str")


def test_an_error_whose_str_raises_is_kept():
    # The message is not read when it is not kept.
    assert normalize_error(_Unprintable(), keep_message=False) == {"type": "_Unprintable"}
    dropped: dict = {}
    kept = normalize_error(_Unprintable(), keep_message=True, dropped=dropped)
    assert kept == {"type": "_Unprintable", "message": {
        "dropped": "conversion_error", "type": f"{__name__}._Unprintable"}}
    assert normalize_error({"type": _Unprintable()}, False, dropped) == {"type": "Error"}
    assert dropped == {"conversion_error": 2}
    long = normalize_error(ValueError("x" * 100_000), keep_message=True)
    assert long == {"type": "ValueError", "message": "x" * 1024}


def test_a_long_request_id_is_hashed_whole_and_stored_whole_or_as_a_digest():
    stem = "tenant-42/session-" + "0" * 300
    first, second = stem + "a", stem + "b"
    hashing = Encoder(Redaction(hash_fields=["request_id"], secret=SECRET))
    hashed = [hashing.encode({"request_id": rid}).request_id for rid in (first, second)]
    assert hashed == [hash_value(SECRET, first), hash_value(SECRET, second)]
    plain = Encoder(max_event_bytes=4096)
    assert plain.encode({"request_id": "r" * 1024}).request_id == "r" * 1024
    longer = "r" * 1025
    digest = "sha256:" + hashlib.sha256(longer.encode()).hexdigest()
    record = plain.encode({"request_id": longer, "model": "m" * 300})
    assert record.request_id == json.loads(record.line)["request_id"] == digest
    assert record.model == "m" * 256
