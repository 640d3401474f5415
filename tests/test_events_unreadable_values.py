"""A value that raises when it is looked at costs only itself: it becomes a
``{"dropped": "conversion_error", ...}`` marker and the rest of the event is kept.

The usual case is a context-local proxy (flask's ``request``, ``g``, ``current_user``, all
werkzeug ``LocalProxy``) put in the event while bound in the request thread: the writer
thread reads it later, where it is unbound, and any attribute lookup on it raises
``RuntimeError``.
"""

from __future__ import annotations

import dataclasses
import json
import string
from contextvars import ContextVar
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import inferwatch
from event_log_helpers import stored_events
from inferwatch.cli import main
from inferwatch.events import EventLog
from inferwatch.events.fields import type_name
from inferwatch.events.redact import Redaction
from inferwatch.events.sinks import Encoder

werkzeug_local = pytest.importorskip("werkzeug.local")

T0 = 1_700_000_000.0
WRITE_TIME = 1_800_000_000.0


class Unreadable:
    """Raises on every attribute lookup (``__class__`` too), as an unbound proxy may."""

    def __getattribute__(self, name: str) -> object:
        raise RuntimeError("object is not bound")


UNREADABLE_MARKER = {"dropped": "conversion_error", "type": type_name(Unreadable())}


def expected_stored(value: object) -> object:
    """What the log stores for `value`: itself, with each unreadable leaf as its marker."""
    if type(value) is Unreadable:
        return UNREADABLE_MARKER
    if type(value) is dict:
        return {key: expected_stored(item) for key, item in value.items()}
    if type(value) is list:
        return [expected_stored(item) for item in value]
    return value


# Plain text that stays as it is once cleaned (no control characters, not JSON).
plain_text = st.text(alphabet=string.ascii_letters + string.digits + " -_", max_size=8)
leaves = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9),
                   st.floats(allow_nan=False, allow_infinity=False), plain_text,
                   st.builds(Unreadable))
trees = st.recursive(
    leaves,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(plain_text, children, max_size=4)),
    max_leaves=25)
field_names = st.sampled_from(["inputs", "features", "prediction", "probabilities", "outcome",
                               "stage_outputs", "user", "session"])


@given(fields=st.dictionaries(field_names, trees, max_size=6),
       ts=st.one_of(st.just(T0), st.builds(Unreadable)),
       error=st.one_of(st.none(), st.just(ValueError("boom")), st.builds(Unreadable)),
       identity=st.dictionaries(st.sampled_from(["model", "model_version", "request_id",
                                                 "trace_id"]),
                                st.builds(Unreadable), max_size=2))
def test_unreadable_values_anywhere_cost_only_themselves(fields, ts, error, identity):
    event = {"ts": ts, "model": "fraud", "model_version": "2", "request_id": "r-17",
             "trace_id": "t-1", "error": error, **identity, **fields}
    encoder = Encoder(max_event_bytes=1 << 20)
    record = encoder.encode(event, now=WRITE_TIME)
    stored = json.loads(record.line)

    # The time, the identity fields and the error survive whatever else cannot be read.
    assert stored["ts"] == (T0 if type(ts) is float else WRITE_TIME)
    for name, given_value in (("model", "fraud"), ("model_version", "2"),
                              ("request_id", "r-17"), ("trace_id", "t-1")):
        wanted = UNREADABLE_MARKER if name in identity else given_value
        assert stored[name] == wanted, name
    if error is None:
        assert stored["error"] is None
    else:  # an error event is kept, its type named even when the error cannot be read
        assert stored["error"] == {"type": "ValueError" if type(error) is ValueError
                                   else "Error"}
        assert record.error == stored["error"]["type"]
    # Every other field is stored as given, each unreadable value as its own marker.
    for name, value in fields.items():
        assert stored[name] == expected_stored(value), name
    # Each counted once: every marker, and an error that could not be read.
    markers = json.dumps(stored).count('"conversion_error"')
    assert encoder.values_dropped.get("conversion_error", 0) == \
        markers + (type(error) is Unreadable)


@pytest.mark.parametrize("name", ["events.jsonl", "events.db"])
def test_an_unbound_proxy_costs_only_itself_and_the_event_is_found(tmp_path, capsys, name):
    current_user_var: ContextVar = ContextVar("current_user")
    current_user = werkzeug_local.LocalProxy(current_user_var)  # as flask_login's is
    path = tmp_path / name
    event_log = EventLog(path)
    current_user_var.set({"id": 7})  # bound here, in the request's context only
    event_log.emit({"ts": T0, "model": "fraud", "request_id": "r-17",
                    "error": ValueError("boom"), "inputs": {"age": 41}, "user": current_user})
    event_log.emit({"ts": T0 + 1, "model": "fraud", "request_id": "r-18",
                    "inputs": {"age": 42, "user": current_user}})
    assert event_log.flush(30)
    event_log.close()
    proxy_marker = {"dropped": "conversion_error", "type": "werkzeug.local.LocalProxy"}

    def query(*flags: str) -> list[dict]:
        assert main(["events", "query", str(path), *flags]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert query("--request-id", "r-17") == [
        {"ts": T0, "model": "fraud", "request_id": "r-17", "error": {"type": "ValueError"},
         "inputs": {"age": 41}, "user": proxy_marker}]
    assert [event["request_id"] for event in query("--errors")] == ["r-17"]
    assert query("--request-id", "r-18") == [
        {"ts": T0 + 1, "model": "fraud", "request_id": "r-18",
         "inputs": {"age": 42, "user": proxy_marker}}]
    assert event_log.dropped_counts()["serialize_error"] == 0


def test_a_model_called_with_a_proxy_keeps_its_event(tmp_path: Path, scraper, make_log):
    payload_var: ContextVar = ContextVar("payload")
    payload = werkzeug_local.LocalProxy(payload_var)
    event_log = make_log(tmp_path / "events.jsonl")
    model = inferwatch.instrument(lambda x: [1], name="fraud", version="2", events=event_log,
                                  registry=scraper.registry)
    payload_var.set([[0.5, 1.5]])
    model(payload, request_id="r-17")
    scraper.registry.drain()
    assert event_log.flush(30)
    [event] = stored_events(tmp_path / "events.jsonl")
    assert (event["model"], event["model_version"], event["request_id"]) == \
        ("fraud", "2", "r-17")
    assert event["inputs"] == {"dropped": "conversion_error",
                               "type": "werkzeug.local.LocalProxy"}
    assert event["prediction"] == [1]


@dataclasses.dataclass
class StrictRecord:
    """Raises KeyError, not AttributeError, for an attribute it lacks (as some row and
    settings objects do): probing it for an array's size must not cost its fields."""

    ssn: str
    age: int

    def __getattr__(self, name: str) -> object:
        raise KeyError(name)


def test_a_probe_that_raises_does_not_cost_a_convertible_value():
    encoder = Encoder(Redaction(drop=["inputs.ssn"]), max_event_bytes=1 << 20)
    stored = json.loads(encoder.encode(
        {"ts": T0, "request_id": "r-17", "inputs": StrictRecord("123-45-6789", 41),
         "features": [StrictRecord("987-65-4321", 42)]}).line)
    assert stored == {"ts": T0, "request_id": "r-17", "inputs": {"age": 41},
                      "features": [{"age": 42}]}
    assert encoder.values_dropped.get("conversion_error", 0) == 0
