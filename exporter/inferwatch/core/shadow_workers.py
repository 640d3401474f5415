"""A shadow's worker threads: started on its first sampled call, stopped before a fork and
started again in the parent, each taking calls off the queue until told to stop.

:class:`ShadowWorkers` is a base of :class:`~inferwatch.core.shadow_runtime.Shadow`, apart
because the threads' lifecycle (and the fork hooks every live shadow shares) reads apart
from what a call does once a worker has taken it.

>>> IDLE_WAKE_SECONDS, FORK_STOP_SECONDS
(1.0, 1.0)
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from inferwatch import faults
from inferwatch.core import shadow_lifetime
from inferwatch.core.shadow_async import close_thread_loop
from inferwatch.forking import join_before_fork

if TYPE_CHECKING:
    from inferwatch.core.shadow_runtime import Shadow

# How long an idle worker sleeps before it looks at the queue (and its stop) again.
IDLE_WAKE_SECONDS = 1.0
# How long a fork waits for the worker threads to stop (all shadows' together). A challenger
# call takes what it takes: past this the fork goes ahead with its worker running, as it
# would without the stop, and that worker ends once its call does.
FORK_STOP_SECONDS = 1.0


class ShadowWorkers:
    """The worker threads of a shadow (its queue, locks and counters are
    :class:`~inferwatch.core.shadow_runtime.Shadow`'s)."""

    closed: bool
    mode: str
    workers: int
    _model_bytes: bytes

    def _start_workers(self) -> None:
        with self._done_lock:
            # A call sampled as close() ran must not start workers (nor child processes)
            # that nothing would ever stop.
            if self.closed or self._started_pid == os.getpid():
                return
            self._stop = threading.Event()
            self._threads = []
            self._runners = []
            self._no_workers = False
            gate = None
            if self.mode == "process":
                from inferwatch.core.shadow_process import ProcessRunner, StartGate

                gate = StartGate()  # a challenger that cannot load: no worker respawns it
            for index in range(self.workers):
                runner = None
                if self.mode == "process":
                    runner = ProcessRunner(self._model_bytes, gate)
                    self._runners.append(runner)
                self._start_worker(index, runner)
            self._started_pid = os.getpid()

    def _start_worker(self, index: int, runner: Any) -> None:
        thread = threading.Thread(target=_work, args=(weakref.ref(self), runner, self._stop),
                                  name=f"inferwatch-shadow-{index}", daemon=True)
        self._threads.append(thread)
        try:
            thread.start()
        except RuntimeError:
            # "can't create new thread at interpreter shutdown". The challenger is not
            # called in the caller's thread instead: a hung challenger would then hang
            # the exit, which a worker thread never does.
            self._threads.remove(thread)
            self._no_workers = True

    def _stop_workers_for_fork(self) -> list[threading.Thread]:
        """Before a fork: tell the workers to stop after the call in hand, and return those
        to be joined; none when this process has none, or when a worker forks (from the
        challenger's call). Takes no lock: the forking thread may hold any of them.
        ``mode="process"`` workers are left running: the kernel kills a challenger's child
        process when the thread that started it ends, and a fork must not cost a reload.

        A thread running at fork time is what CPython 3.12+ warns about ("This process is
        multi-threaded, use of fork() may lead to deadlocks in the child"). The queue stays
        as it is, for the workers started again after the fork (a child starts with an
        empty queue and its own workers).
        """
        threads = self._threads
        if self.closed or self.mode == "process" or self._started_pid != os.getpid() \
                or self._paused_for_fork or threading.current_thread() in threads:
            return []
        self._paused_for_fork = True
        self._stop.set()
        self._wake.set()
        return [thread for thread in threads if thread.is_alive()]

    def _restart_workers_after_fork_in_parent(self) -> None:
        if not self._paused_for_fork:
            return
        self._paused_for_fork = False
        # Bounded: the forking thread itself may hold it. Past the bound the workers are
        # started by a thread of their own, once the lock is free.
        if self._done_lock.acquire(timeout=FORK_STOP_SECONDS):
            try:
                self._restart_workers()
            finally:
                self._done_lock.release()
        else:
            threading.Thread(target=self._restart_workers_when_free,
                             name="inferwatch-shadow-restart", daemon=True).start()

    def _restart_workers_when_free(self) -> None:
        try:
            with self._done_lock:
                self._restart_workers()
        except Exception as exc:
            faults.record("shadow", exc)

    def _restart_workers(self) -> None:
        """The workers again (under the done lock)."""
        if self.closed or self._started_pid != os.getpid():
            return
        self._stop = threading.Event()
        # One that did not stop in time ends after its call; kept, so that a close() from
        # its challenger's call still knows it for a worker.
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        for index in range(self.workers):
            self._start_worker(index, None)
        self._wake.set()  # what was queued before or during the fork is taken at once


def _stop_workers_before_fork() -> None:
    """Stop every shadow's workers before a fork, waiting at most FORK_STOP_SECONDS for all;
    one still in a challenger's call then is left running."""
    stopping: list[threading.Thread] = []
    for shadow in list(shadow_lifetime.live_shadows):
        try:
            stopping += shadow._stop_workers_for_fork()
        except Exception as exc:
            faults.record("fork", exc)
    # An idle worker that cleared the wake just before the stop waits out its idle wait:
    # woken again until it ends.
    join_before_fork(stopping, FORK_STOP_SECONDS, nudge=_wake_paused_shadows,
                     on_fault=lambda exc: faults.record("fork", exc))


def _wake_paused_shadows() -> None:
    for shadow in list(shadow_lifetime.live_shadows):
        if shadow._paused_for_fork:
            shadow._wake.set()


def _restart_workers_after_fork_in_parent() -> None:
    for shadow in list(shadow_lifetime.live_shadows):
        try:
            shadow._restart_workers_after_fork_in_parent()
        except Exception as exc:
            faults.record("fork", exc)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_stop_workers_before_fork,
                        after_in_parent=_restart_workers_after_fork_in_parent)


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
            with shadow._bytes_lock:
                shadow._bytes_out += item[-1]
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
