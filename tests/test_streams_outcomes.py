"""How a stream ends, whichever way a consumer stops it: the same outcome for a generator
function and for a function returning a generator, and the figures of a stream collected in
a reference cycle kept whole."""

from __future__ import annotations

import asyncio
import gc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch


def outcomes(scraper, model: str = "gen") -> dict[str, float]:
    return {s.labels["outcome"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_requests_total" and s.labels["model"] == model}


def tokens(n: int):
    for i in range(n):
        yield f"tok{i} "


async def async_tokens(n: int):
    for i in range(n):
        await asyncio.sleep(0)
        yield f"tok{i} "


def both_kinds(scraper) -> dict[str, object]:
    """A generator function instrumented, and a function that returns its generator."""
    return {
        "generator function": inferwatch.instrument(
            tokens, name="gen", version="1", registry=scraper.registry),
        "function returning one": inferwatch.instrument(
            lambda n: tokens(n), name="gen", version="1", registry=scraper.registry),
    }


@pytest.mark.parametrize("kind", ["generator function", "function returning one"])
@pytest.mark.parametrize("error_class", [ValueError, KeyError, RuntimeError, KeyboardInterrupt])
def test_a_throw_before_the_first_item_is_the_consumer_cancelling_for_both_kinds(
        scraper, kind, error_class):
    stream = both_kinds(scraper)[kind]
    gen = stream(3)
    error = error_class("stop")
    with pytest.raises(error_class) as caught:
        gen.throw(error)  # as into a bare generator not started: it comes straight back
    assert caught.value is error
    with pytest.raises(StopIteration):
        next(gen)  # ended, as a bare generator is
    # Let go of all of it, as a caller's handler does on its way out: the wrapper that
    # never started ends its stream when its frame, in the traceback, is let go of too.
    del gen, caught, error
    gc.collect()
    assert outcomes(scraper) == {"ok": 0.0, "error": 0.0, "cancelled": 1.0}
    assert scraper.value("inferwatch_errors_total") is None
    assert scraper.value("inferwatch_requests_in_flight") == 0


@pytest.mark.parametrize("kind", ["generator function", "function returning one"])
def test_a_send_before_the_first_item_raises_pythons_own_error_and_counts_no_model_error(
        scraper, kind):
    stream = both_kinds(scraper)[kind]
    gen = stream(3)
    with pytest.raises(TypeError) as caught:
        gen.send("too early")
    with pytest.raises(TypeError) as bare:
        tokens(3).send("too early")
    assert str(caught.value) == str(bare.value)
    del gen
    gc.collect()
    assert outcomes(scraper) == {"ok": 0.0, "error": 0.0, "cancelled": 1.0}
    assert scraper.value("inferwatch_errors_total") is None
    assert scraper.value("inferwatch_requests_in_flight") == 0


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 5), early=st.sampled_from(["throw", "send", "close", "drop"]),
       then=st.integers(0, 3))
def test_both_kinds_end_alike_however_the_consumer_stops(scraper, n, early, then):
    """Each kind, stopped the same way, counts the same calls under the same outcomes."""
    seen = {}
    for kind, stream in both_kinds(scraper).items():
        before = outcomes(scraper)
        gen = stream(n)
        try:
            if early == "throw":
                gen.throw(ValueError("consumer"))
            elif early == "send":
                gen.send(1)
        except (ValueError, TypeError):
            pass
        if early == "close":
            gen.close()
        del gen  # let go of: no cycle holds it, so it goes now
        gen = stream(n)
        taken = [x for _, x in zip(range(then), gen)]
        gen.close()
        after = outcomes(scraper)
        seen[kind] = ({k: after[k] - before.get(k, 0.0) for k in after}, taken)
    assert seen["generator function"] == seen["function returning one"]
    assert scraper.value("inferwatch_errors_total") is None
    assert scraper.value("inferwatch_requests_in_flight") == 0


def test_a_generator_wrapper_collected_in_a_reference_cycle_keeps_its_items(scraper):
    stream = inferwatch.instrument(lambda n: tokens(n), name="gen", version="1",
                                   registry=scraper.registry)
    gc.disable()  # the cycles are collected together, below, in whatever order
    try:
        for _ in range(20):
            gen = stream(10)
            next(gen), next(gen), next(gen)
            holder = [gen]
            holder.append(holder)  # a request object that refers to itself, say
            del gen, holder
        gc.collect()
    finally:
        gc.enable()
    assert outcomes(scraper) == {"ok": 0.0, "error": 0.0, "cancelled": 20.0}
    assert scraper.value("inferwatch_stream_items_sum") == 60
    assert scraper.value("inferwatch_stream_first_item_seconds_count") == 20
    assert scraper.value("inferwatch_requests_in_flight") == 0


def test_an_async_generator_wrapper_collected_in_a_reference_cycle_keeps_its_items(scraper):
    stream = inferwatch.instrument(lambda n: async_tokens(n), name="gen", version="1",
                                   registry=scraper.registry)

    async def main() -> None:
        for _ in range(10):
            gen = stream(10)
            await gen.__anext__()
            await gen.__anext__()
            holder = [gen]
            holder.append(holder)
            del gen, holder
        gc.collect()
        for _ in range(100):  # the loop's hook closes each one in a task of its own
            if outcomes(scraper).get("cancelled") == 10.0:
                break
            await asyncio.sleep(0.01)

    gc.disable()
    try:
        asyncio.run(main())
    finally:
        gc.enable()
    assert outcomes(scraper) == {"ok": 0.0, "error": 0.0, "cancelled": 10.0}
    assert scraper.value("inferwatch_stream_items_sum") == 20
    assert scraper.value("inferwatch_requests_in_flight") == 0
