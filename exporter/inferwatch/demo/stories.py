"""What the demo's scripted models share: a story of timed phases, played at a steady pace.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Phase:
...     name: str
...     seconds: float
>>> [p.seconds for p in scaled((Phase("a", 60.0), Phase("b", 30.0)), speed=3)]
[20.0, 10.0]
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

P = TypeVar("P")


def scaled(story: Sequence[P], speed: float) -> list[P]:
    """`story`'s phases (dataclasses with a `seconds` field), each `speed` times shorter."""
    # inf passes `> 0` but makes every phase last no time: a looping story then printed
    # phase lines as fast as it could, into a log that grew without bound.
    if not (speed > 0 and math.isfinite(speed)):
        raise ValueError(f"speed must be a number above zero, got {speed!r}")
    phases = [dataclasses.replace(phase, seconds=phase.seconds / speed)  # type: ignore[type-var]
              for phase in story]
    # A speed so small (1e-320) that a phase lasts inf seconds: the story never moved on,
    # and the model's rolling window, as long, ended the process in a traceback.
    if not all(math.isfinite(phase.seconds) for phase in phases):  # type: ignore[attr-defined]
        raise ValueError(f"speed {speed!r} is too small: a phase would never end")
    return phases


def play_story(story: Sequence[Any], act: Callable[[Any], object], *, per_second: float,
               stop: threading.Event | None = None,
               on_phase: Callable[[Any], None] | None = None,
               hold: threading.Event | None = None) -> int:
    """Call ``act(phase)`` `per_second` times a second through every phase, until `stop`;
    returns the number of acts. With `hold`, the first phase also lasts until `hold` is set
    (a test or a signal decides when the story moves on)."""
    stop = stop or threading.Event()
    acts = 0
    for index, phase in enumerate(story):
        if on_phase is not None:
            on_phase(phase)
        ends = time.monotonic() + phase.seconds
        held = hold if index == 0 and hold is not None else None
        while (time.monotonic() < ends or (held is not None and not held.is_set())) \
                and not stop.is_set():
            started = time.monotonic()
            act(phase)
            acts += 1
            stop.wait(max(0.0, 1.0 / per_second - (time.monotonic() - started)))
        if stop.is_set():
            break
    return acts


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: a demo process ends its story and shuts down."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    return stop


def announce(phase: Any) -> None:
    """Print a phase as it starts (the demo's console reads these lines)."""
    print(f"phase {phase.name}: {phase.description}", flush=True)
