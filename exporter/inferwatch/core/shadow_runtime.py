"""A running shadow: one challenger's queue, its workers, and what they record.

:class:`Shadow` is what ``inferwatch.shadow()`` returns. On the request path its
:meth:`~Shadow.offer` puts a sampled call on a bounded queue (or counts it as dropped). Its
worker threads take the queue, call the challenger (in the thread, or through a child process
in ``mode="process"``), record each call in the challenger's own monitor and hand both
results to its :class:`~inferwatch.core.shadow_compare.Comparison`; the challenger's drain
folds the counts and comparisons into the state (:meth:`~Shadow.before_drain`), and
:meth:`~Shadow.close` takes the shadow off its champion. A failed call is recorded under
:class:`ShadowTimeout`, :class:`ShadowCrashed` or :class:`ShadowClosed`, or under a class
named like the one the child process raised. Apart from :mod:`inferwatch.core.shadow`, which
checks ``shadow()``'s arguments and sets a shadow up: this is the shadow once it runs.

>>> is_number(0.5), is_number(True), is_number("0.5")
(True, False, False)
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import math
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from inferwatch import faults
from inferwatch.core import shadow_lifetime
from inferwatch.core.call_input import held_bytes, input_position
from inferwatch.core.call_values import count_value
from inferwatch.core.follower import UNFOLLOWED, Follower
from inferwatch.core.monitor import Monitor
from inferwatch.core.monitor_drain import EVENT_BYTES
from inferwatch.core.predictions import class_names_of
from inferwatch.core.request import current_request_of
from inferwatch.core.request_record import RequestRecord
from inferwatch.core.shadow_async import ChallengersOwn, awaited
from inferwatch.core.shadow_compare import Comparison
from inferwatch.core.shadow_copies import PLAIN_RESULTS, captured, frozen, is_stream, private
from inferwatch.core.shadow_outcomes import HeldOutcomes
from inferwatch.core.shadow_workers import ShadowWorkers
from inferwatch.core.shadow_wrappers import UNNAMED, unwrap

# What the queued calls may hold, their inputs and the champion's results: a slow
# challenger must not keep every large input of a thousand calls alive (1 MiB batches, 1
# GiB). The same bound as the pairs waiting for the drain; past it a call is dropped as
# ``queue_full``. One call larger than this is still taken when the queue is empty.
MAX_QUEUED_BYTES = 128 * 1024 * 1024

log = logging.getLogger("inferwatch")


class ShadowTimeout(Exception):
    """A shadow model's call took longer than its timeout (recorded as its error type)."""


class ShadowCrashed(Exception):
    """A shadow model's child process died during a call (recorded as its error type)."""


class ShadowClosed(Exception):
    """The shadow was closed during a call, which killed its child process: the call ends
    as ``cancelled``, not as the challenger's error, and counts as dropped for
    ``shutdown``."""


_FAILURES = {"timeout": ShadowTimeout, "crashed": ShadowCrashed, "shutdown": ShadowClosed}
_error_types: dict[str, type] = {}


def _error_type(name: str) -> type:
    """An exception class named like the one the child process raised (bounded)."""
    found = _error_types.get(name)
    if found is None:
        if len(_error_types) >= 64:
            return Exception
        found = _error_types[name] = type(name, (Exception,), {})
    return found


# A Shadow's `events` when it writes to whatever log its champion's monitor has.
CHAMPIONS_LOG = object()
# What capture() gives for a call sampled while the queue is full: its arguments are not
# copied (a large input would be copied only to be dropped), and offer() counts it.
FULL = object()


class Shadow(ShadowWorkers):
    """One challenger behind one champion: its queue, its workers and its comparison."""

    def __init__(self, champion_monitor: Monitor, challenger: Any, monitor: Monitor,
                 classes: Callable[[], object] | None = None, *,
                 sample: float, timeout: float, queue_size: int, mode: str, workers: int,
                 comparison: Comparison, events: Any = None,
                 model_bytes: bytes | None = None) -> None:
        self.champion_monitor = champion_monitor
        self.challenger = challenger
        self._classes = classes
        self.monitor = monitor
        self.sample = sample
        self.timeout = timeout
        self.queue_size = queue_size
        self.max_queued_bytes = MAX_QUEUED_BYTES
        self.mode = mode
        self.workers = workers
        self.comparison = comparison
        self.events = events
        # Reads the challenger's results as the champion's wrapper reads the champion's:
        # text and (with count_tokens= or usage=) responses are recorded for their length
        # and tokens, not as predictions.
        self._follower = Follower(monitor)
        self._follower.input_position = _input_position(challenger)
        # shadow() passes the bytes it checked: a second pickling costs as much again (a
        # large model) and may not give what the check saw.
        if model_bytes is None:
            model_bytes = pickle.dumps(challenger) if mode == "process" else b""
        self._model_bytes = model_bytes
        self._layers: list[tuple[dict, str, Callable]] = []  # (champion's dict, method, wrapper)
        self._reset_runtime()
        shadow_lifetime.live_shadows.add(self)
        if mode == "process":
            # Loaded now, not at the first sampled call: its exit hook (which stops the
            # workers spawning children) and multiprocessing's (which kills them) must be
            # registered before the one below, or they run before an exit hook the user
            # registers after shadow(), whose calls would then never be answered.
            import inferwatch.core.shadow_process  # noqa: F401
        shadow_lifetime.close_at_exit_first()

    def _reset_runtime(self) -> None:
        self._queue: deque = deque()
        self._offer_lock = threading.Lock()
        # The bytes the queued calls hold: `_bytes_in` less `_bytes_out`. Added under the
        # offer lock; taken off by the workers, which take calls without that lock, so
        # under a lock of their own the request path never waits for.
        self._bytes_in = 0
        self._bytes_out = 0
        self._bytes_lock = threading.Lock()
        # The calls a worker is running: close() waits for them a while, then counts the
        # rest as dropped (shutdown) itself, since a thread cannot be stopped and one the
        # interpreter's exit cuts off would never count itself. Each is claimed once,
        # by its worker as it ends or by close(). id -> [record, started (perf_counter)].
        self._flight = threading.Condition(threading.Lock())
        self._flying: dict[int, list] = {}
        # Outcomes the champion got before the challenger answered: scored as the call ends.
        self._held = HeldOutcomes(max_held=self.queue_size + self.workers)
        self._settled = False  # close() has counted the calls under way
        self._sampled = itertools.count()
        self._sampled_reported = 0
        self._full = itertools.count()
        self._full_reported = 0
        # Calls sampled as close() ran, too late for its queue: dropped as shutdown.
        self._shut = itertools.count()
        self._shut_reported = 0
        # Calls the champion answered with a stream: dropped as stream (see offer).
        self._streamed = itertools.count()
        self._streamed_reported = 0
        self._stream_told = False
        # The drain thread and a worker after close may fold the counts at once: each count
        # must be read and marked reported by one of them only.
        self._report_lock = threading.Lock()
        self._queued = itertools.count()
        self._done = 0
        self._done_lock = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._idle = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._runners: list[Any] = []
        self._started_pid = 0
        # No worker thread could be started: Python 3.12+ refuses new threads during the
        # interpreter's exit, and a shadow may first be used in an exit hook.
        self._no_workers = False
        # Set while the workers are stopped for a fork: the parent starts them again.
        self._paused_for_fork = False
        self.closed = False

    # --- the request path -------------------------------------------------------------------
    def capture(self, args: tuple, kwargs: dict) -> tuple[tuple, dict] | object | None:
        """A sampled call's arguments as the champion is about to see them (copied whatever
        their size, see :func:`~inferwatch.core.shadow_copies.captured`), taken before the
        champion runs: a champion that changes its input in place (``X -= mean``) must not
        hand the changed input to the challenger. None once the shadow is closed, and
        :data:`FULL` while the queue is full: nothing is copied for a call it will not
        take. Never raises."""
        try:
            if self.closed:
                return None
            if len(self._queue) >= self.queue_size or \
                    self._bytes_in - self._bytes_out >= self.max_queued_bytes:
                return FULL  # offer() counts it as queue_full
            return tuple(map(captured, args)), \
                {k: captured(v) for k, v in kwargs.items()} if kwargs else kwargs
        except Exception as exc:
            faults.record("shadow", exc)
            return None

    def offer(self, method: str, args: tuple, kwargs: dict, result: object,
              named_id: object = UNNAMED, seen: tuple[tuple, dict] | object | None = None
              ) -> None:
        """Queue one sampled call for the challenger. Never raises, never blocks.
        `named_id`: the id the champion's request-id function gave this call, where its
        wrapper named it (the function is then not called a second time). `seen`: the
        arguments as :meth:`capture` took them before the champion ran (:data:`FULL`:
        the queue was full, counted so); without it they are taken now."""
        try:
            if self.closed:
                return  # a closed shadow samples nothing
            next(self._sampled)
            if result.__class__ not in PLAIN_RESULTS and is_stream(result):
                self._skip_stream()
                return
            queue = self._queue
            if seen is FULL or len(queue) >= self.queue_size:
                next(self._full)
                if self.closed:
                    self.before_drain()  # close() has folded its last counts already
                return
            if self._started_pid != shadow_lifetime.pid:
                self._start_workers()
            if self._no_workers:
                next(self._shut)  # dropped as "shutdown": the process is ending
                return
            if seen is None:  # what the call saw: a caller may reuse its buffers
                args = tuple(map(frozen, args))
                kwargs = {k: frozen(v) for k, v in kwargs.items()} if kwargs else kwargs
            else:
                args, kwargs = seen
            request_id = features = None
            # The champion's own request: a call of this model inside another model's
            # block is not that block's request, and must not take its id or features.
            request = current_request_of(self.champion_monitor)
            if request is not None and request.record.features is not None:
                features = request.record.features  # r.features(): what drift checks read
            if "request_id" in kwargs:
                kwargs = dict(kwargs)
                request_id = kwargs.pop("request_id")
            else:
                if request is not None:
                    request_id = request.record.request_id
                elif named_id is not UNNAMED:
                    request_id = named_id
                elif self.champion_monitor.request_id_fn is not None:
                    try:
                        request_id = self.champion_monitor.request_id_fn(*args, **kwargs)
                    except Exception as exc:
                        faults.record("request_id", exc)
            if request_id is not None:
                request_id = faults.request_id_text(request_id, "request_id")
            result = frozen(result)
            size = _held(args, kwargs, result)
            item = (method, args, kwargs, result, request_id, time.time(), features, size)
            # Checked again where it is appended: callers that all passed the check above
            # at once would each append, past queue_size. The lock is held for an append.
            with self._offer_lock:
                closed = self.closed
                full = not closed and len(queue) >= self.queue_size
                if not closed and not full:
                    held = self._bytes_in - self._bytes_out
                    full = held > 0 and held + size > self.max_queued_bytes
                    if not full:
                        self._bytes_in += size
                        if request_id is not None:
                            self._held.enter(request_id)
                        queue.append(item)
            if closed:
                # Sampled as close() ran: counted as dropped, so that sampled calls still
                # add up to compared and dropped ones; no drain listener is left to fold it.
                next(self._shut)
                self.before_drain()
                return
            if full:
                next(self._full)
                if self.closed:
                    self.before_drain()
                return
            next(self._queued)
            if self._idle:
                self._wake.set()
        except Exception as exc:
            faults.record("shadow", exc)

    def _skip_stream(self) -> None:
        """Count a call the champion answered with a stream as dropped, and say so once.

        Its items are its caller's to read, as they come: the challenger cannot be handed
        what the champion said without keeping every item of every stream (an LLM's
        tokens, unbounded) until the stream ends, and two generated texts have no
        agreement or difference to observe. Holding the stream for the queue would also
        keep one its caller dropped from ending (as cancelled) until the next drain.
        """
        next(self._streamed)
        if not self._stream_told:
            self._stream_told = True
            log.warning("inferwatch: model %s %s answers with a stream; its shadow %s "
                        "compares no streamed call (counted in "
                        "inferwatch_shadow_dropped_total{reason=\"stream\"})",
                        self.champion_monitor.name, self.champion_monitor.version,
                        self.monitor.version)
        if self.closed:
            self.before_drain()  # close() has folded its last counts already

    # --- running calls -----------------------------------------------------------------------
    def run_one(self, item: tuple, runner: Any) -> None:
        """Call the challenger on one queued call, record it, hand the pair on, then score
        it on the outcomes that came for it meanwhile."""
        try:
            self._run(item, runner)
        finally:
            self._release(item[4])

    def _release(self, request_id: str | None, replay: bool = True) -> None:
        """One call of `request_id` has ended (or was dropped): once none is left queued or
        under way, the outcomes held for it are scored (`replay`) or let go."""
        if request_id is None:
            return
        held = self._held.release(request_id)
        if replay:
            for y_true, when in held:
                self._score_outcome(request_id, y_true, when)

    def _run(self, item: tuple, runner: Any) -> None:
        method, args, kwargs, champion_result, request_id, at, features, _ = item
        monitor = self.monitor
        record = RequestRecord(0.0, request_id=request_id, started_at=at)
        if monitor.keeps_inputs:
            # The features the champion's request declared, else the call's input: for a
            # call made with keywords only (predict(X=rows)), its first one, as the
            # champion's own record reads it (the request id was taken out at the offer).
            if features is None:
                features = args[0] if args else next(iter(kwargs.values()), None) \
                    if kwargs else None
            record.features = features
        flight = [record, time.perf_counter()]
        with self._flight:
            settled = self._settled
            if not settled:
                self._flying[id(flight)] = flight
                monitor.call_started()
        if settled:
            # Taken as close() had already counted the calls under way: never run, and
            # counted here, as close() counts the calls it finds queued.
            self.comparison.dropped("shutdown")
            return
        try:
            status, value, duration = self._call(method, args, kwargs, runner)
        except Exception as exc:  # ours, not the challenger's: the call still ends, counted
            faults.record("shadow", exc)
            status, value, duration = "error", type(exc), 0.0
        with self._flight:
            cut = self._flying.pop(id(flight), None) is None
            self._flight.notify_all()
        if cut:
            return  # close() counted it as shutdown and ended its record as cancelled
        record.duration = duration
        if status == "ok" and duration > self.timeout:
            status = "timeout"  # a thread cannot be stopped: its late answer is not used
        if status == "ok":
            if runner is None:
                # A thread challenger may hand back a buffer it writes its next answer into
                # (a preallocated output): the drain must read this answer, as the
                # champion's is read (copied up to the same bound).
                value = frozen(value)
            if self._recorded_as_text(value, args, kwargs, record, duration):
                # Its record is handed on already. A text or a response is no prediction
                # (the champion's is not recorded as one either): two generated texts have
                # no agreement or difference to count. The event log still gets the call.
                self.comparison.dropped("incomparable")
                try:
                    self._log_event(method, champion_result, value, request_id, at, False)
                except Exception as exc:
                    faults.record("shadow", exc)
                return
            record.prediction = value
            record.has_prediction = True
            record.probabilities = method == "predict_proba"
            # Neither may keep the challenger's call from its record: skipped, the call
            # would never end and its in-flight gauge would stay raised for good.
            try:
                self.comparison.add(method, champion_result, value, request_id, at)
            except Exception as exc:
                faults.record("shadow", exc)
                self.comparison.dropped("incomparable")  # sampled, so counted as not compared
            try:
                self._log_event(method, champion_result, value, request_id, at)
            except Exception as exc:  # a sink of the user's own that fails
                faults.record("shadow", exc)
        else:
            if status == "error":
                record.error_type = value if isinstance(value, type) else _error_type(value)
            else:
                record.error_type = _FAILURES[status]
            # Cut off by close() (or the server's exit): no fault of the challenger's, so
            # not in its errors; it still ends as a call, so the in-flight gauge balances.
            record.cancelled = status == "shutdown"
            self.comparison.dropped(status)
        monitor.submit(record)

    def _recorded_as_text(self, value: object, args: tuple, kwargs: dict,
                          record: RequestRecord, duration: float) -> bool:
        """Whether the challenger's `value` is a text or a response the champion's settings
        read for its length and tokens (``count_tokens=``, ``usage=``): then it is recorded
        so, on `record`, which is handed to the drain. A stream is not followed: nothing
        would read it to its end."""
        follower = self._follower
        if value.__class__ in follower.plain or is_stream(value):
            return False
        # Started `duration` ago, so that the record's latency is the call's.
        followed = follower(value, time.perf_counter() - duration, args, record, slow=True,
                            kwargs=kwargs)
        return followed is not UNFOLLOWED

    def _call(self, method: str, args: tuple, kwargs: dict,
              runner: Any) -> tuple[str, Any, float]:
        if runner is not None:
            name = "__call__" if method == "_inferwatch_call" else method
            return runner.call(name, args, kwargs, self.timeout)
        target = self.challenger if method == "_inferwatch_call" else getattr(self.challenger,
                                                                              method)
        # The challenger gets its own copy: one that changes its input in place must change
        # neither the caller's buffer (an input past the copy bound is the caller's own) nor
        # what the challenger's record and drift read.
        args = tuple(private(a) for a in args)
        kwargs = {k: private(v) for k, v in kwargs.items()} if kwargs else kwargs
        start = time.perf_counter()
        try:
            result = target(*args, **kwargs)
            if inspect.isawaitable(result):
                try:
                    result = awaited(result, self.timeout)
                except asyncio.TimeoutError:  # wait_for's own: the challenger's are wrapped
                    return "timeout", None, time.perf_counter() - start
            return "ok", result, time.perf_counter() - start
        except ChallengersOwn as exc:
            return "error", exc.kind, time.perf_counter() - start
        except BaseException as exc:  # the challenger's failure is its own, never ours
            # A TimeoutError of its own (a socket's, an HTTP client's) included: that is its
            # error, not a call past the shadow's `timeout`.
            return "error", type(exc), time.perf_counter() - start

    def _log_event(self, method: str, champion_result: object, result: object,
                   request_id: str | None, at: float, comparable: bool | None = None) -> None:
        """Write the challenger's answer next to the champion's; one the comparison cannot
        compare (no output in common, a text) is written too, with ``incomparable: true``.
        `comparable`: already known, else found as the drain's fold will find it."""
        # The champion's log as it is now: configure(events=...) on the champion replaces
        # (and closes) the one it had when this shadow began.
        events = self.champion_monitor.events if self.events is CHAMPIONS_LOG else self.events
        if events is None:
            return
        if comparable is None:
            comparable = self.comparison.comparable(method, champion_result, result)
        key = "probabilities" if method == "predict_proba" else "prediction"
        event = {"ts": at, "model": self.monitor.name,
                 "model_version": self.monitor.version, "role": "shadow",
                 "champion_version": self.champion_monitor.version,
                 "request_id": request_id, key: result, "champion_" + key: champion_result}
        if not comparable:
            event["incomparable"] = True
        # Sized here, off the caller's path, against the log's queue_bytes: the event holds
        # both models' results (whole batches) until the writer encodes it.
        offer = getattr(events, "_offer", None)
        if offer is None:  # a sink of the user's own, with only emit()
            events.emit(event)
        else:
            offer(event, EVENT_BYTES + held_bytes([result, champion_result]))

    def finished_one(self) -> None:
        with self._done_lock:
            self._done += 1
            self._done_lock.notify_all()

    # --- the challenger's drain -------------------------------------------------------------
    def before_drain(self) -> None:
        """Fold the request path's counts and the new comparisons into the state."""
        try:
            with self._report_lock:
                sampled = count_value(self._sampled)
                full = count_value(self._full)
                shut = count_value(self._shut)
                streamed = count_value(self._streamed)
                new_sampled, self._sampled_reported = sampled - self._sampled_reported, sampled
                new_full, self._full_reported = full - self._full_reported, full
                new_shut, self._shut_reported = shut - self._shut_reported, shut
                new_streamed = streamed - self._streamed_reported
                self._streamed_reported = streamed
                if new_sampled:
                    self.comparison.sampled(new_sampled)
                if new_full:
                    self.comparison.dropped("queue_full", new_full)
                if new_shut:
                    self.comparison.dropped("shutdown", new_shut)
                if new_streamed:
                    self.comparison.dropped("stream", new_streamed)
            # At the time the challenger's drain writes and every reader reads its rolling
            # windows: the raw wall clock, stepped back, would write where no one reads.
            monitor = self.monitor
            monitor.update_state(lambda state: self.comparison.fold_into(
                state, monitor.window_time()))
        except Exception as exc:
            faults.record("shadow", exc)

    def on_outcome(self, request_id: str, y_true: object, when: float) -> None:
        """The champion got an outcome: score the challenger on it too, if it saw the call;
        for a call still queued or under way, once it ends. Never raises."""
        try:
            if self._held.hold(request_id, y_true, when):
                return
        except Exception as exc:
            faults.record("shadow", exc)
        self._score_outcome(request_id, y_true, when)

    def _score_outcome(self, request_id: str, y_true: object, when: float) -> None:
        try:
            comparison, monitor = self.comparison, self.monitor
            own = monitor.outcomes.kept_rows(request_id)
            # Either may still be waiting for the drain; so may a newer call of an id
            # used before, which an outcome must score rather than the older one.
            if own is None or not comparison.knows(request_id) or \
                    comparison.waiting(request_id):
                monitor.drain()
                own = monitor.outcomes.kept_rows(request_id)
            compared = comparison.knows(request_id)
            if not compared and own is None:
                return  # not a call this challenger answered
            if compared:
                comparison.score(request_id, y_true, when, counted=own)
            # Its own join, whatever the shared one made of the outcome (a shape mismatch,
            # labels not known yet), and for a call it answered that was not compared (an
            # output the champion does not share): the challenger is a model in its own
            # right, and its outcome series count what it says.
            monitor.record_outcome(request_id, y_true, at=when)
        except Exception as exc:
            faults.record("shadow", exc)

    # --- control ----------------------------------------------------------------------------
    def queued(self) -> int:
        """Calls waiting for the challenger now."""
        return len(self._queue)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every call queued so far is answered (or dropped); False on timeout.

        A batch job calls this before pushing its metrics.
        """
        if timeout is not None and (not is_number(timeout) or math.isnan(timeout)):
            # NaN would wait for ever, a string fail deep inside: name the argument.
            raise ValueError(f"inferwatch.shadow: flush timeout must be a number of seconds "
                             f"or None, got {timeout!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        target = count_value(self._queued)
        with self._done_lock:
            while self._done < target and not self.closed:
                self._wake.set()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._done_lock.wait(0.05 if left is None else min(0.05, left))
        return True

    def close(self) -> None:
        """Stop the workers (and child processes) and take this shadow off the champion; calls
        still queued count as dropped, and so does a call under way that has not ended
        within ``CLOSE_WAIT_SECONDS`` (1 s). Never raises."""
        self.close_by(time.monotonic() + shadow_lifetime.CLOSE_WAIT_SECONDS)

    def close_by(self, deadline: float) -> None:
        """:meth:`close`, waiting for the calls under way until `deadline` (of
        ``time.monotonic()``): several shadows closed at exit share one wait. Never
        raises."""
        try:
            self._close(deadline)
        except Exception as exc:
            faults.record("shadow", exc)

    def _close(self, deadline: float) -> None:
        with self._offer_lock:  # two threads closing at once: one of them does it
            if self.closed:
                return
            self.closed = True
        shadow_lifetime.live_shadows.discard(self)  # a fork must not bring it back to life
        with shadow_lifetime.wiring_lock:  # a shadow() wrapping the same method now would undo this
            layers, self._layers = self._layers, []
            for namespace, method, wrapper in layers:
                unwrap(namespace, method, wrapper)
        with self._offer_lock:  # no caller appends while the queue is taken
            # Taken one call at a time, as a worker takes them: a call a worker takes at
            # this moment is its own to answer, never also counted here as shutdown.
            left = freed = 0
            queue = self._queue
            dropped_ids = []
            while True:
                try:
                    item = queue.popleft()
                except IndexError:
                    break
                freed += item[-1]
                dropped_ids.append(item[4])
                left += 1
            with self._bytes_lock:
                self._bytes_out += freed
        with self._done_lock:  # workers being started now see `closed` and start none
            stop, runners = self._stop, self._runners
            self._done += left  # flush() waits for nothing that will never run
            self._done_lock.notify_all()
        stop.set()
        self._wake.set()
        if left:
            self.comparison.dropped("shutdown", left)
        for request_id in dropped_ids:  # never answered: nothing to score
            self._release(request_id, replay=False)
        for runner in runners:
            runner.shutdown()
        self._settle(deadline)
        self.champion_monitor.outcome_listeners = tuple(
            x for x in self.champion_monitor.outcome_listeners if x != self.on_outcome)
        self.monitor.drain_listeners = tuple(
            x for x in self.monitor.drain_listeners if x != self.before_drain)
        self.before_drain()
        if isinstance(self._classes, ChallengerClasses):
            self._classes.release()

    def _settle(self, deadline: float) -> None:
        """Wait until `deadline` for the calls under way, then count the rest as dropped
        (shutdown) and end their records as cancelled, as a process challenger's call that
        close() cuts off ends: a thread cannot be stopped, and at exit the interpreter
        stops it where it is, so such a call would otherwise never be counted. Its late
        answer is not used. A close() from the challenger's own call waits for nothing."""
        with self._flight:
            if threading.current_thread() not in self._threads:
                while self._flying:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._flight.wait(left)
            cut = list(self._flying.values())
            self._flying.clear()
            self._settled = True
        if not cut:
            return
        now = time.perf_counter()
        for record, started in cut:
            record.duration = now - started
            record.error_type = ShadowClosed
            record.cancelled = True
            self.monitor.submit(record)
        self.comparison.dropped("shutdown", len(cut))

    def after_fork(self) -> None:
        """A forked child starts with an empty queue and starts its own workers on use."""
        if self.closed:
            return
        for runner in self._runners:
            runner.forget()
        self._reset_runtime()
        self.comparison.renew_lock()


class ChallengerClasses:
    """The challenger's class names, read when needed. The challenger's monitor outlives
    a closed shadow, so on close the names are kept and the model itself let go."""

    def __init__(self, model: Any) -> None:
        self._model: Any = model
        self._names: object = None

    def __call__(self) -> object:
        model = self._model
        return self._names if model is None else class_names_of(model)

    def release(self) -> None:
        try:
            self._names = class_names_of(self._model)
        finally:
            self._model = None


def _held(args: tuple, kwargs: dict, result: object) -> int:
    """About how many bytes a queued call holds: its arguments and the champion's result
    (copied or the caller's own, kept alive by the queue either way)."""
    try:
        # Spelled out, not summed over a list: it runs for every sampled call.
        size = result.nbytes if result.__class__ is np.ndarray else held_bytes([result])
        for value in args:
            size += value.nbytes if value.__class__ is np.ndarray else held_bytes([value])
        if kwargs:
            size += held_bytes(list(kwargs.values()))
        return size
    except Exception as exc:  # an object that cannot be sized counts nothing
        faults.record("shadow", exc)
        return 0


def _input_position(challenger: Any) -> int:
    """Where the challenger's text input is among a call's arguments, as the champion's
    wrapper reads its own (0 unless the challenger is a function taking ``self`` first)."""
    try:
        return input_position(challenger)
    except Exception:  # a __getattr__ that raises for __qualname__
        return 0


def is_number(value: object) -> bool:
    """Whether `value` is a real number: an int or float (numpy's too), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))

