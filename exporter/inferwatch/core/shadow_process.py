"""A shadow model in a child process: a CPU-bound, hanging or crashing model stays there.

Each shadow worker thread in ``mode="process"`` owns one :class:`ProcessRunner`: a child
started with the ``spawn`` method (no locks or threads of the serving process are
inherited), holding an unpickled copy of the model. A call is sent over a pipe; past its
timeout the child is killed, and a child that dies (a segfault in native code) is
reported as crashed. Either way the next call starts a fresh child.

>>> runner = ProcessRunner(pickle.dumps(abs))
>>> runner.call("__call__", (-2,), {}, timeout=60.0)[:2]
('ok', 2)
>>> runner.close()
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import multiprocessing
import multiprocessing.util
import pickle
import time
from multiprocessing.reduction import ForkingPickler as _ForkingPickler
from typing import Any

_CONTEXT = multiprocessing.get_context("spawn")
START_TIMEOUT_SECONDS = 120.0  # a child imports the model's stack (numpy, sklearn, ...)
_exiting = False


def _note_exit() -> None:
    global _exiting
    _exiting = True


# Registered after multiprocessing's own exit handler, so run before it: once that handler
# has killed the children, a worker must not spawn a new one into a finalising interpreter
# (the child fails to read its start-up data and prints a traceback).
atexit.register(_note_exit)


def _child_main(conn: Any, model_bytes: bytes) -> None:
    model = pickle.loads(model_bytes)
    conn.send(("ready", None, 0.0))
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        start = time.perf_counter()
        try:
            message = pickle.loads(raw)
        except BaseException as exc:  # an input this process cannot rebuild: its error only
            conn.send(("error", type(exc).__name__, time.perf_counter() - start))
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
        except Exception as exc:  # an unpicklable result
            conn.send(("error", type(exc).__name__, duration))


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


class ProcessRunner:
    """One child process running one model; restarted after a timeout or a crash."""

    def __init__(self, model_bytes: bytes) -> None:
        self._model_bytes = model_bytes
        self._process: Any = None
        self._conn: Any = None
        self._shut = False  # shut down for good: no new child starts

    def _start(self) -> str | None:
        parent, child = _CONTEXT.Pipe()
        process = _CONTEXT.Process(target=_child_main, args=(child, self._model_bytes),
                                   name="inferwatch-shadow", daemon=True)
        process.start()
        child.close()
        self._process, self._conn = process, parent
        if self._shut:  # shut down while this child started: it must not outlive the shadow
            self.close()
            return "shutdown"
        try:
            if parent.poll(START_TIMEOUT_SECONDS) and parent.recv()[0] == "ready":
                return None
        except (EOFError, OSError):
            pass
        self.close()
        return "shutdown" if self._shut else "crashed"

    def call(self, method: str, args: tuple, kwargs: dict,
             timeout: float) -> tuple[str, Any, float]:
        """("ok", result, seconds), ("error", exception class name, seconds), or
        ("timeout" | "crashed", None, seconds waited)."""
        if self._shut:
            return "shutdown", None, 0.0
        if self._process is None or not self._process.is_alive():
            if _exiting:
                return "crashed", None, 0.0
            failed = self._start()
            if failed is not None:
                return failed, None, 0.0
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
        return "shutdown" if self._shut else status, None, time.perf_counter() - start

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
        self._process = self._conn = None

    @staticmethod
    def exiting() -> bool:
        """The interpreter is exiting: its worker stops, and no new child may start."""
        return _exiting
