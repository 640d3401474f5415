"""Encoding a realistic deployment: inferwatch's encoder against prometheus_client's.

The deployment is 5 models with 50 features each and a reference (drift per feature and
method, data-quality counters per feature, latency, stage and value histograms, rolling
quantiles), recorded through ``instrument()``, about 1,500 samples. inferwatch's side is
the whole scrape from the model states (drain, drift scores, quantiles, encoding); the
baseline is prometheus_client's ``generate_latest`` over the same samples already built
as families, so it pays for formatting only. Per-sample times, alternately in one run.
"""

from __future__ import annotations

import gzip
import time
from functools import partial

import numpy as np
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from benchmarks.common import Row, alternate, fmt_seconds, per_call

MODELS = 5
FEATURES = 50
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
PER_SAMPLE_TARGET_SECONDS = 1.5e-6
RATIO_TARGET = 0.3


def realistic_deployment(models: int = MODELS, features: int = FEATURES, *, calls: int = 40,
                         rows: int = 16, seed: int = 11):
    """A CollectorRegistry serving `models` instrumented models, each with a reference of
    `features` features, next to one of the application's own counters; and its monitors."""
    from inferwatch.core.instrument import instrument
    from inferwatch.core.registry import Registry
    from inferwatch.quality.reference import Reference
    from inferwatch.serving.bridge import InferwatchCollector

    rng = np.random.default_rng(seed)
    monitors = Registry(drain_interval=3600)
    registry = CollectorRegistry()
    Counter("app_requests", "The application's own requests.", registry=registry).inc(7)
    registry.register(InferwatchCollector(monitors, events_dropped=dict))
    train = np.random.default_rng(0).normal(size=(2000, features))  # every worker's reference
    reference = Reference.from_data({f"feature_{i}": train[:, i] for i in range(features)},
                                    predictions=np.abs(train[:, 0]))
    for m in range(models):
        model = instrument(lambda batch: np.abs(batch[:, 0]), name=f"model-{m}",
                           version="1.4.2", reference=reference, registry=monitors)
        for _ in range(calls):
            model(rng.normal(size=(rows, features)))
    monitors.drain()
    return registry, monitors


def every_model_changed(monitors) -> None:
    """Mark every model as changed since the last scrape, as models with traffic are: the
    next scrape writes their lines afresh (an idle model's lines are the last scrape's,
    which would time no encoding at all). About a microsecond a model."""
    for monitor in monitors.monitors():
        monitor.update_state(_as_it_is)


def _as_it_is(state) -> None:
    """A change that changes nothing but the monitor's revision."""


class _Families:
    def __init__(self, families: list) -> None:
        self._families = families

    def collect(self) -> list:
        return self._families


def _families(registry: CollectorRegistry) -> list:
    return list(registry.collect())  # no scrape in progress: ordinary families


def run(quick: bool) -> list[Row]:
    from inferwatch.serving.exposition import render

    registry, monitors = realistic_deployment()
    try:
        families = _families(registry)
        samples = sum(len(f.samples) for f in families)
        prebuilt = _Families(families)
        calls, rounds = (10, 5) if quick else (40, 9)
        rows = []
        for label, accept, theirs_fn in (("text", None, generate_latest),
                                         ("OpenMetrics", OPENMETRICS, openmetrics_latest)):
            render(registry, accept, None)  # fill the label cache, as any later scrape finds it
            ours, theirs = alternate(
                partial(per_call, lambda a=accept: _changed_scrape(registry, monitors, a, None),
                        calls),
                partial(per_call, lambda f=theirs_fn: f(prebuilt), calls), rounds)
            ratio = ours / theirs
            rows.append(Row(
                f"{label} encoding, {MODELS} models x {FEATURES} features ({samples} samples), "
                "per sample", fmt_seconds(ours / samples),
                f"generate_latest {fmt_seconds(theirs / samples)}", ratio,
                f"<= {fmt_seconds(PER_SAMPLE_TARGET_SECONDS)} and <= {RATIO_TARGET}x",
                ours / samples <= PER_SAMPLE_TARGET_SECONDS and ratio <= RATIO_TARGET))
        zipped, theirs = alternate(
            partial(per_call, lambda: _changed_scrape(registry, monitors, None, "gzip"), calls),
            partial(per_call, lambda: gzip.compress(generate_latest(prebuilt), 6, mtime=0),
                    calls), rounds)
        rows.append(Row("text + gzip, per sample", fmt_seconds(zipped / samples),
                        f"generate_latest + gzip {fmt_seconds(theirs / samples)}",
                        zipped / theirs, f"<= {RATIO_TARGET}x (gzip's own cost is shared)",
                        zipped / theirs <= RATIO_TARGET))
        rows.extend(_parts(registry, monitors, samples, calls))
    finally:
        monitors.close()
    return rows


def _changed_scrape(registry, monitors, accept: str | None, encoding: str | None) -> bytes:
    """A scrape of `registry` after every model changed (see every_model_changed)."""
    from inferwatch.serving.exposition import render

    every_model_changed(monitors)
    return render(registry, accept, encoding)[0]


def _parts(registry, monitors, samples: int, calls: int) -> list[Row]:
    """Where the encoder's time goes: drift scoring and quantiles against the formatting."""
    now = time.time()

    def score_drift() -> None:
        for monitor in monitors.monitors():
            drift = monitor.state.extras.get("drift")
            if drift is not None:
                drift.scores(now)

    def quantiles() -> None:
        for monitor in monitors.monitors():
            state = monitor.state
            for series in state.summaries.values():
                for summary in series.values():
                    summary.sketch.quantiles(state.summary_settings.quantiles, now)


    whole = per_call(lambda: _changed_scrape(registry, monitors, None, None), calls)
    rows = []
    for label, fn in (("drift scores", score_drift), ("rolling quantiles", quantiles)):
        spent = per_call(fn, calls)
        rows.append(Row(f"  of which {label}", fmt_seconds(spent / samples),
                        f"whole text scrape {fmt_seconds(whole / samples)}", spent / whole,
                        "(decomposition)", True))
    return rows


if __name__ == "__main__":
    from benchmarks.common import print_table

    print_table("Encoding", run(quick=True))
