"""The status page, its snapshot and its history ring after the wall clock steps back (NTP,
a resumed VM), in one process and in multi-worker mode, read over HTTP as a user does."""

from __future__ import annotations

import json
import math
import time
import urllib.request

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import inferwatch
from inferwatch.core.history import History
from inferwatch.core.registry import Registry
from inferwatch.core.state import ModelState
from inferwatch.multiproc import attach
from inferwatch.report.live import from_state
from inferwatch.report.page import model_link
from inferwatch.report.status import read_snapshot
from test_report import parsed

HOUR = 3600.0


class SteppedClock:
    """time.time() as a host sees it after NTP steps its clock (or time.monotonic(),
    moved on by a test instead of sleeping)."""

    def __init__(self, real=time.time) -> None:
        self.offset = 0.0
        self.real = real

    def __call__(self) -> float:
        return self.real() + self.offset


def _reference() -> inferwatch.Reference:
    rng = np.random.default_rng(3)
    return inferwatch.Reference.from_data({"amount": rng.normal(0, 1, 2000)},
                                          predictions=rng.random(2000))


def _calls(registry: Registry, monitor, n: int, publisher=None) -> None:
    rng = np.random.default_rng(n)
    for _ in range(n):
        with monitor.request() as r:
            r.features({"amount": float(rng.normal(0.5, 1))})
            r.prediction(np.array([float(rng.random())]))
    registry.drain()
    if publisher is not None:
        assert publisher.publish(force=True)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return response.read()


def _windowed(values: dict[str, str]) -> dict[str, str]:
    """The numbers read from rolling windows: prediction quantiles and drift."""
    return {k: v for k, v in values.items()
            if k.startswith(("quantile|", "feature_drift|", "prediction_drift|", "drift_rows"))}


@pytest.mark.parametrize("multiworker", [False, True], ids=["one process", "multi-worker"])
def test_page_and_snapshot_keep_quantiles_and_drift_after_a_step_back(
        tmp_path, monkeypatch, multiworker):
    clock = SteppedClock()
    monkeypatch.setattr(time, "time", clock)
    registry = Registry(drain_interval=3600)
    publisher = attach(registry, str(tmp_path)) if multiworker else None
    try:
        monitor = registry.monitor("fraud", "1").configure(reference=_reference())
        _calls(registry, monitor, 300, publisher)
        with inferwatch.serve(port=0, addr="127.0.0.1", registry=CollectorRegistry(),
                              status_page=registry) as server:
            base = server.url.rsplit("/", 1)[0] + "/"
            registry.sample_history(time.time())
            page = base + model_link("fraud", "1")
            before = _windowed(parsed(_get(page).decode()).data_values)
            stepped_at = time.time()
            clock.offset -= HOUR  # NTP steps the host's clock back an hour
            after = _windowed(parsed(_get(page).decode()).data_values)
            generated_at, states = read_snapshot(_get(base + "?format=json"))
    finally:
        if publisher is not None:
            publisher.close()
        registry.close()
    assert before["drift_rows"] == "300"
    assert any(k.startswith("quantile|") for k in before)
    assert all(not math.isnan(float(v)) for v in before.values())
    assert after == before
    # `inferwatch report --metrics` reads the windows at the snapshot's time.
    assert generated_at >= stepped_at
    report = from_state(states[0], None, generated_at)
    assert report.live.drift_window_rows == 300
    assert not math.isnan(report.live.prediction_quantiles["value"]["0.5"])


def test_window_and_sparklines_read_the_history_where_it_is_after_a_step_back(monkeypatch):
    clock, monotonic = SteppedClock(), SteppedClock(time.monotonic)
    monkeypatch.setattr(time, "time", clock)
    monkeypatch.setattr(time, "monotonic", monotonic)
    registry = Registry(drain_interval=3600)
    try:
        history = registry.enable_history()  # as serving the page does
        monitor = registry.monitor("fraud", "1")
        for _ in range(100):
            monitor.record_call(0.01, 0.5)
        registry.drain()
        registry.sample_history(time.time())
        clock.offset += 400.0  # later samples, each a step on (no sleeping)
        monotonic.offset += 400.0
        for _ in range(300):
            monitor.record_call(0.01, 0.5)
        registry.drain()
        registry.sample_history(time.time())
        clock.offset += 20.0 - HOUR  # 20 s on, the clock is stepped back an hour
        monotonic.offset += 20.0
        for _ in range(60):
            monitor.record_call(0.01, 0.5)
        with inferwatch.serve(port=0, addr="127.0.0.1", registry=CollectorRegistry(),
                              status_page=registry) as server:
            base = server.url.rsplit("/", 1)[0] + "/"
            values = parsed(_get(base + model_link("fraud", "1")).decode()).data_values
        ring = history.samples(("fraud", "1"))
        states, now = registry.states_at()
    finally:
        registry.close()
    # The 5m window starts at the first sample, 420 s before now: 360 calls in it.
    assert float(values["calls per second"]) == pytest.approx(360 / 420, rel=0.01)
    assert now >= ring[-1].at + 20.0 - 1.0
    assert [s.totals["requests"] for s in ring] == [100.0, 400.0]
    report = from_state(states[0], history, now)
    # The last interval (newest sample to now) holds the 60 calls since, over 20 s.
    assert report.live.sparklines["calls per second"][-1] == pytest.approx(3.0, rel=0.1)


def test_states_at_is_never_earlier_than_a_monitors_windows(monkeypatch):
    # No history sample was taken before the step back: the monitors' windows still
    # went on past it, and a page read at the stepped clock would find them empty.
    clock = SteppedClock()
    monkeypatch.setattr(time, "time", clock)
    registry = Registry(drain_interval=3600)
    try:
        monitor = registry.monitor("fraud", "1")
        for value in range(50):
            monitor.record_call(0.01, float(value))
        registry.drain()
        drained_at = time.time()
        clock.offset -= HOUR
        states, now = registry.states_at()
    finally:
        registry.close()
    assert now >= drained_at
    summary = states[0].summaries["inferwatch_prediction"][("value",)]
    assert not math.isnan(summary.quantiles([0.5], now)[0])


def test_snapshot_generated_at_is_the_page_time(monkeypatch):
    clock = SteppedClock()
    monkeypatch.setattr(time, "time", clock)
    registry = Registry(drain_interval=3600)
    try:
        registry.monitor("fraud", "1").record_call(0.01, 0.5)
        from inferwatch.report.status import StatusPages

        pages = StatusPages(registry)
        registry.sample_history(time.time())
        before = time.time()
        clock.offset -= HOUR
        status, body, _ = pages.respond("format=json")
    finally:
        registry.close()
    assert status == 200
    # The windows' time goes on at the monotonic clock's pace from a mark taken just after
    # the wall clock was read: a thread preempted between the two reads lags by that pause.
    # A minute of slack for it still tells the page time from the wall clock an hour back.
    assert json.loads(body)["generated_at"] >= before - 60.0


# --- History.due after a step back ----------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(interval=st.floats(1.0, 600.0), step=st.floats(1e-3, 10 * HOUR),
       rounds=st.integers(1, 20))
def test_a_sample_is_not_due_every_round_after_a_step_back(interval, step, rounds):
    history = History(interval_seconds=interval, span_seconds=interval * 10)
    state = ModelState("fraud", "1")
    start = 2_000_000.0
    history.record([state], now=start)
    # Each drain round right after the step asks again: none is due at once.
    assert not any(history.due(start - step + i * 1e-3) for i in range(rounds))


def test_after_a_step_back_a_sample_is_due_again_at_the_monotonic_pace(monkeypatch):
    monotonic = SteppedClock(time.monotonic)
    monkeypatch.setattr(time, "monotonic", monotonic)
    history = History(interval_seconds=10, span_seconds=60)
    history.record([ModelState("fraud", "1")], now=2_000_000.0)
    stepped = 2_000_000.0 - HOUR
    assert not history.due(stepped)
    monotonic.offset += 9.0
    assert not history.due(stepped + 9.0)
    monotonic.offset += 1.5  # the ring does not stop for the hour of the step
    assert history.due(stepped + 10.5)


# --- one model's page among many ---------------------------------------------------------------

def test_one_models_page_copies_only_that_models_states(monkeypatch):
    from inferwatch.core.monitor import Monitor
    from inferwatch.report.status import StatusPages

    registry = Registry(drain_interval=3600)
    copied: list[tuple[str, str]] = []
    copy_state = Monitor.copy_state

    def counted(self):
        copied.append((self.name, self.version))
        return copy_state(self)

    try:
        for m in range(20):
            for v in range(5):
                registry.monitor(f"model-{m}", str(v)).record_call(0.01, 0.5)
        pages = StatusPages(registry)
        monkeypatch.setattr(Monitor, "copy_state", counted)
        status, body, _ = pages.respond(model_link("model-7", "3")[1:])
        assert status == 200 and b"model-7" in body
        assert copied == [("model-7", "3")]
        copied.clear()
        status, body, _ = pages.respond("model=model-7&format=json")
        assert status == 200
        assert {s.version for s in read_snapshot(body)[1]} == {str(v) for v in range(5)}
        assert sorted(copied) == [("model-7", str(v)) for v in range(5)]
        copied.clear()
        assert pages.respond("model=nobody")[0] == 404
        assert copied == []
        status, body, _ = pages.respond("")
        # The index reads each state where it is, under its monitor's lock: it copies none.
        assert status == 200 and copied == [] and b"model-19" in body
    finally:
        registry.close()


# --- misconfiguration ----------------------------------------------------------------------------

@pytest.mark.parametrize("config", ["", pytest.param("PATHLIKE", id="empty PathLike")])
def test_an_empty_status_config_path_is_refused_naming_it(config):
    from inferwatch.generate.config import ConfigError

    class Empty:
        def __fspath__(self) -> str:
            return ""

    registry = Registry(drain_interval=3600)
    try:
        with pytest.raises(ConfigError, match="config path is empty"):
            inferwatch.serve(port=0, addr="127.0.0.1", registry=CollectorRegistry(),
                             status_page=registry,
                             status_config=Empty() if config == "PATHLIKE" else config)
    finally:
        registry.close()
