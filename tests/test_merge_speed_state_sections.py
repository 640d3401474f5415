"""The multi-worker read, third pass: a worker's state section is parsed once.

A worker's state section (identity fields, gauges, process counters) is the same from one
publish to the next but for its time of writing: the reader remembers it, checked, by the
text after that time, and parses it again only when that text changes. What a scrape
decodes, refuses and serves must be what the modules before this pass give
(``ORIGINAL``, in a process of their own, as tests/test_merge_speed_cached_decoding.py compares).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.multiproc import snapshot_format
from inferwatch.multiproc.snapshot_format import SnapshotError, decode
from snapshot_frames import framed, sections
from test_merge_speed_cached_decoding import (
    NOW,
    assert_alike,
    blobs_of,
    original_modules,
    worker_strategy,
)

# The commit before this pass, and the file it changed.
ORIGINAL = "13b106c94c65fb943fc6f39516a296743d7f4eeb"
CHANGED = ("multiproc/snapshot_format.py",)


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory):
    """This tree with the changed files as they were at ORIGINAL."""
    yield from original_modules(tmp_path_factory.mktemp("original14"), ORIGINAL, CHANGED)


def republished(workers: list[dict], seconds: float) -> list[bytes]:
    """The same workers' snapshots written `seconds` later: only written_at differs."""
    return blobs_of([{**worker, "written": worker["written"] + seconds} for worker in workers])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workers=st.lists(worker_strategy, min_size=1, max_size=4),
       later=st.sampled_from([0.0, 1.0, 0.25, -3.0]),
       now_offset=st.sampled_from([0.0, 5.0, -700.0]),
       exited=st.frozensets(st.integers(0, 7), max_size=2))
def test_the_merged_text_is_what_the_modules_before_this_pass_give(original, workers, later,
                                                                   now_offset, exited):
    blobs = blobs_of(workers)
    # Read once, then republished: the second read finds every state section remembered.
    assert_alike(original, blobs, NOW + now_offset, exited)
    assert_alike(original, republished(workers, later) + blobs[:1], NOW + now_offset, exited)


SPEC = {"requests": 3, "errors": "", "bounds": (0.1, 1.0), "ages": [0, 2], "drift": "same",
        "batches": [(0, 4)], "loaded_at": NOW - 100, "task": "auto", "in_flight": 1}
WORKER = {"models": {"fraud": SPEC, "spam": SPEC}, "written": 0.0}


def with_state(blob: bytes, change) -> bytes:
    """`blob` with its state section's text changed by `change`, checksums made good."""
    parts = sections(blob)
    return framed({**parts, "state": change(parts["state"])})


HEAD = b'{"format":2,"written_at":'
# Times of writing as JSON may spell them, and texts json reads otherwise (or refuses).
WRITTEN = [b"0", b"-0", b"17", b"1.5", b"1.5e3", b"1E+400", b"-2.5e-3", b"1" * 39,
           b"1" * 45, b"NaN", b"Infinity", b"01", b"1.", b" 5", b"5 ", b"true", b'"5"',
           b"9" * 5000]


@pytest.mark.parametrize("written", WRITTEN)
def test_times_of_writing_read_as_json_reads_them(original, written):
    (good,) = blobs_of([WORKER])
    head_end = len(HEAD)
    number = snapshot_format._JSON_NUMBER.match(sections(good)["state"], head_end)
    changed = with_state(good, lambda text: text[:head_end] + written + text[number.end():])
    # After a good file of the same state: the remembered section must not let a bad time
    # through, nor read a good one otherwise than json does.
    assert_alike(original, [good, changed, changed], NOW, frozenset())


STATE_CHANGES = [
    lambda text: text.replace(b'"framework"', b'"model"'),  # a reserved info key
    lambda text: text.replace(b'"sklearn"', b'7'),  # info value not a string
    lambda text: text.replace(b'"folded":[]', b'"folded":[1]'),
    lambda text: text.replace(b'"dtype":"<u', b'"dtype":">u'),
    lambda text: text.replace(b'"internal_errors":{', b'"internal_errors":{"x":-1,'),
    lambda text: text.replace(b'"format":2', b'"format":3'),
    lambda text: text.replace(b'"folded":[]', b'"folded":[],"written_at":5'),
    lambda text: text.replace(b'"folded":[]', b'"folded":["w"]'),
    lambda text: text[:-1],
    lambda text: text.replace(b',"models"', b' ,"models"'),
]


@pytest.mark.parametrize("change", STATE_CHANGES)
def test_a_changed_state_section_is_read_or_refused_as_before(original, change):
    (good,) = blobs_of([WORKER])
    changed = with_state(good, change)
    assert changed != good
    assert_alike(original, [good, changed, good, changed], NOW, frozenset())


def test_a_republished_state_section_is_parsed_once(monkeypatch):
    workers = [WORKER, {**WORKER, "models": {"churn": SPEC}}]
    parsed = []
    loads = json.loads

    def counting(text, *args, **kwargs):
        if isinstance(text, bytes) and text.startswith(HEAD):
            parsed.append(text)
        return loads(text, *args, **kwargs)

    monkeypatch.setattr(snapshot_format.json, "loads", counting)
    monkeypatch.setattr(snapshot_format, "_states", type(snapshot_format._states)())
    monkeypatch.setattr(snapshot_format, "_state_bytes", 0)
    first = [decode(blob) for blob in blobs_of(workers)]
    assert len(parsed) == 2
    for seconds in (1.0, 2.5, 600.0):
        later = [decode(blob) for blob in republished(workers, seconds)]
        assert [raw.header["written_at"] for raw in later] == [NOW + seconds] * 2
        assert [raw.header["models"] for raw in later] == [raw.header["models"]
                                                           for raw in first]
    assert len(parsed) == 2  # before: once per file decoded


def test_remembered_state_sections_stay_bounded(monkeypatch):
    monkeypatch.setattr(snapshot_format, "_states", type(snapshot_format._states)())
    monkeypatch.setattr(snapshot_format, "_state_bytes", 0)
    monkeypatch.setattr(snapshot_format, "MAX_STATES", 4)
    (good,) = blobs_of([WORKER])
    for index in range(12):
        decode(with_state(good, lambda text, index=index: text.replace(
            b'"sklearn"', b'"sklearn-%d"' % index)))
        assert len(snapshot_format._states) <= 4
    assert snapshot_format._state_bytes == sum(map(len, snapshot_format._states))
    monkeypatch.setattr(snapshot_format, "MAX_STATE_BYTES", 3 * len(
        next(iter(snapshot_format._states))))
    for index in range(12, 20):
        decode(with_state(good, lambda text, index=index: text.replace(
            b'"sklearn"', b'"sklearn-%d"' % index)))
        assert snapshot_format._state_bytes <= snapshot_format.MAX_STATE_BYTES
    assert snapshot_format._state_bytes == sum(map(len, snapshot_format._states))
    # A refused section is never remembered.
    before = dict(snapshot_format._states)
    with pytest.raises(SnapshotError):
        decode(with_state(good, STATE_CHANGES[0]))
    assert dict(snapshot_format._states) == before
