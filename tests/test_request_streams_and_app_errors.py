"""Inside a request, a model stream that fails mid-way counts in ``inferwatch_errors_total``
by its class as a plain call does, whether the app catches it (an SSE endpoint answering
``event: error``) or not, and a second failing stream of the request counts too; and a
request that ends with an error of the app's own counts it, by its class, even after one of
its model calls failed and was caught or retried: only an exception that is one of the
model calls' failures, or came from one, is not counted a second time."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from flask import Flask, Response

import inferwatch
from conftest import free_port
from inferwatch.serving.middleware import InstrumentMiddleware, WSGIInstrumentMiddleware
from request_totals import request_totals
from test_monitor_events import _read as read_events
from test_request_caught_model_errors import errors, predict, predict_async


def tokens(n: int) -> Iterator[str]:
    """A model's stream of |n| tokens; for a negative n the backend then drops it."""
    for i in range(abs(n)):
        yield f"tok{i} "
    if n < 0:
        raise TimeoutError("upstream dropped the stream")


async def async_tokens(n: int) -> AsyncIterator[str]:
    for i in range(abs(n)):
        await asyncio.sleep(0)
        yield f"tok{i} "
    if n < 0:
        raise TimeoutError("upstream dropped the stream")


class TokenStream:
    """An SDK's stream object (an iterator, no generator), failing as `tokens` does."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.sent = 0

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> str:
        if self.sent < abs(self.n):
            self.sent += 1
            return f"tok{self.sent} "
        if self.n < 0:
            raise TimeoutError("upstream dropped the stream")
        raise StopIteration


def sse(stream: Any) -> str:
    """What an SSE endpoint sends: the tokens, then an error event if the stream failed."""
    sent = ""
    try:
        for token in stream:
            sent += f"data: {token}\n\n"
    except TimeoutError:
        sent += "event: error\ndata: upstream failed, please retry\n\n"
    return sent


async def async_sse(stream: Any) -> str:
    sent = ""
    try:
        async for token in stream:
            sent += f"data: {token}\n\n"
    except TimeoutError:
        sent += "event: error\ndata: upstream failed, please retry\n\n"
    return sent


def flaky(calls: dict[str, int]) -> Any:
    """A model whose every first attempt times out, and whose answer has no "label"."""

    def predict(x: float) -> dict:
        calls["n"] += 1
        if calls["n"] % 2:
            raise TimeoutError("backend timed out")
        return {"score": 0.9}

    return predict


def retried(model: Any, x: float) -> dict:
    """A handler's retry loop around a model that may time out."""
    for _ in range(3):
        try:
            return model(x)
        except TimeoutError:
            continue
    raise RuntimeError("no answer")


class AppBug(Exception):
    """A failure of the app's own code."""


def wait_for(check: Any, what: str, seconds: float = 120.0) -> None:
    """Poll `check` until it holds; the deadline only guards against a hang."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


# -- 1. Streams in plain request blocks -----------------------------------------------------

def stream_object(n: int) -> TokenStream:
    """A client call returning an SDK's stream object."""
    return TokenStream(n)


@pytest.mark.parametrize("source", [tokens, stream_object], ids=["generator", "stream object"])
def test_a_stream_failing_midway_and_caught_counts_once_and_the_request_stays_ok(
        registry, source):
    """The defect: the app's fallback made the request ok, and the stream's TimeoutError
    was counted nowhere, though the same stream outside a request counted it."""
    model = inferwatch.instrument(source, name="llm", version="1", registry=registry)
    mon = registry.monitor("llm", "1")
    for i in range(6):
        with mon.request():
            sent = sse(model(-2 if i % 2 else 2))
        assert sent.count("data: tok") == 2
        assert ("event: error" in sent) == bool(i % 2)
    assert errors(mon) == {"TimeoutError": 3}
    assert request_totals(mon) == {"ok": 6, "error": 0, "cancelled": 0, "in_flight": 0}


def test_a_second_failing_stream_of_a_request_counts_too(registry):
    """An agent's next call: each failed stream counts, the first one's figures are the
    request's, the second's go on their own."""
    model = inferwatch.instrument(tokens, name="llm", version="1", registry=registry)
    mon = registry.monitor("llm", "1")
    with mon.request():
        sse(model(2))
        sse(model(-2))
    with mon.request():
        sse(model(-1))
        sse(model(-3))
    assert errors(mon) == {"TimeoutError": 3}
    assert request_totals(mon) == {"ok": 2, "error": 0, "cancelled": 0, "in_flight": 0}
    assert mon.state.histograms["inferwatch_stream_items"][()].sum == 2 + 2 + 1 + 3


def test_a_stream_failure_that_ends_the_request_counts_once(registry):
    model = inferwatch.instrument(tokens, name="llm", version="1", registry=registry)
    mon = registry.monitor("llm", "1")
    with pytest.raises(TimeoutError), mon.request():
        list(model(-2))
    with pytest.raises(AppBug), mon.request():
        try:
            list(model(-2))
        except TimeoutError as exc:
            raise AppBug("the model is unavailable") from exc
    assert errors(mon) == {"TimeoutError": 2}
    assert request_totals(mon) == {"ok": 0, "error": 2, "cancelled": 0, "in_flight": 0}


def test_a_stream_failing_after_its_request_ended_counts_once(registry):
    """A stream taken in the block and read after it: the request went to the drain before
    the stream failed, so the failure is counted with the stream's own figures."""
    model = inferwatch.instrument(tokens, name="llm", version="1", registry=registry)
    mon = registry.monitor("llm", "1")
    with mon.request():
        stream = model(-2)
    assert sse(stream).endswith("please retry\n\n")
    with mon.request():
        stream = model(2)
    sse(stream)
    assert errors(mon) == {"TimeoutError": 1}
    assert request_totals(mon) == {"ok": 2, "error": 0, "cancelled": 0, "in_flight": 0}


def test_the_event_names_a_failed_stream_among_the_model_errors(registry, tmp_path, make_log):
    log = make_log(tmp_path / "events.jsonl")
    model = inferwatch.instrument(tokens, name="llm", version="1", events=log,
                                  registry=registry)
    mon = registry.monitor("llm", "1")
    with mon.request(request_id="one"):
        sse(model(-2))
    with mon.request(request_id="two"):
        sse(model(1))
        sse(model(-1))
    with mon.request(request_id="three"):
        sse(model(3))
    registry.drain()
    assert log.flush(10)
    events = {e["request_id"]: e for e in read_events(tmp_path)}
    assert events["one"]["model_errors"] == ["TimeoutError"]
    assert events["one"]["stream"]["outcome"] == "error"
    assert events["one"].get("error") is None
    assert events["two"]["model_errors"] == ["TimeoutError"]
    assert events["two"]["stream"]["outcome"] == "ok"  # the first stream's figures
    assert "model_errors" not in events["three"]
    assert errors(mon) == {"TimeoutError": 2}


# -- 2. Streams in async request blocks -----------------------------------------------------

def test_async_streams_failing_in_async_blocks_count_as_plain_calls_do(registry):
    model = inferwatch.instrument(async_tokens, name="llm", version="1", registry=registry)
    mon = registry.monitor("llm", "1")

    async def chat(n: int) -> str:
        async with mon.request():
            return await async_sse(model(n))

    async def agent() -> None:
        async with mon.request():
            await async_sse(model(-1))
            await async_sse(model(-2))

    async def main() -> None:
        sent = await asyncio.gather(*(chat(-2 if i % 2 else 2) for i in range(6)))
        assert [s.count("event: error") for s in sent] == [0, 1] * 3
        await agent()
        with pytest.raises(TimeoutError):
            async with mon.request():
                async for _ in model(-1):
                    pass

    asyncio.run(main())
    assert errors(mon) == {"TimeoutError": 3 + 2 + 1}
    assert request_totals(mon) == {"ok": 7, "error": 1, "cancelled": 0, "in_flight": 0}


# -- 3. The app's own error after a caught model error ---------------------------------------

def test_an_app_error_after_a_retried_model_error_counts_both(registry):
    """The defect: a timeout retried with success, then the handler's own KeyError: only
    the TimeoutError was counted, as if the KeyError had come from the model."""
    model = inferwatch.instrument(flaky({"n": 0}), name="fraud", version="1",
                                  registry=registry)
    mon = registry.monitor("fraud", "1")
    for request_id in ("r1", "r2"):
        with pytest.raises(KeyError), mon.request(request_id=request_id):
            retried(model, 1.0)["label"]  # the app's bug, unrelated to the model
    assert errors(mon) == {"TimeoutError": 2, "KeyError": 2}
    assert request_totals(mon) == {"ok": 0, "error": 2, "cancelled": 0, "in_flight": 0}


def test_an_async_app_error_after_a_caught_model_error_counts_both(registry):
    async def predict(x: float) -> float:
        await asyncio.sleep(0)
        if x < 0:
            raise TimeoutError("backend timed out")
        return 0.9

    model = inferwatch.instrument(predict, name="fraud", version="1", registry=registry)
    mon = registry.monitor("fraud", "1")

    async def handler() -> None:
        async with mon.request():
            try:
                await model(-1.0)
            except TimeoutError:
                pass
            raise AppBug("postprocessing failed")

    with pytest.raises(AppBug):
        asyncio.run(handler())
    assert errors(mon) == {"TimeoutError": 1, "AppBug": 1}


def test_an_app_error_of_the_models_class_is_still_the_apps_own(registry):
    """Told apart by the exception, not by its class: the app's own timeout (its database's)
    after a caught model timeout is a second failure."""
    model = inferwatch.instrument(flaky({"n": 0}), name="fraud", version="1",
                                  registry=registry)
    mon = registry.monitor("fraud", "1")
    for _ in range(20):
        with pytest.raises(TimeoutError), mon.request():
            retried(model, 1.0)
            raise TimeoutError("the feature store timed out")
    assert errors(mon) == {"TimeoutError": 40}
    assert request_totals(mon) == {"ok": 0, "error": 20, "cancelled": 0, "in_flight": 0}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup")
def test_an_error_raised_while_handling_or_grouping_a_model_error_counts_once(registry):
    model = inferwatch.instrument(predict, name="fraud", version="1", registry=registry)
    async_model = inferwatch.instrument(predict_async, name="fraud", version="1",
                                        registry=registry)
    mon = registry.monitor("fraud", "1")
    with pytest.raises(AppBug), mon.request():
        try:
            model(-1.0)
        except TimeoutError:
            raise AppBug("fallback failed too")  # noqa: B904 - chained implicitly

    async def both() -> None:
        async with mon.request(), asyncio.TaskGroup() as group:
            group.create_task(async_model(1.0))
            group.create_task(async_model(-1.0))  # times out: the group fails

    with pytest.raises(BaseException) as raised:
        asyncio.run(both())
    assert raised.type.__name__ == "ExceptionGroup"
    assert errors(mon) == {"TimeoutError": 2}
    assert request_totals(mon) == {"ok": 0, "error": 2, "cancelled": 0, "in_flight": 0}


def test_a_model_error_is_known_by_the_exception_not_by_its_address():
    """An app's exception made where a freed model error lay has its id, but not the frame
    that caught the model error in its traceback: it is the app's own. A chain that loops,
    or runs on past the bound, ends the walk."""
    from inferwatch.core.request_record import MAX_CHAINED, ModelError, from_model_error

    def caught() -> tuple[BaseException, Any]:
        try:
            raise TimeoutError("backend")
        except TimeoutError as exc:
            return exc, ModelError(id(exc), TimeoutError, caught.__code__)

    model_exc, error = caught()
    assert from_model_error(model_exc, [error])
    try:
        raise TimeoutError("the app's own")
    except TimeoutError as own:
        lookalike = ModelError(id(own), TimeoutError, caught.__code__)
        assert not from_model_error(own, [lookalike])
        assert from_model_error(own, [ModelError(id(own), TimeoutError, None)])
    looped = AppBug("a")
    looped.__context__ = AppBug("b")
    looped.__context__.__context__ = looped
    assert not from_model_error(looped, [error])
    chain = model_exc
    for i in range(MAX_CHAINED):
        if i == MAX_CHAINED - 1:
            assert from_model_error(chain, [error])  # the model error is the 16th
        outer = AppBug(i)
        outer.__cause__ = chain
        chain = outer
    assert not from_model_error(chain, [error])  # past the bound: the app's own


# -- 4. The web middleware ------------------------------------------------------------------

def test_fastapi_counts_the_handlers_own_500_after_a_retried_model_error(registry):
    model = inferwatch.instrument(flaky({"n": 0}), name="fraud", version="1",
                                  registry=registry)
    mon = registry.monitor("fraud", "1")
    app = FastAPI()

    @app.get("/score/{x}")
    def score(x: float) -> dict:
        return {"label": retried(model, x)["label"]}  # KeyError: the app's bug

    @app.get("/translated/{x}")
    def translated(x: float) -> dict:
        try:
            return model(x)
        except TimeoutError as exc:
            raise AppBug("no score") from exc

    @app.get("/answered-500/{x}")
    def answered_500(x: float) -> dict:
        retried(model, x)
        raise HTTPException(500, "the app gave up")  # a status, no exception seen

    app.add_middleware(InstrumentMiddleware, registry=registry, model="fraud")
    client = TestClient(app, raise_server_exceptions=False)
    assert [client.get("/score/1").status_code for _ in range(2)] == [500, 500]
    assert errors(mon) == {"TimeoutError": 2, "KeyError": 2}
    assert client.get("/translated/1").status_code == 500  # times out: one failure
    assert client.get("/translated/1").status_code == 200
    assert errors(mon) == {"TimeoutError": 3, "KeyError": 2}
    # Only a status reached the middleware, after a model error: counted as that, as before.
    assert client.get("/answered-500/1").status_code == 500
    assert errors(mon) == {"TimeoutError": 4, "KeyError": 2}
    assert request_totals(mon) == {"ok": 1, "error": 4, "cancelled": 0, "in_flight": 0}


def test_flask_counts_the_handlers_own_500_after_a_retried_model_error(registry):
    model = inferwatch.instrument(flaky({"n": 0}), name="fraud", version="1",
                                  registry=registry)
    mon = registry.monitor("fraud", "1")
    app = Flask(__name__)

    @app.get("/score")
    def score() -> dict:
        return {"label": retried(model, 1.0)["label"]}

    @app.get("/translated")
    def translated() -> dict:
        try:
            return model(1.0)
        except TimeoutError as exc:
            raise AppBug("no score") from exc

    app.wsgi_app = WSGIInstrumentMiddleware(app.wsgi_app, registry=registry, model="fraud")
    client = app.test_client()
    for path in ("/score", "/translated", "/translated"):
        assert client.get(path).data  # read: the request ends with its body
    assert errors(mon) == {"TimeoutError": 2, "KeyError": 1}
    assert request_totals(mon) == {"ok": 1, "error": 2, "cancelled": 0, "in_flight": 0}


@contextmanager
def uvicorn_serving(app: Any) -> Iterator[str]:
    """`app` served by a real uvicorn on a loopback port, in a thread of this process."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), "uvicorn to start")
        assert server.started
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


@contextmanager
def wsgi_serving(app: Any) -> Iterator[str]:
    """`app` served by wsgiref's server on a loopback port, in a thread of this process."""

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=60)


def test_uvicorn_sse_endpoint_answering_event_error_counts_each_failed_stream(registry):
    llm = inferwatch.instrument(async_tokens, name="llm", version="1", registry=registry)
    mon = registry.monitor("llm", "1")
    app = FastAPI()

    @app.get("/chat/{n}")
    async def chat(n: int) -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            try:
                async for token in llm(n):
                    yield f"data: {token}\n\n"
            except TimeoutError:
                yield "event: error\ndata: upstream failed, please retry\n\n"
            else:
                if n == 0:  # the agent's second try, which fails as well
                    yield await async_sse(llm(-1))

        return StreamingResponse(body(), media_type="text/event-stream")

    app.add_middleware(InstrumentMiddleware, routes={"/chat/{n}": "llm"}, registry=registry)
    with uvicorn_serving(app) as url:
        bodies = [get(f"{url}/chat/{n}") for n in (3, -3, 3, -3, 0)]
        assert [status for status, _ in bodies] == [200] * 5
        assert [body.count("event: error") for _, body in bodies] == [0, 1, 0, 1, 1]
        wait_for(lambda: request_totals(mon)["ok"] == 5, "the five requests to end")
    assert errors(mon) == {"TimeoutError": 3}
    assert request_totals(mon) == {"ok": 5, "error": 0, "cancelled": 0, "in_flight": 0}


def test_flask_sse_endpoint_behind_a_real_wsgi_server_counts_each_failed_stream(registry):
    llm = inferwatch.instrument(tokens, name="llm", version="1", registry=registry)
    mon = registry.monitor("llm", "1")
    app = Flask(__name__)

    route = "/chat/<int(signed=True):n>"

    @app.get(route)
    def chat(n: int) -> Response:
        def body() -> Iterator[str]:
            try:
                for token in llm(n):
                    yield f"data: {token}\n\n"
            except TimeoutError:
                yield "event: error\ndata: retry\n\n"

        return Response(body(), mimetype="text/event-stream")

    app.wsgi_app = WSGIInstrumentMiddleware(app.wsgi_app, routes={route: "llm"},
                                            registry=registry)
    with wsgi_serving(app) as url:
        bodies = [get(f"{url}/chat/{n}") for n in (2, -2, 2, -2)]
        assert [body.count("event: error") for _, body in bodies] == [0, 1, 0, 1]
        wait_for(lambda: request_totals(mon)["ok"] == 4, "the four requests to end")
    assert errors(mon) == {"TimeoutError": 2}
    assert request_totals(mon) == {"ok": 4, "error": 0, "cancelled": 0, "in_flight": 0}
