"""What a shadow's challenger is handed of its champion's call: the copies made for it.

A sampled call's arguments and the champion's result are frozen as the call returns: copied
when small, since a caller may reuse its input and output buffers; handed on as they are when
large, since copying them would slow the call. The challenger then gets a private copy of its
own to change as it likes. A call the champion answered with a stream has nothing to hand on
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

from types import AsyncGeneratorType, GeneratorType

import numpy as np

from inferwatch import faults
from inferwatch.core.call_input import COPY_LIMIT_BYTES, snapshot, snapshot_input

# Results a call answers most often, none of them a stream: one set lookup stands for the
# checks of is_stream.
PLAIN_RESULTS = frozenset({np.ndarray, list, tuple, dict, float, int, str, bool,
                           type(None)})


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


def private(value: object) -> object:
    """`value` copied whatever its size, for the challenger to change as it likes; an
    object it cannot copy is handed on as it is."""
    try:
        return _copied(value, [1 << 62])
    except Exception as exc:
        faults.record("shadow", exc)
        return value


def _spend(budget: list[int], size: int) -> None:
    budget[0] -= size
    if budget[0] < 0:
        raise _TooLarge


def _copied(value: object, budget: list[int]) -> object:
    kind = value.__class__
    if kind is np.ndarray:
        _spend(budget, value.nbytes)
        return value.copy()
    if kind is list or kind is tuple:
        _spend(budget, 8 * len(value))
        return kind(_copied(item, budget) for item in value)
    if kind is dict:
        _spend(budget, 16 * len(value))
        return {key: _copied(item, budget) for key, item in value.items()}
    module = kind.__module__
    if module.startswith("pandas") and hasattr(value, "copy") and hasattr(value, "size"):
        _spend(budget, 8 * int(value.size))  # a Series or DataFrame, 8 bytes a cell or so
        return value.copy()
    if module.startswith("torch") and hasattr(value, "requires_grad"):
        if value.is_sparse:  # COO, which has no nbytes: it holds its indices and values
            _spend(budget, value._indices().nbytes + value._values().nbytes)
            return value.detach().clone() if value.is_cpu else value
        _spend(budget, int(getattr(value, "nbytes", 0)))
        return snapshot_input(value)  # a tensor on a GPU stays as it is
    return value  # scalars and strings cannot change; other objects are read later
