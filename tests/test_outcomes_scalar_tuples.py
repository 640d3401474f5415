"""A function returning one row of outputs as a tuple (``return label, score``) called with
``request_id=``: a drain of such records reads their results as one dict of columns, as the
plain path reads them (``PredictionBatch.add_dict_records``), with the series, the rows kept
for each id and the outcomes judged that reading each tuple alone makes."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fold_checks import watched
from inferwatch.core.prediction_batch import PredictionBatch
from test_outcomes_array_rows import _assert_same_samples
from test_outcomes_dict_records import _any_number, _finite, _judged, _label, _options, _score

# Each position of a row: a label, a label of another kind (text beside whole numbers, or
# whole numbers beside text: two label outputs, which are read call by call) or a float.
_ROWS = [("label", "score"), ("score", "label"), ("label", "score", "margin"),
         ("score", "margin"), ("label", "label"), ("label", "other label", "score")]


@st.composite
def _drain(draw: st.DrawFn) -> list[tuple[object, str | None]]:
    """The calls of one drain, (result, request id or None) each: tuples of one row shape;
    in some drains with a NaN or an infinity among the scores, in some with one call of
    another length or another label kind, in some with an id given twice."""
    row = draw(st.sampled_from(_ROWS))
    scores = draw(st.sampled_from(["float", "np.float64", "np.float32"]))
    labels = draw(st.sampled_from(["text", "int", "np.int64", "bool"]))
    number = _any_number if draw(st.integers(0, 2)) == 0 else _finite
    other = "int" if labels == "text" else "text"

    def value(part: str) -> object:
        if part == "label":
            return _label(labels, draw)
        return _label(other, draw) if part == "other label" else _score(scores, draw(number))

    results = [tuple(map(value, row)) for _ in range(draw(st.integers(2, 30)))]
    odd = draw(st.sampled_from(["none", "none", "none", "shorter", "another label", "list"]))
    if odd != "none":
        at = draw(st.integers(0, len(results) - 1))
        if odd == "shorter":
            results[at] = results[at][:1]
        elif odd == "another label":
            results[at] = tuple(("cat" if labels != "text" else 1) if part == "label" else value
                                for part, value in zip(row, results[at]))
        else:
            results[at] = list(results[at])
    ids = [f"r-{draw(st.integers(0, 40))}" if draw(st.booleans()) else
           f"u-{number}" for number in range(len(results))]
    return [(result, None if draw(st.integers(0, 5)) == 0 else request_id)
            for result, request_id in zip(results, ids)]


def _truth(result: object) -> object:
    """An outcome for `result`: its first value as text (a label), or near it (a score)."""
    value = result[0]
    return value + 0.25 if isinstance(value, (float, np.floating)) else str(value)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(drains=st.lists(_drain(), min_size=1, max_size=3), options=_options,
       max_classes=st.sampled_from([2, 50]), cache_bytes=st.sampled_from([2048, 2**20]))
def test_tuple_records_join_as_each_tuple_read_alone(monkeypatch, drains, options,
                                                     max_classes, cache_bytes):
    rows = _judged(drains, options, max_classes, cache_bytes, _truth)
    with monkeypatch.context() as patched:
        patched.setattr(PredictionBatch, "add_dict_records", lambda self, results: None)
        alone = _judged(drains, options, max_classes, cache_bytes, _truth)
    _assert_same_samples(rows[0], alone[0])
    assert rows[1] == alone[1]


def test_label_and_score_tuples_take_the_column_fold(monkeypatch):
    """The fold above is the one such a drain takes: label-and-score tuples are read as
    columns, each call's label joined; a NaN score, or a tuple of another length among
    them, sends the drain to the general path."""
    taken = watched(monkeypatch, PredictionBatch, "add_dict_records",
                    lambda rows: rows is not None)
    series, entries = _judged([[(("fraud", 0.9), "r-0"), (("legit", 0.7), "r-1"),
                                (("fraud", 0.8), None)],
                               [(("fraud", 0.9), "r-2"), (("fraud", np.nan), "r-3")],
                               [(("fraud", 0.9), "r-4"), (("fraud",), "r-5")]],
                              {"classes": ["legit", "fraud"]}, 50, 2**20, _truth)
    assert taken == [True, False, False]
    assert entries[0]["r-1"][:2] == ("('legit',)", None)
    assert entries[1]["r-3"][:2] == ("('fraud',)", None)
    correct = sum(value for key, value in series.items()
                  if key[0] == "inferwatch_outcomes_total" and ("result", "correct") in key[1])
    assert correct == 6
