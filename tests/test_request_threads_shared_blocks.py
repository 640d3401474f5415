"""One request object shared by threads and tasks (``r = mon.request()``, then ``with r:``
in each): a thread or task that entered it has it as its current request for the duration
of its block, whichever thread opened it, and has what it had before once its block ends,
in whatever order the blocks end."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.core.request import Request, current_request
from request_totals import request_totals

_STOP = object()


class Worker:
    """A thread that runs the steps it is given one at a time and answers each: the test
    decides the interleaving of the threads, step by step, with no timing involved."""

    def __init__(self) -> None:
        self._steps: queue.Queue[Any] = queue.Queue()
        self._answers: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (step := self._steps.get()) is not _STOP:
            try:
                self._answers.put((True, step()))
            except BaseException as exc:  # handed to the test, which raises it
                self._answers.put((False, exc))

    def do(self, step: Callable[[], Any]) -> Any:
        """Run `step` in this worker's thread and return what it returned (or raise what it
        raised)."""
        self._steps.put(step)
        ok, answer = self._answers.get(timeout=30)
        if not ok:
            raise answer
        return answer

    def stop(self) -> None:
        self._steps.put(_STOP)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()


@pytest.fixture
def workers():
    started: list[Worker] = []

    def make(count: int) -> list[Worker]:
        started.extend(Worker() for _ in range(count))
        return started[-count:]

    yield make
    for worker in started:
        worker.stop()


def _model(registry: Registry, name: str = "m", result: float = 0.25) -> Callable:
    return inferwatch.instrument(lambda x: result, name=name, version="1", registry=registry)


def _stages(request: Request) -> list[str]:
    return [name for name, _ in request.record.stages]


# --- threads ------------------------------------------------------------------------------


@pytest.mark.parametrize("opener_exits_first", [True, False])
def test_a_thread_entering_an_open_shared_request_has_it_as_its_request(
        registry: Registry, workers, opener_exits_first: bool) -> None:
    """The second thread used to return early without making the request its own: its
    model call was counted as a request of its own (two requests), the shared request got
    neither the stage nor the prediction. And the opening thread, its block ended first,
    still had the request as its own: its later calls joined a request it had left."""
    model = _model(registry)
    mon = registry.monitor("m", "1")
    shared = mon.request(request_id="r-1")
    opener, other = workers(2)
    assert opener.do(shared.__enter__) is shared
    assert other.do(shared.__enter__) is shared
    assert other.do(current_request) is shared
    assert other.do(lambda: model(1.0)) == 0.25
    first, last = (opener, other) if opener_exits_first else (other, opener)
    first.do(lambda: shared.__exit__(None, None, None))
    assert shared.is_open
    assert first.do(current_request) is None
    assert last.do(current_request) is shared
    # The block that ended first is out of the request: its call is a request of its own.
    assert first.do(lambda: model(2.0)) == 0.25
    assert last.do(lambda: model(3.0)) == 0.25
    last.do(lambda: shared.__exit__(None, None, None))
    assert not shared.is_open
    assert last.do(current_request) is None
    assert _stages(shared) == ["inference", "inference"]
    assert shared.record.prediction == 0.25
    assert request_totals(mon) == {"ok": 2.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


def test_a_thread_entering_a_shared_request_inside_its_own_gets_its_own_back(
        registry: Registry, workers) -> None:
    """Inside a request of its own, the thread's call used to join its own request rather
    than the shared block it was in; ending the shared request there then left the thread
    with the shared request's outer chain (nothing) instead of its own request."""
    model = _model(registry)
    mon = registry.monitor("m", "1")
    shared = mon.request(request_id="shared")
    own = mon.request(request_id="own")
    opener, other = workers(2)
    opener.do(shared.__enter__)
    other.do(own.__enter__)
    other.do(shared.__enter__)
    other.do(lambda: model(1.0))
    opener.do(lambda: shared.__exit__(None, None, None))
    assert other.do(current_request) is shared
    other.do(lambda: shared.__exit__(None, None, None))  # the last block: ends it
    assert not shared.is_open and own.is_open
    assert other.do(current_request) is own
    other.do(lambda: model(2.0))
    other.do(lambda: own.__exit__(None, None, None))
    assert _stages(shared) == ["inference"] and _stages(own) == ["inference"]
    assert request_totals(mon) == {"ok": 2.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


def test_a_block_raising_in_the_second_thread_gives_its_request_back(
        registry: Registry, workers) -> None:
    model = _model(registry)
    mon = registry.monitor("m", "1")
    shared = mon.request()
    opener, other = workers(2)
    opener.do(shared.__enter__)

    def raising_block() -> None:
        with shared:
            model(1.0)
            raise KeyError("handler")

    with pytest.raises(KeyError):
        other.do(raising_block)
    assert other.do(current_request) is None
    assert opener.do(current_request) is shared
    opener.do(lambda: shared.__exit__(None, None, None))
    # The block that ended the request (the opener's) gives its outcome.
    assert _stages(shared) == ["inference"]
    assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


def test_threads_entering_at_once_all_join_the_one_request(registry: Registry) -> None:
    """Real threads released together: whichever opens it, every thread's call joins the
    one request."""
    model = _model(registry)
    mon = registry.monitor("m", "1")
    shared = mon.request()
    parties = 4
    inside = threading.Barrier(parties, timeout=10)
    errors: list[BaseException] = []
    seen: list[Request | None] = []

    def work() -> None:
        try:
            inside.wait()
            with shared:
                inside.wait()  # every thread inside before any calls or leaves
                seen.append(current_request())
                model(1.0)
                inside.wait()
            seen.append(current_request())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert seen.count(shared) == parties and seen.count(None) == parties
    assert _stages(shared) == ["inference"] * parties
    assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_order_of_entries_and_exits_across_threads(data: st.DataObject) -> None:
    """Three threads, each entering the shared request (some twice, nested) and leaving
    it in an order drawn: a thread's call joins the request exactly while it is inside a
    block of it, the request ends at the last exit, and each thread ends with nothing."""
    registry = Registry(drain_interval=3600)
    workers = [Worker() for _ in range(3)]
    try:
        model = _model(registry)
        mon = registry.monitor("m", "1")
        shared = mon.request()
        depth = [0, 0, 0]
        requests = joined = 0  # joined: calls in the request opened last
        entries = data.draw(st.lists(st.integers(1, 2), min_size=3, max_size=3))
        moves = [(index, +1) for index, count in enumerate(entries) for _ in range(count)]
        moves += [(index, -1) for index, count in enumerate(entries) for _ in range(count)]
        moves = data.draw(st.permutations(moves))
        # Put in order: a thread never leaves a block it has not entered.
        balance = [0, 0, 0]
        ordered: list[tuple[int, int]] = []
        pending = list(moves)
        while pending:
            move = next(m for m in pending if m[1] > 0 or balance[m[0]] > 0)
            pending.remove(move)
            balance[move[0]] += move[1]
            ordered.append(move)
        for index, step in ordered:
            worker = workers[index]
            if step > 0:
                if not any(depth):
                    requests += 1
                    joined = 0
                assert worker.do(shared.__enter__) is shared
            else:
                worker.do(lambda: shared.__exit__(None, None, None))
            depth[index] += step
            assert shared.is_open == any(depth)
            for other, inside in zip(workers, depth):
                assert other.do(current_request) is (shared if inside else None)
            worker.do(lambda: model(1.0))
            if depth[index]:
                joined += 1
            else:
                requests += 1
        assert request_totals(mon) == {
            "ok": float(requests), "error": 0.0, "cancelled": 0.0, "in_flight": 0}
        assert _stages(shared) == ["inference"] * joined
    finally:
        for worker in workers:
            worker.stop()
        registry.close()


# --- the same thread, blocks of other requests in between ---------------------------------


def test_a_block_entered_again_inside_another_request_is_the_current_one(
        registry: Registry) -> None:
    """``with r:`` again inside another block of the same model inside `r`: the innermost
    block is `r`'s, so the call joins `r`; when it ends, the other block is current again."""
    model = _model(registry)
    mon = registry.monitor("m", "1")
    with mon.request(request_id="outer") as outer:
        with mon.request(request_id="inner") as inner:
            with outer:
                assert current_request() is outer
                model(1.0)
            assert current_request() is inner
            model(2.0)
        assert current_request() is outer
    assert current_request() is None
    assert _stages(outer) == ["inference"] and _stages(inner) == ["inference"]
    assert request_totals(mon) == {"ok": 2.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


def test_nested_blocks_of_one_request_in_one_thread_still_end_at_the_outermost(
        registry: Registry) -> None:
    mon = registry.monitor("m", "1")
    shared = mon.request()
    with shared:
        with shared:
            with pytest.raises(ValueError), shared:
                raise ValueError
            assert shared.is_open and current_request() is shared
        assert shared.is_open
    assert not shared.is_open and current_request() is None
    assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


# --- a block that joined the web middleware's request -------------------------------------


def test_a_block_joining_the_web_request_in_a_second_task_joins_it(
        registry: Registry) -> None:
    """The join path returns the web request without making it current: the request is
    already the innermost of its model in the block's chain, so its call joins it."""
    from inferwatch.core.web_requests import HTTPRequest

    model = _model(registry)
    mon = registry.monitor("m", "1")

    async def main() -> HTTPRequest:
        http = HTTPRequest.open(mon, "header-id")
        shared = mon.request(request_id="handler-id")
        go = asyncio.Event()

        async def handler() -> None:
            async with shared as r:
                assert r is http
                go.set()
                model(1.0)

        async def helper() -> None:
            await go.wait()
            async with shared as r:
                assert r is http and current_request() is http
                model(2.0)

        await asyncio.gather(handler(), helper())
        assert http.is_open and current_request() is http
        http.close(None)
        return http

    http = asyncio.run(main())
    assert _stages(http) == ["inference", "inference"]
    assert http.record.request_id == "handler-id"
    assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


# --- asyncio tasks ------------------------------------------------------------------------


@pytest.mark.parametrize("opener_exits_first", [True, False])
def test_a_task_entering_an_open_shared_request_has_it_as_its_request(
        registry: Registry, opener_exits_first: bool) -> None:
    """As for threads: two tasks in ``async with r:``; the second task's call used to be
    a request of its own."""
    model = _model(registry)
    mon = registry.monitor("m", "1")
    shared = mon.request(request_id="r-1")
    seen: dict[str, list[Request | None]] = {"opener": [], "other": []}

    async def main() -> None:
        opened, entered, first_left = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def opener() -> None:
            async with shared:
                opened.set()
                await entered.wait()
                if not opener_exits_first:
                    await first_left.wait()
            seen["opener"].append(current_request())
            model(2.0)
            if opener_exits_first:
                first_left.set()

        async def other() -> None:
            await opened.wait()
            async with shared:
                entered.set()
                seen["other"].append(current_request())
                model(1.0)
                if opener_exits_first:
                    await first_left.wait()
            seen["other"].append(current_request())
            if not opener_exits_first:
                first_left.set()

        await asyncio.gather(asyncio.create_task(opener()), asyncio.create_task(other()))

    asyncio.run(main())
    assert seen == {"opener": [None], "other": [shared, None]}
    assert _stages(shared) == ["inference"]
    assert shared.record.prediction == 0.25
    assert request_totals(mon) == {"ok": 2.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


def test_a_block_whose_shared_request_was_ended_meanwhile_gives_back_its_own(
        registry: Registry, workers) -> None:
    """The opener ends the request with close() (as the middleware does) while the other
    thread's block is still inside: that block's exit must still give the thread back its
    own request, not leave it with the ended one's outer chain."""
    model = _model(registry)
    mon = registry.monitor("m", "1")
    shared = Request.open(mon, "shared")
    own = mon.request(request_id="own")
    other, = workers(1)
    other.do(own.__enter__)
    other.do(shared.__enter__)
    shared.close(None)
    other.do(lambda: shared.__exit__(None, None, None))
    assert other.do(current_request) is own
    other.do(lambda: model(1.0))
    other.do(lambda: own.__exit__(None, None, None))
    assert _stages(own) == ["inference"]
    assert request_totals(mon) == {"ok": 2.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


# --- entering a shared request just as another thread ends it -----------------------------


class _CloseOnAcquire:
    """The nesting lock, which on its next acquisition first lets another thread end the
    request: the interleaving in which a block enters the request just as the last block
    of another thread ends it, forced, with no timing involved."""

    def __init__(self, lock: Any, request: Request) -> None:
        self._lock = lock
        self._request = request
        self.armed = False

    def __enter__(self) -> None:
        self._lock.__enter__()
        if self.armed:
            self.armed = False
            done = threading.Event()
            thread = threading.Thread(target=lambda: (self._request.close(None), done.set()))
            thread.start()
            thread.join(timeout=30)
            assert done.is_set()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.__exit__(*exc_info)


def test_entering_a_shared_request_as_it_ends_leaves_no_count_behind(
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """The block counted itself into the request after the close had reset the count: the
    object's next request then took that count for a block still inside, its exit ended
    nothing, and the request stayed in flight (until taken for abandoned, ten minutes on,
    as cancelled)."""
    from inferwatch.core import request as request_module

    mon = registry.monitor("m", "1")
    shared = mon.request()
    with shared:
        # The same object, open: entered in this thread again while another thread's
        # close ends it. The block is then a request of its own.
        lock = _CloseOnAcquire(request_module._NESTING, shared)
        monkeypatch.setattr(request_module, "_NESTING", lock)
        lock.armed = True
        with shared:
            pass
        monkeypatch.undo()
    with shared:  # the object's next request ends at its own exit
        pass
    assert not shared.is_open
    # The one ended by the other thread, the block that found it ended, the next one.
    assert request_totals(mon) == {"ok": 3.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}
