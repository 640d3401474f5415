"""Whatever inferwatch does once the model has returned (look at the result's class, follow
a stream, snapshot, hand the call to the drain) never costs the caller the model's result:
a fault there (a proxy whose ``__class__`` raises, the recursion limit reached in
inferwatch's own frames) is counted, and the result comes back unchanged."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

import inferwatch
from inferwatch import faults
from inferwatch.core.call_paths import WITH_INPUTS
from inferwatch.core.registry import Registry


class ClassRaises:
    """A lazy proxy whose ``__class__`` raises when read."""

    @property
    def __class__(self) -> type:  # type: ignore[override]
        raise RuntimeError("__class__ of a proxy")


def _request_faults() -> int:
    return faults.internal_error_counts().get("request", 0)


def _reference() -> inferwatch.Reference:
    rng = np.random.default_rng(0)
    return inferwatch.Reference.from_data(rng.normal(size=(200, 2)), feature_names=["a", "b"])


def _wrapped(fn: Callable, **options: Any) -> tuple[Callable, Any]:
    registry = Registry()
    wrapper = inferwatch.instrument(fn, name="guarded", version="1", registry=registry,
                                    **options)
    return wrapper, inferwatch.monitor("guarded", "1", registry=registry)


def _assert_counted_and_settled(mon: Any, faults_before: int) -> None:
    assert _request_faults() > faults_before
    mon.drain()
    assert mon.in_flight() == 0


def test_fast_path_returns_a_result_whose_class_raises() -> None:
    proxy = ClassRaises()
    wrapper, mon = _wrapped(lambda x: proxy)
    before = _request_faults()
    assert wrapper(1) is proxy
    _assert_counted_and_settled(mon, before)


def test_input_keeping_path_returns_a_result_whose_class_raises() -> None:
    proxy = ClassRaises()
    wrapper, mon = _wrapped(lambda x: proxy, reference=_reference())
    assert mon.path is WITH_INPUTS
    before = _request_faults()
    assert wrapper(np.zeros((1, 2))) is proxy
    _assert_counted_and_settled(mon, before)


def test_call_with_request_id_returns_a_result_whose_class_raises() -> None:
    proxy = ClassRaises()
    wrapper, mon = _wrapped(lambda x, request_id=None: proxy)
    before = _request_faults()
    assert wrapper(1, request_id="r-1") is proxy
    _assert_counted_and_settled(mon, before)


def test_call_inside_a_request_returns_a_result_whose_class_raises() -> None:
    proxy = ClassRaises()
    wrapper, mon = _wrapped(lambda x: proxy)
    before = _request_faults()
    with mon.request(request_id="q-1"):
        assert wrapper(1) is proxy
    _assert_counted_and_settled(mon, before)


@pytest.mark.parametrize("with_request_id", [False, True])
def test_async_call_returns_a_result_whose_class_raises(with_request_id: bool) -> None:
    proxy = ClassRaises()

    async def model(x: int, request_id: str | None = None) -> Any:
        return proxy

    wrapper, mon = _wrapped(model)
    before = _request_faults()
    keywords = {"request_id": "r-1"} if with_request_id else {}
    assert asyncio.run(wrapper(1, **keywords)) is proxy
    _assert_counted_and_settled(mon, before)


@contextmanager
def _recursion_limit_above_here(headroom: int) -> Iterator[None]:
    """A recursion limit `headroom` frames above this one, as deep as tests can afford."""
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + headroom)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _at_depth(levels: int, fn: Callable, argument: Any) -> Any:
    if levels == 0:
        return fn(argument)
    return _at_depth(levels - 1, fn, argument)


def _deepest_working_depth(fn: Callable, argument: Any) -> int:
    levels = 0
    while True:
        try:
            _at_depth(levels + 1, fn, argument)
        except RecursionError:
            return levels
        levels += 1


# `frames`: those between the caller and the model (the wrapper, and the one that keeps
# inputs). `settles`: whether the in-flight gauge is checked; a text result is recorded by
# the stream code (streams.Tracker.end), whose own failures are outside these wrappers.
@pytest.mark.parametrize("model, options, argument, frames, settles", [
    (lambda x: 0.5, {}, 1, 1, True),
    (lambda x: "text", {}, 1, 1, True),
    (lambda x: [{"label": "POS", "score": 0.9}], {}, 1, 1, True),
    (lambda x: np.array([0.1, 0.9]), {}, 1, 1, True),
    (lambda x: 0.5, {"reference": _reference()}, np.zeros((1, 2)), 2, True),
], ids=["float", "text", "row_dicts", "array", "with_input"])
def test_model_that_returned_near_the_recursion_limit_has_its_result(
        model: Callable, options: dict, argument: Any, frames: int, settles: bool) -> None:
    wrapper, mon = _wrapped(model, **options)
    wrapper(argument)  # classes seen once: the calls below take their usual path
    with _recursion_limit_above_here(120):
        deepest = _deepest_working_depth(model, argument)
        results = []
        # Called `frames` levels up, the model runs where it works.
        for levels in range(deepest - frames, max(deepest - 12, 0), -1):
            results.append(_at_depth(levels, wrapper, argument))
    for result in results:
        if isinstance(result, np.ndarray):
            np.testing.assert_array_equal(result, model(argument))
        else:
            assert result == model(argument)
    mon.drain()
    if settles:
        assert mon.in_flight() == 0
