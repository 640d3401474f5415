"""Shadow edge cases: a champion that edits a large or sparse input in place, calls still
queued as a process challenger is closed, the event of an incomparable call, and an outcome
that comes while its challenger's call is still queued or under way.

Every wait is on an event or a flush, never a sleep that passes by luck.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import inferwatch
from inferwatch.core import shadow_copies, shadow_runtime
from inferwatch.core.call_input import COPY_LIMIT_BYTES
from inferwatch.core.shadow_outcomes import HeldOutcomes
from shadow_models import Hanging

WAIT = 30.0  # generous: a condition that holds is met at once


class Zeroing:
    """A champion that scales its input in place before it answers (``X *= 0``)."""

    def predict(self, X):
        X *= 0
        return np.asarray(X.sum(axis=1), dtype=float).ravel()


class Recording:
    """A challenger that keeps a copy of every input it is handed."""

    def __init__(self) -> None:
        self.seen: list = []

    def predict(self, X):
        self.seen.append(X.copy())
        return np.asarray(X.sum(axis=1), dtype=float).ravel()


class Summing:
    def predict(self, X):
        return np.asarray(X, dtype=float).sum(axis=1)


class Gated(Summing):
    """Blocks in predict until `gate` is set; `entered` says a call is inside."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()

    def predict(self, X):
        self.entered.set()
        assert self.gate.wait(WAIT)
        return super().predict(X)


def _large_array():
    return np.ones((64, COPY_LIMIT_BYTES // (64 * 8) + 8))  # past the small-copy bound


@pytest.mark.parametrize("make", [
    _large_array,
    lambda: sp.csr_matrix(np.ones((8, 8))),
    lambda: sp.csr_matrix(_large_array()),
    lambda: pd.DataFrame(_large_array()),
], ids=["large-array", "sparse", "large-sparse", "large-frame"])
def test_the_challenger_sees_the_input_the_caller_passed_whatever_the_champion_does_to_it(
        make, registry):
    champion = inferwatch.instrument(Zeroing(), name="m", version="1", registry=registry)
    challenger = Recording()
    handle = inferwatch.shadow(champion, challenger, version="2", registry=registry,
                               timeout=60.0)
    X = make()
    expected = float(np.asarray(X.sum()).sum())
    champion.predict(X)
    assert handle.flush(WAIT)
    assert float(np.asarray(X.sum()).sum()) == 0.0  # the champion did edit it
    (seen,) = challenger.seen
    assert type(seen) is type(X)
    assert float(np.asarray(seen.sum()).sum()) == expected
    handle.close()


def test_a_frame_is_captured_lazily_and_kept_from_the_champions_edits():
    frame = pd.DataFrame(_large_array())
    kept = shadow_copies.captured(frame)
    if int(pd.__version__.split(".")[0]) >= 3 or pd.options.mode.copy_on_write is True:
        # Copy-on-write: one shallow copy, as the champion's own record takes, at any size.
        assert np.shares_memory(kept[0].to_numpy(), frame[0].to_numpy())
    frame[0] *= 0
    assert float(kept[0].sum()) == 64.0


def test_a_call_sampled_while_the_queue_is_full_is_not_copied_and_counts_as_full(registry):
    challenger = Gated()
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, challenger, version="2", registry=registry,
                               queue_size=1, timeout=60.0)
    champion.predict(np.ones((1, 2)))
    assert challenger.entered.wait(WAIT)  # the worker holds the first call
    champion.predict(np.ones((1, 2)))  # queued
    big = _large_array()
    assert handle.capture((big,), {}) is shadow_runtime.FULL
    champion.predict(big)  # dropped as full
    challenger.gate.set()
    assert handle.flush(WAIT)
    registry.drain()
    counters = handle.monitor.state.counters
    assert counters["inferwatch_shadow_sampled_total"][("1",)] == 3
    assert counters["inferwatch_shadow_compared_total"][("1",)] == 2
    assert counters["inferwatch_shadow_dropped_total"][("1", "queue_full")] == 1
    handle.close()


# --- a process challenger closed with calls queued ----------------------------------------

def test_closing_a_process_challenger_counts_the_call_under_way_and_every_queued_one(
        scraper, tmp_path):
    marker = tmp_path / "started"
    registry = scraper.registry
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Hanging(str(marker)), version="2", mode="process",
                               timeout=600.0, registry=registry)
    champion.predict(np.ones((1, 2)))
    deadline = time.monotonic() + 120.0  # a spawned child imports numpy first
    while not (marker.exists() and marker.read_text()):
        assert time.monotonic() < deadline, "the child's call never began"
        time.sleep(0.01)
    for _ in range(3):
        champion.predict(np.ones((1, 2)))
    assert handle.queued() == 3
    handle.close()
    for thread in handle._threads:
        thread.join(WAIT)
    registry.drain()
    assert scraper.total("inferwatch_shadow_sampled_total", model_version="2") == 4
    assert scraper.value("inferwatch_shadow_dropped_total", model_version="2",
                         reason="shutdown") == 4
    assert scraper.value("inferwatch_requests_in_flight", model_version="2") == 0


# --- events of calls that cannot be compared ----------------------------------------------

class Labels:
    def predict(self, X):
        return np.zeros(len(X), dtype=int)


class Cube:
    def predict(self, X):
        return np.zeros((len(X), 3, 2))


class Text:
    def predict(self, X):
        return "a generated answer"


class OtherOutput:
    def predict(self, X):
        return {"other": np.zeros(len(X))}


def _shadow_event(challenger, registry, make_log, tmp_path):
    """The one event of `challenger`'s call in the event log, once a `Labels()` champion with
    `challenger` in its shadow answered one call (request id "r-1"); and the shadow."""
    path = tmp_path / "events.jsonl"
    events = make_log(path)
    champion = inferwatch.instrument(Labels(), name="m", version="1", registry=registry,
                                     events=events)
    handle = inferwatch.shadow(champion, challenger, version="2", registry=registry,
                               timeout=60.0)
    champion.predict(np.ones((4, 2)), request_id="r-1")
    assert handle.flush(WAIT)
    registry.drain()
    assert events.flush(WAIT)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    (event,) = [r for r in records if r.get("role") == "shadow"]
    return event, handle


@pytest.mark.parametrize("challenger", [Cube(), Text(), OtherOutput()],
                         ids=["shape", "text", "other-output"])
def test_an_incomparable_call_is_written_to_the_event_log_marked_so(
        challenger, registry, make_log, tmp_path):
    event, handle = _shadow_event(challenger, registry, make_log, tmp_path)
    assert event["request_id"] == "r-1" and event["model_version"] == "2"
    assert event["incomparable"] is True
    assert handle.monitor.state.counters["inferwatch_shadow_dropped_total"][
        ("1", "incomparable")] == 1
    handle.close()


def test_a_compared_call_is_written_without_the_mark(registry, make_log, tmp_path):
    event, handle = _shadow_event(Labels(), registry, make_log, tmp_path)
    assert "incomparable" not in event
    handle.close()


# --- an outcome that comes before the challenger has answered -----------------------------

def test_an_outcome_for_a_call_under_way_or_queued_scores_the_challenger_once_it_answers(
        scraper):
    registry = scraper.registry
    challenger = Gated()
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, challenger, version="2", registry=registry,
                               timeout=60.0)
    champion.predict(np.array([[1.0, 2.0]]), request_id="under-way")
    assert challenger.entered.wait(WAIT)
    champion.predict(np.array([[3.0, 4.0]]), request_id="queued")
    assert handle.queued() == 1
    mon = registry.monitor("m", "1")
    mon.record_outcome("under-way", 4.0)  # both off by 1.0
    mon.record_outcome("queued", 9.0)  # both off by 2.0
    challenger.gate.set()
    assert handle.flush(WAIT)
    registry.drain()
    errors = handle.monitor.state.histograms["inferwatch_shadow_outcome_error"]
    assert errors[("1", "shadow")].count == 2
    assert errors[("1", "shadow")].sum == pytest.approx(3.0)
    assert errors[("1", "champion")].sum == pytest.approx(3.0)
    # The challenger's own join, as a model in its own right.
    assert scraper.value("inferwatch_outcome_error_count", model_version="2") == 2
    assert scraper.value("inferwatch_outcome_error_sum", model_version="2") == \
        pytest.approx(3.0)
    assert handle._held._calls == {} and handle._held._held == {}
    handle.close()


def test_outcomes_held_for_calls_that_close_drops_are_let_go(registry):
    challenger = Gated()
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, challenger, version="2", registry=registry,
                               timeout=60.0)
    champion.predict(np.ones((1, 2)), request_id="a")
    assert challenger.entered.wait(WAIT)
    champion.predict(np.ones((1, 2)), request_id="b")
    registry.monitor("m", "1").record_outcome("b", 2.0)
    assert handle._held._count == 1
    handle.close()  # "b" never ran; "a" is cut off after close's wait
    challenger.gate.set()
    assert handle._held._held == {} and handle._held._count == 0
    assert "b" not in handle._held._calls


def test_an_outcome_for_a_reused_id_scores_the_call_under_way_not_the_earlier_one(registry):
    challenger = Gated()
    challenger.gate.set()
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, challenger, version="2", registry=registry,
                               timeout=60.0)
    champion.predict(np.array([[1.0, 2.0]]), request_id="r")  # both say 3
    assert handle.flush(WAIT)
    registry.drain()
    challenger.gate.clear()
    challenger.entered.clear()
    champion.predict(np.array([[10.0, 20.0]]), request_id="r")  # both say 30
    assert challenger.entered.wait(WAIT)
    registry.monitor("m", "1").record_outcome("r", 31.0)
    challenger.gate.set()
    assert handle.flush(WAIT)
    registry.drain()
    errors = handle.monitor.state.histograms["inferwatch_shadow_outcome_error"]
    assert errors[("1", "shadow")].count == 1
    assert errors[("1", "shadow")].sum == pytest.approx(1.0)  # not 28, the first call's
    handle.close()


class RowEditing:
    """A champion that scales rows given as lists in place."""

    def predict(self, rows):
        for row in rows:
            row[0] = 0.0
        return [sum(row) for row in rows]


def test_rows_given_as_lists_reach_the_challenger_as_passed(registry):
    champion = inferwatch.instrument(RowEditing(), name="m", version="1", registry=registry)
    seen = []

    class Keeping:
        def predict(self, rows):
            seen.append([list(row) for row in rows])
            return [sum(row) for row in rows]

    handle = inferwatch.shadow(champion, Keeping(), version="2", registry=registry,
                               timeout=60.0)
    rows = [[1.0] * 10 for _ in range(10_000)]  # past the small-copy bound
    champion.predict(rows)
    assert handle.flush(WAIT)
    assert rows[0][0] == 0.0 and seen[0][0][0] == 1.0 and seen[0][-1][0] == 1.0
    handle.close()


def test_held_outcomes_stop_at_their_bound_and_go_with_the_last_call_of_an_id():
    held = HeldOutcomes(max_held=2)
    held.enter("a")
    held.enter("a")  # two calls under one id
    assert held.hold("a", 1.0, 0.0) and held.hold("a", 2.0, 1.0)
    assert not held.hold("a", 3.0, 2.0)  # the bound: scored at once by the caller
    assert held.release("a") == []  # one call of "a" is still under way
    assert held.release("a") == [(1.0, 0.0), (2.0, 1.0)]
    assert not held.hold("a", 4.0, 3.0)  # no call of "a" left
    held.enter("b")
    assert held.hold("b", 5.0, 4.0)  # the bound counts what is held now
