"""A shadow model in a child process: a CPU-bound, hanging or crashing model stays there.

Each shadow worker thread in ``mode="process"`` owns one :class:`ProcessRunner`: a child
started with the ``spawn`` method (no locks or threads of the serving process are
inherited), holding an unpickled copy of the model. A call is sent over a pipe; past its
timeout the child is killed, and a child that dies (a segfault in native code) is
reported as crashed. Either way the next call starts a fresh child. A challenger that
cannot start in a child (its unpickling fails there: a class defined only in an interactive
``__main__``, a module missing from the child's path) is reported by the child, logged once,
and not started again before a back-off (doubling, capped) has passed: the calls meanwhile
are the challenger's error, without a child each.

The child is named :data:`CHILD_NAME`, and multiprocessing hands it that name before it
imports anything of the app's. Unpickling the challenger imports the app's module there
(and ``spawn`` runs a script's ``__main__`` again): what that module does as it loads, a
warm-up call, its own ``shadow()``, was done by the process that serves it already. So in
a shadow's child the multi-worker directory is ignored (nothing of the child is published
as a worker's), and a ``mode="process"`` shadow starts no child of its own: its calls end
as ``shutdown``, unseen, as the child's counts are (see :func:`in_shadow_child`).

>>> runner = ProcessRunner(pickle.dumps(abs))
>>> runner.call("__call__", (-2,), {}, timeout=60.0)[:2]
('ok', 2)
>>> runner.close()
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import inspect
import logging
import multiprocessing
import multiprocessing.process
import multiprocessing.resource_tracker
import multiprocessing.util
import os
import pickle
import signal
import sys
import threading
import time
from multiprocessing.reduction import ForkingPickler as _ForkingPickler
from typing import Any

from inferwatch.forking import CHILD_NAME, in_shadow_child

log = logging.getLogger("inferwatch")

_CONTEXT = multiprocessing.get_context("spawn")


def _renew_resource_tracker_lock() -> None:
    """Give a forked child a fresh lock of multiprocessing's resource tracker.

    Starting a spawn child takes that lock (to start the tracker process). A server that
    forks its workers while a shadow's thread is inside ``Process.start()`` (gunicorn
    ``--preload`` with a warm-up call at import) hands each worker the lock held by a thread
    the worker does not have: the worker's first shadow child then waits for it for good,
    and none of its calls is ever compared. The tracker process itself is shared with the
    parent, as a forked child always shares it.
    """
    tracker = getattr(multiprocessing.resource_tracker, "_resource_tracker", None)
    lock = getattr(tracker, "_lock", None)
    if lock is not None:
        tracker._lock = type(lock)()  # an RLock (3.11+) or a Lock, as the tracker made it


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_resource_tracker_lock)
START_TIMEOUT_SECONDS = 120.0  # a child imports the model's stack (numpy, sklearn, ...)
# After a child failed to start, the next try waits this long, doubled on each failure up
# to the cap: a spawn costs seconds, and a challenger that cannot load will not load on
# the next sampled call either.
START_RETRY_SECONDS = 1.0
START_RETRY_MAX_SECONDS = 300.0
_REASON_CHARS = 500
_exiting = False


def _note_exit() -> None:
    global _exiting
    _exiting = True


# Registered after multiprocessing's own exit handler, so run before it: once that handler
# has killed the children, a worker must not spawn a new one into a finalising interpreter
# (the child fails to read its start-up data and prints a traceback).
atexit.register(_note_exit)


def _child_main(conn: Any, model_bytes: bytes) -> None:
    # Ctrl-C in a terminal signals the whole process group: the serving process decides
    # when its shadow stops; its child must not die mid-call with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A serving process killed outright (the OOM killer, SIGKILL) closes no pipe this child
    # would notice while a hanging or CPU-bound call runs: it would run on, orphaned. The
    # kernel's parent-death signal reaches a child stuck in native code that holds the GIL;
    # the watchdog thread is the fallback where that signal is not to be had.
    _die_with_parent()
    threading.Thread(target=_exit_with_parent, name="inferwatch-shadow-parent",
                     daemon=True).start()
    try:
        model = pickle.loads(model_bytes)
    except BaseException as exc:  # reported to the parent, which backs off and logs it once
        _reply(conn, ("load_failed", type(exc).__name__,
                      f"{type(exc).__name__}: {exc}"[:_REASON_CHARS]))
        return
    if not _reply(conn, ("ready", None, 0.0)):
        return
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        start = time.perf_counter()
        try:
            message = pickle.loads(raw)
        except BaseException as exc:  # an input this process cannot rebuild: its error only
            if not _reply(conn, ("error", type(exc).__name__, time.perf_counter() - start)):
                return
            continue
        if message is None:
            return
        method, args, kwargs = message
        start = time.perf_counter()
        try:
            target = model if method == "__call__" else getattr(model, method)
            result = target(*args, **kwargs)
            if inspect.isawaitable(result):  # an async challenger: the parent's timeout
                result = asyncio.run(_awaitable(result))  # kills the child if it hangs
            reply = ("ok", result)
        except BaseException as exc:  # the parent records it as the shadow's error
            reply = ("error", type(exc).__name__)
        duration = time.perf_counter() - start
        try:
            conn.send((*reply, duration))
        except Exception as exc:  # an unpicklable result, or the parent gone
            if not _reply(conn, ("error", type(exc).__name__, duration)):
                return


def _reply(conn: Any, message: tuple) -> bool:
    """Send `message` to the parent; False when it cannot hear it any more (it closed the
    pipe: killed, shut down, or timed this call out). The child then ends quietly: a
    traceback on the serving process's stderr would report no fault of anyone's."""
    try:
        conn.send(message)
    except Exception:
        return False
    return True


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Have the kernel kill this child when the thread that started it ends (Linux only).

    The thread is a shadow worker, which ends only when its shadow or the whole process
    does, and the child is killed then anyway."""
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        if prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return
    except Exception:  # no prctl (a libc without it, a sandbox): the watchdog still runs
        return
    # A parent that died before the signal was set never sends it: this child has been
    # handed to another process by now.
    if os.getppid() != parent.pid:
        os._exit(1)


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()  # returns once the parent has died
        os._exit(1)


async def _awaitable(awaitable: Any) -> Any:
    return await awaitable


POLL_SLICE_SECONDS = 86_400.0  # the most one poll may wait: the OS refuses ~25 days and up


def _answered(conn: Any, timeout: float) -> bool:
    """Whether `conn` has a reply within `timeout` seconds; a timeout past what one poll
    takes (``inf`` included) is waited out in slices."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if conn.poll(max(0.0, min(left, POLL_SLICE_SECONDS))):
            return True
        if left <= POLL_SLICE_SECONDS:
            return False


class StartGate:
    """What the runners of one shadow share about starting its challenger: after a failed
    start no child starts before the back-off has passed (then one runner tries while the
    others wait for its outcome), and the first failure is logged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failures = 0
        self._retry_at = 0.0
        self._trying = False
        self._held: tuple[str, Any] = ("crashed", None)
        self._logged = False

    def held(self) -> tuple[str, Any, float] | None:
        """The reply for a call that must not start a child now, or None to start one."""
        with self._lock:
            if not self.failures:
                return None  # never failed: every runner starts its own child
            if self._trying or time.monotonic() < self._retry_at:
                return (*self._held, 0.0)
            self._trying = True
            return None

    def started(self) -> None:
        with self._lock:
            self.failures, self._trying = 0, False

    def abandoned(self) -> None:
        """A start cut off by shutdown: no verdict on the model."""
        with self._lock:
            self._trying = False

    def failed(self, status: str, value: Any, reason: str) -> tuple[str, Any, float]:
        with self._lock:
            delay = min(START_RETRY_SECONDS * 2.0 ** min(self.failures, 64),
                        START_RETRY_MAX_SECONDS)
            self.failures += 1
            self._retry_at = time.monotonic() + delay
            self._trying = False
            self._held = (status, value)
            first, self._logged = not self._logged, True
        if first:
            log.warning("inferwatch: the shadow model cannot start in its child process (%s); "
                        "its calls are dropped and counted, and a new child is tried after "
                        "%.0f s, then at growing intervals up to %.0f s", reason, delay,
                        START_RETRY_MAX_SECONDS)
        return status, value, 0.0


class ProcessRunner:
    """One child process running one model; restarted after a timeout or a crash."""

    def __init__(self, model_bytes: bytes, gate: StartGate | None = None) -> None:
        self._model_bytes = model_bytes
        self._gate = gate if gate is not None else StartGate()
        self._process: Any = None
        self._conn: Any = None
        # Shut down for good: no new child starts. A runner made in a shadow's child is so
        # from the start (in_shadow_child()).
        self._shut = in_shadow_child()

    def _start(self) -> tuple[str, Any, float] | None:
        held = self._gate.held()
        if held is not None:
            return held
        # The previous child, dead now, is reaped and its pipe closed before the next starts.
        self.close()
        ends: list[Any] = []
        try:
            ends.extend(_CONTEXT.Pipe())
            parent, child = ends
            process = _CONTEXT.Process(target=_child_main, args=(child, self._model_bytes),
                                       name=CHILD_NAME, daemon=True)
            process.start()
        except Exception as exc:
            # Out of file descriptors or processes (EMFILE, EAGAIN): the next sampled call
            # would fail the same way, so it waits out the back-off as a child that could
            # not load does, and no descriptor of this try is left open.
            for end in ends:
                end.close()
            if self._shut or _exiting:
                self._gate.abandoned()
                return "shutdown", None, 0.0
            return self._gate.failed("error", type(exc).__name__,
                                     f"{type(exc).__name__}: {exc}"[:_REASON_CHARS])
        child.close()
        self._process, self._conn = process, parent
        if self._shut:  # shut down while this child started: it must not outlive the shadow
            self.close()
            self._gate.abandoned()
            return "shutdown", None, 0.0
        reply: Any = None
        try:
            if parent.poll(START_TIMEOUT_SECONDS):
                reply = parent.recv()
        except (EOFError, OSError):
            pass
        if isinstance(reply, tuple) and reply and reply[0] == "ready":
            self._gate.started()
            return None
        self.close()
        if self._shut or _exiting:  # killed by close() or by the interpreter's exit
            self._gate.abandoned()
            return "shutdown", None, 0.0
        if isinstance(reply, tuple) and len(reply) == 3 and reply[0] == "load_failed":
            return self._gate.failed("error", reply[1], reply[2])
        if reply is None and process.exitcode is None:
            why = f"not ready within {START_TIMEOUT_SECONDS:.0f} s"
        else:
            why = f"it exited with code {process.exitcode} before it was ready"
        return self._gate.failed("crashed", None, why)

    def call(self, method: str, args: tuple, kwargs: dict,
             timeout: float) -> tuple[str, Any, float]:
        """("ok", result, seconds), ("error", exception class name, seconds), or
        ("timeout" | "crashed", None, seconds waited)."""
        if self._shut:
            return "shutdown", None, 0.0
        if self._process is None or not self._process.is_alive():
            if _exiting:  # cut off by the interpreter's exit, as by close(): no crash
                return "shutdown", None, 0.0
            failed = self._start()
            if failed is not None:
                return failed
        conn = self._conn
        start = time.perf_counter()
        try:
            # Pickled apart from the send: any input that cannot travel (a __reduce__ that
            # raises anything, nesting past the recursion limit) is the call's error, and
            # nothing of it has reached the pipe.
            message = _ForkingPickler.dumps((method, args, kwargs))
        except Exception as exc:
            return "error", type(exc).__name__, 0.0
        # The shadow's close() may kill the child (and close its pipe) from another thread
        # at any point of the call: the call is then dropped as shutdown, not as a crash.
        try:
            conn.send_bytes(message)
        except (OSError, EOFError, AttributeError):
            return self._failed("crashed", start)
        try:
            if not _answered(conn, timeout):
                return self._failed("timeout", start)
            reply = conn.recv_bytes()
        except (EOFError, OSError, AttributeError):
            return self._failed("crashed", start)
        try:
            status, value, duration = pickle.loads(reply)
        except Exception as exc:  # a result this process cannot rebuild: the call's error
            return "error", type(exc).__name__, time.perf_counter() - start
        return status, value, duration

    def _failed(self, status: str, start: float) -> tuple[str, Any, float]:
        self.close()
        # At the interpreter's exit, multiprocessing's own exit handler kills the children:
        # a call under way is cut off by shutdown, not crashed.
        shut = self._shut or _exiting
        return "shutdown" if shut else status, None, time.perf_counter() - start

    def shutdown(self) -> None:
        """Kill the child for good: a call under way ends as ``shutdown``, and no later
        call starts a new child."""
        self._shut = True
        self.close()

    def close(self) -> None:
        """Kill the child, if any (a later call starts a new one)."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join(5.0)

    def forget(self) -> None:
        """In a forked child: the parent's process is not ours to kill."""
        process, self._process, self._conn = self._process, None, None
        # multiprocessing lists it among this process's children too: its exit handler
        # would kill the parent's child when the forked one exits the ordinary way.
        if process is not None:
            multiprocessing.process._children.discard(process)  # type: ignore[attr-defined]

    @staticmethod
    def exiting() -> bool:
        """The interpreter is exiting: its worker stops, and no new child may start."""
        return _exiting
