"""A push holds every sampled call of a shadow compared or dropped, to a real Pushgateway.

At the end of a ``push.on_exit`` job, the shadows of the pushed models get the wait the
interpreter's exit gives them, then are closed (what is left counts as dropped, reason
``shutdown``) before the push; a plain ``push()``, which may come in the middle of a job,
waits as long for their queues but leaves them running.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

import inferwatch
from conftest import require_binary
from inferwatch.core import shadow_lifetime
from inferwatch.core.registry import Registry
from processes import stop
from shadow_models import Gated, Hanging, Sleeping, Summing
from test_pushgateway import Gateway
from waiting import wait_until

# Below the ports handed out to outgoing connections (32768 and up).
PORTS = range(31000, 31200)
JOB = "nightly"
CALLS = 10
WAIT = 60.0  # a safety net only: a condition that holds ends the wait at once


def _free_port() -> int:
    for port in random.sample(PORTS, len(PORTS)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            return port
    pytest.fail(f"no free port in {PORTS}")


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    binary = require_binary("prometheus-pushgateway")
    address = f"127.0.0.1:{_free_port()}"
    # No persistence file: the gateway keeps its groups in memory only.
    process = subprocess.Popen([binary, f"--web.listen-address={address}",
                                "--persistence.file="],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail("the Pushgateway exited at start")
            try:
                urllib.request.urlopen(f"http://{address}/-/ready", timeout=1).close()
            except OSError:
                return False
            return True

        wait_until(ready, WAIT, "the Pushgateway to start")
        yield Gateway(address)
    finally:
        stop(process)


@pytest.fixture
def registry() -> Iterator[Registry]:
    # Drained by the push only: nothing folds the counts between the calls and the push.
    registry = Registry(drain_interval=3600)
    yield registry
    registry.close()


def _pushed(gateway: Gateway, version: str = "2") -> tuple[float, float, float, float]:
    """The challenger's sampled, compared, dropped and dropped-at-shutdown calls, as pushed."""
    def total(name: str, **labels: str) -> float:
        return sum(s.value for s in gateway.samples(name, job=JOB, model="m",
                                                      model_version=version, **labels))
    return (total("inferwatch_shadow_sampled_total"),
            total("inferwatch_shadow_compared_total"),
            total("inferwatch_shadow_dropped_total"),
            total("inferwatch_shadow_dropped_total", reason="shutdown"))


def _gated() -> Gated:
    """A thread challenger that answers no call until its gate is set."""
    model = Summing()
    model.classes_ = None  # type: ignore[attr-defined]  (a regressor: no classes)
    return Gated(model)


def _score(champion: object) -> None:
    for _ in range(CALLS):
        champion.predict(np.ones((2, 3)))  # type: ignore[attr-defined]


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_job_ending_pushes_the_calls_its_challenger_answers_in_the_wait(
        gateway: Gateway, registry: Registry, monkeypatch: pytest.MonkeyPatch,
        mode: str) -> None:
    # 10 calls of 20 ms: answered well within the wait, never before a push that does not
    # wait for them (the push itself takes a few milliseconds).
    monkeypatch.setattr(shadow_lifetime, "CLOSE_WAIT_SECONDS", WAIT)
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Sleeping(Summing(), 0.02), version="2", sample=1.0,
                               mode=mode, timeout=WAIT, registry=registry)
    with inferwatch.push.on_exit(gateway.address, JOB, registry=registry):
        _score(champion)
    assert _pushed(gateway) == (CALLS, CALLS, 0, 0)
    assert gateway.value("inferwatch_requests_total", job=JOB, model="m", model_version="2",
                         outcome="ok") == CALLS
    # The job is over: its shadow is closed, its champion's calls no longer sampled.
    assert handle.closed
    assert handle not in shadow_lifetime.live_shadows
    champion.predict(np.ones((2, 3)))
    assert handle.queued() == 0


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_job_ending_counts_what_its_challenger_did_not_answer_in_the_wait_as_shutdown(
        gateway: Gateway, registry: Registry, monkeypatch: pytest.MonkeyPatch,
        tmp_path: object, mode: str) -> None:
    monkeypatch.setattr(shadow_lifetime, "CLOSE_WAIT_SECONDS", 0.3)
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    gated = _gated() if mode == "thread" else None
    # Gated never answers until the test lets it; Hanging (for the child process) never.
    challenger = gated or Hanging(os.path.join(str(tmp_path), "started"))
    handle = inferwatch.shadow(champion, challenger, version="2", sample=1.0, mode=mode,
                               timeout=600.0, registry=registry)
    try:
        started = time.monotonic()
        with inferwatch.push.on_exit(gateway.address, JOB, registry=registry):
            _score(champion)
        # One bounded wait, whatever the challenger does (a 600 s call timeout).
        assert time.monotonic() - started < WAIT
        sampled, compared, dropped, shutdown = _pushed(gateway)
        assert sampled == CALLS
        assert compared + dropped == sampled
        assert shutdown == CALLS
        assert handle.closed
    finally:
        if gated is not None:
            gated.gate.set()
        handle.close()


@pytest.mark.integration
def test_an_async_job_ending_settles_its_shadows_before_the_push(
        gateway: Gateway, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shadow_lifetime, "CLOSE_WAIT_SECONDS", WAIT)
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Sleeping(Summing(), 0.02), version="2", sample=1.0,
                               timeout=WAIT, registry=registry)

    async def job() -> None:
        async with inferwatch.push.on_exit(gateway.address, JOB, registry=registry):
            _score(champion)

    asyncio.run(job())
    assert _pushed(gateway) == (CALLS, CALLS, 0, 0)
    assert handle.closed


@pytest.mark.integration
def test_a_stopped_job_closes_its_shadows_without_waiting_for_them(
        gateway: Gateway, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    # The operator asked the job to stop: the push must not wait for a challenger.
    monkeypatch.setattr(shadow_lifetime, "CLOSE_WAIT_SECONDS", 600.0)
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    gated = _gated()
    handle = inferwatch.shadow(champion, gated, version="2", sample=1.0, timeout=600.0,
                               registry=registry)
    try:
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt), inferwatch.push.on_exit(
                gateway.address, JOB, registry=registry):
            _score(champion)
            raise KeyboardInterrupt
        assert time.monotonic() - started < WAIT
        sampled, compared, dropped, shutdown = _pushed(gateway)
        assert (sampled, compared + dropped, shutdown) == (CALLS, CALLS, CALLS)
    finally:
        gated.gate.set()
        handle.close()


@pytest.mark.integration
def test_a_push_in_the_middle_of_a_job_waits_for_the_queue_and_keeps_the_shadow(
        gateway: Gateway, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shadow_lifetime, "CLOSE_WAIT_SECONDS", WAIT)
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Sleeping(Summing(), 0.02), version="2", sample=1.0,
                               timeout=WAIT, registry=registry)
    try:
        _score(champion)
        inferwatch.push(gateway.address, JOB, registry=registry)
        assert _pushed(gateway) == (CALLS, CALLS, 0, 0)
        # The job goes on, and so does its shadow.
        assert not handle.closed
        _score(champion)
        inferwatch.push(gateway.address, JOB, registry=registry)
        assert _pushed(gateway) == (2 * CALLS, 2 * CALLS, 0, 0)
    finally:
        handle.close()


@pytest.mark.integration
def test_a_push_in_the_middle_of_a_job_waits_a_bounded_time_for_a_stuck_challenger(
        gateway: Gateway, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shadow_lifetime, "CLOSE_WAIT_SECONDS", 0.3)
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    gated = _gated()
    handle = inferwatch.shadow(champion, gated, version="2", sample=1.0, timeout=600.0,
                               registry=registry)
    try:
        _score(champion)
        started = time.monotonic()
        inferwatch.push(gateway.address, JOB, registry=registry)
        assert time.monotonic() - started < WAIT
        assert not handle.closed  # the calls not answered yet are answered later
        gated.gate.set()
        assert handle.flush(WAIT)
        inferwatch.push(gateway.address, JOB, registry=registry)
        assert _pushed(gateway) == (CALLS, CALLS, 0, 0)
    finally:
        gated.gate.set()
        handle.close()


@pytest.mark.integration
def test_a_job_leaves_the_shadows_of_another_registry_running(
        gateway: Gateway, registry: Registry) -> None:
    other = Registry(drain_interval=3600)
    try:
        elsewhere = inferwatch.instrument(Summing(), name="m", version="1", registry=other)
        handle = inferwatch.shadow(elsewhere, Summing(), version="2", registry=other)
        pushed = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
        with inferwatch.push.on_exit(gateway.address, JOB, registry=registry):
            pushed.predict(np.ones((2, 3)))
        assert not handle.closed
        assert handle in shadow_lifetime.live_shadows
        handle.close()
    finally:
        other.close()
