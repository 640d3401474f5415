"""``mon.request()`` as serving code really uses it: opened and closed out of order, in
generators, in other tasks and threads, closed twice, entered twice, never closed; and
what it keeps of the buffers handed to it."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults
from inferwatch.core.call_input import snapshot_input
from inferwatch.core.registry import Registry
from inferwatch.core.request import Request, current_request
from request_totals import request_totals


def _stage_counts(monitor: object) -> dict[str, int]:
    monitor.drain()
    series = monitor.state.histograms.get("inferwatch_stage_duration_seconds", {})
    return {labels[0]: int(histogram.count) for labels, histogram in series.items()}


def test_a_request_closed_twice_counts_once(registry):
    """Web middleware and error handlers may both end a request: one request, one count."""
    mon = registry.monitor("m", "1")
    request = Request.open(mon, "r-1")
    request.close(None)
    request.close(ValueError)
    request.__exit__(None, None, None)
    assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


def test_a_request_object_entered_twice_records_each_request_on_its_own(registry):
    """``with r:`` twice before a drain: the second block must not rewrite the record the
    first one handed over (same list of stages, same duration)."""
    mon = registry.monitor("m", "1")
    request = mon.request(request_id="r-1")
    with request, request.stage("first"):
        pass
    with request, request.stage("second"):
        pass
    assert _stage_counts(mon) == {"first": 1, "second": 1}
    assert request_totals(mon)["ok"] == 2.0


def test_a_generator_closed_inside_a_request_is_cancelled_not_an_error(registry):
    """A streaming endpoint whose client stopped reading: GeneratorExit is the consumer
    going away (as for instrumented streams), not a model error burning the budget."""
    mon = registry.monitor("m", "1")

    def stream():
        with mon.request() as r, r.stage("generate"):
            yield 1
            yield 2

    items = stream()
    assert next(items) == 1
    items.close()
    assert request_totals(mon) == {"ok": 0.0, "error": 0.0, "cancelled": 1.0, "in_flight": 0}
    assert mon.state.counters.get("inferwatch_errors_total", {}) == {}
    assert _stage_counts(mon) == {"generate": 1}


@pytest.mark.parametrize("where", ["task", "thread"])
def test_a_request_never_closed_does_not_stay_in_flight(registry, where):
    """A request opened and dropped (an ASGI app that returned early) goes away with its
    task's or thread's context: it is counted as cancelled, not in flight forever."""
    mon = registry.monitor("m", "1")

    def leave_open() -> None:
        mon.request(request_id="r-1").__enter__()

    if where == "task":
        async def handler() -> None:
            leave_open()

        async def main() -> None:
            await asyncio.create_task(handler())

        asyncio.run(main())
    else:
        thread = threading.Thread(target=leave_open)
        thread.start()
        thread.join()
    gc.collect()
    assert request_totals(mon) == {"ok": 0.0, "error": 0.0, "cancelled": 1.0, "in_flight": 0}


def test_a_generator_resumed_inside_another_request_leaves_that_request_open(registry):
    """A generator holding a request open is finished inside the caller's own request:
    the caller's request must stay the open one, so its model call is its inference stage
    (not a call of its own, and not lost)."""
    model = inferwatch.instrument(lambda x: 0.25, name="m", version="1", registry=registry)
    mon = registry.monitor("m", "1")

    def pipeline():
        with mon.request(request_id="inner"):
            yield 1

    steps = pipeline()
    next(steps)
    with mon.request(request_id="outer") as outer:
        with pytest.raises(StopIteration):
            next(steps)
        assert current_request() is outer
        assert model(1.0) == 0.25
    assert [stage for stage, _ in outer.record.stages] == ["inference"]
    assert outer.record.prediction == 0.25
    assert current_request() is None
    assert request_totals(mon) == {"ok": 2.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


def test_a_request_exited_in_another_task_is_no_internal_fault(registry):
    """Opened in a connection's task, closed in the task that sends the response: a
    supported pattern, not a fault of inferwatch; the opening task's later calls are calls
    of their own."""
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry)
    mon = registry.monitor("m", "1")
    before = faults.internal_error_counts().get("request", 0)

    async def main() -> None:
        request = mon.request(request_id="r-1")
        await request.__aenter__()

        async def respond() -> None:
            await request.__aexit__(None, None, None)

        await asyncio.create_task(respond())
        assert current_request() is None
        model(1.0)

    asyncio.run(main())
    assert faults.internal_error_counts().get("request", 0) == before
    assert request_totals(mon) == {"ok": 2.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


# A sequence of opens and closes of a few request objects in one context, in any order
# (generators, callbacks and exit stacks do not keep to nesting), objects re-entered too.
_STEPS = st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=30)


@settings(max_examples=200)
@given(_STEPS)
def test_requests_opened_and_closed_in_any_order_count_once_each(steps):
    """Whatever the order: every block is one request, the open request is the one entered
    last of those still open, none stays in flight, and nothing loops."""
    registry = Registry()
    try:
        monitors = [registry.monitor("a", "1"), registry.monitor("b", "1")]
        requests = [monitors[i % 2].request(request_id=i) for i in range(4)]

        def run() -> int:
            open_order: list[int] = []
            blocks = 0
            for enter, i in steps:
                request = requests[i]
                if enter and i not in open_order:
                    request.__enter__()
                    open_order.append(i)
                    blocks += 1
                elif not enter and i in open_order:
                    request.__exit__(None, None, None)
                    open_order.remove(i)
                expected = requests[open_order[-1]] if open_order else None
                assert current_request() is expected
            for i in reversed(open_order):
                requests[i].__exit__(None, None, None)
            assert current_request() is None
            return blocks

        blocks = contextvars.Context().run(run)
        totals = [request_totals(mon) for mon in monitors]
        assert sum(t["ok"] for t in totals) == blocks
        assert all(t["in_flight"] == 0 for t in totals)
    finally:
        registry.close()


def _as_matrix(array: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(array)


_SUBCLASS_BUFFERS = st.builds(
    lambda rows, cols, seed, kind: (
        np.ma.masked_array(np.random.default_rng(seed).random((rows, cols)),
                           mask=np.random.default_rng(seed + 1).random((rows, cols)) < 0.3)
        if kind == "masked" else _as_matrix(np.random.default_rng(seed).random((rows, cols)))),
    st.integers(1, 4), st.integers(1, 4), st.integers(0, 99), st.sampled_from(["masked", "matrix"]))


@settings(max_examples=60)
@given(_SUBCLASS_BUFFERS)
def test_features_in_a_numpy_subclass_are_kept_as_handed_over(buffer):
    """docs/shapes.md: what is handed to ``r.features()`` is captured then, a small numpy
    array copied; a masked array or np.matrix buffer refilled for the next request too."""
    before = np.ma.getdata(buffer).copy(), np.ma.getmaskarray(buffer).copy()
    kept = snapshot_input(buffer)
    buffer[...] = -1.0
    if isinstance(buffer, np.ma.MaskedArray):
        buffer[...] = np.ma.masked
    assert type(kept) is type(buffer)
    assert np.array_equal(np.ma.getdata(kept), before[0])
    assert np.array_equal(np.ma.getmaskarray(kept), before[1])


def test_a_masked_features_buffer_refilled_after_the_request_is_checked_as_it_was(registry):
    reference = inferwatch.Reference.from_data(np.random.default_rng(0).random((200, 2)))
    mon = registry.monitor("m", "1").configure(reference=reference)
    buffer = np.ma.masked_array(np.full((1, 2), 0.5), mask=[[False, False]])
    with mon.request() as r:
        r.features(buffer)
    buffer[:] = np.ma.masked  # the next request's row: both values missing
    mon.drain()
    assert mon.state.counters.get("inferwatch_feature_missing_total", {}) == {}


def _quality(monitor) -> dict[str, dict]:
    counters = monitor.state.counters
    return {name: {k[0]: v for k, v in counters.get(name, {}).items() if v}
            for name in ("inferwatch_feature_missing_total",
                         "inferwatch_feature_out_of_range_total")}


_REFERENCE_ROWS = np.random.default_rng(0).normal(size=(200, 3))


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(st.lists(st.one_of(st.floats(-2, 2), st.just(np.nan), st.just(50.0)),
                              min_size=3, max_size=3), min_size=1, max_size=5),
       keyword=st.booleans())
def test_a_model_call_inside_a_request_is_checked_against_the_reference(rows, keyword):
    """Calls joined to a request (every request of the web middleware) were never checked:
    their input was not the request's features, so missing values, ranges and drift went
    uncounted unless the caller also called r.features()."""
    registry = Registry(drain_interval=3600)
    try:
        reference = inferwatch.Reference.from_data(_REFERENCE_ROWS)
        model = inferwatch.instrument(lambda x, flag=None: np.zeros(len(x)), name="m",
                                      version="1", reference=reference, registry=registry)
        alone = inferwatch.instrument(lambda x: np.zeros(len(x)), name="alone", version="1",
                                      reference=reference, registry=registry)
        x = np.array(rows, dtype=float)
        alone(x)  # the same input in a call of its own: what the request must count
        with registry.monitor("m", "1").request(request_id="r-1"):
            model(x, flag=1) if keyword else model(x)
        registry.drain()
        inside, outside = registry.monitor("m", "1"), registry.monitor("alone", "1")
        assert _quality(inside) == _quality(outside)
        now = time.time()
        windows = [m.state.extras["drift"].rows(now) for m in (inside, outside)]
        assert windows[0] == windows[1] == len(rows)
    finally:
        registry.close()


def test_features_given_to_the_request_win_over_the_model_input(registry):
    reference = inferwatch.Reference.from_data(_REFERENCE_ROWS)
    model = inferwatch.instrument(lambda x: np.zeros(len(x)), name="m", version="1",
                                  reference=reference, registry=registry)
    with registry.monitor("m", "1").request() as r:
        r.features(np.array([[0.0, 0.0, 0.0]]))
        model(np.array([[np.nan, 0.0, 99.0]]))
    registry.drain()
    assert _quality(registry.monitor("m", "1")) == {
        "inferwatch_feature_missing_total": {}, "inferwatch_feature_out_of_range_total": {}}


def test_web_middleware_requests_are_checked_against_the_reference(registry):
    from inferwatch.serving.middleware import InstrumentMiddleware

    reference = inferwatch.Reference.from_data(_REFERENCE_ROWS)
    model = inferwatch.instrument(lambda x: np.zeros(len(x)), name="fraud", version="1",
                                  reference=reference, registry=registry)

    async def app(scope, receive, send):
        model(np.array([[np.nan, 0.0, 99.0]]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    wrapped = InstrumentMiddleware(app, routes={"/score": "fraud"}, registry=registry)

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        pass

    for _ in range(2):
        asyncio.run(wrapped({"type": "http", "path": "/score", "headers": []}, receive, send))
    registry.drain()
    assert _quality(registry.monitor("fraud", "1")) == {
        "inferwatch_feature_missing_total": {"x0": 2.0},
        "inferwatch_feature_out_of_range_total": {"x2": 2.0}}


def test_a_call_of_a_model_joins_its_own_request_through_another_models_block(registry):
    """A ranker's request opened inside the fraud model's request: a fraud call made in the
    inner block belongs to the outer fraud request (it was counted as a call of its own,
    and the fraud request had no inference stage)."""
    fraud = inferwatch.instrument(lambda x: 0.5, name="fraud", version="1", registry=registry)
    ranker = inferwatch.instrument(lambda x: 0.7, name="ranker", version="1",
                                   registry=registry)
    outer, inner = registry.monitor("fraud", "1"), registry.monitor("ranker", "1")
    with outer.request(request_id="r-1"), inner.request(request_id="r-2"):
        ranker(1)
        fraud(1)
    registry.drain()
    for monitor in (outer, inner):
        counters = monitor.state.counters
        assert counters["inferwatch_requests_total"][("ok",)] == 1
        stages = monitor.state.histograms["inferwatch_stage_duration_seconds"]
        assert stages[("inference",)].count == 1
