"""ASGI middleware edges: request ids from repeated and hostile headers, read as the app
reads them, through a real uvicorn and as a property of any header list."""

from __future__ import annotations

import asyncio
import http.client
import json
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

import inferwatch
from conftest import free_port
from inferwatch.core.request import current_request
from inferwatch.serving.middleware import InstrumentMiddleware
from inferwatch.serving.request_ids import clean_request_id
from test_middleware import get, scrape, server


def get_with_headers(port: int, path: str, headers: list[tuple[str, str]]) -> bytes:
    """A GET that may repeat a header, as a client and a proxy that each add one do."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.putrequest("GET", path)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        connection.close()


@pytest.mark.integration
def test_uvicorn_a_repeated_request_id_is_the_one_the_app_reads_so_outcomes_join(tmp_path):
    """Two X-Request-ID headers: the middleware kept the last, the app (Starlette's
    ``request.headers``) reads the first, and ground truth reported under the app's id
    never joined its prediction."""
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "edges_asgi:app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]
    with server(args, port, tmp_path) as url:
        body = get_with_headers(port, "/score", [("X-Request-ID", "client-1"),
                                                 ("X-Request-ID", "proxy-2")])
        request_id = json.loads(body)["request_id"]
        assert request_id == "client-1"
        assert get(f"{url}/outcome?id={request_id}&label=fraud")[0] == 200
        assert scrape(url, "inferwatch_outcomes_total", model="fraud", result="correct") == 1
        assert scrape(url, "inferwatch_outcomes_unmatched_total", model="fraud") == 0
        assert scrape(url, "inferwatch_requests_total", model="fraud", outcome="ok") == 1


HEADER_NAMES = st.sampled_from([b"x-request-id", b"traceparent", b"host", b"x-request-ids"])
HEADER_VALUES = st.one_of(st.binary(max_size=300),
                          st.text(max_size=300).map(lambda t: t.encode("utf-8")),
                          st.integers(0, 5000).map(lambda n: b"r" * n + b"\xff"))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=40))
def test_the_request_id_is_the_apps_first_header_cleaned_for_any_headers(scraper, headers):
    inferwatch.monitor("m", "1", registry=scraper.registry)
    seen: dict[str, object] = {}

    async def app(scope, receive, send):
        seen["middleware"] = current_request().request_id
        seen["app"] = Headers(scope=scope).get("x-request-id")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"b")]})
        await send({"type": "http.response.body", "body": b"answer"})

    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    before = scraper.total("inferwatch_requests_total")
    faults_before = scraper.total("inferwatch_internal_errors_total")
    wrapped = InstrumentMiddleware(app, model="m", registry=scraper.registry)
    asyncio.run(wrapped({"type": "http", "method": "GET", "path": "/score",
                         "headers": headers}, receive, send))
    app_id = seen["app"]
    assert seen["middleware"] == (None if app_id is None else clean_request_id(app_id))
    assert sent == [{"type": "http.response.start", "status": 200, "headers": [(b"a", b"b")]},
                    {"type": "http.response.body", "body": b"answer"}]
    assert scraper.total("inferwatch_requests_total") == before + 1
    assert scraper.total("inferwatch_internal_errors_total") == faults_before
