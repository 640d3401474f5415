"""Rolling quantiles: accuracy against numpy's exact quantile, memory per series, scrape cost.

Each sample is fed to a RollingSketch in batches spread over 15 minutes, as the collection
path drains it; the exact baseline is numpy's default (linear) quantile over exactly the
values whose bucket is still in the 10-minute window at the time of the query.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from prometheus_client import CollectorRegistry, Summary

from inferwatch.core.rolling_sketch import RollingSketch

from .common import Row, alternate, fmt_seconds, per_call

START = 1_700_000_000.0
SPAN_SECONDS = 900.0
BATCH = 1_000
QUANTILES = (0.5, 0.9, 0.99)
TARGET_ERROR = 0.01


def _feed(values: np.ndarray) -> tuple[RollingSketch, np.ndarray, float]:
    """Feed `values` over SPAN_SECONDS; return the sketch, the exact window and the query time."""
    rolling = RollingSketch()
    batches = np.array_split(values, max(1, values.size // BATCH))
    times = START + np.linspace(0.0, SPAN_SECONDS, len(batches))
    for batch, now in zip(batches, times):
        rolling.add(batch, now=float(now))
    query = float(times[-1])
    current = rolling.bucket_id(query)
    in_window = [
        batch for batch, now in zip(batches, times)
        if rolling.bucket_id(float(now)) > current - rolling.age_buckets
    ]
    return rolling, np.concatenate(in_window), query


def _accuracy_rows(label: str, values: np.ndarray) -> list[Row]:
    rolling, window_values, query = _feed(values)
    got = rolling.quantiles(QUANTILES, now=query)
    exact = np.quantile(window_values, QUANTILES)
    rows = []
    for q, sketch_value, exact_value in zip(QUANTILES, got, exact):
        error = abs(sketch_value - exact_value) / abs(exact_value)
        rows.append(Row(
            case=f"p{q * 100:g}, {label} ({window_values.size:,} in window)",
            inferwatch=f"{sketch_value:.5g} (err {error:.3%})",
            baseline=f"{exact_value:.5g} numpy exact",
            ratio=sketch_value / exact_value,
            target="<= 1% rel. error",
            met=error <= TARGET_ERROR,
        ))
    return rows


def _memory_after(values: Callable[[int], np.ndarray], n: int) -> int:
    rolling, _, _ = _feed(values(n))
    return rolling.nbytes


def _memory_row(label: str, values: Callable[[int], np.ndarray]) -> Row:
    small, large = _memory_after(values, 10_000), _memory_after(values, 1_000_000)
    ratio = large / small
    return Row(
        case=f"memory per series, {label}: 10^6 vs 10^4 obs",
        inferwatch=f"{large / 1024:.1f} KiB at 10^6",
        baseline=f"{small / 1024:.1f} KiB at 10^4",
        ratio=ratio,
        target="independent of n (~1)",
        met=ratio <= 1.25,
    )


def _scrape_row(quick: bool) -> Row:
    values = np.random.default_rng(5).lognormal(size=100_000)
    rolling, window_values, query = _feed(values)
    calls = 50 if quick else 300

    def sketch_scrape() -> float:
        return per_call(lambda: rolling.quantiles(QUANTILES, now=query), calls)

    def exact_scrape() -> float:
        return per_call(lambda: np.quantile(window_values, QUANTILES), calls)

    sketch_time, exact_time = alternate(sketch_scrape, exact_scrape, rounds=3 if quick else 7)
    return Row(
        case=f"scrape: p50/p90/p99 of the window ({window_values.size:,} values)",
        inferwatch=fmt_seconds(sketch_time),
        baseline=f"{fmt_seconds(exact_time)} np.quantile on raw values",
        ratio=sketch_time / exact_time,
        target="< 1 ms",
        met=sketch_time < 1e-3,
    )


def _add_row(quick: bool) -> Row:
    batch = np.random.default_rng(6).lognormal(size=BATCH)
    rolling = RollingSketch()
    # The per-value baseline: prometheus_client's Summary, which keeps no quantiles at all.
    summary = Summary("bench_values", "values", registry=CollectorRegistry())
    now = time.time()
    calls = 20 if quick else 200

    def sketch_add() -> float:
        return per_call(lambda: rolling.add(batch, now=now), calls)

    def observe_each() -> float:
        def loop() -> None:
            for value in batch.tolist():
                summary.observe(value)

        return per_call(loop, calls)

    add_time, observe_time = alternate(sketch_add, observe_each, rounds=3 if quick else 7)
    return Row(
        case=f"add a batch of {BATCH:,} values",
        inferwatch=fmt_seconds(add_time),
        baseline=f"{fmt_seconds(observe_time)} prometheus_client Summary.observe x{BATCH:,}",
        ratio=add_time / observe_time,
        target="tens of us",
        met=add_time < 50e-6,
    )


def run(quick: bool) -> list[Row]:
    """Accuracy, memory and cost rows; `quick` only shortens the timed rows."""
    rng = np.random.default_rng(2024)
    rows = _accuracy_rows("lognormal 100k", rng.lognormal(0.0, 1.0, 100_000))
    rows += _accuracy_rows("normal(-1, 2) 100k, 31% positive", rng.normal(-1.0, 2.0, 100_000))
    rows.append(_memory_row("lognormal", lambda n: np.random.default_rng(n).lognormal(size=n)))
    rows.append(_memory_row(
        "+-10^(-10..10)",
        lambda n: np.random.default_rng(n).choice([-1.0, 1.0], n)
        * 10.0 ** np.random.default_rng(n + 1).uniform(-10, 10, n),
    ))
    rows.append(_scrape_row(quick))
    rows.append(_add_row(quick))
    return rows
