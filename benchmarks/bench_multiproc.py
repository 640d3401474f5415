"""Multi-worker mode: merged scrapes against prometheus_client's multiprocess mode, the hot path.

Each worker holds the realistic deployment of ``bench_encoding``: 5 models with 50
features each and a reference (drift windows, data-quality counters, histograms, rolling
quantiles), recorded through ``instrument()``. A merged scrape reads every worker's
snapshot file (a new reader, so every file counts as changed), merges them and encodes
``/metrics`` text, as any worker's ``/metrics`` does. Its baselines, alternately in the
same run: prometheus_client's multiprocess mode with the same series written by as many
real worker processes, and one process encoding the same (merged) data. The hot path is
timed with multi-worker mode on and off while the drain thread publishes a state.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial

import numpy as np
from prometheus_client import generate_latest

from benchmarks.common import Row, alternate, fmt_seconds, iqr, paired_ratios, per_call

MODELS = 5
OUTPUTS = 50
WORKERS = 8
WORKER_COUNTS = (2, 8, 32)
MULTIPROCESS_RATIO_TARGET = 0.5
ONE_PROCESS_RATIO_TARGET = 1.3
# Within the noise of alternate runs: the publish happens in the drain thread.
HOT_PATH_RATIO_TARGET = 1.1
CLASSES = [f"class-{i}" for i in range(10)]


def realistic_states(seed: int, now: float) -> list:
    """One worker's states: MODELS models, each with OUTPUTS outputs."""
    from inferwatch.core.options import LATENCY_BUCKETS, VALUE_BUCKETS
    from inferwatch.core.state import ModelState, SummarySettings

    rng = np.random.default_rng(seed)
    settings = SummarySettings()
    width = settings.max_age_seconds / settings.age_buckets
    states = []
    for m in range(MODELS):
        state = ModelState(f"model-{m}", "1.4.2", info={"framework": "sklearn"},
                           loaded_at=now - 3600)
        state.inc("inferwatch_requests_total", ("ok",), 20_000)
        state.inc("inferwatch_requests_total", ("error",), 12)
        state.inc("inferwatch_errors_total", ("ValueError",), 12)
        state.histogram("inferwatch_request_duration_seconds", (), LATENCY_BUCKETS).observe(
            rng.gamma(2.0, 0.01, 2000))
        for stage in ("preprocess", "inference", "postprocess"):
            state.histogram("inferwatch_stage_duration_seconds", (stage,),
                            LATENCY_BUCKETS).observe(rng.gamma(2.0, 0.003, 2000))
        state.inc_many("inferwatch_predicted_class_total",
                       {(c,): float(rng.integers(100, 5000)) for c in CLASSES})
        for output in range(OUTPUTS):
            summary = state.summary("inferwatch_prediction", (f"output-{output}",))
            for age in range(settings.age_buckets):
                summary.observe(rng.lognormal(0.0, 1.0, 400), now - age * width)
            state.histogram("inferwatch_prediction_value", (f"output-{output}",),
                            VALUE_BUCKETS).observe(rng.lognormal(0.0, 1.0, 400))
        state.summary("inferwatch_prediction_confidence").observe(rng.random(2000), now)
        state.set_gauge("inferwatch_requests_in_flight", (), 2)
        states.append(state)
    return states


class _Families:
    def __init__(self, families: list) -> None:
        self._families = families

    def collect(self) -> list:
        return self._families


def _worker_snapshots(distinct: int, now: float) -> list[bytes]:
    """`distinct` worker snapshots of the realistic deployment with references."""
    from benchmarks.bench_encoding import realistic_deployment
    from inferwatch.multiproc.snapshot_format import Snapshot, encode, model_dict

    blobs = []
    for seed in range(distinct):
        _, monitors = realistic_deployment(seed=seed)
        try:
            states = [monitor.state for monitor in monitors.monitors()]
            blobs.append(encode(Snapshot(models=[model_dict(s) for s in states],
                                         written_at=now)))
        finally:
            monitors.close()
    return blobs


# directory -> its worker files, which each merged scrape finds freshly written.
_WORKER_FILES: dict[str, list[str]] = {}


def _write_workers(directory: str, blobs: list[bytes], workers: int) -> None:
    from inferwatch.multiproc.store import SnapshotDirectory
    from inferwatch.multiproc.worker_id import WorkerId

    store = SnapshotDirectory(directory)
    for worker in range(workers):
        owner = WorkerId(10_000 + worker, 1)
        store.write(owner.name, blobs[worker % len(blobs)], owner)
    _WORKER_FILES[directory] = [os.path.join(directory, WorkerId(10_000 + worker, 1).name)
                                for worker in range(workers)]


def _as_just_written(directory: str) -> None:
    """Give every worker file the time of now, as live workers' files have: each rewrites
    its own at least every REFRESH_SECONDS, so a reader takes its writer for running
    without asking /proc. Left as written at setup, the files looked like those of exited
    workers (the pids are made up), which a scrape looks up and serves no gauges of."""
    for path in _WORKER_FILES.get(directory, ()):
        os.utime(path)


def _prometheus_workers(directory: str, families: list, workers: int) -> None:
    """`workers` real processes in prometheus_client's multiprocess mode, same series."""
    from benchmarks.multiproc_baseline import spec_of

    spec = os.path.join(directory, "spec.json")
    with open(spec, "w") as handle:
        json.dump(spec_of(families), handle)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for start in range(0, workers, 8):
        running = [subprocess.Popen([sys.executable, "-m", "benchmarks.multiproc_baseline", spec],
                                    env=env, cwd=root)
                   for _ in range(min(8, workers - start))]
        for process in running:
            if process.wait(timeout=300) != 0:
                raise RuntimeError("a prometheus_client worker failed")
    os.unlink(spec)


_ENCODER = None


def _encoder():
    global _ENCODER
    if _ENCODER is None:
        from inferwatch.core.encode import Encoder

        _ENCODER = Encoder()
    return _ENCODER


def _merged_scrape(directory: str, now: float) -> bytes:
    from inferwatch.multiproc.store import SnapshotDirectory

    _as_just_written(directory)  # a few microseconds, timed with the scrape
    view = SnapshotDirectory(directory).read_view(now)  # a new reader: every file is read
    page = _encoder().page()
    view.encode_into(page, now)
    return page.text().encode()


def _merge_rows(quick: bool) -> list[Row]:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from inferwatch.core.render import model_families
    from inferwatch.multiproc.store import SnapshotDirectory

    now = time.time()
    blobs = _worker_snapshots(2 if quick else 4, now)
    rounds = 5 if quick else 9
    rows = []
    for workers in WORKER_COUNTS:
        ours_dir = tempfile.mkdtemp(prefix="inferwatch-bench-")
        theirs_dir = tempfile.mkdtemp(prefix="inferwatch-bench-prom-")
        try:
            _write_workers(ours_dir, blobs, workers)
            view = SnapshotDirectory(ours_dir).read_view(now)
            one_worker = SnapshotDirectory(ours_dir)
            _write_workers(theirs_dir, blobs[:1], 1)
            families = model_families(one_worker.read_view(now).states, now)
            shutil.rmtree(theirs_dir)
            os.makedirs(theirs_dir)
            _prometheus_workers(theirs_dir, families, workers)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=theirs_dir)
            calls = 2 if workers >= 8 else 4
            ours, theirs = alternate(
                partial(per_call, partial(_merged_scrape, ours_dir, now), calls),
                partial(per_call, partial(generate_latest, registry), calls), rounds)
            our_samples = _merged_scrape(ours_dir, now).count(b"\n")
            their_samples = generate_latest(registry).count(b"\n")
            rows.append(Row(
                f"merge {workers} workers + render, every file changed "
                f"({MODELS} models x 50 features, references)", fmt_seconds(ours),
                f"multiprocess mode {fmt_seconds(theirs)} ({their_samples} vs {our_samples} "
                "lines)", ours / theirs, f"<= {MULTIPROCESS_RATIO_TARGET}x",
                ours / theirs <= MULTIPROCESS_RATIO_TARGET))
            if workers == 8:
                rows.append(_one_process_row(ours_dir, view.states, now, calls, rounds))
                rows.extend(_merge_parts(ours_dir, now, calls))
        finally:
            shutil.rmtree(ours_dir, ignore_errors=True)
            shutil.rmtree(theirs_dir, ignore_errors=True)
    return rows


def _one_process_row(directory: str, states: list, now: float, calls: int,
                     rounds: int) -> Row:
    """The merged scrape against one process holding the same (merged) data."""

    def one_process() -> bytes:
        page = _encoder().page()
        for state in states:
            drift = state.extras.get("drift")
            if drift is not None:
                drift._scored = None  # a process with traffic scores its new rows every scrape
            page.add(state, now)
        page.add_process({}, {}, {}, {})
        return page.text().encode()

    # Each a few milliseconds: many calls and rounds, and the median of each round's own
    # ratio (a slow spell of a shared machine slows both halves of a round alike).
    ratios, merged, single = paired_ratios(
        partial(per_call, partial(_merged_scrape, directory, now), max(calls, 10)),
        partial(per_call, one_process, max(calls, 10)), max(rounds, 15))
    ratio = statistics.median(ratios)
    low, high = iqr(ratios)
    return Row("merge 8 workers + render vs one process with the same data "
               f"(IQR of the ratio {low:.2f} to {high:.2f})",
               fmt_seconds(merged), f"one process {fmt_seconds(single)}", ratio,
               f"<= {ONE_PROCESS_RATIO_TARGET}x", ratio <= ONE_PROCESS_RATIO_TARGET)


def _merge_parts(directory: str, now: float, calls: int) -> list[Row]:
    """Where a merged scrape's time goes: reading and decoding, merging, drift, encoding."""
    from inferwatch.multiproc.merge import merge_view
    from inferwatch.multiproc.store import SnapshotDirectory

    whole = per_call(partial(_merged_scrape, directory, now), calls)
    def read() -> list:
        _as_just_written(directory)
        return SnapshotDirectory(directory).read_raws(dead=set())  # liveness too, as a scrape

    read_spent = per_call(read, calls)
    raws = read()
    merge = per_call(lambda: merge_view(raws, now), calls)
    views = [merge_view(raws, now) for _ in range(calls)]

    def score() -> None:
        view = views.pop()
        for state in view.states:
            drift = state.extras.get("drift")
            if drift is not None:
                drift.scores(now)

    drift = per_call(score, calls)
    rows = []
    for label, spent in (("read + decode files", read_spent), ("merge (decoded)", merge),
                         ("drift scoring", drift),
                         ("encode", max(0.0, whole - read_spent - merge - drift))):
        rows.append(Row(f"  of which {label}", fmt_seconds(spent),
                        f"whole merged scrape {fmt_seconds(whole)}", spent / whole,
                        "(decomposition)", True))
    return rows


def _publish_row(quick: bool) -> Row:
    """What a worker's drain thread spends, at most once a second, writing its snapshot
    (5 models x 50 outputs, the realistic state), beside rendering the same state as one
    process's /metrics page: both read the whole state once."""
    from inferwatch.core.registry import Registry
    from inferwatch.multiproc.worker import attach

    directory = tempfile.mkdtemp(prefix="inferwatch-bench-")
    registry = Registry(drain_interval=3600)
    publisher = attach(registry, directory)
    now = time.time()
    try:
        for state in realistic_states(0, now):
            registry.monitor(state.model, state.version).state.merge(state)

        def render() -> bytes:
            page = _encoder().page()
            for state in registry.states():
                page.add(state, now)
            return page.text().encode()

        calls = 5 if quick else 10
        published, rendered = alternate(
            partial(per_call, lambda: publisher.publish(force=True), calls),
            partial(per_call, render, calls), rounds=5 if quick else 9)
    finally:
        publisher.close()
        registry.close()
        shutil.rmtree(directory, ignore_errors=True)
    return Row(f"a worker's snapshot written ({MODELS} models x {OUTPUTS} outputs; the drain "
               "thread, at most once a second)", fmt_seconds(published),
               f"/metrics render of the same state {fmt_seconds(rendered)}",
               published / rendered, "(decomposition)", True)


def _hot_path_row(quick: bool) -> Row:
    from inferwatch.core.instrument import instrument
    from inferwatch.core.registry import Registry
    from inferwatch.multiproc.worker import attach

    calls = 500_000 if quick else 1_000_000
    directory = tempfile.mkdtemp(prefix="inferwatch-bench-")
    # Drained twenty times a second, so a tight loop never fills the pending list (the
    # publisher still writes at most once a second); every trial overlaps a publish.
    off, on = Registry(drain_interval=0.05), Registry(drain_interval=0.05)
    try:
        publisher = attach(on, directory)
        now = time.time()
        # The "on" worker publishes a realistic state (not only the benchmark's model).
        for registry in (off, on):
            for state in realistic_states(0, now):
                registry.monitor(state.model, state.version).state.merge(state)
        # Room for every call between two drains, even while a publish holds the GIL: a
        # dropped call would skip the append and flatter the measured side.
        plain = instrument(lambda x: 0.5, name="bench", version="1", registry=off,
                           max_pending=5_000_000)
        published = instrument(lambda x: 0.5, name="bench", version="1", registry=on,
                               max_pending=5_000_000)
        writes_before = publisher._last_publish

        def timed(fn) -> float:
            # A tight loop outpaces the fold (two drain threads share the GIL with it), so
            # each trial starts with both backlogs folded: one carried over would add its
            # fold to the next trial, and past max_pending_bytes drop calls.
            for registry in (off, on):
                registry.monitor("bench", "1").drain()
            return per_call(lambda: fn(1), calls)

        off_cost, on_cost = alternate(lambda: timed(plain), lambda: timed(published),
                                      rounds=5 if quick else 9)
        assert publisher._last_publish != writes_before, "the drain thread never published"
        from inferwatch.core.call_values import count_value

        for registry in (off, on):
            dropped = count_value(registry.monitor("bench", "1")._dropped)
            assert dropped == 0, f"{dropped} calls dropped: the measurement skipped their append"
    finally:
        off.close()
        on.close()
        publisher.close()
        shutil.rmtree(directory, ignore_errors=True)
    ratio = on_cost / off_cost
    return Row("hot path per call, multi-worker mode on vs off (drain thread publishing)",
               fmt_seconds(on_cost), fmt_seconds(off_cost), ratio,
               f"<= {HOT_PATH_RATIO_TARGET}x (not measurable)", ratio <= HOT_PATH_RATIO_TARGET)


def run(quick: bool = False) -> list[Row]:
    return [*_merge_rows(quick), _publish_row(quick), _hot_path_row(quick)]


if __name__ == "__main__":
    from benchmarks.common import print_table

    print_table("Multi-worker: merge and render", run(quick=True))
