"""``instrument()``: wrap a model object, a function or an async function.

The wrappers are the request path. Each call does two clock reads, one
``next()`` on an ``itertools.count`` (for the in-flight gauge) and one ``list.append``
(the appenders come bound from :meth:`Monitor.fast_path`); the exception path re-raises
the caller's exception object untouched.

>>> import inferwatch
>>> from inferwatch.core.registry import Registry
>>> predict = inferwatch.instrument(lambda x: x * 2.0, name="double", version="1",
...                                 registry=Registry())
>>> predict(2.0)
4.0
"""

from __future__ import annotations

import contextvars
import copy
import datetime as _dt
import functools
import inspect
import math
import numbers
import os
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MethodType
from typing import Any, NamedTuple, TypeVar

import numpy as np

from inferwatch import faults
from inferwatch.core import request as request_module  # its lock: renewed at fork
from inferwatch.core.call_input import (
    COPY_LIMIT_BYTES,
    ArrayLayout,
    call_input,
    input_position,
    is_onnx_run,
    snapshot,
    snapshot_input,
)
from inferwatch.core.monitor import FAST, SLOW, WITH_INPUTS, Monitor
from inferwatch.core.options import Settings
from inferwatch.core.pending_calls import array_from_bytes
from inferwatch.core.predictions import class_names_of
from inferwatch.core.registry import Registry, default_registry, is_finite_version, version_text
from inferwatch.core.request import (
    INFERENCE_STAGE,
    Request,
    RequestRecord,
    current_request_of,
)
from inferwatch.core.request import _current as open_request
from inferwatch.core.streams import UNFOLLOWED, Follower, follow_sync
from inferwatch.core.timestamps import epoch_seconds
from inferwatch.core.tracing import current_trace_id, otel_configured

F = TypeVar("F", bound=Callable[..., Any])

# inplace_predict: xgboost's Booster predicting straight from an array (no DMatrix), as its
# serving code does.
WRAPPED_METHODS = (("predict", False), ("predict_proba", True), ("inplace_predict", False))
_WRAPPED_NAMES = dict(WRAPPED_METHODS)
UNRECORDED = object()  # a call whose record could not be prepared: it runs, unrecorded
# (monitor, id) of the id a request-id function gave the call its wrapper just began in this
# thread or task: a shadow layer above a model that names request_id in its own signature
# (so the layer may not pass the id down) reads it, so that the function is called once a
# call and the challenger's copy carries the champion's id.
named_call_id: contextvars.ContextVar[tuple | None] = contextvars.ContextVar(
    "inferwatch_named_call_id", default=None)
_SETTINGS_FIELDS = frozenset(Settings.__dataclass_fields__)


# Keywords with which xgboost (output_margin, or inplace_predict's predict_type="margin") and
# LightGBM (raw_score) return raw scores instead of probabilities: recorded under their own
# output, never mixed with probabilities.
MARGIN_KEYWORDS = ("output_margin", "raw_score")
MARGIN_OUTPUT = "margin"


def _asks_for_margins(kwargs: dict) -> bool:
    try:
        return any(kwargs.get(k) is True for k in MARGIN_KEYWORDS) or \
            kwargs.get("predict_type") == "margin"
    except Exception:  # a hostile mapping: record the call as a plain prediction
        return False


class _CallRecorder:
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
        self.takes_request_id = _accepts_keyword(fn, "request_id")
        self.follow = follow
        self.position = follow.input_position = input_position(fn)
        self.one_feed = is_onnx_run(fn)

    def call(self, args: tuple, kwargs: dict) -> Any:
        record = self.guarded_begin(args, kwargs)
        start = time.perf_counter()
        try:
            result = self.fn(*args, **kwargs)
        except BaseException as exc:
            self.end(record, time.perf_counter() - start, error=exc)
            raise
        return self._returned(record, result, start, args, kwargs)

    async def call_async(self, args: tuple, kwargs: dict) -> Any:
        record = self.guarded_begin(args, kwargs)
        start = time.perf_counter()
        try:
            result = await self.fn(*args, **kwargs)
        except BaseException as exc:
            self.end(record, time.perf_counter() - start, error=exc)
            raise
        return self._returned(record, result, start, args, kwargs)

    def _returned(self, record: Any, result: Any, start: float, args: tuple,
                  kwargs: dict) -> Any:
        """What a call of its own gives back once the model returned: a stream followed
        to its end, or the result, recorded (its margins when the call asked for them)."""
        if result.__class__ not in self.follow.plain:
            followed = self.follow(result, start, args, record, slow=True, kwargs=kwargs)
            if followed is not UNFOLLOWED:
                return followed
        self.end(record, time.perf_counter() - start,
                 {MARGIN_OUTPUT: snapshot(result)} if _asks_for_margins(kwargs) else result)
        return result

    def join(self, request: Request, args: tuple) -> Any:
        """A call without keywords inside an open ``mon.request()`` of this monitor: the
        request's inference stage, as :meth:`call` records it, without what only a call
        of its own needs (a record, a request id, margins). A request that has closed
        (seen from a task it started) is not joined: the call is one of its own."""
        if not (request._open or request.is_open):
            return self.call(args, {})
        if self.monitor.keeps_inputs:
            self.give_input(request, args)
        start = time.perf_counter()
        try:
            result = self.fn(*args)
        except BaseException as exc:
            # Its exception reaches the request's block, which counts the failure.
            try:
                self.join_open_request(time.perf_counter() - start, failed=exc,
                                       request=request)
            except Exception as fault:
                faults.record("request", fault)
            raise
        duration = time.perf_counter() - start
        if result.__class__ not in self.follow.plain:
            followed = self.follow(result, start, args, None, slow=True)
            if followed is not UNFOLLOWED:
                return followed
        try:
            # join_open_request without its look-up: the request is known.
            if not self._joined(request, duration, True, result):
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
                _name_request(request, faults.text_of(call_id, "request_id"))
            self.give_input(request, args, kwargs)
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
            request_id = faults.text_of(request_id, "request_id")
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
        prediction (its exception reaches the request's ``with`` block, which counts it).
        When the request closed while the model ran, it went to the drain without this
        call: the call is then recorded as one of its own."""
        request = request or current_request_of(self.monitor)
        if request is not None and self._joined(request, duration, failed is None, result):
            return
        self.monitor.call_started()
        own = RequestRecord(0.0, started_at=time.time() - duration)
        self.finish(own, duration, result, failed)

    def _joined(self, request: Request, duration: float, succeeded: bool, result: Any) -> bool:
        """Add the call to `request` if it is still open; False if it had ended. The check
        and the writes are one step under the lock a close takes to end a request: a close
        between them would hand the record to the drain first, and the call would be lost
        (or counted, by when the drain ran). Everything is made before the lock, which a
        finaliser (a request's own close) may want: nothing allocated inside it."""
        stage = (INFERENCE_STAGE, duration)
        prediction = snapshot(result) if succeeded else None
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


def _sync_wrapper(fn: Callable, monitor: Monitor, probabilities: bool) -> Callable:
    started, pending, append, errors, append_error, limit, hand_off, *_ = monitor.fast_path(
        probabilities)
    clock = time.perf_counter
    follow = Follower(monitor)  # streams and text; `plain` holds the classes that are neither
    plain = follow.plain
    slow = _CallRecorder(fn, monitor, probabilities, follow)
    in_request = open_request.get  # a C call: cheap enough for the fast path
    ndarray, copy_limit = np.ndarray, COPY_LIMIT_BYTES
    position, one_feed = slow.position, slow.one_feed
    # (shape, dtype, ArrayLayout or None) of the last small numeric array result.
    known: tuple = (None, None, None)

    def with_input(args: tuple) -> Any:
        """A call of a model with a reference profile: its input goes with it, for the
        drain to check, as the call saw it (a caller may refill one buffer). A small
        numeric array is kept with its bytes (`kept_raw`), which the drain reads as one
        array (pending_calls.call_columns); any other input is kept as ``snapshot`` gives it."""
        first = args[position] if len(args) > position else None
        if one_feed and first.__class__ is dict and len(first) == 1:
            first = next(iter(first.values()))  # an ONNX session's feed of one input
        if first.__class__ is ndarray and first.nbytes <= copy_limit and \
                not first.dtype.hasobject:
            kept, kept_raw = first, first.tobytes()  # a third of what a copy costs
        else:
            kept, kept_raw = (None if first is None else snapshot_input(first)), None
        next(started)
        start = clock()
        try:
            result = fn(*args)
        except BaseException as exc:
            if kept_raw is not None:
                kept = array_from_bytes(kept, kept_raw)
            failure = (clock() - start, exc.__class__) if kept is None else (
                clock() - start, exc.__class__, kept)
            if len(errors) < limit:
                append_error(failure)
            else:
                hand_off(errors, failure)
            raise
        if result.__class__ not in plain:
            whole = kept if kept_raw is None else array_from_bytes(kept, kept_raw)
            followed = follow(result, start, args) if whole is None else follow(
                result, start, args, slow.record_with(whole), slow=True)
            if followed is not UNFOLLOWED:
                return followed
            recorded = snapshot(result)  # an ndarray subclass (np.matrix, masked): copied
        else:
            recorded = result
        raw = None  # a small array's bytes, as on the fast path
        if result.__class__ is ndarray and result.nbytes <= copy_limit:
            if result.dtype.hasobject:
                recorded = result.copy()
            else:
                raw = result.tobytes()
        # The shapes pending_calls.call_columns reads: (duration, result[, input][, raws]).
        if kept_raw is not None:
            done = (clock() - start, recorded, kept, kept_raw, raw)
        elif raw is not None:
            done = (clock() - start, recorded, kept, raw)
        elif kept is None:
            done = (clock() - start, recorded)
        else:
            done = (clock() - start, recorded, kept)
        if len(pending) < limit:
            append(done)
        else:
            hand_off(pending, done)
        return result

    @functools.wraps(fn)
    def instrumented(*args: Any, **kwargs: Any) -> Any:
        nonlocal known
        path = monitor.path
        request = in_request()
        if path is not FAST or kwargs or request is not None:
            if request is not None and not kwargs:
                own = current_request_of(monitor) or (
                    request if request.monitor is monitor else None)
                if own is not None:
                    return slow.join(own, args)
            if kwargs or path is SLOW or request is not None:
                return slow.call(args, kwargs)
            return with_input(args)
        next(started)
        start = clock()
        try:
            result = fn(*args)  # no keywords: the ones given took the slow path
        except BaseException as exc:
            failure = (clock() - start, exc.__class__)
            if len(errors) < limit:
                append_error(failure)
            else:
                hand_off(errors, failure)
            raise
        cls = result.__class__
        recorded = result
        if cls not in plain:
            followed = follow(result, start, args)
            if followed is not UNFOLLOWED:
                return followed
            recorded = snapshot(result)  # an ndarray subclass (np.matrix, masked): copied
        if cls is ndarray:
            # Its bytes as the call returned them, read in the drain with the array's dtype
            # and shape: about a third of what a copy costs here. A shape and dtype seen on
            # the wrapper's last array call go with a layout of them in place of the array
            # (call_input.ArrayLayout): the call keeps no array alive (a model's fresh
            # output, or a view and its base), and the drain knows all its calls of one
            # layout by one look. `known` is one tuple, swapped whole: calls in other
            # threads read a shape, a dtype and a layout that belong together.
            shape = result.shape
            known_shape, known_dtype, layout = known
            if shape == known_shape and result.dtype is known_dtype:
                if layout is None:  # the shape came again: it is worth a layout
                    layout = ArrayLayout(known_dtype, shape)
                    known = (shape, known_dtype, layout)
                done = (clock() - start, layout, None, result.tobytes())
            elif result.nbytes <= copy_limit:
                dtype = result.dtype
                if not dtype.hasobject:
                    done = (clock() - start, result, None, result.tobytes())
                    known = (shape, dtype, None)
                else:
                    done = (clock() - start, result.copy())
            else:
                done = (clock() - start, recorded)
        else:
            done = (clock() - start, recorded)
        if len(pending) < limit:
            append(done)
        else:
            hand_off(pending, done)
        return result

    def set_limit(new_limit: int) -> None:
        nonlocal limit
        limit = new_limit

    monitor.follow_pending_chunk(instrumented, set_limit)
    if inspect.isgeneratorfunction(fn):
        return _generator_wrapper(fn, monitor, follow, started, instrumented)
    return instrumented


def _generator_wrapper(fn: Callable, monitor: Monitor, follow: Follower, started: Iterator,
                       general: Callable) -> Callable:
    """A generator function's wrapper. A fast-path call that needs only counts is made,
    timed and followed by one primed generator (:func:`follow_sync`): the least a Python
    wrapper can add to the time to first item. Any other call takes the `general` wrapper."""
    in_request = open_request.get

    @functools.wraps(fn)
    def instrumented(*args: Any, **kwargs: Any) -> Any:
        # One identity check stands for three: the monitor is on its fast path, its settings
        # are the ones the follower planned for, and they need no token counting.
        if kwargs or monitor.fast_settings is not follow.lean_settings or \
                in_request() is not None:
            return general(*args, **kwargs)
        next(started)
        follower = follow_sync(fn, args, None, monitor, follow.plan, 0.0)
        next(follower)
        return follower

    return instrumented


def _async_wrapper(fn: Callable, monitor: Monitor, probabilities: bool) -> Callable:
    fast = monitor.fast_path(probabilities)
    started, finished, failed = fast.started, fast.finished, fast.failed
    clock = time.perf_counter
    follow = Follower(monitor)
    plain = follow.plain
    slow = _CallRecorder(fn, monitor, probabilities, follow)
    in_request = open_request.get
    position, one_feed = slow.position, slow.one_feed

    @functools.wraps(fn)
    async def instrumented(*args: Any, **kwargs: Any) -> Any:
        path = monitor.path
        if kwargs or path is SLOW or in_request() is not None:
            return await slow.call_async(args, kwargs)
        seen_input = snapshot_input(call_input(args, position, one_feed)) if \
            path is WITH_INPUTS and len(args) > position else None
        next(started)
        start = clock()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            failed(clock() - start, exc.__class__, seen_input)
            raise
        if result.__class__ not in plain:
            followed = follow(result, start, args) if seen_input is None else follow(
                result, start, args, slow.record_with(seen_input), slow=True)
            if followed is not UNFOLLOWED:
                return followed
        finished(clock() - start, snapshot(result), seen_input)
        return result

    monitor.follow_pending_chunk(instrumented, fast.set_limit)
    return instrumented


_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _accepts_keyword(fn: Callable, name: str) -> bool:
    """Whether `fn` names the keyword `name` in its own signature.

    A catch-all ``**kwargs`` does not count: scikit-learn's Pipeline hands ``**params`` to
    its last step, statsmodels and ``nn.Module.__call__`` to methods that reject unknown
    keywords, so only a parameter spelled out by name receives it.

    >>> _accepts_keyword(lambda x, request_id=None: x, "request_id")
    True
    >>> _accepts_keyword(lambda x, **params: x, "request_id")
    False
    """
    targets = [fn]
    if not inspect.isroutine(fn):
        forward = _method_of(fn, "forward")
        if callable(forward):
            targets.append(forward)  # a torch module's __call__ runs forward(*args, **kwargs)
    for target in targets:
        try:
            parameter = inspect.signature(target).parameters.get(name)
        except Exception:  # no signature, or a __signature__ that raises: not named
            continue
        if parameter is not None and parameter.kind in _NAMED:
            return True
    return False


def wrap_callable(fn: Callable, monitor: Monitor, probabilities: bool = False) -> Callable:
    """The instrumented version of one callable, sync or async."""
    if inspect.iscoroutinefunction(fn):
        wrapper = _async_wrapper(fn, monitor, probabilities)
    else:
        wrapper = _sync_wrapper(fn, monitor, probabilities)
        if _is_stream_function(fn):
            wrapper = _StreamFunction(fn, wrapper)
    wrapper._inferwatch_monitor = monitor  # type: ignore[attr-defined]  # see _unwrapped
    return wrapper


def _is_stream_function(fn: Callable) -> bool:
    try:
        return inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
    except Exception:  # a __getattr__ that raises for __func__ or __code__: no function
        return False


class _StreamFunction:
    """The wrapper of a generator function or an async generator function. A wrapper
    function would be neither to ``inspect.isgeneratorfunction`` / ``isasyncgenfunction``,
    by which Gradio, Ray Serve and FastAPI decide that a function streams: this one carries
    the function's code object, which is what they read, and binds as a method when
    decorated in a class body, as the function does."""

    def __init__(self, fn: Callable, call: Callable) -> None:
        functools.update_wrapper(self, fn)
        d = self.__dict__
        d["_inferwatch_call"] = call
        for name in ("__code__", "__defaults__", "__kwdefaults__"):
            d[name] = getattr(fn, name, None)
        if not isinstance(d.get("__annotations__"), dict):
            d["__annotations__"] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__dict__["_inferwatch_call"](*args, **kwargs)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self if instance is None else MethodType(self, instance)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __reduce__(self) -> str:
        # Pickled by name, as a function is: a module-level or class-body decorated one
        # is found again where it was defined.
        return self.__qualname__


def _unwrapped(target: Any) -> Any:
    """The model or function under inferwatch's own wrappers: instrumenting a wrapper
    again (a library that instruments what it is given, and its caller) must record
    each call once, under the name given last, not once per layer."""
    while True:
        if type(target) is InstrumentedModel:
            target = target.__dict__["__wrapped__"]
        elif type(target) is _Chained:
            # A method read through the wrapper (`instrument(net.generate)` after
            # `net = instrument(net)`): the model's bound method, as without the wrapper.
            target = target.__wrapped__
        elif (inspect.isfunction(target) or type(target) is _StreamFunction) and \
                "_inferwatch_monitor" in target.__dict__:
            target = target.__wrapped__
        else:
            return target


def _call_wrapper(model: Any, monitor: Monitor) -> Callable:
    """The wrapper of a callable model's ``__call__``. Wrapping reads attributes of the
    model (``__name__``, ``forward``, its signature); a model whose ``__getattr__`` raises
    something other than AttributeError for them has its bound ``__call__`` wrapped, which
    behaves the same for every call."""
    try:
        return wrap_callable(model, monitor)
    except Exception:
        return wrap_callable(type(model).__call__.__get__(model), monitor)


def _method_of(model: Any, name: str) -> Any:
    """The model's `name` method, or None. A model whose ``__getattr__`` raises something
    other than AttributeError for a name it lacks (a KeyError from a dict-backed proxy)
    serves its ``predict`` unwrapped, so it must be instrumentable too.

    >>> class Proxy:
    ...     def __getattr__(self, name):
    ...         return {"predict": len}[name]
    >>> _method_of(Proxy(), "predict_proba") is None
    True
    """
    try:
        return getattr(model, name, None)
    except Exception:
        return None


class InstrumentedModel:
    """A transparent proxy: ``predict``, ``predict_proba`` and ``__call__`` are recorded.

    Every other attribute reads and writes through to the wrapped model, ``isinstance``
    sees the model's class, and pickling stores the model with its instrument() options.
    """

    def __init__(self, model: Any, monitor: Monitor, spec: _Spec, registry: Registry) -> None:
        d = self.__dict__
        d["__wrapped__"] = model
        d["_inferwatch_monitor"] = monitor
        d["_inferwatch_spec"] = spec
        d["_inferwatch_registry"] = registry
        for method_name, probabilities in WRAPPED_METHODS:
            method = _method_of(model, method_name)
            if callable(method):
                # Stored in the instance dict so the hot path finds them without __getattr__.
                d[method_name] = wrap_callable(method, monitor, probabilities)
        d["_inferwatch_call"] = _call_wrapper(model, monitor) if callable(model) else None

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(proxy, type(model)) holds
        return type(self.__dict__["__wrapped__"])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        call = self.__dict__["_inferwatch_call"]
        if call is None:
            raise TypeError(f"'{type(self.__wrapped__).__name__}' object is not callable")
        return call(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        model = self.__dict__["__wrapped__"]
        value = getattr(model, name)
        if inspect.ismethod(value) and value.__self__ is model:
            return _Chained(value, model, self)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        if name in _WRAPPED_NAMES and (inspect.isfunction(value) or
                                       type(value) is _StreamFunction) and \
                value.__dict__.get("_inferwatch_monitor") is d["_inferwatch_monitor"]:
            value = value.__wrapped__  # this model's own wrapper, given back: recorded once
        setattr(d["__wrapped__"], name, value)
        if name in _WRAPPED_NAMES:
            self._rewrap(name)

    def __delattr__(self, name: str) -> None:
        delattr(self.__dict__["__wrapped__"], name)
        if name in _WRAPPED_NAMES:
            self._rewrap(name)

    def _rewrap(self, name: str) -> None:
        """Wrap the model's `name` method anew after it was assigned or deleted
        (``model.predict = patched``): the instance dict holds the wrapped method for the
        hot path, and would otherwise keep calling the replaced one."""
        d = self.__dict__
        method = _method_of(d["__wrapped__"], name)
        if callable(method):
            d[name] = wrap_callable(method, d["_inferwatch_monitor"], _WRAPPED_NAMES[name])
        else:
            d.pop(name, None)  # reads pass through to the model's own attribute

    def __dir__(self) -> list[str]:
        return dir(self.__dict__["__wrapped__"])

    def __repr__(self) -> str:
        return repr(self.__dict__["__wrapped__"])

    def __str__(self) -> str:
        return str(self.__dict__["__wrapped__"])

    def __len__(self) -> int:
        return len(self.__dict__["__wrapped__"])

    def __iter__(self) -> Any:
        return iter(self.__dict__["__wrapped__"])

    def __getitem__(self, key: Any) -> Any:
        return self.__dict__["__wrapped__"][key]

    def __eq__(self, other: object) -> Any:
        # Equal as the model is, and hashed as it is: a model with its own __eq__ (a
        # dataclass, a config-keyed model) found the wrapper equal to a model that hashed
        # differently, so a dict or set of models lost it.
        if type(other) is InstrumentedModel:
            other = other.__dict__["__wrapped__"]
        return self.__dict__["__wrapped__"] == other

    def __hash__(self) -> int:
        return hash(self.__dict__["__wrapped__"])

    def __bool__(self) -> bool:
        # Without it bool() falls back on __len__ above, and `if model:` raises for every
        # model without a length (an estimator, a torch module).
        return bool(self.__dict__["__wrapped__"])

    def __contains__(self, item: Any) -> bool:
        # Without it `in` falls back on __getitem__ with 0, 1, ...: a KeyError from a
        # mapping-like model instead of its own answer.
        return item in self.__dict__["__wrapped__"]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["__wrapped__"][key] = value

    def __delitem__(self, key: Any) -> None:
        del self.__dict__["__wrapped__"][key]

    def __enter__(self) -> Any:
        """The model's own ``with`` (a session, a client); a model that enters as itself
        enters as the wrapper, so calls in the block are recorded."""
        model = self.__dict__["__wrapped__"]
        enter = getattr(type(model), "__enter__", None)
        if enter is None or getattr(type(model), "__exit__", None) is None:
            raise TypeError(f"'{type(model).__name__}' object does not support the context "
                            "manager protocol")
        entered = enter(model)
        return self if entered is model else entered

    def __exit__(self, *exc_info: Any) -> Any:
        model = self.__dict__["__wrapped__"]
        return type(model).__exit__(model, *exc_info)

    async def __aenter__(self) -> Any:
        model = self.__dict__["__wrapped__"]
        enter = getattr(type(model), "__aenter__", None)
        if enter is None or getattr(type(model), "__aexit__", None) is None:
            raise TypeError(f"'{type(model).__name__}' object does not support the "
                            "asynchronous context manager protocol")
        entered = await enter(model)
        return self if entered is model else entered

    async def __aexit__(self, *exc_info: Any) -> Any:
        model = self.__dict__["__wrapped__"]
        return await type(model).__aexit__(model, *exc_info)

    def __reduce_ex__(self, protocol: int) -> tuple:
        d = self.__dict__
        return (_restore, (d["__wrapped__"], _current_spec(d["_inferwatch_spec"],
                                                           d["_inferwatch_monitor"])))

    def __copy__(self) -> InstrumentedModel:
        """A copy of the model, recording into the same monitor (pickling's way would
        record into the default registry and reopen the event log)."""
        return self._with_model(copy.copy(self.__dict__["__wrapped__"]))

    def __deepcopy__(self, memo: dict) -> InstrumentedModel:
        return self._with_model(copy.deepcopy(self.__dict__["__wrapped__"], memo))

    def _with_model(self, model: Any) -> InstrumentedModel:
        d = self.__dict__
        return InstrumentedModel(model, d["_inferwatch_monitor"], d["_inferwatch_spec"],
                                 d["_inferwatch_registry"])

    def __sklearn_is_fitted__(self) -> bool:
        """Whether the wrapped estimator is fitted, as scikit-learn's ``check_is_fitted``
        decides it. Without this it would look for fitted attributes (``coef_``) in the
        wrapper's own ``vars()``, and a Pipeline whose last step is an instrumented
        estimator would refuse to predict."""
        model = self.__dict__["__wrapped__"]
        own = getattr(model, "__sklearn_is_fitted__", None)
        if own is not None:
            return bool(own())
        try:
            return any(name.endswith("_") and not name.startswith("__") for name in vars(model))
        except TypeError:  # no __dict__: nothing was fitted onto it
            return False


class _Chained:
    """A method of the wrapped model whose ``self`` result comes back as the wrapper, so
    ``instrument(net).eval()``, ``.to("cpu")``, ``.fit(...)`` and ``.set_params(...)`` keep
    recording."""

    __slots__ = ("__wrapped__", "_model", "_proxy")

    def __init__(self, method: Callable, model: Any, proxy: InstrumentedModel) -> None:
        self.__wrapped__ = method
        self._model = model
        self._proxy = proxy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.__wrapped__(*args, **kwargs)
        if inspect.iscoroutine(result):
            # An async method (`await model.fit_async(...)`) gives its model back only when
            # awaited: the wrapper must come back then, as a sync method's does.
            return _chained_result(result, self._model, self._proxy)
        return self._proxy if result is self._model else result

    def __getattr__(self, name: str) -> Any:  # __name__, __doc__, __func__, ...
        return getattr(self.__wrapped__, name)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __eq__(self, other: object) -> bool:
        return self.__wrapped__ == (other.__wrapped__ if isinstance(other, _Chained) else other)

    def __hash__(self) -> int:
        return hash(self.__wrapped__)


async def _chained_result(coroutine: Any, model: Any, proxy: InstrumentedModel) -> Any:
    result = await coroutine
    return proxy if result is model else result


class _Spec(NamedTuple):
    """Everything instrument() was given besides the model: what a pickle stores."""

    name: str
    version: str
    settings: Settings
    trained_at: float | None = None
    reference: Any = None
    request_id: Callable[..., object] | bool | None = None  # False: none
    # a live event log (a thread and open files) is not picklable: its path is (False: none)
    events: str | os.PathLike | bool | None = None


def _restore(model: Any, spec: _Spec) -> Any:
    return _instrument(model, spec, is_function=False, registry=None)


def _timestamp(value: Any) -> float | None:
    """`trained_at` as Unix seconds, or ValueError / TypeError naming what is wrong.

    Read by the rule ``record_outcome(at=)`` reads times by (``timestamps.seconds_of``): a
    naive datetime is UTC; a number of 1e11 or more is epoch ms, us or ns by its size;
    ISO 8601 text that names a time of day needs an offset. A training pipeline writes
    ``datetime.now().isoformat()`` in its host's local time as readily as an event stream
    does, and read as UTC either would be off by the zone's hours without a word (a model's
    age, a label's delay); here the mistake is refused where the model is instrumented. A
    date alone (``"2026-10-01"``) is that day's midnight UTC, as a ``date`` is: a model's
    age is read in days.

    >>> _timestamp("2026-01-01T02:00:00+02:00"), _timestamp("2026-01-01")
    (1767225600.0, 1767225600.0)
    >>> _timestamp(1767225600000)  # epoch milliseconds
    1767225600.0
    """
    if value is None:
        return None
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise ValueError("NaT is no time")
        value = value.astype("datetime64[us]").item()  # a naive datetime: UTC, below
    if isinstance(value, _dt.datetime):
        if value != value:  # pd.NaT
            raise ValueError("NaT is no time")
        if value.utcoffset() is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.timestamp()
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day,
                            tzinfo=_dt.timezone.utc).timestamp()
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)  # Unix seconds as text, as record_outcome(at=) reads them
        except ValueError:
            pass
        else:
            return _timestamp(number)
        try:
            day = _dt.date.fromisoformat(text)
        except ValueError:
            pass
        else:
            return _timestamp(day)
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.utcoffset() is None:
            raise ValueError("ISO 8601 text with a time of day needs an offset ('Z' or "
                             "'+02:00'): its time zone is not known")
        return moment.timestamp()
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("a bool is no time")
    seconds = epoch_seconds(float(value))
    if not math.isfinite(seconds):
        raise ValueError("not a finite time")
    return seconds


# Packages whose classes a user's model subclasses; the first one in the class's bases wins.
FRAMEWORKS = ("sklearn", "torch", "xgboost", "lightgbm", "catboost", "statsmodels",
              "onnxruntime", "tensorflow", "keras", "jax", "flax", "transformers")


def _framework(target: Any, is_function: bool) -> str:
    """The package the model comes from: sklearn, torch, xgboost, ...

    Read from the class and its bases, so that a user's ``nn.Module`` subclass defined in
    ``__main__`` is ``torch``; a class with no known base gives its own top-level package.

    >>> _framework(len, is_function=True)
    'python'
    """
    if is_function:
        return "python"
    own = (type(target).__module__ or "unknown").split(".")[0]
    for base in type(target).__mro__:
        package = (getattr(base, "__module__", None) or "").split(".")[0]
        if package in FRAMEWORKS:
            return package
    return own


def _version_text(version: object) -> str:
    """The ``model_version`` label of `version`: a string, or a number written as one.

    None (an unset environment variable, ``os.environ.get("MODEL_VERSION")``) is
    "unversioned", as an empty string is, rather than the label "None"; any other type
    is refused, since its ``str()`` (an object's address) would change every restart.

    >>> _version_text(None), _version_text(3), _version_text(" 1.4.2\\n")
    ('unversioned', '3', '1.4.2')
    """
    if version is None:
        return "unversioned"
    if not is_finite_version(version):
        raise ValueError("inferwatch.instrument: version must be a finite number or a "
                         f"string, got {version!r}")
    if isinstance(version, (str, numbers.Real)) and not isinstance(version, bool):
        # Outer whitespace (a version read from a file ends in a newline) would make a
        # series of its own beside the version's.
        return version_text(version) or "unversioned"
    raise TypeError("inferwatch.instrument: version must be a string (or a number), "
                    f"got {type(version).__name__}")


def instrument(target: Any = None, /, *, name: str, version: str = "unversioned",
               trained_at: Any = None, reference: Any = None, request_id: Any = None,
               events: Any = None, registry: Registry | None = None, **options: Any) -> Any:
    """Record latency, errors, versions and predictions of a model or function.

    `target` is a model object (its ``predict``, ``predict_proba`` and ``__call__`` are
    wrapped), a plain or ``async`` function, or omitted to get a decorator.
    `trained_at` is a datetime (naive: UTC), a date, ISO 8601 text (a date alone, or a
    time with an offset) or Unix seconds (ms, us or ns from 1e11 up, by size). `reference` (a
    :class:`~inferwatch.Reference` or the path of a saved one) switches on data-quality
    counters and drift; `request_id` is a function of the call's arguments returning the id
    that ``record_outcome`` joins on; `events` (an ``EventLog`` or a path ending in
    ``.jsonl`` / ``.sqlite``) logs every prediction. ``events=False`` and
    ``request_id=False`` mean none, as they do for ``configure()``. ``range_tolerance``,
    ``drift_window_seconds`` and ``drift_age_buckets`` tune the reference checks. When the
    application has configured OpenTelemetry tracing (an SDK tracer provider) before this
    call, or with ``exemplars=True``, each call's trace id becomes an exemplar on the latency
    histogram and goes into the event log (``exemplars=False`` turns that off,
    ``trace_stages=True`` adds a span per ``r.stage()``). Other
    keyword options are :class:`~inferwatch.core.options.Settings` fields (``task``,
    ``quantiles``, ``output_range``, ``max_classes``, ...).

    >>> from inferwatch.core.registry import Registry
    >>> @instrument(name="scorer", version="2", registry=Registry())
    ... def score(x):
    ...     return 0.5
    >>> score(1)
    0.5
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("inferwatch.instrument: name must be a non-empty string, "
                         f"got {name!r}")
    version = _version_text(version)
    if registry is not None and not isinstance(registry, Registry):
        raise TypeError("inferwatch.instrument: registry must be an inferwatch Registry, "
                        f"got {type(registry).__name__}")
    if reference is not None and not isinstance(reference, (str, os.PathLike)):
        from inferwatch.quality.reference import Reference

        if not isinstance(reference, Reference):
            raise TypeError("inferwatch.instrument: reference must be a Reference or the "
                            f"path of a saved one, got {type(reference).__name__}")
    metadata_given = options.get("metadata")
    if metadata_given is not None and not isinstance(metadata_given, Mapping):
        raise TypeError("inferwatch.instrument: metadata must be a mapping of label names "
                        f"to values, got {type(metadata_given).__name__}")
    unknown = sorted(set(options) - _SETTINGS_FIELDS)
    if unknown:
        raise TypeError(f"inferwatch.instrument: unknown option(s) {', '.join(unknown)}; "
                        f"valid options: {', '.join(sorted(_SETTINGS_FIELDS))}")
    try:
        trained = _timestamp(trained_at)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"inferwatch.instrument: trained_at {trained_at!r} is not a datetime, "
                         f"ISO date string or Unix timestamp ({exc})") from exc
    # False is "none", as configure() reads it: a setting read from a config file or flag
    # is passed the same way to both.
    if events is not None and events is not False and \
            not isinstance(events, (str, os.PathLike)) and not hasattr(events, "emit"):
        raise TypeError("inferwatch.instrument: events must be an EventLog, a path, or False "
                        f"for no event log, got {events!r:.80}")
    if request_id is not None and request_id is not False and not callable(request_id):
        raise TypeError("inferwatch.instrument: request_id must be a function of the call's "
                        f"arguments, or False for none, got {request_id!r:.80}")
    if target is None:
        Settings(**options)  # a bad option is refused where the decorator is made

        def decorator(fn: F) -> F:
            return instrument(fn, name=name, version=version, trained_at=trained_at,
                              reference=reference, request_id=request_id, events=events,
                              registry=registry, **options)
        return decorator
    if isinstance(target, type):
        raise TypeError("inferwatch.instrument: pass a model instance or a function, "
                        f"not the class {target.__name__}")
    target = _unwrapped(target)
    is_function = _is_function(target)
    if not is_function and not callable(target) and not any(
            callable(_method_of(target, method)) for method, _ in WRAPPED_METHODS):
        # Nothing would ever be recorded: a mistake (an id, a path) rather than a model.
        raise TypeError("inferwatch.instrument: pass a model (with predict, predict_proba "
                        "or __call__) or a function (such as an ONNX session's run), not a "
                        f"{type(target).__name__}")
    metadata = {"framework": _framework(target, is_function), **(options.pop("metadata", None)
                                                                  or {})}
    spec = _Spec(name, version, Settings(**options, metadata=metadata), trained,
                 reference, request_id, events)
    return _instrument(target, spec, is_function=is_function, registry=registry)


def _is_function(target: Any) -> bool:
    """Whether `target` is a function (wrapped as it is) rather than a model object."""
    if inspect.isfunction(target) or inspect.ismethod(target) or inspect.isbuiltin(
            target) or isinstance(target, functools.partial):
        return True
    try:
        return inspect.iscoroutinefunction(target)
    except Exception:  # an object whose __getattr__ raises KeyError for __name__: a model
        return False


def _class_names_reader(target: Any) -> Callable[[], Sequence[object] | None]:
    """What reads the model's classes at each drain, without keeping the model alive: the
    registry keeps every monitor for the life of the process, and a server that loads a new
    version and drops the old one must get the old one's memory back. Once the model is
    gone, the classes last read stand (its last calls may still wait for the drain).

    >>> class Model:
    ...     classes_ = ["no", "yes"]
    >>> model = Model(); read = _class_names_reader(model); read()
    ['no', 'yes']
    >>> del model; read()
    ['no', 'yes']
    """
    try:
        held = weakref.ref(target)
    except TypeError:  # a type without weak references: held as before
        return lambda: class_names_of(target)
    # Read now as well: calls made just before the model is dropped are drained after.
    last: list[Sequence[object] | None] = [_names_or_none(target)]

    def read() -> Sequence[object] | None:
        model = held()
        if model is not None:
            last[0] = class_names_of(model)
        return last[0]

    return read


def _names_or_none(model: Any) -> Sequence[object] | None:
    try:
        return class_names_of(model)
    except Exception:  # read again at the drain, which counts what fails
        return None


def _instrument(target: Any, spec: _Spec, *, is_function: bool,
                registry: Registry | None) -> Any:
    registry = registry or default_registry()
    monitor = registry.monitor(
        spec.name, spec.version, spec.settings, trained_at=spec.trained_at,
        class_names=None if is_function else _class_names_reader(target),
    )
    exemplars = spec.settings.exemplars
    if exemplars or (exemplars is None and otel_configured()):
        monitor.configure(traces=True)
    if spec.reference is not None or spec.request_id is not None or spec.events is not None:
        monitor.configure(reference=spec.reference, request_id=spec.request_id,
                          events=spec.events)
    if is_function:
        return wrap_callable(target, monitor)
    if spec.events is not None and not isinstance(spec.events, (str, os.PathLike)):
        spec = spec._replace(events=getattr(spec.events, "path", None))
    return InstrumentedModel(target, monitor, spec, registry)


def _current_spec(spec: _Spec, monitor: Monitor) -> _Spec:
    """`spec` with the event log and request-id function the monitor has now: what
    ``configure()`` switched off (or swapped) since instrument() must stay so in a pickle,
    or loading the model would reopen a log the application had closed."""
    log = monitor.events
    events = None if log is None else getattr(log, "path", None)
    request_id = None if monitor.request_id_fn is None or spec.request_id is False \
        else spec.request_id
    if events is not None and not isinstance(events, (str, os.PathLike)):
        events = None  # a log object without a path: nothing a pickle could reopen
    return spec._replace(events=events, request_id=request_id)
