"""A clock that ticks a fixed step per reading, for the thread that made it only.

Tests that compare two runs' states bit for bit patch ``time.perf_counter`` with it, so
that every call's duration is the same in both runs. The patch is process-wide: another
thread reading the clock meanwhile (a background drain, a server an earlier test left in
this worker) would take ticks from the test's and shift its durations. Other threads read
the real clock.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable


def thread_ticks(step: float = 0.001) -> Callable[[], float]:
    """A ``perf_counter`` stand-in: 0, `step`, 2 * `step`, ... for this thread.

    >>> clock = thread_ticks()
    >>> clock(), clock(), clock()
    (0.0, 0.001, 0.002)
    """
    ticks = itertools.count()
    owner = threading.get_ident()
    real = time.perf_counter

    def clock() -> float:
        if threading.get_ident() != owner:
            return real()
        return next(ticks) * step

    return clock
