"""The Monitor behind one model version: cheap recording now, aggregation later.

On the request path a call costs two clock reads and one ``list.append`` of a tuple.
Everything else (bucketing, sketches, class counts, cardinality caps) happens when the
pending calls are drained: by a background thread once a second, and before every
scrape. Draining takes a prefix of each pending list with a slice and deletes it with
one ``del``; both are single operations under the GIL, so appends racing with a drain
land in the next drain and no call is lost or counted twice.

The Monitor is the only writer of its state and of its pending lists. The request path
gets its bound appenders from :meth:`Monitor.fast_path`, request records go through
:meth:`Monitor.submit`, and a list that fills up between two drains is handed to the
drain whole (:meth:`Monitor.hand_off`), so a fast caller never loses a count.

>>> from inferwatch.core.registry import Registry
>>> mon = Registry().monitor("fraud", "1.4.2")
>>> mon.record_call(0.003, 0.91)
>>> mon.drain(); mon.state.counters["inferwatch_requests_total"][("ok",)]
1.0
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import threading
import time
import types
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from inferwatch import exiting, faults
from inferwatch.core import monitor_configure, outcome_joins
from inferwatch.core.call_paths import FAST
from inferwatch.core.call_values import count_value, error_class, seconds
from inferwatch.core.label_caps import LabelCap, clean_label_value
from inferwatch.core.monitor_configure import CAP_OPTIONS, tracker_changed, tracker_of
from inferwatch.core.monitor_drain import MonitorDrain
from inferwatch.core.options import Settings
from inferwatch.core.outcomes import OutcomeJoiner
from inferwatch.core.pending_bound import PendingBound, PendingBudget
from inferwatch.core.request_record import RequestRecord
from inferwatch.core.state import ModelState
from inferwatch.core.step_clock import StepSafeClock

if TYPE_CHECKING:
    from inferwatch.core.encode import Page
    from inferwatch.core.registry import Registry
    from inferwatch.core.request import Request
    from inferwatch.core.stream_records import StreamRecord
    from inferwatch.events import EventLog
    from inferwatch.quality.reference import Reference
    from inferwatch.quality.tracker import FeatureTracker

T = TypeVar("T")


class FastPath(NamedTuple):
    """What an instrumented call touches, bound once when the wrapper is built."""

    started: itertools.count  # next() on it when a call starts (the in-flight gauge)
    pending: list  # finished calls: (duration, result)
    append: Callable[[Any], None]
    errors: list  # failed calls: (duration, exception class)
    append_error: Callable[[Any], None]
    limit: int  # append while len(list) < limit, else hand_off(list, item)
    hand_off: Callable[[list, Any], None]
    # The same two steps as functions, where one more call costs nothing (async calls).
    finished: Callable[[float, object], None]
    failed: Callable[[float, type], None]
    # Sets the limit `finished` and `failed` use; configure() calls it through
    # Monitor.follow_pending_chunk when max_pending changes.
    set_limit: Callable[[int], None]


# Outcomes that may wait for a drain, recorded where joining them would hang their thread
# (outcome_joins.would_wait_on_own_thread): a signal handler's, every few milliseconds, for
# as long as a drain takes.
MAX_DEFERRED_OUTCOMES = 10_000


def _no_registry() -> None:
    """The registry of a monitor made outside one."""
    return None


# Held while a monitor's listener tuple is replaced: a drain dropping dead listeners must
# not undo a shadow() adding one at that moment. Renewed by the fork hook above.
_listeners_lock = threading.Lock()


class Listeners:
    """A monitor attribute holding a tuple of callables: bound methods weakly, anything else
    as given. Reading it gives the callables still alive, and drops the dead ones.

    A shadow's listeners are its own bound methods, while the monitor lives as long as its
    registry: held strongly they would keep a shadow dropped without ``close()`` (its
    threads, child processes, challenger and champion) alive for good, and every outcome
    and drain would walk one more listener per deploy.

    >>> class Holder:
    ...     listeners = Listeners()
    >>> class Shadow:
    ...     def heard(self): return "heard"
    >>> holder, shadow = Holder(), Shadow()
    >>> holder.listeners = (shadow.heard, print)
    >>> [f.__name__ for f in holder.listeners]
    ['heard', 'print']
    >>> del shadow
    >>> [f.__name__ for f in holder.listeners]
    ['print']
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = "_held_" + name

    def __get__(self, owner: Any, kind: type | None = None) -> Any:
        if owner is None:
            return self
        held = owner.__dict__.get(self._slot, ())
        if not held:
            return ()
        live = tuple(x for x in (h() if h.__class__ is weakref.WeakMethod else h
                                 for h in held) if x is not None)
        if len(live) != len(held) and _listeners_lock.acquire(blocking=False):
            # Never waits: a reader is a drain or an outcome, and the dead are dropped by
            # the next reader anyway. Replaced only if no listener was added meanwhile.
            try:
                if owner.__dict__.get(self._slot) is held:
                    owner.__dict__[self._slot] = tuple(
                        h for h in held
                        if h.__class__ is not weakref.WeakMethod or h() is not None)
            finally:
                _listeners_lock.release()
        return live

    def __set__(self, owner: Any, listeners: Sequence[Callable[..., None]]) -> None:
        held = tuple(weakref.WeakMethod(x) if isinstance(x, types.MethodType) else x
                     for x in listeners)
        with _listeners_lock:
            owner.__dict__[self._slot] = held


# Every monitor alive, for the at-fork hook below: a registry renews its own monitors' locks
# in a forked child, but a monitor can outlive its registry (a model object kept at module
# level after the registry that made it was dropped).
_live_monitors: weakref.WeakSet[Monitor] = weakref.WeakSet()


def _renew_locks_after_fork() -> None:
    global _listeners_lock
    _listeners_lock = threading.Lock()  # a thread of the parent may have held it
    for monitor in list(_live_monitors):
        try:
            monitor.renew_locks()
        except Exception as exc:
            faults.record("fork", exc)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_locks_after_fork)


_INF = float("inf")


class Monitor(PendingBound, MonitorDrain):
    """Records calls of one model version and aggregates them into a :class:`ModelState`."""

    # Shadow models (core/shadow.py) listen here: a champion passes each outcome it is given
    # to its challengers, and a challenger folds its comparisons in before a drain.
    outcome_listeners = Listeners()
    drain_listeners = Listeners()

    def __init__(self, name: str, version: str, settings: Settings | None = None, *,
                 trained_at: float | None = None,
                 class_names: Callable[[], Sequence[object] | None] | None = None) -> None:
        self.name = name
        self.version = version
        self.settings = settings or Settings()
        # The bound on pending calls in force (max_pending, or fewer when the calls hold
        # large arrays: _fit_pending), and the list length that hands a list to the drain.
        self._kept_per_call = 0.0  # array bytes a drained call held, in the last drain
        # Until a call has been sized (by a hand-off or a drain), lists are handed off short:
        # the first hand-off sizes its call, else a drain stalled from the start would let
        # max_pending calls of any size wait and max_pending_bytes would bound nothing.
        self._sized = False
        self._max_calls = self._chunk = 0  # set by _fit_pending below
        # The list length this monitor would have; _chunk is less while the budget shared
        # with other monitors has no room for it (grown at a later hand-off or fit).
        self._wanted_chunk = 0
        # What this monitor holds of its pending budget: a list's length (the calls the
        # request path appends unchecked), and the calls handed to the drain, in calls and
        # in bytes (charged at hand-off, released by the drain that takes them).
        self.pending_budget = PendingBudget()
        self.pending_budget.sharers = 1
        self._reserved_calls = self._reserved_bytes = self._handed_off_bytes = 0
        self.state = ModelState(name, version, summary_settings=self.settings.summary)
        self.state.loaded_at = time.time()
        if trained_at is not None:
            self.state.trained_at = float(trained_at)
        self.state.objectives = dict(self.settings.objectives)
        self.state.info = {"task": self.settings.task,
                           **{k: clean_label_value(v) for k, v in self.settings.metadata.items()}}
        self._class_names = class_names
        _live_monitors.add(self)
        # Reentrant for its owner test, not for reentry: an outcome recorded on the main
        # thread must wait for the lock when a worker holds it and be deferred only when
        # the main thread holds it itself (outcome_joins.would_wait_on_own_thread).
        self._lock = threading.RLock()
        # Pending work, appended to on the request path.
        self._calls: list[tuple[float, object]] = []
        self._proba_calls: list[tuple[float, object]] = []
        self._errors: list[tuple[float, type]] = []
        self._requests: list[RequestRecord] = []
        self._streams: list[StreamRecord] = []
        # Lists that filled up between two drains, handed over whole: (source list, items).
        # Taking from the pending lists happens only under this lock, so a hand-off and a
        # drain never take the same prefix twice.
        # Reentrant: a stream collected by the garbage collector while this thread holds
        # it (an allocation inside hand_off or the drain's take) records itself through
        # hand_off, which takes it again; a plain lock would hang this thread for good.
        self._take_lock = threading.RLock()
        # Held for the whole of a configure(): two at once would each build on the same old
        # settings, and one's options be lost. Reentrant: a drain it runs may reach a
        # listener that configures this monitor again.
        self._configure_lock = threading.RLock()
        # Outcomes recorded while their thread held one of this monitor's locks (a signal
        # handler's, see outcome_joins.would_wait_on_own_thread): (request id, y_true, time,
        # forward), joined by the next drain. A deque: appended to without a lock.
        self._deferred_outcomes: collections.deque[tuple[str, object, float, bool]] = \
            collections.deque()
        self._deferred_outcomes_dropped = itertools.count()
        self._deferred_outcomes_dropped_counted = 0
        self._joining_deferred = False
        self._handed_off: list[tuple[list, list]] = []
        self._handed_off_calls = 0
        # wrapper -> how to give it a new pending_chunk (weak: a dropped wrapper leaves).
        self._limit_setters: weakref.WeakKeyDictionary[Callable, Callable[[int], None]] = (
            weakref.WeakKeyDictionary())
        self._fit_pending()
        self._started = itertools.count()
        self._dropped = itertools.count()
        self._finished = 0
        self._slices_drained = 0  # slices of huge batches drained (see SLICE_ROWS)
        # Drains folding what their first hold left for later (huge results read whole,
        # later slices), and their end told to a drain that must wait for them.
        self._apart_folds = 0
        self._apart = threading.Condition(threading.Lock())
        # Bumped under the lock by every change to the state that no finished call marks
        # (an outcome joined, a shadow's comparisons, a new reference): the publisher's
        # fingerprint reads it, or an idle worker would publish them only at its refresh.
        self._revision = 0
        # Where the rolling windows are, stepped-back wall clock or not: see window_time().
        self._clock = StepSafeClock()
        # When the background drain first left this monitor's pending calls waiting
        # (monotonic seconds), or None: see drain_due().
        self._waiting_since: float | None = None
        self._dropped_reported = 0
        # Set by the registry: wakes its drain thread at once when a list is handed off.
        self.wake_drain: Callable[[], None] | None = None
        # Which path instrumented calls take (see call_wrappers.py): SLOW when request ids,
        # events or traces are wanted; WITH_INPUTS with a reference profile (the fast path,
        # its calls carrying their inputs for the drain to check); else FAST. Calls inside
        # an open ``mon.request()`` take the slow path; they find it in a context variable.
        self.path = FAST
        # The settings while the path is FAST, else None: a generator function's wrapper
        # checks this one attribute (see Follower.lean_settings in follower.py).
        self.fast_settings: Settings | None = self.settings
        self.keeps_inputs = False
        self.request_id_fn: Callable[..., object] | None = None
        self.features: FeatureTracker | None = None
        self.events: EventLog | None = None
        # The log configure() opened from a path: this monitor's to close when it is
        # replaced (a log object the user passed in is the user's to close).
        self._own_events: EventLog | None = None
        # The followers of this monitor's instrumented callables (follower.Follower), weakly:
        # their `plain` sets were learnt under the settings in force and must be forgotten
        # when the settings change, or a class once seen as a plain prediction would never
        # reach a follower again (token counting or usage switched on later).
        self._followers: weakref.WeakSet = weakref.WeakSet()
        self.traces = False
        # Whether `traces` was set by its owner (configure(traces=...)): then following
        # OpenTelemetry (Registry.follow_tracing) leaves it as set.
        self._traces_pinned = False
        # A span per r.stage(): an option like any other, given to instrument() or here.
        self.trace_stages = self.settings.trace_stages
        # Set by the registry: the other versions of this model, which an outcome this
        # version never predicted goes to (see record_outcome).
        self.siblings: Callable[[], list[Monitor]] | None = None
        # Set by the registry: a weak reference to it (a shadow of this monitor's model is
        # recorded in the same registry unless told otherwise).
        self.registry: Callable[[], Registry | None] = _no_registry
        self._derive_from_settings()

    def _derive_from_settings(self) -> None:
        """What the settings fix when the monitor starts: zero series, the outcome cache,
        the label caps."""
        s = self.settings
        # Series that alerts and dashboards divide by exist from the start, at zero, so a
        # ratio reads 0 rather than "no data" before the first failure.
        self.state.inc("inferwatch_requests_total", ("ok",), 0)
        self.state.inc("inferwatch_requests_total", ("error",), 0)
        self.state.inc("inferwatch_requests_total", ("cancelled",), 0)
        self.state.inc("inferwatch_calls_dropped_total", (), 0)
        for reason in ("nan", "inf") + (("out_of_range",) if s.output_range else ()):
            self.state.inc("inferwatch_invalid_predictions_total", (reason,), 0)
        self.outcomes = OutcomeJoiner(s.outcome_cache_size, s.outcome_ttl_seconds,
                                      max_bytes=s.outcome_cache_bytes)
        self._own_outcome_lock()
        self._caps = {metric: LabelCap(getattr(s, option))
                      for metric, option in CAP_OPTIONS.items()}

    def adopt(self, settings: Settings) -> bool:
        """Take `settings` (an ``instrument()`` of a model whose monitor someone asked for
        first, with ``inferwatch.monitor()``) while nothing has been recorded; returns
        whether it did. Past the first call they cannot change what was counted under the
        old ones: the caller warns instead.

        >>> from inferwatch.core.options import Settings
        >>> mon = Monitor("fraud", "1")
        >>> mon.adopt(Settings(task="classification", output_range=(0.0, 1.0)))
        True
        >>> mon.state.info["task"], mon.settings.output_range
        ('classification', (0.0, 1.0))
        """
        # Under the configure lock: a configure() running in another thread builds on the
        # settings it read at its start, and would put them back over these (or these over
        # its), one side's options lost.
        with self._configure_lock:
            return self._adopt(settings)

    def _adopt(self, settings: Settings) -> bool:
        # Only what `settings` sets itself: options given to configure() before, and not
        # named again here, stay.
        defaults = Settings()
        settings = dataclasses.replace(self.settings, **{
            field.name: getattr(settings, field.name) for field in dataclasses.fields(settings)
            if getattr(settings, field.name) != getattr(defaults, field.name)})
        if settings == self.settings:
            return True
        with self._lock:
            if self._finished or self.pending() or count_value(self._started):
                return False
            old, self.settings = self.settings, settings
            self.fast_settings = settings if self.path is FAST else None
            self.trace_stages = settings.trace_stages
            self._forget_plain_results()
            state = self.state
            state.summary_settings = settings.summary
            state.objectives = dict(settings.objectives)
            state.info = {"task": settings.task, **{
                k: clean_label_value(v) for k, v in settings.metadata.items()}}
            self._derive_from_settings()
            self._fit_pending()
            if self.features is not None and tracker_changed(old, settings):
                # A reference given (by configure) before these settings: its tracker was
                # built with the old window, tolerance and label cap.
                tracker = tracker_of(self.features.reference, settings)
                self.features = tracker
                self.state.extras["drift"] = tracker.drift
            return True

    def configure(self, *, reference: Reference | str | os.PathLike | None = None,
                  request_id: Callable[..., object] | bool | None = None,
                  events: EventLog | str | os.PathLike | bool | None = None,
                  traces: bool | None = None, **options: Any) -> Monitor:
        """Switch on data quality and drift, request ids from a function, or the event log.

        `events` is an ``EventLog`` or the path of one to open; ``events=False`` switches
        the log off: a log this monitor opened from a path is closed (what was queued is
        written first), one passed in is only detached (it is its owner's to close).
        None (the default) leaves the log as it is, as it does every other argument.
        `request_id` is a function of the call's arguments; ``request_id=False`` switches it
        off (a call's own ``request_id=`` keyword still names its request). `traces` is True
        or False (None: unchanged).

        Each of these needs the call's inputs or an event per call, so instrumented calls
        of this model take the slow path (still append-only; the checks run at drain time).
        `options` are :class:`~inferwatch.core.options.Settings` fields that take effect
        from here on (``range_tolerance``, ``drift_window_seconds``, ``trace_stages``, ...).

        >>> from inferwatch.core.registry import Registry
        >>> mon = Registry().monitor("m", "1").configure(drift_window_seconds=60)
        >>> mon.settings.drift_window_seconds
        60
        """
        monitor_configure.configure(self, reference=reference, request_id=request_id,
                                    events=events, traces=traces, **options)
        return self

    def follow_settings(self, follower: Any) -> None:
        """Have `follower`'s remembered plain result classes forgotten when the settings
        change (see ``follower.Follower``); kept weakly."""
        self._followers.add(follower)

    def _forget_plain_results(self) -> None:
        # Cleared in place: the wrappers hold the set itself, bound once.
        for follower in list(self._followers):
            follower.plain.clear()

    # --- the request path ---------------------------------------------------------------
    def request(self, request_id: str | None = None) -> Request:
        """A per-request context: ``with mon.request(request_id="r-17") as r: ...``."""
        from inferwatch.core.request import Request

        return Request(self, None if request_id is None else faults.request_id_text(
            request_id, "request_id"))

    def record_outcome(self, request_id: object, y_true: object, at: float | None = None) -> None:
        """Join delayed ground truth with the prediction made for `request_id`. Never raises.

        Classifiers count ``inferwatch_outcomes_total{result}``; regressors observe the
        absolute error in ``inferwatch_outcome_error``; both observe the label delay. An
        outcome for a prediction another version of this model made is that version's.
        """
        outcome_joins.record_outcome(self, request_id, y_true, at, forward=True)

    def defer_outcome(self, request_id: str, y_true: object, at: float, forward: bool) -> None:
        """Keep an outcome for the next drain to join: its thread holds one of this
        monitor's locks (:func:`outcome_joins.would_wait_on_own_thread`). Takes no lock;
        past :data:`MAX_DEFERRED_OUTCOMES` waiting, the outcome is dropped and counted (as
        an ``outcome`` internal error, by the drain that finds it). Never raises."""
        try:
            if len(self._deferred_outcomes) < MAX_DEFERRED_OUTCOMES:
                self._deferred_outcomes.append((request_id, y_true, at, forward))
            else:
                next(self._deferred_outcomes_dropped)
        except Exception:  # no fault recorded here: its lock may be the one held
            pass

    def drain(self, now: float | None = None, *, budget: float | None = None,
              deadline: float | None = None, finished_before: int | None = None) -> None:
        """:meth:`MonitorDrain.drain`, then the outcomes deferred meanwhile joined."""
        super().drain(now, budget=budget, deadline=deadline, finished_before=finished_before)
        # Outcomes waiting alone tell a join is due: one is dropped only while the deque is
        # full, and a join counts the drops as it begins and as it ends (see there).
        if self._deferred_outcomes:
            self._join_deferred_outcomes()

    def _join_deferred_outcomes(self) -> None:
        """Join the outcomes deferred so far, in the order they came; the ones this thread
        still cannot join (it holds a lock itself) wait for a later drain. Never raises.

        The outcomes dropped are counted as the join begins, and again as it ends: an
        outcome is dropped only while the deque is full, so one dropped after the join
        looked (and before it emptied the deque) is counted by its end, and one dropped
        after that leaves the deque full, which the next drain joins."""
        if self._joining_deferred:  # a join drains, and this drain must not join again
            return
        self._joining_deferred = True
        try:
            self._count_dropped_outcomes()
            deferred = self._deferred_outcomes
            for _ in range(len(deferred)):
                request_id, y_true, at, forward = deferred.popleft()
                outcome_joins.record_outcome(self, request_id, y_true, at, forward=forward)
        except Exception as exc:
            faults.record("outcome", exc)
        finally:
            try:
                self._count_dropped_outcomes()
            finally:
                self._joining_deferred = False

    def _count_dropped_outcomes(self) -> None:
        dropped = count_value(self._deferred_outcomes_dropped)
        if dropped != self._deferred_outcomes_dropped_counted:
            faults.record("outcome", count=dropped - self._deferred_outcomes_dropped_counted)
            self._deferred_outcomes_dropped_counted = dropped

    def record_call(self, duration: float, result: object, probabilities: bool = False) -> None:
        """Record a finished call; what the instrument() wrappers do inline. Never raises:
        a `duration` that is not a number of seconds >= 0 is counted as a fault and
        recorded as 0, since one NaN would make the latency ``_sum`` NaN for good."""
        if duration.__class__ is not float or not 0.0 <= duration < _INF:
            duration = seconds(duration)
        next(self._started)
        pending = self._proba_calls if probabilities else self._calls
        if len(pending) < self._chunk:
            pending.append((duration, result))
        else:
            self.hand_off(pending, (duration, result))

    def record_error(self, duration: float, error_type: type, started: bool = False) -> None:
        """Record a failed call of `duration` seconds that raised `error_type`; `started`
        when the call has already counted itself in flight (:meth:`call_started`).
        Never raises: an exception given instead of its class counts as its class, and
        anything else as ``Exception``, so that the drain (and every other call folded
        with this one) never fails on it."""
        if duration.__class__ is not float or not 0.0 <= duration < _INF:
            duration = seconds(duration)
        if not (error_type.__class__ is type and issubclass(error_type, BaseException)):
            error_type = error_class(error_type)
        if not started:
            next(self._started)
        if len(self._errors) < self._chunk:
            self._errors.append((duration, error_type))
        else:
            self.hand_off(self._errors, (duration, error_type))

    def fast_path(self, probabilities: bool) -> FastPath:
        """The bound appenders an instrumented call uses, for ``predict`` or ``predict_proba``.

        >>> from inferwatch.core.registry import Registry
        >>> fast = Registry().monitor("m", "1").fast_path(probabilities=False)
        >>> fast.limit > 0
        True
        """
        pending = self._proba_calls if probabilities else self._calls
        append, errors, append_error = pending.append, self._errors, self._errors.append
        limit, hand_off = self._chunk, self.hand_off

        def finished(duration: float, result: object, seen_input: object = None) -> None:
            done = (duration, result) if seen_input is None else (duration, result, seen_input)
            if len(pending) < limit:
                append(done)
            else:
                hand_off(pending, done)

        def failed(duration: float, error_type: type, seen_input: object = None) -> None:
            failure = (duration, error_type) if seen_input is None else (
                duration, error_type, seen_input)
            if len(errors) < limit:
                append_error(failure)
            else:
                hand_off(errors, failure)

        def set_limit(new_limit: int) -> None:
            nonlocal limit
            limit = new_limit

        return FastPath(self._started, pending, append, errors, append_error, limit, hand_off,
                        finished, failed, set_limit)

    def follow_pending_chunk(self, wrapper: Callable, set_limit: Callable[[int], None]) -> None:
        """Call `set_limit` with the new list length whenever it changes (:meth:`configure`
        or :meth:`_fit_pending`), for as long as `wrapper` lives: a wrapper holds its limit
        as a local, which costs its calls nothing to read, so a new one must be pushed.

        >>> from inferwatch.core.registry import Registry
        >>> mon, seen = Registry().monitor("m", "1"), []
        >>> def wrapper(): pass
        >>> mon.follow_pending_chunk(wrapper, seen.append)
        >>> mon.record_call(0.01, 0.5); mon.drain()  # calls sized: full-length lists
        >>> seen.clear(); _ = mon.configure(max_pending=800)
        >>> seen
        [100]
        """
        self._limit_setters[wrapper] = set_limit

    def call_started(self) -> None:
        """A call or request began (what the in-flight gauge counts)."""
        next(self._started)

    def submit(self, record: RequestRecord) -> None:
        """Hand a finished request record to the drain."""
        requests = self._requests
        if len(requests) < self._chunk:
            requests.append(record)
        else:
            self.hand_off(requests, record)
        if exiting.exit_flushed and self.events is not None:
            exiting.fold_after_exit_flush(self)

    def submit_stream(self, record: StreamRecord) -> None:
        """Hand a finished stream (or text result) to the drain.

        A record that does not count the call (a request record counts it) still passes
        through the drain's count of finished calls, so it counts itself as started here:
        the in-flight gauge stays exact.
        """
        if not record.counts_call:
            next(self._started)
        streams = self._streams
        if len(streams) < self._chunk:
            streams.append(record)
        else:
            self.hand_off(streams, record)
        if exiting.exit_flushed and self.events is not None:
            exiting.fold_after_exit_flush(self)

    def pending(self) -> int:
        """Calls finished and not yet drained."""
        return (len(self._calls) + len(self._proba_calls) + len(self._errors)
                + len(self._requests) + len(self._streams) + self._handed_off_calls)

    def families(self, now: float, *, text_format: bool = False) -> list:
        """This monitor's metric families, rendered under its lock so a concurrent drain
        cannot change the state mid-render (`text_format`: see ``render.model_families``)."""
        from inferwatch.core.render import model_families

        with self._lock:
            now = self.window_time(now)
            self.state.set_gauge("inferwatch_requests_in_flight", (), self.in_flight_locked())
            return model_families([self.state], now=now, text_format=text_format)

    def publishable(self, encode: Callable[[ModelState], T]) -> tuple[T, tuple]:
        """This monitor's state encoded for a worker file, and a fingerprint that changes
        whenever a call finishes or starts or anything else changes the exported series,
        both taken under its lock."""
        with self._lock:
            in_flight = self.in_flight_locked()
            self.state.set_gauge("inferwatch_requests_in_flight", (), in_flight)
            return encode(self.state), (self.name, self.version,
                                        *self._series_marks_locked(in_flight))

    def _series_marks_locked(self, in_flight: int) -> tuple[int, ...]:
        """Counts that move whenever this monitor's series change: calls folded and in
        flight, slices of huge batches folded, the revision (outcomes, shadows,
        configure(), a fork's reset) and the dropped calls reported. What a worker's
        snapshot and a scrape's kept lines go by."""
        return (self._finished, in_flight, self._slices_drained, self._revision,
                self._dropped_reported)

    def encode_into(self, page: Page, wall: float) -> None:
        """Write this monitor's series into a scrape's `page` at its window time for the
        wall clock `wall`, under its lock with its in-flight gauge set, as :meth:`families`
        reads them. What can change the series goes with them (:meth:`Page.add`'s
        `changes`): a monitor with nothing new since the last scrape is written from
        the lines that scrape made."""
        with self._lock:
            in_flight = self.in_flight_locked()
            state = self.state
            state.set_gauge("inferwatch_requests_in_flight", (), in_flight)
            page.add(state, now=self.window_time(wall), changes=(
                self._series_marks_locked(in_flight),
                (state, self.settings, state.summary_settings, state.extras.get("drift"))))

    def update_state(self, change: Callable[[ModelState], None]) -> None:
        """Run `change` on this monitor's state under its lock (what a shadow's comparisons
        use to write their series). Never raises.

        >>> from inferwatch.core.registry import Registry
        >>> mon = Registry().monitor("m", "1")
        >>> mon.update_state(lambda state: state.inc("inferwatch_requests_total", ("ok",), 2))
        >>> mon.state.counters["inferwatch_requests_total"][("ok",)]
        2.0
        """
        try:
            with self._lock:
                self._revision += 1
                change(self.state)
        except Exception as exc:
            faults.record("shadow", exc)

    def read_state(self, read: Callable[[ModelState], T]) -> T:
        """`read(state)` under this monitor's lock, with its in-flight gauge set: a
        consistent view for readers other than a scrape (the status page's history)."""
        with self._lock:
            self.state.set_gauge("inferwatch_requests_in_flight", (), self.in_flight_locked())
            return read(self.state)

    def copy_state(self) -> ModelState:
        """A copy of this monitor's state: read under its lock, rebuilt outside it, so a
        reader holds the lock (and the drain waits) only as long as a scrape does."""
        return ModelState.from_dict(self.read_state(ModelState.to_dict))

    def in_flight(self) -> int:
        """Calls started and not yet finished."""
        with self._lock:
            return self.in_flight_locked()

    def in_flight_locked(self) -> int:
        done = self._finished + self.pending() + count_value(self._dropped)
        return max(0, count_value(self._started) - done)

    def clock_ahead(self, wall: float) -> float:
        """Where this monitor's windows would be read at for the wall clock `wall` (past it
        after a step back), without moving them there."""
        return self._clock.ahead(wall)

    def start_at(self, when: float) -> None:
        """Place a new monitor's load time and rolling windows at `when`: where its
        registry's other windows are, ahead of a wall clock that stepped back (a version
        instrumented after the step would otherwise write its windows where no reader
        looks, and its status page divide its calls by the step)."""
        with self._lock:
            if when > self.state.loaded_at:
                self.state.loaded_at = when
                self._revision += 1
            self._clock.move_to(when)

    def window_time(self, now: float | None = None) -> float:
        """The time the rolling windows (quantiles, drift) are written and read at: the
        wall clock `now` (default: ``time.time()``), unless the clock stepped back (NTP, a
        VM resumed) behind where the windows already are. Then time goes on from there at
        the monotonic clock's pace: the drift window refuses rows for buckets it has
        recycled, so a step back longer than the window would silently drop every row, and
        every scrape read an empty window, until the wall clock caught up again. Each call
        moves the windows to the time it returns (a drain or a scrape at it would). A `now`
        that no clock reads (NaN, infinity) is counted as a fault and taken as the clock.
        Never raises.

        >>> mon = Monitor("m", "1")
        >>> mon.window_time(1_000_000.0) == 1_000_000.0
        True
        >>> mon.window_time(1_000_000.0 - 3600) >= 1_000_000.0
        True
        >>> 1_000_000.0 <= mon.window_time(float("inf")) < float("inf")
        True
        >>> mon.window_time() >= 1_000_000.0
        True
        """
        wall = now
        if wall.__class__ is not float:
            # A caller's int or numpy float is a time too; anything else is none.
            try:
                wall = time.time() if wall is None else float(wall)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                wall = _INF
        if not -_INF < wall < _INF:
            # A time no clock reads (NaN, infinity, given to drain(now=...)): kept as the
            # mark, every later drain and scrape would be read at it, and raise, for good.
            faults.record("drain")
            wall = time.time()
        return self._clock.read(wall)

    def _own_outcome_lock(self) -> None:
        """Give the join cache a lock that tells its owner, as this monitor's own: see
        :func:`outcome_joins.would_wait_on_own_thread`."""
        self.outcomes._lock = threading.RLock()

    def renew_locks(self) -> None:
        """New locks in a forked child: a lock held by another thread at fork time would
        otherwise stay held forever there."""
        self._lock = threading.RLock()
        self._take_lock = threading.RLock()
        self._configure_lock = threading.RLock()
        self._apart = threading.Condition(threading.Lock())
        self._apart_folds = 0  # the parent's threads that were folding are not here
        self.pending_budget.renew_lock()
        self.outcomes.renew_lock()
        self._own_outcome_lock()
        for cap in self._caps.values():
            cap.renew_lock()
        if self.features is not None:
            self.features.renew_locks()

    def reset_after_fork(self) -> None:
        """Zero what this monitor counted, keeping what it is (identity, settings, caps).

        A worker forked from a master that already served calls must not publish the
        master's counts a second time.
        """
        self.renew_locks()
        for cap in self._caps.values():
            cap.reset_counts()  # the values admitted stay: their series are this monitor's
        for pending in (self._calls, self._proba_calls, self._errors, self._requests,
                        self._streams):
            del pending[:]  # the wrappers hold these very lists: empty them in place
        if self._handed_off_calls:
            self._release_handed_off(self._handed_off_calls, self._handed_off_calls)
        self._handed_off, self._handed_off_calls = [], 0
        self._deferred_outcomes.clear()  # the master's, joined by the master
        self._deferred_outcomes_dropped_counted = count_value(self._deferred_outcomes_dropped)
        self._waiting_since = None
        dropped = count_value(self._dropped)
        self._finished = count_value(self._started) - dropped
        self._dropped_reported = dropped
        # The counts below change with no call finishing: a scrape (and a worker's snapshot)
        # must not take the master's lines or file for this worker's.
        self._revision += 1
        state = self.state
        for series in state.counters.values():
            for labels in series:
                series[labels] = 0.0
        for part in (state.histograms, state.summaries, state.gauges):
            part.clear()
        for name, extra in list(state.extras.items()):
            reset = getattr(extra, "reset", None)
            try:
                if callable(reset):
                    reset()
                    continue
            except Exception as exc:  # an extension's bug: the extras after it still reset
                faults.record("fork", exc)
            # Without a reset that worked, its data is the parent's: never exported again.
            del state.extras[name]

    def overflow_counts(self) -> dict[str, int]:
        """Label values folded into ``__other__`` by each cap of this monitor, by metric."""
        counts = {metric: cap.overflowed for metric, cap in self._caps.items() if cap.overflowed}
        tracker = self.features
        if tracker is not None and tracker.drift.folded():
            counts["inferwatch_feature_drift"] = tracker.drift.folded()
        return counts

    def class_names(self) -> Sequence[object] | None:
        if self._class_names is None:
            return None
        try:
            names = self._class_names()
            return None if names is None else list(names)
        except Exception:
            return None
