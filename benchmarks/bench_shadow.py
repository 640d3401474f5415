"""Shadow models: what a challenger costs its champion's callers, and what the background
path sustains.

- Hot path: an instrumented scikit-learn classifier answering single rows, with a shadow
  at sample 1.0 and 0.1 against none, alternated in one process: 31 rounds, each a
  shadowed and an unshadowed trial back to back; the ratio is the median of the rounds'
  ratios, with their interquartile range. The caller's CPU (its
  thread's CPU time: the request path's own cost, a random draw, an input copy and a deque
  append) is the target; the whole process's CPU (the challenger in thread mode, the
  comparison and drain) is shown beside it. Wall time is not used: on a shared machine and
  with the challenger competing for the GIL it measures the neighbours and the challenger.
- Background throughput: calls a second per worker thread, against calling the challenger
  directly in a loop (what the same thread could do with no queue at all).
- Memory: a challenger 100x slower than its champion; traced memory after 4x the calls
  must stay where it was (the queue is bounded; the rest is dropped and counted). Each
  reading waits for the queue to be worked off, so it shows what is retained rather than
  how full the queue happened to be at that instant.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc

import numpy as np

import inferwatch
from inferwatch.core.registry import Registry

from .common import Row, alternate, fmt_seconds, iqr, paired_ratios, per_call

HOT_PATH_TARGET = 1.1


def _classifier():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 8))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)), X


def _champion(model, registry):
    import pickle

    return inferwatch.instrument(pickle.loads(pickle.dumps(model)), name="bench",
                                 version="1", registry=registry)


class _ReleasesGil:
    """A challenger that holds no GIL while it works (native code that releases it, a
    remote model): what remains is inferwatch's own cost on the caller."""

    def __init__(self, model, seconds: float) -> None:
        self.model = model
        self.seconds = seconds

    def predict(self, rows):
        time.sleep(self.seconds)
        return np.zeros(len(rows), dtype=int)


def _cpu_per_call(fn, calls: int, clock) -> float:
    """CPU seconds per call of `fn` by `clock` (time.thread_time: this thread only, so
    neither other processes on a shared machine nor waiting for the GIL count)."""
    gc.disable()
    try:
        start = clock()
        for _ in range(calls):
            fn()
        return (clock() - start) / calls
    finally:
        gc.enable()


def _hot_path_case(model, row, mode: str, sample: float, quick: bool,
                   challenger=None, label: str = "") -> list[Row]:
    calls = 300 if quick else 600
    alone_registry, shadowed_registry = Registry(), Registry()
    alone = _champion(model, alone_registry)
    shadowed = _champion(model, shadowed_registry)
    handle = inferwatch.shadow(shadowed, model if challenger is None else challenger,
                               version="2", sample=sample, mode=mode, queue_size=100_000,
                               timeout=60.0, registry=shadowed_registry)
    shadowed.predict(row)
    handle.flush(120)  # a process-mode child is started and warm

    def caller(model_) -> float:
        seconds = _cpu_per_call(lambda: model_.predict(row), calls, time.thread_time)
        handle.flush(300)  # the next trial starts with an empty queue (not timed)
        return seconds

    def process(model_) -> float:
        # Everything the serving process spends: the caller, the shadow's workers, its
        # comparisons and drain (not the challenger's child process in process mode).
        start = time.process_time()
        for _ in range(calls):
            model_.predict(row)
        handle.flush(300)
        shadowed_registry.drain()
        return (time.process_time() - start) / calls

    ratios, ours, base = paired_ratios(lambda: caller(shadowed), lambda: caller(alone),
                                       6 if quick else 31)
    ratio = statistics.median(ratios)
    low, high = iqr(ratios)
    ours_all, base_all = alternate(lambda: process(shadowed), lambda: process(alone),
                                   3 if quick else 7)
    shadowed_registry.drain()
    dropped = sum(handle.monitor.state.counters["inferwatch_shadow_dropped_total"].values())
    handle.close()
    alone_registry.close()
    shadowed_registry.close()
    name = f"shadow {mode} sample {sample}{label}"
    note = f" ({dropped:.0f} dropped)" if dropped else ""
    return [
        Row(f"champion predict, 1 row, {name}: caller's CPU (IQR of the ratio "
            f"{low:.3g}..{high:.3g})", fmt_seconds(ours), fmt_seconds(base) + " (no shadow)",
            ratio, f"<= {HOT_PATH_TARGET}x{note}", ratio <= HOT_PATH_TARGET),
        Row("  same, whole process CPU (challenger and comparison included)",
            fmt_seconds(ours_all), fmt_seconds(base_all) + " (no shadow)",
            ours_all / base_all, "informational", True),
    ]


def hot_path(quick: bool) -> list[Row]:
    model, X = _classifier()
    row = X[:1]
    rows = [r for mode, sample in (("thread", 1.0), ("thread", 0.1), ("process", 1.0))
            for r in _hot_path_case(model, row, mode, sample, quick)]
    champion_seconds = per_call(lambda: model.predict(row), 200)
    rows += _hot_path_case(model, row, "thread", 1.0, quick,
                           challenger=_ReleasesGil(model, champion_seconds),
                           label=", challenger off the GIL")
    return rows


def _throughput_case(model, row, workers: int, quick: bool) -> Row:
    n = 1000 if quick else 5000
    registry = Registry()
    champion = _champion(model, registry)
    handle = inferwatch.shadow(champion, model, version="2", queue_size=n + 1,
                               workers=workers, timeout=60.0, registry=registry)

    def background() -> float:
        # Timed from the first offer: the workers start on the queue while it fills.
        start = time.perf_counter()
        for _ in range(n):
            handle.offer("predict", (row,), {}, np.array([0]))
        handle.flush(600)
        return n / (time.perf_counter() - start)

    def direct() -> float:
        return 1.0 / per_call(lambda: model.predict(row), n)

    ours, base = alternate(background, direct, rounds=3 if quick else 5)
    registry.drain()
    handle.close()
    registry.close()
    return Row(f"background comparisons/s, {workers} thread(s), before drops",
               f"{ours:,.0f}/s", f"{base:,.0f}/s (challenger called directly)",
               ours / base, ">= 0.5 of a bare loop", ours / base >= 0.5)


def throughput(quick: bool) -> list[Row]:
    model, X = _classifier()
    return [_throughput_case(model, X[:1], workers, quick) for workers in (1, 2)]


class _Fast:
    def predict(self, rows):
        return [sum(r) for r in rows]


class _Slow:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict(self, rows):
        time.sleep(self.seconds)
        return [sum(r) for r in rows]


def memory(quick: bool) -> list[Row]:
    registry = Registry()
    fast = inferwatch.instrument(_Fast(), name="mem", version="1", registry=registry)
    champion_seconds = per_call(lambda: fast.predict([[1.0, 2.0]]), 20_000)
    slow = _Slow(100 * champion_seconds)
    handle = inferwatch.shadow(fast, slow, version="2", queue_size=1000, timeout=60.0,
                               registry=registry)
    batch = 20_000 if quick else 100_000
    sizes = []
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(4):
            for _ in range(batch):
                fast.predict([[1.0, 2.0]])
            # Measured with the queue worked off: what is retained, not the up to
            # queue_size calls in flight at that instant (bounded by the queue itself).
            handle.flush(120)
            registry.drain()
            gc.collect()
            sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    registry.drain()
    counters = handle.monitor.state.counters
    dropped = counters["inferwatch_shadow_dropped_total"][("1", "queue_full")]
    sampled = counters["inferwatch_shadow_sampled_total"][("1",)]
    handle.close()
    registry.close()
    growth = sizes[-1] / sizes[0]
    return [Row(f"memory, challenger 100x slower ({fmt_seconds(slow.seconds)} a call), "
                f"{4 * batch:,} calls",
                f"{sizes[-1] / 2**20:.2f} MiB after {4 * batch:,}",
                f"{sizes[0] / 2**20:.2f} MiB after {batch:,}", growth,
                f"<= 1.1x ({dropped:,.0f} of {sampled:,.0f} dropped, counted)",
                growth <= 1.1)]


def run(quick: bool = False) -> list[Row]:
    return hot_path(quick) + throughput(quick) + memory(quick)
