"""A registry's background drain: the thread that folds its monitors' calls once a
second, stopped before a fork and started again in the parent, and the drain of live
registries that an event log's flush and the exit use.

:class:`DrainThread` is a base of :class:`~inferwatch.core.registry.Registry`; the
registry registers the fork hooks below with its own (their order is what it was).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from inferwatch import faults
from inferwatch.forking import catch_up_after_fork, forked_without_hooks, join_before_fork

if TYPE_CHECKING:
    from inferwatch.core.monitor import Monitor
    from inferwatch.core.registry import Registry

# How long a fork waits for the drain threads to stop. A pass stuck on a lock the forking
# thread holds, or a long one, must not hold a worker's start up: past this the fork goes
# ahead with the thread running, as it would without the stop.
FORK_STOP_SECONDS = 1.0

# Every registry not yet collected: the fork hooks and drain_live() go through them.
live_registries: weakref.WeakSet[Registry] = weakref.WeakSet()


class DrainThread:
    """The drain thread of a registry (whose lock, events and monitors are its own)."""

    _closed: bool
    _lock: threading.Lock
    _stop: threading.Event
    _wake: threading.Event
    _drainer: threading.Thread | None
    _drainer_pid: int
    _paused_for_fork: bool
    drain_interval: float

    def ensure_drainer(self) -> None:
        """Start the drain thread, again in a forked child (threads do not survive fork)."""
        self._start_drainer()

    def _start_drainer(self, lock_timeout: float = -1) -> None:
        """:meth:`ensure_drainer`, giving up after `lock_timeout` seconds (-1: never) on a
        registry lock that another thread holds."""
        pid = os.getpid()
        if forked_without_hooks(pid):
            catch_up_after_fork(pid)  # its drain thread is among what it starts again
        if self._closed or self._drainer_runs(pid):
            return
        if not self._lock.acquire(timeout=lock_timeout):
            return  # the next monitor() starts it
        try:
            if self._closed or self._drainer_runs(pid):
                return
            self._stop = threading.Event()
            # The thread holds only a weak reference, so a dropped registry stops its thread.
            thread = threading.Thread(target=_drain_loop,
                                      args=(weakref.ref(self), self._stop, self._wake,
                                            self.drain_interval),
                                      name="inferwatch-drain", daemon=True)
            self._drainer, self._drainer_pid = thread, pid
            try:
                thread.start()
            except RuntimeError:
                # No thread once the interpreter shuts down (Python 3.12: a model first
                # used in an exit hook). Its calls wait for a drain that someone asks for:
                # the exit's own (a multi-worker snapshot, an event log), or a scrape.
                self._drainer = None
        finally:
            self._lock.release()

    def _drainer_runs(self, pid: int) -> bool:
        """Whether this process has a drain thread that will go on draining (one told to
        stop for a fork, still finishing its pass, will not)."""
        drainer = self._drainer
        return drainer is not None and self._drainer_pid == pid and drainer.is_alive() \
            and not self._stop.is_set()

    def _stop_drainer_for_fork(self) -> threading.Thread | None:
        """Before a fork: tell the drain thread to stop, and return it to be joined; None
        when there is none running, or when it is the thread that forks.

        A thread running at fork time is what CPython 3.12+ warns about ("This process is
        multi-threaded, use of fork() may lead to deadlocks in the child"), and its locks
        are copied into the child as it held them. Takes no lock of the registry's: the
        forking thread may hold it.
        """
        drainer = self._drainer
        if self._closed or drainer is None or self._drainer_pid != os.getpid() \
                or drainer is threading.current_thread() or not self._drainer_runs(os.getpid()):
            return None
        self._paused_for_fork = True
        self._stop.set()
        self._wake.set()
        return drainer

    def _restart_after_fork_in_parent(self) -> None:
        if self._paused_for_fork:
            self._paused_for_fork = False
            # Bounded: the forking thread itself may hold the registry's lock.
            self._start_drainer(lock_timeout=FORK_STOP_SECONDS)


def drain_waker(wake: threading.Event) -> Callable[[], None]:
    """What a monitor calls when its pending list is full: wake the drain thread. The
    event's own, not the registry's: a monitor must not keep its registry (and its drain
    thread) alive through a reference cycle.

    In a process forked without Python's at-fork hooks no drain thread runs: this, once a
    list fills there, is what starts one (with the rest of the worker's own state),
    without a check on every call."""
    def wake_drain() -> None:
        if forked_without_hooks():
            catch_up_after_fork()
        wake.set()

    return wake_drain


def _drain_loop(ref: weakref.ref[Registry], stop: threading.Event, wake: threading.Event,
                interval: float) -> None:
    while not stop.is_set():
        wake.wait(interval)
        if stop.is_set():
            return  # the wake stays set: a thread started after a fork drains at once
        wake.clear()
        registry = ref()
        if registry is None:
            return
        try:
            if registry.multiproc is None:
                registry.due_pass()
            else:
                # A worker's snapshot is what other workers' scrapes read: it folds
                # everything before it publishes, as a scrape of its own would.
                registry.drain()
            if registry.multiproc is not None:
                registry.multiproc.tick()
            registry.sample_history(time.time())
            registry.follow_tracing()
        except Exception as exc:  # drain() and tick() already guard; this is the last line
            faults.record("drain", exc)
        del registry


def drain_live(which: Callable[[Monitor], bool], timeout: float | None) -> bool:
    """Fold the pending calls of every monitor of every live registry that `which` picks,
    waiting at most `timeout` seconds (None: as long as it takes); True when all are folded.
    Never raises.

    What an event log's flush and exit use, so that the events of calls already made are
    emitted without waiting for the background drain. The drain runs on a thread of its
    own: a monitor lock held by a stuck thread (or by the caller itself) costs the
    timeout, never a hung flush or exit.

    >>> from inferwatch.core.registry import Registry
    >>> registry = Registry(drain_interval=3600)
    >>> registry.monitor("m", "1").record_call(0.01, 0.5)
    >>> drain_live(lambda monitor: monitor.name == "m", timeout=5.0)
    True
    >>> registry.monitor("m", "1").pending()
    0
    >>> registry.close()
    """
    def drain_picked() -> None:
        try:
            for registry in list(live_registries):
                for picked in registry.monitors():
                    if which(picked):
                        picked.drain()
        except Exception as exc:  # a bug of ours: the flush goes on with what was folded
            faults.record("drain", exc)

    try:
        drainer = threading.Thread(target=drain_picked, name="inferwatch-flush-drain",
                                   daemon=True)
        drainer.start()
    except Exception:  # no thread to be had (Python 3.12 at exit): drain here, bounded
        return _drain_here(which, timeout)
    drainer.join(timeout)
    return not drainer.is_alive()


def _drain_here(which: Callable[[Monitor], bool], timeout: float | None) -> bool:
    """:func:`drain_live` in the calling thread: each monitor picked is drained once its
    locks are had within the time left (in the order a drain takes them), else skipped.
    A lock held for good by a stuck thread costs the timeout, never the exit."""
    deadline = None if timeout is None else time.monotonic() + timeout
    done = True
    try:
        for registry in list(live_registries):
            for picked in registry.monitors():
                if not which(picked):
                    continue
                locks = []
                for lock in (picked._take_lock, picked._lock):
                    left = -1 if deadline is None else max(0.0, deadline - time.monotonic())
                    if not lock.acquire(timeout=left):
                        break
                    locks.append(lock)
                try:
                    if len(locks) == 2:
                        picked.drain()  # the locks are reentrant: it takes them again
                    else:
                        done = False
                finally:
                    for lock in reversed(locks):
                        lock.release()
    except Exception as exc:  # a bug of ours: the flush goes on with what was folded
        faults.record("drain", exc)
    return done


def stop_drainers_before_fork() -> None:
    """Stop every drain thread before a fork, waiting at most FORK_STOP_SECONDS for all.

    A fork from a drain thread leaves that thread running; one that does not stop in time
    is left running too (the child renews its locks either way, as it always has).
    """
    stopping: list[threading.Thread] = []
    for registry in list(live_registries):
        try:
            drainer = registry._stop_drainer_for_fork()
        except Exception as exc:
            faults.record("fork", exc)
            continue
        if drainer is not None:
            stopping.append(drainer)
    join_before_fork(stopping, FORK_STOP_SECONDS,
                     on_fault=lambda exc: faults.record("fork", exc))


def restart_drainers_after_fork_in_parent() -> None:
    for registry in list(live_registries):
        try:
            registry._restart_after_fork_in_parent()
        except Exception as exc:
            faults.record("fork", exc)
