"""Shadows and request ids named by a function, comparisons that fail in the drain, and
streaming champions."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression

import inferwatch
from inferwatch import faults
from inferwatch.core import shadow_compare, shadow_rows
from inferwatch.core.registry import Registry

_EXAMPLES = settings(max_examples=15, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])


def _counter(mon, name: str) -> dict:
    return {k: v for k, v in mon.state.counters.get(name, {}).items() if v}


def _fitted(slope: float) -> LinearRegression:
    X = np.arange(8, dtype=float).reshape(-1, 1)
    return LinearRegression().fit(X, slope * X.ravel())


class _FreshIds:
    """A request-id function that names every call anew (a uuid4), keeping what it gave."""

    def __init__(self) -> None:
        self.given: list[str] = []

    def __call__(self, rows, **kwargs) -> str:
        name = str(uuid.uuid4())
        self.given.append(name)
        return name


# --- 1. one request id per call, shared by champion and challenger ------------------------

def _check_one_id_a_call(mode: str, truth: list[float]) -> None:
    registry = Registry()
    ids = _FreshIds()
    champion = inferwatch.instrument(_fitted(1.0), name="m", version="1", registry=registry,
                                     request_id=ids)
    handle = inferwatch.shadow(champion, _fitted(2.0), version="2", mode=mode, timeout=60.0,
                               registry=registry)
    try:
        for value in truth:
            champion.predict(np.array([[value]]))
        assert handle.flush(60)
        registry.drain()
        # Called once a call: a second call would name the challenger's copy otherwise.
        assert len(ids.given) == len(truth)
        mon = registry.monitor("m", "1")
        for name, value in zip(ids.given, truth):
            mon.record_outcome(name, value)
        registry.drain()
        errors = handle.monitor.state.histograms["inferwatch_shadow_outcome_error"]
        assert errors[("1", "champion")].count == len(truth)
        assert errors[("1", "shadow")].count == len(truth)
        # The challenger's own outcome join found every call too.
        assert _counter(handle.monitor, "inferwatch_outcomes_unmatched_total") == {}
        assert handle.monitor.state.histograms["inferwatch_outcome_error"][()].count == \
            len(truth)
    finally:
        handle.close()


@_EXAMPLES
@given(truth=st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=4))
def test_a_fresh_id_per_call_names_champion_and_challenger_alike(truth):
    _check_one_id_a_call("thread", truth)


def test_a_fresh_id_per_call_names_a_process_challenger_alike():
    # One child process for all the calls: starting one costs seconds.
    _check_one_id_a_call("process", [1.0, -2.5, 40.0])


def test_an_async_champion_names_its_call_once_for_both():
    registry = Registry()
    ids = _FreshIds()

    class AsyncModel:
        async def predict(self, rows):
            return [float(r[0]) for r in rows]

    champion = inferwatch.instrument(AsyncModel(), name="m", version="1", registry=registry,
                                     request_id=ids)
    handle = inferwatch.shadow(champion, _fitted(2.0), version="2", registry=registry)
    try:
        assert asyncio.run(champion.predict([[3.0]])) == [3.0]
        assert handle.flush(30)
        registry.drain()
        assert len(ids.given) == 1
        registry.monitor("m", "1").record_outcome(ids.given[0], 3.0)
        registry.drain()
        errors = handle.monitor.state.histograms["inferwatch_shadow_outcome_error"]
        assert errors[("1", "shadow")].count == 1
    finally:
        handle.close()


def test_two_challengers_and_the_champion_share_one_named_id():
    registry = Registry()
    ids = _FreshIds()
    champion = inferwatch.instrument(_fitted(1.0), name="m", version="1", registry=registry,
                                     request_id=ids)
    handles = inferwatch.shadow(champion, [_fitted(2.0), _fitted(3.0)], version=["2", "3"],
                                registry=registry)
    try:
        champion.predict(np.array([[1.0]]))
        assert all(h.flush(30) for h in handles)
        registry.drain()
        assert len(ids.given) == 1
        registry.monitor("m", "1").record_outcome(ids.given[0], 1.0)
        registry.drain()
        for handle in handles:
            errors = handle.monitor.state.histograms["inferwatch_shadow_outcome_error"]
            assert errors[("1", "shadow")].count == 1
    finally:
        for handle in handles:
            handle.close()


def test_a_model_that_names_request_id_is_not_handed_the_functions_id():
    """The champion's call must not change: a model with a request_id parameter gets only
    an id its caller gave."""
    registry = Registry()
    seen: list[object] = []

    class Named:
        def predict(self, rows, request_id=None):
            seen.append(request_id)
            return [float(r[0]) for r in rows]

    champion = inferwatch.instrument(Named(), name="m", version="1", registry=registry,
                                     request_id=_FreshIds())
    handle = inferwatch.shadow(champion, _fitted(2.0), version="2", registry=registry)
    try:
        champion.predict([[1.0]])
        champion.predict([[1.0]], request_id="given")
        assert seen == [None, "given"]
    finally:
        handle.close()


def test_a_failing_request_id_function_is_counted_once_a_call():
    registry = Registry()

    def broken(rows):
        raise KeyError("id")

    champion = inferwatch.instrument(_fitted(1.0), name="m", version="1", registry=registry,
                                     request_id=broken)
    handle = inferwatch.shadow(champion, _fitted(2.0), version="2", registry=registry)
    try:
        before = faults.internal_error_counts().get("request_id", 0)
        assert champion.predict(np.array([[1.0]])).tolist() == pytest.approx([1.0])
        assert handle.flush(30)
        registry.drain()
        assert faults.internal_error_counts().get("request_id", 0) == before + 1
        assert _counter(handle.monitor, "inferwatch_shadow_compared_total") == {("1",): 1.0}
    finally:
        handle.close()


def test_a_callable_model_whose_forward_names_request_id_is_not_handed_one():
    """A torch-style module: ``__call__`` runs ``forward``, which names request_id."""
    registry = Registry()
    seen: list[object] = []

    class Module:
        def __call__(self, *args, **kwargs):
            return self.forward(*args, **kwargs)

        def forward(self, rows, request_id=None):
            seen.append(request_id)
            return [float(r[0]) for r in rows]

    champion = inferwatch.instrument(Module(), name="m", version="1", registry=registry,
                                     request_id=_FreshIds())
    handle = inferwatch.shadow(champion, Module(), version="2", registry=registry)
    try:
        champion([[1.0]])
        assert handle.flush(30)
        assert seen[0] is None
    finally:
        handle.close()



def test_a_call_sampled_while_another_thread_closes_is_counted_as_dropped():
    """The race tests/test_shadow_lifecycle_close_races.py caught through the second call of the
    request-id function, which is now called once: here the shadow's reading of the
    caller's own id (its text, after the champion's) is the moment close() runs."""
    registry = Registry()
    inside, closed = threading.Event(), threading.Event()
    read: list[int] = []

    class SlowName:
        def __str__(self) -> str:
            read.append(1)
            if len(read) == 2:  # the champion's wrapper read it first
                inside.set()
                closed.wait(30)
            return "r-1"

    champion = inferwatch.instrument(_fitted(1.0), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, _fitted(2.0), version="2", registry=registry)
    caller = threading.Thread(target=champion.predict, args=(np.ones((1, 1)),),
                              kwargs={"request_id": SlowName()})
    caller.start()
    assert inside.wait(30)
    handle.close()
    closed.set()
    caller.join(30)
    assert not caller.is_alive()
    sampled, compared, dropped = _accounts(handle)
    assert (sampled, compared + dropped) == (1, 1)
    assert _counter(handle.monitor, "inferwatch_shadow_dropped_total") == \
        {("1", "shutdown"): 1.0}


# --- 2. a comparison that fails in the drain ------------------------------------------------

def _accounts(handle) -> tuple[float, float, float]:
    """(sampled, compared, dropped) of a challenger's series."""
    state = handle.monitor.state.counters
    return (sum(state["inferwatch_shadow_sampled_total"].values()),
            sum(state["inferwatch_shadow_compared_total"].values()),
            sum(state["inferwatch_shadow_dropped_total"].values()))


class _Labels:
    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        self.classes_ = np.array(["a", "b"])

    def predict(self, rows):
        return np.array([self.labels[int(r[0]) % len(self.labels)] for r in rows])


def _fail_batches(monkeypatch, handle) -> None:
    def fail(pairs):
        raise MemoryError("cannot stack the batch")

    monkeypatch.setattr(shadow_rows, "batches", fail)


def _fail_remember(monkeypatch, handle) -> None:
    def fail(self, calls, found):
        raise TypeError("a row the outcome cache cannot size")

    monkeypatch.setattr(shadow_compare.Comparison, "_remember_calls", fail)


def _fail_fold_batch(monkeypatch, handle) -> None:
    def fail(self, batch, agreement, confusion, differences):
        raise ValueError("rows that no longer line up")

    monkeypatch.setattr(shadow_compare.Comparison, "_fold_batch", fail)


class _FailingCap:
    def fold(self, label):
        raise TypeError(f"a label of an odd type: {label!r}")


def _fail_confusion(monkeypatch, handle) -> None:
    # This comparison's own cap: the registry's and the monitors' caps go on working.
    monkeypatch.setattr(handle.comparison, "_champion_cap", _FailingCap())


@pytest.mark.parametrize("inject", [_fail_batches, _fail_remember, _fail_fold_batch,
                                    _fail_confusion])
def test_a_failing_comparison_is_counted_and_the_drain_goes_on(monkeypatch, inject):
    registry = Registry()
    champion = inferwatch.instrument(_Labels(["a", "b"]), name="m", version="1",
                                     registry=registry)
    handle = inferwatch.shadow(champion, _Labels(["a", "a"]), version="2", registry=registry)
    try:
        with monkeypatch.context() as patch:
            inject(patch, handle)
            for i in range(4):
                champion.predict(np.array([[i]]), request_id=f"r-{i}")
            assert handle.flush(30)
            before = faults.internal_error_counts().get("shadow", 0)
            registry.drain()
            assert faults.internal_error_counts().get("shadow", 0) > before
            # The champion's own series are whole; the challenger's calls are recorded.
            assert _counter(registry.monitor("m", "1"), "inferwatch_requests_total") == \
                {("ok",): 4.0}
            assert _counter(handle.monitor, "inferwatch_requests_total") == {("ok",): 4.0}
            # Every sampled call is compared or dropped, once: nothing lost, nothing kept
            # to fail again at the next drain.
            sampled, compared, dropped = _accounts(handle)
            assert sampled == 4 and compared + dropped == 4
            registry.drain()
            assert _accounts(handle) == (sampled, compared, dropped)
        # The drain goes on comparing once nothing fails.
        for i in range(4, 6):
            champion.predict(np.array([[i]]))
        assert handle.flush(30)
        registry.drain()
        sampled, compared, dropped = _accounts(handle)
        assert sampled == 6 and compared + dropped == 6 and compared >= 2
        assert _counter(handle.monitor, "inferwatch_shadow_agreement_total")
    finally:
        handle.close()


def test_scores_and_differences_survive_a_failing_confusion_label(monkeypatch):
    """One series failing to write loses neither the outcome scores nor the others."""
    registry = Registry()
    champion = inferwatch.instrument(_Labels(["a", "b"]), name="m", version="1",
                                     registry=registry)
    handle = inferwatch.shadow(champion, _Labels(["a", "a"]), version="2", registry=registry)
    try:
        for i in range(2):
            champion.predict(np.array([[i]]), request_id=f"r-{i}")
        assert handle.flush(30)
        registry.drain()
        mon = registry.monitor("m", "1")
        mon.record_outcome("r-0", "a")
        mon.record_outcome("r-1", "b")
        for i in range(2, 4):
            champion.predict(np.array([[i]]))
        assert handle.flush(30)
        _fail_confusion(monkeypatch, handle)
        registry.drain()
        assert _counter(handle.monitor, "inferwatch_shadow_outcomes_total") == {
            ("1", "correct", "correct"): 1.0, ("1", "correct", "incorrect"): 1.0}
        assert _counter(handle.monitor, "inferwatch_shadow_agreement_total") == {
            ("1", "agree"): 2.0, ("1", "disagree"): 2.0}
    finally:
        handle.close()


_OUTPUTS = st.one_of(
    st.none(), st.floats(), st.text(max_size=3), st.booleans(),
    st.lists(st.one_of(st.floats(), st.integers(-10**400, 10**400), st.text(max_size=2),
                       st.none()), max_size=4),
    st.dictionaries(st.text(max_size=2), st.lists(st.floats(), min_size=1, max_size=2),
                    max_size=2),
    st.lists(st.dictionaries(st.sampled_from("xy"), st.floats(), min_size=1), max_size=3),
)


class _Answers:
    """A challenger answering what it is given to answer, in order."""

    def __init__(self, answers: list) -> None:
        self.answers = list(answers)

    def predict(self, rows):
        return self.answers.pop(0) if self.answers else None


@_EXAMPLES
@given(answers=st.lists(_OUTPUTS, min_size=1, max_size=6))
def test_whatever_a_challenger_answers_every_sampled_call_is_accounted_once(answers):
    registry = Registry()
    champion = inferwatch.instrument(_Labels(["a", "b"]), name="m", version="1",
                                     registry=registry)
    handle = inferwatch.shadow(champion, _Answers(answers), version="2", registry=registry)
    try:
        for i in range(len(answers)):
            champion.predict(np.array([[i]]), request_id=f"r-{i}")
        assert handle.flush(30)
        registry.drain()
        sampled, compared, dropped = _accounts(handle)
        assert sampled == len(answers) and compared + dropped == len(answers)
        registry.drain()
        assert _accounts(handle) == (sampled, compared, dropped)
        for i in range(len(answers)):  # outcomes of whatever was compared: never raise
            registry.monitor("m", "1").record_outcome(f"r-{i}", "a")
        registry.drain()
    finally:
        handle.close()


# --- 3. a streaming champion ----------------------------------------------------------------

class _Chat:
    """Answers a prompt with its words, streamed when asked (as an LLM SDK does), and counts
    its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, prompt: str, stream: bool = False):
        self.calls += 1
        words = prompt.split()
        if not stream:
            return [len(word) for word in words]
        return (len(word) for word in words)


class _Items:
    """An SDK's stream object: an iterator, no generator."""

    def __init__(self, items: list) -> None:
        self.items = list(items)

    def __iter__(self):
        return self

    def __next__(self):
        if not self.items:
            raise StopIteration
        return self.items.pop(0)


class _SdkChat(_Chat):
    def __call__(self, prompt: str, stream: bool = False):
        answer = super().__call__(prompt, stream=False)
        return _Items(answer) if stream else answer


@pytest.mark.parametrize("chat", [_Chat, _SdkChat])
@_EXAMPLES
@given(prompts=st.lists(st.tuples(st.text(alphabet="ab ", max_size=12), st.booleans()),
                        min_size=1, max_size=6))
def test_streamed_calls_are_dropped_as_stream_and_the_rest_compared(chat, prompts, caplog):
    registry = Registry()
    champion = inferwatch.instrument(chat(), name="chat", version="1", registry=registry)
    challenger = chat()
    handle = inferwatch.shadow(champion, challenger, version="2", registry=registry)
    caplog.clear()
    try:
        with caplog.at_level(logging.WARNING, logger="inferwatch"):
            for prompt, streamed in prompts:
                answer = champion(prompt, stream=streamed)
                # The caller reads every item of its stream, none taken by the shadow.
                assert list(answer) == [len(word) for word in prompt.split()]
            assert handle.flush(30)
            registry.drain()
        streams = sum(streamed for _, streamed in prompts)
        dropped = _counter(handle.monitor, "inferwatch_shadow_dropped_total")
        assert dropped.get(("1", "stream"), 0) == streams
        sampled, compared, total_dropped = _accounts(handle)
        assert sampled == len(prompts) and compared + total_dropped == len(prompts)
        # The challenger is asked only what can be compared.
        assert challenger.calls == len(prompts) - streams
        told = [r for r in caplog.records if "answers with a stream" in r.getMessage()]
        assert len(told) == min(streams, 1)
        # The champion's own series count every call, streamed or not.
        assert _counter(registry.monitor("chat", "1"), "inferwatch_requests_total") == \
            {("ok",): float(len(prompts))}
    finally:
        handle.close()


def test_a_generator_method_champion_is_dropped_as_stream_with_a_zero_series_first():
    registry = Registry()

    class Tokens:
        def predict(self, rows):
            yield from (float(sum(row)) for row in rows)

    champion = inferwatch.instrument(Tokens(), name="gen", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Tokens(), version="2", registry=registry)
    try:
        # The ratio an alert divides reads 0 before the first streamed call.
        assert handle.monitor.state.counters["inferwatch_shadow_dropped_total"][
            ("1", "stream")] == 0
        assert list(champion.predict([[1.0, 2.0]])) == [3.0]
        assert handle.flush(30)
        registry.drain()
        assert _counter(handle.monitor, "inferwatch_shadow_dropped_total") == \
            {("1", "stream"): 1.0}
        assert _counter(handle.monitor, "inferwatch_requests_total") == {}
    finally:
        handle.close()


def test_an_async_stream_is_dropped_as_stream():
    registry = Registry()

    class AsyncTokens:
        async def predict(self, rows):
            for row in rows:
                yield float(sum(row))

    champion = inferwatch.instrument(AsyncTokens(), name="gen", version="1",
                                     registry=registry)
    handle = inferwatch.shadow(champion, AsyncTokens(), version="2", registry=registry)

    async def read():
        return [item async for item in champion.predict([[1.0], [2.0]])]

    try:
        assert asyncio.run(read()) == [1.0, 2.0]
        assert handle.flush(30)
        registry.drain()
        assert _counter(handle.monitor, "inferwatch_shadow_dropped_total") == \
            {("1", "stream"): 1.0}
    finally:
        handle.close()
