"""Checks between the settings of a built config: values each valid alone that cannot work
together.

A burn factor the error budget makes unreachable, a drift threshold its method never reaches,
windows shorter than what they are compared with or than two scrapes, a selector that misses
the job the monitors give their targets (or a job and selector that follow each other where
the file renames only one). Apart from the checks of single values
(config_checks) because each needs the whole config: they run once it is built, for the top
level and for each models: entry.

>>> given({"kubernetes": {"model_job": "serving"}}, "kubernetes.model_job")
True
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from typing import Any

from inferwatch.generate import config_checks as check
from inferwatch.generate.baselines import residual_lag
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_schema import (
    Baselines,
    BurnRate,
    Config,
    ConfigError,
    Drift,
    ModelOverride,
    Signal,
    setting,
    with_values,
)
from inferwatch.generate.promql import quoted
from inferwatch.generate.re2 import Unsupported, matches
from inferwatch.generate.rules_alerts import ALERTS


def check_cross_fields(cfg: Config) -> None:
    """Refuse settings valid alone that cannot work together: a burn rate's factor and
    windows, the drift thresholds, the thresholds that never fire, and the baselines."""
    budget = 1 - cfg.slo.availability
    for name in ("fast_burn", "slow_burn"):
        burn: BurnRate = getattr(cfg.slo, name)
        # The alert fires on an error ratio above factor x budget: at exactly 1 it would need
        # more than every call failing, so it never fires either.
        if burn.factor * budget >= 1:
            raise ConfigError(f"slo.{name}.factor", f"{burn.factor} x the error budget "
                              f"{budget:g} reaches an error ratio of 1, so the alert could never "
                              f"fire")
        if duration_seconds(burn.short_window) >= duration_seconds(burn.long_window):
            raise ConfigError(f"slo.{name}.short_window", "must be shorter than long_window")
    _check_drift_thresholds(cfg.drift)
    _check_never_firing_thresholds(cfg)
    _check_baselines(cfg.baselines)


# Thresholds on ratios that cannot leave 0..1, at the one end where the alert's comparison
# can never hold: (dotted key, the comparison of the alert, the value that never fires).
# predictions.invalid_ratio is left out: a row of several outputs may hold several invalid
# values, so its ratio may exceed 1; so is data_quality.schema_error_ratio: a call of many rows
# counts a missing column once per row; so is shadow.max_drop_ratio: a call sampled before the
# window may be dropped within it, and with nothing sampled the ratio is +Inf.
NEVER_FIRING_THRESHOLDS = (
    ("data_quality.missing_ratio", ">", 1.0),
    ("data_quality.out_of_range_ratio", ">", 1.0),
    ("shadow.min_agreement", "<", 0.0),
    ("shadow.max_error_ratio", ">", 1.0),
    ("shadow.min_accuracy_gain", ">", 1.0),
    ("gpu.memory_used_ratio", ">", 1.0),
)


def _check_never_firing_thresholds(cfg: Config) -> None:
    for key, op, never in NEVER_FIRING_THRESHOLDS:
        value = setting(cfg, key)
        if value == never:
            bound = "above" if op == ">" else "below"
            raise ConfigError(key, f"must be {'below 1' if op == '>' else 'above 0'}: the "
                              f"alert fires on a ratio {bound} it, which a ratio between 0 and "
                              f"1 never is, got {value!r}")


# The drift methods whose statistic lies in [0, 1] (docs/drift.md): the alerts fire on a
# value above the threshold, so a threshold of 1 or more never fires.
BOUNDED_DRIFT_METHODS = ("js", "ks")


def _check_drift_thresholds(drift: Drift) -> None:
    if drift.method not in BOUNDED_DRIFT_METHODS:
        return
    for name in ("feature_threshold", "prediction_threshold"):
        threshold = getattr(drift, name)
        if threshold >= 1:
            raise ConfigError(f"drift.{name}", f"must be below 1 with drift.method "
                              f"{drift.method}, whose distance lies between 0 and 1, or the "
                              f"alert could never fire, got {threshold!r}")


# Prometheus' default lookback: an alert group reading the baseline series of another group
# at the same interval sees the latest sample only while it is younger than this.
LOOKBACK_SECONDS = 300


# The signals recorded per quantile, and the lists naming their quantiles.
SIGNAL_QUANTILES = {"latency": "latency_quantiles", "predictions": "prediction_quantiles",
                     "confidence": "confidence_quantiles"}


def _check_quantile_lists(baselines: Baselines) -> None:
    for signal, listed in SIGNAL_QUANTILES.items():
        if getattr(baselines, signal).enabled and not getattr(baselines, listed):
            raise ConfigError(f"baselines.{listed}", f"must hold at least one quantile while "
                              f"baselines.{signal} is enabled")


def _check_baselines(baselines: Baselines) -> None:
    _check_quantile_lists(baselines)
    if duration_seconds(baselines.evaluation_interval) > LOOKBACK_SECONDS:
        raise ConfigError("baselines.evaluation_interval", "must be 5m or less: the baseline "
                          "alerts read the series recorded at the previous evaluation, which "
                          "Prometheus only sees for 5m")
    half_window = duration_seconds(baselines.seasonal_window) / 2
    seen: dict[float, str] = {}
    for offset in baselines.seasonal_offsets:
        earlier = seen.get(duration_seconds(offset))
        seen[duration_seconds(offset)] = offset
        if earlier is not None:
            # The second term of the `or` reads the very same samples: it is never a fallback
            # with more history, only a mistake (a 1d meant as 1w) that costs a whole query.
            raise ConfigError("baselines.seasonal_offsets", f"lists one offset twice "
                              f"({earlier!r} and {offset!r})")
        if duration_seconds(offset) <= half_window:
            raise ConfigError("baselines.seasonal_offsets", f"{offset} must be longer than half "
                              f"of seasonal_window ({baselines.seasonal_window}), which is "
                              f"centred on it")
    for spec in dataclasses.fields(baselines):
        signal = getattr(baselines, spec.name)
        if isinstance(signal, Signal) and (duration_seconds(signal.window)
                                           >= duration_seconds(signal.baseline_window)):
            raise ConfigError(f"baselines.{spec.name}.window", "must be shorter than "
                              "baseline_window")


_VERSIONS_SERVING = "InferwatchTooManyVersionsServing"


def _check_versions_serving(cfg: Config, serving_for: str, for_key: str | None = None) -> None:
    """Refuse windows.versions_serving as long as the alert's `for` (at `for_key`, where a
    models: entry sets it, else the window is named)."""
    window = cfg.windows.versions_serving
    if serving_for and duration_seconds(window) >= duration_seconds(serving_for):
        # A retired version counts for the window after its last call: with a window as long
        # as the `for`, every rollout whose versions overlap for a moment would fire.
        if for_key is not None:
            raise ConfigError(for_key, f"{serving_for} must be longer than "
                              f"windows.versions_serving ({window}), or every rollout fires "
                              f"{_VERSIONS_SERVING}")
        raise ConfigError("windows.versions_serving", f"{window} must be shorter than "
                          f"{_VERSIONS_SERVING}'s for ({serving_for}), or every rollout fires it")


def check_model_alerts(cfg: Config, override: ModelOverride) -> None:
    """Refuse a `models:` entry's alert `for` that the top-level one would be refused for:
    its copy of the alert waits that long, for its models."""
    own = override.alerts.get(_VERSIONS_SERVING)
    if own is not None and own.for_ is not None:
        _check_versions_serving(with_values(cfg, override.values), own.for_,
                                f"alerts.{_VERSIONS_SERVING}.for")


def _alert_for(cfg: Config, name: str) -> str:
    """The `for` of alert `name`: its override in ``alerts:``, else the alert's own."""
    override = cfg.alerts.get(name)
    if override is not None and override.for_ is not None:
        return override.for_
    return next(alert.for_ for alert in ALERTS if alert.name == name)


def check_window_lengths(cfg: Config) -> None:
    """Windows too short for what they are compared with. Checked after the windows against
    the scrape interval: a window under two scrapes is the first thing to fix."""
    if duration_seconds(cfg.windows.no_traffic_lookback) < duration_seconds(cfg.windows.rate):
        # InferwatchNoTraffic compares the rate now with the rate a lookback ago: a shorter
        # lookback reads an overlapping window, so both hold the same calls.
        raise ConfigError("windows.no_traffic_lookback", f"{cfg.windows.no_traffic_lookback} "
                          f"must be at least windows.rate ({cfg.windows.rate}), or the traffic "
                          f"it looks back at overlaps the traffic of now")
    _check_versions_serving(cfg, _alert_for(cfg, _VERSIONS_SERVING))
    _check_derived_durations(cfg)
    baselines = cfg.baselines
    interval = duration_seconds(baselines.evaluation_interval)
    signals = {spec.name: getattr(baselines, spec.name) for spec in dataclasses.fields(baselines)
               if isinstance(getattr(baselines, spec.name), Signal)}
    for name, signal in signals.items():
        # The alert and the expected value read the recorded short value over `window`
        # (count_over_time, avg_over_time): it is recorded once per evaluation interval, so a
        # shorter window often holds no sample and the alert may never fire.
        if signal.enabled and duration_seconds(signal.window) < interval:
            raise ConfigError(f"baselines.{name}.window", f"{signal.window} must be at least "
                              f"baselines.evaluation_interval ({baselines.evaluation_interval}), "
                              f"the interval its value is recorded at, or the window often "
                              f"holds no sample and the alert may never fire")
    seasonal = any(signal.enabled and signal.seasonal for signal in signals.values())
    if (seasonal and baselines.seasonal_offsets
            and duration_seconds(baselines.seasonal_window) < interval):
        raise ConfigError("baselines.seasonal_window", f"{baselines.seasonal_window} must be at "
                          f"least baselines.evaluation_interval "
                          f"({baselines.evaluation_interval}), the interval the values it "
                          f"averages are recorded at, or it often holds none")


def _check_derived_durations(cfg: Config) -> None:
    # Each setting alone is held to Prometheus' longest duration; a duration the rules write
    # as a sum of settings must be too, or every rule file holding it fails to load.
    for spec in dataclasses.fields(cfg.baselines):
        signal = getattr(cfg.baselines, spec.name)
        if not isinstance(signal, Signal) or not signal.enabled:
            continue
        if check.duration_or_zero(residual_lag(signal)) is not None:
            key = f"baselines.{spec.name}"
            raise ConfigError(f"{key}.baseline_offset", f"{signal.baseline_offset} plus half of "
                              f"{key}.baseline_window ({signal.baseline_window}) is longer than "
                              f"Prometheus' longest duration (about 292y): the rules look that "
                              f"far back for the residual, and Prometheus refuses them")


# A rate needs two samples in its window, and Prometheus extrapolates only over a few
# scrapes: docs/configuration.md promises windows.rate at least this many scrape intervals.
RATE_SCRAPES = 4


# Each selector's default is its monitor's default job: (selector key, job key).
JOB_SELECTORS = (("selectors.model", "kubernetes.model_job"),
                 ("selectors.exporter", "kubernetes.exporter_job"))
# The manifest that gives the targets of each job key their job label.
_JOB_MONITORS = {"kubernetes.model_job": "ServiceMonitor",
                 "kubernetes.exporter_job": "PodMonitor"}


def with_job_selectors(cfg: Config, data: Mapping) -> Config:
    """`cfg` whose job and selector follow each other where the file renames only one: a
    selector left unset follows a renamed job, and a job left unset follows the one job a
    renamed selector names. Keeping the default of the other would leave the rules reading no
    series of the targets the monitor labels.

    Derived rather than refused: a file that renames only the job, or only the selector's
    job, states what its targets are called, and the other follows from it alone. Where the
    file sets both, the selector is checked against the job instead; a selector naming no
    single job (a regex, only other labels) leaves the job as it is.

    >>> from inferwatch.generate.config import from_dict
    >>> from_dict({"selectors": {"model": 'job="ml", cluster="eu"'}}).kubernetes.model_job
    'ml'
    >>> from_dict({"kubernetes": {"exporter_job": "gpu"}}).selectors.exporter
    'job="gpu"'
    """
    derived = {}
    for selector_key, job_key in JOB_SELECTORS:
        if given(data, job_key) and not given(data, selector_key):
            selector = f"job={quoted(setting(cfg, job_key))}"
            problem = check.selector(selector)
            if problem:  # a job name no PromQL string can hold
                raise ConfigError(job_key, f"cannot be selected by {selector_key}: {problem}")
            derived[selector_key] = selector
        elif given(data, selector_key) and not given(data, job_key):
            job = selected_job(setting(cfg, selector_key))
            if job is not None:
                derived[job_key] = job
    return with_values(cfg, derived) if derived else cfg


def selected_job(selector: str) -> str | None:
    """The job a checked `selector` names with its one `job="X"` matcher, where X is a job a
    monitor can give its targets; None where it names none or several (a regex or negative
    matcher names no single job).

    >>> selected_job('cluster="eu", job="ml"'), selected_job('job=~"ml-.*"')
    ('ml', None)
    """
    jobs = {value for op, value, _ in _job_matchers(selector) if op == "="}
    # The same job="X" twice still names one job; the other job matchers are checked
    # against it afterwards (check_given_together).
    if len(jobs) != 1:
        return None
    (job,) = jobs
    return job if check.job_name(job) is None else None


def _job_matchers(selector: str) -> Iterator[tuple[str, str, str]]:
    """The `job` matchers of a checked `selector`: (operator, value, as written).

    >>> list(_job_matchers('cluster="eu", job=~"ml-.*"'))
    [('=~', 'ml-.*', 'job=~"ml-.*"')]
    """
    position = 0
    while position < len(selector):
        found = check.label_matcher(selector, position)
        if found is None:
            return
        name, op, value, text, position = found
        if name == "job":
            yield op, value, text


def given(data: Mapping, dotted: str) -> bool:
    """Whether the file itself sets the key at `dotted` (not its default)."""
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value or value[part] is None:
            return False
        value = value[part]
    return True


def check_given_together(cfg: Config, data: Mapping) -> None:
    """Checks between keys that hold only where the file sets them: a config that never
    renders the Kubernetes output keeps its own scrape interval and job names, so a default
    of the kubernetes section is no reason to refuse it."""
    k = cfg.kubernetes
    if given(data, "kubernetes.scrape_interval"):
        scrape = duration_seconds(k.scrape_interval)
        if duration_seconds(cfg.windows.rate) < RATE_SCRAPES * scrape:
            raise ConfigError("windows.rate", f"{cfg.windows.rate} must be at least "
                              f"{RATE_SCRAPES}x kubernetes.scrape_interval "
                              f"({k.scrape_interval}), or every rate rule comes out empty")
        check_scraped_windows(cfg, {key: setting(cfg, key) for key in _scraped_keys(cfg)}, "")
    # A file with a kubernetes: section deploys the monitors, which label their targets with
    # the job keys even where the file leaves them at their defaults: a selector whose job
    # matchers (a regex, a negative or repeated one) that job fails reads no series, and
    # every alert on it stays silent.
    monitors = given(data, "kubernetes")
    for selector_key, job_key in JOB_SELECTORS:
        # A job derived from the selector is checked too: the selector's other job matchers
        # may refuse it (job="a", job!="a"), and then the alerts read nothing either.
        if not given(data, selector_key):
            continue
        selector = setting(cfg, selector_key)
        _check_one_job(selector_key, selector)
        derived = selected_job(selector) if not given(data, job_key) else None
        if monitors or derived:
            job = setting(cfg, job_key)
            matcher = _job_matcher_missing(selector, job)
            if matcher:
                source = ("" if given(data, job_key)
                          else f", from the selector's job={quoted(job)}" if derived
                          else ", its default")
                raise ConfigError(selector_key, f"has the matcher {matcher}, which the job "
                                  f"{job!r} the {_JOB_MONITORS[job_key]} gives its targets "
                                  f"({job_key}{source}) does not pass, so the alerts would "
                                  f"read nothing; set {job_key} to the job the targets have, "
                                  f"or a selector that job passes")


def _check_one_job(key: str, selector: str) -> None:
    """Refuse a selector with two `job="..."` matchers of different jobs: no series has both,
    so every alert on it would read nothing, with or without the Kubernetes output."""
    first: tuple[str, str] | None = None  # the first job="..." matcher: (job, as written)
    for op, value, text in _job_matchers(selector):
        if op != "=":
            continue
        if first is not None and first[0] != value:
            raise ConfigError(key, f"has the matchers {first[1]} and {text}, which no series "
                              f"passes both, so the alerts would read nothing")
        first = first or (value, text)


# Every other window the rules read scraped series over (rate, increase, *_over_time): a
# rate needs two samples, so with one scrape in the window the alert on it never fires.
WINDOW_SCRAPES = 2
SCRAPED_WINDOW_KEYS = (
    "windows.no_traffic_lookback", "windows.versions_serving", "slo.fast_burn.short_window",
    "slo.fast_burn.long_window", "slo.slow_burn.short_window", "slo.slow_burn.long_window",
    "accuracy.window",
    "shadow.window", "shadow.outcome_window", "gpu.xid_window", "internal.overflow_window",
)


def _scraped_keys(cfg: Config) -> list[str]:
    """The keys of the windows over scraped series, enabled baseline signals' included."""
    signals = [f"baselines.{spec.name}.window" for spec in dataclasses.fields(cfg.baselines)
               if isinstance(getattr(cfg.baselines, spec.name), Signal)
               and getattr(cfg.baselines, spec.name).enabled]
    return [*SCRAPED_WINDOW_KEYS, *signals]


def check_scraped_windows(cfg: Config, windows: Mapping[str, str], prefix: str) -> None:
    """Refuse a window (at its dotted key under `prefix`) holding under two scrapes."""
    interval = cfg.kubernetes.scrape_interval
    for key, window in windows.items():
        if duration_seconds(window) < WINDOW_SCRAPES * duration_seconds(interval):
            raise ConfigError(f"{prefix}{key}", f"{window} must be at least {WINDOW_SCRAPES}x "
                              f"kubernetes.scrape_interval ({interval}), or its rate holds "
                              f"one sample at most and the alert reading it never fires")


def _job_matcher_missing(selector: str, job: str) -> str | None:
    """The first job matcher of a checked `selector` that the label value `job` fails: every
    one counts (Prometheus ANDs them), and a regex must match the whole value, as
    Prometheus anchors it.

    >>> _job_matcher_missing('job=~"ml", job!="ml-a"', "ml-a")
    'job=~"ml"'
    """
    for op, value, text in _job_matchers(selector):
        if op in ("=", "!="):
            passes = (value == job) == (op == "=")
        else:
            try:
                passes = matches(value, job) == (op == "=~")
            except (Unsupported, re.error):
                # Unreachable for a checked selector, which refuses such a pattern; never
                # refuse a config on a guess.
                continue
        if not passes:
            return text
    return None
