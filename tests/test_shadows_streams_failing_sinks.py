"""Shadows whose comparison or event sink fails, shadowed calls inside another model's
request block, and stream objects the caller calls through their proxy."""

from __future__ import annotations

import asyncio
import gc
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry

_EXAMPLES = settings(max_examples=20, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])


class _Doubler:
    def predict(self, rows):
        return [2.0 * sum(row) for row in rows]


class _ShadowEventsFail:
    """An event sink of the user's own that fails on the challenger's events."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def emit(self, event: dict) -> None:
        if event.get("role") == "shadow":
            raise OSError("disk full")
        self.events.append(event)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass


def _counter(mon, name: str) -> dict:
    return {k: v for k, v in mon.state.counters.get(name, {}).items() if v}


# --- 1. a failing comparison or event sink must not leave the challenger's call open ------

def test_a_failing_event_sink_still_records_the_challengers_call():
    registry = Registry()
    champion = inferwatch.instrument(_Doubler(), name="m", version="1", registry=registry,
                                     events=_ShadowEventsFail())
    handle = inferwatch.shadow(champion, _Doubler(), version="2", registry=registry)
    for _ in range(3):
        assert champion.predict([[1.0, 2.0]]) == [6.0]
    assert handle.flush(30)
    registry.drain()
    challenger = handle.monitor
    assert challenger.in_flight() == 0
    assert _counter(challenger, "inferwatch_requests_total") == {("ok",): 3.0}
    assert _counter(challenger, "inferwatch_shadow_compared_total") == {("1",): 3.0}
    handle.close()
    registry.close()


def test_a_comparison_that_fails_counts_the_call_dropped_and_still_records_it():
    registry = Registry()
    champion = inferwatch.instrument(_Doubler(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, _Doubler(), version="2", registry=registry)

    def refuse(*args, **kwargs):
        raise RuntimeError("hostile output")

    handle.comparison.add = refuse  # the innermost step the public API cannot make fail
    for _ in range(2):
        champion.predict([[1.0]])
    assert handle.flush(30)
    registry.drain()
    challenger = handle.monitor
    assert challenger.in_flight() == 0
    assert _counter(challenger, "inferwatch_requests_total") == {("ok",): 2.0}
    dropped = _counter(challenger, "inferwatch_shadow_dropped_total")
    # Sampled calls still add up to compared and dropped ones.
    assert dropped == {("1", "incomparable"): 2.0}
    assert _counter(challenger, "inferwatch_shadow_sampled_total") == {("1",): 2.0}
    handle.close()
    registry.close()


# --- 2. a shadowed call of model B inside model A's request block ------------------------

@_EXAMPLES
@given(request_id=st.text(alphabet="abcdefghij-0123456789", min_size=1, max_size=12))
def test_a_shadowed_call_inside_another_models_request_is_not_given_its_id(request_id):
    registry = Registry()
    mon_a = registry.monitor("a", "1")
    champion = inferwatch.instrument(_Doubler(), name="b", version="1", registry=registry)
    handle = inferwatch.shadow(champion, _Doubler(), version="2", registry=registry)
    with mon_a.request(request_id=request_id) as r:
        r.features({"x": 1.0})
        champion.predict([[1.0, 2.0]])
    assert handle.flush(30)
    registry.drain()
    # The champion's call was a call of its own, with no id: the challenger's must be too,
    # or an outcome for A's request would score B's challenger (and not B).
    assert champion.__dict__["_inferwatch_monitor"].outcomes.kept_rows(request_id) is None
    assert not handle.comparison.knows(request_id)
    assert handle.monitor.outcomes.kept_rows(request_id) is None
    handle.close()
    registry.close()


def test_a_shadowed_call_inside_its_own_models_request_takes_that_id():
    registry = Registry()
    champion = inferwatch.instrument(_Doubler(), name="b", version="1", registry=registry)
    mon_b = champion.__dict__["_inferwatch_monitor"]
    mon_a = registry.monitor("a", "1")
    handle = inferwatch.shadow(champion, _Doubler(), version="2", registry=registry)
    with mon_b.request(request_id="r-b"), mon_a.request(request_id="r-a"):
        champion.predict([[1.0, 2.0]])
    assert handle.flush(30)
    registry.drain()
    assert handle.comparison.knows("r-b")
    assert not handle.comparison.knows("r-a")
    handle.close()
    registry.close()


# --- 3. a callable stream object called through its proxy --------------------------------

class _CallableStream:
    """A streamer that yields tokens and can also be called (to push the next prompt)."""

    def __init__(self, tokens: list[str]) -> None:
        self.rest = iter(tokens)
        self.prompts: list[str] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        return next(self.rest)

    def __call__(self, prompt: str, *, stop: bool = False) -> int:
        self.prompts.append(prompt)
        return len(prompt) + (100 if stop else 0)


class _PlainStream:
    def __init__(self, tokens: list[str]) -> None:
        self.rest = iter(tokens)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        return next(self.rest)


@_EXAMPLES
@given(tokens=st.lists(st.text(max_size=4), max_size=6), prompt=st.text(max_size=8))
def test_a_callable_stream_is_callable_through_its_proxy(tokens, prompt):
    registry = Registry()
    streams: list[_CallableStream] = []

    def generate() -> _CallableStream:
        streams.append(_CallableStream(tokens))
        return streams[-1]

    stream = inferwatch.instrument(generate, name="gen", version="1", registry=registry)()
    assert callable(stream)
    assert stream(prompt, stop=True) == len(prompt) + 100
    assert streams[0].prompts == [prompt]
    assert list(stream) == tokens
    registry.drain()
    mon = registry.monitor("gen", "1")
    # A call of the stream is no item of it.
    assert mon.state.histograms["inferwatch_stream_items"][()].sum == len(tokens)
    registry.close()


def test_a_stream_that_is_not_callable_is_not_callable_through_its_proxy():
    registry = Registry()
    stream = inferwatch.instrument(lambda: _PlainStream(["a"]), name="gen", version="1",
                                   registry=registry)()
    assert not callable(stream)
    with pytest.raises(TypeError):
        stream()
    assert list(stream) == ["a"]
    registry.close()


# --- 4. a champion called with keywords only: the challenger's drift reads the input too --

class _KeywordRegressor:
    def predict(self, rows=None):
        return np.asarray(rows, dtype=np.float64).sum(axis=1)


@_EXAMPLES
@given(shift=st.floats(min_value=-50.0, max_value=50.0, allow_nan=False))
def test_a_keyword_only_call_gives_the_challenger_the_input_its_drift_reads(shift):
    from inferwatch.quality.reference import Reference

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    registry = Registry()
    champion = inferwatch.instrument(_KeywordRegressor(), name="m", version="1",
                                     registry=registry, reference=Reference.from_data(X))
    handle = inferwatch.shadow(champion, _KeywordRegressor(), version="2", registry=registry)
    champion.predict(rows=X[:50] + shift, request_id="kw-1")
    assert handle.flush(30)
    registry.drain()
    now = time.time()
    champion_scores = registry.monitor("m", "1").features.drift.scores(now)[0]
    shadow_scores = handle.monitor.features.drift.scores(now)[0]
    assert champion_scores
    assert shadow_scores == pytest.approx(champion_scores)
    handle.close()
    registry.close()


# --- 5. an async stream that fails to open is the model's error, not a cancel ------------

class _RefusingAsyncStream:
    def __aiter__(self):
        raise ConnectionError("refused")

    async def __anext__(self):
        raise StopAsyncIteration


class _RefusingDualStream:
    """A sync stream that is an async iterator too (LiteLLM's wrapper), refusing to open."""

    def __iter__(self):
        return self

    def __next__(self):
        raise StopIteration

    def __aiter__(self):
        raise ConnectionError("refused")

    async def __anext__(self):
        raise StopAsyncIteration


@pytest.mark.parametrize("stream_class", [_RefusingAsyncStream, _RefusingDualStream])
def test_an_async_stream_that_fails_to_open_counts_as_an_error(stream_class):
    registry = Registry()
    stream = inferwatch.instrument(lambda: stream_class(), name="gen", version="1",
                                   registry=registry)()

    async def consume(items) -> None:
        async for _ in items:
            pass

    with pytest.raises(ConnectionError):
        asyncio.run(consume(stream))
    del stream
    gc.collect()
    registry.drain()
    mon = registry.monitor("gen", "1")
    assert _counter(mon, "inferwatch_requests_total") == {("error",): 1.0}
    assert _counter(mon, "inferwatch_errors_total") == {("ConnectionError",): 1.0}
    registry.close()
