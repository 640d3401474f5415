"""A ``with mon.request()`` block is one request however long it runs or however many
stages it times, and a generator paused inside its own block does not lend that request to
its consumer's calls."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from inferwatch.core import request as request_module
from inferwatch.core.registry import Registry
from inferwatch.core.request import Request, current_request, current_request_of
from inferwatch.serving.exposition import render, resolve_registry


def _samples(registry: Registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every exposed sample, by name and sorted labels, as a scraper parses it."""
    body, _ = render(resolve_registry(registry), None, None)
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples}


def _value(samples: dict, name: str, **labels: str) -> float:
    wanted = {"model": "f", "model_version": "1", **labels}
    return samples.get((name, tuple(sorted(wanted.items()))), 0.0)


def _requests(samples: dict) -> dict[str, float]:
    return {outcome: _value(samples, "inferwatch_requests_total", outcome=outcome)
            for outcome in ("ok", "error", "cancelled")}


def _request_faults(samples: dict) -> float:
    return samples.get(("inferwatch_internal_errors_total", (("component", "request"),)), 0.0)


def _model(registry: Registry, result: object = 0.7, **options: object) -> tuple[object, object]:
    model = inferwatch.instrument(lambda x: result, name="f", version="1", registry=registry,
                                  **options)
    return model, registry.monitor("f", "1")


# --- a block's bounds ----------------------------------------------------------------------


def test_a_block_past_its_stage_bound_stays_one_request(registry, monkeypatch):
    """Stages past the bound are dropped; the block's later call and action stay its own."""
    monkeypatch.setattr(request_module, "MAX_STAGES", 50)
    model, monitor = _model(registry)
    before = _request_faults(_samples(registry))
    with monitor.request(request_id="batch-1") as r:
        for _ in range(80):
            with r.stage("item"):
                pass
        model([1.0])
        r.action("done")
        assert r.is_open
    samples = _samples(registry)
    assert _requests(samples) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0}
    assert _value(samples, "inferwatch_request_duration_seconds_count") == 1.0
    assert _value(samples, "inferwatch_stage_duration_seconds_count", stage="item") == 50.0
    assert _value(samples, "inferwatch_actions_total", action="done") == 1.0
    # The 30 "item" stages and the inference stage past the bound, each counted dropped.
    assert _request_faults(samples) == before + 31
    assert _value(samples, "inferwatch_requests_in_flight") == 0.0


def test_a_block_open_past_the_abandoned_age_stays_one_request(registry, monkeypatch):
    """A long agent or batch request: its age ends no `with` block, whose exit ends it."""
    monkeypatch.setattr(request_module, "ABANDONED_AFTER_SECONDS", 0.05)
    model, monitor = _model(registry)
    before = _request_faults(_samples(registry))
    with monitor.request(request_id="agent-1") as r:
        model([1.0])
        deadline = time.perf_counter() + 0.2
        while time.perf_counter() < deadline:  # well past the bound
            time.sleep(0.01)
        model([2.0])
        assert current_request() is r
        r.action("answered")
    samples = _samples(registry)
    assert _requests(samples) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0}
    assert _value(samples, "inferwatch_stage_duration_seconds_count", stage="inference") == 2.0
    assert _value(samples, "inferwatch_actions_total", action="answered") == 1.0
    assert _request_faults(samples) == before


def test_a_block_in_a_pool_worker_past_the_age_bound_keeps_its_calls(registry, monkeypatch):
    """The worker's own block, however old, is not taken for one left open."""
    monkeypatch.setattr(request_module, "ABANDONED_AFTER_SECONDS", 0.0)
    model, monitor = _model(registry)

    def handle() -> bool:
        with monitor.request(request_id="r-1") as r:
            model([1.0])
            model([2.0])
            return len(r.record.stages) == 2

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(handle).result()
    samples = _samples(registry)
    assert _requests(samples) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0}


def test_a_request_opened_and_never_closed_in_a_pool_worker_still_ends_past_its_age(
        registry, monkeypatch):
    monkeypatch.setattr(request_module, "ABANDONED_AFTER_SECONDS", 0.0)
    model, monitor = _model(registry)
    with ThreadPoolExecutor(max_workers=1) as pool:
        leaked = pool.submit(Request.open, monitor, "leaked").result()
        for i in range(3):
            pool.submit(model, [float(i)]).result()
    assert not leaked.is_open
    assert leaked.record.stages == []
    samples = _samples(registry)
    assert _requests(samples) == {"ok": 3.0, "error": 0.0, "cancelled": 1.0}
    assert _value(samples, "inferwatch_requests_in_flight") == 0.0


def test_a_request_opened_and_never_closed_is_not_ended_by_its_stage_bound(
        registry, monkeypatch):
    """Its stages stop at the bound; only its age (or its close) ends it."""
    monkeypatch.setattr(request_module, "MAX_STAGES", 3)
    model, monitor = _model(registry)
    request = Request.open(monitor, "r-1")
    try:
        for i in range(6):
            model([float(i)])
        assert request.is_open and current_request() is request
        assert len(request.record.stages) == 3
    finally:
        request.close(None)
    assert _requests(_samples(registry)) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0}


# --- a generator paused inside its own block ---------------------------------------------


def test_a_paused_generators_request_is_not_its_consumers(registry):
    """The stream, the caller's block and the plain call between are three requests."""
    model, monitor = _model(registry, task="classification")

    def answer() -> Iterator[str]:
        with monitor.request() as r:
            r.action("streamed")
            yield "tok1"
            yield "tok2"

    stream = answer()
    assert next(stream) == "tok1"
    assert current_request() is None and current_request_of(monitor) is None
    with monitor.request() as caller:
        model([1])
        caller.action("caller")
    model([2])
    assert list(stream) == ["tok2"]
    samples = _samples(registry)
    assert _requests(samples) == {"ok": 3.0, "error": 0.0, "cancelled": 0.0}
    assert _value(samples, "inferwatch_actions_total", action="streamed") == 1.0
    assert _value(samples, "inferwatch_actions_total", action="caller") == 1.0
    assert _value(samples, "inferwatch_stage_duration_seconds_count", stage="inference") == 1.0
    assert _value(samples, "inferwatch_requests_in_flight") == 0.0


def test_outcomes_join_the_prediction_of_their_own_request(registry):
    model, monitor = _model(registry, result=1, task="classification")

    def answer(request_id: str) -> Iterator[str]:
        with monitor.request(request_id=request_id) as r:
            with r.stage("gen"):
                pass
            yield "tok1"
            yield "tok2"

    stream = answer("stream-1")
    next(stream)
    with monitor.request(request_id="other-2") as other:
        model(1)
        other.action("caller-action")
    model(2)  # a plain call: its prediction is nobody's but its own
    list(stream)
    monitor.drain()  # ground truth comes back later
    monitor.record_outcome("other-2", 1)
    monitor.record_outcome("stream-1", 1)
    samples = _samples(registry)
    assert _requests(samples) == {"ok": 3.0, "error": 0.0, "cancelled": 0.0}
    assert _value(samples, "inferwatch_actions_total", action="caller-action") == 1.0
    # The caller's prediction scores; the stream made none, so its outcome finds nothing.
    assert _value(samples, "inferwatch_outcomes_total", result="correct") == 1.0


def test_a_plain_call_right_after_a_paused_generator_is_its_own(registry):
    model, monitor = _model(registry)

    def answer() -> Iterator[str]:
        with monitor.request(request_id="s-1") as r:
            yield "tok1"
            model([9])  # the generator's own call, once resumed, joins its request
            r.action("streamed")
            yield "tok2"

    stream = answer()
    next(stream)
    model([1])
    assert list(stream) == ["tok2"]
    samples = _samples(registry)
    assert _requests(samples) == {"ok": 2.0, "error": 0.0, "cancelled": 0.0}
    assert _value(samples, "inferwatch_stage_duration_seconds_count", stage="inference") == 1.0
    assert _value(samples, "inferwatch_actions_total", action="streamed") == 1.0


def test_a_resumed_generator_keeps_its_request_after_a_caller_block(registry):
    """The caller's block opened and ended while the stream was paused gives the stream's
    request back to the context, so the stream's later calls still join it."""
    model, monitor = _model(registry)
    seen: list[object] = []

    def answer() -> Iterator[str]:
        with monitor.request(request_id="s-1") as r:
            yield "tok1"
            seen.append(current_request_of(monitor) is r)
            model([9])
            yield "tok2"

    stream = answer()
    next(stream)
    with monitor.request(request_id="c-1"):
        model([1])
    assert list(stream) == ["tok2"]
    assert seen == [True]
    samples = _samples(registry)
    assert _requests(samples) == {"ok": 2.0, "error": 0.0, "cancelled": 0.0}
    # One call in each request.
    assert _value(samples, "inferwatch_stage_duration_seconds_count", stage="inference") == 2.0


def test_a_thread_the_generator_started_still_joins_its_request(registry):
    """Paused or not, work the generator handed to a thread (with its context) is its."""
    import contextvars

    model, monitor = _model(registry)
    started = threading.Event()
    release = threading.Event()
    results: list[object] = []

    def work() -> None:
        started.set()
        assert release.wait(10)
        results.append(model([1]))

    def answer() -> Iterator[str]:
        with monitor.request(request_id="s-1") as r:
            context = contextvars.copy_context()
            worker = threading.Thread(target=context.run, args=(work,))
            worker.start()
            yield "tok1"
            worker.join(10)
            r.action("streamed")

    stream = answer()
    next(stream)
    assert started.wait(10)
    release.set()  # the thread's call runs while the generator is paused
    list(stream)
    assert results == [0.7]
    samples = _samples(registry)
    assert _requests(samples) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0}
    assert _value(samples, "inferwatch_stage_duration_seconds_count", stage="inference") == 1.0


def test_a_paused_generator_dropped_by_its_consumer_is_cancelled(registry):
    model, monitor = _model(registry)

    def answer() -> Iterator[str]:
        with monitor.request(request_id="s-1"):
            yield "tok1"
            yield "tok2"

    stream = answer()
    next(stream)
    model([1])
    del stream
    gc.collect()
    samples = _samples(registry)
    assert _requests(samples) == {"ok": 1.0, "error": 0.0, "cancelled": 1.0}
    assert _value(samples, "inferwatch_requests_in_flight") == 0.0


def test_a_paused_generator_block_is_not_ended_by_its_age(registry, monkeypatch):
    """A stream paused for long (a slow reader) is still the stream's request when it
    resumes: only its generator ends it."""
    monkeypatch.setattr(request_module, "ABANDONED_AFTER_SECONDS", 0.0)
    model, monitor = _model(registry)

    def answer() -> Iterator[str]:
        with monitor.request(request_id="s-1") as r:
            yield "tok1"
            model([9])
            r.action("streamed")
            yield "tok2"

    stream = answer()
    next(stream)
    model([1])
    list(stream)
    samples = _samples(registry)
    assert _requests(samples) == {"ok": 2.0, "error": 0.0, "cancelled": 0.0}
    assert _value(samples, "inferwatch_actions_total", action="streamed") == 1.0


@pytest.mark.parametrize("block", ["async with", "with"])
def test_a_paused_async_generators_request_is_not_its_consumers(registry, block):
    model, monitor = _model(registry, task="classification")

    async def helper_call() -> float:
        return model([5])  # in a task the stream started: part of the stream's request

    async def answer() -> AsyncIterator[str]:
        if block == "async with":
            async with monitor.request(request_id="s-1") as r:
                await asyncio.sleep(0)
                await asyncio.gather(asyncio.create_task(helper_call()))
                r.action("streamed")
                yield "tok1"
                yield "tok2"
        else:
            with monitor.request(request_id="s-1") as r:
                await asyncio.gather(asyncio.create_task(helper_call()))
                r.action("streamed")
                yield "tok1"
                yield "tok2"

    async def consume() -> list[str]:
        stream = answer()
        items = [await stream.__anext__()]
        assert current_request_of(monitor) is None
        async with monitor.request(request_id="c-1") as caller:
            model([1])
            caller.action("caller")
        model([2])
        items += [item async for item in stream]
        return items

    assert asyncio.run(consume()) == ["tok1", "tok2"]
    samples = _samples(registry)
    assert _requests(samples) == {"ok": 3.0, "error": 0.0, "cancelled": 0.0}
    assert _value(samples, "inferwatch_actions_total", action="streamed") == 1.0
    assert _value(samples, "inferwatch_actions_total", action="caller") == 1.0
    # The stream's task call and the caller's call joined their requests; the plain one not.
    assert _value(samples, "inferwatch_stage_duration_seconds_count", stage="inference") == 2.0
    assert _value(samples, "inferwatch_requests_in_flight") == 0.0


# --- the web middleware's requests past the stage bound ----------------------------------


def test_a_wsgi_stream_past_the_stage_bound_stays_one_ok_request(registry, monkeypatch):
    from inferwatch.serving.middleware import WSGIInstrumentMiddleware

    monkeypatch.setattr(request_module, "MAX_STAGES", 3)
    model, _ = _model(registry)

    def app(environ: dict, start_response: object) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/event-stream")])  # type: ignore[operator]
        for step in range(5):
            yield str(model([step])).encode()

    wrapped = WSGIInstrumentMiddleware(app, model="f", registry=registry)
    body = wrapped({"REQUEST_METHOD": "GET", "PATH_INFO": "/generate"},
                   lambda status, headers, exc_info=None: None)
    assert b"".join(body) == b"0.7" * 5
    body.close()
    samples = _samples(registry)
    assert _requests(samples) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0}
    assert _value(samples, "inferwatch_stage_duration_seconds_count", stage="inference") == 3.0
    assert _value(samples, "inferwatch_requests_in_flight") == 0.0


def test_an_asgi_stream_past_the_stage_bound_stays_one_ok_request(registry, monkeypatch):
    from inferwatch.serving.middleware import InstrumentMiddleware

    monkeypatch.setattr(request_module, "MAX_STAGES", 3)
    model, _ = _model(registry)

    async def app(scope: dict, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        for step in range(5):
            await send({"type": "http.response.body",  # type: ignore[operator]
                        "body": str(model([step])).encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})  # type: ignore[operator]

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    wrapped = InstrumentMiddleware(app, model="f", registry=registry)
    asyncio.run(wrapped({"type": "http", "path": "/generate", "method": "GET", "headers": []},
                        receive, send))
    assert sent[0]["status"] == 200 and len(sent) == 7
    samples = _samples(registry)
    assert _requests(samples) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0}
    assert _value(samples, "inferwatch_stage_duration_seconds_count", stage="inference") == 3.0
    assert _value(samples, "inferwatch_requests_in_flight") == 0.0
