"""Prediction methods that scikit-learn makes available by parameters: after ``set_params``
or ``fit`` through the wrapper, the wrapper records the methods the model has now, and
``hasattr`` answers as the model does."""

from __future__ import annotations

import asyncio
import warnings

import numpy as np
import pytest

import inferwatch

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

# SVC's `probability` is deprecated from scikit-learn 1.9 on, still the common case.
pytestmark = pytest.mark.filterwarnings("ignore:The `probability` parameter:FutureWarning")

X = np.random.default_rng(0).normal(size=(60, 3))
Y = (X[:, 0] > 0).astype(int)


def _ok_calls(scraper: object, model: str) -> float:
    return scraper.value("inferwatch_requests_total", model=model, outcome="ok") or 0.0


def test_a_method_switched_on_by_set_params_is_recorded(scraper) -> None:
    model = inferwatch.instrument(SVC(), name="svc", version="1", registry=scraper.registry)
    assert not hasattr(model, "predict_proba")
    model.set_params(probability=True).fit(X, Y)
    assert model.predict_proba(X[:1]).shape == (1, 2)  # single row
    assert _ok_calls(scraper, "svc") == 1.0


def test_a_method_switched_off_is_gone_from_the_wrapper_too(scraper) -> None:
    model = inferwatch.instrument(SVC(probability=True), name="svc", version="1",
                                  registry=scraper.registry)
    assert hasattr(model, "predict_proba")
    model.set_params(probability=False)
    assert hasattr(model, "predict_proba") is hasattr(model.__wrapped__, "predict_proba")
    assert not hasattr(model, "predict_proba")


def test_a_pipeline_whose_last_step_is_swapped_records_the_new_methods(scraper) -> None:
    pipe = Pipeline([("scale", StandardScaler()), ("est", LinearRegression())])
    model = inferwatch.instrument(pipe, name="pipe", version="1", registry=scraper.registry)
    assert not hasattr(model, "predict_proba")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = model.set_params(est=LogisticRegression()).fit(X, Y)
    assert fitted is model
    model.predict_proba(X[:2])
    model.predict(X[:2])
    assert _ok_calls(scraper, "pipe") == 2.0


def test_a_method_that_raised_half_way_still_refreshes_the_methods(scraper) -> None:
    class Model:
        def enable(self) -> None:
            self.predict_proba = lambda x: np.array([[0.2, 0.8]])
            raise RuntimeError("half way")

        def predict(self, x: object) -> int:
            return 1

    model = inferwatch.instrument(Model(), name="m", version="1", registry=scraper.registry)
    with pytest.raises(RuntimeError):
        model.enable()
    model.predict_proba(None)
    assert _ok_calls(scraper, "m") == 1.0


def test_an_async_method_refreshes_the_methods_once_awaited(scraper) -> None:
    class Model:
        async def load(self) -> Model:
            self.predict = lambda x: 0.5
            return self

        def predict_proba(self, x: object) -> list[float]:
            return [0.5, 0.5]

    model = inferwatch.instrument(Model(), name="m", version="1", registry=scraper.registry)
    assert asyncio.run(model.load()) is model
    assert model.predict(None) == 0.5
    assert _ok_calls(scraper, "m") == 1.0
