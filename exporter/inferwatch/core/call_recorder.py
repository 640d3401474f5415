"""The slow path of an instrumented call: :class:`CallRecorder`.

The wrappers of :mod:`inferwatch.core.call_wrappers` hand it a call given keywords
(``request_id=``), a call inside ``mon.request()`` (which it writes into that request as
its inference stage), and every call while request ids, events or traces are wanted (the
monitor's path is SLOW). For those it builds the call's
:class:`~inferwatch.core.request_record.RequestRecord` for the drain. A call of a model
with a reference profile stays on the fast path, its input kept beside it; a result
followed there (a stream, text) still gets its record from here.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from typing import Any

from inferwatch import faults
from inferwatch.core import request as request_module  # its lock: renewed at fork
from inferwatch.core.awaited_calls import AwaitedCall, recorded_when_awaited
from inferwatch.core.call_input import (
    call_input,
    input_position,
    is_onnx_run,
    recorded_result,
    snapshot,
    snapshot_input,
)
from inferwatch.core.call_values import cancellations
from inferwatch.core.callable_kinds import accepts_keyword, is_coroutine_class
from inferwatch.core.follower import UNFOLLOWED, Follower
from inferwatch.core.monitor import Monitor
from inferwatch.core.request import INFERENCE_STAGE, Request, current_request_of
from inferwatch.core.request_record import RequestRecord, error_message_for, model_error
from inferwatch.core.tracing import current_trace_id

UNRECORDED = object()  # a call whose record could not be prepared: it runs, unrecorded
# (monitor, id) of the id a request-id function gave the call its wrapper just began in this
# thread or task: a shadow layer above a model that names request_id in its own signature
# (so the layer may not pass the id down) reads it, so that the function is called once a
# call and the challenger's copy carries the champion's id.
named_call_id: contextvars.ContextVar[tuple | None] = contextvars.ContextVar(
    "inferwatch_named_call_id", default=None)


class CallRecorder:
    """The slow path: a call that carries a request id, features or an event.

    Used inside ``mon.request()`` (the call becomes that request's inference stage), when
    the call passes ``request_id=``, and when the monitor has a reference profile, an id
    function or an event log. It builds a :class:`RequestRecord` for the drain.
    """

    __slots__ = ("fn", "follow", "monitor", "one_feed", "position", "probabilities",
                 "takes_request_id")

    def __init__(self, fn: Callable, monitor: Monitor, probabilities: bool,
                 follow: Follower) -> None:
        self.fn = fn
        self.monitor = monitor
        self.probabilities = probabilities
        self.takes_request_id = accepts_keyword(fn, "request_id")
        self.follow = follow
        self.position = follow.input_position = input_position(fn)
        self.one_feed = is_onnx_run(fn)

    def call(self, args: tuple, kwargs: dict) -> Any:
        return self._run(self.guarded_begin(args, kwargs), args, kwargs)

    def call_with_id(self, args: tuple, kwargs: dict) -> Any:
        """:meth:`call` of a call whose one keyword is ``request_id=``, outside any open
        request, on a monitor whose path is FAST (the delayed-ground-truth flow's usual
        call): its record made at once, without begin()'s looks for what that path rules
        out (an id function, inputs to keep, traces)."""
        takes = self.takes_request_id
        try:
            request_id = kwargs["request_id"] if takes else kwargs.pop("request_id")
            record = RequestRecord(0.0, request_id=None if request_id is None else
                                   faults.request_id_text(request_id, "request_id"),
                                   started_at=time.time())
            self.monitor.call_started()
        except Exception as exc:
            if not takes:
                kwargs.pop("request_id", None)  # never hand the model what it does not take
            faults.record("request", exc)
            record = UNRECORDED
        return self._run(record, args, kwargs)

    def _run(self, record: RequestRecord | object | None, args: tuple, kwargs: dict) -> Any:
        start = time.perf_counter()
        try:
            result = self.fn(*args, **kwargs)
        except BaseException as exc:
            self.end(record, time.perf_counter() - start, error=exc)
            raise
        try:
            if result.__class__ not in self.follow.plain and \
                    is_coroutine_class(result.__class__):
                return recorded_when_awaited(result, AwaitedCall(
                    start, lambda value: self._returned(record, value, start, args, kwargs),
                    lambda duration, exc: self.end(record, duration, error=exc)))
            return self._returned(record, result, start, args, kwargs)
        except Exception as fault:  # the model's result comes back, recorded or not
            self.unrecorded(record, start, fault)
            return result

    async def call_async(self, args: tuple, kwargs: dict) -> Any:
        record = self.guarded_begin(args, kwargs)
        start = time.perf_counter()
        try:
            result = await self.fn(*args, **kwargs)
        except BaseException as exc:
            self.end(record, time.perf_counter() - start, error=asyncio.CancelledError()
                     if isinstance(exc, GeneratorExit) else exc)  # see _async_wrapper
            raise
        try:
            return self._returned(record, result, start, args, kwargs)
        except Exception as fault:  # the model's result comes back, recorded or not
            self.unrecorded(record, start, fault)
            return result

    def unrecorded(self, record: RequestRecord | object | None, start: float,
                   fault: Exception) -> None:
        """A call whose recording failed once the model had returned: the fault is
        counted and the call ends with no prediction. Never raises."""
        try:
            self.end(record, time.perf_counter() - start)
            faults.record("request", fault)
        except Exception:
            pass

    def _returned(self, record: Any, result: Any, start: float, args: tuple,
                  kwargs: dict) -> Any:
        """What a call of its own gives back once the model returned: a stream followed
        to its end, or the result, recorded (as its own output when the call asked for
        margins or an explanation: ``call_input.recorded_result``)."""
        if result.__class__ not in self.follow.plain:
            followed = self.follow(result, start, args, record, slow=True, kwargs=kwargs)
            if followed is not UNFOLLOWED:
                return followed
        self.end(record, time.perf_counter() - start,
                 recorded_result(result, kwargs) if kwargs else result)
        return result

    def join(self, request: Request, args: tuple) -> Any:
        """A call without keywords inside an open ``mon.request()`` of this monitor: the
        request's inference stage, as :meth:`call` records it, without what only a call
        of its own needs (a record, a request id, margins). A request that has closed
        (seen from a task it started) is not joined: the call is one of its own."""
        if not (request._open or request.is_open):
            return self.call(args, {})
        monitor = self.monitor
        if monitor.keeps_inputs:
            self.give_input(request, args)
        if monitor.traces:
            request.note_trace()  # the span around the call, if the request had none
        start = time.perf_counter()
        try:
            result = self.fn(*args)
        except BaseException as exc:
            # Counted by its class whether the app catches it or it ends the request.
            try:
                self.join_open_request(time.perf_counter() - start, failed=exc,
                                       request=request)
            except Exception as fault:
                faults.record("request", fault)
            raise
        try:
            if result.__class__ not in self.follow.plain and \
                    is_coroutine_class(result.__class__):
                return recorded_when_awaited(result, AwaitedCall(
                    start, lambda value: self._joined_result(request, value, start, args),
                    lambda duration, exc: self.join_open_request(duration, failed=exc,
                                                                 request=request)))
            return self._joined_result(request, result, start, args)
        except Exception as fault:  # the model's result comes back, recorded or not
            try:
                self.join_open_request(time.perf_counter() - start, request=request)
                faults.record("request", fault)
            except Exception:
                pass
            return result

    def _joined_result(self, request: Request, result: Any, start: float, args: tuple) -> Any:
        """What a call that joined `request` gives back once the model returned: a stream
        followed to its end, or the result, recorded as the request's inference stage."""
        duration = time.perf_counter() - start
        if result.__class__ not in self.follow.plain:
            followed = self.follow(result, start, args, None, slow=True)
            if followed is not UNFOLLOWED:
                return followed
        try:
            # join_open_request without its look-up: the request is known.
            if not self._joined(request, duration, result):
                self.join_open_request(duration, result, request=request)
        except Exception as exc:
            faults.record("request", exc)
        return result

    def give_input(self, request: Request, args: tuple, kwargs: dict | None = None) -> None:
        """The call's input as the features of the request it joins, unless the request was
        given its features (``r.features()``) or an earlier call's: with a reference profile
        or an event log, a request (every request of the web middleware) is checked and
        logged with what its model saw."""
        if not self.monitor.keeps_inputs or request.record.features is not None:
            return
        if len(args) > self.position:
            features = snapshot_input(call_input(args, self.position, self.one_feed))
        elif kwargs:
            features = snapshot_input(_keyword_input(kwargs))
        else:
            return
        # Made before the lock a close takes, written under it: a request ended meanwhile
        # (the middleware closing it in its own thread) went to the drain, whose reading of
        # a later write would depend on when it ran.
        with request_module._CLOSING:
            record = request.record
            if request._writable() and record.features is None:
                record.features = features

    def guarded_begin(self, args: tuple, kwargs: dict) -> RequestRecord | object | None:
        """begin(), or UNRECORDED when it fails: the call must go through regardless."""
        try:
            return self.begin(args, kwargs)
        except Exception as exc:
            if not self.takes_request_id:
                kwargs.pop("request_id", None)  # never hand the model what it does not take
            faults.record("request", exc)
            return UNRECORDED

    def begin(self, args: tuple, kwargs: dict) -> RequestRecord | None:
        """Prepare the record (None when the call joins an open request instead)."""
        monitor = self.monitor
        request = current_request_of(monitor)
        if request is not None:
            # The model never gets what it does not take.
            call_id = kwargs.get("request_id") if self.takes_request_id else kwargs.pop(
                "request_id", None)
            if call_id is not None:
                _name_request(request, faults.request_id_text(call_id, "request_id"))
            self.give_input(request, args, kwargs)
            if monitor.traces:
                request.note_trace()  # the span around the call, if the request had none
            return None
        request_id = None
        named = False
        if "request_id" in kwargs:
            request_id = kwargs["request_id"] if self.takes_request_id else kwargs.pop(
                "request_id")
        elif monitor.request_id_fn is not None:
            named = True
            try:
                request_id = monitor.request_id_fn(*args, **kwargs)
            except Exception as exc:
                faults.record("request_id", exc)
        if request_id is not None:
            request_id = faults.request_id_text(request_id, "request_id")
        if named:
            named_call_id.set((monitor, request_id))
        record = RequestRecord(0.0, request_id=request_id, started_at=time.time())
        if monitor.keeps_inputs:
            record.features = snapshot_input(
                call_input(args, self.position, self.one_feed) if len(args) > self.position
                else _keyword_input(kwargs))
        if monitor.traces:
            record.trace_id = current_trace_id()
        monitor.call_started()
        return record

    def record_with(self, features: object) -> RequestRecord:
        """The record of a fast-path call that kept its input and returned a stream: the
        stream finishes it, as on the slow path (the call has counted itself started)."""
        record = RequestRecord(0.0, started_at=time.time())
        record.features = features
        return record

    def finish(self, record: RequestRecord, duration: float, result: Any,
               error: BaseException | None) -> None:
        record.duration = duration
        if error is not None:
            record.error_type = error.__class__
            events = self.monitor.events
            if events is not None:
                record.error_message = error_message_for(events, error)
        else:
            record.prediction = snapshot(result)
            record.has_prediction = True
            record.probabilities = self.probabilities
        self.monitor.submit(record)

    def end(self, record: RequestRecord | object | None, duration: float, result: Any = None,
            error: BaseException | None = None) -> None:
        """Hand the finished call to the drain, or to the request it ran inside. Never raises:
        the caller's result or exception must come through unchanged."""
        try:
            if record is UNRECORDED:
                return
            if record is None:
                self.join_open_request(duration, result, failed=error)
            else:
                self.finish(record, duration, result, error)
        except Exception as exc:
            faults.record("request", exc)

    def join_open_request(self, duration: float, result: Any = None,
                          failed: BaseException | None = None,
                          request: Request | None = None) -> None:
        """Record the call as the open request's inference stage; a failed call has no
        prediction, and its class joins the request's model errors. When the request closed
        while the model ran, it went to the drain without this call: the call is then
        recorded as one of its own."""
        request = request or current_request_of(self.monitor)
        if request is not None and self._joined(request, duration, result, failed):
            return
        self.monitor.call_started()
        own = RequestRecord(0.0, started_at=time.time() - duration)
        self.finish(own, duration, result, failed)

    def _joined(self, request: Request, duration: float, result: Any,
                failed: BaseException | None = None) -> bool:
        """Add the call to `request` if it is still open; False if it had ended. The check
        and the writes are one step under the lock a close takes to end a request: a close
        between them would hand the record to the drain first, and the call would be lost
        (or counted, by when the drain ran). Everything is made before the lock, which a
        finaliser (a request's own close) may want: nothing allocated inside it.

        A failed call joins the record's ``model_errors``, which the drain counts by class:
        the app may catch the exception and answer all the same (a fallback), and the
        request's outcome then says nothing of it; the exception itself is not kept (see
        ``request_record.ModelError``). A cancellation is no failure."""
        stage = (INFERENCE_STAGE, duration)
        succeeded = failed is None
        prediction = snapshot(result) if succeeded else None
        failure = None if succeeded or isinstance(failed, cancellations()) else model_error(failed)
        fresh = None if failure is None else []
        with request_module._CLOSING:
            if not (request._open or request.is_open):
                return False
            record = request.record
            # Past the bound of an abandoned request the stage is dropped, as r.stage()
            # drops one: calls in flight in other threads all found the request within it,
            # and a request held open for good (a websocket's) must not grow without bound.
            full = len(record.stages) >= request_module.MAX_STAGES
            if not full:
                record.stages.append(stage)
                if failure is not None:  # bounded with the stages
                    if record.model_errors is None:
                        record.model_errors = fresh
                    record.model_errors.append(failure)
            if succeeded and not record.has_prediction:
                record.prediction = prediction
                record.has_prediction = True
                record.probabilities = self.probabilities
        if full:
            faults.record("request")
        return True


def _name_request(request: Request, request_id: str | None) -> None:
    """Give an open request that has no id (a web request without an ``X-Request-ID``
    header) the id a call inside it passed: the id its ground truth comes back under,
    which would otherwise join nothing. A request's own id stands."""
    if request_id is None:
        return
    # Under the lock a close takes: never written into a record handed to the drain.
    with request_module._CLOSING:
        if request._writable() and request.record.request_id is None:
            request.record.request_id = request_id


def _keyword_input(kwargs: dict) -> Any:
    """The input of a call made with keywords only (``predict(X=rows, request_id=...)``):
    its first keyword argument other than the request id, which is no feature."""
    return next((value for key, value in kwargs.items() if key != "request_id"), None)
