"""A method read through an instrumented model pickles and copies as the model's own bound
method does: as that method of the model, here instrumented.

``Pool.map(model.predict, chunks)``, ``ProcessPoolExecutor.map`` and
``joblib.Parallel(delayed(model.predict)(...))`` pickle the method. The prediction methods
(``predict``, ``predict_proba``) raised a PicklingError that blamed scikit-learn ("not the
same object as LinearClassifierMixin.predict"); any other method (``decision_function``,
``score``) recursed without end when loaded or copied, so ``sklearn.base.clone`` of a
``FunctionTransformer`` built on one crashed. A loaded method records into the loaded model,
in the worker that calls it.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import io
import json
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer

import inferwatch
from inferwatch.core.model_proxy import _Chained
from inferwatch.core.registry import default_registry

X = np.random.RandomState(0).rand(60, 3)
Y = (X[:, 0] > 0.5).astype(int)


class CountingModel:
    """A model that counts its own calls: which object a loaded method calls is seen."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.asarray(rows).sum(axis=1)

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        self.calls += 1
        share = np.clip(np.asarray(rows)[:, :1], 0.0, 1.0)
        return np.hstack([1.0 - share, share])

    def decision_function(self, rows: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.asarray(rows)[:, 0] - 0.5

    def set_scale(self, scale: float) -> CountingModel:
        self.scale = scale
        return self


def _forking_round_trip(obj: object) -> object:
    return pickle.loads(ForkingPickler.dumps(obj))


ROUND_TRIPS: dict[str, Callable[[object], object]] = {
    "pickle-2": lambda obj: pickle.loads(pickle.dumps(obj, protocol=2)),
    "pickle-5": lambda obj: pickle.loads(pickle.dumps(obj, protocol=5)),
    "multiprocessing": _forking_round_trip,  # what a Pool and ProcessPoolExecutor use
    "cloudpickle": lambda obj: cloudpickle.loads(cloudpickle.dumps(obj)),  # joblib's loky
}


def _name() -> str:
    return f"methods-{uuid.uuid4().hex[:8]}"


def _requests(name: str) -> int:
    monitor = default_registry().existing_monitor(name, "1")
    if monitor is None:
        return 0
    monitor.drain()
    return monitor.state.counters.get("inferwatch_requests_total", {}).get(("ok",), 0)


# --- predict and predict_proba --------------------------------------------------------------


@pytest.mark.parametrize("round_trip", list(ROUND_TRIPS.values()), ids=list(ROUND_TRIPS))
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_a_loaded_prediction_method_predicts_with_the_loaded_model_and_records(round_trip,
                                                                               method):
    name = _name()
    wrapped = inferwatch.instrument(CountingModel(), name=name, version="1")
    loaded = round_trip(getattr(wrapped, method))
    rows = X[:4]
    assert np.array_equal(loaded(rows), getattr(CountingModel(), method)(rows))
    assert wrapped.__wrapped__.calls == 0  # the loaded model answered, not this one
    assert loaded.__wrapped__.__self__.calls == 1
    assert _requests(name) == 1


@pytest.mark.parametrize("round_trip", list(ROUND_TRIPS.values()), ids=list(ROUND_TRIPS))
def test_a_method_pickled_with_its_model_is_that_models_method(round_trip):
    name = _name()
    wrapped = inferwatch.instrument(CountingModel(), name=name, version="1")
    model, predict, proba = round_trip([wrapped, wrapped.predict, wrapped.predict_proba])
    assert predict is model.predict and proba is model.predict_proba
    predict(X[:2])
    proba(X[:2])
    assert model.__wrapped__.calls == 2
    assert _requests(name) == 2


def test_the_method_of_a_wrapper_no_longer_held_still_pickles():
    # `pool.map(inferwatch.instrument(model, ...).predict, chunks)`: only the method is left.
    name = _name()
    predict = inferwatch.instrument(CountingModel(), name=name, version="1").predict
    loaded = pickle.loads(pickle.dumps(predict))
    assert np.array_equal(loaded(X[:3]), X[:3].sum(axis=1))
    assert _requests(name) == 1


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy], ids=["copy", "deepcopy"])
def test_a_copied_prediction_method_records(copier):
    name = _name()
    wrapped = inferwatch.instrument(CountingModel(), name=name, version="1")
    copied = copier(wrapped.predict)
    copied(X[:2])
    assert _requests(name) == 1
    if copier is copy.copy:
        assert copied is wrapped.predict  # a bound method's copy: the same model's method
    else:
        assert wrapped.__wrapped__.calls == 0  # a deep copy calls a copy of the model


def test_a_scikit_learn_estimators_methods_pickle_as_without_inferwatch():
    name = _name()
    estimator = LogisticRegression().fit(X, Y)
    wrapped = inferwatch.instrument(estimator, name=name, version="1")
    for method in ("predict", "predict_proba", "decision_function"):
        loaded = pickle.loads(pickle.dumps(getattr(wrapped, method)))
        assert np.array_equal(loaded(X[:5]), getattr(estimator, method)(X[:5]))
    assert pickle.loads(pickle.dumps(wrapped.score))(X, Y) == estimator.score(X, Y)
    assert _requests(name) == 2  # predict, predict_proba; score's own predict is the model's


class StreamingModel:
    def predict(self, rows: list) -> Iterator[float]:
        yield from rows


class AsyncModel:
    async def predict(self, rows: list) -> list:
        return rows


def test_a_streaming_or_async_prediction_method_pickles_and_stays_of_its_kind():
    # Frameworks tell a stream or a coroutine by inspecting the function they are given.
    streaming_name, async_name = _name(), _name()
    streaming = inferwatch.instrument(StreamingModel(), name=streaming_name, version="1")
    awaited = inferwatch.instrument(AsyncModel(), name=async_name, version="1")
    assert inspect.isgeneratorfunction(streaming.predict)
    assert inspect.iscoroutinefunction(awaited.predict)
    stream = pickle.loads(pickle.dumps(streaming.predict))
    coroutine_function = pickle.loads(pickle.dumps(awaited.predict))
    assert inspect.isgeneratorfunction(stream) and inspect.iscoroutinefunction(coroutine_function)
    assert list(stream([1.0, 2.0])) == [1.0, 2.0]
    assert asyncio.run(coroutine_function([3.0])) == [3.0]
    assert _requests(streaming_name) == 1 and _requests(async_name) == 1


def test_a_prediction_method_still_reads_as_the_models_method():
    wrapped = inferwatch.instrument(CountingModel(), name=_name(), version="1")
    method = wrapped.predict
    assert method.__name__ == "predict"
    assert method.__qualname__ == "CountingModel.predict"
    assert inspect.signature(method) == inspect.signature(CountingModel().predict)
    assert repr(method) == repr(wrapped.__wrapped__.predict)


def test_a_prediction_method_given_back_or_instrumented_again_records_once():
    name = _name()
    wrapped = inferwatch.instrument(CountingModel(), name=name, version="1")
    wrapped.predict = wrapped.predict
    wrapped.predict(X[:2])
    again = inferwatch.instrument(wrapped.predict_proba, name=name, version="1")
    again(X[:2])
    assert _requests(name) == 2
    assert wrapped.__wrapped__.calls == 2


# --- other methods (decision_function, score, fit, ...) ---------------------------------------


@pytest.mark.parametrize("round_trip", [*ROUND_TRIPS.values(), copy.copy, copy.deepcopy],
                         ids=[*ROUND_TRIPS, "copy", "deepcopy"])
def test_another_method_pickles_and_copies_as_the_wrappers_method(round_trip):
    wrapped = inferwatch.instrument(CountingModel(), name=_name(), version="1")
    loaded = round_trip(wrapped.decision_function)
    assert type(loaded) is _Chained
    assert np.array_equal(loaded(X[:3]), X[:3, 0] - 0.5)
    # A method giving its model back gives the loaded wrapper back, still recording.
    chained = round_trip(wrapped.set_scale)(2.0)
    assert "_inferwatch_monitor" in vars(chained) and chained.__wrapped__.scale == 2.0


def test_a_function_transformer_on_an_instrumented_method_clones():
    # What a grid search does to every step it is given.
    wrapped = inferwatch.instrument(LogisticRegression().fit(X, Y), name=_name(), version="1")
    transformer = clone(FunctionTransformer(wrapped.decision_function))
    assert np.array_equal(transformer.fit_transform(X[:3]),
                          wrapped.__wrapped__.decision_function(X[:3]))


def test_an_unfilled_chained_method_has_none_of_its_own_attributes():
    # What copy and pickle make before they fill an object in: no recursion on a read.
    empty = _Chained.__new__(_Chained)
    for attribute in ("__wrapped__", "_model", "_proxy", "__setstate__", "__name__"):
        assert not hasattr(empty, attribute)


@settings(max_examples=30)
@given(name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
       protocol=st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_a_method_of_a_model_attribute_of_any_name_pickles_under_that_name(name, protocol):
    # A method stored on the model under a name of the user's choosing (an alias too).
    model = CountingModel()
    if name.startswith(("__", "_inferwatch")) or hasattr(model, name):
        return
    setattr(model, name, model.decision_function)
    wrapped = inferwatch.instrument(model, name="aliases", version="1")
    loaded = pickle.loads(pickle.dumps(getattr(wrapped, name), protocol=protocol))
    assert np.array_equal(loaded(X[:2]), X[:2, 0] - 0.5)


# --- process pools and joblib ----------------------------------------------------------------

POOLS = r"""
import json, multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor

import joblib
import numpy as np
from joblib.externals.loky import get_reusable_executor

import inferwatch
from inferwatch.multiproc.store import SnapshotDirectory


class CountingModel:
    def __init__(self):
        self.calls = 0

    def predict(self, rows):
        self.calls += 1
        return rows.sum(axis=1)

    def predict_proba(self, rows):
        self.calls += 1
        return np.hstack([1.0 - rows[:, :1] / 24, rows[:, :1] / 24])


DIRECTORY = os.environ["INFERWATCH_MULTIPROC_DIR"]


def merged_calls():
    view = SnapshotDirectory(DIRECTORY).read_view(time.time())
    return sum(state.counters.get("inferwatch_requests_total", {}).get(("ok",), 0)
               for state in view.states)


if __name__ == "__main__":
    way = sys.argv[1]
    model = inferwatch.instrument(CountingModel(), name="pool", version="1")
    chunks = np.array_split(np.arange(24.0).reshape(8, 3), 4)
    spawn = multiprocessing.get_context("spawn")
    if way == "pool":
        with spawn.Pool(2) as pool:
            out = pool.map(model.predict, chunks)
            pool.close()
            pool.join()
    elif way == "executor":
        with ProcessPoolExecutor(2, mp_context=spawn) as executor:
            out = list(executor.map(model.predict_proba, chunks))
    else:
        out = joblib.Parallel(n_jobs=2, backend="loky")(
            joblib.delayed(model.predict)(chunk) for chunk in chunks)
        get_reusable_executor().shutdown(wait=True)
    deadline = time.monotonic() + 60
    while merged_calls() < len(chunks) and time.monotonic() < deadline:
        time.sleep(0.1)
    print(json.dumps({"results": len(out), "merged": merged_calls(),
                      "parent_calls": model.__wrapped__.calls}))
"""


@pytest.mark.parametrize("way", ["pool", "executor", "joblib"])
def test_a_process_pool_given_a_method_records_every_call_in_its_workers(tmp_path: Path, way):
    script = tmp_path / "job.py"
    script.write_text(POOLS)
    directory = tmp_path / "snapshots"
    directory.mkdir()
    env = {**os.environ, "INFERWATCH_MULTIPROC_DIR": str(directory)}
    result = subprocess.run([sys.executable, str(script), way], capture_output=True, text=True,
                            timeout=240, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"results": 4, "merged": 4, "parent_calls": 0}


def test_pickling_a_method_writes_no_more_than_its_model():
    # The method is its model and a name: no closure, monitor or lock goes into the pickle.
    wrapped = inferwatch.instrument(CountingModel(), name=_name(), version="1")
    buffer = io.BytesIO()
    pickle.dump(wrapped.predict, buffer)
    assert len(buffer.getvalue()) < len(pickle.dumps(wrapped)) + 64
