"""InstrumentedModel: the proxy that instrument() puts around a model object.

Its ``predict``, ``predict_proba`` and ``__call__`` are wrapped by
:mod:`inferwatch.core.call_wrappers`; what is here keeps the proxy standing in for the
model: ``isinstance`` sees the model's class, attributes read and write through, a method
that returns the model returns the proxy (chaining), and copies and pickles keep the
instrument() options. A method read through the proxy pickles as the model's bound method
does, as that method of the proxy. A pickle names ``inferwatch.core.instrument._restore`` and
``_Spec``, which stay with instrument(): saved models look them up there.
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from inferwatch.core.call_wrappers import StreamFunction, wrap_callable
from inferwatch.core.callable_kinds import is_coroutine_callable, method_of
from inferwatch.core.monitor import Monitor
from inferwatch.core.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from inferwatch.core.instrument import _Spec

# inplace_predict: xgboost's Booster predicting straight from an array (no DMatrix), as its
# serving code does.
WRAPPED_METHODS = (("predict", False), ("predict_proba", True), ("inplace_predict", False))
_WRAPPED_NAMES = dict(WRAPPED_METHODS)


def unwrapped(target: Any) -> Any:
    """The model or function under inferwatch's own wrappers: instrumenting a wrapper
    again (a library that instruments what it is given, and its caller) must record
    each call once, under the name given last, not once per layer."""
    while True:
        if type(target) in _PROXY_TYPES:
            target = target.__dict__["__wrapped__"]
        elif type(target) is _Chained:
            # A method read through the wrapper (`instrument(net.generate)` after
            # `net = instrument(net)`): the model's bound method, as without the wrapper.
            target = target.__wrapped__
        elif (inspect.isfunction(target) or type(target) in _OWN_WRAPPER_TYPES) and \
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


class InstrumentedModel:
    """A transparent proxy: ``predict``, ``predict_proba`` and ``__call__`` are recorded.

    Every other attribute reads and writes through to the wrapped model, ``isinstance``
    sees the model's class, and pickling stores the model with its instrument() options.
    A model whose ``__call__`` is ``async def`` gets an :class:`AsyncInstrumentedModel`.
    """

    def __new__(cls, model: Any, monitor: Monitor, spec: _Spec,
                registry: Registry) -> InstrumentedModel:
        if cls is InstrumentedModel and is_coroutine_callable(model):
            cls = AsyncInstrumentedModel
        return object.__new__(cls)

    def __init__(self, model: Any, monitor: Monitor, spec: _Spec, registry: Registry) -> None:
        d = self.__dict__
        d["__wrapped__"] = model
        d["_inferwatch_monitor"] = monitor
        d["_inferwatch_spec"] = spec
        d["_inferwatch_registry"] = registry
        for method_name, probabilities in WRAPPED_METHODS:
            method = method_of(model, method_name)
            if callable(method):
                # Stored in the instance dict so the hot path finds them without __getattr__.
                d[method_name] = _WrappedMethod(wrap_callable(method, monitor, probabilities),
                                                self, method_name)
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
            return _Chained(value, model, self, name)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        if name in _WRAPPED_NAMES and (inspect.isfunction(value) or
                                       type(value) in _OWN_WRAPPER_TYPES) and \
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
        method = method_of(d["__wrapped__"], name)
        if callable(method):
            d[name] = _WrappedMethod(wrap_callable(method, d["_inferwatch_monitor"],
                                                   _WRAPPED_NAMES[name]), self, name)
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
        if type(other) in _PROXY_TYPES:
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
        # Imported here: instrument imports this module.
        from inferwatch.core.instrument import _restore, registry_token

        d = self.__dict__
        spec = _current_spec(d["_inferwatch_spec"], d["_inferwatch_monitor"])
        return (_restore, (d["__wrapped__"], spec._replace(
            registry=registry_token(d["_inferwatch_registry"]))))

    def __copy__(self) -> InstrumentedModel:
        """A copy of the model, recording into the same monitor, as a pickle loaded in
        this process does, without writing the model out and reading it back."""
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


class AsyncInstrumentedModel(InstrumentedModel):
    """The proxy of a model whose ``__call__`` is ``async def``: its own ``__call__`` is one
    too, so that code deciding by ``inspect.iscoroutinefunction(model.__call__)`` whether to
    await the model (FastAPI's dependencies, Starlette's endpoints) awaits it instrumented,
    as it awaited the model."""

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return await self.__dict__["_inferwatch_call"](*args, **kwargs)


_PROXY_TYPES = (InstrumentedModel, AsyncInstrumentedModel)


class _WrappedMethod(functools.partial):
    """A prediction method as the proxy holds it: the wrapper ``wrap_callable`` made of the
    model's method, pickled and copied as a bound method of the model is, as
    ``getattr(proxy, name)``. ``Pool.map(model.predict, chunks)``, a ProcessPoolExecutor and
    ``joblib.Parallel(delayed(model.predict)(...))`` then load the model instrumented in the
    worker, which records the calls it makes.

    The wrapper alone is a function, which pickle stores by its name, and that name finds
    the model's method, not the wrapper (a PicklingError that blames the model's library).
    A partial calls it from C, with no frame of its own; a bound method of the proxy would
    hand the wrapper the proxy as its first argument.

    The proxy is held weakly: its methods must not keep it (and its model) alive until the
    garbage collector finds the cycle. A method kept alone (``instrument(model).predict``)
    pickles a proxy made again of what the proxy was made of.
    """

    __slots__ = ("_name", "_proxy", "_proxy_parts")

    def __new__(cls, wrapper: Callable, proxy: InstrumentedModel, name: str) -> _WrappedMethod:
        method = super().__new__(cls, wrapper)
        functools.update_wrapper(method, wrapper)
        method.__wrapped__ = wrapper.__wrapped__  # the model's method, as the wrapper's is
        d = proxy.__dict__
        method._name = name
        method._proxy = weakref.ref(proxy)
        method._proxy_parts = (d["__wrapped__"], d["_inferwatch_monitor"],
                               d["_inferwatch_spec"], d["_inferwatch_registry"])
        return method

    def __reduce__(self) -> tuple:
        proxy = self._proxy()
        if proxy is None:
            proxy = InstrumentedModel(*self._proxy_parts)
        return getattr, (proxy, self._name)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)


# Inferwatch's own wrappers of a callable that are no function: given back to the proxy or
# to instrument(), the callable under them is wrapped, so a call is recorded once.
_OWN_WRAPPER_TYPES = (StreamFunction, _WrappedMethod)


class _Chained:
    """A method of the wrapped model whose ``self`` result comes back as the wrapper, so
    ``instrument(net).eval()``, ``.to("cpu")``, ``.fit(...)`` and ``.set_params(...)`` keep
    recording. It pickles and copies as a bound method of the model does, by its name: as
    that method of the proxy (loaded, of the loaded proxy)."""

    __slots__ = ("__wrapped__", "_model", "_name", "_proxy")

    def __init__(self, method: Callable, model: Any, proxy: InstrumentedModel,
                 name: str) -> None:
        self.__wrapped__ = method
        self._model = model
        self._proxy = proxy
        self._name = name  # the attribute read, which may not be the method's __name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            result = self.__wrapped__(*args, **kwargs)
        finally:
            # Even one that raised may have changed the model half way.
            _refresh_methods(self._proxy)
        if inspect.iscoroutine(result):
            # An async method (`await model.fit_async(...)`) gives its model back only when
            # awaited: the wrapper must come back then, as a sync method's does.
            return _chained_result(result, self._model, self._proxy)
        return self._proxy if result is self._model else result

    def __getattr__(self, name: str) -> Any:  # __name__, __doc__, __func__, ...
        if name in _Chained.__slots__:
            # Not set yet (an object made by copy or pickle before it is filled in): reading
            # the method to ask would come back here, without end.
            raise AttributeError(name)
        return getattr(self.__wrapped__, name)

    def __reduce__(self) -> tuple:
        return getattr, (self._proxy, self._name)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __eq__(self, other: object) -> bool:
        return self.__wrapped__ == (other.__wrapped__ if isinstance(other, _Chained) else other)

    def __hash__(self) -> int:
        return hash(self.__wrapped__)


async def _chained_result(coroutine: Any, model: Any, proxy: InstrumentedModel) -> Any:
    try:
        result = await coroutine
    finally:
        _refresh_methods(proxy)
    return proxy if result is model else result


def _refresh_methods(proxy: InstrumentedModel) -> None:
    """Wrap the prediction methods the model has now, and drop those it no longer has.

    scikit-learn makes some available by its parameters (``SVC.predict_proba`` with
    ``probability=True``, a Pipeline's by its last step): after ``set_params`` or ``fit``
    through the wrapper, one that appeared went unrecorded, and one that went still showed
    in ``hasattr``, so code choosing its path by it called a method the model refused.
    """
    d = proxy.__dict__
    model = d["__wrapped__"]
    for name in _WRAPPED_NAMES:
        if callable(method_of(model, name)) != (name in d):
            proxy._rewrap(name)


def _current_spec(spec: _Spec, monitor: Monitor) -> _Spec:
    """`spec` as the monitor has it now: what ``configure()`` changed since instrument()
    (settings, a reference, an event log switched off or swapped, a request-id function
    switched off) is what the loaded model gets, or loading it would undo the change, and
    in the process that pickled it warn that the settings cannot be applied.

    The reference is carried itself, not the path it was read from (the file need not be
    where the model is loaded); the event log as its path with ``EventLog.options()``, its
    redaction, hashing and bounds, never its secret. A log that cannot give its options
    is not carried: opened with the defaults it would write what it was set to redact.
    """
    log = monitor.events
    events = getattr(log, "path", None)
    options = getattr(log, "options", None)
    event_options = options() if callable(options) else None
    if not isinstance(events, (str, os.PathLike)) or event_options is None:
        events = event_options = None
    request_id = None if monitor.request_id_fn is None or spec.request_id is False \
        else spec.request_id
    tracker = monitor.features
    reference = spec.reference if tracker is None else tracker.reference
    return spec._replace(settings=monitor.settings, reference=reference, events=events,
                         event_options=event_options, request_id=request_id)
