"""How cost grows: a scrape against models and features, a merged scrape against workers.

Each deployment is ``bench_encoding``'s (instrumented models with a reference). The scrape
is ``render()`` in the text format; the merged scrape reads every worker's snapshot (a
new reader each time) and encodes the merged view. The "ratio" is the cost per unit
(sample, or worker) against the smallest case of the same axis: at most about 1 means
growth is linear or better; the target leaves room for the machine's noise.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from functools import partial

from benchmarks.common import Row, fmt_seconds, per_call

GROWTH_TARGET = 1.5  # cost per unit at the largest size, over the smallest's


def _scrape_rows(quick: bool) -> list[Row]:
    from benchmarks.bench_encoding import realistic_deployment
    from inferwatch.serving.exposition import render

    cases = [("models", m, 10) for m in (1, 10, 100)] + [("features", 1, f)
                                                         for f in (10, 100, 500)]
    rows: list[Row] = []
    first: dict[str, float] = {}
    for axis, models, features in cases:
        registry, monitors = realistic_deployment(models, features, calls=10 if quick else 20)
        try:
            body, _ = render(registry, None, None)  # fill the label cache
            samples = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
            spent = min(per_call(partial(render, registry, None, None), 3)
                        for _ in range(3 if quick else 5))
        finally:
            monitors.close()
        per_sample = spent / samples
        base = first.setdefault(axis, per_sample)
        ratio = per_sample / base
        rows.append(Row(f"scrape, {models} models x {features} features ({samples} samples)",
                        f"{fmt_seconds(spent)} ({fmt_seconds(per_sample)}/sample)",
                        f"smallest by {axis}: {fmt_seconds(base)}/sample", ratio,
                        f"<= {GROWTH_TARGET} per sample", ratio <= GROWTH_TARGET))
    return rows


def _worker_rows(quick: bool) -> list[Row]:
    from benchmarks.bench_multiproc import _merged_scrape, _worker_snapshots, _write_workers

    now = time.time()
    blobs = _worker_snapshots(2, now)
    rows, base = [], None
    for workers in (1, 2, 4, 8, 16, 32):
        directory = tempfile.mkdtemp(prefix="inferwatch-growth-")
        try:
            _write_workers(directory, blobs, workers)
            _merged_scrape(directory, now)
            spent = min(per_call(partial(_merged_scrape, directory, now), 2)
                        for _ in range(3 if quick else 5))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        per_worker = spent / workers
        base = base or per_worker
        ratio = per_worker / base
        rows.append(Row(f"merged scrape, {workers} workers (5 models x 50 features each)",
                        f"{fmt_seconds(spent)} ({fmt_seconds(per_worker)}/worker)",
                        f"1 worker: {fmt_seconds(base)}", ratio,
                        f"<= {GROWTH_TARGET} per worker", ratio <= GROWTH_TARGET))
    return rows


def run(quick: bool = False) -> list[Row]:
    return [*_scrape_rows(quick), *_worker_rows(quick)]


if __name__ == "__main__":
    from benchmarks.common import print_table

    print_table("How cost grows", run(quick=True))
