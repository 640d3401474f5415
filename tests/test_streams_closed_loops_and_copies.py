"""Streams as servers drop, copy and probe them: an async stream left behind by an event loop
closed without ``shutdown_asyncgens()``, a copied or pickled SDK stream, and a proxy that has
exactly the special methods (``with``, ``async with``, ``len()``) its stream has."""

from __future__ import annotations

import asyncio
import copy
import gc
import pickle
import sys
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.core.stream_objects import AsyncStreamProxy, StreamProxy
from stream_totals import STREAM_EXAMPLES, AsyncItems, stream_items, stream_outcomes


class _Unraisable:
    """Whatever a finaliser let escape (sys.unraisablehook), for the test to see."""

    def __init__(self) -> None:
        self.seen: list[BaseException | None] = []

    def __enter__(self) -> _Unraisable:
        self.previous = sys.unraisablehook
        sys.unraisablehook = lambda args: self.seen.append(args.exc_value)
        return self

    def __exit__(self, *exc_info: object) -> None:
        sys.unraisablehook = self.previous


# -- an async stream left behind by a closed event loop ------------------------------------


async def _tokens(n: int):
    for i in range(n):
        yield f"t{i}"


class _AsyncChunks(AsyncItems):
    """An async iterator object (no async generator): followed by a proxy."""

    def __init__(self, n: int) -> None:
        super().__init__([f"t{i}" for i in range(n)])


def _async_model(kind: str, registry: Registry):
    if kind == "async generator function":
        return inferwatch.instrument(_tokens, name="gen", version="1", registry=registry)
    if kind == "async generator":
        return inferwatch.instrument(lambda n: _tokens(n), name="gen", version="1",
                                     registry=registry)
    return inferwatch.instrument(lambda n: _AsyncChunks(n), name="gen", version="1",
                                 registry=registry)


@STREAM_EXAMPLES
@given(kind=st.sampled_from(["async generator function", "async generator", "proxy"]),
       total=st.integers(1, 20), data=st.data())
def test_an_async_stream_dropped_after_its_loop_closed_is_counted_as_cancelled(kind, total,
                                                                                data):
    """A worker thread's event loop closed without shutdown_asyncgens() (loop.close() alone,
    as many hand-rolled loops do) never closes the stream it left half-read: the request
    must still be counted, as cancelled, with the items it had, and nothing may escape."""
    taken = data.draw(st.integers(1, total), label="taken")
    registry = Registry(drain_interval=3600)
    try:
        model = _async_model(kind, registry)

        async def read(stream):
            return [await stream.__anext__() for _ in range(taken)]

        loop = asyncio.new_event_loop()
        stream = model(total)
        assert loop.run_until_complete(read(stream)) == [f"t{i}" for i in range(taken)]
        loop.close()  # no shutdown_asyncgens()
        with _Unraisable() as unraisable:
            del stream
            gc.collect()
        assert unraisable.seen == []
        assert stream_outcomes(registry) == {("cancelled",): 1.0}
        assert stream_items(registry, drain=False) == taken
        assert registry.monitor("gen", "1").in_flight() == 0
    finally:
        registry.close()


# Python 3.13 warns that the closed loop's aclose() was never awaited, with the stream as
# the warning's source: pytest's recorder would keep it, and its count, alive.
@pytest.mark.filterwarnings("ignore:coroutine method:RuntimeWarning")
def test_an_async_stream_of_a_thread_whose_loop_closed_is_counted_once(scraper):
    """The same, from a worker thread, with the stream dropped there; a later collection
    counts nothing twice."""
    model = _async_model("async generator function", scraper.registry)
    done = threading.Event()

    def worker() -> None:
        loop = asyncio.new_event_loop()

        async def first_two():
            stream = model(5)
            return [await stream.__anext__(), await stream.__anext__()]

        try:
            assert loop.run_until_complete(first_two()) == ["t0", "t1"]
        finally:
            loop.close()
            done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=30)
    assert done.is_set()
    gc.collect()
    gc.collect()
    assert scraper.value("inferwatch_requests_total", outcome="cancelled") == 1.0
    assert scraper.value("inferwatch_stream_items_sum") == 2.0


def test_an_async_stream_closed_by_its_loop_still_ends_once_with_its_items(scraper):
    """asyncio.run() closes the stream through shutdown_asyncgens(): one cancelled stream,
    its items counted, as before."""
    model = _async_model("async generator function", scraper.registry)
    kept = []

    async def main():
        stream = model(5)
        kept.append(stream)
        return [await stream.__anext__() for _ in range(3)]

    assert asyncio.run(main()) == ["t0", "t1", "t2"]
    kept.clear()
    gc.collect()
    assert scraper.value("inferwatch_requests_total", outcome="cancelled") == 1.0
    assert scraper.value("inferwatch_stream_items_sum") == 3.0


# -- copying and pickling an SDK stream -----------------------------------------------------


class Chunks:
    """An SDK's sync stream: plain attributes, copyable and picklable as any object."""

    def __init__(self, items: list[str]) -> None:
        self.items = list(items)
        self.position = 0
        self.response = "HTTP 200"

    def __iter__(self):
        return self

    def __next__(self):
        if self.position >= len(self.items):
            raise StopIteration
        self.position += 1
        return self.items[self.position - 1]


class LockedChunks(Chunks):
    """A stream holding a connection's lock: it cannot be copied, and says so itself."""

    def __init__(self, items: list[str]) -> None:
        super().__init__(items)
        self.lock = threading.Lock()


@STREAM_EXAMPLES
@given(items=st.lists(st.text(max_size=5), max_size=8), data=st.data())
def test_a_copied_or_pickled_stream_is_the_streams_own_copy(items, data):
    """copy.copy, copy.deepcopy and pickle of the proxy give what they give for the stream
    itself: a stream at the same position. The call stays one stream, the proxy's."""
    taken = data.draw(st.integers(0, len(items)), label="taken")
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda xs: Chunks(xs), name="gen", version="1",
                                      registry=registry)
        stream = model(items)
        for _ in range(taken):
            next(stream)
        for copied in (copy.copy(stream), copy.deepcopy(stream),
                       pickle.loads(pickle.dumps(stream))):
            assert type(copied) is Chunks
            assert copied.response == "HTTP 200"
            assert list(copied) == items[taken:]
        assert list(stream) == items[taken:]  # the proxy read on, unmoved by its copies
        assert stream_outcomes(registry) == {("ok",): 1.0}
        assert stream_items(registry, drain=False) == len(items)
    finally:
        registry.close()


def test_a_copied_proxy_in_a_structure_deep_copies_as_the_stream(scraper):
    model = inferwatch.instrument(lambda: Chunks(["a", "b"]), name="gen", version="1",
                                  registry=scraper.registry)
    stream = model()
    response = {"stream": stream, "again": stream}
    copied = copy.deepcopy(response)
    assert copied["stream"] is copied["again"]  # the memo holds, as for the stream
    assert type(copied["stream"]) is Chunks and list(copied["stream"]) == ["a", "b"]


def test_a_stream_that_cannot_be_copied_refuses_as_it_does_itself(scraper):
    model = inferwatch.instrument(lambda: LockedChunks(["a"]), name="gen", version="1",
                                  registry=scraper.registry)
    stream = model()
    with pytest.raises(TypeError) as raw:
        copy.deepcopy(LockedChunks(["a"]))
    with pytest.raises(TypeError) as proxied:
        copy.deepcopy(stream)
    assert str(proxied.value) == str(raw.value)
    assert list(stream) == ["a"]  # still usable, and recorded
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1.0


# -- the special methods a proxy has are its stream's -------------------------------------


class _Plain:
    def __init__(self) -> None:
        self.rest = iter(["a", "b"])
        self.closed = 0

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.rest)

    def close(self) -> None:
        self.closed += 1


class _Sized(_Plain):
    def __len__(self) -> int:
        return 2


class _Managed(_Plain):
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class _SizedManaged(_Sized, _Managed):
    pass


class _AsyncPlain(AsyncItems):
    def __init__(self) -> None:
        super().__init__(["a", "b"])


class _AsyncManaged(_AsyncPlain):
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        return None


class _AsyncSyncManaged(_AsyncPlain):
    """An async stream that is a sync context manager (closes its connection on exit)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None


_CLASSES = [_Plain, _Sized, _Managed, _SizedManaged, _AsyncPlain, _AsyncManaged,
            _AsyncSyncManaged]


@pytest.mark.parametrize("cls", _CLASSES, ids=lambda cls: cls.__name__)
def test_a_proxy_has_the_special_methods_of_its_stream_and_no_others(scraper, cls):
    model = inferwatch.instrument(lambda: cls(), name="gen", version="1",
                                  registry=scraper.registry)
    stream, raw = model(), cls()
    assert isinstance(stream, cls)
    assert isinstance(stream, AsyncStreamProxy if cls.__name__.startswith("_Async")
                      else StreamProxy)
    for name in ("__enter__", "__exit__", "__aenter__", "__aexit__", "__len__"):
        assert hasattr(stream, name) == hasattr(raw, name), name


@pytest.mark.parametrize("cls", [_Plain, _Sized], ids=lambda cls: cls.__name__)
def test_with_on_a_stream_that_is_no_context_manager_fails_as_unwrapped(scraper, cls):
    model = inferwatch.instrument(lambda: cls(), name="gen", version="1",
                                  registry=scraper.registry)
    stream = model()
    with pytest.raises(TypeError), cls():
        pass
    with pytest.raises(TypeError), stream:
        pass
    assert stream.closed == 0  # not closed behind the caller's back
    assert list(stream) == ["a", "b"]
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1.0


def test_async_with_on_an_async_stream_that_is_no_async_context_manager_fails_as_unwrapped(
        scraper):
    model = inferwatch.instrument(lambda: _AsyncPlain(), name="gen", version="1",
                                  registry=scraper.registry)

    async def main():
        stream = model()
        with pytest.raises(TypeError):
            async with stream:
                pass
        return [item async for item in stream]

    assert asyncio.run(main()) == ["a", "b"]
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1.0


def test_context_managers_still_enter_and_exit_as_the_stream(scraper):
    sync = inferwatch.instrument(lambda: _SizedManaged(), name="gen", version="1",
                                 registry=scraper.registry)
    with sync() as stream:
        assert len(stream) == 2
        assert next(stream) == "a"
    assert stream.closed == 1
    asynchronous = inferwatch.instrument(lambda: _AsyncManaged(), name="agen", version="1",
                                         registry=scraper.registry)
    mixed = inferwatch.instrument(lambda: _AsyncSyncManaged(), name="mixed", version="1",
                                  registry=scraper.registry)

    async def main():
        async with asynchronous() as stream:
            first = await stream.__anext__()
        with mixed() as other:
            items = [item async for item in other]
        return first, items

    assert asyncio.run(main()) == ("a", ["a", "b"])
    assert scraper.value("inferwatch_requests_total", model="gen", outcome="cancelled") == 1.0
    assert scraper.value("inferwatch_requests_total", model="agen", outcome="cancelled") == 1.0
    assert scraper.value("inferwatch_requests_total", model="mixed", outcome="ok") == 1.0


# -- a stream that is both a sync and an async iterator -----------------------------------


class _BothWays(AsyncItems):
    """LiteLLM's CustomStreamWrapper: ``for`` and ``async for`` both read it."""

    def __init__(self, items: list[str]) -> None:
        super().__init__(items)
        self.closed = False

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.rest)

    async def aclose(self) -> None:
        self.closed = True


@STREAM_EXAMPLES
@given(items=st.lists(st.text(max_size=4), max_size=6))
def test_async_for_over_a_stream_that_is_both_kinds_of_iterator(items):
    """``async for chunk in await litellm.acompletion(..., stream=True)`` works on the
    instrumented call as on the bare one, and its items are recorded."""
    registry = Registry(drain_interval=3600)
    try:
        async def acompletion(prompt: str) -> _BothWays:
            return _BothWays(items)

        model = inferwatch.instrument(acompletion, name="gen", version="1", registry=registry)

        async def main():
            stream = await model("hi")
            assert isinstance(stream, _BothWays) and hasattr(stream, "__aiter__")
            return [item async for item in stream]

        assert asyncio.run(main()) == items
        assert stream_outcomes(registry) == {("ok",): 1.0}
        assert stream_items(registry, drain=False) == len(items)
    finally:
        registry.close()


def test_aclose_of_a_stream_that_is_both_kinds_of_iterator_ends_it(scraper):
    model = inferwatch.instrument(lambda: _BothWays(["a", "b", "c"]), name="gen", version="1",
                                  registry=scraper.registry)

    async def main():
        stream = model()
        first = await stream.__anext__()
        await stream.aclose()
        return first, stream.closed

    assert asyncio.run(main()) == ("a", True)
    assert scraper.value("inferwatch_requests_total", outcome="cancelled") == 1.0
    assert scraper.value("inferwatch_stream_items_sum") == 1.0


# -- a proxy held weakly --------------------------------------------------------------------


def test_a_stream_proxy_can_be_held_weakly_as_the_stream_can(scraper):
    """A server that releases a stream's connection with weakref.finalize (or keeps open
    streams in a WeakSet) does so for the instrumented stream too."""
    import weakref

    model = inferwatch.instrument(lambda: Chunks(["a", "b"]), name="gen", version="1",
                                  registry=scraper.registry)
    released = []
    stream = model()
    weakref.finalize(stream, released.append, "released")
    held = weakref.WeakSet([stream])
    assert next(stream) == "a" and len(held) == 1
    del stream
    gc.collect()
    assert released == ["released"] and len(held) == 0
    assert scraper.value("inferwatch_requests_total", outcome="cancelled") == 1.0


# -- items after a stream's ending ----------------------------------------------------------


class _CloseIgnored(Chunks):
    """A stream whose close() only flags the connection: next() still answers after it."""

    def close(self) -> None:
        self.flagged = True


@STREAM_EXAMPLES
@given(before=st.integers(1, 5), after=st.integers(1, 5))
def test_items_read_after_a_close_do_not_change_the_recorded_stream(before, after):
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda: _CloseIgnored(["x"] * (before + after)),
                                      name="gen", version="1", registry=registry)
        stream = model()
        for _ in range(before):
            next(stream)
        stream.close()  # ends the stream as cancelled, with `before` items
        for _ in range(after):
            next(stream)
        assert stream_outcomes(registry) == {("cancelled",): 1.0}
        state = registry.monitor("gen", "1").state
        assert state.histograms["inferwatch_stream_items"][()].sum == before
        intervals = state.histograms["inferwatch_stream_item_interval_seconds"][()]
        assert sum(intervals.counts) == before - 1  # one interval between each two items
    finally:
        registry.close()
