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


def print_unmet(tables: list[tuple[str, list[Row]]]) -> None:
    """One closing list of every row whose target was not met, by table: a slip in a long
    run shows at its end, not only in the row among hundreds that says NO.

    >>> print_unmet([("Hot path", [Row("per call", "1 us", "2 us", 0.5, "<= 0.3x", False),
    ...                            Row("batch", "1 ns", "2 ns", 0.5, "<= 1x", True)])])
    <BLANKLINE>
    ## Targets not met: 1 of 2 rows
    <BLANKLINE>
    - Hot path: per call (0.5; target <= 0.3x)
    """
    rows = sum(len(found) for _, found in tables)
    unmet = [(title, row) for title, found in tables for row in found if not row.met]
    if not unmet:
        print(f"\n## Every target met ({rows} rows)")
        return
    print(f"\n## Targets not met: {len(unmet)} of {rows} rows\n")
    for title, row in unmet:
        print(f"- {title}: {row.case.strip()} ({row.ratio:.3g}; target {row.target})")


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
