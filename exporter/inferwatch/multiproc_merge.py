"""The merged view of every worker's snapshot: what a multi-worker ``/metrics`` serves.

Counters and histograms add, gauges combine by their rule in ``state.GAUGE_MERGE`` (all
through ``ModelState.merge``), process-wide counters add. Quantiles come from one sketch
per series that holds every worker's bins inside the current window: quantiles are never
averaged. Only the buckets of the window at `now` are merged, into one bucket, so a
scrape does one dense addition per worker and bucket and builds one sketch per series;
the result equals merging the full rolling sketches (a test checks they render alike).

>>> import numpy as np
>>> from inferwatch.multiproc_format import Snapshot, decode, encode, model_dict
>>> from inferwatch.state import ModelState
>>> a, b = ModelState("fraud", "1"), ModelState("fraud", "1")
>>> a.inc("inferwatch_requests_total", ("ok",), 2); b.inc("inferwatch_requests_total", ("ok",))
>>> view = merge_view([decode(encode(Snapshot(models=[model_dict(s)]))) for s in (a, b)], now=0.0)
>>> view.states[0].counters["inferwatch_requests_total"][("ok",)]
3.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from prometheus_client.core import Metric

from .multiproc_format import RawSnapshot, SnapshotError, decode_extras
from .render import model_families, process_families
from .state import ModelState, SummaryState
from .window import RollingSketch

SeriesKey = tuple[tuple[str, str], str, tuple[str, ...]]


@dataclass
class MergedView:
    """Model states and process-wide counters summed over snapshots."""

    states: list[ModelState] = field(default_factory=list)
    internal_errors: dict[str, float] = field(default_factory=dict)
    overflow: dict[str, float] = field(default_factory=dict)
    events_dropped: dict[str, float] = field(default_factory=dict)
    dependencies: dict[str, str] = field(default_factory=dict)

    def families(self, now: float, *,
                 extra_internal_errors: Mapping[str, float] | None = None) -> list[Metric]:
        """Every metric family of the view, rendered the one way a single process is."""
        internal_errors = dict(self.internal_errors)
        for component, count in (extra_internal_errors or {}).items():
            internal_errors[component] = internal_errors.get(component, 0) + count
        return [*model_families(self.states, now),
                *process_families(internal_errors, self.overflow, self.events_dropped,
                                  self.dependencies)]


class _Series:
    """One summary series being merged: totals, and the window's bin segments per sign."""

    __slots__ = ("config", "count", "negative", "positive", "sketch_sum", "sum", "zero")

    def __init__(self, config: tuple) -> None:
        self.config = config
        self.count = 0
        self.sum = 0.0
        self.zero = 0
        self.sketch_sum = 0.0
        self.positive: list[tuple[int, np.ndarray]] = []
        self.negative: list[tuple[int, np.ndarray]] = []


class _Windows:
    """The (oldest excluded, newest included) bucket ids of the window at `now`, by config."""

    def __init__(self, now: float) -> None:
        self.now = now
        self._bounds: dict[tuple, tuple[int, int]] = {}

    def bounds(self, config: tuple) -> tuple[int, int]:
        found = self._bounds.get(config)
        if found is None:
            max_age, age_buckets, accuracy, max_bins = config
            # The sketch's own arithmetic, so the window matches RollingSketch.window().
            current = RollingSketch(max_age, age_buckets, accuracy, max_bins).bucket_id(self.now)
            found = self._bounds[config] = (current - age_buckets, current)
        return found


def merge_view(raws: Iterable[RawSnapshot], now: float,
               on_error: Callable[[Exception], None] | None = None) -> MergedView:
    """Merge decoded snapshots; one that is inconsistent is skipped (and passed to on_error)."""
    view = MergedView()
    states: dict[tuple[str, str], ModelState] = {}
    series: dict[SeriesKey, _Series] = {}
    windows = _Windows(now)
    for raw in raws:
        try:
            parsed = _parse(raw, windows)
        except (SnapshotError, ValueError, KeyError, TypeError, IndexError) as exc:
            if on_error is not None:
                on_error(exc)
            continue
        models, summaries = parsed
        for state in models:
            target = states.get(state.key)
            if target is None:
                states[state.key] = state
            else:
                target.merge(state)
        for key, part in summaries:
            mine = series.get(key)
            if mine is None:
                series[key] = part
            elif mine.config == part.config:
                mine.count += part.count
                mine.sum += part.sum
                mine.zero += part.zero
                mine.sketch_sum += part.sketch_sum
                mine.positive.extend(part.positive)
                mine.negative.extend(part.negative)
        header = raw.header
        _add_counts(view.internal_errors, header.get("internal_errors"))
        _add_counts(view.overflow, header.get("overflow"))
        _add_counts(view.events_dropped, header.get("events_dropped"))
        dependencies = header.get("dependencies")
        if isinstance(dependencies, dict):
            view.dependencies.update({str(k): str(v) for k, v in dependencies.items()})
    for (model_key, metric, labels), part in series.items():
        state = states[model_key]
        summary = SummaryState.from_dict(_summary_dict(part, windows), state.summary_settings)
        state.summaries.setdefault(metric, {})[labels] = summary
    view.states = list(states.values())
    return view


def _parse(raw: RawSnapshot,
           windows: _Windows) -> tuple[list[ModelState], list[tuple[SeriesKey, _Series]]]:
    """Everything of one snapshot, validated before any of it is merged."""
    counts = raw.counts
    position = 0
    models: list[ModelState] = []
    summaries: list[tuple[SeriesKey, _Series]] = []
    for model in raw.header["models"]:
        state = ModelState.from_dict({**model, "summaries": {}})
        state.extras = decode_extras(model.get("extras", {}))
        models.append(state)
        for metric, rows in model["summaries"].items():
            for labels, count, total, config, buckets in rows:
                part = _Series(tuple(config))
                part.count, part.sum = int(count), float(total)
                oldest, newest = windows.bounds(part.config)
                for bucket_id, zero, sketch_sum, pos_offset, pos_n, neg_offset, neg_n in buckets:
                    if oldest < bucket_id <= newest:
                        part.zero += int(zero)
                        part.sketch_sum += float(sketch_sum)
                        if pos_n:
                            part.positive.append((int(pos_offset),
                                                  counts[position:position + pos_n]))
                        if neg_n:
                            part.negative.append((int(neg_offset),
                                                  counts[position + pos_n:position + pos_n
                                                         + neg_n]))
                    position += int(pos_n) + int(neg_n)
                key = (state.key, str(metric), tuple(str(v) for v in labels))
                summaries.append((key, part))
    if position != counts.size:
        raise SnapshotError(f"snapshot header describes {position} bin counts, "
                            f"the file holds {counts.size}")
    return models, summaries


def _summary_dict(part: _Series, windows: _Windows) -> dict:
    max_age, age_buckets, accuracy, max_bins = part.config
    buckets = []
    if part.positive or part.negative or part.zero:
        pos_offset, positive = _dense(part.positive, max_bins)
        neg_offset, negative = _dense(part.negative, max_bins)
        sketch = {"format": 1, "relative_accuracy": accuracy, "max_bins": max_bins,
                  "zero_count": part.zero, "sum": part.sketch_sum,
                  "positive": {"offset": pos_offset, "counts": positive},
                  "negative": {"offset": neg_offset, "counts": negative}}
        buckets.append([windows.bounds(part.config)[1], sketch])
    rolling = {"format": 1, "max_age_seconds": max_age, "age_buckets": age_buckets,
               "relative_accuracy": accuracy, "max_bins": max_bins, "buckets": buckets}
    return {"sketch": rolling, "count": part.count, "sum": part.sum}


def _dense(segments: list[tuple[int, np.ndarray]], max_bins: int) -> tuple[int, list[int]]:
    """Bin segments (first key, counts) added into one run of counts from its lowest key.

    Past `max_bins` keys the lowest ones fold into the lowest kept key, as the sketch's
    own store does, so the result does not depend on how values were split across workers.
    """
    if not segments:
        return 0, []
    low = min(offset for offset, _ in segments)
    high = max(offset + len(counts) - 1 for offset, counts in segments)
    if len(segments) == 1:
        dense = segments[0][1].astype(np.int64)
    else:
        dense = np.zeros(high - low + 1, dtype=np.int64)
        for offset, counts in segments:
            dense[offset - low:offset - low + len(counts)] += counts
    if high - low + 1 > max_bins:
        cut = high - max_bins + 1
        folded = int(dense[:cut - low].sum())
        dense = dense[cut - low:]
        dense[0] += folded
        low = cut
    return low, dense.tolist()


def _add_counts(total: dict[str, float], counts: object) -> None:
    if not isinstance(counts, dict):
        return
    for name, value in counts.items():
        total[str(name)] = total.get(str(name), 0) + float(value)
