"""/metrics and a shadow's comparisons after the wall clock steps back (NTP, a resumed VM):
the rolling windows are written at each monitor's step-safe window time, and every reader
(a scrape in either exposition format, prometheus_client's own collect path, push and the
status page) must read them there too, or they read empty and expire for good."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.serving.exposition import make_wsgi_app

HOUR = 3600.0
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


class SteppedClock:
    """time.time() as a host sees it after NTP steps its clock back by `offset` seconds."""

    def __init__(self, real=time.time) -> None:
        self.offset = 0.0
        self.real = real

    def __call__(self) -> float:
        return self.real() - self.offset


class Doubler:
    def predict(self, rows):
        return np.asarray(rows, dtype=float)[:, 0] * 2.0


def _scrape(app, accept: str | None = None) -> str:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": "",
               "SERVER_NAME": "localhost", "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
    if accept:
        environ["HTTP_ACCEPT"] = accept
    statuses = []
    body = b"".join(app(environ, lambda status, headers: statuses.append(status)))
    assert statuses and statuses[0].startswith("200")
    return body.decode()


def _samples(text: str, openmetrics: bool) -> dict[tuple, float]:
    parse = om_families if openmetrics else text_string_to_metric_families
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parse(text) for s in family.samples}


def _windowed(samples: dict[tuple, float]) -> dict[tuple, float]:
    """The prediction median and the drift series: the numbers read from rolling windows."""
    return {key: value for key, value in samples.items()
            if (key[0] == "inferwatch_prediction" and ("quantile", "0.5") in key[1])
            or key[0].startswith("inferwatch_feature_drift")}


def _window_time_read(registry) -> dict[str, float]:
    """What push() and the status page read: each monitor's families at its window time."""
    return {f"{s.name}{sorted(s.labels.items())}": s.value
            for monitor in registry.monitors() for family in monitor.families(None)
            for s in family.samples
            if s.name == "inferwatch_prediction" and s.labels.get("quantile") == "0.5"}


@pytest.mark.parametrize("accept", [None, OPENMETRICS], ids=["text", "openmetrics"])
def test_scrape_keeps_quantiles_and_drift_after_a_step_back(monkeypatch, accept):
    clock = SteppedClock()
    monkeypatch.setattr(time, "time", clock)
    rng = np.random.default_rng(0)
    inputs = pd.DataFrame({"a": rng.normal(size=5000)})
    reference = inferwatch.Reference.from_data(inputs, predictions=inputs["a"].to_numpy() * 2)
    registry = inferwatch.Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(Doubler(), name="m", version="1", registry=registry,
                                      reference=reference)
        app = make_wsgi_app(registry)
        openmetrics = accept is not None
        for _ in range(20):
            model.predict(pd.DataFrame({"a": rng.normal(size=100)}))
        before = _windowed(_samples(_scrape(app, accept), openmetrics))
        assert before and not any(math.isnan(v) for v in before.values())

        clock.offset = HOUR
        for _ in range(20):
            model.predict(pd.DataFrame({"a": rng.normal(size=100)}))
        after = _windowed(_samples(_scrape(app, accept), openmetrics))

        assert after.keys() == before.keys()  # the drift gauges are all still there
        assert not any(math.isnan(v) for v in after.values()), after
        rows = [v for k, v in after.items()
                if k[0] == "inferwatch_feature_drift_observations"]
        assert rows == [4000.0]  # rows from before and after the step, none dropped
        # The scrape left the windows where they were: push and the status page read them.
        assert not any(math.isnan(v) for v in _window_time_read(registry).values())
        states, _ = registry.states_at()
        assert states[0].summaries["inferwatch_prediction"]
    finally:
        registry.close()


def test_prometheus_client_collect_path_keeps_quantiles_after_a_step_back(monkeypatch):
    clock = SteppedClock()
    monkeypatch.setattr(time, "time", clock)
    registry = inferwatch.Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(Doubler(), name="m", version="1", registry=registry)
        prometheus = CollectorRegistry()
        prometheus.register(InferwatchCollector(registry))
        for _ in range(100):
            model.predict([[1.0]])
        assert _windowed(_samples(generate_latest(prometheus).decode(), False))
        clock.offset = HOUR
        for _ in range(100):
            model.predict([[1.0]])
        after = _windowed(_samples(generate_latest(prometheus).decode(), False))
        assert list(after.values()) == [pytest.approx(2.0, rel=0.02)]
    finally:
        registry.close()


def _shadow_differences(registry) -> dict[str, float]:
    registry.drain()
    return {s.name + str(s.labels.get("quantile")): s.value
            for monitor in registry.monitors() for family in monitor.families(None)
            for s in family.samples
            if s.name.startswith("inferwatch_shadow_absolute_difference")}


def test_shadow_absolute_difference_quantiles_survive_a_step_back(monkeypatch):
    clock = SteppedClock()
    monkeypatch.setattr(time, "time", clock)
    registry = inferwatch.Registry(drain_interval=3600)

    class Scaled:
        def __init__(self, factor: float) -> None:
            self.factor = factor

        def predict(self, rows):
            return np.asarray(rows, dtype=float)[:, 0] * self.factor

    champion = inferwatch.instrument(Scaled(1.0), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Scaled(1.5), version="2", sample=1.0)
    try:
        for _ in range(50):
            champion.predict([[2.0]])
        handle.flush()
        before = _shadow_differences(registry)
        assert before["inferwatch_shadow_absolute_difference0.5"] == pytest.approx(1.0, rel=0.02)

        clock.offset = HOUR
        for _ in range(50):
            champion.predict([[2.0]])
        handle.flush()
        after = _shadow_differences(registry)
        assert after["inferwatch_shadow_absolute_difference_countNone"] == 100
        assert after["inferwatch_shadow_absolute_difference0.5"] == pytest.approx(1.0, rel=0.02)
        # /metrics reads the same windows.
        scraped = _samples(_scrape(make_wsgi_app(registry)), False)
        medians = [v for (name, labels), v in scraped.items()
                   if name == "inferwatch_shadow_absolute_difference"
                   and ("quantile", "0.5") in labels]
        assert medians == [pytest.approx(1.0, rel=0.02)]
    finally:
        handle.close()
        registry.close()
