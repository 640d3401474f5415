"""``instrument()``: wrap a model object, a function or an async function.

The wrappers are the request path. Each call does two clock reads, one
``next()`` on an ``itertools.count`` (for the in-flight gauge) and one ``list.append``;
the exception path re-raises the caller's exception object untouched.

>>> import inferwatch
>>> from inferwatch.core.registry import Registry
>>> predict = inferwatch.instrument(lambda x: x * 2.0, name="double", version="1",
...                                 registry=Registry())
>>> predict(2.0)
4.0
"""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from inferwatch import faults
from inferwatch.core.monitor import Monitor, RequestRecord
from inferwatch.core.options import Settings
from inferwatch.core.registry import Registry, default_registry
from inferwatch.core.request import INFERENCE_STAGE, current_request
from inferwatch.core.request import _current as open_request
from inferwatch.core.tracing import current_trace_id, otel_configured

F = TypeVar("F", bound=Callable[..., Any])

WRAPPED_METHODS = (("predict", False), ("predict_proba", True))
_SETTINGS_FIELDS = frozenset(Settings.__dataclass_fields__)
_FEATURE_OPTIONS = frozenset({"range_tolerance", "drift_window_seconds", "drift_age_buckets"})
_TRACE_OPTIONS = frozenset({"exemplars", "trace_stages"})


class _CallRecorder:
    """The slow path: a call that carries a request id, features or an event.

    Used inside ``mon.request()`` (the call becomes that request's inference stage), when
    the call passes ``request_id=``, and when the monitor has a reference profile, an id
    function or an event log. It builds a :class:`RequestRecord` for the drain.
    """

    __slots__ = ("fn", "monitor", "probabilities", "takes_request_id")

    def __init__(self, fn: Callable, monitor: Monitor, probabilities: bool) -> None:
        self.fn = fn
        self.monitor = monitor
        self.probabilities = probabilities
        self.takes_request_id = _accepts_keyword(fn, "request_id")

    def begin(self, args: tuple, kwargs: dict) -> RequestRecord | None:
        """Prepare the record (None when the call joins an open request instead)."""
        monitor = self.monitor
        request = current_request()
        if request is not None and request.monitor is monitor:
            return None
        request_id = None
        if "request_id" in kwargs:
            request_id = kwargs["request_id"] if self.takes_request_id else kwargs.pop(
                "request_id")
        elif monitor.request_id_fn is not None:
            try:
                request_id = monitor.request_id_fn(*args, **kwargs)
            except Exception as exc:
                faults.record("request_id", exc)
        record = RequestRecord(0.0, request_id=None if request_id is None else str(request_id),
                               started_at=time.time())
        if monitor.keeps_inputs:
            record.features = args[0] if args else next(iter(kwargs.values()), None)
        if monitor.traces:
            record.trace_id = current_trace_id()
        next(monitor._started)
        return record

    def finish(self, record: RequestRecord, duration: float, result: Any,
               error: BaseException | None) -> None:
        record.duration = duration
        if error is not None:
            record.error_type = error.__class__
        else:
            record.prediction = result
            record.has_prediction = True
            record.probabilities = self.probabilities
        monitor = self.monitor
        if len(monitor._requests) < monitor.settings.max_pending:
            monitor._requests.append(record)
        else:
            next(monitor._dropped)

    def end(self, record: RequestRecord | None, duration: float, result: Any = None,
            error: BaseException | None = None) -> None:
        """Hand the finished call to the drain, or to the request it ran inside."""
        if record is None:
            self.join_open_request(duration, result, failed=error is not None)
        else:
            self.finish(record, duration, result, error)

    def join_open_request(self, duration: float, result: Any = None, failed: bool = False) -> None:
        """Record the call as the open request's inference stage; a failed call has no
        prediction (its exception reaches the request's ``with`` block, which counts it)."""
        request = current_request()
        if request is None:
            return
        if failed:
            request.record.stages.append((INFERENCE_STAGE, duration))
        else:
            request.add_inference(duration, result, self.probabilities)


def _sync_wrapper(fn: Callable, monitor: Monitor, probabilities: bool) -> Callable:
    pending = monitor._proba_calls if probabilities else monitor._calls
    append = pending.append
    errors = monitor._errors
    append_error = errors.append
    started = monitor._started
    dropped = monitor._dropped
    limit = monitor.settings.max_pending
    clock = time.perf_counter
    slow = _CallRecorder(fn, monitor, probabilities)
    in_request = open_request.get  # a C call: cheap enough for the fast path

    @functools.wraps(fn)
    def instrumented(*args: Any, **kwargs: Any) -> Any:
        if kwargs or monitor.slow_path or in_request() is not None:
            return _slow_call(slow, args, kwargs)
        next(started)
        start = clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            if len(errors) < limit:
                append_error((clock() - start, exc.__class__))
            else:
                next(dropped)
            raise
        if len(pending) < limit:
            append((clock() - start, result))
        else:
            next(dropped)
        return result

    return instrumented


def _slow_call(slow: _CallRecorder, args: tuple, kwargs: dict) -> Any:
    record = slow.begin(args, kwargs)
    start = time.perf_counter()
    try:
        result = slow.fn(*args, **kwargs)
    except BaseException as exc:
        slow.end(record, time.perf_counter() - start, error=exc)
        raise
    slow.end(record, time.perf_counter() - start, result)
    return result


def _async_wrapper(fn: Callable, monitor: Monitor, probabilities: bool) -> Callable:
    pending = monitor._proba_calls if probabilities else monitor._calls
    append = pending.append
    errors = monitor._errors
    append_error = errors.append
    started = monitor._started
    dropped = monitor._dropped
    limit = monitor.settings.max_pending
    clock = time.perf_counter
    slow = _CallRecorder(fn, monitor, probabilities)
    in_request = open_request.get  # a C call: cheap enough for the fast path

    @functools.wraps(fn)
    async def instrumented(*args: Any, **kwargs: Any) -> Any:
        if kwargs or monitor.slow_path or in_request() is not None:
            record = slow.begin(args, kwargs)
            start = clock()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                slow.end(record, clock() - start, error=exc)
                raise
            slow.end(record, clock() - start, result)
            return result
        next(started)
        start = clock()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            if len(errors) < limit:
                append_error((clock() - start, exc.__class__))
            else:
                next(dropped)
            raise
        if len(pending) < limit:
            append((clock() - start, result))
        else:
            next(dropped)
        return result

    return instrumented


def _accepts_keyword(fn: Callable, name: str) -> bool:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def wrap_callable(fn: Callable, monitor: Monitor, probabilities: bool = False) -> Callable:
    """The instrumented version of one callable, sync or async."""
    if inspect.iscoroutinefunction(fn):
        return _async_wrapper(fn, monitor, probabilities)
    return _sync_wrapper(fn, monitor, probabilities)


class InstrumentedModel:
    """A transparent proxy: ``predict``, ``predict_proba`` and ``__call__`` are recorded.

    Every other attribute reads and writes through to the wrapped model, ``isinstance``
    sees the model's class, and pickling stores the model with its instrument() options.
    """

    def __init__(self, model: Any, monitor: Monitor, options: dict[str, Any]) -> None:
        d = self.__dict__
        d["__wrapped__"] = model
        d["_inferwatch_monitor"] = monitor
        d["_inferwatch_options"] = options
        for method_name, probabilities in WRAPPED_METHODS:
            method = getattr(model, method_name, None)
            if callable(method):
                # Stored in the instance dict so the hot path finds them without __getattr__.
                d[method_name] = wrap_callable(method, monitor, probabilities)
        d["_inferwatch_call"] = wrap_callable(model, monitor) if callable(model) else None

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(proxy, type(model)) holds
        return type(self.__dict__["__wrapped__"])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        call = self.__dict__["_inferwatch_call"]
        if call is None:
            raise TypeError(f"'{type(self.__wrapped__).__name__}' object is not callable")
        return call(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["__wrapped__"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.__dict__["__wrapped__"], name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self.__dict__["__wrapped__"], name)

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

    def __reduce_ex__(self, protocol: int) -> tuple:
        return (_restore, (self.__dict__["__wrapped__"], self.__dict__["_inferwatch_options"]))


def _restore(model: Any, options: dict[str, Any]) -> Any:
    return instrument(model, **options)


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.timestamp()
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day,
                            tzinfo=_dt.timezone.utc).timestamp()
    if isinstance(value, str):
        return _timestamp(_dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
    return float(value)


def _framework(target: Any, is_function: bool) -> str:
    """The top-level package of the model's class: sklearn, torch, xgboost, ..."""
    if is_function:
        return "python"
    return (type(target).__module__ or "unknown").split(".")[0]


def instrument(target: Any = None, /, *, name: str, version: str = "unversioned",
               trained_at: Any = None, reference: Any = None, request_id: Any = None,
               events: Any = None, registry: Registry | None = None, **options: Any) -> Any:
    """Record latency, errors, versions and predictions of a model or function.

    `target` is a model object (its ``predict``, ``predict_proba`` and ``__call__`` are
    wrapped), a plain or ``async`` function, or omitted to get a decorator.
    `trained_at` is a datetime, an ISO date string or Unix seconds. `reference` (a
    :class:`~inferwatch.Reference` or the path of a saved one) switches on data-quality
    counters and drift; `request_id` is a function of the call's arguments returning the id
    that ``record_outcome`` joins on; `events` (an ``EventLog`` or a path ending in
    ``.jsonl`` / ``.sqlite``) logs every prediction. ``range_tolerance``,
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
    if not isinstance(name, str) or not name:
        raise ValueError("inferwatch.instrument: name must be a non-empty string")
    unknown = sorted(set(options) - _SETTINGS_FIELDS - _FEATURE_OPTIONS - _TRACE_OPTIONS)
    if unknown:
        valid = sorted(_SETTINGS_FIELDS | _FEATURE_OPTIONS | _TRACE_OPTIONS)
        raise TypeError(f"inferwatch.instrument: unknown option(s) {', '.join(unknown)}; "
                        f"valid options: {', '.join(valid)}")
    if target is None:
        def decorator(fn: F) -> F:
            return instrument(fn, name=name, version=version, trained_at=trained_at,
                              reference=reference, request_id=request_id, events=events,
                              registry=registry, **options)
        return decorator
    if isinstance(target, type):
        raise TypeError("inferwatch.instrument: pass a model instance or a function, "
                        f"not the class {target.__name__}")
    feature_options = {k: options.pop(k) for k in list(options) if k in _FEATURE_OPTIONS}
    trace_options = {k: options.pop(k) for k in list(options) if k in _TRACE_OPTIONS}
    user_metadata = dict(options.pop("metadata", None) or {})
    is_function = inspect.isfunction(target) or inspect.ismethod(target) or inspect.isbuiltin(
        target) or isinstance(target, functools.partial) or inspect.iscoroutinefunction(target)
    settings = Settings(**options, metadata={"framework": _framework(target, is_function),
                                             **user_metadata})
    registry = registry or default_registry()
    try:
        trained = _timestamp(trained_at)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"inferwatch.instrument: trained_at {trained_at!r} is not a datetime, "
                         "ISO date string or Unix timestamp") from exc
    monitor = registry.monitor(
        name, str(version), settings, trained_at=trained,
        class_names=None if is_function else (lambda: getattr(target, "classes_", None)),
    )
    exemplars = trace_options.get("exemplars")
    if exemplars or (exemplars is None and otel_configured()):
        monitor.configure(traces=True, trace_stages=bool(trace_options.get("trace_stages")))
    if reference is not None or request_id is not None or events is not None:
        monitor.configure(reference=reference, request_id=request_id, events=events,
                          **feature_options)
    if is_function:
        return wrap_callable(target, monitor)
    pickled_options = {"name": name, "version": version, "trained_at": trained_at,
                       "reference": reference, "request_id": request_id,
                       # a live event log (a thread and open files) is not picklable: its path is
                       "events": events if events is None or isinstance(events, (str, os.PathLike))
                       else getattr(events, "path", None),
                       **options, **feature_options, **trace_options}
    if user_metadata:
        pickled_options["metadata"] = user_metadata
    return InstrumentedModel(target, monitor, pickled_options)
