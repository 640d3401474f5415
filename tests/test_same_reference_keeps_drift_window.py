"""The same reference given again (an instrumented model unpickled, or instrumented anew,
in the process that serves it) keeps the drift window's rows; another reference, or new
drift settings, still start it empty."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest

import inferwatch
from inferwatch.core.registry import Registry


@pytest.fixture
def registry():
    registry = Registry(drain_interval=3600)
    yield registry
    registry.close()


def _window_rows(registry: Registry, name: str) -> float:
    registry.drain()
    monitor = registry.existing_monitor(name, "1")
    return float(monitor.features.drift.rows(time.time()))


def _training(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((500, 3))


def _score(rows):
    return np.asarray(rows)[:, 0]


@pytest.mark.parametrize("given_as", ["object", "path"])
def test_the_same_reference_again_keeps_the_window(registry, tmp_path, given_as):
    training = _training()
    reference = inferwatch.Reference.from_data(training)
    path = tmp_path / "reference.json"
    reference.save(path)
    given = reference if given_as == "object" else str(path)
    model = inferwatch.instrument(_score, name="ranker", version="1", registry=registry,
                                  reference=given)
    for start in range(0, 500, 50):
        model(training[start:start + 50])
    assert _window_rows(registry, "ranker") == 500

    inferwatch.instrument(_score, name="ranker", version="1", registry=registry,
                          reference=inferwatch.Reference.load(path))
    assert _window_rows(registry, "ranker") == 500
    registry.existing_monitor("ranker", "1").configure(reference=given)
    assert _window_rows(registry, "ranker") == 500


class FirstColumn:
    def predict(self, rows):
        return np.asarray(rows)[:, 0]


def test_an_unpickled_model_keeps_the_window(registry):
    training = _training()
    model = inferwatch.instrument(FirstColumn(), name="ranker", version="1", registry=registry,
                                  reference=inferwatch.Reference.from_data(training))
    model.predict(training[:200])
    assert _window_rows(registry, "ranker") == 200
    pickle.loads(pickle.dumps(model))
    assert _window_rows(registry, "ranker") == 200


def test_another_reference_or_new_drift_settings_start_the_window_empty(registry):
    training = _training()
    model = inferwatch.instrument(_score, name="ranker", version="1", registry=registry,
                                  reference=inferwatch.Reference.from_data(training))
    model(training[:200])
    monitor = registry.existing_monitor("ranker", "1")
    monitor.configure(reference=inferwatch.Reference.from_data(_training(1)))
    assert _window_rows(registry, "ranker") == 0
    model(training[:100])
    assert _window_rows(registry, "ranker") == 100
    monitor.configure(reference=monitor.features.reference, drift_window_seconds=1200)
    assert _window_rows(registry, "ranker") == 0
