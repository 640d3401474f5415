"""``configure(reference=...)`` with a reference of other feature names retires the old
reference's per-feature series.

A process that reloads its reference daily with renamed or rotated features must expose
only the current reference's features (at most ``max_features`` of them, and
``__other__`` where it folds some): in its own exposition, in the snapshot it publishes as
a worker, and in the merged view of workers that did and did not reconfigure. Counters of
the model itself (requests, input errors) never go backwards.

Every exposition is read back with prometheus_client's text parser, from both renderers:
prometheus_client's encoder of the families and inferwatch's own page encoder.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from inferwatch.catalogue import OTHER, distinct_labels
from inferwatch.core.encode import Encoder
from inferwatch.core.registry import Registry
from inferwatch.multiproc.merge import merge_view
from inferwatch.multiproc.snapshot_format import Snapshot, decode, encode, exact_models, model_dict
from inferwatch.multiproc.store import ARCHIVE, SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.serving.exposition import render

START = 1_800_000_000.0
WINDOW_SECONDS = 3600.0
COUNTERS = ("inferwatch_feature_missing_total", "inferwatch_feature_out_of_range_total",
            "inferwatch_feature_unseen_category_total")
GAUGES = ("inferwatch_feature_drift", "inferwatch_feature_drift_observations")

Samples = list[tuple[str, dict[str, str], float]]


def reference(names: list[str], seed: int = 5) -> inferwatch.Reference:
    rng = np.random.default_rng(seed)
    return inferwatch.Reference.from_data(
        {name: rng.uniform(0.0, 10.0, size=200) for name in names},
        predictions=rng.random(200))


def serve_rows(monitor, width: int, now: float) -> None:
    """A call of two rows: one all missing, one all past the reference's range."""
    with monitor.request() as request:
        request.features(np.array([[np.nan] * width, [1e6] * width]))
        request.prediction(np.full(2, 0.5))
    monitor.drain(now=now)


def parsed(text: str) -> Samples:
    return [(sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]


def scraped(registry: Registry) -> list[Samples]:
    """The registry's exposition as served (inferwatch's page encoder) and as
    prometheus_client encodes its families."""
    collectors = CollectorRegistry()
    collectors.register(InferwatchCollector(registry))
    served, _ = render(collectors, None, None)
    return [parsed(served.decode()), parsed(generate_latest(collectors).decode())]


def merged(snapshots: list[bytes], now: float) -> list[Samples]:
    """The merged view of worker snapshots, through both renderers."""
    errors: list[Exception] = []
    view = merge_view([decode(data) for data in snapshots], now, on_error=errors.append)
    assert errors == []

    class Source:
        def collect(self) -> list:
            return view.families(now)

    page = Encoder().page()
    view.encode_into(page, now)
    return [parsed(page.text()), parsed(generate_latest(Source()).decode())]  # type: ignore[arg-type]


def published(registry: Registry, name: str, version: str) -> bytes:
    """The snapshot a worker publishes for this model."""
    state = registry.monitor(name, version).copy_state()
    return encode(Snapshot(models=[model_dict(state)], written_at=START))


def feature_labels(samples: Samples, metrics=COUNTERS + GAUGES) -> set[str]:
    return {labels["feature"] for name, labels, _ in samples if name in metrics}


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(value for sample, sample_labels, value in samples if sample == name
               and all(sample_labels.get(k) == v for k, v in labels.items()))


def expected_labels(names: list[str], max_features: int) -> set[str]:
    labels = distinct_labels(names, max_features)
    return {label for label in labels if label is not None} | (
        {OTHER} if None in labels else set())


# --- one process ---------------------------------------------------------------------------

def test_renamed_features_retire_the_old_series_and_model_counters_go_on() -> None:
    registry = Registry(drain_interval=3600)
    monitor = registry.monitor("daily", "1")
    monitor.configure(reference=reference(["age", "income", "shared"]))
    serve_rows(monitor, 3, START)
    monitor.configure(reference=reference(["tenure", "balance", "shared"], seed=6))
    serve_rows(monitor, 3, START + 1)

    for samples in scraped(registry):
        assert feature_labels(samples) == {"tenure", "balance", "shared"}
        # A feature both references hold keeps counting from where it was.
        assert total(samples, "inferwatch_feature_missing_total", feature="shared") == 2
        assert total(samples, "inferwatch_feature_missing_total", feature="tenure") == 1
        assert total(samples, "inferwatch_requests_total") == 2
    # The snapshot a worker publishes holds no retired series either.
    (state,) = exact_models(decode(published(registry, "daily", "1")))
    for metric in COUNTERS:
        assert {labels[0] for labels in state.counters.get(metric, {})} <= {
            "tenure", "balance", "shared"}


def test_daily_reloads_of_rotated_features_stay_within_max_features() -> None:
    registry = Registry(drain_interval=3600)
    monitor = registry.monitor("daily", "1")
    monitor.configure(max_features=3)
    for day in range(12):
        names = [f"f{day}_{i}" for i in range(5)]  # five a day: two fold into __other__
        monitor.configure(reference=reference(names, seed=day))
        serve_rows(monitor, 5, START + day)
        for samples in scraped(registry):
            assert feature_labels(samples) == expected_labels(names, 3)
            assert len(feature_labels(samples) - {OTHER}) <= 3
            assert total(samples, "inferwatch_requests_total") == day + 1


def test_a_lower_max_features_retires_the_features_it_folds() -> None:
    registry = Registry(drain_interval=3600)
    monitor = registry.monitor("daily", "1")
    monitor.configure(reference=reference(["a", "b", "c"]))
    serve_rows(monitor, 3, START)
    monitor.configure(max_features=1)
    serve_rows(monitor, 3, START + 1)
    for samples in scraped(registry):
        assert feature_labels(samples) == {"a", OTHER}
        assert total(samples, "inferwatch_feature_missing_total", feature="a") == 2
        assert total(samples, "inferwatch_feature_missing_total", feature=OTHER) == 2


# --- workers, merged -----------------------------------------------------------------------

def _worker(names: list[str], rows_at: float, reload: list[str] | None = None) -> bytes:
    registry = Registry(drain_interval=3600)
    try:
        monitor = registry.monitor("daily", "1")
        monitor.configure(max_features=2, reference=reference(names))
        serve_rows(monitor, len(names), rows_at)
        if reload is not None:
            monitor.configure(reference=reference(reload, seed=9))
            serve_rows(monitor, len(reload), START)
        return published(registry, "daily", "1")
    finally:
        registry.close()


OLD, NEW = ["o1", "o2", "o3"], ["n1", "n2", "n3"]


@pytest.mark.parametrize("order", [0, 1])
def test_a_merge_of_a_reloaded_worker_and_a_stale_one_shows_one_reference(order: int) -> None:
    # The stale worker served an hour and more ago: the reloaded worker holds the window's
    # rows, so the new reference is the one merged and its features are the ones shown.
    stale = _worker(OLD, START - 2 * WINDOW_SECONDS)
    reloaded = _worker(OLD, START - 2 * WINDOW_SECONDS, reload=NEW)
    snapshots = [stale, reloaded] if order == 0 else [reloaded, stale]
    for samples in merged(snapshots, START):
        assert feature_labels(samples) == expected_labels(NEW, 2)
        assert total(samples, "inferwatch_requests_total") == 3
        assert total(samples, "inferwatch_feature_missing_total", feature="n1") == 1


def test_a_merge_shows_the_old_reference_while_its_worker_holds_the_rows() -> None:
    stale = _worker(OLD, START)
    reloaded = _worker(OLD, START - 2 * WINDOW_SECONDS, reload=NEW[:1])  # one row of two
    with_more_rows = _worker(OLD, START)
    for samples in merged([reloaded, stale, with_more_rows], START):
        assert feature_labels(samples) == expected_labels(OLD, 2)
        # The reloaded worker retired its own o1 series: the two stale workers' remain.
        assert total(samples, "inferwatch_feature_missing_total", feature="o1") == 2
        assert total(samples, "inferwatch_requests_total") == 4


def test_the_archive_of_exited_workers_keeps_only_the_merged_reference_features(
        tmp_path) -> None:
    """A fold settles the archive on one reference; the other reference's feature counts
    leave it, or each daily reload of exiting workers grows the archive file for good."""
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    exited = [WorkerId(2**22 + 31 + i, 1, me.boot) for i in range(3)]  # no such pids
    written = [_worker(OLD, START - 2 * WINDOW_SECONDS),
               _worker(OLD, START - 2 * WINDOW_SECONDS, reload=NEW),
               _worker(OLD, START - 2 * WINDOW_SECONDS, reload=["n1", "n4"])]
    for worker, data in zip(exited, written):
        directory.write(worker.name, data, worker)
        assert directory.fold(me, also=[worker.name], now=START) == [worker.name]
    data = (tmp_path / ARCHIVE).read_bytes()
    archive = decode(data)
    (state,) = exact_models(archive)
    kept = {labels[0] for metric in COUNTERS for labels in state.counters.get(metric, {})}
    assert kept <= expected_labels(["n1", "n4"], 2) and "n1" in kept
    assert state.counters["inferwatch_requests_total"][("ok",)] == 5
    for samples in merged([data], START):
        assert feature_labels(samples) == expected_labels(["n1", "n4"], 2)
        assert total(samples, "inferwatch_feature_missing_total", feature="n1") == 2


# --- any sequence of reconfigures ----------------------------------------------------------

NAMES = [f"x{i}" for i in range(10)]
reconfigures = st.lists(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True),
                        min_size=1, max_size=6)


def assert_current(samples: Samples, names: list[str], max_features: int) -> None:
    expected = expected_labels(names, max_features)
    # Every row of the call is missing in every feature: each current label has a series.
    assert feature_labels(samples, COUNTERS[:1]) == expected
    assert feature_labels(samples) <= expected
    assert len(feature_labels(samples) - {OTHER}) <= max_features


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(max_features=st.integers(1, 4), days=reconfigures)
def test_any_sequence_of_reconfigures_exposes_only_the_current_features(
        max_features: int, days: list[list[str]]) -> None:
    registry = Registry(drain_interval=3600)
    try:
        monitor = registry.monitor("daily", "1")
        monitor.configure(max_features=max_features)
        for day, names in enumerate(days):
            monitor.configure(reference=reference(names, seed=day))
            serve_rows(monitor, len(names), START + day)
            for samples in scraped(registry):
                assert_current(samples, names, max_features)
                assert total(samples, "inferwatch_requests_total") == day + 1
    finally:
        registry.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(max_features=st.integers(1, 4), days=reconfigures)
def test_any_sequence_of_reconfigures_merged_with_a_stale_worker_shows_the_current_features(
        max_features: int, days: list[list[str]]) -> None:
    registry = Registry(drain_interval=3600)
    stale = Registry(drain_interval=3600)
    try:
        monitor = registry.monitor("daily", "1")
        monitor.configure(max_features=max_features)
        # A worker that never reloads, its rows aged out of the window.
        first = stale.monitor("daily", "1")
        first.configure(max_features=max_features, reference=reference(days[0]))
        serve_rows(first, len(days[0]), START - 2 * WINDOW_SECONDS)
        for day, names in enumerate(days):
            monitor.configure(reference=reference(names, seed=day))
            serve_rows(monitor, len(names), START + day)
            for samples in merged([published(stale, "daily", "1"),
                                   published(registry, "daily", "1")], START + day):
                assert_current(samples, names, max_features)
                assert total(samples, "inferwatch_requests_total") == day + 2
    finally:
        registry.close()
        stale.close()
