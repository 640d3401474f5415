"""A generator function's wrapper primes one generator that makes the model's call and
follows its stream. A fault of inferwatch's own in that first step (a clock that raises,
the open streams' bookkeeping failing, the recursion limit reached in the follower's
frame) raised into the caller's code, and left the call in flight for good. Now the call
returns the model's generator, unfollowed, ends with no prediction, and the fault is
counted; the model's own exception still comes back untouched, counted as its error.

Near the recursion limit a text result whose record failed to reach the drain stayed in
flight for good too."""

from __future__ import annotations

from collections.abc import Iterator
from types import GeneratorType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core import streams
from test_call_result_guards import (
    _at_depth,
    _deepest_working_depth,
    _recursion_limit_above_here,
)


def tokens(n: int) -> Iterator[str]:
    for i in range(n):
        yield f"tok{i} "


def outcomes(scraper: Any, name: str) -> dict[str, float]:
    return {s.labels["outcome"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_requests_total" and s.labels["model"] == name and s.value}


def stream_faults(scraper: Any) -> float:
    return scraper.total("inferwatch_internal_errors_total", component="stream")


def in_flight(scraper: Any, name: str) -> float | None:
    return scraper.value("inferwatch_requests_in_flight", model=name)


def _broken_clock() -> float:
    raise RuntimeError("the clock is broken")


def _broken_watch(reference: object) -> None:
    raise MemoryError("no room for one more open stream")


# An inferwatch internal that the first step runs before the model's generator is made:
# patched either where it is looked up at each call, or before the wrapper binds it.
BREAKS = {
    "clock": ("perf_counter", _broken_clock),
    "open streams": ("_watch", _broken_watch),
}


@pytest.mark.parametrize("broken", list(BREAKS))
def test_a_fault_in_the_first_step_returns_the_models_generator(
        scraper: Any, monkeypatch: pytest.MonkeyPatch, broken: str) -> None:
    name, replacement = BREAKS[broken]
    monkeypatch.setattr(streams, name, replacement)
    model = inferwatch.instrument(tokens, name="gen", version="1", registry=scraper.registry)
    before = stream_faults(scraper)
    stream = model(3)
    monkeypatch.undo()  # the scrape below reads the clock too
    assert type(stream) is GeneratorType
    assert list(stream) == ["tok0 ", "tok1 ", "tok2 "]
    assert stream_faults(scraper) == before + 1
    # It ended at once, with no prediction: never in flight for good.
    assert outcomes(scraper, "gen") == {"ok": 1.0}
    assert in_flight(scraper, "gen") == 0
    assert scraper.value("inferwatch_errors_total", model="gen") is None


def test_the_models_own_error_is_raised_untouched_and_counted(scraper: Any) -> None:
    model = inferwatch.instrument(tokens, name="gen", version="1", registry=scraper.registry)
    before = stream_faults(scraper)
    with pytest.raises(TypeError) as raised:
        model(1, 2)
    error = raised.value
    with pytest.raises(TypeError) as bare:
        tokens(1, 2)  # type: ignore[call-arg]
    assert str(error) == str(bare.value)
    assert error.__context__ is None and error.__cause__ is None
    # Raised where the model's call raised it: the follower's frame, under the wrapper's.
    names = []
    entry = error.__traceback__
    while entry is not None:
        names.append(entry.tb_frame.f_code.co_name)
        entry = entry.tb_next
    assert names[-2:] == ["instrumented", "follow_sync"]
    assert outcomes(scraper, "gen") == {"error": 1.0}
    assert scraper.value("inferwatch_errors_total", model="gen", error_type="TypeError") == 1
    assert in_flight(scraper, "gen") == 0
    assert stream_faults(scraper) == before


def test_the_models_own_error_after_a_fault_of_ours_is_raised_and_counted(
        scraper: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    model = inferwatch.instrument(tokens, name="gen", version="1", registry=scraper.registry)
    before = stream_faults(scraper)
    monkeypatch.setattr(streams, "perf_counter", _broken_clock)
    with pytest.raises(TypeError) as raised:
        model(1, 2)
    monkeypatch.undo()
    assert raised.value.__context__ is None
    assert "positional argument" in str(raised.value)
    assert outcomes(scraper, "gen") == {"error": 1.0}
    assert in_flight(scraper, "gen") == 0
    assert stream_faults(scraper) == before + 1


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arguments=st.lists(st.integers(min_value=-3, max_value=6) | st.text(max_size=3),
                          max_size=3))
def test_with_its_first_step_broken_a_wrapper_answers_as_the_model_does(
        scraper: Any, arguments: list) -> None:
    """Whatever the caller passes, the call answers what the generator function alone
    answers: its items, or its own TypeError with the same message."""
    def items(n: object = 2, step: object = 1) -> Iterator[object]:
        if isinstance(n, int) and isinstance(step, int):
            yield from range(0, n, step or 1)
        else:
            yield n
            yield step

    model = inferwatch.instrument(items, name="any", version="1", registry=scraper.registry)
    try:
        expected: object = list(items(*arguments))
    except TypeError as error:
        expected = ("TypeError", str(error))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(streams, "perf_counter", _broken_clock)
        try:
            stream = model(*arguments)
        except TypeError as error:
            answered: object = ("TypeError", str(error))
        else:
            answered = list(stream)
    assert answered == expected
    assert in_flight(scraper, "any") == 0


# --- near the recursion limit ---------------------------------------------------------------


# A generator function's wrapper is two frames: StreamFunction.__call__ (what passes for
# the function to inspect) and the wrapper function.
STREAM_FUNCTION_FRAMES = 2


def test_a_generator_function_called_near_the_recursion_limit_returns_its_generator(
        scraper: Any) -> None:
    model = inferwatch.instrument(tokens, name="deep", version="1", registry=scraper.registry)
    list(model(1))
    results = []
    with _recursion_limit_above_here(120):
        deepest = _deepest_working_depth(tokens, 3)
        # Called that many levels up, the model's generator is made where it is made alone:
        # the follower's frame, a level deeper, may not fit.
        for levels in range(deepest - STREAM_FUNCTION_FRAMES, max(deepest - 14, 0), -1):
            results.append(_at_depth(levels, model, 3))
    calls = 1 + len(results)
    for stream in results:
        assert type(stream) is GeneratorType
        assert list(stream) == ["tok0 ", "tok1 ", "tok2 "]
    del results
    assert in_flight(scraper, "deep") == 0
    assert outcomes(scraper, "deep") == {"ok": calls}


def test_a_text_result_near_the_recursion_limit_leaves_the_in_flight_gauge(
        scraper: Any) -> None:
    def model(x: int) -> str:
        return "text"

    wrapper = inferwatch.instrument(model, name="text", version="1", registry=scraper.registry)
    mon = inferwatch.monitor("text", "1", registry=scraper.registry)
    wrapper(1)
    results = []
    with _recursion_limit_above_here(120):
        deepest = _deepest_working_depth(model, 1)
        # Called one level up (the wrapper's frame), the model runs where it works.
        for levels in range(deepest - 1, max(deepest - 30, 0), -1):
            results.append(_at_depth(levels, wrapper, 1))
    assert results == [model(1)] * len(results)
    mon.drain()
    assert mon.in_flight() == 0
    assert in_flight(scraper, "text") == 0
