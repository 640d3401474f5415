"""A model call that raises inside a request counts in ``inferwatch_errors_total`` by its
class, whether the app catches the exception (a fallback answer) or lets it end the request,
and never twice: the request's own outcome stays what the request did (ok when the app
answered, error when the exception ended it), and a failure that came from a model call is
counted once, under the model's class, however the app passed it on (unchanged, re-raised
as another type, a 5xx response)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.serving.middleware import InstrumentMiddleware, WSGIInstrumentMiddleware
from request_totals import request_totals
from test_monitor_events import _read as read_events


class ServiceUnavailable(Exception):
    """The app's own error, raised from the model's failure."""


class AppBug(Exception):
    """A failure of the app's own code, with no model call failing."""


def predict(x: float) -> float:
    """A model whose backend times out for a negative input."""
    if x < 0:
        raise TimeoutError("backend model timed out")
    return 0.9


async def predict_async(x: float) -> float:
    await asyncio.sleep(0)
    return predict(x)


def errors(monitor: Any) -> dict[str, float]:
    """``inferwatch_errors_total`` by error type (non-zero series), once drained."""
    monitor.drain()
    counts = monitor.state.counters.get("inferwatch_errors_total", {})
    return {labels[0]: value for labels, value in counts.items() if value}


def fallback(model: Any, x: float) -> float:
    """What a handler with a fallback does: the model's answer, or a default one."""
    try:
        return model(x)
    except TimeoutError:
        return 0.0


@pytest.fixture
def model(registry):
    return inferwatch.instrument(predict, name="fraud", version="1", registry=registry)


@pytest.fixture
def mon(registry, model):
    return registry.monitor("fraud", "1")


# -- 1. Plain request blocks ----------------------------------------------------------------

def test_a_caught_model_error_counts_as_outside_a_request_and_the_request_stays_ok(
        model, mon):
    """The defect: the same ten calls counted five TimeoutErrors as plain calls and none
    inside ``with mon.request():``, where the app's fallback made every request ok."""
    for i in range(10):
        fallback(model, -1.0 if i % 2 else 1.0)
    assert errors(mon) == {"TimeoutError": 5}
    # Plain calls are requests of their own: a call that raised is a failed one.
    assert request_totals(mon) == {"ok": 5, "error": 5, "cancelled": 0, "in_flight": 0}
    for i in range(10):
        with mon.request():
            fallback(model, -1.0 if i % 2 else 1.0)
    assert errors(mon) == {"TimeoutError": 10}
    assert request_totals(mon) == {"ok": 15, "error": 5, "cancelled": 0, "in_flight": 0}


def test_an_exception_that_ends_the_request_counts_once(model, mon):
    with pytest.raises(TimeoutError), mon.request():
        model(-1.0)
    assert errors(mon) == {"TimeoutError": 1}
    assert request_totals(mon) == {"ok": 0, "error": 1, "cancelled": 0, "in_flight": 0}


def test_an_error_raised_from_the_model_error_is_the_outcome_not_a_second_error(model, mon):
    """``raise ServiceUnavailable() from exc``: one failure, counted under the model's class;
    the request is an error (the error-ratio SLO sees it), and its event says which."""
    with pytest.raises(ServiceUnavailable), mon.request():
        try:
            model(-1.0)
        except TimeoutError as exc:
            raise ServiceUnavailable("try again later") from exc
    with pytest.raises(ServiceUnavailable), mon.request():
        try:
            model(-1.0)
        except TimeoutError:
            raise ServiceUnavailable("try again later")  # noqa: B904 - chained implicitly
    assert errors(mon) == {"TimeoutError": 2}
    assert request_totals(mon) == {"ok": 0, "error": 2, "cancelled": 0, "in_flight": 0}


def test_each_failed_model_call_counts_retries_included(model, mon):
    with mon.request():
        for x in (-1.0, -1.0, 1.0):  # two timeouts, then an answer
            if fallback(model, x):
                break
    assert errors(mon) == {"TimeoutError": 2}
    assert request_totals(mon) == {"ok": 1, "error": 0, "cancelled": 0, "in_flight": 0}


def test_a_request_failing_on_its_own_counts_its_own_class(model, mon):
    with pytest.raises(AppBug), mon.request():
        model(1.0)
        raise AppBug("postprocessing failed")
    assert errors(mon) == {"AppBug": 1}
    assert request_totals(mon) == {"ok": 0, "error": 1, "cancelled": 0, "in_flight": 0}


def test_keyword_calls_and_model_objects_in_a_request_count_too(registry):
    class Scorer:
        def predict(self, rows: list, threshold: float = 0.5) -> list:
            if not rows:
                raise ValueError("no rows")
            return [threshold for _ in rows]

    scorer = inferwatch.instrument(Scorer(), name="scorer", version="1", registry=registry)
    mon = registry.monitor("scorer", "1")
    for call in (lambda: scorer.predict([]), lambda: scorer.predict([], threshold=0.7),
                 lambda: scorer.predict(rows=[])):
        with mon.request():
            with pytest.raises(ValueError):
                call()
            assert scorer.predict([1]) == [0.5]  # the app carries on
    assert errors(mon) == {"ValueError": 3}
    assert request_totals(mon) == {"ok": 3, "error": 0, "cancelled": 0, "in_flight": 0}


def test_a_model_of_another_monitor_counts_on_its_own_monitor_only(registry, model, mon):
    other = inferwatch.instrument(predict, name="ranker", version="1", registry=registry)
    with mon.request():
        fallback(other, -1.0)  # not a call of this request's model: a call of its own
    assert errors(mon) == {}
    assert errors(registry.monitor("ranker", "1")) == {"TimeoutError": 1}
    assert request_totals(mon) == {"ok": 1, "error": 0, "cancelled": 0, "in_flight": 0}


def test_a_cancelled_model_call_is_no_error(registry):
    def cancelled(x: float) -> float:
        raise asyncio.CancelledError()

    model = inferwatch.instrument(cancelled, name="fraud", version="1", registry=registry)
    mon = registry.monitor("fraud", "1")
    with mon.request(), pytest.raises(asyncio.CancelledError):
        model(1.0)
    assert errors(mon) == {}
    assert request_totals(mon) == {"ok": 1, "error": 0, "cancelled": 0, "in_flight": 0}


# -- 2. Async request blocks ----------------------------------------------------------------

def test_async_request_blocks_count_caught_and_propagated_model_errors(registry):
    model = inferwatch.instrument(predict_async, name="fraud", version="1", registry=registry)
    mon = registry.monitor("fraud", "1")

    async def caught(x: float) -> float:
        async with mon.request():
            try:
                return await model(x)
            except TimeoutError:
                return 0.0

    async def propagated() -> None:
        async with mon.request():
            await model(-1.0)

    async def main() -> None:
        scores = await asyncio.gather(*(caught(-1.0 if i % 2 else 1.0) for i in range(6)))
        assert scores == [0.9, 0.0] * 3
        with pytest.raises(TimeoutError):
            await propagated()

    asyncio.run(main())
    assert errors(mon) == {"TimeoutError": 4}
    assert request_totals(mon) == {"ok": 6, "error": 1, "cancelled": 0, "in_flight": 0}


# -- 3. The event log -----------------------------------------------------------------------

def test_the_event_names_the_model_errors_beside_the_request_outcome(
        registry, tmp_path, make_log):
    """The event agrees with the metrics: ``model_errors`` lists the failed model calls
    (what ``inferwatch_errors_total`` counts), ``error`` the request's own outcome."""
    log = make_log(tmp_path / "events.jsonl")
    model = inferwatch.instrument(predict, name="fraud", version="1", events=log,
                                  registry=registry)
    mon = registry.monitor("fraud", "1")
    with mon.request(request_id="fallback"):
        fallback(model, -1.0)
    with pytest.raises(TimeoutError), mon.request(request_id="propagated"):
        model(-1.0)
    with pytest.raises(ServiceUnavailable), mon.request(request_id="translated"):
        try:
            model(-1.0)
        except TimeoutError as exc:
            raise ServiceUnavailable() from exc
    with mon.request(request_id="answered"):
        model(1.0)
    registry.drain()
    assert log.flush(10)
    events = {e["request_id"]: e for e in read_events(tmp_path)}
    assert events["fallback"]["model_errors"] == ["TimeoutError"]
    assert events["fallback"].get("error") is None
    assert events["propagated"]["model_errors"] == ["TimeoutError"]
    assert events["propagated"]["error"] == {"type": "TimeoutError"}
    assert events["translated"]["model_errors"] == ["TimeoutError"]
    assert events["translated"]["error"] == {"type": "ServiceUnavailable"}
    assert "model_errors" not in events["answered"]
    assert events["answered"]["prediction"] == 0.9
    assert errors(mon) == {"TimeoutError": 3}


# -- 4. The web middleware on real apps -----------------------------------------------------

def _fastapi(registry: Registry, model: Any, async_model: Any, mon: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/fallback/{x}")
    def fallback_route(x: float) -> dict:  # sync: run in a thread of FastAPI's pool
        return {"score": fallback(model, x)}

    @app.get("/afallback/{x}")
    async def async_fallback_route(x: float) -> dict:
        try:
            return {"score": await async_model(x)}
        except TimeoutError:
            return {"score": 0.0}

    @app.get("/propagate/{x}")
    def propagate_route(x: float) -> dict:
        return {"score": model(x)}

    @app.get("/translate/{x}")
    def translate_route(x: float) -> dict:
        try:
            return {"score": model(x)}
        except TimeoutError as exc:
            raise HTTPException(503, "model unavailable") from exc

    @app.get("/block/{x}")
    def block_route(x: float) -> dict:
        with mon.request(request_id="handler"):  # joins the middleware's request
            return {"score": fallback(model, x)}

    app.add_middleware(InstrumentMiddleware, registry=registry, model="fraud")
    return app


def test_fastapi_behind_the_middleware_counts_each_model_error_once(registry):
    model = inferwatch.instrument(predict, name="fraud", version="1", registry=registry)
    async_model = inferwatch.instrument(predict_async, name="fraud", version="1",
                                        registry=registry)
    mon = registry.monitor("fraud", "1")
    client = TestClient(_fastapi(registry, model, async_model, mon),
                        raise_server_exceptions=False)
    for route in ("fallback", "afallback", "block"):
        assert client.get(f"/{route}/-1").json() == {"score": 0.0}
        assert client.get(f"/{route}/1").json() == {"score": 0.9}
    assert errors(mon) == {"TimeoutError": 3}
    assert request_totals(mon) == {"ok": 6, "error": 0, "cancelled": 0, "in_flight": 0}
    # The exception reaches the middleware (FastAPI answers 500 outside it): one error.
    assert client.get("/propagate/-1").status_code == 500
    # Turned into a 503 by the app: the request's outcome, the model's class its error.
    assert client.get("/translate/-1").status_code == 503
    assert client.get("/translate/1").json() == {"score": 0.9}
    assert errors(mon) == {"TimeoutError": 5}
    assert request_totals(mon) == {"ok": 7, "error": 2, "cancelled": 0, "in_flight": 0}


def test_flask_behind_the_wsgi_middleware_counts_each_model_error_once(registry, model, mon):
    """Flask answers an endpoint's exception with a 500 itself: the request is an error of
    the model's class, counted once; a caught one leaves the request ok."""
    app = Flask(__name__)

    @app.get("/fallback/<int:x>")
    def fallback_route(x: int) -> dict:
        return {"score": fallback(model, -1.0 if x else 1.0)}

    @app.get("/propagate")
    def propagate_route() -> dict:
        return {"score": model(-1.0)}

    app.wsgi_app = WSGIInstrumentMiddleware(app.wsgi_app, registry=registry, model="fraud")
    client = app.test_client()
    assert client.get("/fallback/1").json == {"score": 0.0}
    assert client.get("/fallback/0").json == {"score": 0.9}
    failed = client.get("/propagate")
    assert failed.status_code == 500 and failed.data  # read: the request ends with its body
    assert errors(mon) == {"TimeoutError": 2}
    assert request_totals(mon) == {"ok": 2, "error": 1, "cancelled": 0, "in_flight": 0}


# -- 5. Any mix of failures, by property --------------------------------------------------

def stream(n: int):
    """A model's stream of |n| tokens that, for a negative n, then fails mid-way."""
    for i in range(abs(n)):
        yield f"tok{i} "
    if n < 0:
        raise TimeoutError("upstream dropped the stream")


# How a model call of a request goes: it answers, it raises and the app catches it, or its
# stream fails mid-way and the app catches that (an SSE endpoint's error event).
CALLS = st.lists(st.sampled_from(["answers", "raises", "stream fails"]), max_size=4)
# How the request ends: answered, the model's exception let through, re-raised as another
# type, the app's own bug raised while handling a model error (chained to it), or the app's
# own bug, which is its own failure whatever its model calls did before.
ENDINGS = st.sampled_from(["ok", "model error", "raised from it", "app bug while handling it",
                           "app bug"])


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(CALLS, ENDINGS), max_size=6))
def test_errors_count_failed_model_calls_and_requests_failing_on_their_own(requests):
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(predict, name="fraud", version="1", registry=registry)
        streamed = inferwatch.instrument(stream, name="fraud", version="1", registry=registry)
        mon = registry.monitor("fraud", "1")
        expected: dict[str, float] = {}
        outcomes = {"ok": 0, "error": 0}
        for calls, ending in requests:
            failed_calls = len(calls) - calls.count("answers") + (
                ending in ("model error", "raised from it", "app bug while handling it"))
            if failed_calls:
                expected["TimeoutError"] = expected.get("TimeoutError", 0) + failed_calls
            if ending == "app bug":  # chained to no model error: counted besides them
                expected["AppBug"] = expected.get("AppBug", 0) + 1
            outcomes["ok" if ending == "ok" else "error"] += 1
            try:
                with mon.request():
                    for call in calls:
                        if call == "stream fails":
                            try:
                                list(streamed(-2))
                            except TimeoutError:
                                pass
                        else:
                            fallback(model, -1.0 if call == "raises" else 1.0)
                    if ending == "model error":
                        model(-1.0)
                    elif ending == "raised from it":
                        try:
                            model(-1.0)
                        except TimeoutError as exc:
                            raise ServiceUnavailable() from exc
                    elif ending == "app bug while handling it":
                        try:
                            model(-1.0)
                        except TimeoutError:
                            raise AppBug()  # noqa: B904 - chained implicitly
                    elif ending == "app bug":
                        raise AppBug()
            except (TimeoutError, ServiceUnavailable, AppBug):
                pass
        assert errors(mon) == expected
        assert request_totals(mon) == {**outcomes, "cancelled": 0, "in_flight": 0}
    finally:
        registry.close()
