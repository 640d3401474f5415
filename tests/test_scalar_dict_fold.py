"""Calls returning a dict of one row of named outputs, labels or floats
(``{"label": "fraud", "score": 0.93}``, alone or in a list of one, each value alone or in
a list of one) or a tuple of them (``return label, score``), drained as one dict of
columns (``StackedResults._add_scalar_dicts``, ``PredictionBatch._add_scalar_rows``): the
state the drain leaves when it reads each call alone, under every task and class
declaration that changes how labels are read."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.core.prediction_batch import PredictionBatch
from inferwatch.core.registry import Registry
from inferwatch.core.stacked_results import StackedResults
from inferwatch.quality.reference import Reference
from test_float_fold import _same, drained_state, some_in_lists_of_one

_LABELS = ["cat", "dog", "bird", "", "é", "__other__", "0", "1", "x" * 300, "a\nb\x00", " cat"]

_text = st.sampled_from(_LABELS)
_number = st.floats(allow_nan=True, allow_infinity=True, width=64)
_scores = st.sampled_from(["float", "np.float64", "np.float32", "mixed"])
_labels = st.sampled_from(["text", "int", "np.int64", "bool"])
_whole = st.sampled_from([0, 1, 2, 7, 65_535, 65_536, 2**40, -3])


def _score(kind: str, draw: st.DrawFn) -> object:
    value = draw(_number)
    if kind == "mixed":
        kind = draw(st.sampled_from(["float", "np.float64", "np.float32"]))
    with np.errstate(over="ignore"):  # a float64 past float32's range: an infinity
        return {"float": float, "np.float64": np.float64, "np.float32": np.float32}[kind](value)


def _label(kind: str, draw: st.DrawFn) -> object:
    if kind == "text":
        return draw(_text)
    if kind == "bool":
        return draw(st.booleans())
    return {"int": int, "np.int64": np.int64}[kind](draw(_whole))


@st.composite
def _chunk(draw: st.DrawFn) -> list[tuple[float, object]]:
    """Calls of one drain, each a dict of the same outputs; in some chunks one call is
    another shape (a key missing, a label of another kind, a None score), which no call of its
    chunk folds as columns."""
    names = draw(st.sampled_from([("label", "score"), ("score", "label"), ("label",),
                                  ("label", "reason", "score"), ("score", "margin")]))
    scores, labels = draw(_scores), draw(_labels)
    calls = []
    for _ in range(draw(st.integers(2, 40))):
        row = {name: _score(scores, draw) if name in ("score", "margin") else
               _label(labels, draw) for name in names}
        calls.append((draw(st.floats(0.0, 5.0)), row))
    if draw(st.booleans()):  # ``return label, score``: a tuple of the same values
        return [(duration, tuple(row.values())) for duration, row in calls]
    # A serving API's answer holds each output as a list of one value; in some chunks
    # only some calls' outputs are.
    listed = draw(st.sampled_from(["none", "all", "some"]))
    if listed != "none":
        calls = [(duration, {name: [value] if listed == "all" or draw(st.booleans()) else
                             value for name, value in row.items()})
                 for duration, row in calls]
    odd = draw(st.sampled_from(["none", "missing key", "another label", "None score"]))
    if odd != "none":
        row = dict(calls[0][1])
        if odd == "missing key":
            row.pop(names[0])
        elif odd == "another label":
            row["label"] = 1 if labels == "text" else "cat"
        else:
            row["score"] = None
        calls[draw(st.integers(0, len(calls) - 1))] = (0.1, row)
    # A Hugging Face pipeline answers one text with a list of one row dict; in some chunks
    # only some calls are so wrapped, which the drain reads call by call.
    return some_in_lists_of_one(draw, calls)


_options = st.fixed_dictionaries({
    "task": st.sampled_from(["auto", "regression", "classification"]),
    "max_classes": st.sampled_from([2, 50]),
})
_classes = st.sampled_from([None, ["cat", "dog"], ["cat", "dog", "bird", "é", "0", "1"],
                           [0, 1, 2], [2**40, 7]])


def _reference() -> Reference:
    """A profile of two features and of the outputs `label` and `score`: prediction drift
    reads each row's label and value."""
    rng = np.random.default_rng(0)
    return Reference.from_data(rng.normal(size=(200, 2)), predictions={
        "label": np.array(_LABELS[:3])[rng.integers(0, 3, 200)], "score": rng.random(200)})


def _state_of(chunks: list, options: dict, classes: list | None, declared: bool,
              reference: bool = False) -> dict:
    """The state (its loading time left out) after draining `chunks`, one drain each; the
    classes given as the model's own (`classes_`) or declared (`classes=`), and the
    outputs profiled by a reference or not."""
    registry = Registry(drain_interval=3600)
    try:
        if declared and classes is not None:
            options = {**options, "classes": classes}
        if reference:
            options = {**options, "reference": _reference()}
        monitor = registry.monitor("m", "1").configure(**options)
        if not declared:
            monitor._class_names = None if classes is None else (lambda: classes)
        return drained_state(monitor, chunks)
    finally:
        registry.close()


def _each_call_alone(self: StackedResults, results: list, *listed: bool) -> bool:
    return False


def _watched_fold(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the dicts' column fold took each drain's dicts, as the drains go."""
    taken: list[bool] = []
    fold = StackedResults._add_scalar_dicts

    def watched(self: StackedResults, results: list, *listed: bool) -> bool:
        taken.append(fold(self, results, *listed))
        return taken[-1]

    monkeypatch.setattr(StackedResults, "_add_scalar_dicts", watched)
    return taken


def _alone(patched: pytest.MonkeyPatch) -> None:
    """Dicts, lists of one dict and tuples of one row read call by call."""
    patched.setattr(StackedResults, "_add_scalar_dicts", _each_call_alone)
    patched.setattr(StackedResults, "_add_lists_of_one_dict", _each_call_alone)
    patched.setattr(PredictionBatch, "_add_scalar_rows", _each_call_alone)


@settings(max_examples=150, deadline=None)
@given(chunks=st.lists(_chunk(), min_size=1, max_size=3), options=_options, classes=_classes,
       declared=st.booleans(), reference=st.booleans())
def test_dicts_of_text_and_floats_fold_as_each_call_alone(chunks, options, classes,
                                                          declared, reference):
    columns = _state_of(chunks, options, classes, declared, reference)
    with pytest.MonkeyPatch.context() as patched:
        _alone(patched)
        alone = _state_of(chunks, options, classes, declared, reference)
    assert _same(columns, alone), (columns, alone)


@st.composite
def rows_chunk(draw: st.DrawFn) -> list[tuple[float, object]]:
    """Calls returning a serving API's answer to one instance, each output a list of one
    row of floats (``{"predictions": [[0.07, 0.93]]}``), beside a label in some chunks; in
    some chunks one row of another width, or of another kind of number, or a NaN."""
    width = draw(st.integers(1, 4))
    labelled = draw(st.booleans())
    calls = []
    for _ in range(draw(st.integers(2, 25))):
        row = [draw(st.floats(-1e6, 1e6)) for _ in range(width)]
        calls.append((0.1, {"label": draw(_text), "predictions": [row]} if labelled else
                      {"predictions": [row]}))
    odd = draw(st.sampled_from(["none", "none", "width", "int", "nan", "np.float64"]))
    if odd != "none":
        at = draw(st.integers(0, len(calls) - 1))
        row = list(calls[at][1]["predictions"][0])
        if odd == "width":
            row.append(0.5)
        else:
            row[0] = {"int": 1, "nan": float("nan"), "np.float64": np.float64(0.5)}[odd]
        calls[at] = (0.1, {**calls[at][1], "predictions": [row]})
    return calls


@settings(max_examples=100, deadline=None)
@given(chunks=st.lists(rows_chunk(), min_size=1, max_size=3), options=_options,
       classes=_classes, declared=st.booleans())
def test_rows_of_one_instance_fold_as_each_call_alone(chunks, options, classes, declared):
    columns = _state_of(chunks, options, classes, declared)
    with pytest.MonkeyPatch.context() as patched:
        _alone(patched)
        alone = _state_of(chunks, options, classes, declared)
    assert _same(columns, alone), (columns, alone)


def test_rows_of_one_instance_are_read_as_one_matrix(monkeypatch):
    """The fold above is the one such a drain takes; a row of another width sends the
    drain call by call."""
    taken = _watched_fold(monkeypatch)
    state = _state_of([[(0.1, {"predictions": [[0.1, 0.9]]}),
                        (0.1, {"predictions": [[0.4, 0.6]]})],
                       [(0.1, {"predictions": [[0.1, 0.9]]}),
                        (0.1, {"predictions": [[0.4, 0.6, 0.0]]})]], {"task": "auto"}, None,
                      False)
    assert taken == [True, False]
    assert state["summaries"]["inferwatch_prediction"][0][1]["count"] == 2 + 2 + 2 + 3


def probability_map(draw: st.DrawFn, classes: list, mode: str) -> dict:
    """A map of `classes` to probabilities; by `mode`, summing to 1 (``sums``), not
    (``raw``), with a NaN (``nan``), or in another key order (``reordered``)."""
    weights = [draw(st.floats(0.01, 1.0)) for _ in classes]
    total = sum(weights)
    row = {name: weight if mode == "raw" else weight / total
           for name, weight in zip(classes, weights)}
    if mode == "nan":
        row[classes[0]] = float("nan")
    if mode == "reordered":
        row = dict(reversed(list(row.items())))
    return row


@st.composite
def map_chunk(draw: st.DrawFn) -> list[tuple[float, object]]:
    """Calls returning a label beside its map of class probabilities (or the map alone);
    in some chunks one map differs from the others (not summing to 1, a NaN, another key
    order), which no call of its chunk folds as columns."""
    classes = draw(st.sampled_from([["cat", "dog"], ["cat", "dog", "bird"], [0, 1, 2]]))
    alone = draw(st.booleans())
    calls = []
    for _ in range(draw(st.integers(2, 30))):
        label = classes[draw(st.integers(0, len(classes) - 1))]
        row = probability_map(draw, classes, "sums")
        calls.append((0.1, {"probability": row} if alone else
                      {"label": label, "probability": row}))
    odd = draw(st.sampled_from(["sums", "sums", "raw", "nan", "reordered"]))
    if odd != "sums":
        at = draw(st.integers(0, len(calls) - 1))
        calls[at] = (0.1, {**calls[at][1], "probability": probability_map(draw, classes, odd)})
    return some_in_lists_of_one(draw, calls)


@settings(max_examples=100, deadline=None)
@given(chunks=st.lists(map_chunk(), min_size=1, max_size=3), options=_options,
       classes=_classes, declared=st.booleans())
def test_labels_beside_probability_maps_fold_as_each_call_alone(chunks, options, classes,
                                                                declared):
    columns = _state_of(chunks, options, classes, declared)
    with pytest.MonkeyPatch.context() as patched:
        _alone(patched)
        alone = _state_of(chunks, options, classes, declared)
    assert _same(columns, alone), (columns, alone)


def test_maps_in_another_key_order_are_read_call_by_call():
    """A tie goes to the first class of each map's own order, as ``argmax`` reads a row:
    read as one matrix in the first map's order, the second call would predict ``cat``."""
    chunks = [[(0.1, {"probability": {"cat": 0.5, "dog": 0.5}}),
               (0.1, {"probability": {"dog": 0.5, "cat": 0.5}})]]
    state = _state_of(chunks, {"task": "auto"}, None, False)
    with pytest.MonkeyPatch.context() as patched:
        _alone(patched)
        alone = _state_of(chunks, {"task": "auto"}, None, False)
    assert _same(state, alone)
    classes = dict((tuple(labels), count) for labels, count in
                   state["counters"]["inferwatch_predicted_class_total"])
    assert classes == {("cat",): 1.0, ("dog",): 1.0}


@pytest.mark.parametrize("in_a_list", [False, True])
def test_a_drain_of_labels_beside_probability_maps_reads_them_as_columns(monkeypatch,
                                                                          in_a_list):
    taken = _watched_fold(monkeypatch)
    rows = [{"label": "fraud", "probability": {"legit": 0.2, "fraud": 0.8}},
            {"label": "legit", "probability": {"legit": 0.7, "fraud": 0.3}}]
    state = _state_of([[(0.1, [row] if in_a_list else row) for row in rows]],
                      {"task": "auto"}, None, False)
    assert taken == [True]
    classes = dict((tuple(labels), count) for labels, count in
                   state["counters"]["inferwatch_predicted_class_total"])
    assert classes == {("fraud",): 1.0, ("legit",): 1.0}


@pytest.mark.parametrize(("cat", "dog", "score"), [
    ("cat", "dog", 0.9), ("cat", "dog", np.float64(0.9)), ("cat", "dog", np.float32(0.9)),
    (3, 5, 0.9), (np.int64(3), np.int64(5), np.float64(0.9))])
@pytest.mark.parametrize("in_a_list", [False, True])
def test_a_drain_of_label_and_score_dicts_reads_them_as_columns(monkeypatch, cat, dog,
                                                                score, in_a_list):
    """The fold above is the one a drain of such dicts (or of lists of one such dict)
    takes, for each kind of label and score (a test of the fold that never ran it would
    prove nothing)."""
    taken = _watched_fold(monkeypatch)
    rows = [{"label": cat, "score": score}, {"label": dog, "score": score}]
    state = _state_of([[(0.1, [row] if in_a_list else row) for row in rows]],
                      {"task": "classification"}, [str(cat), str(dog)], True)
    assert taken == [True]
    classes = dict((tuple(labels), count) for labels, count in
                   state["counters"]["inferwatch_predicted_class_total"])
    assert classes == {(str(cat),): 1.0, (str(dog),): 1.0}


def test_outputs_held_as_lists_of_one_value_are_read_as_columns(monkeypatch):
    """A serving API's answer, each output a list of one value (``{"labels": ["cat"],
    "scores": [0.9]}``): read as columns, a bool label among them too."""
    taken = _watched_fold(monkeypatch)
    state = _state_of([[(0.1, {"labels": ["cat"], "scores": [0.9]}),
                        (0.1, {"labels": ["dog"], "scores": [0.2]})],
                       [(0.1, {"fraud": True, "score": [0.9]}),
                        (0.1, {"fraud": False, "score": [0.1]})]],
                      {"task": "classification"}, ["cat", "dog"], True)
    assert taken == [True, True]
    classes = dict((tuple(labels), count) for labels, count in
                   state["counters"]["inferwatch_predicted_class_total"])
    assert classes["cat",] == 1.0 and classes["dog",] == 1.0
    assert sum(classes.values()) == 4.0


@pytest.mark.parametrize(("rows", "first"), [
    ([{"label": "cat", "reason": "cat", "score": 0.0},
      {"label": "dog", "reason": "cat", "score": 0.0}], ("label:cat", "reason:cat")),
    ([("cat", "cat", 0.0), ("dog", "cat", 0.0)], ("0:cat", "1:cat"))])
def test_two_label_outputs_admit_their_classes_call_by_call(monkeypatch, rows, first):
    """Two label outputs (in a dict, or ``return label, reason, score``) and a class cap of
    2: the calls read one at a time admit the first call's two labels and fold the second
    call's new one into ``__other__``; columns would admit that one first. Such results are
    read call by call."""
    chunks = [[(0.0, row) for row in rows]]
    options = {"task": "auto", "max_classes": 2}
    with monkeypatch.context() as patched:
        _alone(patched)
        alone = _state_of(chunks, options, ["cat", "dog"], False)
    assert _same(_state_of(chunks, options, ["cat", "dog"], False), alone)
    classes = dict((tuple(labels), count) for labels, count in
                   alone["counters"]["inferwatch_predicted_class_total"])
    assert classes == {(first[0],): 1.0, (first[1],): 2.0, ("__other__",): 1.0}
