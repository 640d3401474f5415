"""A request opened with ``Request.open(mon)`` is closed with ``r.close()``, as the README
says: no outcome given is a normal end, counted ok, with its call joined."""

from __future__ import annotations

from typing import Any

import inferwatch
from inferwatch.core.request import Request
from request_totals import request_totals


def test_request_opened_then_closed_with_no_arguments_counts_ok(registry: Any) -> None:
    model = inferwatch.instrument(lambda x: [0.5], name="plain_close", version="1",
                                  registry=registry)
    mon = registry.monitor("plain_close", "1")
    request = Request.open(mon, "r-1")
    model([1.0])
    request.close()
    assert not request.is_open
    assert request_totals(mon) == {"ok": 1, "error": 0, "cancelled": 0, "in_flight": 0}
    stages = mon.state.histograms["inferwatch_stage_duration_seconds"]
    assert stages[("inference",)].count == 1


def test_request_closed_with_no_arguments_after_an_error_close_keeps_the_error(
        registry: Any) -> None:
    """A second close (with no outcome) of an ended request changes nothing."""
    mon = registry.monitor("plain_close_twice", "1")
    request = Request.open(mon)
    request.close(TimeoutError)
    request.close()
    assert request_totals(mon) == {"ok": 0, "error": 1, "cancelled": 0, "in_flight": 0}
