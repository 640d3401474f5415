"""A traffic simulator for the adaptive-baseline rules: days of scrapes, as promtool input.

Every series is named from the metric catalogue (the names are looked up there, so a
renamed metric breaks the simulator, not silently the test) and carries the labels the
instrumentation writes. Each simulated model serves diurnal traffic with Poisson noise and
a slow day-to-day drift of its level, a small background error rate, log-normal latencies
with rare one-minute blips, rolling prediction and confidence quantiles that wobble a few
percent, a stable class mix, a little missing and out-of-range input, and noisy drift
gauges. A :class:`Fault` changes one of those from a given time on.

:func:`scenario` runs several models side by side in one promtool test file: the rules are
evaluated once for all of them, and :func:`run` reads back, per model, when each alert first
fired.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from inferwatch.catalogue import CATALOGUE
from inferwatch.core.options import LATENCY_BUCKETS

JOB = "inferwatch-model"
DAY = 86400.0
HOUR = 3600.0


def metric(name: str, suffix: str = "") -> str:
    """A catalogue metric's exposed name (with a histogram or summary suffix)."""
    spec = CATALOGUE[name]
    if suffix:
        assert spec.kind in ("histogram", "summary"), name
    return name + suffix


@dataclass(frozen=True)
class Fault:
    """A change to one model's behaviour from `start` seconds on (`at(t)`: hours since start)."""

    name: str
    alert: str  # the baseline alert expected to catch it
    start: float
    bound: float  # seconds within which the alert must fire
    changes: dict[str, Callable[[float], float]] = field(default_factory=dict)

    def factor(self, key: str, t: float, default: float = 1.0) -> float:
        if key not in self.changes or t < self.start:
            return default
        return self.changes[key]((t - self.start) / HOUR)


@dataclass(frozen=True)
class Model:
    """One simulated model: its normal behaviour, and an optional fault."""

    name: str
    calls_per_second: float = 5.0
    diurnal_amplitude: float = 0.6  # share of the mean that the daily cycle swings
    peak_hour: float = 14.0
    error_ratio: float = 0.002
    latency_median: float = 0.05
    latency_spread: float = 0.6  # sigma of the log-normal
    blip_chance: float = 1 / 600  # per minute: a minute of 4x latency
    rows_per_call: float = 4.0
    prediction_quantiles: tuple[tuple[str, float], ...] = (("0.5", 0.3), ("0.9", 0.7),
                                                           ("0.99", 0.9))
    confidence_quantiles: tuple[tuple[str, float], ...] = (("0.5", 0.85), ("0.9", 0.95),
                                                           ("0.99", 0.99))
    class_share: float = 0.2  # share of class "1"
    missing_ratio: float = 0.005
    out_of_range_ratio: float = 0.003
    wobble: float = 0.03
    faults: tuple[Fault, ...] = ()  # each changes a different part of the behaviour


def _lognormal_cdf(x: float, median: float, spread: float) -> float:
    return 0.5 * (1 + math.erf(math.log(x / median) / (spread * math.sqrt(2))))


def _fmt(values: np.ndarray, integer: bool) -> str:
    if integer:
        return " ".join(str(int(v)) for v in values)
    return " ".join(f"{v:.5g}" for v in values)


def _labels(model: str, **extra: str) -> str:
    pairs = {"job": JOB, "instance": "sim:8000", "model": model, "model_version": "1", **extra}
    return "{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in pairs.items()) + "}"


def simulate(model: Model, seconds: float, step: float, seed: int) -> dict[str, str]:
    """Every series of one model, scraped every `step` seconds: {series: promtool values}."""
    rng = np.random.default_rng(seed)
    times = np.arange(0, seconds + step / 2, step)

    def each(key: str) -> np.ndarray:
        factors = np.ones(len(times))
        for fault in model.faults:
            factors *= np.array([fault.factor(key, t) for t in times])
        return factors

    hours = times / HOUR
    daily = 1 + model.diurnal_amplitude * np.sin(2 * math.pi * (hours - model.peak_hour + 6) / 24)
    level = 1 + 0.04 * np.sin(2 * math.pi * hours / (24 * 3.7) + seed)
    rate = model.calls_per_second * daily * level * each("traffic")
    calls = rng.poisson(rate * step)
    errors = rng.binomial(calls, model.error_ratio)
    rows_per_call = model.rows_per_call * each("batch_size")
    rows = calls + rng.poisson(calls * (rows_per_call - 1))
    out: dict[str, str] = {}

    def counter(name: str, increments: np.ndarray, **labels: str) -> None:
        out[f"{name}{_labels(model.name, **labels)}"] = _fmt(np.cumsum(increments), True)

    def gauge(name: str, values: np.ndarray, **labels: str) -> None:
        out[f"{name}{_labels(model.name, **labels)}"] = _fmt(values, False)

    gauge("up", np.ones(len(times)))
    exporter = '{job="inferwatch-exporter", instance="sim:9100"}'
    out.setdefault(f"up{exporter}", _fmt(np.ones(len(times)), False))
    gauge(metric("inferwatch_model_info"), np.ones(len(times)))
    requests = metric("inferwatch_requests_total")
    counter(requests, calls - errors, outcome="ok")
    counter(requests, errors, outcome="error")
    # Latency histogram: each scrape's calls spread over the buckets of a log-normal.
    median = model.latency_median * each("latency")
    blips = np.where(rng.random(len(times)) < model.blip_chance, 4.0, 1.0)
    bounds = [*LATENCY_BUCKETS, math.inf]
    cumulative = np.zeros((len(times), len(bounds)), dtype=np.int64)
    for i, (n, m) in enumerate(zip(calls, median * blips)):
        cdf = [_lognormal_cdf(b, m, model.latency_spread) if b != math.inf else 1.0
               for b in bounds]
        probabilities = np.diff([0.0, *cdf])
        cumulative[i] = np.cumsum(rng.multinomial(n, probabilities / probabilities.sum()))
    duration = metric("inferwatch_request_duration_seconds", "_bucket")
    for j, bound in enumerate(bounds):
        le = "+Inf" if bound == math.inf else f"{bound:g}"
        counter(duration, cumulative[:, j], le=le)
    counter(metric("inferwatch_request_duration_seconds", "_count"), calls)
    counter(metric("inferwatch_batch_size", "_sum"), rows)
    counter(metric("inferwatch_batch_size", "_count"), calls)
    shift = each("prediction_shift") - 1  # an added amount, not a factor
    for quantile, value in model.prediction_quantiles:
        noise = 1 + model.wobble * rng.standard_normal(len(times))
        gauge(metric("inferwatch_prediction"), (value + shift) * noise, output="score",
              quantile=quantile)
    for quantile, value in model.confidence_quantiles:
        noise = 1 + model.wobble / 3 * rng.standard_normal(len(times))
        gauge(metric("inferwatch_prediction_confidence"),
              np.minimum(value * each("confidence") * noise, 1.0), quantile=quantile)
    share = np.clip(model.class_share * each("class_share"), 0, 1)
    positives = rng.binomial(rows, share)
    counter(metric("inferwatch_predicted_class_total"), positives, **{"class": "1"})
    counter(metric("inferwatch_predicted_class_total"), rows - positives, **{"class": "0"})
    for feature in ("amount", "country"):
        missing = model.missing_ratio * (each("missing") if feature == "amount" else 1)
        counter(metric("inferwatch_feature_missing_total"), rng.binomial(rows, missing),
                feature=feature)
        counter(metric("inferwatch_feature_out_of_range_total"),
                rng.binomial(rows, model.out_of_range_ratio), feature=feature)
        gauge(metric("inferwatch_feature_drift"),
              np.abs(0.05 + 0.02 * rng.standard_normal(len(times))), feature=feature,
              method="psi")
    gauge(metric("inferwatch_drift_window_observations"), np.full(len(times), 5000.0))
    return out


def baseline_alerts() -> list[str]:
    from inferwatch.generate.baselines import SIGNALS

    return [spec.alert for spec in SIGNALS.values()]


def _duration(seconds: float) -> str:
    return f"{int(seconds // 60)}m"


def scenario(models: list[Model], seconds: float, step: float, evaluation: str,
             rule_files: list[str], group_order: list[str],
             check_every: float = 1800) -> dict[str, Any]:
    """One promtool test file: every model's series, the quiet checks and the delay probes.

    Quiet checks (promtool asserts them): no alert fires on a model without a fault, none
    fires on any model before its fault starts, and no fixed-threshold alert fires at all,
    checked every `check_every` seconds. Each fault's alert must fire within its bound
    (a `group()` of its firing series is 1 by then). Delay probes ask when each fault's
    alert first fired: they expect nothing, so promtool prints what they found and
    :func:`run` reads it back.
    """
    series: dict[str, str] = {}
    for seed, model in enumerate(models):
        series.update(simulate(model, seconds, step, seed))
    adaptive = "|".join(baseline_alerts())
    clean = "|".join(m.name for m in models if not m.faults)
    checks: list[dict[str, Any]] = []
    first_fault = min((f.start for m in models for f in m.faults), default=seconds)
    t = check_every
    while t <= seconds:
        if t <= first_fault:
            checks.append({"expr": 'ALERTS{alertstate="firing"}', "eval_time": _duration(t),
                           "exp_samples": []})
        else:
            if clean:
                checks.append({"expr": f'ALERTS{{alertstate="firing", model=~"{clean}"}}',
                               "eval_time": _duration(t), "exp_samples": []})
            checks.append({"expr": f'ALERTS{{alertstate="firing", alertname!~"{adaptive}"}}',
                           "eval_time": _duration(t), "exp_samples": []})
        t += check_every
    for model in models:
        for fault in model.faults:
            firing = (f'ALERTS{{alertstate="firing", alertname="{fault.alert}", '
                      f'model="{model.name}"}}')
            checks.append({"expr": f"group({firing})",
                           "eval_time": _duration(fault.start + fault.bound),
                           "exp_samples": [{"labels": "{}", "value": 1}]})
            span = _duration(seconds - fault.start)
            # Seconds from the fault to the first evaluation that saw its alert firing.
            checks.append({"expr": f"min(min_over_time(timestamp({firing})"
                                   f"[{span}:{evaluation}])) - {int(fault.start)}",
                           "eval_time": _duration(seconds), "exp_samples": []})
    return {"rule_files": rule_files, "evaluation_interval": evaluation,
            # promtool evaluates groups in random order unless told: the alerts read what the
            # recording rules wrote at the same evaluation.
            "group_eval_order": group_order,
            "tests": [{"interval": f"{int(step)}s",
                       "input_series": [{"series": s, "values": v} for s, v in series.items()],
                       "promql_expr_test": checks}]}


@dataclass
class Outcome:
    """What promtool said: the checks that failed, and the delay each probe found."""

    returncode: int
    output: str
    delays: dict[str, float]
    failures: list[str]


_FAILED = re.compile(r'expr: "(?P<expr>(?:[^"\\]|\\.)*)", time: (?P<time>\S+),\n\s+exp: '
                     r"(?P<exp>.*?)\n\s+got: (?P<got>.*?)(?=\n\s+expr: |\Z)", re.S)


def run(test: dict[str, Any], directory: Path, promtool: str) -> Outcome:
    """Write the test next to the rule files and run promtool on it."""
    path = directory / "simulated-week.yml"
    path.write_text(yaml.safe_dump(test, width=10**9))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True,
                            text=True, timeout=600, cwd=directory)
    output = result.stdout + result.stderr
    delays: dict[str, float] = {}
    failures = []
    for match in _FAILED.finditer(output):
        expr = json.loads(f'"{match["expr"]}"')
        probe = re.match(r'min\(min_over_time\(timestamp\(ALERTS\{alertstate="firing", '
                         r'alertname="(\w+)", model="([^"]+)"', expr)
        if probe:
            found = re.search(r"(\S+)$", match["got"])
            delays[f"{probe[2]}/{probe[1]}"] = float(found.group(1)) if found else math.inf
        else:
            failures.append(f"{expr} at {match['time']}: got {match['got'].strip()}")
    return Outcome(result.returncode, output, delays, failures)


def faulty_models(start: float) -> list[Model]:
    """The faults that fixed thresholds miss, none with a reference profile, each with the
    time within which its alert must fire. Two models carry three faults each, on signals
    that do not feed one another, so one promtool run evaluates them all."""
    h = HOUR
    return [
        Model("quiet-shift", faults=(
            Fault("prediction p50 0.3 -> 0.45 (shift by half)", "InferwatchPredictionShift",
                  start, 1 * h, {"prediction_shift": lambda _: 1.15}),
            Fault("class mix 20% -> 40%", "InferwatchClassMixShift", start, 1 * h,
                  {"class_share": lambda _: 2.0}),
            Fault("confidence p50 0.85 -> 0.72", "InferwatchConfidenceDrop", start, 1 * h,
                  {"confidence": lambda _: 0.85}),
        )),
        Model("slow-harm", peak_hour=20.0, faults=(
            Fault("traffic halves at peak", "InferwatchTrafficAnomaly", start, 1 * h,
                  {"traffic": lambda _: 0.5}),
            Fault("missing 0.5% -> 3% (fixed threshold 5%)", "InferwatchMissingRateAnomaly",
                  start, 1 * h, {"missing": lambda _: 6.0}),
            Fault("latency creeps +5% an hour", "InferwatchLatencyAnomaly", start, 10 * h,
                  {"latency": lambda hours: 1 + 0.05 * hours}),
        )),
    ]


def expected_delays(models: list[Model]) -> dict[str, Fault]:
    """Each fault by the key :func:`run` reports its delay under."""
    return {f"{m.name}/{f.alert}": f for m in models for f in m.faults}


def with_gap(series: dict[str, str], start: float, end: float, step: float,
             model: str | None = None) -> dict[str, str]:
    """`series` (as :func:`simulate` writes them) with no scrape in [start, end): the model's
    targets were down. Only `model`'s series when given, else every series but the
    exporter's."""
    out = {}
    for name, values in series.items():
        if (model is not None and f'model="{model}"' not in name) or \
                'job="inferwatch-exporter"' in name:
            out[name] = values
            continue
        samples = values.split()
        out[name] = " ".join("_" if start <= i * step < end else v
                             for i, v in enumerate(samples))
    return out


def idle_replica(series: dict[str, str], model: str, instance: str = "sim:8001") -> dict[str, str]:
    """`series` plus a second replica of `model` that takes no calls: its counters stay at
    0 and its rolling quantiles are NaN (an empty window), as inferwatch exposes them."""
    out = dict(series)
    for name, values in series.items():
        if f'model="{model}"' not in name or 'instance="sim:8000"' not in name:
            continue
        count = len(values.split())
        rolling = name.startswith((metric("inferwatch_prediction") + "{",
                                   metric("inferwatch_prediction_confidence") + "{"))
        fill = "NaN" if rolling else ("1" if name.startswith(("up{", "inferwatch_model_info{"))
                                      else "0")
        out[name.replace('instance="sim:8000"', f'instance="{instance}"')] = \
            " ".join([fill] * count)
    return out


def quiet_hours(series: dict[str, str], model: str, start: float, end: float, step: float,
                every: float = DAY) -> dict[str, str]:
    """`series` with `model` taking no calls in [start, end) of every `every` seconds (a
    model quiet at night): its targets stay up, its counters stand still and its rolling
    quantiles are NaN (an empty window), as inferwatch exposes them."""
    rolling = (metric("inferwatch_prediction") + "{",
               metric("inferwatch_prediction_confidence") + "{")
    counters = ("_total{", "_bucket{", "_count{", "_sum{")
    out = dict(series)
    for name, values in series.items():
        if f'model="{model}"' not in name:
            continue
        samples = values.split()
        quiet = [start <= (i * step) % every < end for i in range(len(samples))]
        if name.startswith(rolling):
            out[name] = " ".join("NaN" if q else v for q, v in zip(quiet, samples))
        elif any(part in name for part in counters):
            counts = np.array([float(v) for v in samples])
            steps = np.diff(counts, prepend=0.0)
            steps[np.array(quiet)] = 0.0
            out[name] = _fmt(np.cumsum(steps), True)
    return out


def bump(series: dict[str, str], prefix: str, at: float, step: float, amount: int = 1) -> \
        dict[str, str]:
    """`series` with every counter whose name starts with `prefix` raised by `amount` from
    `at` seconds on: an increment the other counters of the same calls do not show (scraped
    out of step with them)."""
    out = dict(series)
    for name, values in series.items():
        if name.startswith(prefix):
            out[name] = " ".join(str(int(v) + amount) if i * step >= at else v
                                 for i, v in enumerate(values.split()))
    return out


def latency_histogram(model: str, version: str, calls: np.ndarray, median: float,
                      spread: float, bounds: tuple[float, ...], seed: int) -> dict[str, str]:
    """The latency histogram series of one version of `model` (log-normal latencies) with
    its own bucket boundaries; scrapes with `calls` below 0 are left out (not yet
    deployed)."""
    rng = np.random.default_rng(seed)
    edges = [*bounds, math.inf]
    served = calls >= 0
    counts = np.zeros((len(calls), len(edges)), dtype=np.int64)
    cdf = [_lognormal_cdf(b, median, spread) if b != math.inf else 1.0 for b in edges]
    probabilities = np.diff([0.0, *cdf])
    for i, n in enumerate(np.maximum(calls, 0)):
        counts[i] = np.cumsum(rng.multinomial(n, probabilities / probabilities.sum()))
    totals = np.cumsum(counts, axis=0)

    def values(column: np.ndarray) -> str:
        return " ".join(str(int(v)) if s else "_" for v, s in zip(column, served))

    out: dict[str, str] = {}
    duration = metric("inferwatch_request_duration_seconds", "_bucket")
    pairs = {"job": JOB, "instance": "sim:8000", "model": model, "model_version": version}
    for j, bound in enumerate(edges):
        le = "+Inf" if bound == math.inf else f"{bound:g}"
        labels = {**pairs, "le": le}
        out[duration + "{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in labels.items())
            + "}"] = values(totals[:, j])
    return out
