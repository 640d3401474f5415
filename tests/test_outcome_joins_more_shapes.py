"""Delayed ground truth for prediction shapes the join read wrong, and for ids that are
whole-number floats.

A Hugging Face pipeline's ``[{"label", "score"}]`` (or a service's ``{"label", "score"}``)
whose labels no class was declared for was remembered by its score alone: every outcome
counted ``shape_mismatch``, and a numeric label was judged as a regressor's error against
the score. ``MultiOutputClassifier.predict_proba`` (one probability matrix per output) was
remembered with no classes at all: every outcome counted ``unsupported_prediction``. A
request id ``101.0`` (a pandas id column with a gap is float64) never joined ``101``.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.multioutput import MultiOutputClassifier

import inferwatch
from inferwatch import faults

_names = (f"m{i}" for i in itertools.count())


def _results(scraper, model: str) -> tuple[float, float, float, float]:
    """(correct, incorrect, unmatched of any reason, regression errors observed)."""
    return (scraper.total("inferwatch_outcomes_total", model=model, result="correct"),
            scraper.total("inferwatch_outcomes_total", model=model, result="incorrect"),
            scraper.total("inferwatch_outcomes_unmatched_total", model=model),
            scraper.total("inferwatch_outcome_error_count", model=model))


def _monitor_results(mon) -> tuple[float, float, float, float]:
    """:func:`_results` read off one monitor's state: property tests instrument a model per
    example, and a scrape renders every one of them."""
    mon.drain()
    outcomes = mon.state.counters.get("inferwatch_outcomes_total", {})
    unmatched = mon.state.counters.get("inferwatch_outcomes_unmatched_total", {})
    errors = mon.state.histograms.get("inferwatch_outcome_error", {})
    return (outcomes.get(("correct",), 0), outcomes.get(("incorrect",), 0),
            sum(unmatched.values()), sum(h.count for h in errors.values()))


def _sentiment(text: str) -> list[dict]:  # what pipeline("text-classification")(text) answers
    return [{"label": "POSITIVE" if "good" in text else "NEGATIVE", "score": 0.97}]


def _intent(text: str) -> dict:  # a service's own answer
    return {"label": "refund" if "money" in text else "other", "score": 0.6}


def _two_rows(text: str) -> list[dict]:  # a pipeline given two texts at once
    return [{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.8}]


# --- rows of dicts whose labels no class was declared for -------------------------------


@pytest.mark.parametrize("task", ["classification", "auto"])
@pytest.mark.parametrize(("fn", "truths"), [
    (_sentiment, ("POSITIVE", "POSITIVE", "NEGATIVE")),
    (_intent, ("refund", "refund", "other")),
], ids=["pipeline_rows", "one_dict"])
def test_labels_of_dicts_join_as_text_without_declared_classes(scraper, task, fn, truths):
    """Several calls in one drain, then outcomes: r-1 right, r-2 wrong, r-3 right."""
    name = next(_names)
    model = inferwatch.instrument(fn, name=name, version="1", task=task,
                                  registry=scraper.registry)
    for rid, text in (("r-1", "good, money back"), ("r-2", "bad"), ("r-3", "bad")):
        model(text, request_id=rid)
    mon = inferwatch.monitor(name, "1", registry=scraper.registry)
    for rid, truth in zip(("r-1", "r-2", "r-3"), truths):
        mon.record_outcome(rid, truth)
    assert _results(scraper, name) == (2, 1, 0, 0)


def test_a_batch_of_pipeline_rows_joins_each_row(scraper):
    model = inferwatch.instrument(_two_rows, name="m", version="1",
                                  registry=scraper.registry)
    model(["good", "bad"], request_id="r-1")
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome(
        "r-1", ["POSITIVE", "POSITIVE"])
    assert _results(scraper, "m") == (1, 1, 0, 0)


def test_a_numeric_label_against_a_pipeline_answer_is_a_class_not_an_error(scraper):
    """The label "1" was judged as |0.97 - 1| in inferwatch_outcome_error."""
    model = inferwatch.instrument(lambda text: [{"label": "LABEL_1", "score": 0.97}],
                                  name="m", version="1", registry=scraper.registry)
    model("x", request_id="r-1")
    model("x", request_id="r-2")
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    mon.record_outcome("r-1", "1")
    mon.record_outcome("r-2", "LABEL_1")
    assert _results(scraper, "m") == (1, 1, 0, 0)


def test_declared_classes_still_join_as_they_did(scraper):
    model = inferwatch.instrument(_sentiment, name="m", version="1",
                                  classes=["NEGATIVE", "POSITIVE"], registry=scraper.registry)
    model("good", request_id="r-1")
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1", "POSITIVE")
    assert _results(scraper, "m") == (1, 0, 0, 0)


def test_a_declared_regressor_of_scored_dicts_is_still_judged_by_its_score(scraper):
    model = inferwatch.instrument(lambda x: [{"label": "price", "score": 0.9}], name="m",
                                  version="1", task="regression", registry=scraper.registry)
    model(0, request_id="r-1")
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1", 0.5)
    assert _results(scraper, "m") == (0, 0, 0, 1)
    assert scraper.value("inferwatch_outcome_error_sum", model="m") == pytest.approx(0.4)


_LABELS = st.one_of(st.text(min_size=1, max_size=300), st.integers(-10**6, 10**6))


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labels=st.lists(_LABELS, min_size=1, max_size=5), wrong=st.booleans())
def test_any_label_of_a_pipeline_row_joins_its_own_outcome(registry, labels, wrong):
    name = next(_names)
    answer = [{"label": label, "score": 0.5} for label in labels]
    model = inferwatch.instrument(lambda x: answer, name=name, version="1",
                                  registry=registry)
    model(0, request_id="r-1")
    truth = [f"not {label}" if wrong else label for label in labels]
    mon = inferwatch.monitor(name, "1", registry=registry)
    mon.record_outcome("r-1", truth)
    rows = len(labels)
    assert _monitor_results(mon) == ((0, rows, 0, 0) if wrong else (rows, 0, 0, 0))


# --- one probability matrix per output ----------------------------------------------------

RNG = np.random.default_rng(3)
X = RNG.normal(size=(260, 3))
# Two binary outputs and a three-class one.
Y = np.stack([(X[:, 0] > 0).astype(int), (X[:, 1] + RNG.normal(size=260) > 0).astype(int),
              np.digitize(X[:, 2], [-0.5, 0.5])], axis=1)
Y_TEXT = np.array(["no", "yes", "maybe"])[Y]


@pytest.mark.parametrize("targets", [Y, Y_TEXT], ids=["int_classes", "text_classes"])
@pytest.mark.parametrize("rows", [1, 20])
def test_multi_output_probabilities_join_as_their_predicted_labels_do(scraper, targets,
                                                                      rows):
    classifier = MultiOutputClassifier(LogisticRegression()).fit(X[:200], targets[:200])
    model = inferwatch.instrument(classifier, name="m", version="1",
                                  registry=scraper.registry)
    batches = [X[200 + i * rows:200 + (i + 1) * rows] for i in range(3)]
    truths = [targets[200 + i * rows:200 + (i + 1) * rows] for i in range(3)]
    probabilities = [model.predict_proba(batch, request_id=f"p-{i}")
                     for i, batch in enumerate(batches)]  # several calls, one drain
    labels = [model.predict(batch, request_id=f"l-{i}") for i, batch in enumerate(batches)]
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    for i, truth in enumerate(truths):
        mon.record_outcome(f"p-{i}", truth)
    by_probabilities = _results(scraper, "m")
    for i, truth in enumerate(truths):
        mon.record_outcome(f"l-{i}", truth)
    right = sum(int((predicted == truth).sum()) for predicted, truth in zip(labels, truths))
    cells = sum(truth.size for truth in truths)
    assert by_probabilities == (right, cells - right, 0, 0)
    assert _results(scraper, "m") == (2 * right, 2 * (cells - right), 0, 0)
    # The top class of each output's probabilities is the label predict gave.
    for proba, predicted in zip(probabilities, labels):
        top = np.stack([classes[p.argmax(axis=1)] for p, classes in
                        zip(proba, classifier.classes_)], axis=1)
        assert (top == predicted).all()


def test_outputs_of_different_class_counts_are_counted_not_faulted(scraper):
    """Outputs of 3 and 2 classes: numpy refused their ragged list of classes, and every
    predict_proba call failed whole (no class, batch size or confidence, a fault each)."""
    rng = np.random.default_rng(3)
    targets = np.stack([rng.choice(["a", "b", "c"], 260), rng.choice([0, 1], 260)], axis=1)
    classifier = MultiOutputClassifier(LogisticRegression()).fit(X[:200], targets[:200])
    model = inferwatch.instrument(classifier, name="m", version="1",
                                  registry=scraper.registry)
    before = faults.internal_error_counts().get("prediction", 0)
    probabilities = [model.predict_proba(X[200 + 10 * i:210 + 10 * i]) for i in range(4)]
    classes = {}
    for proba in probabilities:
        for output, (p, names) in enumerate(zip(proba, classifier.classes_)):
            for name in names[p.argmax(axis=1)]:
                classes[f"{output}:{name}"] = classes.get(f"{output}:{name}", 0) + 1
    counted = {labels["class"]: value for labels in scraper.series(
        "inferwatch_predicted_class_total")
        for value in [scraper.value("inferwatch_predicted_class_total", **labels)]}
    assert counted == classes
    assert scraper.value("inferwatch_batch_size_sum") == 40
    assert faults.internal_error_counts().get("prediction", 0) == before


def test_probabilities_of_one_output_join_its_class_not_the_output_numbered_class(scraper):
    """One output's classes are counted as "0:<class>"; its outcome is the class alone."""
    single = MultiOutputClassifier(LogisticRegression()).fit(X[:200], Y[:200, :1])
    model = inferwatch.instrument(single, name="m", version="1", registry=scraper.registry)
    proba = model.predict_proba(X[200:210], request_id="r-1")
    predicted = proba[0].argmax(axis=1)
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1", predicted)
    assert _results(scraper, "m") == (10, 0, 0, 0)


def test_probabilities_with_a_nan_row_are_unjoinable_not_a_fault(scraper):
    proba = [np.array([[0.2, 0.8], [np.nan, np.nan]]), np.array([[0.9, 0.1], [0.5, 0.5]])]

    class Tagger:
        classes_ = [np.array([0, 1]), np.array([0, 1])]

        def predict_proba(self, x):
            return proba

    model = inferwatch.instrument(Tagger(), name="m", version="1", registry=scraper.registry)
    before = faults.internal_error_counts().get("prediction", 0)
    model.predict_proba(0, request_id="r-1")
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1", [[1, 0]] * 2)
    assert scraper.total("inferwatch_outcomes_unmatched_total", model="m",
                         reason="unsupported_prediction") == 1
    assert faults.internal_error_counts().get("prediction", 0) == before


# --- request ids that are whole-number floats ---------------------------------------------

_EXACT = st.integers(-2**53, 2**53)  # every such int is a float exactly


@given(_EXACT)
def test_an_int_id_and_its_whole_float_have_one_text(number):
    text = faults.request_id_text(number, "request_id")
    assert text == str(number)
    for same in (float(number), np.float64(number), Decimal(number),
                 Decimal(f"{number}.000")):
        assert faults.request_id_text(same, "request_id") == text
    if abs(number) <= 2**24:  # float32 holds these exactly
        assert faults.request_id_text(np.float32(number), "request_id") == text


_FRACTIONS = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda value: not value.is_integer())


@given(_FRACTIONS, st.one_of(_FRACTIONS, _EXACT))
def test_a_fractional_float_id_never_reads_as_another_id(value, other):
    text = faults.request_id_text(value, "request_id")
    assert float(text) == value  # its own text, read back whole
    if other != value:
        assert faults.request_id_text(other, "request_id") != text


def test_a_bool_id_is_no_number():
    assert faults.request_id_text(True, "request_id") == "True"
    assert faults.request_id_text(np.bool_(False), "request_id") == "False"


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(number=_EXACT, float_first=st.booleans())
def test_a_prediction_and_its_outcome_join_by_int_or_whole_float_id(registry, number,
                                                                    float_first):
    name = next(_names)
    model = inferwatch.instrument(lambda x: np.array([1]), name=name, version="1",
                                  registry=registry)
    predicted_id, outcome_id = (float(number), number) if float_first else \
        (number, float(number))
    model(0, request_id=predicted_id)
    mon = inferwatch.monitor(name, "1", registry=registry)
    mon.record_outcome(outcome_id, 1)
    assert _monitor_results(mon) == (1, 0, 0, 0)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_FRACTIONS)
def test_a_fractional_id_never_joins_the_whole_number_below_it(registry, value):
    name = next(_names)
    model = inferwatch.instrument(lambda x: np.array([1]), name=name, version="1",
                                  registry=registry)
    model(0, request_id=int(value))
    mon = inferwatch.monitor(name, "1", registry=registry)
    mon.record_outcome(value, 1)
    assert mon.state.counters["inferwatch_outcomes_unmatched_total"] == {("unknown_id",): 1}


def test_ids_from_a_pandas_column_with_a_gap_join(scraper):
    model = inferwatch.instrument(lambda x: np.array([1]), name="m", version="1",
                                  registry=scraper.registry)
    for rid in (101, 102, 103):
        model(0, request_id=rid)
    labels = pd.DataFrame({"request_id": [101, 102, None, 103], "y": [1, 0, 1, 1]})
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    for row in labels.dropna().itertuples():
        mon.record_outcome(row.request_id, row.y)  # 101.0, 102.0, 103.0
    assert _results(scraper, "m") == (2, 1, 0, 0)


def test_a_request_block_and_a_true_id_read_ids_alike(scraper):
    model = inferwatch.instrument(lambda x: np.array([1]), name="m", version="1",
                                  registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    with mon.request(request_id=np.float64(7.0)):
        model(0)
    model(0, request_id=True)
    mon.record_outcome(7, 1)
    mon.record_outcome(1, 1)  # True is no id 1
    assert _results(scraper, "m") == (1, 0, 1, 0)
    assert scraper.total("inferwatch_outcomes_unmatched_total", model="m",
                         reason="unknown_id") == 1


def _class_outputs(container: str, first, second):
    if container == "dict":
        return {"colour": first, "size": second}
    if container == "DataFrame":
        return pd.DataFrame({"colour": first, "size": second})
    return (first, second) if container == "tuple" else [first, second]


@pytest.mark.parametrize("container", ["dict", "tuple", "list", "DataFrame"])
@pytest.mark.parametrize("labels", [
    (np.array([1, 2, 0]), np.array([2, 1, 1])),
    (np.array(["red", "blue", "red"]), np.array(["s", "m", "l"])),
])
def test_class_outputs_side_by_side_join_each_row(scraper, container, labels):
    """A multi-output classifier's labels returned as a tuple or list of arrays (one per
    output, as its drain counts them) were joined as rows of a table: two rows of three
    labels, every outcome a ``shape_mismatch``. They join as a dict's outputs do."""
    first, second = labels
    name = next(_names)
    model = inferwatch.instrument(lambda x: _class_outputs(container, first, second),
                                  name=name, version="1", registry=scraper.registry)
    model(None, request_id="r-1")
    truth = [[first[0], second[0]], [first[1], second[1]], [first[2], first[2]]]
    inferwatch.monitor(name, "1", registry=scraper.registry).record_outcome("r-1", truth)
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 5
    assert scraper.value("inferwatch_outcomes_total", result="incorrect") == 1
    assert scraper.total("inferwatch_outcomes_unmatched_total") == 0


@pytest.mark.parametrize("container", ["dict", "tuple", "list", "DataFrame"])
@pytest.mark.parametrize("missing", [None, float("nan"), pd.NA])
def test_a_class_output_without_a_label_leaves_the_others_joinable(scraper, container,
                                                                   missing):
    """One output of one row without a class (None, NaN, pd.NA) made the whole call
    unjoinable, in every container: every outcome was lost. That cell is now counted
    unjudged, and the other cells of its row, and the other rows, are judged."""
    first = np.array(["red", missing, "red"], dtype=object)
    second = np.array(["s", "m", missing], dtype=object)
    name = next(_names)
    model = inferwatch.instrument(lambda x: _class_outputs(container, first, second),
                                  name=name, version="1", registry=scraper.registry)
    model(None, request_id="r-1")
    truth = [["red", "s"], ["blue", "m"], ["red", "l"]]
    inferwatch.monitor(name, "1", registry=scraper.registry).record_outcome("r-1", truth)
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 4
    assert scraper.value("inferwatch_outcomes_total", result="incorrect") is None
    assert scraper.value("inferwatch_outcomes_unmatched_total",
                         reason="unsupported_prediction") == 2


_OUTPUT_KINDS = {
    "floats": lambda n: np.linspace(0.1, 0.9, n),
    "floats with NaN": lambda n: np.array(([np.nan] + [0.5] * 4)[:n]),
    "int labels": lambda n: np.arange(n) % 3,
    "text labels": lambda n: np.array(["a", "b", "c", "d"][:n]),
    "labels with None": lambda n: np.array((["x", None] + ["y"] * 3)[:n], dtype=object),
    "bools": lambda n: np.arange(n) % 2 == 0,
}


@settings(max_examples=200, deadline=None)
@given(rows=st.integers(2, 4), kinds=st.lists(st.sampled_from(sorted(_OUTPUT_KINDS)),
                                              min_size=1, max_size=3),
       container=st.sampled_from(["dict", "tuple", "list", "DataFrame", "records"]))
def test_outputs_side_by_side_join_a_row_for_each_row_counted(rows, kinds, container):
    """Whatever a model returns its outputs in (a dict, a tuple or list of arrays, a
    DataFrame, rows of dicts) and whatever they hold (values, labels, labels beside
    scores, a NaN or a None in one cell), the join keeps a row for each row the drain
    counted: a tuple of label arrays was joined as a table's rows, and one NaN or None
    lost the whole call."""
    from inferwatch.core.registry import Registry

    columns = [_OUTPUT_KINDS[kind](rows) for kind in kinds]
    names = [f"out{i}" for i in range(len(columns))]
    frame = pd.DataFrame(dict(zip(names, columns)))
    result = dict(zip(names, columns)) if container == "dict" else \
        frame if container == "DataFrame" else \
        frame.astype(object).to_dict("records") if container == "records" else \
        tuple(columns) if container == "tuple" else list(columns)
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda x: result, name="m", version="1",
                                      registry=registry)
        model(None, request_id="r-1")
        monitor = inferwatch.monitor("m", "1", registry=registry)
        monitor.drain()
        assert sum(h.sum for h in
                   monitor.state.histograms["inferwatch_batch_size"].values()) == rows
        classes, values, *_ = monitor.outcomes._pending["r-1"]
        kept = classes if classes is not None else values
        assert kept is not None and len(kept) == rows
        assert monitor.outcomes.kept_rows("r-1") == (rows, rows)
    finally:
        registry.close()


@pytest.mark.parametrize("missing", [None, float("nan"), pd.NA])
def test_a_pipeline_row_without_a_label_never_joins_by_its_score(scraper, missing):
    """One row of a pipeline's ``[{"label", "score"}]`` without a label made the whole call
    join by its scores, as a regressor's values: an outcome's label was judged as an
    error against a confidence. The row is now counted unjudged, the others judged by
    their labels; a lone dict without a label is counted unjudged too."""
    name = next(_names)
    answers = iter([[{"label": "spam", "score": 0.9}, {"label": missing, "score": 0.1},
                     {"label": "ham", "score": 0.8}],
                    {"label": missing, "score": 0.3}])
    model = inferwatch.instrument(lambda x: next(answers), name=name, version="1",
                                  registry=scraper.registry)
    model(None, request_id="r-1")
    model(None, request_id="r-2")
    mon = inferwatch.monitor(name, "1", registry=scraper.registry)
    mon.record_outcome("r-1", ["spam", "spam", "spam"])
    mon.record_outcome("r-2", "spam")
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 1
    assert scraper.value("inferwatch_outcomes_total", result="incorrect") == 1
    assert scraper.value("inferwatch_outcomes_unmatched_total",
                         reason="unsupported_prediction") == 2
    assert scraper.value("inferwatch_outcome_error_count") is None


@pytest.mark.parametrize("container", ["dict", "DataFrame"])
def test_label_and_score_columns_join_by_the_labels(scraper, container):
    """``{"label": labels, "score": scores}`` as columns (a dict of arrays, a DataFrame),
    its text labels declared nowhere: the join kept the scores, as a regressor's values,
    and judged each outcome's label against a confidence. It joins by the labels, as the
    pipeline's rows of the same dicts do; a row without a label is counted unjudged."""
    labels = np.array(["spam", "ham", None], dtype=object)
    scores = np.array([0.9, 0.7, 0.6])
    result = {"label": labels, "score": scores} if container == "dict" else \
        pd.DataFrame({"label": labels, "score": scores})
    name = next(_names)
    model = inferwatch.instrument(lambda x: result, name=name, version="1",
                                  registry=scraper.registry)
    model(None, request_id="r-1")
    inferwatch.monitor(name, "1", registry=scraper.registry).record_outcome(
        "r-1", ["spam", "spam", "ham"])
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 1
    assert scraper.value("inferwatch_outcomes_total", result="incorrect") == 1
    assert scraper.value("inferwatch_outcomes_unmatched_total",
                         reason="unsupported_prediction") == 1
    assert scraper.value("inferwatch_outcome_error_count") is None
