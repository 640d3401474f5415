"""A champion whose own method names ``request_id`` (so the shadow layer may not hand it
one) and a request-id function: the function was called twice a sampled call, once by the
champion's wrapper and once by the shadow, so a function naming each call anew gave the
challenger's copy another id than the champion's, and no outcome ever scored both."""

from __future__ import annotations

import asyncio

import numpy as np

import inferwatch
from inferwatch.core.registry import Registry
from test_shadow_request_ids_streams import _FreshIds


class _Named:
    """A model with a request_id parameter of its own: never handed the function's id."""

    def __init__(self, slope: float) -> None:
        self.slope = slope
        self.seen: list[object] = []

    def predict(self, rows, request_id=None):
        self.seen.append(request_id)
        return np.asarray(rows, dtype=float)[:, 0] * self.slope


class _AsyncNamed(_Named):
    async def predict(self, rows, request_id=None):  # type: ignore[override]
        self.seen.append(request_id)
        return np.asarray(rows, dtype=float)[:, 0] * self.slope


def _scored_by_both(registry, handle, ids, truth) -> None:
    mon = registry.monitor("m", "1")
    for name, value in zip(ids.given, truth):
        mon.record_outcome(name, value)
    registry.drain()
    errors = handle.monitor.state.histograms["inferwatch_shadow_outcome_error"]
    assert errors[("1", "champion")].count == len(truth)
    assert errors[("1", "shadow")].count == len(truth)


def _named_once(model_class: type, call) -> None:
    """`call(champion, value)` for each truth value: the id function is called once a
    call, the model sees no id, and an outcome under each id scores both models."""
    registry = Registry()
    ids = _FreshIds()
    model = model_class(1.0)
    champion = inferwatch.instrument(model, name="m", version="1", registry=registry,
                                     request_id=ids)
    handle = inferwatch.shadow(champion, model_class(2.0), version="2", timeout=60.0,
                               registry=registry)
    truth = [1.0, 2.0, 3.0]
    try:
        for value in truth:
            call(champion, value)
        assert handle.flush(60)
        registry.drain()
        assert len(ids.given) == len(truth)
        assert model.seen == [None] * len(truth)  # the model's call is as its caller made it
        _scored_by_both(registry, handle, ids, truth)
    finally:
        handle.close()
        registry.close()


def test_the_function_names_each_sampled_call_once_for_both_models():
    _named_once(_Named, lambda champion, value: champion.predict([[value]]))


def test_an_async_champion_that_names_request_id_is_named_once_too():
    _named_once(_AsyncNamed,
                lambda champion, value: asyncio.run(champion.predict([[value]])))


def test_a_callers_own_id_is_still_the_one_both_record():
    registry = Registry()
    ids = _FreshIds()
    model = _Named(1.0)
    champion = inferwatch.instrument(model, name="m", version="1", registry=registry,
                                     request_id=ids)
    handle = inferwatch.shadow(champion, _Named(2.0), version="2", timeout=60.0,
                               registry=registry)
    try:
        champion.predict([[1.0]], request_id="given")
        assert handle.flush(60)
        registry.drain()
        assert ids.given == [] and model.seen == ["given"]
        registry.monitor("m", "1").record_outcome("given", 1.0)
        registry.drain()
        errors = handle.monitor.state.histograms["inferwatch_shadow_outcome_error"]
        assert errors[("1", "champion")].count == 1
        assert errors[("1", "shadow")].count == 1
    finally:
        handle.close()
        registry.close()
