"""Shared helpers: alternate A and B in one process, report medians as a ratio.

Each benchmark module exposes ``run(quick: bool) -> list[Row]``.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Row:
    """One line of a benchmark table; `ratio` is inferwatch / baseline unless stated."""

    case: str
    inferwatch: str
    baseline: str
    ratio: float
    target: str
    met: bool


def alternate(a: Callable[[], float], b: Callable[[], float],
              rounds: int = 7) -> tuple[float, float]:
    """Run `a` and `b` alternately `rounds` times each; return their median results.

    Each callable runs one timed trial and returns its measurement (seconds per op, say).
    """
    a_runs: list[float] = []
    b_runs: list[float] = []
    for i in range(rounds):
        pair = (a, b) if i % 2 == 0 else (b, a)
        for fn in pair:
            gc.collect()
            result = fn()
            (a_runs if fn is a else b_runs).append(result)
    return statistics.median(a_runs), statistics.median(b_runs)


def paired_ratios(a: Callable[[], float], b: Callable[[], float],
                  rounds: int) -> tuple[list[float], float, float]:
    """Run `a` and `b` back to back `rounds` times (in alternating order); return each
    round's ratio a / b and the median results of `a` and `b`.

    The median of per-round ratios is steadier than a ratio of medians on a shared machine:
    a slow spell slows both halves of a round alike.
    """
    ratios: list[float] = []
    a_runs: list[float] = []
    b_runs: list[float] = []
    for i in range(rounds):
        gc.collect()
        if i % 2 == 0:
            first, second = a(), b()
        else:
            second, first = b(), a()
        a_runs.append(first)
        b_runs.append(second)
        ratios.append(first / second)
    return ratios, statistics.median(a_runs), statistics.median(b_runs)


def iqr(values: list[float]) -> tuple[float, float]:
    """The first and third quartiles of `values`: the noise beside their median."""
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, q3


def per_call(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call of `fn`, timed over `calls` calls with gc off."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls
    finally:
        if gc_was_enabled:
            gc.enable()


def fmt_seconds(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def print_table(title: str, rows: list[Row]) -> None:
    headers = ("case", "inferwatch", "baseline", "ratio", "target", "met")
    cells = [(r.case, r.inferwatch, r.baseline, f"{r.ratio:.3g}", r.target,
              "yes" if r.met else "NO") for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    print(f"\n## {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths)) + " |")
