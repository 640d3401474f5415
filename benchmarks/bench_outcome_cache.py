"""Outcome cache: the memory a remembered prediction really takes, against the estimate
that bounds the cache (``max_bytes``), measured with tracemalloc.

Entries are shaped as the drain makes them: a request id, and the predicted classes or
values of the call as Python objects from ``ndarray.tolist()``. The estimate must not fall
short of the real memory, or the byte bound would not hold.
"""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np

from inferwatch.core.outcomes import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, OutcomeJoiner

from .common import Row

SHAPES = {
    "single-row class": ("class", 1),
    "single-row value": ("value", 1),
    "64-row batch class": ("class", 64),
    "64-row batch value": ("value", 64),
}


def entry(kind: str, rows: int, rng: np.random.Generator) -> tuple[tuple | None, tuple | None]:
    """(classes, values) of one call, as :func:`~inferwatch.core.call_rows.split_rows`
    builds them."""
    if kind == "class":
        labels = np.array(["benign", "malignant"])[rng.integers(0, 2, rows)]
        return tuple(labels.tolist()), None
    return None, tuple(rng.normal(size=rows).tolist())


# Memory allocated by this file (the entries and their ids) and by the cache itself: another
# thread of the process (a background drain) may allocate while this one measures.
_HERE = (tracemalloc.Filter(True, __file__),
         tracemalloc.Filter(True, "*/inferwatch/core/outcomes.py"))


def _traced_here() -> int:
    return sum(stat.size for stat in
               tracemalloc.take_snapshot().filter_traces(_HERE).statistics("filename"))


def measure(kind: str, rows: int, entries: int, **joiner_options: int) -> tuple[float, float, int]:
    """(measured bytes per entry, estimated bytes per entry, entries kept) after `entries`
    remembers into a fresh cache."""
    rng = np.random.default_rng(0)
    gc.collect()
    tracemalloc.start()
    try:
        before = _traced_here()
        # Made while tracing, as the drain makes them: what the cache keeps is counted.
        made = [entry(kind, rows, rng) for _ in range(entries)]
        ids = [f"req-{i:012d}" for i in range(entries)]
        joiner = OutcomeJoiner(**joiner_options)
        for request_id, (classes, values) in zip(ids, made):
            joiner.remember(request_id, classes, values, at=0.0)
        del made, ids  # what the cache dropped is freed; what it keeps is still traced
        gc.collect()
        used = _traced_here() - before
    finally:
        tracemalloc.stop()
    kept = len(joiner)
    return used / kept, joiner.estimated_bytes / kept, kept


def run(quick: bool = False) -> list[Row]:
    n = 2_000 if quick else 20_000
    rows: list[Row] = []
    for case, (kind, size) in SHAPES.items():
        measured, estimated, _ = measure(kind, size, n, max_entries=n, max_bytes=1 << 40)
        rows.append(Row(f"{case}: bytes per entry", f"{measured:.0f} B (measured)",
                        f"{estimated:.0f} B (estimate)", measured / estimated,
                        "<= 1.0 (the bound holds)", measured <= estimated))
    full = DEFAULT_MAX_ENTRIES if not quick else 5_000
    for kind, size in (("class", 1), ("class", 64)):
        measured, _, kept = measure(kind, size, full)
        total = measured * kept
        rows.append(Row(f"default cache, {full} {size}-row entries: total",
                        f"{total / 2**20:.1f} MiB, {kept} kept",
                        f"{DEFAULT_MAX_BYTES / 2**20:.0f} MiB bound", total / DEFAULT_MAX_BYTES,
                        "<= 1.0", total <= DEFAULT_MAX_BYTES))
    return rows
