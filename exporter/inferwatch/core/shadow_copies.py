"""What a shadow's challenger is handed of its champion's call: the copies made for it.

A sampled call's arguments are copied whatever their size before the champion runs
(:func:`captured`): a champion may change its input in place (``X -= mean``), and the
challenger must see what the caller passed. The champion's result is frozen as the call
returns: copied when small, since a caller may reuse its output buffer; handed on as it is
when large, since copying it would slow the call. The challenger then gets a private copy of
its own to change as it likes. A call the champion answered with a stream has nothing to hand on
(:func:`is_stream`). Apart from :mod:`inferwatch.core.shadow_runtime` because none of it knows of
the queue or the workers: this is what is copied, the queue decides when.

>>> rows = [[1.0, 2.0]]
>>> kept = frozen(rows)
>>> rows[0][0] = 9.0
>>> kept
[[1.0, 2.0]]
>>> is_stream(iter(rows)), is_stream(rows)
(True, False)
"""

from __future__ import annotations

import copy
import sys
from itertools import chain
from types import AsyncGeneratorType, GeneratorType

import numpy as np

from inferwatch import faults
from inferwatch.core.call_input import (
    COPY_LIMIT_BYTES,
    copies_on_write,
    frame_snapshot,
    snapshot,
    snapshot_input,
)

# Results a call answers most often, none of them a stream: one set lookup stands for the
# checks of is_stream.
PLAIN_RESULTS = frozenset({np.ndarray, list, tuple, dict, float, int, str, bool,
                           type(None)})
# Values no call can change in place: handed to a challenger as they are.
_IMMUTABLE = frozenset({str, bytes, int, float, bool, complex, type(None), range, frozenset})
_FRAMES = ("DataFrame", "Series")
_LIST = {list}


def is_stream(result: object) -> bool:
    """Whether `result` is a stream: a generator (the champion's wrapper follows one as a
    generator), or an iterator object (an SDK's stream, as the wrapper's proxy of it),
    which reading would take from its caller."""
    kind = result.__class__
    return kind is GeneratorType or kind is AsyncGeneratorType or \
        hasattr(kind, "__next__") or hasattr(kind, "__anext__")


class _TooLarge(Exception):
    pass


def frozen(value: object) -> object:
    """What the call saw, for the challenger to read later: `value` copied when it holds at
    most ``COPY_LIMIT_BYTES`` (64 KiB) of arrays, tensors and list slots; a larger one, or
    a tensor on a GPU, is read when the challenger runs (copying it would slow the call)."""
    if value.__class__ is np.ndarray:
        return snapshot(value)  # the common case: one check, one copy at most
    try:
        return _copied(value, [COPY_LIMIT_BYTES])
    except _TooLarge:
        return value
    except Exception as exc:  # an odd container: read later, as a large one is
        faults.record("shadow", exc)
        return value


def captured(value: object) -> object:
    """`value` as the caller passed it, for a sampled call before its champion runs: copied
    whatever its size where the champion could change it in place (an array or array
    subclass, a scipy.sparse matrix, a DataFrame or Series, a tensor on the CPU, and the
    lists, tuples and dicts holding them). Only sampled calls pay for it, and none while
    the queue is full: an array copy takes about 25 us for 1 MiB, 0.4 ms for 8 MiB and 28
    ms for 64 MiB (fresh pages). A frame with copy-on-write (pandas 3, polars) is copied
    lazily, at any size, as the champion's own record captures it. A tensor on a GPU is
    read when the challenger runs (copying it here would wait for the device), and any
    other object is handed on as it is. Never raises (a failed copy is counted).

    >>> rows = np.zeros((2, 3))
    >>> seen = captured((rows,))
    >>> rows -= 1.0  # the champion standardises its input in place
    >>> float(seen[0].sum())
    0.0
    """
    try:
        return _captured(value)
    except Exception as exc:  # an odd container: read later, as before
        faults.record("shadow", exc)
        return value


def _captured(value: object) -> object:
    kind = value.__class__
    if kind is np.ndarray or (kind not in _IMMUTABLE and isinstance(value, np.ndarray)):
        return value.copy()
    if kind is list or kind is tuple:
        # A batch is alike throughout: rows of plain numbers are told by some 64 of their
        # items, then copied in C (a call per item costs some 20 ms for 100,000 of them).
        kinds = set(map(type, _spread(value)))
        if _IMMUTABLE.issuperset(kinds):
            return value if kind is tuple else value.copy()
        if kinds == _LIST and _IMMUTABLE.issuperset(
                map(type, chain.from_iterable(map(_spread, _spread(value))))):
            return kind(map(list.copy, value))
        return kind(map(_captured, value))
    if kind is dict:
        return {key: _captured(item) for key, item in value.items()}
    if kind in _IMMUTABLE:
        return value
    module = kind.__module__
    if module.startswith(("pandas", "polars")) and kind.__name__ in _FRAMES:
        if module.startswith("pandas") and not copies_on_write(sys.modules["pandas"]):
            # Without copy-on-write a shallow copy shares the blocks an in-place edit
            # (fillna(inplace=True), df[col] *= 2) writes into.
            return value.copy(deep=True)
        return frame_snapshot(value, module)  # shares its columns until either writes
    if module.startswith("scipy.sparse") and hasattr(value, "copy"):
        return value.copy()
    if module.startswith("torch") and hasattr(value, "requires_grad"):
        return value.detach().clone() if value.is_cpu else value
    return value


def _spread(items: list | tuple) -> list | tuple:
    """Some 64 of `items`, spread over them (all of a short one)."""
    return items if len(items) <= 64 else items[::len(items) // 64]


def private(value: object) -> object:
    """`value` copied whatever its size, for the challenger to change as it likes: the
    kinds :func:`frozen` copies, an array subclass (np.matrix, a masked array), a tensor on
    any device, and any other object deep-copied (a scipy.sparse matrix, a dict subclass).
    A value that cannot change (a string, a number) or is callable (a model, a function,
    whose copy would be a second model) is handed on as it is, and so is an object that
    cannot be copied (counted)."""
    try:
        return _copied(value, [1 << 62], True)
    except Exception as exc:
        faults.record("shadow", exc)
        return value


def _spend(budget: list[int], size: int) -> None:
    budget[0] -= size
    if budget[0] < 0:
        raise _TooLarge


def _copied(value: object, budget: list[int], whole: bool = False) -> object:
    kind = value.__class__
    # A subclass too (np.matrix, a masked array): its copy keeps its class and mask.
    if kind is np.ndarray or (kind not in _IMMUTABLE and isinstance(value, np.ndarray)):
        _spend(budget, value.nbytes)
        return value.copy()
    if kind is list or kind is tuple:
        _spend(budget, 8 * len(value))
        return kind(_copied(item, budget, whole) for item in value)
    if kind is dict:
        _spend(budget, 16 * len(value))
        return {key: _copied(item, budget, whole) for key, item in value.items()}
    if kind in _IMMUTABLE:
        return value
    module = kind.__module__
    if module.startswith("pandas") and hasattr(value, "copy") and hasattr(value, "size"):
        if whole and kind.__name__ in _FRAMES and copies_on_write(sys.modules["pandas"]):
            return value.copy(deep=False)  # the challenger's writes copy what they change
        _spend(budget, 8 * int(value.size))  # a Series or DataFrame, 8 bytes a cell or so
        return value.copy()
    if module.startswith("torch") and hasattr(value, "requires_grad"):
        if whole:  # the challenger's own, on whatever device: one it edits is its own
            return value.detach().clone()
        if value.is_sparse:  # COO, which has no nbytes: it holds its indices and values
            _spend(budget, value._indices().nbytes + value._values().nbytes)
            return value.detach().clone() if value.is_cpu else value
        _spend(budget, int(getattr(value, "nbytes", 0)))
        return snapshot_input(value)  # a tensor on a GPU stays as it is
    if not whole or isinstance(value, np.generic) or callable(value):
        return value  # read later, as a large input is
    # Any other object a challenger may edit in place (a scipy.sparse matrix's data, a
    # tokenizer's dict subclass): off the request path, so a deep copy costs no caller.
    return copy.deepcopy(value)
