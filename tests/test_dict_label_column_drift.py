"""A model that returns its labels as one column of a dict or DataFrame
(``{"label": [...], "score": [...]}``) has its label mix compared with the reference
profiled from the same results: the labels drifted, and no drift of ``label`` was scored,
because the labels were compared with the reference's ``value`` output only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import inferwatch

LABELS = np.array(["approve", "review", "decline"])


class DictLabeller:
    """Labels and a score per row, as one dict of columns (or a DataFrame of them); its
    ``classes_`` declare the labels, as a classifier's do."""

    classes_ = LABELS

    def __init__(self, frame: bool = False) -> None:
        self.frame = frame

    def predict(self, x: np.ndarray) -> object:
        index = np.digitize(x[:, 0], [-0.5, 0.5])
        columns = {"label": LABELS[index], "score": 1 / (1 + np.exp(-x[:, 0]))}
        return pd.DataFrame(columns) if self.frame else columns


def _label_drift(scraper, model: str) -> float | None:
    return scraper.value("inferwatch_prediction_drift", model=model, output="label",
                         method="psi")


@pytest.mark.parametrize("frame", [False, True], ids=["dict", "dataframe"])
def test_label_column_drift_is_scored_against_the_reference_column(scraper, frame) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4000, 2))
    model = DictLabeller(frame)
    profiled = DictLabeller().predict(x)
    reference = inferwatch.Reference.from_data(x, predictions=profiled)
    assert "label" in reference.output_names
    for name, rows in (("steady", x[:1500]), ("shifted", x[:1500] + 2)):
        live = inferwatch.instrument(model, name=name, version="1", reference=reference,
                                     registry=scraper.registry)
        for start in range(0, len(rows), 100):  # calls of 100 rows, many per drain
            live.predict(rows[start:start + 100])
    steady, shifted = _label_drift(scraper, "steady"), _label_drift(scraper, "shifted")
    assert steady is not None and steady < 0.05
    assert shifted is not None and shifted > 1
    # The score column is still its own output, as before.
    assert scraper.value("inferwatch_prediction_drift", model="shifted", output="score",
                         method="psi") > 0.5


def test_labels_without_a_reference_column_of_their_name_are_left_as_before(scraper) -> None:
    """A reference profiled from ``predict(X)`` labels (its ``value`` output) still reads a
    dict's labels as its value: the name matters only where the reference has it."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3000, 2))
    reference = inferwatch.Reference.from_data(x, predictions=DictLabeller().predict(x)["label"])
    assert reference.output_names == ["value"]
    live = inferwatch.instrument(DictLabeller(), name="plain", version="1",
                                 reference=reference, registry=scraper.registry)
    live.predict(x[:1000] + 2)
    assert _label_drift(scraper, "plain") is None
    assert scraper.value("inferwatch_prediction_drift", model="plain", output="value",
                         method="psi") > 1
