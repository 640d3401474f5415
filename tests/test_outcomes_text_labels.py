"""A function returning one text label (``"fraud"``, numpy's ``clf.predict(x)[0]``) or a
list of them, called with ``request_id=``: its drain's labels are read as arrays of text
by the one-array fold (``record_arrays._text_labels_as_rows``), with the series, the rows
kept for each id and the outcomes judged that the general path, reading each label
alone, makes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fold_checks import as_the_general_path, watched
from inferwatch.core import drain_folds, record_arrays
from test_outcomes_array_rows import judged_after_drain

_LABELS = st.sampled_from(["cat", "dog", "owl", "", "é", "a\x00", "nan", "0"])


@st.composite
def _calls(draw) -> list[tuple[object, str | None]]:
    """Calls of a drain, most under a request id: labels as ``str`` or ``np.str_``, or
    lists of them (in some drains an empty list, or a number, among them)."""
    listed = draw(st.booleans())
    results = []
    for _ in range(draw(st.integers(1, 20))):
        kind = draw(st.sampled_from([str, str, np.str_]))
        if listed:
            results.append([kind(label) for label in
                            draw(st.lists(_LABELS, min_size=1, max_size=3))])
        else:
            results.append(kind(draw(_LABELS)))
    odd = draw(st.sampled_from(["none", "none", "none", "empty", "number"]))
    at = draw(st.integers(0, len(results) - 1))
    if odd == "empty" and listed:
        results[at] = []
    elif odd == "number":
        results[at] = [1.5] if listed else 1.5
    return [(result, f"r-{number}" if draw(st.integers(0, 4)) else None)
            for number, result in enumerate(results)]


def _judged(calls, options: dict, cache_bytes: int) -> tuple[dict, list]:
    """The series and entries after `calls` through a function giving its input back,
    instrumented with `options` (text is a label only where ``classes=`` declares the
    model a classifier), each judged by its first label."""
    return judged_after_drain(calls, None, options.get("task", "auto"), cache_bytes, _first,
                              {"classes": options["classes"]} if "classes" in options else {})


def _first(result) -> object:
    first = result[0] if isinstance(result, list) and result else result
    return str(first) if not isinstance(first, list) else "cat"


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=_calls(), options=st.fixed_dictionaries(
    {}, optional={"task": st.sampled_from(["classification", "regression"]),
                  "classes": st.sampled_from([["cat", "dog"],
                                              ["cat", "dog", "owl", "", "é", "a\x00"]])}),
       cache_bytes=st.sampled_from([2048, 2**20]))
def test_text_label_records_join_as_each_label_read_alone(monkeypatch, calls, options,
                                                           cache_bytes):
    as_the_general_path(monkeypatch, record_arrays, "_text_labels_as_rows",
                        lambda: _judged(calls, options, cache_bytes))


@pytest.mark.parametrize("listed", [False, True])
def test_text_labels_take_the_one_array_fold(monkeypatch, listed):
    """The fold above is the one such a drain takes (a test of a fold that never ran would
    prove nothing); a label ending in NUL sends the drain to the general path."""
    def result(label: str) -> object:
        return [label] if listed else label

    taken = watched(monkeypatch, drain_folds, "_fold_plain_arrays")
    # "dog\x00" is no class of the model's: its outcome is not judged correct.
    for calls, correct in (([(result("cat"), "r-0"), (result(np.str_("dog")), "r-1")], 2),
                           ([(result("cat"), "r-0"), (result("dog\x00"), "r-1")], 1)):
        series, entries = _judged(calls, {"classes": ["cat", "dog"]}, 2**20)
        assert sorted(entries) == ["r-0", "r-1"]
        assert sum(value for key, value in series.items()
                   if key[0] == "inferwatch_outcomes_total" and
                   ("result", "correct") in key[1]) == correct
    assert taken == [True, False]


def test_a_label_whose_utf8_form_was_kept_is_sized_as_a_fresh_one(monkeypatch):
    """``sys.getsizeof`` of a non-ASCII str grows once something kept its UTF-8 form (here
    pickle; "é" is a singleton the whole process shares): the folded rows, made fresh, and
    the general path's, the label as called, must still hold the same bytes in the cache."""
    pickle.dumps(chr(0xE9))
    calls = [("cat", None)] * 3 + [(np.str_("é"), "r-3"), ("é", "r-4")]
    options = {"classes": ["cat", "é"]}
    as_the_general_path(monkeypatch, record_arrays, "_text_labels_as_rows",
                        lambda: _judged(calls, options, 2048))


@st.composite
def _object_arrays(draw) -> list[tuple[object, str | None]]:
    """Calls of a drain, most under a request id: 1-D numpy arrays of Python objects, every
    row text (a scikit-learn classifier fit on a pandas column of labels predicts these);
    in some drains one with a missing row or a number, a 2-D one, an empty one, or one
    past the rows this reader takes."""
    results = [np.array(draw(st.lists(_LABELS, min_size=1, max_size=4)), dtype=object)
               for _ in range(draw(st.integers(1, 20)))]
    odd = draw(st.sampled_from(["none", "none", "missing", "missing", "number", "2-D",
                                "empty", "long"]))
    at = draw(st.integers(0, len(results) - 1))
    if odd in ("missing", "number"):
        results[at] = np.array(["cat", None if odd == "missing" else 1.5], dtype=object)
    elif odd == "2-D":
        results[at] = np.array([["cat"], ["dog"]], dtype=object)
    elif odd == "empty":
        results[at] = np.array([], dtype=object)
    elif odd == "long":
        results[at] = np.array(["cat", "dog"] * 2049, dtype=object)
    return [(result, f"r-{number}" if draw(st.integers(0, 4)) else None)
            for number, result in enumerate(results)]


def _first_row(result) -> object:
    return str(result.ravel()[0]) if result.size else "cat"


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=_object_arrays(), task=st.sampled_from(["auto", "classification", "regression"]),
       classes=st.sampled_from([None, ["cat", "dog"], ["cat", "dog", "owl", "", "é", "a\x00"]]),
       cache_bytes=st.sampled_from([2048, 2**20]))
def test_object_text_arrays_join_as_each_array_read_alone(monkeypatch, calls, task, classes,
                                                          cache_bytes):
    def judged() -> tuple[dict, list]:
        return judged_after_drain(calls, None, task, cache_bytes, _first_row,
                                  {} if classes is None else {"classes": classes})

    as_the_general_path(monkeypatch, record_arrays, "_object_text_as_arrays", judged)


def test_object_text_arrays_take_the_one_array_fold(monkeypatch):
    """The fold above is the one such a drain takes; a missing row, or a label ending in
    NUL, sends the drain to the general path, whose joins are the same (an object array
    keeps "dog\x00" as its row: its outcome of the same text is judged correct)."""
    taken = watched(monkeypatch, drain_folds, "_fold_plain_arrays")

    def labels(*texts: object) -> np.ndarray:
        return np.array(texts, dtype=object)

    for calls, correct in (([(labels("cat"), "r-0"), (labels("dog", "cat"), "r-1")], 2),
                           ([(labels("cat"), "r-0"), (labels("dog\x00"), "r-1")], 2),
                           ([(labels("cat"), "r-0"), (labels(None), "r-1")], 1)):
        series, entries = judged_after_drain(calls, None, "auto", 2**20, _first_row,
                                             {"classes": ["cat", "dog"]})
        assert sorted(entries) == ["r-0", "r-1"]
        assert sum(value for key, value in series.items()
                   if key[0] == "inferwatch_outcomes_total" and
                   ("result", "correct") in key[1]) == correct
    assert taken == [True, False, False]
