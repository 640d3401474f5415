"""The merged view of every worker's snapshot: what a multi-worker ``/metrics`` serves.

Snapshots are merged by adding arrays: each layout's additive values (counters, histogram
buckets and sums, summary counts and sums) go to their place in one merged array through
the plan for the scrape's layouts (``merge_plan``). Identity fields and gauges fold by the
rules of ``ModelState.merge`` (``state.GAUGE_MERGE``), process-wide counters add, and
exemplars keep the newest per bucket. Quantiles come from one sketch per series holding
every worker's bins inside the current window, built from each file's window row (its
buckets of that window, merged when written): quantiles are never averaged, and the
result equals merging the full rolling sketches (a test checks they render alike). Drift
windows add bucket by bucket, as ``DriftWindow.merge`` does, those of one reference only:
where snapshots hold several (a reference re-profiled and reloaded), ``reference_choice``
picks the one merged and the others' windows are left out. The view is for rendering at
`now`; folding uses the full states (``exact_models``).

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

import math
import operator
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client.core import CounterMetricFamily, Metric

from inferwatch.catalogue import CATALOGUE, OTHER
from inferwatch.core.ddsketch import DDSketch
from inferwatch.core.render import model_families, process_families
from inferwatch.core.rolling_sketch import RollingSketch
from inferwatch.core.state import (
    HistogramState,
    ModelState,
    SummarySettings,
    SummaryState,
    decode_extras,
    merge_takes_now,
)
from inferwatch.multiproc.merge_plan import LayoutMap, MergePlan, drift_groups, merge_plan
from inferwatch.multiproc.merged_caps import CAPPED, absorb_histogram, cap_state
from inferwatch.multiproc.reference_choice import chosen_references, left_out
from inferwatch.multiproc.snapshot_format import RawSnapshot, SnapshotError, bucket_id
from inferwatch.multiproc.snapshot_layout import (
    MAX_GRID_CELLS,
    NEG_N,
    NEG_OFFSET,
    NEWEST,
    POS_N,
    POS_OFFSET,
    SKETCH_SUM,
    WIDENING_TYPES,
    ZERO,
    DriftWindowLayout,
    dense_bins,
    summed_rows,
)
from inferwatch.multiproc.worker_meta import meta_of, since_of_model

if TYPE_CHECKING:
    from inferwatch.core.encode import Page
    from inferwatch.quality.drift_window import DriftWindow

SeriesKey = tuple[tuple[str, str], str, tuple[str, ...]]
# (kind, metric) -> the cap that bounds its first label.
CAP_OF = {member: cap for cap, members in CAPPED.items() for member in members}


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
    # Snapshots whose drift rows in the window were left out, binned by another reference
    # than the one merged (``reference_choice``): for the reader to count, not a fault.
    other_reference: int = 0
    # The time the rolling windows were merged at: a view is never rendered earlier (after
    # a wall clock step back the caller's `now` lies behind the workers' windows).
    at: float = -math.inf

    def families(self, now: float, *,
                 extra_internal_errors: Mapping[str, float] | None = None,
                 extra_files_skipped: Mapping[str, float] | None = None) -> list[Metric]:
        """Every metric family of the view, rendered the one way a single process is."""
        internal_errors = _plus(self.internal_errors, extra_internal_errors)
        now = max(now, self.at)
        return [*model_families(self.states, now),
                *process_families(internal_errors, self.overflow, self.events_dropped,
                                  self.dependencies),
                _counter_family("inferwatch_event_values_dropped_total",
                                self.event_values_dropped),
                _counter_family("inferwatch_multiproc_files_skipped_total",
                                _plus(self.files_skipped, extra_files_skipped))]

    def encode_into(self, page: Page, now: float) -> None:
        """Every family of the view written into `page`, the same samples as families()."""
        now = max(now, self.at)
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
                on_error: Callable[[Exception], None] | None = None,
                now: float | None = None) -> None:
    """Fold `other` into `target` series by series: a series whose layout differs (quantile
    settings or drift bins: a rollout) is skipped and passed to `on_error`; every other
    series still merges. (A fold settles drift states of two references before:
    ``reference_choice.settle_drift``.) A histogram of other buckets merges at those of
    the process started later (``worker_meta``; ties by the bounds), the other's counts
    moved to the first bound at or above their own.

    `other` is consumed (its histograms, summaries and extras are moved out of it). Given
    `now` (a fold's time), extras that take one merge at it: a drift bucket of a clock far
    ahead does not replace one of `target`'s still in the window (``DriftWindow.merge``).

    >>> a, b = ModelState("m", "1"), ModelState("m", "1")
    >>> a.histogram("h", (), [1.0]).observe(np.array([0.5]))
    >>> b.histogram("h", (), [2.0]).observe(np.array([0.5])); b.inc("c", (), 2)
    >>> errors = []; merge_model(a, b, errors.append)
    >>> a.counters["c"][()], a.histograms["h"][()].count, len(errors)
    (2.0, 2, 0)
    >>> a.histograms["h"][()].bounds.tolist(), a.histograms["h"][()].counts.tolist()
    ([2.0], [2, 0])
    """
    histograms, summaries, extras = other.histograms, other.summaries, other.extras
    other.histograms, other.summaries, other.extras = {}, {}, {}
    target.merge(other)  # counters, gauges, identity: these cannot mismatch
    # Read before the extras merge: whose buckets win where they differ.
    mine_meta, other_meta = meta_of(target.extras), meta_of(extras)
    other_newer = (-math.inf if other_meta is None else other_meta.since) > \
        (-math.inf if mine_meta is None else mine_meta.since)
    same_start = (-math.inf if other_meta is None else other_meta.since) == \
        (-math.inf if mine_meta is None else mine_meta.since)
    for metric, series in histograms.items():
        mine = target.histograms.setdefault(metric, {})
        for labels, hist in series.items():
            existing = mine.get(labels)
            if existing is None or np.array_equal(existing.bounds, hist.bounds):
                _merge_part(mine, labels, hist, on_error)
            elif other_newer or (same_start and tuple(hist.bounds.tolist())
                                 > tuple(existing.bounds.tolist())):
                # A process started later laid it out anew: its buckets from now on.
                absorb_histogram(hist, existing)
                mine[labels] = hist
            else:
                absorb_histogram(existing, hist)
    for metric, series in summaries.items():
        mine = target.summaries.setdefault(metric, {})
        for labels, summary in series.items():
            _merge_part(mine, labels, summary, on_error)
    for name, extra in extras.items():
        _merge_part(target.extras, name, extra, on_error, now)


def _merge_part(mine: dict, key: object, part: object,
                on_error: Callable[[Exception], None] | None,
                now: float | None = None) -> None:
    existing = mine.get(key)
    if existing is None:
        mine[key] = part  # moved, not copied: `part` belongs to a decoded throwaway state
        return
    try:
        if now is not None and merge_takes_now(existing):
            existing.merge(part, now=now)
        else:
            existing.merge(part)
    except ValueError as exc:
        if on_error is not None:
            on_error(exc)



class _Windows:
    """The (oldest excluded, newest included) bucket ids of the window at `now`, by config."""

    def __init__(self, now: float) -> None:
        self.now = now
        self._bounds: dict[tuple, tuple[int, int]] = {}

    def bounds(self, config: tuple) -> tuple[int, int]:
        found = self._bounds.get(config)
        if found is None:
            current = bucket_id(config, self.now)  # as RollingSketch.window() counts
            found = self._bounds[config] = (current - config[1], current)
        return found


def merge_view(raws: Iterable[RawSnapshot], now: float,
               on_error: Callable[[Exception], None] | None = None,
               without_gauges: Container[int] = ()) -> MergedView:
    """Merge decoded snapshots into the view at `now`.

    Each snapshot's additive values are added into one array at the positions its layout's
    map gives (``merge_plan``), in the order of `raws`, so every float sum is the one that
    merging the states in that order gives; one state per model is then built from the
    sums. A series laid out differently across snapshots is skipped in the later ones and
    passed to `on_error`, as is anything a crafted file holds that cannot be merged.
    Snapshots whose ``id()`` is in `without_gauges` (the archive, exited workers') add
    no gauges, and their identity fields yield to those of the others. Drift windows of
    another reference than the one chosen for their model (``reference_choice``, where
    live processes outrank exited ones) are left out, no error: the view's
    ``other_reference`` counts those that held rows.
    """
    raws = [raw for raw in raws if raw.layout is not None]
    view = _process_view(raws)
    layouts = {raw.layout.serial: raw.layout for raw in raws}  # type: ignore[union-attr]
    groups = drift_groups(list(layouts.values()))
    references = (chosen_references(raws, groups, now, without_gauges)
                  if groups.contested else None)
    plan = merge_plan(list(layouts.values()), references, _starts(raws))
    if references:
        view.other_reference = left_out(plan, raws, now)
    additive, contributions = _add_values(plan, raws, on_error)
    states = [ModelState(model.model, model.version, summary_settings=model.summary_settings)
              for model in plan.models]
    _merge_identities(states, plan, raws, on_error, without_gauges)
    histograms = _build_series(states, plan, additive, contributions, _Windows(now), on_error)
    for raw in raws:
        mapped = plan.maps[raw.layout.serial]  # type: ignore[union-attr]
        for index, data in enumerate(raw.header["models"]):
            if data.get("exemplars"):
                _merge_exemplars(data["exemplars"], index, mapped,
                                 histograms[mapped.models[index]], on_error)
    _attach_drift(states, plan, raws, now, on_error)
    _cap_view(states, raws)
    view.states = states
    view.at = now
    return view


def _starts(raws: list[RawSnapshot]) -> dict[tuple[int, int], float]:
    """By (layout serial, model index): the latest start of a process whose snapshot has
    that layout (``worker_meta``), where any is known."""
    starts: dict[tuple[int, int], float] = {}
    for raw in raws:
        serial = raw.layout.serial  # type: ignore[union-attr]
        for index, data in enumerate(raw.header["models"]):
            since = since_of_model(data)
            if since > starts.get((serial, index), -math.inf):
                starts[(serial, index)] = since
    return starts


def _cap_view(states: list[ModelState], raws: list[RawSnapshot]) -> None:
    """Each merged state's capped labels bounded (``merged_caps``), the values the archive
    keeps kept first: a fold keeps them, so the view and the archive agree."""
    archived: dict[tuple[str, str], dict[str, set[str]]] = {}
    for raw in raws:
        if raw.header.get("folded"):  # the archive (it lists what it folded)
            for model in raw.layout.models:  # type: ignore[union-attr]
                found = archived.setdefault(model.key, {})
                for kind, series in (("c", model.counters), ("h", model.histograms),
                                     ("s", model.summaries)):
                    for metric, labels, *_ in series:
                        cap = CAP_OF.get((kind, metric))
                        if cap is not None and labels and labels[0] != OTHER:
                            found.setdefault(cap, set()).add(labels[0])
    for state in states:
        meta = meta_of(state.extras)
        if meta is not None and meta.caps:
            cap_state(state, meta.caps, archived.get(state.key))


def _process_view(raws: list[RawSnapshot]) -> MergedView:
    """A view holding the snapshots' process-wide counters (and dependencies), added."""
    view = MergedView()
    for raw in raws:
        header = raw.header
        _add_counts(view.internal_errors, header.get("internal_errors"))
        _add_counts(view.overflow, header.get("overflow"))
        _add_counts(view.events_dropped, header.get("events_dropped"))
        _add_counts(view.event_values_dropped, header.get("event_values_dropped"))
        _add_counts(view.files_skipped, header.get("files_skipped"))
        dependencies = header.get("dependencies")
        if isinstance(dependencies, dict):
            view.dependencies.update({str(k): str(v) for k, v in dependencies.items()})
    return view


Contribution = tuple[RawSnapshot, int, int, int]  # snapshot, model, summary in it, row


def _add_values(plan: MergePlan, raws: list[RawSnapshot],
                on_error: Callable[[Exception], None] | None
                ) -> tuple[np.ndarray, list[list[Contribution]]]:
    """The merged additive array, and each merged summary's window rows by snapshot."""
    # -0.0 is the additive identity for every float, -0.0 included: a series only one
    # snapshot holds keeps its value exactly.
    additive = np.full(plan.size, -0.0)
    contributions: list[list[Contribution]] = [[] for _ in range(plan.summaries)]
    for raw in raws:
        mapped = plan.maps[raw.layout.serial]  # type: ignore[union-attr]
        additive[mapped.target] += raw.values[mapped.source]
        if mapped.moved_source.size:  # histograms of older buckets
            np.add.at(additive, mapped.moved_target, raw.values[mapped.moved_source])
        for merged_index, model, offset, row_index in mapped.summaries:
            contributions[merged_index].append((raw, model, offset, row_index))
        if on_error is not None:
            for conflict in mapped.conflicts:
                on_error(ValueError(conflict))
    return additive, contributions


# (model, version) -> the distinct identities the latest merge folded into it, in order,
# each with the fields folding it left: a model's identities change only when a worker
# (re)loads it, so a scrape folds only those past where they differ from the latest ones.
# Replaced whole by each merge, never changed (concurrent scrapes share it): it holds
# only what the files of the latest scrape hold, which their reader keeps anyway.
_folds: dict[tuple[str, str], list[tuple[tuple, tuple]]] = {}


def _merge_identities(states: list[ModelState], plan: MergePlan, raws: list[RawSnapshot],
                      on_error: Callable[[Exception], None] | None,
                      without_gauges: Container[int] = ()) -> None:
    """Identity fields, gauges and extras of every snapshot into the merged states (new
    ones, as merge_view makes them).

    Workers forked from one master share their models' identities: each distinct one is
    folded once (folding is idempotent), gauges every time (they add). The first identity
    folded wins a conflicting info label, but ``role="shadow"`` wins over any other role
    (a worker still runs the version as a shadow). Info labels, validation scores and
    objectives of a model version some live worker holds come from live workers only:
    a label a redeploy dropped (the role of a promoted challenger) must not be filled in
    from exited workers (the archive). Those still give the version's load and training
    times, and its task where the live workers have seen no prediction yet.
    """
    # Per merged model: identities folded, by (loaded_at, trained_at), which tell workers'
    # identities apart: finding one costs a lookup, not a comparison with every other.
    seen: list[dict] = [{} for _ in states]
    folded: list[list[tuple[tuple, tuple]]] = [[] for _ in states]
    latest = [_folds.get(state.key, ()) for state in states]
    live = [raw for raw in raws if id(raw) not in without_gauges]
    exited = [raw for raw in raws if id(raw) in without_gauges]
    served = {merged_index for raw in live
              for merged_index in plan.maps[raw.layout.serial].models}  # type: ignore[union-attr]
    for raw in live + exited:
        mapped = plan.maps[raw.layout.serial]  # type: ignore[union-attr]
        gauges = id(raw) not in without_gauges
        for index, merged_index in enumerate(mapped.models):
            state, data = states[merged_index], raw.header["models"][index]
            folded_data = data if gauges or merged_index not in served else _history_of(data)
            identity = (folded_data.get("info"), folded_data.get("loaded_at"),
                        folded_data.get("trained_at"), folded_data.get("validation"),
                        folded_data.get("objectives"))
            try:
                try:
                    alike = seen[merged_index].setdefault((identity[1], identity[2]), [])
                except TypeError:  # a crafted time (a list): compared with the others
                    alike = seen[merged_index].setdefault(None, [])
                if identity not in alike:
                    _fold_identity(state, folded_data, identity, folded[merged_index],
                                   latest[merged_index])
                    alike.append(identity)
                if gauges:
                    state.merge_gauges_of(data)
            # A crafted state section; OverflowError: a JSON integer past any float.
            except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
                if on_error is not None:
                    on_error(exc)
            if data.get("extras"):
                _merge_extras(state, data["extras"], on_error)
    global _folds
    _folds = {state.key: done for state, done in zip(states, folded) if done}


def _history_of(data: dict) -> dict:
    """What an exited worker's identity of a model version still tells where a live worker
    holds that version: when it was loaded and trained, and its task (a live worker that
    has seen no prediction says "auto"). Its labels, scores and objectives are the live
    workers' to give.

    >>> _history_of({"info": {"task": "regression", "role": "shadow"}, "loaded_at": 3.0,
    ...              "trained_at": None, "objectives": {"latency_p99": 0.2}})
    {'info': {'task': 'regression'}, 'loaded_at': 3.0, 'trained_at': None}
    """
    info = data.get("info")
    task = info.get("task") if isinstance(info, dict) else None
    return {"info": {} if task is None else {"task": task},
            "loaded_at": data.get("loaded_at"), "trained_at": data.get("trained_at")}


def _fold_identity(state: ModelState, data: dict, identity: tuple,
                   done: list[tuple[tuple, tuple]], latest: Sequence[tuple[tuple, tuple]]
                   ) -> None:
    """Fold one distinct identity into `state`: the fields the latest merge left when it
    folded the same identities in the same order, else folded anew."""
    step = len(done)
    if step < len(latest) and (not step or done[-1] is latest[step - 1]) \
            and latest[step][0] == identity:
        done.append(latest[step])
        info, state.loaded_at, state.trained_at, validation, objectives = latest[step][1]
        # Copies: the merged state is the caller's, the cached fields stay as they are.
        state.info, state.validation, state.objectives = (dict(info), dict(validation),
                                                          dict(objectives))
        return
    state.merge_identity_of(data)
    done.append((identity, (dict(state.info), state.loaded_at, state.trained_at,
                            dict(state.validation), dict(state.objectives))))


def _build_series(states: list[ModelState], plan: MergePlan, additive: np.ndarray,
                  contributions: list[list[Contribution]], windows: _Windows,
                  on_error: Callable[[Exception], None] | None) -> list[list[HistogramState]]:
    """Counters, histograms and summaries of the merged states; the histograms built,
    per state, in the order of the plan (where exemplars go)."""
    numbers = additive.tolist()
    histograms: list[list[HistogramState]] = [[] for _ in states]
    for state, model, built in zip(states, plan.models, histograms):
        for metric, series in model.counters_by_metric:
            state.counters[metric] = {labels: numbers[at] for labels, at in series}
        for metric, labels, bounds, at in model.histograms:
            end = at + bounds.size + 1
            hist = HistogramState(bounds)
            hist.counts = additive[at:end].astype(np.int64)
            hist.sum = numbers[end]
            state.histograms.setdefault(metric, {})[labels] = hist
            built.append(hist)
        for metric, labels, config, at, merged_index in model.summaries:
            summary = _summary(contributions[merged_index], config, windows,
                               model.summary_settings, on_error)
            summary.count, summary.sum = int(numbers[at]), numbers[at + 1]
            state.summaries.setdefault(metric, {})[labels] = summary
    return histograms


def _attach_drift(states: list[ModelState], plan: MergePlan, raws: list[RawSnapshot],
                  now: float, on_error: Callable[[Exception], None] | None = None) -> None:
    """Each merged model with a reference gets its drift state from the merged windows."""
    if not any(model.drift is not None for model in plan.models):
        return
    # Loaded only where a model has a reference: the exporter stays free of it.
    from inferwatch.quality.tracker import DriftState, retire_feature_series

    drift_windows = _drift_windows(plan, raws, now, on_error)
    for merged_index, (state, model) in enumerate(zip(states, plan.models)):
        if model.drift is None:
            continue
        features, outputs = (drift_windows.get((merged_index, which)) or _empty_window(window)
                             for which, window in enumerate(model.drift.windows))
        state.extras["drift"] = DriftState.from_windows(model.drift.reference, features,
                                                        outputs, max_labels=model.drift.max_labels)
        # Workers not yet reloaded (or the archive) still count another reference's
        # features: only the merged reference's are shown, as its drift gauges are.
        retire_feature_series(state)


def _merge_exemplars(exemplars: object, model: int, mapped: LayoutMap,
                     histograms: list[HistogramState],
                     on_error: Callable[[Exception], None] | None) -> None:
    """A snapshot's exemplars into the merged histograms: per bucket the newest one
    (``HistogramState.offer_exemplar``, as merging states keeps)."""
    try:
        for position, found in exemplars:  # type: ignore[attr-defined]
            entry = mapped.histograms.get((model, position))
            if entry is None:
                continue  # not in the plan: reported already
            hist = histograms[entry]
            moved = (model, position) in mapped.moved
            for bucket, trace_id, value, at in found:
                if moved and type(bucket) is int:  # laid out in other buckets
                    bucket = hist._bucket_of(float(value))  # the one its value is in here
                if type(bucket) is not int or not 0 <= bucket <= hist.bounds.size or \
                        not isinstance(trace_id, str):
                    raise ValueError(f"exemplar {[bucket, trace_id]!r} is invalid")
                hist.offer_exemplar(bucket, (trace_id, float(value), float(at)))
    except (ValueError, TypeError, OverflowError) as exc:  # a crafted state section
        if on_error is not None:
            on_error(exc)


def _merge_extras(state: ModelState, extras: object,
                  on_error: Callable[[Exception], None] | None) -> None:
    """Extras other than drift (registered by name), decoded and merged one by one."""
    try:
        decoded = decode_extras(extras)  # counts what it cannot decode
    except ValueError as exc:
        if on_error is not None:
            on_error(exc)
        return
    for name, extra in decoded.items():
        _merge_part(state.extras, name, extra, on_error)


def _summary(contributions: list[tuple[RawSnapshot, int, int, int]], config: tuple,
             windows: _Windows, settings: SummarySettings,
             on_error: Callable[[Exception], None] | None) -> SummaryState:
    """The merged series: the window's bins of every snapshot in one age bucket.

    A snapshot's window row serves when it ends where the view's window ends (files are a
    second old, buckets minutes wide); an older file gives its age buckets instead.
    """
    oldest, newest = windows.bounds(config)
    zero, sketch_sum = 0, 0.0
    positive: list[tuple[int, np.ndarray]] = []
    negative: list[tuple[int, np.ndarray]] = []
    for raw, model, offset, row_index in contributions:
        row = raw.windows[row_index]
        if row[NEWEST] == newest:
            rows = ((row, raw.window_starts[row_index], raw.window_sums[row_index]),)
        else:
            try:
                buckets = raw.exact_buckets(model, offset)
            except SnapshotError as exc:
                if on_error is not None:
                    on_error(exc)
                continue
            rows = tuple((bucket_row, start, bucket_row[SKETCH_SUM]) for bucket_row, start
                         in buckets if oldest < bucket_row[NEWEST] <= newest)
        bins = raw.bins
        for row, start, row_sum in rows:
            zero += row[ZERO]
            sketch_sum += row_sum
            middle = start + row[POS_N]
            if row[POS_N]:
                positive.append((row[POS_OFFSET], bins[start:middle]))
            if row[NEG_N]:
                negative.append((row[NEG_OFFSET], bins[middle:middle + row[NEG_N]]))
    max_age, age_buckets, accuracy, max_bins = config
    rolling = RollingSketch(max_age, age_buckets, accuracy, max_bins)
    if positive or negative or zero:
        # dense_bins bounds the span to max_bins and makes runs of non-negative int64
        # counts; from_dense_bins still checks their keys and totals: nothing could grow
        # memory or break the quantiles.
        try:
            rolling.put(newest, DDSketch.from_dense_bins(accuracy, max_bins,
                                                         positive=dense_bins(positive, max_bins),
                                                         negative=dense_bins(negative, max_bins),
                                                         zero_count=zero, total=sketch_sum))
        except ValueError as exc:  # a crafted file: its series shows no quantiles
            if on_error is not None:
                on_error(exc)
    return SummaryState(settings, sketch=rolling)


# Files whose drift bins add as one block however their layouts differ: bins and rows are
# below 2**53 in a file, so no sum of this many reaches int64's range, where adding in
# another grouping would give other numbers. A scrape of more adds layout by layout.
MAX_SUMMED_FILES = 511


def _drift_windows(plan: MergePlan, raws: list[RawSnapshot], now: float,
                   on_error: Callable[[Exception], None] | None = None
                   ) -> dict[tuple[int, int], DriftWindow]:
    """Every merged model's drift windows at `now`, by (merged model, 0 features /
    1 outputs).

    Snapshots whose windows hold the same buckets (workers of one clock) and add into the
    same merged windows have their drift bins at the same places: each such group adds as
    one block, and the sum merges into the windows once (as DriftWindow.merge adds).
    Buckets ahead of `now` are left out and counted through `on_error`: the view is
    rendered at `now`, and such a bucket (a clock running ahead, kept by a fold) took the
    slot of a live one, whose rows were lost whichever came first. Older buckets lose
    their slot to live ones, as in a merge.
    """
    drifting = [raw for raw in raws if raw.layout.drift_windows]  # type: ignore[union-attr]
    if len(drifting) <= MAX_SUMMED_FILES:
        windows = _summed_drift_windows(plan, drifting, now)
        if windows is not None:
            return windows
    return _drift_windows_by_layout(plan, drifting, now, on_error)


def _summed_drift_windows(plan: MergePlan, raws: list[RawSnapshot], now: float
                          ) -> dict[tuple[int, int], DriftWindow] | None:
    """The windows, files grouped across layouts; None when a bucket is ahead of `now`
    (left out and reported group by group, by :func:`_drift_windows_by_layout`)."""
    groups: dict[tuple, list[RawSnapshot]] = {}
    for raw in raws:
        key = (plan.maps[raw.layout.serial].drift_key, raw.drift_ids)  # type: ignore[union-attr]
        groups.setdefault(key, []).append(raw)
    windows: dict[tuple[int, int], DriftWindow] = {}
    parts: dict[tuple[int, int], list[tuple]] = {}
    for (targets, _), members in groups.items():
        first = members[0]
        block, rows = _summed_drift(members)
        for (target, which, total), (_, ids, row_at, bins_at), window in zip(
                targets, first.drift_shape, first.layout.drift_windows):  # type: ignore[union-attr]
            used = len(ids)
            if target < 0 or not used:
                continue
            key = (target, which)
            merged = windows.get(key)
            if merged is None:
                merged = windows[key] = _empty_window(window)
            if max(ids) > merged.bucket_id(now):
                return None
            parts.setdefault(key, []).append(
                (ids, rows[row_at:row_at + used],
                 block[bins_at:bins_at + used * total].reshape(used, total)))
    for key, found in parts.items():
        merged = windows[key]
        for ids, bucket_rows, counts in found:
            merged.merge_buckets(ids, bucket_rows, counts)
    return windows


def _drift_windows_by_layout(plan: MergePlan, raws: list[RawSnapshot], now: float,
                             on_error: Callable[[Exception], None] | None = None
                             ) -> dict[tuple[int, int], DriftWindow]:
    """The windows, files grouped by layout and buckets; buckets ahead of `now` left out
    once per window and group."""
    groups: dict[tuple, list[RawSnapshot]] = {}
    for raw in raws:
        groups.setdefault((raw.layout.serial, raw.drift_ids), []).append(raw)  # type: ignore[union-attr]
    windows: dict[tuple[int, int], DriftWindow] = {}
    for members in groups.values():
        first = members[0]
        block, rows = _summed_drift(members)
        for (target, which, total), (_, ids, row_at, bins_at), window in zip(
                plan.maps[first.layout.serial].drift_key, first.drift_shape,  # type: ignore[union-attr]
                first.layout.drift_windows):  # type: ignore[union-attr]
            used = len(ids)
            if target < 0 or not used:
                continue
            key = (target, which)
            merged = windows.get(key)
            if merged is None:
                merged = windows[key] = _empty_window(window)
            counts = block[bins_at:bins_at + used * total].reshape(used, total)
            bucket_rows = rows[row_at:row_at + used]
            current = merged.bucket_id(now)
            # Once per window and group of files, not per series.
            if max(ids) > current:
                live = [i for i, bucket in enumerate(ids) if bucket <= current]
                if on_error is not None:
                    on_error(ValueError(
                        f"{used - len(live)} drift bucket(s) of {len(members)}"
                        " snapshot(s) are ahead of the merged view's time: left out"))
                ids = tuple(ids[i] for i in live)
                bucket_rows = [bucket_rows[i] for i in live]
                counts = counts[live]
            merged.merge_buckets(ids, bucket_rows, counts)
    return windows


def _summed_drift(members: list[RawSnapshot]) -> tuple[np.ndarray, list[int]]:
    """The drift bins and bucket rows of files whose windows hold the same buckets, added
    as one block each (their bins lie at the same places)."""
    first = members[0]
    start, end = first.drift_span
    rows = first.drift_rows
    for raw in members[1:]:
        rows = list(map(operator.add, rows, raw.drift_rows))
    size = end - start
    types = {raw.bins.dtype for raw in members}
    if len(members) > 1 and len(members) * size <= MAX_GRID_CELLS and types <= WIDENING_TYPES:
        # Stacked in the files' own (narrow) type and added in one call, not file by file.
        grid = np.empty((len(members), size),
                        dtype=types.pop() if len(types) == 1 else np.result_type(*types))
        for index, raw in enumerate(members):
            grid[index] = raw.bins[raw.drift_span[0]:raw.drift_span[1]]
        return summed_rows(grid), rows
    block = first.bins[start:end].astype(np.int64)
    for raw in members[1:]:
        block += raw.bins[raw.drift_span[0]:raw.drift_span[1]]
    return block, rows


def _empty_window(window: DriftWindowLayout) -> DriftWindow:
    from inferwatch.quality.drift_window import DriftWindow

    return DriftWindow.empty(window.bins, window.max_age_seconds, window.age_buckets)


def _add_counts(total: dict[str, float], counts: object) -> None:
    if not isinstance(counts, dict):
        return
    for name, value in counts.items():
        total[str(name)] = total.get(str(name), 0) + float(value)
