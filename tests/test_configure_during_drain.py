"""``configure()`` on a monitor that serves: calls made before it are folded (and logged)
with the settings and the event log in force when they were made, one drain never mixes two
settings, two configure() calls at once both take effect, and a ``traces`` its owner set is
not undone by following OpenTelemetry."""

from __future__ import annotations

import dataclasses
import json
import threading
import types
from pathlib import Path

from inferwatch.core import monitor_configure, monitor_drain, tracing
from inferwatch.core.registry import Registry

CHUNK = 32


def _out_of_range(mon) -> float:
    return mon.state.counters.get("inferwatch_invalid_predictions_total", {}).get(
        ("out_of_range",), 0.0)


def _monitor_in_chunks(monkeypatch) -> tuple[Registry, object]:
    """A monitor whose drains fold in chunks of CHUNK calls, with 3 chunks of calls of 5.0
    waiting (out of range once ``output_range=(0, 1)``)."""
    monkeypatch.setattr(monitor_drain, "DRAIN_CHUNK_CALLS", CHUNK)
    registry = Registry(drain_interval=3600)
    mon = registry.monitor("m", "1")
    for _ in range(3 * CHUNK):
        mon.record_call(0.01, 5.0)
    return registry, mon


def _after_first_chunk(monkeypatch, act) -> list[int]:
    """Run `act` once, between a drain's first chunk and its second (the lock let go)."""
    ran: list[int] = []
    original = monitor_drain.MonitorDrain._measure_chunk

    def measured(self, *args):
        original(self, *args)
        if not ran:
            ran.append(1)
            act(self)

    monkeypatch.setattr(monitor_drain.MonitorDrain, "_measure_chunk", measured)
    return ran


def test_settings_swapped_between_two_chunks_do_not_reach_the_rest_of_the_drain(
        monkeypatch) -> None:
    registry, mon = _monitor_in_chunks(monkeypatch)
    try:
        def swap(m) -> None:
            with m._lock:  # as a swap under the lock between two chunks would
                m.settings = dataclasses.replace(m.settings, output_range=(0.0, 1.0))

        ran = _after_first_chunk(monkeypatch, swap)
        mon.drain()
        assert ran and mon.pending() == 0
        assert mon.state.counters["inferwatch_requests_total"][("ok",)] == 3 * CHUNK
        assert _out_of_range(mon) == 0  # all of this drain folded with its first settings
        mon.record_call(0.01, 5.0)
        mon.drain()
        assert _out_of_range(mon) == 1  # the next drain takes the new ones
    finally:
        registry.close()


def test_configure_on_another_thread_during_a_drain_folds_the_earlier_calls_with_the_old(
        monkeypatch) -> None:
    registry, mon = _monitor_in_chunks(monkeypatch)
    try:
        def configure_elsewhere(m) -> None:
            worker = threading.Thread(target=m.configure, kwargs={"output_range": (0.0, 1.0)})
            worker.start()
            worker.join(60)
            assert not worker.is_alive()

        ran = _after_first_chunk(monkeypatch, configure_elsewhere)
        mon.drain()
        assert ran and mon.pending() == 0
        assert mon.settings.output_range == (0.0, 1.0)
        assert mon.state.counters["inferwatch_requests_total"][("ok",)] == 3 * CHUNK
        assert _out_of_range(mon) == 0
    finally:
        registry.close()


def test_configure_folds_calls_made_before_it_with_the_option_they_were_made_under() -> None:
    registry = Registry(drain_interval=3600)
    mon = registry.monitor("m", "1")
    try:
        for _ in range(10):
            mon.record_call(0.01, 5.0)
        mon.configure(output_range=(0.0, 1.0))
        mon.drain()
        assert mon.state.counters["inferwatch_requests_total"][("ok",)] == 10
        assert _out_of_range(mon) == 0
        mon.record_call(0.01, 5.0)
        mon.drain()
        assert _out_of_range(mon) == 1
    finally:
        registry.close()


def _request_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["request_id"] for line in path.read_text().splitlines()]


def test_a_new_event_log_gets_no_event_of_a_call_made_before_it(tmp_path) -> None:
    registry = Registry(drain_interval=3600)
    mon = registry.monitor("m", "1").configure(events=tmp_path / "first.jsonl")
    try:
        for i in range(5):
            with mon.request(request_id=f"before-{i}") as request:
                request.prediction(0.5)
        mon.configure(events=tmp_path / "second.jsonl")  # closes the first: written out
        with mon.request(request_id="after") as request:
            request.prediction(0.5)
        mon.drain()
        assert mon.events.flush(30)
        assert _request_ids(tmp_path / "first.jsonl") == [f"before-{i}" for i in range(5)]
        assert _request_ids(tmp_path / "second.jsonl") == ["after"]
    finally:
        mon.configure(events=False)
        registry.close()


def test_two_configure_calls_at_once_both_take_effect(monkeypatch) -> None:
    registry = Registry(drain_interval=3600)
    mon = registry.monitor("m", "1")
    first_read, second_read = threading.Event(), threading.Event()
    reads = []
    real_replace = dataclasses.replace

    def replace(settings, **changes):
        # Each configure() builds its settings here: the first waits for the second to
        # build its own too (it never can while the first holds the monitor's configure
        # lock; the wait then just runs out), as two threads racing would.
        built = real_replace(settings, **changes)
        reads.append(changes)
        if len(reads) == 1:
            first_read.set()
            second_read.wait(2)
        else:
            second_read.set()
        return built

    monkeypatch.setattr(monitor_configure, "dataclasses", types.SimpleNamespace(
        fields=dataclasses.fields, replace=replace))
    try:
        worker = threading.Thread(target=mon.configure, kwargs={"max_classes": 7})
        worker.start()
        assert first_read.wait(60)
        mon.configure(max_outputs=3)
        worker.join(60)
        assert not worker.is_alive()
        assert (mon.settings.max_classes, mon.settings.max_outputs) == (7, 3)
        assert mon._caps["inferwatch_predicted_class_total"].limit == 7
        assert mon._caps["inferwatch_prediction"].limit == 3
    finally:
        registry.close()


def test_traces_switched_off_with_configure_stay_off_once_tracing_is_set_up(
        monkeypatch) -> None:
    registry = Registry(drain_interval=3600)
    pinned = registry.monitor("m", "1").configure(traces=False)
    following = registry.monitor("m", "2")
    try:
        monkeypatch.setattr(tracing, "otel_configured", lambda: True)
        registry.follow_tracing()
        assert pinned.traces is False
        assert following.traces is True  # one left to follow OpenTelemetry does
        pinned.configure(exemplars=None)  # follow it again
        registry.follow_tracing()
        assert pinned.traces is True
    finally:
        registry.close()
