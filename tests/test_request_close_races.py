"""A request ended by two parties at once (its owner and the abandoned-request check, the
web middleware and a handler's thread), and writes to a request after it ended."""

from __future__ import annotations

import contextvars
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch import faults
from inferwatch.core import request as request_module
from inferwatch.core.registry import Registry
from inferwatch.core.request import Request, current_request
from inferwatch.core.web_requests import HTTPRequest
from request_totals import request_totals, run_in_thread


def _owner_closes_first(monkeypatch: pytest.MonkeyPatch, request: Request,
                        error_type: type | None) -> None:
    """Make the first close() that a third party (the abandoned-request check) calls on
    `request` find its owner ending it, in another thread, at that very moment: after the
    check decided it was abandoned, before its own close."""
    original = Request.close
    raced: list[bool] = []

    def close(self: Request, *args: Any, **kwargs: Any) -> None:
        if self is request and not raced:
            raced.append(True)
            run_in_thread(lambda: original(self, error_type))
        original(self, *args, **kwargs)

    monkeypatch.setattr(Request, "close", close)


@pytest.mark.parametrize("error_type", [None, KeyError])
def test_an_owner_ending_a_request_as_it_is_found_abandoned_keeps_its_outcome(
        registry, monkeypatch, error_type):
    """A handler's thread found the web request past its age bound just as the middleware
    ended it: the check marked the record cancelled before it tried to end it, so a request
    the middleware had ended ok (or failed) was counted cancelled."""
    mon = registry.monitor("fraud", "1")
    context = contextvars.copy_context()
    request = context.run(Request.open, mon, "r-1")
    monkeypatch.setattr(request_module, "ABANDONED_AFTER_SECONDS", 0.0)
    request._deadline = 0.0  # past its bound: the next call in its context ends it
    _owner_closes_first(monkeypatch, request, error_type)
    assert context.run(current_request) is None
    assert not request.is_open
    assert request.record.cancelled is False
    assert request.record.error_type is error_type
    expected = {"ok": 0.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}
    expected["ok" if error_type is None else "error"] = 1.0
    assert request_totals(mon) == expected


def test_a_request_found_abandoned_with_no_one_else_ending_it_is_cancelled(registry):
    mon = registry.monitor("fraud", "1")
    context = contextvars.copy_context()
    request = context.run(Request.open, mon, "r-1")
    request._deadline = 0.0
    assert context.run(current_request) is None
    assert request.record.cancelled is True
    request.close(None)  # its owner, late: nothing changes
    assert request.record.cancelled is True
    assert request_totals(mon) == {"ok": 0.0, "error": 0.0, "cancelled": 1.0, "in_flight": 0}


def test_a_late_cancelling_close_leaves_an_ended_request_as_it_was(registry):
    """A second close, cancelling, of a request its owner ended ok changes nothing."""
    mon = registry.monitor("fraud", "1")
    request = Request.open(mon, "r-1")
    request.close(None)
    request.close(None, cancelled=True)
    assert request.record.cancelled is False
    assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


def _faults(component: str = "request") -> int:
    return faults.internal_error_counts().get(component, 0)


@pytest.mark.parametrize("write", ["stage", "action", "prediction", "features", "inputs",
                                   "stage_output"])
def test_a_write_to_an_ended_request_does_not_depend_on_when_the_drain_runs(registry, write):
    """``r.action("shown")`` after the block (a background task after the response): it
    counted when the drain had not yet read the record and vanished when it had; now it
    is the same either way, and counted as a fault."""
    def late(r: Request) -> None:
        if write == "stage":
            with r.stage("postprocess"):
                pass
        elif write == "action":
            r.action("shown")
        elif write == "prediction":
            r.prediction([[0.2, 0.8]])
        elif write == "stage_output":
            r.stage_output("rerank", [1, 2])
        else:
            getattr(r, write)([1.0, 2.0])

    seen = []
    for drained_first in (True, False):
        mon = registry.monitor(f"m{drained_first}", "1")
        with mon.request(request_id="r-1") as r:
            pass
        before = r.record.event("m", "1")
        if drained_first:
            mon.drain()
        faults_before = _faults()
        late(r)
        assert _faults() == faults_before + 1
        assert r.record.event("m", "1") == before
        mon.drain()
        seen.append({name: dict(values) for name, values in mon.state.counters.items()
                     if "actions" in name or "requests" in name or "predicted" in name})
    assert seen[0] == seen[1]


def test_a_closed_request_kept_and_timed_for_good_does_not_grow(registry):
    """A request object kept by a worker after its block and its stage() used on: every
    stage went onto the record the drain had long read, without bound."""
    mon = registry.monitor("m", "1")
    with mon.request() as r:
        pass
    for _ in range(request_module.MAX_STAGES + 10):
        with r.stage("loop"):
            pass
    assert r.record.stages == []


def test_writes_before_entry_and_in_a_joined_block_after_its_exit_are_kept(registry):
    """What is written before the block opens belongs to the request it opens; a joined
    block's object writes to the web request while that request is open."""
    mon = registry.monitor("m", "1")
    r = mon.request(request_id="r-1")
    r.action("early")
    with r:
        pass
    assert r.record.action == "early"
    http = HTTPRequest.open(mon, "h-1")
    try:
        with mon.request() as joined:
            assert joined is http
        inner = mon.request()
        with inner:
            pass
        inner.action("after-block")
        assert http.record.action == "after-block"
    finally:
        http.close(None)
    inner.action("after-close")
    assert http.record.action == "after-block"


_WRITES = st.sampled_from(["stage", "action", "prediction", "features"])


@settings(max_examples=40, deadline=None)
@given(inside=st.lists(_WRITES, max_size=5), after=st.lists(_WRITES, max_size=5),
       drain_at=st.integers(min_value=0, max_value=5))
def test_what_a_request_counts_is_what_happened_while_it_was_open(inside, after, drain_at):
    """Whatever a caller writes after the block, and whenever the drain runs meanwhile,
    the counts are those of the writes made while the request was open."""
    def write(r: Request, op: str, i: int) -> None:
        if op == "stage":
            with r.stage(f"s{i}"):
                pass
        elif op == "action":
            r.action(f"a{i}")
        elif op == "prediction":
            r.prediction([[0.1 * (i % 10), 1 - 0.1 * (i % 10)]])
        else:
            r.features([float(i)])

    def run(late: list[str]) -> dict[str, dict]:
        registry = Registry()
        try:
            mon = registry.monitor("m", "1")
            with mon.request(request_id="r-1") as r:
                for i, op in enumerate(inside):
                    write(r, op, i)
            for i, op in enumerate(late):
                if i == drain_at:
                    mon.drain()
                write(r, op, 100 + i)
            mon.drain()
            return {name: dict(values) for name, values in mon.state.counters.items()}
        finally:
            registry.close()

    assert run(after) == run([])
