"""A model returning a pandas DataFrame per call (an MLflow pyfunc), called with
``request_id=``: when every frame of a drain has the same column labels and none of them is
``"label"``, the outcome join takes each call's row from the drain at once
(``record_joins._frames_without_label``), where each frame was looked at for a label
column twice. The rows kept for each id, the series and the outcomes judged must be what
looking at each frame gives: compared on random drains of frames, ``"label"`` columns and
frames of other columns among them."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fold_checks import as_the_general_path, watched
from inferwatch.core import record_joins
from test_outcomes_array_rows import judged_after_drain
from test_pandas_calls import _frames


@st.composite
def _calls(draw) -> list[tuple[object, str | None]]:
    """One drain's frames (of one set of columns, now and then another frame among them),
    most under a request id."""
    frames = draw(_frames())
    other = draw(st.sampled_from([None, "other", "label"]))
    if other == "other":
        frames.append(pd.DataFrame({"other": [draw(st.floats(-1, 1))]}))
    elif other == "label":  # a label among frames without one ("spam": no declared class)
        frames.append(pd.DataFrame({"label": [draw(st.sampled_from(["fraud", "spam"]))],
                                    "score": [draw(st.floats(0, 1))]}))
    order = draw(st.lists(st.integers(0, len(frames) - 1), min_size=1, max_size=12))
    return [(frames[index], f"r-{number}" if draw(st.integers(0, 4)) else None)
            for number, index in enumerate(order)]


def _first(frame) -> object:
    if "label" in frame.columns:
        return str(frame["label"].iloc[0])
    value = frame.iloc[0, 0]
    return float(value) + 0.25 if isinstance(value, float) else str(value)


def _judged(calls, task: str, cache_bytes: int) -> tuple[dict, dict]:
    return judged_after_drain(calls, None, task, cache_bytes, _first,
                              {"classes": ["legit", "fraud", "review"]})


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=_calls(), task=st.sampled_from(["auto", "classification", "regression"]),
       cache_bytes=st.sampled_from([2048, 2**20]))
@example(calls=[(pd.DataFrame({"score": [0.5]}), "r-0"),
                (pd.DataFrame({"label": ["spam"], "score": [0.7]}), "r-1")],
         task="auto", cache_bytes=2**20)  # a label no class was declared for, second
def test_frames_join_as_each_frame_looked_at_alone(monkeypatch, calls, task, cache_bytes):
    as_the_general_path(monkeypatch, record_joins, "_frames_without_label",
                        lambda: _judged(calls, task, cache_bytes),
                        replacement=lambda records: False)


def test_frames_without_a_label_column_take_the_one_look(monkeypatch):
    """The look above is taken for frames of shared columns and no ``"label"`` (a test of
    a shortcut that never ran would prove nothing), not for frames with one, nor for
    frames of other columns."""
    taken = watched(monkeypatch, record_joins, "_frames_without_label")
    for frames in ([pd.DataFrame({"a": [0.5], "b": [1.5]}), pd.DataFrame({"a": [2.0], "b": [0.0]})],
                   [pd.DataFrame({"label": ["fraud"], "score": [0.9]})] * 2,
                   [pd.DataFrame({"a": [0.5]}), pd.DataFrame({"b": [0.5]})]):
        _, entries = _judged([(frame, f"r-{i}") for i, frame in enumerate(frames)], "auto",
                             2**20)
        assert sorted(entries) == ["r-0", "r-1"]
    assert taken == [True, False, False]
    assert entries["r-0"][:2] == (None, "(0.5,)")
