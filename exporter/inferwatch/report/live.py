"""A :class:`~inferwatch.report.model.ModelReport` of a running model version, from its state
(the numbers a scrape renders) and the drain's ring of recent totals.

Windowed numbers follow the recording rules: calls per second, error ratio and latency
quantiles over the last 5 minutes (``windows.rate``), read as the difference between the
state now and the ring's sample from the start of the window; before the ring reaches back
that far, since the process started (the page says how long that is; the alert conditions
say "no data" instead, see :func:`~inferwatch.report.flags.evaluate`). Quantiles of a
histogram are Prometheus' ``histogram_quantile``: linear within the bucket, the last
finite bound for +Inf.

>>> from inferwatch.core.state import HistogramState, ModelState
>>> state = ModelState("fraud", "1", loaded_at=0.0)
>>> state.inc("inferwatch_requests_total", ("ok",), 90)
>>> state.inc("inferwatch_requests_total", ("error",), 10)
>>> report = from_state(state, None, now=100.0)
>>> report.live.calls_per_second, report.live.error_ratio
(1.0, 0.1)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from inferwatch.core.history import History, Sample, feature_counts_of, totals_of
from inferwatch.core.state import HistogramState, ModelState
from inferwatch.quality.drift import DriftScorer
from inferwatch.quality.reference import Reference
from inferwatch.quality.tracker import DEFAULT_MAX_FEATURE_LABELS, folded_names
from inferwatch.report.conditions import Peer
from inferwatch.report.flags import Thresholds, evaluate
from inferwatch.report.model import Distribution, Live, ModelReport, distributions

LATENCY = "inferwatch_request_duration_seconds"


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float:
    """Prometheus' histogram_quantile over non-cumulative `counts` (+Inf bucket last).

    >>> histogram_quantile(0.5, [1.0, 2.0], [0, 10, 0])
    1.5
    >>> histogram_quantile(0.99, [1.0, 2.0], [0, 0, 5])
    2.0
    >>> math.isnan(histogram_quantile(0.5, [1.0], [0, 0]))
    True
    """
    cumulative = np.cumsum(np.asarray(counts, dtype=np.float64))
    total = float(cumulative[-1]) if len(cumulative) else 0.0
    if total <= 0 or not len(bounds):
        return math.nan
    rank = q * total
    index = int(np.searchsorted(cumulative, rank, side="left"))
    if index >= len(bounds):  # the +Inf bucket
        return float(bounds[-1])
    upper = float(bounds[index])
    lower = float(bounds[index - 1]) if index > 0 else 0.0
    if index == 0 and upper <= 0:
        return upper
    below = float(cumulative[index - 1]) if index > 0 else 0.0
    in_bucket = float(cumulative[index]) - below
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / in_bucket


def from_state(state: ModelState, history: History | None, now: float, *,
               thresholds: Thresholds | None = None, window_seconds: float | None = None,
               summary: bool = False, drift: DriftCounts | None = None,
               scores: SummaryScores | None = None,
               peers: Sequence[Peer] | None = None) -> ModelReport:
    """The page of one model version; `state` must not change meanwhile (a copy). The
    window is the config's ``windows.rate`` unless given, as the recording rules read it.

    ``summary=True`` computes only what the index shows (calls per second, error ratio,
    the alert conditions): no distributions' bins, quantiles, sparklines or quality table.
    `drift` (from :func:`summary_state`) stands for the state's drift window; `scores`
    keeps a summary's drift scores from one index to the next while the window's counts
    stay the same. `peers` are the model's versions now, for the conditions that count
    them (:func:`~inferwatch.report.flags.evaluate`)."""
    key = state.key
    thresholds = thresholds or Thresholds.for_model(state.model)
    if window_seconds is None:
        window_seconds = thresholds.rate_window_seconds
    totals = totals_of(state)
    if history is not None:
        history = _since_restart(history, key, totals)
    latency = state.histograms.get(LATENCY, {}).get(())
    start = _start(state, now)
    base = history.before(key, now - window_seconds) if history is not None else None
    window = now - (base.at if base is not None else start)
    delta = _delta(totals, base)
    bounds = latency.bounds.tolist() if latency is not None else []
    latency_window = _latency_delta(latency, base)
    requests = {labels[0]: value for labels, value in
                state.counters.get("inferwatch_requests_total", {}).items()}
    live = Live(
        window_seconds=window,
        requests=requests,
        calls_per_second=delta["requests"] / window if window > 0 else math.nan,
        error_ratio=_ratio(delta["errors"], delta["requests"]),
        latency_p50=histogram_quantile(0.5, bounds, latency_window),
        latency_p99=histogram_quantile(0.99, bounds, latency_window),
        sparklines={} if summary else _sparklines(
            history.samples(key) if history is not None else [], totals, latency, bounds,
            now),
        prediction_quantiles={} if summary else _quantiles(state, "inferwatch_prediction",
                                                            now),
        classes={labels[0]: value for labels, value in
                 state.counters.get("inferwatch_predicted_class_total", {}).items()},
        confidence={} if summary else _quantiles(
            state, "inferwatch_prediction_confidence", now).get("", {}),
        invalid={labels[0]: value for labels, value in
                 state.counters.get("inferwatch_invalid_predictions_total", {}).items()},
        input_errors={labels[0]: value for labels, value in
                      state.counters.get("inferwatch_input_errors_total", {}).items()},
        outcomes={labels[0]: value for labels, value in
                  state.counters.get("inferwatch_outcomes_total", {}).items()},
        accuracy=_ratio(totals["correct"], totals["outcomes"]),
        label_delay_p50=_histogram_p50(state, "inferwatch_outcome_delay_seconds"),
        info=dict(state.info),
        loaded_at=state.loaded_at,
        trained_at=state.trained_at,
        drift_window_rows=0,
        window_since_start=base is None,
    )
    features, outputs = [], []
    if drift is None and state.extras.get("drift") is not None:
        drift = DriftCounts.of(state.extras["drift"], now)
    if drift is not None:
        live.drift_window_rows = int(drift.rows)
        if summary:
            # The conditions read each profile's name and one score only: the bins' labels
            # and shares, and the other scores, are most of a page's cost, times every
            # version on the index.
            method = thresholds.drift_method
            # As evaluate() judges them: a drift.min_observations declared in code under
            # objectives.from_code comes before the config's.
            least = thresholds.declared(state.objectives).drift_min_observations
            if drift.rows < least:
                # Too few rows for the condition to hold, whatever the scores: "no data".
                features = _unscored(drift.reference, "features", method)
                outputs = _unscored(drift.reference, "outputs", method)
            else:
                if scores is not None:
                    features, outputs = scores.scored(key, drift, method)
                else:
                    features, outputs = _summary_scores(drift, method)
                # A summary has no bins to count a feature's values by, so evaluate()
                # cannot leave out the sparse ones as the model page does.
                features = _sparse_unscored(features, drift, least, method)
        else:
            reference = drift.reference
            features = distributions(reference.features,
                                     drift.feature_layout.split(drift.features),
                                     DriftScorer(reference.features).scores(drift.features))
            outputs = distributions(reference.outputs,
                                    drift.output_layout.split(drift.outputs),
                                    DriftScorer(reference.outputs).scores(drift.outputs))
    quality: dict[str, dict[str, float]] = {}
    for metric, series in ({} if summary else feature_counts_of(state)).items():
        kind = metric.removeprefix("inferwatch_feature_").removesuffix("_total")
        for feature, value in series.items():
            quality.setdefault(feature, {})[kind] = value
    for labels, value in ({} if summary else state.counters.get(
            "inferwatch_feature_unseen_category_total", {})).items():
        quality.setdefault(labels[0], {})["unseen_category"] = value
    report = ModelReport(title=f"{state.model} {state.version}", model=state.model,
                         version=state.version, generated_at=now,
                         rows=int(totals["rows"]), features=features, outputs=outputs,
                         quality=quality, live=live)
    feature_base = (history.before(key, now - window_seconds, features=True)
                    if history is not None else None)
    # The drift window's own label cap (a monitor's max_features) on both pages: an index
    # row's copy has no window, and evaluate() would judge it by the default cap.
    labels = _folded_labels(drift.reference, drift.max_labels) if drift is not None else None
    report.flags = evaluate(report, thresholds, state=state, history=history, now=now,
                            delta=delta, feature_base=feature_base, start=start,
                            drift_labels=labels, peers=peers)
    return report


@dataclasses.dataclass(frozen=True)
class DriftCounts:
    """A drift window read at one time: its reference, the bin counts of every feature and
    of every output end to end (with the layouts that split them), the rows in it, and its
    label cap (the features past it have no gauge, so no drift alert)."""

    reference: Reference
    features: np.ndarray
    outputs: np.ndarray
    rows: int
    feature_layout: Any
    output_layout: Any
    max_labels: int = DEFAULT_MAX_FEATURE_LABELS

    @classmethod
    def of(cls, drift: Any, now: float) -> DriftCounts:
        """The counts of `drift` (a ``DriftState``) at `now`."""
        features, rows = drift.features.flat_counts(now)
        outputs, output_rows = drift.outputs.flat_counts(now)
        # As the window's rows gauge counts them: predictions recorded without their inputs
        # (record_call) fill only the outputs' window, and the prediction drift alert is
        # judged on those rows; read as 0, both pages said "no data" while it fired.
        rows = rows or output_rows
        max_labels = getattr(drift, "max_labels", DEFAULT_MAX_FEATURE_LABELS)
        return cls(drift.reference, features, outputs, rows, drift.features.layout,
                   drift.outputs.layout, max_labels)

    def observations(self) -> np.ndarray:
        """Each feature's values in the window (its missing values left out), in the
        reference's order: the drift alert judges no feature with fewer than
        drift.min_observations."""
        layout = self.feature_layout
        if not len(layout) or not self.features.size:
            return np.zeros(len(layout), dtype=np.float64)
        # Summed as floats: bin counts held at the int64 maximum must not wrap negative.
        return np.add.reduceat(self.features, layout.starts, dtype=np.float64)


def summary_state(state: ModelState, now: float) -> tuple[ModelState, DriftCounts | None]:
    """What an index row reads of `state`, taken under its monitor's lock: a copy of its
    counters, histograms and identity (no quantile sketch, no extra), and its drift
    window's counts at `now`. A whole copy encodes and decodes the reference profile and
    every sketch, for numbers the index does not show; even the light part, encoded as
    :meth:`ModelState.to_dict` writes it and decoded again, was half an index's time."""
    drift = state.extras.get("drift")
    light = ModelState(
        state.model, state.version, info=dict(state.info), loaded_at=state.loaded_at,
        trained_at=state.trained_at, validation=dict(state.validation),
        objectives=dict(state.objectives), summary_settings=state.summary_settings,
        counters={metric: dict(series) for metric, series in state.counters.items()},
        histograms={metric: {labels: _histogram_copy(h) for labels, h in series.items()}
                    for metric, series in state.histograms.items()},
        gauges={metric: dict(series) for metric, series in state.gauges.items()})
    return light, (DriftCounts.of(drift, now) if drift is not None else None)


def _histogram_copy(histogram: HistogramState) -> HistogramState:
    # The counts go on changing in place once the lock is released; the bounds never do.
    copy = HistogramState(histogram.bounds)
    copy.counts = histogram.counts.copy()
    copy.sum = histogram.sum
    return copy


def _summary_scores(drift: DriftCounts, method: str
                    ) -> tuple[list[Distribution], list[Distribution]]:
    reference = drift.reference
    return (_scored(reference.features, _scorer(reference, "features", method), drift.features),
            _scored(reference.outputs, _scorer(reference, "outputs", method), drift.outputs))


def _sparse_unscored(features: list[Distribution], drift: DriftCounts, least: int,
                     method: str) -> list[Distribution]:
    """`features` with no score for those with fewer than `least` values in the window."""
    sparse = np.flatnonzero(drift.observations() < least).tolist()
    if not sparse:
        return features
    features = list(features)
    for index in sparse:
        if index < len(features):
            features[index] = dataclasses.replace(features[index], scores={method: math.nan})
    return features


class SummaryScores:
    """The index's drift scores of each model version, kept while its window's counts are
    the same: most versions of a long index get no row between two loads of it, and
    scoring every one of them again was a third of the index's time.

    Only the versions of the last index are kept (:meth:`keep`), so the memory follows what
    the index shows. Safe to share between threads rendering at once: a lost entry is only
    scored again.
    """

    def __init__(self) -> None:
        self._kept: dict[tuple, tuple[Any, bytes, bytes, tuple]] = {}

    def scored(self, key: tuple[str, str], drift: DriftCounts, method: str
               ) -> tuple[list[Distribution], list[Distribution]]:
        """The summary scores of `drift` (by `method`) of model version `key`."""
        features, outputs = drift.features.tobytes(), drift.outputs.tobytes()
        found = self._kept.get((key, method))
        # Compared by content, not by a change count: in multi-worker mode each merged
        # view is a new object whatever changed.
        if found is not None and found[0] is drift.reference and found[1] == features \
                and found[2] == outputs:
            return list(found[3][0]), list(found[3][1])
        result = _summary_scores(drift, method)
        self._kept[(key, method)] = (drift.reference, features, outputs, result)
        return list(result[0]), list(result[1])

    def keep(self, keys: set[tuple[str, str]]) -> None:
        """Forget the versions not in `keys` (gone, or past the caps)."""
        # A copy first: another render may be adding to it meanwhile.
        self._kept = {k: v for k, v in self._kept.copy().items() if k[0] in keys}


def _unscored(reference: Reference, part: str, method: str) -> list[Distribution]:
    # The same rows for every version of one reference (Distributions are frozen).
    key = (id(reference), part, method)
    found = _blank.get(key)
    if found is None or found[0] is not reference:
        found = (reference, [Distribution(name, profile.kind, (), (), (), {method: math.nan})
                             for name, profile in getattr(reference, part).items()])
        if len(_blank) >= MAX_COMPILED:
            _blank.clear()
        _blank[key] = found
    return list(found[1])


def _scored(profiles: dict, scorer: DriftScorer, counts: np.ndarray) -> list[Distribution]:
    (method, values), = scorer.arrays(counts).items()
    return [Distribution(name, profile.kind, (), (), (), {method: value})
            for (name, profile), value in zip(profiles.items(), values.tolist())]


# Scorers by reference: an index of hundreds of versions of a few models compiles each
# reference once. Holding the reference keeps its id from being reused.
_compiled: dict[tuple[int, str, str], tuple[Reference, DriftScorer]] = {}
MAX_COMPILED = 128
_blank: dict[tuple[int, str, str], tuple[Reference, list[Distribution]]] = {}


def _scorer(reference: Reference, part: str, method: str) -> DriftScorer:
    key = (id(reference), part, method)
    found = _compiled.get(key)
    if found is not None and found[0] is reference:
        return found[1]
    scorer = DriftScorer(getattr(reference, part), methods=(method,))
    if len(_compiled) >= MAX_COMPILED:
        _compiled.clear()
    _compiled[key] = (reference, scorer)
    return scorer


_folded_of: dict[tuple[int, int], tuple[Reference, tuple[dict, dict]]] = {}


def _folded_labels(reference: Reference, max_labels: int
                   ) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """What evaluate() takes as `drift_labels`, the folded names only: it reads no other,
    and the whole label maps of every version cost an index a tenth of its time."""
    key = (id(reference), max_labels)
    found = _folded_of.get(key)
    if found is None or found[0] is not reference:
        found = (reference, tuple({name: None for name in names}  # type: ignore[assignment]
                                  for names in folded_names(reference, max_labels)))
        if len(_folded_of) >= MAX_COMPILED:
            _folded_of.clear()
        _folded_of[key] = found
    return found[1]


def _since_restart(history: History, key: tuple[str, str], totals: dict[str, float]
                   ) -> History:
    """`history`, or a view of it without the samples of `key` taken before its counts
    restarted (a worker forked from a process that had served calls starts from zero, and
    the ring notices only at its next sample): read against those, a window would show
    negative calls per second and quantiles of negative bucket counts."""
    samples = history.samples(key)
    stale = [i for i, sample in enumerate(samples)
             if any(sample.totals.get(name, 0.0) > value for name, value in totals.items())]
    if not stale:
        return history
    return _SamplesSince(history, key, samples[stale[-1] + 1:])  # type: ignore[return-value]


class _SamplesSince:
    """A read-only History whose samples of `key` are `kept`; other keys read `history`."""

    def __init__(self, history: History, key: tuple[str, str], kept: list[Sample]) -> None:
        self._history = history
        self._key = key
        self._kept = kept
        self.interval_seconds = history.interval_seconds
        self.span_seconds = history.span_seconds

    def samples(self, key: tuple[str, str]) -> list[Sample]:
        return list(self._kept) if key == self._key else self._history.samples(key)

    # The ring's own search, over samples() above: the kept ones for `key`.
    before = History.before

    def keys(self) -> list[tuple[str, str]]:
        return self._history.keys()


def _start(state: ModelState, now: float) -> float:
    return state.loaded_at if math.isfinite(state.loaded_at) else now


def _delta(totals: dict[str, float], base: Sample | None) -> dict[str, float]:
    if base is None:
        return dict(totals)
    return {k: v - base.totals.get(k, 0.0) for k, v in totals.items()}


def _latency_delta(latency, base: Sample | None) -> list[float]:
    if latency is None:
        return []
    counts = latency.counts.astype(np.float64)
    if base is not None and base.latency is not None and base.latency.shape == counts.shape:
        counts = counts - base.latency
    return counts.tolist()


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole > 0 else math.nan


def _quantiles(state: ModelState, metric: str, now: float) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    quantiles = state.summary_settings.quantiles
    for labels, summary in state.summaries.get(metric, {}).items():
        values = summary.quantiles(quantiles, now)
        out[labels[0] if labels else ""] = {f"{q:g}": float(v) for q, v in
                                           zip(quantiles, values)}
    return out


def _histogram_p50(state: ModelState, metric: str) -> float:
    hist = state.histograms.get(metric, {}).get(())
    if hist is None:
        return math.nan
    return histogram_quantile(0.5, hist.bounds.tolist(), hist.counts.tolist())


def _sparklines(samples: list[Sample], totals: dict[str, float], latency, bounds: list[float],
                now: float) -> dict[str, list[float]]:
    """Per interval between consecutive samples (and from the last one to now)."""
    points = [(s.at, s.totals, s.latency) for s in samples]
    points.append((now, totals, latency.counts.astype(np.float64) if latency is not None
                   else None))
    lines: dict[str, list[float]] = {"calls per second": [], "error ratio": [],
                                     "p50 latency (s)": [], "p99 latency (s)": []}
    for (t0, a, la), (t1, b, lb) in zip(points, points[1:]):
        span = t1 - t0
        calls = b["requests"] - a["requests"]
        lines["calls per second"].append(calls / span if span > 0 else math.nan)
        lines["error ratio"].append(_ratio(b["errors"] - a["errors"], calls))
        if la is not None and lb is not None and la.shape == lb.shape:
            counts = (lb - la).tolist()
            lines["p50 latency (s)"].append(histogram_quantile(0.5, bounds, counts))
            lines["p99 latency (s)"].append(histogram_quantile(0.99, bounds, counts))
        else:
            lines["p50 latency (s)"].append(math.nan)
            lines["p99 latency (s)"].append(math.nan)
    return lines
