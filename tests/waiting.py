"""Waiting in tests for something another thread or process does: polled until it holds,
with a deadline that is only a safety net (a condition that holds ends the wait at once)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 60.0, what: str = "condition",
               interval: float = 0.02) -> T:
    """The first truthy value of `condition()`, polled every `interval` seconds; fails the
    test (AssertionError naming `what`) when none comes within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
