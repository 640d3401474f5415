"""Prediction drift against the reference's outputs, for the outputs classifiers give."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import inferwatch


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3))
    return x, x[:, 0] > 0


def _drift_outputs(scraper) -> set[str]:
    return {s["output"] for s in scraper.series("inferwatch_prediction_drift")}


@pytest.mark.parametrize("labels", [np.array([0, 1]), np.array(["legit", "fraud"])])
def test_predicted_labels_are_scored_against_a_reference_of_labels(scraper, labels):
    """A reference profiled from predict(X) holds labels as its `value` output; the live
    labels were kept apart as classes, so prediction drift was never scored."""
    x, positive = _data()
    classifier = LogisticRegression().fit(x, labels[positive.astype(int)])
    reference = inferwatch.Reference.from_data(x, predictions=classifier.predict(x))
    for name, rows in (("steady", x[:1500]), ("shifted", x[:1500] + 3)):  # one class now
        model = inferwatch.instrument(classifier, name=name, version="1", reference=reference,
                                      registry=scraper.registry)
        model.predict(rows)
    assert _drift_outputs(scraper) == {"value"}
    assert scraper.value("inferwatch_prediction_drift", model="steady", output="value",
                         method="psi") < 0.05
    assert scraper.value("inferwatch_prediction_drift", model="shifted", output="value",
                         method="psi") > 1


def test_probability_columns_match_a_reference_named_otherwise_by_position(scraper):
    """``prediction_names=["legit", "fraud"]`` (as docs/drift.md shows) with a classifier
    whose classes_ are 0 and 1: no live output had the reference's names."""
    x, positive = _data()
    classifier = LogisticRegression().fit(x, positive.astype(int))
    reference = inferwatch.Reference.from_data(x, predictions=classifier.predict_proba(x),
                                               prediction_names=["legit", "fraud"])
    model = inferwatch.instrument(classifier, name="m", version="1", reference=reference,
                                  registry=scraper.registry)
    model.predict_proba(x[:1500] + 3)
    assert _drift_outputs(scraper) == {"legit", "fraud"}
    assert scraper.value("inferwatch_prediction_drift", output="fraud", method="psi") > 1
