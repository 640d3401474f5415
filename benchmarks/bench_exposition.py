"""Scrape cost of a realistic deployment: render() and serve() against prometheus_client.

The registry holds the series of 5 models with 50 features each, named as in the
catalogue: latency and stage histograms, drift gauges per feature and method, data-quality
counters per feature, class mix and prediction quantiles. The same registry is rendered by
prometheus_client directly and through inferwatch, alternately in one process (render()
must add nothing to a registry without inferwatch's collector). The HTTP scrape serves
``bench_encoding``'s deployment, recorded through ``instrument()`` with references.
"""

from __future__ import annotations

import http.client
import random
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import start_http_server as prometheus_http_server
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from benchmarks.bench_encoding import every_model_changed, realistic_deployment
from benchmarks.common import Row, alternate, fmt_seconds, per_call
from inferwatch.serving.exposition import render
from inferwatch.serving.server import serve

MODELS = 5
FEATURES = 50
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
SCRAPE_TARGET_SECONDS = 0.050
HTTP_SCRAPE_TARGET_SECONDS = 0.010
# render() adds negotiation and a dict; anything above this means it does real extra work.
RENDER_RATIO_TARGET = 1.1


def realistic_registry(models: int = MODELS, features: int = FEATURES) -> CollectorRegistry:
    """The series a deployment of `models` models with `features` features each exposes."""
    rng = random.Random(7)
    registry = CollectorRegistry()
    base = ["model", "model_version"]
    requests = Counter("inferwatch_requests", "Calls.", [*base, "outcome"], registry=registry)
    latency = Histogram("inferwatch_request_duration_seconds", "Latency in seconds.", base,
                        registry=registry)
    stages = Histogram("inferwatch_stage_duration_seconds", "Stage latency in seconds.",
                       [*base, "stage"], registry=registry)
    classes = Counter("inferwatch_predicted_class", "Class mix.", [*base, "class"],
                      registry=registry)
    quantiles = Gauge("inferwatch_prediction", "Prediction quantiles.",
                      [*base, "output", "quantile"], registry=registry)
    drift = Gauge("inferwatch_feature_drift", "Drift against the reference.",
                  [*base, "feature", "method"], registry=registry)
    quality = {name: Counter(f"inferwatch_feature_{name}", f"Inputs {name}.", [*base, "feature"],
                             registry=registry)
               for name in ("missing", "out_of_range", "unseen_category")}
    for m in range(models):
        model = (f"model-{m}", "1.4.2")
        for outcome in ("ok", "error"):
            requests.labels(*model, outcome).inc(rng.randint(1, 10**6))
        for _ in range(50):
            latency.labels(*model).observe(rng.random())
            for stage in ("preprocess", "inference", "postprocess"):
                stages.labels(*model, stage).observe(rng.random() / 3)
        for label in ("approve", "review", "block"):
            classes.labels(*model, label).inc(rng.randint(1, 10**5))
        for q in ("0.5", "0.9", "0.99"):
            quantiles.labels(*model, "score", q).set(rng.random())
        for f in range(features):
            for method in ("psi", "js", "ks"):
                drift.labels(*model, f"feature_{f}", method).set(rng.random())
            for counter in quality.values():
                counter.labels(*model, f"feature_{f}").inc(rng.randint(0, 100))
    return registry


def _scrape_over(port: int, accept: str | None, count: int, before=None) -> float:
    """Seconds per scrape over HTTP; `before` runs ahead of each, in the timing."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Accept": accept} if accept else {}

    def scrape() -> None:
        if before is not None:
            before()
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"scrape answered {response.status}")

    try:
        scrape()  # connect outside the timing
        return per_call(scrape, count)
    finally:
        connection.close()


def run(quick: bool) -> list[Row]:
    registry = realistic_registry()
    calls, rounds = (5, 3) if quick else (30, 7)
    rows = []

    ours, theirs = alternate(partial(per_call, lambda: render(registry, None, None), calls),
                             partial(per_call, lambda: generate_latest(registry), calls), rounds)
    rows.append(Row("render, text format", fmt_seconds(ours),
                    f"generate_latest {fmt_seconds(theirs)}", ours / theirs,
                    f"<= {RENDER_RATIO_TARGET}x", ours / theirs <= RENDER_RATIO_TARGET))

    ours, theirs = alternate(partial(per_call, lambda: render(registry, OPENMETRICS, None), calls),
                             partial(per_call, lambda: openmetrics_latest(registry), calls), rounds)
    rows.append(Row("render, OpenMetrics", fmt_seconds(ours),
                    f"openmetrics generate_latest {fmt_seconds(theirs)}", ours / theirs,
                    f"<= {RENDER_RATIO_TARGET}x", ours / theirs <= RENDER_RATIO_TARGET))

    zipped, plain = alternate(partial(per_call, lambda: render(registry, None, "gzip"), calls),
                              partial(per_call, lambda: render(registry, None, None), calls),
                              rounds)
    rows.append(Row("render, text + gzip", fmt_seconds(zipped), f"no gzip {fmt_seconds(plain)}",
                    zipped / plain, f"< {fmt_seconds(SCRAPE_TARGET_SECONDS)}",
                    zipped < SCRAPE_TARGET_SECONDS))

    # The realistic deployment as inferwatch serves it (its encoder), against
    # prometheus_client's own server on the same registry (inferwatch's families encoded by
    # prometheus_client, as every scrape was before the encoder).
    deployment, monitors = realistic_deployment()
    baseline_server, baseline_thread = prometheus_http_server(0, addr="127.0.0.1",
                                                              registry=deployment)
    try:
        with serve(port=0, addr="127.0.0.1", registry=deployment) as server:
            # Every model changed since the last scrape, as with traffic (the baseline's
            # server renders everything every time anyway); and then none, as when idle.
            changed = partial(every_model_changed, monitors)
            ours, theirs = alternate(
                partial(_scrape_over, server.port, OPENMETRICS, calls, changed),
                partial(_scrape_over, baseline_server.server_port, OPENMETRICS, calls,
                        changed), rounds)
            idle = alternate(partial(_scrape_over, server.port, OPENMETRICS, calls),
                             partial(_scrape_over, server.port, OPENMETRICS, calls, changed),
                             rounds)
    finally:
        baseline_server.shutdown()
        baseline_server.server_close()
        baseline_thread.join()
        monitors.close()
    rows.append(Row(f"HTTP scrape, {MODELS} models x {FEATURES} features with references",
                    fmt_seconds(ours), f"start_http_server {fmt_seconds(theirs)}",
                    ours / theirs, f"< {fmt_seconds(HTTP_SCRAPE_TARGET_SECONDS)}",
                    ours < HTTP_SCRAPE_TARGET_SECONDS))
    rows.append(Row("  the same, no model called since the last scrape (lines reused)",
                    fmt_seconds(idle[0]), f"every model called {fmt_seconds(idle[1])}",
                    idle[0] / idle[1], "(decomposition)", True))
    return rows
