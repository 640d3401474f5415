"""Confidence and class probabilities: quantiles within 0.001 absolute, 0.999 apart from 0.9999,
through the render, the encoder, worker snapshots and the multi-worker merge."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import inferwatch
from inferwatch.core import unit_sketch
from inferwatch.core.state import ModelState, SummarySettings, SummaryState
from inferwatch.core.unit_sketch import (
    ABSOLUTE_ERROR,
    PROBABILITY_RELATIVE_ACCURACY,
    from_sketch,
    from_sketch_values,
    to_sketch,
)
from inferwatch.multiproc.merge import merge_view
from inferwatch.multiproc.snapshot_format import Snapshot, decode, encode, model_dict

QUANTILES = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0]
NOW = 1_700_000_000.0


def exact(values: np.ndarray, q: float) -> float:
    return float(np.quantile(values, q, method="lower"))


def near_one(p: float) -> float:
    """The error bound above 0.5: the relative accuracy of 1 - p (at most 0.001)."""
    return PROBABILITY_RELATIVE_ACCURACY * (1 - p) + 1e-12


probabilities = hnp.arrays(
    np.float64, st.integers(1, 400),
    elements=st.one_of(st.floats(0.0, 1.0), st.floats(0.999, 1.0),
                       st.floats(0.0, 1e-3), st.sampled_from([0.0, 0.5, 1.0, 1 - 1e-12])))


@settings(max_examples=150, deadline=None)
@given(values=probabilities)
def test_every_quantile_is_within_the_absolute_error(values):
    summary = SummaryState(SummarySettings(), probabilities=True)
    summary.observe(values, NOW)
    got = summary.quantiles(QUANTILES, NOW)
    for q, value in zip(QUANTILES, got):
        assert abs(value - exact(values, q)) <= ABSOLUTE_ERROR + 1e-12, q
    assert summary.count == values.size
    assert summary.sum == pytest.approx(float(values.sum()))


def _bitwise(a: np.ndarray, b: np.ndarray) -> bool:
    """The same floats, NaN and the sign of zero included."""
    return a.shape == b.shape and a.dtype == b.dtype and \
        np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b))


# Anything a result may hold: in and outside [0, 1], NaN, infinities and -0.0.
_any_float = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                       st.floats(0.0, 1.0), st.floats(0.49, 0.51), st.floats(1 - 1e-8, 1.0),
                       st.sampled_from([-0.0, 0.0, 0.5, 1.0, 1 - 1e-9, 1 - 2e-9]))


@settings(max_examples=300, deadline=None)
@given(values=hnp.arrays(np.float64, st.integers(0, 70), elements=_any_float))
def test_the_transform_of_a_few_values_is_numpys_to_the_bit(values):
    few = to_sketch(values)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(unit_sketch, "_FEW_VALUES", -1)  # numpy's path for every size
        vectorised = to_sketch(values)
        back = from_sketch(np.asarray(values))
    assert _bitwise(few, vectorised)
    assert _bitwise(np.array(from_sketch_values(values.tolist()), dtype=np.float64), back)


@given(values=hnp.arrays(np.float64, st.integers(1, 50), elements=st.floats(0.0, 1.0)))
def test_the_transform_keeps_order_and_comes_back(values):
    t = to_sketch(values)
    assert (np.diff(t[np.argsort(values, kind="stable")]) >= 0).all()
    assert np.allclose(from_sketch(t), np.minimum(values, 1 - 1e-9), atol=1e-12)


def confident_classifier(scraper, rng):
    """The issue's case: p50/p90/p99 of a confident classifier near 0.9986, 0.99997, 0.999999."""
    top = 1 - 10 ** rng.uniform(-6.5, -2.5, size=20_000)

    class Model:
        classes_ = np.array(["legit", "fraud"])

        def predict_proba(self, rows):
            return np.column_stack([1 - top[rows], top[rows]])

    model = inferwatch.instrument(Model(), name="m", version="1", registry=scraper.registry)
    for start in range(0, top.size, 500):
        model.predict_proba(slice(start, start + 500))
    return top


def test_a_confident_classifier_reads_its_nines(scraper):
    top = confident_classifier(scraper, np.random.default_rng(3))
    for q in (0.5, 0.9, 0.99):
        confidence = scraper.value("inferwatch_prediction_confidence", quantile=str(q))
        fraud = scraper.value("inferwatch_prediction", output="fraud", quantile=str(q))
        legit = scraper.value("inferwatch_prediction", output="legit", quantile=str(q))
        truth = exact(top, q)
        # Within 0.001, and much closer near 1: the nines are told apart.
        assert abs(confidence - truth) <= near_one(truth)
        assert abs(fraud - truth) <= near_one(truth)
        assert abs(legit - exact(1 - top, q)) <= ABSOLUTE_ERROR
    p50 = scraper.value("inferwatch_prediction_confidence", quantile="0.5")
    p99 = scraper.value("inferwatch_prediction_confidence", quantile="0.99")
    assert 1 - p99 < (1 - p50) / 10


def test_scores_keep_the_relative_sketch(scraper):
    wrapped = inferwatch.instrument(lambda x: np.array([2.0, 900.0, 900.0]), name="m",
                                    version="1", registry=scraper.registry)
    wrapped(1)
    assert scraper.value("inferwatch_prediction", output="value", quantile="0.99") == \
        pytest.approx(900.0, rel=0.01)
    summary = inferwatch.monitor("m", "1", registry=scraper.registry).state.summaries[
        "inferwatch_prediction"][("value",)]
    assert not summary.probabilities


def test_worker_snapshots_and_the_merge_keep_probability_quantiles():
    rng = np.random.default_rng(5)
    states, everything = [], []
    for _ in range(3):
        values = 1 - 10 ** rng.uniform(-6, -1, size=300)
        state = ModelState("m", "1")
        state.summary("inferwatch_prediction_confidence", (), probabilities=True).observe(
            values, NOW)
        state.summary("inferwatch_prediction", ("value",)).observe(values * 100, NOW)
        states.append(state)
        everything.append(values)
    truth = np.concatenate(everything)
    round_trip = ModelState.from_dict(states[0].to_dict())
    assert round_trip.summaries["inferwatch_prediction_confidence"][()].probabilities
    merged_in_process = ModelState("m", "1")
    for state in states:
        merged_in_process.merge(state)
    raws = [decode(encode(Snapshot(models=[model_dict(s)], written_at=NOW))) for s in states]
    merged_view = merge_view(raws, NOW).states[0]
    for merged in (merged_in_process, merged_view):
        confidence = merged.summaries["inferwatch_prediction_confidence"][()]
        scores = merged.summaries["inferwatch_prediction"][("value",)]
        assert confidence.probabilities and not scores.probabilities
        for q, value in zip(QUANTILES, confidence.quantiles(QUANTILES, NOW)):
            assert abs(value - exact(truth, q)) <= near_one(exact(truth, q))
    for q, value in zip(QUANTILES, round_trip.summaries["inferwatch_prediction_confidence"][()]
                        .quantiles(QUANTILES, NOW)):
        assert abs(value - exact(everything[0], q)) <= ABSOLUTE_ERROR


def test_the_encoder_and_the_render_agree_on_probability_quantiles():
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from inferwatch.core.encode import Encoder
    from inferwatch.core.render import model_families

    state = ModelState("m", "1")
    values = 1 - 10 ** np.random.default_rng(6).uniform(-6, -1, size=1000)
    state.summary("inferwatch_prediction_confidence", (), probabilities=True).observe(values, NOW)

    class Families:
        def collect(self):
            return model_families([state], NOW)

    page = Encoder().page(openmetrics=False)
    page.add(state, NOW)
    encoded = page.text()
    assert encoded.encode() == generate_latest(Families())
    quantiles = {s.labels["quantile"]: s.value for f in text_string_to_metric_families(encoded)
                 for s in f.samples if s.name == "inferwatch_prediction_confidence"}
    for q in ("0.5", "0.9", "0.99"):
        assert abs(quantiles[q] - exact(values, float(q))) <= ABSOLUTE_ERROR * 0.1
