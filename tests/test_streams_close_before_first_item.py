"""A stream the consumer stops before its first item ends then, on every Python version.

From Python 3.12 ``close()`` on a generator that never started only marks it finished: its
frame never runs and its locals stay until the generator is freed. A wrapper returned
unstarted must still end its stream at the ``close()`` (or ``throw()``), not when the
caller lets go of it, with a duration that runs on meanwhile (a response object that keeps
its body, a list of streams kept for a retry).
"""

from __future__ import annotations

import inspect
import types

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch


def tokens(n: int):
    for i in range(n):
        yield f"tok{i} "


def words(text: str) -> int:
    return len(text.split())


def outcomes(scraper) -> dict[str, float]:
    return {s.labels["outcome"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_requests_total" and s.value}


# Each way an instrumented call hands back a generator's wrapper not yet started: the
# positional call of a generator function, on the fast path, is primed and ends alike
# already, and is here to hold it so.
WAYS = {
    "function returning one": lambda registry, n: inferwatch.instrument(
        lambda count: tokens(count), name="returns", version="1", registry=registry)(n),
    "generator function, keyword": lambda registry, n: inferwatch.instrument(
        tokens, name="keyword", version="1", registry=registry)(n=n),
    "counting tokens": lambda registry, n: inferwatch.instrument(
        lambda count: tokens(count), name="tokens", version="1", registry=registry,
        count_tokens=words)(n),
    "generator function, positional": lambda registry, n: inferwatch.instrument(
        tokens, name="positional", version="1", registry=registry)(n),
}


@pytest.mark.parametrize("way", list(WAYS))
def test_close_before_the_first_item_ends_the_stream_at_once(scraper, way):
    gen = WAYS[way](scraper.registry, 3)
    gen.close()
    # Still held by the caller: ended by the close itself, not by its collection.
    assert outcomes(scraper) == {"cancelled": 1.0}
    assert scraper.value("inferwatch_requests_in_flight") == 0
    assert scraper.value("inferwatch_errors_total") is None
    with pytest.raises(StopIteration):
        next(gen)  # closed, as a bare generator is
    gen.close()  # a second close does nothing, as on a bare generator
    del gen
    assert outcomes(scraper) == {"cancelled": 1.0}  # counted once


@pytest.mark.parametrize("way", list(WAYS))
def test_throw_before_the_first_item_ends_the_stream_while_the_error_is_held(scraper, way):
    gen = WAYS[way](scraper.registry, 3)
    error = ValueError("consumer gave up")
    with pytest.raises(ValueError) as caught:
        gen.throw(error)
    assert caught.value is error  # straight back, as from a bare generator not started
    # The caller still holds the exception, whose traceback holds the wrapper's frame.
    assert outcomes(scraper) == {"cancelled": 1.0}
    assert scraper.value("inferwatch_requests_in_flight") == 0
    with pytest.raises(StopIteration):
        next(gen)


@pytest.mark.parametrize("way", ["function returning one", "generator function, keyword"])
def test_a_send_before_the_first_item_leaves_the_stream_to_a_later_close(scraper, way):
    gen = WAYS[way](scraper.registry, 3)
    with pytest.raises(TypeError):
        gen.send("too early")
    assert scraper.value("inferwatch_requests_in_flight") == 1  # still usable, still open
    gen.close()
    assert outcomes(scraper) == {"cancelled": 1.0}
    assert scraper.value("inferwatch_requests_in_flight") == 0


@pytest.mark.parametrize("way", [way for way in WAYS if way != "generator function, positional"])
def test_the_wrapper_is_a_generator_to_its_caller(scraper, way):
    gen = WAYS[way](scraper.registry, 3)
    assert isinstance(gen, types.GeneratorType) and inspect.isgenerator(gen)
    assert inspect.getgeneratorstate(gen) == inspect.GEN_CREATED
    assert next(gen) == "tok0 "
    assert inspect.getgeneratorstate(gen) == inspect.GEN_SUSPENDED
    assert list(gen) == ["tok1 ", "tok2 "]
    assert inspect.getgeneratorstate(gen) == inspect.GEN_CLOSED
    assert outcomes(scraper) == {"ok": 1.0}
    assert scraper.value("inferwatch_stream_items_sum") == 3


def test_a_keyword_call_in_a_loop_stopped_early_records_its_items(scraper):
    stream = inferwatch.instrument(tokens, name="gen", version="1", registry=scraper.registry)
    gen = stream(n=5)
    for item in gen:
        if item == "tok1 ":
            break
    gen.close()
    assert outcomes(scraper) == {"cancelled": 1.0}
    assert scraper.value("inferwatch_stream_items_sum") == 2


STEPS = st.lists(st.sampled_from(["next", "send None", "send value", "throw", "close"]),
                 max_size=6)


def _apply(gen, step: str) -> object:
    """What `step` on `gen` gives: its value, or the class of what it raised."""
    try:
        if step == "next":
            return next(gen)
        if step == "send None":
            return gen.send(None)
        if step == "send value":
            return gen.send("value")
        if step == "throw":
            return gen.throw(ValueError("consumer"))
        return gen.close()
    except (StopIteration, ValueError, TypeError) as exc:
        return exc.__class__


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(way=st.sampled_from(list(WAYS)), n=st.integers(0, 3), steps=STEPS)
def test_any_steps_go_as_on_the_bare_generator_and_the_close_ends_the_call(
        scraper, way, n, steps):
    """The consumer's steps get what they get from the bare generator (the primed positional
    call aside, where a send before the first item ends the stream), and once the consumer
    closes it, the call is counted, once, with the stream still held."""
    gen = WAYS[way](scraper.registry, n)
    bare = tokens(n)
    before = scraper.total("inferwatch_requests_total")
    primed = way == "generator function, positional"
    for step in steps:
        got, expected = _apply(gen, step), _apply(bare, step)
        if primed and step == "send value" and expected is TypeError:
            break  # the primed wrapper ends there, as cancelled: checked below all the same
        assert got == expected, step
    gen.close()
    assert scraper.total("inferwatch_requests_total") - before == 1
    assert scraper.total("inferwatch_requests_in_flight") == 0
