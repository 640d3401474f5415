"""``inferwatch.shadow()``: a challenger model scores sampled inputs next to the champion.

The champion's instrumented methods are wrapped once more: after the champion's call has
returned (an exception passes straight through, untouched), a sampled call puts its input
and the champion's result on a bounded queue. That is the whole cost on the request path:
a random draw, and for a sampled call an input copy and a deque append. Worker threads
take the queue, call the challenger (in the thread, or in a child process with
``mode="process"``), record it as a model in its own right (its ``model_version``, its
latency, errors and predictions) and hand both results to a :class:`Comparison`, which
the challenger's drain folds into the comparison series.

A full queue drops the call, a call past `timeout` is dropped too (in process mode its
child is killed), and every drop is counted by reason. ``role`` goes into
``inferwatch_model_info`` only (primary or shadow), so no other series grows a label.

>>> import inferwatch
>>> from inferwatch.core.registry import Registry
>>> class Model:
...     def predict(self, rows):
...         return [sum(row) for row in rows]
>>> registry = Registry()
>>> champion = inferwatch.instrument(Model(), name="m", version="1", registry=registry)
>>> handle = shadow(champion, Model(), version="2", registry=registry)
>>> champion.predict([[1.0, 2.0]])
[3.0]
>>> handle.flush()
True
>>> registry.drain()
>>> handle.monitor.state.counters["inferwatch_shadow_compared_total"]
{('1',): 1.0}
>>> handle.close()
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import itertools
import logging
import math
import numbers
import os
import pickle
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from inferwatch import faults
from inferwatch.core.call_values import count_value
from inferwatch.core.monitor import Monitor
from inferwatch.core.predictions import class_names_of
from inferwatch.core.registry import Registry, default_registry, version_text
from inferwatch.core.request import RequestRecord, current_request_of
from inferwatch.core.shadow_async import (
    ChallengersOwn,
    awaited,
    close_thread_loop,
    inherited_loops,
    loops,
)
from inferwatch.core.shadow_compare import DIFFERENCE_BUCKETS, DROP_REASONS, Comparison
from inferwatch.core.shadow_copies import PLAIN_RESULTS, frozen, is_stream, private
from inferwatch.core.shadow_wrappers import UNNAMED, shadowed, unwrap

SHADOWED_METHODS = ("predict", "predict_proba", "_inferwatch_call")
MODES = ("thread", "process")
MAX_WORKERS = 64  # threads, or child processes each holding a copy of the model
IDLE_WAKE_SECONDS = 1.0

log = logging.getLogger("inferwatch")

_live_shadows: weakref.WeakSet[Shadow] = weakref.WeakSet()
# Held while a shadow is set on a champion or taken off it (see shadow()).
_wiring_lock = threading.Lock()


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
_CHAMPIONS_LOG = object()


class Shadow:
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
        self.mode = mode
        self.workers = workers
        self.comparison = comparison
        self.events = events
        # shadow() passes the bytes it checked: a second pickling costs as much again (a
        # large model) and may not give what the check saw.
        if model_bytes is None:
            model_bytes = pickle.dumps(challenger) if mode == "process" else b""
        self._model_bytes = model_bytes
        self._layers: list[tuple[dict, str, Callable]] = []  # (champion's dict, method, wrapper)
        self._reset_runtime()
        _live_shadows.add(self)
        if mode == "process":
            # Loaded now, not at the first sampled call: its exit hook (which stops the
            # workers spawning children) and multiprocessing's (which kills them) must be
            # registered before the one below, or they run before an exit hook the user
            # registers after shadow(), whose calls would then never be answered.
            import inferwatch.core.shadow_process  # noqa: F401
        _close_at_exit_first()

    def _reset_runtime(self) -> None:
        self._queue: deque = deque()
        self._offer_lock = threading.Lock()
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
        self.closed = False

    # --- the request path -------------------------------------------------------------------
    def offer(self, method: str, args: tuple, kwargs: dict, result: object,
              named_id: object = UNNAMED) -> None:
        """Queue one sampled call for the challenger. Never raises, never blocks.
        `named_id`: the id the champion's request-id function gave this call, where its
        wrapper named it (the function is then not called a second time)."""
        try:
            if self.closed:
                return  # a closed shadow samples nothing
            next(self._sampled)
            if result.__class__ not in PLAIN_RESULTS and is_stream(result):
                self._skip_stream()
                return
            queue = self._queue
            if len(queue) >= self.queue_size:
                next(self._full)
                if self.closed:
                    self.before_drain()  # close() has folded its last counts already
                return
            if self._started_pid != _pid:
                self._start_workers()
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
                request_id = faults.text_of(request_id, "request_id")
            # What the call saw: a caller may reuse its input and output buffers.
            item = (method, tuple(map(frozen, args)),
                    {k: frozen(v) for k, v in kwargs.items()} if kwargs else kwargs,
                    frozen(result), request_id, time.time(), features)
            # Checked again where it is appended: callers that all passed the check above
            # at once would each append, past queue_size. The lock is held for an append.
            with self._offer_lock:
                closed = self.closed
                full = not closed and len(queue) >= self.queue_size
                if not closed and not full:
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

    # --- the workers ------------------------------------------------------------------------
    def _start_workers(self) -> None:
        with self._done_lock:
            # A call sampled as close() ran must not start workers (nor child processes)
            # that nothing would ever stop.
            if self.closed or self._started_pid == os.getpid():
                return
            self._stop = threading.Event()
            self._threads = []
            self._runners = []
            gate = None
            if self.mode == "process":
                from inferwatch.core.shadow_process import ProcessRunner, StartGate

                gate = StartGate()  # a challenger that cannot load: no worker respawns it
            for index in range(self.workers):
                runner = None
                if self.mode == "process":
                    runner = ProcessRunner(self._model_bytes, gate)
                    self._runners.append(runner)
                thread = threading.Thread(target=_work, args=(weakref.ref(self), runner,
                                                              self._stop),
                                          name=f"inferwatch-shadow-{index}", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._started_pid = os.getpid()

    def run_one(self, item: tuple, runner: Any) -> None:
        """Call the challenger on one queued call, record it, hand the pair on."""
        method, args, kwargs, champion_result, request_id, at, features = item
        monitor = self.monitor
        monitor.call_started()
        record = RequestRecord(0.0, request_id=request_id, started_at=at)
        if monitor.keeps_inputs:
            # The features the champion's request declared, else the call's input: for a
            # call made with keywords only (predict(X=rows)), its first one, as the
            # champion's own record reads it (the request id was taken out at the offer).
            if features is None:
                features = args[0] if args else next(iter(kwargs.values()), None) \
                    if kwargs else None
            record.features = features
        try:
            status, value, duration = self._call(method, args, kwargs, runner)
        except Exception as exc:  # ours, not the challenger's: the call still ends, counted
            faults.record("shadow", exc)
            status, value, duration = "error", type(exc), 0.0
        record.duration = duration
        if status == "ok" and duration > self.timeout:
            status = "timeout"  # a thread cannot be stopped: its late answer is not used
        if status == "ok":
            if runner is None:
                # A thread challenger may hand back a buffer it writes its next answer into
                # (a preallocated output): the drain must read this answer, as the
                # champion's is read (copied up to the same bound).
                value = frozen(value)
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
                   request_id: str | None, at: float) -> None:
        # The champion's log as it is now: configure(events=...) on the champion replaces
        # (and closes) the one it had when this shadow began.
        events = self.champion_monitor.events if self.events is _CHAMPIONS_LOG else self.events
        if events is None:
            return
        key = "probabilities" if method == "predict_proba" else "prediction"
        events.emit({"ts": at, "model": self.monitor.name,
                     "model_version": self.monitor.version, "role": "shadow",
                     "champion_version": self.champion_monitor.version,
                     "request_id": request_id, key: result, "champion_" + key: champion_result})

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
            self.monitor.update_state(lambda state: self.comparison.fold_into(state,
                                                                              time.time()))
        except Exception as exc:
            faults.record("shadow", exc)

    def on_outcome(self, request_id: str, y_true: object, when: float) -> None:
        """The champion got an outcome: score the challenger on it too, if it saw the call."""
        try:
            comparison, monitor = self.comparison, self.monitor
            own = monitor.outcomes.kept_rows(request_id)
            if own is None or not comparison.knows(request_id):
                monitor.drain()  # either may still be waiting for the drain
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
        if timeout is not None and (not _is_number(timeout) or math.isnan(timeout)):
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
        still queued count as dropped. Never raises."""
        try:
            self._close()
        except Exception as exc:
            faults.record("shadow", exc)

    def _close(self) -> None:
        with self._offer_lock:  # two threads closing at once: one of them does it
            if self.closed:
                return
            self.closed = True
        _live_shadows.discard(self)  # a fork must not bring it back to life
        with _wiring_lock:  # a shadow() wrapping the same method now would undo this
            layers, self._layers = self._layers, []
            for namespace, method, wrapper in layers:
                unwrap(namespace, method, wrapper)
        with self._offer_lock:  # no caller appends while the queue is taken
            # Taken one call at a time, as a worker takes them: a call a worker takes at
            # this moment is its own to answer, never also counted here as shutdown.
            left = 0
            queue = self._queue
            while True:
                try:
                    queue.popleft()
                except IndexError:
                    break
                left += 1
        with self._done_lock:  # workers being started now see `closed` and start none
            stop, runners = self._stop, self._runners
            self._done += left  # flush() waits for nothing that will never run
            self._done_lock.notify_all()
        stop.set()
        self._wake.set()
        if left:
            self.comparison.dropped("shutdown", left)
        for runner in runners:
            runner.shutdown()
        self.champion_monitor.outcome_listeners = tuple(
            x for x in self.champion_monitor.outcome_listeners if x != self.on_outcome)
        self.monitor.drain_listeners = tuple(
            x for x in self.monitor.drain_listeners if x != self.before_drain)
        self.before_drain()
        if isinstance(self._classes, _ChallengerClasses):
            self._classes.release()

    def after_fork(self) -> None:
        """A forked child starts with an empty queue and starts its own workers on use."""
        if self.closed:
            return
        for runner in self._runners:
            runner.forget()
        self._reset_runtime()
        self.comparison.renew_lock()


def _work(ref: weakref.ref[Shadow], runner: Any, stop: threading.Event) -> None:
    try:
        _serve(ref, runner, stop)
    finally:
        close_thread_loop()


def _serve(ref: weakref.ref[Shadow], runner: Any, stop: threading.Event) -> None:
    exiting = runner.exiting if runner is not None else bool
    while not stop.is_set() and not exiting():
        shadow = ref()
        if shadow is None:
            return
        try:
            item = shadow._queue.popleft()
        except IndexError:
            shadow._idle = True
            if not shadow._queue:
                wake = shadow._wake
                del shadow
                wake.wait(IDLE_WAKE_SECONDS)
                wake.clear()
                shadow = ref()
                if shadow is not None:
                    shadow._idle = False
            continue
        try:
            shadow.run_one(item, runner)
        except Exception as exc:
            faults.record("shadow", exc)
        finally:
            shadow.finished_one()
            if shadow.closed:
                shadow.before_drain()  # no drain listener is left to fold this call
        del shadow, item


class _ChallengerClasses:
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


def _close_all_at_exit() -> None:
    """Close every live shadow as the interpreter exits: the calls still queued would never
    be answered (thread workers are daemons, process workers stop), and a final push or
    publish at exit would show sampled calls neither compared nor dropped. close() counts
    them as dropped (``shutdown``) and does not wait for the challenger; a call under way
    still counts itself if it ends before the process does."""
    for live in list(_live_shadows):
        live.close()


def _close_at_exit_first() -> None:
    # atexit runs the last registered first: registered again with each shadow, this runs
    # before the exit hooks set up before it (a multi-worker publisher's last publish, a
    # job's final push), which then see the shadows' calls all accounted for.
    try:
        atexit.unregister(_close_all_at_exit)
        atexit.register(_close_all_at_exit)
    except Exception as exc:
        faults.record("shadow", exc)


atexit.register(_close_all_at_exit)


# This process's id, kept by the fork hook: os.getpid() is a system call, too dear for the
# request path.
_pid = os.getpid()


def _after_fork() -> None:
    global _pid, _wiring_lock
    _pid = os.getpid()
    _wiring_lock = threading.Lock()  # a thread of the parent may have held it at the fork
    inherited_loops.extend(loops.values())  # the parent's worker threads do not run here
    loops.clear()
    for shadow in list(_live_shadows):
        shadow.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def shadow(champion: Any, challenger: Any, *, version: str | Sequence[str],
           sample: float = 1.0, timeout: float = 5.0, queue_size: int = 1000,
           mode: str = "thread", workers: int = 1, max_classes: int = 20,
           difference_buckets: Sequence[float] = DIFFERENCE_BUCKETS, reference: Any = None,
           registry: Registry | None = None) -> Any:
    """Run `challenger` in the shadow of `champion` (a model from ``inferwatch.instrument``).

    A share `sample` (0..1] of the champion's ``predict`` / ``predict_proba`` / ``__call__``
    calls is handed, after the champion has answered, to the challenger in the background:
    ``mode="thread"`` calls it in `workers` threads, ``mode="process"`` in as many child
    processes (for CPU-bound models, and ones that may hang or crash: a call past `timeout`
    seconds kills its child). At most `queue_size` calls wait; more are dropped and counted.
    The challenger is recorded as the champion's model name under its own `version`, with
    ``role="shadow"`` in ``inferwatch_model_info`` (the champion gets ``role="primary"``);
    the comparison series (``inferwatch_shadow_*``) carry ``champion_version``.
    `challenger` may be a list, with a list of versions. Outcomes given to the champion's
    ``record_outcome`` score every challenger that saw the request. The champion's input
    reference (or `reference`) makes drift of both comparable. An ``async def`` champion
    hands on its awaited result; an async challenger is awaited in the background (cancelled
    past `timeout`).

    Returns the :class:`Shadow` (``flush()``, ``close()``), or a list of them.

    >>> import inferwatch
    >>> from inferwatch.core.registry import Registry
    >>> registry = Registry()
    >>> class Scorer:
    ...     def predict(self, rows):
    ...         return [0.5 for _ in rows]
    >>> champion = inferwatch.instrument(Scorer(), name="s", version="1", registry=registry)
    >>> handle = shadow(champion, Scorer(), version="2", sample=0.5, registry=registry)
    >>> handle.monitor.state.info["role"], registry.monitor("s").version
    ('shadow', '1')
    >>> handle.close()
    """
    if isinstance(challenger, (list, tuple)):
        if not challenger:  # a list built from a config that named none: not a silent no-op
            raise ValueError("inferwatch.shadow: challenger is an empty list; give at least "
                             "one challenger model")
        if not isinstance(version, (str, list, tuple)):
            # list(None) or list(2) would fail with a bare "not iterable".
            raise ValueError("inferwatch.shadow: version must be a string or a list of "
                             f"distinct versions, one per challenger, got {version!r}")
        versions = [version] * len(challenger) if isinstance(version, str) else list(version)
        # Distinct as the registry stores them: "2" and "2\n" would share one series.
        if len(versions) != len(challenger) or \
                len({version_text(v) for v in versions}) != len(versions):
            raise ValueError("inferwatch.shadow: version must be a list of distinct versions, "
                             "one per challenger")
        handles: list[Shadow] = []
        try:
            for one, v in zip(challenger, versions):
                handles.append(shadow(champion, one, version=v, sample=sample,
                                      timeout=timeout, queue_size=queue_size, mode=mode,
                                      workers=workers, max_classes=max_classes,
                                      difference_buckets=difference_buckets,
                                      reference=reference, registry=registry))
        except BaseException:
            # One challenger refused (a bad version, an unpicklable model): the ones before
            # it must not stay on the champion with no handle to close them by.
            for handle in handles:
                handle.close()
            raise
        return handles
    champion_monitor = getattr(champion, "__dict__", {}).get("_inferwatch_monitor")
    if champion_monitor is None:
        raise TypeError("inferwatch.shadow: champion must be a model returned by "
                        "inferwatch.instrument(model, ...)")
    _check(version=version, sample=sample, timeout=timeout, queue_size=queue_size, mode=mode,
           workers=workers, max_classes=max_classes, difference_buckets=difference_buckets)
    # Compared as the registry stores versions: " 1 " would record into the champion's own.
    if version_text(version) == champion_monitor.version:
        raise ValueError(f"inferwatch.shadow: version {version!r} is the champion's version; "
                         "a challenger needs a version of its own")
    _refuse_live(champion_monitor, version)
    methods = [m for m in SHADOWED_METHODS if callable(champion.__dict__.get(m))
               and (callable(challenger) if m == "_inferwatch_call"
                    else callable(getattr(challenger, m, None)))]
    if not methods:
        raise TypeError("inferwatch.shadow: challenger has none of the champion's methods "
                        "(predict, predict_proba, __call__)")
    model_bytes = b""
    if mode == "process":
        try:
            model_bytes = pickle.dumps(challenger)
        except Exception as exc:
            raise TypeError(f"inferwatch.shadow: mode='process' needs a picklable challenger "
                            f"({exc})") from exc
    # Checked again and set up under one lock: two threads shadowing one version at once
    # (both past the check above while pickling) must not both start, and a shadow being
    # closed must not take out, or put back, a layer of one being set up.
    with _wiring_lock:
        _refuse_live(champion_monitor, version)
        return _start_shadow(champion, champion_monitor, challenger, version, methods,
                             model_bytes, sample=sample, timeout=timeout,
                             queue_size=queue_size, mode=mode, workers=workers,
                             max_classes=max_classes, difference_buckets=difference_buckets,
                             reference=reference, registry=registry)


def _refuse_live(champion_monitor: Monitor, version: str) -> None:
    for live in list(_live_shadows):
        # Two live challengers under one version would count every comparison in one series.
        if live.champion_monitor is champion_monitor and not live.closed and \
                live.monitor.version == version_text(version):
            raise ValueError(f"inferwatch.shadow: version {version!r} already shadows this "
                             "champion; close that shadow first or give another version")


def _start_shadow(champion: Any, champion_monitor: Monitor, challenger: Any, version: str,
                  methods: list[str], model_bytes: bytes, *, sample: float, timeout: float,
                  queue_size: int, mode: str, workers: int, max_classes: int,
                  difference_buckets: Sequence[float], reference: Any,
                  registry: Registry | None) -> Shadow:
    registry = registry or default_registry()
    settings = champion_monitor.settings
    classes = _ChallengerClasses(challenger)
    monitor = registry.monitor(champion_monitor.name, str(version), settings, latest=False,
                               class_names=classes)
    monitor._class_names = classes  # a monitor kept from an earlier challenger: this one's
    tracker = champion_monitor.features
    reference = reference if reference is not None else (
        tracker.reference if tracker is not None else None)
    if reference is not None:
        monitor.configure(reference=reference)
    champion_monitor.update_state(lambda state: state.info.update(role="primary"))
    monitor.update_state(lambda state: state.info.update(role="shadow"))
    wrapped = champion.__dict__["__wrapped__"]
    comparison = Comparison(
        champion_monitor.version, max_classes=int(max_classes), task=settings.task,
        difference_buckets=difference_buckets,
        outcome_error_buckets=settings.outcome_error_buckets,
        cache_size=settings.outcome_cache_size, ttl_seconds=settings.outcome_ttl_seconds,
        max_bytes=settings.outcome_cache_bytes,
        champion_classes=lambda: class_names_of(wrapped),
        shadow_classes=classes,
        declared_classes=settings.classes)
    handle = Shadow(champion_monitor, challenger, monitor, classes, sample=float(sample),
                    timeout=float(timeout), queue_size=int(queue_size), mode=mode,
                    workers=int(workers), comparison=comparison,
                    events=_CHAMPIONS_LOG, model_bytes=model_bytes)
    monitor.drain_listeners = (*monitor.drain_listeners, handle.before_drain)
    champion_monitor.outcome_listeners = (*champion_monitor.outcome_listeners,
                                          handle.on_outcome)
    monitor.update_state(lambda state: _zero_series(state, champion_monitor.version))
    for method in methods:
        wrapper = shadowed(champion.__dict__[method], handle, method)
        handle._layers.append((champion.__dict__, method, wrapper))
        champion.__dict__[method] = wrapper
    return handle


def _zero_series(state: Any, champion_version: str) -> None:
    # Ratios read 0, not "no data", before the first comparison or drop.
    state.inc("inferwatch_shadow_sampled_total", (champion_version,), 0)
    state.inc("inferwatch_shadow_compared_total", (champion_version,), 0)
    for reason in DROP_REASONS:
        state.inc("inferwatch_shadow_dropped_total", (champion_version, reason), 0)
    for result in ("agree", "disagree"):
        state.inc("inferwatch_shadow_agreement_total", (champion_version, result), 0)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


def _check(**options: Any) -> None:
    problems = []
    if not isinstance(options["version"], str) or not options["version"].strip():
        problems.append("version must be a non-empty string")
    # A number of the wrong type ("0.5" from a config file, None) is named here too, not
    # left to a bare comparison error.
    sample, timeout = options["sample"], options["timeout"]
    if not _is_number(sample) or not 0.0 < sample <= 1.0:
        problems.append(f"sample must be in (0, 1] (a number), got {sample!r}")
    if not _is_number(timeout) or not timeout > 0:
        problems.append(f"timeout must be a positive number of seconds, got {timeout!r}")
    for name in ("queue_size", "workers", "max_classes"):
        # A numpy integer (read from an array or a config loaded with numpy) is an int too.
        if not isinstance(options[name], numbers.Integral) or \
                isinstance(options[name], (bool, np.bool_)) or options[name] < 1:
            problems.append(f"{name} must be an int >= 1, got {options[name]!r}")
    workers = options["workers"]
    if isinstance(workers, numbers.Integral) and workers > MAX_WORKERS:
        problems.append(f"workers must be at most {MAX_WORKERS}, got {workers!r}")
    if options["mode"] not in MODES:
        problems.append(f"mode must be one of {MODES}, got {options['mode']!r}")
    buckets = options["difference_buckets"]
    try:
        bounds = [float(b) for b in buckets if _is_number(b)]
        valid = len(bounds) == len(buckets) > 0 and all(map(math.isfinite, bounds)) and \
            all(a < b for a, b in zip(bounds, bounds[1:]))
    except TypeError:  # not a sequence
        valid = False
    if not valid:
        problems.append("difference_buckets must be finite numbers in increasing order, got "
                        f"{buckets!r}")
    if problems:
        raise ValueError("inferwatch.shadow: " + "; ".join(problems))
