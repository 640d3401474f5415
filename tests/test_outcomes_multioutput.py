"""Delayed ground truth of a regressor of several outputs: every output remembered, each
target of an outcome row judged against its own output."""

from __future__ import annotations

import gc
import itertools
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error
from sklearn.multioutput import MultiOutputRegressor

import inferwatch
from inferwatch.core.outcome_sizes import entry_bytes
from inferwatch.core.outcomes import OutcomeJoiner
from inferwatch.quality.reference import Reference

RNG = np.random.default_rng(7)
X = RNG.normal(size=(80, 3))
Y = np.column_stack([X[:, 0] * 2.0 + 1.0, X[:, 1] - X[:, 2], X[:, 2] * 0.5])


def _error(scraper, **labels: str) -> tuple[float | None, float | None]:
    """(sum, count) of ``inferwatch_outcome_error``."""
    return (scraper.value("inferwatch_outcome_error_sum", **labels),
            scraper.value("inferwatch_outcome_error_count", **labels))


def _unmatched(scraper, reason: str) -> float:
    return scraper.total("inferwatch_outcomes_unmatched_total", reason=reason)


@pytest.mark.parametrize("model", [
    LinearRegression().fit(X, Y),
    MultiOutputRegressor(LinearRegression()).fit(X, Y),
], ids=["LinearRegression", "MultiOutputRegressor"])
@pytest.mark.parametrize("rows", [1, 16])
def test_scikit_learn_multi_output_regressors_join_every_output(scraper, model, rows):
    """Only the first output was remembered: a row of three targets counted shape_mismatch."""
    wrapped = inferwatch.instrument(model, name="m", version="1", registry=scraper.registry)
    predicted = wrapped.predict(X[:rows], request_id="r-1")
    truth = predicted + RNG.normal(size=predicted.shape)
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1", truth)
    total, count = _error(scraper)
    assert count == rows * 3
    assert total == pytest.approx(np.abs(predicted - truth).sum())
    assert scraper.total("inferwatch_outcomes_unmatched_total") == 0


def test_a_one_row_call_takes_one_row_of_targets_in_any_container(scraper):
    model = LinearRegression().fit(X, Y)
    wrapped = inferwatch.instrument(model, name="m", version="1", registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    targets = [[1.0, 2.0, 3.0], np.array([[1.0, 2.0, 3.0]]), pd.Series([1.0, 2.0, 3.0]),
               pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0]}), (1.0, 2.0, 3.0)]
    expected = 0.0
    for i, truth in enumerate(targets):
        predicted = wrapped.predict(X[i:i + 1], request_id=f"r-{i}")
        mon.record_outcome(f"r-{i}", truth)
        expected += float(np.abs(predicted[0] - [1.0, 2.0, 3.0]).sum())
    total, count = _error(scraper)
    assert count == 3 * len(targets)
    assert total == pytest.approx(expected)
    assert scraper.total("inferwatch_outcomes_unmatched_total") == 0


@pytest.mark.parametrize("rows", [1, 5])
def test_a_function_returning_n_by_k_floats(scraper, rows):
    predicted = np.arange(rows * 4, dtype=np.float64).reshape(rows, 4) * 1.5
    wrapped = inferwatch.instrument(lambda x: predicted, name="m", version="1",
                                    registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    for i in range(3):  # several calls in one drain: one stacked pass, split again by call
        wrapped(0, request_id=f"r-{i}")
    for i in range(3):
        mon.record_outcome(f"r-{i}", (predicted + i).tolist())
    assert _error(scraper) == (pytest.approx(rows * 4 * (0 + 1 + 2)), rows * 4 * 3)
    assert scraper.total("inferwatch_outcomes_unmatched_total") == 0


def test_the_request_api_remembers_every_output(scraper):
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    with mon.request(request_id="one") as r:
        r.prediction(np.array([[3.0, 40.0]]))
    with mon.request(request_id="batch") as r:
        r.prediction(np.array([[3.0, 40.0], [5.0, 60.0]]))
    mon.record_outcome("one", [4.0, 38.0])
    mon.record_outcome("batch", [[3.0, 41.0], [5.5, 60.0]])
    assert _error(scraper) == (pytest.approx(3.0 + 1.5), 6)
    assert scraper.total("inferwatch_outcomes_unmatched_total") == 0


def test_named_outputs_are_joined_in_the_order_the_model_returns_them(scraper):
    wrapped = inferwatch.instrument(lambda x: {"price": [10.0, 20.0], "days": [1.5, 2.5]},
                                    name="m", version="1", registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    wrapped(0, request_id="by-order")
    mon.record_outcome("by-order", [[11.0, 1.5], [20.0, 3.5]])
    assert _error(scraper) == (pytest.approx(2.0), 4)
    wrapped(0, request_id="by-name")
    mon.record_outcome("by-name", {"price": [10.0, 20.0], "days": [1.5, 2.5]})
    assert _unmatched(scraper, "shape_mismatch") == 1  # names are not remembered
    assert _error(scraper)[1] == 4


@pytest.mark.parametrize("truth", [
    2.0,  # only the first target of a one-row call
    [2.0, 3.0],  # one target short
    [2.0, 3.0, 4.0, 5.0],  # one target too many
    [[2.0, 3.0, 4.0], [2.0, 3.0, 4.0]],  # two rows for one
    [[2.0], [3.0], [4.0]],  # the row as a column
    [[2.0, 3.0], [4.0]],  # ragged
    "2.0, 3.0, 4.0",
])
def test_a_row_of_another_width_is_a_shape_mismatch(scraper, truth):
    """Only a row of one target per output joins; any other width judges nothing."""
    wrapped = inferwatch.instrument(lambda x: np.array([[1.0, 2.0, 3.0]]), name="m",
                                    version="1", registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    wrapped(0, request_id="wrong")
    wrapped(0, request_id="right")
    mon.record_outcome("wrong", truth)
    assert _unmatched(scraper, "shape_mismatch") == 1
    assert _error(scraper) == (None, None)
    mon.record_outcome("right", [2.0, 3.0, 4.0])
    assert _error(scraper) == (3.0, 3)
    assert _unmatched(scraper, "shape_mismatch") == 1


def test_only_the_first_targets_of_a_batch_are_a_shape_mismatch(scraper):
    """Given the first output's targets alone, the first output was judged silently."""
    predicted = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    wrapped = inferwatch.instrument(lambda x: predicted, name="m", version="1",
                                    registry=scraper.registry)
    wrapped(0, request_id="r-1")
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1", [1.0, 2.0,
                                                                                   3.5])
    assert _unmatched(scraper, "shape_mismatch") == 1
    assert _error(scraper) == (None, None)


def test_one_row_of_targets_judges_every_row_as_one_label_does(scraper):
    predicted = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    wrapped = inferwatch.instrument(lambda x: predicted, name="m", version="1",
                                    registry=scraper.registry)
    wrapped(0, request_id="r-1")
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1", [2.0, 20.0])
    assert _error(scraper) == (pytest.approx(1.0 + 10.0 + 0.0 + 0.0 + 1.0 + 10.0), 6)


@pytest.mark.parametrize("missing", [None, float("nan"), pd.NA])
def test_a_missing_target_skips_only_that_target_and_counts_one_missing_label(scraper,
                                                                             missing):
    predicted = np.array([[1.0, 10.0, 100.0], [2.0, 20.0, 200.0]])
    wrapped = inferwatch.instrument(lambda x: predicted, name="m", version="1",
                                    registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    wrapped(0, request_id="r-1")
    mon.record_outcome("r-1", pd.DataFrame({"a": [1.5, missing], "b": [10.0, 22.0],
                                            "c": [missing, missing]}, dtype=object))
    assert _error(scraper) == (pytest.approx(0.5 + 2.0), 3)
    assert _unmatched(scraper, "missing_label") == 3
    assert _unmatched(scraper, "shape_mismatch") == 0


def test_a_row_with_every_target_missing_leaves_the_prediction_waiting(scraper):
    wrapped = inferwatch.instrument(lambda x: np.array([[1.0, 10.0]]), name="m", version="1",
                                    registry=scraper.registry)
    wrapped(0, request_id="r-1")
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1",
                                                                          [None, np.nan])
    assert _unmatched(scraper, "missing_label") == 2
    assert not scraper.value("inferwatch_outcome_delay_seconds_count")
    assert _error(scraper) == (None, None)


def test_a_prediction_with_a_non_finite_output_judges_its_other_outputs(scraper):
    """The row that lost its NaN is read off the result: its other output is judged, and the
    NaN's target is counted unjudged, as a target no error is measured for is."""
    wrapped = inferwatch.instrument(lambda x: np.array([[1.0, np.nan]]), name="m", version="1",
                                    registry=scraper.registry)
    wrapped(0, request_id="r-1")
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1", [1.5, 2.0])
    assert _unmatched(scraper, "missing_label") == 1
    assert _unmatched(scraper, "unsupported_prediction") == 0
    assert _error(scraper) == (0.5, 1)


@pytest.mark.parametrize("container", ["tuple", "list", "DataFrame", "dict"])
def test_outputs_returned_side_by_side_with_a_non_finite_value_join_every_row(scraper,
                                                                          container):
    """A tuple or list of output arrays, or a DataFrame, with a NaN or an infinity in one
    output: the prediction once joined nothing (its rows could not be put back in place,
    while a dict's were); now each row is joined, the non-finite cell counted unjudged."""
    price, eta = np.array([1.0, np.nan, 3.0]), np.array([10.0, 20.0, np.inf])
    result = (price, eta) if container == "tuple" else [price, eta] if container == "list" \
        else {"price": price, "eta": eta} if container == "dict" else \
        pd.DataFrame({"price": price, "eta": eta})
    wrapped = inferwatch.instrument(lambda x: result, name="m", version="1",
                                    registry=scraper.registry)
    wrapped(0, request_id="r-1")
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    mon.drain()
    assert repr(mon.outcomes._pending["r-1"][1]) == \
        "((1.0, 10.0), (nan, 20.0), (3.0, nan))"
    mon.record_outcome("r-1", [[1.5, 10.0], [2.0, 21.0], [3.0, 30.0]])
    assert _unmatched(scraper, "missing_label") == 2
    assert _unmatched(scraper, "unsupported_prediction") == 0
    assert _error(scraper) == (1.5, 4)


def test_a_batch_over_the_byte_bound_keeps_its_first_rows_with_every_output():
    outputs = 3
    row = (0.5, 1.5, 2.5)
    hundred_rows = entry_bytes("big", None, (row,) * 100)
    joiner = OutcomeJoiner(max_bytes=hundred_rows)
    joiner.remember("big", None, (row,) * 150, at=0.0)
    assert joiner.estimated_bytes <= joiner.max_bytes
    joined = joiner.join("big", [[1.0, 1.0, 1.0]] * 150, at=1.0)
    assert joined.rows_over_bound == 50
    assert len(joined.errors) == 100 * outputs
    assert sum(joined.errors) == pytest.approx(100 * (0.5 + 0.5 + 1.5))


def test_a_batch_over_the_byte_bound_through_a_model(scraper):
    rows, outputs = 400, 4
    predicted = np.ones((rows, outputs))
    wrapped = inferwatch.instrument(lambda x: predicted, name="m", version="1",
                                    registry=scraper.registry, outcome_cache_bytes=8192)
    wrapped(0, request_id="big")
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    mon.drain()
    assert mon.outcomes.estimated_bytes <= 8192
    kept = len(mon.outcomes._pending["big"][1])
    assert 1 <= kept < rows
    mon.record_outcome("big", predicted + 0.25)
    assert _unmatched(scraper, "rows_over_bound") == rows - kept
    assert _error(scraper) == (pytest.approx(kept * outputs * 0.25), kept * outputs)


@pytest.mark.parametrize(("rows", "outputs"), [(1, 4), (1, 8), (64, 2), (64, 5)])
def test_the_byte_estimate_never_falls_short_of_the_memory_multi_output_rows_take(rows,
                                                                                  outputs):
    """Measured with tracemalloc, as benchmarks/bench_outcome_cache.py measures one output:
    a row counted as its tuple alone would let the cache grow past its bound. Nothing is
    evicted here, so what is measured is the entries themselves."""
    here = (tracemalloc.Filter(True, __file__),
            tracemalloc.Filter(True, "*/inferwatch/core/outcomes.py"))

    def traced() -> int:
        return sum(stat.size for stat in
                   tracemalloc.take_snapshot().filter_traces(here).statistics("filename"))

    rng = np.random.default_rng(0)
    entries = 3000 if rows == 1 else 300  # 19,200 batch rows: enough to tell, in a second
    gc.collect()
    tracemalloc.start()
    try:
        before = traced()
        # Made as the drain makes them: one Python float per value, a tuple per row.
        made = [tuple(zip(*rng.normal(size=(outputs, rows)).tolist())) for _ in range(entries)]
        ids = [f"req-{i:012d}" for i in range(entries)]
        joiner = OutcomeJoiner(max_entries=entries, max_bytes=1 << 40)
        for request_id, values in zip(ids, made):
            joiner.remember(request_id, None, values, at=0.0)
        del made, ids
        gc.collect()
        used = traced() - before
    finally:
        tracemalloc.stop()
    assert len(joiner) == entries
    assert used <= joiner.estimated_bytes


_NAMES = itertools.count()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), outputs=st.integers(2, 6), rows=st.integers(1, 12),
       as_lists=st.booleans())
def test_the_error_histogram_sums_every_outputs_absolute_error(scraper, data, outputs, rows,
                                                               as_lists):
    values = st.floats(-1e6, 1e6, allow_nan=False)
    predicted = np.array(data.draw(st.lists(values, min_size=rows * outputs,
                                            max_size=rows * outputs))).reshape(rows, outputs)
    truth = np.array(data.draw(st.lists(values, min_size=rows * outputs,
                                        max_size=rows * outputs))).reshape(rows, outputs)
    name = f"m{next(_NAMES)}"
    wrapped = inferwatch.instrument(lambda x: predicted, name=name, version="1",
                                    registry=scraper.registry)
    wrapped(0, request_id="r")
    inferwatch.monitor(name, "1", registry=scraper.registry).record_outcome(
        "r", truth.tolist() if as_lists else truth)
    total, count = _error(scraper, model=name)
    assert count == rows * outputs
    assert total == pytest.approx(float(np.abs(predicted - truth).sum()), rel=1e-9, abs=1e-9)


def test_validation_and_live_mean_absolute_error_agree_with_scikit_learn(scraper):
    """The accuracy alert compares live MAE with the reference's validation MAE: both over
    every output, as scikit-learn's uniform average."""
    model = LinearRegression().fit(X[:60], Y[:60])
    held_out = X[60:]
    truth = Y[60:] + RNG.normal(scale=0.3, size=Y[60:].shape)
    predicted = model.predict(held_out)
    expected = mean_absolute_error(truth, predicted, multioutput="uniform_average")
    reference = Reference.from_data(held_out, predicted, y_true=truth)
    assert reference.validation.metric == "mean_absolute_error"
    assert reference.validation.value == pytest.approx(expected)
    assert reference.validation.rows == len(held_out)
    wrapped = inferwatch.instrument(model, name="m", version="1", registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    for i in range(len(held_out)):
        wrapped.predict(held_out[i:i + 1], request_id=f"r-{i}")
    for i in range(len(held_out)):
        mon.record_outcome(f"r-{i}", truth[i])
    total, count = _error(scraper)
    assert total / count == pytest.approx(expected)


def test_validation_of_several_outputs_leaves_out_each_missing_target():
    predicted = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([10.0, 20.0, 30.0])}
    truth = pd.DataFrame({"a": [2.0, None, 3.0], "b": [10.0, 24.0, None]})
    validation = Reference.from_data({"x": [1.0, 2.0, 3.0]}, predicted,
                                     y_true=truth).validation
    assert validation.metric == "mean_absolute_error"
    assert validation.value == pytest.approx((1.0 + 0.0 + 0.0 + 4.0) / 4)
    assert validation.rows == 3


def test_a_label_too_large_for_a_float_is_a_missing_label_not_an_internal_error(scraper):
    """float(10**400) raises OverflowError: the target is as far off as an infinite one, so
    its row counts as missing_label, as the README says, and never an internal error."""
    from inferwatch import faults

    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=scraper.registry)
    model(1.0, request_id="r-1")
    mon = inferwatch.monitor("m", registry=scraper.registry)
    before = faults.internal_error_counts()
    mon.record_outcome("r-1", 10 ** 400)
    assert scraper.value("inferwatch_outcomes_unmatched_total", reason="missing_label") == 1
    assert scraper.value("inferwatch_outcomes_unmatched_total", reason="shape_mismatch") is None
    assert not scraper.value("inferwatch_outcome_error_count")  # no error observed
    assert faults.internal_error_counts() == before


@pytest.mark.parametrize("rows", [1, 8])
def test_a_shadow_of_a_multi_output_regressor_is_scored_on_every_target(rows):
    """Only single-output predictions were kept for the comparison's outcomes: a shadow of a
    multi-output regressor got no inferwatch_shadow_outcome_error at all."""
    from inferwatch.core.registry import Registry

    registry = Registry()
    try:
        champion_model = LinearRegression().fit(X, Y)
        challenger_model = LinearRegression().fit(X[:, :1], Y)  # a weaker one

        class FirstFeature:
            def predict(self, rows):
                return challenger_model.predict(np.asarray(rows)[:, :1])

        champion = inferwatch.instrument(champion_model, name="m", version="1",
                                         registry=registry)
        handle = inferwatch.shadow(champion, FirstFeature(), version="2", registry=registry,
                                   timeout=60.0)
        predicted = champion.predict(X[:rows], request_id="r-1")
        assert handle.flush(60)
        truth = Y[:rows].copy()
        truth[0, 1] = np.nan  # a target not known yet: neither side is judged on it
        registry.monitor("m", "1").record_outcome("r-1", truth)
        registry.drain()

        errors = handle.monitor.state.histograms["inferwatch_shadow_outcome_error"]
        known = ~np.isnan(truth)
        ours = np.abs(predicted - truth)[known]
        theirs = np.abs(challenger_model.predict(X[:rows, :1]) - truth)[known]
        assert errors[("1", "champion")].count == rows * 3 - 1
        assert errors[("1", "champion")].sum == pytest.approx(ours.sum())
        assert errors[("1", "shadow")].sum == pytest.approx(theirs.sum())
        # The challenger's own join judges the same targets.
        assert handle.monitor.state.histograms["inferwatch_outcome_error"][()].count == \
            rows * 3 - 1
        handle.close()
    finally:
        registry.close()
