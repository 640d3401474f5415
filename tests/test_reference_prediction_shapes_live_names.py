"""A reference profiles a model's predictions under the names the live side records them by:
a one-column (n, 1) array is the 1-D ``value`` output, a multi-output classifier's 2-D labels
are its ``<output>:<label>`` classes, and its list of probability matrices (one per output)
are the ``<output>:<class>`` probability columns."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.linear_model import LogisticRegression
from sklearn.multioutput import MultiOutputClassifier

import inferwatch
from inferwatch.quality.profile import ReferenceError


def _drift(scraper, model: str) -> dict[str, float]:
    return {s["output"]: scraper.value("inferwatch_prediction_drift", model=model,
                                       output=s["output"], method="psi")
            for s in scraper.series("inferwatch_prediction_drift") if s["model"] == model}


class ColumnLabelClassifier:
    """A classifier whose ``predict`` returns its labels as one column, shape (n, 1), as
    CatBoost's multiclass ``predict`` does."""

    def __init__(self, inner: LogisticRegression) -> None:
        self.inner = inner
        self.classes_ = inner.classes_

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.inner.predict(x).reshape(-1, 1)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.inner.predict_proba(x)


class ColumnRegressor:
    """A regressor whose ``predict`` returns one column, shape (n, 1) (a Keras Dense(1))."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (x[:, :1] * 3.0 + 10.0).astype(np.float64)


def _three_classes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 3))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    return x, LogisticRegression().fit(x, y)


def test_one_column_labels_are_the_value_output_not_class_zero(scraper):
    """Profiled as output "0", the labels were compared with class 0's live probability
    column: a PSI near 6 on unchanged traffic, and label drift never scored."""
    x, inner = _three_classes()
    model = ColumnLabelClassifier(inner)
    reference = inferwatch.Reference.from_data(x, predictions=model.predict(x))
    assert reference.output_names == ["value"]
    assert reference == inferwatch.Reference.from_data(x, predictions=model.predict(x).ravel())
    for name, rows in (("steady", x[1000:2000]), ("shifted", x[:1000] + 3)):
        live = inferwatch.instrument(model, name=name, version="1", reference=reference,
                                     registry=scraper.registry)
        live.predict(rows)
        live.predict_proba(rows)
    assert _drift(scraper, "steady").keys() == {"value"}
    assert _drift(scraper, "steady")["value"] < 0.05
    assert _drift(scraper, "shifted")["value"] > 1


def test_one_column_regression_output_is_the_value_output(scraper):
    x = np.random.default_rng(1).normal(size=(3000, 2))
    model = ColumnRegressor()
    reference = inferwatch.Reference.from_data(x, predictions=model.predict(x))
    assert reference.output_names == ["value"]
    live = inferwatch.instrument(model, name="reg", version="1", reference=reference,
                                 registry=scraper.registry)
    live.predict(x[:1000])
    assert _drift(scraper, "reg").keys() == {"value"}
    assert _drift(scraper, "reg")["value"] < 0.05


def test_one_column_keeps_a_name_given_for_it():
    reference = inferwatch.Reference.from_data(np.arange(6.0), predictions=np.ones((6, 1)),
                                               prediction_names=["score"])
    assert reference.output_names == ["score"]


@settings(max_examples=50, deadline=None)
@given(arrays(np.int64, st.integers(1, 40), elements=st.integers(-3, 3))
       | arrays(np.float64, st.integers(1, 40),
                elements=st.floats(-1e6, 1e6, allow_nan=False)))
def test_a_one_column_array_profiles_as_its_one_dimensional_self(values):
    x = np.arange(float(len(values)))
    assert inferwatch.Reference.from_data(x, predictions=values.reshape(-1, 1)) == \
        inferwatch.Reference.from_data(x, predictions=values)


def _multi_output():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 3))
    y = np.c_[(x[:, 0] > 0).astype(int), (x[:, 1] > 0.5).astype(int) + (x[:, 2] > 0)]
    return x, MultiOutputClassifier(LogisticRegression()).fit(x, y)


def test_multi_output_labels_are_profiled_as_their_live_classes(scraper):
    """Profiled as numeric outputs "0" and "1", the labels matched no live output (live they
    are classes "0:<label>", "1:<label>"): prediction drift was never scored."""
    x, multi = _multi_output()
    reference = inferwatch.Reference.from_data(x, predictions=multi.predict(x))
    assert reference.output_names == ["value"]
    profile = reference.outputs["value"]
    assert not profile.is_numeric
    assert set(profile.categories) - {"__other__"} == {"0:0", "0:1", "1:0", "1:1", "1:2"}
    for name, rows in (("steady", x[1000:2000]), ("shifted", x[:1000] + 2)):
        live = inferwatch.instrument(multi, name=name, version="1", reference=reference,
                                     registry=scraper.registry)
        live.predict(rows)
    assert _drift(scraper, "steady").keys() == {"value"}
    assert _drift(scraper, "steady")["value"] < 0.05
    assert _drift(scraper, "shifted")["value"] > 1


def test_multi_output_label_fractions_are_each_outputs_labels_together():
    labels = np.array([[0, 1], [0, 2], [1, 2], [0, 2]])
    reference = inferwatch.Reference.from_data(np.arange(4.0), predictions=labels)
    profile = reference.outputs["value"]
    fractions = dict(zip(profile.categories, profile.fractions))
    assert fractions == {"0:0": 3 / 8, "1:2": 3 / 8, "0:1": 1 / 8, "1:1": 1 / 8,
                         "__other__": 0.0}
    assert reference.rows == 4


def test_multi_output_labels_take_the_names_given_as_their_prefixes():
    labels = np.array([["a", "x"], ["b", "x"]], dtype=object)
    reference = inferwatch.Reference.from_data(np.arange(2.0), predictions=labels,
                                               prediction_names=["first", "second"])
    assert set(reference.outputs["value"].categories) - {"__other__"} == {
        "first:a", "first:b", "second:x"}


def test_a_regressors_integer_outputs_stay_values():
    """With task="regression" the live side records integer columns as values "0", "1"."""
    counts = np.array([[1, 5], [2, 6], [3, 7]])
    reference = inferwatch.Reference.from_data(np.arange(3.0), predictions=counts,
                                               task="regression")
    assert reference.output_names == ["0", "1"]


def test_multi_output_probability_list_is_profiled_per_output_column(scraper):
    """A list of one (n, k) matrix per output could not be read at all."""
    x, multi = _multi_output()
    reference = inferwatch.Reference.from_data(x, predictions=multi.predict_proba(x))
    assert reference.output_names == ["0:0", "0:1", "1:0", "1:1", "1:2"]
    for name, rows in (("steady", x[1000:2000]), ("shifted", x[:1000] + 2)):
        live = inferwatch.instrument(multi, name=name, version="1", reference=reference,
                                     registry=scraper.registry)
        live.predict_proba(rows)
    assert _drift(scraper, "steady").keys() == set(reference.output_names)
    assert max(_drift(scraper, "steady").values()) < 0.05
    assert max(_drift(scraper, "shifted").values()) > 1


def test_multi_output_probability_list_named_by_each_outputs_classes(scraper):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2000, 2))
    y = np.c_[np.where(x[:, 0] > 0, "yes", "no"), np.where(x[:, 1] > 0, "hot", "cold")]
    multi = MultiOutputClassifier(LogisticRegression()).fit(x, y)
    reference = inferwatch.Reference.from_data(x, predictions=multi.predict_proba(x),
                                               prediction_names=multi.classes_)
    assert reference.output_names == ["0:no", "0:yes", "1:cold", "1:hot"]
    live = inferwatch.instrument(multi, name="named", version="1", reference=reference,
                                 registry=scraper.registry)
    live.predict_proba(x[:1000])
    assert _drift(scraper, "named").keys() == set(reference.output_names)


def test_probability_list_names_checked_against_its_columns():
    matrices = [np.full((3, 2), 0.5), np.full((3, 3), 1 / 3)]
    flat = inferwatch.Reference.from_data(np.arange(3.0), predictions=matrices,
                                          prediction_names=["a", "b", "c", "d", "e"])
    assert flat.output_names == ["a", "b", "c", "d", "e"]
    with pytest.raises(ReferenceError, match="5 columns"):
        inferwatch.Reference.from_data(np.arange(3.0), predictions=matrices,
                                       prediction_names=["a", "b"])


@pytest.mark.parametrize("predictions", [
    [np.full((3, 2), 0.5), np.full(3, 0.5)],
    [np.full((3, 2), 0.5), np.full((4, 2), 0.5)],
])
def test_a_list_of_arrays_of_other_shapes_is_refused_naming_the_shapes_read(predictions):
    with pytest.raises(ReferenceError) as caught:
        inferwatch.Reference.from_data(np.arange(3.0), predictions=predictions)
    message = str(caught.value)
    assert "one (n, k) probability matrix per output" in message
    assert "inhomogeneous" not in message


def test_multi_output_probabilities_refuse_y_true_with_a_reason():
    x, multi = _multi_output()
    with pytest.raises(ReferenceError, match="multi-output classifier"):
        inferwatch.Reference.from_data(x, predictions=multi.predict_proba(x),
                                       y_true=multi.predict(x))


def test_compare_reads_the_predictions_as_the_reference_profiled_them():
    """A drift report of a multi-output classifier's labels or probability list, against a
    reference profiled from the same kind, scores its prediction drift."""
    x, multi = _multi_output()
    shifted = x[:1000] + 2
    for predict in (multi.predict, multi.predict_proba):
        reference = inferwatch.Reference.from_data(x, predictions=predict(x))
        report = reference.compare(shifted, predictions=predict(shifted))
        assert {o.name for o in report.outputs} == set(reference.output_names)
        assert max(o.psi for o in report.outputs) > 1


def test_the_rows_of_a_label_matrix_are_its_rows_not_its_labels():
    from inferwatch.quality.checks import BatchChecker

    labels = np.array([[0, 1], [1, 2], [0, 2]])
    reference = inferwatch.Reference.from_data(np.arange(3.0), predictions=labels)
    result = BatchChecker(reference).check_prediction_quality(labels)
    assert result.rows == 3
    assert result.bin_counts["value"].sum() == 6
