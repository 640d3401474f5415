"""Shadow models: closing a shadow, what the challenger is handed, and how the comparison
counts batches, bool labels and results with nothing in common."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import numpy as np
import pytest

import inferwatch
from inferwatch.core import shadow_copies, shadow_lifetime
from inferwatch.core.shadow_compare import Comparison
from inferwatch.core.state import ModelState
from shadow_models import Summing


class GatedSumming(Summing):
    """Waits for `gate` before answering: the caller has changed its buffers by then."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def predict(self, X=None):
        self.gate.wait(10)
        return super().predict(X)


class Counting(Summing):
    def __init__(self) -> None:
        self.calls = 0

    def predict(self, X=None):
        self.calls += 1
        return super().predict(X)


def _counter(handle, metric):
    return dict(handle.monitor.state.counters.get(metric, {}))


def test_closing_stacked_shadows_in_any_order_restores_the_champion(registry):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    original = champion.__dict__["predict"]
    challengers = [Counting() for _ in range(3)]
    handles = [inferwatch.shadow(champion, c, version=str(v), registry=registry)
               for v, c in enumerate(challengers, start=2)]
    open_ = set(range(3))
    for index in (1, 2, 0):  # the middle layer, then the top, then the bottom
        handles[index].close()
        open_.discard(index)
        before = [c.calls for c in challengers]
        assert champion.predict(np.ones((1, 2))).tolist() == [2.0]
        for h in handles:
            assert h.flush(10)
        assert [c.calls - b for c, b in zip(challengers, before)] == \
            [1 if i in open_ else 0 for i in range(3)]
    assert champion.__dict__["predict"] is original


def test_a_closed_shadow_is_freed_and_recreating_it_2000_times_neither_leaks_nor_recurses(
        registry):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    original = champion.__dict__["predict"]
    challenger = Summing()
    freed = weakref.ref(challenger)
    handle = inferwatch.shadow(champion, challenger, version="2", registry=registry)
    closed = weakref.ref(handle)
    champion.predict(np.ones((1, 2)))
    handle.flush(10)
    handle.close()
    del handle, challenger
    gc.collect()
    assert freed() is None and closed() is None
    live = len(shadow_lifetime.live_shadows)
    for _ in range(2000):
        inferwatch.shadow(champion, Summing(), version="2", registry=registry).close()
    assert champion.predict(np.ones((1, 2))).tolist() == [2.0]
    assert champion.__dict__["predict"] is original
    gc.collect()
    assert len(shadow_lifetime.live_shadows) <= live


def test_flush_after_close_returns_true_at_once_and_counts_the_queue_as_dropped(registry):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    challenger = GatedSumming()
    handle = inferwatch.shadow(champion, challenger, version="2", registry=registry)
    for _ in range(5):
        champion.predict(np.ones((1, 2)))
    handle.close()
    start = time.monotonic()
    assert handle.flush(3) is True
    assert handle.flush(None) is True
    assert time.monotonic() - start < 3.0  # did not wait out flush(3)
    challenger.gate.set()
    dropped = _counter(handle, "inferwatch_shadow_dropped_total")[("1", "shutdown")]
    assert 4 <= dropped <= 5  # one call may already be in its worker's hands


def _fitted_pair(champion_rows, shadow_rows, request_id="r"):
    comparison = Comparison("1", declared_classes=["a", "b"])
    comparison.add("predict", champion_rows, shadow_rows, request_id, at=0.0)
    state = ModelState("m", "2")
    comparison.fold_into(state, now=0.0)
    return comparison, state


@pytest.mark.parametrize("rows", [1, 64, 65, 5000])
def test_every_row_of_a_batch_is_scored_on_its_outcome(rows):
    champion = np.array(["a", "b"] * rows)[:rows]
    shadow = np.array(["a"] * rows)
    comparison, state = _fitted_pair(champion, shadow)
    assert comparison.score("r", champion, at=1.0) == (rows, rows)
    comparison.fold_into(state, now=1.0)
    table = state.counters["inferwatch_shadow_outcomes_total"]
    assert sum(table.values()) == rows
    assert table[("1", "correct", "correct")] == int((champion == "a").sum())


def test_a_batch_past_the_byte_bound_keeps_its_first_rows_and_counts_the_others():
    comparison = Comparison("1", declared_classes=["a", "b"], max_bytes=64 * 1024)
    rows = 20_000
    comparison.add("predict", np.array(["a"] * rows), np.array(["b"] * rows), "r", at=0.0)
    state = ModelState("m", "2")
    comparison.fold_into(state, now=0.0)
    assert comparison._bytes <= comparison.max_bytes
    scored, _ = comparison.score("r", ["a"] * rows, at=1.0)
    comparison.fold_into(state, now=1.0)
    assert 0 < scored < rows
    assert sum(state.counters["inferwatch_shadow_outcomes_total"].values()) == scored
    assert state.counters["inferwatch_outcomes_unmatched_total"] == {
        ("rows_over_bound",): rows - scored}


def test_the_cache_of_both_predictions_stays_within_its_byte_bound():
    comparison = Comparison("1", declared_classes=["a", "b"], max_bytes=256 * 1024)
    state = ModelState("m", "2")
    for call in range(200):
        comparison.add("predict", np.array(["a"] * 300), np.array(["b"] * 300), f"r{call}",
                       at=0.0)
        comparison.fold_into(state, now=0.0)
        assert comparison._bytes <= comparison.max_bytes
    assert 0 < len(comparison._cache) < 200
    assert comparison.knows("r199") and not comparison.knows("r0")


def test_a_big_batch_call_is_scored_for_the_comparison_and_the_challenger(registry):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2))
    y = X.sum(1)
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Summing(), version="2", registry=registry)
    champion.predict(X, request_id="big")
    handle.flush(10)
    registry.drain()
    registry.monitor("m", "1").record_outcome("big", y)
    registry.drain()
    errors = handle.monitor.state.histograms["inferwatch_shadow_outcome_error"]
    assert errors[("1", "shadow")].count == 100 and errors[("1", "champion")].count == 100
    assert handle.monitor.state.histograms["inferwatch_outcome_error"][()].count == 100
    handle.close()


def _pandas_series():
    pd = pytest.importorskip("pandas")
    return pd.Series([1.0, 2.0])


def _pandas_frame():
    pd = pytest.importorskip("pandas")
    return pd.DataFrame({"a": [1.0], "b": [2.0]})


def _torch_tensor():
    torch = pytest.importorskip("torch")
    return torch.tensor([[1.0, 2.0]])


def _change_first(buffer):
    if hasattr(buffer, "iloc"):
        buffer.iloc[0] = 100.0
    elif isinstance(buffer, dict):
        buffer["X"][0, 0] = 100.0
    elif isinstance(buffer, tuple):
        buffer[0][0] = 100.0
    else:
        buffer[0][0] = 100.0


INPUTS = {
    "ndarray": lambda: np.array([[1.0, 2.0]]),
    "list of lists": lambda: [[1.0, 2.0]],
    "list of arrays": lambda: [np.array([1.0, 2.0])],
    "tuple of lists": lambda: ([1.0, 2.0],),
    "series": _pandas_series,
    "frame": _pandas_frame,
    "tensor": _torch_tensor,
}


@pytest.mark.parametrize("keyword", [False, True])
@pytest.mark.parametrize("shape", [
    pytest.param(name, marks=pytest.mark.torch) if name == "tensor" else name
    for name in sorted(INPUTS)])
def test_the_challenger_sees_the_input_as_the_champion_call_saw_it(registry, shape, keyword):
    buffer = INPUTS[shape]()
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    challenger = GatedSumming()
    handle = inferwatch.shadow(champion, challenger, version="2", registry=registry)
    if keyword:
        champion.predict(X=buffer)
    else:
        champion.predict(buffer)
    _change_first(buffer)
    challenger.gate.set()
    assert handle.flush(10)
    registry.drain()
    difference = handle.monitor.state.histograms["inferwatch_shadow_difference"]
    assert difference[("1", "value")].count > 0 and difference[("1", "value")].sum == 0.0
    handle.close()


class DictInput:
    def predict(self, features):
        return np.asarray(features["X"], dtype=float).sum(1)


class GatedDictInput(DictInput):
    def __init__(self) -> None:
        self.gate = threading.Event()

    def predict(self, features):
        self.gate.wait(10)
        return super().predict(features)


class Buffered:
    """Refills one output buffer on every call, as some runtimes do."""

    def __init__(self) -> None:
        self.out = {"score": np.zeros(1)}

    def predict(self, X):
        self.out["score"][:] = np.asarray(X, dtype=float).sum()
        return self.out


class GatedScore(GatedSumming):
    def predict(self, X=None):
        return {"score": super().predict(X)}


def test_a_dict_of_arrays_and_the_champions_own_result_are_copied_at_call_time(registry):
    champion = inferwatch.instrument(DictInput(), name="d", version="1", registry=registry)
    challenger = GatedDictInput()
    handle = inferwatch.shadow(champion, challenger, version="2", registry=registry)
    features = {"X": np.array([[1.0, 2.0]])}
    champion.predict(features)
    _change_first(features)
    challenger.gate.set()
    assert handle.flush(10)
    registry.drain()
    difference = handle.monitor.state.histograms["inferwatch_shadow_difference"]
    assert difference[("1", "value")].sum == 0.0
    handle.close()

    buffered = inferwatch.instrument(Buffered(), name="b", version="1", registry=registry)
    gated = GatedScore()
    handle = inferwatch.shadow(buffered, gated, version="2", registry=registry)
    buffered.predict(np.array([[1.0, 2.0]]))
    buffered.predict(np.array([[5.0, 5.0]]))  # refills the first call's result
    gated.gate.set()
    assert handle.flush(10)
    registry.drain()
    difference = handle.monitor.state.histograms["inferwatch_shadow_difference"]
    assert difference[("1", "score")].count == 2 and difference[("1", "score")].sum == 0.0
    handle.close()


def test_inputs_past_the_copy_bound_are_handed_on_uncopied():
    big = np.zeros(shadow_copies.COPY_LIMIT_BYTES // 8 + 1)
    small = np.zeros(4)
    assert shadow_copies.frozen(big) is big
    assert shadow_copies.frozen([big]) is not None
    copied = shadow_copies.frozen([small, {"k": small}])
    assert copied[0] is not small and copied[1]["k"] is not small
    assert shadow_copies.frozen([[0.0] * 100_000])[0].__class__ is list


class Labels:
    """Answers fixed labels, whatever the rows."""

    def __init__(self, labels, classes) -> None:
        self.labels = labels
        self.classes_ = np.array(classes)

    def predict(self, X):
        return np.array(self.labels)


@pytest.mark.parametrize("champion_labels, shadow_labels", [
    ([True, False, True, False], [1, 0, 1, 0]),
    ([1, 0, 1, 0], [True, False, True, False]),
])
def test_bool_and_0_1_classes_agree_as_outcome_scoring_counts_them(
        registry, champion_labels, shadow_labels):
    classes = sorted(set(champion_labels))
    champion = inferwatch.instrument(Labels(champion_labels, classes), name="m", version="1",
                                     registry=registry)
    handle = inferwatch.shadow(champion, Labels(shadow_labels, sorted(set(shadow_labels))),
                               version="2", registry=registry)
    champion.predict(np.ones((4, 2)))
    assert handle.flush(10)
    registry.drain()
    assert _counter(handle, "inferwatch_shadow_agreement_total") == {
        ("1", "agree"): 4, ("1", "disagree"): 0}
    confusion = _counter(handle, "inferwatch_shadow_confusion_total")
    assert all(c == s for (_, c, s) in confusion) and sum(confusion.values()) == 4
    handle.close()


class Wide:
    def predict(self, X):
        return np.zeros((len(X), 3))


class Named:
    def predict(self, X):
        return {"score": np.zeros(len(X))}


@pytest.mark.parametrize("challenger", [Wide(), Named()])
def test_results_with_no_output_in_common_are_dropped_as_incomparable(registry, challenger):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, challenger, version="2", registry=registry)
    for _ in range(5):
        champion.predict(np.ones((4, 2)))
    assert handle.flush(10)
    registry.drain()
    assert _counter(handle, "inferwatch_shadow_compared_total") == {("1",): 0}
    assert _counter(handle, "inferwatch_shadow_dropped_total")[("1", "incomparable")] == 5
    handle.close()
