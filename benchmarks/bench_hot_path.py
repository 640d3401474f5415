"""instrument()'s cost per call against the naive prometheus_client wrapper.

The naive wrapper is what most services write by hand: two ``perf_counter`` calls, a
pre-bound ``Histogram.observe`` and ``Counter.inc``. Overheads are the time per call
minus a bare call of the same function, all measured alternately in one process; a ratio
is the median of each round's own ratio. The total adds the background drain's pass once a
second (at 1,000 calls a second) and a scrape every 15,000 calls, each tool's as its
server sends it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from benchmarks.common import Row, fmt_seconds

SCRAPE_EVERY_CALLS = 15_000  # a 15 s scrape interval at 1,000 calls/s


def _scrape(prom: CollectorRegistry) -> bytes:
    """One scrape of inferwatch as its /metrics serves it (its own text encoder); the naive
    wrapper's scrape is prometheus_client's ``generate_latest``, what its server sends."""
    from inferwatch.serving.exposition import render

    return render(prom, None, None)[0]


def _model(x: object) -> float:
    return 0.5


def _naive(fn: Callable, registry: CollectorRegistry) -> Callable:
    observe = Histogram("naive_latency_seconds", "latency", registry=registry).observe
    inc = Counter("naive_requests", "requests", registry=registry).inc
    clock = time.perf_counter

    def wrapper(*args, **kwargs):
        start = clock()
        result = fn(*args, **kwargs)
        observe(clock() - start)
        inc()
        return result

    return wrapper


def _time_calls(fn: Callable, calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        fn(i)
    return time.perf_counter() - start


def _rotate(trials: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Run every trial once per round in a rotating order; return medians."""
    return {name: statistics.median(values) for name, values in _rounds(trials, rounds).items()}


def _paired_overhead_ratio(results: dict[str, list[float]], measured: str, baseline: str,
                           bare: str = "bare") -> float:
    """The median over rounds of (measured - bare) / (baseline - bare), each round's trials
    taken together: a slow spell of the machine slows a whole round alike, so the ratio
    holds where the absolute times move by half."""
    return statistics.median(
        (m - b) / (n - b) for m, n, b in zip(results[measured], results[baseline], results[bare]))


def _rounds(trials: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run every trial once per round in a rotating order; return every round's result."""
    import gc

    names = list(trials)
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            gc.collect()
            gc.disable()
            try:
                results[name].append(trials[name]())
            finally:
                gc.enable()
    return results


def run(quick: bool = False) -> list[Row]:
    from inferwatch.core.instrument import instrument
    from inferwatch.core.registry import Registry
    from inferwatch.serving.bridge import InferwatchCollector

    calls = 20_000 if quick else 100_000
    rounds = 5 if quick else 11

    naive_registry = CollectorRegistry()
    naive = _naive(_model, naive_registry)
    monitors = Registry(drain_interval=3600)  # drained explicitly below, outside the hot timing
    prom = CollectorRegistry()
    prom.register(InferwatchCollector(monitors))
    wrapped = instrument(_model, name="bench", version="1", registry=monitors)

    def bare() -> float:
        return _time_calls(_model, calls) / calls

    def naive_hot() -> float:
        return _time_calls(naive, calls) / calls

    def iw_hot() -> float:
        elapsed = _time_calls(wrapped, calls)
        monitors.drain()
        return elapsed / calls

    def naive_total() -> float:
        start = time.perf_counter()
        for done in range(0, calls, SCRAPE_EVERY_CALLS):
            _time_calls(naive, min(SCRAPE_EVERY_CALLS, calls - done))
            generate_latest(naive_registry)
        return (time.perf_counter() - start) / calls

    clock = [0.0]

    def iw_total() -> float:
        start = time.perf_counter()
        for done in range(0, calls, SCRAPE_EVERY_CALLS):
            chunk = min(SCRAPE_EVERY_CALLS, calls - done)
            for part in range(0, chunk, 1000):  # the background drain runs about once a second
                _time_calls(wrapped, min(1000, chunk - part))
                clock[0] += 1.0
                monitors.due_pass(clock[0])  # the drain thread's pass
            _scrape(prom)
        return (time.perf_counter() - start) / calls

    results = _rounds({"bare": bare, "naive_hot": naive_hot, "iw_hot": iw_hot,
                       "naive_total": naive_total, "iw_total": iw_total}, rounds)
    medians = {name: statistics.median(values) for name, values in results.items()}
    naive_overhead = medians["naive_hot"] - medians["bare"]
    hot_overhead = medians["iw_hot"] - medians["bare"]
    naive_total_overhead = medians["naive_total"] - medians["bare"]
    total_overhead = medians["iw_total"] - medians["bare"]
    hot_ratio = _paired_overhead_ratio(results, "iw_hot", "naive_hot")
    total_ratio = _paired_overhead_ratio(results, "iw_total", "naive_total")

    # Batch path: one call returning 10,000 scores, recorded row by row.
    batch = np.random.default_rng(0).random(10_000)
    batch_model = instrument(lambda x: batch, name="batch", version="1", registry=monitors)

    def batch_per_row() -> float:
        start = time.perf_counter()
        for i in range(20):
            batch_model(i)
            monitors.drain()
        return (time.perf_counter() - start) / (20 * batch.size)

    batch_medians = _rotate({"batch": batch_per_row}, 5 if quick else 9)
    per_row = batch_medians["batch"]
    monitors.close()

    batch_ratio = per_row / hot_overhead
    return [
        Row("hot path overhead per call (latency, outcome, rolling quantiles, value histogram)",
            fmt_seconds(hot_overhead), fmt_seconds(naive_overhead), hot_ratio,
            "<= 0.5x (aim 0.25x)", hot_ratio <= 0.5),
        Row("total per call incl. drain + a scrape every 15,000 calls",
            fmt_seconds(total_overhead), fmt_seconds(naive_total_overhead), total_ratio,
            "<= 1.0x (aim 0.5x)", total_ratio <= 1.0),
        Row("10,000-row batch: cost per row vs per-call hot path",
            fmt_seconds(per_row), fmt_seconds(hot_overhead), batch_ratio,
            "<= 0.05 (1/20)", batch_ratio <= 0.05),
        Row("bare call (floor, for reference)", fmt_seconds(medians["bare"]),
            fmt_seconds(medians["bare"]), 1.0, "-", True),
    ]
