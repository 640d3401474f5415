"""Delayed ground truth whose prediction left the join cache by its bound, outcomes that
judge nothing yet, and outcomes whose time is not known."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.outcomes import OutcomeJoiner


def _unmatched(scraper) -> dict[str, float]:
    return {s.labels["reason"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_outcomes_unmatched_total" and s.value}


# --- a prediction evicted by the cache's bound ------------------------------------------------

def test_an_outcome_for_a_prediction_evicted_by_the_entry_bound_counts_evicted(scraper):
    """It counted unknown_id, the reason for a wrong id, though the id was right and only
    outcome_cache_size too small."""
    wrapped = inferwatch.instrument(lambda x: np.array(["a"]), name="m", version="1",
                                    registry=scraper.registry, outcome_cache_size=10)
    for i in range(30):
        wrapped([[1]], request_id=f"req-{i}")
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    mon.drain()
    mon.record_outcome("req-15", "a")  # evicted by the 10-entry bound
    mon.record_outcome("req-25", "a")  # still waiting
    mon.record_outcome("no-such-request", "a")  # a wrong id
    assert _unmatched(scraper) == {"evicted": 1, "unknown_id": 1}
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 1


def test_an_outcome_for_a_batch_evicted_by_the_byte_bound_counts_evicted(scraper):
    """A batch model whose labels arrive after the byte bound pushed its predictions out."""
    wrapped = inferwatch.instrument(lambda x: np.array([f"c{i % 3}" for i in range(64)]),
                                    name="batch", version="1", registry=scraper.registry,
                                    outcome_cache_bytes=2 * 2**20)
    for i in range(900):
        wrapped(np.zeros((64, 2)), request_id=f"req-{i}")
    mon = inferwatch.monitor("batch", "1", registry=scraper.registry)
    mon.drain()
    assert len(mon.outcomes) < 600  # the bytes stopped the cache
    assert mon.outcomes.estimated_bytes <= 2 * 2**20
    for i in range(0, 900, 75):
        mon.record_outcome(f"req-{i}", ["c0"] * 64)
    mon.record_outcome("typo-id", ["c0"] * 64)
    unmatched = _unmatched(scraper)
    joined = scraper.value("inferwatch_outcome_delay_seconds_count")
    assert unmatched.pop("unknown_id") == 1
    evicted = unmatched.pop("evicted")
    assert evicted + joined == 12 and evicted >= 1 and joined >= 1
    assert unmatched == {}


def test_a_repeated_outcome_is_a_duplicate_while_new_predictions_fill_the_bytes():
    """The ids already joined were the first thing the byte bound dropped: a label queue's
    redelivery an hour later counted unknown_id."""
    joiner = OutcomeJoiner(max_bytes=64 * 1024)
    joiner.remember("paid", ("a",) * 64, None, at=0.0)
    assert joiner.join("paid", ["a"] * 64, at=1.0).correct == 64
    for i in range(30):  # twice what the bytes hold
        joiner.remember(f"later-{i}", ("b",) * 64, None, at=2.0)
    assert len(joiner) < 20 and joiner.estimated_bytes <= joiner.max_bytes
    assert joiner.join("paid", ["a"] * 64, at=3.0).unmatched == "duplicate"
    assert joiner.join("later-0", ["b"] * 64, at=3.0).unmatched == "evicted"


def test_an_evicted_prediction_whose_outcome_comes_past_the_ttl_is_expired():
    joiner = OutcomeJoiner(max_entries=1, ttl_seconds=60.0)
    joiner.remember("r-1", ("a",), None, at=0.0)
    joiner.remember("r-2", ("a",), None, at=0.0)
    assert joiner.join("r-1", "a", at=120.0).unmatched == "expired"


def test_resizing_to_a_smaller_bound_remembers_the_ids_it_evicts():
    """As many ids as predictions: the oldest of the three evicted is forgotten."""
    joiner = OutcomeJoiner()
    for i in range(5):
        joiner.remember(f"r-{i}", ("a",), None, at=0.0)
    joiner.resize(2, 60.0, 1 << 20)
    assert [joiner.join(f"r-{i}", "a", at=1.0).unmatched for i in range(5)] == \
        ["unknown_id", "evicted", "evicted", None, None]


def _judging_with(monkeypatch, meanwhile) -> None:
    """Run `meanwhile` while an outcome is judged, outside the joiner's lock, as another
    thread (a drain, a second outcome) may."""
    from inferwatch.core import outcomes

    judged = outcomes._judged

    def judge_meanwhile(entry, y_true, at):
        meanwhile()
        return judged(entry, y_true, at)

    monkeypatch.setattr(outcomes, "_judged", judge_meanwhile)


def test_a_prediction_evicted_while_its_outcome_is_judged_is_joined(monkeypatch):
    joiner = OutcomeJoiner(max_entries=1)
    joiner.remember("r-1", ("a",), None, at=0.0)
    _judging_with(monkeypatch, lambda: joiner.remember("r-2", ("a",), None, at=1.0))
    assert joiner.join("r-1", "a", at=2.0).correct == 1
    assert joiner.join("r-1", "a", at=3.0).unmatched == "duplicate"


def test_two_outcomes_judged_at_once_count_one_and_a_duplicate(monkeypatch):
    joiner = OutcomeJoiner()
    joiner.remember("r-1", ("a",), None, at=0.0)
    inner: list = []

    def second_outcome() -> None:
        if not inner:  # the second outcome's own judging runs nothing more
            inner.append(None)
            inner[0] = joiner.join("r-1", "a", at=1.0)

    _judging_with(monkeypatch, second_outcome)
    assert joiner.join("r-1", "a", at=1.0).unmatched == "duplicate"
    assert inner[0].correct == 1


_IDS = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=60, unique=True)


@settings(max_examples=150, deadline=None)
@given(ids=_IDS, max_entries=st.integers(1, 20), rows=st.integers(1, 70),
       max_bytes=st.one_of(st.integers(1, 40_000), st.just(2**30)),
       typo=st.text(min_size=1, max_size=12))
def test_an_id_never_predicted_is_unknown_and_an_evicted_one_never_is(ids, max_entries, rows,
                                                                      max_bytes, typo):
    """Any ids, bounds and batch sizes: an outcome for an id no call used counts
    unknown_id, one for a prediction still waiting joins, and one for a prediction the
    bounds pushed out counts evicted while the cache still remembers the id (its memory of
    ids is bounded too: an id it forgot counts unknown_id), never joined."""
    joiner = OutcomeJoiner(max_entries=max_entries, max_bytes=max_bytes)
    for request_id in ids:
        joiner.remember(request_id, ("a",) * rows, None, at=0.0)
        assert joiner.estimated_bytes <= max(max_bytes, joiner._pending[request_id][3])
    waiting = set(joiner._pending)
    remembered_gone = {request_id for request_id in ids if request_id in joiner._evicted}
    assert remembered_gone <= set(ids) - waiting
    if max_bytes == 2**30:  # only the entry bound: the ids of the last ones it pushed out
        assert remembered_gone == set(ids[:-max_entries][-max_entries:])
    # Ids that joined are remembered too, and may push out the oldest evicted ones: those
    # outcomes first.
    for request_id in sorted(ids, key=lambda request_id: request_id in waiting):
        joined = joiner.join(request_id, ["a"] * rows, at=1.0)
        if request_id in waiting:
            assert joined.unmatched is None
        elif request_id in remembered_gone:
            assert joined.unmatched == "evicted"
        else:
            assert joined.unmatched == "unknown_id"
    if typo not in ids:
        assert joiner.join(typo, "a", at=1.0).unmatched == "unknown_id"


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["remember", "join"]), st.integers(0, 40),
                                st.integers(1, 70)), max_size=150),
       max_entries=st.integers(1, 30), max_bytes=st.integers(1, 30_000))
def test_the_ids_remembered_stay_inside_both_bounds(steps, max_entries, max_bytes):
    joiner = OutcomeJoiner(max_entries=max_entries, max_bytes=max_bytes)
    for kind, key, rows in steps:
        if kind == "remember":
            joiner.remember(f"r-{key}", ("a",) * rows, None, at=0.0)
        else:
            joiner.join(f"r-{key}", "a", at=1.0)
        pending = sum(entry[3] for entry in joiner._pending.values())
        assert joiner.estimated_bytes == pending + sum(joiner._joined.values())
        largest = max((entry[3] for entry in joiner._pending.values()), default=0)
        assert joiner.estimated_bytes <= max(max_bytes, largest)
        assert len(joiner._joined) <= max_entries and len(joiner) <= max_entries
        assert set(joiner._evicted) <= set(joiner._joined)
        assert joiner._expired <= set(joiner._joined)
        assert not set(joiner._evicted) & joiner._expired


# --- an outcome that judges nothing yet ----------------------------------------------------------

def test_a_label_not_known_yet_leaves_the_prediction_for_the_real_label(scraper):
    """NaN (not known yet) used the prediction up: the label sent later counted duplicate,
    and the label delay histogram observed a label that was not known."""
    wrapped = inferwatch.instrument(lambda x: np.array([3.5]), name="reg", version="1",
                                    registry=scraper.registry)
    wrapped([[1.0]], request_id="q-1")
    mon = inferwatch.monitor("reg", "1", registry=scraper.registry)
    mon.record_outcome("q-1", float("nan"))
    assert _unmatched(scraper) == {"missing_label": 1}
    assert not scraper.value("inferwatch_outcome_delay_seconds_count")
    mon.record_outcome("q-1", 4.0)
    assert _unmatched(scraper) == {"missing_label": 1}
    assert scraper.value("inferwatch_outcome_error_count") == 1
    assert scraper.value("inferwatch_outcome_error_sum") == 0.5
    assert scraper.value("inferwatch_outcome_delay_seconds_count") == 1
    mon.record_outcome("q-1", 4.0)
    assert _unmatched(scraper) == {"missing_label": 1, "duplicate": 1}


def test_a_batch_of_labels_none_known_yet_waits_for_the_batch_known(scraper):
    wrapped = inferwatch.instrument(lambda x: np.array(["fraud", "legit", "legit"]),
                                    name="clf", version="1", registry=scraper.registry)
    wrapped(np.zeros((3, 2)), request_id="batch-7")
    mon = inferwatch.monitor("clf", "1", registry=scraper.registry)
    mon.record_outcome("batch-7", [None, np.nan, pd.NA])
    mon.record_outcome("batch-7", ["fraud", "legit", "fraud"])
    assert _unmatched(scraper) == {"missing_label": 3}
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 2
    assert scraper.value("inferwatch_outcomes_total", result="incorrect") == 1
    assert scraper.value("inferwatch_outcome_delay_seconds_count") == 1


def test_the_first_outcome_that_judges_a_row_is_final(scraper):
    """Labels known for some rows only: those rows are judged, the others count
    missing_label, and a later outcome for the same id is a duplicate."""
    wrapped = inferwatch.instrument(lambda x: np.array(["fraud", "legit", "legit"]),
                                    name="clf", version="1", registry=scraper.registry)
    wrapped(np.zeros((3, 2)), request_id="batch-7")
    mon = inferwatch.monitor("clf", "1", registry=scraper.registry)
    mon.record_outcome("batch-7", ["fraud", None, None])
    mon.record_outcome("batch-7", ["fraud", "legit", "fraud"])
    assert _unmatched(scraper) == {"missing_label": 2, "duplicate": 1}
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 1
    assert scraper.value("inferwatch_outcomes_total", result="incorrect") is None
    assert scraper.value("inferwatch_outcome_delay_seconds_count") == 1


def test_a_malformed_outcome_leaves_the_prediction_for_the_corrected_one(scraper):
    wrapped = inferwatch.instrument(lambda x: np.array([[1.0, 10.0]]), name="two",
                                    version="1", registry=scraper.registry)
    wrapped([[1.0]], request_id="m-1")
    mon = inferwatch.monitor("two", "1", registry=scraper.registry)
    mon.record_outcome("m-1", 1.0)  # one target for two outputs
    mon.record_outcome("m-1", [1.0, 12.0])
    assert _unmatched(scraper) == {"shape_mismatch": 1}
    assert scraper.value("inferwatch_outcome_error_count") == 2
    assert scraper.value("inferwatch_outcome_error_sum") == 2.0


def test_an_outcome_event_of_labels_not_known_yet_says_so(tmp_path, scraper):
    import json

    wrapped = inferwatch.instrument(lambda x: np.array(["a"]), name="ev", version="1",
                                    registry=scraper.registry, events=str(tmp_path / "e.jsonl"))
    wrapped([[1]], request_id="r-1")
    mon = inferwatch.monitor("ev", "1", registry=scraper.registry)
    mon.record_outcome("r-1", None)
    mon.record_outcome("r-1", "a")
    mon.events.close()
    matches = [json.loads(line).get("outcome_match") for path in tmp_path.iterdir()
               if not path.is_symlink() for line in path.read_text().splitlines()]
    assert [m for m in matches if m] == ["missing_label", "joined"]


_LABEL = st.one_of(st.sampled_from(["a", "b"]), st.sampled_from([None, math.nan, pd.NA]))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outcomes=st.lists(st.lists(_LABEL, min_size=3, max_size=3), min_size=1, max_size=4))
def test_only_an_outcome_that_judges_a_row_uses_the_prediction_up(scraper, outcomes):
    """Any sequence of outcomes for one 3-row prediction: the outcomes before the first
    with a known label count their missing labels and nothing else; that one is judged
    (its missing rows counted too) and observes the delay; every later one is a
    duplicate."""
    model = f"m{time.monotonic_ns()}"
    wrapped = inferwatch.instrument(lambda x: np.array(["a", "b", "a"]), name=model,
                                    version="1", registry=scraper.registry)
    wrapped(np.zeros((3, 1)), request_id="r")
    mon = inferwatch.monitor(model, "1", registry=scraper.registry)
    for labels in outcomes:
        mon.record_outcome("r", labels)
    known = [[label for label in labels if isinstance(label, str)] for labels in outcomes]
    first = next((i for i, labels in enumerate(known) if labels), None)
    counted = outcomes if first is None else outcomes[:first + 1]
    missing = sum(3 - len(labels) for labels in known[:len(counted)])
    duplicates = 0 if first is None else len(outcomes) - first - 1
    samples = [s for s in scraper.samples() if s.labels.get("model") == model and s.value]
    unmatched = {s.labels["reason"]: s.value for s in samples
                 if s.name == "inferwatch_outcomes_unmatched_total"}
    judged = sum(s.value for s in samples if s.name == "inferwatch_outcomes_total")
    delays = sum(s.value for s in samples if s.name == "inferwatch_outcome_delay_seconds_count")
    assert unmatched == {k: v for k, v in (("missing_label", missing),
                                           ("duplicate", duplicates)) if v}
    assert judged == (0 if first is None else len(known[first]))
    assert delays == (0 if first is None else 1)


# --- an outcome whose time is not known ---------------------------------------------------------

@pytest.mark.parametrize("at", [pd.NaT, np.datetime64("NaT"), float("nan"), "yesterday",
                                "2026-01-01T00:00:00"])
def test_an_outcome_of_unknown_time_for_a_prediction_past_its_ttl_is_expired(scraper, at):
    """Its expiry was judged against the outcome's time, NaN, and NaN is past nothing:
    a prediction however old was judged, and counted in accuracy."""
    wrapped = inferwatch.instrument(lambda x: np.array(["a"]), name="ttl", version="1",
                                    registry=scraper.registry, outcome_ttl_seconds=0.05)
    wrapped([[1]], request_id="r-old")
    mon = inferwatch.monitor("ttl", "1", registry=scraper.registry)
    mon.drain()
    predicted_at = mon.outcomes._pending["r-old"][2]
    deadline = time.monotonic() + 10.0
    while time.time() - predicted_at <= 0.05:  # the clock, not the scheduler, decides
        assert time.monotonic() < deadline
        time.sleep(0.01)
    mon.record_outcome("r-old", "b", at=at)
    assert _unmatched(scraper) == {"expired": 1}
    assert scraper.value("inferwatch_outcomes_total", result="incorrect") is None


@settings(max_examples=60, deadline=None)
@given(at=st.one_of(st.just(float("nan")), st.just(pd.NaT), st.text(max_size=20)
                    .filter(lambda text: text.strip() and not _reads_as_time(text))),
       age=st.floats(0.0, 10_000.0), ttl=st.floats(1.0, 5_000.0))
def test_an_outcome_of_unknown_time_is_expired_by_the_clock(at, age, ttl):
    """Whatever `at` a caller passes that reads as no time: the prediction's age now
    decides, as if the label had come now; and no delay is observed."""
    from inferwatch.core.timestamps import seconds_of

    if abs(age - ttl) < 1.0:
        return  # the clock moves while the test runs
    joiner = OutcomeJoiner(ttl_seconds=ttl)
    joiner.remember("r", ("a",), None, at=time.time() - age)
    when = seconds_of(at)
    assert when != when
    joined = joiner.join("r", "a", at=when)
    if age > ttl:
        assert joined.unmatched == "expired"
    else:
        assert (joined.correct, joined.delay) == (1, None)


def _reads_as_time(text: str) -> bool:
    from inferwatch.core.timestamps import seconds_of

    seconds = seconds_of(text)
    return seconds == seconds
