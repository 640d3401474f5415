"""The generator config: defaults in code, overrides from one YAML file.

Every leaf is typed and checked when loaded, and a bad value is reported with its
dotted key (``slo.availability``) and the file it came from, so a typo fails loudly
instead of silently keeping a default.

>>> cfg = from_dict({"latency": {"p99_seconds": 0.25}})
>>> cfg.latency.p99_seconds, cfg.slo.availability
(0.25, 0.999)
>>> from_dict({"latency": {"p99": 1}})
Traceback (most recent call last):
...
inferwatch.generate.config.ConfigError: latency.p99: unknown key (expected one of: p99_seconds, ...)
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferwatch.catalogue import OBJECTIVE_KEYS as CATALOGUE_OBJECTIVE_KEYS
from inferwatch.generate import config_checks as check
from inferwatch.generate.alert_names import ALERT_NAMES, MODEL_ALERT_NAMES
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_yaml import Refused, parse_yaml
from inferwatch.generate.re2 import Unsupported, matches, python_regex

SEVERITIES = ("critical", "warning", "info")
DRIFT_METHODS = ("psi", "js", "ks")
DEFAULT_RUNBOOK_URL = "https://github.com/inferwatch/inferwatch/blob/main/docs/runbooks.md#{anchor}"

class ConfigError(ValueError):
    """A config value that cannot be used; ``key`` is its dotted path."""

    def __init__(self, key: str, problem: str, source: str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {problem}")


def _setting(default: Any, help: str, check: Callable[[Any], str | None] | None = None) -> Any:
    """A config leaf: its default, the line the reference documents, and its check."""
    if isinstance(default, Mapping):
        # dataclasses refuse unhashable defaults; the read-only proxy itself is safe to share.
        return field(default_factory=lambda: default, metadata=_meta(help, check))
    return field(default=default, metadata=_meta(help, check))


def _frozen(mapping: Mapping) -> Mapping:
    """A read-only mapping, so a default can be shared by every config without being changed."""
    return types.MappingProxyType(dict(mapping))


def _meta(help: str, check: Callable[[Any], str | None] | None = None) -> dict[str, Any]:
    """Field metadata: the line the reference documents, and the value's check."""
    return {"help": help, "check": check}


# --- the config ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selectors:
    model: str = _setting('job="inferwatch-model"', "label matchers of the model services' series "
                          "(they carry model and model_version)", check.selector)
    exporter: str = _setting('job="inferwatch-exporter"', "label matchers of the standalone "
                             "exporter's series (GPU, process, collectors)", check.selector)


@dataclass(frozen=True)
class Windows:
    rate: str = _setting("5m", "rate window of the recording rules and the alerts built on them "
                         "(at least 4x the scrape interval)", check.duration)
    no_traffic_lookback: str = _setting("1h", "how far back a model must have had traffic for "
                                        "InferwatchNoTraffic to fire", check.duration)


@dataclass(frozen=True)
class BurnRate:
    long_window: str = _setting("1h", "long window: the budget is really burning", check.duration)
    short_window: str = _setting("5m", "short window: it is still burning now (resets fast)",
                                 check.duration)
    factor: float = _setting(14.4, "burn rate: multiple of the error budget's even spend",
                             check.positive)
    min_requests: int = _setting(10, "calls of the model over long_window the alert needs "
                                 "before it may fire: one failed call of a nearly idle model "
                                 "is no budget burning (0: no minimum)", check.non_negative)


def _slow_burn() -> BurnRate:
    return BurnRate(long_window="6h", short_window="30m", factor=6.0)


@dataclass(frozen=True)
class Slo:
    availability: float = _setting(0.999, "target ratio of calls with outcome ok; the error "
                                   "budget is 1 - availability", check.open_ratio)
    fast_burn: BurnRate = field(default_factory=BurnRate, metadata=_meta(
        "InferwatchErrorBudgetBurnFast: 2% of a 30-day budget in 1h"))
    slow_burn: BurnRate = field(default_factory=_slow_burn, metadata=_meta(
        "InferwatchErrorBudgetBurnSlow: 5% of a 30-day budget in 6h"))


@dataclass(frozen=True)
class Latency:
    p99_seconds: float = _setting(0.5, "p99 end-to-end latency above which "
                                  "InferwatchLatencyHigh fires", check.positive)
    first_item_p99_seconds: float = _setting(1.0, "p99 time to first item of streaming calls "
                                             "above which InferwatchStreamFirstItemSlow fires",
                                             check.positive)


@dataclass(frozen=True)
class Predictions:
    invalid_ratio: float = _setting(0.001, "invalid predicted values (nan, inf, out of range) "
                                    "per row above which InferwatchInvalidPredictions fires",
                                    check.ratio)
    max_versions: int = _setting(1, "versions of one model expected to serve at once; more "
                                 "fires InferwatchTooManyVersionsServing", check.positive)
    max_model_age: str = _setting("30d", "age of the training run above which "
                                  "InferwatchModelStale fires", check.duration)


@dataclass(frozen=True)
class DataQuality:
    missing_ratio: float = _setting(0.05, "missing values per row of one feature above which "
                                    "InferwatchMissingValuesSpike fires", check.ratio)
    out_of_range_ratio: float = _setting(0.05, "out-of-range values per row of one feature above "
                                         "which InferwatchOutOfRangeSpike fires", check.ratio)


@dataclass(frozen=True)
class Drift:
    method: str = _setting("psi", "drift statistic the alerts read (psi, js or ks)",
                           check.one_of(*DRIFT_METHODS))
    feature_threshold: float = _setting(0.2, "feature drift above which InferwatchFeatureDrift "
                                        "fires (PSI 0.2 is a significant shift)",
                                        check.non_negative)
    prediction_threshold: float = _setting(0.2, "prediction drift above which "
                                           "InferwatchPredictionDrift fires", check.non_negative)
    min_observations: int = _setting(1000, "rows the drift window must hold before a drift alert "
                                     "may fire, and values of a feature before its feature "
                                     "drift alert may", check.positive)


@dataclass(frozen=True)
class Accuracy:
    window: str = _setting("1h", "window over which outcomes are counted", check.duration)
    min_ratio: float = _setting(0.9, "accuracy below which InferwatchAccuracyDrop fires",
                                check.ratio)
    min_outcomes: int = _setting(100, "outcomes the window must hold before the accuracy alert "
                                 "may fire", check.positive)
    max_drop: float = _setting(0.05, "how far live accuracy may fall below the validation "
                               "accuracy in the model's reference before InferwatchAccuracyDrop "
                               "fires (models without one are held to min_ratio)", check.ratio)


@dataclass(frozen=True)
class Shadow:
    window: str = _setting("1h", "window over which shadow comparisons and drops are counted",
                           check.duration)
    min_agreement: float = _setting(0.9, "share of compared rows where a shadow model predicts "
                                    "its champion's class, below which "
                                    "InferwatchShadowAgreementLow fires", check.ratio)
    min_compared: int = _setting(100, "compared rows the window must hold before the agreement "
                                 "alert may fire", check.positive)
    max_error_ratio: float = _setting(0.05, "failed calls of a shadow model (errors, timeouts, "
                                      "crashes) per call above which InferwatchShadowFailing "
                                      "fires", check.ratio)
    max_drop_ratio: float = _setting(0.01, "sampled calls dropped by the shadow queue (full, "
                                     "incomparable, shut down) per sampled call above which "
                                     "InferwatchShadowDropping fires", check.ratio)
    outcome_window: str = _setting("6h", "window over which shared outcomes of champion and "
                                   "shadow are counted", check.duration)
    min_outcomes: int = _setting(200, "shared outcomes the window must hold before "
                                 "InferwatchShadowBetter may fire", check.positive)
    min_accuracy_gain: float = _setting(0.01, "how much more often the shadow model must be "
                                        "right than its champion, on shared outcomes, for "
                                        "InferwatchShadowBetter to fire", check.ratio)


@dataclass(frozen=True)
class Gpu:
    memory_used_ratio: float = _setting(0.95, "used / total framebuffer above which "
                                        "InferwatchGpuMemoryNearFull fires", check.ratio)
    temperature_celsius: float = _setting(85.0, "temperature above which "
                                          "InferwatchGpuTemperatureHigh fires", check.positive)
    xid_window: str = _setting("1h", "how long one Xid error keeps InferwatchGpuXidErrors "
                               "firing", check.duration)


@dataclass(frozen=True)
class Internal:
    errors_per_second: float = _setting(0.0, "rate of faults inside inferwatch above which "
                                        "InferwatchInternalErrors fires", check.non_negative)
    overflow_window: str = _setting("1h", "how long one label value folded by a cardinality cap "
                                    "keeps InferwatchSeriesOverflow firing", check.duration)


@dataclass(frozen=True)
class Objectives:
    from_code: bool = _setting(False, "judge each model first by the objectives it declares in "
                               "code (instrument(objectives=...), exported as "
                               "inferwatch_model_objective), then by its models: entry, then "
                               "by the defaults; every objective alert then joins each model's "
                               "own value", None)


@dataclass(frozen=True)
class Pushgateway:
    selector: str = _setting('job!=""', "label matchers of the pushed groups' push_time_seconds "
                             "(the Pushgateway is scraped with honor_labels, so job is the "
                             "pushing job)", check.selector)
    max_age: str = _setting("1d", "age of a group's last push above which "
                            "InferwatchPushgatewayGroupStale fires", check.duration)
    jobs: Mapping = _setting(_frozen({}), "expected period of a pushing job where it differs "
                             "from max_age, e.g. {nightly-scoring: 26h}", check.duration_map)


@dataclass(frozen=True)
class Signal:
    """One adaptive-baseline signal: its switch, its sensitivity and its windows."""

    enabled: bool = _setting(True, "whether the signal gets baseline rules and its alert")
    k: float = _setting(3.0, "the alert fires outside expected +- k x sigma", check.positive)
    window: str = _setting("10m", "window of the short value compared with the band",
                           check.duration)
    baseline_window: str = _setting("1d", "trailing window of the mean and the standard "
                                    "deviation", check.duration)
    baseline_offset: str = _setting("3h", "the trailing statistics end this long before now, "
                                    "so a fault building up for hours is not yet learned as "
                                    "normal", check.duration_or_zero)
    min_history: str = _setting("1d", "how long ago the short value must already have been "
                                "recorded before the alert may fire", check.duration_or_zero)
    min_traffic: float = _setting(0.1, "calls per second of the model (over the short window) "
                                  "below which the signal means nothing and the alert stays "
                                  "quiet", check.non_negative)
    sigma_floor: float = _setting(0.0, "smallest sigma, in the signal's unit, so a flat series "
                                  "does not page on a wobble", check.non_negative)
    sigma_floor_ratio: float = _setting(0.05, "smallest sigma as a share of the expected "
                                        "value", check.non_negative)
    seasonal: bool = _setting(True, "whether the band follows the same time a week (or a day) "
                              "ago (seasonal_offsets); off, expected is the trailing mean alone "
                              "and the band costs 3 series instead of 5")


_SIGNAL_HELP = _meta("one signal's baseline: enabled, k, window, baseline_window, "
                     "baseline_offset, min_history, min_traffic, sigma_floor, sigma_floor_ratio, "
                     "seasonal")


def _floors(floor: float, ratio: float) -> Callable[[], Signal]:
    """A signal's defaults: the same keys, its own sigma floors (they are in its unit)."""
    return lambda: Signal(sigma_floor=floor, sigma_floor_ratio=ratio)


@dataclass(frozen=True)
class Baselines:
    """Adaptive baselines: each signal against its own trailing and seasonal history."""

    evaluation_interval: str = _setting("5m", "interval of the baseline rule groups; each "
                                        "trailing statistic reads one sample per interval",
                                        check.duration)
    seasonal_offsets: tuple = _setting(("1w", "1d"), "the same time this long ago is the "
                                       "expected value, the first offset with history wins; "
                                       "without any, the trailing mean", check.durations)
    seasonal_window: str = _setting("1h", "window, centred on the seasonal offset, the "
                                    "seasonal value is averaged over", check.duration)
    features: tuple = _setting((), "features that get per-feature baselines (empty: every "
                               "feature)", check.label_values)
    latency_quantiles: tuple = _setting(("0.5", "0.99"), "latency quantiles with a baseline",
                                        check.quantiles)
    prediction_quantiles: tuple = _setting(("0.5", "0.9"), "rolling prediction quantiles "
                                           "(quantile label of inferwatch_prediction) with a "
                                           "baseline", check.quantiles)
    confidence_quantiles: tuple = _setting(("0.5",), "rolling confidence quantiles with a "
                                           "baseline", check.quantiles)
    traffic: Signal = field(default_factory=_floors(0.01, 0.05), metadata=_SIGNAL_HELP)
    errors: Signal = field(default_factory=_floors(0.005, 0.25), metadata=_SIGNAL_HELP)
    latency: Signal = field(default_factory=_floors(0.005, 0.1), metadata=_SIGNAL_HELP)
    predictions: Signal = field(default_factory=_floors(0.001, 0.05), metadata=_SIGNAL_HELP)
    classes: Signal = field(default_factory=_floors(0.01, 0.1), metadata=_SIGNAL_HELP)
    confidence: Signal = field(default_factory=_floors(0.01, 0.02), metadata=_SIGNAL_HELP)
    missing: Signal = field(default_factory=_floors(0.002, 0.25), metadata=_SIGNAL_HELP)
    out_of_range: Signal = field(default_factory=_floors(0.002, 0.25), metadata=_SIGNAL_HELP)
    batch_size: Signal = field(default_factory=_floors(0.5, 0.1), metadata=_SIGNAL_HELP)


@dataclass(frozen=True)
class AlertOverride:
    severity: str | None = field(default=None, metadata=_meta(
        "critical (page), warning (ticket) or info", check.one_of(*SEVERITIES)))
    for_: str | None = field(default=None, metadata=_meta(
        "how long the condition must hold before the alert fires", check.duration_or_zero))


# Settings a `models:` entry may override. Objectives are numbers a series is compared with: the
# rules read each model's own value from one recording rule per objective, so overriding them
# for any number of models adds no alert rule. Rule settings (windows, burn factors) change the
# shape of an alert's expression, so a model that overrides one gets its own copy of that alert.
# Each baseline signal's sensitivity, per model: config-only (a model does not declare how
# its own anomalies are judged), and the rules join it only where some model overrides it.
BASELINE_OBJECTIVE_KEYS = tuple(f"baselines.{spec.name}.k" for spec in dataclasses.fields(Baselines)
                                if spec.default_factory is not dataclasses.MISSING
                                and isinstance(spec.default_factory(), Signal))
# Models declare the catalogue's keys in code too (instrument(objectives=...)).
OBJECTIVE_KEYS = (*CATALOGUE_OBJECTIVE_KEYS, *BASELINE_OBJECTIVE_KEYS)
RULE_KEYS = (
    "windows.no_traffic_lookback", "slo.fast_burn.long_window", "slo.fast_burn.short_window",
    "slo.fast_burn.factor", "slo.slow_burn.long_window", "slo.slow_burn.short_window",
    "slo.slow_burn.factor", "slo.fast_burn.min_requests", "slo.slow_burn.min_requests",
    "accuracy.window",
)
_REGEX_SYNTAX = set(".^$*+?{}[]\\|()")


@dataclass(frozen=True)
class ModelOverride:
    """The settings of the models whose name matches `pattern` and no earlier pattern.

    Patterns are anchored regexes, as in PromQL's ``=~``: a plain name matches only itself.
    `earlier` holds the earlier patterns that may match a model this one matches (two plain
    names never do), so the rules leave those models out.
    """

    pattern: str
    earlier: tuple[str, ...]
    values: Mapping[str, Any]
    alerts: Mapping[str, AlertOverride]

    @property
    def is_name(self) -> bool:
        """Whether the pattern is a plain model name rather than a regex."""
        return _is_name(self.pattern)


def _is_name(pattern: str) -> bool:
    return not _REGEX_SYNTAX & set(pattern)


@dataclass(frozen=True)
class Links:
    grafana_url: str = _setting("http://localhost:3000", "Grafana base URL used in every "
                                "alert's dashboard_url", check.base_url)
    runbook_url: str = _setting(DEFAULT_RUNBOOK_URL, "runbook link pattern; {anchor} becomes the "
                                "lower-case alert name", check.runbook_pattern)


@dataclass(frozen=True)
class Dashboards:
    uid_prefix: str = _setting("inferwatch", "prefix of the dashboard uids (uid = prefix-name)",
                               check.uid_prefix)
    title_prefix: str = _setting("Inferwatch / ", "prefix of the dashboard titles", None)
    datasource: str = _setting("Prometheus", "default of the datasource variable", check.not_empty)
    refresh: str = _setting("30s", "auto-refresh interval", check.grafana_refresh)
    time_from: str = _setting("now-6h", "start of the default time range (now-6h, now-1d/d, "
                              "or an ISO 8601 date)", check.grafana_time_from)
    tags: tuple = _setting(("inferwatch",), "tags of every dashboard", check.tags)


# Names Kubernetes gives Secrets and ConfigMaps (DNS subdomains), and the keys of their data.
_K8S_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_K8S_DATA_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_DNS_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*")
_REF_KINDS = {"secret": "Secret", "config_map": "ConfigMap"}


def _object_key(*kinds: str) -> Callable[[Any], str | None]:
    """A key of a Secret (or ConfigMap) as {secret: NAME, key: KEY}; empty is none. The
    operator reads it from the monitor's own namespace, so only the name is given."""
    shapes = " or ".join(f"{{{kind}: NAME, key: KEY}}" for kind in kinds)

    def check_ref(value: Mapping) -> str | None:
        if not value:
            return None
        given = [kind for kind in kinds if kind in value]
        if len(given) != 1 or set(value) != {given[0], "key"}:
            return f"must be {shapes} (or empty for none), got the keys {', '.join(value)}"
        name, key = value[given[0]], value["key"]
        if len(name) > 253 or not _K8S_OBJECT_NAME.fullmatch(name):
            return (f"must name a {_REF_KINDS[given[0]]} by its Kubernetes object name (lower-case "
                    f"letters, digits, '-' and '.'), got {name!r}")
        # Kubernetes refuses `.`, `..` and a leading `..` as data keys.
        if len(key) > 253 or not _K8S_DATA_KEY.fullmatch(key) or key.startswith(".."):
            return (f"must name a key of the {given[0]} (letters, digits, '-', '_' and '.'), "
                    f"got {key!r}")
        return None

    return check_ref


def _server_name(value: str) -> str | None:
    if len(value) <= 253 and _DNS_NAME.fullmatch(value):
        return None
    return f"must be the DNS name the targets' certificate is issued for, got {value!r}"


@dataclass(frozen=True)
class Scrape:
    """How a monitor reaches /metrics served with TLS or basic auth (a web config,
    docs/security.md). The Secrets and ConfigMaps named live in kubernetes.namespace: the
    operator reads them from the monitor's own namespace."""

    scheme: str = _setting("http", "https where the targets serve /metrics with TLS",
                           check.one_of("http", "https"))
    tls_ca: Mapping = _setting(_frozen({}), "CA the targets' certificates are verified "
                               "against: {secret: NAME, key: KEY} or {config_map: NAME, key: "
                               "KEY} (empty: the CAs of Prometheus' image)",
                               _object_key("secret", "config_map"))
    tls_server_name: str | None = _setting(None, "name the targets' certificate must hold "
                                           "(empty: the address scraped, usually a Pod IP "
                                           "no certificate holds)", _server_name)
    tls_insecure_skip_verify: bool = _setting(False, "accept any certificate (testing only)")
    tls_cert: Mapping = _setting(_frozen({}), "client certificate Prometheus presents to targets "
                                 "that require one (mTLS): {secret: NAME, key: KEY} or "
                                 "{config_map: NAME, key: KEY} (empty: none; set with tls_key)",
                                 _object_key("secret", "config_map"))
    tls_key: Mapping = _setting(_frozen({}), "private key of tls_cert: {secret: NAME, key: KEY}",
                                _object_key("secret"))
    basic_auth_username: Mapping = _setting(_frozen({}), "basic auth user name: {secret: NAME, "
                                            "key: KEY} (empty: no basic auth)",
                                            _object_key("secret"))
    basic_auth_password: Mapping = _setting(_frozen({}), "basic auth password: {secret: NAME, "
                                            "key: KEY}", _object_key("secret"))


_SCRAPE_HELP = _meta("TLS and basic auth of the scrapes: scheme, tls_ca, tls_server_name, "
                     "tls_insecure_skip_verify, tls_cert, tls_key, basic_auth_username, "
                     "basic_auth_password")


@dataclass(frozen=True)
class Kubernetes:
    namespace: str = _setting("monitoring", "namespace of the generated manifests", check.k8s_name)
    rule_name: str = _setting("inferwatch", "name of the PrometheusRule, ServiceMonitor and "
                              "PodMonitor", check.k8s_name)
    labels: Mapping = _setting(_frozen({"app.kubernetes.io/part-of": "inferwatch"}),
                               "labels on every manifest (add the one your Prometheus Operator "
                               "selects on)", check.label_map)
    model_match_labels: Mapping = _setting(_frozen({"inferwatch.io/scrape": "model"}),
                                           "labels selecting the model Services to scrape",
                                           check.match_labels)
    exporter_match_labels: Mapping = _setting(
        _frozen({"app.kubernetes.io/name": "inferwatch-exporter"}),
        "labels selecting the exporter Pods", check.match_labels)
    model_job: str = _setting("inferwatch-model", "job label given to model targets (keep "
                              "selectors.model matching it)", check.job_name)
    exporter_job: str = _setting("inferwatch-exporter", "job label given to exporter targets "
                                 "(keep selectors.exporter matching it)", check.job_name)
    port: str = _setting("metrics", "name of the container / Service port serving /metrics "
                         "(the model Services', and the exporter Pods' unless exporter_port)",
                         check.port_name)
    exporter_port: str | None = _setting(None, "name of the exporter Pods' port serving "
                                         "/metrics, where it differs from port",
                                         check.port_name)
    path: str = _setting("/metrics", "HTTP path of the metrics (the model Services', and the "
                         "exporter Pods' unless exporter_path)", check.path)
    exporter_path: str | None = _setting(None, "HTTP path of the exporter Pods' metrics, where "
                                         "it differs from path", check.path)
    scrape_interval: str = _setting("15s", "scrape interval of both monitors", check.duration)
    model_scrape: Scrape = field(default_factory=Scrape, metadata=_SCRAPE_HELP)
    exporter_scrape: Scrape = field(default_factory=Scrape, metadata=_SCRAPE_HELP)
    baseline_rule_name: str | None = _setting(None, "name of a PrometheusRule of its own for "
                                              "the adaptive-baseline groups, the costly ones "
                                              "(empty: they join rule_name's)", check.k8s_name)

    def __post_init__(self) -> None:
        # Checked here, where both keys are seen: each alone is a valid value.
        if self.baseline_rule_name == self.rule_name:
            raise ConfigError("kubernetes.baseline_rule_name", f"must differ from "
                              f"kubernetes.rule_name ({self.rule_name!r}): one PrometheusRule "
                              f"would replace the other")
        for name in ("model_scrape", "exporter_scrape"):
            _check_scrape(getattr(self, name), f"kubernetes.{name}")


def _check_scrape(scrape: Scrape, key: str) -> None:
    if scrape.scheme == "http":
        # Prometheus reads no TLS setting for an http target: it would silently do nothing.
        for name, unset in (("tls_ca", {}), ("tls_server_name", None),
                            ("tls_insecure_skip_verify", False), ("tls_cert", {}),
                            ("tls_key", {})):
            if getattr(scrape, name) != unset:
                raise ConfigError(f"{key}.{name}", "is set, but scheme is http, so Prometheus "
                                  "would not use it: set scheme: https")
    # A certificate without its key (or a key alone) is refused by the operator, and the
    # whole monitor with it: no target of it would be scraped.
    for pair in (("basic_auth_username", "basic_auth_password"), ("tls_cert", "tls_key")):
        for name, other in (pair, pair[::-1]):
            if getattr(scrape, name) and not getattr(scrape, other):
                raise ConfigError(f"{key}.{other}", f"must be set together with {name}")


@dataclass(frozen=True)
class Config:
    selectors: Selectors = field(default_factory=Selectors, metadata=_meta(
        "which series the rules and dashboards read"))
    windows: Windows = field(default_factory=Windows, metadata=_meta(
        "rate and lookback windows"))
    slo: Slo = field(default_factory=Slo, metadata=_meta(
        "availability SLO and its multi-window, multi-burn-rate alerts"))
    latency: Latency = field(default_factory=Latency, metadata=_meta("latency threshold"))
    predictions: Predictions = field(default_factory=Predictions, metadata=_meta(
        "prediction validity and model identity"))
    data_quality: DataQuality = field(default_factory=DataQuality, metadata=_meta(
        "missing and out-of-range inputs"))
    drift: Drift = field(default_factory=Drift, metadata=_meta("feature and prediction drift"))
    accuracy: Accuracy = field(default_factory=Accuracy, metadata=_meta(
        "accuracy from delayed ground truth"))
    shadow: Shadow = field(default_factory=Shadow, metadata=_meta(
        "shadow models compared with their champion"))
    objectives: Objectives = field(default_factory=Objectives, metadata=_meta(
        "objectives declared in code"))
    gpu: Gpu = field(default_factory=Gpu, metadata=_meta("GPU thresholds"))
    internal: Internal = field(default_factory=Internal, metadata=_meta(
        "faults inside inferwatch"))
    pushgateway: Pushgateway = field(default_factory=Pushgateway, metadata=_meta(
        "groups pushed by batch jobs"))
    baselines: Baselines = field(default_factory=Baselines, metadata=_meta(
        "adaptive baselines: alerts when a signal leaves its own expected band"))
    alerts: Mapping = _setting(_frozen({}), "per-alert overrides: {AlertName: {severity, for}}")
    models: Mapping = _setting(_frozen({}), "per-model overrides: {model name or regex: {section: "
                               "{key: value}, alerts: {AlertName: {severity, for}}}}")
    links: Links = field(default_factory=Links, metadata=_meta(
        "dashboard and runbook URLs in alert annotations"))
    dashboards: Dashboards = field(default_factory=Dashboards, metadata=_meta(
        "dashboard identity and defaults"))
    kubernetes: Kubernetes = field(default_factory=Kubernetes, metadata=_meta(
        "PrometheusRule, ServiceMonitor, PodMonitor"))


DEFAULT = Config()


# --- loading ---------------------------------------------------------------------------------


def _yaml_key(name: str) -> str:
    # `for` is a Python keyword, so the field is for_ and the YAML key is for.
    return name.rstrip("_")


def _type_name(kind: Any) -> str:
    names = {str: "a string", float: "a number", int: "an integer", Mapping: "a mapping",
             tuple: "a list", bool: "true or false"}
    if dataclasses.is_dataclass(kind):
        return "a mapping"
    return names.get(kind, str(kind))


def _coerce(value: Any, kind: Any, key: str) -> Any:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if value is None:
            return None
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    ok = {
        str: isinstance(value, str),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        Mapping: isinstance(value, Mapping),
        tuple: isinstance(value, list),
    }.get(kind, isinstance(value, Mapping))
    if not ok:
        got = (_not_text(value) if kind is str
               else f"{type(value).__name__} {value!r}{_number_hint(value, kind)}")
        raise ConfigError(key, f"must be {_type_name(kind)}, got {got}")
    if kind in (float, int):
        _check_finite(value, key)
    if kind is float:
        return float(value)
    if kind is tuple:
        return tuple(value)
    return value


def _number_hint(value: Any, kind: Any) -> str:
    """How to write a number YAML 1.1 read as text: PyYAML takes 1e-3, 2e3 and 2.0e3 for
    strings, and a number with an exponent only with a decimal point and a signed exponent
    (1.0e-3, 2.0e+3)."""
    if kind is float and isinstance(value, str):
        exponent = re.fullmatch(r"([-+]?)([0-9]*)(?:\.([0-9]*))?([eE])([-+]?)([0-9]+)",
                                value.strip())
        if exponent and (exponent[2] or exponent[3]):
            sign, whole, fraction, e, exp_sign, digits = exponent.groups()
            dotted = f"{sign}{whole or '0'}.{fraction or '0'}"
            unsigned = f"{dotted}{e}{digits}"
            written = f"{dotted}{e}{exp_sign or '+'}{digits}"
            if exp_sign:
                return (f" (YAML reads an exponent without a decimal point as text: write "
                        f"{written})")
            # Adding the point alone is not enough: 2.0e3 is text to YAML 1.1 as well.
            return (f" (YAML reads an exponent without a sign as text, even {unsigned}: "
                    f"write {written})")
    leading_zero = (re.fullmatch(r"([-+]?)0[0-9_]*[89][0-9_]*", value)
                    if kind in (int, float) and isinstance(value, str) else None)
    if leading_zero:
        # A leading 0 makes YAML 1.1 read octal, and 8 or 9 is no octal digit: 017 is
        # refused as octal 15 when parsed, and 08 arrives here as the text '08'.
        number = int(value.replace("_", ""))
        return (f" (YAML 1.1 reads a leading 0 as octal, and {value} holds a digit 8 or 9, so "
                f"it is text: write {number})")
    return ""


def _check_finite(value: float, key: str) -> None:
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        raise ConfigError(key, "must be a finite number, got an integer too large for "
                          "one") from None
    if not finite:
        raise ConfigError(key, f"must be a finite number, got {value!r}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip(".") or "(top level)", f"must be a mapping, got "
                          f"{type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {_yaml_key(f.name): f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for raw_key, raw in data.items():
        key = f"{prefix}{raw_key}"
        if raw_key not in fields:
            raise ConfigError(key, f"unknown key (expected one of: {', '.join(fields)})")
        spec = fields[raw_key]
        kind = hints[spec.name]
        if raw is None and _is_section(spec, kind):
            # `slo:` whose keys were all deleted or commented out, as the example config
            # invites: YAML reads it as null, and it keeps every default.
            continue
        if dataclasses.is_dataclass(kind):
            default = getattr(cls(), spec.name)
            values[spec.name] = _merge(default, raw, f"{key}.")
            continue
        _refuse_bare_duration(spec, raw, key)
        value = _coerce(raw, kind, key)
        values[spec.name] = _check_leaf(cls, spec, value, key)
    return cls(**values)


# The checks of one duration; check.durations and check.duration_map hold several.
_DURATION_CHECKS = (check.duration, check.duration_or_zero, check.grafana_refresh)


def _refuse_bare_duration(spec: dataclasses.Field, raw: Any, key: str) -> None:
    """Refuse a duration written as a bare number (`rate: 10`) saying it needs a unit: the
    type check would first ask to quote it, and the quoted "10" is no duration either."""
    checker = spec.metadata.get("check")
    if checker in _DURATION_CHECKS:
        items: list[tuple[str, str, Any]] = [(key, "", raw)]
    elif checker is check.durations and isinstance(raw, list):
        items = [(key, f" at [{index}]", item) for index, item in enumerate(raw)]
    elif checker is check.duration_map and isinstance(raw, Mapping):
        items = [(f"{key}.{name}", "", item) for name, item in raw.items()]
    else:
        return
    for where, at, value in items:
        if isinstance(value, (int, float)):  # text is left to the check, which says the same
            problem = check.bare_number(value)
            if problem:
                # Written with its unit, `10m` is a string unquoted: no quoting hint.
                raise ConfigError(where, f"must be a string, and {problem}{at}")


def _is_section(spec: dataclasses.Field, kind: Any) -> bool:
    """Whether a key holds a section of keys (or a mapping empty by default), which an empty
    value leaves as it is."""
    if dataclasses.is_dataclass(kind):
        return True
    return (kind is Mapping and spec.default_factory is not dataclasses.MISSING
            and not spec.default_factory())


def _merge(default: Any, data: Any, prefix: str) -> Any:
    # A nested section starts from its own default (slow_burn differs from fast_burn).
    built = _build(type(default), data, prefix)
    given = {_yaml_key(name) for name in data}
    kept = {f.name: getattr(default, f.name) for f in dataclasses.fields(default)
            if _yaml_key(f.name) not in given}
    return dataclasses.replace(built, **kept)


def _check_leaf(cls: type, spec: dataclasses.Field, value: Any, key: str) -> Any:
    if cls is Config and spec.name == "alerts":
        return _build_alert_overrides(value, key)
    if isinstance(value, Mapping):
        for item_key, item in value.items():
            for text in (item_key, item):
                if not isinstance(text, str):
                    raise ConfigError(f"{key}.{item_key}", f"keys and values must be strings, "
                                      f"got {_not_text(text)}")
        value = _frozen(value)
    if isinstance(value, tuple):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(key, f"must be a list of strings, got {_not_text(item)} at "
                                  f"[{index}]")
    checker = spec.metadata.get("check")
    problem = checker(value) if checker and value is not None else None
    if problem:
        raise ConfigError(key, problem)
    if checker is check.selector:
        value = check.selector_text(value)
    return value


def _not_text(value: Any) -> str:
    """What YAML made of a value that should have been text, and how to keep it text: the
    version 1.10 reads as the number 1.1, and yes, no, on and off as booleans."""
    shown = f"{type(value).__name__} {value!r}"
    if isinstance(value, (bool, int, float)):
        return f"{shown} (YAML reads it unquoted as {_type_name(type(value))}: quote it)"
    if isinstance(value, datetime.date):
        # YAML 1.1 reads 2026-01-31 (a Grafana time_from, a tag) as a date: the message
        # shows it as the user wrote it, not as datetime.date(2026, 1, 31).
        return f"the date {value} (YAML reads it unquoted as a date: quote it)"
    return shown


def _build_alert_overrides(data: Mapping, key: str) -> Mapping[str, AlertOverride]:
    overrides = {}
    for name, raw in data.items():
        if name not in ALERT_NAMES:
            raise ConfigError(f"{key}.{name}", "unknown alert (see docs/runbooks.md for the list)")
        if raw is None:
            # `InferwatchLatencyHigh:` with its severity and for commented out: an empty
            # section keeps its defaults, as `slo:` does.
            continue
        overrides[name] = _build(AlertOverride, raw, f"{key}.{name}.")
    return _frozen(dict(sorted(overrides.items())))


def _model_pattern(pattern: Any) -> str | None:
    if not isinstance(pattern, str):
        return f"a model name or regex must be a non-empty string, got {_not_text(pattern)}"
    if not pattern.strip():
        return "a model name or regex must be a non-empty string"
    try:
        python_regex(pattern)
    except Unsupported as exc:
        return str(exc)
    return None


def _schema_field(dotted: str) -> tuple[type, dataclasses.Field, Any]:
    """The dataclass, field and type hint behind a dotted key of the config."""
    cls: type = Config
    *parents, leaf = dotted.split(".")
    for part in parents:
        cls = typing.get_type_hints(cls)[part]
    spec = next(f for f in dataclasses.fields(cls) if f.name == leaf)
    return cls, spec, typing.get_type_hints(cls)[leaf]


def _flatten(data: Any, prefix: str, key: str) -> Iterator[tuple[str, Any]]:
    """(dotted key below the model, raw value) for every leaf of one model's overrides."""
    if data is None and prefix:
        return  # a section left empty, as at the top level
    if not isinstance(data, Mapping):
        raise ConfigError(key, f"must be a mapping, got {type(data).__name__}")
    for name, value in data.items():
        dotted = f"{prefix}{name}"
        here = f"{key}.{name}"
        if dotted in OBJECTIVE_KEYS or dotted in RULE_KEYS:
            yield dotted, value
        elif any(k.startswith(f"{dotted}.") for k in (*OBJECTIVE_KEYS, *RULE_KEYS)):
            yield from _flatten(value, f"{dotted}.", here)
        elif any(k == dotted or k.startswith(f"{dotted}.") for k, _, _ in leaves()):
            raise ConfigError(here, "is not a per-model setting; set it at the top level")
        else:
            choices = sorted({k[len(prefix):].split(".")[0]
                              for k in (*OBJECTIVE_KEYS, *RULE_KEYS) if k.startswith(prefix)}
                             | ({"alerts"} if not prefix else set()))
            raise ConfigError(here, f"unknown key (per-model keys here: {', '.join(choices)})")


def _build_model_override(pattern: str, raw: Any, earlier: tuple[str, ...],
                          base: Config) -> ModelOverride:
    key = f"models.{pattern}"
    raw = {} if raw is None else raw  # an entry left empty still claims its models
    if not isinstance(raw, Mapping):
        raise ConfigError(key, f"must be a mapping, got {type(raw).__name__}")
    # Only an empty `alerts:` means none: `[]` or `false` is a mistake, refused at the top
    # level too.
    raw_alerts = {} if raw.get("alerts") is None else raw["alerts"]
    if not isinstance(raw_alerts, Mapping):
        raise ConfigError(f"{key}.alerts", f"must be a mapping, got {type(raw_alerts).__name__}")
    alerts = _build_alert_overrides(raw_alerts, f"{key}.alerts")
    for name in alerts:
        if name not in MODEL_ALERT_NAMES:
            raise ConfigError(f"{key}.alerts.{name}", "is not judged per model; override it under "
                              "the top-level alerts instead")
    values: dict[str, Any] = {}
    settings = {name: value for name, value in raw.items() if name != "alerts"}
    for dotted, value in _flatten(settings, "", key):
        cls, spec, hint = _schema_field(dotted)
        _refuse_bare_duration(spec, value, f"{key}.{dotted}")
        values[dotted] = _check_leaf(cls, spec, _coerce(value, hint, f"{key}.{dotted}"),
                                     f"{key}.{dotted}")
    try:
        _check_cross_fields(with_values(base, values))
    except ConfigError as exc:
        raise ConfigError(f"{key}.{exc.key}", exc.problem) from None
    return ModelOverride(pattern, earlier, _frozen(values), alerts)


def _build_model_overrides(data: Any, base: Config) -> Mapping[str, ModelOverride]:
    if not isinstance(data, Mapping):
        raise ConfigError("models", f"must be a mapping, got {type(data).__name__}")
    overrides: dict[str, ModelOverride] = {}
    for pattern, raw in data.items():
        problem = _model_pattern(pattern)
        if problem:
            raise ConfigError(f"models.{pattern}", problem)
        if _is_name(pattern):
            for earlier in overrides:
                if matches(earlier, pattern):
                    raise ConfigError(f"models.{pattern}", f"never applies: models.{earlier} "
                                      f"matches it first (list the name before the regex)")
            overlapping: tuple[str, ...] = ()
        else:
            overlapping = tuple(earlier for earlier in overrides
                                if not _is_name(earlier) or matches(pattern, earlier))
        overrides[pattern] = _build_model_override(pattern, raw, overlapping, base)
    return _frozen(overrides)


def with_values(cfg: Any, values: Mapping[str, Any]) -> Any:
    """`cfg` with the settings at the given dotted keys replaced.

    >>> with_values(DEFAULT, {"slo.fast_burn.factor": 10.0}).slo.fast_burn.factor
    10.0
    """
    changes: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for dotted, value in values.items():
        head, _, rest = dotted.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            changes[head] = value
    for head, inner in nested.items():
        changes[head] = with_values(getattr(cfg, head), inner)
    return dataclasses.replace(cfg, **changes)


def setting(cfg: Config, dotted: str) -> Any:
    """The value at a dotted key.

    >>> setting(DEFAULT, "slo.fast_burn.factor")
    14.4
    """
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _check_cross_fields(cfg: Config) -> None:
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
# values, so its ratio may exceed 1; so is shadow.max_drop_ratio: a call sampled before the
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


def _check_window_lengths(cfg: Config) -> None:
    """Windows too short for what they are compared with. Checked after the windows against
    the scrape interval: a window under two scrapes is the first thing to fix."""
    if duration_seconds(cfg.windows.no_traffic_lookback) < duration_seconds(cfg.windows.rate):
        # InferwatchNoTraffic compares the rate now with the rate a lookback ago: a shorter
        # lookback reads an overlapping window, so both hold the same calls.
        raise ConfigError("windows.no_traffic_lookback", f"{cfg.windows.no_traffic_lookback} "
                          f"must be at least windows.rate ({cfg.windows.rate}), or the traffic "
                          f"it looks back at overlaps the traffic of now")
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


# A rate needs two samples in its window, and Prometheus extrapolates only over a few
# scrapes: docs/configuration.md promises windows.rate at least this many scrape intervals.
RATE_SCRAPES = 4


# Each selector's default is its monitor's default job: (selector key, job key).
JOB_SELECTORS = (("selectors.model", "kubernetes.model_job"),
                 ("selectors.exporter", "kubernetes.exporter_job"))


def _with_job_selectors(cfg: Config, data: Mapping) -> Config:
    """`cfg` whose selectors left unset follow a job the file renames: the default selector
    names the default job, and keeping it would read no series of the renamed targets.

    Derived rather than refused: a file that renames only the job states what its targets are
    called, and the selector the rules need follows from it alone (a selector the file sets,
    perhaps with a cluster or namespace besides, is checked against the job instead).
    """
    from inferwatch.generate.promql import quoted  # promql imports this module

    derived = {}
    for selector_key, job_key in JOB_SELECTORS:
        if _given(data, job_key) and not _given(data, selector_key):
            selector = f"job={quoted(setting(cfg, job_key))}"
            problem = check.selector(selector)
            if problem:  # a job name no PromQL string can hold
                raise ConfigError(job_key, f"cannot be selected by {selector_key}: {problem}")
            derived[selector_key] = selector
    return with_values(cfg, derived) if derived else cfg


def _given(data: Mapping, dotted: str) -> bool:
    """Whether the file itself sets the key at `dotted` (not its default)."""
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value or value[part] is None:
            return False
        value = value[part]
    return True


def _check_given_together(cfg: Config, data: Mapping) -> None:
    """Checks between keys that hold only where the file sets them: a config that never
    renders the Kubernetes output keeps its own scrape interval and job names, so a default
    of the kubernetes section is no reason to refuse it."""
    k = cfg.kubernetes
    if _given(data, "kubernetes.scrape_interval"):
        scrape = duration_seconds(k.scrape_interval)
        if duration_seconds(cfg.windows.rate) < RATE_SCRAPES * scrape:
            raise ConfigError("windows.rate", f"{cfg.windows.rate} must be at least "
                              f"{RATE_SCRAPES}x kubernetes.scrape_interval "
                              f"({k.scrape_interval}), or every rate rule comes out empty")
        _check_scraped_windows(cfg, {key: setting(cfg, key) for key in _scraped_keys(cfg)}, "")
    for selector_key, job_key in JOB_SELECTORS:
        if _given(data, selector_key) and _given(data, job_key):
            selector, job = setting(cfg, selector_key), setting(cfg, job_key)
            matcher = _job_matcher_missing(selector, job)
            if matcher:
                raise ConfigError(selector_key, f"has the matcher {matcher}, which the job "
                                  f"{job!r} the monitor gives its targets ({job_key}) does "
                                  f"not pass, so the alerts would read nothing")


# Every other window the rules read scraped series over (rate, increase, *_over_time): a
# rate needs two samples, so with one scrape in the window the alert on it never fires.
WINDOW_SCRAPES = 2
SCRAPED_WINDOW_KEYS = (
    "windows.no_traffic_lookback", "slo.fast_burn.short_window", "slo.fast_burn.long_window",
    "slo.slow_burn.short_window", "slo.slow_burn.long_window", "accuracy.window",
    "shadow.window", "shadow.outcome_window", "gpu.xid_window", "internal.overflow_window",
)


def _scraped_keys(cfg: Config) -> list[str]:
    """The keys of the windows over scraped series, enabled baseline signals' included."""
    signals = [f"baselines.{spec.name}.window" for spec in dataclasses.fields(cfg.baselines)
               if isinstance(getattr(cfg.baselines, spec.name), Signal)
               and getattr(cfg.baselines, spec.name).enabled]
    return [*SCRAPED_WINDOW_KEYS, *signals]


def _check_scraped_windows(cfg: Config, windows: Mapping[str, str], prefix: str) -> None:
    """Refuse a window (at its dotted key under `prefix`) holding under two scrapes."""
    interval = cfg.kubernetes.scrape_interval
    for key, window in windows.items():
        if duration_seconds(window) < WINDOW_SCRAPES * duration_seconds(interval):
            raise ConfigError(f"{prefix}{key}", f"{window} must be at least {WINDOW_SCRAPES}x "
                              f"kubernetes.scrape_interval ({interval}), or its rate holds "
                              f"one sample at most and the alert reading it never fires")


def _job_matcher_missing(selector: str, job: str) -> str | None:
    """The first job matcher of a checked `selector` that the label value `job` fails."""
    position = 0
    while position < len(selector):
        found = check.label_matcher(selector, position)
        if found is None:
            return None
        name, op, value, text, position = found
        if name != "job":
            continue
        if op in ("=", "!="):
            passes = (value == job) == (op == "=")
        else:
            try:
                passes = matches(value, job) == (op == "=~")
            except (Unsupported, re.error):
                continue  # a pattern Python cannot judge as RE2 does: leave it to the user
        if not passes:
            return text
    return None


# Python writes no integer of more digits as text (sys.get_int_max_str_digits' default).
_UNWRITABLE = 10 ** 4299


def _refuse_surrogates(data: Any, key: str) -> None:
    """Refuse text that is not Unicode: YAML's ``"\\ud800"`` escape makes a lone surrogate,
    which no UTF-8 file can hold and which promtool refuses to read back from a rule file.
    Refuse an integer too long for Python to write as text (a dict built in code): every
    message naming it would fail with a ValueError that names no key."""
    if isinstance(data, str):
        bad = next((c for c in data if 0xD800 <= ord(c) <= 0xDFFF), None)
        if bad is not None:
            raise ConfigError(key or "(top level)", f"holds the lone surrogate "
                              f"{repr(bad)[1:-1]}, which is not a Unicode character")
    elif isinstance(data, int) and not isinstance(data, bool) and abs(data) >= _UNWRITABLE:
        raise ConfigError(key or "(top level)", f"is a number of {data.bit_length()} bits, "
                          "longer than any setting takes (and than Python writes as text)")
    elif isinstance(data, Mapping):
        for name, value in data.items():
            if isinstance(name, int):
                _refuse_surrogates(name, key)  # before naming it: too long to write, it raises
            dotted = f"{key}.{name}" if key else str(name)
            _refuse_surrogates(name, dotted)
            _refuse_surrogates(value, dotted)
    elif isinstance(data, list):
        for item in data:
            _refuse_surrogates(item, key)


def from_dict(data: Mapping | None, source: str | None = None) -> Config:
    """Build a config from parsed YAML, checking every key; missing keys keep their defaults.

    >>> from_dict({"drift": {"method": "js"}}).drift.method
    'js'
    """
    # Only an empty document means "all defaults": `[]`, `false` or `0` is a mistake.
    data = {} if data is None else data
    try:
        _refuse_surrogates(data, "")
        models = None
        if isinstance(data, Mapping) and "models" in data:
            # Each model's values are checked together with the top-level ones they replace.
            # Only an empty `models:` means no overrides: `[]` or `false` is a mistake.
            models = {} if data["models"] is None else data["models"]
            data = {key: value for key, value in data.items() if key != "models"}
        cfg = _with_job_selectors(_build(Config, data, ""), data)
        _check_cross_fields(cfg)
        _check_given_together(cfg, data)
        _check_window_lengths(cfg)
        if models is not None:
            cfg = dataclasses.replace(cfg, models=_build_model_overrides(models, cfg))
            for pattern, override in cfg.models.items():
                if _given(data, "kubernetes.scrape_interval"):
                    _check_scraped_windows(cfg, {key: value for key, value in
                                                 override.values.items()
                                                 if key in SCRAPED_WINDOW_KEYS},
                                           f"models.{pattern}.")
                try:
                    _check_window_lengths(with_values(cfg, override.values))
                except ConfigError as exc:
                    raise ConfigError(f"models.{pattern}.{exc.key}", exc.problem) from None
    except ConfigError as exc:
        if source and not exc.source:
            raise ConfigError(exc.key, exc.problem, source) from None
        raise
    return cfg


def load(path: str | Path | None) -> Config:
    """Load a YAML config file (``None``: the defaults).

    >>> load(None) == DEFAULT
    True
    """
    if path is None:
        return DEFAULT
    import yaml  # only the CLI pays for the YAML parser

    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("(file)", f"cannot be read: {exc.strerror}", source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("(file)", f"is not UTF-8 text (byte {exc.start}: {exc.reason})",
                          source) from None
    try:
        data = parse_yaml(text)
    except Refused as exc:
        raise ConfigError(exc.key, _duration_misread(exc.key, exc.problem), source) from None
    except (yaml.YAMLError, ValueError) as exc:
        # ValueError: PyYAML lets Python's own limits through (an integer of 5000 digits).
        raise ConfigError("(file)", f"is not valid YAML: {_yaml_problem(exc)}", source) from None
    except RecursionError:
        raise ConfigError("(file)", _TOO_DEEP, source) from None
    try:
        return from_dict(data, source)
    except RecursionError:
        raise ConfigError("(file)", _TOO_DEEP, source) from None


# The problem parse_yaml names for a plain number YAML 1.1 reads as octal or base 60.
_MISREAD_NUMBER = re.compile(r"is (?P<text>\S+), which YAML 1.1 reads as the "
                             r"(?P<base>octal|base-60) number \S+ \(line [0-9]+\)")


def _duration_misread(key: str, problem: str) -> str:
    """`problem` of the value at `key`, saying at once that a duration needs a unit where YAML
    1.1 read one written as `010` or `1:30` as a number: its hint (drop the 0, or quote it)
    leads only to the next error, a bare number being no duration either."""
    found = _MISREAD_NUMBER.match(problem)
    if not found or not _is_duration_key(key):
        return problem
    text = found["text"].replace("_", "").lstrip("+")
    if not re.fullmatch(r"[0-9:]+", text):
        return problem  # a sign or a fraction: no duration the number could have meant
    parts = [int(part) for part in text.split(":")]
    # 1:30 was meant as an hour and a half or a minute and a half, 1:30:00 as h:m:s.
    written = {1: "{0}m or {0}s", 2: "{0}h{1}m or {0}m{1}s", 3: "{0}h{1}m{2}s"}.get(
        len(parts), "1h30m").format(*parts)
    return (f"{found[0]}; a duration needs a unit: write a Prometheus duration such as "
            f"{written} (units y w d h m s ms)")


def _is_duration_key(dotted: str) -> bool:
    """Whether the dotted key parse_yaml names holds a duration, or an item of a list or a
    mapping of them (`baselines.seasonal_offsets[0]`, `pushgateway.jobs.nightly`)."""
    dotted = re.sub(r"\[[0-9]+\]$", "", dotted)
    if re.fullmatch(r"(?:models\..+\.)?alerts\.[^.]+\.for", dotted):
        return True
    checks = {key: spec.metadata.get("check") for key, spec, _ in leaves()}
    if checks.get(dotted) in (*_DURATION_CHECKS, check.durations):
        return True
    if any(dotted.startswith(f"{key}.") for key, found in checks.items()
           if found is check.duration_map):
        return True
    # A models: pattern may hold dots itself, so its settings are matched from the end.
    return dotted.startswith("models.") and any(
        dotted.endswith(f".{key}") and checks.get(key) in _DURATION_CHECKS
        for key in (*OBJECTIVE_KEYS, *RULE_KEYS))


# PyYAML's parser and the checks recurse once per level of nesting.
_TOO_DEEP = "is nested too deeply (hundreds of levels) to be a config"


def _yaml_problem(exc: Exception) -> str:
    """One line saying where the YAML breaks and why: PyYAML's own message spans several lines
    and quotes the text, which buries the line number."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError) and (exc.problem_mark or exc.context_mark):
        mark = exc.problem_mark or exc.context_mark
        why = "; ".join(part for part in (exc.context, exc.problem) if part)
        return f"line {mark.line + 1}, column {mark.column + 1}: {why}"
    return " ".join(str(exc).split())


def leaves(obj: Any = DEFAULT, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """Every leaf setting as (dotted key, field, value), in declaration order.

    >>> next(leaves())[0]
    'selectors.model'
    """
    for spec in dataclasses.fields(obj):
        value = getattr(obj, spec.name)
        key = f"{prefix}{_yaml_key(spec.name)}"
        if dataclasses.is_dataclass(value):
            yield from leaves(value, f"{key}.")
        else:
            yield key, spec, value


def alert_setting(cfg: Config, alert: str, name: str, default: str) -> str:
    """An alert's severity or for duration: the config override, else the table default.

    >>> alert_setting(DEFAULT, "InferwatchGpuLost", "severity", "critical")
    'critical'
    """
    override = cfg.alerts.get(alert)
    value = getattr(override, name, None) if override else None
    return value if value is not None else default
