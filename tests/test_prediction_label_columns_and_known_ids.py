"""Class labels of named label columns, of integer classes of 65,536 and more that the model
names, and of a `(label, score)` tuple returned for one input: read as the scrape shows them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.prediction_classes import SMALL_INTEGER_LIMIT, class_labels
from inferwatch.core.predictions import normalize


def _class_counts(scraper, model: str | None = None) -> dict[str, float]:
    return {s["class"]: scraper.value("inferwatch_predicted_class_total", model=s["model"],
                                      **{"class": s["class"]})
            for s in scraper.series("inferwatch_predicted_class_total")
            if model is None or s["model"] == model}


# --- label columns of a dict, a DataFrame or a structured array ---------------------------

_CHURN, _UPSELL = np.array([1, 1, 0]), np.array([0, 0, 0])
_PER_OUTPUT = {"churn:1": 2, "churn:0": 1, "upsell:0": 3}


def _structured(churn: np.ndarray, upsell: np.ndarray) -> np.ndarray:
    table = np.zeros(len(churn), dtype=[("churn", np.int64), ("upsell", np.int64)])
    table["churn"], table["upsell"] = churn, upsell
    return table


@pytest.mark.parametrize("result", [
    {"churn": _CHURN, "upsell": _UPSELL},
    pd.DataFrame({"churn": _CHURN, "upsell": _UPSELL}),
    _structured(_CHURN, _UPSELL),
], ids=["dict", "frame", "structured"])
def test_named_label_columns_are_counted_per_output(scraper, result):
    predict = inferwatch.instrument(lambda x: result, name="multi", version="1",
                                    registry=scraper.registry)
    predict(1)
    assert _class_counts(scraper) == _PER_OUTPUT
    assert scraper.value("inferwatch_batch_size_sum") == 3
    assert scraper.total("inferwatch_invalid_predictions_total") == 0


def test_label_arrays_in_a_tuple_are_counted_per_output_as_a_matrix_is(scraper):
    as_tuple = inferwatch.instrument(lambda x: (_CHURN, _UPSELL), name="t", version="1",
                                     registry=scraper.registry)
    as_matrix = inferwatch.instrument(lambda x: np.c_[_CHURN, _UPSELL], name="m",
                                      version="1", registry=scraper.registry)
    as_tuple(1)
    as_matrix(1)
    assert _class_counts(scraper, "t") == {"0:1": 2, "0:0": 1, "1:0": 3}
    assert _class_counts(scraper, "t") == _class_counts(scraper, "m")


def test_one_label_column_beside_scores_keeps_plain_labels(scraper):
    predict = inferwatch.instrument(
        lambda x: {"label": np.array(["spam", "ham", "spam"]), "score": np.array([.9, .8, .7])},
        name="one", version="1", registry=scraper.registry, classes=["spam", "ham"])
    predict(1)
    assert _class_counts(scraper) == {"spam": 2, "ham": 1}
    assert scraper.value("inferwatch_prediction_count", output="score") == 3


def test_many_frames_of_label_columns_drained_together_count_per_output(scraper):
    frames = [pd.DataFrame({"churn": _CHURN, "upsell": _UPSELL}) for _ in range(5)]
    answers = iter(frames)
    predict = inferwatch.instrument(lambda x: next(answers), name="multi", version="1",
                                    registry=scraper.registry)
    for _ in frames:
        predict(1)
    assert _class_counts(scraper) == {label: 5 * n for label, n in _PER_OUTPUT.items()}


_COLUMN_NAMES = st.text(st.characters(categories=["Ll", "Nd"]), min_size=1, max_size=6)
_TEXT_CLASSES = ("cat", "dog", "owl")


@st.composite
def _label_columns(draw) -> dict[str, object]:
    """A dict of 1..4 label columns of one length: small integers, bools or text classes."""
    names = draw(st.lists(_COLUMN_NAMES, min_size=1, max_size=4, unique=True))
    rows = draw(st.integers(1, 12))
    columns: dict[str, object] = {}
    for name in names:
        kind = draw(st.sampled_from(["int", "bool", "text", "list"]))
        if kind == "int":
            values = draw(st.lists(st.integers(-SMALL_INTEGER_LIMIT + 1,
                                               SMALL_INTEGER_LIMIT - 1),
                                   min_size=rows, max_size=rows))
            columns[name] = np.array(values, dtype=np.int64)
        elif kind == "bool":
            columns[name] = np.array(draw(st.lists(st.booleans(), min_size=rows,
                                                   max_size=rows)))
        elif kind == "text":
            columns[name] = np.array(draw(st.lists(st.sampled_from(_TEXT_CLASSES),
                                                   min_size=rows, max_size=rows)))
        else:  # a plain list of text labels, as JSON gives them
            columns[name] = draw(st.lists(st.sampled_from(_TEXT_CLASSES), min_size=rows,
                                          max_size=rows))
    return columns


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(columns=_label_columns(), as_frame=st.booleans())
def test_any_dict_of_label_columns_counts_each_output_apart(columns, as_frame):
    result = pd.DataFrame(columns) if as_frame else columns
    prediction = normalize(result, known_classes=frozenset(_TEXT_CLASSES))
    expected: Counter[str] = Counter()
    for name, column in columns.items():
        labels = [str(v) for v in np.asarray(column).tolist()]
        expected.update(labels if len(columns) == 1 else [f"{name}:{v}" for v in labels])
    assert Counter(class_labels(prediction.classes)) == expected
    assert prediction.rows == len(next(iter(columns.values())))
    assert prediction.invalid == {}


# --- integer classes of 65,536 and more that the model names ------------------------------

def _zip_classifier():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4))
    y = np.where(x[:, 0] > 0, 75001, 10115)
    return LogisticRegression().fit(x, y), x


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_large_integer_classes_of_classes_are_classes_from_both_methods(scraper, method):
    classifier, x = _zip_classifier()
    model = inferwatch.instrument(classifier, name="zip", version="1",
                                  registry=scraper.registry)
    getattr(model, method)(x[:40])
    expected = Counter(str(v) for v in classifier.predict(x[:40]).tolist())
    assert _class_counts(scraper) == dict(expected)
    assert scraper.total("inferwatch_invalid_predictions_total") == 0


def test_large_integers_the_model_does_not_name_stay_invalid(scraper):
    classifier, x = _zip_classifier()
    classifier.predict = lambda x: np.array([75001, 99999, 10115])  # an id it never learnt
    model = inferwatch.instrument(classifier, name="zip", version="1",
                                  registry=scraper.registry)
    model.predict(x[:3])
    assert _class_counts(scraper) == {"75001": 1, "10115": 1}
    assert scraper.value("inferwatch_invalid_predictions_total",
                         reason="unsupported_type") == 1


@pytest.mark.parametrize("answer", [
    75001, np.int64(75001), np.uint64(75001), np.array([75001]),
    np.array([75001], dtype=object), [75001], {"merchant": np.array([75001])}])
def test_declared_large_integer_classes_are_classes_in_every_shape(scraper, answer):
    predict = inferwatch.instrument(lambda x: answer, name="m", version="1",
                                    registry=scraper.registry, classes=[75001, 10115])
    predict(1)
    predict(2)  # two calls: the drain's batched readers take them together
    assert _class_counts(scraper) == {"75001": 2}
    assert scraper.total("inferwatch_invalid_predictions_total") == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(known=st.lists(st.integers(SMALL_INTEGER_LIMIT, 2**62), min_size=1, max_size=4,
                      unique=True),
       unknown=st.lists(st.integers(SMALL_INTEGER_LIMIT, 2**62), max_size=4),
       small=st.lists(st.integers(-SMALL_INTEGER_LIMIT + 1, SMALL_INTEGER_LIMIT - 1),
                      max_size=4),
       data=st.data(), signed=st.booleans())
def test_large_integers_are_classes_exactly_when_known(known, unknown, small, data, signed):
    unknown = [v for v in unknown if v not in known]
    chosen = data.draw(st.lists(st.sampled_from(known), max_size=6))
    labels = data.draw(st.permutations(chosen + unknown + small))
    if not signed and any(v < 0 for v in labels):
        signed = True
    known_text = frozenset(map(str, known))
    dtype = np.int64 if signed else np.uint64
    for result in (np.array(labels, dtype=dtype), np.array(labels, dtype=object)):
        prediction = normalize(result, known_classes=known_text)
        got = Counter(class_labels(prediction.classes)) if prediction.classes is not None \
            else Counter()
        assert got == Counter(map(str, chosen + small))
        assert prediction.invalid.get("unsupported_type", 0) == len(unknown)


# --- a (label, score) tuple for one input -------------------------------------------------

def _classify(text: str) -> tuple[str, float]:
    return ("spam", 0.93) if "win" in text else ("ham", 0.71)


@pytest.mark.parametrize("drain_each", [False, True])
def test_a_label_and_score_tuple_is_one_row(scraper, drain_each):
    predict = inferwatch.instrument(_classify, name="spam", version="1",
                                    registry=scraper.registry, classes=["spam", "ham"])
    for text in ["win money", "hello", "win a car", "meeting at 3"]:
        assert predict(text) == _classify(text)
        if drain_each:
            scraper.registry.drain()
    assert scraper.value("inferwatch_batch_size_sum") == 4
    assert _class_counts(scraper) == {"spam": 2, "ham": 2}
    assert scraper.value("inferwatch_prediction_count", output="1") == 4
    assert scraper.total("inferwatch_invalid_predictions_total") == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label=st.one_of(st.sampled_from(_TEXT_CLASSES), st.integers(-9, 9), st.booleans(),
                       st.sampled_from([np.int64(3), np.str_("owl"), np.bool_(True)])),
       score=st.one_of(st.floats(0, 1), st.sampled_from([np.float32(0.5), np.float64(0.25)])),
       score_first=st.booleans())
def test_a_tuple_of_a_label_and_a_number_is_one_row_of_two_outputs(label, score, score_first):
    row = (score, label) if score_first else (label, score)
    prediction = normalize(row, known_classes=frozenset(_TEXT_CLASSES))
    assert prediction.rows == 1
    assert class_labels(prediction.classes) == [str(label.item() if isinstance(
        label, np.generic) else label)]
    assert prediction.values == {("0" if score_first else "1"): pytest.approx([float(score)])}
    assert prediction.invalid == {}


def test_tuples_of_one_kind_stay_the_lists_they_equal():
    assert normalize((0.2, 0.8)).values["value"].tolist() == [0.2, 0.8]
    assert class_labels(normalize(("cat", "dog"), known_classes={"cat", "dog"}).classes) == [
        "cat", "dog"]
    assert normalize((0.3, 0.7), probabilities=True).rows == 1


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_large_whole_float_classes_are_classes_from_both_methods(scraper, method):
    """Fit on a float target: ``classes_ == [10115.0, 75001.0]``, predict returns floats."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 3))
    classifier = LogisticRegression().fit(x, np.where(x[:, 0] > 0, 75001.0, 10115.0))
    model = inferwatch.instrument(classifier, name="zip", version="1",
                                  registry=scraper.registry)
    getattr(model, method)(x[:30])
    expected = Counter(str(int(v)) for v in classifier.predict(x[:30]).tolist())
    assert _class_counts(scraper) == dict(expected)
    assert scraper.total("inferwatch_invalid_predictions_total") == 0


def test_declared_classifier_float_labels_admit_the_large_classes_it_names(scraper):
    predict = inferwatch.instrument(lambda x: np.array([75001.0, 99999.0, 1.0]), name="m",
                                    version="1", registry=scraper.registry,
                                    task="classification", classes=[75001, 10115])
    predict(1)
    assert _class_counts(scraper) == {"75001": 1, "1": 1}
    assert scraper.value("inferwatch_invalid_predictions_total",
                         reason="unsupported_type") == 1


def _state_after(results: list, drain_each: bool) -> tuple[dict, dict]:
    """Counters and histograms (count and sum) of a function answering `results` in turn,
    drained once at the end or after every call."""
    from inferwatch.core.registry import Registry

    registry = Registry(drain_interval=3600)
    answers = iter(results)
    fn = inferwatch.instrument(lambda x: next(answers), name="m", version="1",
                               registry=registry, classes=list(_TEXT_CLASSES))
    try:
        for _ in results:
            fn(0)
            if drain_each:
                registry.drain()
        registry.drain()
        state = registry.monitor("m", "1").state
        counters = {metric: dict(series) for metric, series in state.counters.items()}
        histograms = {(metric, key): (h.counts.tolist(), round(h.sum, 9))
                      for metric, series in state.histograms.items()
                      if "duration" not in metric for key, h in series.items()}
        return counters, histograms
    finally:
        registry.close()


_ROW_LABELS = st.one_of(st.sampled_from((*_TEXT_CLASSES, "wolf")), st.integers(-3, 3),
                        st.integers(2**62, 2**64), st.booleans())
_ROW_SCORES = st.one_of(st.floats(0, 1), st.just(float("nan")), st.integers(0, 2))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_ROW_LABELS, _ROW_SCORES), min_size=2, max_size=12))
def test_label_and_score_tuples_drained_together_record_what_one_by_one_does(rows):
    assert _state_after(rows, drain_each=False) == _state_after(rows, drain_each=True)
