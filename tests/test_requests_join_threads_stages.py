"""Requests joined across threads and stages, and streams joining requests: a handler's
block joining a web request as it ends, one shared request object entered by two threads,
a stage ending as its request closes, a stream of one model inside another's request."""

from __future__ import annotations

import threading
import time as real_time
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults
from inferwatch.core import request as request_module
from inferwatch.core.registry import Registry
from inferwatch.core.request import Request
from inferwatch.core.web_requests import HTTPRequest
from request_totals import request_totals, run_in_thread


def _fault_count(component: str) -> int:
    return faults.internal_error_counts().get(component, 0)


# --- a handler's block joining the web request just as the middleware closes it --------


def _close_when_found(monkeypatch: pytest.MonkeyPatch, http: Request) -> None:
    """Make the handler's block find `http` open, and the middleware (in its own thread)
    close it at that very moment, before the block joins it."""
    found = request_module.current_request_of
    raced: list[bool] = []

    def current_request_of(monitor: Any) -> Request | None:
        request = found(monitor)
        if request is http and not raced:
            raced.append(True)
            run_in_thread(lambda: http.close(None))
        return request

    monkeypatch.setattr(request_module, "current_request_of", current_request_of)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(handler_id=st.text(min_size=1, max_size=40))
def test_block_joining_a_web_request_as_it_closes_is_a_request_of_its_own(
        monkeypatch: pytest.MonkeyPatch, handler_id: str) -> None:
    """The block used to join the closed request: its id was written into a record the
    drain already had, and its prediction, action and call were counted nowhere."""
    registry = Registry()
    try:
        mon = registry.monitor("fraud", "1")
        http = HTTPRequest.open(mon, "header-id")
        with monkeypatch.context() as patch:
            _close_when_found(patch, http)
            with mon.request(request_id=handler_id) as r:
                r.prediction([[0.2, 0.8]], probabilities=True)
                r.action("blocked")
        assert http.record.request_id == "header-id"
        assert r is not http and r.record is not http.record
        assert r.record.request_id == handler_id and r.record.action == "blocked"
        assert request_totals(mon) == {"ok": 2.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}
        assert mon.state.counters["inferwatch_actions_total"] == {("blocked",): 1.0}
    finally:
        registry.close()


def test_block_joining_an_open_web_request_still_joins_it(registry: Registry) -> None:
    mon = registry.monitor("fraud", "1")
    http = HTTPRequest.open(mon, "header-id")
    with mon.request(request_id="handler-id") as r:
        r.action("shown")
    assert r is http and http.is_open
    http.close(None)
    assert http.record.request_id == "handler-id"
    assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


# --- one shared request object entered by two threads at once ---------------------------


def test_shared_request_entered_by_two_threads_is_counted_started_once(
        registry: Registry) -> None:
    """Both threads passed the open check before either opened it: both counted a call
    started while one record was submitted, and the in-flight gauge stayed at one."""
    mon = registry.monitor("m", "1")
    shared = mon.request(request_id="r-1")
    condition = threading.Condition()
    state = {"started": 0, "inside": 0}
    count_started = mon.call_started

    def call_started() -> None:
        # Held until the other thread either counts its own start or is inside the block:
        # the interleaving in which both threads find the request not yet open, forced.
        with condition:
            state["started"] += 1
            condition.notify_all()
            assert condition.wait_for(
                lambda: state["started"] >= 2 or state["inside"] >= 1, timeout=10)
        count_started()

    mon.call_started = call_started  # type: ignore[method-assign]
    barrier = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            with shared as r:
                with condition:
                    state["inside"] += 1
                    condition.notify_all()
                r.action("shown")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and not any(thread.is_alive() for thread in threads)
    del mon.call_started
    assert not shared.is_open
    assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}
    # The object stays usable: entered again, it is a request of its own.
    with shared:
        pass
    assert request_totals(mon) == {"ok": 2.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


def test_shared_request_entered_in_turn_by_threads_counts_each_entry(
        registry: Registry) -> None:
    mon = registry.monitor("m", "1")
    shared = mon.request()
    for _ in range(3):
        run_in_thread(lambda: shared.__exit__(None, None, None) if shared.__enter__() else None)
    assert request_totals(mon) == {"ok": 3.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


# --- a stage ending as its request closes ------------------------------------------------


def _close_at_stage_end(monkeypatch: pytest.MonkeyPatch, request: Request) -> None:
    """Make the stage's end read the clock just as the request is closed in another
    thread (a handler's worker ending its stage while the middleware ends the request)."""
    armed: list[bool] = []

    def perf_counter() -> float:
        if armed and armed.pop():
            run_in_thread(lambda: request.close(None))
        return real_time.perf_counter()

    clock = SimpleNamespace(perf_counter=perf_counter, time=real_time.time)
    monkeypatch.setattr(request_module, "time", clock)
    return armed  # type: ignore[return-value]


def test_stage_ending_as_its_request_closes_never_writes_the_handed_record(
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage checked that the request was open, then appended to its record after the
    close handed it to the drain: whether it counted depended on when the drain ran."""
    mon = registry.monitor("m", "1")
    request = Request.open(mon, "r-1")
    with request.stage("preprocess"):
        pass
    armed = _close_at_stage_end(monkeypatch, request)
    submitted: list[list[tuple[str, float]]] = []
    submit = mon.submit

    def keep(record: Any) -> None:
        submitted.append(list(record.stages))
        submit(record)

    mon.submit = keep  # type: ignore[method-assign]
    before = _fault_count("request")
    stage = request.stage("postprocess")
    with stage:
        armed.append(True)
    monkeypatch.undo()
    del mon.submit
    assert not request.is_open
    # What the drain was handed is what it reads: nothing written into it afterwards.
    assert [name for name, _ in submitted[0]] == ["preprocess"]
    assert [name for name, _ in request.record.stages] == ["preprocess"]
    assert _fault_count("request") == before + 1
    assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


@settings(max_examples=30, deadline=None)
@given(names=st.lists(st.text(max_size=20), min_size=1, max_size=8))
def test_stages_of_an_open_request_are_all_kept(names: list[str]) -> None:
    registry = Registry()
    try:
        mon = registry.monitor("m", "1")
        with mon.request() as r:
            for name in names:
                with r.stage(name):
                    pass
        assert len(r.record.stages) == len(names)
        assert request_totals(mon)["ok"] == 1.0
    finally:
        registry.close()


# --- a stream of one model consumed inside another model's request -----------------------


def _stream_items(monitor: Any) -> float:
    histogram = monitor.state.histograms.get("inferwatch_stream_items", {}).get(())
    return 0.0 if histogram is None else histogram.sum


def test_stream_of_one_model_inside_another_models_block_goes_to_its_own_request(
        registry: Registry) -> None:
    """The stream joined B's request, but its figures went to the innermost request, A's:
    A counted a stream it never made, and B's request lost its stream."""
    tokens = inferwatch.instrument(lambda n: (str(i) for i in range(n)), name="b",
                                   registry=registry)
    b = registry.monitor("b", "unversioned")
    a = registry.monitor("a", "1")
    with b.request() as outer, a.request() as inner:
        assert "".join(tokens(4)) == "0123"
    assert inner.record.stream is None
    assert outer.record.stream is not None and outer.record.stream.items == 4
    assert request_totals(b) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}
    assert request_totals(a) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}
    assert _stream_items(b) == 4.0
    assert _stream_items(a) == 0.0


@settings(max_examples=25, deadline=None)
@given(parts=st.lists(st.text(max_size=10), max_size=12))
def test_stream_inside_its_own_models_request_joins_it(parts: list[str]) -> None:
    registry = Registry()
    try:
        relay = inferwatch.instrument(lambda items: (item for item in items), name="b",
                                      registry=registry)
        b = registry.monitor("b", "unversioned")
        with b.request() as r:
            assert list(relay(list(parts))) == parts
        assert r.record.stream is not None and r.record.stream.items == len(parts)
        assert request_totals(b) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}
    finally:
        registry.close()


# --- writes racing the close, a stage past the bound, a prediction's odd flag -----------


class _ClosingLabel:
    """A label whose text is read just as the request is closed in another thread."""

    def __init__(self, request: Request, text: str) -> None:
        self.request = request
        self.text = text

    def __str__(self) -> str:
        run_in_thread(lambda: self.request.close(None))
        return self.text


@settings(max_examples=20, deadline=None)
@given(text=st.text(min_size=1, max_size=30))
def test_action_written_as_its_request_closes_never_reaches_the_handed_record(
        text: str) -> None:
    """The write checked the request open, then set the action on a record a close had
    just handed to the drain: the action counted or not by when the drain ran."""
    registry = Registry()
    try:
        mon = registry.monitor("m", "1")
        request = Request.open(mon, "r-1")
        submitted: list[object] = []
        submit = mon.submit

        def keep(record: Any) -> None:
            submitted.append(record.action)
            submit(record)

        mon.submit = keep  # type: ignore[method-assign]
        before = _fault_count("request")
        request.action(_ClosingLabel(request, text))  # type: ignore[arg-type]
        assert not request.is_open
        assert submitted == [None] and request.record.action is None
        assert _fault_count("request") == before + 1
        del mon.submit
        assert request_totals(mon)["ok"] == 1.0
        assert mon.state.counters.get("inferwatch_actions_total", {}) == {}
    finally:
        registry.close()


def test_stage_output_written_as_its_request_closes_is_dropped_and_counted(
        registry: Registry) -> None:
    mon = registry.monitor("m", "1")
    request = Request.open(mon, "r-1")
    before = _fault_count("request")
    request.stage_output(_ClosingLabel(request, "candidates"), [1, 2, 3])  # type: ignore[arg-type]
    assert not request.is_open
    assert request.record.stage_outputs is None
    assert _fault_count("request") == before + 1


def test_stages_of_a_request_held_open_stay_bounded(
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request held open for good (a websocket's, a stage per message, no model call to
    find it abandoned) kept every stage: its record grew without bound."""
    monkeypatch.setattr(request_module, "MAX_STAGES", 5)
    mon = registry.monitor("m", "1")
    before = _fault_count("request")
    with mon.request() as r:
        for _ in range(12):
            with r.stage("message"):
                pass
        assert len(r.record.stages) == 5
    assert _fault_count("request") == before + 7
    assert request_totals(mon)["ok"] == 1.0


def test_prediction_with_an_array_as_probabilities_flag_never_raises(
        registry: Registry) -> None:
    """``probabilities=`` given an array (a mask from the model's output) raised numpy's
    ValueError out of r.prediction() into the handler."""
    np = pytest.importorskip("numpy")
    mon = registry.monitor("m", "1")
    before = _fault_count("request")
    with mon.request() as r:
        r.prediction([[0.1, 0.9]], probabilities=np.array([True, False]))  # type: ignore[arg-type]
        r.action("shown")
    assert r.record.has_prediction and r.record.probabilities is None
    assert _fault_count("request") == before + 1
    assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}
