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
            message = conn.recv()
        except (EOFError, OSError):
            return
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


class ProcessRunner:
    """One child process running one model; restarted after a timeout or a crash."""

    def __init__(self, model_bytes: bytes) -> None:
        self._model_bytes = model_bytes
        self._process: Any = None
        self._conn: Any = None

    def _start(self) -> str | None:
        parent, child = _CONTEXT.Pipe()
        process = _CONTEXT.Process(target=_child_main, args=(child, self._model_bytes),
                                   name="inferwatch-shadow", daemon=True)
        process.start()
        child.close()
        self._process, self._conn = process, parent
        try:
            if parent.poll(START_TIMEOUT_SECONDS) and parent.recv()[0] == "ready":
                return None
        except (EOFError, OSError):
            pass
        self.close()
        return "crashed"

    def call(self, method: str, args: tuple, kwargs: dict,
             timeout: float) -> tuple[str, Any, float]:
        """("ok", result, seconds), ("error", exception class name, seconds), or
        ("timeout" | "crashed", None, seconds waited)."""
        if self._process is None or not self._process.is_alive():
            if _exiting:
                return "crashed", None, 0.0
            failed = self._start()
            if failed is not None:
                return failed, None, 0.0
        start = time.perf_counter()
        try:
            self._conn.send((method, args, kwargs))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            return "error", type(exc).__name__, 0.0  # an input that cannot travel
        except (OSError, EOFError):
            self.close()
            return "crashed", None, time.perf_counter() - start
        try:
            if not self._conn.poll(timeout):
                self.close()
                return "timeout", None, time.perf_counter() - start
            status, value, duration = self._conn.recv()
        except (EOFError, OSError):
            self.close()
            return "crashed", None, time.perf_counter() - start
        return status, value, duration

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
