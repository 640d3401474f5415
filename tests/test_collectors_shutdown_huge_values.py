"""The standalone exporter's GPU and process collectors, and the scrape around them, at
the edges their users reach: shutdown races, values past a double's range."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from fake_nvml import FakeGpu, FakeNVML
from inferwatch.standalone.collectors.gpu import GpuCollector
from inferwatch.standalone.scrape import Collector, MetricSet, Scraper

Samples = dict[tuple[str, frozenset], float]


def scrape(*collectors: Collector, timeout: float = 5.0) -> Samples:
    """One scrape through a Scraper, parsed with prometheus_client's own parser."""
    registry = CollectorRegistry()
    registry.register(Scraper(list(collectors), timeout=timeout))
    text = generate_latest(registry).decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def success(result: Samples, name: str) -> float:
    return result[("inferwatch_exporter_collector_success", frozenset({("collector", name)}))]


# --- gpu: a scrape that runs after close() -------------------------------------------------

def test_gpu_collect_after_close_does_not_take_nvml_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On shutdown the server stops, then close() gives NVML back; a collector run that was
    still waiting for the collector's lock (behind a slow start-up probe, say) must not
    initialize NVML again: that init would never be given back."""
    fake = FakeNVML([FakeGpu(uuid="GPU-a")]).install(monkeypatch)
    collector = GpuCollector()
    assert success(scrape(collector), "gpu") == 1
    assert fake.refcount == 1
    collector.close()
    assert fake.refcount == 0
    inits = fake.calls["nvmlInitWithFlags"]
    result = scrape(collector)
    assert success(result, "gpu") == 0
    assert fake.calls["nvmlInitWithFlags"] == inits
    assert fake.refcount == 0


# --- scrape: a value no double can hold -----------------------------------------------------

class Huge(Collector):
    name = "huge_values"
    value: object = 0

    def collect(self) -> list[Metric]:
        family = Metric("inferwatch_test_huge", "a value past a double", "gauge")
        family.add_sample("inferwatch_test_huge", {}, self.value)  # type: ignore[arg-type]
        return [family]


class Fine(Collector):
    name = "fine_values"
    metric_names = ("inferwatch_gpu_devices",)

    def collect(self) -> list[Metric]:
        metrics = MetricSet()
        metrics.add("inferwatch_gpu_devices", {}, 2)
        return metrics.families()


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.integers(min_value=0, max_value=2**2000))
def test_value_past_a_double_is_a_named_failure_not_a_crash(
        extra: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()
    huge = Huge()
    huge.value = 2**1024 + extra
    with caplog.at_level(logging.WARNING, logger="inferwatch.standalone"):
        result = scrape(huge, Fine())
    assert success(result, "huge_values") == 0
    assert success(result, "fine_values") == 1
    assert result[("inferwatch_gpu_devices", frozenset())] == 2
    records = [r for r in caplog.records if "huge_values" in r.getMessage()]
    assert records, "the failure must be logged"
    # A clear one-line message naming the family, not a traceback of an internal error.
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in records)
    assert any("inferwatch_test_huge" in r.getMessage() for r in records)


# --- scrape: an empty counter and a gauge of its written name -------------------------------

class Family(Collector):
    """A collector that returns one fixed family, as a plugin or a multiproc merge may."""

    def __init__(self, name: str, family: Metric) -> None:
        self.name = name  # type: ignore[misc]
        self._family = family

    def collect(self) -> list[Metric]:
        return [self._family]


def _empty(name: str, kind: str) -> Metric:
    return Metric(name, f"an empty {kind}", kind)


def _gauge(name: str) -> Metric:
    family = Metric(name, "a gauge", "gauge")
    family.add_sample(name, {}, 1.0)
    return family


@pytest.mark.parametrize("empty_first", [True, False])
@pytest.mark.parametrize(("kind", "written"), [("counter", "x_total"), ("info", "x_info")])
def test_empty_family_and_gauge_of_its_written_name_still_parse(
        kind: str, written: str, empty_first: bool) -> None:
    """A counter ``x`` with no series yet is written as ``# TYPE x_total counter``; a gauge
    ``x_total`` from another collector must not write a second HELP/TYPE for that name,
    or Prometheus (and promtool) refuse the whole scrape."""
    import subprocess

    from conftest import require_binary

    empty = Family("empty_family", _empty("x", kind))
    gauge = Family("gauge_family", _gauge(written))
    collectors = [empty, gauge] if empty_first else [gauge, empty]
    registry = CollectorRegistry()
    registry.register(Scraper(collectors, timeout=5.0))
    text = generate_latest(registry).decode()
    helps = [line for line in text.splitlines() if line.startswith(f"# HELP {written} ")]
    assert len(helps) == 1, text
    checked = subprocess.run([require_binary("promtool"), "check", "metrics"], input=text,
                             capture_output=True, text=True, timeout=30)
    assert "error" not in (checked.stdout + checked.stderr).lower(), checked
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    # The one written second is the one that loses its series, and says so.
    loser = collectors[1].name
    assert success(samples, loser) == 0
    assert success(samples, collectors[0].name) == 1
