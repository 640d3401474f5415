"""The demo's model without a reference profile, whose outputs quietly shift.

Most models reach production without a reference profile, so no drift score and no fixed
threshold watches their outputs. :func:`estimate` prices an order from four inputs; it is
instrumented as ``price-estimate`` with no reference. :data:`STORY` plays a long baseline,
then an upstream unit change (the ``weight`` input arrives in grams where it was kilograms,
and the pipeline clips it to its largest valid value): the estimates rise by about half, the
calls still succeed, nothing is missing or out of range. Only the adaptive baseline
(``InferwatchPredictionShift``: the rolling prediction quantiles leave the band learned from
the model's own history) sees it. A recovery follows.

    python -m inferwatch.demo.quiet_shift --metrics-listen 127.0.0.1:8002 --speed 4

>>> import numpy as np
>>> rows = np.array([[2.0, 1.0, 3.0, 0.5]])
>>> round(float(estimate(rows)[0]), 2)
71.5
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferwatch.demo.stories import announce, play_story, scaled, stop_on_signals

MODEL_NAME = "price-estimate"
MODEL_VERSION = "2.3.0"
# weight (kg), distance (100 km), items, express (0 or 1)
WEIGHTS = np.array([12.0, 9.0, 4.0, 15.0])
BASE_PRICE = 19.0
# The largest weight the pipeline accepts; a weight in grams is clipped to it.
MAX_WEIGHT = 6.0
ROWS_PER_CALL = 4


def estimate(rows: np.ndarray) -> np.ndarray:
    """The toy pricing model: a linear estimate of each row."""
    return BASE_PRICE + rows @ WEIGHTS


def sample_rows(rng: np.random.Generator, count: int, *, grams: bool = False) -> np.ndarray:
    """Orders as the upstream service sends them; with `grams`, after its unit change."""
    rows = np.column_stack([rng.gamma(4.0, 0.5, count), rng.uniform(0.2, 3.0, count),
                            rng.integers(1, 6, count), rng.random(count) < 0.2])
    if grams:
        rows[:, 0] *= 1000.0
    rows[:, 0] = np.minimum(rows[:, 0], MAX_WEIGHT)
    return rows


@dataclass(frozen=True)
class ShiftPhase:
    """A stretch of the story: whether the upstream sends weights in grams."""

    name: str
    seconds: float
    description: str
    grams: bool = False


# The baseline is long: the band is learned from the model's own trailing history, which
# the rules read only once it is old enough (baseline_offset and min_history in the demo's
# rule config).
STORY = (
    ShiftPhase("baseline", 180.0, "estimates as usual; no reference profile"),
    ShiftPhase("unit-change", 90.0, "upstream sends weight in grams: estimates rise by about "
               "half, every call still succeeds", grams=True),
    ShiftPhase("recovery", 90.0, "weights are kilograms again"),
)


def phases(speed: float = 1.0) -> list[ShiftPhase]:
    """:data:`STORY`, each phase `speed` times shorter.

    >>> [p.seconds for p in phases(speed=3)]
    [60.0, 30.0, 30.0]
    """
    return scaled(STORY, speed)


def instrument_estimate(speed: float = 1.0, **options: Any) -> Callable[[np.ndarray], Any]:
    """:func:`estimate`, instrumented without a reference; its rolling quantiles cover
    20 s of calls at speed 1 (at least 5 s), so they follow the story's phases."""
    import inferwatch

    return inferwatch.instrument(estimate, name=MODEL_NAME, version=MODEL_VERSION,
                                 task="regression",
                                 window_seconds=max(5.0, 20.0 / speed), **options)


def play(predict: Callable[[np.ndarray], Any], story: Sequence[ShiftPhase], *,
         calls_per_second: float = 10.0, stop: threading.Event | None = None,
         on_phase: Callable[[ShiftPhase], None] | None = None, seed: int = 0,
         hold: threading.Event | None = None) -> int:
    """Call `predict` at `calls_per_second` through every phase; returns the number of calls.

    With `hold`, the first phase also lasts until `hold` is set (a test decides when the
    shift starts)."""
    rng = np.random.default_rng(seed)
    return play_story(story, lambda phase: predict(sample_rows(rng, ROWS_PER_CALL,
                                                               grams=phase.grams)),
                      per_second=calls_per_second, stop=stop, on_phase=on_phase, hold=hold)


def main(argv: list[str] | None = None) -> int:
    """Serve the model's metrics and play the story until it ends or SIGTERM."""
    from inferwatch.demo.model import split_address
    from inferwatch.demo.scenario import speed_argument

    parser = argparse.ArgumentParser(prog="python -m inferwatch.demo.quiet_shift",
                                     description="The inferwatch demo's model without a "
                                                 "reference, whose outputs quietly shift.")
    parser.add_argument("--metrics-listen", type=split_address, default=("127.0.0.1", 8002),
                        help="HOST:PORT of /metrics (default 127.0.0.1:8002)")
    parser.add_argument("--speed", type=speed_argument, default=1.0,
                        help="play the story this many times faster (0.01 to 100, default 1)")
    parser.add_argument("--loop", action="store_true", help="repeat the story until stopped")
    parser.add_argument("--shift-on-signal", action="store_true",
                        help="keep the baseline until SIGUSR1, then play the rest once")
    args = parser.parse_args(argv)
    if args.loop and args.shift_on_signal:
        parser.error("--loop and --shift-on-signal exclude each other")
    try:
        story = phases(args.speed)
    except ValueError as exc:
        parser.error(str(exc))

    import inferwatch

    predict = instrument_estimate(args.speed)
    # Before serve(): whoever waits for /metrics to answer may signal at once, and until
    # the handlers are in place SIGUSR1 (and SIGTERM) kill the process by default.
    stop = stop_on_signals()
    hold = None
    if args.shift_on_signal:
        hold = threading.Event()
        signal.signal(signal.SIGUSR1, lambda signum, frame: hold.set())
    try:
        metrics = inferwatch.serve(port=args.metrics_listen[1], addr=args.metrics_listen[0])
    except OSError as exc:  # a port in use or an unknown host: one line, not a traceback
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    print(f"model {MODEL_NAME} {MODEL_VERSION} serving, metrics {metrics.url}", flush=True)
    try:
        seed = 0
        while not stop.is_set():
            play(predict, story, stop=stop, seed=seed, hold=hold, on_phase=announce)
            seed += 1
            if not args.loop:
                break
    finally:
        metrics.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
