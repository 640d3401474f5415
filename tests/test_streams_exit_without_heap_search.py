"""A sync generator's wrapper still open at exit is closed then, so that its stream is
recorded as cancelled before the last drain and flush. It was found by a search of the
whole heap (``gc.get_referrers``: some 30 ms per 3 million objects, at every exit with an
open stream); each wrapper is now kept in the open streams when it is made, and the exit
closes those. Each case here runs with ``gc.get_referrers`` raising: a search of the heap
would end none of the streams."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import inferwatch
from event_log_helpers import stored_events
from inferwatch.core import streams

OPEN_AT_EXIT = """
import gc, os

def no_heap_search(*objects):
    raise AssertionError("the exit searched the heap")

gc.get_referrers = no_heap_search

import inferwatch

events = os.environ["APP_EVENTS"]


def tokens(prompt):
    for i in range(10):
        yield f"tok{i} "


def model(name, fn, **options):
    return inferwatch.instrument(fn, name=name, version="1", events=events, **options)


# Each kept in a global, unfinished, until the interpreter ends.
HALF_READ = model("half_read", tokens)("hi")
next(HALF_READ)
next(HALF_READ)
NEVER_READ = model("never_read", tokens)("hi")
RETURNED = model("returned", lambda prompt: tokens(prompt))("hi")  # a function returning one
next(RETURNED)
LOOPED = iter(model("looped", lambda prompt: tokens(prompt))("hi"))  # only the loop's iterator
next(LOOPED)
COUNTED = model("counted", tokens, count_tokens=lambda text: len(text.split()))("hi there")
next(COUNTED)
KEYWORD = model("keyword", tokens)(prompt="hi")  # the general wrapper
next(KEYWORD)
DONE = model("done", tokens)("hi")
list(DONE)
print("exiting", flush=True)
"""

OPEN = {"half_read": 2, "never_read": 0, "returned": 1, "looped": 1, "counted": 1,
        "keyword": 1}


def test_streams_open_at_exit_are_ended_without_searching_the_heap(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    env = {**os.environ, "APP_EVENTS": str(events)}
    env.pop("INFERWATCH_MULTIPROC_DIR", None)
    result = subprocess.run([sys.executable, "-c", OPEN_AT_EXIT], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "searched the heap" not in result.stderr
    assert "internal fault" not in result.stderr, result.stderr
    stored = stored_events(events)
    for name, items in OPEN.items():
        mine = [event for event in stored if event["model"] == name]
        assert [event["stream"]["outcome"] for event in mine] == ["cancelled"], (name, stored)
        assert mine[0]["stream"].get("items", 0) == items, (name, mine)
    assert [event["stream"]["outcome"] for event in stored if event["model"] == "done"] == \
        ["ok"]


def tokens(n: int):
    for i in range(n):
        yield f"tok{i} "


def test_end_open_streams_closes_the_open_wrappers_it_keeps(
        scraper: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_heap_search(*objects: object) -> list:
        raise AssertionError("end_open_streams searched the heap")

    registry = scraper.registry
    primed = inferwatch.instrument(tokens, name="primed", version="1", registry=registry)
    returned = inferwatch.instrument(lambda n: tokens(n), name="returned", version="1",
                                     registry=registry)
    half_read, never_read, from_function = primed(5), primed(5), returned(5)
    next(half_read)
    next(from_function)
    unstarted = returned(5)
    finished = primed(1)
    list(finished)
    monkeypatch.setattr(gc, "get_referrers", no_heap_search)
    streams.end_open_streams()
    outcomes = {s.labels["model"]: {**outcomes_of(scraper, s.labels["model"])}
                for s in scraper.samples() if s.name == "inferwatch_requests_total"}
    assert outcomes["primed"] == {"cancelled": 2.0, "ok": 1.0}
    assert outcomes["returned"] == {"cancelled": 2.0}
    assert scraper.value("inferwatch_requests_in_flight", model="primed") == 0
    assert scraper.value("inferwatch_requests_in_flight", model="returned") == 0
    assert scraper.total("inferwatch_stream_items_sum") == 3  # as far as each was read
    # Each ended once: a second pass, or the consumer's own close, records nothing more.
    streams.end_open_streams()
    for stream in (half_read, never_read, from_function, unstarted):
        stream.close()
    assert outcomes_of(scraper, "primed") == {"cancelled": 2.0, "ok": 1.0}
    assert outcomes_of(scraper, "returned") == {"cancelled": 2.0}


def outcomes_of(scraper: Any, name: str) -> dict[str, float]:
    return {s.labels["outcome"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_requests_total" and s.labels["model"] == name and s.value}
