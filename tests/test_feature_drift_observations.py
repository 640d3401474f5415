"""A feature's values in the drift window: the gauge that lets a sparse feature's drift alert
wait for enough values, in one process and merged across workers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from inferwatch.core.encode import Encoder
from inferwatch.core.registry import Registry
from inferwatch.core.render import model_families
from inferwatch.core.state import ModelState
from inferwatch.multiproc.merge import merge_view
from inferwatch.multiproc.snapshot_format import Snapshot, decode, encode, model_dict
from inferwatch.quality.reference import Reference
from inferwatch.quality.tracker import FeatureTracker
from inferwatch.serving.bridge import InferwatchCollector

NOW = 1_700_000_000.0
NAME = "inferwatch_feature_drift_observations"


def _reference() -> Reference:
    rng = np.random.default_rng(0)
    return Reference.from_data({"amount": rng.normal(0, 1, 500), "age": rng.normal(40, 9, 500),
                                "country": ["de", "fr", "it", "es"] * 125})


def _samples(text: str, parse=text_string_to_metric_families) -> dict[str, float]:
    return {s.labels["feature"]: s.value for f in parse(text) for s in f.samples
            if s.name == NAME}


def test_an_instrumented_model_exports_each_features_present_values() -> None:
    """Rows with a feature missing (None, NaN, absent key) count for the window, not for it."""
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda row: 0.5, name="fraud", version="1",
                                      reference=_reference(), registry=registry)
        rows = ([{"amount": 1.0, "age": 30.0, "country": "de"}] * 30
                + [{"amount": float("nan"), "age": None, "country": "fr"}] * 50
                + [{"country": "xx"}] * 20)
        for row in rows:
            model(row)
        collector = CollectorRegistry()
        collector.register(InferwatchCollector(registry))
        text = generate_latest(collector).decode()
        assert _samples(text) == {"amount": 30.0, "age": 30.0, "country": 100.0}
        rows_in_window = [s.value for f in text_string_to_metric_families(text)
                          for s in f.samples if s.name == "inferwatch_drift_window_observations"]
        assert rows_in_window == [100.0]
        # Both exposition formats, both parsers.
        om = generate_openmetrics(collector).decode()
        assert _samples(om, parse_om) == {"amount": 30.0, "age": 30.0, "country": 100.0}
    finally:
        registry.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.floats(-5, 5)),
                          st.one_of(st.none(), st.sampled_from(["de", "fr", "zz"]))),
                min_size=1, max_size=60))
def test_the_count_is_the_rows_where_the_feature_has_a_value(rows) -> None:
    tracker = FeatureTracker(_reference())
    tracker.check_inputs([{"amount": a, "age": 40.0, "country": c} for a, c in rows], NOW)
    observed = tracker.drift.observations(NOW)
    assert observed["amount"] == sum(a is not None for a, _ in rows)
    assert observed["country"] == sum(c is not None for _, c in rows)
    assert observed["age"] == len(rows)
    # The encoder and prometheus_client's renderer write the same samples.
    state = ModelState("m", "1")
    state.extras["drift"] = tracker.drift
    page = Encoder().page()
    page.add(state, NOW)
    families = model_families([state], NOW)
    rendered = {s.labels["feature"]: s.value for f in families for s in f.samples
                if s.name == NAME}
    assert _samples(page.text()) == rendered == observed


def test_merged_workers_count_the_sum_of_their_values() -> None:
    counts = []
    raws = []
    for present in (10, 25):
        tracker = FeatureTracker(_reference())
        tracker.check_inputs([{"amount": 1.0, "age": 1.0, "country": "de"}] * present
                             + [{"age": 1.0, "country": "de"}] * 5, NOW)
        counts.append(tracker.drift.observations(NOW))
        state = ModelState("fraud", "1")
        state.extras["drift"] = tracker.drift
        raws.append(decode(encode(Snapshot(models=[model_dict(state)], written_at=NOW))))
    merged = merge_view(raws, NOW).states[0].extras["drift"]
    assert merged.observations(NOW) == {"amount": 35.0, "age": 45.0, "country": 45.0}
    assert counts[0]["amount"] == 10.0


def test_a_window_past_its_rows_counts_none() -> None:
    tracker = FeatureTracker(_reference())
    tracker.check_inputs([{"amount": 1.0, "age": 1.0, "country": "de"}] * 3, NOW)
    assert tracker.drift.observations(NOW)["amount"] == 3.0
    assert tracker.drift.observations(NOW + 7200)["amount"] == 0.0


def test_saturated_bins_never_sum_negative() -> None:
    """Bin counts held at the int64 maximum (a window merged from huge counts) stay huge."""
    tracker = FeatureTracker(_reference())
    window = tracker.drift.features
    big = np.full(window.layout.total, np.iinfo(np.int64).max // 2, dtype=np.int64)
    window.add(big, rows=1, now=NOW)
    window.add(big, rows=1, now=NOW)
    assert min(tracker.drift.observations(NOW).values()) > 0
    assert tracker.drift.observations(NOW)["amount"] == pytest.approx(
        float(np.iinfo(np.int64).max // 2) * 2 * int(window.layout.sizes[0]), rel=1e-6)
