"""Streams that are objects, not generators: timed item by item from outside.

A web response's body is timed by an :class:`ItemClock` as the middleware sends it. An SDK's
stream (an OpenAI-style ``Stream`` or ``AsyncStream``: a context manager with a
``.response`` and a ``close()``) is more than its items. The caller gets the object itself,
to all appearances: a proxy whose attributes, ``dir()``, ``isinstance``, ``with`` /
``async with``, ``await``, ``len()``, ``length_hint()``, ``in``, ``[]``, ``reversed()``,
``format()``, calls, ``close()`` / ``aclose()``, ``send()`` / ``throw()`` and ``asend()`` /
``athrow()`` (when the stream has them) are the stream's, and which records
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
from inferwatch.core.stream_records import CANCELLED, OK, StreamRecord
from inferwatch.core.streams import Tracker, watch_open

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

    def record(self, outcome: str, error_type: type | None,
               ended_at: float | None = None) -> StreamRecord:
        """The figures so far, for a request record (which counts the call itself), as a
        stream that ended at `ended_at` (a ``perf_counter()`` reading; None: now)."""
        first = None if self.first is None else self.first - self.start
        end = perf_counter() if ended_at is None else ended_at
        return StreamRecord(end - self.start, outcome, error_type, first,
                            self.items, self.gaps, self.gap_sum, counts_call=False,
                            gap_bounds=self.bounds)


class _Proxy:
    """What both proxies share: the stream's attributes, and the figures of its items. They
    live here, not in a generator's frame: a proxy dropped unfinished ends the stream itself,
    as cancelled."""

    # __weakref__: a server may hold the stream weakly (weakref.finalize to release its
    # connection), as it can the stream itself.
    # Named so that no SDK's stream has them: a stream's own `_stream` or `_last` (httpx and
    # SDK wrappers use such names) must be read through the proxy, not hidden by its slots.
    # _inferwatch_items and _inferwatch_aitems: what the stream's own __iter__ / __aiter__
    # handed back, advanced in its place (a cursor or iterator object of its own).
    __slots__ = ("__weakref__", "_inferwatch_aitems", "_inferwatch_chars", "_inferwatch_clock",
                 "_inferwatch_items", "_inferwatch_last", "_inferwatch_on_item",
                 "_inferwatch_stream", "_inferwatch_tracker")
    # The stream's own methods that end or advance it, recorded on the way through; looked
    # up only when the stream has them, so that hasattr() answers as for the stream.
    _INTERCEPTED: dict[str, Callable[..., Any]] = {}

    def __new__(cls, stream: Any, tracker: Tracker) -> Any:
        return object.__new__(_shaped(cls, type(stream)))

    def __init__(self, stream: Any, tracker: Tracker) -> None:
        self._inferwatch_stream = stream
        self._inferwatch_items = stream
        self._inferwatch_aitems = stream
        self._inferwatch_tracker = tracker
        tracker.owned = True
        self._inferwatch_clock = ItemClock(tracker.start, tracker.plan.bounds)
        self._inferwatch_chars: int | None = None
        self._inferwatch_last: object = None
        self._inferwatch_on_item = tracker.item_hook()
        # Its figures are its own: ended at exit from here, as when it is collected.
        watch_open(self)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        # isinstance(result, openai.Stream) holds, as it does for the stream itself.
        return self._inferwatch_stream.__class__

    # Special methods are looked up on the type, past __getattr__: the text a caller logs
    # is the stream's, not the proxy's.
    def __repr__(self) -> str:
        return repr(self._inferwatch_stream)

    def __str__(self) -> str:
        return str(self._inferwatch_stream)

    def __bool__(self) -> bool:
        # As the stream's truth: an empty sized stream (len() 0) is false, as it is unwrapped.
        return bool(self._inferwatch_stream)

    def __dir__(self) -> list[str]:
        # What a caller (or a REPL's completion) finds on the stream, not the proxy's slots.
        return dir(self._inferwatch_stream)

    def __getattr__(self, name: str) -> Any:
        if name in _Proxy.__slots__:  # not set yet (a failed __init__): never the stream's
            raise AttributeError(name)
        value = getattr(self._inferwatch_stream, name)
        wrap = self._INTERCEPTED.get(name)
        return value if wrap is None else wrap(self, value)

    def __setattr__(self, name: str, value: Any) -> None:
        # The proxy's own figures stay here; any other attribute is the stream's, as a
        # caller setting one on the unwrapped stream (a timeout, a flag) would expect.
        if name in _Proxy.__slots__:
            object.__setattr__(self, name, value)
        else:
            setattr(self._inferwatch_stream, name, value)

    def __delattr__(self, name: str) -> None:
        if name in _Proxy.__slots__:
            object.__delattr__(self, name)
        else:
            delattr(self._inferwatch_stream, name)

    # A copy or a pickle of the proxy is what one of the stream would be: the stream's own
    # (or its own refusal), unfollowed, as the call's one stream is this proxy. The proxy's
    # own reduction would rebuild it without its stream, and fail.
    def __copy__(self) -> Any:
        return copy.copy(self._inferwatch_stream)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return copy.deepcopy(self._inferwatch_stream, memo)

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self._inferwatch_stream.__reduce_ex__(protocol)

    def __del__(self) -> None:
        try:
            self._end(CANCELLED, None)
        except BaseException:  # at interpreter shutdown, with modules half torn down
            pass

    def _item(self, item: object) -> None:
        try:
            self._inferwatch_clock.item()
            if self._inferwatch_tracker.plan.usage is not None:
                # Only a usage reader needs the last item; kept for nothing else, a huge
                # one would outlive the stream as long as the caller holds it.
                self._inferwatch_last = item
            if item.__class__ is str or isinstance(item, str):
                length = str.__len__(item)  # type: ignore[arg-type]
                chars = self._inferwatch_chars
                self._inferwatch_chars = length if chars is None else chars + length
            if self._inferwatch_on_item is not None:
                self._inferwatch_on_item(item)
        except Exception as exc:
            faults.record(_FAULT, exc)

    def _end(self, outcome: str, error: BaseException | None) -> None:
        """Hand the figures to the tracker, which keeps the first ending only.

        An exception from the stream ends nothing here: an iterator object may go on after
        one (a streamer's ``queue.Empty`` at its timeout, its caller calling ``next()``
        again). The tracker counts the call at the first one (``Tracker.fail``), and the
        items that follow are the same stream's, recorded when it ends."""
        tracker = self._inferwatch_tracker
        if not tracker.done:
            clock = self._inferwatch_clock
            # A copy of the buckets: items a stream yields after its ending (next() after a
            # close() that does not stop it) must not change the record the drain reads.
            tracker.end(outcome, error, clock.first, clock.items, list(clock.gaps),
                        clock.gap_sum, self._inferwatch_chars,
                        self._inferwatch_last if outcome == OK else None)
            self._inferwatch_last = None

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
            if self._inferwatch_clock.items:
                return self._step(throw, *args)  # type: ignore[attr-defined]
            return self._aborting(throw, *args)  # type: ignore[attr-defined]
        return throw_recorded


class StreamProxy(_Proxy):
    """A sync iterator object that is not a generator, followed item by item."""

    __slots__ = ()

    def __iter__(self) -> StreamProxy:
        # The stream's own __iter__ may do work (open a connection, rewind a cursor) or hand
        # out an iterator object of its own: the items are what that yields, recorded here.
        try:
            self._inferwatch_items = iter(self._inferwatch_stream)
        except BaseException as exc:  # the stream failed to open: its error, not a cancel
            self._inferwatch_tracker.fail(exc)
            raise
        return self

    def __next__(self) -> Any:
        return self._step(next, self._inferwatch_items)

    def _step(self, advance: Callable[..., Any], *args: Any) -> Any:
        """One item from `advance` (next, send or throw), recorded; the stream's
        StopIteration (with its value) or exception comes through as it was raised."""
        try:
            item = advance(*args)
        except StopIteration:
            self._end(OK, None)
            raise
        except BaseException as exc:
            self._inferwatch_tracker.fail(exc)
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
        # As StreamProxy.__iter__: the stream's own __aiter__ runs, and its result is read.
        self._inferwatch_aitems = _opened_aiter(self)
        return self

    def __anext__(self) -> Any:
        return self._step(self._inferwatch_aitems.__anext__)

    async def _step(self, advance: Callable[..., Any], *args: Any) -> Any:
        try:
            item = await advance(*args)
        except StopAsyncIteration:
            self._end(OK, None)
            raise
        except BaseException as exc:
            self._inferwatch_tracker.fail(exc)
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


def _opened_aiter(proxy: Any) -> Any:
    """The stream's own ``__aiter__``'s result; its failure is the stream's error (it failed
    to open), counted as StreamProxy.__iter__ counts it, not a cancel when the proxy goes."""
    try:
        return _aiter_of(proxy._inferwatch_stream)
    except BaseException as exc:
        proxy._inferwatch_tracker.fail(exc)
        raise


def _aiter_of(stream: Any) -> Any:
    """What ``async for`` would read of `stream`: its own ``__aiter__``'s result."""
    items = type(stream).__aiter__(stream)
    if not hasattr(type(items), "__anext__"):  # as aiter() refuses it, named
        raise TypeError(f"{type(stream).__name__}.__aiter__ returned a non-async-iterator "
                        f"of type {type(items).__name__!r}")
    return items


class _Sized:
    """len() of a stream that has one (a data loader's batches)."""

    __slots__ = ()

    def __len__(self: Any) -> int:
        return len(self._inferwatch_stream)


class _AsyncIterating:
    """``async for`` over a sync stream that is an async iterator too (LiteLLM's
    ``CustomStreamWrapper``, which ``acompletion(stream=True)`` returns)."""

    __slots__ = ()

    def __aiter__(self: Any) -> Any:
        self._inferwatch_aitems = _opened_aiter(self)
        return self

    def __anext__(self: Any) -> Any:
        return AsyncStreamProxy._step(self, self._inferwatch_aitems.__anext__)

    # Its asend() and athrow() advance it as __anext__ does: their items are the stream's
    # too, recorded as the async proxy records them (a sync _step would record the awaitable).
    def _async_stepping(self: Any, advance: Callable[..., Any]) -> Callable[..., Any]:
        def step_recorded(*args: Any) -> Any:
            return AsyncStreamProxy._step(self, advance, *args)
        return step_recorded

    def _async_throwing(self: Any, athrow: Callable[..., Any]) -> Callable[..., Any]:
        def throw_recorded(*args: Any) -> Any:
            if self._inferwatch_clock.items:
                return AsyncStreamProxy._step(self, athrow, *args)
            return AsyncStreamProxy._aborting(self, athrow, *args)
        return throw_recorded


class _Hinted:
    """``operator.length_hint()`` of a stream that can tell how many items are left (an
    unsized stream's estimate; ``list()`` reads it to size its buffer)."""

    __slots__ = ()

    def __length_hint__(self: Any) -> Any:
        # NotImplemented, when the stream answers so, means "no estimate" to length_hint().
        return type(self._inferwatch_stream).__length_hint__(self._inferwatch_stream)


class _Awaitable:
    """``await`` of a stream that is awaitable too (an async SDK stream that can also be
    awaited for its response). Awaiting is not an item: nothing is recorded for it, and the
    stream is followed through its items as ever. A stream that awaits to itself hands the
    caller the proxy, as ``async with`` does; any other result goes to the caller as it is."""

    __slots__ = ()

    def __await__(self: Any) -> Any:
        stream = self._inferwatch_stream
        result = yield from type(stream).__await__(stream)
        return self if result is stream else result


class _Managed:
    """``with`` of a stream that is a context manager (openai's ``Stream``)."""

    __slots__ = ()

    def __enter__(self: Any) -> Any:
        entered = type(self._inferwatch_stream).__enter__(self._inferwatch_stream)
        # openai's Stream enters as itself, so the proxy stands in for it; any other object
        # a stream hands out here goes to the caller as it is, as it would unwrapped.
        return self if entered is self._inferwatch_stream else entered

    def __exit__(self: Any, *exc_info: Any) -> Any:
        self._end(CANCELLED, None)  # left before its last item: the consumer stopped
        return type(self._inferwatch_stream).__exit__(self._inferwatch_stream, *exc_info)


class _AsyncManaged:
    """``async with`` of a stream that is an async context manager (``AsyncStream``)."""

    __slots__ = ()

    async def __aenter__(self: Any) -> Any:
        entered = await type(self._inferwatch_stream).__aenter__(self._inferwatch_stream)
        return self if entered is self._inferwatch_stream else entered

    async def __aexit__(self: Any, *exc_info: Any) -> Any:
        self._end(CANCELLED, None)
        return await type(self._inferwatch_stream).__aexit__(self._inferwatch_stream, *exc_info)


class _Containing:
    """``in`` of a stream that answers it itself: without this, ``in`` would iterate the
    proxy, consuming (and recording) the stream's items, where the stream's own answer
    reads none."""

    __slots__ = ()

    def __contains__(self: Any, item: object) -> bool:
        return type(self._inferwatch_stream).__contains__(self._inferwatch_stream, item)


class _Indexed:
    """``stream[key]`` of a stream that can be indexed (a batch loader's items by index):
    a look-up, not an item of the stream, so nothing is recorded."""

    __slots__ = ()

    def __getitem__(self: Any, key: Any) -> Any:
        return type(self._inferwatch_stream).__getitem__(self._inferwatch_stream, key)


class _Reversible:
    """``reversed()`` of a stream that has its own: what it hands back is the stream's."""

    __slots__ = ()

    def __reversed__(self: Any) -> Any:
        return type(self._inferwatch_stream).__reversed__(self._inferwatch_stream)


class _Formatted:
    """``format()`` and f-strings of a stream with a ``__format__`` of its own (object's,
    which the proxy has anyway, formats its ``str()``, the stream's)."""

    __slots__ = ()

    def __format__(self: Any, spec: str) -> str:
        return type(self._inferwatch_stream).__format__(self._inferwatch_stream, spec)


class _Callable:
    """``stream(...)`` of a stream that is callable (a streamer that takes a request and
    hands back an answer): a call of the stream, not an item of it, so nothing is
    recorded."""

    __slots__ = ()

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        return type(self._inferwatch_stream).__call__(self._inferwatch_stream, *args, **kwargs)


def _has(*names: str) -> Callable[[type], bool]:
    return lambda stream: all(hasattr(stream, name) for name in names)


# What each add-on needs of the stream's class. A special method is looked up on the type,
# past __getattr__, so a proxy that had one the stream lacks would answer hasattr(),
# ``with`` or ``in`` as the stream does not; one without it leaves hasattr() to
# __getattr__, which asks the stream. _AsyncIterating is only for the sync proxy.
_ADD_ONS: tuple[tuple[type, Callable[[type], bool]], ...] = (
    (_Sized, _has("__len__")),
    (_Hinted, _has("__length_hint__")),
    (_Managed, _has("__enter__", "__exit__")),
    (_AsyncManaged, _has("__aenter__", "__aexit__")),
    (_AsyncIterating, _has("__anext__", "__aiter__")),
    (_Awaitable, _has("__await__")),
    (_Containing, _has("__contains__")),
    (_Indexed, _has("__getitem__")),
    (_Reversible, _has("__reversed__")),
    (_Formatted, lambda stream: stream.__format__ is not object.__format__),
    # hasattr() would find type.__call__ on any class: only one the stream's class defines.
    (_Callable, lambda stream: any("__call__" in vars(k) for k in stream.__mro__)),
)
# The proxy classes by what the stream's class has: one per shape in use, and there are
# as few shapes as stream classes, or fewer.
_SHAPES: dict[tuple[type, tuple[bool, ...]], type] = {}


def _shaped(proxy: type, stream: type) -> type:
    """`proxy` with the special methods (len(), length_hint(), with, async with, async for,
    await, in, [], reversed(), format(), calls) that `stream` has."""
    wanted = tuple(False if mixin is _AsyncIterating and proxy is AsyncStreamProxy
                   else bool(has(stream)) for mixin, has in _ADD_ONS)
    key = (proxy, wanted)
    shaped = _SHAPES.get(key)
    if shaped is None:
        mixins = [mixin for (mixin, _), want in zip(_ADD_ONS, wanted) if want]
        if not mixins:
            shaped = proxy
        else:
            namespace: dict[str, Any] = {
                "__slots__": (), "__module__": __name__, "__qualname__": proxy.__qualname__,
                "__doc__": proxy.__doc__}
            if _AsyncIterating in mixins:
                # Its aclose() ends it too, as close() does; asend() and athrow() advance it.
                namespace["_INTERCEPTED"] = {**proxy._INTERCEPTED, "aclose": _Proxy._closing,
                                             "asend": _AsyncIterating._async_stepping,
                                             "athrow": _AsyncIterating._async_throwing}
            shaped = type(proxy.__name__, (proxy, *mixins), namespace)
        shaped = _SHAPES.setdefault(key, shaped)
    return shaped
