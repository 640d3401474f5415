"""Metric families from model states: the one place the exposition is built.

Both a single process and the merged multi-worker view render through
:func:`model_families` and :func:`process_families`, so the two cannot disagree.

>>> from inferwatch.core.state import ModelState
>>> state = ModelState("fraud", "1.4.2")
>>> state.inc("inferwatch_requests_total", ("ok",), 3)
>>> [f.name for f in model_families([state], now=0.0) if f.samples]
['inferwatch_model_info', 'inferwatch_requests']
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client.core import Exemplar, Metric
from prometheus_client.utils import floatToGoString

from inferwatch.catalogue import CATALOGUE, MODEL_LABELS, MetricSpec, empty_family
from inferwatch.core.state import ModelState

# Packages whose version change is a deploy worth seeing; only those already imported.
ML_PACKAGES = ("numpy", "scipy", "pandas", "sklearn", "torch", "tensorflow", "keras", "jax",
               "xgboost", "lightgbm", "catboost", "onnxruntime", "transformers", "statsmodels")
_DISTRIBUTIONS = {"sklearn": "scikit-learn"}
_version_cache: dict[str, str] = {}

# Per-model catalogue metrics, in the order their families are rendered.
PER_MODEL = [s for s in CATALOGUE.values() if s.per_model and s.source == "instrumentation"]

# Summaries of values a model computes freely: a regression predicts negative values, and a
# probability output out of [0, 1] sums below zero. OpenMetrics has no negative quantile nor
# negative _sum, so in OpenMetrics these families are always written as three gauge families
# (the quantiles, `_count` and `_sum`, under the same sample names and labels): chosen by the
# family and never by one scrape's values, so their type does not change from scrape to
# scrape. The quantiles of the other summaries cannot be negative (a clipped probability, an
# absolute difference), so they stay summaries; only a _sum that an out-of-range probability
# took below zero is left off in OpenMetrics.
SIGNED_SUMMARIES = ("inferwatch_prediction",)
_SPLIT_HELP = {
    "_count": "Values observed by {name} (its summary's _count; a gauge in OpenMetrics, "
              "which has no summary of negative values).",
    "_sum": "Sum of the values observed by {name} (its summary's _sum; a gauge in "
            "OpenMetrics, which has no summary of negative values).",
}
# Family names the signed summaries are written under in OpenMetrics, and what each holds.
OPENMETRICS_SPLIT = {name + suffix: (name, suffix)
                     for name in SIGNED_SUMMARIES for suffix in ("", *_SPLIT_HELP)}


def _family(spec: MetricSpec) -> Metric:
    return empty_family(spec.name)


def openmetrics_family(name: str) -> Metric:
    """The empty family (name, HELP, type) a catalogue metric, or one of the gauge families
    a signed summary is split into (:data:`OPENMETRICS_SPLIT`), has in OpenMetrics.

    >>> [(f.name, f.type) for f in map(openmetrics_family, ["inferwatch_prediction",
    ...                                                     "inferwatch_prediction_sum"])]
    [('inferwatch_prediction', 'gauge'), ('inferwatch_prediction_sum', 'gauge')]
    """
    split = OPENMETRICS_SPLIT.get(name)
    if split is None:
        return empty_family(name)
    summary, suffix = split
    help_text = _SPLIT_HELP[suffix].format(name=summary) if suffix else CATALOGUE[summary].help
    return Metric(name, help_text, "gauge")


def openmetrics_sum_allowed(value: float) -> bool:
    """Whether OpenMetrics allows `value` as a summary's or histogram's ``_sum`` (NaN is not)."""
    return value >= 0


def describe_families() -> list[Metric]:
    """Empty families for every in-process metric, for ``Collector.describe()``."""
    names = ("inferwatch_internal_errors_total", "inferwatch_series_overflow_total",
             "inferwatch_dependency_info", "inferwatch_events_dropped_total")
    return [_family(s) for s in PER_MODEL] + [_family(CATALOGUE[n]) for n in names]


def model_families(states: Iterable[ModelState], now: float, *,
                   text_format: bool = False, openmetrics: bool = False) -> list[Metric]:
    """One family per per-model catalogue metric, holding every state's series.

    `text_format`: the families go out only in Prometheus' text format (a Pushgateway push),
    which allows a negative histogram ``_sum``: every histogram keeps its ``_count`` and
    ``_sum``, which a gateway would otherwise fill in as 0.

    `openmetrics`: the families go out only in OpenMetrics, which allows no negative
    quantile nor negative (or NaN) ``_sum``: each of :data:`SIGNED_SUMMARIES` becomes three
    gauge families (:func:`openmetrics_family`), and another summary leaves out a ``_sum``
    that is negative or NaN. Without either, a summary is written as it is in the text format.
    """
    if text_format and openmetrics:
        raise ValueError("model_families: text_format and openmetrics exclude each other")
    families = {spec.name: _family(spec) for spec in PER_MODEL}
    histogram = functools.partial(_histogram, all_sums=True) if text_format else _histogram
    for state in states:
        base = {"model": state.model, "model_version": state.version}
        _identity(families, state, base)
        drift = state.extras.get("drift")
        if drift is not None:
            _drift(families, drift, base, now)
        summary = functools.partial(_summary, quantiles=state.summary_settings.quantiles, now=now)
        for part, add in ((state.counters, _value), (state.gauges, _value),
                          (state.histograms, histogram), (state.summaries, summary)):
            for metric, series in part.items():
                family, spec = families.get(metric), CATALOGUE.get(metric)
                if family is None or spec is None:
                    continue
                for labels, item in series.items():
                    add(family, metric, {**base, **dict(zip(spec.labels, labels))}, item)
    found = [f for f in families.values() if f.samples]
    return openmetrics_families(found) if openmetrics else found


def openmetrics_families(families: Iterable[Metric]) -> list[Metric]:
    """`families` as OpenMetrics allows them (see ``model_families``): inferwatch's summary
    families rewritten, every other family (an application's own) as it is. Families
    already rewritten pass unchanged; `families` themselves are never modified.

    >>> from prometheus_client.core import SummaryMetricFamily
    >>> family = SummaryMetricFamily("inferwatch_prediction", "", count_value=2, sum_value=-3)
    >>> [(f.name, f.type) for f in openmetrics_families([family]) if f.samples]
    [('inferwatch_prediction_count', 'gauge'), ('inferwatch_prediction_sum', 'gauge')]
    """
    out: list[Metric] = []
    for family in families:
        spec = CATALOGUE.get(family.name)
        if family.type != "summary" or spec is None or spec.kind != "summary":
            out.append(family)
        elif family.name in SIGNED_SUMMARIES:
            parts = {suffix: openmetrics_family(family.name + suffix)
                     for suffix in ("", *_SPLIT_HELP)}
            for sample in family.samples:
                parts[sample.name[len(family.name):]].samples.append(sample)
            # A `?name[]=` selection may have kept only some of the samples.
            out.extend(part for part in parts.values() if part.samples)
        else:
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = [s for s in family.samples if not s.name.endswith("_sum")
                            or openmetrics_sum_allowed(s.value)]
            out.append(kept)
    return out


def combine(family_lists: Iterable[list[Metric]]) -> list[Metric]:
    """One family per name from several lists (one per monitor), samples concatenated."""
    merged: dict[str, Metric] = {}
    for families in family_lists:
        for family in families:
            into = merged.get(family.name)
            if into is None:
                merged[family.name] = family
            else:
                into.samples.extend(family.samples)
    return list(merged.values())


def _identity(families: dict[str, Metric], state: ModelState, base: dict[str, str]) -> None:
    families["inferwatch_model_info"].add_sample(
        "inferwatch_model_info", {**base, **state.info}, 1.0)
    if not math.isnan(state.loaded_at):
        families["inferwatch_model_loaded_timestamp_seconds"].add_sample(
            "inferwatch_model_loaded_timestamp_seconds", base, state.loaded_at)
    if not math.isnan(state.trained_at):
        families["inferwatch_model_trained_timestamp_seconds"].add_sample(
            "inferwatch_model_trained_timestamp_seconds", base, state.trained_at)
    for objective, value in state.objectives.items():
        families["inferwatch_model_objective"].add_sample(
            "inferwatch_model_objective", {**base, "objective": objective}, value)
    for metric, value in state.validation.items():
        families["inferwatch_reference_validation"].add_sample(
            "inferwatch_reference_validation", {**base, "metric": metric}, value)


def _drift(families: dict[str, Metric], drift, base: dict[str, str], now: float) -> None:
    feature_scores, output_scores, rows = drift.scores(now)
    families["inferwatch_drift_window_observations"].add_sample(
        "inferwatch_drift_window_observations", base, float(rows))
    for feature, count in drift.observations(now).items():
        families["inferwatch_feature_drift_observations"].add_sample(
            "inferwatch_feature_drift_observations", {**base, "feature": feature}, count)
    for (feature, method), value in feature_scores.items():
        families["inferwatch_feature_drift"].add_sample(
            "inferwatch_feature_drift", {**base, "feature": feature, "method": method}, value)
    for (output, method), value in output_scores.items():
        families["inferwatch_prediction_drift"].add_sample(
            "inferwatch_prediction_drift", {**base, "output": output, "method": method}, value)


def _value(family: Metric, name: str, labels: dict[str, str], value: float) -> None:
    family.add_sample(name, labels, value)


def _histogram(family: Metric, name: str, labels: dict[str, str], hist,
               all_sums: bool = False) -> None:
    cumulative = 0
    exemplars = hist.exemplars
    bucket = name + "_bucket"
    for index, (le, count) in enumerate(zip(_le_strings(hist.bounds), hist.counts[:-1].tolist())):
        cumulative += count
        family.add_sample(bucket, {**labels, "le": le}, cumulative,
                          exemplar=_exemplar(exemplars.get(index)) if exemplars else None)
    cumulative += int(hist.counts[-1])
    family.add_sample(name + "_bucket", {**labels, "le": "+Inf"}, cumulative,
                      exemplar=_exemplar(exemplars.get(len(hist.bounds))))
    if all_sums or ((not len(hist.bounds) or hist.bounds[0] >= 0) and hist.sum >= 0):
        # OpenMetrics forbids a _sum that is or could be negative (beside a negative bucket)
        # and a _count without a _sum; the +Inf bucket still counts every value.
        family.add_sample(name + "_count", labels, cumulative)
        family.add_sample(name + "_sum", labels, hist.sum)


_le_cache: dict[bytes, list[str]] = {}


def _le_strings(bounds) -> list[str]:
    """`le` label values of a histogram's bounds; every series of a metric shares them."""
    key = bounds.tobytes()
    strings = _le_cache.get(key)
    if strings is None:
        if len(_le_cache) > 256:  # reference profiles give each output its own bounds
            _le_cache.clear()
        strings = _le_cache[key] = [floatToGoString(b) for b in bounds.tolist()]
    return strings


def _exemplar(exemplar: tuple[str, float, float] | None) -> Exemplar | None:
    if exemplar is None:
        return None
    trace_id, value, at = exemplar
    return Exemplar({"trace_id": trace_id}, value, at)


def _summary(family: Metric, name: str, labels: dict[str, str], summary, *, quantiles,
             now: float) -> None:
    values = summary.quantiles(quantiles, now)
    for q, value in zip(quantiles, values):
        family.add_sample(name, {**labels, "quantile": floatToGoString(q)}, value)
    family.add_sample(name + "_count", labels, summary.count)
    family.add_sample(name + "_sum", labels, summary.sum)


def process_families(internal_errors: Mapping[str, float], overflow: Mapping[str, float],
                     events_dropped: Mapping[str, float],
                     dependencies: Mapping[str, str]) -> Iterator[Metric]:
    """Process-wide families: inferwatch's own faults, folds, drops and the ML stack."""
    for name, key, values in (
        ("inferwatch_internal_errors_total", "component", internal_errors),
        ("inferwatch_series_overflow_total", "metric", overflow),
        ("inferwatch_events_dropped_total", "reason", events_dropped),
    ):
        family = _family(CATALOGUE[name])
        for value_label, count in sorted(values.items()):
            family.add_sample(name, {key: value_label}, float(count))
        yield family
    family = _family(CATALOGUE["inferwatch_dependency_info"])
    for package, version in sorted(dependencies.items()):
        family.add_sample("inferwatch_dependency_info",
                          {"package": package, "package_version": version}, 1.0)
    yield family


def events_dropped_counts() -> dict[str, int]:
    """Events lost by this process's event logs, by reason ({} unless the event log is used).

    >>> isinstance(events_dropped_counts(), dict)
    True
    """
    events = sys.modules.get("inferwatch.events")
    if events is None:
        return {}
    return events.dropped_totals()


def loaded_ml_packages() -> dict[str, str]:
    """Versions of the ML packages this process has imported (never imports one)."""
    found: dict[str, str] = {}
    for package in ML_PACKAGES:
        module = sys.modules.get(package)
        if module is None:
            continue
        version = _version_cache.get(package)
        if version is None:
            try:
                version = str(getattr(module, "__version__", "") or "")
            except Exception:
                # A lazy module imports on attribute access, and that import can fail: one
                # such package must not cost the others their series (nor count a fault on
                # every scrape). Its installed distribution still says which version it is.
                version = ""
            version = version or _distribution_version(package)
            _version_cache[package] = version
        if version:
            found[_DISTRIBUTIONS.get(package, package)] = version
    return found


def _distribution_version(package: str) -> str:
    from importlib import metadata

    try:
        return str(metadata.version(_DISTRIBUTIONS.get(package, package)) or "")
    except Exception:  # not installed as a distribution, or its metadata is unreadable
        return ""


__all__ = ["MODEL_LABELS", "OPENMETRICS_SPLIT", "SIGNED_SUMMARIES", "describe_families",
           "events_dropped_counts", "loaded_ml_packages", "model_families",
           "openmetrics_families", "openmetrics_family", "openmetrics_sum_allowed",
           "process_families"]
