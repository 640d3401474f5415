"""What kind of callable a model is: async or not, a stream, and whether it names a keyword.

Read once, when a callable is wrapped (:func:`inferwatch.core.call_wrappers.wrap_callable`),
or once per result class on the request path (:func:`is_coroutine_class`).

>>> async def answer(x): return x
>>> is_coroutine_callable(answer), accepts_keyword(answer, "request_id")
(True, False)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from types import AsyncGeneratorType, CoroutineType, GeneratorType
from typing import Any

_NEVER_COROUTINES = frozenset((GeneratorType, AsyncGeneratorType, str, bytes, list, tuple,
                               dict))


def is_coroutine_class(cls: type) -> bool:
    """Whether a sync callable's result of class `cls` is a coroutine: the call's work runs
    when it is awaited (``lambda x: client.apredict(x)``), so that is when it ends. A
    native coroutine, or any class with the coroutine protocol (Cython's); a generator
    (``types.coroutine``'s too) is a stream. Asked only of classes that are not yet known
    to be plain predictions, which a coroutine class never becomes.

    >>> async def answer(): return 1
    >>> pending = answer()
    >>> is_coroutine_class(type(pending)), is_coroutine_class(float)
    (True, False)
    >>> pending.close()
    """
    if cls is CoroutineType:
        return True
    if cls in _NEVER_COROUTINES:  # streams and texts, asked again on every call
        return False
    try:
        return issubclass(cls, Coroutine)
    except Exception:  # a class whose metaclass refuses the check: no coroutine
        return False


_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def accepts_keyword(fn: Callable, name: str) -> bool:
    """Whether `fn` names the keyword `name` in its own signature.

    A catch-all ``**kwargs`` does not count: scikit-learn's Pipeline hands ``**params`` to
    its last step, statsmodels and ``nn.Module.__call__`` to methods that reject unknown
    keywords, so only a parameter spelled out by name receives it.

    >>> accepts_keyword(lambda x, request_id=None: x, "request_id")
    True
    >>> accepts_keyword(lambda x, **params: x, "request_id")
    False
    """
    targets = [fn]
    if not inspect.isroutine(fn):
        forward = method_of(fn, "forward")
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


def is_coroutine_callable(fn: Callable) -> bool:
    """Whether calling `fn` gives a coroutine to await: an ``async def`` function or method,
    a ``functools.partial`` of one, or an object whose class's ``__call__`` is ``async def``
    (an async model class), which ``inspect.iscoroutinefunction`` does not tell. A sync
    ``__call__`` that returns an awaitable is none: its wrapper hands back what it returns.

    >>> class AsyncModel:
    ...     async def __call__(self, x): return x
    >>> class SyncModel:
    ...     def __call__(self, x): return AsyncModel()(x)
    >>> is_coroutine_callable(AsyncModel()), is_coroutine_callable(SyncModel())
    (True, False)
    >>> is_coroutine_callable(functools.partial(AsyncModel(), 1))
    True
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    try:
        # Read on the class, as a call looks it up: never the object's own __getattr__.
        if inspect.iscoroutinefunction(type(fn).__call__):
            return True
        return inspect.iscoroutinefunction(fn)
    except Exception:  # an attribute that raises when read (__name__ of a proxy): sync
        return False


def is_stream_function(fn: Callable) -> bool:
    try:
        return inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
    except Exception:  # a __getattr__ that raises for __func__ or __code__: no function
        return False


def method_of(model: Any, name: str) -> Any:
    """The model's `name` method, or None. A model whose ``__getattr__`` raises something
    other than AttributeError for a name it lacks (a KeyError from a dict-backed proxy)
    serves its ``predict`` unwrapped, so it must be instrumentable too.

    >>> class Proxy:
    ...     def __getattr__(self, name):
    ...         return {"predict": len}[name]
    >>> method_of(Proxy(), "predict_proba") is None
    True
    """
    try:
        return getattr(model, name, None)
    except Exception:
        return None


__all__ = ["accepts_keyword", "is_coroutine_callable", "is_coroutine_class",
           "is_stream_function", "method_of"]
