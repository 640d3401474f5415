"""Streams and text: what an instrumented call returns when it is not a prediction.

A call that returns a generator, an async generator or another iterator is not over when
it returns: the caller gets a wrapper that yields the very same items and records, when the
stream ends, its time to first item, total duration, item count, the time between items
(as bucket counts kept in the wrapper, so memory stays constant however long the stream),
text length and tokens, and how it ended:

- ``ok``: exhausted;
- ``error``: the stream raised; the exception is counted under its class and re-raised
  untouched;
- ``cancelled``: the consumer stopped early, by ``close()`` / ``aclose()``, an early
  ``break``, asyncio cancellation, or by dropping it (garbage collection, a client
  disconnect), started or not; a stream still open when the process ends is ended so at
  exit (and by ``inferwatch.multiproc.shutdown()``), before the last drain and flush
  (:func:`end_open_streams`).

A generator's wrapper is a generator: ``send()`` and ``throw()`` pass through, and a
``send()`` before the first item fails as on the generator itself. Any other iterator
object (an SDK's stream, with its context manager, attributes and ``close()``) comes back
as a proxy that is the object to all appearances (``stream_objects.py``). A file
(``io.IOBase``) is no stream: it comes back untouched, an ordinary result.

A call that returns text (``str``) records the text's length, never the text (unless the
model declares ``task="classification"``, when a string is a class label). With
``count_tokens=`` or ``usage=`` a model is generative: its results are read for token
counts and are never recorded as predictions.

Everything recorded goes to the Monitor as one :class:`StreamRecord` per call
(:meth:`Monitor.submit_stream`), or on the call's request record when the call has one.

Which results are followed, and how, is for ``follower.py`` to work out; what a stream's
record holds, and how token counts are read, is in ``stream_records.py``. This module
follows a stream to its end: the wrappers of generators (:func:`follow_sync`,
:func:`follow_async`), each stream's :class:`Tracker`, and a stream joined to its request
(:func:`join_stream`).

>>> from inferwatch.core.registry import Registry
>>> import inferwatch
>>> registry = Registry()
>>> tokens = inferwatch.instrument(lambda n: (str(i) for i in range(n)), name="gen",
...                                registry=registry)
>>> "".join(tokens(3))
'012'
>>> mon = registry.monitor("gen", "unversioned"); mon.drain()
>>> mon.state.counters["inferwatch_requests_total"][("ok",)]
1.0
>>> int(mon.state.histograms["inferwatch_stream_items"][()].sum)
3
"""

from __future__ import annotations

import os
import threading
import weakref
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from time import perf_counter
from types import GeneratorType
from typing import TYPE_CHECKING

from inferwatch import faults
from inferwatch.core.request_record import ModelError, model_error
from inferwatch.core.stream_records import (
    CANCELLED,
    ERROR,
    OK,
    StreamRecord,
    count,
    read_usage,
    tokens_only,
    usage_tokens,
)
from inferwatch.forking import renew_at_fork

if TYPE_CHECKING:
    from inferwatch.core.follower import Plan
    from inferwatch.core.monitor import Monitor
    from inferwatch.core.request import Request
    from inferwatch.core.request_record import RequestRecord

_FAULT = "stream"
# Taken once per stream, at its ending, never per item. Reentrant: a finaliser (a tracker
# or proxy collected) may end another stream in a thread that holds it.
_ENDING = threading.RLock()
renew_at_fork(globals(), "_ENDING", threading.RLock)

# The streams still open, by weak reference: a stream the process keeps to its end (a
# global, a traceback kept after an uncaught exception) would be collected, and recorded,
# only after the exit's last drain, publish and flush. end_open_streams() ends them first.
# Each reference leaves the set with its stream, so it holds no more than the streams
# alive. Three kinds: a Tracker (a followed result's bookkeeping), an SDK stream's proxy,
# and a sync generator's wrapper (a generator of follow_sync's, which holds its figures in
# its frame), in place of its tracker (a fast-path one has none until it ends).
_OPEN: set[weakref.ref] = set()
# Bound once: the fast path adds a stream with two calls of C code, no attribute look-up.
_watch = _OPEN.add
_unwatch = _OPEN.discard
_ref = weakref.ref
if hasattr(os, "register_at_fork"):
    # A forked child's copies of its parent's open streams are the parent's to record.
    os.register_at_fork(after_in_child=_OPEN.clear)


def watch_open(stream: object) -> None:
    """Keep `stream` (a tracker, a proxy, a followed generator) in the open streams until
    it is collected."""
    _watch(_ref(stream, _unwatch))


class Tracker:
    """One stream's bookkeeping: what it needs beyond counts (the slow path, token counts,
    kept text), and its ending. It also ends a stream as cancelled if it is collected before
    it ever started (a generator's frame that never ran would not)."""

    # What every stream sets lives in slots; the rest keeps these class defaults until a slow
    # path call or a token count sets it (in the instance dict, made only then): the fewer
    # stores here, the less the wrapper adds to the time to first item.
    __slots__ = ("__dict__", "__weakref__", "done", "monitor", "plan", "start")
    slow = False
    record: RequestRecord | None = None
    request: Request | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    text: list[str] | None = None
    text_room = 0
    counted = False  # the call was counted already, when the stream raised (fail())
    # A proxy ends its stream itself, with its figures: in a reference cycle the collector
    # may finalise this tracker first, whose ending (no items) would be the one kept.
    owned = False
    # An async generator's figures, which its wrapper keeps here as they come (_Figures).
    figures: _Figures | None = None
    # Its request ended with the response body's figures while it was still open (a sync
    # generator a server left suspended when the client went away): see StreamWatch.
    outlived = False

    def __init__(self, monitor: Monitor, plan: Plan, start: float, watched: bool = True) -> None:
        self.monitor = monitor
        self.plan = plan
        self.start = start
        self.done = False
        if watched:  # not one made to end a stream at once
            _watch(_ref(self, _unwatch))

    def on_slow_path(self, record: RequestRecord | None) -> None:
        """The call has its own request record, or (None) joined an open request."""
        self.slow = True
        self.record = record
        if record is None:
            from inferwatch.core.request import current_request_of

            # The request the call joined: this model's own, not the innermost one, which
            # may be another model's (B's stream consumed inside A's block inside B's).
            request = self.request = current_request_of(self.monitor)
            if request is not None:
                watch = _WATCHES.get(id(request.record))
                if watch is not None:
                    watch.add(self)
        # Kept for the request's event either way: one the call joined (every model route
        # behind the web middleware) writes its output_text from these figures too.
        if self.monitor.events is not None and self.plan.keep_chars:
            self.text = []
            self.text_room = self.plan.keep_chars

    def tokens_of(self, value: object) -> int | None:
        try:
            return count(self.plan.count_tokens(value))  # type: ignore[misc]
        except Exception as exc:
            if isinstance(value, str):
                faults.record("tokens", exc)
            # Else an item that is no text (a dict chunk, a delta object): count_tokens is
            # a function of a text, so one that cannot read it counts nothing for it and is
            # no fault; one that can (a counter of the app's own chunks) still counts.
            return None

    def item_hook(self) -> Callable[[object], None] | None:
        """:meth:`on_item` when items have something for it (tokens, kept text, usage), else
        None: a stream that needs only counts calls nothing per item."""
        plan = self.plan
        return self.on_item if self.text is not None or plan.count_tokens is not None \
            or plan.usage is usage_tokens else None

    def on_item(self, item: object) -> None:
        """Count an item's tokens and keep its text, as the model's settings ask."""
        if self.text is not None and isinstance(item, str):
            self.keep_text(item)
        plan = self.plan
        if plan.count_tokens is not None:
            counted = self.tokens_of(item)
            if counted is not None:
                output = self.output_tokens
                self.output_tokens = counted if output is None else output + counted
        elif plan.usage is usage_tokens:
            self.note_usage(item)

    def note_usage(self, item: object) -> None:
        """Keep the token counts an item carries (``usage=True``). Anthropic's stream says
        them along the way, not in its last event: the input tokens in ``message_start``'s
        ``message.usage``, the output tokens (a running total) in each ``message_delta``'s
        ``usage``; ``message_stop`` carries none. OpenAI's Responses API says them in its
        ``response.completed`` event's ``response.usage``. A later count replaces an earlier
        one."""
        try:
            read = usage_tokens(item)
            if read is None and not isinstance(item, str):
                for name in ("message", "response"):
                    inner = item.get(name) if isinstance(item, Mapping) else getattr(
                        item, name, None)
                    read = None if inner is None else usage_tokens(inner)
                    if read is not None:
                        break
            if read is not None:
                if read[0] is not None:
                    self.input_tokens = read[0]
                if read[1] is not None:
                    self.output_tokens = read[1]
        except Exception as exc:
            faults.record("tokens", exc)

    def keep_text(self, item: str) -> None:
        """Join text items for the event log, up to ``event_text_chars``."""
        room = self.text_room
        length = str.__len__(item)
        # An empty item adds no text, but a list slot would: a stream of them (a streamer's
        # "" between words) would grow the list without bound.
        if room > 0 and length and self.text is not None:
            # str's own slice: a str subclass's __getitem__ (a token's ids) is user code
            # that must not run, or raise, here.
            self.text.append(str.__getitem__(item, slice(0, room)))
            self.text_room = room - length

    def single(self, result: object) -> None:
        """A call that returned one text or one response: no items, no first item."""
        chars = str.__len__(result) if isinstance(result, str) else None
        if chars is not None:
            self.on_item(result)
        if not self.end(OK, None, None, None, None, 0.0, chars, result):
            # A frame further from the recursion limit than end()'s, the bare call may be
            # handed; if even that fails, the follower's caller, which takes what this
            # raises for a fault, ends the call itself.
            self._hand_bare(StreamRecord(perf_counter() - self.start,
                                         gap_bounds=self.plan.bounds, from_model=True))

    def end(self, outcome: str, error: BaseException | None, first_item: float | None,
            items: int | None, gaps: list[int] | None, gap_sum: float, chars: int | None,
            last: object = None) -> bool:
        """Hand the finished stream to the drain (once). Never raises. False when its call
        reached the drain in no form (near the recursion limit): it is still in flight."""
        if self.done:
            return True
        # Two threads may end one stream at once (one exhausting a proxy while another
        # closes it, or a finaliser): only the first may hand it to the drain, and it must
        # see whether fail() counted the call, or the call is counted twice.
        with _ENDING:
            if self.done:
                return True
            self.done = True
            counted = self.counted
        try:
            duration = perf_counter() - self.start
            input_tokens, output_tokens = self.input_tokens, self.output_tokens
            usage = self.plan.usage
            # usage=True read each of a stream's items as it passed, its last one included:
            # read again here, a count that is no count would be counted as a fault twice.
            if usage is not None and outcome == OK and last is not None and not (
                    usage is usage_tokens and items is not None):
                read = read_usage(usage, last)
                if read is not None:
                    input_tokens = count(read[0]) if read[0] is not None else input_tokens
                    output_tokens = count(read[1]) if read[1] is not None else output_tokens
            stream = StreamRecord(
                duration, outcome, None if error is None else error.__class__,
                None if first_item is None else first_item - self.start, items, gaps, gap_sum,
                chars, input_tokens, output_tokens,
                None if not self.text else "".join(self.text), gap_bounds=self.plan.bounds,
                from_model=True)
            if counted:
                # The call was counted when the stream first raised (fail()): these are the
                # stream's figures alone, for the same stream's series, never a second call.
                stream.counts_call = False
                self.monitor.submit_stream(stream)
                return True
            self._submit(stream, error)
            return True
        except Exception as exc:
            # A call that fail() counted, or that joined an open request, is counted there.
            handed = counted or (self.slow and self.record is None)
            if not handed:
                try:
                    self._hand_bare(StreamRecord(
                        perf_counter() - self.start, outcome,
                        None if error is None else error.__class__,
                        gap_bounds=self.plan.bounds, from_model=True))
                    handed = True
                except Exception:
                    pass
            faults.record(_FAULT, exc)
            return handed

    def _hand_bare(self, bare: StreamRecord) -> None:
        """Hand the drain the call alone (`bare`: its duration and outcome, none of its
        figures), where its record could not reach it (near the recursion limit, a
        hand-off that failed), so that it leaves the in-flight gauge."""
        record = self.record
        if record is None:
            self.monitor.submit_stream(bare)
        else:  # the call's own request record, finished now
            record.duration = bare.duration
            record.error_type = bare.error_type
            record.cancelled = bare.outcome == CANCELLED
            self.monitor.submit(record)

    def fail(self, error: BaseException) -> None:
        """Count the call of a stream that raised but may go on (an iterator object, whose
        caller may call next() again): once, under `error`'s outcome, as of now. Its
        figures (items, first item, tokens) follow when it ends, through :meth:`end`."""
        if self.done or self.counted:
            return
        with _ENDING:  # as in end(): once, and never after the stream ended
            if self.done or self.counted:
                return
            self.counted = True
        try:
            self._submit(StreamRecord(perf_counter() - self.start, outcome_of(error),
                                      error.__class__, gap_bounds=self.plan.bounds,
                                      from_model=True), error)
        except Exception as exc:
            if not (self.slow and self.record is None):
                # Its record never reached the drain: the call still leaves the in-flight
                # gauge, counted as one that raised (a request it joined counts it itself).
                try:
                    self.monitor.record_error(perf_counter() - self.start, error.__class__,
                                              started=True)
                except Exception:
                    pass
            faults.record(_FAULT, exc)

    def _submit(self, stream: StreamRecord, error: BaseException | None = None) -> None:
        """Hand `stream`, which ended with `error` (or with none), to the drain: as a call
        of its own, as its own request record's figures, or to the request it joined."""
        monitor = self.monitor
        if not self.slow:
            monitor.submit_stream(stream)
            return
        record = self.record
        if record is not None:  # the call's own request record, finished now
            record.duration = stream.duration
            record.error_type = stream.error_type
            record.cancelled = stream.outcome == CANCELLED
            record.stream = stream
            monitor.submit(record)
            return
        # Joined an open request: it counts the call. While it is open, the stream is its
        # inference stage and its figures (a second stream's go on their own), and a
        # failure one of its model errors, counted whether the app caught it (an SSE
        # endpoint's "event: error") or not. Once it has ended, the figures go on their
        # own, unless the request ended with stream figures of its own, and a failure is
        # counted with them: the request went to the drain without it.
        request = self.request
        failed = stream.outcome == ERROR and stream.error_type is not None
        if self.outlived:  # its request has its figures already, and its stage
            joined = ENDED_WITH_STREAM
        else:
            joined = NOT_JOINED if request is None else join_stream(
                request, stream, stream.duration,
                model_error(error, stream.error_type) if failed else None)
        if joined is JOINED:
            return
        if joined is ENDED_WITH_STREAM:
            # A web response's body, whose client went away while this stream was open (a
            # sync generator a server left unclosed, collected later): one stream per
            # request, so the body's figures stand; this stream's tokens still count.
            figures = tokens_only(stream)
            if figures is None:
                if not failed:
                    return
                figures = StreamRecord(stream.duration, ERROR, stream.error_type,
                                       from_model=True)
            stream = figures
        stream.counts_call = False
        stream.counts_error = failed and joined is not ALONGSIDE
        monitor.submit_stream(stream)

    def __del__(self) -> None:
        if self.done:
            return
        try:
            figures = self.figures
            if figures is not None:  # an async generator's wrapper, dropped unclosed
                figures.end(self, CANCELLED, None)
            elif not self.owned:
                self.end(CANCELLED, None, None, 0, None, 0.0, None)
        except BaseException:  # at interpreter shutdown, with modules half torn down
            pass


class StreamWatch:
    """The streams that join one request while its owner serves it (the ASGI middleware,
    from the app's call to the request's end), so that the owner can end the request with
    those still open when its client went away.

    An async generator's stream ends itself when the request's task is cancelled, and joins
    the request first. A sync generator that a server steps in a thread (Starlette's
    ``StreamingResponse``) cannot be: it is left suspended, or still making its next item,
    and is closed only when collected, after the request. The owner then ends the request
    with the body's figures as that stream's (:meth:`outlive` marks it so), and the stream
    adds only its tokens when it ends: one stream per request, as the async stream's.

    Held weakly: a stream dropped unstarted still ends (as cancelled) when collected, while
    its request is open, as it would unwatched.
    """

    __slots__ = ("key", "streams")

    def __init__(self, request: Request) -> None:
        # The record, not the request: a handler's own block that joined the request is
        # another Request object over the same record.
        self.key = id(request.record)
        self.streams: dict[int, weakref.ref[Tracker]] = {}
        _WATCHES[self.key] = self

    def add(self, tracker: Tracker) -> None:
        key = id(tracker)
        streams = self.streams
        streams[key] = weakref.ref(tracker, lambda _, key=key: streams.pop(key, None))

    def outlive(self) -> list[Tracker]:
        """The streams still open, each marked (``Tracker.outlived``) in the step that finds
        it open, as one whose request ends without waiting for it: a stream ending meanwhile
        in another thread either ended first (and joined the request itself) or is marked,
        never both."""
        found: list[Tracker] = []
        refs = list(self.streams.values())
        with _ENDING:  # as in Tracker.end, which sets `done` under it
            for ref in refs:
                tracker = ref()
                if tracker is not None and not tracker.done:
                    tracker.outlived = True
                    found.append(tracker)
        return found

    def close(self) -> None:
        """Stop watching: the request has ended."""
        if _WATCHES.get(self.key) is self:
            _WATCHES.pop(self.key, None)


# The requests whose streams are watched, by id of their record, while their owner serves
# them; the owner removes its entry when the request ends, so it holds no ended request.
_WATCHES: dict[int, StreamWatch] = {}


JOINED, ALONGSIDE = "joined", "joined beside the request's stream"
ENDED_WITH_STREAM, NOT_JOINED = "ended with a stream", "not joined"


def join_stream(request: Request, stream: StreamRecord, stage: float | None = None,
                failure: ModelError | None = None) -> str:
    """Make `stream` the figures of `request` (with `stage` seconds as its inference stage,
    and `failure` one of its model errors) if it is open and has none yet: :data:`JOINED`;
    :data:`ALONGSIDE` if it is open with figures already (its stage and failure are the
    request's all the same); else :data:`ENDED_WITH_STREAM` for a request that ended with
    figures of its own, or :data:`NOT_JOINED`.

    The check and the writes are one step under the lock a close takes to end a request: a
    close between them would hand the record to the drain first, and the figures would
    count or vanish by when the drain ran. Nothing is allocated inside it (a finaliser may
    close a request, and want the lock).
    """
    from inferwatch.core import request as requests

    entry = None if stage is None else (requests.INFERENCE_STAGE, stage)
    if stage is not None:
        # Figures that join as an inference stage stand for a model's own stream: a web
        # body's chunks do so only for a model's generator that its request outlived.
        stream.from_model = True
    fresh: list[ModelError] | None = None if failure is None else []
    with requests._CLOSING:
        record = request.record
        if not request.is_open:
            return NOT_JOINED if record.stream is None else ENDED_WITH_STREAM
        # Past the bound of an abandoned request the stage is dropped, as r.stage() drops
        # one (a handler timing each token it sends fills it): the figures still join.
        full = entry is not None and len(record.stages) >= requests.MAX_STAGES
        if entry is not None and not full:
            # A second stream of the request (an agent's next call) is an inference stage
            # too, as a second plain call is, though its figures go on their own.
            record.stages.append(entry)
            if failure is not None:  # bounded with the stages, as a plain call's
                if record.model_errors is None:
                    record.model_errors = fresh
                record.model_errors.append(failure)  # type: ignore[union-attr]
        joined = record.stream is None
        if joined:
            record.stream = stream
    if full:
        faults.record("request")
    return JOINED if joined else ALONGSIDE


def follow_sync(source: object, args: tuple | None, tracker: Tracker | None,
                monitor: Monitor, plan: Plan, start: float) -> Iterator:
    """Yield a generator's items unchanged; record what happened when it ends.

    The generator is `source` itself (the wrapper starts with its first item) or, when
    `args` is not None, what calling `source` with them returns (positional only: a call
    with keywords takes the general wrapper): a generator function's wrapper makes its call
    here, so that one primed generator does both (``call_wrappers.py``), and its first
    ``yield`` (of None) is the priming one that the opener takes. The call has counted
    itself as started; its exception is counted and returned (the priming step's
    ``StopIteration.value``), for the opener to raise untouched. Whoever opens this
    generator keeps it in the open streams (:data:`_OPEN`), so that one still open at exit
    is closed then (:func:`end_open_streams`). `tracker` is None for a stream that needs
    only counts (always so with `args`); one is made when it ends.
    Per item this does only what every stream needs (the clock, the counts, text length);
    token counting and kept text are the tracker's, when it has any. Primed, a ``throw()``
    or ``send(value)`` before the first item ends the stream (Python's own exception comes
    back) as ``cancelled``, the consumer's doing, as it ends for an unprimed wrapper.
    """
    items = 0
    item = first = last = gaps = bounds = chars = None
    gap_sum = 0.0
    aborted = False
    if args is not None:
        start = perf_counter()
        try:
            stream = source(*args)  # type: ignore[operator]
        except BaseException as exc:
            if exc.__class__ is RecursionError:
                # A generator function's call runs none of its code: this is the frame of
                # ours it was made from, too deep. The opener calls it again from its own.
                raise
            # Returned, not raised: whatever else leaves the priming step is a fault of
            # inferwatch's own, which its opener keeps from the caller.
            try:
                monitor.record_error(perf_counter() - start, exc.__class__, started=True)
            except Exception as fault:  # near the recursion limit: the error goes on
                try:
                    faults.record(_FAULT, fault)
                except Exception:
                    pass
            return exc
        on_item = None
    else:
        # Not primed: this is the caller's first next(), for the first item. Taken here, not
        # in the loop, so that the primed path above runs no more than it has to.
        stream = source
        if tracker is not None:
            # Started, this frame ends the stream itself, when collected too (its close()
            # runs the GeneratorExit handler below): in a reference cycle the collector may
            # finalise the tracker first, whose ending (no items) would be the one kept.
            tracker.owned = True
        on_item = None if tracker is None else tracker.item_hook()
        try:
            item = next(stream)
        except StopIteration as stop:
            _end(tracker, monitor, plan, start, OK, None, None, 0, None, 0.0, None)
            return stop.value
        except BaseException as exc:
            _end(tracker, monitor, plan, start, outcome_of(exc), exc, None, 0, None, 0.0, None)
            raise
        first = last = perf_counter()
        items = 1
        if item.__class__ is str:
            chars = len(item)
        elif isinstance(item, str):
            chars = _more_chars(None, item)
        if on_item is not None:
            on_item(item)
    try:
        while True:
            try:
                sent = yield item
            except GeneratorExit:
                # Ended through a tracker of its own, so that the handler below, which
                # the close re-raises into, finds it ended and records nothing twice.
                if tracker is None:
                    tracker = Tracker(monitor, plan, start, watched=False)
                tracker.end(CANCELLED, None, first, items, gaps, gap_sum, chars)
                stream.close()  # type: ignore[attr-defined]
                raise
            except BaseException as thrown:
                # Before the first item (primed, the generator not started) a throw() comes
                # straight back, as from a bare generator: the consumer aborted the stream.
                aborted = not items
                item = stream.throw(thrown)  # type: ignore[attr-defined]
            else:
                # next(), not stream.__next__: the builtin reaches the generator's own slot
                # without a method wrapper per item, and keeps its return value.
                if sent is None:
                    item = next(stream)
                else:
                    # A send(value) before the first item: Python's own TypeError, which
                    # ends this primed wrapper; the consumer's misuse, not the model's error.
                    aborted = not items
                    item = stream.send(sent)  # type: ignore[attr-defined]
            now = perf_counter()
            if items:
                if items == 1:
                    bounds = plan.bounds
                    gaps = [0] * (len(bounds) + 1)
                gap = now - last  # type: ignore[operator]
                gap_sum += gap
                gaps[bisect_left(bounds, gap)] += 1  # type: ignore[index,arg-type]
            else:
                first = now
            last = now
            items += 1
            if item.__class__ is str:
                chars = len(item) if chars is None else chars + len(item)
            elif isinstance(item, str):
                chars = _more_chars(chars, item)
            if on_item is not None:
                on_item(item)
    except StopIteration as stop:
        _end(tracker, monitor, plan, start, OK, None, first, items, gaps, gap_sum, chars,
             item)
        return stop.value
    except BaseException as exc:
        # A GeneratorExit here is the stream's own (a relay that raises it to stop), or
        # the consumer's close() on its way out (ended above): cancelled, never lost.
        if aborted:
            _end(tracker, monitor, plan, start, CANCELLED, None, None, 0, None, 0.0, None)
        else:
            _end(tracker, monitor, plan, start, outcome_of(exc), exc, first, items, gaps,
                 gap_sum, chars)
        raise


def _more_chars(chars: int | None, item: str) -> int:
    """`chars` and a str subclass's item (numpy.str_): text too, measured by str's own
    length, never by an override of the subclass's."""
    length = str.__len__(item)
    return length if chars is None else chars + length


def _end(tracker: Tracker | None, monitor: Monitor, plan: Plan, start: float,
         *figures: object) -> None:
    """End a sync stream through its tracker, made now if the stream needed none until here."""
    (tracker if tracker is not None else Tracker(monitor, plan, start, watched=False)).end(
        *figures)


class _Figures:
    """An async stream's figures so far, kept where its tracker finds them: an event loop
    closed without ``shutdown_asyncgens()`` drops the wrapper unclosed, its frame never runs
    again, and the tracker's finaliser ends the stream with these (as cancelled)."""

    __slots__ = ("chars", "first", "gap_sum", "gaps", "items")

    def __init__(self, buckets: int) -> None:
        self.first: float | None = None
        self.items = 0
        self.gaps = [0] * buckets
        self.gap_sum = 0.0
        self.chars: int | None = None

    def end(self, tracker: Tracker, outcome: str, error: BaseException | None,
            last: object = None) -> None:
        tracker.end(outcome, error, self.first, self.items, self.gaps, self.gap_sum,
                    self.chars, last)


async def follow_async(stream: AsyncIterator, tracker: Tracker) -> AsyncIterator:
    """The async twin of :func:`follow_sync`, for an async generator (``asend``, ``athrow``
    and ``aclose`` pass through)."""
    # Closed (collected, by an event loop's hook or the collector), this frame ends the
    # stream itself, as in follow_sync. Dropped unclosed (its loop gone), it never runs
    # again: the tracker's finaliser ends it then, from these figures.
    figures = tracker.figures = _Figures(len(tracker.plan.bounds) + 1)
    clock = perf_counter
    bounds = tracker.plan.bounds
    gaps = figures.gaps
    advance = getattr(stream, "asend", None)
    step = stream.__anext__
    item = None
    try:
        item = await step()
        figures.first = last = clock()
        while True:
            figures.items += 1
            if item.__class__ is str:
                chars = figures.chars
                figures.chars = len(item) if chars is None else chars + len(item)
            elif isinstance(item, str):
                figures.chars = _more_chars(figures.chars, item)
            tracker.on_item(item)
            try:
                sent = yield item
            except GeneratorExit:
                figures.end(tracker, CANCELLED, None)
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
                raise
            except BaseException as thrown:
                athrow = getattr(stream, "athrow", None)
                if athrow is None:
                    raise
                item = await athrow(thrown)
            else:
                item = await (step() if sent is None or advance is None else advance(sent))
            now = clock()
            gap = now - last
            last = now
            figures.gap_sum += gap
            gaps[bisect_left(bounds, gap)] += 1
    except StopAsyncIteration:
        figures.end(tracker, OK, None, item)
        return
    except BaseException as exc:  # a GeneratorExit as in follow_sync
        figures.end(tracker, outcome_of(exc), exc)
        raise


def outcome_of(exc: BaseException) -> str:
    """Cancellation (a task cancelled, a client gone: asyncio's, or trio's under anyio on
    trio, as a call's counts it in ``call_values.cancellations``), or a consumer's coroutine
    closed while it waited for an item, is not the stream's error.

    >>> import asyncio
    >>> outcome_of(asyncio.CancelledError()), outcome_of(GeneratorExit()), outcome_of(OSError())
    ('cancelled', 'cancelled', 'error')
    """
    if isinstance(exc, GeneratorExit):
        return CANCELLED
    from inferwatch.core.call_values import cancellations

    return CANCELLED if isinstance(exc, cancellations()) else ERROR


def end_open_streams() -> None:
    """End every stream still open as cancelled, as it would end when collected: what the
    exit (and ``inferwatch.multiproc.shutdown()``) does before its last drain, publish and
    flush, which a stream collected later would miss. A stream that has ended already is
    passed over, so each ends once. Never raises.

    An SDK stream's proxy and an async generator's wrapper record their figures without
    touching the stream (no event loop may be left to close it). A sync generator's wrapper
    keeps its figures in its frame: it is closed, as the collector would close it (the
    generator's own cleanup runs). One that another thread is stepping at this moment is
    left to end itself. Each is found in the open streams, where it was put when it was
    made: nothing searches the heap, however large.
    """
    try:
        alive = [stream for stream in (ref() for ref in _OPEN.copy()) if stream is not None]
        # Proxies first: each ends its own tracker, with its figures.
        for stream in alive:
            if type(stream) is not Tracker and type(stream) is not GeneratorType:
                _end_quietly(stream._end, CANCELLED, None)  # type: ignore[attr-defined]
        for stream in alive:
            # A started tracker is owned: its proxy ended it above, or its sync generator's
            # wrapper, closed below, ends it.
            if type(stream) is Tracker and not stream.done and not stream.owned:
                if stream.figures is not None:  # an async generator's wrapper
                    _end_quietly(stream.figures.end, stream, CANCELLED, None)
                else:  # never started
                    _end_quietly(stream.end, CANCELLED, None, None, 0, None, 0.0, None)
        _close_wrappers([stream for stream in alive if type(stream) is GeneratorType])
    except Exception as exc:  # a bug of ours: the exit goes on
        faults.record(_FAULT, exc)


def _end_quietly(end: Callable[..., None], *args: object) -> None:
    try:
        end(*args)
    except Exception as exc:
        faults.record(_FAULT, exc)


def _close_wrappers(wrappers: list[GeneratorType]) -> None:
    """End the streams of the sync wrappers (:func:`follow_sync`'s generators) among
    `wrappers` that are open. One suspended at an item (or primed) is closed; one never
    started holds no figures, and its tracker ends the stream; one ended has recorded
    itself, and one running is another thread's, which ends it."""
    code = follow_sync.__code__
    for wrapper in wrappers:
        if wrapper.gi_code is not code or wrapper.gi_frame is None or wrapper.gi_running:
            continue
        if not wrapper.gi_suspended:  # never started: its tracker is an argument
            tracker = wrapper.gi_frame.f_locals.get("tracker")
            if type(tracker) is Tracker and not tracker.done and not tracker.owned:
                _end_quietly(tracker.end, CANCELLED, None, None, 0, None, 0.0, None)
            continue
        try:
            wrapper.close()
        except BaseException:  # the stream's own cleanup failed; the stream has ended
            pass
