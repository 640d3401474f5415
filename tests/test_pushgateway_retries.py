"""A push through a gateway that blips: repeated when it may pass, not when it was refused."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import inferwatch
from inferwatch.serving.pushgateway import PushError
from loopback_http import LoopbackServer, QuietHandler, forward_put
from test_pushgateway import Gateway, gateway, refuse_counters  # noqa: F401 (the fixture)


class Front:
    """An HTTP front of the real gateway: answers the first `failures` PUTs with `status`
    itself, then forwards every request unchanged. Counts the PUTs per path."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.failures = 0
        self.status = 503
        self.retry_after: str | None = None
        self.puts: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        front = self

        class Handler(QuietHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with front.lock:
                    front.puts.append((time.monotonic(), self.path))
                    fail = front.failures > 0
                    front.failures -= fail
                if fail:
                    self.send_response(front.status)
                    if front.retry_after is not None:
                        self.send_header("Retry-After", front.retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                forward_put(self, front.target, body)

        self.http = LoopbackServer(Handler)
        self.address = self.http.address

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def front(gateway: Gateway) -> Iterator[Front]:  # noqa: F811
    front = Front(gateway.address)
    try:
        yield front
    finally:
        front.close()


def _churn(scraper):
    model = inferwatch.instrument(lambda x: 0.5, name="churn", version="1",
                                  registry=scraper.registry)
    model([1.0])
    model([2.0])
    return scraper.registry


@pytest.mark.integration
@pytest.mark.parametrize("status", [503, 502, 429, 408])
def test_a_gateway_that_blips_still_gets_the_push(gateway: Gateway, front: Front,  # noqa: F811
                                                  scraper, status):
    # A batch job ending while the gateway restarts (or a proxy before it returns 502)
    # lost its run's metrics: the push was tried once.
    registry = _churn(scraper)
    front.failures, front.status = 2, status

    pushed = inferwatch.push(front.address, "nightly", registry=registry, retry_delay=0.01)

    assert pushed == [{"job": "nightly", "model": "churn"}]
    assert len(front.puts) == 3 and len({path for _, path in front.puts}) == 1
    assert gateway.value("inferwatch_requests_total", job="nightly", model="churn",
                         outcome="ok") == 2


@pytest.mark.integration
def test_a_refusal_is_not_repeated(gateway: Gateway, front: Front, scraper):  # noqa: F811
    registry = _churn(scraper)
    refuse_counters(gateway.address)  # the gateway now refuses the push (400)
    with pytest.raises(PushError) as refused:
        inferwatch.push(front.address, "nightly", registry=registry, retry_delay=0.01)
    assert "400" in str(refused.value) and "attempts" not in str(refused.value)
    assert len(front.puts) == 1


@pytest.mark.integration
def test_retries_run_out_and_say_how_many_attempts(front: Front, scraper):
    registry = _churn(scraper)
    front.failures = 10

    with pytest.raises(PushError, match=r"HTTP Error 503.*\(3 attempts\)"):
        inferwatch.push(front.address, "nightly", registry=registry, retries=2,
                        retry_delay=0.01)
    assert len(front.puts) == 3


@pytest.mark.integration
def test_the_wait_doubles_and_follows_retry_after(gateway: Gateway, front: Front,  # noqa: F811
                                                  scraper):
    registry = _churn(scraper)
    front.failures = 2
    pushed = inferwatch.push(front.address, "nightly", registry=registry, retry_delay=0.2)
    assert pushed
    (first, _), (second, _), (third, _) = front.puts
    # Lower bounds only: a sleep never ends early, however busy the machine.
    assert second - first >= 0.2 and third - second >= 0.4

    front.puts.clear()
    front.failures, front.status, front.retry_after = 1, 429, "1"
    inferwatch.push(front.address, "nightly", registry=registry, retry_delay=0.01)
    (first, _), (second, _) = front.puts
    assert second - first >= 1.0


def test_on_exit_repeats_too_and_a_gateway_that_stays_down_loses_nothing_else(scraper):
    registry = _churn(scraper)
    # Nothing listens: every attempt fails to connect, which may pass, so all are made.
    started = time.monotonic()
    with inferwatch.push.on_exit("127.0.0.1:1", "nightly", registry=registry, retries=2,
                                 retry_delay=0.1, timeout=1):
        result = "scored"
    assert result == "scored"
    assert time.monotonic() - started >= 0.1 + 0.2


@pytest.mark.parametrize("options, message", [
    ({"retries": -1}, "retries must be a whole number >= 0, got -1"),
    ({"retries": 1.5}, "retries must be a whole number >= 0, got 1.5"),
    ({"retry_delay": -0.1}, "retry_delay must be seconds from 0 to 60, got -0.1"),
    ({"retry_delay": "1"}, "retry_delay must be seconds from 0 to 60, got '1'"),
])
def test_bad_retry_options_name_the_problem(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        inferwatch.push("127.0.0.1:9091", "nightly", **options)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        inferwatch.push.on_exit("127.0.0.1:9091", "nightly", **options)
