"""Profiling one column: quantile bins for numbers (a float32 column's edges and range taken
as its decimals are written), category frequencies for the rest, and the refusal of columns
that no profile could check (nested values, dates and times).

Apart from :mod:`inferwatch.quality.reference`, which reads the data into columns
(:mod:`inferwatch.quality.input_columns`) and gathers one profile a column.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from inferwatch.catalogue import OTHER
from inferwatch.quality.category_keys import category_keys, is_missing
from inferwatch.quality.input_columns import CategoryColumn, category_values, is_category_typed
from inferwatch.quality.profile import CATEGORICAL, NUMERIC, Profile, ReferenceError

# The most quantile bins `inferwatch profile --bins` takes. Each is an edge in the reference
# file and a bucket of every live drift check; far past what any check resolves, a value
# above this is a typo (an extra 0, a row count), refused rather than written into the
# reference. (profile_column itself takes any count: more bins than values add none.)
MAX_BINS = 100_000


def profile_column(name: str, values: Any, *, bins: int = 10, max_categories: int = 50,
                   categorical: bool = False) -> Profile:
    """Profile one column: quantile bins when numeric, category frequencies otherwise.

    >>> profile_column("n", [0, 0, 1, 1, None]).fractions
    (0.5, 0.5)
    >>> profile_column("n", [0, 0, 1, 1, None]).missing_rate
    0.2
    """
    if not isinstance(values, np.ndarray) and is_category_typed(values):
        # As from_data reads it: its type says categories, even when they are numbers.
        values = category_values(values)
    col = values if isinstance(values, np.ndarray) else np.asarray(values)
    if col.ndim == 2 and col.shape[1] == 1:
        col = col[:, 0]
    if col.ndim != 1:
        raise ReferenceError(f"feature {name!r}: expected a 1-D column, got shape {col.shape}")
    if categorical:
        return _profile_categorical(name, col, max_categories)
    if isinstance(col, CategoryColumn):
        # Its type says categories, even with no value to show it: an all-missing one
        # profiled as numbers would count every live category as a wrong type.
        return _profile_categorical(name, col, max_categories)
    try:
        numeric = numeric_column(col)
    except OverflowError as exc:
        raise ReferenceError(f"feature {name!r}: holds {exc} too large for a 64-bit float;"
                             " leave the column out, or name it categorical") from None
    if numeric is None:
        _refuse_times(name, col)
        return _profile_categorical(name, col, max_categories)
    return _profile_numeric(name, numeric, bins, precision=col.dtype)


def refuse_nested(name: str, col: np.ndarray, what: str) -> None:
    """Refuse a column of lists, arrays or structs (a polars ``List``, ``Array`` or
    ``Struct`` column, a Parquet ``list<...>``, pandas cells holding lists or dicts): it is
    not one value a row. Profiled, a struct of one field would pass for that field's
    numbers and a list column for categories of numpy's text of each list, which no live
    value matches.

    >>> try:
    ...     refuse_nested("emb", np.array([[0.5], None], dtype=object), "X")
    ... except ReferenceError as exc:
    ...     "leave it out" in str(exc)
    True
    """
    where = ""
    if col.ndim != 1:
        kind = "structs or arrays"
    elif col.dtype.kind == "O":
        row = first_nested(col)
        if row is None:
            return
        kind = "structs" if isinstance(col[row], Mapping) else "lists"
        where = f" (row {row} is {type(col[row]).__name__})"
    else:
        return
    raise ReferenceError(f"{what}: column {name!r} holds {kind}, not one value a row{where};"
                         " flatten it into one column a field (a feature each), or leave"
                         " it out")


def first_nested(col: np.ndarray) -> int | None:
    """The index of the first list, tuple, mapping or array in an object column, else None.

    Every value is looked at, not the first present one: a column of text or numbers whose
    later rows hold lists is no more one value a row.

    >>> first_nested(np.array(["a", None, ["b"]], dtype=object))
    2
    """
    if len(col) == 0:
        return None
    if all(_never_nested(kind) for kind in set(map(type, col.tolist()))):
        return None  # one look at each type, not a call per row
    nested = np.flatnonzero(_NESTED(col).astype(bool))
    return int(nested[0]) if len(nested) else None


def _never_nested(kind: type) -> bool:
    """Whether no value of type `kind` is nested: text, numbers, None and numpy scalars
    (always 0-d, where a numpy array's type says nothing of its dimensions)."""
    return kind in (str, int, float, bool, bytes, type(None), decimal.Decimal) or \
        issubclass(kind, np.generic)


def _is_nested(value: Any) -> bool:
    return isinstance(value, (list, tuple, Mapping)) or getattr(value, "ndim", 0) > 0


_NESTED = np.frompyfunc(_is_nested, 1, 1)


# Dates and times make no profile worth checking against: every live timestamp is later than
# the training ones, so a numeric profile is always out of range and drifted, and a
# categorical one (a category per timestamp) never sees a live value.
_TIMES = (datetime.date, datetime.time, datetime.timedelta, np.datetime64, np.timedelta64)


def _refuse_times(name: str, col: np.ndarray) -> None:
    if col.dtype.kind in "mM" or (
            col.dtype.kind == "O" and any(issubclass(kind, _TIMES)
                                          for kind in set(map(type, col.tolist())))):
        raise ReferenceError(
            f"feature {name!r}: holds dates or times ({col.dtype}); convert it to the number"
            " the model uses (epoch seconds, hour of day, age in days), leave it out, or"
            " name it categorical")


def numeric_column(col: np.ndarray) -> np.ndarray | None:
    """`col` as float64 (missing as NaN) when every value is a number, else None.

    Raises OverflowError, naming what, for a finite number past the range of a float64
    (``10**400``, ``Decimal("1e400")``, a float128 1e400): read as an infinity it would be
    counted missing, and the profile would say nothing of it.

    >>> numeric_column(np.array([1, decimal.Decimal("2.5"), None], dtype=object)).tolist()
    [1.0, 2.5, nan]
    """
    if col.dtype.kind in "iu" or (col.dtype.kind == "f" and col.dtype.itemsize <= 8):
        return col.astype(np.float64, copy=False)
    if col.dtype.kind == "f":  # longdouble: wider than a float64
        with np.errstate(over="ignore"):
            out = col.astype(np.float64)
        past = np.isinf(out) & np.isfinite(col)
        if past.any():
            raise OverflowError(f"the number {col[past][0]}")
        return out
    if col.dtype.kind != "O":
        return None
    out = np.empty(len(col), dtype=np.float64)
    for i, v in enumerate(col):
        if is_missing(v):
            out[i] = np.nan
        elif isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)):
            try:
                out[i] = float(v)
            except OverflowError:
                raise OverflowError("an integer" if isinstance(v, numbers.Integral)
                                    else f"the number {v}") from None
            if math.isinf(out[i]) and isinstance(v, np.floating) and np.isfinite(v):
                raise OverflowError(f"the number {v}")
        elif isinstance(v, decimal.Decimal):
            # A database's NUMERIC column (and Parquet's decimal) arrives as Decimal: an
            # amount, not a category per value. Its NaN (quiet or signalling) is missing.
            out[i] = np.nan if v.is_nan() else float(v)
            if math.isinf(out[i]) and v.is_finite():
                raise OverflowError(f"the number {v}")
        else:
            return None
    return out


def _profile_numeric(name: str, values: np.ndarray, bins: int,
                     precision: np.dtype | None = None) -> Profile:
    n = len(values)
    finite = values[np.isfinite(values)]
    missing_rate = (n - len(finite)) / n if n else 0.0
    if len(finite) == 0:
        return Profile(name, NUMERIC, fractions=(0.0,), missing_rate=missing_rate, count=n)
    lo, hi = float(finite.min()), float(finite.max())
    narrow = _narrow_float(precision)
    constant = lo == hi
    if constant:
        # A constant: one bin for the value itself, open bins either side catch any change.
        # Above the largest float there is no value to open a bin at (and JSON holds no
        # infinity), so that constant gets the bin below and its own.
        lo, hi = _as_written(lo, narrow, min), _as_written(hi, narrow, max)
        with np.errstate(over="ignore"):
            above = np.nextafter(hi, np.inf)
        edges = np.array([lo, above] if np.isfinite(above) else [lo])
    else:
        # "higher" takes edges from the data itself: discrete data then gets one bin per
        # value instead of empty bins between values; its repeats are removed, and an
        # edge at the minimum would leave bin 0 empty. With as many bins as values every
        # value but the minimum is already an edge, so more bins add none: capping them
        # keeps an absurd `bins` from allocating an array per bin.
        bins = min(bins, len(finite))
        cuts = quantile_cuts(finite, bins)
        edges = np.unique(cuts)
        edges = edges[edges > lo]
    counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
    fractions = counts / len(finite)
    if narrow is not None and not constant:
        # Moving an edge down to its decimal text moves no training value across it (the
        # next narrower value below is a whole step away), so the counts stay as binned.
        edges = np.array([_as_written(e, narrow, min) for e in edges.tolist()])
        lo, hi = _as_written(lo, narrow, min), _as_written(hi, narrow, max)
    return Profile(name, NUMERIC, fractions=_floats(fractions), edges=_floats(edges),
                   min=lo, max=hi, missing_rate=missing_rate, count=n)


def quantile_cuts(finite: np.ndarray, bins: int) -> np.ndarray:
    """The inner edges of `bins` quantile bins of `finite` (no NaN), each a value of it:
    ``np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1], method="higher")``, value for
    value, from one sort.

    np.quantile partitions the data around every quantile asked for, a pass over the rows
    per bin; one sort costs the same whatever the number of bins. "higher" takes the value
    at the index ``ceil((n - 1) * q)`` of the sorted data, as numpy computes it. Only the
    sign of a zero edge may differ, where the data holds both -0.0 and 0.0: equal values,
    which of them each method puts at an index depends on how it arranged them.

    >>> quantile_cuts(np.array([5.0, 1.0, 3.0, 2.0, 4.0]), 4).tolist()
    [2.0, 3.0, 4.0]
    """
    quantiles = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    positions = np.ceil((len(finite) - 1) * quantiles).astype(np.intp)
    return np.sort(finite)[positions]


def _narrow_float(dtype: np.dtype | None) -> type | None:
    """The numpy type of a float column narrower than float64 (float32, float16), else None."""
    if dtype is None or dtype.kind != "f" or dtype.itemsize >= 8:
        return None
    return dtype.type


def _as_written(value: float, narrow: type | None, pick: Any) -> float:
    """`value` of a float32 (or float16) column, or the decimal it is written as, whichever
    `pick` (min or max) chooses.

    A float32 0.7 is 0.699999988 as a float64: a live float64 0.7 (the same number, as a
    float64 model server or a JSON request carries it) would be out of a range ending there,
    and binned above an edge there, where the training value was not. Taking the lower of
    the two for a minimum or an edge and the higher for a maximum keeps both in.

    >>> _as_written(float(np.float32(0.7)), np.float32, max)
    0.7
    >>> _as_written(float(np.float32(0.7)), np.float32, min)
    0.699999988079071
    """
    if narrow is None:
        return value
    text = float(str(narrow(value)))
    return float(pick(value, text)) if math.isfinite(text) else value


def _profile_categorical(name: str, col: np.ndarray, max_categories: int) -> Profile:
    keys, present = category_keys(col)
    n = len(col)
    n_present = int(present.sum())
    missing_rate = (n - n_present) / n if n else 0.0
    # Counted by hashing, not np.unique's sort of a million strings: the sorted distinct
    # keys are few.
    tally = collections.Counter(keys[present].tolist())
    uniques = np.array(sorted(tally), dtype=object)
    counts = np.array([tally[key] for key in uniques.tolist()], dtype=np.int64)
    if OTHER in tally:
        # Folded into the overflow bin (a category list holds that name once), the value
        # would count as an unseen category on every live row, though training held it.
        raise ReferenceError(
            f"feature {name!r}: holds the value {OTHER!r}, the name of the bin that collects"
            " categories past max_categories (and ones never seen); rename that value in"
            " the data, before profiling and in live inputs alike")
    # Most frequent first; ties by name, so the same data always gives the same file.
    order = np.lexsort((uniques, -counts))
    kept = order[:max_categories].tolist()
    categories = (*(str(uniques[i]) for i in kept), OTHER)
    kept_counts = counts[kept].astype(np.float64)
    other = n_present - kept_counts.sum()
    fractions = np.append(kept_counts, other) / n_present if n_present else np.zeros(len(kept) + 1)
    return Profile(name, CATEGORICAL, fractions=_floats(fractions), categories=categories,
                   missing_rate=missing_rate, count=n)


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)
