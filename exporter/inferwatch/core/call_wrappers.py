"""The wrappers :func:`wrap_callable` puts around one callable: sync, async or streaming.

The wrappers are the request path. Each call does two clock reads, one
``next()`` on an ``itertools.count`` (for the in-flight gauge) and one ``list.append``
(the appenders come bound from :meth:`Monitor.fast_path`); the exception path re-raises
the caller's exception object untouched. They are apart from the proxy of a model object
(:mod:`inferwatch.core.model_proxy`) and from instrument()'s checks of its arguments
(:mod:`inferwatch.core.instrument`), which run once, where these run on every call. A
call given keywords (``request_id=``), one inside ``mon.request()``, and every call while
request ids, events or traces are wanted take the slow path,
:class:`~inferwatch.core.call_recorder.CallRecorder`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import time
from collections.abc import Callable, Iterator
from types import MethodType
from typing import Any

import numpy as np

from inferwatch import faults
from inferwatch.core.awaited_calls import AwaitedCall, recorded_when_awaited
from inferwatch.core.call_input import (
    COPY_LIMIT_BYTES,
    ArrayLayout,
    call_input,
    outputs_snapshot,
    snapshot,
    snapshot_input,
)
from inferwatch.core.call_paths import FAST, SLOW, WITH_INPUTS
from inferwatch.core.call_recorder import CallRecorder
from inferwatch.core.callable_kinds import (
    is_coroutine_callable,
    is_coroutine_class,
    is_stream_function,
)
from inferwatch.core.follower import UNFOLLOWED, Follower
from inferwatch.core.monitor import Monitor
from inferwatch.core.output_bytes import freeze_outputs
from inferwatch.core.pending_calls import array_from_bytes
from inferwatch.core.request import _current as open_request
from inferwatch.core.request import current_request_of
from inferwatch.core.streams import follow_sync


def _sync_wrapper(fn: Callable, monitor: Monitor, probabilities: bool) -> Callable:
    started, pending, append, errors, append_error, limit, hand_off, *_ = monitor.fast_path(
        probabilities)
    clock = time.perf_counter
    follow = Follower(monitor)  # streams and text; `plain` holds the classes that are neither
    plain = follow.plain
    slow = CallRecorder(fn, monitor, probabilities, follow)
    in_request = open_request.get  # a C call: cheap enough for the fast path
    ndarray, copy_limit = np.ndarray, COPY_LIMIT_BYTES
    # Results whose arrays (outputs a runtime refills on every call) are copied as they return.
    output_containers = frozenset((dict, tuple, list))
    position, one_feed = slow.position, slow.one_feed
    # (shape, dtype, ArrayLayout or None) of the last small numeric array result.
    known: tuple = (None, None, None)
    # The OutputsLayout of the last list or tuple of small arrays (one object, swapped whole).
    known_outputs = None

    def when_awaited(awaitable: Any, start: float, args: tuple, seen_input: Any) -> Any:
        """The coroutine a fast-path call whose model returned `awaitable` gives back: the
        call is recorded (`seen_input` with it, when kept) when it finishes, as the async
        wrapper records a call."""
        def returned(value: Any) -> Any:
            if value.__class__ not in plain:
                followed = follow(value, start, args) if seen_input is None else follow(
                    value, start, args, slow.record_with(seen_input), slow=True)
                if followed is not UNFOLLOWED:
                    return followed
            duration = clock() - start
            done = (duration, snapshot(value)) if seen_input is None else (
                duration, snapshot(value), seen_input)
            if len(pending) < limit:
                append(done)
            else:
                hand_off(pending, done)
            return value

        def failed(duration: float, exc: BaseException) -> None:
            failure = (duration, exc.__class__) if seen_input is None else (
                duration, exc.__class__, seen_input)
            if len(errors) < limit:
                append_error(failure)
            else:
                hand_off(errors, failure)

        return recorded_when_awaited(awaitable, AwaitedCall(start, returned, failed))

    def with_input(args: tuple) -> Any:
        """A call of a model with a reference profile: its input goes with it, for the
        drain to check, as the call saw it (a caller may refill one buffer). A small
        numeric array is kept with its bytes (`kept_raw`), which the drain reads as one
        array (pending_calls.call_columns); any other input is kept as ``snapshot`` gives it."""
        try:
            first = args[position]  # cheaper than a len() check while the call has one
        except IndexError:
            first = None
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
        try:
            if result.__class__ not in plain:
                whole = kept if kept_raw is None else array_from_bytes(kept, kept_raw)
                if is_coroutine_class(result.__class__):
                    return when_awaited(result, start, args, whole)
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
            elif result.__class__ in output_containers:
                recorded = outputs_snapshot(result)
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
        except Exception as fault:  # the model's result comes back, recorded or not
            # The call ends with no prediction, so that it leaves the in-flight gauge; inline,
            # and before the fault is logged: near the recursion limit (where the fault may
            # come from) there may be no room for another frame.
            try:
                append((clock() - start, None))  # one past the bound at most: taken whole
                faults.record("request", fault)
            except Exception:
                pass
        return result

    @functools.wraps(fn)
    def instrumented(*args: Any, **kwargs: Any) -> Any:
        nonlocal known, known_outputs
        path = monitor.path
        request = in_request()
        if path is not FAST or kwargs or request is not None:
            if path is WITH_INPUTS and request is None and not kwargs:
                return with_input(args)  # a reference's calls: what the last line takes
            if request.__class__ is ShadowRoute:  # a shadow watches this function
                return request[SHADOW_CALL](*args, **kwargs)
            if request is not None and not kwargs:
                own = current_request_of(monitor)
                if own is not None:
                    return slow.join(own, args)
            if request is None and path is FAST and len(kwargs) == 1 and \
                    "request_id" in kwargs:
                return slow.call_with_id(args, kwargs)
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
        try:
            cls = result.__class__
            recorded = result
            if cls not in plain:
                if is_coroutine_class(cls):
                    return when_awaited(result, start, args, None)
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
            elif cls is dict:
                done = (clock() - start, outputs_snapshot(result))
            elif cls is list and (not result or result[0].__class__ is not ndarray):
                # ``return [score]``, a pipeline's list of label dicts: kept as returned
                # (outputs_snapshot's own rule, told without its call).
                done = (clock() - start, result)
            elif cls is tuple or cls is list:
                # A runtime's outputs (ONNX Runtime's list of arrays): each small array's
                # bytes with their layout (output_bytes), which the drain reads as one array
                # per output; a container of anything else is copied as before (told by its
                # first item first: a list of one score pays no call for the look). The
                # layout of the last such call reads a call of the same one at once.
                layout = known_outputs
                raws = None if layout is None else layout.raws_of(result)
                if raws is not None:
                    done = (clock() - start, layout, None, raws)
                else:
                    frozen = freeze_outputs(result, None) \
                        if result and result[0].__class__ is ndarray else None
                    if frozen is None:
                        done = (clock() - start, outputs_snapshot(result))
                    else:
                        known_outputs = frozen[0]
                        done = (clock() - start, known_outputs, None, frozen[1])
            else:
                done = (clock() - start, recorded)
            if len(pending) < limit:
                append(done)
            else:
                hand_off(pending, done)
        except Exception as fault:  # the model's result comes back, recorded or not
            # The call ends with no prediction, so that it leaves the in-flight gauge; inline,
            # and before the fault is logged: near the recursion limit (where the fault may
            # come from) there may be no room for another frame.
            try:
                append((clock() - start, None))  # one past the bound at most: taken whole
                faults.record("request", fault)
            except Exception:
                pass
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
    wrapper can add to the time to first item. Any other call takes the `general` wrapper.

    A fault of inferwatch's own before the model's generator is made (the recursion limit
    reached in the follower's frame, a clock that raises) never reaches the caller: the
    call returns the model's generator unfollowed, ends with no prediction, and the fault
    is counted. The model's own exception (its arguments refused), which the primed
    generator counts and returns, is raised as it was raised.
    """
    from inferwatch.core import streams

    in_request = open_request.get
    watch, unwatch, ref = streams._watch, streams._unwatch, streams._ref
    # Bound methods of the monitor's lists: appending to them takes no Python frame, which
    # the recursion limit may leave none of.
    fast = monitor.fast_path(probabilities=False)
    append_call, append_error = fast.append, fast.append_error

    @functools.wraps(fn)
    def instrumented(*args: Any, **kwargs: Any) -> Any:
        in_flight = False
        try:
            # One identity check stands for three: the monitor is on its fast path, its
            # settings are the ones the follower planned for, and they need no token counting.
            if not kwargs and monitor.fast_settings is follow.lean_settings and \
                    in_request() is None:
                follower = follow_sync(fn, args, None, monitor, follow.plan, 0.0)
                next(started)
                in_flight = True
                # Kept in the open streams before it starts: closed at exit if still open.
                watch(ref(follower, unwatch))
                next(follower)
                return follower
        except StopIteration as stop:  # the model's call raised, and was counted
            error, fault = stop.value, None
        except Exception as exc:
            error, fault = None, exc
        else:
            return general(*args, **kwargs)
        if error is not None:  # raised out of the handler: its context stays the model's
            try:
                raise error
            finally:
                error = None  # its traceback holds this frame
        # A fault of ours: the model's generator, unfollowed (calling a generator function
        # runs none of its code). The fault is counted where a frame is left for it.
        try:
            stream = fn(*args)
        except BaseException as refused:  # its arguments refused: the model's error
            if in_flight:
                append_error((0.0, refused.__class__))
            try:
                faults.record("stream", fault)
            except Exception:
                pass
            fault = None
            raise
        if in_flight:
            append_call((0.0, None))  # it leaves the in-flight gauge, with no prediction
        try:
            faults.record("stream", fault)
        except Exception:
            pass
        fault = None
        return stream

    return instrumented


def _async_wrapper(fn: Callable, monitor: Monitor, probabilities: bool) -> Callable:
    fast = monitor.fast_path(probabilities)
    started, finished, failed = fast.started, fast.finished, fast.failed
    clock = time.perf_counter
    follow = Follower(monitor)
    plain = follow.plain
    slow = CallRecorder(fn, monitor, probabilities, follow)
    in_request = open_request.get
    position, one_feed = slow.position, slow.one_feed

    @functools.wraps(fn)
    async def instrumented(*args: Any, **kwargs: Any) -> Any:
        path = monitor.path
        if kwargs or path is SLOW or in_request() is not None:
            route = in_request()
            if route.__class__ is ShadowRoute:  # a shadow watches this function
                return await route[SHADOW_CALL](*args, **kwargs)
            return await slow.call_async(args, kwargs)
        seen_input = snapshot_input(call_input(args, position, one_feed)) if \
            path is WITH_INPUTS and len(args) > position else None
        next(started)
        start = clock()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            # A coroutine closed before it finished (its caller gave up on it, or its loop
            # shut down with it pending) was cancelled, as AwaitedCall.failed counts it.
            failed(clock() - start, asyncio.CancelledError if isinstance(exc, GeneratorExit)
                   else exc.__class__, seen_input)
            raise
        try:
            if result.__class__ not in plain:
                followed = follow(result, start, args) if seen_input is None else follow(
                    result, start, args, slow.record_with(seen_input), slow=True)
                if followed is not UNFOLLOWED:
                    return followed
            finished(clock() - start, snapshot(result), seen_input)
        except Exception as fault:  # the model's result comes back, recorded or not
            try:
                finished(clock() - start, None)  # it leaves the in-flight gauge
                faults.record("request", fault)
            except Exception:
                pass
        return result

    monitor.follow_pending_chunk(instrumented, fast.set_limit)
    return instrumented


SHADOW_CALL = "_inferwatch_call"


class ShadowRoute(dict):
    """Where ``inferwatch.shadow`` puts its layers on a function's wrapper (an ``async def``
    one too): ``{"_inferwatch_call": twin}``, the twin being the wrapper minus the route
    (``shadow_wrappers.shadow_route`` makes both).

    A model object's wrapper keeps its methods in its ``__dict__``, where a shadow's layer
    takes a method's place; a function's wrapper is what its caller calls. So while a
    layer is set here, the wrapper's look-up of an open request (``in_request``, which every
    call makes) answers this route, and the branch such an answer takes hands the call to
    the layer, which calls the twin. A function no shadow watches runs no added code.
    """

    __slots__ = ("_lookup", "twin")

    def __init__(self, twin: Callable, lookup: Any) -> None:
        super().__init__({SHADOW_CALL: twin})
        self.twin = twin
        self._lookup = lookup  # the wrapper's cell of `in_request`

    def __setitem__(self, key: str, value: Callable) -> None:
        super().__setitem__(key, value)
        self._lookup.cell_contents = open_request.get if value is self.twin else \
            itertools.repeat(self).__next__


def wrap_callable(fn: Callable, monitor: Monitor, probabilities: bool = False) -> Callable:
    """The instrumented version of one callable, sync or async."""
    # The first raises for a model whose __getattr__ raises KeyError for __name__:
    # model_proxy then wraps its bound __call__, which both tell alike.
    if inspect.iscoroutinefunction(fn) or is_coroutine_callable(fn):
        wrapper = _async_wrapper(fn, monitor, probabilities)
    else:
        wrapper = _sync_wrapper(fn, monitor, probabilities)
        if is_stream_function(fn):
            wrapper = StreamFunction(fn, wrapper)
    wrapper._inferwatch_monitor = monitor  # type: ignore[attr-defined]  # see model_proxy.unwrapped
    return wrapper


class StreamFunction:
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
