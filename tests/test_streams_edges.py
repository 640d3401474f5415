"""Streams at their edges: a usage reader that answers the wrong shape, text items that are
str subclasses, and SDK stream objects held after their last item or written to a log."""

from __future__ import annotations

import asyncio
import gc
import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch

_EXAMPLES = settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])


def _outcomes(scraper, model: str) -> dict[str, float]:
    return {s.labels["outcome"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_requests_total" and s.labels["model"] == model}


class Chunks:
    """An SDK's stream object (not a generator): iterated item by item through a proxy."""

    def __init__(self, items: list) -> None:
        self._items = iter(items)

    def __iter__(self) -> Chunks:
        return self

    def __next__(self) -> object:
        return next(self._items)

    def __repr__(self) -> str:
        return "<Chunks of a chat completion>"

    def __str__(self) -> str:
        return "chat completion chunks"


# What a user's usage= function may answer instead of (input_tokens, output_tokens).
_NOT_A_PAIR = st.one_of(
    st.integers(), st.floats(allow_nan=True), st.text(), st.binary(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.lists(st.integers(0, 9), max_size=5).filter(lambda xs: len(xs) != 2).map(tuple),
    st.just(object()))


@_EXAMPLES
@given(answer=_NOT_A_PAIR, items=st.integers(0, 3))
def test_a_usage_reader_answering_no_pair_still_counts_the_call(answer, items):
    from conftest import Scraper

    scraper = Scraper()
    try:
        def stream(n: int):
            yield from ({"usage": {"prompt_tokens": 1}} for _ in range(n))

        gen = inferwatch.instrument(stream, name="gen", version="1", registry=scraper.registry,
                                    usage=lambda result: answer)
        text = inferwatch.instrument(lambda: "an answer", name="text", version="1",
                                     registry=scraper.registry, usage=lambda result: answer)
        assert len(list(gen(items))) == items
        assert text() == "an answer"
        for model in ("gen", "text"):
            assert _outcomes(scraper, model) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0}
            assert scraper.value("inferwatch_requests_in_flight", model=model) == 0
        assert scraper.total("inferwatch_tokens_total") == 0
    finally:
        scraper.registry.close()


class Token(str):
    """A tokenizer's text piece: a str subclass whose len() is not its characters."""

    def __len__(self) -> int:
        raise TypeError("a token has no length")


_KINDS = ("generator function", "generator", "iterator object", "async generator")


def _consume(kind: str, items: list[str], registry) -> list:
    def produce(xs: list[str]):
        yield from xs

    async def produce_async(xs: list[str]):
        for x in xs:
            yield x

    model = {"generator function": produce, "generator": lambda xs: produce(xs),
             "iterator object": lambda xs: Chunks(xs),
             "async generator": lambda xs: produce_async(xs)}[kind]
    stream = inferwatch.instrument(model, name="m", version="1", registry=registry)
    if kind == "async generator":
        async def gather() -> list:
            return [x async for x in stream(items)]
        return asyncio.run(gather())
    return list(stream(items))


@_EXAMPLES
@given(texts=st.lists(st.text(max_size=20), max_size=6), kind=st.sampled_from(_KINDS),
       make=st.sampled_from([np.str_, Token]))
def test_text_items_that_are_str_subclasses_count_their_characters(texts, kind, make):
    from conftest import Scraper

    scraper = Scraper()
    try:
        items = [make(t) for t in texts]
        received = _consume(kind, items, scraper.registry)
        assert all(a is b for a, b in zip(received, items, strict=True))
        assert _outcomes(scraper, "m")["ok"] == 1
        expected = sum(str.__len__(t) for t in items)
        if items:
            assert scraper.value("inferwatch_output_characters_sum") == expected
            assert scraper.value("inferwatch_output_characters_count") == 1
    finally:
        scraper.registry.close()


class Tensor:
    """A huge item (a batch of logits), to be freed as soon as the caller drops it."""


def test_a_finished_stream_object_holds_no_item_the_caller_dropped(scraper):
    stream = inferwatch.instrument(lambda: Chunks([Tensor(), Tensor()]), name="m",
                                   version="1", registry=scraper.registry)
    held = stream()
    alive = [weakref.ref(item) for item in held]
    gc.collect()
    assert [ref() for ref in alive] == [None, None]
    assert _outcomes(scraper, "m")["ok"] == 1
    del held


def test_a_stream_object_written_to_a_log_reads_as_the_stream(scraper):
    stream = inferwatch.instrument(lambda: Chunks(["a"]), name="m", version="1",
                                   registry=scraper.registry)()
    assert repr(stream) == "<Chunks of a chat completion>"
    assert str(stream) == f"{stream}" == "chat completion chunks"
    assert list(stream) == ["a"]


def test_str_subclass_items_kept_for_the_event_log_never_raise(scraper, tmp_path):
    def produce(xs: list[str]):
        yield from xs

    items = [Token("tok0 "), Token("tok1 ")]
    stream = inferwatch.instrument(produce, name="m", version="1", registry=scraper.registry,
                                   events=str(tmp_path / "events.jsonl"), event_text_chars=7)
    assert list(stream(items)) == items
    assert _outcomes(scraper, "m") == {"ok": 1.0, "error": 0.0, "cancelled": 0.0}
    assert scraper.value("inferwatch_output_characters_sum") == 10


def test_a_stream_collected_while_the_drain_takes_its_calls_never_hangs_it(monkeypatch):
    """An abandoned stream in a reference cycle is recorded by the garbage collector, which
    can run inside the drain's locked take (any allocation sets it off). With the pending
    list full, recording it hands the list off under the same lock: it must not wait on
    itself."""
    import threading

    from inferwatch.core import monitor_drain
    from inferwatch.core.registry import Registry

    registry = Registry(drain_interval=3600)
    try:
        def tokens(x):
            yield from ("a", "b", "c")

        wrapped = inferwatch.instrument(tokens, name="llm", version="1", registry=registry)
        monitor = registry.monitor("llm", "1")
        monitor.configure(max_pending=800)
        while len(monitor._streams) < monitor._chunk:
            list(wrapped(1))
        finished = len(monitor._streams)
        abandoned = wrapped(1)
        next(abandoned)
        cycle: list = [abandoned]
        cycle.append(cycle)
        del abandoned, cycle
        take = monitor_drain.take

        def take_after_a_collection(pending):
            gc.collect()  # what an allocation at this point may set off
            return take(pending)

        monkeypatch.setattr(monitor_drain, "take", take_after_a_collection)
        drain = threading.Thread(target=registry.drain, daemon=True)
        drain.start()
        drain.join(30)
        assert not drain.is_alive(), "the drain waits on its own lock"
        monkeypatch.setattr(monitor_drain, "take", take)
        registry.drain()
        requests = monitor.state.counters["inferwatch_requests_total"]
        assert requests[("ok",)] == finished and requests[("cancelled",)] == 1
    finally:
        registry.close()


def _anthropic_events(input_tokens: int, output_tokens: int) -> list:
    """The events of Anthropic's raw message stream (``messages.create(stream=True)``): the
    token counts come along the way, and the last event carries none."""
    from types import SimpleNamespace as Event

    return [
        Event(type="message_start", message=Event(
            id="msg_1", usage=Event(input_tokens=input_tokens, output_tokens=1))),
        Event(type="content_block_start", index=0),
        Event(type="content_block_delta", index=0, delta=Event(type="text_delta", text="Hi")),
        Event(type="content_block_stop", index=0),
        Event(type="message_delta", delta=Event(stop_reason="end_turn"),
              usage=Event(output_tokens=output_tokens)),
        Event(type="message_stop"),
    ]


@pytest.mark.parametrize("shape", ["generator", "stream object", "async generator"])
def test_usage_of_an_anthropic_stream_is_read_along_the_way(shape):
    from inferwatch.core.registry import Registry

    registry = Registry(drain_interval=3600)
    try:
        events = _anthropic_events(25, 15)

        class Stream:  # the SDK's Stream: an iterator object with a response attached
            def __init__(self) -> None:
                self._events = iter(events)
                self.response = "the HTTP response"

            def __iter__(self):
                return self

            def __next__(self):
                return next(self._events)

        def create(**kwargs):
            if shape == "generator":
                return (event for event in events)
            return Stream()

        async def create_async(**kwargs):
            for event in events:
                yield event

        if shape == "async generator":
            client = inferwatch.instrument(create_async, name="chat", version="1",
                                           usage=True, registry=registry)

            async def consume() -> list:
                return [event async for event in client(stream=True)]

            got = asyncio.run(consume())
        else:
            client = inferwatch.instrument(create, name="chat", version="1", usage=True,
                                           registry=registry)
            got = list(client(stream=True))
        assert got == events
        registry.drain()
        tokens = registry.monitor("chat", "1").state.counters["inferwatch_tokens_total"]
        assert tokens == {("input",): 25.0, ("output",): 15.0}
    finally:
        registry.close()
