"""How cost grows: a scrape against models and features, a merged scrape against workers.

Each deployment is ``bench_encoding``'s (instrumented models with a reference). The scrape
is ``render()`` in the text format; the merged scrape reads every worker's snapshot (a
new reader each time) and encodes the merged view. The "ratio" is the cost per unit
(sample, or worker) against the smallest case of the same axis: at most about 1 means
growth is linear or better; the target leaves room for the machine's noise.
"""

from __future__ import annotations

import gc
import shutil
import statistics
import tempfile
import time
from functools import partial

from benchmarks.common import Row, fmt_seconds, per_call

GROWTH_TARGET = 1.5  # cost per unit at the largest size, over the smallest's


def _round_robin(measures: list, rounds: int) -> list[float]:
    """The median of each measurement, taken in turn round after round (noise hits all)."""
    results: list[list[float]] = [[] for _ in measures]
    for r in range(rounds):
        for index in range(len(measures)):
            index = (index + r) % len(measures)
            gc.collect()
            results[index].append(measures[index]())
    return [statistics.median(values) for values in results]


def _scrape_rows(quick: bool) -> list[Row]:
    from benchmarks.bench_encoding import _changed_scrape, realistic_deployment
    from inferwatch.serving.exposition import render

    cases = [(m, 10) for m in (1, 10, 100)] + [(1, f) for f in (100, 500)]
    deployments, samples = [], []
    try:
        for models, features in cases:
            registry, monitors = realistic_deployment(models, features,
                                                      calls=10 if quick else 20)
            deployments.append((registry, monitors))
            body, _ = render(registry, None, None)  # fill the label cache
            samples.append(sum(1 for line in body.split(b"\n")
                               if line and not line.startswith(b"#")))
        spent = _round_robin([partial(per_call, partial(_changed_scrape, registry, monitors,
                                                        None, None), 2)
                              for registry, monitors in deployments], 3 if quick else 7)
    finally:
        for _, monitors in deployments:
            monitors.close()
    rows: list[Row] = []
    base = spent[0] / samples[0]  # 1 model x 10 features starts both axes
    for (models, features), time_spent, count in zip(cases, spent, samples):
        ratio = time_spent / count / base
        rows.append(Row(f"scrape, {models} models x {features} features ({count} samples)",
                        f"{fmt_seconds(time_spent)} ({fmt_seconds(time_spent / count)}/sample)",
                        f"1 model x 10 features: {fmt_seconds(base)}/sample", ratio,
                        f"<= {GROWTH_TARGET} per sample", ratio <= GROWTH_TARGET))
    return rows


def _worker_rows(quick: bool) -> list[Row]:
    from benchmarks.bench_multiproc import _merged_scrape, _worker_snapshots, _write_workers

    now = time.time()
    blobs = _worker_snapshots(2, now)
    counts = (1, 2, 4, 8, 16, 32)
    directories = []
    try:
        for workers in counts:
            directories.append(tempfile.mkdtemp(prefix="inferwatch-growth-"))
            _write_workers(directories[-1], blobs, workers)
            _merged_scrape(directories[-1], now)
        spent = _round_robin([partial(per_call, partial(_merged_scrape, d, now), 1)
                              for d in directories], 3 if quick else 7)
    finally:
        for directory in directories:
            shutil.rmtree(directory, ignore_errors=True)
    rows = []
    base = spent[0]
    for workers, time_spent in zip(counts, spent):
        ratio = time_spent / workers / base
        rows.append(Row(f"merged scrape, {workers} workers (5 models x 50 features each)",
                        f"{fmt_seconds(time_spent)} ({fmt_seconds(time_spent / workers)}/worker)",
                        f"1 worker: {fmt_seconds(base)}", ratio,
                        f"<= {GROWTH_TARGET} per worker", ratio <= GROWTH_TARGET))
    return rows


def run(quick: bool = False) -> list[Row]:
    return [*_scrape_rows(quick), *_worker_rows(quick)]


if __name__ == "__main__":
    from benchmarks.common import print_table

    print_table("How cost grows", run(quick=True))
