"""A function that returns None on every call (a handler with nothing to give back): a
drain of such calls reads the first and counts the rest alike
(``PredictionBatch._add_nones``), with the series, the rows kept for each id and the
outcomes judged that reading each None alone makes, on the fast path and under
``request_id=``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.core.prediction_batch import PredictionBatch
from inferwatch.core.registry import Registry
from test_float_fold import _same, drained_state
from test_outcomes_array_rows import _assert_same_samples
from test_outcomes_dict_records import _judged


@st.composite
def _drain(draw: st.DrawFn) -> list[tuple[object, str | None]]:
    """Calls of one drain, most returning None; in some drains a float among them."""
    calls = [(None, draw(st.sampled_from([None, "r-1", "r-2", f"u-{number}"])))
             for number in range(draw(st.integers(1, 20)))]
    if draw(st.integers(0, 3)) == 0:
        calls[draw(st.integers(0, len(calls) - 1))] = (0.5, draw(st.sampled_from([None, "f"])))
    return calls


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(drains=st.lists(_drain(), min_size=1, max_size=3),
       task=st.sampled_from([{}, {"task": "classification"}, {"task": "regression"}]),
       cache_bytes=st.sampled_from([2048, 2**20]))
def test_none_results_drain_as_each_read_alone(monkeypatch, drains, task, cache_bytes):
    def truth(result):
        return "cat" if result is None else 1.0

    counted = _judged(drains, task, 50, cache_bytes, truth)
    with monkeypatch.context() as patched:
        patched.setattr(PredictionBatch, "_add_nones", lambda self, calls, probabilities: False)
        alone = _judged(drains, task, 50, cache_bytes, truth)
    _assert_same_samples(counted[0], alone[0])
    assert counted[1] == alone[1]


def test_a_drain_of_nones_is_counted_at_once(monkeypatch):
    """The fold above is the one such drains take (a test of a fold that never ran would
    prove nothing): three calls, then three under request ids, each a missing prediction."""
    taken: list[int] = []
    fold = PredictionBatch._add_nones

    def watched(self, calls, probabilities):
        taken.append(calls)
        return fold(self, calls, probabilities)

    monkeypatch.setattr(PredictionBatch, "_add_nones", watched)
    series, entries = _judged([[(None, None)] * 3, [(None, f"r-{i}") for i in range(3)]],
                              {}, 50, 2**20, lambda result: "cat")
    assert taken == [3, 3]
    labels = (("model", "m"), ("model_version", "1"))
    assert series["inferwatch_invalid_predictions_total", (*labels, ("reason", "nan"))] == 6
    assert series["inferwatch_outcomes_unmatched_total",
                  (*labels, ("reason", "unsupported_prediction"))] == 3
    assert sorted(entries[1]) == ["r-0", "r-1", "r-2"]


@given(chunks=st.lists(st.lists(st.sampled_from([None, None, None, 0.5]).map(
    lambda result: (0.01, result)), min_size=1, max_size=10), min_size=1, max_size=3),
       task=st.sampled_from(["auto", "classification", "regression"]))
@settings(max_examples=40, deadline=None)
def test_none_results_leave_the_state_of_each_read_alone(chunks, task):
    """The whole state, the task it shows among it (a model whose every call returned
    None shows no task yet: ``auto``)."""

    def state() -> dict:
        registry = Registry(drain_interval=3600)
        try:
            return drained_state(registry.monitor("m", "1").configure(task=task), chunks)
        finally:
            registry.close()

    counted = state()
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(PredictionBatch, "_add_nones", lambda self, calls, probabilities: False)
        alone = state()
    assert _same(counted, alone), (counted, alone)


@pytest.mark.parametrize("later, shown", [(None, "auto"), (3.5, "regression"),
                                          ("cat", "classification"),
                                          (np.array([1, 0]), "classification")])
@pytest.mark.parametrize("calls_first", [1, 3])
def test_none_first_leaves_the_task_to_what_the_model_returns(later, shown, calls_first):
    """A model whose first drained calls returned None (a warm-up, a handler that answered
    elsewhere) shows the task its later results show: a None read as a label made a
    regressor ``task="classification"`` for good."""
    registry = Registry(drain_interval=3600)
    try:
        monitor = registry.monitor("m", "1")
        for _ in range(calls_first):
            monitor.record_call(0.01, None)
        monitor.drain(now=1.0)
        assert monitor.state.info["task"] == "auto"
        monitor.record_call(0.01, later)
        monitor.drain(now=2.0)
        assert monitor.state.info["task"] == shown
    finally:
        registry.close()


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_declared_task_is_kept_through_none_results(task):
    registry = Registry(drain_interval=3600)
    try:
        monitor = registry.monitor("m", "1").configure(task=task)
        monitor.record_call(0.01, None)
        monitor.drain(now=1.0)
        assert monitor.state.info["task"] == task
    finally:
        registry.close()
