"""Drains of many-row calls and glibc's heap: page faults per drain, and what they cost.

A drain of 1,000 calls of 100 rows each folds columns of 100,000 rows, several megabytes of
temporary arrays at once. Whether glibc gives that memory back to the system after each
drain (and the next drain faults it in again) depends on the largest block the process has
freed so far, not on inferwatch: glibc raises its mmap and trim thresholds with it. So each
variant runs in a process of its own, alternately: as a process starts, after it freed one
8 MB array, and with the ``GLIBC_TUNABLES`` that docs/shapes.md gives. The rows print the
drain's cost per call and its page faults (``getrusage``), for ``predict_proba`` and
``predict`` on 100 rows.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from benchmarks.bench_shapes import _Model
from benchmarks.common import Row, fmt_seconds

CALLS_PER_DRAIN = 1000
ROWS = 100
TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=67108864"
PRIMING_BYTES = 8 << 20
VARIANTS = ("fresh", "primed", "tunables")


def _child(kind: str, primed: bool, drains: int) -> dict[str, float]:
    """Drain `drains` times 1,000 calls of `kind` on 100 rows in this process: seconds a
    call and page faults a drain."""
    import numpy as np

    if primed:
        block = np.ones(PRIMING_BYTES // 8)
        del block
    from inferwatch.core.instrument import instrument
    from inferwatch.core.registry import Registry

    rng = np.random.default_rng(0)
    positive = rng.random(ROWS)
    matrix = np.column_stack([1 - positive, positive])

    monitors = Registry(drain_interval=3600)
    model = _Model(positive, matrix)
    method = getattr(instrument(model, name="bench", version="1", registry=monitors), kind)
    rows = np.zeros((ROWS, 2))
    clock = 0.0

    def drain_all(times: int) -> float:
        nonlocal clock
        spent = 0.0
        for _ in range(times):
            for _ in range(CALLS_PER_DRAIN):
                method(rows)
            clock += 60.0  # past drain_max_wait_seconds: the pass folds them
            start = time.perf_counter()
            monitors.due_pass(clock)  # the drain thread's pass
            spent += time.perf_counter() - start
        return spent

    drain_all(5)  # the drain's own arrays once freed, as in a process that ran a while
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    spent = drain_all(drains)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    monitors.close()
    return {"seconds": spent / (drains * CALLS_PER_DRAIN), "faults": faults / drains}


def _run_child(kind: str, variant: str, drains: int) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    if variant == "tunables":
        env["GLIBC_TUNABLES"] = TUNABLES
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_drain_memory", kind, variant, str(drains)],
        env=env, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rows(kind: str, rounds: int, drains: int) -> list[Row]:
    found: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
    for round_index in range(rounds):
        order = VARIANTS[round_index % 3:] + VARIANTS[:round_index % 3]
        for variant in order:
            found[variant].append(_run_child(kind, variant, drains))
    seconds = {v: statistics.median(r["seconds"] for r in runs) for v, runs in found.items()}
    faults = {v: statistics.median(r["faults"] for r in runs) for v, runs in found.items()}
    label = f"{kind} on {ROWS} rows, {CALLS_PER_DRAIN:,} calls a drain: drain per call"
    return [
        Row(f"{label}, as a process starts vs after it freed one 8 MB array",
            f"{fmt_seconds(seconds['fresh'])} ({faults['fresh']:.0f} page faults a drain)",
            f"{fmt_seconds(seconds['primed'])} ({faults['primed']:.0f} page faults a drain)",
            seconds["fresh"] / seconds["primed"], "(decomposition: glibc's heap)", True),
        Row(f"{label}, as a process starts vs with GLIBC_TUNABLES of docs/shapes.md",
            f"{fmt_seconds(seconds['fresh'])} ({faults['fresh']:.0f} page faults a drain)",
            f"{fmt_seconds(seconds['tunables'])} ({faults['tunables']:.0f} page faults a "
            "drain)", seconds["fresh"] / seconds["tunables"], "(decomposition: glibc's heap)",
            True),
    ]


def run(quick: bool = False) -> list[Row]:
    rounds, drains = (3, 10) if quick else (5, 20)
    rows = []
    for kind in ("predict_proba", "predict"):
        rows.extend(_rows(kind, rounds, drains))
    return rows


if __name__ == "__main__":
    kind_arg, variant_arg, drains_arg = sys.argv[1:4]
    print(json.dumps(_child(kind_arg, variant_arg == "primed", int(drains_arg))))
