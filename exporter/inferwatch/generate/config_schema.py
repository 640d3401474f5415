"""The generator config's schema: its sections as frozen dataclasses with their defaults, and
reading or replacing a setting by its dotted key.

Each leaf's field holds its default, the line the reference documents and its check
(config_checks); the loader (config_build) runs that check on the value a file gives. Apart
from the loading: the rules and dashboards read a built config and need nothing of how it was
loaded.

>>> DEFAULT.slo.fast_burn.factor, DEFAULT.slo.slow_burn.factor
(14.4, 6.0)
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from inferwatch.catalogue import OBJECTIVE_KEYS as CATALOGUE_OBJECTIVE_KEYS
from inferwatch.generate import config_checks as check

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


def frozen(mapping: Mapping) -> Mapping:
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
    versions_serving: str = _setting("15m", "how recently a version must have served calls "
                                     "to count for InferwatchTooManyVersionsServing (shorter "
                                     "than that alert's for) and for InferwatchModelStale",
                                     check.duration)


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
    availability: float = _setting(0.999, "target ratio of calls that did not fail (every "
                                   "outcome but error: cancelled calls count as available); "
                                   "the error budget is 1 - availability", check.open_ratio)
    fast_burn: BurnRate = field(default_factory=BurnRate, metadata=_meta(
        "InferwatchErrorBudgetBurnFast: 2% of a 30-day budget in 1h"))
    slow_burn: BurnRate = field(default_factory=_slow_burn, metadata=_meta(
        "InferwatchErrorBudgetBurnSlow: 5% of a 30-day budget in 6h"))


@dataclass(frozen=True)
class Latency:
    p99_seconds: float = _setting(0.5, "p99 end-to-end latency above which "
                                  "InferwatchLatencyHigh fires", check.latency_threshold)
    first_item_p99_seconds: float = _setting(1.0, "p99 time to first item of streaming calls "
                                             "above which InferwatchStreamFirstItemSlow fires",
                                             check.latency_threshold)


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
    schema_error_ratio: float = _setting(0.05, "input errors of one schema reason (missing_column, "
                                         "wrong_type, wrong_width, wrong_shape) per call above "
                                         "which InferwatchInputSchemaErrors fires", check.ratio)


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
    max_error_ratio: float = _setting(1.5, "how many times the mean absolute error in a "
                                      "regression model's reference its live mean absolute "
                                      "error may reach before InferwatchRegressionErrorRise "
                                      "fires", check.above_one)
    max_error: float | None = _setting(None, "mean absolute error (in the model's output "
                                       "unit) above which InferwatchRegressionErrorRise fires "
                                       "whatever the reference says, also for a model without "
                                       "one (empty: none)", check.positive)


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
    jobs: Mapping = _setting(frozen({}), "expected period of a pushing job where it differs "
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
    min_coverage: float = _setting(0.125, "share of the baseline window that must hold "
                                   "values before the band is drawn and the alert may fire "
                                   "(0.125: 3h of a 1d window), so that a short canary "
                                   "yesterday is no band; 0 leaves the count out",
                                   check.ratio)
    min_traffic: float = _setting(0.1, "calls per second of the model (over the short window) "
                                  "below which the signal means nothing and the alert stays "
                                  "quiet", check.non_negative)
    sigma_floor: float = _setting(0.0, "smallest sigma, in the signal's unit, so a flat series "
                                  "does not page on a wobble", check.non_negative)
    sigma_floor_ratio: float = _setting(0.05, "smallest sigma as a share of the expected "
                                        "value (for prediction quantiles, of the largest "
                                        "expected quantile of the same output)",
                                        check.non_negative)
    seasonal: bool = _setting(True, "whether the band follows the same time a week (or a day) "
                              "ago (seasonal_offsets); off, expected is the trailing mean alone "
                              "and the band costs 3 series instead of 5")


_SIGNAL_HELP = _meta("one signal's baseline: enabled, k, window, baseline_window, "
                     "baseline_offset, min_history, min_coverage, min_traffic, sigma_floor, "
                     "sigma_floor_ratio, seasonal")


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
# Objectives only the config sets, per model in a models: entry: instrument(objectives=...)
# takes the catalogue's keys alone.
CONFIG_OBJECTIVE_KEYS = ("accuracy.max_error_ratio", "accuracy.max_error")
# Models declare the catalogue's keys in code too (instrument(objectives=...)).
OBJECTIVE_KEYS = (*CATALOGUE_OBJECTIVE_KEYS, *CONFIG_OBJECTIVE_KEYS, *BASELINE_OBJECTIVE_KEYS)
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
        return is_name(self.pattern)


def is_name(pattern: str) -> bool:
    """Whether a models: pattern is a plain model name rather than a regex."""
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
        if len(key) > 253 or not _K8S_DATA_KEY.fullmatch(key):
            return (f"must name a key of the {given[0]} (letters, digits, '-', '_' and '.'), "
                    f"got {key!r}")
        if key in (".", "..") or key.startswith(".."):
            # Kubernetes refuses them as data keys (a mounted key would be the directory
            # itself or reach out of it): no object holds one, so the operator drops the
            # monitor and its targets go unscraped.
            return (f"must name a key of the {given[0]}, which Kubernetes refuses to be '.' or "
                    f"'..' or to start with '..', got {key!r}")
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
    tls_ca: Mapping = _setting(frozen({}), "CA the targets' certificates are verified "
                               "against: {secret: NAME, key: KEY} or {config_map: NAME, key: "
                               "KEY} (empty: the CAs of Prometheus' image)",
                               _object_key("secret", "config_map"))
    tls_server_name: str | None = _setting(None, "name the targets' certificate must hold "
                                           "(empty: the address scraped, usually a Pod IP "
                                           "no certificate holds)", _server_name)
    tls_insecure_skip_verify: bool = _setting(False, "accept any certificate (testing only)")
    tls_cert: Mapping = _setting(frozen({}), "client certificate Prometheus presents to targets "
                                 "that require one (mTLS): {secret: NAME, key: KEY} or "
                                 "{config_map: NAME, key: KEY} (empty: none; set with tls_key)",
                                 _object_key("secret", "config_map"))
    tls_key: Mapping = _setting(frozen({}), "private key of tls_cert: {secret: NAME, key: KEY}",
                                _object_key("secret"))
    basic_auth_username: Mapping = _setting(frozen({}), "basic auth user name: {secret: NAME, "
                                            "key: KEY} (empty: no basic auth)",
                                            _object_key("secret"))
    basic_auth_password: Mapping = _setting(frozen({}), "basic auth password: {secret: NAME, "
                                            "key: KEY}", _object_key("secret"))


_SCRAPE_HELP = _meta("TLS and basic auth of the scrapes: scheme, tls_ca, tls_server_name, "
                     "tls_insecure_skip_verify, tls_cert, tls_key, basic_auth_username, "
                     "basic_auth_password")


@dataclass(frozen=True)
class Kubernetes:
    namespace: str = _setting("monitoring", "namespace of the generated manifests", check.k8s_name)
    rule_name: str = _setting("inferwatch", "name of the PrometheusRule, ServiceMonitor and "
                              "PodMonitor", check.k8s_name)
    labels: Mapping = _setting(frozen({"app.kubernetes.io/part-of": "inferwatch"}),
                               "labels on every manifest (add the one your Prometheus Operator "
                               "selects on)", check.label_map)
    model_match_labels: Mapping = _setting(frozen({"inferwatch.io/scrape": "model"}),
                                           "labels selecting the model Services to scrape",
                                           check.match_labels)
    exporter_match_labels: Mapping = _setting(
        frozen({"app.kubernetes.io/name": "inferwatch-exporter"}),
        "labels selecting the exporter Pods", check.match_labels)
    model_job: str = _setting("inferwatch-model", "job label given to model targets (keep "
                              "selectors.model matching it; unset, it follows a job=\"X\" "
                              "of selectors.model)", check.job_name)
    exporter_job: str = _setting("inferwatch-exporter", "job label given to exporter targets "
                                 "(keep selectors.exporter matching it; unset, it follows a "
                                 "job=\"X\" of selectors.exporter)", check.job_name)
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
    alerts: Mapping = _setting(frozen({}), "per-alert overrides: {AlertName: {severity, for}}")
    models: Mapping = _setting(frozen({}), "per-model overrides: {model name or regex: {section: "
                               "{key: value}, alerts: {AlertName: {severity, for}}}}")
    links: Links = field(default_factory=Links, metadata=_meta(
        "dashboard and runbook URLs in alert annotations"))
    dashboards: Dashboards = field(default_factory=Dashboards, metadata=_meta(
        "dashboard identity and defaults"))
    kubernetes: Kubernetes = field(default_factory=Kubernetes, metadata=_meta(
        "PrometheusRule, ServiceMonitor, PodMonitor"))


DEFAULT = Config()


def yaml_key(name: str) -> str:
    """The YAML key of the config field `name`."""
    # `for` is a Python keyword, so the field is for_ and the YAML key is for.
    return name.rstrip("_")


def leaves(obj: Any = DEFAULT, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """Every leaf setting as (dotted key, field, value), in declaration order.

    >>> next(leaves())[0]
    'selectors.model'
    """
    for spec in dataclasses.fields(obj):
        value = getattr(obj, spec.name)
        key = f"{prefix}{yaml_key(spec.name)}"
        if dataclasses.is_dataclass(value):
            yield from leaves(value, f"{key}.")
        else:
            yield key, spec, value


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


def alert_setting(cfg: Config, alert: str, name: str, default: str) -> str:
    """An alert's severity or for duration: the config override, else the table default.

    >>> alert_setting(DEFAULT, "InferwatchGpuLost", "severity", "critical")
    'critical'
    """
    override = cfg.alerts.get(alert)
    value = getattr(override, name, None) if override else None
    return value if value is not None else default
