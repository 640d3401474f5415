"""Nested ``mon.request()`` blocks of one model: a helper that opens its own block, called
inside the handler's block, is the handler's request, counted once, with every stage,
prediction, request id and stream item on the one record; the outer block's end decides
the outcome. Blocks of other models, blocks naming another request, and blocks of threads
or tasks that are not inside the outer block stay requests of their own."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults
from inferwatch.core.registry import Registry
from request_totals import request_totals

WAIT_SECONDS = 30.0


def _stage_counts(monitor: Any) -> dict[str, int]:
    monitor.drain()
    series = monitor.state.histograms.get("inferwatch_stage_duration_seconds", {})
    return {labels[0]: int(histogram.count) for labels, histogram in series.items()
            if histogram.count}


def _stream_items(monitor: Any) -> tuple[int, float]:
    monitor.drain()
    histogram = monitor.state.histograms.get("inferwatch_stream_items", {}).get(())
    return (0, 0.0) if histogram is None else (int(histogram.count), histogram.sum)


def _errors(monitor: Any) -> dict[tuple, float]:
    monitor.drain()
    return {k: v for k, v in monitor.state.counters.get("inferwatch_errors_total", {}).items()
            if v}


def _outcome_joins(monitor: Any, request_id: str, label: str) -> bool:
    """Whether an outcome sent under `request_id` finds the request's prediction."""
    monitor.drain()
    counters = monitor.state.counters
    before = sum(counters.get("inferwatch_outcomes_total", {}).values())
    monitor.record_outcome(request_id, label)
    monitor.drain()
    return sum(counters.get("inferwatch_outcomes_total", {}).values()) == before + 1


# What `request_totals` reads after one request that ended ok.
ONE_OK = {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


# --- the helper's block inside the handler's ---------------------------------------------


def test_helper_block_inside_the_handlers_block_is_one_request(registry: Registry) -> None:
    """The helper's block counted a second request: requests_total 2, two durations, and
    the stages and the stream split across two records."""
    generate = inferwatch.instrument(lambda prompt: (word for word in prompt.split()),
                                     name="chat", version="1", registry=registry)
    mon = registry.monitor("chat", "1")

    def answer(prompt: str, request_id: str) -> str:
        with mon.request(request_id=request_id) as r:
            with r.stage("retrieve"):
                pass
            text = "".join(generate(prompt))
            r.prediction(["yes"])
            return text

    with mon.request(request_id="r-1") as outer:
        with outer.stage("auth"):
            pass
        assert answer("a b c", "r-1") == "abc"
        outer.action("shown")

    assert request_totals(mon) == ONE_OK
    assert mon.state.histograms["inferwatch_request_duration_seconds"][()].count == 1
    assert _stage_counts(mon) == {"auth": 1, "retrieve": 1, "inference": 1}
    assert _stream_items(mon) == (1, 3.0)
    assert outer.record.stream is not None and outer.record.stream.items == 3
    assert outer.record.has_prediction and outer.record.action == "shown"
    assert _outcome_joins(mon, "r-1", "yes")


@pytest.mark.parametrize(("outer_id", "inner_id", "request_id"), [
    (None, None, None), ("r-1", None, "r-1"), (None, "r-2", "r-2"), ("r-1", "r-1", "r-1")])
def test_inner_block_returns_the_outer_request_under_its_id(
        registry: Registry, outer_id: str | None, inner_id: str | None,
        request_id: str | None) -> None:
    """The id of whichever block names the request; an inner block's id names an outer
    one that has none, so that the outcome sent under it is joined."""
    mon = registry.monitor("fraud", "1")
    with mon.request(request_id=outer_id) as outer:
        with mon.request(request_id=inner_id) as inner:
            assert inner is outer
            assert inner.request_id == request_id
            inner.prediction(["fraud"])
        assert outer.is_open
    assert not outer.is_open
    assert request_totals(mon) == ONE_OK
    if request_id is not None:
        assert _outcome_joins(mon, request_id, "fraud")


def test_request_object_entered_inside_the_outer_block_writes_the_outer_record(
        registry: Registry) -> None:
    """``r = mon.request(); with r:`` writes through `r` too, to the one record."""
    mon = registry.monitor("fraud", "1")
    with mon.request(request_id="r-1") as outer:
        inner = mon.request()
        with inner:
            assert inner.is_open
            with inner.stage("score"):
                pass
            inner.action("blocked")
        assert not inner.is_open
    assert outer.record.action == "blocked"
    assert [name for name, _ in outer.record.stages] == ["score"]
    assert request_totals(mon) == ONE_OK


def test_blocks_naming_other_requests_stay_their_own(registry: Registry) -> None:
    """A block per item inside a batch's block, each under its own id: the ids are what
    outcomes are joined by, so each item stays a request that its outcome finds."""
    mon = registry.monitor("fraud", "1")
    with mon.request(request_id="batch-7") as batch:
        for item in ("i-1", "i-2"):
            with mon.request(request_id=item) as r:
                assert r is not batch
                r.prediction(["fraud"])
    assert request_totals(mon)["ok"] == 3.0
    assert _outcome_joins(mon, "i-1", "fraud")
    assert _outcome_joins(mon, "i-2", "fraud")


def test_blocks_of_other_models_stay_their_own(registry: Registry) -> None:
    """A inside B inside A: A's inner block joins A's outer one, B's is B's request."""
    a, b = registry.monitor("a", "1"), registry.monitor("b", "1")
    with a.request(request_id="r-1") as outer_a, b.request() as inner_b:
        assert inner_b is not outer_a
        with a.request() as inner_a:
            assert inner_a is outer_a
            with inner_a.stage("a-stage"):
                pass
        with inner_b.stage("b-stage"):
            pass
    assert request_totals(a) == ONE_OK
    assert request_totals(b) == ONE_OK
    assert _stage_counts(a) == {"a-stage": 1}
    assert _stage_counts(b) == {"b-stage": 1}


# --- the outcome: the outer block's end ---------------------------------------------------


class _HelperFailed(Exception):
    pass


def test_exception_caught_around_the_inner_block_is_no_error(registry: Registry) -> None:
    """The request's outcome is what its outer block ended with: a helper's failure that
    the handler caught and recovered from is no failed request."""
    mon = registry.monitor("fraud", "1")
    with mon.request(request_id="r-1"):
        try:
            with mon.request():
                raise _HelperFailed("fallback taken")
        except _HelperFailed:
            pass
    assert request_totals(mon) == ONE_OK
    assert _errors(mon) == {}


def test_exception_leaving_both_blocks_is_one_error(registry: Registry) -> None:
    mon = registry.monitor("fraud", "1")
    with pytest.raises(_HelperFailed), mon.request(request_id="r-1"), mon.request():
        raise _HelperFailed("unhandled")
    assert request_totals(mon) == {"ok": 0.0, "error": 1.0, "cancelled": 0.0, "in_flight": 0}
    assert _errors(mon) == {("_HelperFailed",): 1.0}


def test_model_error_caught_around_the_inner_block_still_counts_as_the_calls_error(
        registry: Registry) -> None:
    """As documented for errors: every model call that raised counts, caught or not; the
    request itself ends ok."""
    def score(rows: list) -> list:
        raise TimeoutError("backend")

    model = inferwatch.instrument(score, name="fraud", version="1", registry=registry)
    mon = registry.monitor("fraud", "1")
    with mon.request(request_id="r-1"):
        try:
            with mon.request():
                model([[1.0]])
        except TimeoutError:
            pass
    assert request_totals(mon) == ONE_OK
    assert _errors(mon) == {("TimeoutError",): 1.0}


@settings(max_examples=80, deadline=None)
@given(depth=st.integers(1, 6), raises=st.booleans(), caught_around=st.integers(0, 7),
       ids=st.lists(st.sampled_from([None, "r-1"]), min_size=6, max_size=6),
       use_async=st.booleans())
def test_any_nesting_of_one_models_blocks_is_one_request_ended_by_the_outermost(
        depth: int, raises: bool, caught_around: int, ids: list[str | None],
        use_async: bool) -> None:
    """Blocks nested `depth` deep, with or without the one id, the innermost perhaps
    raising, caught around the block of level `caught_around` (not at all past the
    innermost): one request, an error only when the exception leaves the outermost block,
    never left in flight."""
    registry = Registry()
    try:
        mon = registry.monitor("fraud", "1")

        def enter(level: int) -> None:
            if level == depth:
                if raises:
                    raise _HelperFailed(level)
                return
            try:
                with mon.request(request_id=ids[level]) as r:
                    with r.stage(f"s{level}"):
                        pass
                    enter(level + 1)
            except _HelperFailed:
                if level != caught_around:
                    raise

        async def enter_async(level: int) -> None:
            if level == depth:
                if raises:
                    raise _HelperFailed(level)
                return
            try:
                async with mon.request(request_id=ids[level]) as r:
                    with r.stage(f"s{level}"):
                        pass
                    await enter_async(level + 1)
            except _HelperFailed:
                if level != caught_around:
                    raise

        def run() -> None:
            if use_async:
                asyncio.run(enter_async(0))
            else:
                enter(0)

        leaves_outermost = raises and (caught_around == 0 or caught_around >= depth)
        try:
            contextvars.copy_context().run(run)
        except _HelperFailed:
            assert raises and caught_around >= depth
        else:
            assert not raises or caught_around < depth
        totals = request_totals(mon)
        expected = {"ok": 0.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}
        expected["error" if leaves_outermost else "ok"] = 1.0
        assert totals == expected
        assert _stage_counts(mon) == {f"s{level}": 1 for level in range(depth)}
        assert _errors(mon) == ({("_HelperFailed",): 1.0} if leaves_outermost else {})
    finally:
        registry.close()


def test_joined_block_outliving_the_outer_block_leaves_its_end_to_it(
        registry: Registry) -> None:
    """A generator that holds a block open, left unfinished when the outer block ends: the
    outer block's exit ends the request, ok, and the generator's later close neither
    counts it again nor as cancelled; what it writes after that end is dropped and counted."""
    mon = registry.monitor("chat", "1")

    def steps():
        with mon.request() as r:
            yield r
            yield r

    with mon.request(request_id="r-1") as outer:
        held = steps()
        assert next(held) is outer
    assert not outer.is_open
    before = faults.internal_error_counts().get("request", 0)
    outer.action("late")
    assert faults.internal_error_counts().get("request", 0) == before + 1
    held.close()
    assert outer.record.action is None
    assert request_totals(mon) == ONE_OK
    with mon.request(request_id="r-2") as after:
        assert after is not outer
    assert request_totals(mon)["ok"] == 2.0


# --- threads and tasks: the context decides --------------------------------------------------


def test_thread_of_its_own_opens_its_own_request_while_a_block_is_open(
        registry: Registry) -> None:
    """A thread started with a context of its own is in no request: its block is its own,
    however long another thread's block of the model stays open."""
    mon = registry.monitor("fraud", "1")
    outer_open, thread_done = threading.Event(), threading.Event()
    seen: list[Any] = []

    def worker() -> None:
        assert outer_open.wait(WAIT_SECONDS)
        with mon.request(request_id="t-1") as r:
            seen.append(r)
        thread_done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    with mon.request(request_id="t-1") as outer:
        outer_open.set()
        assert thread_done.wait(WAIT_SECONDS)
    thread.join(WAIT_SECONDS)
    assert seen and seen[0] is not outer
    assert request_totals(mon)["ok"] == 2.0


def test_thread_run_in_the_blocks_context_joins_it(registry: Registry) -> None:
    """Work handed to a thread with the block's context (``copy_context().run``) is part of
    the block's request, as a model call there is."""
    mon = registry.monitor("fraud", "1")
    seen: list[Any] = []

    def worker() -> None:
        with mon.request() as r, r.stage("fan-out"):
            seen.append(r)

    with mon.request(request_id="r-1") as outer:
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(worker,))
        thread.start()
        thread.join(WAIT_SECONDS)
        assert not thread.is_alive()
    assert seen == [outer]
    assert _stage_counts(mon) == {"fan-out": 1}
    assert request_totals(mon) == ONE_OK


def test_tasks_inside_the_block_join_it_and_others_do_not(registry: Registry) -> None:
    """Tasks started inside the block carry its context and are part of its request; a task
    started before the block opened is not, however the two interleave."""
    mon = registry.monitor("fraud", "1")

    async def main() -> tuple[Any, list[Any], Any]:
        outer_open = asyncio.Event()

        async def outsider() -> Any:
            await outer_open.wait()
            async with mon.request(request_id="r-1") as r:
                return r

        async def part(name: str) -> Any:
            await asyncio.sleep(0)
            async with mon.request() as r:
                with r.stage(name):
                    await asyncio.sleep(0)
                return r

        early = asyncio.create_task(outsider())
        async with mon.request(request_id="r-1") as outer:
            outer_open.set()
            parts = await asyncio.gather(part("a"), part("b"))
            lone = await early
        return outer, parts, lone

    outer, parts, lone = asyncio.run(main())
    assert parts == [outer, outer]
    assert lone is not outer
    assert request_totals(mon)["ok"] == 2.0
    assert sorted(name for name, _ in outer.record.stages) == ["a", "b"]
