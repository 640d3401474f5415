"""The demo's streaming model: a toy token generator and a time-to-first-token regression.

:class:`ToyGenerator` answers a prompt with a stream of words, one every few milliseconds,
after a first-token delay (the prefill of a real LLM). It is instrumented with
``count_tokens=`` so it records time to first item, items, the time between them, text
length, tokens and tokens per second. :data:`STORY` plays a baseline, a regression in which
one stream in four waits 0.4 s for its first token (a cold cache, a queue in front of the
accelerator), and a recovery: the time-to-first-item p99 rises to about 0.4 s, past an
objective of 0.25 s (``latency.first_item_p99_seconds``), and
``InferwatchStreamFirstItemSlow`` fires, while the time between tokens does not move.

    python -m inferwatch.demo.streaming --metrics-listen 127.0.0.1:8001 --speed 4

>>> import inferwatch
>>> from inferwatch.core.registry import Registry
>>> toy = ToyGenerator(first_item_seconds=0.0, token_seconds=0.0)
>>> generate = instrument_generator(toy, registry=Registry())
>>> "".join(generate("hello", max_tokens=3)).split()
['the', 'model', 'streams']
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from inferwatch.demo.stories import announce, play_story, scaled, stop_on_signals

MODEL_NAME = "toy-llm"
MODEL_VERSION = "0.1.0"
VOCABULARY = ("the", "model", "streams", "one", "token", "at", "a", "time", "and", "inferwatch",
              "times", "every", "word", "it", "sends")


def count_words(text: str) -> int:
    """The toy tokenizer: a token is a word.

    >>> count_words("two words ")
    2
    """
    return len(text.split())


class ToyGenerator:
    """A word-by-word generator with a first-token delay the scenario can change."""

    def __init__(self, *, first_item_seconds: float = 0.02, token_seconds: float = 0.005,
                 slow_ratio: float = 0.0, slow_first_item_seconds: float = 0.0,
                 seed: int = 0) -> None:
        self.first_item_seconds = first_item_seconds
        self.token_seconds = token_seconds
        self.slow_ratio = slow_ratio
        self.slow_first_item_seconds = slow_first_item_seconds
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def stream(self, prompt: str, max_tokens: int = 16) -> Iterator[str]:
        """Words answering `prompt` (the toy ignores it), each followed by a space."""
        with self._lock:
            slow = self._rng.random() < self.slow_ratio
        time.sleep(self.slow_first_item_seconds if slow else self.first_item_seconds)
        for i in range(max_tokens):
            if i:
                time.sleep(self.token_seconds)
            yield VOCABULARY[i % len(VOCABULARY)] + " "


def instrument_generator(toy: ToyGenerator, **options: Any) -> Callable[..., Iterator[str]]:
    """The toy's ``stream``, instrumented as ``toy-llm`` with its word tokenizer."""
    import inferwatch

    return inferwatch.instrument(toy.stream, name=MODEL_NAME, version=MODEL_VERSION,
                                 count_tokens=count_words, **options)


@dataclass(frozen=True)
class StreamPhase:
    """A stretch of the streaming story: `slow_ratio` of the streams wait
    `slow_first_item_seconds` for their first token."""

    name: str
    seconds: float
    description: str
    slow_ratio: float = 0.0
    slow_first_item_seconds: float = 0.0


STORY = (
    StreamPhase("baseline", 60.0, "first tokens in about 20 ms"),
    StreamPhase("first-token-regression", 60.0,
                "one stream in four waits 0.4 s for its first token; the rest is unchanged",
                slow_ratio=0.25, slow_first_item_seconds=0.4),
    StreamPhase("recovery", 60.0, "first tokens are fast again"),
)


def phases(speed: float = 1.0) -> list[StreamPhase]:
    """:data:`STORY`, each phase `speed` times shorter.

    >>> [p.seconds for p in phases(speed=4)]
    [15.0, 15.0, 15.0]
    """
    return scaled(STORY, speed)


def play(toy: ToyGenerator, generate: Callable[..., Iterator[str]],
         story: Sequence[StreamPhase], *, streams_per_second: float = 5.0,
         stop: threading.Event | None = None,
         on_phase: Callable[[StreamPhase], None] | None = None) -> int:
    """Consume streams at `streams_per_second` through every phase; returns the number
    of streams. Each stream is read to its end, as a chat client would."""
    def entering(phase: StreamPhase) -> None:
        if on_phase is not None:
            on_phase(phase)
        toy.slow_ratio = phase.slow_ratio
        toy.slow_first_item_seconds = phase.slow_first_item_seconds

    def consume(phase: StreamPhase) -> None:
        for _ in generate("tell me about monitoring", max_tokens=12):
            pass

    return play_story(story, consume, per_second=streams_per_second, stop=stop,
                      on_phase=entering)


def main(argv: list[str] | None = None) -> int:
    """Serve the toy model's metrics and play the story until it ends or SIGTERM."""
    from inferwatch.demo.model import split_address
    from inferwatch.demo.scenario import speed_argument

    parser = argparse.ArgumentParser(prog="python -m inferwatch.demo.streaming",
                                     description="The inferwatch demo's streaming model.")
    parser.add_argument("--metrics-listen", type=split_address, default=("127.0.0.1", 8001),
                        help="HOST:PORT of /metrics (default 127.0.0.1:8001)")
    parser.add_argument("--speed", type=speed_argument, default=1.0,
                        help="play the story this many times faster (0.01 to 100, default 1)")
    parser.add_argument("--loop", action="store_true", help="repeat the story until stopped")
    args = parser.parse_args(argv)
    try:
        story = phases(args.speed)
    except ValueError as exc:
        parser.error(str(exc))

    import inferwatch

    toy = ToyGenerator()
    generate = instrument_generator(toy)
    # Before serve(): whoever waits for /metrics to answer may stop us at once, and until
    # the handlers are in place SIGTERM kills the process by default.
    stop = stop_on_signals()
    try:
        metrics = inferwatch.serve(port=args.metrics_listen[1], addr=args.metrics_listen[0])
    except OSError as exc:  # a port in use or an unknown host: one line, not a traceback
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    print(f"model {MODEL_NAME} {MODEL_VERSION} streaming, metrics {metrics.url}", flush=True)
    try:
        while not stop.is_set():
            play(toy, generate, story, stop=stop, on_phase=announce)
            if not args.loop:
                break
    finally:
        metrics.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
