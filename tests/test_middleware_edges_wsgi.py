"""WSGI middleware edges: a body's length stays visible to the server (which sets
Content-Length from it), and routes spelled in non-ASCII letters match under a real server
as they do under ASGI."""

from __future__ import annotations

import asyncio
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import free_port
from inferwatch.serving.middleware import InstrumentMiddleware, WSGIInstrumentMiddleware
from test_middleware import get, scrape, server


def one_chunk(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """A plain WSGI app that leaves Content-Length to the server (PEP 3333 lets it)."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def wsgiref_headers(app: Callable[..., Iterable[bytes]]) -> dict[str, str]:
    """The headers a real wsgiref server on loopback answers `app`'s GET with."""
    httpd = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{httpd.server_port}/score",
                                    timeout=60) as response:
            assert response.read() == b"hello"
            return {name.lower(): value for name, value in response.headers.items()}
    finally:
        httpd.shutdown()
        thread.join()
        httpd.server_close()


def test_wsgiref_still_sets_content_length_for_a_one_chunk_body(scraper):
    """The wrapped body hid its length, so wsgiref answered without Content-Length."""
    inferwatch.monitor("m", "1", registry=scraper.registry)
    bare = wsgiref_headers(one_chunk)
    wrapped = wsgiref_headers(WSGIInstrumentMiddleware(one_chunk, model="m",
                                                       registry=scraper.registry))
    assert bare["content-length"] == "5"
    assert wrapped.get("content-length") == bare["content-length"]
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1


def drive(app: Callable[..., Iterable[bytes]], chunks: Iterable[bytes]) -> tuple[Any, list]:
    """The body `app` returns for a body of `chunks`, and what iterating it gives."""
    def inner(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [])
        return chunks

    body = WSGIInstrumentMiddleware(inner, model="m", registry=app)(
        {"PATH_INFO": "/score", "REQUEST_METHOD": "GET"}, lambda *args: None)
    # As waitress does: a length only when the body has one.
    length = len(body) if hasattr(body, "__len__") else None
    received = list(body)
    body.close()
    return length, received


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.binary(max_size=20), max_size=5), as_tuple=st.booleans())
def test_a_sized_body_keeps_its_length_and_an_iterator_has_none(scraper, chunks, as_tuple):
    inferwatch.monitor("m", "1", registry=scraper.registry)
    sized = tuple(chunks) if as_tuple else list(chunks)
    assert drive(scraper.registry, sized) == (len(chunks), chunks)

    def generator() -> Iterator[bytes]:
        yield from chunks

    assert drive(scraper.registry, generator()) == (None, chunks)


@pytest.mark.integration
def test_gunicorn_records_routes_spelled_in_non_ascii_letters(tmp_path):
    """gunicorn hands PATH_INFO over as latin-1 text (PEP 3333): ``/modèle`` arrived as
    ``/modÃ¨le`` and matched no route, so those requests were never recorded."""
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--log-level", "warning", "edges_wsgi:app"]
    with server(args, port, tmp_path) as url:
        for path in ("/modèle/7", "/prédire"):
            status, _ = get(url + urllib.parse.quote(path))
            assert status == 200
        assert scrape(url, "inferwatch_requests_total", model="m", outcome="ok") == 2


def asgi_recorded(registry: Any, route: str, path: str) -> None:
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        pass

    wrapped = InstrumentMiddleware(app, routes={route: "m"}, registry=registry)
    asyncio.run(wrapped({"type": "http", "method": "GET", "path": path, "headers": []},
                        receive, send))


SEGMENTS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/{}<>"),
                   min_size=1, max_size=12)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segment=SEGMENTS)
def test_a_route_matches_the_same_paths_under_wsgi_as_under_asgi(scraper, segment):
    inferwatch.monitor("m", "1", registry=scraper.registry)
    route = f"/r/{segment}"
    before = scraper.total("inferwatch_requests_total")
    asgi_recorded(scraper.registry, route, route)
    app = WSGIInstrumentMiddleware(one_chunk, routes={route: "m"}, registry=scraper.registry)
    # What a WSGI server puts in PATH_INFO: the URL's bytes, unquoted, as latin-1 text.
    body = app({"PATH_INFO": route.encode("utf-8").decode("latin-1"),
                "REQUEST_METHOD": "GET"}, lambda *args: None)
    assert list(body) == [b"hello"]
    getattr(body, "close", lambda: None)()
    assert scraper.total("inferwatch_requests_total") == before + 2
