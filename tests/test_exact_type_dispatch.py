"""README: code that goes by the exact type sees the wrapper; named Pipeline steps keep a
grid search's parameter names, and `model.__wrapped__` is the model itself."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import inferwatch
from inferwatch.core.registry import Registry


def test_exact_type_sees_the_wrapper_and_named_steps_keep_grid_parameters():
    rng = np.random.default_rng(0)
    features = rng.random((60, 3))
    labels = (features[:, 0] > 0.5).astype(int)
    clf = LogisticRegression().fit(features, labels)
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(clf, name="churn", version="1", registry=registry)
        assert isinstance(model, LogisticRegression)
        assert type(model) is not LogisticRegression and model.__wrapped__ is clf
        assert [name for name, _ in make_pipeline(StandardScaler(), model).steps] == [
            "standardscaler", "instrumentedmodel"]
        pipeline = Pipeline([("scale", StandardScaler()), ("logisticregression", model)])
        search = GridSearchCV(pipeline, {"logisticregression__C": [0.1, 1.0]}, cv=2)
        assert set(search.fit(features, labels).best_params_) == {"logisticregression__C"}
    finally:
        registry.close()
