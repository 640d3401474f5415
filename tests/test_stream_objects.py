"""Results that are iterator objects, not generators: an SDK's stream keeps its interface
(attributes, isinstance, with / async with, close) and is recorded item by item; a file is
no stream and comes back untouched."""

from __future__ import annotations

import asyncio
import gc
import io
from types import SimpleNamespace

import pytest

import inferwatch
from stream_totals import AsyncItems


class Stream:
    """The interface of openai's ``Stream``: an iterator, a context manager, ``.response``."""

    def __init__(self, chunks: list) -> None:
        self.response = SimpleNamespace(headers={"x-request-id": "req_1"})
        self.closed = 0
        self._chunks = iter(chunks)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._chunks)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self) -> None:
        self.closed += 1


class AsyncStream(AsyncItems):
    """The interface of openai's ``AsyncStream``: ``async with``, ``await close()``."""

    def __init__(self, chunks: list) -> None:
        super().__init__(chunks)
        self.response = SimpleNamespace(headers={})
        self.closed = 0

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.close()

    async def close(self) -> None:
        self.closed += 1


def chunks(n: int = 3) -> list:
    last = SimpleNamespace(text="", usage=SimpleNamespace(prompt_tokens=7, completion_tokens=n))
    return [SimpleNamespace(text=f"t{i}", usage=None) for i in range(n)] + [last]


def outcomes(scraper, model: str = "gpt") -> dict[str, float]:
    return {s.labels["outcome"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_requests_total" and s.labels["model"] == model}


def test_an_sdk_stream_keeps_its_interface_and_its_items_are_recorded(scraper):
    def create(*, messages, stream=False):
        return Stream(chunks())

    client = inferwatch.instrument(create, name="gpt", usage=True, registry=scraper.registry)
    with client(messages=[], stream=True) as stream:
        assert isinstance(stream, Stream)
        assert stream.response.headers == {"x-request-id": "req_1"}
        received = list(stream)
    assert [c.text for c in received] == ["t0", "t1", "t2", ""]
    assert stream.closed == 1  # its own __exit__ ran
    assert outcomes(scraper) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0}
    assert scraper.value("inferwatch_stream_items_sum") == 4
    assert scraper.value("inferwatch_stream_first_item_seconds_count") == 1
    assert scraper.value("inferwatch_stream_item_interval_seconds_count") == 3
    assert scraper.value("inferwatch_tokens_total", kind="input") == 7  # the last chunk's usage
    assert scraper.value("inferwatch_tokens_total", kind="output") == 3


def test_an_sdk_stream_closed_left_or_dropped_early_is_cancelled_with_its_figures(scraper):
    client = inferwatch.instrument(lambda: Stream(chunks()), name="gpt",
                                   registry=scraper.registry)
    stream = client()
    next(stream)
    stream.close()
    assert stream.closed == 1
    with client() as stream:
        next(stream)
    assert stream.closed == 1
    stream = client()
    next(stream)
    next(stream)
    del stream
    gc.collect()
    assert outcomes(scraper) == {"ok": 0.0, "error": 0.0, "cancelled": 3.0}
    assert scraper.value("inferwatch_stream_items_sum") == 4
    assert scraper.value("inferwatch_requests_in_flight") == 0


def test_an_async_sdk_stream_keeps_its_interface(scraper):
    async def create(*, messages, stream=False):
        return AsyncStream(chunks())

    client = inferwatch.instrument(create, name="gpt", usage=True, registry=scraper.registry)

    async def scenario() -> tuple[list, AsyncStream, AsyncStream]:
        async with await client(messages=[], stream=True) as stream:
            assert isinstance(stream, AsyncStream) and stream.response.headers == {}
            received = [chunk.text async for chunk in stream]
        early = await client(messages=[], stream=True)
        await early.__anext__()
        await early.close()
        return received, stream, early

    received, stream, early = asyncio.run(scenario())
    assert received == ["t0", "t1", "t2", ""]
    assert stream.closed == 1 and early.closed == 1
    assert outcomes(scraper) == {"ok": 1.0, "error": 0.0, "cancelled": 1.0}
    assert scraper.value("inferwatch_stream_items_sum") == 5
    assert scraper.value("inferwatch_tokens_total", kind="output") == 3


def test_an_iterator_objects_methods_are_its_own(scraper):
    class Echo:  # generator-like, not a generator: send() passes through, recorded
        def __iter__(self):
            return self

        def __next__(self):
            return "next"

        def send(self, value):
            return f"got {value}"

    client = inferwatch.instrument(lambda: Echo(), name="gpt", registry=scraper.registry)
    stream = client()
    assert stream.send(1) == "got 1" and next(stream) == "next"
    assert not hasattr(stream, "throw") and not hasattr(stream, "close")
    bare = inferwatch.instrument(lambda: iter([1]), name="gpt", registry=scraper.registry)()
    assert not hasattr(bare, "close")  # as on a list iterator
    error = KeyError("mid-stream")

    class Failing(Echo):
        def __next__(self):
            raise error

    with pytest.raises(KeyError) as caught:
        next(inferwatch.instrument(lambda: Failing(), name="gpt", registry=scraper.registry)())
    assert caught.value is error
    del stream, bare
    gc.collect()
    assert outcomes(scraper) == {"ok": 0.0, "error": 1.0, "cancelled": 2.0}
    assert scraper.value("inferwatch_stream_items_sum") == 2


def test_a_file_is_returned_untouched_and_recorded_as_an_unsupported_output(scraper):
    audio = io.BytesIO(b"RIFF....WAVE")
    tts = inferwatch.instrument(lambda text: audio, name="tts", registry=scraper.registry)
    result = tts("hello")
    assert result is audio
    assert outcomes(scraper, "tts") == {"ok": 1.0, "error": 0.0, "cancelled": 0.0}
    assert scraper.value("inferwatch_invalid_predictions_total", reason="unsupported_type") == 1
    assert scraper.value("inferwatch_stream_items_count") is None
    assert result.read() == b"RIFF....WAVE"  # the drain read none of it


@pytest.mark.parametrize("make", [Stream, AsyncStream])
def test_attributes_set_on_a_followed_stream_are_the_streams(scraper, make):
    """Setting or deleting an attribute on what the call returned reaches the stream, as
    it would unwrapped; the proxy's own figures are not the stream's to touch."""
    client = inferwatch.instrument(lambda: make(chunks()), name="gpt", registry=scraper.registry)
    stream = client()
    raw = object.__getattribute__(stream, "_inferwatch_stream")
    assert raw is not stream
    stream.timeout = 2.5
    stream.response = "replaced"
    assert (raw.timeout, raw.response) == (2.5, "replaced")
    assert (stream.timeout, stream.response) == (2.5, "replaced")
    del stream.timeout
    assert not hasattr(raw, "timeout") and not hasattr(stream, "timeout")
    with pytest.raises(AttributeError):
        del stream.never_set
