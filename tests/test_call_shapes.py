"""Call shapes that real models have: what reaches the model, and what becomes a label."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.prediction_classes import SMALL_INTEGER_LIMIT, class_labels
from inferwatch.core.predictions import normalize


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    return x, y


# --- request_id reaches a model only when its signature names it ------------------------

def test_pipeline_predict_proba_with_request_id(scraper):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _data()
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    model = inferwatch.instrument(pipe, name="pipe", version="1", registry=scraper.registry)
    out = model.predict_proba(x[:1], request_id="r-17")
    np.testing.assert_array_equal(out, pipe.predict_proba(x[:1]))
    inferwatch.monitor("pipe", registry=scraper.registry).record_outcome("r-17", int(out.argmax()))
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 1


def test_statsmodels_results_predict_with_request_id(scraper):
    sm = pytest.importorskip("statsmodels.api")
    x, y = _data()
    results = sm.OLS(y.astype(float), sm.add_constant(x)).fit()
    model = inferwatch.instrument(results, name="ols", version="1", registry=scraper.registry)
    exog = sm.add_constant(x)[:4]
    np.testing.assert_array_equal(model.predict(exog, request_id="r-1"), results.predict(exog))
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1


def test_keyword_catch_all_does_not_receive_request_id(scraper):
    seen = []

    def predict(x, **params):
        seen.append(params)
        return 0.5

    def named(x, request_id=None):
        seen.append({"request_id": request_id})
        return 0.5

    inferwatch.instrument(predict, name="a", registry=scraper.registry)(1, request_id="r-1")
    inferwatch.instrument(named, name="b", registry=scraper.registry)(1, request_id="r-2")
    assert seen == [{}, {"request_id": "r-2"}]


class _Forward:
    """A module-like object whose __call__ hands everything to forward()."""

    def __init__(self, takes_id: bool) -> None:
        self.seen = []
        self.forward = self._with_id if takes_id else self._plain

    def _plain(self, x):
        self.seen.append(None)
        return 0.5

    def _with_id(self, x, request_id=None):
        self.seen.append(request_id)
        return 0.5

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)


@pytest.mark.parametrize("takes_id", [False, True])
def test_forward_signature_decides_for_callable_modules(scraper, takes_id):
    net = _Forward(takes_id)
    model = inferwatch.instrument(net, name="net", registry=scraper.registry)
    model(1.0, request_id="r-9")
    assert net.seen == ["r-9" if takes_id else None]


# --- only plausible classes become labels (issue 11, item 2) -----------------------------

def test_user_data_in_outputs_is_not_a_label(scraper):
    wrapped = inferwatch.instrument(
        lambda x: {"request_id": "r-1", "user": "alice@example.com", "score": 0.7},
        name="m", version="1", registry=scraper.registry)
    wrapped(1)
    generator = inferwatch.instrument(lambda x: (i for i in range(3)), name="g", version="1",
                                      registry=scraper.registry)
    assert list(generator(1)) == [0, 1, 2]  # a generator is a stream, never a label
    assert scraper.series("inferwatch_predicted_class_total") == []
    assert scraper.value("inferwatch_invalid_predictions_total", model="m",
                         reason="unsupported_type") == 2
    assert scraper.value("inferwatch_requests_total", model="g", outcome="ok") == 1
    assert scraper.value("inferwatch_stream_items_sum", model="g") == 3
    assert scraper.value("inferwatch_prediction_sum", output="score") == pytest.approx(0.7)
    assert "alice" not in scraper.text()


def test_classes_from_classes_attribute_and_declared_list(scraper):
    class Model:
        classes_ = np.array(["fraud", "legit"])

        def predict(self, x):
            return np.array(["fraud", "legit", "alice@example.com"])

    model = inferwatch.instrument(Model(), name="m", version="1", registry=scraper.registry)
    model.predict(None)
    declared = inferwatch.instrument(lambda x: x, name="d", version="1", classes=["cat"],
                                     registry=scraper.registry)
    declared("cat")
    declared("dog")
    labels = {(s["model"], s["class"]) for s in scraper.series("inferwatch_predicted_class_total")}
    assert labels == {("m", "fraud"), ("m", "legit"), ("d", "cat")}
    assert scraper.value("inferwatch_invalid_predictions_total", model="m",
                         reason="unsupported_type") == 1
    assert scraper.value("inferwatch_invalid_predictions_total", model="d",
                         reason="unsupported_type") == 1


def test_a_categorical_outputs_categories_are_its_classes(scraper):
    """A pandas categorical (or polars Enum) declares its labels, as ``classes_`` does;
    they were counted unsupported_type unless listed in ``classes=`` as well."""
    import pandas as pd
    import polars as pl

    from inferwatch.core.prediction_classes import MAX_DECLARED_CATEGORIES

    kinds = ("cat", "dog", "cow")
    outputs = {
        "series": pd.Series(pd.Categorical(["cat", "dog"], categories=kinds)),
        "frame": pd.DataFrame({"animal": pd.Categorical(["cat", "dog"], categories=kinds)}),
        "enum": pl.Series(["cat", "dog"], dtype=pl.Enum(list(kinds))),
        # more categories than any class list: ids, not classes
        "ids": pd.Series(pd.Categorical(["cat", "dog"], categories=[
            *kinds, *map(str, range(MAX_DECLARED_CATEGORIES))])),
    }
    for name, output in outputs.items():
        model = inferwatch.instrument(lambda x, output=output: output, name=name, version="1",
                                      registry=scraper.registry)
        model(0)
    for name in ("series", "frame", "enum"):
        labels = {s["class"] for s in scraper.series("inferwatch_predicted_class_total")
                  if s["model"] == name}
        assert labels == {"cat", "dog"}, name
        assert scraper.total("inferwatch_invalid_predictions_total", model=name) == 0, name
    assert scraper.value("inferwatch_invalid_predictions_total", model="ids",
                         reason="unsupported_type") == 2


def test_small_integers_and_bools_are_classes_large_ones_are_not(scraper):
    wrapped = inferwatch.instrument(lambda x: x, name="m", version="1", registry=scraper.registry)
    wrapped(np.array([1, 0, -1, SMALL_INTEGER_LIMIT, 4_111_111_111_111]))
    wrapped(True)
    wrapped(7)
    wrapped(10**30)
    assert {s["class"] for s in scraper.series("inferwatch_predicted_class_total")} == {
        "1", "0", "-1", "True", "7"}
    assert scraper.value("inferwatch_invalid_predictions_total",
                         reason="unsupported_type") == 3


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.one_of(st.text(), st.integers(), st.booleans(), st.floats(), st.binary(),
                       st.lists(st.integers(), max_size=5),
                       st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)))
def test_a_label_is_always_a_plausible_class(value):
    known = {"cat", "dog"}
    prediction = normalize(value, known_classes=known)
    if prediction.classes is None:
        return
    for label in class_labels(prediction.classes):
        plausible = label in known or label in ("True", "False") or (
            label.lstrip("-").isdigit() and abs(int(label)) < SMALL_INTEGER_LIMIT)
        assert plausible, label


# --- what is recorded is what the call saw ------------------------------------------------

def test_refilled_output_buffer_is_recorded_per_call(scraper):
    buffer = np.zeros(1)

    def model(i):
        buffer[0] = i / 1000.0  # a runtime that refills one output array on every call
        return buffer

    wrapped = inferwatch.instrument(model, name="m", version="1", registry=scraper.registry)
    for i in range(1000):
        wrapped(i)
    assert scraper.value("inferwatch_prediction_sum", output="value") == pytest.approx(499.5)
    assert scraper.value("inferwatch_prediction", output="value",
                         quantile="0.5") == pytest.approx(0.4995, rel=0.02)


def test_refilled_probability_buffer_mixed_with_other_shapes_is_recorded_per_call(scraper):
    buffer = np.zeros((1, 2))

    class Runtime:
        def predict_proba(self, i):
            if i % 10 == 9:
                return np.array([[0.5, 0.5], [0.5, 0.5]])  # now and then another shape
            buffer[0] = (0.9, 0.1) if i % 2 else (0.2, 0.8)  # refilled on every call
            return buffer

    wrapped = inferwatch.instrument(Runtime(), name="m", version="1",
                                    registry=scraper.registry)
    for i in range(100):
        wrapped.predict_proba(i)
    buffer[0] = (0.0, 0.0)
    classes = {s.labels["class"]: s.value for s in scraper.samples()
               if s.name == "inferwatch_predicted_class_total"}
    # 40 odd calls say 0, 50 even ones 1, and 10 calls of two tied rows say 0 (the first).
    assert classes == {"0": 40.0 + 20.0, "1": 50.0}
    assert scraper.value("inferwatch_batch_size_sum") == 90 + 20


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix
@pytest.mark.parametrize("path", ["fast", "reference", "request_id", "async"])
@pytest.mark.parametrize("kind", ["matrix", "masked"])
def test_refilled_ndarray_subclass_output_is_recorded_per_call(scraper, kind, path):
    """A runtime refilling one np.matrix or masked output: each call is recorded as it
    returned, on every path (a subclass was kept by reference and read at drain time)."""
    buffer = np.asmatrix(np.zeros((1, 1))) if kind == "matrix" else np.ma.masked_array(
        np.zeros(1), mask=[False])

    def model(x, i):
        buffer[0] = i / 1000.0
        return buffer

    options = {}
    if path == "reference":
        options["reference"] = inferwatch.Reference.from_data(
            np.random.default_rng(0).normal(size=(50, 2)))
    if path == "async":
        async def async_model(x, i):
            return model(x, i)
        wrapped = inferwatch.instrument(async_model, name="m", version="1",
                                        registry=scraper.registry)

        async def calls():
            for i in range(1000):
                await wrapped(np.zeros((1, 2)), i)
        asyncio.run(calls())
    else:
        wrapped = inferwatch.instrument(model, name="m", version="1",
                                        registry=scraper.registry, **options)
        keywords = {"request_id": "r"} if path == "request_id" else {}
        for i in range(1000):
            wrapped(np.zeros((1, 2)), i, **keywords)
    buffer[0] = 5.0
    assert scraper.value("inferwatch_prediction_sum", output="value") == pytest.approx(499.5)
    assert scraper.value("inferwatch_prediction", output="value",
                         quantile="0.5") == pytest.approx(0.4995, rel=0.02)


def test_reused_input_buffer_keeps_each_calls_missing_values(scraper):
    reference = inferwatch.Reference.from_data(np.random.default_rng(0).normal(size=(50, 2)))
    wrapped = inferwatch.instrument(lambda x: 0.5, name="m", version="1", reference=reference,
                                    registry=scraper.registry)
    buffer = np.zeros((1, 2))
    for i in range(10):
        buffer[0, 0] = np.nan if i % 2 else 1.0  # the caller refills one input array
        wrapped(buffer)
    buffer[0, 0] = 1.0
    assert scraper.value("inferwatch_feature_missing_total", feature="x0") == 5


@pytest.mark.torch
@pytest.mark.parametrize("path", ["fast", "request_id", "async"])
def test_a_reused_cpu_tensor_input_is_checked_as_each_call_saw_it(scraper, path):
    """Serving code refilling one staging tensor per batch: each call's input is checked as
    it was when the call ran, on the fast path, the path of calls with a request id, and an
    async model's."""
    import asyncio

    torch = pytest.importorskip("torch")
    reference = inferwatch.Reference.from_data(np.random.default_rng(0).normal(size=(50, 2)))

    def model(x):
        return x.sum(dim=1)

    async def async_model(x):
        return x.sum(dim=1)

    wrapped = inferwatch.instrument(async_model if path == "async" else model, name="m",
                                    version="1", reference=reference,
                                    registry=scraper.registry)
    staging = torch.zeros((2, 2), requires_grad=path == "fast")
    for i in range(10):
        with torch.no_grad():
            staging[0, 0] = float("nan") if i % 2 else 1.0
        if path == "async":
            asyncio.run(wrapped(staging))
        elif path == "request_id":
            wrapped(staging, request_id=f"r{i}")
        else:
            wrapped(staging)
    with torch.no_grad():
        staging.fill_(float("nan"))  # refilled once more after the last call
    assert scraper.value("inferwatch_feature_missing_total", feature="x0") == 5
    assert scraper.value("inferwatch_feature_missing_total", feature="x1") is None
    assert scraper.value("inferwatch_drift_window_observations") == 20


def test_inputs_of_failed_calls_stay_out_of_the_drift_window(scraper):
    reference = inferwatch.Reference.from_data(np.zeros((20, 1)))

    def model(x):
        if np.isnan(x).any():
            raise ValueError("missing input")
        return 0.5

    wrapped = inferwatch.instrument(model, name="m", version="1", reference=reference,
                                    registry=scraper.registry)
    wrapped(np.zeros((3, 1)))
    with pytest.raises(ValueError):
        wrapped(np.full((4, 1), np.nan))
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    mon.drain()
    assert mon.features.drift.rows(now=time.time()) == 3
    # ... while its missing values are still counted: bad input is what made it fail
    assert scraper.value("inferwatch_feature_missing_total", feature="x0") == 4


def test_a_reference_keeps_calls_on_the_fast_path_with_their_inputs(scraper):
    from inferwatch.core.call_paths import SLOW, WITH_INPUTS

    reference = inferwatch.Reference.from_data(np.zeros((20, 1)))

    async def scored(x):
        return 0.5

    def tokens(x):
        yield from ("a", "b")

    plain = inferwatch.instrument(lambda x: 0.5, name="m", version="1", reference=reference,
                                  registry=scraper.registry)
    awaited = inferwatch.instrument(scored, name="m", version="1", registry=scraper.registry)
    streamed = inferwatch.instrument(lambda x: tokens(x), name="m", version="1",
                                     registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    assert mon.path is WITH_INPUTS
    missing = np.full((2, 1), np.nan)
    plain(missing)                      # fast path, input kept
    plain(missing, request_id="r-1")    # slow path, in the same drain
    asyncio.run(awaited(missing))       # async fast path
    assert list(streamed(missing)) == ["a", "b"]  # a stream keeps its input too
    assert scraper.value("inferwatch_feature_missing_total", feature="x0") == 8
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 4
    mon.configure(request_id=lambda x: "fixed")
    assert mon.path is SLOW  # request ids need the slow path's record


# --- chaining and framework ---------------------------------------------------------------

def test_methods_returning_self_return_the_wrapper(scraper):
    from sklearn.linear_model import LogisticRegression

    x, y = _data()
    model = inferwatch.instrument(LogisticRegression(), name="m", version="1",
                                  registry=scraper.registry)
    fitted = model.set_params(C=0.5).fit(x, y)
    assert fitted is model
    fitted.predict(x[:5])
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1
    assert model.get_params()["C"] == 0.5  # other methods still answer as the model's


def test_an_instrumented_estimator_is_fitted_when_its_model_is(scraper):
    """scikit-learn asks ``check_is_fitted``: an instrumented estimator answers as its
    model, so a Pipeline whose last step is one fits, predicts and records; an unfitted one
    still raises NotFittedError, and clones are plain estimators (a grid search's scoring
    calls are not production traffic)."""
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils.validation import check_is_fitted

    x, y = _data()
    step = inferwatch.instrument(LogisticRegression(), name="m", version="1",
                                 registry=scraper.registry)
    with pytest.raises(NotFittedError):
        check_is_fitted(step)
    pipeline = Pipeline([("scale", StandardScaler()), ("model", step)]).fit(x, y)
    check_is_fitted(step)
    plain = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(x, y)
    np.testing.assert_array_equal(pipeline.predict_proba(x[:6]), plain.predict_proba(x[:6]))
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1
    assert scraper.value("inferwatch_batch_size_sum") == 6
    assert not hasattr(clone(step), "_inferwatch_monitor")


def test_framework_comes_from_the_base_classes(scraper):
    from sklearn.base import BaseEstimator

    class MyEstimator(BaseEstimator):
        def predict(self, x):
            return np.zeros(len(x))

    MyEstimator.__module__ = "__main__"
    inferwatch.instrument(MyEstimator(), name="m", version="1", registry=scraper.registry)
    assert scraper.value("inferwatch_model_info", framework="sklearn") == 1


# --- more shapes ----------------------------------------------------------------------------

def test_declared_classification_counts_float_labels_as_classes(scraper):
    wrapped = inferwatch.instrument(lambda x: np.array([0.0, 1.0, 1.0]), name="m", version="1",
                                    task="classification", registry=scraper.registry)
    wrapped(1)
    assert {s["class"] for s in scraper.series("inferwatch_predicted_class_total")} == {"0", "1"}
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "1"}) == 2
    assert scraper.value("inferwatch_prediction_count", output="value") is None


def test_multi_output_classifier(scraper):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multioutput import MultiOutputClassifier

    x, y = _data()
    ys = np.column_stack([y, 1 - y])
    clf = MultiOutputClassifier(LogisticRegression()).fit(x, ys)
    model = inferwatch.instrument(clf, name="m", version="1", registry=scraper.registry)
    model.predict_proba(x[:7])
    model.predict(x[:7])
    assert scraper.value("inferwatch_batch_size_sum") == 14
    assert scraper.total("inferwatch_invalid_predictions_total") == 0
    labels = {s["class"] for s in scraper.series("inferwatch_predicted_class_total")}
    assert labels <= {"0:0", "0:1", "1:0", "1:1"}
    assert scraper.total("inferwatch_predicted_class_total") == 4 * 7  # 2 calls x 2 outputs


def test_multi_output_regressor_in_unit_range_is_not_a_classifier(scraper):
    from sklearn.linear_model import LinearRegression

    x, _ = _data()
    shares = np.column_stack([np.full(60, 0.3), np.full(60, 0.7)])
    model = inferwatch.instrument(LinearRegression().fit(x, shares), name="m", version="1",
                                  registry=scraper.registry)
    model.predict(x[:5])
    assert scraper.series("inferwatch_predicted_class_total") == []
    assert scraper.value("inferwatch_prediction_count", output="1") == 5


def test_nullable_integer_series_are_classes_with_missing_counted(scraper):
    pd = pytest.importorskip("pandas")
    wrapped = inferwatch.instrument(lambda x: pd.Series([1, pd.NA, 0, 1], dtype="Int64"),
                                    name="m", version="1", registry=scraper.registry)
    wrapped(1)
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "1"}) == 2
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "0"}) == 1
    assert scraper.value("inferwatch_invalid_predictions_total", reason="nan") == 1
    assert scraper.value("inferwatch_batch_size_sum") == 4


def test_tuple_and_dict_outputs_count_rows_once(scraper):
    wrapped = inferwatch.instrument(
        lambda x: (np.zeros((5, 3)), np.ones((5, 8))), name="t", version="1",
        registry=scraper.registry)
    wrapped(1)
    named = inferwatch.instrument(
        lambda x: {"logits": np.zeros((5, 3)), "embedding": np.ones((5, 8))}, name="d",
        version="1", registry=scraper.registry)
    named(1)
    assert scraper.value("inferwatch_batch_size_sum", model="t") == 5
    assert scraper.value("inferwatch_batch_size_sum", model="d") == 5


@pytest.mark.torch
def test_torch_single_sample_tuple_outputs_and_chaining(scraper):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.linear(x)

    Net.__module__ = "__main__"
    net = inferwatch.instrument(Net(), name="net", version="1", registry=scraper.registry)
    assert net.eval() is net and net.to("cpu") is net and net.train(False) is net
    net(torch.zeros(3))  # one unbatched sample
    net(torch.zeros((4, 3)))
    assert scraper.value("inferwatch_batch_size_sum") == 5
    assert scraper.value("inferwatch_model_info", framework="torch") == 1

    class TwoHeads(torch.nn.Module):
        def forward(self, x):
            return x.sum(dim=1), x * 2

    heads = inferwatch.instrument(TwoHeads(), name="heads", version="1",
                                  registry=scraper.registry)
    heads(torch.ones((6, 3)))
    assert scraper.value("inferwatch_batch_size_sum", model="heads") == 6


def test_xgboost_margins_have_their_own_output(scraper):
    xgb = pytest.importorskip("xgboost")
    x, y = _data()
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(x, label=y),
                        num_boost_round=5)
    model = inferwatch.instrument(booster, name="m", version="1", registry=scraper.registry)
    dm = xgb.DMatrix(x[:8])
    np.testing.assert_array_equal(model.predict(dm), booster.predict(dm))
    np.testing.assert_array_equal(model.predict(dm, output_margin=True),
                                  booster.predict(dm, output_margin=True))
    assert scraper.value("inferwatch_prediction_count", output="value") == 8
    assert scraper.value("inferwatch_prediction_count", output="margin") == 8
    assert scraper.value("inferwatch_batch_size_sum") == 16
    # inplace_predict, from an array as xgboost's serving code calls it, and its margins
    np.testing.assert_array_equal(model.inplace_predict(x[:8]), booster.inplace_predict(x[:8]))
    np.testing.assert_array_equal(model.inplace_predict(x[:8], predict_type="margin"),
                                  booster.inplace_predict(x[:8], predict_type="margin"))
    assert scraper.value("inferwatch_prediction_count", output="value") == 16
    assert scraper.value("inferwatch_prediction_count", output="margin") == 16
    assert scraper.value("inferwatch_batch_size_sum") == 32


def _recorded(results: list, drain_each: bool, **options) -> tuple[dict, dict]:
    """Counters and histograms of a function answering `results` in turn, drained once at the
    end or after every call (latency histograms: their total count only; which bucket a call
    lands in, and their sums, are timings)."""
    from inferwatch.core.registry import Registry

    registry = Registry(drain_interval=3600)
    answers = iter(results)
    fn = inferwatch.instrument(lambda x: next(answers), name="m", version="1",
                               registry=registry, **options)
    for _ in results:
        fn(0)
        if drain_each:
            registry.drain()
    registry.drain()
    state = registry.monitor("m", "1").state
    histograms = {(metric, key): h.count if "duration" in metric
                  else (h.counts.tolist(), h.sum)
                  for metric, series in state.histograms.items()
                  for key, h in series.items()}
    counters = {metric: dict(series) for metric, series in state.counters.items()}
    registry.close()
    return counters, histograms


def _assert_same_records(stacked: tuple[dict, dict], one_by_one: tuple[dict, dict]) -> None:
    assert stacked[0] == one_by_one[0]
    assert stacked[1].keys() == one_by_one[1].keys()
    for key, value in stacked[1].items():
        other = one_by_one[1][key]
        if isinstance(value, tuple):
            assert value[0] == other[0], key
            assert value[1] == pytest.approx(other[1], rel=1e-9, abs=1e-9, nan_ok=True), key
        else:
            assert value == other, key


def _matrices(probabilities: bool):
    rows = st.integers(1, 3)
    width = st.integers(1, 4)

    def build(shape, seed):
        values = np.random.default_rng(seed).random(shape)
        if probabilities:
            values = values / values.sum(axis=1, keepdims=True)
        return values

    return st.tuples(width, st.integers(2, 20), st.integers(0, 2**32 - 1), rows).map(
        lambda t: [build((t[3], t[0]), t[2] + i) for i in range(t[1])])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans().flatmap(_matrices))
def test_2d_results_of_a_function_record_the_same_stacked_as_one_by_one(results) -> None:
    """A plain function returning a 2-D float matrix per call (probabilities or several
    outputs): the drain normalises the calls as one stacked matrix; what it records equals
    draining after every call."""
    _assert_same_records(_recorded(results, drain_each=False),
                         _recorded(results, drain_each=True))

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from(["price", "eta", "score"]),
                                st.floats(allow_nan=True, allow_infinity=True),
                                min_size=1, max_size=3), min_size=2, max_size=15),
       st.sampled_from(["auto", "regression"]),
       st.sampled_from([None, 3, np.float64(0.25), True]), st.integers(0, 14))
def test_dict_results_record_the_same_stacked_as_one_by_one(results, task, odd, at) -> None:
    """Dicts of named float outputs, one per call: the drain records them as one dict of
    columns when all have the same names, in any order, and every value is a float; what it
    records equals draining after every call (nan and inf counted as invalid either way)."""
    if odd is not None:  # one value that is not a Python float: call by call, as it would be
        one = results[at % len(results)]
        one[next(iter(one))] = odd
    _assert_same_records(_recorded(results, drain_each=False, task=task),
                         _recorded(results, drain_each=True, task=task))


_ARRAY_RESULTS = st.one_of(
    st.floats(0, 1),
    st.integers(1, 4).flatmap(lambda n: st.lists(st.floats(-5, 5), min_size=n, max_size=n)
                              .map(np.array)),
    st.sampled_from([np.array([0.2]), np.array([[0.3, 0.7]]), np.array([[0.9, 0.1]]),
                     np.array([1, 0, 1]), np.array([2]), np.array([0.5], dtype=np.float32),
                     np.array(["cat", "dog"], dtype=object), np.zeros((0,)),
                     np.array([[1, 0]]), np.array(3.5)]))


# Process-wide or per-construction series: not what the two ways of recording differ in.
_NOT_COMPARED = ("inferwatch_model_info", "inferwatch_internal_errors_total")


class _Replay:
    """A model answering call i with the i-th result given."""

    def __init__(self, results: list) -> None:
        self.results = results

    def predict(self, i: int) -> object:
        return self.results[i]

    def predict_proba(self, i: int) -> object:
        return self.results[i]


def _compared_samples(scraper) -> list:
    """The samples two ways of recording must agree on, sorted (NaN == NaN here)."""
    return sorted((s.name, tuple(sorted(s.labels.items())),
                   "nan" if s.value != s.value else s.value)
                  for s in scraper.samples()
                  if "duration" not in s.name and "timestamp" not in s.name
                  and s.name not in _NOT_COMPARED)


def _replayed(results: list, through_wrapper: bool, proba: bool):
    from conftest import Scraper

    scraper = Scraper(drain_interval=3600)
    try:
        if through_wrapper:
            model = inferwatch.instrument(_Replay(results), name="m", version="1",
                                          registry=scraper.registry)
            call = model.predict_proba if proba else model.predict
            for i in range(len(results)):
                call(i)
        else:  # the reference: each result as it is, no snapshot of its bytes
            mon = inferwatch.monitor("m", "1", registry=scraper.registry)
            for result in results:
                mon.record_call(0.001, result, probabilities=proba)
        return _compared_samples(scraper)
    finally:
        scraper.registry.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(results=st.lists(_ARRAY_RESULTS, min_size=1, max_size=30), proba=st.booleans())
def test_array_results_drain_to_what_the_arrays_themselves_give(results, proba):
    """The request path keeps a small array's bytes, not a copy; whatever mix of shapes,
    dtypes and scalars one drain holds, the state is the one the arrays would give."""
    assert _replayed(results, True, proba) == _replayed(results, False, proba)


# --- inputs kept as their bytes ---------------------------------------------------------------

_WIDTH = 3
_INPUT_VALUES = st.one_of(st.floats(-4, 4), st.just(float("nan")), st.just(float("inf")))
_INPUTS = st.one_of(
    st.integers(0, 3).flatmap(lambda rows: st.lists(
        st.lists(_INPUT_VALUES, min_size=_WIDTH, max_size=_WIDTH), min_size=rows,
        max_size=rows).map(lambda rows_: np.array(rows_, dtype=np.float64).reshape(-1, _WIDTH))),
    st.sampled_from([
        np.array([0.1, 9.0, np.nan]),  # one row as a 1-D array
        np.array([[1, 2, 3], [4, 5, 6]]),  # integers
        np.array([[0.5, np.nan, 2.0]], dtype=np.float32),
        np.array([[0.5, 1.0, 2.0]], dtype=object),
        np.array([[0.5, 1.0]]),  # the wrong width
        np.zeros((2, 0)),
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        np.arange(12.0).reshape(2, 6)[:, ::2],  # a view that is not contiguous
        [[1.0, np.nan, 3.0]],
        {"x0": 1.0, "x1": float("nan"), "x2": 3.0},
    ]))


def _with_reference(inputs: list, results: list, fast: bool):
    """The state after calls with `inputs` (each refilled by the caller right after its call),
    on the fast path or, with a keyword, on the slow one."""
    from conftest import Scraper

    scraper = Scraper(drain_interval=3600)
    calls = iter(results)

    def model(x, flag=None):
        return next(calls)

    try:
        reference = inferwatch.Reference.from_data(
            np.random.default_rng(0).normal(size=(60, _WIDTH)))
        wrapped = inferwatch.instrument(model, name="m", version="1", reference=reference,
                                        registry=scraper.registry)
        for x in inputs:
            buffer = x.copy() if isinstance(x, (np.ndarray, list, dict)) else x
            wrapped(buffer) if fast else wrapped(buffer, flag=1)
            if isinstance(buffer, np.ndarray) and buffer.size and buffer.dtype != object:
                buffer.fill(7)  # the caller reuses its buffer: the call saw the old values
        return _compared_samples(scraper)
    finally:
        scraper.registry.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=st.lists(_INPUTS, min_size=1, max_size=12), data=st.data())
def test_inputs_kept_as_bytes_check_as_the_inputs_themselves(inputs, data):
    """A small numeric input goes to the drain as its bytes: whatever mix of shapes, dtypes
    and kinds one drain holds, and however the caller refills its buffers after each call,
    the quality and drift state is the one the slow path (which copies each input) gives."""
    results = data.draw(st.lists(st.one_of(st.floats(0, 1), st.just(np.array([0.25])),
                                           st.just(np.array(["cat"], dtype=object))),
                                 min_size=len(inputs), max_size=len(inputs)))
    assert _with_reference(inputs, results, fast=True) == \
        _with_reference(inputs, results, fast=False)


def test_sparse_inputs_are_checked_as_the_dense_rows_they_stand_for(scraper):
    """A model fed scipy.sparse rows (a vectoriser's output) with a reference profile: the
    missing, out-of-range and drift counts equal those of the same rows fed dense, and the
    rows of a call that raised stay out of the drift window."""
    import scipy.sparse as sp

    from inferwatch.quality.reference import Reference

    reference = Reference.from_data(sp.random(500, 6, density=0.4, random_state=3,
                                              format="csr"))
    rows = sp.random(30, 6, density=0.4, random_state=4, format="lil")
    rows[0, 1], rows[5, 2], rows[9, 0] = np.nan, np.nan, 40.0  # missing, out of range
    rows = rows.tocsr()

    def score(x):
        if x.shape[0] == 2:
            raise ValueError("a model that rejects this batch")
        return np.zeros(x.shape[0])

    def feed(name, convert):
        model = inferwatch.instrument(score, name=name, version="1", reference=reference,
                                      registry=scraper.registry)
        for i in range(20):
            model(convert(rows[i:i + 1]))
        model(convert(rows[20:28]))
        with pytest.raises(ValueError):
            model(convert(rows[28:30]))

    feed("sparse", lambda block: block)
    feed("dense", lambda block: block.toarray())
    for metric in ("inferwatch_feature_missing_total", "inferwatch_feature_out_of_range_total"):
        sparse_counts = {s.labels["feature"]: s.value for s in scraper.samples()
                         if s.name == metric and s.labels["model"] == "sparse"}
        dense_counts = {s.labels["feature"]: s.value for s in scraper.samples()
                        if s.name == metric and s.labels["model"] == "dense"}
        assert sparse_counts == dense_counts and sum(sparse_counts.values()) >= 1, metric
    for model in ("sparse", "dense"):
        assert scraper.value("inferwatch_drift_window_observations", model=model) == 28
        assert scraper.total("inferwatch_input_errors_total", model=model) == 0
    drift = {(s.labels["model"], s.labels["feature"], s.labels.get("method")): s.value
             for s in scraper.samples() if s.name == "inferwatch_feature_drift"}
    assert drift and all(drift[("sparse", *key[1:])] == value
                         for key, value in drift.items() if key[0] == "dense")


def test_a_drains_sparse_inputs_of_one_width_are_checked_as_one_matrix():
    import scipy.sparse as sp

    from inferwatch.quality.input_batches import batches

    one_row = [sp.csr_matrix(np.full((1, 3), float(i))) for i in range(4)]
    other_width = sp.csr_matrix(np.ones((2, 5)))
    read = batches([*one_row, other_width, sp.coo_matrix(np.ones((1, 3)))])
    assert [b.shape for b in read] == [(2, 5), (5, 3)]
    assert read[1].toarray()[:4, 0].tolist() == [0.0, 1.0, 2.0, 3.0]


def _tiny_text_classifier():
    """A Hugging Face text-classification pipeline built offline: a one-layer BERT with
    random weights and a word-level tokenizer of eight words."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "good": 4, "bad": 5,
             "movie": 6, "film": 7}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]")
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1})
    model = transformers.BertForSequenceClassification(config).eval()
    return transformers.pipeline("text-classification", model=model, tokenizer=fast,
                                 device="cpu")


@pytest.mark.torch
def test_a_hugging_face_pipeline_records_its_labels_scores_and_confidence(scraper):
    """Its answer is a list of {"label", "score"} per text (every label's, best first, with
    top_k=None): the classes come from the model's id2label, the scores are an output, and
    every label's score per text is a probability row with its confidence."""
    pytest.importorskip("torch")
    pipe = _tiny_text_classifier()
    texts = ["good movie", "bad film", "good", "bad bad movie"]
    instrumented = inferwatch.instrument(pipe, name="hf", version="1",
                                         registry=scraper.registry)
    assert instrumented(texts) == pipe(texts)
    assert instrumented("good film") == pipe("good film")
    every_label = instrumented(texts, top_k=None)
    assert every_label == pipe(texts, top_k=None)
    top = [answer["label"] for answer in pipe(texts)] + [pipe("good film")[0]["label"]]
    top += [max(row, key=lambda entry: entry["score"])["label"] for row in every_label]
    classes = {s.labels["class"]: s.value for s in scraper.samples()
               if s.name == "inferwatch_predicted_class_total"}
    assert classes == {label: float(top.count(label)) for label in set(top)}
    assert scraper.value("inferwatch_prediction_count", output="score") == 5
    assert scraper.value("inferwatch_prediction_confidence_count") == 4
    assert scraper.value("inferwatch_batch_size_sum") == 9
    assert scraper.total("inferwatch_invalid_predictions_total") == 0
    assert scraper.value("inferwatch_model_info", framework="transformers") == 1


def test_a_method_decorated_in_its_class_checks_its_input_not_its_instance(scraper):
    """``@instrument`` on a method where it is defined: the call's first argument is the
    instance, its input the second. Features, events and token counts read the input, for
    sync, async and generator methods; a function whose first parameter is no ``self`` (a
    static method, a nested function) still reads its first argument."""
    import asyncio

    from inferwatch.core.call_input import input_position

    reference = inferwatch.Reference.from_data(np.random.default_rng(0).normal(size=(50, 2)))
    registry = scraper.registry

    class Service:
        @inferwatch.instrument(name="sync", version="1", reference=reference,
                               registry=registry)
        def predict(self, x):
            return np.zeros(len(x))

        @inferwatch.instrument(name="async", version="1", reference=reference,
                               registry=registry)
        async def apredict(self, x):
            return np.zeros(len(x))

        @inferwatch.instrument(name="chat", version="1", registry=registry,
                               count_tokens=lambda text: len(text.split()))
        def generate(self, prompt):
            yield from prompt.split()

        @staticmethod
        @inferwatch.instrument(name="static", version="1", reference=reference,
                               registry=registry)
        def score(x):
            return np.zeros(len(x))

    rows = np.array([[np.nan, 0.1], [0.2, np.nan], [np.nan, 0.3]])
    service = Service()
    service.predict(rows)
    service.predict(rows, request_id="r-1")  # the slow path reads it alike
    asyncio.run(service.apredict(rows))
    Service.score(rows)
    assert list(service.generate("three short words")) == ["three", "short", "words"]
    for name, calls in (("sync", 2), ("async", 1), ("static", 1)):
        assert scraper.value("inferwatch_feature_missing_total", model=name,
                             feature="x0") == 2 * calls
        assert scraper.value("inferwatch_drift_window_observations", model=name) == 3 * calls
        assert scraper.total("inferwatch_input_errors_total", model=name) == 0
    assert scraper.value("inferwatch_tokens_total", model="chat", kind="input") == 3

    def nested(self_like, x):
        return x

    assert input_position(nested) == 0
    assert input_position(Service.__dict__["score"].__func__) == 0


def test_an_xgboost_dmatrix_input_is_checked_with_absent_values_missing(scraper):
    """``Booster.predict(DMatrix)`` with a reference: a DMatrix keeps no missing value and
    xgboost reads an absent one as missing, so its rows are checked as the matrix it was
    built from, NaN included; feature names in another order are matched by name."""
    xgb = pytest.importorskip("xgboost")
    import pandas as pd

    x, y = _data()
    names = [f"f{j}" for j in range(x.shape[1])]
    booster = xgb.train({"objective": "binary:logistic"},
                        xgb.DMatrix(x, label=y, feature_names=names), num_boost_round=3)
    reference = inferwatch.Reference.from_data(pd.DataFrame(x, columns=names))
    model = inferwatch.instrument(booster, name="m", version="1", reference=reference,
                                  registry=scraper.registry)
    rows = x[:6].copy()
    rows[0, 1], rows[3, 1], rows[4, 2] = np.nan, np.nan, np.nan
    rows[5, 0] = 1e6  # out of range
    model.predict(xgb.DMatrix(rows, feature_names=names))
    reordered = pd.DataFrame(rows, columns=names)[names[::-1]]
    booster_reordered = booster.predict(xgb.DMatrix(reordered), validate_features=False)
    assert booster_reordered.shape == (6,)
    model.predict(xgb.DMatrix(reordered), validate_features=False)
    missing = {s.labels["feature"]: s.value for s in scraper.samples()
               if s.name == "inferwatch_feature_missing_total"}
    assert missing == {"f1": 4.0, "f2": 2.0}
    assert scraper.value("inferwatch_feature_out_of_range_total", feature="f0") == 2
    assert scraper.value("inferwatch_drift_window_observations") == 12
    assert scraper.total("inferwatch_input_errors_total") == 0


# --- ndarray subclasses -----------------------------------------------------------------------

def _matrix(array) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(array)


@pytest.mark.parametrize("proba", [False, True])
def test_matrix_and_masked_outputs_record_as_the_plain_arrays_they_hold(proba):
    """np.matrix (``.todense()``, a sparse matrix's ``.mean(axis=1)``) once failed the drain
    (its ravel() stays 2-D); a masked array's masked entries were read as their data."""
    scores = np.array([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    masked = np.ma.masked_array(scores[:, 1], mask=[False, True, False])
    cases = [
        (_matrix(scores), scores),
        (_matrix(scores[:, :1]), scores[:, :1]),
        (masked, np.array([0.8, np.nan, 0.9])),
        (np.ma.masked_array(scores), scores),  # nothing masked
    ]
    for subclass, plain in cases:
        if proba and subclass.ndim == 1:
            continue
        assert _replayed([subclass] * 3, True, proba) == _replayed([plain] * 3, True, proba)


def test_masked_input_entries_count_as_missing_against_a_reference(scraper):
    reference = inferwatch.Reference.from_data(np.random.default_rng(0).normal(size=(60, 3)),
                                               feature_names=["a", "b", "c"])
    wrapped = inferwatch.instrument(lambda x: np.zeros(len(x)), name="m", version="1",
                                    reference=reference, registry=scraper.registry)
    rows = np.arange(15.0).reshape(5, 3)
    wrapped(np.ma.masked_array(rows, mask=np.eye(5, 3, dtype=bool)))
    wrapped(_matrix(rows))
    for feature in ("a", "b", "c"):
        assert scraper.value("inferwatch_feature_missing_total", model="m",
                             feature=feature) == 1
    assert scraper.value("inferwatch_input_errors_total", model="m") in (None, 0)
