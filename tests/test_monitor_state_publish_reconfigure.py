"""The monitor's state as users reach it: what a worker publishes, clock steps, label caps,
outcome joins."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.core.registry import Registry
from inferwatch.multiproc import Publisher
from inferwatch.multiproc.store import SnapshotDirectory


def files_total(path: str, name: str, **labels: str) -> float:
    """What another worker (or the exporter) reads: the directory's files merged."""
    now = time.time()
    families = SnapshotDirectory(path).read_view(now).families(now)

    class Source:
        def collect(self) -> list:
            return families

    text = generate_latest(Source()).decode()  # type: ignore[arg-type]
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


# --- what an idle worker publishes ----------------------------------------------------------

def test_an_outcome_joined_on_an_idle_worker_is_published_at_once(tmp_path: Path) -> None:
    registry = Registry(drain_interval=3600)
    publisher = Publisher(registry, str(tmp_path), interval=0.0)
    monitor = registry.monitor("fraud", "1")
    with monitor.request(request_id="r-17") as request:
        request.prediction("fraud")
    assert publisher.publish()
    # Hours later, the label arrives; no call has finished since.
    monitor.record_outcome("r-17", "fraud")
    assert publisher.publish()
    assert files_total(str(tmp_path), "inferwatch_outcomes_total", result="correct") == 1
    monitor.record_outcome("r-404", "fraud")
    assert publisher.publish()
    assert files_total(str(tmp_path), "inferwatch_outcomes_unmatched_total",
                       reason="unknown_id") == 1


def test_a_shadows_comparisons_on_an_idle_worker_are_published_at_once(
        tmp_path: Path) -> None:
    registry = Registry(drain_interval=3600)
    publisher = Publisher(registry, str(tmp_path), interval=0.0)
    monitor = registry.monitor("fraud", "2")
    assert publisher.publish()
    monitor.update_state(lambda state: state.inc("inferwatch_shadow_compared_total", (), 3))
    assert publisher.publish()
    assert files_total(str(tmp_path), "inferwatch_shadow_compared_total") == 3


# --- a wall clock stepped back --------------------------------------------------------------

def _drift_rows(monitor, now: float) -> float:
    for family in monitor.families(now):
        if family.name == "inferwatch_drift_window_observations":
            return sum(sample.value for sample in family.samples)
    raise AssertionError("no inferwatch_drift_window_observations")


def test_rows_drained_after_the_clock_stepped_back_past_the_drift_window_still_count() -> None:
    import numpy as np

    import inferwatch

    rng = np.random.default_rng(7)
    reference = inferwatch.Reference.from_data(rng.normal(size=(500, 2)),
                                               predictions=rng.random(500))
    monitor = Registry(drain_interval=3600).monitor("fraud", "1").configure(
        reference=reference, drift_window_seconds=600)
    start = 1_800_000_000.0
    for step in range(6):  # every bucket of the window holds rows
        with monitor.request() as request:
            request.features(rng.normal(size=(3, 2)))
            request.prediction(rng.random(3))
        monitor.drain(now=start + 100.0 * step)
    assert _drift_rows(monitor, start + 500.0) == 18
    # NTP steps the clock back by an hour: the next rows, and what a scrape reads, stay.
    stepped = start - 3600.0
    with monitor.request() as request:
        request.features(rng.normal(size=(7, 2)))
        request.prediction(rng.random(7))
    monitor.drain(now=stepped)
    assert _drift_rows(monitor, stepped) == 25


# --- outcome cache options given to configure() -----------------------------------------------

def test_configure_outcome_ttl_on_a_running_model_expires_older_predictions() -> None:
    monitor = Registry(drain_interval=3600).monitor("fraud", "1")
    monitor.configure(outcome_ttl_seconds=60.0)
    with monitor.request(request_id="r-1") as request:
        request.prediction("fraud")
    monitor.drain()
    monitor.record_outcome("r-1", "fraud", at=time.time() + 3600.0)
    assert monitor.state.counters["inferwatch_outcomes_unmatched_total"][("expired",)] == 1
    assert monitor.state.counters.get("inferwatch_outcomes_total", {}).get(("correct",), 0) == 0


def test_configure_a_smaller_outcome_cache_bounds_it_at_once_and_from_then_on() -> None:
    monitor = Registry(drain_interval=3600).monitor("fraud", "1")
    for i in range(20):
        with monitor.request(request_id=f"r-{i}") as request:
            request.prediction("fraud")
    monitor.drain()
    assert len(monitor.outcomes) == 20
    monitor.configure(outcome_cache_size=5)
    assert len(monitor.outcomes) == 5
    for i in range(20, 40):
        with monitor.request(request_id=f"r-{i}") as request:
            request.prediction("fraud")
    monitor.drain()
    assert len(monitor.outcomes) == 5
    monitor.record_outcome("r-39", "fraud")  # the newest are the ones kept
    assert monitor.state.counters["inferwatch_outcomes_total"][("correct",)] == 1


# --- summary options given to configure() -------------------------------------------------

def test_configure_quantiles_and_window_on_a_running_model_take_effect() -> None:
    monitor = Registry(drain_interval=3600).monitor("fraud", "1")
    monitor.record_call(0.01, 0.5)
    monitor.drain(now=1_800_000_000.0)
    monitor.configure(quantiles=(0.5, 0.95), window_seconds=60)
    monitor.record_call(0.01, 0.25)
    monitor.drain(now=1_800_000_000.0)
    summary = [f for f in monitor.families(1_800_000_000.0) if f.name == "inferwatch_prediction"]
    quantiles = {s.labels["quantile"] for s in summary[0].samples if "quantile" in s.labels}
    assert quantiles == {"0.5", "0.95"}
    assert monitor.state.summaries["inferwatch_prediction"][("value",)].count == 2
    # The new, shorter window: a minute later the values have left it.
    later = monitor.families(1_800_000_000.0 + 120)
    values = [s.value for f in later if f.name == "inferwatch_prediction"
              for s in f.samples if s.labels.get("quantile") == "0.5"]
    assert values and all(v != v for v in values)
