"""The event log's queue is bounded in bytes as well as in events for the events of
instrumented calls: each queued event keeps its call's whole input and output until the
writer encodes it, so a writer that falls behind (a stalled disk) must not grow the process
by gigabytes. The writer lets a batch's events go once they are encoded, so a write stuck
on the disk holds only their encoded lines."""

from __future__ import annotations

import gc
import json
import textwrap
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import inferwatch
from event_log_helpers import run_python, stored_events, wait_for
from inferwatch.events import EventLog, jsonl
from inferwatch.events.log import DEFAULT_QUEUE_BYTES

MiB = 1 << 20
KiB = 1 << 10
BATCH_BYTES = 4096 * 16 * 8  # one call's input below: half a MiB


class _StalledSink:
    """Makes each JSONL write wait until it is let through, as on a hung disk."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._condition = threading.Condition()
        self.entered = 0  # writes begun
        self._allowed = 0  # writes let through
        self._released = False
        original = jsonl.JsonlSink.write

        def write(sink: jsonl.JsonlSink, records: list) -> None:
            with self._condition:
                self.entered += 1
                mine = self.entered
                self._condition.notify_all()
                self._condition.wait_for(lambda: self._released or self._allowed >= mine, 60)
            original(sink, records)

        monkeypatch.setattr(jsonl.JsonlSink, "write", write)

    def wait_for_writes(self, count: int) -> bool:
        with self._condition:
            return self._condition.wait_for(lambda: self.entered >= count, 10)

    def let_through(self, count: int) -> None:
        with self._condition:
            self._allowed = count
            self._condition.notify_all()

    def release(self) -> None:
        with self._condition:
            self._released = True
            self._condition.notify_all()


@pytest.fixture
def stalled(monkeypatch: pytest.MonkeyPatch) -> Iterator[_StalledSink]:
    sink = _StalledSink(monkeypatch)
    try:
        yield sink
    finally:
        sink.release()


def _stall(event_log: EventLog, sink: _StalledSink) -> None:
    """Get the writer stuck in a write, so that nothing more leaves the queue."""
    event_log.emit({"model": "m", "request_id": "first"})
    event_log._wake.set()
    assert sink.wait_for_writes(1)


def _batch_model(event_log: EventLog) -> tuple[Callable[[Any], Any], inferwatch.Registry]:
    registry = inferwatch.Registry()
    model = inferwatch.instrument(lambda X: X[:, 0], name="m", version="1", registry=registry,
                                  events=event_log)
    return model, registry


def _traced(action: Callable[[], None]) -> int:
    """The bytes still allocated after `action` that were not before it."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        action()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()


def _frame() -> Any:
    pandas = pytest.importorskip("pandas")
    return pandas.DataFrame(np.random.rand(4096, 16), columns=[f"f{i}" for i in range(16)])


@pytest.mark.parametrize("make_input", [
    pytest.param(lambda: np.random.rand(4096, 16), id="array"),
    pytest.param(_frame, id="dataframe"),
    pytest.param(lambda: np.random.rand(2048, 16).tolist(), id="rows"),
])
def test_an_instrumented_model_with_batch_inputs_stays_within_queue_bytes(tmp_path, stalled,
                                                                          make_input):
    bound = 4 * MiB
    event_log = EventLog(tmp_path / "events.jsonl", queue_bytes=bound)
    registry = inferwatch.Registry()
    model = inferwatch.instrument(lambda X: len(X), name="m", version="1", registry=registry,
                                  events=event_log)
    kept: list = [make_input()]  # made once before: what a first one loads is not its own
    kept.clear()
    input_bytes = _traced(lambda: kept.append(make_input()))  # what one call's input holds
    kept.clear()
    calls = 10 * bound // input_bytes + 10  # ten times what the bound holds
    try:
        _stall(event_log, stalled)

        def calls_and_drains() -> None:
            for i in range(calls):
                model(make_input())
                if i % 10 == 9:
                    registry.drain()
            registry.drain()

        held = _traced(calls_and_drains)
        assert input_bytes > MiB // 4, input_bytes
        assert held <= bound + MiB, (held, input_bytes)
        queued = len(event_log._queue)
        dropped = event_log.dropped_counts()["queue_full"]
        assert dropped == calls - queued
        assert queued >= bound // (2 * input_bytes)  # the bound is not far too tight
    finally:
        stalled.release()
        event_log.close(10)


def test_a_stalled_write_holds_only_the_encoded_lines(tmp_path, stalled):
    """The batch in the writer's hands is let go once encoded, not kept until the sink
    answers: at most max_event_bytes a line, however large the calls' inputs."""
    event_log = EventLog(tmp_path / "events.jsonl")  # the default bounds: nothing dropped
    model, registry = _batch_model(event_log)
    try:
        _stall(event_log, stalled)

        def calls_then_a_stuck_write() -> None:
            for _ in range(20):  # 10 MiB of inputs
                model(np.random.rand(4096, 16))
            registry.drain()
            assert len(event_log._queue) == 20
            stalled.let_through(1)  # the writer takes all 20 at once, then sticks again
            assert stalled.wait_for_writes(2)
            assert not event_log._queue

        held = _traced(calls_then_a_stuck_write)
        assert held <= 20 * event_log._encoder.max_event_bytes + MiB, held
        assert event_log.dropped_counts()["queue_full"] == 0
    finally:
        stalled.release()
        event_log.close(10)
    assert len(stored_events(tmp_path / "events.jsonl")) == 21


def test_the_bytes_are_given_back_as_the_writer_catches_up(tmp_path, stalled):
    """Once written, queued events no longer count: large ones queue again (a leak in the
    count would end with every event dropped as queue_full)."""
    event_log = EventLog(tmp_path / "events.jsonl", queue_bytes=2 * MiB)
    model, registry = _batch_model(event_log)
    try:
        _stall(event_log, stalled)
        for _ in range(10):
            model(np.zeros((4096, 16)))
        registry.drain()
        first_drops = event_log.dropped_counts()["queue_full"]
        assert first_drops > 0
        stalled.release()
        assert event_log.flush(30)
        assert event_log._held_bytes == 0
        for _ in range(3):
            model(np.zeros((4096, 16)))
            assert event_log.flush(30)  # each one into an empty queue
        assert event_log.dropped_counts()["queue_full"] == first_drops
        assert event_log._held_bytes == 0
    finally:
        event_log.close(10)


def test_small_events_still_queue_up_to_queue_size(tmp_path, stalled):
    """The default byte bound leaves room for queue_size events of an ordinary size."""
    event_log = EventLog(tmp_path / "events.jsonl")
    assert event_log.queue_bytes == DEFAULT_QUEUE_BYTES
    registry = inferwatch.Registry()
    model = inferwatch.instrument(lambda X: X.sum(axis=1), name="m", version="1",
                                  registry=registry, events=event_log)
    try:
        _stall(event_log, stalled)
        rows = np.random.rand(1, 20)
        for i in range(event_log.queue_size + 100):
            model(rows.copy())
            if i % 1000 == 999:
                registry.drain()
        registry.drain()
        assert len(event_log._queue) == event_log.queue_size
        assert event_log.dropped_counts()["queue_full"] == 100
    finally:
        stalled.release()
        event_log.close(30)


def test_events_emitted_directly_are_bounded_by_queue_size_alone(tmp_path, stalled):
    """emit() on the request path stays a bare append: it sizes nothing."""
    event_log = EventLog(tmp_path / "events.jsonl", queue_bytes=MiB, queue_size=4)
    try:
        _stall(event_log, stalled)
        for i in range(5):
            event_log.emit({"model": "m", "request_id": f"r-{i}", "inputs": np.zeros(MiB // 8)})
        assert len(event_log._queue) == 4
        assert event_log.dropped_counts()["queue_full"] == 1
    finally:
        stalled.release()
        event_log.close(10)


def test_an_event_larger_than_the_bound_is_still_written_when_nothing_waits(tmp_path):
    path = tmp_path / "events.jsonl"
    event_log = EventLog(path, queue_bytes=MiB)
    model, _registry = _batch_model(event_log)
    try:
        model(np.zeros((8192, 16)))  # its input alone is a MiB
        assert event_log.flush(10)
        assert event_log.dropped_counts()["queue_full"] == 0
        assert wait_for(lambda: len(stored_events(path)) == 1)
    finally:
        event_log.close(10)


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "64MiB", None])
def test_queue_bytes_must_be_a_positive_integer(tmp_path, value):
    with pytest.raises(ValueError, match=r"^queue_bytes: expected a positive integer"):
        EventLog(Path(tmp_path) / "events.jsonl", queue_bytes=value)


def test_a_forked_child_starts_with_nothing_held(tmp_path):
    """The parent's queued bytes are the parent's: a child counting them would drop its
    own events as queue_full until the parent's writer caught up, which it never sees."""
    path = tmp_path / "events.jsonl"
    script = textwrap.dedent(f"""
        import json, os, sys, threading, warnings
        import numpy as np
        import inferwatch
        from inferwatch.events import EventLog, log, log_lifetime
        from inferwatch.events.jsonl import JsonlSink

        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        log_lifetime.ATEXIT_FLUSH_SECONDS = 0.3
        entered, release = threading.Event(), threading.Event()
        real_write = JsonlSink.write

        def stuck_write(self, records):
            entered.set()
            release.wait()  # the parent's disk does not answer
            real_write(self, records)

        JsonlSink.write = stuck_write
        event_log = EventLog({str(path)!r}, queue_bytes=2 * 2**20)
        registry = inferwatch.Registry()
        model = inferwatch.instrument(lambda X: X[:, 0], name="m", version="1",
                                      registry=registry, events=event_log)
        event_log.emit({{"request_id": "in-flight"}})
        assert entered.wait(60)
        for _ in range(10):
            model(np.zeros((4096, 16)))
        registry.drain()
        parent = [event_log._held_bytes, event_log.dropped_counts()["queue_full"]]
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            JsonlSink.write = real_write  # the child's own disk answers
            child = [event_log._held_bytes]
            for _ in range(3):
                model(np.zeros((4096, 16)))
            registry.drain()
            child.append(event_log.dropped_counts()["queue_full"])
            child.append(event_log.flush(30))
            child.append(event_log._held_bytes)
            os.write(write, json.dumps(child).encode())
            os._exit(0)
        os.close(write)
        child = json.loads(os.read(read, 1000))
        os.waitpid(pid, 0)
        print(json.dumps({{"parent": parent, "child": child}}))
        os._exit(0)
    """)
    done = run_python(script)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    held, dropped = report["parent"]
    assert held > MiB and dropped > 0
    assert report["child"] == [0, 0, True, 0]


class _SizedSink:
    """An event log's two doors, recording what each is handed."""

    def __init__(self) -> None:
        self.offered: list[tuple[dict, int]] = []
        self.emitted: list[dict] = []

    def _offer(self, event: dict, size: int) -> None:
        self.offered.append((event, size))

    def emit(self, event: dict) -> None:
        self.emitted.append(event)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass


def test_a_shadows_events_are_sized_with_both_models_results() -> None:
    """A challenger's event holds both models' batches: it counts against queue_bytes."""
    import inferwatch
    from inferwatch.core.registry import Registry

    class Batch:
        def predict(self, rows):
            return np.asarray(rows, dtype=float).sum(axis=1)

    registry = Registry()
    sink = _SizedSink()
    champion = inferwatch.instrument(Batch(), name="m", version="1", registry=registry,
                                     events=sink)
    handle = inferwatch.shadow(champion, Batch(), version="2", registry=registry)
    try:
        champion.predict(np.ones((50_000, 2)))
        assert handle.flush(30)
        registry.drain()
        shadow_events = [(event, size) for event, size in sink.offered
                         if event.get("role") == "shadow"]
        assert len(shadow_events) == 1
        assert shadow_events[0][1] >= 2 * 50_000 * 8  # two float64 results of 50,000 rows
        assert not [event for event in sink.emitted if event.get("role") == "shadow"]
    finally:
        handle.close()
        registry.close()
