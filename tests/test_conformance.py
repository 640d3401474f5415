"""The conformance matrix: every model kind people deploy, every call shape it supports.

Each model is trained here on data that ships with scikit-learn (iris, diabetes). For each
kind, method and way of calling it (plain, ``request_id=``, with a reference profile, with an
event log, inside ``mon.request()``), on one row and on a batch:

- the result is the unwrapped call's result, and the model's exceptions pass through;
- ``requests_total``, the rows in ``batch_size``, the class counts and the missing counts
  are exact;
- confidence quantiles are within the sketch's stated accuracy;
- nothing reaches the model that the caller did not pass.

torch cases are marked ``torch`` and run by ``make test-torch``; every other library is in
the ``test`` extra.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import inferwatch

VARIANTS = ("plain", "request_id", "reference", "events", "in_request")


@dataclasses.dataclass
class Kind:
    """One model kind: how to build it and how each of its methods is called."""

    name: str
    build: Callable[[], tuple[Any, Any, Any]]  # -> (model, batch input, one-row input)
    methods: tuple[str, ...]
    classes: bool  # the method's output is class labels or probabilities
    marks: tuple = ()
    output: str = "value"  # where a regressor's values are recorded
    options: dict = dataclasses.field(default_factory=dict)  # instrument() options it needs

    def model(self) -> tuple[Any, Any, Any]:
        """Trained once per test session: the matrix calls each kind many times."""
        built = _BUILT.get(self.name)
        if built is None:
            built = _BUILT[self.name] = self.build()
        return built


_BUILT: dict[str, tuple[Any, Any, Any]] = {}


def _iris():
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data.astype(np.float64), data.target


def _diabetes():
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    return data.data.astype(np.float64), data.target


def _sklearn_estimator():
    from sklearn.linear_model import LogisticRegression

    x, y = _iris()
    return LogisticRegression(max_iter=500).fit(x, y), x[:40], x[:1]


def _sklearn_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _iris()
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y), x[:40], x[:1]


def _column_transformer():
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x, y = _iris()
    frame = pd.DataFrame(x, columns=["sl", "sw", "pl", "pw"])
    frame["size"] = np.where(frame["pl"] > 4, "big", "small")
    pre = ColumnTransformer([("num", StandardScaler(), ["sl", "sw", "pl", "pw"]),
                             ("cat", OneHotEncoder(), ["size"])])
    model = make_pipeline(pre, LogisticRegression(max_iter=500)).fit(frame, y)
    return model, frame.iloc[:40], frame.iloc[:1]


def _lightgbm_sklearn():
    lgb = pytest.importorskip("lightgbm")
    x, y = _iris()
    model = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(x, y)
    return model, x[:40], x[:1]


def _lightgbm_booster():
    lgb = pytest.importorskip("lightgbm")
    x, y = _diabetes()
    booster = lgb.train({"objective": "regression", "verbose": -1}, lgb.Dataset(x, y),
                        num_boost_round=10)
    return booster, x[:40], x[:1]


def _xgboost_sklearn():
    xgb = pytest.importorskip("xgboost")
    x, y = _iris()
    return xgb.XGBClassifier(n_estimators=10).fit(x, y), x[:40], x[:1]


def _xgboost_booster():
    xgb = pytest.importorskip("xgboost")
    x, y = _iris()
    booster = xgb.train({"objective": "reg:squarederror"}, xgb.DMatrix(x, label=y),
                        num_boost_round=5)
    return booster, x[:40], x[:1]


def _catboost():
    catboost = pytest.importorskip("catboost")
    x, y = _iris()
    model = catboost.CatBoostClassifier(iterations=10, verbose=False,
                                        allow_writing_files=False).fit(x, y)
    return model, x[:40], x[:1]


def _statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    x, y = _diabetes()
    exog = sm.add_constant(x)
    return sm.OLS(y, exog).fit(), exog[:40], exog[:1]


def _onnx_session():
    pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    import onnxruntime
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LinearRegression

    x, y = _diabetes()
    onx = skl2onnx.convert_sklearn(LinearRegression().fit(x, y),
                                   initial_types=[("X", FloatTensorType([None, x.shape[1]]))])
    session = onnxruntime.InferenceSession(onx.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    x32 = x.astype(np.float32)
    return session, x32[:40], x32[:1]


def _torch_module():
    torch = pytest.importorskip("torch")
    x, _ = _iris()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1)).eval()
    tensor = torch.tensor(x, dtype=torch.float32)
    return net, tensor[:40], tensor[:1]


KINDS = [
    Kind("sklearn", _sklearn_estimator, ("predict", "predict_proba"), True),
    Kind("sklearn-pipeline", _sklearn_pipeline, ("predict", "predict_proba"), True),
    Kind("column-transformer", _column_transformer, ("predict", "predict_proba"), True),
    Kind("lightgbm-sklearn", _lightgbm_sklearn, ("predict", "predict_proba"), True),
    Kind("lightgbm-booster", _lightgbm_booster, ("predict",), False),
    Kind("xgboost", _xgboost_sklearn, ("predict", "predict_proba"), True),
    # A Booster predicts from an array in place (predict wants a DMatrix).
    Kind("xgboost-booster", _xgboost_booster, ("inplace_predict",), False),
    Kind("catboost", _catboost, ("predict_proba",), True),
    Kind("statsmodels", _statsmodels, ("predict",), False),
    # run() returns a list of output arrays: the first is recorded as output "0".
    Kind("onnxruntime", _onnx_session, ("run",), False, output="0"),
    # A module has no classes_: its softmax rows are probabilities once the task says so.
    Kind("torch", _torch_module, ("__call__",), True, (pytest.mark.torch,),
         options={"task": "classification"}),
]


def _call(model: Any, method: str, x: Any, **kwargs: Any) -> Any:
    if method == "run":  # InferenceSession.run(output_names, feeds)
        return model.run(None, {"X": x}, **kwargs)
    if method == "__call__":
        return model(x, **kwargs)
    return getattr(model, method)(x, **kwargs)


def _plain(value: Any) -> Any:
    """A comparable form of any result: arrays, tensors, frames, lists of those."""
    if hasattr(value, "detach"):
        return value.detach().numpy()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return np.asarray(value)


def _rows(x: Any) -> int:
    return int(x.shape[0])


def _reference(x: Any) -> inferwatch.Reference:
    array = x.detach().numpy() if hasattr(x, "detach") else x
    return inferwatch.Reference.from_data(array)


def _instrument(kind: Kind, kind_model: Any, method: str, variant: str, registry, x_ref,
                tmp_path):
    options: dict[str, Any] = dict(kind.options)
    if variant == "reference":
        options["reference"] = _reference(x_ref)
    if variant == "events":
        options["events"] = tmp_path / "events.jsonl"
    if method == "run":
        # ONNX Runtime's session is wrapped as a function of its inputs.
        return inferwatch.instrument(kind_model.run, name="m", version="1", registry=registry,
                                     **options)
    return inferwatch.instrument(kind_model, name="m", version="1", registry=registry,
                                 **options)


def _wrapped_call(wrapped: Any, method: str, x: Any, variant: str, registry) -> Any:
    kwargs = {"request_id": "r-1"} if variant == "request_id" else {}
    if method == "run":
        if variant == "in_request":
            with inferwatch.monitor("m", "1", registry=registry).request():
                return wrapped(None, {"X": x})
        return wrapped(None, {"X": x}, **kwargs)
    if variant == "in_request":
        with inferwatch.monitor("m", "1", registry=registry).request():
            return _call(wrapped, method, x)
    return _call(wrapped, method, x, **kwargs)


CASES = [pytest.param(kind, method, variant, id=f"{kind.name}-{method}-{variant}",
                      marks=kind.marks)
         for kind in KINDS for method in kind.methods for variant in VARIANTS]


@pytest.mark.parametrize(("kind", "method", "variant"), CASES)
def test_matrix(scraper, tmp_path, kind, method, variant):
    model, batch, one = kind.model()
    wrapped = _instrument(kind, model, method, variant, scraper.registry, batch, tmp_path)
    expected_rows = 0
    for x in (one, batch):
        got = _wrapped_call(wrapped, method, x, variant, scraper.registry)
        want = _call(model, method, x)
        np.testing.assert_array_equal(_plain(got), _plain(want))
        expected_rows += _rows(x)
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 2
    assert scraper.value("inferwatch_batch_size_sum") == expected_rows
    assert scraper.value("inferwatch_batch_size_count") == 2
    classes = scraper.total("inferwatch_predicted_class_total")
    if kind.classes:
        assert classes == expected_rows
    else:
        assert classes == 0
        assert scraper.value("inferwatch_prediction_count", output=kind.output) == expected_rows
    assert scraper.total("inferwatch_invalid_predictions_total") == 0
    if method in ("predict_proba", "__call__") and kind.classes:
        _assert_confidence(scraper, model, method, one, batch)
    if variant == "reference":
        # Every row was checked against the profile (no input taken for something else).
        assert scraper.total("inferwatch_feature_missing_total") == 0
        assert scraper.value("inferwatch_drift_window_observations") == expected_rows
        assert scraper.total("inferwatch_input_errors_total") == 0


def _assert_confidence(scraper, model, method, one, batch) -> None:
    proba = np.concatenate([_plain(_call(model, method, x)) for x in (one, batch)])
    top = proba.max(axis=1)
    for q in (0.5, 0.9):
        got = scraper.value("inferwatch_prediction_confidence", quantile=str(q))
        # DDSketch: the value returned lies within its relative accuracy of a true rank.
        lower, upper = np.quantile(top, q, method="lower"), np.quantile(top, q, method="higher")
        assert lower * 0.98 <= got <= upper * 1.02, (q, got, lower, upper)


@pytest.mark.parametrize("kind", [pytest.param(k, id=k.name, marks=k.marks) for k in KINDS])
def test_model_exceptions_pass_through(scraper, kind):
    model, batch, _ = kind.model()
    method = kind.methods[0]
    wrapped = inferwatch.instrument(model.run if method == "run" else model, name="m",
                                    version="1", registry=scraper.registry, **kind.options)
    bad = batch[:, :2] if not hasattr(batch, "iloc") else batch.iloc[:, :2]
    with pytest.raises(Exception) as unwrapped:
        _call(model, method, bad)
    with pytest.raises(Exception) as through:
        if method == "run":
            wrapped(None, {"X": bad})
        else:
            _call(wrapped, method, bad)
    assert type(through.value) is type(unwrapped.value)
    assert str(through.value) == str(unwrapped.value)
    # The model's own frame is where it was raised: inferwatch re-raises the same object.
    assert through.traceback[-1].path == unwrapped.traceback[-1].path
    assert scraper.value("inferwatch_requests_total", outcome="error") == 1


# --- functions: floats, numpy scalars, lists, dicts; plain and async ----------------------

FUNCTION_RESULTS = {
    "float": (0.25, {"value": 1}),
    "numpy-scalar": (np.float32(0.25), {"value": 1}),
    "list": ([0.1, 0.2, 0.3], {"value": 3}),
    "dict": ({"price": 10.0, "eta": [1.0, 2.0]}, {"price": 1, "eta": 2}),
}


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("shape", list(FUNCTION_RESULTS))
@pytest.mark.parametrize("variant", VARIANTS)
def test_functions(scraper, tmp_path, shape, is_async, variant):
    result, counts = FUNCTION_RESULTS[shape]
    seen: list[tuple] = []
    failure = ValueError("model says no")

    def fn(x, flag=None):
        seen.append((x, flag))
        if x == "fail":
            raise failure
        return result

    async def afn(x, flag=None):
        return fn(x, flag)

    options: dict[str, Any] = {}
    if variant == "reference":
        options["reference"] = inferwatch.Reference.from_data({"x": [1.0, 2.0, 3.0]})
    if variant == "events":
        options["events"] = tmp_path / "events.jsonl"
    wrapped = inferwatch.instrument(afn if is_async else fn, name="f", version="1",
                                    registry=scraper.registry, **options)
    kwargs = {"request_id": "r-1"} if variant == "request_id" else {}

    def call(x):
        out = wrapped({"x": 1.0} if x is None else x, flag=True, **kwargs)
        return asyncio.run(out) if is_async else out

    if variant == "in_request":
        with inferwatch.monitor("f", "1", registry=scraper.registry).request():
            assert call(None) is result
    else:
        assert call(None) is result
    with pytest.raises(ValueError) as caught:
        call("fail")
    assert caught.value is failure
    assert seen == [({"x": 1.0}, True), ("fail", True)]  # nothing the caller did not pass
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1
    assert scraper.value("inferwatch_requests_total", outcome="error") == 1
    for output, n in counts.items():
        assert scraper.value("inferwatch_prediction_count", output=output) == n
    assert scraper.value("inferwatch_batch_size_sum") == max(counts.values())
    if variant == "reference":
        # The call's input row was checked; the failed call's ("fail") stays out of the window.
        assert scraper.value("inferwatch_drift_window_observations") == 1
