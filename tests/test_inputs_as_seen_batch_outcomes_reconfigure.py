"""What is recorded is what the call saw: a DataFrame input annotated or cleaned after the
call, a batch of which one row holds no prediction, and calls made before a new reference
was configured (each checked against the reference it was made under)."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest

import inferwatch
from conftest import Scraper
from inferwatch.core import call_input
from inferwatch.quality.reference import Reference

CALLS = 20


class FrameModel:
    """A classifier that reads its input as it is given, as a model of a pipeline does."""

    classes_ = np.array([0, 1])

    def predict_proba(self, X, request_id=None):
        rows = len(X)
        return np.tile([0.3, 0.7], (rows, 1))


def _reference(columns: list[str]) -> Reference:
    rng = np.random.default_rng(0)
    return Reference.from_data(pd.DataFrame(rng.normal(size=(200, len(columns))),
                                            columns=columns))


@pytest.fixture
def scraper():
    scraper = Scraper(drain_interval=3600)  # every call waits for the scrape's drain
    yield scraper
    scraper.registry.close()


def _annotated_and_cleaned(scraper: Scraper, rows: int, slow: bool) -> None:
    """The serving pattern of the report: score the request frame, write the score into
    it, then clean it in place for the response; the model saw one missing 'b' a call."""
    model = inferwatch.instrument(FrameModel(), name="m", version="1",
                                  reference=_reference(["a", "b", "c"]),
                                  registry=scraper.registry)
    rng = np.random.default_rng(1)
    for i in range(CALLS):
        batch = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
        batch.loc[0, "b"] = np.nan
        keywords = {"request_id": f"r{i}"} if slow else {}
        batch["score"] = model.predict_proba(batch, **keywords)[:, 1]
        batch.fillna({"b": 0.0}, inplace=True)
        batch.loc[1, "a"] = np.nan  # after the call: never seen by the model


@pytest.mark.parametrize("slow", [False, True], ids=["fast_path", "request_id"])
@pytest.mark.parametrize("copy_on_write", [True, False], ids=["cow", "no_cow"])
def test_dataframe_input_is_checked_as_the_call_saw_it(scraper, monkeypatch, slow,
                                                       copy_on_write):
    if not copy_on_write:
        # As without copy-on-write (pandas < 3 by default), where a shallow copy shares the
        # blocks an in-place fillna writes: the small frame is copied whole then.
        monkeypatch.setattr(call_input, "copies_on_write", lambda pandas: False,
                            raising=False)
        _annotated_and_cleaned(scraper, rows=10, slow=slow)
    elif int(pd.__version__.split(".")[0]) < 3:
        with pd.option_context("mode.copy_on_write", True):
            _annotated_and_cleaned(scraper, rows=10, slow=slow)
    else:
        _annotated_and_cleaned(scraper, rows=10, slow=slow)
    assert scraper.total("inferwatch_input_errors_total") == 0
    assert scraper.value("inferwatch_feature_missing_total", feature="b") == CALLS
    assert scraper.value("inferwatch_feature_missing_total", feature="a") is None


def test_large_frame_without_copy_on_write_keeps_its_columns(scraper, monkeypatch):
    """A frame past COPY_LIMIT_BYTES is read at drain time (docs/shapes.md), but a column
    the caller adds after the call is not one the model was given."""
    monkeypatch.setattr(call_input, "copies_on_write", lambda pandas: False, raising=False)
    rows = call_input.COPY_LIMIT_BYTES // (3 * 8) + 1
    _annotated_and_cleaned(scraper, rows=rows, slow=False)
    assert scraper.total("inferwatch_input_errors_total") == 0


def test_snapshot_of_a_frame_costs_no_deep_copy_with_copy_on_write():
    frame = pd.DataFrame({"a": [1.0, 2.0], "name": ["x", "y"]})  # two blocks: kept a frame
    seen = call_input.snapshot_input(frame)
    if int(pd.__version__.split(".")[0]) >= 3:  # copy-on-write: a shallow copy is enough
        assert np.shares_memory(seen["a"].to_numpy(), frame["a"].to_numpy())
    frame.loc[0, "a"] = 9.0
    frame["b"] = 1.0
    assert seen["a"].tolist() == [1.0, 2.0] and list(seen.columns) == ["a", "name"]


@pytest.mark.parametrize("copy_on_write", [True, False])
def test_frame_of_one_numeric_block_is_captured_as_its_values(copy_on_write):
    """A frame whose columns share one numeric dtype (pandas' one block) is captured as a
    copy of that block and its labels, a twentieth of what copying the frame costs; what the
    caller does to its frame afterwards changes none of it, in place or not."""
    from inferwatch.frame_values import FrameValues

    before_3 = int(pd.__version__.split(".")[0]) < 3
    if not copy_on_write and not before_3:
        pytest.skip("pandas 3 always copies on write")
    with pd.option_context("mode.copy_on_write", copy_on_write) if before_3 else \
            contextlib.nullcontext():
        frame = pd.DataFrame({"a": [1.0, np.nan], "b": [3.0, 4.0]}, index=[7, 8])
        expected = frame.copy()
        seen = call_input.snapshot_input(frame)
        assert seen.__class__ is FrameValues and seen.nbytes == 32 and len(seen) == 2
        frame.fillna(0.0, inplace=True)
        frame.iloc[1, 1] = 99.0
        frame["c"] = 1.0
        frame.columns = ["x", "y", "z"]
        frame.index = [0, 1]
        pd.testing.assert_frame_equal(seen.frame(), expected)
        np.testing.assert_array_equal(seen.rows(), expected.to_numpy())


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"a": [1.0], "b": [2]}),  # two dtypes: two blocks
    pd.DataFrame({"a": ["x"], "b": ["y"]}),  # text
    pd.DataFrame({"a": pd.array([1, None], dtype="Int64")}),  # an extension dtype
    pd.DataFrame({"at": pd.to_datetime(["2026-01-01"])}),
    pd.DataFrame(np.zeros((call_input.COPY_LIMIT_BYTES // 8 + 1, 1))),  # past the limit
], ids=["two dtypes", "text", "nullable", "dates", "large"])
def test_other_frames_are_captured_as_frames(frame):
    seen = call_input.snapshot_input(frame)
    assert seen.__class__ is pd.DataFrame
    pd.testing.assert_frame_equal(seen, frame)


def test_frame_subclass_keeps_its_class():
    class Tagged(pd.DataFrame):
        @property
        def _constructor(self):
            return Tagged

    seen = call_input.snapshot_input(Tagged({"a": [1.0]}))
    assert seen.__class__ is Tagged and seen["a"].tolist() == [1.0]


def test_input_classes_are_remembered_within_a_bound_and_each_still_captured(monkeypatch):
    """How an input is captured is looked up by its class; classes made anew per call fill
    the table only up to its bound, and a class met after that is captured all the same."""
    from inferwatch.frame_values import FrameValues

    monkeypatch.setattr(call_input, "_CAPTURE_BY_CLASS", {})
    for i in range(call_input._CLASSES_REMEMBERED + 40):
        row = type(f"Row{i}", (dict,), {})(amount=1.0)
        assert call_input.snapshot_input(row) is row
    assert len(call_input._CAPTURE_BY_CLASS) == call_input._CLASSES_REMEMBERED
    frame = pd.DataFrame({"a": [1.0]})
    masked = np.ma.masked_array([1.0, 2.0], mask=[False, True])
    for _ in range(2):  # met past the bound: looked at anew on each call
        seen_frame, seen_masked = (call_input.snapshot_input(frame),
                                   call_input.snapshot_input(masked))
        assert seen_frame.__class__ is FrameValues and seen_frame.rows().tolist() == [[1.0]]
        assert seen_masked.__class__ is np.ma.MaskedArray and seen_masked is not masked
        assert seen_masked.mask.tolist() == [False, True]
    assert pd.DataFrame not in call_input._CAPTURE_BY_CLASS
    # A class whose __module__ is not text is kept as it is, never raised on.
    odd = type("Odd", (), {"__module__": None})()
    monkeypatch.setattr(call_input, "_CAPTURE_BY_CLASS", {})
    assert call_input.snapshot_input(odd) is odd
    assert {odd.__class__: None} == call_input._CAPTURE_BY_CLASS


def test_series_input_is_captured_as_seen():
    series = pd.Series([1.0, np.nan], index=["a", "b"])
    seen = call_input.snapshot_input(series)
    series.fillna(0.0, inplace=True)
    assert seen.isna().tolist() == [False, True]


def test_polars_frame_changed_in_place_is_checked_as_seen(scraper):
    pl = pytest.importorskip("polars")
    model = inferwatch.instrument(FrameModel(), name="m", version="1",
                                  reference=_reference(["a", "b", "c"]),
                                  registry=scraper.registry)
    for _ in range(CALLS):
        batch = pl.DataFrame({"a": [0.1, 0.2], "b": [None, 0.3], "c": [0.0, 0.1]})
        model.predict_proba(batch)
        batch[0, "b"] = 0.0  # polars writes in place: the model saw the null
        batch.insert_column(3, pl.Series("score", [0.7, 0.7]))
    assert scraper.total("inferwatch_input_errors_total") == 0
    assert scraper.value("inferwatch_feature_missing_total", feature="b") == CALLS


# --- a batch with one row that holds no prediction -------------------------------------

ROWS = 1000


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_one_nan_row_leaves_the_other_rows_of_its_batch_joinable(scraper, bad):
    predictions = np.full(ROWS, 2.0)
    predictions[17] = bad
    model = inferwatch.instrument(lambda X: predictions, name="m", version="1",
                                  registry=scraper.registry)
    model(np.zeros((ROWS, 3)), request_id="batch-1")
    truth = np.full(ROWS, 2.5)
    truth[18] = 4.5  # the row after the bad one: the rows stay aligned
    scraper.registry.monitor("m").record_outcome("batch-1", truth)
    assert scraper.value("inferwatch_outcome_error_count") == ROWS - 1
    assert scraper.value("inferwatch_outcome_error_sum") == pytest.approx(
        0.5 * (ROWS - 2) + 2.5)
    # The row without a prediction is counted, not judged, as a row no finite error can
    # be measured for is.
    unmatched = {s["reason"]: scraper.value("inferwatch_outcomes_unmatched_total", **s)
                 for s in scraper.series("inferwatch_outcomes_unmatched_total")}
    assert {k: v for k, v in unmatched.items() if v} == {"missing_label": 1}


def test_nan_in_one_output_of_a_multi_output_row_judges_the_other(scraper):
    predictions = np.tile([1.0, 10.0], (4, 1))
    predictions[2, 1] = np.nan
    model = inferwatch.instrument(lambda X: predictions, name="m", version="1",
                                  registry=scraper.registry)
    model(np.zeros((4, 3)), request_id="r")
    scraper.registry.monitor("m").record_outcome("r", np.tile([2.0, 12.0], (4, 1)))
    assert scraper.value("inferwatch_outcome_error_count") == 7
    assert scraper.value("inferwatch_outcome_error_sum") == pytest.approx(4 * 1.0 + 3 * 2.0)
    assert scraper.value("inferwatch_outcomes_unmatched_total", reason="missing_label") == 1


# --- a new reference configured while calls wait ----------------------------------------

def test_calls_are_checked_against_the_reference_they_were_made_under(scraper):
    old, new = _reference(["amount", "age"]), _reference(["amount_eur", "age"])
    model = inferwatch.instrument(lambda X: np.zeros(len(X)), name="m", version="1",
                                  reference=old, registry=scraper.registry)
    for _ in range(5):
        model(pd.DataFrame({"amount": [1.0, 2.0], "age": [0.0, 1.0]}))
    scraper.registry.monitor("m").configure(reference=new)
    for _ in range(3):
        model(pd.DataFrame({"amount_eur": [1.0, np.nan], "age": [0.0, 1.0]}))
    assert scraper.total("inferwatch_input_errors_total") == 0
    assert scraper.value("inferwatch_feature_missing_total", feature="amount_eur") == 3
    assert scraper.value("inferwatch_feature_missing_total", feature="amount") is None
