"""Calls returning text class labels (a scikit-learn classifier fit on string labels
returns a numpy str array from ``predict``; pandas and polars give Python objects) are
drained as one batch, counted per distinct label, not normalised one call at a time: a
1-row call cost about 25 us of drain each. The counts, invalid reasons and task must be
exactly those of judging each row as ``admit_classes`` does."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry

KNOWN = ["cat", "dog", "c:1"]


class _Model:
    classes_ = np.array(KNOWN)

    def __init__(self, outputs):
        self.outputs = outputs

    def predict(self, index):
        return self.outputs[index]


def _counts(mon, name):
    return {k[0]: v for k, v in mon.state.counters.get(name, {}).items() if v}


def _expected(calls):
    classes, invalid = Counter(), Counter()
    for output in calls:
        for value in output.tolist():
            if isinstance(value, bytes):
                value = value.decode("utf-8", "backslashreplace")
            if value is None or (isinstance(value, float) and math.isnan(value)):
                invalid["nan"] += 1
            elif isinstance(value, str) and value in KNOWN:
                classes[value] += 1
            else:
                invalid["unsupported_type"] += 1
    return dict(classes), dict(invalid)


def _drained(outputs, order, task="auto"):
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(_Model(outputs), name="m", version="1",
                                      registry=registry, task=task)
        for index in order:
            assert model.predict(index) is outputs[index]
        mon = registry.monitor("m", "1")
        mon.drain()
        return mon
    finally:
        registry.close()


_TEXT = st.sampled_from([*KNOWN, "bird", "", "x" * 40, "ça"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_TEXT, min_size=1, max_size=4), min_size=1, max_size=6),
       st.lists(st.integers(0, 5), min_size=1, max_size=40), st.sampled_from(["U", "S", "O"]))
def test_text_labels_of_many_calls_are_counted_exactly(rows_per_output, order, kind):
    if kind == "S":
        rows_per_output = [[r for r in rows if r.isascii()] or ["cat"] for rows in rows_per_output]
    outputs = [np.array([r.encode() if kind == "S" else r for r in rows],
                        dtype=object if kind == "O" else None) for rows in rows_per_output]
    order = [i % len(outputs) for i in order]
    mon = _drained(outputs, order)
    classes, invalid = _expected([outputs[i] for i in order])
    assert _counts(mon, "inferwatch_predicted_class_total") == classes
    assert _counts(mon, "inferwatch_invalid_predictions_total") == invalid
    assert mon.state.info["task"] == "classification"


def test_missing_values_among_text_objects_count_as_nan():
    outputs = [np.array(["cat", None], dtype=object), np.array([float("nan"), "dog"],
                                                                dtype=object)]
    mon = _drained(outputs, [0, 1, 1])
    assert _counts(mon, "inferwatch_predicted_class_total") == {"cat": 1, "dog": 2}
    assert _counts(mon, "inferwatch_invalid_predictions_total") == {"nan": 3}


def test_objects_that_are_not_all_text_are_judged_call_by_call():
    outputs = [np.array(["cat", 1], dtype=object), np.array([True, "dog"], dtype=object)]
    mon = _drained(outputs, [0, 1])
    assert _counts(mon, "inferwatch_predicted_class_total") == {
        "cat": 1, "1": 1, "True": 1, "dog": 1}



def test_text_arrays_of_different_lengths_and_widths_join_whole():
    outputs = [np.array(["cat"]), np.array(["dog", "c:1", "cat"]), np.array(["dog"] * 2)]
    mon = _drained(outputs, [0, 1, 2, 1])
    assert _counts(mon, "inferwatch_predicted_class_total") == {"cat": 3, "dog": 4, "c:1": 2}
    sizes = mon.state.histograms["inferwatch_batch_size"][()]
    assert sizes.count == 4 and sizes.sum == 1 + 3 + 2 + 3


@pytest.mark.parametrize("max_classes", [1, 2])
def test_past_max_classes_the_classes_seen_first_keep_their_series(max_classes):
    registry = Registry(drain_interval=3600)
    try:
        outputs = [np.array(["dog"]), np.array(["cat"]), np.array(["c:1"])]
        model = inferwatch.instrument(_Model(outputs), name="m", version="1",
                                      registry=registry, max_classes=max_classes)
        for index in (0, 1, 2, 0):
            model.predict(index)
        mon = registry.monitor("m", "1")
        mon.drain()
        counted = _counts(mon, "inferwatch_predicted_class_total")
        assert ("dog" in counted) and sum(counted.values()) == 4
        if max_classes == 2:
            assert "cat" in counted
    finally:
        registry.close()




def test_with_a_reference_each_rows_label_still_reaches_prediction_drift(scraper):
    """Prediction drift bins each row's label against the reference's: a batch with a
    reference keeps the rows' labels rather than only their counts."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    labels = np.where(x[:, 0] > 0, "dog", "cat")
    reference = inferwatch.Reference.from_data(x, predictions=labels)
    outputs = [np.array(["cat"]), np.array(["dog"])]
    model = inferwatch.instrument(_Model(outputs), name="m", version="1", reference=reference,
                                  registry=scraper.registry)
    for i in range(200):
        model.predict(0 if i % 4 else 1)  # mostly "cat": the class mix moved
    psi = scraper.value("inferwatch_prediction_drift", model="m", output="value",
                        method="psi")
    assert psi > 0.1
    assert scraper.value("inferwatch_predicted_class_total", model="m", **{"class": "cat"}) \
        == 150


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=1, max_size=4), min_size=1, max_size=5),
       st.lists(st.integers(0, 4), min_size=1, max_size=30))
def test_bool_labels_of_many_calls_are_counted_exactly(rows_per_output, order):
    """An anomaly detector's flags: one stacked batch, each flag counted as its class."""
    outputs = [np.array(rows) for rows in rows_per_output]
    order = [i % len(outputs) for i in order]
    mon = _drained(outputs, order)
    flags = Counter(str(v) for i in order for v in outputs[i].tolist())
    assert _counts(mon, "inferwatch_predicted_class_total") == dict(flags)
    sizes = mon.state.histograms["inferwatch_batch_size"][()]
    assert sizes.count == len(order) and sizes.sum == sum(outputs[i].size for i in order)


class _ListModel:
    classes_ = np.array(KNOWN)

    def __init__(self, outputs):
        self.outputs = outputs

    def predict(self, index):
        return list(self.outputs[index])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3).flatmap(lambda width: st.lists(
    st.one_of(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64),
                       min_size=width, max_size=width),
              st.lists(_TEXT, min_size=width, max_size=width)), min_size=1, max_size=5)),
       st.lists(st.integers(0, 4), min_size=2, max_size=30))
def test_lists_of_floats_or_text_of_many_calls_are_read_as_each_call_alone(outputs, order):
    """A function returning ``[score]`` or ``["fraud"]`` per call: stacked when every list
    is of one length and one kind, read call by call otherwise; the same figures either
    way."""
    order = [i % len(outputs) for i in order]
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(_ListModel(outputs), name="m", version="1",
                                      registry=registry)
        for index in order:
            model.predict(index)
        mon = registry.monitor("m", "1")
        mon.drain()
        rows = [v for i in order for v in outputs[i]]
        texts = [v for v in rows if isinstance(v, str)]
        floats = [v for v in rows if isinstance(v, float)]
        classes, invalid = _expected([np.array(texts, dtype=object)])
        finite = [v for v in floats if math.isfinite(v)]
        if floats:
            invalid["nan"] = invalid.get("nan", 0) + sum(math.isnan(v) for v in floats)
            invalid["inf"] = sum(math.isinf(v) for v in floats)
        assert _counts(mon, "inferwatch_predicted_class_total") == classes
        assert _counts(mon, "inferwatch_invalid_predictions_total") == {
            k: v for k, v in invalid.items() if v}
        values = mon.state.histograms.get("inferwatch_prediction_value", {}).get(("value",))
        assert (values.count if values is not None else 0) == len(finite)
        sizes = mon.state.histograms["inferwatch_batch_size"][()]
        assert sizes.count == len(order) and sizes.sum == len(rows)
    finally:
        registry.close()


@st.composite
def _text_arrays(draw):
    """numpy text of a few common labels (a classifier's) beside rarer ones (ids), in any
    order: past 16 labels, or past a label too rare to compare row by row, the rest are
    sorted."""
    pool = draw(st.lists(st.text(max_size=3), min_size=1, max_size=40, unique=True))
    weights = draw(st.lists(st.integers(1, 200), min_size=len(pool), max_size=len(pool)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    rows = draw(st.integers(0, 600))
    picked = rng.choice(len(pool), size=rows, p=np.array(weights) / sum(weights))
    labels = np.array([pool[index] for index in picked] or [""], dtype=str)[:rows]
    if draw(st.booleans()):
        labels = np.char.encode(labels, "utf-8")
    return labels


@settings(max_examples=200, deadline=None)
@given(_text_arrays())
def test_text_counts_are_each_labels_rows_in_the_order_first_named(labels):
    """Counted a comparison per label, then a sort of the rest: what counting the rows'
    own text one by one gives, in the order a row-by-row count meets them; and each row's
    code names its own label."""
    from inferwatch.core.prediction_classes import text_codes_in_order, text_counts_in_order

    by_label = Counter(labels.tolist())
    assert text_counts_in_order(labels) == (list(by_label), list(by_label.values()))
    texts, codes = text_codes_in_order(labels)
    assert texts == list(by_label)
    assert [texts[code] for code in codes.tolist()] == labels.tolist()


@pytest.mark.parametrize("prefix", ["", "0:"])
def test_object_labels_that_are_all_classes_are_each_kept_in_order(prefix):
    """When every distinct label is an admitted class, no row is looked up one by one (the
    drain keeps them all): the same labels, in their order, as the row-by-row judgement."""
    from inferwatch.core.prediction_classes import admit_classes
    from inferwatch.core.predictions import Prediction

    labels = np.array(["dog", "cat", "dog", "c:1", "cat"] * 30, dtype=object)
    prediction = Prediction()
    kept = admit_classes(prediction, labels, set(KNOWN), prefix)
    assert kept.tolist() == [prefix + label for label in labels.tolist()]
    assert kept is not labels and kept.dtype == object
    assert prediction.invalid == {}
    mixed = Prediction()
    some = admit_classes(mixed, np.array(["dog", "bird", None, "cat"], dtype=object),
                         set(KNOWN), prefix)
    assert some.tolist() == [prefix + "dog", prefix + "cat"]
    assert mixed.invalid == {"unsupported_type": 1, "nan": 1}


_LABEL_OBJECTS = st.one_of(st.sampled_from(["cat", "dog", "c:1", ""]), st.integers(-3, 3),
                           st.just(["a", "list"]))


@settings(max_examples=80, deadline=None)
@example([["cat", 1, "1", True, "dog"] * 20])  # many rows, counted in C first: not all text
@example([[["a", "list"], "cat"] * 40])  # many rows, unhashable
@example([["dog", "cat"] * 40, ["c:1"] * 3])  # many rows of text, then a few
@given(st.lists(st.one_of(st.lists(_LABEL_OBJECTS, min_size=1, max_size=150),
                          st.lists(st.sampled_from(["cat", "dog", "c:1", ""]), min_size=1,
                                   max_size=150)), min_size=1, max_size=4))
def test_object_label_chunks_are_counted_by_their_text_in_the_order_first_seen(chunks):
    """``count_classes`` of object chunks, few rows or many (a chunk of many is counted in C
    before its types are looked at): each row under its text, keys in the order their rows
    first come, unhashable rows (a list) made text too."""
    from inferwatch.core.prediction_state import count_classes

    arrays = []
    for values in chunks:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        arrays.append(array)
    expected = Counter(str(value) for values in chunks for value in values)
    counted = count_classes(arrays)
    assert counted == dict(expected)
    assert list(counted) == list(expected)
