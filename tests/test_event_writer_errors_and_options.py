"""The event log writer: error events under a small event bound, error flags and arrays,
options given as None, numpy numbers or strings, sink paths, and hashes of lone surrogates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.events import EventLog, hash_value
from inferwatch.events.redact import Redaction
from inferwatch.events.sinks import Encoder

SECRET = b"0123456789abcdef-secret"


def _read(path: Path) -> list[dict]:
    files = sorted(p for p in path.parent.glob(f"{path.stem}.*{path.suffix}")
                   if p.is_file() and not p.is_symlink())
    return [json.loads(line) for p in files for line in p.read_bytes().splitlines()]


# --- an error message must not cost the error event ------------------------------------------

def test_a_long_error_message_under_a_small_bound_keeps_the_error_event(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, max_event_bytes=512, error_messages=True)
    # A validation error quoting a whole payload: well past 512 bytes.
    event_log.emit({"ts": 1.0, "request_id": "r-1", "model": "fraud",
                    "error": ValueError("field required: " + "x" * 900)})
    assert event_log.flush(10.0)
    assert event_log.dropped_counts()["too_large"] == 0
    (event,) = _read(path)
    assert event["request_id"] == "r-1"
    assert event["error"]["type"] == "ValueError"
    assert event["error"]["message"] == {"truncated_bytes": len(json.dumps("field required: "
                                                                           + "x" * 900))}
    assert event["truncated"] == ["error.message"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=st.text(min_size=1000, max_size=1024), inputs=st.text(max_size=2000),
       bound=st.integers(256, 999))
def test_an_error_event_with_its_message_is_never_too_large(message, inputs, bound):
    encoder = Encoder(max_event_bytes=bound, error_messages=True)
    record = encoder.encode({"ts": 1.0, "request_id": "r", "inputs": {"text": inputs},
                             "error": RuntimeError(message)})
    assert len(record.line) <= bound
    event = json.loads(record.line)
    assert event["error"]["type"] == "RuntimeError" and record.error == "RuntimeError"


# --- an error given as a flag or an array names no type from its value ----------------------

@pytest.mark.parametrize("error", [
    1, 2.5, np.True_, np.int64(1), np.array(["alice@example.com"]),
    np.array([[1.0, 2.0]]), object(), [{"email": "alice@example.com"}],
], ids=["int", "float", "np.bool_", "np.int64", "array-of-text", "array", "object", "list"])
def test_an_error_flag_or_array_is_stored_as_a_plain_error(error):
    record = Encoder().encode({"ts": 1.0, "request_id": "r", "error": error})
    assert json.loads(record.line)["error"] == {"type": "Error"}
    assert record.error == "Error"
    assert b"alice" not in record.line


def test_an_error_named_by_a_string_or_exception_keeps_its_name():
    assert Encoder().encode({"error": "TimeoutError"}).error == "TimeoutError"
    assert Encoder().encode({"error": KeyError("k")}).error == "KeyError"
    assert Encoder().encode({"error": True}).error == "Error"


# --- options given as None, numpy numbers or strings -----------------------------------------

def test_redact_and_hash_fields_given_as_none_mean_no_paths(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, redact=None, hash_fields=None)
    event_log.emit({"ts": 1.0, "request_id": "r", "inputs": {"a": 1}})
    assert event_log.flush(10.0)
    assert [e["inputs"] for e in _read(path)] == [{"a": 1}]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"redact": 5}, "redact: expected a list of field paths"),
    ({"hash_fields": b"inputs.email", "secret": SECRET}, "hash_fields: expected a list"),
    ({"redact": "inputs.ssn"}, "redact: expected a list of field paths"),
])
def test_paths_that_are_no_list_are_refused_by_name(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        EventLog(tmp_path / "events.jsonl", **kwargs)


def test_numpy_numbers_are_accepted_for_the_rate_and_the_sizes(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, sample_rate=np.float32(1.0), max_bytes=np.int64(1 << 20),
                         queue_size=np.int32(100), max_event_bytes=np.int64(4096))
    assert type(event_log.sample_rate) is float and type(event_log.queue_size) is int
    event_log.emit({"ts": 1.0, "request_id": "r"})
    assert event_log.flush(10.0)
    assert [e["request_id"] for e in _read(path)] == ["r"]
    with pytest.raises(ValueError, match="max_bytes: expected a positive integer"):
        EventLog(path, max_bytes=np.True_)
    with pytest.raises(ValueError, match="sample_rate: expected a number"):
        EventLog(path, sample_rate=np.float64("nan"))


@pytest.mark.parametrize("option", ["error_messages", "keep_unstructured"])
@pytest.mark.parametrize("value", ["false", "0", "no", 2, 1.0])
def test_a_privacy_opt_in_given_as_text_is_refused(tmp_path, option, value):
    # os.environ.get("STORE_ERROR_MESSAGES", "false") is truthy: it would store messages.
    with pytest.raises(ValueError, match=f"{option}: expected True or False"):
        EventLog(tmp_path / "events.jsonl", **{option: value})


def test_a_privacy_opt_in_given_as_a_flag_works(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, error_messages=np.False_, keep_unstructured=None)
    event_log.emit({"ts": 1.0, "request_id": "r", "error": ValueError("alice@example.com")})
    assert event_log.flush(10.0)
    assert [e["error"] for e in _read(path)] == [{"type": "ValueError"}]


# --- the sink path -----------------------------------------------------------------------------

@pytest.mark.parametrize("sink", [None, "", b"", 3, ["events.jsonl"]])
def test_a_sink_that_is_no_path_is_refused_by_name(sink):
    with pytest.raises(ValueError, match="sink: "):
        EventLog(sink)  # type: ignore[arg-type]


def test_a_sink_given_as_bytes_is_its_path(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(os.fsencode(path))
    assert event_log.path == path
    event_log.emit({"ts": 1.0, "request_id": "r"})
    assert event_log.flush(10.0)
    assert [e["request_id"] for e in _read(path)] == ["r"]


# --- hash_value of text with a lone surrogate --------------------------------------------------

_letters = st.characters(min_codepoint=0x61, max_codepoint=0x7A)
_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


@settings(max_examples=60, deadline=None)
@given(head=st.text(_letters, max_size=10), lone=_surrogates, tail=st.text(_letters, max_size=10))
def test_hash_value_of_text_with_a_lone_surrogate_finds_its_stored_hash(head, lone, tail):
    # Text decoded with errors="surrogateescape" (a header, a file name) holds lone surrogates.
    value = head + lone + tail
    encoder = Encoder(Redaction([], ["inputs.customer"], SECRET))
    stored = json.loads(encoder.encode({"ts": 1.0, "inputs": {"customer": value}}).line)
    assert stored["inputs"]["customer"] == hash_value(SECRET, value)
