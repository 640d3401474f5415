"""Prediction shapes models really return, each recorded row by row."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import inferwatch
from inferwatch.core.prediction_classes import class_labels
from inferwatch.core.predictions import normalize
from strategies import ANY_OUTPUT


@pytest.mark.parametrize(
    ("result", "rows", "total"),
    [
        (0.25, 1, 0.25),
        (np.float32(0.5), 1, 0.5),
        (np.float64(2.0), 1, 2.0),
        (np.array([0.1, 0.2, 0.3]), 3, 0.6),
        ([1.5, 2.5], 2, 4.0),
        (pd.Series([1.0, 2.0, 3.0]), 3, 6.0),
        (np.array([[1.0], [2.0]]), 2, 3.0),
    ],
)
def test_score_shapes(scraper, result, rows, total):
    wrapped = inferwatch.instrument(lambda x: result, name="m", version="1", task="regression",
                                    registry=scraper.registry)
    wrapped(None)
    assert scraper.value("inferwatch_batch_size_sum", model="m") == rows
    assert scraper.value("inferwatch_prediction_count", model="m", output="value") == rows
    assert scraper.value("inferwatch_prediction_sum", model="m",
                         output="value") == pytest.approx(total)


def test_dict_of_named_outputs_and_dataframe(scraper):
    outputs = {"price": np.array([10.0, 20.0]), "eta_seconds": [60.0, 120.0]}
    frame = pd.DataFrame({"price": [30.0], "eta_seconds": [30.0]})
    wrapped = inferwatch.instrument(lambda x: x, name="m", version="1", registry=scraper.registry)
    wrapped(outputs)
    wrapped(frame)
    assert scraper.value("inferwatch_prediction_sum", output="price") == 60.0
    assert scraper.value("inferwatch_prediction_sum", output="eta_seconds") == 210.0
    assert scraper.value("inferwatch_batch_size_sum") == 3


def test_probability_matrix_gives_classes_confidence_and_columns(scraper):
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3]])
    mon = inferwatch.monitor("clf", "1", registry=scraper.registry)
    with mon.request() as r:
        r.prediction(proba)
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "0"}) == 1
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "2"}) == 1
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "1"}) == 1
    assert scraper.value("inferwatch_prediction_confidence_sum") == pytest.approx(2.0)
    assert scraper.value("inferwatch_prediction_sum", output="2") == pytest.approx(1.2)


def test_class_label_arrays_and_scalars(scraper):
    # A lone string is a class label only when the model says it classifies (else: text),
    # and only a declared class (or one from classes_) becomes a label.
    wrapped = inferwatch.instrument(lambda x: x, name="m", version="1", task="classification",
                                    classes=["cat", "dog"],
                                    registry=scraper.registry)
    wrapped(np.array(["cat", "dog", "cat"]))
    wrapped("dog")
    wrapped(np.array([1, 0, 1]))
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "cat"}) == 2
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "dog"}) == 2
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "1"}) == 2
    assert scraper.value("inferwatch_batch_size_count") == 3


def test_invalid_predictions_counted_by_reason(scraper):
    wrapped = inferwatch.instrument(lambda x: x, name="m", version="1", output_range=(0.0, 1.0),
                                    registry=scraper.registry)
    wrapped(np.array([0.5, np.nan, np.inf, -np.inf, 1.5, -0.1]))
    assert scraper.value("inferwatch_invalid_predictions_total", reason="nan") == 1
    assert scraper.value("inferwatch_invalid_predictions_total", reason="inf") == 2
    assert scraper.value("inferwatch_invalid_predictions_total", reason="out_of_range") == 2
    # Non-finite values never reach the quantiles.
    assert scraper.value("inferwatch_prediction_count", output="value") == 3


def test_probabilities_that_do_not_sum_to_one_are_invalid():
    p = normalize(np.array([[0.9, 0.9], [0.5, 0.5], [-0.1, 1.1]]), probabilities=True)
    assert p.invalid == {"probability_out_of_range": 1, "probability_sum": 1}


def test_batch_of_10000_rows_records_every_row(scraper):
    batch = np.random.default_rng(1).random(10_000)
    wrapped = inferwatch.instrument(lambda x: batch, name="m", version="1",
                                    registry=scraper.registry)
    wrapped(None)
    assert scraper.value("inferwatch_prediction_count", output="value") == 10_000
    assert scraper.value("inferwatch_prediction", output="value", quantile="0.9") == \
        pytest.approx(np.quantile(batch, 0.9, method="lower"), rel=0.01)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(dtype=st.sampled_from([np.float64, np.float32, np.int64, np.bool_]),
                  shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=6)))
def test_any_numeric_array_is_normalised_without_error(array):
    prediction = normalize(array)
    assert prediction.rows >= 0
    recorded = sum(v.size for v in prediction.values.values())
    classes = 0 if prediction.classes is None else prediction.classes.size
    invalid = sum(prediction.invalid.values())
    assert recorded + classes + invalid >= min(array.size, 1) or array.size == 0


# --- identity and labels a new user sees ---------------------------------------------------

@pytest.mark.parametrize(("result", "detected"), [
    (0.5, "regression"), (np.array([1.5, 2.5]), "regression"), ("fraud", "generation"),
    (np.array(["fraud"]), "classification"), (iter([1, 2]), "generation"),
    (np.array([1, 0]), "classification"),
    # A float matrix from a function with no classes_ is values (docs/shapes.md), and
    # strings that are not declared classes are withheld but still classify.
    ([[0.2, 0.8]], "regression"), (np.array(["alice@example.com"]), "classification"),
])
def test_model_info_shows_the_detected_task_not_auto(scraper, result, detected):
    wrapped = inferwatch.instrument(lambda x: result, name="m", version="1",
                                    registry=scraper.registry)
    wrapped(1)
    assert [s["task"] for s in scraper.series("inferwatch_model_info")] == [detected]


def test_model_info_shows_probabilities_as_classification(scraper):
    class Model:
        classes_ = np.array([0, 1])

        def predict_proba(self, x):
            return np.array([[0.2, 0.8]])

    model = inferwatch.instrument(Model(), name="m", version="1", registry=scraper.registry)
    model.predict_proba(1)
    assert [s["task"] for s in scraper.series("inferwatch_model_info")] == ["classification"]


def test_a_declared_task_is_shown_as_declared(scraper):
    wrapped = inferwatch.instrument(lambda x: 1, name="m", version="1", task="regression",
                                    registry=scraper.registry)
    wrapped(1)
    assert [s["task"] for s in scraper.series("inferwatch_model_info")] == ["regression"]


@pytest.mark.parametrize("version", ["", " ", "\t"])
def test_an_empty_version_is_exported_as_unversioned(scraper, version):
    wrapped = inferwatch.instrument(lambda x: 0.5, name="m", version=version,
                                    registry=scraper.registry)
    wrapped(1)
    assert {s["model_version"] for s in scraper.series("inferwatch_requests_total")} == \
        {"unversioned"}
    assert inferwatch.monitor("m", version, registry=scraper.registry).version == "unversioned"


@given(label=st.text(min_size=1, max_size=5).filter(lambda t: t.strip("\x00")))
@settings(max_examples=30, deadline=None)
def test_class_labels_differing_by_trailing_nuls_stay_apart(label):
    from conftest import Scraper

    scraper = Scraper()
    try:
        for shape in (lambda x: x, lambda x: [x], lambda x: [[x]], lambda x: (x,)):
            wrapped = inferwatch.instrument(shape, name="m", version="1", task="classification",
                                            classes=[label, label + "\x00"],
                                            registry=scraper.registry)
            wrapped(label + "\x00")
            wrapped(label)
        classes = {s.labels["class"]: s.value for s in scraper.samples()
                   if s.name == "inferwatch_predicted_class_total"}
        assert classes == {label + "\x00": 4, label: 4}
    finally:
        scraper.registry.close()


COMPLEX_OUTPUTS = """
import time
import numpy as np
import inferwatch
from inferwatch.core.registry import Registry

registry = Registry(drain_interval=0.05)
ref = inferwatch.Reference.from_data({"a": np.arange(100.0), "b": np.arange(100.0)},
                                     predictions=np.linspace(0, 1, 100))

class Model:
    def predict(self, x):
        return np.array([1 + 2j])

    def predict_proba(self, x):
        return np.array([[0.5 + 1j, 0.5]])

# Folded by the drain thread's next pass, not after its usual wait for more calls.
soon = {"drain_max_wait_seconds": 0.0}
plain = inferwatch.instrument(Model(), name="plain", version="1", registry=registry, **soon)
checked = inferwatch.instrument(Model(), name="checked", version="1", registry=registry,
                                reference=ref, **soon)
scalar = inferwatch.instrument(lambda x: 1 + 2j, name="scalar", version="1", registry=registry,
                               **soon)
for _ in range(3):
    plain.predict(1); plain.predict_proba(1); scalar(1)
    checked.predict({"a": 1 + 1j, "b": np.complex64(2)})
    checked.predict_proba(np.array([[1 + 1j, 2.0]]))
deadline = time.monotonic() + 60
while any(m.pending() for m in registry.monitors()):  # the drain thread takes them
    assert time.monotonic() < deadline, "the drain thread never ran"
    time.sleep(0.01)
registry.drain()
invalid = sum(m.state.counters["inferwatch_invalid_predictions_total"].get(("unsupported_type",), 0)
              for m in registry.monitors())
print(int(invalid))
"""


def test_complex_outputs_and_inputs_print_nothing_on_the_applications_stderr():
    import subprocess
    import sys

    finished = subprocess.run([sys.executable, "-W", "default", "-c", COMPLEX_OUTPUTS],
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert finished.stderr == ""
    assert int(finished.stdout) == 3 * 5  # every complex output counted as unsupported


def test_merged_workers_show_the_task_any_of_them_detected():
    from inferwatch.core.state import ModelState

    for order in ((0, 1), (1, 0)):
        states = [ModelState("m", "1"), ModelState("m", "1")]
        states[0].info = {"task": "auto", "framework": "python"}
        states[1].info = {"task": "classification", "framework": "python"}
        merged = states[order[0]]
        merged.merge(states[order[1]])
        assert merged.info == {"task": "classification", "framework": "python"}


class_name_lists = st.one_of(
    st.none(),
    st.lists(st.integers(-70_000, 70_000), min_size=2, max_size=5, unique=True),
    st.lists(st.sampled_from(["0", "1", "01", "-0", " 2", "+3", "cat", "True", "1.0", "٣"]),
             min_size=2, max_size=5, unique=True),
    st.lists(st.booleans(), min_size=2, max_size=2, unique=True),
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=5, unique=True),
)


@settings(max_examples=150, deadline=None)
@given(class_name_lists, st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_predicted_classes_of_probabilities_are_the_top_columns_names(names, rows, seed):
    # Integer names are kept as numbers and counted in one pass; any other name as text.
    # Either way the counts are those of each row's top column, by the column's name.
    from collections import Counter

    from inferwatch.core.class_probabilities import column_names
    from inferwatch.core.prediction_classes import class_labels
    from inferwatch.core.prediction_state import count_classes

    width = 3 if names is None else len(names)
    matrix = np.random.default_rng(seed).dirichlet(np.ones(width), size=rows)
    class_names = None if names is None else np.array(names, dtype=object if isinstance(
        names[0], str) else None)
    prediction = normalize(matrix, probabilities=True, class_names=class_names)

    labels = column_names(width, class_names)
    expected = Counter(labels[i] for i in matrix.argmax(axis=1))
    assert count_classes([prediction.classes]) == dict(expected)
    assert class_labels(prediction.classes) == [labels[i] for i in matrix.argmax(axis=1)]


def _probabilities_row_by_row(matrix: np.ndarray) -> dict:
    """What a probability matrix means, judged one row at a time in plain Python."""
    invalid: dict[str, int] = {}
    kept = []
    for row in matrix.tolist():
        if any(v != v for v in row):
            invalid["nan"] = invalid.get("nan", 0) + 1
        elif any(v in (float("inf"), float("-inf")) for v in row):
            invalid["inf"] = invalid.get("inf", 0) + 1
        else:
            # Within 1e-6 of a bound is float error (a softmax's 1.0000000002): that bound.
            kept.append([min(max(v, 0.0), 1.0) if -1e-6 <= v <= 1 + 1e-6 else v
                         for v in row])
    for row in kept:
        if any(v < 0 or v > 1 for v in row):
            invalid["probability_out_of_range"] = invalid.get("probability_out_of_range", 0) + 1
        if abs(float(np.sum(np.array(row))) - 1.0) > 1e-3:
            invalid["probability_sum"] = invalid.get("probability_sum", 0) + 1
    top = [row.index(max(row)) for row in kept]  # the first of equal maxima, as argmax
    return {"invalid": invalid, "top": top, "confidence": [max(row) for row in kept],
            "columns": [[row[j] for row in kept] for j in range(matrix.shape[1])]}


_PROBABILITY_CELLS = st.one_of(
    st.floats(0, 1), st.sampled_from([0.0, 0.5, 1.0, 0.25]), st.floats(-2, 3),
    st.sampled_from([float("nan"), float("inf"), float("-inf")]))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 9).flatmap(lambda width: st.one_of(
    st.integers(0, 30).map(lambda rows: np.random.default_rng(rows).dirichlet(
        np.ones(width), size=rows)),
    hnp.arrays(np.float64, st.tuples(st.integers(0, 30), st.just(width)),
               elements=_PROBABILITY_CELLS))))
def test_a_probability_matrix_reads_as_judging_each_row_on_its_own(matrix):
    """The drain judges a probability matrix with whole-matrix checks and column-wise
    arithmetic; every count, top class, confidence and column equals judging each row."""
    from inferwatch.core.prediction_classes import class_labels

    prediction = normalize(matrix, probabilities=True)
    expected = _probabilities_row_by_row(matrix)
    assert prediction.invalid == expected["invalid"]
    if not expected["top"]:
        return
    assert class_labels(prediction.classes) == [str(i) for i in expected["top"]]
    assert prediction.confidence.tolist() == expected["confidence"]
    for j, column in enumerate(expected["columns"]):
        assert prediction.values[str(j)].tolist() == column


# --- rows of dicts: what Hugging Face pipelines return ------------------------------------

HF_CLASSES = ["NEGATIVE", "POSITIVE"]


def _prediction_summary(prediction) -> tuple:
    classes = None if prediction.classes is None else class_labels(prediction.classes)
    values = {name: np.asarray(v).tolist() for name, v in prediction.values.items()}
    confidence = None if prediction.confidence is None else prediction.confidence.tolist()
    return prediction.rows, classes, values, confidence, dict(prediction.invalid)


def test_a_pipelines_label_and_score_rows_are_classes_and_a_score_output():
    answer = [{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.7}]
    seen = normalize(answer, class_names=HF_CLASSES, known_classes=set(HF_CLASSES))
    assert _prediction_summary(seen) == (2, ["POSITIVE", "NEGATIVE"], {"score": [0.9, 0.7]},
                                         None, {})
    # Labels a model does not name stay out of the class label, counted, as anywhere else.
    unnamed = normalize(answer)
    assert unnamed.classes is None or unnamed.classes.size == 0
    assert unnamed.invalid == {"unsupported_type": 2}
    # Rows whose keys differ are no table: counted as one unsupported result.
    assert normalize([{"label": "a"}, {"score": 1.0}]).invalid == {"unsupported_type": 2}
    # Arrays per row (a detector's boxes per image) are no table of scalars either.
    detections = [{"boxes": np.zeros((3, 4)), "scores": np.ones(3)},
                  {"boxes": np.zeros((5, 4)), "scores": np.ones(5)}]
    assert normalize(detections).invalid == {"unsupported_type": 2}


def test_every_labels_score_per_row_is_a_probability_matrix_in_the_models_class_order():
    answer = [[{"label": "POSITIVE", "score": 0.8}, {"label": "NEGATIVE", "score": 0.2}],
              [{"label": "NEGATIVE", "score": 0.6}, {"label": "POSITIVE", "score": 0.4}]]
    seen = normalize(answer, class_names=HF_CLASSES, known_classes=set(HF_CLASSES))
    as_matrix = normalize(np.array([[0.2, 0.8], [0.6, 0.4]]), probabilities=True,
                          class_names=HF_CLASSES, known_classes=set(HF_CLASSES))
    assert _prediction_summary(seen) == _prediction_summary(as_matrix)
    assert class_labels(seen.classes) == ["POSITIVE", "NEGATIVE"]
    # Independent scores (a multi-label model's sigmoid) are one output per label.
    multi = normalize([[{"label": "toxic", "score": 0.9}, {"label": "insult", "score": 0.7}]])
    assert _prediction_summary(multi) == (1, None, {"insult": [0.7], "toxic": [0.9]}, None, {})
    # A label twice in a row is no distribution: not read as one.
    twice = [[{"label": "a", "score": 0.5}, {"label": "a", "score": 0.5}]]
    assert normalize(twice).classes is None and not normalize(twice).confidence


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20),
       st.lists(st.sampled_from(HF_CLASSES), min_size=20, max_size=20))
def test_rows_of_dicts_record_as_the_dict_of_columns_they_make(scores, labels):
    rows = [{"label": label, "score": score} for label, score in zip(labels, scores)]
    columns = {"label": [row["label"] for row in rows], "score": scores}
    options = {"class_names": HF_CLASSES, "known_classes": set(HF_CLASSES)}
    assert _prediction_summary(normalize(rows, **options)) == \
        _prediction_summary(normalize(columns, **options))


# --- anything a model may return --------------------------------------------------------



@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(ANY_OUTPUT, st.sampled_from([False, True, None]),
       st.sampled_from(["auto", "classification", "regression"]))
def test_any_output_normalises_without_raising_or_warning(result, probabilities, task):
    """Ragged lists, text from predict_proba, huge "probabilities": counted by reason, never
    an exception (an internal error) or a numpy warning on the application's stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prediction = normalize(result, probabilities=probabilities, task=task)
    assert prediction.rows >= 0 and all(count >= 0 for count in prediction.invalid.values())


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(ANY_OUTPUT, min_size=1, max_size=6), st.booleans(),
       st.sampled_from(["auto", "classification", "regression"]))
def test_a_drain_of_any_outputs_counts_every_call_and_no_internal_error(results, proba, task):
    from inferwatch import faults
    from inferwatch.core.registry import Registry

    class Replay:
        def __init__(self) -> None:
            self.answers = iter(results)

        def predict(self, x):
            return next(self.answers)

        def predict_proba(self, x):
            return next(self.answers)

    registry = Registry(drain_interval=3600)
    before = faults.internal_error_counts()
    model = inferwatch.instrument(Replay(), name="m", version="1", task=task,
                                  registry=registry)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in results:
            (model.predict_proba if proba else model.predict)(0)
        registry.drain()
    state = registry.monitor("m", "1").state
    registry.close()
    assert faults.internal_error_counts() == before
    assert state.counters["inferwatch_requests_total"][("ok",)] == len(results)


def test_a_polars_frame_of_outputs_is_named_by_its_columns():
    pl = pytest.importorskip("polars")
    frame = pd.DataFrame({"price": [10.0, 20.0, np.nan], "eta": [30.0, 40.0, 50.0]})
    assert _prediction_summary(normalize(pl.from_pandas(frame))) == \
        _prediction_summary(normalize(frame))
    assert set(normalize(pl.from_pandas(frame)).values) == {"price", "eta"}
