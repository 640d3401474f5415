"""Two kinds of call recorded wrongly by instrument():

- a model object whose ``__call__`` is ``async def`` (an async model class, an LLM client's
  wrapper) was wrapped as a sync callable: each call counted ok as it returned its
  coroutine, timed to the coroutine's creation, its exception never counted and its result
  an unsupported type. It is now recorded as an ``async def predict`` method is, through
  the proxy (``instrument(obj)`` then ``await obj(x)``), a ``functools.partial`` and a
  shadow alike; a sync ``__call__`` that returns an awaitable stays sync.
- a torch sparse COO tensor as a call's input (with a reference profile, an event log or a
  shadow) made every call an internal fault: it has no ``nbytes``. It is read at drain
  time, as a tensor on a GPU is.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import itertools
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper
from inferwatch import faults
from test_monitor_events import _read as read_events

_FEW = settings(max_examples=20, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# A call's outcome: a result, or the exception it raises once awaited.
_OUTCOMES = st.lists(st.sampled_from(["ok", ValueError, KeyError]), min_size=1, max_size=6)
_LOGS = itertools.count()  # a fresh event log file for each model of each example
_COUNTED = ("inferwatch_requests_total", "inferwatch_errors_total",
            "inferwatch_request_duration_seconds_count", "inferwatch_prediction_count",
            "inferwatch_invalid_predictions_total", "inferwatch_batch_size_count",
            "inferwatch_batch_size_sum")


async def _answer(rows: list, outcome: object, pause: float = 0.0) -> list:
    await asyncio.sleep(pause)  # suspends: the result exists only once awaited
    if outcome != "ok":
        raise outcome("refused")  # type: ignore[operator]
    return [0.25 * len(row) for row in rows]


class AsyncCallModel:
    """A model served by an async web app: ``await model(rows)``."""

    def __init__(self, pause: float = 0.0) -> None:
        self.outcome: object = "ok"
        self.pause = pause

    async def __call__(self, rows: list) -> list:
        return await _answer(rows, self.outcome, self.pause)


class AsyncPredictModel:
    """The same model with an ``async def predict``, recorded right before the fix."""

    def __init__(self, pause: float = 0.0) -> None:
        self.outcome: object = "ok"
        self.pause = pause

    async def predict(self, rows: list) -> list:
        return await _answer(rows, self.outcome, self.pause)


class DictBackedAsyncModel(AsyncCallModel):
    """A proxy-like model whose ``__getattr__`` raises KeyError for names it lacks
    (``__name__``, ``__qualname__``): its class's ``__call__`` is still what a call runs."""

    def __getattr__(self, name: str) -> object:
        return {"kind": "dict-backed"}[name]


def _figures(scraper: Scraper, name: str) -> dict[tuple, float]:
    scraper.registry.drain()
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items()
                                  if k not in ("model", "model_version")))): s.value
            for s in scraper.samples()
            if s.labels.get("model") == name and s.name in _COUNTED and s.value}


def _expected(outcomes: list, rows: int) -> dict[tuple, float]:
    ok = sum(1 for o in outcomes if o == "ok")
    expected = {("inferwatch_request_duration_seconds_count", ()): float(len(outcomes))}
    if ok:
        expected[("inferwatch_requests_total", (("outcome", "ok"),))] = float(ok)
        expected[("inferwatch_prediction_count", (("output", "value"),))] = float(ok * rows)
        expected[("inferwatch_batch_size_count", ())] = float(ok)
        expected[("inferwatch_batch_size_sum", ())] = float(ok * rows)
    if len(outcomes) > ok:
        expected[("inferwatch_requests_total", (("outcome", "error"),))] = \
            float(len(outcomes) - ok)
    for kind in (ValueError, KeyError):
        count = sum(1 for o in outcomes if o is kind)
        if count:
            expected[("inferwatch_errors_total", (("error_type", kind.__name__),))] = count
    return expected


def _call_all(call, model, outcomes: list, rows: list, **keywords: object) -> list:
    """Awaits `call(rows)` once per outcome (the model raising as told); what each gave."""
    async def run() -> list:
        answers = []
        for outcome in outcomes:
            model.outcome = outcome
            try:
                answers.append(await call(rows, **keywords))
            except (ValueError, KeyError) as exc:
                answers.append(exc.__class__)
        return answers

    return asyncio.run(run())


def _instrumented_ways(registry: object, options: dict, tmp_path: object) -> dict[str, tuple]:
    """name -> (the awaitable callable, the model whose outcome the test sets); with
    ``events``, each logs to a file of its own under `tmp_path`."""
    call_model, predict_model = AsyncCallModel(), AsyncPredictModel()
    hostile = DictBackedAsyncModel()
    partial_of_object = AsyncCallModel()
    partial_of_function = AsyncCallModel()

    async def plain_function(rows: list, scale: float = 1.0) -> list:
        return await partial_of_function(rows)

    def make(target: object, name: str) -> object:
        own = dict(options)
        if own.pop("events", False):
            own["events"] = str(tmp_path / f"{name}-{next(_LOGS)}.jsonl")
        return inferwatch.instrument(target, name=name, version="1", registry=registry, **own)

    return {
        "call": (make(call_model, "call"), call_model),
        "predict": (make(predict_model, "predict").predict, predict_model),
        "dict_backed": (make(hostile, "dict_backed"), hostile),
        "partial_object": (make(functools.partial(partial_of_object), "partial_object"),
                           partial_of_object),
        "partial_function": (make(functools.partial(plain_function, scale=2.0),
                                  "partial_function"), partial_of_function),
    }


@pytest.mark.parametrize("path", ["counts", "reference", "request_id", "events"])
@_FEW
@given(outcomes=_OUTCOMES, rows=st.integers(1, 3))
def test_an_async_call_object_is_recorded_as_an_async_predict_method(path, outcomes, rows,
                                                                     tmp_path):
    """Every path a call can take (counts only, with its input, with a record of its own):
    ok and error counts, errors by type, durations and predictions alike for an object
    whose __call__ is async, one with a __getattr__ that raises KeyError, a partial of
    either kind, and an async predict method."""
    batch = [[1.0, 2.0]] * rows
    options: dict = {}
    keywords: dict = {}
    if path == "reference":
        options["reference"] = inferwatch.Reference.from_data(
            np.random.default_rng(0).normal(size=(50, 2)))
    elif path == "request_id":
        keywords["request_id"] = "r-1"
    elif path == "events":
        options["events"] = True
    scraper = Scraper(drain_interval=3600)
    before = dict(faults.internal_error_counts())
    try:
        ways = _instrumented_ways(scraper.registry, options, tmp_path)
        for name, (call, model) in ways.items():
            given_back = _call_all(call, model, outcomes, batch, **keywords)
            assert given_back == [[0.25 * 2] * rows if o == "ok" else o for o in outcomes]
            assert _figures(scraper, name) == _expected(outcomes, rows), name
    finally:
        scraper.registry.close()
    assert faults.internal_error_counts() == before


def test_the_duration_of_an_async_call_object_is_that_of_the_awaited_call():
    pause = 0.05  # asyncio.sleep waits at least this long
    scraper = Scraper(drain_interval=3600)
    try:
        model = inferwatch.instrument(AsyncCallModel(pause), name="m", version="1",
                                      registry=scraper.registry)
        _call_all(model, model, ["ok", ValueError], [[1.0]])
        scraper.registry.drain()
        total = scraper.value("inferwatch_request_duration_seconds_sum", model="m")
        assert total >= 2 * pause * 0.9
    finally:
        scraper.registry.close()


def test_the_proxy_of_an_async_call_object_is_awaited_as_the_model_was(registry):
    """Code that decides by inspect.iscoroutinefunction(model.__call__) whether to await
    the model (FastAPI's dependencies) awaits it instrumented too; a copy, a pickle and an
    instrument() of the wrapper keep it so, recording once, under the name given last."""
    model = AsyncCallModel()
    assert inspect.iscoroutinefunction(model.__call__)
    proxy = inferwatch.instrument(model, name="m", version="1", registry=registry)
    assert isinstance(proxy, AsyncCallModel)
    assert inspect.iscoroutinefunction(proxy.__call__)
    for other in (copy.copy(proxy), copy.deepcopy(proxy)):
        assert isinstance(other, AsyncCallModel)
        assert inspect.iscoroutinefunction(other.__call__)
        assert asyncio.run(other([[1.0]])) == [0.25]
    # Unpickled into the default registry: not called here, so it records nothing there.
    restored = pickle.loads(pickle.dumps(proxy))
    assert isinstance(restored, AsyncCallModel)
    assert inspect.iscoroutinefunction(restored.__call__)
    again = inferwatch.instrument(proxy, name="again", version="1", registry=registry)
    assert again == proxy and inspect.iscoroutinefunction(again.__call__)
    assert asyncio.run(again([[1.0]])) == [0.25]
    registry.drain()
    assert _requests(registry, "again") == {("ok",): 1.0}
    assert _requests(registry, "m") == {("ok",): 2.0}  # the copies record as the wrapper


def _requests(registry: object, name: str) -> dict:
    counted = registry.monitor(name, "1").state.counters["inferwatch_requests_total"]
    return {labels: value for labels, value in counted.items() if value}


def test_a_sync_call_returning_an_awaitable_stays_sync(registry):
    """A sync __call__ that hands back a coroutine (a client queuing its request) stays
    sync: the caller gets a coroutine, unstarted, that awaits the model's and records the
    call when it finishes."""
    class Deferred:
        def __init__(self) -> None:
            self.given: list = []

        def __call__(self, rows: list) -> object:
            self.given.append(_answer(rows, "ok"))
            return self.given[-1]

    model = Deferred()
    proxy = inferwatch.instrument(model, name="m", version="1", registry=registry)
    assert not inspect.iscoroutinefunction(proxy.__call__)
    result = proxy([[1.0]])
    assert inspect.iscoroutine(result) and inspect.getcoroutinestate(result) == "CORO_CREATED"
    assert inspect.getcoroutinestate(model.given[-1]) == "CORO_CREATED"
    assert asyncio.run(result) == [0.25]
    function = inferwatch.instrument(functools.partial(Deferred()), name="f", version="1",
                                     registry=registry)
    assert not inspect.iscoroutinefunction(function)
    pending = function([[2.0]])
    assert inspect.iscoroutine(pending) and asyncio.run(pending) == [0.25]


def test_an_async_call_object_inside_a_request_block_is_its_inference_stage(registry):
    model = inferwatch.instrument(AsyncCallModel(), name="m", version="1",
                                  registry=registry)
    mon = inferwatch.monitor("m", "1", registry=registry)

    async def serve() -> list:
        with mon.request(request_id="r-1"):
            return await model([[1.0, 1.0]])

    assert asyncio.run(serve()) == [0.5]
    registry.drain()
    assert _requests(registry, "m") == {("ok",): 1.0}
    assert not any(mon.state.counters["inferwatch_invalid_predictions_total"].values())


@_FEW
@given(outcomes=_OUTCOMES)
def test_a_shadow_of_an_async_call_object_compares_the_awaited_results(outcomes):
    """The challenger is handed the champion's awaited result: every answered call is
    compared, none dropped as incomparable."""
    scraper = Scraper(drain_interval=3600)
    model = AsyncCallModel()
    champion = inferwatch.instrument(model, name="m", version="1",
                                     registry=scraper.registry)
    handle = inferwatch.shadow(champion, AsyncCallModel(), version="2",
                               registry=scraper.registry)
    try:
        _call_all(champion, model, outcomes, [[1.0, 3.0]])
        assert handle.flush(30)
        scraper.registry.drain()
        counters = handle.monitor.state.counters
        answered = sum(1 for o in outcomes if o == "ok")
        assert counters["inferwatch_shadow_compared_total"] == {("1",): answered}
        assert not any(counters["inferwatch_shadow_dropped_total"].values())
    finally:
        handle.close()
        scraper.registry.close()


# Sparse rows as a recommender sends them: mostly zeros, a few values.
_SPARSE_ROWS = st.integers(1, 6).flatmap(lambda rows: st.lists(
    st.lists(st.sampled_from([0.0, 0.0, 0.0, 1.0, -2.5, 7.25]), min_size=3, max_size=3),
    min_size=rows, max_size=rows))


def _drift_figures(scraper: Scraper, name: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items()
                                  if k not in ("model", "model_version")))): s.value
            for s in scraper.samples() if s.labels.get("model") == name and (
                "drift" in s.name or s.name == "inferwatch_input_errors_total")}


@pytest.mark.torch
@pytest.mark.parametrize("way", ["reference", "events", "async", "request_id"])
@_FEW
@given(batches=st.lists(_SPARSE_ROWS, min_size=1, max_size=4))
def test_a_sparse_coo_input_is_read_at_drain_time_without_a_fault(way, batches, tmp_path):
    """A COO tensor's rows are checked as the same rows given dense, and no call counts an
    internal fault, on every path an input takes (the fast path's, a record's, an async
    call's)."""
    torch = pytest.importorskip("torch")
    reference = inferwatch.Reference.from_data(
        np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32))
    keywords: dict = {}
    if way == "request_id":
        keywords["request_id"] = "r-1"

    def model(batch: object) -> object:
        return torch.zeros(batch.shape[0])

    async def async_model(batch: object) -> object:
        await asyncio.sleep(0)
        return model(batch)

    scraper = Scraper(drain_interval=3600)
    before = dict(faults.internal_error_counts())
    try:
        target = async_model if way == "async" else model
        sparse, dense = (inferwatch.instrument(
            target, name=name, version="1", registry=scraper.registry, reference=reference,
            events=str(tmp_path / f"{name}-{next(_LOGS)}.jsonl") if way == "events" else None)
            for name in ("sparse", "dense"))
        for rows in batches:
            values = torch.tensor(rows, dtype=torch.float32)
            for instrumented, handed in ((sparse, values.to_sparse()), (dense, values)):
                result = instrumented(handed, **keywords)
                if way == "async":
                    result = asyncio.run(result)
                assert result.shape == (len(rows),)
        scraper.registry.drain()
        assert faults.internal_error_counts() == before
        observed = scraper.value("inferwatch_drift_window_observations", model="sparse")
        assert observed == sum(map(len, batches))
        assert _drift_figures(scraper, "sparse") == pytest.approx(
            _drift_figures(scraper, "dense"))
    finally:
        scraper.registry.close()


@pytest.mark.torch
def test_a_sparse_coo_input_logs_its_call_without_a_fault(tmp_path, make_log):
    torch = pytest.importorskip("torch")
    log = make_log(tmp_path / "events.jsonl")
    scraper = Scraper(drain_interval=3600)
    before = dict(faults.internal_error_counts())
    try:
        model = inferwatch.instrument(lambda batch: torch.zeros(batch.shape[0]), name="m",
                                      version="1", registry=scraper.registry, events=log)
        for _ in range(3):
            model(torch.tensor([[0.0, 1.5, 0.0]]).to_sparse())
        scraper.registry.drain()
        assert log.flush(10)
        assert len(read_events(tmp_path)) == 3
        assert scraper.value("inferwatch_requests_total", model="m", outcome="ok") == 3
        assert faults.internal_error_counts() == before
    finally:
        scraper.registry.close()


@pytest.mark.torch
@_FEW
@given(rows=_SPARSE_ROWS)
def test_a_shadow_hands_a_sparse_coo_input_to_its_challenger(rows):
    """A sampled call's sparse input is frozen for the challenger without a fault: the
    challenger sees the rows the champion saw, in a tensor of its own."""
    torch = pytest.importorskip("torch")
    seen: list = []

    class Champion:
        def predict(self, batch: object) -> object:
            return torch.zeros(batch.shape[0])

    class Challenger(Champion):
        def predict(self, batch: object) -> object:
            seen.append(batch)
            return super().predict(batch)

    scraper = Scraper(drain_interval=3600)
    champion = inferwatch.instrument(Champion(), name="m", version="1",
                                     registry=scraper.registry)
    handle = inferwatch.shadow(champion, Challenger(), version="2",
                               registry=scraper.registry)
    before = dict(faults.internal_error_counts())
    try:
        handed = torch.tensor(rows, dtype=torch.float32).to_sparse()
        champion.predict(handed)
        handed._values().mul_(10.0)  # the caller reuses its tensor once the call returned
        assert handle.flush(30)
        scraper.registry.drain()
        assert faults.internal_error_counts() == before
        (batch,) = seen
        assert batch is not handed and batch.layout == torch.sparse_coo
        assert batch.to_dense().tolist() == rows
        assert handle.monitor.state.counters["inferwatch_shadow_compared_total"] == \
            {("1",): 1}
    finally:
        handle.close()
        scraper.registry.close()
