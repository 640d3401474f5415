"""Wall-clock time that does not step back: where rolling windows are written and read.

A wall clock stepped back (NTP, a resumed VM) would put the windows' next bucket behind
the ones they hold: the drift window refuses rows for buckets it has recycled, the sketches
read an empty window, and a history ring drops its newest samples. After such a step, time
goes on from where it was at the monotonic clock's pace, until the wall clock catches up.
Monitors, the registry's history and a worker's snapshots each keep one.

>>> clock = StepSafeClock()
>>> clock.read(1_000_000.0)
1000000.0
>>> clock.read(1_000_000.0 - 3600) >= 1_000_000.0
True
"""

from __future__ import annotations

import time

# A step back smaller than this is jitter (two readers a moment apart), not a step.
CLOCK_STEP_SECONDS = 1.0


class StepSafeClock:
    """The last time read, and the monotonic clock when it was read."""

    __slots__ = ("_mark",)

    def __init__(self) -> None:
        self._mark: tuple[float, float] | None = None

    def read(self, wall: float) -> float:
        """`wall` (a finite time in Unix seconds), or where time went on to since the last
        read if the wall clock stepped back behind it; the result becomes the mark."""
        mono = time.monotonic()
        mark = self._mark
        if mark is not None:
            went_on = mark[0] + max(0.0, mono - mark[1])
            if wall < went_on - CLOCK_STEP_SECONDS:
                wall = went_on
        if wall == wall:  # a NaN mark would never be left again
            self._mark = (wall, mono)
        return wall

    def ahead(self, wall: float) -> float:
        """What :meth:`read` would return for `wall`, without making it the mark."""
        mark = self._mark
        if mark is None:
            return wall
        went_on = mark[0] + max(0.0, time.monotonic() - mark[1])
        return went_on if wall < went_on - CLOCK_STEP_SECONDS else wall

    def move_to(self, wall: float) -> None:
        """Make `wall` the mark: the windows were read or written there."""
        self._mark = (wall, time.monotonic())

    def reset(self) -> None:
        self._mark = None
