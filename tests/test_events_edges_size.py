"""Event log edges: an event with many fields is bounded without stalling the writer.

A model server that logs its features flat (``{"ts": ..., "f_0001": 0.3, ...}``, thousands
of them) sends events above ``max_event_bytes`` made of many small fields. Bounding one
must cost about one encoding, not one encoding per field: the writer thread serves every
event of the process, and while it stalls the queue fills and the rest are dropped.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from inferwatch.events.clean import clean
from inferwatch.events.jsonl import event_files
from inferwatch.events.sinks import IDENTITY_FIELDS, Encoder, TooLarge

# Far above what an encoding that is linear in the event takes on a loaded machine, far
# below the minutes the writer took when it re-encoded the event once per field.
WRITER_DEADLINE_SECONDS = 120.0


def _read(path) -> list[dict]:
    return [json.loads(line) for file in event_files(path)
            for line in file.read_bytes().splitlines()]


def test_a_flat_event_of_many_small_fields_does_not_stall_the_writer(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, max_event_bytes=64 * 1024)
    flat = {"request_id": "flat", "model": "fraud"}
    flat.update({f"feature_{i:05d}": i * 1.125 for i in range(20_000)})
    event_log.emit(flat)
    event_log.emit({"request_id": "next", "model": "fraud"})
    assert event_log.flush(WRITER_DEADLINE_SECONDS)
    flat_event, next_event = _read(path)
    assert next_event["request_id"] == "next"
    assert event_log.dropped_counts()["too_large"] == 0
    # Each field is shorter than its marker: the first ones are kept, the rest counted.
    *names, omitted = flat_event["truncated"]
    assert names == []
    kept = [k for k in flat if k.startswith("feature_") and k in flat_event]
    assert kept == [f"feature_{i:05d}" for i in range(len(kept))]
    assert all(flat_event[k] == flat[k] for k in kept)
    assert omitted["omitted_fields"] == 20_000 - len(kept) > 0
    assert omitted["truncated_bytes"] == sum(
        len(json.dumps({k: flat[k]}, separators=(",", ":"))) - 2 for k in flat
        if k.startswith("feature_") and k not in flat_event)
    assert len(event_files(path)[0].read_bytes().splitlines()[0]) <= 64 * 1024


def test_many_mid_sized_fields_are_truncated_until_the_event_fits(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, max_event_bytes=64 * 1024)
    wide = {"request_id": "wide", "model": "fraud"}
    wide.update({f"f{i:04d}": "x" * (400 + i % 7) for i in range(1_200)})
    event_log.emit(wide)
    assert event_log.flush(WRITER_DEADLINE_SECONDS)
    (event,) = _read(path)
    assert event["request_id"] == "wide" and event["model"] == "fraud"
    assert 0 < len(event["truncated"]) < 1_200
    for name in event["truncated"]:
        assert event[name] == {"truncated_bytes": len(json.dumps(wide[name]))}
    kept = [k for k in wide if k.startswith("f") and k not in event["truncated"]]
    assert kept and all(event[k] == wide[k] for k in kept)
    assert len(event_files(path)[0].read_bytes()) <= 64 * 1024 + 1


_keys = st.text(st.characters(max_codepoint=0x3FF, exclude_categories=("Cc", "Cs")),
                min_size=1, max_size=10)
_values = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=300), st.lists(st.integers(), max_size=40),
                    st.dictionaries(_keys, st.text(max_size=50), max_size=5))


@given(fields=st.dictionaries(_keys, _values, max_size=60),
       identity=st.fixed_dictionaries({"model": st.text(max_size=40),
                                        "request_id": st.text(max_size=60)}),
       user_truncated=st.one_of(st.none(), st.lists(st.text(max_size=5), max_size=3)),
       limit=st.integers(min_value=120, max_value=4_000))
def test_a_bounded_event_fits_and_says_what_it_cut(fields, identity, user_truncated, limit):
    event = {**fields, **identity, "ts": 1.0}
    if user_truncated is not None:
        event["truncated"] = user_truncated
    try:
        line = Encoder(max_event_bytes=limit).encode(event).line
    except TooLarge:
        return
    assert len(line) <= limit
    stored = json.loads(line)
    full = clean(event)
    for key in ("ts", "model", "request_id"):
        assert stored[key] == full[key]
    cut = stored.get("truncated", []) if len(json.dumps(
        full, separators=(",", ":"), ensure_ascii=False).encode()) > limit else []
    # Fields left out whole, when cutting them one by one was not enough: the last ones.
    omitted = cut[-1]["omitted_fields"] if cut and isinstance(cut[-1], dict) else 0
    optional = [k for k in full if k not in IDENTITY_FIELDS]
    assert set(stored) == set(full) - set(optional[len(optional) - omitted:]) | (
        {"truncated"} if cut else set())
    for key, value in full.items():
        if key in IDENTITY_FIELDS or key not in stored:
            continue
        if key in cut:
            size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
            assert stored[key] == {"truncated_bytes": size}
        else:
            assert stored[key] == value
