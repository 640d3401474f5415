"""Frames of other columns than the reference's are checked together, counting what each
frame alone counts.

A renamed feature after a deploy sends every call's frame with columns the reference does
not know. Each such frame was rebuilt and checked alone in the drain: about 67 us a call,
on the drain's thread, holding the GIL, exactly while the schema alert fires. A drain now
joins the captured frames of the same columns and dtype and checks one frame a group
(about 12 us a call, `bench_shapes`' input rows). Every count, and the drift window, must
be what checking each frame alone gives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from input_checks import input_figures

_NAMES = ["a", "b", "c"]
_TRAIN = pd.DataFrame(np.random.default_rng(1).uniform(0, 10, size=(300, 3)), columns=_NAMES)
# "c" a category of codes 0 to 9: a bool True is no code 1 there, so frames of bools and of
# integers must not be joined into one dtype.
_REFERENCE = inferwatch.Reference.from_data(_TRAIN.assign(c=_TRAIN["c"].astype(int)),
                                            categorical=["c"])
_COLUMN_SETS = [
    ["a", "b", "c"],          # the reference's
    ["a", "b", "renamed"],    # a renamed feature
    ["a", "b", "c", "extra"],  # an extra column
    ["a", "b"],               # a missing one
    ["a", "a", "c"],          # a name twice: a wrong_shape of its own per frame
    [0, 1],                   # names nothing, of another width: a wrong_width per frame
    ["c", "b", "a"],          # the reference's, in another order
]


@st.composite
def _frames(draw) -> list[pd.DataFrame]:
    frames = []
    for _ in range(draw(st.integers(1, 8))):
        columns = draw(st.sampled_from(_COLUMN_SETS))
        rows = draw(st.integers(1, 3))
        dtype = draw(st.sampled_from(["float", "int", "bool"]))
        values = draw(st.lists(st.lists(st.integers(-2, 14), min_size=len(columns),
                                        max_size=len(columns)), min_size=rows, max_size=rows))
        frames.append(pd.DataFrame(np.array(values, dtype=dtype), columns=columns))
    return frames


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames())
def test_frames_checked_together_count_what_each_frame_alone_counts(frames):
    assert input_figures(frames, False, _REFERENCE) == input_figures(frames, True, _REFERENCE)


def test_a_renamed_feature_counts_per_row_in_a_joined_drain(scraper):
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry, reference=_REFERENCE)
    for _ in range(50):
        model(pd.DataFrame([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], columns=["a", "b", "renamed"]))
    assert scraper.value("inferwatch_input_errors_total", model="m",
                         reason="missing_column") == 100
    assert scraper.value("inferwatch_input_errors_total", model="m",
                         reason="extra_column") == 100
    assert scraper.value("inferwatch_feature_drift_observations", model="m", feature="a") == 100


_MIXED_NAMES = ["amount", "channel"]
_MIXED_REFERENCE = inferwatch.Reference.from_data(pd.DataFrame({
    "amount": np.random.default_rng(2).uniform(0, 100, 300),
    "channel": np.random.default_rng(3).choice(["web", "app", "store"], 300)}))
_MIXED_COLUMNS = [["amount", "channel"], ["channel", "amount"], ["amount", "chan"],
                  ["amount", "channel", "extra"], ["amount", "amount", "channel"]]


@st.composite
def _mixed_frames(draw) -> list[object]:
    """A text category beside numbers, the usual tabular input: pandas frames of object,
    str or category text, or polars frames, of the reference's columns or others."""
    import polars as pl

    frames = []
    for _ in range(draw(st.integers(1, 8))):
        columns = draw(st.sampled_from(_MIXED_COLUMNS))
        rows = draw(st.integers(1, 3))
        data = {}
        for j, name in enumerate(columns):
            if name in ("amount", "extra") or (j == 1 and name == "amount"):
                data[j] = draw(st.lists(st.one_of(st.floats(-10, 150), st.just(np.nan)),
                                        min_size=rows, max_size=rows))
            else:
                data[j] = draw(st.lists(st.sampled_from(["web", "app", "store", "kiosk", None]),
                                        min_size=rows, max_size=rows))
        frame = pd.DataFrame(data)
        frame.columns = columns
        text = [j for j, name in enumerate(columns) if frame.iloc[:, j].dtype == object]
        kind = draw(st.sampled_from(["object", "str", "category", "polars"]))
        if kind in ("str", "category"):
            for j in text:
                frame.isetitem(j, frame.iloc[:, j].astype(kind))
        if kind == "polars" and len(set(columns)) == len(columns):
            frame = pl.from_pandas(frame)
        frames.append(frame)
    return frames


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mixed_frames())
def test_frames_of_text_and_numbers_checked_together_count_what_each_alone_counts(frames):
    assert input_figures(frames, False, _MIXED_REFERENCE) == \
        input_figures(frames, True, _MIXED_REFERENCE)


def test_frames_of_other_dtypes_are_never_joined_into_one(scraper):
    # A code past 2**53 is exact as an integer and rounded as a float: joined with a float
    # frame, the integer frame's code would become another, unseen one.
    code = 2**53 + 1
    reference = inferwatch.Reference.from_data(
        pd.DataFrame({"code": [code, 7] * 50, "channel": ["web", "app"] * 50}),
        categorical=["code"])
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry, reference=reference)
    model(pd.DataFrame({"code": [code], "channel": ["web"]}))
    model(pd.DataFrame({"code": [7.0], "channel": ["app"]}))
    assert scraper.value("inferwatch_feature_unseen_category_total", model="m",
                         feature="code") in (None, 0)
