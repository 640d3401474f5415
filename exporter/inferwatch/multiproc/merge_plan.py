"""How the layouts of one scrape's snapshots line up: a plan, built once per set of layouts.

Workers of a deployment rarely publish exactly the same series: one has seen an error
type or a class the others have not. Each distinct layout gets a map from its additive
values to positions in one merged array, so any mix of layouts merges by adding arrays.
A histogram whose buckets differ across layouts (a reference re-profiled, buckets
reconfigured, and the server reloaded) merges at the buckets of the newest layout: that of
the process started last (``worker_meta``), ties by the bounds themselves, so every reader
picks the same. The others' counts move to the first of those bounds at or above their
own (+Inf to +Inf): no count is lost, and no bucket holds a value above its ``le``. A
summary of other quantile settings is left out of the later layout's map and reported, as
merging the states would report it. Drift windows of another reference (re-profiled and
reloaded) are no fault: the plan merges those of the reference chosen for the model
(``reference_choice``) and leaves the others out, listed apart.

>>> from inferwatch.core.state import ModelState
>>> from inferwatch.multiproc.snapshot_layout import layout_of_states
>>> a, b = ModelState("m", "1"), ModelState("m", "1")
>>> a.inc("errors", ("ValueError",)); b.inc("errors", ("KeyError",))
>>> plan = merge_plan([layout_of_states([a]), layout_of_states([b])])
>>> plan.size, [labels for _, labels, _ in plan.models[0].counters]
(2, [('ValueError',), ('KeyError',)])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from inferwatch.core.state import SummarySettings
from inferwatch.multiproc.snapshot_layout import DriftLayout, Layout

# Distinct sets of layouts whose plans a reader keeps.
MAX_PLANS = 8


@dataclass
class MergedModel:
    """One model version of the merged view: each series and its position."""

    model: str
    version: str
    summary_settings: SummarySettings
    counters: list[tuple[str, tuple[str, ...], int]] = field(default_factory=list)
    histograms: list[tuple[str, tuple[str, ...], np.ndarray, int]] = field(default_factory=list)
    # (metric, labels, config, position of count and sum, index among the plan's summaries)
    summaries: list[tuple[str, tuple[str, ...], tuple, int, int]] = field(default_factory=list)
    drift: DriftLayout | None = None
    _index: dict[tuple, int] = field(default_factory=dict)  # (kind, metric, labels) -> entry
    # The counters by metric, in the order above: (metric, [(labels, position)]).
    counters_by_metric: list[tuple[str, list[tuple[tuple[str, ...], int]]]] = field(
        default_factory=list)


@dataclass
class LayoutMap:
    """Where one layout's values go in the merged view."""

    source: np.ndarray  # additive positions in the layout ...
    target: np.ndarray  # ... and where each one adds in the merged array
    models: list[int]  # merged model of each of the layout's models
    # (merged summary, model, offset within the model, summary index in the snapshot)
    summaries: list[tuple[int, int, int, int]]
    drift: list[tuple[int, int]]  # (model, merged model) whose drift windows merge
    # (model, histogram index in the model) -> its entry in the merged model's histograms
    histograms: dict[tuple[int, int], int]
    conflicts: list[str]  # series left out, one message each
    # Histograms of other buckets than the merged ones: their values add at these
    # positions (several buckets into one: added with np.add.at, not a fancy index).
    moved_source: np.ndarray = field(default_factory=lambda: np.zeros(0, np.intp))
    moved_target: np.ndarray = field(default_factory=lambda: np.zeros(0, np.intp))
    # (model, histogram index in the model) of those: their exemplars' buckets change.
    moved: set[tuple[int, int]] = field(default_factory=set)
    # Per drift window in table order: (merged model it adds into, -1 for none; 0 features
    # or 1 outputs; its bins per bucket). Files of equal keys and equal bucket ids have
    # their drift bins at the same places and add into the same windows, whatever their
    # other series.
    drift_key: tuple[tuple[int, int, int], ...] = ()
    # Models whose drift windows are of another reference than the one merged: left out.
    other_reference: list[int] = field(default_factory=list)


@dataclass
class MergePlan:
    models: list[MergedModel]
    size: int  # length of the merged additive array
    summaries: int  # summaries in the merged view
    maps: dict[int, LayoutMap]  # by Layout.serial


@dataclass
class DriftGroups:
    """The drift windows of each model version grouped so that those of one group add:
    one reference (equal documents) and alike windows. Groups are numbered per model in
    the order the layouts meet them, 0 first."""

    group: dict[tuple[int, int], int]  # (layout serial, model index) -> its group
    contested: frozenset[tuple[str, str]]  # model versions of more than one group


def drift_groups(layouts: list[Layout]) -> DriftGroups:
    """The groups of `layouts`' drift windows (cached as plans are)."""
    key = tuple(layout.serial for layout in layouts)
    found = _groups.get(key)
    if found is None:
        if len(_groups) >= MAX_PLANS:
            _groups.clear()
        found = _groups[key] = _group(layouts)
    return found


_groups: dict[tuple[int, ...], DriftGroups] = {}


def _group(layouts: list[Layout]) -> DriftGroups:
    # Compared once per set of layouts: a reference is tens of kilobytes of JSON, and
    # workers of one deployment share one parsed object per layout text.
    met: dict[tuple[str, str], list[DriftLayout]] = {}
    group: dict[tuple[int, int], int] = {}
    for layout in layouts:
        for index, model in enumerate(layout.models):
            if model.drift is None:
                continue
            kinds = met.setdefault(model.key, [])
            number = next((n for n, kind in enumerate(kinds) if _alike(kind, model.drift)),
                          len(kinds))
            if number == len(kinds):
                kinds.append(model.drift)
            group[(layout.serial, index)] = number
    return DriftGroups(group, frozenset(key for key, kinds in met.items() if len(kinds) > 1))


def merge_plan(layouts: list[Layout],
               references: Mapping[tuple[str, str], int] | None = None,
               starts: Mapping[tuple[int, int], float] | None = None) -> MergePlan:
    """The plan for `layouts`, in the order their snapshots are merged (cached).

    `references` gives, by model version, the drift group (``drift_groups``) whose
    windows merge; the others' are left out. A model not in it merges group 0, the first
    its layouts meet. `starts` gives, by (layout serial, model index), the latest start of
    a process whose snapshot has that layout (``worker_meta``; -inf unknown): histogram
    buckets that differ merge at those of the latest.
    """
    chosen = tuple(sorted(references.items())) if references else ()
    # Only the starts of layouts whose buckets differ from another's change the plan: a
    # recycled worker of one deployment's layout reuses it.
    contested = _contested(layouts) if starts else frozenset()
    started = tuple(sorted(item for item in starts.items() if item[0] in contested)) \
        if contested else ()  # type: ignore[union-attr]
    key = (tuple(layout.serial for layout in layouts), chosen, started)
    found = _plans.get(key)
    if found is None:
        if len(_plans) >= MAX_PLANS:
            _plans.clear()
        found = _plans[key] = _build(layouts, dict(chosen), dict(started))
    return found


def _contested(layouts: list[Layout]) -> frozenset[tuple[int, int]]:
    """(layout serial, model index) of every model holding a histogram whose bounds
    differ in another layout (cached as plans are)."""
    key = tuple(layout.serial for layout in layouts)
    found = _contests.get(key)
    if found is None:
        if len(_contests) >= MAX_PLANS:
            _contests.clear()
        met: dict[tuple, list[tuple[np.ndarray, tuple[int, int]]]] = {}
        for layout in layouts:
            for index, model in enumerate(layout.models):
                for metric, labels, bounds in model.histograms:
                    met.setdefault((model.key, metric, labels), []).append(
                        (bounds, (layout.serial, index)))
        found = _contests[key] = frozenset(
            where for seen in met.values() if any(
                not np.array_equal(bounds, seen[0][0]) for bounds, _ in seen[1:])
            for _, where in seen)
    return found


_contests: dict[tuple[int, ...], frozenset[tuple[int, int]]] = {}


def _newest_bounds(layouts: list[Layout], starts: Mapping[tuple[int, int], float]
                   ) -> dict[tuple, np.ndarray]:
    """By (model version, metric, labels): the bounds of the latest started layout holding
    the histogram, ties by the bounds (an order every reader shares)."""
    best: dict[tuple, tuple[float, tuple[float, ...], np.ndarray]] = {}
    for layout in layouts:
        for index, model in enumerate(layout.models):
            start = starts.get((layout.serial, index), -math.inf)
            for metric, labels, bounds in model.histograms:
                key = (model.key, metric, labels)
                found = best.get(key)
                if found is not None and found[2] is bounds:
                    continue  # one parsed array per distinct text: the common case
                rank = (start, tuple(bounds.tolist()))
                if found is None or rank > found[:2]:
                    best[key] = (*rank, bounds)
    return {key: found[2] for key, found in best.items()}


_plans: dict[tuple, MergePlan] = {}


def _build(layouts: list[Layout], references: dict[tuple[str, str], int],
           starts: Mapping[tuple[int, int], float]) -> MergePlan:
    groups = drift_groups(layouts).group
    newest = _newest_bounds(layouts, starts)
    merged: dict[tuple[str, str], MergedModel] = {}
    order: dict[tuple[str, str], int] = {}
    size = 0
    summaries = 0
    maps = {}
    for layout in layouts:
        source: list[int] = []
        target: list[int] = []
        moved_source: list[int] = []
        moved_target: list[int] = []
        mapped = LayoutMap(np.zeros(0, np.intp), np.zeros(0, np.intp), [], [], [], {}, [])
        for index, model in enumerate(layout.models):
            into = merged.get(model.key)
            if into is None:
                into = merged[model.key] = MergedModel(model.model, model.version,
                                                       model.summary_settings)
                order[model.key] = len(order)
            mapped.models.append(order[model.key])
            at = model.additive_at
            for metric, labels in model.counters:
                entry = into._index.get(("c", metric, labels))
                if entry is None:
                    entry = into._index[("c", metric, labels)] = len(into.counters)
                    into.counters.append((metric, labels, size))
                    size += 1
                source.append(at)
                target.append(into.counters[entry][2])
                at += 1
            for position_in_model, (metric, labels, bounds) in enumerate(model.histograms):
                width = bounds.size + 2
                entry = into._index.get(("h", metric, labels))
                if entry is None:
                    entry = into._index[("h", metric, labels)] = len(into.histograms)
                    merged_bounds = newest[(model.key, metric, labels)]
                    into.histograms.append((metric, labels, merged_bounds, size))
                    size += merged_bounds.size + 2
                _, _, mine, position = into.histograms[entry]
                mapped.histograms[(index, position_in_model)] = entry
                if mine is bounds or np.array_equal(mine, bounds):
                    source.extend(range(at, at + width))
                    target.extend(range(position, position + width))
                else:
                    # Each bucket into the first merged one at or above its bound, +Inf
                    # into +Inf, the sum into the sum.
                    buckets = np.searchsorted(mine, bounds, "left").tolist()
                    moved_source.extend(range(at, at + width))
                    moved_target.extend([*(position + b for b in buckets),
                                         position + mine.size, position + mine.size + 1])
                    mapped.moved.add((index, position_in_model))
                at += width
            for offset, (metric, labels, config) in enumerate(model.summaries):
                entry = into._index.get(("s", metric, labels))
                if entry is None:
                    entry = into._index[("s", metric, labels)] = len(into.summaries)
                    into.summaries.append((metric, labels, config, size, summaries))
                    size += 2
                    summaries += 1
                _, _, mine_config, position, merged_index = into.summaries[entry]
                if mine_config == config:
                    source.extend((at, at + 1))
                    target.extend((position, position + 1))
                    mapped.summaries.append((merged_index, index, offset,
                                             model.first_summary + offset))
                else:
                    mapped.conflicts.append(f"summary {metric}{labels} has different settings"
                                            " across workers")
                at += 2
            if model.drift is not None:
                if groups[(layout.serial, index)] != references.get(model.key, 0):
                    mapped.other_reference.append(index)
                else:
                    if into.drift is None:
                        into.drift = model.drift
                    mapped.drift.append((index, mapped.models[-1]))
        merges = dict(mapped.drift)
        mapped.drift_key = tuple((merges.get(index, -1), which, window.total)
                                 for index, model in enumerate(layout.models)
                                 if model.drift is not None
                                 for which, window in enumerate(model.drift.windows))
        mapped.source = np.array(source, dtype=np.intp)
        mapped.target = np.array(target, dtype=np.intp)
        mapped.moved_source = np.array(moved_source, dtype=np.intp)
        mapped.moved_target = np.array(moved_target, dtype=np.intp)
        maps[layout.serial] = mapped
    for into in merged.values():
        by_metric: dict[str, list[tuple[tuple[str, ...], int]]] = {}
        for metric, labels, position in into.counters:
            by_metric.setdefault(metric, []).append((labels, position))
        into.counters_by_metric = list(by_metric.items())
    return MergePlan(list(merged.values()), size, summaries, maps)



def _alike(a: DriftLayout, b: DriftLayout) -> bool:
    """Whether windows add: alike settings, and one reference. A re-profiled one may have
    as many bins with other edges, and its counts added to the first one's would be
    scored against edges they were not binned by."""
    # One parsed object per distinct text, so `is` decides for workers of one deployment.
    return all((x.bins, x.max_age_seconds, x.age_buckets) == (y.bins, y.max_age_seconds,
                                                                y.age_buckets)
               for x, y in zip(a.windows, b.windows)) and (
        a.reference is b.reference or a.reference == b.reference)
