"""Challengers that misbehave, importable by the child process a shadow runs them in."""

from __future__ import annotations

import ctypes
import threading
import time


class Raising:
    """Fails every call."""

    classes_ = None

    def predict(self, rows):
        raise RuntimeError("challenger broke")


class Sleeping:
    """Answers, but only after `seconds`."""

    def __init__(self, model, seconds: float) -> None:
        self.model = model
        self.seconds = seconds
        self.classes_ = getattr(model, "classes_", None)

    def predict(self, rows):
        time.sleep(self.seconds)
        return self.model.predict(rows)


class Segfaulting:
    """Reads address zero: the process dies of SIGSEGV."""

    def predict(self, rows):
        return ctypes.string_at(0)


class Gated:
    """Blocks in predict until `gate` is set; `entered` says a call is inside."""

    def __init__(self, model) -> None:
        self.model = model
        self.classes_ = model.classes_
        self.entered = threading.Event()
        self.gate = threading.Event()

    def predict(self, rows):
        self.entered.set()
        self.gate.wait()
        return self.model.predict(rows)


class AsyncModel:
    """An async server's model: `predict` is a coroutine function around a fitted model."""

    def __init__(self, model, seconds: float = 0.0) -> None:
        self.model = model
        self.seconds = seconds
        self.classes_ = getattr(model, "classes_", None)

    async def predict(self, rows):
        import asyncio

        await asyncio.sleep(self.seconds)
        return self.model.predict(rows)
