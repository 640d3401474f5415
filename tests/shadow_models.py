"""Challengers that misbehave, importable by the child process a shadow runs them in."""

from __future__ import annotations

import ctypes
import os
import threading
import time

import numpy as np


class Summing:
    """Answers each row's sum, whatever the rows' shape."""

    def predict(self, X=None):
        return np.asarray(X, dtype=float).reshape(len(X), -1).sum(1)


class Hanging(Summing):
    """Writes its pid to `marker` when a call begins, then never answers (in its child)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def predict(self, X=None):
        with open(self.marker, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
        return super().predict(X)


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
