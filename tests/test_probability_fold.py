"""The fold of a few class-probability rows (core/probability_fold.py) leaves the state the
general fold leaves: the same series in the same order, the same counts, sums, sketches,
invalid counts and admitted labels, and the same pending bound, on random chunks of
``predict_proba`` calls made through the instrumented model as users make them (rows
that sum to 1 or not, ties, zeros of both signs, NaN and values past [0, 1], float32,
two to nine columns, several class namings, tasks, caps and options)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.core.instrument import instrument
from inferwatch.core.probability_fold import FEW_ROWS, MOST_ROWS
from inferwatch.core.registry import Registry
from test_float_fold import _same, both_folds
from tick_clock import thread_ticks

NOW = 1_700_000_000.0

_cell = st.one_of(
    st.floats(0.0, 1.0),
    st.sampled_from([0.0, -0.0, 1.0, 0.5, 1e-300, 1.0 - 1e-12]),
    st.sampled_from([math.nan, math.inf, -1e-9, 1.0 + 1e-9, 1.5, -0.2]),
)


@st.composite
def _chunks(draw: st.DrawFn) -> tuple[int, list[list[np.ndarray]]]:
    """Drains of calls that each return a (rows, width) matrix: one width and rows per
    call (one model's predict_proba); a drain holds rows that sum to 1 or near it, some
    with rows of any cells among them."""
    width = draw(st.integers(2, 9))
    rows = draw(st.sampled_from([1, 1, 2, 3, 7, 9]))
    dtype = draw(st.sampled_from([np.float64, np.float64, np.float32]))

    def row(clean: bool) -> list[float]:
        if clean or draw(st.integers(0, 3)):
            weights = draw(st.lists(st.integers(0, 9), min_size=width, max_size=width))
            total = sum(weights) or 1
            return [w / total for w in weights]
        return draw(st.lists(_cell, min_size=width, max_size=width))

    drains = []
    for _ in range(draw(st.integers(2, 4))):
        calls, clean = draw(st.integers(1, 12)), draw(st.booleans())
        drains.append([np.array([row(clean) for _ in range(rows)], dtype=dtype)
                       for _ in range(calls)])
    return width, drains


def _classes(width: int) -> st.SearchStrategy:
    return st.sampled_from([
        None,
        list(range(width)),
        [3 * j - 4 for j in reversed(range(width))],  # integers out of order, negatives
        [f"c{(7 * j) % width}" for j in range(width)],  # text out of order
        [True, False] if width == 2 else list(range(width + 1)),  # bools; or a mismatch
        [np.array([0, 1])] * width,  # a multi-label classifier
    ])


_options = st.fixed_dictionaries({
    "task": st.sampled_from(["auto", "auto", "classification", "regression"]),
    "output_range": st.one_of(st.none(), st.just((0.1, 0.9))),
    "value_buckets": st.one_of(st.none(), st.just((0.0, 0.5, 1.0))),
    "max_outputs": st.sampled_from([20, 20, 3]),
    "max_classes": st.sampled_from([50, 50, 2]),
})


class _Classifier:
    """A classifier whose predict_proba gives back the matrices it is handed, in turn."""

    def __init__(self, classes: list | None) -> None:
        if classes is not None:
            self.classes_ = classes
        self.answers: list[np.ndarray] = []

    def predict_proba(self, x: object) -> np.ndarray:
        return self.answers.pop(0)


def _state_of(drains: list[list[np.ndarray]], options: dict, classes: list | None
              ) -> tuple[dict, tuple, list]:
    """The state (its loading time left out), pending bound and label caps after draining
    each of `drains` in turn, through whichever fold monitor_drain uses."""
    registry = Registry(drain_interval=3600)
    try:
        model = _Classifier(classes)
        with pytest.MonkeyPatch.context() as patch:
            # The wrapper's clock, read as it is made: latencies the same in both runs.
            patch.setattr(time, "perf_counter", thread_ticks())
            wrapped = instrument(model, name="m", version="1", registry=registry)
        monitor = registry.monitors()[0].configure(**options)
        for step, calls in enumerate(drains):
            for answer in calls:
                # A buffer the model refills: the drain must read what each call returned.
                model.answers.append(answer.copy())
                wrapped.predict_proba([[0.0]])
            monitor.drain(now=NOW + step)
        data = monitor.state.to_dict()
        data.pop("loaded_at")
        caps = [(name, sorted(cap._seen), cap.overflowed)
                for name, cap in sorted(monitor._caps.items())]
        return data, (monitor._kept_per_call, monitor._sized, monitor._chunk), caps
    finally:
        registry.close()


def _both_ways(drains: list, options: dict, classes: list | None) -> tuple:
    return both_folds("fold_probability_rows", lambda: _state_of(drains, options, classes))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), options=_options)
def test_few_probability_rows_fold_as_the_general_fold_folds_them(data, options):
    width, drains = data.draw(_chunks())
    classes = data.draw(_classes(width))
    fast, general, used = _both_ways(drains, options, classes)
    assert _same(fast, general), (fast, general)
    # The first drain admits the outputs: only a later one may fold here, and one that does
    # held nothing the general fold counts as invalid but a row's sum.
    assert not used[0]
    for calls, folded in zip(drains[1:], used[1:]):
        if folded:
            stacked = np.concatenate(calls).astype(np.float64)
            assert stacked.shape[0] <= MOST_ROWS
            assert ((stacked >= 0) & (stacked <= 1)).all()


@pytest.mark.parametrize("classes", [None, [0, 1], ["no", "yes"], [2, 0, 1], ["b", "c", "a"]])
@pytest.mark.parametrize("rows", [1, 4, 30])
def test_a_classifiers_few_rows_take_this_fold_after_the_first_drain(classes, rows):
    width = 2 if classes is None else len(classes)
    rng = np.random.default_rng(width * 10 + rows)
    drains = [[rng.dirichlet(np.ones(width), size=rows) for _ in range(10)]
              for _ in range(3)]
    fast, general, used = _both_ways(drains, {}, classes)
    assert used == [False, True, True]
    assert _same(fast, general)
    counts = fast[0]["counters"]["inferwatch_predicted_class_total"]
    assert sum(count for _, count in counts) == 30 * rows


@pytest.mark.parametrize("why, answer", [
    ("a row with NaN", np.array([[np.nan, 1.0]])),
    ("a value past 1", np.array([[1.5, -0.5]])),
    ("one column", np.array([[0.7]])),
    ("too many rows", np.full((MOST_ROWS + 1, 2), 0.5)),
    ("integers", np.array([[0, 1]])),
])
def test_what_this_fold_does_not_read_goes_to_the_general_fold(why, answer):
    valid = [np.array([[0.25, 0.75]])] * 3
    drains = [valid, [*valid, answer], valid]
    fast, general, used = _both_ways(drains, {}, None)
    assert used == [False, False, True], why
    assert _same(fast, general), why


def test_an_output_the_cap_would_fold_goes_to_the_general_fold():
    # Three classes under a cap of two outputs: the third column is folded into __other__
    # as each row's sum of the folded columns, which only the general fold writes.
    drains = [[np.array([[0.2, 0.3, 0.5]])] * 4] * 3
    fast, general, used = _both_ways(drains, {"max_outputs": 2}, None)
    assert used == [False, False, False]
    assert _same(fast, general)
    outputs = [labels for labels, _ in fast[0]["summaries"]["inferwatch_prediction"]]
    assert outputs == [["0"], ["1"], ["__other__"]]


def _one_hot(width: int, columns: list[int]) -> np.ndarray:
    rows = np.zeros((len(columns), width))
    rows[np.arange(len(columns)), columns] = 1.0
    return rows


@pytest.mark.parametrize("classes", [["b", "c", "a", "d"], [2, 0, 1, 5]])
@pytest.mark.parametrize("max_classes", [50, 3])
@pytest.mark.parametrize("calls", [2, FEW_ROWS])  # read in Python, or with numpy
def test_classes_first_seen_in_this_fold_come_in_the_general_folds_order(classes,
                                                                        max_classes, calls):
    # The first drain predicts the last class only; the second brings three new ones, in an
    # order that is neither the columns' nor the labels' sorted order. Integer classes are
    # counted by value, text ones as they first come: the series (and, under a cap of three
    # classes, which two are admitted) follow that order.
    drains = [[_one_hot(4, [3])] * 2, [_one_hot(4, [1, 2, 0])] * calls]
    fast, general, used = _both_ways(drains, {"max_classes": max_classes}, classes)
    assert used == [False, True]
    assert _same(fast, general), (fast[0]["counters"], general[0]["counters"])


@pytest.mark.parametrize("calls", [1, FEW_ROWS + 1])
def test_a_row_of_eight_classes_sums_as_numpy_sums_it(calls):
    # Summed left to right this row is 1.0010000000000001, past the tolerance of a sum of
    # probabilities; numpy sums eight values pairwise, to 1.001, which is within it.
    row = [0.24018141444112387, 0.15066276339371604, 0.08339548606924092,
           0.11761363956508934, 0.007880010153292028, 0.03458209227326655,
           0.18660270345963934, 0.1800818906446319]
    drains = [[np.array([row])] * calls] * 3
    fast, general, used = _both_ways(drains, {}, None)
    assert used == [False, True, True]
    assert _same(fast, general)
    invalid = dict((tuple(labels), count) for labels, count
                   in fast[0]["counters"]["inferwatch_invalid_predictions_total"])
    assert invalid.get(("probability_sum",), 0) == 0



def test_a_fault_while_reading_leaves_the_calls_to_the_general_fold(monkeypatch):
    # Whatever this fold fails on (here its naming of the class columns), the calls are
    # still counted: the general fold takes them, and counts its own faults as ever.
    from inferwatch.core import probability_fold

    def broken(*args: object) -> list[str]:
        raise RuntimeError("a column name that cannot be read")

    drains = [[np.array([[0.4, 0.6]])] * 3] * 2
    general = _both_ways(drains, {}, None)[1]
    monkeypatch.setattr(probability_fold, "column_names", broken)
    fast, _, used = _both_ways(drains, {}, None)
    assert used == [False, False]
    assert _same(fast, general)
    requests = dict((tuple(labels), count) for labels, count
                    in fast[0]["counters"]["inferwatch_requests_total"])
    assert requests[("ok",)] == 6
