"""The per-request API: stages, features, prediction, action, request id.

>>> from inferwatch.core.registry import Registry
>>> mon = Registry().monitor("fraud", "1.4.2")
>>> with mon.request(request_id="r-17") as r:
...     with r.stage("preprocess"):
...         x = [1.0, 2.0]
...     r.prediction([[0.1, 0.9]])
...     r.action("blocked")
>>> mon.drain(); mon.state.counters["inferwatch_actions_total"]
{('blocked',): 1.0}
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import sys
import threading
import time
from collections import deque
from inspect import CO_ASYNC_GENERATOR, CO_GENERATOR
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from inferwatch import faults
from inferwatch.catalogue import OTHER
from inferwatch.core.call_input import snapshot, snapshot_input

# The class an outcome given to close() stands for, as record_error reads it: the
# drain reads the class's name, and anything else there would fail the whole drain.
from inferwatch.core.call_values import error_class
from inferwatch.core.request_chain import (
    OpenedChain,
    drop_ended_newest,
    note_opened,
    running_task,
)
from inferwatch.core.request_record import RequestRecord, error_message_for, from_model_error
from inferwatch.core.tracing import read_trace_id, stage_span
from inferwatch.forking import renew_at_fork

if TYPE_CHECKING:
    from inferwatch.core.monitor import Monitor

_current: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
    "inferwatch_request", default=None)
# The blocks this thread or task entered of requests open already (one shared object
# entered in two threads, a block entered again, a block joining the web request), each as
# (request, the current request before it, the request's record then), innermost last.
# Only the block's own thread or task may give back what it had: the opening block may end
# first, in another thread, and a count on the request cannot tell whose block ends.
_entered: contextvars.ContextVar[tuple[tuple[Request, Request | None, RequestRecord], ...]] = \
    contextvars.ContextVar("inferwatch_request_entries", default=())
# Past this many blocks in one thread's list, entries of requests ended meanwhile (blocks
# entered and never exited) are dropped when one is added: the list must not grow for good.
_ENTERED_PRUNE = 16

INFERENCE_STAGE = "inference"

# A request opened and never closed (``Request.open()`` with no ``close()``) in a thread
# that lives on (a pool's worker) stays in that thread's context: every later call there
# would join it, uncounted. One found open for longer than this is taken for abandoned and
# ended as cancelled, so that later calls count as their own: far beyond any real web
# request. A ``with`` block has no such bound, since its exit ends it however long it runs
# (an agent's request, a batch's), nor does a block in a generator, which the generator's
# end or collection closes.
ABANDONED_AFTER_SECONDS = 600.0
# The stages one request keeps: past it a stage is dropped (and counted), so that a request
# held open for good (a websocket's, a stage per message) does not grow without bound. The
# request itself goes on: its later calls, action and outcome are still its own.
MAX_STAGES = 10_000

_GENERATOR_FLAGS = CO_GENERATOR | CO_ASYNC_GENERATOR
# What contextlib runs a @contextmanager / @asynccontextmanager generator to its yield with.
_CONTEXT_MANAGER_ENTRIES = frozenset((
    contextlib._GeneratorContextManager.__enter__.__code__,
    contextlib._AsyncGeneratorContextManager.__aenter__.__code__,
))

# Held only while a close checks and clears a request's open flag: nothing in that section
# allocates, so a finalizer (Request.__del__ closing another request) never runs inside it.
_CLOSING = threading.Lock()
renew_at_fork(globals(), "_CLOSING")
# Held while a request opens and while a block entered again (or a joined block) updates
# a request's depth: two threads entering one request at once must not both open it, nor
# lose a count, or the request would end at the wrong exit (or never). Uncontended, as it
# nearly always is, it costs an open well under a microsecond.
_NESTING = threading.Lock()
renew_at_fork(globals(), "_NESTING")

# While a pushed job runs (``push.on_exit``), the last few exceptions that ``with`` blocks of
# requests counted as their failure (serving/job_failures.py keeps it; None otherwise): the
# job failing with one of them does not count it again. Held strongly, since exceptions
# take no weak references, and dropped as the last job ends.
failures_counted: deque[BaseException] | None = None


def current_request() -> Request | None:
    """The innermost open ``mon.request()`` block in this thread or task, if any.

    A task or thread started inside the block keeps the block's context after it closed
    (a fire-and-forget rescoring task): its calls are then calls of their own, since the
    closed request went to the drain already. A block closed out of order (a generator
    that opened it was resumed inside another block) leaves the next open one outward.
    """
    request = _current.get()
    while request is not None and not (request._open and _live(request)):
        request = request._parent
    return request


def _innermost_open() -> Request | None:
    """As :func:`current_request`, but with a generator's request that is paused here: a
    block opened meanwhile (the generator's consumer's own) is not part of it, yet must give
    it back to the context when it ends, for the generator's steps to find it again."""
    request = _current.get()
    while request is not None and not (request._open and _within_age(request)):
        request = request._parent
    return request


def current_request_of(monitor: Monitor) -> Request | None:
    """The innermost open ``mon.request()`` block of `monitor` in this thread or task: a
    call of model A made inside a block of model B that is itself inside A's block joins
    A's block."""
    request = _current.get()
    while request is not None:
        if request._open and request.monitor is monitor and _live(request):
            return request
        request = request._parent
    return None


def _live(request: Request) -> bool:
    """False for an open request past the age of an abandoned one, which this ends (as
    cancelled: the next call finds it, so that this stays one check per call), and for a
    generator's request while the generator is paused in this thread or task (see
    :func:`_paused_here`)."""
    if not _within_age(request):
        return False
    frame = request._frame
    # A running frame has a caller; a paused one none (nor one run from a thread with no
    # Python frame below it, told apart by _paused_here).
    return frame is None or frame.f_back is not None or not _paused_here(request, frame)


def _paused_here(request: Request, frame: FrameType) -> bool:
    """Whether the generator whose `frame` opened `request` is paused at this thread's or
    task's point of view: its consumer runs here, in the context the generator shares with
    it, and must not take the generator's request for its own. A thread or task the
    generator started (with its context) while it waits is doing the generator's work."""
    if request._thread != threading.get_ident():
        return False
    if frame.f_code.co_flags & CO_ASYNC_GENERATOR and running_task() is not request._task:
        return False
    caller = sys._getframe(1)
    while caller is not None:
        if caller is frame:  # run from a thread with no Python frame below it
            return False
        caller = caller.f_back
    return True


def _block_owner(frame: FrameType) -> FrameType | None:
    """The generator whose paused steps keep the block that generator `frame` entered to
    itself, or None when the block belongs to a plain function or coroutine.

    A ``@contextmanager`` or ``@asynccontextmanager`` helper (an async FastAPI ``Depends``
    generator is made one) pauses at its ``yield`` for its caller's ``with`` body to run:
    the block it opened belongs to that caller, whose calls in the body must join it. So
    past a generator run to its ``yield`` by contextlib, the owner is whoever entered the
    helper: a streaming generator using the helper still keeps its block to itself."""
    while True:
        driver = frame.f_back
        if driver is None or driver.f_code not in _CONTEXT_MANAGER_ENTRIES:
            return frame
        owner = driver.f_back
        if owner is None or not owner.f_code.co_flags & _GENERATOR_FLAGS:
            return None
        frame = owner


def _within_age(request: Request) -> bool:
    """False for an open request past the age of an abandoned one, which this ends."""
    if time.perf_counter() < request._deadline or request._ended_by_owner:
        return True
    try:
        # Marked cancelled by close() only if this ends it: the owner may end it at this very
        # moment, and its record (then on its way to the drain) must keep the owner's outcome.
        request.close(None, cancelled=True)
    except Exception as exc:
        faults.record("request", exc)
    return False


def _unlink(request: Request, parent: Request | None) -> None:
    """Take `request` (closed, about to open again under `parent`) out of the chain of
    blocks outward of `parent`, where an earlier entry left it: the chain must not loop."""
    node = parent
    while node is not None:
        if node._parent is request:
            node._parent = request._parent
            return
        node = node._parent


def _ended_at(ended_at: object, start: float) -> float:
    """`ended_at` as a ``time.perf_counter()`` reading between `start` and now; now, and a
    counted fault, for anything else (text, NaN, a wall-clock ``time.time()``): a NaN
    duration would make the latency sum NaN for good, a negative one lower it, a wall-clock
    reading add decades to it, and an exception would leave the request never counted, in
    flight forever."""
    now = time.perf_counter()
    try:
        seconds = float(ended_at)  # type: ignore[arg-type]
        if isinstance(ended_at, bool) or not start <= seconds <= now:
            raise ValueError(f"ended_at must be a perf_counter() reading, got {ended_at!r}")
        return seconds
    except (TypeError, ValueError, OverflowError) as exc:
        faults.record("request", exc)
        return now


def _push(request: Request, before: Request | None) -> None:
    """Note in this thread or task that a block of the open `request` began here, when
    `before` was the current request (see ``_entered``)."""
    entries = _entered.get()
    if len(entries) >= _ENTERED_PRUNE:
        entries = tuple(entry for entry in entries
                        if entry[0]._open and entry[0].record is entry[2])
    _entered.set((*entries, (request, before, request.record)))


def _leave(request: Request) -> None:
    """This thread's or task's block of `request` ended: the current request here is again
    the one it was before the block. Not a token reset: a request may end in another task
    or thread than the one that opened it, or after a block opened inside it (a generator
    resumed elsewhere). Where this request is not the current one, another block is, and
    it stays; current_request() passes over this one once closed."""
    entries = _entered.get()
    if entries:
        record = request.record
        for index in range(len(entries) - 1, -1, -1):
            entry = entries[index]
            if entry[0] is request and entry[2] is record:
                _entered.set(entries[:index] + entries[index + 1:])
                if _current.get() is request:
                    _current.set(entry[1])
                return
    # The block that opened it: the next open one outward becomes the current request.
    if _current.get() is request:
        parent = request._parent
        while parent is not None and not parent._open:
            parent = parent._parent
        _current.set(parent)


class Stage:
    """Times one named stage of a request; records even when the stage raises."""

    __slots__ = ("_name", "_request", "_span", "_start")

    def __init__(self, request: Request, name: str) -> None:
        self._request = request
        self._name = name
        self._start = 0.0
        self._span = None

    def __enter__(self) -> Stage:
        request = self._request
        monitor = request.monitor
        if monitor.traces and request.record.trace_id is None:
            request.note_trace()  # before the stage's own span becomes the current one
        if monitor.trace_stages:
            try:
                self._span = stage_span(self._name, {"inferwatch.model": monitor.name,
                                                     "inferwatch.model_version": monitor.version})
                self._span.__enter__()
            except Exception as exc:
                self._span = None
                faults.record("tracing", exc)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> bool:
        request = self._request
        entry = (self._name, time.perf_counter() - self._start)
        # The check and the append are one step under the lock a close takes: a close
        # between them (the middleware ending the request while a worker's stage ends)
        # would hand the record to the drain first, and the stage would count or vanish
        # by when the drain ran. Made before the lock: nothing allocated inside it.
        with _CLOSING:
            kept = request._writable()
            # Past the bound of an abandoned request, a stage is dropped: a request held
            # open for good (a websocket's, stages per message) must not grow without bound.
            full = kept and len(request.record.stages) >= MAX_STAGES
            if kept and not full:
                request.record.stages.append(entry)
        if not kept or full:
            faults.record("request")
        if self._span is not None:
            try:
                self._span.__exit__(*exc_info)
            except Exception as exc:
                faults.record("tracing", exc)
        return False


class Request:
    """One prediction request; use as ``with mon.request() as r:`` (or ``async with``)."""

    __slots__ = ("__weakref__", "_deadline", "_depth", "_entered", "_frame", "_open",
                 "_opened", "_parent", "_start", "_task", "_thread", "_trace_fault", "monitor",
                 "record")
    _http = False  # opened by the web middleware for one HTTP request (see HTTPRequest)
    # Ended by whatever opened it, however long it stays open: never taken for abandoned
    # by its age (read only past the deadline, so it costs an open request nothing).
    _ended_by_owner = False

    def __init__(self, monitor: Monitor, request_id: str | None = None) -> None:
        self.monitor = monitor
        # As mon.request() does: outcomes are joined by the id's text (record_outcome(17)
        # looks up "17"), so an int or UUID kept as it is would never be joined.
        if request_id is not None and request_id.__class__ is not str:
            request_id = faults.request_id_text(request_id, "request_id")
        self.record = RequestRecord(duration=0.0, request_id=request_id)
        self._open = False
        # Blocks entered again while open, each ended by its own exit; below zero, the
        # blocks of this object that joined the open request `_parent` (see _join).
        self._depth = 0
        self._entered = False  # once entered, entering again starts a request of its own
        self._parent: Request | None = None
        self._start = 0.0
        self._deadline = 0.0  # perf_counter() past which an open request is abandoned
        # The generator's frame whose block opened it, while open (see _paused_here), and
        # the thread and task that generator ran in then.
        self._frame: FrameType | None = None
        self._thread = 0
        self._task: object = None
        # A look for its span found one whose context cannot be read: counted once, and
        # not looked for again while it is open.
        self._trace_fault = False
        # The chain of requests opened with open() in the thread or task it was opened in,
        # that a request opened with open() inside it joins (see request_chain.OpenedChain).
        self._opened: OpenedChain | None = None

    @property
    def request_id(self) -> str | None:
        return self.record.request_id

    @property
    def is_open(self) -> bool:
        """Entered and not yet exited (a stream ending later joins it only while open); for
        a block that joined the web middleware's request, whether that request is open."""
        if self._open:
            return True
        joined = self._parent
        return self._depth < 0 and joined is not None and joined._open

    def note_trace(self) -> None:
        """Give the request the trace id of the span active now, unless it has one: the
        span current when it opened is not its only chance, since one may start inside it
        (the application's own, or a framework's server span that starts after the web
        middleware opened the request). Nothing once it has a trace id, or when its model
        follows no trace. Never raises."""
        record = self.record
        if record.trace_id is not None or self._trace_fault or not self.monitor.traces:
            return
        trace_id = read_trace_id()
        if trace_id is None:
            return
        if trace_id.__class__ is not str:
            self._trace_fault = True
            trace_id.count()  # type: ignore[union-attr]
            return
        # The check and the write are one step under the lock a close takes: never written
        # into a record handed to the drain, whose reading would then depend on its timing.
        with _CLOSING:
            if self._entered and self._writable() and self.record is record and \
                    record.trace_id is None:
                record.trace_id = trace_id

    def _take_trace(self, record: RequestRecord) -> None:
        """Give `record`, which no other thread writes to now, the active span's trace id."""
        found = read_trace_id()
        if found is None:
            return
        if found.__class__ is str:
            record.trace_id = found  # type: ignore[assignment]
        else:
            self._trace_fault = True
            found.count()  # type: ignore[union-attr]

    def _ended(self) -> bool:
        """Whether this request's record went to the drain already (counting the write
        that asked as a fault): the drain may have read it or may read it later, so a write
        then would count or vanish by the drain's timing, and a closed request kept and
        written to for good would grow without bound. Before the first entry, what is
        written is kept for the request that entry opens."""
        if self._writable():
            return False
        faults.record("request")
        return True

    def _writable(self) -> bool:
        """Whether a write now reaches a record the drain has not been handed (see
        :meth:`_ended`); no fault counted, nothing allocated: a caller may hold the close
        lock, so that no close comes between this check and its write."""
        if self._open or not self._entered:
            return True
        joined = self._parent
        # a block that joined the open web request, after its own exit
        return joined is not None and joined.record is self.record and joined._open

    @classmethod
    def open(cls, monitor: Monitor, request_id: str | None = None) -> Request:
        """A new request, already entered: ``Request(monitor, request_id).__enter__()`` in
        one step (the web middleware opens one per HTTP request; close it with
        :meth:`close`).

        >>> from inferwatch.core.registry import Registry
        >>> mon = Registry().monitor("fraud", "1")
        >>> request = Request.open(mon, "r-17"); request.close(None)
        >>> mon.drain(); mon.state.counters["inferwatch_requests_total"][("ok",)]
        1.0
        """
        request = cls(monitor, request_id)
        entered = request._enter(None)
        if entered is request:
            # Nothing but its close() ends it, which a pool's worker may never reach.
            request._deadline = request._start + ABANDONED_AFTER_SECONDS
            try:
                note_opened(request, time.perf_counter())
            except Exception as exc:
                faults.record("request", exc)
        return entered

    def __enter__(self) -> Request:
        return self._enter(sys._getframe(1))

    def _enter(self, caller: FrameType | None) -> Request:
        """Open the request, or join the open one it belongs to; `caller` is the frame whose
        ``with`` (or ``async with``) block this is, None for :meth:`open`."""
        monitor = self.monitor
        if self._open:
            # Already open (a handler's `with` around the middleware's request): one request,
            # counted once, and ended by the outermost exit, not by this block's. Checked
            # again, with the count, under the lock a close takes: one ending it meanwhile
            # (another thread's last exit) would leave a count no exit takes back, and the
            # object's next request would then never end.
            with _NESTING, _CLOSING:
                again = self._open
                if again:
                    self._depth += 1
            if again:
                return self._entered_open()
        # The parent is the block open around this one, not a closed one a task kept, nor
        # an abandoned one that a pool's thread kept.
        parent = _innermost_open()
        if parent is not None and not self._http:
            # A block inside an open request of its model (the web middleware's, or a
            # handler's block around a helper that opens its own) is that request, not a
            # second one: counting both would double the traffic and split its stages.
            outer = current_request_of(monitor)
            if outer is not None and self._join(outer):
                return outer
        entered = self._entered
        # A block entered again is a request of its own: the first record may still wait
        # for the drain, and must keep what that request saw.
        record = RequestRecord(duration=0.0, request_id=self.record.request_id) \
            if entered else self.record
        # A block's exit ends it, however long it runs: it is never taken for abandoned.
        # A generator's block is left open while the generator is paused, in the context
        # its consumer shares; the consumer's calls must then pass over it.
        generator = _block_owner(caller) if caller is not None and \
            caller.f_code.co_flags & _GENERATOR_FLAGS else None
        task = running_task() if generator is not None and \
            generator.f_code.co_flags & CO_ASYNC_GENERATOR else None
        start = time.perf_counter()
        # Two threads entering one shared object at once (``r = mon.request()``, then
        # ``with r:`` in each) must open one request, counted started once: the first to
        # get here opens it, the other enters it as a block entered again. Everything is
        # made before the lock, which a finaliser's exit (a generator's block) may want.
        with _NESTING:
            again = self._open
            if again:
                with _CLOSING:  # as above
                    again = self._open
                    if again:
                        self._depth += 1
            if not again:
                self.record = record
                self._start = start
                self._deadline = math.inf
                self._frame = generator
                self._thread = threading.get_ident()
                self._task = task
                if entered:
                    _unlink(self, parent)
                self._parent = parent
                self._opened = None if parent is None else parent._opened
                self._entered = True
                self._open = True
        if again:
            return self._entered_open()
        monitor.call_started()
        _current.set(self)
        record.started_at = time.time()
        self._trace_fault = False
        if monitor.traces:
            self._take_trace(record)
        return self

    def _entered_open(self) -> Request:
        """This block entered the request open already (in this or another thread or task):
        for the block's duration it is the current request here, whichever block opened
        it, so that a model call in it joins it rather than counting as a call of its own."""
        _push(self, _current.get())
        _current.set(self)
        return self

    def _join(self, outer: Request) -> bool:
        """Make this block part of the open request `outer` of its model (the web
        middleware's, or a block open around this one); its exit then ends only this block,
        and the request ends with its own end (the middleware's close, the outer block's
        exit), with that end's outcome. What the block records goes to that request, by
        this object as well as by the one returned (``r = mon.request(); with r: ...``).
        False when `outer` ended meanwhile (the middleware closing it in its own thread):
        its record went to the drain, and the block is then a request of its own. False
        too when both blocks name their request and the names differ (a block per item
        inside a batch's block): the ids are what outcomes are joined by, so each stays
        a request of its own."""
        request_id = self.record.request_id
        # The check and the write are one step under the lock a close takes: a close
        # between them would hand the record to the drain first, and the block would join
        # a request already counted, its own call then counted nowhere.
        with _CLOSING:
            if not outer._open:
                return False
            if request_id is not None:
                known = outer.record.request_id
                if outer._http or known is None:
                    # The id the handler's code knows, and so the one its ground truth
                    # comes back under, rather than a header the client may not have sent.
                    outer.record.request_id = request_id
                elif known != request_id:
                    return False
        with _NESTING:
            self._depth -= 1  # below zero: the number of blocks this object joined
        self._parent = outer
        self._entered = True  # a later block of its own must not rewrite the shared record
        self.record = outer.record
        # The request joined is already the innermost of its model here (it was found so),
        # and the current request stays as it is: a block of another model open inside it
        # keeps its calls. Noted all the same, so that this block's exit gives back what
        # this thread or task had, and is not taken for the exit of the joined request's
        # own block: the request's depth is not touched, so that the block that opened it
        # ends it even where a joined block outlives it (a generator left unfinished).
        _push(outer, _current.get())
        # The web middleware's request opened before a framework's server span started;
        # the handler's block runs inside that span.
        outer.note_trace()
        return True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if self._depth:
            joined = None
            left = False
            with _NESTING, _CLOSING:  # as in __enter__: a close resets the count
                depth = self._depth
                if depth > 0 and self._open:
                    self._depth = depth - 1
                    left = True
                elif depth < 0:
                    self._depth = depth + 1
                    joined = self._parent
            if left:
                # Not the last block: the request stays open for the others, but this
                # thread or task is out of it, whichever of them opened it.
                try:
                    _leave(self)
                except Exception as exc:
                    faults.record("request", exc)
                return False
            if joined is not None:
                # The joined request's own end decides its outcome: an exception that left
                # this block and was caught around it is no failure of the request.
                try:
                    _leave(joined)
                except Exception as exc_leaving:
                    faults.record("request", exc_leaving)
                return False
        counts_it = exc is not None and self._open
        if exc is not None and self.record.model_errors is not None:
            self.ending_with(exc)
        events = self.monitor.events
        self.close(exc_type, error_message=None if exc is None or events is None
                   else error_message_for(events, exc))
        kept = failures_counted
        if counts_it and kept is not None:
            kept.append(exc)  # a pushed job failing with it counts it no more
        return False

    def ending_with(self, error: BaseException) -> None:
        """`error` is what this request is about to end with (its block's exception, or one
        the web middleware or framework saw). Counted by its class unless it is one of the
        request's model errors, or was raised from one or while handling one: decided now,
        so that neither it nor its traceback waits for the drain. Never raises."""
        try:
            record = self.record
            model_errors = record.model_errors
            if model_errors is None or from_model_error(error, model_errors):
                return
        except Exception as exc:  # an exception group whose members cannot be read
            faults.record("request", exc)
            return
        with _CLOSING:  # as in _write: never into a record handed to the drain
            if self._writable() and self.record is record:
                record.own_error = True

    def close(self, error_type: type | None = None, ended_at: float | None = None, *,
              cancelled: bool = False, error_message: object = None) -> None:
        """End the request with `error_type` as its outcome (None, the default: ok), or as
        cancelled, as of `ended_at` (a ``time.perf_counter()`` reading; None: now), and hand
        it to the drain. Closing a request that is not open does nothing: it was counted
        when it closed, and its record keeps the outcome of the close that ended it."""
        if not self._open:
            # Ended while a block of it ran here (by another thread's close, or taken for
            # abandoned): the block's exit still gives back what this thread had.
            try:
                _leave(self)
            except Exception as exc:
                faults.record("request", exc)
            return
        # Two threads may end one request at once (a server's thread closing a body while
        # the abandoned-request check or the garbage collector ends it): only one of them
        # may hand it to the drain, and only its outcome may reach the record. The lock is
        # taken only here, past the check above.
        with _CLOSING:
            if not self._open:
                return
            self._open = False
            # With the flag, under this lock: a block entering it again or leaving it
            # meanwhile must see both as they were, or both as they are now.
            self._depth = 0
            if cancelled:
                self.record.cancelled = True
            # Released after the lock: nothing freed inside it.
            frame, task = self._frame, self._task
            self._frame = self._task = None
        del frame, task
        if error_type is not None and not (error_type.__class__ is type and
                                           issubclass(error_type, BaseException)):
            error_type = error_class(error_type)
        record = self.record
        start = self._start
        end = time.perf_counter()
        if ended_at is not None:
            # The middleware's own reading passes the check inline; anything else is
            # checked (and counted) by _ended_at.
            end = ended_at if ended_at.__class__ is float and start <= ended_at <= end \
                else _ended_at(ended_at, start)
        record.duration = end - start
        record.error_type = error_type
        record.error_message = error_message
        if record.trace_id is None and not cancelled and not self._trace_fault and \
                self.monitor.traces:
            # The last chance to see a span started after the request opened: its own
            # now, the record past any other writer. Not on a cancelling close: the
            # abandoned-request check and the garbage collector end a request from any
            # thread, inside a span of some other request.
            self._take_trace(record)
        if error_type is GeneratorExit:
            # A generator closed inside the block: its consumer stopped, as for a stream.
            record.cancelled = True
        try:
            if _entered.get():
                _leave(self)
            elif _current.get() is self:  # as _leave does, without a call per request
                parent = self._parent
                while parent is not None and not parent._open:
                    parent = parent._parent
                _current.set(parent)
            chain = self._opened
            if chain is not None and chain.entries:
                drop_ended_newest(chain.entries)
        except Exception as exc:
            faults.record("request", exc)
        self.monitor.submit(record)

    def __del__(self) -> None:
        # Never closed (opened with open() and dropped, or its task's context freed while
        # open): counted as cancelled, or the in-flight gauge would keep it forever.
        try:
            if self._open:
                self.close(None, cancelled=True)
        except AttributeError:  # its __init__ failed: never entered
            pass
        except Exception as exc:
            faults.record("request", exc)

    async def __aenter__(self) -> Request:
        return self._enter(sys._getframe(1))

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        return self.__exit__(exc_type, exc, tb)

    def stage(self, name: str) -> Stage:
        """Time a stage: ``with r.stage("preprocess"): ...``."""
        return Stage(self, faults.text_of(name, "request") or OTHER)

    def features(self, features: object) -> None:
        """The model's input features for this request (data quality, drift, event log),
        as they are now: a small array is copied, since a server may refill one buffer
        per request before the drain reads it (see ``call_input.snapshot``)."""
        if not self._open and self._ended():
            return
        self._write("features", snapshot_input(features), named_features=True)

    def inputs(self, inputs: object) -> None:
        """The raw input of this request, for the event log (features are what the model
        saw); a small array is copied, as by :meth:`features`."""
        if not self._open and self._ended():
            return
        self._write("inputs", snapshot_input(inputs))

    def stage_output(self, stage: str, output: object) -> None:
        """An intermediate result worth keeping in the event log (candidates, embeddings...)."""
        if not self._open and self._ended():
            return
        name = faults.text_of(stage, "request") or OTHER
        value = snapshot(output)
        fresh: dict[str, object] = {}
        with _CLOSING:  # as in _write: never into a record handed to the drain
            kept = self._writable()
            if kept:
                record = self.record
                outputs = record.stage_outputs
                if outputs is None:
                    outputs = record.stage_outputs = fresh
                replaced = outputs.get(name)  # released after the lock, as in _write
                outputs[name] = value
        if not kept:
            faults.record("request")
        else:
            del replaced

    def prediction(self, prediction: object, *, probabilities: bool | None = None) -> None:
        """The model output for this request; `probabilities` marks a predict_proba matrix.
        A small array is copied, as by :meth:`features`."""
        if not self._open and self._ended():
            return
        value = snapshot(prediction)
        if probabilities is not None:
            try:
                probabilities = bool(probabilities)
            except Exception as exc:  # an array, or an object whose truth raises
                faults.record("request", exc)
                probabilities = None  # None: tell by its shape (see predictions.normalize)
        with _CLOSING:  # as in _write
            kept = self._writable()
            if kept:
                record = self.record
                replaced = record.prediction  # released after the lock, as in _write
                record.prediction = value
                record.has_prediction = True
                record.probabilities = probabilities
        if not kept:
            faults.record("request")
        else:
            del replaced
            if self.monitor.traces:
                self.note_trace()  # the span the model ran in, as for a model call

    def action(self, action: str) -> None:
        """What the system did with the prediction ("shown", "blocked", ...)."""
        if not self._open and self._ended():
            return
        self._write("action", faults.text_of(action, "request") or OTHER)

    def _write(self, name: str, value: object, named_features: bool = False) -> None:
        """Set the record's field `name`, unless the record went to the drain: the check
        and the write are one step under the lock a close takes, or a close between them (a
        worker's write as the middleware ends the request) would hand the record to the
        drain first, and the value would count or vanish by when the drain ran. The value
        is made before the lock: nothing allocated inside it."""
        with _CLOSING:
            kept = self._writable()
            if kept:
                record = self.record
                # The value replaced is released after the lock: its finaliser (a
                # generator's block closing a request) must not run inside it.
                replaced = getattr(record, name)
                setattr(record, name, value)
                if named_features:
                    record.named_features = True
        if not kept:
            faults.record("request")
        else:
            del replaced
