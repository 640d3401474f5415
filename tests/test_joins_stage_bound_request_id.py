"""Model calls and streams joining an open request: the request's bound of stages, keyword
calls, ``request_id=``, exceptions inside joined calls, calls from threads."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults
from inferwatch.core import request as request_module
from inferwatch.core.registry import Registry
from request_totals import request_totals


def _fault_count(component: str) -> int:
    return faults.internal_error_counts().get(component, 0)


def _in_threads(count: int, work: Any) -> list[Any]:
    """Run `work` in `count` threads, each in a copy of this context (a handler fanning a
    message's rows out to workers inside its request), and wait for them all."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int, context: contextvars.Context) -> None:
        try:
            results[index] = context.run(work, index)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, contextvars.copy_context()))
               for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    return results


# --- the bound of stages ------------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(calls=st.integers(min_value=2, max_value=6))
def test_model_calls_joining_from_threads_keep_the_stage_bound(calls: int) -> None:
    """Model calls from worker threads that all found the request open (within its bound)
    each appended their inference stage: the record went past MAX_STAGES, unbounded by the
    number of calls in flight, where r.stage() stops at it."""
    registry = Registry()
    bound = 3
    original = request_module.MAX_STAGES
    request_module.MAX_STAGES = bound
    try:
        barrier = threading.Barrier(calls, timeout=20)

        def model(x: float) -> float:
            barrier.wait()  # every call has found the request open before any joins
            return x * 2.0

        predict = inferwatch.instrument(model, name="ws", version="1", registry=registry)
        mon = registry.monitor("ws", "1")
        before = _fault_count("request")
        with mon.request() as r:
            with r.stage("receive"):
                pass
            with r.stage("decode"):
                pass
            results = _in_threads(calls, lambda i: predict(float(i)))
            assert results == [2.0 * i for i in range(calls)]
            assert len(r.record.stages) == bound
            assert r.record.has_prediction
        assert _fault_count("request") == before + calls - 1
        assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0,
                                       "in_flight": 0}
    finally:
        request_module.MAX_STAGES = original
        registry.close()


def test_a_stream_ending_in_a_full_request_keeps_the_stage_bound(
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler times the send of each streamed token (r.stage per token) up to the bound;
    the stream's end then appended its inference stage past it."""
    monkeypatch.setattr(request_module, "MAX_STAGES", 4)

    def generate(prompt: str) -> Iterator[str]:
        yield from prompt.split()

    stream = inferwatch.instrument(generate, name="llm", version="1", registry=registry)
    mon = registry.monitor("llm", "1")
    before = _fault_count("request")
    with mon.request() as r:
        sent = []
        for token in stream("a b c d e f"):
            with r.stage("send"):
                sent.append(token)
        assert sent == ["a", "b", "c", "d", "e", "f"]
        assert len(r.record.stages) == 4
        assert r.record.stream is not None and r.record.stream.items == 6
    # Two "send" stages past the bound, then the stream's inference stage.
    assert _fault_count("request") == before + 3
    assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


# --- request_id= on a call inside a request -----------------------------------------------


@settings(max_examples=15, deadline=None)
@given(request_id=st.one_of(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126),
                                    min_size=1, max_size=20),
                            st.integers(min_value=0, max_value=10**9)))
def test_a_calls_request_id_names_a_request_that_has_none(request_id: object) -> None:
    """A handler inside a request without an id (a web request with no X-Request-ID header)
    calls ``predict(x, request_id=payload_id)``: the id was dropped, so the outcome that
    comes back under it later was never joined."""
    registry = Registry()
    try:
        predict = inferwatch.instrument(lambda x: 1, name="fraud", version="1",
                                        task="classification", registry=registry)
        mon = registry.monitor("fraud", "1")
        with mon.request() as r:
            assert predict([0.5], request_id=request_id) == 1
        assert r.request_id == str(request_id)
        mon.record_outcome(request_id, 1)
        mon.drain()
        outcomes = mon.state.counters.get("inferwatch_outcomes_total", {})
        assert outcomes.get(("correct",)) == 1.0
        assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0,
                                       "in_flight": 0}
    finally:
        registry.close()


def test_a_calls_request_id_leaves_the_requests_own_id(registry: Registry) -> None:
    predict = inferwatch.instrument(lambda x, request_id=None: request_id, name="fraud",
                                    version="1", registry=registry)
    mon = registry.monitor("fraud", "1")
    with mon.request(request_id="r-1") as r:
        assert predict([0.5], request_id="r-2") == "r-2"  # the model names it: handed over
    assert r.request_id == "r-1"


# --- a request closing in another thread as a call joins it -------------------------------


@pytest.mark.parametrize("drain", [False, True])
def test_a_calls_input_is_not_written_into_a_request_that_ended(
        registry: Registry, monkeypatch: pytest.MonkeyPatch, drain: bool) -> None:
    """The request ended (the middleware closing it in its own thread) as a joining call
    captured its input: the input was still written into the record handed to the drain,
    where it was checked or not by when the drain ran."""
    np = pytest.importorskip("numpy")
    from inferwatch.core import call_recorder
    from inferwatch.core.request import Request
    from inferwatch.quality.reference import Reference
    from request_totals import run_in_thread

    rows = np.random.default_rng(0).normal(size=(200, 2))
    predict = inferwatch.instrument(lambda x: 0.5, name="fraud", version="1",
                                    reference=Reference.from_data(rows), registry=registry)
    mon = registry.monitor("fraud", "1")
    original = call_recorder.snapshot_input
    opened: list[Request] = []

    def snapshot_input(value: Any) -> Any:
        request = opened[0]
        if request._open:
            run_in_thread(lambda: request.close(None))
            if drain:
                mon.drain()
        return original(value)

    def handler() -> float:
        opened.append(Request.open(mon, "r-1"))
        return predict(np.array([[0.1, 0.2]]))

    monkeypatch.setattr(call_recorder, "snapshot_input", snapshot_input)
    # In a context of its own, as a server's handler runs: closed by another thread, the
    # request stays its context's current one, where no later test may run its calls.
    assert contextvars.copy_context().run(handler) == 0.5
    request = opened[0]
    assert not request.is_open
    assert request.record.features is None  # nothing written after it went to the drain
    assert request_totals(mon) == {"ok": 2.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


def test_each_streamed_call_in_a_request_is_an_inference_stage(registry: Registry) -> None:
    """An agent's handler makes two streamed model calls in one request: the first stream's
    figures are the request's, and the second's duration vanished from its stages, where
    two plain calls are two inference stages."""

    def generate(prompt: str) -> Iterator[str]:
        yield from prompt.split()

    stream = inferwatch.instrument(generate, name="llm", version="1", registry=registry)
    mon = registry.monitor("llm", "1")
    with mon.request() as r:
        assert list(stream("plan the answer")) == ["plan", "the", "answer"]
        assert list(stream("write it")) == ["write", "it"]
    assert [name for name, _ in r.record.stages] == ["inference", "inference"]
    assert r.record.stream is not None and r.record.stream.items == 3
    assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}
