"""Per-request records behind the web middleware, as handlers really write them: their own
``mon.request()`` blocks inside an HTTP request, threads entering one request at once."""

from __future__ import annotations

import asyncio
import contextvars
import dis
import sys
import threading
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from flask import Flask
from flask import request as flask_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.core.request import Request
from inferwatch.serving.middleware import InstrumentMiddleware, WSGIInstrumentMiddleware
from request_totals import request_totals


class FraudModel:
    classes_ = ("legit", "fraud")

    def predict_proba(self, rows):
        return [[0.25, 0.75] for _ in rows]


def _stage_counts(monitor: Any) -> dict[str, int]:
    monitor.drain()
    series = monitor.state.histograms.get("inferwatch_stage_duration_seconds", {})
    return {labels[0]: int(histogram.count) for labels, histogram in series.items()}


def _actions(monitor: Any) -> dict[tuple, float]:
    monitor.drain()
    return {k: v for k, v in monitor.state.counters.get("inferwatch_actions_total", {}).items()
            if v}


def _outcome_joined(monitor: Any, request_id: str) -> bool:
    before = monitor.state.counters.get("inferwatch_outcomes_total", {}).get(("correct",), 0.0)
    monitor.record_outcome(request_id, "fraud")
    after = monitor.state.counters.get("inferwatch_outcomes_total", {}).get(("correct",), 0.0)
    return after == before + 1


# -- 1. A handler's own mon.request() behind the middleware ---------------------------------

def _fastapi(registry: Registry, model: Any, mon: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/score/{user_id}")
    def score(user_id: int) -> dict:  # sync: FastAPI runs it in a thread of its pool
        with mon.request(request_id=f"h-{user_id}") as r:
            with r.stage("preprocess"):
                row = [float(user_id)]
            proba = model.predict_proba([row])[0]
            r.action("shown")
        return {"proba": proba}

    @app.get("/ascore/{user_id}")
    async def ascore(user_id: int) -> dict:
        async with mon.request() as r:  # no id of its own: the header's stands
            with r.stage("preprocess"):
                row = [float(user_id)]
            proba = model.predict_proba([row])[0]
            r.action("blocked")
        return {"proba": proba}

    app.add_middleware(InstrumentMiddleware, registry=registry,
                       routes={"/score/{user_id}": "fraud", "/ascore/{user_id}": "fraud"})
    return app


def test_fastapi_handler_request_block_is_the_http_request(registry):
    """README "The per-request API" inside a FastAPI route with the middleware on: each
    HTTP request was counted twice (the middleware's request and the handler's), doubling
    the traffic and halving the mean latency."""
    model = inferwatch.instrument(FraudModel(), name="fraud", version="1", registry=registry)
    mon = registry.monitor("fraud", "1")
    client = TestClient(_fastapi(registry, model, mon))
    for i in range(3):
        assert client.get(f"/score/{i}").json() == {"proba": [0.25, 0.75]}
    for i in range(2):
        assert client.get(f"/ascore/{i}", headers={"X-Request-ID": f"x-{i}"}).status_code == 200
    assert request_totals(mon) == {"ok": 5.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}
    assert _stage_counts(mon) == {"preprocess": 5, "inference": 5}
    assert _actions(mon) == {("shown",): 3.0, ("blocked",): 2.0}
    # The handler's id is the one its ground truth comes back under; without one, the
    # header's.
    assert _outcome_joined(mon, "h-1")
    assert _outcome_joined(mon, "x-0")


def test_flask_handler_request_block_is_the_http_request(registry):
    model = inferwatch.instrument(FraudModel(), name="fraud", version="1", registry=registry)
    mon = registry.monitor("fraud", "1")
    app = Flask(__name__)

    @app.get("/score/<int:user_id>")
    def score(user_id: int) -> dict:
        request = mon.request(request_id=flask_request.headers.get("X-Order", None))
        with request:  # the object itself, not what `as` gives
            with request.stage("preprocess"):
                row = [float(user_id)]
            proba = model.predict_proba([row])[0]
            request.action("shown")
        return {"proba": proba}

    app.wsgi_app = WSGIInstrumentMiddleware(app.wsgi_app, registry=registry,
                                            routes={"/score/<int:user_id>": "fraud"})
    client = app.test_client()
    for i in range(3):
        # Buffered, as a server sends it: the request ends once the body has gone out.
        response = client.get(f"/score/{i}", headers={"X-Order": f"o-{i}"}, buffered=True)
        assert response.status_code == 200
    assert request_totals(mon) == {"ok": 3.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}
    assert _stage_counts(mon) == {"preprocess": 3, "inference": 3}
    assert _actions(mon) == {("shown",): 3.0}
    assert _outcome_joined(mon, "o-2")


def test_flask_handler_block_that_fails_is_one_error(registry):
    mon = registry.monitor("fraud", "1")
    app = Flask(__name__)

    @app.get("/score")
    def score() -> dict:
        with mon.request(request_id="h-1"):
            raise KeyError("user")

    app.wsgi_app = WSGIInstrumentMiddleware(app.wsgi_app, registry=registry,
                                            routes={"/score": "fraud"})
    assert app.test_client().get("/score", buffered=True).status_code == 500
    assert request_totals(mon) == {"ok": 0.0, "error": 1.0, "cancelled": 0.0, "in_flight": 0}
    assert mon.state.counters["inferwatch_errors_total"] == {("KeyError",): 1.0}


def test_another_models_block_inside_the_http_request_stays_its_own(registry):
    """Only a block of the route's model joins: a ranker's request inside the fraud route
    is a request of the ranker."""
    fraud, ranker = registry.monitor("fraud", "1"), registry.monitor("ranker", "1")

    async def app(scope, receive, send):
        with ranker.request(request_id="k-1"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    wrapped = InstrumentMiddleware(app, routes={"/score": "fraud"}, registry=registry)
    _call(wrapped, "/score", None)
    assert request_totals(fraud)["ok"] == 1.0
    assert request_totals(ranker)["ok"] == 1.0


def _call(app: Any, path: str, header_id: str | None) -> None:
    headers = [] if header_id is None else [(b"x-request-id", header_id.encode())]

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        pass

    asyncio.run(app({"type": "http", "path": path, "method": "POST", "headers": headers},
                    receive, send))


_IDS = st.one_of(st.none(), st.text(st.characters(min_codepoint=33, max_codepoint=126),
                                    min_size=1, max_size=12))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), _IDS, _IDS, st.booleans()), min_size=1,
                max_size=6))
def test_any_handler_blocks_inside_http_requests_count_each_http_request_once(plans):
    """However many blocks (nested, re-entered, async) a handler opens, with or without
    ids of its own or from the header, an HTTP request is one request, never left in flight,
    under the handler's id when it gave one."""
    registry = Registry()
    try:
        mon = registry.monitor("fraud", "1")
        seen: list[str | None] = []

        async def app(scope, receive, send):
            blocks, own_id, _, use_async = scope["plan"]
            request = mon.request(request_id=own_id)
            last = None
            for _ in range(blocks):
                if use_async:
                    async with request as r, mon.request() as inner:
                        assert inner is r
                        last = inner.request_id
                else:
                    with request, mon.request() as inner, inner.stage("s"):
                        last = inner.request_id
            seen.append(last)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        wrapped = InstrumentMiddleware(app, routes={"/score": "fraud"}, registry=registry)

        async def run_all() -> None:
            for plan in plans:
                headers = [] if plan[2] is None else [(b"x-request-id", plan[2].encode())]

                async def receive() -> dict:
                    return {"type": "http.request", "body": b""}

                async def send(message: dict) -> None:
                    pass

                await wrapped({"type": "http", "path": "/score", "method": "POST",
                               "headers": headers, "plan": plan}, receive, send)

        asyncio.run(run_all())
        assert request_totals(mon) == {"ok": float(len(plans)), "error": 0.0, "cancelled": 0.0,
                                "in_flight": 0}
        for (blocks, own_id, header_id, _), request_id in zip(plans, seen):
            if blocks:
                assert request_id == (own_id if own_id is not None else header_id)
    finally:
        registry.close()


def test_separate_blocks_of_one_model_without_middleware_still_count_each(registry):
    """Nested blocks of one model that name different requests stay one request each."""
    mon = registry.monitor("m", "1")
    with mon.request(request_id="outer") as outer, mon.request(request_id="inner") as inner:
        assert inner is not outer
    assert request_totals(mon)["ok"] == 2.0


# -- 2. Two threads entering (or leaving) one open request at once -------------------------

def _depth_stores(function: Any) -> set[int]:
    """Offsets of the instructions of `function` that store ``_depth``."""
    return {ins.offset for ins in dis.get_instructions(function)
            if ins.opname == "STORE_ATTR" and ins.argval == "_depth"}


def _race_at_depth_store(function: Any, work: Any) -> None:
    """Run `work` in two threads, holding each just before it stores ``_depth`` in
    `function` until the other got there too (or, where a lock keeps the other out, until
    the barrier gives up): the interleaving that loses an update, forced."""
    code = function.__code__
    stores = _depth_stores(function)
    barrier = threading.Barrier(2, timeout=1.5)

    def local(frame, event, arg):
        if event == "opcode" and frame.f_lasti in stores:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass
        return local

    def tracer(frame, event, arg):
        if frame.f_code is code:
            frame.f_trace_opcodes = True
            return local
        return None

    errors: list[BaseException] = []

    def run() -> None:
        sys.settrace(tracer)
        try:
            work()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            sys.settrace(None)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors


def test_two_threads_entering_one_request_at_once_keep_both_blocks(registry):
    """A handler fanning work out to threads that each enter the open request: an entry
    lost between them ended the request at the first thread's exit, long before its end."""
    mon = registry.monitor("m", "1")
    request = Request.open(mon, "r-1")
    _race_at_depth_store(Request.__enter__, request.__enter__)
    request.__exit__(None, None, None)
    request.__exit__(None, None, None)
    assert request.is_open  # the outer block still runs
    request.__exit__(None, None, None)
    assert not request.is_open
    assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


def test_two_threads_leaving_one_request_at_once_let_it_end(registry):
    """An exit lost between two threads left the request open after its outermost exit:
    in flight until the abandoned-request bound, ten minutes later."""
    # Entered twice here and left once here (the other exits are the threads'): run in a
    # copy of this thread's context, or the later tests of this process would find the
    # request still current and take the path of calls inside a request.
    contextvars.copy_context().run(_two_threads_leave_one_request, registry)


def _two_threads_leave_one_request(registry) -> None:
    mon = registry.monitor("m", "1")
    request = Request.open(mon, "r-1")
    request.__enter__()
    request.__enter__()
    _race_at_depth_store(Request.__exit__, lambda: request.__exit__(None, None, None))
    assert request.is_open
    request.__exit__(None, None, None)
    assert not request.is_open
    assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


# -- More: misconfiguration and odd apps -------------------------------------------------------

@pytest.mark.parametrize("middleware", [InstrumentMiddleware, WSGIInstrumentMiddleware])
def test_an_empty_routes_mapping_without_a_model_is_refused(middleware, registry):
    """``routes=settings.get("routes", {})`` with the section left empty recorded nothing
    at all, silently; routes=None was already refused with this message."""
    with pytest.raises(ValueError, match=r"routes=.*empty routes mapping"):
        middleware(lambda *a: None, routes={}, registry=registry)
    # An empty mapping beside a model of every route is fine.
    middleware(lambda *a: None, routes={}, model="fraud", registry=registry)


@pytest.mark.parametrize("bad_status", [200, None])
def test_a_wsgi_app_giving_no_status_line_gets_the_servers_error(bad_status, registry):
    """PEP 3333's status is text: an app calling ``start_response(200, ...)`` got a
    TypeError raised from inside the middleware rather than the server's own refusal."""
    from wsgiref.util import setup_testing_defaults

    mon = registry.monitor("fraud", "1")

    class ServerRefusal(Exception):
        pass

    def start_response(status, headers, exc_info=None):
        if not isinstance(status, str):
            raise ServerRefusal("Status must be a string")
        return lambda data: None

    def app(environ, start_response):
        start_response(bad_status, [])
        return [b"x"]

    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    wrapped = WSGIInstrumentMiddleware(app, model="fraud", registry=registry)
    with pytest.raises(ServerRefusal):
        wrapped(environ, start_response)
    assert request_totals(mon) == {"ok": 0.0, "error": 1.0, "cancelled": 0.0, "in_flight": 0}
    assert mon.state.counters["inferwatch_errors_total"] == {("ServerRefusal",): 1.0}
