"""instrument() on generator functions and async generator functions: the wrapper must be
the function to the caller and to the frameworks that inspect it, and every stream it
starts must be counted once, however the caller drives it.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import pickle

import pytest

import inferwatch
from inferwatch.core.registry import Registry


def _count(scraper, model: str, outcome: str) -> float:
    return scraper.value("inferwatch_requests_total", model=model, outcome=outcome) or 0.0


def countdown(n):
    """Counts down from n, adding what was sent."""
    total = 0
    while n > 0:
        sent = yield n + total
        total += sent or 0
        n -= 1


async def acountdown(n):
    for i in range(n, 0, -1):
        yield i


_MODULE_REGISTRY = Registry()


@inferwatch.instrument(name="module_level_gen", registry=_MODULE_REGISTRY)
def decorated_countdown(n):
    yield from range(n, 0, -1)


# --- streams started and never consumed ---------------------------------------------------


def test_closed_or_dropped_before_its_first_item_is_one_cancelled_stream(scraper):
    gen = inferwatch.instrument(countdown, name="unstarted", registry=scraper.registry)
    closed = gen(3)
    closed.close()
    dropped = gen(3)
    del dropped
    gc.collect()
    assert _count(scraper, "unstarted", "cancelled") == 2
    assert _count(scraper, "unstarted", "ok") == 0


def test_arguments_the_function_refuses_raise_at_the_call_and_count_once(scraper):
    gen = inferwatch.instrument(countdown, name="badargs", registry=scraper.registry)
    with pytest.raises(TypeError):
        countdown(1, 2)
    with pytest.raises(TypeError):
        gen(1, 2)
    assert _count(scraper, "badargs", "error") == 1
    assert list(gen(2)) == [2, 1]
    assert _count(scraper, "badargs", "ok") == 1


# --- what inspect (Gradio, Ray Serve, FastAPI) sees --------------------------------------------


def test_an_instrumented_generator_function_is_a_generator_function(scraper):
    gen = inferwatch.instrument(countdown, name="inspected", registry=scraper.registry)
    assert inspect.isgeneratorfunction(gen)
    assert not inspect.iscoroutinefunction(gen)
    assert inspect.signature(gen) == inspect.signature(countdown)
    assert gen.__name__ == "countdown" and gen.__doc__ == countdown.__doc__
    assert gen.__wrapped__ is countdown
    assert list(gen(2)) == [2, 1]
    assert _count(scraper, "inspected", "ok") == 1


def test_an_instrumented_async_generator_function_is_one(scraper):
    agen = inferwatch.instrument(acountdown, name="ainspected", registry=scraper.registry)
    assert inspect.isasyncgenfunction(agen)
    assert not inspect.isgeneratorfunction(agen)

    async def consume():
        return [x async for x in agen(3)]

    assert asyncio.run(consume()) == [3, 2, 1]
    assert _count(scraper, "ainspected", "ok") == 1


def test_a_generator_method_decorated_in_its_class_binds_and_inspects_as_one(scraper):
    class Chat:
        prefix = "t"

        @inferwatch.instrument(name="chat_method", registry=scraper.registry)
        def stream(self, n):
            for i in range(n):
                yield f"{self.prefix}{i}"

    chat = Chat()
    assert inspect.isgeneratorfunction(chat.stream)
    assert inspect.ismethod(chat.stream) and chat.stream.__self__ is chat
    assert list(chat.stream(2)) == ["t0", "t1"]
    assert list(Chat.stream(chat, 1)) == ["t0"]
    assert _count(scraper, "chat_method", "ok") == 2


def test_an_instrumented_generator_function_pickles_by_name_as_the_function_does():
    restored = pickle.loads(pickle.dumps(decorated_countdown))
    assert restored is decorated_countdown
    assert list(restored(2)) == [2, 1]


def test_instrumenting_an_instrumented_generator_function_again_counts_once(scraper):
    first = inferwatch.instrument(countdown, name="inner_gen", registry=scraper.registry)
    second = inferwatch.instrument(first, name="outer_gen", registry=scraper.registry)
    assert list(second(3)) == [3, 2, 1]
    assert _count(scraper, "outer_gen", "ok") == 1
    assert _count(scraper, "inner_gen", "ok") == 0
