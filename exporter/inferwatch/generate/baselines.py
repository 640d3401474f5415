"""Adaptive baselines: each signal judged against its own history, in recording rules.

Fixed thresholds catch step changes; a model without a reference profile can shift its
predictions, swing its class mix or lose half its traffic at peak without crossing any.
For every signal (calls per second, error ratio, latency quantiles, rolling prediction and
confidence quantiles, class shares, per-feature missing and out-of-range ratios, mean batch
size) the rules record, per model (versions are aggregated, so a deploy keeps its history):

- ``value_<window>``: the short-window value the alert looks at;
- ``seasonal``: the seasonal profile, its average around the same time one seasonal offset
  ago (a week ago where a complete week of history exists, else a day ago) less the level
  it had then (:func:`_seasonal`), absent without such history or where its alert was
  pending or firing then;
- ``residual``: value minus seasonal, the value without the shape of its day (or week);
- ``expected``: once the residual covers half the baseline window, the value's trailing
  mean over ``baseline_window`` plus the seasonal profile (a day that is busier all along
  is not an anomaly every hour, and a change is counted once); before that, the trailing
  mean alone. Every trailing statistic ends ``baseline_offset`` before now, so a fault
  building up for hours is not learned as normal while it builds; absent where the
  baseline window holds less than ``min_coverage`` of its values (:func:`_covering`);
- ``sigma``: the trailing standard deviation of the residual once it covers half the window,
  else of the value itself, floored (absolutely and as a share of the expected value) so a
  flat series does not page on a wobble.

The band, expected -+ k x sigma, is not recorded: the alerts and the dashboards compute its
edges from those two series (:func:`band_edge`), so each band keeps five series in
Prometheus' memory (value, seasonal, residual, expected, sigma) rather than nine.

An alert fires when the value leaves the band on its side, the value was already recorded
``min_history`` ago (a ``count_over_time`` guard), and the model serves at least
``min_traffic`` calls per second.

>>> from inferwatch.generate.config import DEFAULT
>>> record(SIGNALS["traffic"], "expected")
'model:inferwatch_baseline_traffic:expected'
>>> value_name(DEFAULT, SIGNALS["missing"])
'model_feature:inferwatch_baseline_missing:value_10m'
>>> len(recording_rules(DEFAULT))  # 4 shared, 9 signals x 4 statistics, 10 values
50
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_schema import Config, Signal
from inferwatch.generate.objectives import is_overridden, threshold_text
from inferwatch.generate.promql import (
    MODEL_LABELS,
    model_sel,
    number,
    objective,
    offset,
    quoted,
    recent_shadow_versions,
    record_name,
)

# The seasonal model (seasonal value plus the residual's trailing mean and deviation) takes
# over once the residual (which needs seasonal history) covers this share of the baseline
# window: before that, a few hours of residual would give a sigma too small to trust.
RESIDUAL_COVERAGE = 0.5


@dataclass(frozen=True)
class SignalSpec:
    """One signal: where its short value comes from and which way its alert looks."""

    key: str  # its section under `baselines` in the config
    alert: str
    level: str  # the level part of its recording rule names
    labels: tuple[str, ...]  # labels beyond model that tell its series apart
    direction: str  # above, below or both: where leaving the band is a fault
    unit: str  # Grafana unit of its panel
    what: str  # how the alert text names it
    dashboard: str
    # The short value over a window: expressions, each with the labels its rule adds.
    values: Callable[[Config, str], list[Any]]
    # Labels of the series that share one scale for the sigma floor's share (empty: each
    # series its own). A prediction quantile near 0 is as noisy as one near 1 of the same
    # output: a share of its own value would give it a band too narrow to hold its wobble.
    scale_by: tuple[str, ...] = ()

    @property
    def by(self) -> str:
        """The labels of one series of this signal."""
        return ", ".join(("model", *self.labels))


def _regex_of(values: tuple[str, ...]) -> str:
    """Label values as one anchored PromQL regex string (quoted, metacharacters escaped)."""
    return quoted("|".join("".join(f"\\{c}" if c in ".^$*+?{}[]\\|()" else c for c in value)
                           for value in values))


def _rate(cfg: Config, counter: str, window: str, by: str = "model", *extra: str) -> str:
    """The rate of `counter` summed by `by` over the versions that serve: a shadow
    challenger scores a sample of the traffic with outputs of its own, and starting or
    stopping one must not move the model's baselines."""
    rates = f"rate({counter}{model_sel(cfg, *extra)}[{window}])"
    return f"sum by ({by}) (\n  {rates}\n  unless on (model, model_version)\n  " \
           f"{shadows_name(window)}\n)"


def shadows_name(window: str) -> str:
    """The recorded versions to leave out of a value over `window`: those that ran as
    shadows within it (:func:`helper_rules`).

    >>> shadows_name("10m")
    'model_version:inferwatch_baseline_shadows:recent10m'
    """
    return record_name("model_version", "inferwatch_baseline_shadows", f"recent{window}")


def calls_name(window: str) -> str:
    """The recorded calls per second of each model's serving versions over `window`: the
    traffic value, the error ratio's denominator and every alert's traffic guard.

    >>> calls_name("10m")
    'model:inferwatch_baseline_calls:rate10m'
    """
    return record_name("model", "inferwatch_baseline_calls", f"rate{window}")


def timed_calls_name(window: str) -> str:
    """The recorded calls per second of each serving version that timed calls over
    `window` (its latency histogram's count), the weight of its latency quantile."""
    return record_name("model_version", "inferwatch_baseline_timed_calls", f"rate{window}")


def helper_rules(cfg: Config) -> list[tuple[str, str]]:
    """The series the signals' rules share, first in the group: per window in use, and the
    checked features once.

    PromQL computes an operand as often as it is written: the shadow versions were read in
    every model-level value (16 times an evaluation at the defaults) and in every alert's
    traffic guard, the model's calls per second in the traffic value, twice in the error
    ratio and in every alert's traffic guard, and each version's latency weight twice in
    each latency quantile, and the features each model checks (10,000 gauge series at
    100 models x 50 features) in both per-feature values. Rules later in the same group,
    and the alerts, read each once recorded. A removed (or dead) shadow's info
    series ends at once, its rates and rolling quantiles only a window later; read by the
    current info alone, they entered the model's baselines, and its history, meanwhile:
    the shadows of a window are those seen in it.

    >>> from inferwatch.generate.config import DEFAULT
    >>> [name for name, _ in helper_rules(DEFAULT)]  # doctest: +NORMALIZE_WHITESPACE
    ['model_version:inferwatch_baseline_shadows:recent10m',
     'model:inferwatch_baseline_calls:rate10m',
     'model_version:inferwatch_baseline_timed_calls:rate10m',
     'model_feature:inferwatch_baseline_features:checked']
    """
    specs = enabled(cfg)
    rules: list[tuple[str, str]] = []
    for window in dict.fromkeys(settings(cfg, spec).window for spec in specs):
        rules.append((shadows_name(window), recent_shadow_versions(cfg, window)))
        rules.append((calls_name(window), _rate(cfg, "inferwatch_requests_total", window)))
    latency = SIGNALS["latency"]
    if latency in specs:
        window = settings(cfg, latency).window
        version_calls = _rate(cfg, "inferwatch_request_duration_seconds_bucket", window,
                              MODEL_LABELS, 'le="+Inf"')
        rules.append((timed_calls_name(window), f"{version_calls} > 0"))
    if any(spec.level == "model_feature" for spec in specs):
        rules.append((CHECKED_FEATURES, _checked_features(cfg)))
    return rules


def _all_versions_rate(cfg: Config, counter: str, window: str, by: str, *extra: str) -> str:
    """As :func:`_rate`, shadows included: for ratios of one version's own rows, where a
    shadow's share of the numerator and of the denominator cancel."""
    return f"sum by ({by}) (rate({counter}{model_sel(cfg, *extra)}[{window}]))"


def _traffic(cfg: Config, window: str) -> list[str]:
    return [calls_name(window)]


def _errors(cfg: Config, window: str) -> list[str]:
    calls = calls_name(window)
    errors = _rate(cfg, "inferwatch_requests_total", window, "model", 'outcome="error"')
    # A model that never failed has no error series: its ratio is 0, not absent, so its
    # history starts with its traffic.
    return [f"(\n  {_indent(errors, 2)}\n  or\n  {calls} * 0\n)\n/\n{calls}"]


def _latency(cfg: Config, window: str) -> list[Any]:
    # Each version's quantile from its own buckets, then their mean weighted by its calls.
    # Buckets summed across versions are cumulative only where every version has the same
    # bounds: a rollout with other latency buckets put version 1's le="0.05" beside version
    # 2's le="0.04", and the model's p99 jumped for as long as both served. One version
    # gives its own quantile; versions without calls in the window weigh nothing.
    bucket = "inferwatch_request_duration_seconds_bucket"
    buckets = _rate(cfg, bucket, window, "model, model_version, le")
    calls = timed_calls_name(window)  # each version's, where it timed calls (helper_rules)
    # One rule per quantile, told apart by a rule label (promtool's lint sees those).
    return [(f"sum by (model) (\n  histogram_quantile({q}, {_indent(buckets, 2)})\n"
             f"  * on ({MODEL_LABELS})\n  {calls}\n)\n/\n"
             f"sum by (model) ({calls})", {"quantile": q})
            for q in cfg.baselines.latency_quantiles]


def _summary(metric: str, labels: str, quantiles: tuple[str, ...]) -> Callable[[Config, str],
                                                                                   list[str]]:
    def values(cfg: Config, window: str) -> list[str]:
        # The mean of the replicas' rolling quantiles: not a quantile of the merged stream,
        # but stable, and what moves when the model's outputs move.
        chosen = getattr(cfg.baselines, quantiles)
        selected = model_sel(cfg, f"quantile=~{_regex_of(chosen)}")
        # A replica without calls in its rolling window exposes NaN quantiles: left out
        # here, or one idle replica (a standby, a draining old version) makes the model's
        # mean NaN, a gap, and hides what the serving replicas do.
        return [f"# quantiles {', '.join(chosen)}\n"
                f"avg by ({labels}) (\n  avg_over_time({metric}{selected}[{window}]) >= -Inf\n"
                f"  unless on (model, model_version)\n  {shadows_name(window)}\n)"]

    return values  # type: ignore[return-value]


def _class_shares(cfg: Config, window: str) -> list[str]:
    counter = "inferwatch_predicted_class_total"
    own = settings(cfg, SIGNALS["classes"])
    # A version that never predicts a class (a deploy or a restart after which the model
    # stops predicting it) never creates its counter: the share would vanish instead of
    # falling to 0, and the collapse would go unseen. A class with a share within the
    # baseline window reads 0 while the model predicts others.
    seen = f"max_over_time({value_name(cfg, SIGNALS['classes'])}[{own.baseline_window}]) > 0"
    return [f"(\n  {_indent(_rate(cfg, counter, window, 'model, class'), 2)}\n  or\n"
            f"  0 * ({seen})\n)\n/ on (model) group_left\n{_rate(cfg, counter, window)}"]


# Per-feature gauges every feature of a model's reference has, whether or not it ever
# counted a missing or out-of-range value.
CHECKED_FEATURE_GAUGES = ("inferwatch_feature_drift_observations", "inferwatch_feature_drift")
# The drift score read of those (the observations gauge has no method: the empty match).
CHECKED_METHOD = "psi"
# Each model's checked features, 1 each (helper_rules): what a per-feature ratio reads as 0
# until the feature counts something.
CHECKED_FEATURES = record_name("model_feature", "inferwatch_baseline_features", "checked")


def _allowed_features(cfg: Config) -> tuple[str, ...]:
    features = cfg.baselines.features
    return (f"feature=~{_regex_of(features)}",) if features else ()


def _checked_features(cfg: Config) -> str:
    """The features of each model's reference, within `baselines.features`.

    The exporter creates a feature's counter at its first missing (or out-of-range) value:
    a feature never missing had no series, so no history, and the day it started missing
    could not page until the fault was its baseline. Every feature of the model's reference
    has drift gauges (the observations gauge from the start, the scores, all an exporter
    before 0.2 has, once it has rows). One score per feature: the three methods' scores
    come and go together, and each series selected is read at every evaluation (20,000
    more for 5,000 features).
    """
    checked = model_sel(cfg, f"__name__=~{quoted('|'.join(CHECKED_FEATURE_GAUGES))}",
                        f"method=~{quoted(CHECKED_METHOD + '|')}", *_allowed_features(cfg))
    return f"group by (model, feature) ({checked})"


def _feature_ratio(counter: str) -> Callable[[Config, str], list[str]]:
    def values(cfg: Config, window: str) -> list[str]:
        allowed = _allowed_features(cfg)
        # Per feature, 5,000 series for 100 models x 50 features: a join with the shadows
        # would cost every evaluation more, and a shadow scoring a sample of the same inputs
        # moves a missing or out-of-range ratio no more than the sampling does.
        rows = _all_versions_rate(cfg, "inferwatch_batch_size_sum", window, "model")
        # A checked feature's ratio reads 0 until it counts something (_checked_features).
        return [f"(\n  {_all_versions_rate(cfg, counter, window, 'model, feature', *allowed)}"
                f"\n  or\n  0 * {CHECKED_FEATURES}\n)\n"
                f"/ on (model) group_left\n{rows}"]

    return values


def _batch_size(cfg: Config, window: str) -> list[str]:
    return [f"{_rate(cfg, 'inferwatch_batch_size_sum', window)}\n/\n"
            f"{_rate(cfg, 'inferwatch_batch_size_count', window)}"]


SIGNALS: dict[str, SignalSpec] = {spec.key: spec for spec in (
    SignalSpec("traffic", "InferwatchTrafficAnomaly", "model", (), "both", "reqps",
               "Calls per second", "overview", _traffic),
    SignalSpec("errors", "InferwatchErrorRatioAnomaly", "model", (), "above", "percentunit",
               "Error ratio", "overview", _errors),
    SignalSpec("latency", "InferwatchLatencyAnomaly", "model", ("quantile",), "above", "s",
               "Latency quantile {{ $labels.quantile }}", "overview", _latency),
    SignalSpec("batch_size", "InferwatchBatchSizeAnomaly", "model", (), "both", "short",
               "Mean batch size", "overview", _batch_size),
    SignalSpec("predictions", "InferwatchPredictionShift", "model_output",
               ("output", "quantile"), "both", "short",
               "Prediction quantile {{ $labels.quantile }} of output {{ $labels.output }}",
               "quality", _summary("inferwatch_prediction", "model, output, quantile",
                                   "prediction_quantiles"), scale_by=("model", "output")),
    SignalSpec("classes", "InferwatchClassMixShift", "model_class", ("class",), "both",
               "percentunit", "Share of class {{ $labels.class }}", "quality", _class_shares),
    SignalSpec("confidence", "InferwatchConfidenceDrop", "model", ("quantile",), "below",
               "percentunit", "Confidence quantile {{ $labels.quantile }}", "quality",
               _summary("inferwatch_prediction_confidence", "model, quantile",
                        "confidence_quantiles")),
    SignalSpec("missing", "InferwatchMissingRateAnomaly", "model_feature", ("feature",),
               "above", "percentunit", "Missing rate of feature {{ $labels.feature }}",
               "quality", _feature_ratio("inferwatch_feature_missing_total")),
    SignalSpec("out_of_range", "InferwatchOutOfRangeAnomaly", "model_feature", ("feature",),
               "above", "percentunit", "Out-of-range rate of feature {{ $labels.feature }}",
               "quality", _feature_ratio("inferwatch_feature_out_of_range_total")),
)}

GROUP = "inferwatch-baseline-recording"


def settings(cfg: Config, spec: SignalSpec) -> Signal:
    """The config section of one signal."""
    return getattr(cfg.baselines, spec.key)


def enabled(cfg: Config) -> list[SignalSpec]:
    """The signals switched on, in table order."""
    return [spec for spec in SIGNALS.values() if settings(cfg, spec).enabled]


def record(spec: SignalSpec, operation: str) -> str:
    """A baseline recording rule name of a signal."""
    return record_name(spec.level, f"inferwatch_baseline_{spec.key}", operation)


def value_name(cfg: Config, spec: SignalSpec) -> str:
    """The recording rule of a signal's short value."""
    return record(spec, f"value_{settings(cfg, spec).window}")


def _seasonal(cfg: Config, spec: SignalSpec) -> str | None:
    """The seasonal profile: how far the value stood, around the same time one seasonal
    offset ago, from a level of that time.

    A level carried over from a day ago counted a change twice: a launch that persisted was
    in yesterday's value and in the residual's trailing mean, and paged again a day later.
    For an offset within the baseline window (a day ago), the level is the value's mean
    over a baseline window centred on that time: the profile carries the shape of the day
    and no level, and a step in the middle of that day is split around it rather than
    repeated whole. A longer offset (a week ago) is there to carry what differs between
    whole days (a quiet Saturday after a busy Friday): its level is the trailing mean as
    it stood then, which a centred day would take out with the weekday. An hour whose alert
    was pending or firing then is no profile (yesterday's incident is not today's normal):
    the plain trailing mean stands in for it.
    """
    own = settings(cfg, spec)
    value = value_name(cfg, spec)
    window = cfg.baselines.seasonal_window
    half, day = duration_seconds(window) / 2, duration_seconds(own.baseline_window)
    offsets = cfg.baselines.seasonal_offsets
    alerts = f"ALERTS{{alertname={quoted(spec.alert)}}}"
    terms: list[str] = []
    alerting: list[str] = []
    for position, name in enumerate(offsets):
        ago = duration_seconds(name)
        if ago > day:
            reference_end = ago + duration_seconds(own.baseline_offset)
        else:
            # A day centred on the seasonal time, or, for an offset shorter than half of
            # it, the day up to now.
            reference_end = max(0.0, ago - day / 2)
        reference_start = max(reference_end + day, ago + day / 2)
        reference = (f"avg_over_time({value}[{duration_text(reference_start - reference_end)}]"
                     f"{offset(duration_text(reference_end))})")
        term = (f"avg_over_time({value}[{window}]{offset(duration_text(ago - half))})"
                f"  # {name} ago\n- {reference}")
        if position < len(offsets) - 1:
            # A longer offset takes over from a shorter one at once, before its day is
            # complete: a mean over part of a day is no level. (The shortest one starts
            # the seasonal model only once the residual covers half the window.)
            start = duration_text(reference_start - half)
            term = f"(\n  {_indent(term, 2)}\n)\nand on ({spec.by})\n" \
                   f"count_over_time({value}[{window}]{offset(start)})"
        # An alerting hour at this offset, or at a longer one, leaves the term out: the
        # shorter offset standing in for a longer one would be the model that could not
        # tell that hour apart before (a first week's quiet Saturday, judged by Friday,
        # would page every Saturday after).
        alerting.append(f"count_over_time({alerts}[{window}]"
                        f"{offset(duration_text(ago - half))})")
        terms.append(f"(\n  {_indent(term, 2)}\n)" + "".join(
            f"\nunless on ({spec.by})\n{check}" for check in alerting))
    return "\nor\n".join(f"(\n  {_indent(term, 2)}\n)" for term in terms) if terms else None


def duration_text(seconds: float) -> str:
    """Seconds as a Prometheus duration (whole milliseconds, largest units first).

    >>> duration_text(604800 - 1800), duration_text(0.5)
    ('6d23h30m', '500ms')
    """
    # Milliseconds, not seconds: half of a sub-second or odd-second window rounded to whole
    # seconds may be 0s, which Prometheus refuses as an offset, or an offset off its centre.
    millis = round(seconds * 1000)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000),
                       ("ms", 1)):
        if millis >= size:
            parts.append(f"{millis // size}{unit}")
            millis %= size
    return "".join(parts) or "0s"


def residual_lag(own: Signal) -> str:
    """How long ago the residual must already have been recorded for the seasonal model to
    take over: half the baseline window before the trailing window ends. A sum of two
    settings, so the config checks it against Prometheus' longest duration.

    >>> residual_lag(Signal(baseline_window="1d", baseline_offset="3h"))
    '15h'
    """
    return duration_text(duration_seconds(own.baseline_window) * RESIDUAL_COVERAGE
                     + duration_seconds(own.baseline_offset))


def signal_rules(cfg: Config, spec: SignalSpec) -> list[tuple[str, str]]:
    """The recording rules of one signal, in evaluation order, as (name, expression)."""
    return [(name, expr) for name, expr, _ in _signal_rules(cfg, spec)]


def _signal_rules(cfg: Config, spec: SignalSpec) -> list[tuple[str, str, dict[str, str]]]:
    own = settings(cfg, spec)
    value, bw = value_name(cfg, spec), own.baseline_window
    seasonal, expected, residual = (record(spec, name) for name in
                                    ("seasonal", "expected", "residual"))
    lag = offset(own.baseline_offset)
    values = [v if isinstance(v, tuple) else (v, {}) for v in spec.values(cfg, own.window)]
    rules = [(value, _without_nan(expr)) for expr, _ in values]
    mean = trailing_mean(cfg, spec)
    stddev = f"stddev_over_time({value}[{bw}]{lag})"
    seasonal_expr = _seasonal(cfg, spec) if own.seasonal else None
    if seasonal_expr:
        # The residual was already recorded half a baseline window before the window ends:
        # it covers enough of the window to trust (a look at one short window, not a count
        # over a day).
        covered = f"count_over_time({residual}[{_covered_window(own)}]" \
                  f"{offset(residual_lag(own))}) > 0"
        rules += [
            (seasonal, seasonal_expr),
            (residual, f"{value} - {seasonal}"),
            # The trailing mean with the seasonal profile: today's level (a day busier than
            # the same day last week all along is not an anomaly at every hour of it) with
            # the shape of the day. Both read the value itself: a profile measured from the
            # trailing mean as it stood a week ago is exact for a weekly pattern only
            # against the trailing mean of the value now.
            (expected, _covering(cfg, spec,
                                 _plus_where_present(mean, f"{seasonal}\nand\n{covered}"))),
        ]
        # The residual's deviation only where expected is the seasonal value plus its mean:
        # without a seasonal value (the same hour yesterday was an outage), expected is the
        # trailing mean, which swings with the time of day, and needs the value's own
        # deviation; the residual's would page every normal peak.
        stddev = (f"(\n  stddev_over_time({residual}[{bw}]{lag})\n  and\n  {covered}\n"
                  f"  and\n  {seasonal}\n)\nor\n{stddev}")
    else:
        rules.append((expected, _covering(cfg, spec, mean)))
    floor_share = _floor_share(spec, number(own.sigma_floor_ratio), expected)
    # The larger of the deviation and the floor's share, the share alone where there is no
    # deviation yet: `deviation >= share or share` read the expected value twice.
    larger = (f"max without (part) (\n  {_indent(_tagged(stddev, 'deviation'), 2)}\n  or\n"
              f"  {_indent(floor_share, 2)}\n)")
    rules.append((record(spec, "sigma"),
                  f"clamp_min(\n  {_indent(larger, 2)},\n  {number(own.sigma_floor)}\n)"))
    labels = [extra for _, extra in values] + [{}] * (len(rules) - len(values))
    return [(name, expr, extra) for (name, expr), extra in zip(rules, labels)]


def _covering(cfg: Config, spec: SignalSpec, expected: str) -> str:
    """`expected` where the baseline window holds at least ``min_coverage`` of the values it
    can hold (one per evaluation interval), so that there is no band, and no alert, where
    a short canary at this hour yesterday left a few samples: their deviation is no band.

    A model-level signal counts its own values (100 to 400 series for 100 models). A
    per-feature one counts the model's calls per second (the traffic value) where that
    signal is on: counting each of 50 features' series read a day of 5,000 series once
    more, and cost about as much as the per-feature statistics themselves. A coverage of 0
    leaves the count out.
    """
    own = settings(cfg, spec)
    if not own.min_coverage:
        return expected
    slots = duration_seconds(own.baseline_window) / duration_seconds(
        cfg.baselines.evaluation_interval)
    # At least one value; a float product just above a whole number (0.07 x 100 is
    # 7.000000000000001) must not ask for one value more than the share says.
    needed = max(1, math.ceil(round(own.min_coverage * slots, 9)))
    counted, join = value_name(cfg, spec), ""
    traffic = SIGNALS["traffic"]
    if spec.level == "model_feature" and settings(cfg, traffic).enabled:
        counted, join = value_name(cfg, traffic), " on (model)"
    return (f"{expected}\nand{join}\ncount_over_time({counted}"
            f"[{own.baseline_window}]{offset(own.baseline_offset)}) >= {needed}"
            f"  # min_coverage {number(own.min_coverage)} of {own.baseline_window}")


def _tagged(expr: str, part: str) -> str:
    """`expr` with a label ``part`` that tells its series apart from the same series of
    another expression in an ``or`` (aggregated away after it)."""
    return f'label_replace(\n  {_indent(expr, 2)},\n  "part", "{part}", "", ""\n)'


def _plus_where_present(base: str, addend: str) -> str:
    """`base`, plus `addend` on the series that have it: each read once.

    `base + addend or base` evaluates `base`, a trailing statistic over a day of samples,
    twice (PromQL computes each operand, however often it is repeated); the sum of the two,
    told apart by a label, reads it once. An `addend` series without a `base` one would be
    summed alone: each caller's `addend` implies its `base` (:func:`_covered_window`).
    """
    return (f"sum without (part) (\n  {_indent(base, 2)}\n  or\n"
            f"  {_indent(_tagged(addend, 'seasonal'), 2)}\n)")


def _covered_window(own: Signal) -> str:
    """The window of the look at the residual, ``residual_lag`` ago, that tells whether the
    seasonal model covers enough history: the short window, or half the baseline window if
    shorter, so that a residual seen in it (and the value it was computed from) lies inside
    the trailing window, and the trailing mean exists wherever the look finds one."""
    return duration_text(min(duration_seconds(own.window),
                             duration_seconds(own.baseline_window) * RESIDUAL_COVERAGE))


def _floor_share(spec: SignalSpec, ratio: str, expected: str) -> str:
    """The sigma floor's share: `ratio` of the expected value, or, for a signal with a
    `scale_by`, of the largest expected value among the series it groups.

    A probability's median near 0 (0.015) against a share of its own value made a band of
    +-0.003 at k=3, narrower than the wobble of a rolling quantile: a steady classifier
    paged. The output's scale (its p90 near 1) keeps the floor in proportion to what the
    output can do, and a price's quantiles, all of one order, keep about the floor they had.
    """
    if not spec.scale_by:
        return f"{ratio} * abs({expected})"
    by = ", ".join(spec.scale_by)
    # 0 x expected gives each series its own labels; the scale is joined on the shared ones.
    return (f"(\n  0 * {expected}\n  + on ({by}) group_left ()\n"
            f"  {ratio} * max by ({by}) (abs({expected}))\n)")


def _without_nan(expr: str) -> str:
    """`expr` without its NaN and infinite samples.

    A ratio or a quantile of a model with no calls in the window is 0/0, NaN, and one NaN
    sample makes every avg_over_time and stddev_over_time over it NaN: half an hour of quiet
    at night would leave the band NaN, and the alert blind, for a whole baseline window, and
    the seasonal value too a week later. Left out instead, the quiet minutes are a gap.
    A ratio whose numerator moved in a window where its denominator did not (a missing
    count scraped out of step with the rows, at night) is +Inf, which does the same to the
    trailing mean and deviation: no signal has a meaningful infinite value, so both go.
    """
    return f"(\n  {_indent(expr, 2)}\n) > -Inf < +Inf"


def _indent(text: str, spaces: int) -> str:
    return text.replace("\n", "\n" + " " * spaces)


def trailing_mean(cfg: Config, spec: SignalSpec) -> str:
    """The value's mean over the baseline window, ending ``baseline_offset`` ago."""
    own = settings(cfg, spec)
    return (f"avg_over_time({value_name(cfg, spec)}[{own.baseline_window}]"
            f"{offset(own.baseline_offset)})")


def band_edge(cfg: Config, spec: SignalSpec, side: str, selector: str = "") -> str:
    """The lower or upper edge of a signal's band, expected -+ k x sigma, of the series
    `selector` picks (a PromQL label selector, braces included).

    >>> from inferwatch.generate.config import DEFAULT
    >>> band_edge(DEFAULT, SIGNALS["traffic"], "upper")
    '(model:inferwatch_baseline_traffic:expected + 3 * model:inferwatch_baseline_traffic:sigma)'
    """
    sign = {"lower": "-", "upper": "+"}[side]
    expected, sigma = (record(spec, name) + selector for name in ("expected", "sigma"))
    return f"({expected} {sign} {_band_width(cfg, spec, sigma)})"


def k_key(spec: SignalSpec) -> str:
    """The config key of a signal's sensitivity, which a `models:` entry may override."""
    return f"baselines.{spec.key}.k"


def _band_width(cfg: Config, spec: SignalSpec, sigma: str) -> str:
    """k x sigma: k a number, or each model's own from its objective series where some model
    overrides it (one join, however many models do)."""
    if not is_overridden(cfg, k_key(spec)):
        return f"{number(settings(cfg, spec).k)} * {sigma}"
    return f"{sigma} * on (model) group_left () {objective(k_key(spec))}"


def recording_rules(cfg: Config) -> list[tuple[str, str]]:
    """The shared series and every enabled signal's recording rules, in group order."""
    return helper_rules(cfg) + [rule for spec in enabled(cfg)
                                for rule in signal_rules(cfg, spec)]


def recording_groups(cfg: Config) -> list[dict[str, object]]:
    """The baseline recording group, evaluated at its own interval (none when all are off)."""
    rules = [{"record": name, "expr": expr} for name, expr in helper_rules(cfg)]
    rules += [{"record": name, "expr": expr, **({"labels": labels} if labels else {})}
              for spec in enabled(cfg) for name, expr, labels in _signal_rules(cfg, spec)]
    if not rules:
        return []
    return [{"name": GROUP, "interval": cfg.baselines.evaluation_interval, "rules": rules}]


def alert_expr(cfg: Config, spec: SignalSpec) -> str:
    """The alert of a signal: outside its band, with enough history and traffic."""
    own = settings(cfg, spec)
    value = value_name(cfg, spec)
    lower, upper = (band_edge(cfg, spec, side) for side in ("lower", "upper"))
    outside = {"above": [f"{value} > {upper}"],
               "below": [f"{value} < {lower}"],
               "both": [f"{value} < {lower}", f"{value} > {upper}"]}[spec.direction]
    band = outside[0] if len(outside) == 1 else "(\n  " + "\n  or\n  ".join(outside) + "\n)"
    history = f"count_over_time({value}[{own.window}]{offset(own.min_history)}) > 0"
    if spec.key == "traffic":
        # Traffic guards itself on its history: a drop to nothing must still fire.
        traffic = f"{trailing_mean(cfg, spec)} >= {number(own.min_traffic)}"
    else:
        traffic = f"{calls_name(own.window)} >= {number(own.min_traffic)}"
    return (f"{band}\nand on ({spec.by})\n{history}\n"
            f"and on (model)\n{traffic}")


def _query(spec: SignalSpec, expression: Callable[[str], str]) -> str:
    """Alert text that queries `expression` (a function of a label selector) for the series
    of the alert's own labels."""
    matchers = "{" + ", ".join(f"{label}=%q" for label in ("model", *spec.labels)) + "}"
    text = expression(matchers)
    args = " ".join(f"$labels.{label}" for label in ("model", *spec.labels))
    return (f"{{{{ with printf `{text}` {' '.join([args] * text.count(matchers))} | query }}}}"
            f'{{{{ . | first | value | printf "%.3g" }}}}{{{{ end }}}}')


def alert_description(cfg: Config, spec: SignalSpec) -> str:
    """What the alert says: the value and its expected band, from the series it compared."""
    own = settings(cfg, spec)
    side = {"above": "above", "below": "below", "both": "outside"}[spec.direction]
    return (f"{spec.what} of model {{{{ $labels.model }}}} is "
            f'{{{{ printf "%.3g" $value }}}} over {own.window}, {side} its expected band '
            f"{_query(spec, lambda sel: band_edge(cfg, spec, 'lower', sel))} to "
            f"{_query(spec, lambda sel: band_edge(cfg, spec, 'upper', sel))} (expected "
            f"{_query(spec, lambda sel: record(spec, 'expected') + sel)} +- "
            f"{threshold_text(cfg, k_key(spec))} sigma of its own "
            f"{own.baseline_window} history).")


def alert_summary(spec: SignalSpec) -> str:
    """The one-line summary of a signal's alert."""
    side = {"above": "rose above", "below": "fell below", "both": "left"}[spec.direction]
    return f"{spec.what} of model {{{{ $labels.model }}}} {side} its expected band"
