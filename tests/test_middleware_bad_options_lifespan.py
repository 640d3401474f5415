"""``app.add_middleware(InstrumentMiddleware, ...)`` with options that could never record a
request stops the app at start-up with an error naming the option.

Starlette (FastAPI) builds its middleware stack on its first call, the lifespan startup:
an error raised from the middleware's constructor there reached the server as the app's
own failure to speak the lifespan protocol, which uvicorn's default ``--lifespan auto``
took as "lifespan unsupported". The server then started, and answered every request, the
app's routes and ``/metrics`` alike, 500 with that error."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import inferwatch
from conftest import free_port
from inferwatch.core.registry import Registry
from inferwatch.serving.middleware import InstrumentMiddleware

# The documented FastAPI form with the route's leading '/' left out.
BAD_ROUTES = {"score/{user_id}": "fraud"}
NAMED_OPTION = "routes['score/{user_id}']"

BAD_APP = textwrap.dedent("""
    from fastapi import FastAPI

    import inferwatch

    app = FastAPI()


    @app.post("/score/{user_id}")
    async def score(user_id: int) -> dict:
        return {"fraud": 0.5}


    app.add_middleware(inferwatch.InstrumentMiddleware, routes={"score/{user_id}": "fraud"})
    app.mount("/metrics", inferwatch.make_asgi_app())
""")


def answers(url: str) -> int | None:
    """The HTTP status `url` answers with, or None while nothing listens there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def run_until_exit(command: list[str], app_dir: Path, port: int) -> tuple[int, str]:
    """Run the server `command` until it exits; its exit status and output. A server that
    answers a request instead started with the bad options: the test fails at once."""
    log_path = app_dir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=app_dir, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONPATH": str(app_dir)})
    try:
        # A generous deadline: with the cores busy, importing FastAPI alone can take 20 s.
        deadline = time.monotonic() + 120
        while process.poll() is None:
            status = answers(f"http://127.0.0.1:{port}/metrics/")
            if status is not None:
                pytest.fail(f"the server started and answered /metrics/ {status}:\n"
                            f"{log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the server neither started nor exited:\n{log_path.read_text()}")
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    return process.returncode, log_path.read_text()


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_a_server_exits_at_start_up_naming_the_option(tmp_path, server):
    (tmp_path / "bad_options_app.py").write_text(BAD_APP)
    port = free_port()
    if server == "uvicorn":  # its default --lifespan auto, as the docs run it
        command = [sys.executable, "-m", "uvicorn", "bad_options_app:app",
                   "--host", "127.0.0.1", "--port", str(port)]
    else:
        command = [sys.executable, "-m", "gunicorn", "--worker-class",
                   "uvicorn.workers.UvicornWorker", "--workers", "1",
                   "--bind", f"127.0.0.1:{port}", "bad_options_app:app"]
    returncode, output = run_until_exit(command, tmp_path, port)
    assert returncode != 0, output
    assert NAMED_OPTION in output, output
    assert "lifespan' protocol appears unsupported" not in output, output


# --- the ASGI lifespan protocol, driven directly ---------------------------------------------
def lifespan_messages(app: Any) -> list[dict[str, Any]]:
    """What `app` sends for a lifespan startup, and for the shutdown if it started."""
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "lifespan.startup.complete":
            await incoming.put({"type": "lifespan.shutdown"})

    async def run() -> None:
        await incoming.put({"type": "lifespan.startup"})
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": {}}
        await asyncio.wait_for(app(scope, incoming.get, send), timeout=30)

    asyncio.run(run())
    return sent


def http_call(app: Any, path: str) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        pass

    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "headers": [], "scheme": "http",
             "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1234),
             "http_version": "1.1", "asgi": {"version": "3.0"}}
    asyncio.run(app(scope, receive, send))


def recording_lifespan(started: list[str]) -> Callable[[Any], AbstractAsyncContextManager]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        started.append("app")
        yield

    return lifespan


def fastapi_app(started: list[str], **options: Any) -> FastAPI:
    app = FastAPI(lifespan=recording_lifespan(started))

    @app.get("/score/{user_id}")
    async def score(user_id: int) -> dict:
        return {"fraud": 0.5}

    app.add_middleware(InstrumentMiddleware, registry=Registry(), **options)
    app.mount("/metrics", inferwatch.make_asgi_app())
    return app


def starlette_app(started: list[str], **options: Any) -> Starlette:
    async def score(request: Any) -> PlainTextResponse:
        return PlainTextResponse("0.5")

    app = Starlette(routes=[Route("/score/{user_id}", score)],
                    lifespan=recording_lifespan(started))
    app.add_middleware(InstrumentMiddleware, registry=Registry(), **options)
    return app


APPS = [fastapi_app, starlette_app]


@pytest.mark.parametrize("make_app", APPS)
def test_lifespan_startup_fails_naming_the_option(make_app):
    started: list[str] = []
    sent = lifespan_messages(make_app(started, routes=BAD_ROUTES))
    assert [message["type"] for message in sent] == ["lifespan.startup.failed"]
    assert NAMED_OPTION in sent[0]["message"]
    assert sent[0]["message"].startswith("ValueError: inferwatch middleware: ")
    assert started == []  # the app's own start-up never ran: it is not starting


@pytest.mark.parametrize("make_app", APPS)
@pytest.mark.parametrize(("options", "error", "named"), [
    ({"routes": BAD_ROUTES}, ValueError, NAMED_OPTION),
    ({"routes": "/score"}, TypeError, "routes must be a mapping"),
    ({"routes": {"/score/{user_id}": "fraud"}, "exclude_paths": None}, TypeError,
     "exclude_paths"),
    ({"routes": {"/score/{user_id}": "fraud"}, "request_id_header": "X Request"}, ValueError,
     "request_id_header"),
])
def test_without_lifespan_every_request_raises_naming_the_option(make_app, options, error,
                                                                   named):
    """A server run with the lifespan protocol off (``--lifespan off``) never asks the app
    to start: each request then fails with the error, as it did, never served unrecorded."""
    app = make_app([], **options)
    for _ in range(2):
        with pytest.raises(error) as info:
            http_call(app, "/score/7")
        assert named in str(info.value)
    assert len(info.traceback) < 40  # a fresh error each time, not one growing traceback


@pytest.mark.parametrize("make_app", APPS)
def test_good_options_start_the_app_as_before(make_app):
    started: list[str] = []
    sent = lifespan_messages(make_app(started, routes={"/score/{user_id}": "fraud"}))
    assert [message["type"] for message in sent] == ["lifespan.startup.complete",
                                                     "lifespan.shutdown.complete"]
    assert started == ["app"]


def test_wrapped_by_hand_the_constructor_still_raises():
    """``app = InstrumentMiddleware(app, ...)`` at import: the import itself fails."""
    with pytest.raises(ValueError, match=r"routes\['score/\{user_id\}'\] is not a path"):
        InstrumentMiddleware(FastAPI(), routes=BAD_ROUTES)
