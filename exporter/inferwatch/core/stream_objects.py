"""Streams that are objects, not generators: timed item by item from outside.

A web response's body is timed by an :class:`ItemClock` as the middleware sends it. An SDK's
stream (an OpenAI-style ``Stream`` or ``AsyncStream``: a context manager with a
``.response`` and a ``close()``) is more than its items. The caller gets the object itself,
to all appearances: a proxy whose attributes, ``dir()``, ``isinstance``, ``with`` /
``async with``, ``await``, ``len()``, ``length_hint()``, ``close()`` / ``aclose()`` and
``send()`` / ``throw()`` (when the stream has them) are the stream's, and which records
the stream's items as :mod:`inferwatch.core.streams` records a generator's (an ``await``
of the stream is no item: it passes through, unrecorded). A generator itself is followed
by a generator, cheaper per item.

>>> import inferwatch
>>> from inferwatch.core.registry import Registry
>>> class Chunks:  # an SDK's stream: more to it than its items
...     response = "HTTP 200"
...     def __init__(self): self.rest = iter("abc")
...     def __iter__(self): return self
...     def __next__(self): return next(self.rest)
>>> registry = Registry()
>>> chat = inferwatch.instrument(lambda: Chunks(), name="chat", registry=registry)
>>> stream = chat()
>>> stream.response, "".join(stream), isinstance(stream, Chunks)
('HTTP 200', 'abc', True)
>>> mon = registry.monitor("chat", "unversioned"); mon.drain()
>>> int(mon.state.histograms["inferwatch_stream_items"][()].sum)
3
"""

from __future__ import annotations

import copy
from bisect import bisect_left
from collections.abc import Callable
from time import perf_counter
from typing import Any

from inferwatch import faults
from inferwatch.core.streams import CANCELLED, OK, StreamRecord, Tracker

_FAULT = "stream"


class ItemClock:
    """Times the items of a stream that is not a generator we wrap: a web response body, an
    SDK's stream object.

    >>> clock = ItemClock(perf_counter(), (0.5, 1.0))
    >>> clock.item(); clock.item()
    >>> record = clock.record(OK, None); record.items, record.counts_call
    (2, False)
    """

    __slots__ = ("bounds", "first", "gap_sum", "gaps", "items", "last", "start")

    def __init__(self, start: float, bounds: tuple[float, ...]) -> None:
        self.start = start
        self.bounds = bounds
        self.first: float | None = None
        self.last = 0.0
        self.items = 0
        self.gaps = [0] * (len(bounds) + 1)
        self.gap_sum = 0.0

    def item(self) -> None:
        now = perf_counter()
        if self.items:
            gap = now - self.last
            self.gap_sum += gap
            self.gaps[bisect_left(self.bounds, gap)] += 1
        else:
            self.first = now
        self.last = now
        self.items += 1

    def record(self, outcome: str, error_type: type | None) -> StreamRecord:
        """The figures so far, for a request record (which counts the call itself)."""
        first = None if self.first is None else self.first - self.start
        return StreamRecord(perf_counter() - self.start, outcome, error_type, first,
                            self.items, self.gaps, self.gap_sum, counts_call=False,
                            gap_bounds=self.bounds)


class _Proxy:
    """What both proxies share: the stream's attributes, and the figures of its items. They
    live here, not in a generator's frame: a proxy dropped unfinished ends the stream itself,
    as cancelled."""

    # __weakref__: a server may hold the stream weakly (weakref.finalize to release its
    # connection), as it can the stream itself.
    __slots__ = ("__weakref__", "_chars", "_clock", "_last", "_on_item", "_stream",
                 "_tracker")
    # The stream's own methods that end or advance it, recorded on the way through; looked
    # up only when the stream has them, so that hasattr() answers as for the stream.
    _INTERCEPTED: dict[str, Callable[..., Any]] = {}

    def __new__(cls, stream: Any, tracker: Tracker) -> Any:
        return object.__new__(_shaped(cls, type(stream)))

    def __init__(self, stream: Any, tracker: Tracker) -> None:
        self._stream = stream
        self._tracker = tracker
        tracker.owned = True
        self._clock = ItemClock(tracker.start, tracker.plan.bounds)
        self._chars: int | None = None
        self._last: object = None
        self._on_item = tracker.item_hook()

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        # isinstance(result, openai.Stream) holds, as it does for the stream itself.
        return self._stream.__class__

    # Special methods are looked up on the type, past __getattr__: the text a caller logs
    # is the stream's, not the proxy's.
    def __repr__(self) -> str:
        return repr(self._stream)

    def __str__(self) -> str:
        return str(self._stream)

    def __bool__(self) -> bool:
        # As the stream's truth: an empty sized stream (len() 0) is false, as it is unwrapped.
        return bool(self._stream)

    def __dir__(self) -> list[str]:
        # What a caller (or a REPL's completion) finds on the stream, not the proxy's slots.
        return dir(self._stream)

    def __getattr__(self, name: str) -> Any:
        if name in _Proxy.__slots__:  # not set yet (a failed __init__): never the stream's
            raise AttributeError(name)
        value = getattr(self._stream, name)
        wrap = self._INTERCEPTED.get(name)
        return value if wrap is None else wrap(self, value)

    def __setattr__(self, name: str, value: Any) -> None:
        # The proxy's own figures stay here; any other attribute is the stream's, as a
        # caller setting one on the unwrapped stream (a timeout, a flag) would expect.
        if name in _Proxy.__slots__:
            object.__setattr__(self, name, value)
        else:
            setattr(self._stream, name, value)

    def __delattr__(self, name: str) -> None:
        if name in _Proxy.__slots__:
            object.__delattr__(self, name)
        else:
            delattr(self._stream, name)

    # A copy or a pickle of the proxy is what one of the stream would be: the stream's own
    # (or its own refusal), unfollowed, as the call's one stream is this proxy. The proxy's
    # own reduction would rebuild it without its stream, and fail.
    def __copy__(self) -> Any:
        return copy.copy(self._stream)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return copy.deepcopy(self._stream, memo)

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self._stream.__reduce_ex__(protocol)

    def __del__(self) -> None:
        try:
            self._end(CANCELLED, None)
        except BaseException:  # at interpreter shutdown, with modules half torn down
            pass

    def _item(self, item: object) -> None:
        try:
            self._clock.item()
            if self._tracker.plan.usage is not None:
                # Only a usage reader needs the last item; kept for nothing else, a huge
                # one would outlive the stream as long as the caller holds it.
                self._last = item
            if item.__class__ is str or isinstance(item, str):
                length = str.__len__(item)  # type: ignore[arg-type]
                self._chars = length if self._chars is None else self._chars + length
            if self._on_item is not None:
                self._on_item(item)
        except Exception as exc:
            faults.record(_FAULT, exc)

    def _end(self, outcome: str, error: BaseException | None) -> None:
        """Hand the figures to the tracker, which keeps the first ending only.

        An exception from the stream ends nothing here: an iterator object may go on after
        one (a streamer's ``queue.Empty`` at its timeout, its caller calling ``next()``
        again). The tracker counts the call at the first one (``Tracker.fail``), and the
        items that follow are the same stream's, recorded when it ends."""
        tracker = self._tracker
        if not tracker.done:
            clock = self._clock
            # A copy of the buckets: items a stream yields after its ending (next() after a
            # close() that does not stop it) must not change the record the drain reads.
            tracker.end(outcome, error, clock.first, clock.items, list(clock.gaps),
                        clock.gap_sum, self._chars, self._last if outcome == OK else None)
            self._last = None

    def _closing(self, close: Callable[..., Any]) -> Callable[..., Any]:
        def close_recorded(*args: Any, **kwargs: Any) -> Any:
            self._end(CANCELLED, None)
            return close(*args, **kwargs)
        return close_recorded

    def _stepping(self, advance: Callable[..., Any]) -> Callable[..., Any]:
        def step_recorded(*args: Any) -> Any:
            return self._step(advance, *args)  # type: ignore[attr-defined]
        return step_recorded

    def _throwing(self, throw: Callable[..., Any]) -> Callable[..., Any]:
        def throw_recorded(*args: Any) -> Any:
            if self._clock.items:
                return self._step(throw, *args)  # type: ignore[attr-defined]
            return self._aborting(throw, *args)  # type: ignore[attr-defined]
        return throw_recorded


class StreamProxy(_Proxy):
    """A sync iterator object that is not a generator, followed item by item."""

    __slots__ = ()

    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        return self._step(next, self._stream)

    def _step(self, advance: Callable[..., Any], *args: Any) -> Any:
        """One item from `advance` (next, send or throw), recorded; the stream's
        StopIteration (with its value) or exception comes through as it was raised."""
        try:
            item = advance(*args)
        except StopIteration:
            self._end(OK, None)
            raise
        except BaseException as exc:
            self._tracker.fail(exc)
            raise
        self._item(item)
        return item

    def _aborting(self, throw: Callable[..., Any], *args: Any) -> Any:
        """A throw() before the first item: the consumer aborting the stream, as into a
        generator's wrapper, so what comes back ends it as cancelled, never as the model's
        error; an item the stream yields instead is its first."""
        try:
            item = throw(*args)
        except StopIteration:
            self._end(OK, None)
            raise
        except BaseException:
            self._end(CANCELLED, None)
            raise
        self._item(item)
        return item

    _INTERCEPTED = {"close": _Proxy._closing, "send": _Proxy._stepping,
                    "throw": _Proxy._throwing}


class AsyncStreamProxy(_Proxy):
    """An async iterator object that is not an async generator, followed item by item."""

    __slots__ = ()

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    def __anext__(self) -> Any:
        return self._step(self._stream.__anext__)

    async def _step(self, advance: Callable[..., Any], *args: Any) -> Any:
        try:
            item = await advance(*args)
        except StopAsyncIteration:
            self._end(OK, None)
            raise
        except BaseException as exc:
            self._tracker.fail(exc)
            raise
        self._item(item)
        return item

    async def _aborting(self, athrow: Callable[..., Any], *args: Any) -> Any:
        """As :meth:`StreamProxy._aborting`, for an athrow() before the first item."""
        try:
            item = await athrow(*args)
        except StopAsyncIteration:
            self._end(OK, None)
            raise
        except BaseException:
            self._end(CANCELLED, None)
            raise
        self._item(item)
        return item

    # close() too: an async SDK stream (openai.AsyncStream) closes by `await close()`.
    _INTERCEPTED = {"close": _Proxy._closing, "aclose": _Proxy._closing,
                    "asend": _Proxy._stepping, "athrow": _Proxy._throwing}


class _Sized:
    """len() of a stream that has one (a data loader's batches)."""

    __slots__ = ()

    def __len__(self: Any) -> int:
        return len(self._stream)


class _AsyncIterating:
    """``async for`` over a sync stream that is an async iterator too (LiteLLM's
    ``CustomStreamWrapper``, which ``acompletion(stream=True)`` returns)."""

    __slots__ = ()

    def __aiter__(self: Any) -> Any:
        return self

    def __anext__(self: Any) -> Any:
        return AsyncStreamProxy._step(self, self._stream.__anext__)


class _Hinted:
    """``operator.length_hint()`` of a stream that can tell how many items are left (an
    unsized stream's estimate; ``list()`` reads it to size its buffer)."""

    __slots__ = ()

    def __length_hint__(self: Any) -> Any:
        # NotImplemented, when the stream answers so, means "no estimate" to length_hint().
        return type(self._stream).__length_hint__(self._stream)


class _Awaitable:
    """``await`` of a stream that is awaitable too (an async SDK stream that can also be
    awaited for its response). Awaiting is not an item: nothing is recorded for it, and the
    stream is followed through its items as ever. A stream that awaits to itself hands the
    caller the proxy, as ``async with`` does; any other result goes to the caller as it is."""

    __slots__ = ()

    def __await__(self: Any) -> Any:
        stream = self._stream
        result = yield from type(stream).__await__(stream)
        return self if result is stream else result


class _Managed:
    """``with`` of a stream that is a context manager (openai's ``Stream``)."""

    __slots__ = ()

    def __enter__(self: Any) -> Any:
        entered = type(self._stream).__enter__(self._stream)
        # openai's Stream enters as itself, so the proxy stands in for it; any other object
        # a stream hands out here goes to the caller as it is, as it would unwrapped.
        return self if entered is self._stream else entered

    def __exit__(self: Any, *exc_info: Any) -> Any:
        self._end(CANCELLED, None)  # left before its last item: the consumer stopped
        return type(self._stream).__exit__(self._stream, *exc_info)


class _AsyncManaged:
    """``async with`` of a stream that is an async context manager (``AsyncStream``)."""

    __slots__ = ()

    async def __aenter__(self: Any) -> Any:
        entered = await type(self._stream).__aenter__(self._stream)
        return self if entered is self._stream else entered

    async def __aexit__(self: Any, *exc_info: Any) -> Any:
        self._end(CANCELLED, None)
        return await type(self._stream).__aexit__(self._stream, *exc_info)


# The proxy classes by what the stream's class has: at most sixty-four for each proxy. A
# special method is looked up on the type, past __getattr__, so a proxy that had one the
# stream lacks would answer hasattr() and ``with`` as the stream does not; one without it
# leaves hasattr() to __getattr__, which asks the stream.
_SHAPES: dict[tuple[type, bool, bool, bool, bool, bool, bool], type] = {}


def _shaped(proxy: type, stream: type) -> type:
    """`proxy` with the special methods (len(), length_hint(), with, async with, async for,
    await) that `stream` has."""
    sized = hasattr(stream, "__len__")
    hinted = hasattr(stream, "__length_hint__")
    managed = hasattr(stream, "__enter__") and hasattr(stream, "__exit__")
    async_managed = hasattr(stream, "__aenter__") and hasattr(stream, "__aexit__")
    both = proxy is not AsyncStreamProxy and hasattr(stream, "__anext__") and hasattr(
        stream, "__aiter__")
    awaitable = hasattr(stream, "__await__")
    key = (proxy, sized, hinted, managed, async_managed, both, awaitable)
    shaped = _SHAPES.get(key)
    if shaped is None:
        mixins = [mixin for mixin, wanted in ((_Sized, sized), (_Hinted, hinted),
                                             (_Managed, managed),
                                             (_AsyncManaged, async_managed),
                                             (_AsyncIterating, both),
                                             (_Awaitable, awaitable)) if wanted]
        if not mixins:
            shaped = proxy
        else:
            namespace: dict[str, Any] = {
                "__slots__": (), "__module__": __name__, "__qualname__": proxy.__qualname__,
                "__doc__": proxy.__doc__}
            if both:  # its aclose() ends it too, as close() does
                namespace["_INTERCEPTED"] = {**proxy._INTERCEPTED, "aclose": _Proxy._closing}
            shaped = type(proxy.__name__, (proxy, *mixins), namespace)
        shaped = _SHAPES.setdefault(key, shaped)
    return shaped
