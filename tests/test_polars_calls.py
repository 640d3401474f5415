"""Calls that each return a polars Series of a dtype that is no plain array (an Enum,
nulls among the values) or a polars DataFrame are drained as one batch: read one call at a
time they cost about 30 us (Series) and 14 us (frames) of drain each. What is recorded
must be exactly what reading each call alone records, on the plain path and the request
path alike."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fold_checks import as_the_general_path, watched
from inferwatch.core.options import Settings
from inferwatch.core.prediction_batch import PredictionBatch
from inferwatch.core.stacked_results import StackedResults

pl = pytest.importorskip("polars")

from test_outcomes_array_rows import judged_after_drain  # noqa: E402
from test_pandas_calls import _figures, _records_both_ways, drained_every_way  # noqa: E402

CLASSES = ["legit", "fraud", "review"]


def _call_by_call(outputs, order, model_classes=None, **options):
    """The same drain with every call read alone (the general path)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StackedResults, "_add_polars_series", lambda self, results: False)
        patch.setattr(StackedResults, "_add_polars_frames", lambda self, results: False)
        return _figures(outputs, order, model_classes, **options)


_SERIES = {
    "enum": (st.one_of(st.none(), st.sampled_from(CLASSES)), pl.Enum(CLASSES)),
    "float": (st.one_of(st.none(), st.floats(-2, 2), st.sampled_from([0.0, 1.0])), pl.Float64),
    "int": (st.one_of(st.none(), st.integers(-3, 3)), pl.Int64),
    "bool": (st.one_of(st.none(), st.booleans()), pl.Boolean),
}


@st.composite
def _series_calls(draw):
    """Calls of one dtype, nulls among them; now and then one of another dtype."""
    kind = draw(st.sampled_from(sorted(_SERIES)))
    values, dtype = _SERIES[kind]
    calls = [pl.Series(draw(st.lists(values, min_size=1, max_size=3)), dtype=dtype)
             for _ in range(draw(st.integers(1, 5)))]
    if draw(st.booleans()):
        other = "int" if kind != "int" else "float"
        values, dtype = _SERIES[other]
        calls.append(pl.Series(draw(st.lists(values, min_size=1, max_size=3)), dtype=dtype))
    return calls


@settings(max_examples=80, deadline=None)
@given(_series_calls(), st.lists(st.integers(0, 5), min_size=2, max_size=30),
       st.sampled_from(["auto", "classification", "regression"]),
       st.sampled_from([None, [0, 1], [0.0, 1.0], CLASSES]))
@example([pl.Series([1.0, None]), pl.Series([0.5])], [0, 1], "auto", [0.0, 1.0])
@example([pl.Series(["fraud", None], dtype=pl.Enum(CLASSES))], [0, 0], "auto", None)
def test_polars_series_of_many_calls_record_what_each_call_read_alone_records(
        outputs, order, task, classes):
    order = [i % len(outputs) for i in order]
    together = drained_every_way(outputs, order, _call_by_call, classes, task=task)
    rows = [value for i in order for value in outputs[i].to_list()]
    assert together["sizes"][:2] == (len(order), len(rows))
    assert together["invalid"].get(("nan",), 0) == sum(value is None for value in rows)
    if outputs[0].dtype == pl.Enum(CLASSES) and len({o.dtype for o in outputs}) == 1:
        assert dict(together["classes"]) == dict(Counter(v for v in rows if v is not None))


@st.composite
def _frames(draw):
    names = draw(st.lists(st.sampled_from(["label", "score", "count"]), min_size=1,
                          max_size=3, unique=True))
    columns = {"label": (st.one_of(st.none(), st.sampled_from(CLASSES)), pl.String),
               "score": (st.one_of(st.none(), st.floats(-1e6, 1e6)), pl.Float64),
               "count": (st.one_of(st.none(), st.integers(0, 5)), pl.Int64)}
    frames = []
    for _ in range(draw(st.integers(1, 4))):
        rows = draw(st.integers(1, 3))
        frames.append(pl.DataFrame({name: pl.Series(draw(st.lists(
            columns[name][0], min_size=rows, max_size=rows)), dtype=columns[name][1])
            for name in names}))
    return frames


@settings(max_examples=60, deadline=None)
@given(_frames(), st.lists(st.integers(0, 3), min_size=2, max_size=30),
       st.sampled_from([None, CLASSES]), st.sampled_from([None, 1]))
@example([pl.DataFrame({"label": ["fraud"], "count": [1]}),
          pl.DataFrame({"label": ["legit"], "count": [0]})], [0, 1], None, 1)
def test_polars_frames_of_many_calls_record_what_each_call_read_alone_records(
        frames, order, classes, max_classes):
    """Two columns of labels (text and integers) are read call by call, as pandas' are."""
    order = [i % len(frames) for i in order]
    together = drained_every_way(frames, order, _call_by_call, classes=classes,
                                 max_classes=max_classes)
    assert together["sizes"][:2] == (len(order), sum(len(frames[i]) for i in order))


@settings(max_examples=80, deadline=None)
@given(_series_calls(), st.sampled_from(["auto", "classification", "regression"]),
       st.sampled_from([None, ("0", "1"), tuple(CLASSES)]))
@example([pl.Series([1.0, None]), pl.Series([None])], "auto", None)
@example([pl.Series(["fraud", None], dtype=pl.Enum(CLASSES)),
          pl.Series([None], dtype=pl.Enum(CLASSES))], "auto", None)
def test_polars_series_under_request_ids_join_by_the_rows_each_call_gives_alone(
        outputs, task, classes):
    """Joined under request ids too (about 30 to 90 us a call read alone): each call's
    rows, a null None or NaN in its place, as the call read alone gives them."""
    together, alone = _records_both_ways(outputs, Settings(task=task, classes=classes))
    assert together == alone


@settings(max_examples=60, deadline=None)
@given(_frames(), st.sampled_from([None, tuple(CLASSES)]))
def test_polars_frames_under_request_ids_join_by_the_rows_each_call_gives_alone(
        frames, classes):
    together, alone = _records_both_ways(frames, Settings(classes=classes))
    assert together == alone


def test_outcomes_join_a_drain_of_polars_series_with_nulls_as_each_call_alone(monkeypatch):
    """End to end: the series, the rows kept for each id and the outcomes judged, with the
    join and without it; and the join is what such a drain takes."""
    joined = watched(monkeypatch, PredictionBatch, "_joined_records",
                     lambda found: found is not None)
    for dtype, values in ((pl.Float64, [[0.5, None], [None], [1.5]]),
                          (pl.Enum(CLASSES), [["fraud", None], [None], ["legit"]])):
        calls = [(pl.Series(values[i % 3], dtype=dtype), f"r-{i}") for i in range(9)]
        as_the_general_path(
            monkeypatch, PredictionBatch, "_joined_records",
            lambda calls=calls: judged_after_drain(calls, None, "auto", 2**20, _first_row),
            lambda self, results: None)
    assert joined and all(joined)


def _first_row(result) -> object:
    value = result.to_list()[0]
    return "legit" if value is None or isinstance(value, str) else value + 0.25
