"""What a remembered prediction holds in memory: the byte estimate that bounds the outcome
cache (:class:`~inferwatch.core.outcomes.OutcomeJoiner`), and the rows of a batch that fit it.

Each entry is sized from the objects it keeps, as ``sys.getsizeof`` sees them, plus a
calibrated overhead (``benchmarks/bench_outcome_cache.py`` checks both against tracemalloc);
ASCII text, floats and tuples of them are sized without a Python call per row, since a
huge batch's rows are millions. The shadow's held outcomes and the drain's joins size
their entries the same way.

>>> entry_bytes("r-1", ("fraud",), None) > entry_bytes("r-1", None, (0.5,))
True
"""

from __future__ import annotations

import itertools
import sys

import numpy as np

from inferwatch.core.array_rows import ArrayRows, text_bytes

# Per cached id beyond the objects sys.getsizeof sees: the ordered dict's slot (with the slack
# its table keeps after evictions) and link node, and the entry tuple with its timestamp
# (calibrated with tracemalloc in the benchmark).
ENTRY_OVERHEAD_BYTES = 250
TUPLE_SLOT_BYTES = 8  # a tuple's pointer to each row's object
EMPTY_TUPLE_BYTES = sys.getsizeof(())
_EMPTY_STR_BYTES = sys.getsizeof("")
_FLOAT_BYTES = sys.getsizeof(0.0)
# The smallest object a row can be (None): no entry within max_bytes keeps more rows than
# fit at this size, so the rows of a longer batch past that many are never read or sized.
SMALLEST_ROW_BYTES = sys.getsizeof(None)


def entry_bytes(request_id: str, classes: tuple | None, values: tuple | None,
                rows_bytes: int | None = None) -> int:
    """The memory one cached prediction holds: its id, its classes or values, the overhead.

    >>> entry_bytes("r-1", ("fraud",), None) > entry_bytes("r-1", None, (0.5,))
    True
    >>> two_outputs = entry_bytes("r-1", None, ((0.5, 1.5),))
    >>> two_outputs - entry_bytes("r-1", None, (0.5,)) == sizeof((0.5, 1.5)) - sizeof(0.5)
    True
    """
    size = ENTRY_OVERHEAD_BYTES + sizeof(request_id)
    for rows in (classes, values):
        if rows is not None:
            size += EMPTY_TUPLE_BYTES + TUPLE_SLOT_BYTES * len(rows) + (
                rows_bytes if rows_bytes is not None else
                sizeof(rows[0]) if len(rows) == 1 else rows_held_bytes(rows))
    return size


def row_cap(max_bytes: int, row_bytes: int = SMALLEST_ROW_BYTES,
            request_id: object = None) -> int:
    """The most rows an entry within `max_bytes` can keep, each at least `row_bytes` (by
    default the smallest object) and its slot, besides the entry's overhead, its rows'
    tuple and `request_id` (None is the smallest there is).

    >>> row_cap(4096), row_cap(4096, request_id="r-" + "7" * 100), row_cap(100)
    (157, 152, 1)
    """
    fixed = ENTRY_OVERHEAD_BYTES + EMPTY_TUPLE_BYTES + sizeof(request_id)
    return max(1, (max_bytes - fixed) //
               (TUPLE_SLOT_BYTES + max(row_bytes, SMALLEST_ROW_BYTES)))


def row_bytes(row: float | str) -> int:
    """What one remembered row holds (its slot aside): a float, or ASCII text by its length.

    >>> row_bytes(0.5) == sys.getsizeof(0.5), row_bytes("12") == sys.getsizeof("12")
    (True, True)
    """
    return sizeof(row)


def rows_held_bytes(rows: tuple) -> int:
    """``sum(map(sizeof, rows))``, without a Python call per row where every row is a
    float, or every row ASCII text (a regressor's or a classifier's rows, millions long
    for a huge batch).

    >>> rows = ("fraud", "legit", "fraud")
    >>> rows_held_bytes(rows) == sum(map(sizeof, rows))
    True
    >>> rows_held_bytes((0.5, 1.5)) == 2 * _FLOAT_BYTES
    True
    """
    if rows.__class__ is ArrayRows:
        return rows.held_bytes()
    kind = _uniform_kind(rows)
    if kind is float:
        return _FLOAT_BYTES * len(rows)
    if kind is str:
        return _EMPTY_STR_BYTES * len(rows) + sum(map(len, rows))
    tuples = _tuple_row_bytes(rows)
    if tuples is not None:
        return int(tuples.sum())
    return sum(map(sizeof, rows))


def _tuple_row_bytes(rows: tuple) -> np.ndarray | None:
    """Each row's :func:`sizeof` where every row is a tuple of one width (a result of
    several outputs, a tuple a row), read column by column in C where a column is all
    floats or all ASCII text; None for any other rows.

    >>> rows = ((0.5, "cat"), (1.5, "horse"))
    >>> _tuple_row_bytes(rows).tolist() == [sizeof(row) for row in rows]
    True
    """
    if set(map(type, rows)) != _TUPLE_ONLY:
        return None
    widths = set(map(len, rows))
    if len(widths) != 1:
        return None
    (width,) = widths
    costs = np.full(len(rows), EMPTY_TUPLE_BYTES + TUPLE_SLOT_BYTES * width, dtype=np.int64)
    items = tuple(itertools.chain.from_iterable(rows))
    for column in range(width):
        values = items[column::width]
        kind = _uniform_kind(values)
        if kind is float:
            costs += _FLOAT_BYTES
        elif kind is str:
            costs += np.fromiter(map(len, values), dtype=np.int64, count=len(values))
            costs += _EMPTY_STR_BYTES
        else:
            costs += np.fromiter(map(sizeof, values), dtype=np.int64, count=len(values))
    return costs


_TUPLE_ONLY = {tuple}


def _uniform_kind(rows: tuple) -> type | None:
    """float when every row is a float, str when every row is ASCII text (sized by its
    length alone), else None; at C speed.

    >>> _uniform_kind((0.5, 1.5)), _uniform_kind(("a", "b")), _uniform_kind(("a", "é"))
    (<class 'float'>, <class 'str'>, None)
    """
    kinds = set(map(type, rows))
    if kinds == {float}:
        return float
    if kinds == {str} and all(map(str.isascii, rows)):
        return str
    return None


def _fitting_rows(rows: tuple, budget: int) -> int:
    """How many of `rows`, first to last, fit in `budget` bytes, each with its tuple slot
    (at least one)."""
    if rows.__class__ is ArrayRows:
        costs = rows.row_sizes() + TUPLE_SLOT_BYTES
        return max(1, int(np.searchsorted(np.cumsum(costs), budget, side="right")))
    kind = _uniform_kind(rows)
    if kind is float:
        return max(1, min(len(rows), budget // (_FLOAT_BYTES + TUPLE_SLOT_BYTES)))
    if kind is str:
        costs = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        costs += _EMPTY_STR_BYTES + TUPLE_SLOT_BYTES
        return max(1, int(np.searchsorted(np.cumsum(costs), budget, side="right")))
    tuples = _tuple_row_bytes(rows)
    if tuples is not None:
        tuples += TUPLE_SLOT_BYTES
        return max(1, int(np.searchsorted(np.cumsum(tuples), budget, side="right")))
    costs = itertools.accumulate(sizeof(row) + TUPLE_SLOT_BYTES for row in rows)
    return max(1, sum(1 for _ in itertools.takewhile(lambda cost: cost <= budget, costs)))


def sizeof(value: object) -> int:
    """``sys.getsizeof(value)``, computed for the ASCII text and floats a cache mostly holds
    (a quarter of what the call costs), and for other text as a fresh copy's
    (:func:`~inferwatch.core.array_rows.text_bytes`); a row of several outputs (a tuple)
    counts each value it holds as well.

    >>> all(sizeof(v) == sys.getsizeof(v) for v in ("", "r-17", chr(233) * 2, 0.5, 3, None))
    True
    >>> sizeof((0.5, 1.5)) == sys.getsizeof((0.5, 1.5)) + 2 * sys.getsizeof(0.5)
    True
    """
    if value.__class__ is str:
        return text_bytes(value) if not value.isascii() else _EMPTY_STR_BYTES + len(value)
    if value.__class__ is float:
        return _FLOAT_BYTES
    if value.__class__ is tuple:  # checked after text and floats: they cost nothing more
        return EMPTY_TUPLE_BYTES + TUPLE_SLOT_BYTES * len(value) + sum(map(sizeof, value))
    return sys.getsizeof(value)


def fitted_entry(request_id: str, classes: tuple | None, values: tuple | None,
                 max_bytes: int, rows_bytes: int | None = None
                 ) -> tuple[tuple | None, tuple | None, int]:
    """(classes, values, bytes) of an entry within `max_bytes`: a batch larger than the whole
    bound keeps the first rows that fit (at least one). `rows_bytes`: what the row objects
    hold, when the caller knows it (else each row is sized).

    >>> classes, _, size = fitted_entry("r", tuple("ab" * 500), None, max_bytes=4096)
    >>> 1 <= len(classes) < 1000 and size <= 4096
    True
    >>> _, values, size = fitted_entry("r", None, ((0.5, 1.5, 2.5),) * 100, max_bytes=4096)
    >>> 1 <= len(values) < 100 and size <= 4096
    True
    """
    cap = row_cap(max_bytes)
    if classes is not None and len(classes) > cap:
        classes, rows_bytes = classes[:cap], None  # the rows past it could not fit: never sized
    if values is not None and len(values) > cap:
        values, rows_bytes = values[:cap], None
    size = entry_bytes(request_id, classes, values, rows_bytes)
    if size <= max_bytes:
        return classes, values, size
    rows = classes if classes is not None else values
    if not rows:
        return classes, values, size
    # The fixed part, then each row's object and its slot in the tuple, until the bound.
    budget = max_bytes - (ENTRY_OVERHEAD_BYTES + sys.getsizeof(request_id) + sys.getsizeof(()))
    kept = rows[:_fitting_rows(rows, budget)]
    if classes is not None:
        return kept, None, entry_bytes(request_id, kept, None)
    return None, kept, entry_bytes(request_id, None, kept)
