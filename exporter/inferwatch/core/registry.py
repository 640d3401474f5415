"""Where monitors live: one per (model, model_version), drained in the background by the
thread of :mod:`inferwatch.core.drain_thread`.

A process normally uses the default registry; tests and embedders inject their own.

>>> registry = Registry()
>>> registry.monitor("fraud", "1.4.2") is registry.monitor("fraud", "1.4.2")
True
>>> [m.version for m in registry.monitors()]
['1.4.2']
"""

from __future__ import annotations

import functools
import logging
import math
import numbers
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from inferwatch import faults
from inferwatch.core import monitor_drain
from inferwatch.core.drain_thread import (
    DrainThread,
    drain_waker,
    live_registries,
    restart_drainers_after_fork_in_parent,
    stop_drainers_before_fork,
)
from inferwatch.core.history import History
from inferwatch.core.label_caps import LabelCap, clean_label_value
from inferwatch.core.monitor import Monitor
from inferwatch.core.options import Settings
from inferwatch.core.pending_bound import PendingBudget
from inferwatch.core.step_clock import StepSafeClock
from inferwatch.forking import catch_up_after_fork

if TYPE_CHECKING:
    from inferwatch.core.state import ModelState
    from inferwatch.multiproc.worker import Publisher

DRAIN_INTERVAL_SECONDS = 1.0
log = logging.getLogger("inferwatch")

MAX_VERSIONS_PER_MODEL = 10
MAX_MODELS = 100
UNVERSIONED = "unversioned"



class Registry(DrainThread):
    """Monitors by (model, model_version), with caps on both labels."""

    def __init__(self, *, max_models: int = MAX_MODELS,
                 max_versions_per_model: int = MAX_VERSIONS_PER_MODEL,
                 drain_interval: float = DRAIN_INTERVAL_SECONDS) -> None:
        for option, cap in (("max_models", max_models),
                            ("max_versions_per_model", max_versions_per_model)):
            if not isinstance(cap, numbers.Integral) or isinstance(cap, bool) or cap < 1:
                raise ValueError(f"inferwatch.Registry: {option} must be a whole number >= 1, "
                                 f"got {cap!r}")
        # The drain thread waits this long between drains: zero, a negative number or NaN
        # would make it spin on a core; a string, or more than a wait can take, would kill
        # it, losing every later drain.
        if not isinstance(drain_interval, numbers.Real) or isinstance(drain_interval, bool) \
                or not 0 < drain_interval <= threading.TIMEOUT_MAX:
            raise ValueError("inferwatch.Registry: drain_interval must be a number of seconds "
                             f"> 0, got {drain_interval!r}")
        self._lock = threading.Lock()
        self._monitors: dict[tuple[str, str], Monitor] = {}
        # Its values as a tuple, replaced whole (under the lock) when a monitor is added:
        # the background pass reads it without the lock, once a second.
        self._monitor_list: tuple[Monitor, ...] = ()
        # What every monitor's pending calls hold, together: max_pending and
        # max_pending_bytes bound the process's backlog, not one per model version.
        self.pending_budget = PendingBudget()
        self._latest: dict[str, Monitor] = {}
        self._model_cap = LabelCap(max_models)
        self._version_caps: dict[str, LabelCap] = {}
        self._max_versions = max_versions_per_model
        self.drain_interval = drain_interval
        self._drainer: threading.Thread | None = None
        self._drainer_pid = 0
        self._stop = threading.Event()
        # Set while the drain thread is stopped for a fork: both sides start it again.
        self._paused_for_fork = False
        # close() is final: a closed registry still answers but never drains on its own again.
        self._closed = False
        # Set when a monitor hands off a full pending list: the drain runs at once.
        self._wake = threading.Event()
        # Multi-worker mode (inferwatch.multiproc.attach): publishes after each drain.
        self.multiproc: Publisher | None = None
        # The status page's ring of recent totals (enable_history): sampled by the drain.
        self.history: History | None = None
        # (sample time, monotonic seconds) of the last history sample: see window_time().
        self._history_clock = StepSafeClock()
        # Monitors whose settings an instrument() gave too late, said once each.
        self._settings_refused: set[tuple[str, str]] = set()
        live_registries.add(self)

    def monitor(self, name: str, version: str | None = None, settings: Settings | None = None,
                *, trained_at: float | None = None,
                class_names: Callable[[], Sequence[object] | None] | None = None,
                latest: bool = True) -> Monitor:
        """The monitor of `name` / `version`, created on first use.

        Without a version: the version instrumented last under `name`, or "unversioned".
        An empty or blank version is "unversioned" too. ``latest=False`` (a shadow model)
        leaves which version that is unchanged.

        `class_names` reads the classes of the model instrumented now: it replaces the
        reader of a model instrumented before under this name and version (a retrained
        model reloaded without a new version), once the calls already recorded are folded
        with the classes of the model that made them.
        """
        _check_model(name, version)
        # Looked up on request paths (inferwatch.monitor(name).record_outcome(...)): a
        # worker forked past Python's at-fork hooks takes its own lock, never its parent's.
        catch_up_after_fork()
        new_reader: Callable[[], Sequence[object] | None] | None = None
        sharing: list[Monitor] = []
        settings_refused = adopting = False
        with self._lock:
            name = self._model_cap.fold(name)
            if version is None:
                instrumented = self._latest.get(name)
                if instrumented is not None:
                    return instrumented
                version = UNVERSIONED
            cap = self._version_caps.setdefault(name, LabelCap(self._max_versions))
            # An empty version (an unset environment variable, say) would export
            # model_version="", which reads as no label at all: fold it to the default.
            version = clean_label_value(version_text(version))
            version = cap.fold(version or UNVERSIONED)
            key = (name, version)
            monitor = self._monitors.get(key)
            if monitor is None:
                monitor = Monitor(name, version, settings, trained_at=trained_at,
                                  class_names=class_names)
                # The event's waker, not the registry's method: a monitor must not keep its
                # registry (and its drain thread) alive through a reference cycle.
                monitor.wake_drain = drain_waker(self._wake)
                monitor.siblings = functools.partial(_versions_of, weakref.ref(self), name)
                monitor.registry = weakref.ref(self)
                sharing = list(self._monitors.values())
                self._start_past_a_step_back(monitor, sharing)
                monitor.share_pending_budget(self.pending_budget)
                self._monitors[key] = monitor
                self._monitor_list = tuple(self._monitors.values())
            else:
                if trained_at is not None:
                    monitor.state.trained_at = trained_at
                if class_names is not monitor._class_names:
                    new_reader = class_names
                adopting = settings is not None
            # A version past the cap is served and recorded by the __other__ monitor, so
            # that is where a later monitor(name) must find its requests and outcomes.
            if latest or name not in self._latest:
                self._latest[name] = monitor
        # Outside the registry's lock: adopt() waits for a configure() of the monitor that
        # another thread runs, and that one's drain may look up sibling versions here.
        if adopting and not monitor.adopt(settings):
            with self._lock:
                settings_refused = key not in self._settings_refused
                self._settings_refused.add(key)
        if settings_refused:
            _warn_settings_refused(name, version)
        # One more monitor shares the budget: the others' lists shrink to their new share.
        for other in sharing:
            other.refit_pending()
        if new_reader is not None:
            _read_classes_with(monitor, new_reader)
        self.ensure_drainer()
        return monitor

    def existing_monitor(self, name: str, version: str | None = None) -> Monitor | None:
        """The monitor :meth:`monitor` would return for `name` / `version`, or None where it
        would create one; creates nothing, and counts no overflow (a route lookup, which
        must not fix a monitor's settings before ``instrument()`` gives them).

        A name or version that the caps store as ``__other__`` is that ``__other__``
        monitor's: its requests are recorded there.

        >>> registry = Registry(max_models=1)
        >>> fraud = registry.monitor("fraud", "1")
        >>> registry.existing_monitor("fraud", "1") is fraud
        True
        >>> registry.existing_monitor("fraud", "2") is None  # not instrumented: nothing made
        True
        >>> other = registry.monitor("churn", "1")
        >>> registry.existing_monitor("churn") is other, other.name
        (True, '__other__')
        """
        if not isinstance(name, str) or not name.strip() or not (
                version is None or isinstance(version, str) or (
                    isinstance(version, numbers.Real) and not isinstance(version, bool)
                    and is_finite_version(version))):
            return None
        catch_up_after_fork()  # a route lookup on a request path: as in monitor()
        with self._lock:
            # A value the caps would still admit is stored as itself: nothing is under it
            # yet, so the lookups below find nothing.
            key = self._model_cap.stored_as(name)
            if version is None:
                return self._latest.get(key)
            cap = self._version_caps.get(key)
            if cap is None:
                return None
            text = clean_label_value(version_text(version)) or UNVERSIONED
            return self._monitors.get((key, cap.stored_as(text)))

    def monitors(self) -> list[Monitor]:
        # A process forked without Python's at-fork hooks (uWSGI's pre-forked workers)
        # becomes a worker of its own before it folds, publishes or looks up anything as
        # its parent, under a lock of its own.
        catch_up_after_fork()
        with self._lock:
            return list(self._monitors.values())

    def overflow_counts(self) -> dict[str, int]:
        """Label values folded by every cap in this registry, by metric."""
        counts: dict[str, int] = {}
        with self._lock:
            if self._model_cap.overflowed:
                counts["inferwatch_model_info"] = self._model_cap.overflowed
            version_folds = sum(cap.overflowed for cap in self._version_caps.values())
            monitors = list(self._monitors.values())
        if version_folds:
            counts["inferwatch_model_info"] = counts.get("inferwatch_model_info", 0) + version_folds
        for monitor in monitors:
            for metric, n in monitor.overflow_counts().items():
                counts[metric] = counts.get(metric, 0) + n
        return counts

    def drain(self) -> None:
        """Fold every monitor's pending calls into its state (what a scrape does first).

        One budget (:data:`~inferwatch.core.monitor_drain.DRAIN_BUDGET_SECONDS`) for all the
        monitors: each stopping at a budget of its own, a scrape of k model versions whose
        calls outpace the fold took k times as long, past Prometheus' scrape timeout. A
        monitor reached once the budget is spent folds nothing if calls came to it since the
        scrape began (they outpace the fold), and everything otherwise."""
        monitors = self.monitors()  # a worker of its own first (see there)
        finished = [monitor.budget_mark() for monitor in monitors]
        deadline = monitor_drain._clock() + monitor_drain.DRAIN_BUDGET_SECONDS
        for index, monitor in enumerate(monitors):
            # The first starts with the whole budget; each after it checks what is left
            # before it folds anything.
            monitor.drain(deadline=deadline,
                          finished_before=finished[index] if index else None)

    def drain_due(self, clock: float | None = None) -> int:
        """The background drain's pass: each monitor folds its pending calls if they are
        due (:meth:`Monitor.drain_due`); returns how many did. `clock` is monotonic seconds.

        >>> registry = Registry(drain_interval=3600)  # no background pass meanwhile
        >>> registry.monitor("m", "1").record_call(0.01, 0.5)
        >>> registry.drain_due(clock=0.0), registry.drain_due(clock=60.0)
        (0, 1)
        >>> registry.close()
        """
        catch_up_after_fork()  # a worker of its own first, as monitors() does
        return self.due_pass(clock)

    def due_pass(self, clock: float | None = None) -> int:
        """:meth:`drain_due` as the drain thread calls it, once a second: without the
        catch-up after a fork that skipped Python's hooks (a drain thread runs only in the
        process that started it, which caught up then; that look is a system call) and
        without the registry's lock. Most passes find nothing due.

        >>> registry = Registry(drain_interval=3600)
        >>> registry.monitor("m", "1").record_call(0.01, 0.5)
        >>> registry.due_pass(clock=0.0), registry.due_pass(clock=60.0)
        (0, 1)
        >>> registry.close()
        """
        clock = time.monotonic() if clock is None else clock
        drained = 0
        for monitor in self._monitor_list:  # a loop: a generator's frame costs each more
            if monitor.drain_due(clock):
                drained += 1
        return drained

    def enable_history(self) -> History:
        """Keep a bounded ring of recent totals per model version (the status page's
        sparklines), sampled by the background drain; returns it. Idempotent.

        >>> registry = Registry()
        >>> registry.enable_history() is registry.enable_history()
        True
        >>> registry.close()
        """
        with self._lock:
            if self.history is None:
                self.history = History()
            history = self.history
        self.ensure_drainer()
        return history

    def states(self) -> list:
        """Copies of every model state as a scrape sees them: the merged view of every
        worker in multi-worker mode, else this process's monitors (drained first)."""
        if self.multiproc is not None:
            return self.multiproc.merged_view().states
        self.drain()
        return [monitor.copy_state() for monitor in self.monitors()]

    def states_at(self, wall: float | None = None, *, model: str | None = None,
                  version: str | None = None,
                  read: Callable[[ModelState, float], object] | None = None
                  ) -> tuple[list, float]:
        """:meth:`states`, and the time to read their rolling windows (quantiles, drift)
        and this registry's history at: :meth:`window_time`, never earlier than where the
        windows are (each monitor's, or in multi-worker mode the merged view's ``at``).
        After the wall clock stepped back (NTP, a resumed VM), windows read at the wall
        time come out empty, and the newest history samples lie in its future.

        `model` and `version`, when given, keep only the states of that model (version):
        in one process only those are copied, so one model's page costs one model's copy
        whatever the number of versions monitored.

        With `read`, each state is not copied but read as ``read(state, time)``, under its
        monitor's lock in one process, and the list holds what it returns: a reader that
        takes only what it shows spares encoding every reference and sketch.

        >>> registry = Registry(drain_interval=3600)
        >>> registry.monitor("m", "1").record_call(0.01, 0.5)
        >>> states, at = registry.states_at()
        >>> [s.model for s in states]
        ['m']
        >>> registry.states_at(time.time() - 3600)[1] >= at  # stepped back an hour
        True
        >>> registry.close()
        """
        now = self.window_time(wall)

        def chosen(name: str, of: str) -> bool:
            return (model is None or name == model) and (version is None or of == version)

        if self.multiproc is not None:
            view = self.multiproc.merged_view()
            states = [state for state in view.states if chosen(state.model, state.version)]
            at = view.at
        else:
            monitors = self.monitors()
            wanted = [monitor for monitor in monitors if chosen(monitor.name, monitor.version)]
            for monitor in wanted:
                monitor.drain()
            # A monitor's windows went on past a step back the history never saw (no
            # sample yet, or none since): they are where it was last drained or scraped.
            at = max((monitor.window_time(now) for monitor in monitors), default=now)
        if at > now:
            now = at
            self._history_clock.move_to(now)
        if self.multiproc is not None:
            if read is not None:
                states = [read(state, now) for state in states]
        elif read is not None:
            states = [monitor.read_state(lambda state: read(state, now))
                      for monitor in wanted]
        else:
            states = [monitor.copy_state() for monitor in wanted]
        return states, now

    def follow_tracing(self) -> None:
        """Give trace ids to the monitors that follow OpenTelemetry (``exemplars`` left at
        None) once tracing is set up: an application that instruments its models at import
        time and sets its tracer provider later in ``main()`` gets exemplars all the same.
        A look at the provider per background pass; nothing once every monitor traces.

        >>> registry = Registry(drain_interval=3600)
        >>> registry.follow_tracing()  # no tracer provider set up here: nothing changes
        >>> registry.monitor("m", "1").traces
        False
        """
        from inferwatch.core.monitor_configure import follow_otel
        from inferwatch.core.tracing import otel_configured

        # A monitor whose traces its owner set (configure(traces=False)) is left as set.
        waiting = [m for m in self.monitors() if not m.traces and m.settings.exemplars is None
                   and not getattr(m, "_traces_pinned", False)]
        if waiting and otel_configured():
            for monitor in waiting:
                follow_otel(monitor)

    def _start_past_a_step_back(self, monitor: Monitor, others: list[Monitor]) -> None:
        """A new monitor's windows and load time start where the registry's other windows
        are, when the wall clock stepped back behind them: written at the wall clock, its
        windows would lie where no reader looks, and its page divide its calls by the step.
        Nothing moves otherwise (callers that pass their own times keep them)."""
        wall = time.time()
        ahead = max([self._history_clock.ahead(wall),
                     *(other.clock_ahead(wall) for other in others)])
        if ahead > wall:
            monitor.start_at(ahead)

    def window_time(self, wall: float | None = None) -> float:
        """The time this registry's history samples (and the windows they are read with)
        are at: the wall clock `wall` (default now), unless it stepped back (NTP, a resumed
        VM) behind the newest sample; then time goes on from there at the monotonic
        clock's pace, as each monitor's rolling windows do (:meth:`Monitor.window_time`).

        >>> registry = Registry(drain_interval=3600)
        >>> registry.window_time(1_000_000.0) == 1_000_000.0
        True
        >>> registry.window_time(1_000_000.0 - 3600) >= 1_000_000.0
        True
        >>> registry.close()
        """
        if wall is None or not -math.inf < wall < math.inf:
            wall = time.time()  # a NaN kept as the mark would never be left again
        return self._history_clock.read(wall)

    def sample_history(self, now: float) -> None:
        """One history sample per model version, when one is due (the drain calls this)."""
        history = self.history
        if history is None:
            return
        # Samples at a stepped-back wall time would pop every newer sample from the ring
        # (the last hour's sparklines gone), and each later round would be due at once.
        now = self.window_time(now)
        if not history.due(now):
            return
        if self.multiproc is not None:
            view = self.multiproc.merged_view()
            # The merged windows are at view.at, never earlier: the workers' windows went
            # on past a step back, and the view is read (and sampled) where they are.
            if view.at > now:
                now = view.at
                self._history_clock.move_to(now)
            history.record(view.states, now)
            return
        for monitor in self.monitors():
            monitor.drain()  # a sample counts every call, deferred ones included
            monitor.read_state(lambda state: history.record_one(state, now))

    def close(self) -> None:
        """Stop the drain thread for good (the monitors and their state stay readable, and
        a scrape still drains them); later calls never start it again."""
        with self._lock:
            self._closed = True
            self._stop.set()
            self._wake.set()

    def _after_fork(self) -> None:
        paused = self._paused_for_fork
        self._paused_for_fork = False
        was_draining = paused or (self._drainer is not None and not self._stop.is_set())
        self._lock = threading.Lock()
        self.pending_budget.renew_lock()
        self._drainer = None
        self._wake = threading.Event()
        # An Event has a lock of its own, held for a moment by set(): one that a parent's
        # thread was closing this registry with at fork time would hang the child's close().
        stopped = self._stop.is_set() and not paused
        self._stop = threading.Event()
        if stopped:
            self._stop.set()
        for cap in (self._model_cap, *self._version_caps.values()):
            cap.renew_lock()
            # The parent's folds are counted by the parent; a child that served nothing
            # must not export them again (multi-worker mode or not).
            cap.reset_counts()
        if self.history is not None:
            self.history.renew_lock()
        for monitor in self._monitors.values():
            monitor.renew_locks()
            monitor.wake_drain = drain_waker(self._wake)
        if self.multiproc is not None:
            self.multiproc.after_fork()
        else:
            # A forked child serving its own /metrics starts from zero, as a worker does in
            # multi-worker mode: re-exporting the parent's counts from every child would
            # count each call once per process.
            for monitor in self._monitors.values():
                try:
                    monitor.reset_after_fork()
                except Exception as exc:  # one monitor's extra must not leave the rest
                    faults.record("fork", exc)
            # Its history too: samples of the parent's totals would make the child's first
            # windows compare its own zero counts with them. (In multi-worker mode the
            # samples are of the merged view, which the fork leaves whole.)
            if self.history is not None:
                self.history.clear()
        if was_draining:
            # A pre-forked worker (gunicorn --preload) records calls but may never create
            # a monitor itself; without its own drain thread nothing would drain them.
            self.ensure_drainer()


def _check_model(name: object, version: object) -> None:
    """Refuse a model name or version that would make a meaningless series: an empty
    name (a ``model=""`` label reads as no label), a name that is not a string (``None``
    would become the model "None"), a version of a type whose ``str()`` changes on
    every restart (an object's address).

    >>> _check_model("fraud", 3)
    >>> _check_model("", None)
    Traceback (most recent call last):
    ...
    ValueError: inferwatch.monitor: name must be a non-empty string, got ''
    """
    if not isinstance(name, str) or not name.strip():
        # A blank name ("  ", an unset variable padded by a template) is no name either.
        raise ValueError(f"inferwatch.monitor: name must be a non-empty string, got {name!r}")
    if version is not None and not isinstance(version, str) and (
            isinstance(version, bool) or not isinstance(version, numbers.Real)):
        raise TypeError("inferwatch.monitor: version must be a string (or a number), "
                        f"got {type(version).__name__}")
    if not is_finite_version(version):
        # NaN or an infinity (a missing cell of a model registry's table read as a float)
        # names no version; each NaN would not even equal the one before it.
        raise ValueError(f"inferwatch.monitor: version must be a finite number, got {version!r}")


def is_finite_version(version: object) -> bool:
    """False for a NaN or infinite number; True for anything else (an integer of any size:
    ``math.isfinite`` would overflow on one past the float range)."""
    return not isinstance(version, numbers.Real) or isinstance(version, numbers.Integral) \
        or math.isfinite(version)


def version_text(version: str | numbers.Real) -> str:
    """The ``model_version`` label of a checked version, without outer whitespace: a
    version read from a file or an environment variable often ends in a newline, and
    ``"1.2\\n"`` must be the series of ``"1.2"``, not one beside it.

    >>> version_text(" 1.2\\n"), version_text(3), version_text("  ")
    ('1.2', '3', '')
    """
    return (version if isinstance(version, str) else str(version)).strip()


def _warn_settings_refused(name: str, version: str) -> None:
    """Say that instrument()'s settings came too late. Outside the registry's lock, and
    guarded: the application's logging (a filter or handler that raises, or that reads
    the registry) must not break the instrument() it is called from."""
    try:
        log.warning("inferwatch: %s version %s has recorded calls under other settings "
                    "already, so these settings are not applied; instrument() a model "
                    "before anything else records under its name and version", name, version)
    except Exception:  # the app's logging failed: the warning is lost, never the call
        pass


def _read_classes_with(monitor: Monitor,
                       class_names: Callable[[], Sequence[object] | None]) -> None:
    """Have `class_names` name `monitor`'s classes from here on.

    The calls recorded so far are drained first, with the reader in force: a notebook
    re-run or a server reloading a retrained model drops the old model, and its last calls,
    read with the new model's classes, would count a class it never had as unsupported, or
    number its probability columns when the new model has more. Outside the registry's
    lock, since a drain can take a while; a call the old model makes after this is read
    with the new classes: two models live under one name and version at once have one set
    of classes, the one instrumented last.
    """
    monitor.drain()
    monitor._class_names = class_names


def _versions_of(ref: weakref.ref[Registry], name: str) -> list[Monitor]:
    """Every monitored version of model `name`, newest first (a weak reference: a monitor
    must not keep its registry alive)."""
    registry = ref()
    if registry is None:
        return []
    return [m for m in reversed(registry.monitors()) if m.name == name]


def _reset_after_fork() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for registry in list(live_registries):
        # Every registry gets its new locks and zeroed counts even if one fails: an
        # exception out of an at-fork hook would skip the rest and reach nobody.
        try:
            registry._after_fork()
        except Exception as exc:
            faults.record("fork", exc)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=stop_drainers_before_fork,
                        after_in_parent=restart_drainers_after_fork_in_parent,
                        after_in_child=_reset_after_fork)


_default: Registry | None = None
_default_lock = threading.Lock()


def default_registry() -> Registry:
    """The process-wide registry that ``inferwatch.instrument()`` uses by default.

    With ``INFERWATCH_MULTIPROC_DIR`` set it runs in multi-worker mode; a directory that
    is missing or not writable raises ``inferwatch.multiproc.MultiprocError`` here, at
    startup, rather than serving one worker's counts as if they were everyone's.
    """
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                registry = Registry()
                if os.environ.get("INFERWATCH_MULTIPROC_DIR") is not None:
                    from inferwatch.multiproc.worker import attach

                    try:
                        attach(registry)
                    except BaseException:
                        registry.close()
                        raise
                _default = registry
    return _default


def monitor(name: str, version: str | None = None, *, registry: Registry | None = None) -> Monitor:
    """The Monitor behind a model name (and version), created on first use.

    Without `version`, the version most recently instrumented under `name`.
    """
    if registry is not None and not isinstance(registry, Registry):
        raise TypeError("inferwatch.monitor: registry must be an inferwatch Registry, "
                        f"got {type(registry).__name__}")
    return (registry or default_registry()).monitor(name, version)
