"""Label caps across workers: the merged view and the archive hold at most each cap's values.

A worker folds values past its cap into ``__other__`` (``core.label_caps``), but only
among the values it saw: merging the workers took the union, and with workers recycled
(``--max-requests``) and free-text actions each new worker added up to a cap of new
series for good. Here the merged state is capped again, at the largest cap any worker
counts under (``worker_meta``): the values kept are those the archive already keeps, then
the most counted, ties by text, so every reader of the same files keeps the same values,
and what the archive keeps stays kept. The rest fold into ``__other__``; totals stay.

>>> from inferwatch.core.state import ModelState
>>> state = ModelState("m", "1")
>>> for action, n in [("a", 5), ("b", 1), ("c", 3)]:
...     state.inc("inferwatch_actions_total", (action,), n)
>>> cap_state(state, {"inferwatch_actions_total": 2})
>>> sorted(state.counters["inferwatch_actions_total"].items())
[(('__other__',), 1.0), (('a',), 5.0), (('c',), 3.0)]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from inferwatch.catalogue import OTHER
from inferwatch.core.state import HistogramState, Labels, ModelState, SummaryState

# The series each cap (``monitor_configure.CAP_OPTIONS``, by family) bounds: (kind, metric)
# whose first label is the capped one. One output cap bounds the summary and the histogram
# of an output alike, so both keep the same outputs.
CAPPED: dict[str, tuple[tuple[str, str], ...]] = {
    "inferwatch_errors_total": (("c", "inferwatch_errors_total"),),
    "inferwatch_predicted_class_total": (("c", "inferwatch_predicted_class_total"),),
    "inferwatch_prediction": (("s", "inferwatch_prediction"),
                              ("h", "inferwatch_prediction_value")),
    "inferwatch_actions_total": (("c", "inferwatch_actions_total"),),
    "inferwatch_stage_duration_seconds": (("h", "inferwatch_stage_duration_seconds"),),
}


def capped_values(state: ModelState) -> dict[str, set[str]]:
    """The values each capped label holds in `state` (``__other__`` aside): what an
    archive keeps, preferred when it is capped again."""
    return {cap: {labels[0] for labels in _series(state, kind, metric) if labels
                  and labels[0] != OTHER}
            for cap, members in CAPPED.items() for kind, metric in members}


def cap_state(state: ModelState, limits: Mapping[str, int],
              keep_first: Mapping[str, Collection[str]] | None = None) -> None:
    """Fold the values of each capped label past its limit into ``__other__``.

    `limits` by family (a family without one is left as it is); `keep_first` the values
    kept before any other (the archive's), by family.
    """
    for cap, members in CAPPED.items():
        limit = limits.get(cap)
        if not limit:
            continue
        counts: dict[str, float] = {}
        for kind, metric in members:
            for labels, series in _series(state, kind, metric).items():
                if labels and labels[0] != OTHER:
                    counts[labels[0]] = counts.get(labels[0], 0.0) + _count(kind, series)
        if len(counts) <= limit:
            continue
        preferred = (keep_first or {}).get(cap, ())
        ranked = sorted(counts, key=lambda value: (value not in preferred, -counts[value],
                                                   value))
        dropped = set(ranked[limit:])
        for kind, metric in members:
            _fold(_series(state, kind, metric), kind, dropped)


def _series(state: ModelState, kind: str, metric: str) -> dict:
    found = {"c": state.counters, "h": state.histograms, "s": state.summaries}[kind]
    return found.get(metric, {})


def _count(kind: str, series: object) -> float:
    if kind == "c":
        return float(series)  # type: ignore[arg-type]
    return float(series.count)  # type: ignore[attr-defined]


def _fold(series: dict, kind: str, dropped: set[str]) -> None:
    for labels in [labels for labels in series if labels and labels[0] in dropped]:
        part = series.pop(labels)
        other: Labels = (OTHER, *labels[1:])
        into = series.get(other)
        if into is None:
            series[other] = part  # its own counts, now under __other__
        elif kind == "c":
            series[other] = into + part
        elif kind == "h":
            absorb_histogram(into, part)
        else:
            _absorb_summary(into, part)


def absorb_histogram(into: HistogramState, part: HistogramState) -> None:
    """Add `part` to `into`, whatever its buckets: each of `part`'s buckets counts in the
    first of `into`'s at or above its bound (+Inf in +Inf): every count stays, none above
    its ``le``; exemplars go to the bucket their value falls in."""
    into.add_counts(part.counts, part.sum, bounds=part.bounds)
    same = len(part.bounds) == len(into.bounds) and bool((part.bounds == into.bounds).all())
    for index, exemplar in part.exemplars.items():
        into.offer_exemplar(index if same else into._bucket_of(exemplar[1]), exemplar)


def _absorb_summary(into: SummaryState, part: SummaryState) -> None:
    try:
        into.merge(part)
    except (ValueError, TypeError):
        # Another window or accuracy (a probability output folded with a value output):
        # the counts still add; the part's quantiles are left out.
        into.count += part.count
        into.sum += part.sum
