"""Multi-label scikit-learn classifiers, fitted for real on a small label-indicator matrix.

A multi-label classifier's ``predict_proba`` gives each label's probability on its own (a
row sums to anything in [0, k]): each label is recorded as its own output, never as one
distribution over exclusive classes (no probability_sum fault, no argmax class). Its
``predict`` is one 0/1 column per label, counted as classes ``j:0`` / ``j:1``. Multi-output
classifiers (k-NN, random forests) returning one probability matrix per label keep their
``j:<class>`` reading, and single-label classifiers of the same kinds keep theirs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.multiclass import OneVsRestClassifier
from sklearn.multioutput import ClassifierChain
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import inferwatch
from inferwatch.core.predictions import class_names_of, normalize

LABELS = 3
ROWS = 240


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(ROWS, 4))
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0, x[:, 2] > 0.5], axis=1).astype(int)
    return x, y


X, Y = _data()


def _fitted(estimator, y=Y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


def _one_vs_rest():
    return OneVsRestClassifier(LogisticRegression())


def _mlp():
    return MLPClassifier(hidden_layer_sizes=(8,), max_iter=200, random_state=0)


MULTILABEL = {
    "one-vs-rest": _one_vs_rest,
    "mlp": _mlp,
    "one-vs-rest in a pipeline": lambda: make_pipeline(StandardScaler(), _one_vs_rest()),
    "mlp in a pipeline": lambda: make_pipeline(StandardScaler(), _mlp()),
    "pipeline in a search": lambda: GridSearchCV(
        make_pipeline(StandardScaler(), _one_vs_rest()),
        {"onevsrestclassifier__estimator__C": [0.5, 1.0]}, cv=2),
    "classifier chain": lambda: ClassifierChain(LogisticRegression()),
    "classifier chain in a pipeline": lambda: make_pipeline(
        StandardScaler(), ClassifierChain(LogisticRegression())),
}


def _nonzero(scraper, name: str) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value for s in scraper.samples()
            if s.name == name and s.value}


def _assert_recorded_per_label(scraper, model: str, proba: np.ndarray, calls: int) -> None:
    """Every label's probabilities as its own output, and nothing read as one distribution."""
    rows = proba.shape[0]
    assert not _nonzero(scraper, "inferwatch_invalid_predictions_total")
    assert not _nonzero(scraper, "inferwatch_predicted_class_total")
    assert not scraper.value("inferwatch_prediction_confidence_count", model=model)
    assert scraper.value("inferwatch_batch_size_count", model=model) == calls
    assert scraper.value("inferwatch_batch_size_sum", model=model) == rows
    outputs = {s.labels["output"] for s in scraper.samples()
               if s.name == "inferwatch_prediction_count"}
    assert outputs == {str(j) for j in range(LABELS)}
    for j in range(LABELS):
        assert scraper.value("inferwatch_prediction_count", model=model, output=str(j)) == rows
        assert scraper.value("inferwatch_prediction_sum", model=model, output=str(j)) == \
            pytest.approx(float(proba[:, j].sum()), rel=1e-9)
    info = [s for s in scraper.samples() if s.name == "inferwatch_model_info"]
    assert [s.labels["task"] for s in info] == ["classification"]


@pytest.mark.parametrize("kind", list(MULTILABEL))
def test_single_row_probabilities_are_one_output_per_label(scraper, kind):
    estimator = _fitted(MULTILABEL[kind]())
    model = inferwatch.instrument(estimator, name="tags", version="1", registry=scraper.registry)
    proba = np.concatenate([model.predict_proba(X[i:i + 1]) for i in range(6)])
    assert proba.shape == (6, LABELS)
    assert np.abs(proba.sum(axis=1) - 1).max() > 0.01  # independent labels: no distribution
    _assert_recorded_per_label(scraper, "tags", proba, calls=6)


@pytest.mark.parametrize("kind", list(MULTILABEL))
def test_batch_probabilities_are_one_output_per_label(scraper, kind):
    estimator = _fitted(MULTILABEL[kind]())
    model = inferwatch.instrument(estimator, name="tags", version="1", registry=scraper.registry)
    # Batches of different sizes (joined as one matrix) and one row alone, in one drain.
    parts = [model.predict_proba(X[:50]), model.predict_proba(X[50:51]),
             model.predict_proba(X[60:90])]
    proba = np.concatenate(parts)
    assert np.abs(proba.sum(axis=1) - 1).max() > 0.01
    _assert_recorded_per_label(scraper, "tags", proba, calls=3)
    # A second drain adds to the same outputs.
    more = model.predict_proba(X[100:140])
    _assert_recorded_per_label(scraper, "tags", np.concatenate([proba, more]), calls=4)


@pytest.mark.parametrize("kind", ["one-vs-rest", "mlp in a pipeline", "classifier chain"])
def test_two_labels_are_no_binary_classifier(scraper, kind):
    """Two labels make a matrix of two columns, as a binary classifier's: still each label
    on its own, never `[p0, p1]` of one class or the other."""
    estimator = _fitted(MULTILABEL[kind](), Y[:, :2])
    model = inferwatch.instrument(estimator, name="pair", version="1", registry=scraper.registry)
    proba = np.concatenate([model.predict_proba(X[:1]), model.predict_proba(X[1:40])])
    assert proba.shape == (40, 2) and np.abs(proba.sum(axis=1) - 1).max() > 0.01
    assert not _nonzero(scraper, "inferwatch_invalid_predictions_total")
    assert not _nonzero(scraper, "inferwatch_predicted_class_total")
    for j in range(2):
        assert scraper.value("inferwatch_prediction_sum", model="pair", output=str(j)) == \
            pytest.approx(float(proba[:, j].sum()), rel=1e-9)


@pytest.mark.parametrize("kind", ["one-vs-rest", "mlp", "one-vs-rest in a pipeline",
                                  "mlp in a pipeline", "pipeline in a search",
                                  "classifier chain", "classifier chain in a pipeline"])
def test_predict_counts_each_label_as_its_own_classes(scraper, kind):
    """Each label's predictions are its classes `j:0` / `j:1`, also from a ClassifierChain,
    whose predict returns them as floats 0.0 / 1.0."""
    estimator = _fitted(MULTILABEL[kind]())
    model = inferwatch.instrument(estimator, name="tags", version="1", registry=scraper.registry)
    single = np.concatenate([model.predict(X[i:i + 1]) for i in range(4)])
    batch = model.predict(X[10:60])
    predicted = np.concatenate([single, batch])
    assert predicted.shape == (54, LABELS) and set(np.unique(predicted)) <= {0, 1}
    expected = {f"{j}:{v}": int((predicted[:, j] == v).sum())
                for j in range(LABELS) for v in (0, 1) if (predicted[:, j] == v).any()}
    counts = {dict(labels)["class"]: value for labels, value in
              _nonzero(scraper, "inferwatch_predicted_class_total").items()}
    assert counts == expected
    assert not _nonzero(scraper, "inferwatch_invalid_predictions_total")
    assert scraper.value("inferwatch_batch_size_sum", model="tags") == 54
    assert scraper.value("inferwatch_batch_size_count", model="tags") == 5


@pytest.mark.parametrize("estimator", [KNeighborsClassifier(n_neighbors=5),
                                       RandomForestClassifier(n_estimators=5, random_state=0)],
                         ids=["knn", "random-forest"])
@pytest.mark.parametrize("pipeline", [False, True], ids=["plain", "pipeline"])
def test_one_probability_matrix_per_label_keeps_its_classes(scraper, estimator, pipeline):
    """k-NN and forests fitted on an indicator matrix return one (n, 2) matrix per label:
    each label's classes `j:0` / `j:1`, as a multi-output classifier's."""
    fitted = _fitted(make_pipeline(StandardScaler(), estimator) if pipeline else estimator)
    model = inferwatch.instrument(fitted, name="tags", version="1", registry=scraper.registry)
    parts = [model.predict_proba(X[:1]), model.predict_proba(X[1:41])]
    per_label = [np.concatenate([part[j] for part in parts]) for j in range(LABELS)]
    rows = 41
    expected = {}
    for j, matrix in enumerate(per_label):
        top = (matrix[:, 1] > matrix[:, 0]).astype(int)
        for value in (0, 1):
            if (top == value).any():
                expected[f"{j}:{value}"] = int((top == value).sum())
        for value in (0, 1):
            assert scraper.value("inferwatch_prediction_sum", model="tags",
                                 output=f"{j}:{value}") == pytest.approx(
                float(matrix[:, value].sum()), rel=1e-9)
    counts = {dict(labels)["class"]: value for labels, value in
              _nonzero(scraper, "inferwatch_predicted_class_total").items()}
    assert counts == expected
    assert not _nonzero(scraper, "inferwatch_invalid_predictions_total")
    assert scraper.value("inferwatch_prediction_confidence_count", model="tags") == \
        rows * LABELS
    assert scraper.value("inferwatch_batch_size_sum", model="tags") == rows


@pytest.mark.parametrize("kind", ["one-vs-rest", "mlp", "one-vs-rest in a pipeline"])
def test_a_single_label_classifier_still_reads_one_distribution(scraper, kind):
    """The same estimators fitted on one column of three classes: rows sum to 1 and each
    row's top class is counted, as before."""
    classes = Y[:, 0] + Y[:, 1]  # 0, 1 or 2
    estimator = _fitted(MULTILABEL[kind](), classes)
    model = inferwatch.instrument(estimator, name="one", version="1", registry=scraper.registry)
    proba = np.concatenate([model.predict_proba(X[:1]), model.predict_proba(X[1:30])])
    top = proba.argmax(axis=1)
    counts = {dict(labels)["class"]: value for labels, value in
              _nonzero(scraper, "inferwatch_predicted_class_total").items()}
    assert counts == {str(c): int((top == c).sum()) for c in np.unique(top)}
    assert scraper.value("inferwatch_prediction_confidence_count", model="one") == 30
    assert not _nonzero(scraper, "inferwatch_invalid_predictions_total")


def test_a_multilabel_model_names_one_binary_output_per_label():
    for kind in MULTILABEL:
        names = class_names_of(_fitted(MULTILABEL[kind]()))
        assert len(names) == LABELS, kind
        assert all(np.asarray(pair).tolist() == [0, 1] for pair in names), kind
    single = _fitted(_one_vs_rest(), Y[:, 0] + Y[:, 1])
    assert np.asarray(class_names_of(single)).tolist() == [0, 1, 2]


def test_an_unfitted_or_odd_wrapper_is_no_multilabel_model():
    class Exploding:
        classes_ = np.array([0, 1, 2])

        @property
        def multilabel_(self):
            raise RuntimeError("not today")

    assert np.asarray(class_names_of(Exploding())).tolist() == [0, 1, 2]
    assert class_names_of(make_pipeline(StandardScaler(), _one_vs_rest())) is None


LABEL_NAMES = [np.array([0, 1])] * LABELS
PROBABILITY = st.floats(0.0, 1.0)
ANY_FLOAT = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                      st.sampled_from([np.nan, np.inf, -np.inf, -0.5, 1.5, 1.0 + 1e-9]))


@settings(max_examples=200)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 12), st.just(LABELS)),
                  elements=PROBABILITY))
def test_any_label_probabilities_are_recorded_as_they_are(matrix):
    prediction = normalize(matrix, probabilities=True, class_names=LABEL_NAMES)
    assert prediction.rows == matrix.shape[0]
    assert prediction.invalid == {} and prediction.classes is None
    assert prediction.confidence is None
    for j in range(LABELS):
        assert prediction.values[str(j)].tolist() == matrix[:, j].tolist()
    assert prediction.probability_outputs == {str(j) for j in range(LABELS)}


@settings(max_examples=300)
@given(hnp.arrays(np.float64, st.tuples(st.integers(0, 12), st.just(LABELS)),
                  elements=st.one_of(PROBABILITY, ANY_FLOAT)))
def test_faulty_label_probabilities_count_each_row_once_by_reason(matrix):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # never a numpy warning on the application's stderr
        prediction = normalize(matrix, probabilities=True, class_names=LABEL_NAMES)
    nan_rows = np.isnan(matrix).any(axis=1)
    inf_rows = ~np.isfinite(matrix).all(axis=1) & ~nan_rows
    tolerance = 1e-6
    with np.errstate(invalid="ignore"):
        out_rows = (np.isfinite(matrix) & ((matrix < -tolerance) |
                                           (matrix > 1 + tolerance))).any(axis=1)
    expected = {reason: int(rows.sum()) for reason, rows in
                (("nan", nan_rows), ("inf", inf_rows), ("probability_out_of_range", out_rows))
                if rows.any()}
    assert prediction.invalid == expected
    assert prediction.rows == matrix.shape[0]
    assert prediction.classes is None
    for j in range(LABELS):
        finite = matrix[np.isfinite(matrix[:, j]), j]
        recorded = prediction.values.get(str(j), np.empty(0))
        assert len(recorded) == len(finite)
        near = np.clip(finite, 0.0, 1.0)
        kept = np.where(np.abs(finite - near) <= tolerance, near, finite)
        assert recorded.tolist() == kept.tolist()


def _tagger(scores_per_row):
    """A Hugging Face text-classification pipeline with every label's score
    (``top_k=None``): one list of ``{"label", "score"}`` dicts per input."""
    def classify(texts):
        return [[{"label": label, "score": float(score)} for label, score in row.items()]
                for row in scores_per_row[:len(texts)]]
    return classify


def test_pipeline_sigmoid_scores_are_label_probabilities_kept_to_their_accuracy(scraper):
    """Independent per-label scores in [0, 1] (a multi-label pipeline's sigmoid) are
    probabilities: quantiles within 0.001 near 1 (a relative-error sketch read 0.99 for all
    three), and the model classifies."""
    rng = np.random.default_rng(3)
    toxic = 1 - rng.uniform(1e-6, 2e-3, size=1000)  # a confident label: all 0.998 to 1
    rows = [{"toxic": t, "insult": 0.2} for t in toxic]
    model = inferwatch.instrument(_tagger(rows), name="tags", version="1",
                                  registry=scraper.registry)
    model(["text"] * 1000)
    for q in (0.5, 0.9, 0.99):
        seen = scraper.value("inferwatch_prediction", model="tags", output="toxic",
                             quantile=str(q))
        assert abs(seen - np.quantile(toxic, q)) <= 0.001
    assert scraper.value("inferwatch_prediction", model="tags", output="insult",
                         quantile="0.5") == pytest.approx(0.2, abs=0.001)
    info = [s for s in scraper.samples() if s.name == "inferwatch_model_info"
            and s.labels["model"] == "tags"]
    assert [s.labels["task"] for s in info] == ["classification"]
    assert not scraper.total("inferwatch_invalid_predictions_total")


def test_pipeline_scores_of_another_scale_stay_values(scraper):
    """Logits (``function_to_apply="none"``) are no probabilities: values per label."""
    model = inferwatch.instrument(_tagger([{"toxic": 3.5, "insult": -1.25}] * 4), name="tags",
                                  version="1", registry=scraper.registry)
    model(["text"] * 4)
    assert scraper.value("inferwatch_prediction", model="tags", output="toxic",
                         quantile="0.5") == pytest.approx(3.5, rel=0.01)
    assert scraper.value("inferwatch_prediction", model="tags", output="insult",
                         quantile="0.5") == pytest.approx(-1.25, rel=0.01)
    assert not scraper.total("inferwatch_invalid_predictions_total")


def test_a_chain_fit_on_float_labels_counts_classes_and_scores_stay_values(scraper):
    """A chain fit on a float indicator matrix names its classes 0.0 / 1.0: still classes.
    A multi-output regressor's 0.0 / 1.0 (no ``classes_``) stays values, and a column of a
    chain's output that is not one of its classes is values too."""
    chain = inferwatch.instrument(_fitted(ClassifierChain(LogisticRegression()),
                                          Y.astype(float)),
                                  name="chain", version="1", registry=scraper.registry)
    predicted = chain.predict(X[:30])
    assert predicted.dtype.kind == "f"
    counts = {dict(labels)["class"]: value for labels, value in
              _nonzero(scraper, "inferwatch_predicted_class_total").items()}
    assert sum(counts.values()) == 30 * LABELS
    assert counts["0:1"] == int(predicted[:, 0].sum())

    def scores(x):
        return np.column_stack([x[:, 0] > 0, np.full(len(x), 0.5)]).astype(float)

    scorer = inferwatch.instrument(scores, name="scores", version="1",
                                   registry=scraper.registry)
    scorer(X[:20])
    assert scraper.value("inferwatch_prediction_count", model="scores", output="0") == 20
    assert not scraper.value("inferwatch_predicted_class_total", model="scores")
