"""Stream series merged across 2 gunicorn workers in multi-worker mode, counted exactly."""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from test_multiproc_gunicorn import Server, metric_value
from test_multiproc_gunicorn import gunicorn as multiproc_gunicorn

pytestmark = pytest.mark.integration

WORKERS = 2


@contextlib.contextmanager
def gunicorn(tmp_path: Path, env: dict[str, str]) -> Iterator[Server]:
    with multiproc_gunicorn(tmp_path, "wsgi_streams:app", env=env, workers=WORKERS) as server:
        yield server


def stream(port: int, query: str) -> tuple[str, bytes]:
    """One streamed response: the answering worker's pid and the body it got (a failed
    stream ends early, when the worker drops the connection)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
    try:
        connection.request("GET", "/generate?" + query)
        response = connection.getresponse()
        try:
            body = response.read()
        except http.client.IncompleteRead as partial:
            body = partial.partial
        return response.getheader("X-Worker"), body
    finally:
        connection.close()


def test_two_gunicorn_workers_merge_stream_series_exactly(tmp_path):
    arrived = tmp_path / "arrived"
    arrived.mkdir()
    ok_streams, failed_streams = 30, 10
    with gunicorn(tmp_path, {"HOLD_DIR": str(arrived), "HOLD_FOR": str(WORKERS)}) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with ThreadPoolExecutor(8) as pool:
            # Held calls first, until both workers have served one: both publish by
            # construction, not by the luck of accept().
            held = [pool.submit(stream, port, "n=5&hold=1") for _ in range(WORKERS)]
            deadline = time.monotonic() + 60
            while len(list(arrived.iterdir())) < WORKERS:
                assert time.monotonic() < deadline, f"{list(arrived.iterdir())} arrived"
                held.append(pool.submit(stream, port, "n=5&hold=1"))
                time.sleep(0.05)
            answers = [f.result() for f in held]
            answers += pool.map(lambda _: stream(port, "n=5"), range(ok_streams - len(held)))
            failed = list(pool.map(lambda _: stream(port, "n=5&fail=2"), range(failed_streams)))
        assert all(body == b"tok0 tok1 tok2 tok3 tok4 " for _, body in answers)
        assert len({pid for pid, _ in answers}) == WORKERS
        assert all(body.startswith(b"tok0 tok1 ") and b"tok2" not in body for _, body in failed)
        server.wait_for("inferwatch_requests_total", failed_streams, outcome="error",
                        model="chat")
        server.wait_for("inferwatch_requests_total", ok_streams, outcome="ok", model="chat")
        time.sleep(1.5)  # both workers have published again: still exact, never more
        samples = server.samples()

        def value(name: str, **labels: str) -> float:
            return metric_value(samples, name, model="chat", **labels)

        total = ok_streams + failed_streams
        assert value("inferwatch_requests_total", outcome="ok") == ok_streams
        assert value("inferwatch_requests_total", outcome="error") == failed_streams
        assert value("inferwatch_errors_total", error_type="RuntimeError") == failed_streams
        assert value("inferwatch_request_duration_seconds_count") == total
        assert value("inferwatch_stream_first_item_seconds_count") == total
        assert value("inferwatch_stream_items_count") == total
        assert value("inferwatch_stream_items_sum") == 5 * ok_streams + 2 * failed_streams
        assert value("inferwatch_stream_item_interval_seconds_count") == \
            4 * ok_streams + 1 * failed_streams
        assert value("inferwatch_tokens_total", kind="output") == \
            5 * ok_streams + 2 * failed_streams
        assert value("inferwatch_output_characters_sum") == \
            len("tok0 tok1 tok2 tok3 tok4 ") * ok_streams + len("tok0 tok1 ") * failed_streams
        assert value("inferwatch_requests_in_flight") == 0
