"""A classifier of more classes than ``max_outputs``: the classes past the cap are one output,
``__other__``, holding each row's probability of being one of them (one value per row, not
every folded probability), and each folded class counts once in
``inferwatch_series_overflow_total`` however many drains fold it again."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.label_caps import FOLDED_MEMORY
from inferwatch.core.unit_sketch import ABSOLUTE_ERROR


def classifier(classes: int, seed: int = 0, integer_names: bool = False):
    rng = np.random.default_rng(seed)

    class Wide:
        classes_ = np.arange(classes) if integer_names else \
            np.array([f"c{i}" for i in range(classes)])
        returned: list[np.ndarray] = []

        def predict_proba(self, X):
            p = rng.random((len(X), classes)) ** 4
            p /= p.sum(axis=1, keepdims=True)
            self.returned.append(p.copy())
            return p

    return Wide()


def lower_quantile(values: np.ndarray, q: float) -> float:
    return float(np.quantile(values, q, method="lower"))


@pytest.mark.parametrize("integer_names", [False, True])
def test_other_holds_each_rows_probability_of_the_folded_classes(scraper, integer_names):
    model = classifier(60, integer_names=integer_names)
    wrapped = inferwatch.instrument(model, name="wide", version="1",
                                    registry=scraper.registry, max_outputs=20)
    for rows in (64, 64, 3, 1, 64):
        wrapped.predict_proba(np.zeros((rows, 2)))
    scraper.registry.drain()
    returned = np.concatenate(model.returned)
    mass = returned[:, 20:].sum(axis=1)
    labels = {"model": "wide", "output": "__other__"}
    assert scraper.value("inferwatch_prediction_count", **labels) == returned.shape[0]
    assert scraper.value("inferwatch_prediction_sum", **labels) == pytest.approx(mass.sum())
    for q in (0.5, 0.9, 0.99):
        got = scraper.value("inferwatch_prediction", quantile=str(q), **labels)
        assert abs(got - lower_quantile(mass, q)) <= ABSOLUTE_ERROR + 1e-9, q
    assert scraper.value("inferwatch_prediction_value_bucket", le="+Inf",
                         **labels) == returned.shape[0]
    # The classes within the cap keep their own series, with every row's probability.
    first = "0" if integer_names else "c0"
    assert scraper.value("inferwatch_prediction_count", model="wide",
                         output=first) == returned.shape[0]
    assert scraper.value("inferwatch_prediction_sum", model="wide",
                         output=first) == pytest.approx(returned[:, 0].sum())


def test_each_folded_class_counts_once_however_many_drains_fold_it(scraper):
    classes = FOLDED_MEMORY + 500  # more folded classes than a cap remembers
    model = classifier(classes)
    wrapped = inferwatch.instrument(model, name="wide", version="1",
                                    registry=scraper.registry, max_outputs=20)
    seen_overflow = []
    for _ in range(3):
        for _ in range(4):
            wrapped.predict_proba(np.zeros((64, 2)))
        scraper.registry.drain()
        seen_overflow.append(scraper.value("inferwatch_series_overflow_total",
                                           metric="inferwatch_prediction"))
    assert seen_overflow == [classes - 20] * 3
    predicted = np.unique(np.concatenate(model.returned).argmax(axis=1))
    # Every predicted class past max_classes (50) counts once, however many drains
    # predicted it: never more than the classes that were predicted at all.
    class_overflow = scraper.value("inferwatch_series_overflow_total",
                                   metric="inferwatch_predicted_class_total")
    assert class_overflow <= predicted.size - 50 + 1


@settings(max_examples=40, deadline=None)
@given(classes=st.integers(2, 40), cap=st.integers(1, 30),
       sizes=st.lists(st.integers(1, 70), min_size=1, max_size=6), seed=st.integers(0, 99))
def test_every_output_counts_every_row(classes, cap, sizes, seed):
    from conftest import Scraper

    scraper = Scraper()
    try:
        model = classifier(classes, seed)
        wrapped = inferwatch.instrument(model, name="m", version="1",
                                        registry=scraper.registry, max_outputs=cap)
        for rows in sizes:
            wrapped.predict_proba(np.zeros((rows, 2)))
        scraper.registry.drain()
        returned = np.concatenate(model.returned)
        counts = {s.labels["output"]: s.value for s in scraper.samples()
                  if s.name == "inferwatch_prediction_count"}
        kept = min(classes, cap)
        assert len(counts) == kept + (classes > cap)
        assert set(counts.values()) == {float(returned.shape[0])}
        if classes > cap:
            assert scraper.value("inferwatch_prediction_sum", output="__other__") == \
                pytest.approx(returned[:, kept:].sum(), rel=1e-9, abs=1e-9)
    finally:
        scraper.registry.close()
