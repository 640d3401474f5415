"""The merged view of every worker's snapshot: what a multi-worker ``/metrics`` serves.

Counters and histograms add, gauges combine by their rule in ``state.GAUGE_MERGE`` (all
through ``ModelState.merge``), process-wide counters add. Quantiles come from one sketch
per series that holds every worker's bins inside the current window: quantiles are never
averaged. Only the buckets of the window at `now` are merged, into one bucket, so a
scrape does one dense addition per worker and bucket and builds one sketch per series;
the result equals merging the full rolling sketches (a test checks they render alike).
The view is for rendering at `now`; folding uses the full states (``exact_models``).

>>> import numpy as np
>>> from inferwatch.multiproc.snapshot_format import Snapshot, decode, encode, model_dict
>>> from inferwatch.core.state import ModelState
>>> a, b = ModelState("fraud", "1"), ModelState("fraud", "1")
>>> a.inc("inferwatch_requests_total", ("ok",), 2); b.inc("inferwatch_requests_total", ("ok",))
>>> view = merge_view([decode(encode(Snapshot(models=[model_dict(s)]))) for s in (a, b)], now=0.0)
>>> view.states[0].counters["inferwatch_requests_total"][("ok",)]
3.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client.core import CounterMetricFamily, Metric

from inferwatch.catalogue import CATALOGUE
from inferwatch.core.ddsketch import DDSketch
from inferwatch.core.render import model_families, process_families
from inferwatch.core.rolling_sketch import RollingSketch
from inferwatch.core.state import HistogramState, ModelState, SummarySettings, SummaryState
from inferwatch.multiproc.snapshot_format import RawSnapshot, SnapshotError, dense_bins

if TYPE_CHECKING:
    from inferwatch.core.encode import Page

SeriesKey = tuple[tuple[str, str], str, tuple[str, ...]]


@dataclass
class MergedView:
    """Model states and process-wide counters summed over snapshots."""

    states: list[ModelState] = field(default_factory=list)
    internal_errors: dict[str, float] = field(default_factory=dict)
    overflow: dict[str, float] = field(default_factory=dict)
    events_dropped: dict[str, float] = field(default_factory=dict)
    event_values_dropped: dict[str, float] = field(default_factory=dict)
    files_skipped: dict[str, float] = field(default_factory=dict)
    dependencies: dict[str, str] = field(default_factory=dict)

    def families(self, now: float, *,
                 extra_internal_errors: Mapping[str, float] | None = None,
                 extra_files_skipped: Mapping[str, float] | None = None) -> list[Metric]:
        """Every metric family of the view, rendered the one way a single process is."""
        internal_errors = _plus(self.internal_errors, extra_internal_errors)
        return [*model_families(self.states, now),
                *process_families(internal_errors, self.overflow, self.events_dropped,
                                  self.dependencies),
                _counter_family("inferwatch_event_values_dropped_total",
                                self.event_values_dropped),
                _counter_family("inferwatch_multiproc_files_skipped_total",
                                _plus(self.files_skipped, extra_files_skipped))]

    def encode_into(self, page: Page, now: float) -> None:
        """Every family of the view written into `page`, the same samples as families()."""
        for state in self.states:
            page.add(state, now)
        page.add_process(self.internal_errors, self.overflow, self.events_dropped,
                         self.dependencies)
        page.add_families([
            _counter_family("inferwatch_event_values_dropped_total", self.event_values_dropped),
            _counter_family("inferwatch_multiproc_files_skipped_total", self.files_skipped)])


def _plus(counts: Mapping[str, float], extra: Mapping[str, float] | None) -> dict[str, float]:
    total = dict(counts)
    for name, count in (extra or {}).items():
        total[name] = total.get(name, 0) + count
    return total


def _counter_family(name: str, counts: Mapping[str, float]) -> Metric:
    """A one-label counter family of the catalogue holding `counts`."""
    spec = CATALOGUE[name]
    family = CounterMetricFamily(spec.family, spec.help, labels=list(spec.labels))
    for value, count in sorted(counts.items()):
        family.add_metric([value], float(count))
    return family


def merge_model(target: ModelState, other: ModelState,
                on_error: Callable[[Exception], None] | None = None) -> None:
    """Fold `other` into `target` series by series: a series whose layout differs (other
    histogram buckets, quantile settings or drift bins: a rollout, or references profiled
    on other data) is skipped and passed to `on_error`; every other series still merges.

    `other` is consumed (its histograms, summaries and extras are moved out of it).

    >>> a, b = ModelState("m", "1"), ModelState("m", "1")
    >>> a.histogram("h", (), [1.0]).observe(np.array([0.5]))
    >>> b.histogram("h", (), [2.0]).observe(np.array([0.5])); b.inc("c", (), 2)
    >>> errors = []; merge_model(a, b, errors.append)
    >>> a.counters["c"][()], a.histograms["h"][()].count, len(errors)
    (2.0, 1, 1)
    """
    histograms, summaries, extras = other.histograms, other.summaries, other.extras
    other.histograms, other.summaries, other.extras = {}, {}, {}
    target.merge(other)  # counters, gauges, identity: these cannot mismatch
    for metric, series in histograms.items():
        mine = target.histograms.setdefault(metric, {})
        for labels, hist in series.items():
            _merge_part(mine, labels, hist, on_error)
    for metric, series in summaries.items():
        mine = target.summaries.setdefault(metric, {})
        for labels, summary in series.items():
            _merge_part(mine, labels, summary, on_error)
    for name, extra in extras.items():
        _merge_part(target.extras, name, extra, on_error)


def _merge_part(mine: dict, key: object, part: object,
                on_error: Callable[[Exception], None] | None) -> None:
    existing = mine.get(key)
    if existing is None:
        mine[key] = part  # moved, not copied: `part` belongs to a decoded throwaway state
        return
    try:
        existing.merge(part)
    except ValueError as exc:
        if on_error is not None:
            on_error(exc)



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

    def add(self, counts: np.ndarray, position: int, zero: int, sketch_sum: float,
            pos_offset: int, pos_n: int, neg_offset: int, neg_n: int) -> None:
        """Add one packed sketch whose bins start at `position` in `counts`."""
        self.zero += int(zero)
        self.sketch_sum += float(sketch_sum)
        if pos_n:
            self.positive.append((int(pos_offset), counts[position:position + pos_n]))
        if neg_n:
            start = position + int(pos_n)
            self.negative.append((int(neg_offset), counts[start:start + neg_n]))


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
    histograms: dict[HistogramKey, _Histogram] = {}
    windows = _Windows(now)
    for raw in raws:
        try:
            parsed = _parse(raw, windows)
        except (SnapshotError, ValueError, KeyError, TypeError, IndexError) as exc:
            if on_error is not None:
                on_error(exc)
            continue
        for state in parsed.models:
            target = states.get(state.key)
            if target is None:
                states[state.key] = state
            else:
                merge_model(target, state, on_error)
        for key, hist in parsed.histograms:
            mine_h = histograms.get(key)
            if mine_h is None:
                histograms[key] = hist
            else:
                try:
                    mine_h.add(hist)
                except ValueError as exc:  # a worker running other buckets (a rollout)
                    if on_error is not None:
                        on_error(exc)
        for key, part in parsed.summaries:
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
            elif on_error is not None:  # a worker with other quantile settings (a rollout)
                on_error(ValueError(f"summary {key} has different settings across workers"))
        header = raw.header
        _add_counts(view.internal_errors, header.get("internal_errors"))
        _add_counts(view.overflow, header.get("overflow"))
        _add_counts(view.events_dropped, header.get("events_dropped"))
        _add_counts(view.event_values_dropped, header.get("event_values_dropped"))
        _add_counts(view.files_skipped, header.get("files_skipped"))
        dependencies = header.get("dependencies")
        if isinstance(dependencies, dict):
            view.dependencies.update({str(k): str(v) for k, v in dependencies.items()})
    for (model_key, metric, labels), hist in histograms.items():
        states[model_key].histograms.setdefault(metric, {})[labels] = hist.state()
    for (model_key, metric, labels), part in series.items():
        state = states[model_key]
        summary = _summary(part, windows, state.summary_settings)
        state.summaries.setdefault(metric, {})[labels] = summary
    view.states = list(states.values())
    return view


class _Histogram:
    """One histogram series being merged, as plain lists (cheaper than arrays per worker)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, data: dict) -> None:
        self.bounds = [float(b) for b in data["bounds"]]
        self.counts = [int(c) for c in data["counts"]]
        self.sum = float(data["sum"])
        if len(self.counts) != len(self.bounds) + 1:
            raise ValueError("histogram counts do not match its buckets")

    def add(self, other: _Histogram) -> None:
        if other.bounds != self.bounds:
            raise ValueError("cannot merge histograms with different buckets")
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.sum += other.sum

    def state(self) -> HistogramState:
        return HistogramState.from_dict({"bounds": self.bounds, "counts": self.counts,
                                         "sum": self.sum})


HistogramKey = tuple[tuple[str, str], str, tuple[str, ...]]


@dataclass
class _Parsed:
    """One snapshot, validated before any of it is merged."""

    models: list[ModelState] = field(default_factory=list)
    histograms: list[tuple[HistogramKey, _Histogram]] = field(default_factory=list)
    summaries: list[tuple[SeriesKey, _Series]] = field(default_factory=list)


def _parse(raw: RawSnapshot, windows: _Windows) -> _Parsed:
    counts = raw.counts
    position = 0
    parsed = _Parsed()
    for model in raw.header["models"]:
        # Histograms are summed here as lists: a HistogramState per worker and series costs
        # more than the rest of the merge.
        state = ModelState.from_dict({**model, "summaries": {}, "histograms": {}})
        parsed.models.append(state)
        for metric, rows in model["histograms"].items():
            for labels, data in rows:
                parsed.histograms.append(((state.key, str(metric), tuple(map(str, labels))),
                                          _Histogram(data)))
        for metric, rows in model["summaries"].items():
            for labels, count, total, config, buckets, window in rows:
                part = _Series(tuple(config))
                part.count, part.sum = int(count), float(total)
                oldest, newest = windows.bounds(part.config)
                # The writer's own window, when it ends in the bucket this view ends in (the
                # usual case: files are a second old, buckets two minutes wide), replaces
                # its buckets: one segment to add instead of one per age bucket.
                use_window = window is not None and window[0] == newest
                for bucket_id, zero, sketch_sum, pos_offset, pos_n, neg_offset, neg_n in buckets:
                    if not use_window and oldest < bucket_id <= newest:
                        part.add(counts, position, zero, sketch_sum, pos_offset, pos_n,
                                 neg_offset, neg_n)
                    position += int(pos_n) + int(neg_n)
                if window is not None:
                    _, zero, sketch_sum, pos_offset, pos_n, neg_offset, neg_n = window
                    if use_window:
                        part.add(counts, position, zero, sketch_sum, pos_offset, pos_n,
                                 neg_offset, neg_n)
                    position += int(pos_n) + int(neg_n)
                parsed.summaries.append(((state.key, str(metric), tuple(map(str, labels))),
                                         part))
    if position != counts.size:
        raise SnapshotError(f"snapshot header describes {position} bin counts, "
                            f"the file holds {counts.size}")
    return parsed


def _summary(part: _Series, windows: _Windows, settings: SummarySettings) -> SummaryState:
    """The merged series: its totals, and the window's bins in one age bucket."""
    max_age, age_buckets, accuracy, max_bins = part.config
    rolling = RollingSketch(max_age, age_buckets, accuracy, max_bins)
    if part.positive or part.negative or part.zero:
        rolling.put(windows.bounds(part.config)[1], _sketch_from_bins(part))
    summary = SummaryState(settings)
    summary.sketch, summary.count, summary.sum = rolling, part.count, part.sum
    return summary


def _sketch_from_bins(part: _Series) -> DDSketch:
    """A sketch holding the summed bins, built from the arrays directly.

    ``DDSketch.from_dict`` checks every bin in Python: about 50 ms per scrape for 8
    workers' realistic state, half the budget. ``from_bins`` checks whole arrays and
    bounds the span to ``max_bins``, so nothing is trusted that could grow memory or
    break the quantiles.
    """
    _, _, accuracy, max_bins = part.config
    return DDSketch.from_bins(accuracy, max_bins,
                              positive=dense_bins(part.positive, max_bins),
                              negative=dense_bins(part.negative, max_bins),
                              zero_count=part.zero, total=part.sketch_sum)


def _add_counts(total: dict[str, float], counts: object) -> None:
    if not isinstance(counts, dict):
        return
    for name, value in counts.items():
        total[str(name)] = total.get(str(name), 0) + float(value)
