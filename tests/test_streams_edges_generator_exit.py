"""Streams at their edges, as an LLM server meets them: a relay that stops by raising
GeneratorExit, a streamer's empty text pieces and token classes in the event log's text, a
bad usage count in the last chunk, and an SDK stream with a len()."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from collections.abc import Sized

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults
from inferwatch.core.registry import Registry

_EXAMPLES = settings(max_examples=25, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])


def _outcomes(scraper, model: str = "gen") -> dict[str, float]:
    return {s.labels["outcome"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_requests_total" and s.labels["model"] == model}


def _fault_count(component: str) -> int:
    return faults.internal_error_counts().get(component, 0)


# -- a stream that stops by raising GeneratorExit ------------------------------------------


def _relay(n: int):
    """A relay that stops its consumer the way some SSE helpers do: GeneratorExit."""
    yield from range(n)
    raise GeneratorExit


async def _relay_async(n: int):
    for i in range(n):
        yield i
    raise GeneratorExit


@pytest.mark.parametrize("kind", ["generator function", "generator", "async generator"])
def test_a_stream_raising_generator_exit_is_counted_once_and_leaves_nothing_in_flight(
        scraper, kind):
    if kind == "generator function":
        model = inferwatch.instrument(_relay, name="gen", version="1", registry=scraper.registry)
    elif kind == "generator":
        model = inferwatch.instrument(lambda n: _relay(n), name="gen", version="1",
                                      registry=scraper.registry)
    else:
        model = inferwatch.instrument(_relay_async, name="gen", version="1",
                                      registry=scraper.registry)
    stream = model(3)  # held: the count must not wait for the stream to be collected
    received = []
    with pytest.raises(GeneratorExit):
        if kind == "async generator":
            async def consume(source):
                async for item in source:
                    received.append(item)
            asyncio.run(consume(stream))
        else:
            for item in stream:
                received.append(item)
    assert received == [0, 1, 2]
    assert _outcomes(scraper) == {"ok": 0.0, "error": 0.0, "cancelled": 1.0}
    assert scraper.value("inferwatch_requests_in_flight") == 0
    assert scraper.value("inferwatch_stream_items_sum") == 3
    assert scraper.value("inferwatch_errors_total") is None  # the stream stopped, no error
    del stream
    gc.collect()
    assert _outcomes(scraper)["cancelled"] == 1.0  # and never a second time


# -- text kept for the event log -------------------------------------------------------------


# Run in a fresh interpreter: tracemalloc's peak counts every thread's allocations, and
# threads other tests leave in a shared process (a drain, an event writer) can allocate
# during the long stream.
_EMPTY_PIECES = """
import sys
import tracemalloc

import inferwatch
from inferwatch.core.registry import Registry


def pieces(prompt, n):
    # A streamer hands out "" whenever a token ends no word.
    yield "Hello"
    for _ in range(n):
        yield ""


def peak_of_stream(model, n):
    stream = model("a prompt", n)
    next(stream)
    tracemalloc.start()
    try:
        for _ in stream:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


registry = Registry(drain_interval=3600)
model = inferwatch.instrument(pieces, name="gen", version="1", registry=registry,
                              events=sys.argv[1], event_text_chars=100)
peak_of_stream(model, 1000)  # warm: first-use allocations
short = peak_of_stream(model, 1000)
long = peak_of_stream(model, 100_000)
registry.drain()
state = registry.monitor("gen", "1").state
items = state.histograms["inferwatch_stream_items"][()].sum
requests = state.counters["inferwatch_requests_total"]
registry.close()
print(long - short, items, requests.get(("ok",), 0.0), requests.get(("error",), 0.0),
      requests.get(("cancelled",), 0.0))
"""


def test_a_stream_of_empty_text_pieces_holds_constant_memory_with_kept_text(tmp_path):
    # With an event log keeping the text, each empty piece must cost nothing.
    done = subprocess.run([sys.executable, "-c", _EMPTY_PIECES, str(tmp_path / "events.jsonl")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    growth, items, ok, error, cancelled = done.stdout.split()
    # Any per-item growth would be at least 8 bytes x 99,000 items.
    assert int(growth) < 64 * 1024
    assert float(items) == 3 + 1000 + 1000 + 100_000
    assert (float(ok), float(error), float(cancelled)) == (3.0, 0.0, 0.0)


class TokenText(str):
    """A tokenizer's text piece whose indexing gives its token ids, not characters."""

    def __getitem__(self, key):
        raise IndexError("a token piece is indexed by token, not by character")


@_EXAMPLES
@given(texts=st.lists(st.text("abcxyz .", max_size=8), min_size=1, max_size=6),
       keep=st.integers(1, 20),
       kind=st.sampled_from(["generator function", "generator", "iterator object",
                             "async generator"]))
def test_token_text_items_kept_for_the_event_log_never_raise(tmp_path_factory, texts, keep,
                                                               kind):
    items = [TokenText(t) for t in texts]
    path = tmp_path_factory.mktemp("events") / "events.jsonl"

    def produce(prompt):
        yield from items

    async def produce_async(prompt):
        for item in items:
            yield item

    make = {"generator function": produce, "generator": lambda p: produce(p),
            "iterator object": lambda p: iter(items), "async generator": produce_async}[kind]
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(make, name="gen", version="1", registry=registry,
                                      events=str(path), event_text_chars=keep)
        if kind == "async generator":
            async def consume():
                return [item async for item in model("hi")]
            received = asyncio.run(consume())
        else:
            received = list(model("hi"))
        assert received == items and all(a is b for a, b in zip(received, items, strict=True))
        mon = registry.monitor("gen", "1")
        mon.drain()
        assert mon.state.counters["inferwatch_requests_total"][("ok",)] == 1
        assert mon.events.flush(10.0)
        events = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(events) == 1 and events[0]["stream"]["items"] == len(items)
        whole = "".join(str.__str__(t) for t in texts)
        assert events[0].get("output_text", "") == whole[:keep]
    finally:
        registry.close()


# -- usage in the last chunk -----------------------------------------------------------------


@_EXAMPLES
@given(bad=st.one_of(st.text(max_size=4), st.integers(max_value=-1), st.just([1, 2]),
                     st.floats(allow_nan=True).filter(lambda f: f != f or f < 0 or f % 1)),
       completion=st.integers(0, 10**6),
       kind=st.sampled_from(["generator function", "generator", "iterator object",
                             "async generator"]))
def test_a_bad_count_in_a_streams_last_chunk_is_one_fault(bad, completion, kind):
    # OpenAI's stream with include_usage: the usage comes in the last chunk only, here from
    # a proxy server that sends the prompt tokens as no count.
    chunks = [{"choices": [{"delta": {"content": "Hi"}}], "usage": None},
              {"choices": [], "usage": {"prompt_tokens": bad, "completion_tokens": completion}}]

    def relay():
        yield from chunks

    async def relay_async():
        for chunk in chunks:
            yield chunk

    make = {"generator function": relay, "generator": lambda: relay(),
            "iterator object": lambda: iter(chunks), "async generator": relay_async}[kind]
    registry = Registry(drain_interval=3600)
    try:
        client = inferwatch.instrument(make, name="gpt", version="1", usage=True,
                                       registry=registry)
        before = _fault_count("tokens")
        if kind == "async generator":
            async def consume():
                return [chunk async for chunk in client()]
            received = asyncio.run(consume())
        else:
            received = list(client())
        assert received == chunks
        assert _fault_count("tokens") - before == 1
        registry.drain()
        state = registry.monitor("gpt", "1").state
        assert state.counters["inferwatch_requests_total"][("ok",)] == 1
        tokens = state.counters["inferwatch_tokens_total"]
        assert tokens.get(("input",)) is None
        assert tokens.get(("output",), 0.0) == completion
    finally:
        registry.close()


# -- an SDK stream with a len() --------------------------------------------------------------


class Batches:
    """A data loader's iterator: it knows how many batches are left."""

    def __init__(self, n: int) -> None:
        self.left = n

    def __len__(self) -> int:
        return self.left

    def __iter__(self):
        return self

    def __next__(self) -> int:
        if not self.left:
            raise StopIteration
        self.left -= 1
        return self.left


class Chunks:
    def __init__(self, n: int) -> None:
        self.rest = iter(range(n))

    def __iter__(self):
        return self

    def __next__(self) -> int:
        return next(self.rest)


@_EXAMPLES
@given(n=st.integers(0, 5))
def test_a_stream_object_keeps_its_len_and_truth(scraper, n):
    batches = inferwatch.instrument(lambda k: Batches(k), name="gen", version="1",
                                    registry=scraper.registry)
    stream, bare = batches(n), Batches(n)
    assert len(stream) == len(bare) == n
    assert bool(stream) is bool(bare) is (n > 0)
    assert isinstance(stream, Sized) and isinstance(stream, Batches)
    assert list(stream) == list(bare)
    assert len(stream) == 0 and not stream

    chunks = inferwatch.instrument(lambda k: Chunks(k), name="chunks", version="1",
                                   registry=scraper.registry)
    unsized = chunks(n)
    assert bool(unsized) is bool(Chunks(n)) is True
    assert not hasattr(unsized, "__len__") and not isinstance(unsized, Sized)
    with pytest.raises(TypeError):
        len(unsized)
    assert list(unsized) == list(range(n))
    assert _outcomes(scraper)["ok"] >= 1 and _outcomes(scraper, "chunks")["ok"] >= 1
    assert scraper.value("inferwatch_requests_in_flight", model="gen") == 0
