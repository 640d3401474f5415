"""Status flags: the conditions of the alert rules, evaluated on a page's numbers with the
thresholds of the same config the rules are generated from (``inferwatch generate``), so the
page and the pages agree.

A flag says whether the condition holds now; Prometheus fires the alert once it has held
for the rule's ``for:``. A condition whose window reaches back further than the process's
ring of recent totals (the 6-hour slow burn; any window once the ring does not reach its
start) says "no data" rather than read the totals since the process started.

>>> thresholds = Thresholds.for_model("fraud")
>>> thresholds.latency_p99_seconds, thresholds.drift_feature
(0.5, 0.2)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from inferwatch.core.history import FIRST_ITEM
from inferwatch.generate import config as generator_config
from inferwatch.generate import re2
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_schema import with_values

if TYPE_CHECKING:
    from inferwatch.core.history import History, Sample
    from inferwatch.core.state import ModelState
    from inferwatch.report.conditions import Peer, Windows
    from inferwatch.report.model import Flag, Live, ModelReport

FIRING, OK, NO_DATA = "firing", "ok", "no data"


@dataclass(frozen=True)
class Thresholds:
    """The config values the model alerts compare with, for one model."""

    availability: float
    fast_burn_factor: float
    fast_burn_long_seconds: float
    slow_burn_factor: float
    slow_burn_long_seconds: float
    latency_p99_seconds: float
    invalid_ratio: float
    max_model_age_seconds: float
    missing_ratio: float
    out_of_range_ratio: float
    drift_method: str
    drift_feature: float
    drift_prediction: float
    drift_min_observations: int
    accuracy_min_ratio: float
    accuracy_min_outcomes: int
    accuracy_window_seconds: float
    rate_window_seconds: float
    accuracy_max_drop: float = 0.05
    from_code: bool = False  # objectives.from_code: what the model declares comes first
    no_traffic_lookback_seconds: float = 3600.0
    fast_burn_short_seconds: float = 300.0
    shadow_max_error_ratio: float = 0.05
    fast_burn_min_requests: int = 10
    first_item_p99_seconds: float = 1.0
    schema_error_ratio: float = 0.05
    max_versions: int = 1
    versions_serving_seconds: float = 900.0
    accuracy_max_error_ratio: float = 1.5
    accuracy_max_error: float | None = None

    def declared(self, objectives: dict[str, float]) -> Thresholds:
        """These thresholds with the model's objectives declared in code applied, as the rules
        apply them under ``objectives.from_code`` (code, then the config, then the default).

        >>> Thresholds.for_model("m").declared({"latency.p99_seconds": 0.05}).latency_p99_seconds
        0.5
        """
        if not self.from_code:
            return self
        known = {key: field for key, field in _DECLARED_FIELDS.items() if key in objectives}
        return replace(self, **{field: objectives[key] for key, field in known.items()})

    @classmethod
    def for_model(cls, model: str, config: Any = None) -> Thresholds:
        """The thresholds of `model` in `config` (a generator Config, a YAML path, or None for
        the defaults), its ``models:`` override applied as the rules apply it.

        >>> cfg = generator_config.from_dict({"models": {"fraud": {"latency": {"p99_seconds": 2}}}})
        >>> Thresholds.for_model("fraud", cfg).latency_p99_seconds
        2.0
        >>> Thresholds.for_model("other", cfg).latency_p99_seconds
        0.5
        """
        if config is None:
            cfg = generator_config.DEFAULT
        elif isinstance(config, generator_config.Config):
            cfg = config
        else:
            cfg = generator_config.load(config)
        for pattern, override in cfg.models.items():
            # Matched as Prometheus matches the rules' `model=~` (RE2): Python's own `re`
            # raised on `fr(?i)aud`, which the generator accepts, and read `\d` as any
            # Unicode digit, judging a model by an entry its alerts do not use.
            if re2.matches(pattern, model):
                cfg = with_values(cfg, override.values)
                break
        seconds = duration_seconds
        return cls(
            availability=cfg.slo.availability,
            fast_burn_factor=cfg.slo.fast_burn.factor,
            fast_burn_long_seconds=seconds(cfg.slo.fast_burn.long_window),
            fast_burn_short_seconds=seconds(cfg.slo.fast_burn.short_window),
            fast_burn_min_requests=cfg.slo.fast_burn.min_requests,
            shadow_max_error_ratio=cfg.shadow.max_error_ratio,
            slow_burn_factor=cfg.slo.slow_burn.factor,
            slow_burn_long_seconds=seconds(cfg.slo.slow_burn.long_window),
            latency_p99_seconds=float(cfg.latency.p99_seconds),
            invalid_ratio=cfg.predictions.invalid_ratio,
            max_model_age_seconds=seconds(cfg.predictions.max_model_age),
            missing_ratio=cfg.data_quality.missing_ratio,
            out_of_range_ratio=cfg.data_quality.out_of_range_ratio,
            drift_method=cfg.drift.method,
            drift_feature=cfg.drift.feature_threshold,
            drift_prediction=cfg.drift.prediction_threshold,
            drift_min_observations=cfg.drift.min_observations,
            accuracy_min_ratio=cfg.accuracy.min_ratio,
            accuracy_min_outcomes=cfg.accuracy.min_outcomes,
            accuracy_window_seconds=seconds(cfg.accuracy.window),
            rate_window_seconds=seconds(cfg.windows.rate),
            no_traffic_lookback_seconds=seconds(cfg.windows.no_traffic_lookback),
            accuracy_max_drop=cfg.accuracy.max_drop,
            from_code=cfg.objectives.from_code,
            first_item_p99_seconds=float(cfg.latency.first_item_p99_seconds),
            schema_error_ratio=cfg.data_quality.schema_error_ratio,
            max_versions=cfg.predictions.max_versions,
            versions_serving_seconds=seconds(cfg.windows.versions_serving),
            accuracy_max_error_ratio=cfg.accuracy.max_error_ratio,
            accuracy_max_error=cfg.accuracy.max_error,
        )


# Objective keys (catalogue.OBJECTIVE_KEYS) a page evaluates, by the field that holds them.
_DECLARED_FIELDS = {
    "slo.availability": "availability", "latency.p99_seconds": "latency_p99_seconds",
    "predictions.invalid_ratio": "invalid_ratio", "predictions.max_versions": "max_versions",
    "predictions.max_model_age": "max_model_age_seconds",
    "data_quality.missing_ratio": "missing_ratio",
    "data_quality.out_of_range_ratio": "out_of_range_ratio",
    "drift.feature_threshold": "drift_feature", "drift.prediction_threshold": "drift_prediction",
    "drift.min_observations": "drift_min_observations",
    "accuracy.min_ratio": "accuracy_min_ratio", "accuracy.min_outcomes": "accuracy_min_outcomes",
    "accuracy.max_drop": "accuracy_max_drop",
}


def evaluate(report: ModelReport, t: Thresholds, *, state: ModelState | None = None,
             history: History | None = None, now: float | None = None,
             delta: dict[str, float] | None = None, feature_base: Sample | None = None,
             start: float | None = None,
             drift_labels: tuple[dict[str, str | None], dict[str, str | None]] | None = None,
             peers: Sequence[Peer] | None = None) -> list[Flag]:
    """The flags of one page: live ones when `state` is given, drift ones always.

    `drift_labels` (:func:`~inferwatch.quality.tracker.gauge_labels`) names the features
    and outputs with a drift gauge of their own; by default those of the state's drift
    window, for a state without one (an index row) those of its features in the order
    given, under the default label cap. Without a state every one is judged.

    `history` is the ring the windows are read from; a window it does not reach back to
    (and that starts after `start`, when the state began counting) is "no data". Without
    one (a snapshot's report), every window runs from the state's start. `peers` are the
    model's versions now (:class:`Peer`), for the conditions that count them; by default
    the state and the versions the ring holds samples of."""
    from inferwatch.core.history import totals_of

    now = time.time() if now is None else now
    # Read once: every windowed number below is the state's totals less a sample's.
    totals = totals_of(state) if state is not None else None
    flags: list[Flag] = []
    live = report.live
    if state is not None:
        t = t.declared(state.objectives)
        if start is None:
            start = state.loaded_at if math.isfinite(state.loaded_at) else now
    # The rules judge a shadow model by InferwatchShadowFailing alone: every other model
    # alert but the traffic one leaves shadows out (`unless ... role="shadow"`).
    shadow = state is not None and state.info.get("role") == "shadow"
    if live is not None and state is not None and delta is not None:
        from inferwatch.report import conditions

        windows = conditions.Windows(state, history, now, start)  # type: ignore[arg-type]
        rate_known = windows.base(t.rate_window_seconds)[1]
    if live is not None and state is not None and delta is not None and shadow:
        flags.append(windows.unreached("InferwatchShadowFailing", t.shadow_max_error_ratio,
                                       t.rate_window_seconds) if not rate_known else
                     _flag("InferwatchShadowFailing", live.error_ratio,
                           t.shadow_max_error_ratio, above=True,
                           detail=f"error ratio {_pct(live.error_ratio)} over "
                                  f"{_span(t.rate_window_seconds)}, threshold "
                                  f"{_pct(t.shadow_max_error_ratio)}"))
        flags.append(_no_traffic(state, history, now, t))
    elif live is not None and state is not None and delta is not None:
        flags.extend(_availability(state, live, windows, t, totals, rate_known))
        flags.extend(_predictions(state, live, windows, t, delta, rate_known, peers))
        flags.extend(_quality(state, windows, t, totals, feature_base, rate_known))
    rows = report.live.drift_window_rows if report.live is not None else report.rows
    folded: tuple[frozenset[str], frozenset[str]] | None = None
    if drift_labels is not None:
        folded = tuple(frozenset(name for name, label in part.items()  # type: ignore[assignment]
                                 if label is None) for part in drift_labels)
    for part, (alert, items, limit) in enumerate((
            ("InferwatchFeatureDrift", report.features, t.drift_feature),
            ("InferwatchPredictionDrift", report.outputs, t.drift_prediction))):
        if not items or shadow:
            continue
        if part == 0 and rows >= t.drift_min_observations:
            # As the rule: a feature with fewer values in the window than
            # drift.min_observations (missing from most rows) is not judged. Known where
            # the page has the window's counts (an index row leaves such features unscored).
            items = [d for d in items if not d.live or d.rows >= t.drift_min_observations]
        scored = [(d.scores.get(t.drift_method, math.nan), d.name) for d in items]
        scored = [(v, n) for v, n in scored if not math.isnan(v)]
        if scored and folded is None and state is not None:
            folded = _folded(report, state)  # only once something is scored: an index row
        if scored and folded is not None and folded[part]:
            # The alert sees only what has a gauge: a feature past the label cap folds into
            # no series, and a flag firing on it would name a drift no alert can report.
            scored = [(v, n) for v, n in scored if n not in folded[part]]
        worst, name = max(scored) if scored else (math.nan, "")
        enough = rows >= t.drift_min_observations
        flags.append(_flag(alert, worst if enough else math.nan, limit, above=True,
                           detail=(f"largest {t.drift_method} {worst:.3g} ({name!r})"
                                   if name else f"no {t.drift_method} scored")
                                  + f" on {rows} rows (at least {t.drift_min_observations:g} "
                                    f"needed), threshold {limit:g}"))
    return flags


def _availability(state: ModelState, live: Live, windows: Windows, t: Thresholds,
                  totals: dict[str, float], rate_known: bool) -> list[Flag]:
    from inferwatch.report.model import Flag

    flags = []
    budget = t.fast_burn_factor * (1 - t.availability)
    long_base, long_known = windows.base(t.fast_burn_long_seconds)
    # The short window is slo.fast_burn.short_window, which need not be windows.rate.
    short_base, short_known = windows.base(t.fast_burn_short_seconds)
    if not (long_known and short_known):
        flags.append(windows.unreached("InferwatchErrorBudgetBurnFast", budget,
                                       t.fast_burn_long_seconds if not long_known
                                       else t.fast_burn_short_seconds))
    else:
        long_ratio = _windowed_ratio(state, long_base, "errors", "requests", totals)
        long_calls = _windowed(state, long_base, "requests", totals)
        short = _windowed_ratio(state, short_base, "errors", "requests", totals)
        # As the rule: fewer calls than slo.fast_burn.min_requests over the long window
        # (one failed call of a nearly idle model) is no budget burning, whatever the ratio.
        few = long_calls < t.fast_burn_min_requests
        flags.append(_flag("InferwatchErrorBudgetBurnFast",
                           math.nan if few else _both(long_ratio, short),
                           budget, above=True,
                           detail=f"error ratio {_pct(long_ratio)} over "
                                  f"{_span(t.fast_burn_long_seconds)} and {_pct(short)} over "
                                  f"{_span(t.fast_burn_short_seconds)}, budget x "
                                  f"{t.fast_burn_factor:g} = {_pct(budget)}; {long_calls:g} "
                                  f"calls (at least {t.fast_burn_min_requests} needed)"))
    # A report drawn from a snapshot has no ring: it says so rather than "keeps 0s".
    kept = "the snapshot holds no history" if windows.history is None else \
        f"this process keeps {_span(windows.history.span_seconds)}"
    flags.append(Flag("InferwatchErrorBudgetBurnSlow", NO_DATA, math.nan,
                      t.slow_burn_factor * (1 - t.availability),
                      f"needs {_span(t.slow_burn_long_seconds)} of history; {kept}: "
                      f"see Prometheus"))
    flags.append(_no_traffic(state, windows.history, windows.now, t, totals))
    flags.append(windows.unreached("InferwatchLatencyHigh", t.latency_p99_seconds,
                                   t.rate_window_seconds) if not rate_known else
                 _flag("InferwatchLatencyHigh", live.latency_p99, t.latency_p99_seconds,
                       above=True, detail=f"p99 latency {_number(live.latency_p99, 's')}, "
                                          f"threshold {t.latency_p99_seconds:g}s"))
    from inferwatch.report import conditions

    streams = state.histograms.get(FIRST_ITEM, {}).get(())
    if streams is not None:  # a model that streams
        flags.append(conditions.first_item(streams, windows, t, rate_known))
    return flags


def _predictions(state: ModelState, live: Live, windows: Windows, t: Thresholds,
                 delta: dict[str, float], rate_known: bool,
                 peers: Sequence[Peer] | None) -> list[Flag]:
    from inferwatch.report import conditions

    invalid = _rate_ratio(delta["invalid"], delta["rows"])
    flags = [windows.unreached("InferwatchInvalidPredictions", t.invalid_ratio,
                               t.rate_window_seconds) if not rate_known else
             _flag("InferwatchInvalidPredictions", invalid, t.invalid_ratio, above=True,
                   detail=f"{_pct(invalid)} of rows invalid over "
                          f"{_span(t.rate_window_seconds)}, threshold {_pct(t.invalid_ratio)}")]
    if peers is None:
        history = windows.history
        peers = [conditions.Peer.of(state)] + ([
            conditions.Peer(key, samples[-1].totals["requests"], math.nan, False)
            for key in _versions(history, state.model) if key != state.key
            for samples in [history.samples(key)] if samples] if history is not None else [])
    if state.key not in {peer.key for peer in peers}:
        peers = [*peers, conditions.Peer.of(state)]
    if not isinstance(peers, conditions.Peers):
        peers = conditions.Peers(peers)
    served = peers.served(windows, t.versions_serving_seconds)
    flags.append(_model_stale(live.trained_at, windows.now, t, served[state.key]))
    flags.append(conditions.versions_serving(peers, served, t))
    return flags


def _quality(state: ModelState, windows: Windows, t: Thresholds, totals: dict[str, float],
             feature_base: Sample | None, rate_known: bool) -> list[Flag]:
    flags = []
    features_known = windows.history is None or feature_base is not None or \
        windows.now - t.rate_window_seconds <= windows.start
    for alert, metric, limit in (
            ("InferwatchMissingValuesSpike", "inferwatch_feature_missing_total",
             t.missing_ratio),
            ("InferwatchOutOfRangeSpike", "inferwatch_feature_out_of_range_total",
             t.out_of_range_ratio)):
        if not features_known:
            # The ring keeps per-feature counts for a shorter time than totals.
            flags.append(windows.unreached(alert, limit, t.rate_window_seconds, features=True))
            continue
        rows = _windowed(state, feature_base, "rows", totals)
        worst, name = _worst_feature(state, feature_base, metric, rows)
        flags.append(_flag(alert, worst, limit, above=True,
                           detail=f"worst feature {name!r}: {_pct(worst)} of rows over "
                                  f"{_span(t.rate_window_seconds)}, threshold {_pct(limit)}"
                                  if name else "no rows"))
    from inferwatch.report import conditions

    flags.append(conditions.schema_errors(state, windows, t, totals, rate_known))
    flags.append(_accuracy(state, windows, t, totals))
    regression = _regression_error(state, windows, t)
    if regression is not None:
        flags.append(regression)
    return flags


def _accuracy(state: ModelState, windows: Windows, t: Thresholds,
              totals: dict[str, float]) -> Flag:
    accuracy_base, known = windows.base(t.accuracy_window_seconds)
    validated = state.validation.get("accuracy")
    # As the rule: the model's own validation accuracy less max_drop, else the floor.
    floor = t.accuracy_min_ratio if validated is None else validated - t.accuracy_max_drop
    if not known:
        return windows.unreached("InferwatchAccuracyDrop", floor, t.accuracy_window_seconds)
    outcomes = _windowed(state, accuracy_base, "outcomes", totals)
    accuracy = _windowed_ratio(state, accuracy_base, "correct", "outcomes", totals)
    enough = outcomes >= t.accuracy_min_outcomes
    against = "" if validated is None else (
        f" (validation accuracy {_pct(validated)} less {t.accuracy_max_drop:g})")
    return _flag("InferwatchAccuracyDrop", accuracy if enough else math.nan,
                 floor, above=False,
                 detail=f"accuracy {_pct(accuracy)} on {outcomes:g} outcomes over "
                        f"{_span(t.accuracy_window_seconds)} (at least "
                        f"{t.accuracy_min_outcomes} needed), threshold "
                        f"{_pct(floor)}{against}")


OUTCOME_ERROR = "inferwatch_outcome_error"
# The ring's totals of the absolute errors joined, where it keeps them.
ERROR_SUM, ERROR_COUNT = f"{OUTCOME_ERROR}_sum", f"{OUTCOME_ERROR}_count"


def _regression_error(state: ModelState, windows: Windows, t: Thresholds) -> Flag | None:
    """InferwatchRegressionErrorRise: the mean absolute error over accuracy.window above the
    version's validation error times accuracy.max_error_ratio, or above accuracy.max_error,
    whichever is lower. None where the rule has nothing to judge: a model that joined no
    absolute error and has no validation error (a classifier), or one with neither bound."""
    from inferwatch.report.model import Flag

    alert = "InferwatchRegressionErrorRise"
    errors = state.histograms.get(OUTCOME_ERROR, {}).get(())
    validated = state.validation.get("mean_absolute_error")
    bounds = [] if validated is None else [validated * t.accuracy_max_error_ratio]
    if t.accuracy_max_error is not None:
        bounds.append(t.accuracy_max_error)
    if (errors is None and validated is None) or not bounds:
        return None
    bound = min(bounds)
    base, known = windows.base(t.accuracy_window_seconds)
    if not known:
        return windows.unreached(alert, bound, t.accuracy_window_seconds)
    total, count = (float(errors.sum), float(errors.count)) if errors is not None else (0.0, 0.0)
    if base is not None:
        if ERROR_SUM not in base.totals or ERROR_COUNT not in base.totals:
            return Flag(alert, NO_DATA, math.nan, bound,
                        f"needs the errors of the last {_span(t.accuracy_window_seconds)}; "
                        f"this process's ring keeps no error totals: see Prometheus")
        total -= base.totals[ERROR_SUM]
        count -= base.totals[ERROR_COUNT]
    # As the rule: the errors' sum over their count in the window, judged from
    # accuracy.min_outcomes of them.
    mean = total / count if count > 0 else math.nan
    enough = count >= t.accuracy_min_outcomes
    against = [] if validated is None else [
        f"validation error {validated:.3g} x {t.accuracy_max_error_ratio:g}"]
    if t.accuracy_max_error is not None:
        against.append(f"ceiling {t.accuracy_max_error:g}")
    return _flag(alert, mean if enough else math.nan, bound, above=True,
                 detail=f"mean absolute error {_number(mean)} on {count:g} outcomes over "
                        f"{_span(t.accuracy_window_seconds)} (at least "
                        f"{t.accuracy_min_outcomes} needed), bound {bound:.3g} "
                        f"({', '.join(against)})")


def _span(seconds: float) -> str:
    """A window as the config writes one.

    >>> _span(3600.0), _span(300.0), _span(90.0), _span(5400.0), _span(0.0)
    ('1h', '5m', '90s', '90m', '0s')
    """
    if not math.isfinite(seconds):
        return "n/a"
    whole = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def _folded(report: ModelReport, state: ModelState) -> tuple[frozenset[str], frozenset[str]]:
    """The features and outputs of `state`'s drift window without a gauge of their own; for
    a state without one (a caller other than the status page, which passes
    ``drift_labels=``), those of the report's in the order given under the default cap."""
    from inferwatch.catalogue import distinct_labels
    from inferwatch.quality.tracker import DEFAULT_MAX_FEATURE_LABELS, folded_names

    drift = state.extras.get("drift")
    reference = getattr(drift, "reference", None)
    max_labels = getattr(drift, "max_labels", None)
    if reference is not None and isinstance(max_labels, int):
        return folded_names(reference, max_labels)
    key = (tuple([d.name for d in report.features]), tuple([d.name for d in report.outputs]))
    found = _folded_by_names.get(key)
    if found is None:
        # Cleaned once per list of names: an index of 1,000 versions of a few references
        # cleaned every name of every version on every load.
        found = tuple(frozenset(name for name, label in  # type: ignore[assignment]
                                zip(names, distinct_labels(names, DEFAULT_MAX_FEATURE_LABELS))
                                if label is None) for names in key)
        if len(_folded_by_names) >= _MAX_FOLDED:
            _folded_by_names.clear()
        _folded_by_names[key] = found  # type: ignore[assignment]
    return found  # type: ignore[return-value]


_MAX_FOLDED = 64
_folded_by_names: dict[tuple[tuple[str, ...], tuple[str, ...]],
                       tuple[frozenset[str], frozenset[str]]] = {}


def _model_stale(trained_at: float, now: float, t: Thresholds,
                 served: bool | None = True) -> Flag:
    """InferwatchModelStale: trained longer than predictions.max_model_age ago, and (as the
    rule gates it) served calls within windows.versions_serving: a version never called, or
    retired by a swap, keeps its training time for as long as the process runs."""
    age = now - trained_at if math.isfinite(trained_at) else math.nan
    if not math.isfinite(age):
        return _flag("InferwatchModelStale", age, t.max_model_age_seconds, above=True,
                     detail="no training time given")
    detail = (f"trained {age / 86400:.1f} days ago, at most "
              f"{t.max_model_age_seconds / 86400:g} allowed")
    window = _span(t.versions_serving_seconds)
    if served is False and age > t.max_model_age_seconds:
        from inferwatch.report.model import Flag

        return Flag("InferwatchModelStale", OK, age, t.max_model_age_seconds,
                    f"{detail}, but no call in the last {window}")
    if served is None and age > t.max_model_age_seconds:
        return _flag("InferwatchModelStale", math.nan, t.max_model_age_seconds, above=True,
                     detail=f"{detail}; whether it served calls in the last {window} is "
                            "further back than this process's ring: see Prometheus")
    return _flag("InferwatchModelStale", age, t.max_model_age_seconds, above=True,
                 detail=detail)


def _rate_ratio(part: float, whole: float) -> float:
    """`part / whole` as PromQL divides two rates: a count over no rows is +Inf (and fires
    any `>` threshold), nothing over nothing is NaN (no data)."""
    if whole > 0:
        return part / whole
    return math.inf if part > 0 else math.nan


def _no_traffic(state: ModelState, history: History | None, now: float,
                t: Thresholds, totals: dict[str, float] | None = None) -> Flag:
    """InferwatchNoTraffic's condition: no call over the rate window, summed over the
    model's versions, where there were calls over the same window `lookback` ago."""
    from inferwatch.core.history import totals_of
    from inferwatch.report.model import Flag

    window, lookback = t.rate_window_seconds, t.no_traffic_lookback_seconds
    reach = lookback + window
    if history is None or now - reach < _oldest_sample(history, state.model):
        return Flag("InferwatchNoTraffic", NO_DATA, math.nan, 0.0,
                    f"needs {reach / 60:g}m of history; this process has less")
    recent = earlier = 0.0
    current_requests = (totals if totals is not None else totals_of(state))["requests"]
    for key in _versions(history, state.model):
        samples = history.samples(key)
        current = current_requests if key == state.key else (
            samples[-1].totals["requests"] if samples else 0.0)
        recent += current - _requests_at(history, key, now - window)
        earlier += _requests_at(history, key, now - lookback) - _requests_at(history, key,
                                                                               now - reach)
    rate = recent / window
    return Flag("InferwatchNoTraffic", FIRING if recent == 0 and earlier > 0 else OK, rate, 0.0,
                f"{rate:.3g} calls/s over {window / 60:g}m across the model's versions, "
                f"{earlier / window:.3g} calls/s {lookback / 60:g}m before")


def _oldest_sample(history: History, model: str) -> float:
    """When the model's oldest sample in the ring was taken (+inf without one)."""
    oldest = math.inf
    for key in _versions(history, model):
        samples = history.samples(key)
        if samples:
            oldest = min(oldest, samples[0].at)
    return oldest


def _versions(history: History, model: str) -> list[tuple[str, str]]:
    """The (model, version) keys of `model` that the ring holds samples of."""
    keys = history.keys()
    return [key for key in keys if key[0] == model]


def _requests_at(history: History, key: tuple[str, str], at: float) -> float:
    sample = history.before(key, at)
    return sample.totals["requests"] if sample is not None else 0.0


def _flag(alert: str, value: float, threshold: float, *, above: bool, detail: str) -> Flag:
    from inferwatch.report.model import Flag

    if math.isnan(value):
        state = NO_DATA
    elif (value > threshold) if above else (value < threshold):
        state = FIRING
    else:
        state = OK
    return Flag(alert, state, value, threshold, detail)


def _both(long_ratio: float, short_ratio: float) -> float:
    """The burn-rate condition holds when both windows exceed: the smaller one decides."""
    if math.isnan(long_ratio) or math.isnan(short_ratio):
        return math.nan
    return min(long_ratio, short_ratio)


def _windowed(state: ModelState, base: Sample | None, key: str,
              totals: dict[str, float] | None = None) -> float:
    """`key`'s total now (`totals`: the state's, read once by the caller) less `base`'s."""
    from inferwatch.core.history import totals_of

    now_value = (totals if totals is not None else totals_of(state))[key]
    return now_value - (base.totals.get(key, 0.0) if base is not None else 0.0)


def _windowed_ratio(state: ModelState, base: Sample | None, part: str, whole: str,
                    totals: dict[str, float] | None = None) -> float:
    if totals is None:
        from inferwatch.core.history import totals_of

        totals = totals_of(state)
    denominator = _windowed(state, base, whole, totals)
    return _windowed(state, base, part, totals) / denominator if denominator > 0 else math.nan


def _worst_feature(state: ModelState, base: Sample | None, metric: str,
                   rows: float) -> tuple[float, str]:
    before = (base.features or {}).get(metric, {}) if base is not None else {}
    worst, name = 0.0, ""
    for labels, value in state.counters.get(metric, {}).items():
        ratio = _rate_ratio(value - before.get(labels[0], 0.0), rows)
        if math.isnan(ratio):
            continue
        if ratio > worst or not name:
            worst, name = ratio, labels[0]
    if name:
        return worst, name
    return (0.0, "(none)") if rows > 0 else (math.nan, "")


def _number(value: float, unit: str = "") -> str:
    """
    >>> _number(0.0123, "s"), _number(float("nan"), "s")
    ('0.0123s', 'n/a')
    """
    # No traffic leaves the quantiles NaN: the page says so in words, not "nans".
    return f"{value:.3g}{unit}" if not math.isnan(value) else "n/a"


def _pct(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return f"{value * 100:.3g}%" if math.isfinite(value) else "n/a"
