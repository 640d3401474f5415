"""Multi-worker mode: a merged scrape of 8 workers, a worker's snapshot write, the hot path.

Each worker holds a realistic state: 5 models, each with 50 outputs (rolling-quantile
summaries with values in every age bucket, value histograms), 10 classes, latency and
stage histograms. The merged scrape reads the 8 snapshot files, merges them and renders
``/metrics`` text, as any worker's ``/metrics`` does; its baseline is one process
rendering one worker's state. The hot path is timed with multi-worker mode on and off,
alternately, while the background thread publishes that realistic state every second.
"""

from __future__ import annotations

import shutil
import tempfile
import time

import numpy as np
from prometheus_client import generate_latest

from benchmarks.common import Row, alternate, fmt_seconds, per_call

MODELS = 5
OUTPUTS = 50
WORKERS = 8
MERGE_TARGET_SECONDS = 0.100
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


def _merge_rows(quick: bool) -> list[Row]:
    from inferwatch.core.render import model_families, process_families
    from inferwatch.multiproc.snapshot_format import Snapshot, encode, model_dict
    from inferwatch.multiproc.store import SnapshotDirectory, WorkerId

    now = time.time()
    directory = tempfile.mkdtemp(prefix="inferwatch-bench-")
    try:
        one_worker = []
        write_times = []
        for worker in range(WORKERS):
            states = realistic_states(worker, now)
            one_worker = one_worker or states
            start = time.perf_counter()
            data = encode(Snapshot(models=[model_dict(s) for s in states], written_at=now))
            write_times.append(time.perf_counter() - start)
            SnapshotDirectory(directory).write(WorkerId(10_000 + worker, 1).name, data,
                                               WorkerId(10_000 + worker, 1))

        def merged_scrape() -> float:
            def scrape() -> bytes:
                view = SnapshotDirectory(directory).read_view(now)  # no cache: cold
                return generate_latest(_Families(view.families(now)))
            return per_call(scrape, 2)

        def single_scrape() -> float:
            def scrape() -> bytes:
                families = [*model_families(one_worker, now),
                            *process_families({}, {}, {}, {})]
                return generate_latest(_Families(families))
            return per_call(scrape, 2)

        merged, single = alternate(merged_scrape, single_scrape, rounds=5 if quick else 9)
        encode_time = float(np.median(write_times))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return [
        Row(f"merge {WORKERS} workers' snapshots + render /metrics "
            f"({MODELS} models x {OUTPUTS} outputs)",
            fmt_seconds(merged), fmt_seconds(single), merged / single,
            f"< {MERGE_TARGET_SECONDS * 1000:.0f} ms (baseline: one process, one worker's "
            "state)", merged < MERGE_TARGET_SECONDS),
        Row("encode one worker's snapshot (drain thread, once a second)",
            fmt_seconds(encode_time), fmt_seconds(single), encode_time / single,
            "off the request path (baseline: a one-process scrape)", True),
    ]


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
            return per_call(lambda: fn(1), calls)

        off_cost, on_cost = alternate(lambda: timed(plain), lambda: timed(published),
                                      rounds=5 if quick else 9)
        assert publisher._last_publish != writes_before, "the drain thread never published"
        from inferwatch.core.monitor import _count_value

        for registry in (off, on):
            dropped = _count_value(registry.monitor("bench", "1")._dropped)
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
    return [*_merge_rows(quick), _hot_path_row(quick)]


if __name__ == "__main__":
    from benchmarks.common import print_table

    print_table("Multi-worker: merge and render", run(quick=True))
