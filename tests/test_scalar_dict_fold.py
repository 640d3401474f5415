"""Calls returning a dict of one row of named outputs, text or float
(``{"label": "fraud", "score": 0.93}``), drained as one dict of columns
(``StackedResults._add_scalar_dicts``): the state the drain leaves when it reads each call
alone, under every task and class declaration that changes how text is read."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.core.registry import Registry
from inferwatch.core.stacked_results import StackedResults
from inferwatch.quality.reference import Reference
from test_float_fold import _same

NOW = 1_700_000_000.0
_LABELS = ["cat", "dog", "bird", "", "é", "__other__", "0", "1", "x" * 300, "a\nb\x00", " cat"]

_text = st.sampled_from(_LABELS)
_score = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def _chunk(draw: st.DrawFn) -> list[tuple[float, object]]:
    """Calls of one drain, each a dict of the same outputs; in some chunks one call is
    another shape (a key missing, an int label, a None score), which no call of its
    chunk folds as columns."""
    names = draw(st.sampled_from([("label", "score"), ("score", "label"), ("label",),
                                  ("label", "reason", "score")]))
    calls = []
    for _ in range(draw(st.integers(2, 40))):
        row = {name: draw(_score) if name == "score" else draw(_text) for name in names}
        calls.append((draw(st.floats(0.0, 5.0)), row))
    odd = draw(st.sampled_from(["none", "missing key", "int label", "None score"]))
    if odd != "none":
        row = dict(calls[0][1])
        if odd == "missing key":
            row.pop(names[0])
        elif odd == "int label":
            row["label"] = 1
        else:
            row["score"] = None
        calls[draw(st.integers(0, len(calls) - 1))] = (0.1, row)
    return calls


_options = st.fixed_dictionaries({
    "task": st.sampled_from(["auto", "regression", "classification"]),
    "max_classes": st.sampled_from([2, 50]),
})
_classes = st.sampled_from([None, ["cat", "dog"], ["cat", "dog", "bird", "é", "0", "1"]])


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
        for step, chunk in enumerate(chunks):
            for duration, value in chunk:
                monitor.record_call(duration, value)
            monitor.drain(now=NOW + step)
        data = monitor.state.to_dict()
        data.pop("loaded_at")
        return data
    finally:
        registry.close()


def _each_call_alone(self: StackedResults, results: list) -> bool:
    return False


@settings(max_examples=150, deadline=None)
@given(chunks=st.lists(_chunk(), min_size=1, max_size=3), options=_options, classes=_classes,
       declared=st.booleans(), reference=st.booleans())
def test_dicts_of_text_and_floats_fold_as_each_call_alone(chunks, options, classes,
                                                          declared, reference):
    columns = _state_of(chunks, options, classes, declared, reference)
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(StackedResults, "_add_scalar_dicts", _each_call_alone)
        alone = _state_of(chunks, options, classes, declared, reference)
    assert _same(columns, alone), (columns, alone)


def test_a_drain_of_label_and_score_dicts_reads_them_as_columns(monkeypatch):
    """The fold above is the one a drain of such dicts takes (a test of the fold that
    never ran it would prove nothing)."""
    taken: list[bool] = []
    fold = StackedResults._add_scalar_dicts

    def watched(self: StackedResults, results: list) -> bool:
        taken.append(fold(self, results))
        return taken[-1]

    monkeypatch.setattr(StackedResults, "_add_scalar_dicts", watched)
    state = _state_of([[(0.1, {"label": "cat", "score": 0.9}),
                        (0.1, {"label": "dog", "score": 0.2})]],
                      {"task": "classification"}, ["cat", "dog"], True)
    assert taken == [True]
    classes = dict((tuple(labels), count) for labels, count in
                   state["counters"]["inferwatch_predicted_class_total"])
    assert classes == {("cat",): 1.0, ("dog",): 1.0}


def test_two_text_outputs_admit_their_classes_call_by_call(monkeypatch):
    """Two text outputs and a class cap of 2: the calls read one at a time admit
    `label:cat` and `reason:cat` (the first call's), and fold `label:dog` into
    ``__other__``; columns would admit `label:dog` first. Such dicts are read call by call."""
    chunks = [[(0.0, {"label": "cat", "reason": "cat", "score": 0.0}),
               (0.0, {"label": "dog", "reason": "cat", "score": 0.0})]]
    options = {"task": "auto", "max_classes": 2}
    with monkeypatch.context() as patched:
        patched.setattr(StackedResults, "_add_scalar_dicts", _each_call_alone)
        alone = _state_of(chunks, options, ["cat", "dog"], False)
    assert _same(_state_of(chunks, options, ["cat", "dog"], False), alone)
    classes = dict((tuple(labels), count) for labels, count in
                   alone["counters"]["inferwatch_predicted_class_total"])
    assert classes == {("label:cat",): 1.0, ("reason:cat",): 2.0, ("__other__",): 1.0}
