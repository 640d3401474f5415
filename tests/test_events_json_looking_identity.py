"""Identity fields (``model``, ``model_version``, ``request_id``, ``trace_id``) are stored as
their text, never parsed as JSON: an id such as ``["x"]`` or ``{"b": 1, "a": 2}`` is found
by ``inferwatch events query --request-id`` in a JSONL log and an SQLite one alike, and
``hash_value(request_id=True)`` names its hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferwatch.cli import main
from inferwatch.events import EventLog, hash_value
from inferwatch.events.clean import clean_text
from inferwatch.events.sinks import Encoder, Query

T0 = 1_700_000_000.0
SECRET = b"0123456789abcdef"
IDENTITY = ("model", "model_version", "request_id", "trace_id")
JSON_LOOKING_IDS = ['["x"]', '{"b": 1, "a": 2}', "[1, 2]", ' {"a": "x\\ty"}', '"[1]"',
                    '\ufeff["bom"]', '["tab\tinside"]']

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.text(max_size=4), children, max_size=3)),
    max_leaves=8)
# Text holding a JSON object or array, as a client may send an id (or a model name).
json_texts = st.one_of(
    st.builds(lambda value, indent: json.dumps(value, indent=indent),
              st.one_of(st.lists(json_values, max_size=3),
                        st.dictionaries(st.text(max_size=4), json_values, max_size=3)),
              st.sampled_from([None, 1])),
    st.sampled_from(JSON_LOOKING_IDS))


@given(values=st.fixed_dictionaries({name: json_texts for name in IDENTITY}),
       as_bytes=st.booleans())
def test_identity_fields_are_stored_as_their_cleaned_text(values, as_bytes):
    event = {"ts": T0, **{name: text.encode() if as_bytes else text
                          for name, text in values.items()}}
    record = Encoder(max_event_bytes=1 << 20).encode(event)
    stored = json.loads(record.line)
    for name, text in values.items():
        wanted = clean_text(text)
        if name != "request_id":
            wanted = wanted[:256]
        assert stored[name] == wanted, name
        assert getattr(record, name) == wanted, name  # the SQLite column
    assert Query(request_id=values["request_id"], model=values["model"]).matches(stored)


def test_json_text_elsewhere_is_still_parsed():
    record = Encoder(max_event_bytes=1 << 20).encode(
        {"ts": T0, "request_id": '["x"]', "inputs": '{"ssn": "1"}', "extra": {"model": "[1]"}})
    stored = json.loads(record.line)
    assert stored["inputs"] == {"ssn": "1"}
    assert stored["extra"] == {"model": [1]}  # only the event's own identity fields stay text


@pytest.mark.parametrize("name", ["events.jsonl", "events.db"])
def test_json_looking_ids_are_found_in_either_format(tmp_path: Path, capsys, name):
    path = tmp_path / name
    event_log = EventLog(path)
    for number, request_id in enumerate(JSON_LOOKING_IDS):
        event_log.emit({"ts": T0 + number, "model": request_id, "request_id": request_id})
    assert event_log.flush(30)
    event_log.close()
    for request_id in JSON_LOOKING_IDS:
        for flag in ("--request-id", "--model"):
            assert main(["events", "query", str(path), flag, request_id]) == 0
            found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            assert [event["request_id"] for event in found] == [clean_text(request_id)], \
                (flag, request_id)
            assert found[0]["model"] == clean_text(request_id)


def test_a_hashed_json_looking_id_is_named_by_hash_value(tmp_path: Path, capsys):
    path = tmp_path / "events.db"
    event_log = EventLog(path, hash_fields=["request_id"], secret=SECRET)
    for request_id in JSON_LOOKING_IDS:
        event_log.emit({"ts": T0, "model": "m", "request_id": request_id})
    assert event_log.flush(30)
    event_log.close()
    for request_id in JSON_LOOKING_IDS:
        hashed = hash_value(SECRET, request_id, request_id=True)
        assert main(["events", "query", str(path), "--request-id", hashed]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 1, request_id
