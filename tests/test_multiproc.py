"""Multi-worker mode without a server: configuration, the snapshot format, merging, folding.

The gunicorn tests (test_multiproc_gunicorn.py) run the same code in real workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inferwatch import faults
from inferwatch.core.registry import Registry
from inferwatch.core.render import model_families
from inferwatch.core.state import EXTRA_TYPES, ModelState, register_extra
from inferwatch.multiproc import MultiprocError, attach, check_directory, clear_directory
from inferwatch.multiproc.merge import merge_view
from inferwatch.multiproc.snapshot_format import (
    Snapshot,
    SnapshotError,
    decode,
    encode,
    exact_models,
    model_dict,
)
from inferwatch.multiproc.store import ARCHIVE, SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.standalone.cli import build_parser
from inferwatch.standalone.collectors.multiproc import MultiprocCollector
from inferwatch.standalone.scrape import CollectorError

NOW = 1_700_000_000.0
BOUNDS = (0.1, 0.5, 1.0, 5.0)


def worker_state(values: np.ndarray, seed: int = 0, now: float = NOW) -> ModelState:
    state = ModelState("fraud", "1.4.2", info={"framework": "sklearn"}, loaded_at=100.0 + seed)
    state.inc("inferwatch_requests_total", ("ok",), len(values))
    state.inc("inferwatch_predicted_class_total", (f"class-{seed % 3}",), 2)
    state.histogram("inferwatch_request_duration_seconds", (), BOUNDS).observe(values)
    # Half the values two age buckets ago: the window spans buckets of different ages.
    half = len(values) // 2
    summary = state.summary("inferwatch_prediction", ("value",))
    summary.observe(values[:half], now - 240)
    summary.observe(values[half:], now)
    state.set_gauge("inferwatch_requests_in_flight", (), 1 + seed)
    return state


def dead_worker() -> WorkerId:
    """The identity of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return WorkerId(process.pid, 1)


def publish(directory: SnapshotDirectory, worker: WorkerId, states: list[ModelState],
            **counts: dict) -> None:
    snapshot = Snapshot(models=[model_dict(s) for s in states], written_at=NOW, **counts)
    directory.write(worker.name, encode(snapshot), worker)


def text(families: list) -> str:
    class Source:
        def collect(self):
            return families

    return generate_latest(Source()).decode()


def sample(families: list, name: str, **labels: str) -> float:
    found = [s.value for f in text_string_to_metric_families(text(families)) for s in f.samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


# --- configuration ----------------------------------------------------------------------------

def test_a_missing_file_or_unwritable_directory_is_a_clear_error(tmp_path):
    with pytest.raises(MultiprocError, match="does not exist; create it"):
        check_directory(str(tmp_path / "missing"))
    (tmp_path / "file").write_text("")
    with pytest.raises(MultiprocError, match="is not a directory"):
        check_directory(str(tmp_path / "file"))
    with pytest.raises(MultiprocError, match="is empty"):
        check_directory("  ")
    if os.geteuid() == 0:
        unwritable = "/proc"  # even root cannot create files there
    else:
        unwritable = str(tmp_path / "read-only")
        os.mkdir(unwritable, 0o500)
    with pytest.raises(MultiprocError, match="cannot create files in it"):
        check_directory(unwritable)
    assert check_directory(str(tmp_path)) == str(tmp_path)


def test_the_default_registry_refuses_to_start_on_a_bad_directory(tmp_path):
    code = ("import inferwatch\n"
            "inferwatch.instrument(lambda x: x, name='m', version='1')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "INFERWATCH_MULTIPROC_DIR": str(tmp_path / "no")})
    assert result.returncode != 0
    assert "MultiprocError: INFERWATCH_MULTIPROC_DIR=" in result.stderr
    assert "does not exist" in result.stderr


def test_the_exporter_collector_names_the_bad_flag(tmp_path, monkeypatch):
    monkeypatch.delenv("INFERWATCH_MULTIPROC_DIR", raising=False)
    parser = build_parser({"multiproc": MultiprocCollector})
    unconfigured = MultiprocCollector.from_args(parser.parse_args(["--collector.multiproc"]))
    with pytest.raises(CollectorError, match=r"pass --multiproc\.dir=DIR"):
        unconfigured.collect()  # collector_success 0 on every scrape, and this reason logged
    with pytest.raises(ValueError, match=r"argument --multiproc\.dir: .*does not exist"):
        MultiprocCollector.from_args(parser.parse_args(
            ["--collector.multiproc", f"--multiproc.dir={tmp_path / 'no'}"]))
    empty = parser.parse_args(["--multiproc.dir="])
    assert MultiprocCollector.enabled_by_arguments(empty)
    with pytest.raises(ValueError, match=r"argument --multiproc\.dir: is empty"):
        MultiprocCollector.from_args(empty)
    monkeypatch.setenv("INFERWATCH_MULTIPROC_DIR", "")
    with pytest.raises(ValueError, match=r"argument INFERWATCH_MULTIPROC_DIR: is empty"):
        MultiprocCollector.from_args(parser.parse_args(["--collector.multiproc"]))
    monkeypatch.setenv("INFERWATCH_MULTIPROC_DIR", str(tmp_path))
    collector = MultiprocCollector.from_args(parser.parse_args(["--collector.multiproc"]))
    assert collector.directory.path == str(tmp_path)


# --- the snapshot format ----------------------------------------------------------------------

def test_a_snapshot_round_trips_every_part_of_the_state():
    state = worker_state(np.random.default_rng(1).lognormal(size=500), seed=1)
    raw = decode(encode(Snapshot(models=[model_dict(state)], written_at=NOW,
                                 internal_errors={"drain": 2})))
    (back,) = exact_models(raw)
    assert back.to_dict() == state.to_dict()
    assert raw.header["internal_errors"] == {"drain": 2}
    assert text(model_families([back], NOW)) == text(model_families([state], NOW))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_damaged_snapshot_is_refused_never_misread(data):
    good = encode(Snapshot(models=[model_dict(worker_state(np.arange(1.0, 50.0)))],
                           written_at=NOW))
    cut = data.draw(st.integers(0, len(good) - 1))
    with pytest.raises(SnapshotError):
        decode(good[:cut])  # a truncated file (a full disk)
    flipped = bytearray(good)
    flipped[data.draw(st.integers(0, len(good) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(SnapshotError):
        decode(bytes(flipped))


def test_extras_travel_through_a_registered_decoder():
    class Bins:
        def __init__(self, counts):
            self.counts = list(counts)

        def merge(self, other):
            self.counts = [a + b for a, b in zip(self.counts, other.counts)]

        def to_dict(self):
            return {"counts": self.counts}

    register_extra("test_bins", lambda data: Bins(data["counts"]))
    try:
        states = []
        for counts in ([1, 2], [10, 20]):
            state = ModelState("fraud", "1")
            state.extras["test_bins"] = Bins(counts)
            states.append(state)
        raws = [decode(encode(Snapshot(models=[model_dict(s)]))) for s in states]
        assert exact_models(raws[0])[0].extras["test_bins"].counts == [1, 2]
        view = merge_view(raws, NOW)
        assert view.states[0].extras["test_bins"].counts == [11, 22]
    finally:
        EXTRA_TYPES.pop("test_bins")


# --- the merged view --------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(workers=st.lists(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1,
                                 max_size=200), min_size=1, max_size=5))
def test_the_fast_merged_view_renders_exactly_what_merging_full_states_renders(workers):
    states = [worker_state(np.asarray(values), seed=i) for i, values in enumerate(workers)]
    raws = [decode(encode(Snapshot(models=[model_dict(s)], written_at=NOW))) for s in states]
    for now in (NOW, NOW + 130.0):  # the writers' own window, and a later one
        exact = ModelState.from_dict(states[0].to_dict())
        for other in states[1:]:
            exact.merge(other)
        view = merge_view(raws, now)
        assert text(model_families(view.states, now)) == text(model_families([exact], now))


def test_merged_quantiles_are_those_of_all_values_never_an_average():
    rng = np.random.default_rng(5)
    # Workers with very different traffic: averaging their p99s would be far off.
    parts = [rng.lognormal(0.0, 1.0, 5000), rng.lognormal(3.0, 0.5, 200), rng.random(800)]
    raws = [decode(encode(Snapshot(models=[model_dict(worker_state(v, seed=i))],
                                   written_at=NOW))) for i, v in enumerate(parts)]
    view = merge_view(raws, NOW)
    families = model_families(view.states, NOW)
    everything = np.concatenate(parts)
    for q in (0.5, 0.9, 0.99):
        exact = float(np.quantile(everything, q, method="lower"))
        merged = sample(families, "inferwatch_prediction", output="value", quantile=str(q))
        assert merged == pytest.approx(exact, rel=0.01)
    assert sample(families, "inferwatch_requests_total", outcome="ok") == len(everything)
    assert sample(families, "inferwatch_requests_in_flight") == 1 + 2 + 3  # declared: sum


def test_process_wide_counters_add_up_across_workers(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    publish(directory, WorkerId(os.getpid(), 1), [], internal_errors={"drain": 2},
            overflow={"inferwatch_errors_total": 3}, events_dropped={"full": 1})
    publish(directory, WorkerId(os.getpid(), 2), [], internal_errors={"drain": 5})
    families = directory.read_view(NOW).families(NOW)
    assert sample(families, "inferwatch_internal_errors_total", component="drain") == 7
    assert sample(families, "inferwatch_series_overflow_total",
                  metric="inferwatch_errors_total") == 3
    assert sample(families, "inferwatch_events_dropped_total", reason="full") == 1


def test_a_damaged_file_is_skipped_and_counted_never_a_failed_scrape(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    a, b = WorkerId(os.getpid(), 1), WorkerId(os.getpid(), 2)
    publish(directory, a, [worker_state(np.ones(10))])
    publish(directory, b, [worker_state(np.ones(5))])
    before = faults.internal_error_counts().get("multiproc_read", 0)
    assert sample(directory.read_view(NOW).families(NOW), "inferwatch_requests_total",
                  outcome="ok") == 15
    # b's next write is cut short: its last good version stands in for it.
    path = tmp_path / b.name
    path.write_bytes(path.read_bytes()[:100])
    assert sample(directory.read_view(NOW).families(NOW), "inferwatch_requests_total",
                  outcome="ok") == 15
    # A reader that never saw a good version of it skips it.
    families = SnapshotDirectory(str(tmp_path)).read_view(NOW).families(NOW)
    assert sample(families, "inferwatch_requests_total", outcome="ok") == 10
    assert faults.internal_error_counts()["multiproc_read"] >= before + 2


def test_a_refused_file_is_counted_once_and_read_again_once_it_changes(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    a, b = WorkerId(os.getpid(), 1), WorkerId(os.getpid(), 2)
    publish(directory, a, [worker_state(np.ones(10))])
    old_format = tmp_path / b.name
    old_format.write_bytes(b"IWSNAP\n\x01" + bytes(60))  # another format's file, say
    before = faults.internal_error_counts().get("multiproc_read", 0)
    for _ in range(3):  # not read, decoded and counted again on every scrape
        assert sample(directory.read_view(NOW).families(NOW), "inferwatch_requests_total",
                      outcome="ok") == 10
    assert faults.internal_error_counts()["multiproc_read"] == before + 1
    publish(directory, b, [worker_state(np.ones(5))])  # rewritten: read again
    assert sample(directory.read_view(NOW).families(NOW), "inferwatch_requests_total",
                  outcome="ok") == 15


# --- folding dead workers ---------------------------------------------------------------------

def test_dead_workers_fold_into_one_archive_and_counters_never_go_back(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    publish(directory, me, [worker_state(np.ones(4), seed=0)])
    total = 4
    for seed in range(1, 21):
        dead = dead_worker()
        publish(directory, dead, [worker_state(np.ones(seed), seed=seed)])
        total += seed
        (tmp_path / f"{dead.name}.tmp-{dead.pid}-{dead.start}").write_bytes(b"half a wri")
        assert sample(directory.read_view(NOW).families(NOW), "inferwatch_requests_total",
                      outcome="ok") == total
        assert directory.fold(me, now=NOW) == [dead.name]
        families = directory.read_view(NOW).families(NOW)
        assert sample(families, "inferwatch_requests_total", outcome="ok") == total
        # A dead process has nothing in flight: only the live worker's gauge remains.
        assert sample(families, "inferwatch_requests_in_flight") == 1
    assert sorted(os.listdir(tmp_path)) == sorted([".fold.lock", ARCHIVE, me.name])


def test_a_fold_that_died_before_deleting_is_not_counted_twice(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    me, dead = WorkerId.current(), dead_worker()
    publish(directory, dead, [worker_state(np.ones(7))])
    saved = (tmp_path / dead.name).read_bytes()
    directory.fold(me, now=NOW)
    (tmp_path / dead.name).write_bytes(saved)  # as if the fold stopped before the delete
    assert sample(directory.read_view(NOW).families(NOW), "inferwatch_requests_total",
                  outcome="ok") == 7
    directory.fold(me, now=NOW)
    assert not (tmp_path / dead.name).exists()
    assert sample(directory.read_view(NOW).families(NOW), "inferwatch_requests_total",
                  outcome="ok") == 7


def test_the_archive_keeps_only_the_buckets_of_the_window(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    for day in range(5):
        dead = dead_worker()
        publish(directory, dead, [worker_state(np.ones(10), now=NOW + day * 86400)])
        directory.fold(me, now=NOW + day * 86400)
    raw = decode((tmp_path / ARCHIVE).read_bytes())
    (state,) = exact_models(raw)
    assert state.counters["inferwatch_requests_total"][("ok",)] == 50
    buckets = state.summaries["inferwatch_prediction"][("value",)].sketch.bucket_ids
    assert len(buckets) <= 5  # the last day's window, not one set per dead worker


def test_a_live_worker_and_its_temp_file_are_never_folded(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    live = WorkerId.current()
    publish(directory, live, [worker_state(np.ones(3))])
    temp = tmp_path / f"{live.name}.tmp-{live.pid}-{live.start}"
    temp.write_bytes(b"in progress")
    assert directory.fold(WorkerId(live.pid, live.start + 1)) == []
    assert temp.exists() and (tmp_path / live.name).exists()


# --- a worker's publisher ---------------------------------------------------------------------

def test_a_worker_publishes_at_most_once_a_second_and_folds_itself_at_exit(tmp_path):
    registry = Registry(drain_interval=3600)
    publisher = attach(registry, str(tmp_path))
    try:
        predict = registry.monitor("fraud", "1")
        for value in (0.1, 0.2, 0.3):
            predict.record_call(0.001, value)
        registry.drain()
        assert publisher.publish()
        predict.record_call(0.001, 0.4)
        registry.drain()
        assert not publisher.publish()  # within the second
        assert publisher.publish(force=True)
        assert not publisher.publish(force=False, min_interval=0.0)  # nothing changed
        prometheus = CollectorRegistry()
        prometheus.register(InferwatchCollector(registry))
        scraped = generate_latest(prometheus).decode()
        assert 'inferwatch_requests_total{model="fraud",model_version="1",outcome="ok"} 4.0' \
            in scraped
        publisher.close()
        assert sorted(os.listdir(tmp_path)) == [".fold.lock", ARCHIVE]
        assert not publisher.publish(force=True)  # closed: nothing after the final fold
        view = SnapshotDirectory(str(tmp_path)).read_view(time.time())
        assert view.states[0].counters["inferwatch_requests_total"][("ok",)] == 4
    finally:
        registry.close()


_POOL_SCRIPT = """
import multiprocessing, sys, time
import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.multiproc import attach
from inferwatch.multiproc.store import SnapshotDirectory

registry = Registry(drain_interval=3600)  # no publish but the one at exit
attach(registry, sys.argv[1])
model = inferwatch.instrument(lambda x: 0.5, name="pool", version="1", registry=registry)

def work(i):
    return model(i)

if __name__ == "__main__":
    pool = multiprocessing.get_context("fork").Pool(2)
    assert pool.map(work, range(20)) == [0.5] * 20
    pool.close()
    pool.join()
    view = SnapshotDirectory(sys.argv[1]).read_view(time.time())
    print(sum(s.counters["inferwatch_requests_total"][("ok",)] for s in view.states))
"""


def test_pool_workers_publish_their_calls_when_they_exit(tmp_path):
    """multiprocessing's workers leave through os._exit, past atexit: their calls since
    their last publish (all of them, in a pool that lives under a second) were lost."""
    script = tmp_path / "pool.py"
    script.write_text(_POOL_SCRIPT)
    directory = tmp_path / "snapshots"
    directory.mkdir()
    result = subprocess.run([sys.executable, str(script), str(directory)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == 20


def test_a_snapshot_cleared_after_it_was_published_is_written_again(tmp_path):
    """gunicorn --preload: the master publishes its warm-up before on_starting clears the
    directory; an unchanged state then kept its file away for 30 s."""
    registry = Registry(drain_interval=3600)
    try:
        publisher = attach(registry, str(tmp_path))
        registry.monitor("warm", "1").record_call(0.001, 0.5)
        registry.drain()
        assert publisher.publish(force=True)
        assert not publisher.publish(min_interval=0)  # unchanged and there: no write
        clear_directory(str(tmp_path))
        assert publisher.publish(min_interval=0)
        view = SnapshotDirectory(str(tmp_path)).read_view(time.time())
        assert view.states[0].counters["inferwatch_requests_total"][("ok",)] == 1
    finally:
        registry.close()


def test_a_forked_child_starts_from_zero_and_the_parent_keeps_its_counts(tmp_path):
    registry = Registry(drain_interval=0.05)
    attach(registry, str(tmp_path))
    monitor = registry.monitor("fraud", "1")
    monitor.record_call(0.001, 0.5)
    registry.drain()
    registry.multiproc.publish(force=True)
    pid = os.fork()
    if pid == 0:  # the child: two calls of its own, published by its restarted drain thread
        status = 1
        try:
            monitor.record_call(0.001, 0.5)
            monitor.record_call(0.001, 0.5)
            directory = SnapshotDirectory(str(tmp_path))

            def published() -> bool:
                view = directory.read_view(time.time())
                return bool(view.states) and \
                    view.states[0].counters["inferwatch_requests_total"][("ok",)] == 3

            deadline = time.monotonic() + 60  # until the restarted drain thread published
            while not published() and time.monotonic() < deadline:
                time.sleep(0.01)
            status = 0 if registry.multiproc.worker.pid == os.getpid() else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    registry.close()
    assert os.waitstatus_to_exitcode(status) == 0
    view = SnapshotDirectory(str(tmp_path)).read_view(time.time())
    assert view.states[0].counters["inferwatch_requests_total"][("ok",)] == 3


def test_the_exporter_serves_what_a_worker_serves(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    for seed in range(3):
        publish(directory, WorkerId(os.getpid(), seed),
                [worker_state(np.random.default_rng(seed).random(100), seed=seed)])
    exporter_text = text(list(MultiprocCollector(str(tmp_path)).collect()))
    worker_text = text(directory.read_view(time.time()).families(time.time()))
    model_lines = [line for line in exporter_text.splitlines()
                   if "model=" in line and "quantile" not in line]
    assert model_lines and set(model_lines) <= set(worker_text.splitlines())
    assert 'inferwatch_requests_total{model="fraud",model_version="1.4.2",outcome="ok"} ' \
           "300.0" in exporter_text
    assert not os.path.exists(tmp_path / ARCHIVE)  # the exporter only reads


def test_clear_directory_removes_only_inferwatch_files(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    publish(directory, dead_worker(), [worker_state(np.ones(2))])
    (tmp_path / "keep.txt").write_text("not ours")
    assert clear_directory(str(tmp_path)) == 1
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_drift_is_scored_from_summed_worker_counts_not_averaged_scores():
    from inferwatch.quality.reference import Reference
    from inferwatch.quality.tracker import FeatureTracker

    rng = np.random.default_rng(3)
    ref = Reference.from_data({"x": rng.normal(size=2000)}, predictions=rng.random(2000))
    states, single = [], FeatureTracker(ref)
    # One worker sees reference-like traffic, the other a shifted sliver of it.
    for rows in (rng.normal(0, 1, 900), rng.normal(4, 1, 100)):
        tracker = FeatureTracker(ref)
        batch = [{"x": float(v)} for v in rows]
        tracker.check_inputs(batch, NOW)
        single.check_inputs(batch, NOW)
        state = ModelState("fraud", "1")
        state.extras["drift"] = tracker.drift
        states.append(state)
    raws = [decode(encode(Snapshot(models=[model_dict(s)], written_at=NOW))) for s in states]
    view = merge_view(raws, NOW)
    merged_scores, _, rows = view.states[0].extras["drift"].scores(NOW)
    expected_scores, _, _ = single.drift.scores(NOW)
    assert rows == 1000
    assert merged_scores == pytest.approx(expected_scores)
    worker_psi = [s.extras["drift"].scores(NOW)[0][("x", "psi")] for s in states]
    assert merged_scores[("x", "psi")] != pytest.approx(sum(worker_psi) / 2)


def test_a_forked_worker_keeps_its_drift_window_but_not_the_masters_counts():
    from inferwatch.core.monitor import Monitor
    from inferwatch.quality.reference import Reference
    from inferwatch.quality.tracker import FeatureTracker

    ref = Reference.from_data({"x": np.arange(100.0)})
    monitor = Monitor("m", "1").configure(reference=ref)
    assert isinstance(monitor.features, FeatureTracker)
    monitor.features.check_inputs([{"x": 1.0}], time.time())
    monitor.state.inc("inferwatch_requests_total", ("ok",), 5)
    monitor.reset_after_fork()
    assert all(v == 0 for series in monitor.state.counters.values() for v in series.values())
    drift = monitor.state.extras["drift"]
    assert drift is monitor.features.drift and drift.rows(time.time()) == 0
    monitor.features.check_inputs([{"x": 2.0}], time.time())
    assert monitor.state.extras["drift"].rows(time.time()) == 1


def _monitor_with_reference(name: str, version: str, reference, rows: np.ndarray):
    from inferwatch.core.monitor import Monitor

    monitor = Monitor(name, version).configure(reference=reference)
    tracker = monitor.state.extras["drift"]
    profile = reference.features["x"]
    counts = np.bincount([profile.bin_index(v) for v in rows], minlength=profile.n_bins)
    tracker.features.add([counts], rows=len(rows), now=NOW)
    return monitor


def test_a_reference_is_stored_once_per_snapshot_and_decoded_once_per_process():

    from inferwatch.quality.reference import Reference

    rng = np.random.default_rng(8)
    reference = Reference.from_data({"x": rng.normal(size=500)})
    states = [_monitor_with_reference("fraud", version, reference, rng.normal(size=50)).state
              for version in ("1", "2")]
    data = encode(Snapshot(models=[model_dict(s) for s in states]))
    reference_json = json.dumps(reference.to_dict(), separators=(",", ":"))
    assert data.count(json.dumps(reference_json).encode()) == 1  # one copy, not one per model

    first, second = decode(data), decode(data)
    merged = [merge_view([raw], now=NOW) for raw in (first, second)]

    trackers = [s.extras["drift"] for view in merged for s in view.states]
    assert len(trackers) == 4
    assert all(t.reference is trackers[0].reference for t in trackers)  # validated once
    assert trackers[0].reference == reference
    assert [t.rows(NOW) for t in trackers] == [50, 50, 50, 50]
    assert trackers[0].scores(NOW) == states[0].extras["drift"].scores(NOW)
