"""Module-level locks that a forked child gets fresh.

A lock another thread held when a model server forked (gunicorn, ``multiprocessing``) is
never released in the child, whose copy of that thread does not exist: the first use
there would wait for good. Each such lock is made anew in the child, right after the fork.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any


def renew_at_fork(namespace: dict[str, Any], name: str,
                  factory: Callable[[], Any] = threading.Lock) -> None:
    """Replace ``namespace[name]`` (a module's ``globals()``) with ``factory()`` in every
    child forked from now on; code that reads the global at each use gets the new one.

    >>> _lock = threading.Lock()
    >>> renew_at_fork(globals(), "_lock")
    """
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: namespace.__setitem__(name, factory()))
