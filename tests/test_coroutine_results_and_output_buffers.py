"""Two kinds of result recorded wrongly by a sync wrapper:

- a plain function that returns a coroutine (``instrument(lambda x: client.apredict(x))``)
  counted every call ok as it returned the coroutine, timed only its creation, never
  counted its exception and recorded its value as ``unsupported_type``. The caller now gets
  a coroutine that awaits the model's and records the call when it finishes, on every path a
  call takes; one dropped unawaited, or closed unfinished, ends as cancelled.
- output buffers a runtime refills on every call and returns together (a dict, tuple or list
  of arrays, TensorRT or ONNX Runtime IO-binding style) were read by the drain, so every
  call waiting for it was recorded with the last call's values. Small arrays directly in such
  a result are copied as the call returns, as a bare array is.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import itertools
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper
from inferwatch import faults
from inferwatch.core.call_input import COPY_LIMIT_BYTES, outputs_snapshot, snapshot

_FEW = settings(max_examples=20, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
_OUTCOMES = st.lists(st.sampled_from(["ok", ValueError, KeyError]), min_size=1, max_size=6)
_PATHS = ["counts", "reference", "request_id", "events", "request_block"]
_LOGS = itertools.count()
_COUNTED = ("inferwatch_requests_total", "inferwatch_errors_total",
            "inferwatch_request_duration_seconds_count", "inferwatch_prediction_count",
            "inferwatch_invalid_predictions_total", "inferwatch_batch_size_count",
            "inferwatch_batch_size_sum")


class Client:
    """An async client whose answer exists only once awaited."""

    def __init__(self, pause: float = 0.0) -> None:
        self.outcome: object = "ok"
        self.pause = pause

    async def apredict(self, rows: list) -> list:
        await asyncio.sleep(self.pause)
        if self.outcome != "ok":
            raise self.outcome("refused")  # type: ignore[operator]
        return [0.25 * len(row) for row in rows]


def _figures(scraper: Scraper, name: str) -> dict[tuple, float]:
    scraper.registry.drain()
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items()
                                  if k not in ("model", "model_version")))): s.value
            for s in scraper.samples()
            if s.labels.get("model") == name and s.name in _COUNTED and s.value}


def _instrumented(scraper: Scraper, target: object, path: str, tmp_path: object,
                  name: str = "m") -> object:
    options: dict = {}
    if path == "reference":
        options["reference"] = inferwatch.Reference.from_data(
            np.random.default_rng(0).normal(size=(50, 2)))
    elif path == "events":
        options["events"] = str(tmp_path / f"events-{next(_LOGS)}.jsonl")
    return inferwatch.instrument(target, name=name, version="1", registry=scraper.registry,
                                 **options)


async def _call(predict: object, rows: list, path: str, scraper: Scraper,
                name: str = "m") -> object:
    """One awaited call along `path`: what it gave back, or its exception's class."""
    try:
        if path == "request_id":
            return await predict(rows, request_id="r-1")
        if path == "request_block":
            mon = inferwatch.monitor(name, "1", registry=scraper.registry)
            with mon.request():
                return await predict(rows)
        return await predict(rows)
    except (ValueError, KeyError) as exc:
        return exc.__class__


@pytest.mark.parametrize("path", _PATHS)
@_FEW
@given(outcomes=_OUTCOMES, rows=st.integers(1, 3))
def test_a_function_returning_a_coroutine_is_recorded_as_an_async_function(
        path, outcomes, rows, tmp_path):
    """Counts, errors by type, predictions and batch sizes of `lambda x: client.apredict(x)`
    equal those of the same client behind an `async def` function, on every path."""
    batch = [[1.0, 2.0]] * rows
    scraper = Scraper(drain_interval=3600)
    before = dict(faults.internal_error_counts())
    try:
        client = Client()

        async def awaited(rows: list) -> list:
            return await client.apredict(rows)

        returning = _instrumented(scraper, lambda rows: client.apredict(rows), path,
                                  tmp_path, "returning")
        reference = _instrumented(scraper, awaited, path, tmp_path, "reference")
        assert not inspect.iscoroutinefunction(returning)

        async def run(predict: object, name: str) -> list:
            answers = []
            for outcome in outcomes:
                client.outcome = outcome
                answers.append(await _call(predict, batch, path, scraper, name))
            return answers

        expected = [[0.5] * rows if o == "ok" else o for o in outcomes]
        assert asyncio.run(run(returning, "returning")) == expected
        assert asyncio.run(run(reference, "reference")) == expected
        figures = _figures(scraper, "returning")
        assert figures == _figures(scraper, "reference")
        ok = outcomes.count("ok")
        assert figures.get(("inferwatch_requests_total", (("outcome", "ok"),)), 0) == ok
        assert not any(key[0] == "inferwatch_invalid_predictions_total" for key in figures)
    finally:
        scraper.registry.close()
    assert faults.internal_error_counts() == before


@pytest.mark.parametrize("path", _PATHS)
def test_the_duration_of_a_returned_coroutine_runs_to_its_end(path, tmp_path):
    pause = 0.05  # asyncio.sleep waits at least this long
    scraper = Scraper(drain_interval=3600)
    try:
        client = Client(pause)
        predict = _instrumented(scraper, lambda rows: client.apredict(rows), path, tmp_path)

        async def run() -> None:
            await _call(predict, [[1.0]], path, scraper)
            client.outcome = ValueError
            assert await _call(predict, [[1.0]], path, scraper) is ValueError

        asyncio.run(run())
        scraper.registry.drain()
        assert scraper.value("inferwatch_request_duration_seconds_sum") >= 2 * pause * 0.9
        assert scraper.value("inferwatch_errors_total", error_type="ValueError") == 1
    finally:
        scraper.registry.close()


def test_the_caller_gets_the_models_exception_and_a_coroutine_it_can_schedule(registry):
    client = Client()
    predict = inferwatch.instrument(lambda rows: client.apredict(rows), name="m",
                                    version="1", registry=registry)
    refusal = ValueError("refused")

    async def refuse(rows: list) -> list:
        raise refusal

    failing = inferwatch.instrument(lambda rows: refuse(rows), name="f", version="1",
                                    registry=registry)

    async def run() -> None:
        pending = predict([[1.0]])
        assert inspect.iscoroutine(pending)
        assert await asyncio.create_task(pending) == [0.25]
        assert await asyncio.gather(predict([[1.0]]), predict([[2.0, 2.0]])) == [[0.25], [0.5]]
        with pytest.raises(ValueError) as raised:
            await failing([[1.0]])
        assert raised.value is refusal

    asyncio.run(run())
    registry.drain()
    counted = registry.monitor("m", "1").state.counters["inferwatch_requests_total"]
    assert counted[("ok",)] == 3


def _settle(registry: object, name: str) -> dict:
    gc.collect()
    registry.drain()
    monitor = registry.monitor(name, "1")
    counted = monitor.state.counters["inferwatch_requests_total"]
    return {"in_flight": monitor.in_flight(),
            **{labels[0]: value for labels, value in counted.items() if value}}


@pytest.mark.parametrize("path", ["counts", "reference", "request_id"])
def test_a_returned_coroutine_dropped_unawaited_ends_as_cancelled(registry, path):
    """The caller never awaits what it got: nothing stays in flight or waits for good."""
    client = Client()
    options = {"reference": inferwatch.Reference.from_data(
        np.random.default_rng(0).normal(size=(50, 2)))} if path == "reference" else {}
    predict = inferwatch.instrument(lambda rows: client.apredict(rows), name="m",
                                    version="1", registry=registry, **options)
    keywords = {"request_id": "r-1"} if path == "request_id" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "coroutine ... never awaited"
        for _ in range(50):
            predict([[1.0]], **keywords)  # dropped at once
        assert _settle(registry, "m") == {"in_flight": 0, "cancelled": 50}

        started = predict([[1.0]], **keywords)
        started.send(None)  # suspended in the client's sleep
        started.close()
        assert _settle(registry, "m") == {"in_flight": 0, "cancelled": 51}

        async def timed_out() -> None:
            client.pause = 10.0
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(predict([[1.0]], **keywords), 0.01)

        asyncio.run(timed_out())
    assert _settle(registry, "m") == {"in_flight": 0, "cancelled": 52}


def test_a_returned_coroutine_inside_a_request_is_its_inference_stage(registry):
    client = Client()
    predict = inferwatch.instrument(lambda rows: client.apredict(rows), name="m",
                                    version="1", registry=registry)
    mon = inferwatch.monitor("m", "1", registry=registry)

    async def serve() -> list:
        with mon.request(request_id="r-1") as request:
            answer = await predict([[1.0, 1.0]])
            stages = [stage for stage, _ in request.record.stages]
        return [answer, stages]

    assert asyncio.run(serve()) == [[0.5], ["inference"]]
    registry.drain()
    counted = mon.state.counters
    assert {k: v for k, v in counted["inferwatch_requests_total"].items() if v} == {("ok",): 1}
    assert not any(counted["inferwatch_invalid_predictions_total"].values())


def test_a_returned_coroutine_that_gives_a_stream_is_followed(registry):
    async def tokens(n: int):
        for i in range(n):
            yield f"t{i}"

    async def open_stream(n: int):
        await asyncio.sleep(0)
        return tokens(n)

    predict = inferwatch.instrument(lambda n: open_stream(n), name="m", version="1",
                                    registry=registry)

    async def run() -> list:
        stream = await predict(3)
        return [item async for item in stream]

    assert asyncio.run(run()) == ["t0", "t1", "t2"]
    registry.drain()
    counted = registry.monitor("m", "1").state.counters
    assert {k: v for k, v in counted["inferwatch_requests_total"].items() if v} == {("ok",): 1}
    assert not any(counted["inferwatch_invalid_predictions_total"].values())


# --- output buffers refilled and returned together -------------------------------------------

_SHAPES = ["dict", "tuple", "list"]


def _together(shape: str, first: np.ndarray, second: np.ndarray) -> object:
    if shape == "dict":
        return {"logits": first, "score": second}
    return (first, second) if shape == "tuple" else [first, second]


def _recorded_sums(scraper: Scraper) -> dict[str, float]:
    scraper.registry.drain()
    return {s.labels["output"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_prediction_sum"}


@pytest.mark.parametrize("path", ["counts", "reference", "request_id", "request_block",
                                  "async"])
@pytest.mark.parametrize("shape", _SHAPES)
@_FEW
@given(values=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=12),
       width=st.integers(1, 4))
def test_refilled_output_buffers_are_recorded_as_each_call_returned_them(
        shape, path, values, width, tmp_path):
    """A runtime refilling two output buffers on every call records what a runtime returning
    fresh arrays records, on every path, and the caller gets the runtime's own object."""
    logits, score = np.zeros(width), np.zeros(width)

    def refilling(value: float) -> object:
        logits[:] = value
        score[:] = 10 * value
        return _together(shape, logits, score)

    def fresh(value: float) -> object:
        return _together(shape, np.full(width, value), np.full(width, 10 * value))

    sums = []
    for runtime in (refilling, fresh):
        scraper = Scraper(drain_interval=3600)
        try:
            if path == "async":
                async def model(value: float, runtime=runtime) -> object:
                    return runtime(value)
                target = model
            else:
                target = runtime
            predict = _instrumented(scraper, target, "counts" if path == "request_block"
                                    else path, tmp_path)
            mon = inferwatch.monitor("m", "1", registry=scraper.registry)
            for value in values:
                if path == "async":
                    result = asyncio.run(predict(value))
                elif path == "request_id":
                    result = predict(value, request_id="r")
                elif path == "request_block":
                    with mon.request():
                        result = predict(value)
                else:
                    result = predict(value)
                if runtime is refilling:
                    parts = list(result.values()) if shape == "dict" else list(result)
                    assert parts[0] is logits and parts[1] is score
            sums.append(_recorded_sums(scraper))
        finally:
            scraper.registry.close()
    assert sums[0] == sums[1]
    assert sum(sums[0].values()) == pytest.approx(11 * width * sum(values), abs=1e-6)


def test_output_buffers_are_copied_up_to_the_byte_bound_in_all():
    half = COPY_LIMIT_BYTES // 2 // 8  # float64 items in half the bound
    first, second, third = np.zeros(half), np.zeros(half), np.zeros(1)
    seen = outputs_snapshot((first, second, third))
    assert seen[0] is not first and seen[1] is not second
    assert seen[2] is third  # past the bound in all: read at drain time
    big = np.zeros(COPY_LIMIT_BYTES // 8 + 1)
    seen = outputs_snapshot({"big": big, "small": third, "label": "cat"})
    assert seen["big"] is big and seen["small"] is not third and seen["label"] == "cat"
    assert list(seen) == ["big", "small", "label"]
    numbers, texts = [0.5] * 1000, ("a", "b")
    assert outputs_snapshot(numbers) is numbers and outputs_snapshot(texts) is texts
    assert snapshot([third, 1.0])[0] is not third


_PARTS = st.one_of(
    st.floats(allow_nan=False), st.text(max_size=3), st.none(),
    st.integers(0, 9000).map(lambda n: np.arange(n, dtype=np.float64)),
    st.integers(0, 4).map(lambda n: np.array(["a"] * n, dtype=object)))


@_FEW
@given(parts=st.lists(_PARTS, max_size=6), shape=st.sampled_from(_SHAPES))
def test_a_snapshot_of_outputs_equals_them_and_shares_no_array_within_the_bound(parts, shape):
    """Any mix of arrays (large ones too) and other values: the same values in a container
    of the same class, each array that fits in what is left of the bound copied."""
    value = dict(zip((f"k{i}" for i in range(len(parts))), parts)) if shape == "dict" else (
        tuple(parts) if shape == "tuple" else list(parts))
    seen = outputs_snapshot(value)
    assert seen.__class__ is value.__class__
    before = list(value.values()) if shape == "dict" else list(value)
    after = list(seen.values()) if shape == "dict" else list(seen)
    if shape == "dict":
        assert list(seen) == list(value)
    assert len(after) == len(before)
    for old, new in zip(before, after):
        if isinstance(old, np.ndarray):
            assert new.dtype == old.dtype and np.array_equal(new, old)
        else:
            assert new is old
    looked_into = shape != "list" or (before and isinstance(before[0], np.ndarray))
    copied = sum(old.nbytes for old, new in zip(before, after)
                 if isinstance(old, np.ndarray) and new is not old)
    assert copied <= COPY_LIMIT_BYTES
    if looked_into:
        # Every array that fits in what is left of the bound is copied, in order.
        budget = COPY_LIMIT_BYTES
        for old, new in zip(before, after):
            if isinstance(old, np.ndarray):
                assert (new is not old) == (old.nbytes <= budget)
                if new is not old:
                    budget -= old.nbytes
    else:
        assert seen is value
