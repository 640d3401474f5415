"""``serve()``, ``make_wsgi_app()`` and ``make_asgi_app()`` given the inferwatch ``Registry``
that ``instrument(registry=...)`` records into: each serves what that registry's monitors
hold, over real HTTP, and a registry of any other kind is refused when the app is made."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from inferwatch.core.registry import Registry

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@pytest.fixture
def own_registry() -> Iterator[Registry]:
    """A registry with one call of model "own" in it, and none of model "elsewhere"."""
    registry = Registry()
    inferwatch.instrument(lambda x: 0.5, name="own", registry=registry)(1)
    other = Registry()
    inferwatch.instrument(lambda x: 0.5, name="elsewhere", registry=other)(1)
    yield registry
    registry.close()
    other.close()


def _scrape(url: str, accept: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read().decode("utf-8")


def _models_with_requests(body: str, *, openmetrics: bool = False) -> dict[str, float]:
    """Model name to its ok calls, from inferwatch_requests_total."""
    parse = openmetrics_families if openmetrics else text_string_to_metric_families
    return {sample.labels["model"]: sample.value
            for family in parse(body) if family.name == "inferwatch_requests"
            for sample in family.samples
            if sample.name == "inferwatch_requests_total" and sample.labels["outcome"] == "ok"}


def _assert_serves_own_registry(url: str) -> None:
    status, text = _scrape(url)
    assert status == 200
    assert _models_with_requests(text) == {"own": 1.0}
    status, body = _scrape(url, OPENMETRICS)
    assert status == 200
    assert _models_with_requests(body, openmetrics=True) == {"own": 1.0}


def test_serve_scrapes_the_given_inferwatch_registry(own_registry: Registry) -> None:
    with inferwatch.serve(port=0, addr="127.0.0.1", registry=own_registry) as server:
        _assert_serves_own_registry(server.url)
        # `?name[]=` selects from the registry's families as it does from the default's.
        status, text = _scrape(server.url + "?name[]=inferwatch_requests_total")
        assert status == 200
        assert {family.name for family in text_string_to_metric_families(text)} == {
            "inferwatch_requests"}


def test_serve_shows_the_given_registry_on_its_status_page(own_registry: Registry) -> None:
    with inferwatch.serve(port=0, addr="127.0.0.1", registry=own_registry) as server:
        status, page = _scrape(server.url.removesuffix("/metrics") + "/")
    assert status == 200
    assert "?model=own&amp;" in page and "elsewhere" not in page


class _QuietWsgiHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_wsgi_app_scrapes_the_given_inferwatch_registry(own_registry: Registry) -> None:
    httpd = make_server("127.0.0.1", 0, inferwatch.make_wsgi_app(own_registry),
                        handler_class=_QuietWsgiHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        _assert_serves_own_registry(f"http://127.0.0.1:{httpd.server_port}/metrics")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@contextmanager
def _uvicorn_serving(app: object) -> Iterator[str]:
    """`app` served by uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped before it started"
        assert time.monotonic() < deadline, "uvicorn did not start within 30s"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_asgi_app_scrapes_the_given_inferwatch_registry(own_registry: Registry) -> None:
    with _uvicorn_serving(inferwatch.make_asgi_app(own_registry)) as base:
        _assert_serves_own_registry(base + "/metrics")


@pytest.mark.parametrize("make", [
    lambda registry: inferwatch.make_wsgi_app(registry),
    lambda registry: inferwatch.make_asgi_app(registry),
    lambda registry: inferwatch.serve(port=0, addr="127.0.0.1", registry=registry),
], ids=["make_wsgi_app", "make_asgi_app", "serve"])
@pytest.mark.parametrize("wrong", ["REGISTRY", {"model": "m"}, 42])
def test_a_registry_of_another_kind_is_refused_naming_registry(make, wrong) -> None:
    with pytest.raises(ValueError, match="registry"):
        server = make(wrong)
        if hasattr(server, "shutdown"):
            server.shutdown()
