"""Inputs and keywords of gradient-boosting and ONNX models that are no plain batch of rows
and predictions: SHAP values and leaf indices asked of predict / predict_proba, an ONNX
feed of one (n, 1) column per input, a CatBoost Pool."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import inferwatch
from inferwatch import faults
from inferwatch.core.call_input import kept_apart_output, recorded_result
from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.reference import Reference
from inferwatch.quality.sparse_rows import BLOCK_CELLS

lgb = pytest.importorskip("lightgbm")
xgb = pytest.importorskip("xgboost")
catboost = pytest.importorskip("catboost")


@pytest.fixture(scope="module")
def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return x[:, :5], y


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)


def _outputs(scraper, name: str) -> dict[str, float]:
    return {s.labels["output"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_prediction_count" and s.labels.get("model") == name}


def _invalid(scraper) -> dict[str, float]:
    return {s.labels["reason"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_invalid_predictions_total" and s.value}


# --- explanations and margins: outputs of their own -------------------------------------


def test_lightgbm_shap_values_leave_the_probability_series_alone(scraper, breast_cancer):
    x, y = breast_cancer
    model = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y)
    wrapped = inferwatch.instrument(model, name="churn", version="1",
                                    registry=scraper.registry)
    proba = wrapped.predict_proba(x[:200])
    median_before = scraper.value("inferwatch_prediction", output="0", quantile="0.5")
    contrib = wrapped.predict(x[:200], pred_contrib=True)
    assert np.array_equal(contrib, model.predict(x[:200], pred_contrib=True))
    assert scraper.value("inferwatch_prediction", output="0", quantile="0.5") == median_before
    assert median_before == pytest.approx(np.quantile(proba[:, 0], 0.5), rel=0.02)
    outputs = _outputs(scraper, "churn")
    assert outputs["0"] == outputs["1"] == 200
    assert outputs["contrib"] == contrib.size  # every row's SHAP values and bias
    # Both calls are requests, timed and sized.
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 2
    assert scraper.value("inferwatch_batch_size_sum") == 400
    assert scraper.value("inferwatch_request_duration_seconds_count") == 2


def test_lightgbm_shap_values_from_predict_proba_are_no_probabilities(scraper, breast_cancer):
    x, y = breast_cancer
    model = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y)
    wrapped = inferwatch.instrument(model, name="churn", version="1",
                                    registry=scraper.registry)
    wrapped.predict_proba(x[:100], pred_contrib=True)
    assert _invalid(scraper) == {}  # no probability_out_of_range, no probability_sum
    assert _outputs(scraper, "churn") == {"contrib": 100 * (x.shape[1] + 1)}
    assert scraper.series("inferwatch_predicted_class_total") == []


def test_lightgbm_leaf_indices_are_no_classes(scraper, breast_cancer):
    x, y = breast_cancer
    model = lgb.LGBMClassifier(n_estimators=50, verbose=-1).fit(x, y)
    wrapped = inferwatch.instrument(model, name="churn", version="1",
                                    registry=scraper.registry)
    leaves = wrapped.predict(x[:100], pred_leaf=True)
    assert leaves.dtype.kind == "i"  # the caller gets LightGBM's own result
    predicted = wrapped.predict(x)
    classes = {s["class"]: scraper.value("inferwatch_predicted_class_total", **s)
               for s in scraper.series("inferwatch_predicted_class_total")}
    expected = {str(c): float(n) for c, n in zip(*np.unique(predicted, return_counts=True))}
    assert classes == expected  # no "tree:leaf" class, nothing folded into __other__
    assert scraper.total("inferwatch_series_overflow_total") == 0
    assert _outputs(scraper, "churn")["leaf"] == leaves.size
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 2


def test_margin_keywords_count_by_their_truth(scraper, iris):
    x, y = iris
    model = xgb.XGBClassifier(n_estimators=5).fit(x, y)
    wrapped = inferwatch.instrument(model, name="xgb", version="1", registry=scraper.registry)
    margins = wrapped.predict(x[:10], output_margin=1)  # truthy, not True: still margins
    assert margins.shape == (10, 3)
    wrapped.predict(x[:10], output_margin=0)  # falsy: the classes
    assert _outputs(scraper, "xgb") == {"margin": 30}
    assert scraper.total("inferwatch_predicted_class_total") == 10


def test_xgboost_booster_explanations_have_outputs_of_their_own(scraper, iris):
    x, y = iris
    booster = xgb.XGBClassifier(n_estimators=5).fit(x, y).get_booster()
    wrapped = inferwatch.instrument(booster, name="bst", version="1",
                                    registry=scraper.registry)
    rows = xgb.DMatrix(x[:10])
    contribs = wrapped.predict(rows, pred_contribs=True)
    interactions = wrapped.predict(rows, pred_interactions=True)
    leaves = wrapped.predict(rows, pred_leaf=True)
    wrapped.predict(rows)
    assert _outputs(scraper, "bst") == {
        "contrib": contribs.size, "interactions": interactions.size, "leaf": leaves.size,
        "0": 10, "1": 10, "2": 10}
    assert scraper.value("inferwatch_batch_size_sum") == 40


def test_catboost_raw_formula_values_are_margins(scraper, iris):
    x, y = iris
    model = catboost.CatBoostClassifier(iterations=5, verbose=False,
                                        allow_writing_files=False).fit(x, y)
    wrapped = inferwatch.instrument(model, name="cb", version="1", registry=scraper.registry)
    wrapped.predict_proba(x[:10])
    wrapped.predict(x[:10], prediction_type="RawFormulaVal")
    assert _outputs(scraper, "cb") == {"0": 10, "1": 10, "2": 10, "margin": 30}
    assert _invalid(scraper) == {}


def test_catboost_log_probabilities_stay_out_of_the_class_columns(scraper, iris):
    """predict(prediction_type="LogProbability") returns the (n, k) matrix predict_proba
    does, in logs: read as the same columns, each class's probability summed negative."""
    catboost = pytest.importorskip("catboost")
    x, y = iris
    model = catboost.CatBoostClassifier(iterations=5, verbose=False,
                                        allow_writing_files=False).fit(x, y)
    wrapped = inferwatch.instrument(model, name="cb", version="1", registry=scraper.registry)
    wrapped.predict_proba(x[:10])
    logs = wrapped.predict(x[:10], prediction_type="LogProbability")
    assert np.array_equal(logs, model.predict(x[:10], prediction_type="LogProbability"))
    assert _outputs(scraper, "cb") == {"0": 10, "1": 10, "2": 10, "log_probability": 30}
    assert _invalid(scraper) == {}


def test_an_explanation_inside_a_request_keeps_its_own_output(scraper, breast_cancer):
    x, y = breast_cancer
    model = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y)
    wrapped = inferwatch.instrument(model, name="churn", version="1",
                                    registry=scraper.registry)
    monitor = scraper.registry.monitor("churn", "1")
    with monitor.request():
        wrapped.predict(x[:3], pred_contrib=True)
    assert _outputs(scraper, "churn") == {"contrib": 3 * (x.shape[1] + 1)}


_KEYWORD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.text(max_size=3),
                            st.sampled_from(["margin", "RawFormulaVal", "LogProbability",
                                             "Probability"]),
                            st.just(np.array([1, 0])), st.just(np.True_))
_KEYWORD_NAMES = st.sampled_from(["pred_contrib", "pred_contribs", "pred_interactions",
                                  "pred_leaf", "output_margin", "raw_score", "predict_type",
                                  "prediction_type", "request_id", "num_iteration"])


# The output each keyword names, in the order the first one a call passes wins.
_NAMED_OUTPUTS = (("pred_contrib", "contrib"), ("pred_contribs", "contrib"),
                  ("pred_interactions", "interactions"), ("pred_leaf", "leaf"),
                  ("output_margin", "margin"), ("raw_score", "margin"))


@given(st.dictionaries(_KEYWORD_NAMES, _KEYWORD_VALUES, max_size=4))
def test_kept_apart_output_reads_any_keywords_without_raising(kwargs):
    expected = None
    try:
        expected = next((output for name, output in _NAMED_OUTPUTS if kwargs.get(name)), None)
    except ValueError:  # an array's truth, met first: the call is read as a plain prediction
        pass
    else:
        for name, value, output in (("predict_type", "margin", "margin"),
                                    ("prediction_type", "RawFormulaVal", "margin"),
                                    ("prediction_type", "LogProbability", "log_probability")):
            if expected is None and isinstance(kwargs.get(name), str) and \
                    kwargs[name] == value:
                expected = output
    output = kept_apart_output(kwargs)
    assert output == expected
    result = np.arange(6, dtype=np.int32).reshape(3, 2)
    recorded = recorded_result(result, kwargs)
    if output is None:
        assert recorded is result
    else:
        (value,) = recorded.values()
        assert np.array_equal(value, result) and value is not result
        assert output != "leaf" or value.dtype.kind == "f"


# --- an ONNX feed of (n, 1) columns -------------------------------------------------------


def test_onnx_feed_of_one_column_per_input_is_checked(scraper, iris):
    ort = pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = iris
    frame = pd.DataFrame(x, columns=list("abcd"))
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(frame, y)
    onx = skl2onnx.convert_sklearn(
        pipe, initial_types=[(c, FloatTensorType([None, 1])) for c in "abcd"],
        options={id(pipe.steps[-1][1]): {"zipmap": False}})
    session = ort.InferenceSession(onx.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    live = frame.iloc[:6].copy()
    live.loc[live.index[0], "a"] = 99.0
    feed = {c: live[[c]].to_numpy(np.float32) for c in "abcd"}
    run = inferwatch.instrument(session.run, name="iris", version="1",
                                registry=scraper.registry,
                                reference=inferwatch.Reference.from_data(frame))
    run(None, feed)
    run(None, feed)
    assert scraper.total("inferwatch_input_errors_total") == 0
    assert scraper.value("inferwatch_feature_out_of_range_total", feature="a") == 2
    assert scraper.total("inferwatch_drift_window_observations") == 12


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_n_by_1_columns_check_as_their_flat_columns(data):
    n = data.draw(st.integers(1, 30))
    column = arrays(np.float64, n, elements=st.one_of(
        st.floats(-1e6, 1e6), st.just(np.nan), st.just(np.inf), st.just(-np.inf)))
    columns = {name: data.draw(column) for name in ("a", "b")}
    checker = BatchChecker(Reference.from_data({"a": np.linspace(0, 10, 50),
                                                "b": np.linspace(-5, 5, 50)}, bins=4))
    flat = checker.check(columns)
    stood = checker.check({name: values.reshape(-1, 1) for name, values in columns.items()})
    assert stood.input_errors == flat.input_errors
    assert stood.rows == flat.rows == n
    assert stood.missing.tolist() == flat.missing.tolist()
    assert stood.out_of_range.tolist() == flat.out_of_range.tolist()
    assert stood.flat_bin_counts.tolist() == flat.flat_bin_counts.tolist()


def test_a_wider_column_is_still_the_wrong_shape():
    checker = BatchChecker(Reference.from_data({"a": [1.0, 2.0], "b": [3.0, 4.0]}))
    assert checker.check({"a": np.ones((3, 2)), "b": np.ones(3)}).input_errors == {
        "wrong_shape": 1}


# --- a CatBoost Pool ----------------------------------------------------------------------


def _numeric_frame(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"age": rng.integers(18, 80, n).astype(float),
                         "income": rng.normal(50.0, 10.0, n)})


def test_a_numeric_pool_is_checked_as_its_frame(scraper):
    frame = _numeric_frame()
    model = catboost.CatBoostClassifier(iterations=5, verbose=False,
                                        allow_writing_files=False).fit(
        frame, (frame["age"] > 40).astype(int))
    live = frame.iloc[:10].copy()
    live.loc[live.index[0], "age"] = np.nan
    live.loc[live.index[1], "income"] = 1e6
    reference = inferwatch.Reference.from_data(frame)
    wrapped = inferwatch.instrument(model, name="churn", version="1",
                                    registry=scraper.registry, reference=reference)
    proba = wrapped.predict_proba(catboost.Pool(live))
    assert np.array_equal(proba, model.predict_proba(live))
    assert scraper.total("inferwatch_input_errors_total") == 0
    assert scraper.value("inferwatch_feature_missing_total", feature="age") == 1
    assert scraper.value("inferwatch_feature_out_of_range_total", feature="income") == 1
    assert scraper.total("inferwatch_drift_window_observations") == 10


def test_a_pool_names_its_columns():
    frame = _numeric_frame(50)
    checker = BatchChecker(Reference.from_data(frame, bins=4))
    swapped = frame[["income", "age"]]
    by_frame = checker.check(frame)
    by_pool = checker.check(catboost.Pool(swapped))
    assert by_pool.input_errors == {}
    assert by_pool.flat_bin_counts.tolist() == by_frame.flat_bin_counts.tolist()
    # Unnamed columns are taken as they come, a width of another count refused.
    assert checker.check(catboost.Pool(frame.to_numpy())).flat_bin_counts.tolist() == \
        by_frame.flat_bin_counts.tolist()
    assert checker.check(catboost.Pool(frame.to_numpy()[:, :1])).input_errors == {
        "wrong_width": 1}


def test_a_large_pool_is_read_a_slice_at_a_time(monkeypatch):
    frame = _numeric_frame(BLOCK_CELLS // 2 + 7)  # more than one block of two columns
    checker = BatchChecker(Reference.from_data(frame, bins=8))
    read: list[int] = []
    pool = catboost.Pool(frame)
    real_slice = type(pool).slice

    def slice_rows(self, rows):
        read.append(len(rows))
        return real_slice(self, rows)

    monkeypatch.setattr(type(pool), "slice", slice_rows)
    by_pool = checker.check(pool)
    assert len(read) == 2 and max(read) * 2 <= BLOCK_CELLS and sum(read) == len(frame)
    by_frame = checker.check(frame)
    assert by_pool.rows == by_frame.rows == len(frame)
    assert by_pool.flat_bin_counts.tolist() == by_frame.flat_bin_counts.tolist()
    assert by_pool.missing.tolist() == by_frame.missing.tolist()


def test_a_pool_of_categories_is_no_schema_error_of_the_caller(scraper):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(18, 80, 300).astype(float),
                          "city": rng.choice(["ny", "sf", "la"], 300)})
    model = catboost.CatBoostClassifier(iterations=5, verbose=False, allow_writing_files=False,
                                        cat_features=["city"]).fit(
        frame, (frame["age"] > 40).astype(int))
    wrapped = inferwatch.instrument(model, name="churn", version="1",
                                    registry=scraper.registry,
                                    reference=inferwatch.Reference.from_data(frame))
    before = faults.internal_error_counts().get("quality", 0)
    pool = catboost.Pool(frame.iloc[:10], cat_features=["city"])
    assert np.array_equal(wrapped.predict_proba(pool), model.predict_proba(pool))
    wrapped.predict_proba(pool)
    # CatBoost keeps only hashes of the categories: nothing can be checked, and that is
    # inferwatch's shortfall (InferwatchInternalErrors), not the caller's wrong_type.
    assert scraper.total("inferwatch_input_errors_total") == 0
    assert faults.internal_error_counts().get("quality", 0) - before == 2
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 2
    assert scraper.total("inferwatch_drift_window_observations") == 0
