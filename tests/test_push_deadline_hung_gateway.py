"""A push against a gateway that accepts connections and never answers takes the time the
docs promise however many models the job has: the timeout bounds an attempt (all of its
groups together), not each model's request.

docs/integrations.md: a stopped job "pushes once at exit, with a timeout of at most 2 s", and
a gateway that stays down costs "about 3.5 s plus four timeouts". Each model's PUT had the
whole timeout of its own, so a job of six models stopped after 12 s.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.serving import pushgateway
from inferwatch.serving.pushgateway import INTERRUPTED_TIMEOUT, PushError

MODELS = 5
# Scheduling on a busy machine (the suite's other workers starting servers), rendering the
# groups, Python's start of a request: what a push may take beyond its timeouts and retry
# delays. Below what per-model timeouts (MODELS of them per attempt) would add in each test
# below, so those cannot pass.
SLACK = 3.0


class HungGateway:
    """A loopback server that accepts every connection and never answers it."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:  # closed
                return
            with self._lock:
                self._held.append(connection)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._held)

    def close(self) -> None:
        # shutdown() wakes the blocked accept(); close() alone would leave it waiting.
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._socket.close()
        self._thread.join(timeout=10)
        with self._lock:
            for connection in self._held:
                connection.close()


@pytest.fixture
def hung_gateway() -> Iterator[HungGateway]:
    server = HungGateway()
    yield server
    server.close()


@pytest.fixture
def job_registry() -> Iterator[Registry]:
    registry = Registry()
    for index in range(MODELS):
        inferwatch.instrument(lambda x: 0.5, name=f"model-{index}", version="1",
                              registry=registry)([1.0])
    yield registry
    registry.close()


def timed(run) -> float:
    started = time.monotonic()
    run()
    return time.monotonic() - started


def test_a_push_with_one_attempt_takes_one_timeout_for_all_its_models(hung_gateway,
                                                                      job_registry):
    timeout = 1.0

    def run() -> None:
        with pytest.raises(PushError) as raised:
            inferwatch.push(hung_gateway.address, "nightly", registry=job_registry,
                            timeout=timeout, retries=0)
        # Every model is reported failed, those never sent as well.
        for index in range(MODELS):
            assert f"model 'model-{index}'" in str(raised.value)

    elapsed = timed(run)
    assert elapsed < timeout + SLACK, elapsed
    assert hung_gateway.connections >= 1


def test_retries_cost_their_delays_plus_one_timeout_per_attempt(hung_gateway, job_registry):
    timeout, retries, delay = 0.5, 2, 0.1

    def run() -> None:
        with pytest.raises(PushError, match=r"\(3 attempts\)"):
            inferwatch.push(hung_gateway.address, "nightly", registry=job_registry,
                            timeout=timeout, retries=retries, retry_delay=delay)

    elapsed = timed(run)
    # Delays of 0.1 s and 0.2 s (doubling), three attempts of at most `timeout` each.
    assert elapsed < (retries + 1) * timeout + delay + 2 * delay + SLACK, elapsed


def test_no_request_is_given_more_than_the_time_left(hung_gateway, job_registry):
    timeout = 1.0
    given: list[float] = []

    def recording_handler(**request):
        given.append(request["timeout"])
        return pushgateway.default_handler(**request)

    with pytest.raises(PushError):
        inferwatch.push(hung_gateway.address, "nightly", registry=job_registry,
                        timeout=timeout, retries=0, handler=recording_handler)
    assert given, "no request was sent"
    assert all(0 < seconds <= timeout for seconds in given), given
    # What the requests were given adds up to the one attempt's timeout at most.
    assert sum(given) <= timeout + 0.05, given


def test_a_stopped_job_with_many_models_pushes_within_the_interrupted_timeout(
        hung_gateway, job_registry):
    def run() -> None:
        with pytest.raises(KeyboardInterrupt), \
                inferwatch.push.on_exit(hung_gateway.address, "nightly",
                                        registry=job_registry):
            raise KeyboardInterrupt

    elapsed = timed(run)
    assert elapsed < INTERRUPTED_TIMEOUT + SLACK, elapsed


def test_a_job_whose_gateway_hangs_ends_within_its_documented_budget(hung_gateway,
                                                                     job_registry, caplog):
    timeout, retries, delay = 0.5, 1, 0.1

    def run() -> None:
        with inferwatch.push.on_exit(hung_gateway.address, "nightly", registry=job_registry,
                                     timeout=timeout, retries=retries, retry_delay=delay):
            pass

    elapsed = timed(run)
    assert elapsed < (retries + 1) * timeout + delay + SLACK, elapsed
    assert "could not push job 'nightly'" in caplog.text
