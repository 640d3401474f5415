"""Web middleware: what is a stream, which request id joins, and a WSGI list body cut short.

- A plain JSON answer that Starlette's ``BaseHTTPMiddleware`` (any ``@app.middleware("http")``)
  re-sends as its bytes and an empty last message is no stream, under uvicorn as under WSGI.
- The request id read from a header and the same text given to ``record_outcome`` join,
  however long and whatever its letters: every path bounds an id the same way.
- A list body whose client went away before the server wrote it all is ``cancelled``, under
  gunicorn's sync and gthread workers, as an iterator body is.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
import sys
import time
import urllib.parse
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

import inferwatch
from conftest import free_port
from inferwatch import faults
from inferwatch.core.request import current_request
from inferwatch.events.sinks import stored_request_id
from inferwatch.serving.request_ids import clean_request_id
from test_middleware import APPS, get, scrape, server

# Ids a client may send in a header, with what a header can hold (obs-text: bytes past
# ASCII, which a server hands over as latin-1 letters; a tab inside).
HEADER_IDS = {
    "short": "order-17",
    "200 chars": "tenant-7/" + "x" * 191,
    "2000 chars": "tenant-7/" + "y" * 1991,
    "UTF-8 letters": "commande-\u00e917".encode().decode("latin-1"),
    "a tab inside": "order\t17",
}


def served(args: list[str], port: int, tmp_path):
    """`server`, with the package this test runs against ahead of the installed one."""
    path = os.pathsep.join(p for p in (str(APPS), os.environ.get("PYTHONPATH")) if p)
    return server(args, port, tmp_path, env={"PYTHONPATH": path})


def wait_for(check: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def get_with_headers(port: int, path: str, headers: list[tuple[str, str]]) -> bytes:
    """A GET whose headers may repeat, with values sent as their latin-1 bytes."""
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


def ids_join(url: str, port: int, headers_of_each: list[list[tuple[str, str]]]) -> list[str]:
    """Score once per header list, report ground truth under the id the app read, and check
    that each joined its prediction; the ids the app read."""
    def counted() -> tuple[float, float]:
        return (scrape(url, "inferwatch_outcomes_total", model="fraud", result="correct"),
                scrape(url, "inferwatch_outcomes_unmatched_total", model="fraud"))

    read = []
    correct, unmatched = counted()
    for headers in headers_of_each:
        scored = scrape(url, "inferwatch_requests_total", model="fraud")
        app_id = json.loads(get_with_headers(port, "/score", headers))["request_id"]
        read.append(app_id)
        # The request ends once the server closed its body, which may come after the client
        # read it: ground truth arrives later than that in life.
        wait_for(lambda n=scored: scrape(url, "inferwatch_requests_total", model="fraud") > n,
                 "the request to end")
        query = urllib.parse.urlencode({"id": app_id, "label": "fraud"})
        assert get(f"{url}/outcome?{query}")[0] == 200
        wait_for(lambda seen=correct + unmatched: sum(counted()) > seen,
                 "the outcome to be counted")
        assert counted() == (correct + 1, unmatched), app_id
        correct += 1
    return read


def model_task(url: str, model: str) -> str:
    """The task label of `model`'s info series."""
    text = get(url + "/metrics/")[1].decode()
    for line in text.splitlines():
        if line.startswith("inferwatch_model_info{") and f'model="{model}"' in line:
            return line.split('task="', 1)[1].split('"', 1)[0]
    pytest.fail(f"no inferwatch_model_info for {model}")


@pytest.mark.integration
def test_uvicorn_a_basehttp_middlewares_json_answer_is_no_stream_and_header_ids_join(tmp_path):
    """Behind an ``@app.middleware("http")``, every plain answer arrived as its bytes and an
    empty last message: each was recorded as a stream, and the classifier became a
    ``generation`` model. Ids past 128 characters or with letters past ASCII were cut by the
    middleware but not by ``record_outcome``, and never joined."""
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "ids_streams_asgi:app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]
    with served(args, port, tmp_path) as url:
        for _ in range(3):
            assert get(url + "/score")[0] == 200
        assert get(url + "/stream")[1] == b"part0 part1 part2 "
        wait_for(lambda: scrape(url, "inferwatch_requests_total", model="fraud",
                                outcome="ok") == 3
                 and scrape(url, "inferwatch_requests_total", model="chat", outcome="ok") == 1,
                 "the requests to be counted")
        assert scrape(url, "inferwatch_stream_first_item_seconds_count", model="fraud") == 0
        assert scrape(url, "inferwatch_stream_items_count", model="fraud") == 0
        assert model_task(url, "fraud") != "generation"
        # A real stream still is one, behind the same middleware: three parts.
        assert scrape(url, "inferwatch_stream_first_item_seconds_count", model="chat") == 1
        assert scrape(url, "inferwatch_stream_items_sum", model="chat") == 3

        read = ids_join(url, port, [[("X-Request-ID", rid)] for rid in HEADER_IDS.values()])
        assert read == list(HEADER_IDS.values())  # the app reads the header unchanged
        # A repeated header: Starlette's request.headers reads the first, as the middleware.
        assert ids_join(url, port, [[("X-Request-ID", "client-1"),
                                     ("X-Request-ID", "proxy-2")]]) == ["client-1"]
        assert scrape(url, "inferwatch_stream_first_item_seconds_count", model="fraud") == 0
        assert scrape(url, "inferwatch_internal_errors_total") == 0


def leave_mid_body(port: int, path: str) -> None:
    """Ask for `path`, read a little of its body, and reset the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        # SO_LINGER of zero: close() sends a reset, and the server's next write fails.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.integration
@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_gunicorn_a_list_body_cut_short_is_cancelled_and_header_ids_join(tmp_path, worker):
    """A list body's one big chunk was taken whole before the server wrote it: a client
    gone mid-chunk left the body unexhausted, yet the request was recorded ok."""
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--worker-class", worker, "--threads", "2", "--log-level", "warning",
            "ids_lists_wsgi:application"]
    with served(args, port, tmp_path) as url:
        assert get(url + "/raw/small-list") == (200, b"small")
        assert get(url + "/raw/one-chunk-iter") == (200, b"one")
        wait_for(lambda: scrape(url, "inferwatch_requests_total", model="bodies",
                                outcome="ok") == 2, "the whole bodies to be counted")
        leave_mid_body(port, "/raw/big-list")
        leave_mid_body(port, "/raw/big-iter")
        wait_for(lambda: scrape(url, "inferwatch_requests_total", model="bodies",
                                outcome="cancelled") == 2, "both bodies cut short to be counted")
        assert scrape(url, "inferwatch_requests_total", model="bodies", outcome="ok") == 2
        assert scrape(url, "inferwatch_requests_total", model="bodies", outcome="error") == 0
        # One chunk of bytes, whole or cut short, is no stream.
        assert scrape(url, "inferwatch_stream_first_item_seconds_count", model="bodies") == 0

        read = ids_join(url, port, [[("X-Request-ID", rid)] for rid in HEADER_IDS.values()])
        assert read == list(HEADER_IDS.values())
        # A repeated header: the server joins its values with a comma (PEP 3333), and Flask
        # reads that; so does the middleware.
        assert ids_join(url, port, [[("X-Request-ID", "client-1"),
                                     ("X-Request-ID", "proxy-2")]]) == ["client-1,proxy-2"]
        assert scrape(url, "inferwatch_stream_first_item_seconds_count", model="fraud") == 0
        assert scrape(url, "inferwatch_internal_errors_total") == 0


# --- one bound for every id ------------------------------------------------------------------

@given(st.text(max_size=1100) | st.text(alphabet=st.characters(max_codepoint=0x7f),
                                        min_size=1000, max_size=1100))
def test_every_path_bounds_an_id_the_same_way(text):
    bounded = faults.request_id_text(text, "test")
    assert clean_request_id(text) == (bounded or None)
    assert faults.request_id_text(bounded, "test") == bounded  # read back, it joins again
    if len(text) <= faults.MAX_REQUEST_ID_CHARS:
        assert bounded == text
    else:
        assert bounded.startswith(faults.REQUEST_ID_DIGEST_PREFIX) and len(bounded) == 71
        assert bounded == stored_request_id(text)  # as the event log stores it


def test_an_id_past_the_bound_is_its_digest_and_joins_from_every_path(scraper):
    mon = inferwatch.monitor("fraud", "1", registry=scraper.registry)
    model = inferwatch.instrument(lambda rows: ["fraud" for _ in rows], name="fraud",
                                  version="1", registry=scraper.registry)
    long_id = "tenant-7/" + "z" * 5000
    with mon.request(request_id=long_id) as request:
        model([[1.0]])
        kept = current_request().request_id
    assert request.request_id == kept
    assert kept.startswith(faults.REQUEST_ID_DIGEST_PREFIX) and len(kept) == 71
    model([[1.0]], request_id=long_id + "!")  # a call's own id: bounded the same way
    mon.record_outcome(long_id, "fraud")
    mon.record_outcome(long_id + "!", "fraud")
    mon.record_outcome(kept, "fraud")  # the digest read back (the event log's id): a repeat
    assert scraper.value("inferwatch_outcomes_total", model="fraud", result="correct") == 2
    assert scraper.value("inferwatch_outcomes_unmatched_total", model="fraud",
                         reason="duplicate") == 1
    assert not scraper.value("inferwatch_outcomes_unmatched_total", model="fraud",
                             reason="unknown_id")
