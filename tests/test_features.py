"""instrument(reference=...): data quality counters and drift gauges, end to end."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon

import inferwatch
from conftest import Scraper
from inferwatch.quality.checks import REASONS, BatchChecker

RNG = np.random.default_rng(7)
TRAIN = pd.DataFrame({
    "amount": RNG.lognormal(3, 1, 5000),
    "age": RNG.integers(18, 90, 5000).astype(float),
    "country": RNG.choice(["de", "fr", "us"], 5000),
})
SCORES = RNG.random(5000)


@pytest.fixture(scope="module")
def reference():
    return inferwatch.Reference.from_data(TRAIN, predictions=SCORES)


class ConstantModel:
    def __init__(self, score: float) -> None:
        self.score = score

    def predict(self, rows):
        return np.full(len(rows), self.score)


def _model(score: float = 0.5):
    return lambda rows: np.full(len(rows), score)


def test_clean_traffic_gives_low_drift_and_no_quality_counts(scraper, reference):
    model = inferwatch.instrument(_model(), name="m", version="1", reference=reference,
                                  registry=scraper.registry)
    sample = TRAIN.sample(2000, random_state=1)
    for start in range(0, 2000, 100):
        model(sample.iloc[start:start + 100])
    assert scraper.value("inferwatch_drift_window_observations") == 2000
    for feature in ("amount", "age", "country"):
        assert scraper.value("inferwatch_feature_drift", feature=feature, method="psi") < 0.02
    assert scraper.total("inferwatch_feature_missing_total") == 0
    assert scraper.total("inferwatch_feature_out_of_range_total") == 0
    assert scraper.total("inferwatch_input_errors_total") == 0


def test_shifted_inputs_and_predictions_drift(scraper, reference):
    model = inferwatch.instrument(_model(0.99), name="m", version="1", reference=reference,
                                  registry=scraper.registry)
    shifted = TRAIN.sample(1000, random_state=2).assign(amount=lambda d: d.amount * 5)
    model(shifted)
    assert scraper.value("inferwatch_feature_drift", feature="amount", method="psi") > 0.2
    assert scraper.value("inferwatch_feature_drift", feature="age", method="psi") < 0.1
    assert scraper.value("inferwatch_prediction_drift", output="value", method="psi") > 0.2
    assert scraper.value("inferwatch_prediction_drift", output="value", method="ks") > 0.5


def test_drift_gauge_equals_an_independent_computation(scraper, reference):
    model = inferwatch.instrument(_model(), name="m", version="1", reference=reference,
                                  registry=scraper.registry)
    rows = TRAIN.sample(500, random_state=3).assign(age=lambda d: d.age + 20)
    model(rows)
    profile = reference.features["age"]
    counts = np.bincount(np.searchsorted(profile.edges, rows.age, side="right"),
                         minlength=profile.n_bins)
    expected = jensenshannon(np.asarray(profile.fractions), counts / counts.sum(), base=2)
    assert scraper.value("inferwatch_feature_drift", feature="age",
                         method="js") == pytest.approx(expected, rel=1e-6)


def test_quality_counters_by_feature_and_reason(scraper, reference):
    model = inferwatch.instrument(_model(), name="m", version="1", reference=reference,
                                  registry=scraper.registry)
    model([{"amount": None, "age": 30.0, "country": "de"},
           {"amount": 1e9, "age": float("nan"), "country": "jp"},
           {"amount": 10.0, "age": 40.0}])
    model([{"amount": "lots", "age": 30.0, "country": "de", "extra": 1}])
    assert scraper.value("inferwatch_feature_missing_total", feature="amount") == 1
    assert scraper.value("inferwatch_feature_missing_total", feature="age") == 1
    assert scraper.value("inferwatch_feature_out_of_range_total", feature="amount") == 1
    assert scraper.value("inferwatch_feature_unseen_category_total", feature="country") == 1
    assert scraper.value("inferwatch_input_errors_total", reason="missing_column") == 1
    assert scraper.value("inferwatch_input_errors_total", reason="extra_column") == 1
    assert scraper.value("inferwatch_input_errors_total", reason="wrong_type") == 1


def test_reference_from_a_file_and_errors_name_the_problem(scraper, reference, tmp_path):
    path = tmp_path / "reference.json"
    reference.save(path)
    model = inferwatch.instrument(ConstantModel(0.5), name="m", version="1",
                                  reference=str(path), registry=scraper.registry)
    model.predict(TRAIN.head(10))
    assert scraper.value("inferwatch_drift_window_observations") == 10
    restored = pickle.loads(pickle.dumps(model))
    assert restored.predict(TRAIN.head(2)).tolist() == [0.5, 0.5]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"format": "inferwatch.reference", "version": 99}))
    with pytest.raises(ValueError, match=r"broken\.json"):
        inferwatch.instrument(_model(), name="m2", reference=str(broken),
                              registry=scraper.registry)
    with pytest.raises(ValueError, match=r"missing\.json.*not found"):
        inferwatch.instrument(_model(), name="m3", reference=str(tmp_path / "missing.json"),
                              registry=scraper.registry)


def test_request_api_features_and_prediction(scraper, reference):
    mon = inferwatch.monitor("m", "1", registry=scraper.registry).configure(reference=reference)
    for row in TRAIN.head(50).to_dict("records"):
        with mon.request() as r:
            r.features(row)
            r.prediction(0.5)
    assert scraper.value("inferwatch_drift_window_observations") == 50


def test_drift_window_expires(scraper, reference):
    mon = inferwatch.monitor("m", "1", registry=scraper.registry).configure(
        reference=reference, drift_window_seconds=60, drift_age_buckets=2)
    with mon.request() as r:
        r.features(TRAIN.head(5))
    mon.drain(now=1_000_000.0)
    assert mon.features.drift.rows(1_000_000.0) == 5
    assert mon.features.drift.rows(1_000_000.0 + 600) == 0


bad_inputs = st.one_of(
    st.none(), st.text(), st.integers(), st.floats(),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=8),
    st.lists(st.lists(st.one_of(st.floats(), st.text(max_size=3)), max_size=4), max_size=4),
    st.dictionaries(st.sampled_from(["amount", "age", "country", "zz"]),
                    st.one_of(st.none(), st.floats(), st.text(max_size=5), st.integers()),
                    max_size=5),
    st.builds(lambda n: np.zeros((n, 7)), st.integers(0, 3)),
    st.builds(lambda: np.array([], dtype=float)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=st.lists(bad_inputs, min_size=1, max_size=6))
def test_bad_inputs_are_counted_never_raised(inputs):
    scraper = Scraper()
    ref = inferwatch.Reference.from_data(TRAIN.head(500), predictions=SCORES[:500])
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", reference=ref,
                                  registry=scraper.registry)
    before = scraper.total("inferwatch_internal_errors_total")
    for item in inputs:
        assert model(item) == 0.5
    text = scraper.text()
    scraper.registry.close()
    assert scraper.total("inferwatch_internal_errors_total") == before
    assert scraper.value("inferwatch_requests_total", outcome="ok") == len(inputs)
    for line in text.splitlines():
        if line.startswith("inferwatch_input_errors_total{"):
            assert any(f'reason="{r}"' in line for r in REASONS)


def test_ten_thousand_distinct_categories_keep_memory_flat(scraper, reference):
    import tracemalloc

    model = inferwatch.instrument(_model(), name="m", version="1", reference=reference,
                                  registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)

    def feed(offset: int) -> None:
        model([{"amount": 1.0, "age": 30.0, "country": f"c{offset + i}"} for i in range(10_000)])
        mon.drain()

    feed(0)
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    for round_ in range(1, 4):
        feed(round_ * 10_000)
    grown = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    assert grown < 200_000, grown
    assert scraper.value("inferwatch_feature_unseen_category_total", feature="country") == 40_000
    assert len(scraper.series("inferwatch_feature_unseen_category_total")) == 1


@pytest.mark.parametrize("batch", [
    {"amount": pd.Series([10.0, 20.0]), "age": pd.Series([30.0, 40.0]),
     "country": pd.Series(["de", "fr"])},
    {"amount": range(10, 12), "age": range(30, 32), "country": pd.Series(["de", "fr"])},
])
def test_a_dict_of_columns_counts_through_instrument_as_in_the_checker(scraper, reference,
                                                                          batch):
    # Row dicts are grouped by the drain; a dict of Series or ranges is no row.
    expected = BatchChecker(reference).check(batch)
    assert expected.rows == 2 and expected.input_errors == {}
    model = inferwatch.instrument(_model(), name="m", version="1", reference=reference,
                                  registry=scraper.registry)
    model(batch)
    model({"amount": 15.0, "age": 35.0, "country": "de"})
    assert scraper.value("inferwatch_drift_window_observations") == 3
    assert scraper.total("inferwatch_input_errors_total") == 0
    assert scraper.total("inferwatch_feature_unseen_category_total") == 0


def test_an_empty_dict_through_instrument_is_an_empty_batch(scraper, reference):
    assert BatchChecker(reference).check({}).input_errors == {"empty_batch": 1}
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", reference=reference,
                                  registry=scraper.registry)
    model({})
    model({"amount": 15.0, "age": 35.0, "country": "de"})
    assert scraper.value("inferwatch_input_errors_total", reason="empty_batch") == 1
    assert scraper.value("inferwatch_input_errors_total", reason="missing_column") is None
    assert scraper.value("inferwatch_drift_window_observations") == 1


def test_a_dict_with_a_misbehaving_value_costs_only_its_own_call(scraper, reference):
    class Hostile:
        def __len__(self):
            raise ValueError("no length")

    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", reference=reference,
                                  registry=scraper.registry)
    before = scraper.total("inferwatch_internal_errors_total")
    assert model({"amount": Hostile(), "age": 1.0, "country": "de"}) == 0.5
    model({"amount": 15.0, "age": 35.0, "country": "de"})
    assert scraper.value("inferwatch_drift_window_observations") == 1
    assert scraper.total("inferwatch_internal_errors_total") == before + 1
