"""Dict outputs whose values are dicts (``core/nested_outputs.py``): a classifier's label
beside its map of class probabilities (``{"label": "fraud", "probability": {"legit": 0.07,
"fraud": 0.93}}``), a batch's list of such maps, feature attributions as a dict of
floats, and a dict of anything else. The label stays the class it is (a nested dict read
as objects made it ``label:fraud``, which no outcome joins) and no call counts an invalid
prediction for a map or for attributions."""

from __future__ import annotations

import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper
from inferwatch.core.class_probabilities import (
    PROBABILITY_RANGE_TOLERANCE,
    PROBABILITY_SUM_TOLERANCE,
)
from inferwatch.core.predictions import normalize

PROBABILITY_MAP = {"label": "fraud", "probability": {"legit": 0.07, "fraud": 0.93}}


def _served(result: object, calls: int = 3, **options) -> Scraper:
    """A scraper of a function returning `result`, called `calls` times with request ids
    ``r-0`` ... and judged ``fraud`` each."""
    scraper = Scraper(drain_interval=3600)
    fn = inferwatch.instrument(lambda x: result, name="m", version="1",
                               registry=scraper.registry, **options)
    for i in range(calls):
        fn(i, request_id=f"r-{i}")
    monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
    for i in range(calls):
        monitor.record_outcome(f"r-{i}", "fraud")
    return scraper


def test_a_label_beside_its_class_probabilities():
    scraper = _served(PROBABILITY_MAP)
    try:
        assert scraper.value("inferwatch_predicted_class_total", **{"class": "fraud"}) == 3
        assert scraper.total("inferwatch_predicted_class_total") == 3
        assert scraper.total("inferwatch_invalid_predictions_total") == 0
        assert scraper.value("inferwatch_prediction_confidence_count") == 3
        assert scraper.value("inferwatch_prediction_count", output="fraud") == 3
        assert scraper.value("inferwatch_prediction_sum", output="legit") == \
            np.float64(0.07) * 3
        assert scraper.value("inferwatch_outcomes_total", result="correct") == 3
        assert scraper.value("inferwatch_batch_size_sum") == 3
    finally:
        scraper.registry.close()


def test_a_batch_of_labels_beside_a_list_of_maps():
    batch = {"label": ["fraud", "legit"],
             "probability": [{"legit": 0.2, "fraud": 0.8}, {"legit": 0.6, "fraud": 0.4}]}
    scraper = _served(batch, calls=1)
    try:
        assert scraper.value("inferwatch_predicted_class_total", **{"class": "legit"}) == 1
        assert scraper.value("inferwatch_predicted_class_total", **{"class": "fraud"}) == 1
        assert scraper.value("inferwatch_prediction_confidence_sum") == 0.8 + 0.6
        assert scraper.value("inferwatch_batch_size_sum") == 2
        assert scraper.total("inferwatch_invalid_predictions_total") == 0
    finally:
        scraper.registry.close()


def test_a_map_alone_predicts_its_most_probable_class():
    scraper = _served({"probability": {"legit": 0.07, "fraud": 0.93}})
    try:
        assert scraper.value("inferwatch_predicted_class_total", **{"class": "fraud"}) == 3
        assert scraper.value("inferwatch_outcomes_total", result="correct") == 3
    finally:
        scraper.registry.close()


def test_attributions_are_values_named_after_their_output():
    scraper = _served({"label": "fraud", "score": 0.9,
                       "explanation": {"amount": 0.4, "age": -0.1, "visits": 2.0}},
                      classes=["legit", "fraud"])
    try:
        assert scraper.value("inferwatch_predicted_class_total", **{"class": "fraud"}) == 3
        assert scraper.value("inferwatch_prediction_sum", output="explanation.age") == \
            -0.1 * 3
        assert scraper.value("inferwatch_prediction_sum", output="explanation.visits") == 6
        assert scraper.total("inferwatch_invalid_predictions_total") == 0
        assert scraper.value("inferwatch_outcomes_total", result="correct") == 3
    finally:
        scraper.registry.close()


def test_a_dict_of_anything_else_is_counted_and_leaves_the_label_plain():
    # Whole numbers too: in a dict they are ids and counts more often than values.
    scraper = _served({"label": "fraud", "meta": {"model": "v2", "cached": True},
                       "user": {"id": 3, "visits": 12}}, classes=["legit", "fraud"])
    try:
        assert scraper.value("inferwatch_predicted_class_total", **{"class": "fraud"}) == 3
        assert scraper.value("inferwatch_invalid_predictions_total",
                             reason="unsupported_type") == 6
        assert scraper.value("inferwatch_outcomes_total", result="correct") == 3
    finally:
        scraper.registry.close()


def test_each_unreadable_dict_counts_once():
    batch = normalize({"label": ["a", "b", "c"], "meta": {"model": "v2"},
                       "details": [{"id": 1}, {"id": 2}, {"id": 3}]}, known_classes={"a", "b"})
    assert batch.rows == 3
    assert batch.invalid == {"unsupported_type": 1 + 3 + 1}  # the meta, the details, "c"
    assert batch.classes.tolist() == ["a", "b"]


def test_under_regression_a_map_is_values():
    prediction = normalize(PROBABILITY_MAP, task="regression")
    assert {name: v.tolist() for name, v in prediction.values.items()} == {
        "probability.legit": [0.07], "probability.fraud": [0.93]}
    assert prediction.confidence is None


def _same(a, b) -> None:
    assert a.rows == b.rows
    assert {k: v.tolist() for k, v in a.values.items()} == \
        {k: v.tolist() for k, v in b.values.items()}
    assert (None if a.classes is None else a.classes.tolist()) == \
        (None if b.classes is None else b.classes.tolist())
    assert (None if a.confidence is None else a.confidence.tolist()) == \
        (None if b.confidence is None else b.confidence.tolist())
    assert a.invalid == b.invalid


_classes = st.lists(st.sampled_from(["cat", "dog", "bird", "0", "é"]), min_size=2,
                    max_size=4, unique=True)


@settings(max_examples=200, deadline=None)
@given(classes=_classes, weights=st.lists(st.floats(0.01, 1.0), min_size=4, max_size=4),
       top=st.integers(0, 3), task=st.sampled_from(["auto", "classification"]))
def test_a_label_and_its_map_read_as_onnx_labels_beside_a_zipmap(classes, weights, top, task):
    """The same shape as a list, ``[labels, [{class: p}]]``, is an ONNX classifier's
    answer, which inferwatch reads as labels beside class probabilities: the dict's reading
    is that one."""
    total = sum(weights[:len(classes)]) or 1.0
    row = {name: weight / total for name, weight in zip(classes, weights)}
    label = classes[top % len(classes)]
    as_dict = normalize({"label": label, "probability": row}, task=task)
    as_onnx = normalize([np.array([label], dtype=object), [row]], task=task)
    _same(as_dict, as_onnx)
    assert as_dict.classes.tolist() == [label]


@settings(max_examples=200, deadline=None)
@given(inner=st.dictionaries(st.sampled_from(["a", "b", "c", "1"]),
                             st.floats(-1e6, 1e6), min_size=1),
       score=st.floats(allow_nan=True, allow_infinity=True),
       task=st.sampled_from(["auto", "regression"]))
def test_a_dict_of_floats_reads_as_its_outputs_written_flat(inner, score, task):
    """What pandas.json_normalize makes of the dict is what it is read as, unless it is a
    map of class probabilities (values in [0, 1] summing to 1), tested above."""
    nested = {"score": score, "why": inner}
    flat = {"score": score, **{f"why.{key}": value for key, value in inner.items()}}
    tolerance = PROBABILITY_RANGE_TOLERANCE  # a probability a float's rounding past 0 or 1
    if len(inner) > 1 and task == "auto" and \
            all(-tolerance <= v <= 1 + tolerance for v in inner.values()) and \
            abs(sum(inner.values()) - 1) <= PROBABILITY_SUM_TOLERANCE:
        return  # a probability map
    _same(normalize(nested, task=task), normalize(flat, task=task))


def test_rows_of_labels_beside_their_maps():
    """A batch answered as rows (``[{"label", "probability": {...}}, ...]``, a JSON API's
    answer): each row's map is its class probabilities, as in the dict of columns."""
    rows = [{"label": "fraud", "probability": {"legit": 0.2, "fraud": 0.8}},
            {"label": "legit", "probability": {"legit": 0.6, "fraud": 0.4}}]
    scraper = _served(rows, calls=1)
    try:
        assert scraper.value("inferwatch_predicted_class_total", **{"class": "legit"}) == 1
        assert scraper.value("inferwatch_predicted_class_total", **{"class": "fraud"}) == 1
        assert scraper.value("inferwatch_prediction_confidence_sum") == 0.8 + 0.6
        assert scraper.value("inferwatch_prediction_sum", output="fraud") == 0.8 + 0.4
        assert scraper.value("inferwatch_batch_size_sum") == 2
        assert scraper.total("inferwatch_invalid_predictions_total") == 0
    finally:
        scraper.registry.close()


@pytest.mark.parametrize("request_ids", [True, False])
def test_a_list_of_one_labelled_map_per_call(request_ids):
    """A pipeline-like answer to one input, ``[{"label", "probability": {...}}]``, on the
    fast path (the drain stacks the calls' maps) and under request ids: every call counted
    unsupported before, and no outcome joined its label."""
    scraper = Scraper(drain_interval=3600)
    try:
        fn = inferwatch.instrument(lambda x: [PROBABILITY_MAP], name="m", version="1",
                                   registry=scraper.registry)
        for i in range(5):
            fn(i, **({"request_id": f"r-{i}"} if request_ids else {}))
        monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
        if request_ids:
            for i in range(5):
                monitor.record_outcome(f"r-{i}", "fraud" if i else "legit")
            assert scraper.value("inferwatch_outcomes_total", result="correct") == 4
            assert scraper.value("inferwatch_outcomes_total", result="incorrect") == 1
        assert scraper.value("inferwatch_predicted_class_total", **{"class": "fraud"}) == 5
        assert scraper.value("inferwatch_prediction_confidence_count") == 5
        assert scraper.value("inferwatch_prediction_sum", output="legit") == \
            sum([0.07] * 5)
        assert scraper.total("inferwatch_invalid_predictions_total") == 0
    finally:
        scraper.registry.close()


def test_rows_of_attributions_are_values_named_after_their_output():
    rows = [{"score": 0.5, "why": {"age": -0.2, "income": 0.1}},
            {"score": 0.7, "why": {"age": 0.3, "income": 0.0}}]
    prediction = normalize(rows)
    assert {name: v.tolist() for name, v in prediction.values.items()} == {
        "score": [0.5, 0.7], "why.age": [-0.2, 0.3], "why.income": [0.1, 0.0]}
    assert prediction.invalid == {}


def _row(kind: str, draw: st.DrawFn, classes: list[str]) -> dict:
    """One row dict: a label beside a map of its classes, attributions, or a dict of
    anything else (each kind the same in every row of a batch)."""
    weights = [draw(st.floats(0.01, 1.0)) for _ in classes]
    if kind == "map":
        total = sum(weights)
        return {"label": draw(st.sampled_from(classes)),
                "probability": {c: w / total for c, w in zip(classes, weights)}}
    if kind == "attributions":
        return {"score": draw(st.floats(-10, 10)),
                "why": {c: w * draw(st.sampled_from([-1.0, 1.0, 7.0]))
                        for c, w in zip(classes, weights)}}
    return {"label": draw(st.sampled_from(classes)), "meta": {"id": draw(st.integers())}}


@st.composite
def _rows(draw: st.DrawFn) -> list[dict]:
    classes = draw(_classes)
    kind = draw(st.sampled_from(["map", "attributions", "other"]))
    return [_row(kind, draw, classes) for _ in range(draw(st.integers(1, 5)))]


@settings(max_examples=200, deadline=None)
@given(rows=_rows(), task=st.sampled_from(["auto", "classification", "regression"]))
def test_rows_of_dicts_read_as_their_columns(rows, task):
    """A list of row dicts is read as the dict of its columns (``records_as_columns``),
    nested dicts included: a column of maps as class probabilities, a column of dicts of
    floats as one output per key, anything else counted once a dict."""
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    known = {"cat", "dog", "bird", "0", "é"}
    _same(normalize(rows, task=task, known_classes=known),
          normalize(columns, task=task, known_classes=known))


_map_key = st.sampled_from(["legit", "fraud", "x", 0, 1, 2, True])
_map_value = st.one_of(st.floats(0, 1), st.sampled_from([None, "0.5", np.float32(0.25), 1,
                                                          float("nan"), [0.5]]))


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.one_of(
    st.dictionaries(_map_key, _map_value, min_size=1, max_size=4),
    st.dictionaries(_map_key, _map_value, min_size=1, max_size=4).map(
        types.MappingProxyType),
    st.just({"fraud": 0.93, "legit": 0.07}), st.just({"legit": 0.07, "fraud": 0.93})),
    max_size=6))
def test_probability_map_rows_reads_plain_dicts_as_it_reads_each_row(rows):
    """Plain dicts are told apart and read at C speed; the same rows as other Mappings are
    looked at one by one: both readings agree, and on an accepted matrix each cell is its
    row's value under the first row's key."""
    from inferwatch.core.records import probability_map_rows

    found = probability_map_rows(rows)
    one_by_one = probability_map_rows([types.MappingProxyType(dict(row)) for row in rows])
    if found is None or one_by_one is None:
        assert found is None and one_by_one is None
        return
    (matrix, classes), (other, other_classes) = found, one_by_one
    assert np.array_equal(matrix, other, equal_nan=True) and classes == other_classes
    keys = list(rows[0])
    with np.errstate(invalid="ignore"):
        cells = np.array([[row[key] for key in keys] for row in rows], dtype=np.float64)
    assert np.array_equal(matrix, cells, equal_nan=True)
