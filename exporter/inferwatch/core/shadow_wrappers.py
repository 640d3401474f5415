"""The layers a shadow puts on its champion's methods, so that sampled calls are offered to it.

:func:`shadowed` wraps one of the champion's instrumented methods (``predict``,
``predict_proba``, the model's ``__call__``): a sampled call's arguments are taken before the
champion runs (:meth:`Shadow.capture <inferwatch.core.shadow_runtime.Shadow.capture>`), and
after the champion has answered the call goes to
:meth:`Shadow.offer <inferwatch.core.shadow_runtime.Shadow.offer>`, and where the
champion's request-id function names calls, the id is taken once so that both models record
the same one. Layers chain (several challengers on one champion), and :func:`unwrap` takes
one out wherever it is in the chain, as shadows may be closed in any order. A champion
instrumented from a function has no method to wrap: :func:`shadow_route` gives its wrapper
one, which the layers chain on the same way. Apart from
:mod:`inferwatch.core.shadow_runtime` because this is the champion's side of a shadow: it
knows the chain of wrappers and the request id, not the queue or the workers.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import random
import weakref
from collections.abc import Callable
from types import CellType, FunctionType
from typing import TYPE_CHECKING, Any

from inferwatch import faults
from inferwatch.core import call_wrappers
from inferwatch.core.call_recorder import named_call_id
from inferwatch.core.call_wrappers import ShadowRoute
from inferwatch.core.callable_kinds import accepts_keyword
from inferwatch.core.request import _current as open_request
from inferwatch.core.request import current_request_of

if TYPE_CHECKING:
    from inferwatch.core.shadow_runtime import Shadow

# No id read back from the champion's wrapper for a sampled call (None is an id: no id).
UNNAMED = object()
_ROUTE = "_inferwatch_shadow_route"


def shadow_route(wrapper: Any) -> ShadowRoute | None:
    """The :class:`~inferwatch.core.call_wrappers.ShadowRoute` of a function's wrapper from
    ``call_wrappers.wrap_callable`` (made on first use, under the caller's lock), or None
    for anything else: a model object's wrapper, or a generator function's, takes a
    shadow's layers on its methods.

    The route's twin is the wrapper's own code over the wrapper's own variables (its
    pending calls, its last array layout), except that its look-up of an open request is
    never the route: the code stays one, and what the wrapper records, both record alike.
    """
    namespace = getattr(wrapper, "__dict__", None)
    if type(wrapper) is not FunctionType or not isinstance(namespace, dict) or \
            "_inferwatch_monitor" not in namespace:
        return None
    route = namespace.get(_ROUTE)
    if route is not None:
        return route
    code, cells = wrapper.__code__, wrapper.__closure__ or ()
    # Another's function that copied the wrapper's attributes (functools.wraps) is no
    # wrapper of ours, whatever its variables are called.
    if wrapper.__globals__ is not vars(call_wrappers) or "in_request" not in code.co_freevars:
        return None
    lookup = cells[code.co_freevars.index("in_request")]
    twin = FunctionType(code, wrapper.__globals__, wrapper.__name__, wrapper.__defaults__,
                        tuple(CellType(open_request.get) if cell is lookup else cell
                              for cell in cells))
    functools.update_wrapper(twin, wrapper)
    twin.__wrapped__ = namespace.get("__wrapped__")  # the function, as the wrapper's
    route = namespace[_ROUTE] = ShadowRoute(twin, lookup)
    return route


def shadowed(inner: Callable, shadow: Shadow, method: str) -> Callable:
    """`inner` with `shadow` offered each sampled call. The wrapper holds the shadow weakly
    and calls `link[0]`, so that closing a shadow below it can take that layer out."""
    ref, draw, sample = weakref.ref(shadow), random.random, shadow.sample
    monitor = shadow.champion_monitor
    link = [inner]
    # A model that names request_id in its signature would be handed the id given to its
    # wrapper, which its call must never see unless its caller gave it.
    naming = not accepts_keyword(_model_callable(inner), "request_id")

    def capture(args: tuple, kwargs: dict) -> object:
        # Before the champion runs: one that changes its input in place must not hand the
        # changed input on (the challenger sees what the champion's call saw).
        alive = ref()
        return None if alive is None else alive.capture(args, kwargs)

    def offer(args: tuple, kwargs: dict, result: object, seen: object,
              named_id: object = UNNAMED) -> None:
        alive = ref()
        if alive is not None:
            alive.offer(method, args, kwargs, result, named_id, seen)

    def named_by_wrapper(kwargs: dict) -> bool:
        """Whether the champion's wrapper will name this call with the request-id function
        (its model takes request_id, so the id cannot be handed down): the id it gives is
        then read back from ``named_call_id`` rather than asked of the function again."""
        try:
            return not naming and monitor.request_id_fn is not None and \
                "request_id" not in kwargs and current_request_of(monitor) is None
        except Exception as exc:
            faults.record("shadow", exc)
            return False

    def named_id_of(token: contextvars.Token) -> object:
        found = named_call_id.get()
        named_call_id.reset(token)
        return found[1] if found is not None and found[0] is monitor else UNNAMED

    def named(args: tuple, kwargs: dict) -> dict:
        """`kwargs` with the call's request id when the champion's request_id function
        names it: called once, here, and handed to the champion's wrapper as the call's
        own `request_id`, so that both models record the same id (a function giving a new
        id a call would otherwise name the challenger's copy anew, and no outcome would
        ever score the two on one request)."""
        try:
            name_call = monitor.request_id_fn
            if name_call is None or "request_id" in kwargs or \
                    current_request_of(monitor) is not None:
                return kwargs  # the champion's wrapper names it (from its request) as before
        except Exception as exc:  # ours: the call goes on as the caller made it
            faults.record("shadow", exc)
            return kwargs
        try:
            request_id = name_call(*args, **kwargs)
        except Exception as exc:
            faults.record("request_id", exc)
            request_id = None  # no id, as the champion's wrapper makes of a failing call
        return {**kwargs, "request_id": request_id}

    if inspect.iscoroutinefunction(inner):
        # An async champion: the challenger sees the awaited result, never the coroutine.
        @functools.wraps(inner)
        async def shadowed_async(*args: Any, **kwargs: Any) -> Any:
            if draw() >= sample:
                return await link[0](*args, **kwargs)
            if naming and monitor.request_id_fn is not None:
                kwargs = named(args, kwargs)
            elif named_by_wrapper(kwargs):
                seen = capture(args, kwargs)
                token = named_call_id.set(None)
                try:
                    result = await link[0](*args, **kwargs)
                finally:
                    named_id = named_id_of(token)
                offer(args, kwargs, result, seen, named_id)
                return result
            seen = capture(args, kwargs)
            result = await link[0](*args, **kwargs)
            offer(args, kwargs, result, seen)
            return result

        return _linked(shadowed_async, link)

    @functools.wraps(inner)
    def shadowed(*args: Any, **kwargs: Any) -> Any:
        # Drawn first: only a sampled call is named here, every other call goes on as
        # without the shadow.
        if draw() >= sample:
            return link[0](*args, **kwargs)
        if naming and monitor.request_id_fn is not None:
            kwargs = named(args, kwargs)
        elif named_by_wrapper(kwargs):
            seen = capture(args, kwargs)
            token = named_call_id.set(None)
            try:
                result = link[0](*args, **kwargs)
            finally:
                named_id = named_id_of(token)
            offer(args, kwargs, result, seen, named_id)
            return result
        seen = capture(args, kwargs)
        result = link[0](*args, **kwargs)
        offer(args, kwargs, result, seen)
        return result

    return _linked(shadowed, link)


def _model_callable(wrapper: Any) -> Any:
    """The model's own method (or the model, for ``__call__``) under inferwatch's layers:
    what the champion's wrapper reads to tell whether the model takes ``request_id``."""
    target = wrapper
    for _ in range(1000):  # a chain of shadow layers, then the instrumented wrapper
        link = getattr(target, "__inferwatch_link__", None)
        if link is not None:
            target = link[0]
        elif "_inferwatch_monitor" in getattr(target, "__dict__", {}) and \
                hasattr(target, "__wrapped__"):
            return target.__wrapped__
        else:
            break
    return target


def _linked(wrapper: Any, link: list) -> Any:
    wrapper.__inferwatch_shadowed__ = link[0]
    wrapper.__inferwatch_link__ = link
    return wrapper


def unwrap(namespace: dict, method: str, wrapper: Callable) -> None:
    """Take `wrapper` out of the chain of shadow layers on `namespace[method]`, wherever it
    is: shadows may be closed in any order."""
    inner = wrapper.__inferwatch_link__[0]  # type: ignore[attr-defined]
    current = namespace.get(method)
    if current is wrapper:
        namespace[method] = inner
        return
    while current is not None:
        link = getattr(current, "__inferwatch_link__", None)
        if link is None:
            return  # replaced by someone else: nothing of ours to take out
        if link[0] is wrapper:
            link[0] = current.__inferwatch_shadowed__ = current.__wrapped__ = inner
            return
        current = link[0]
