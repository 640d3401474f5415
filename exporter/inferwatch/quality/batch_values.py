"""Reading a batch's values: a row dict told from a dict of columns, a column of any
container as a 1-D numpy array, and a column's cells as float64 with its wrong types counted.

Apart from the checks because both the batch checks and the per-column counts read values
by these rules, and the drain tells a row from columns by the same :func:`is_row`.
"""

from __future__ import annotations

import decimal
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from inferwatch.quality.category_keys import is_missing
from inferwatch.quality.input_columns import arrow_numpy, polars_numpy

_NUMBER_KINDS = frozenset("iufb")
# Values that numpy would turn into floats, but that are no numbers: text would be parsed,
# complex cast with a warning, dates and times read as their ticks since the epoch.
_CAST_ANYWAY = (str, bytes, complex, np.complexfloating, np.datetime64, np.timedelta64)


def is_narrow(dtype: np.dtype) -> bool:
    """True for a float dtype narrower than float64 (float32, float16): such values are
    checked at their own precision (:func:`~inferwatch.quality.column_checks.at_precision`).

    >>> is_narrow(np.dtype(np.float32)), is_narrow(np.dtype(np.float64))
    (True, False)
    """
    return dtype.kind == "f" and dtype.itemsize < 8


def to_float(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Float64 values with NaN for missing and for wrong types, and the wrong-type count.

    Numbers (bool included) are accepted; in object columns anything else, text included,
    is a wrong type, and so are dates and times. Numpy text arrays (numpy turns a mixed list
    into text) are parsed cell by cell, unparseable text is wrong. An integer too large for
    a float64 is read as an infinity of its sign.

    >>> to_float(np.array([2, 10**400, "2", None], dtype=object))
    (array([ 2., inf, nan, nan]), 1)
    """
    kind = values.dtype.kind
    if kind in "fiub":
        return values.astype(np.float64, copy=False), 0
    if kind in "mM":
        nat = np.isnat(values)
        return np.full(len(values), np.nan), int((~nat).sum())
    if kind in "US":
        try:
            return values.astype(np.float64), 0
        except ValueError:
            pass
    elif kind == "O" and not any(isinstance(v, _CAST_ANYWAY) for v in values):
        try:
            return values.astype(np.float64), 0
        except (ValueError, TypeError, OverflowError):
            pass  # pandas NA, sequences, huge ints, arbitrary objects: one by one below
    out = np.empty(len(values), dtype=np.float64)
    wrong = 0
    for i, v in enumerate(values.tolist() if kind != "O" else values):
        if is_missing(v):
            out[i] = np.nan
            continue
        number = _number(v, text=kind in "US")
        if number is None:
            wrong += 1
            out[i] = np.nan
        else:
            out[i] = number
    return out, wrong


def _number(v: Any, *, text: bool) -> float | None:
    if isinstance(v, (np.datetime64, np.timedelta64)):
        return None  # a numpy timedelta is an integer to Python
    if isinstance(v, numbers.Real):
        try:
            return float(v)
        except OverflowError:
            return np.inf if v > 0 else -np.inf
    if isinstance(v, decimal.Decimal):
        # A database NUMERIC is no numbers.Real, yet an amount the profile read as one: it
        # must not turn wrong_type when some other cell sends its batch down this path.
        # Its NaN, quiet or signalling (which float() refuses), is missing, as in the profile.
        return np.nan if v.is_nan() else float(v)
    if text:
        try:
            return float(v)
        except (TypeError, ValueError):
            return None
    return None


def is_row(batch: Any) -> bool:
    """True for a non-empty dict of scalars: one row (a dict of columns holds sequences,
    pandas Series or ranges). The checks and the drain read a dict by this one rule.

    >>> is_row({"a": 1.0, "b": "x"}), is_row({"a": range(2)}), is_row({})
    (True, False, False)
    """
    if not isinstance(batch, Mapping) or not batch:
        return False
    # Numbers, text and None, told by their classes in C: a JSON row's values (length()
    # asks each for a __len__ it lacks, 0.5 us a value).
    return set(map(type, batch.values())) <= PLAIN_SCALARS or \
        all(length(v) is None for v in batch.values())


def named_series_row(batch: Any, feature_names: Any) -> dict | None:
    """A pandas Series labelled by feature names (``df.iloc[i]``, ``pd.Series(payload)``)
    as the row dict it is: its labels are the features, as a dict's keys are, not its
    positions. None for anything else, among them a Series labelled by numbers or by
    labels none of which is a feature (a column of a one-feature model, indexed by its
    rows). Never raises.

    >>> import pandas as pd
    >>> named_series_row(pd.Series({"b": 1.0, "a": 5.0}), {"a", "b"})
    {'b': 1.0, 'a': 5.0}
    >>> named_series_row(pd.Series([1.0, 5.0]), {"a", "b"}) is None
    True
    """
    cls = type(batch)
    if cls.__name__ != "Series" or not cls.__module__.startswith("pandas"):
        return None
    try:
        index = batch.index
        if index.dtype.kind in "biufcmM":  # numbers or times: the rows' labels, not names
            return None
        labels = list(index)
        if not any(str(label) in feature_names for label in labels):
            return None
        return dict(zip(labels, batch.tolist()))
    except Exception:  # an odd Series: read as before
        return None


# Classes of which no value is a column (length() is None for each).
PLAIN_SCALARS = frozenset({float, int, bool, str, bytes, type(None)})


def length(values: Any) -> int | None:
    """Length of a column-like value; None for a scalar (strings and bytes are scalars)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        return None
    if getattr(values, "ndim", 1) == 0:
        return None
    try:
        return len(values)
    except TypeError:
        return None


def one_value(value: Any) -> np.ndarray:
    """A scalar as a column of one; a 0-d array as the value it holds."""
    if isinstance(value, np.ndarray):
        value = value.item() if value.dtype.kind != "O" else value[()]
    column = np.empty(1, dtype=object)
    column[0] = value
    return column


def _library_numpy(values: Any, to_numpy: Any, to_list: str) -> np.ndarray:
    """A polars or Arrow column as numpy; one of a type numpy has no match for (a polars
    ``Int128``) as its Python values, which the checks read as they read any list."""
    try:
        return to_numpy(values)
    except Exception:
        python_values = getattr(values, to_list)()
        return np.fromiter(python_values, dtype=object, count=len(python_values))


def as_column(values: Any, *, numeric: bool = False) -> np.ndarray | None:
    """A 1-D array from a column (list, array, pandas or polars Series, Arrow array); None
    when it is not 1-D.

    A category-typed column (pandas ``category``, polars ``Categorical``, Arrow dictionary)
    is read as its values, whatever the profile: against a numeric feature its numbers are
    numbers and its text a wrong type, as in a plain column. Training profiles such a
    column as categories (``input_columns.is_category_typed``), and those meet live values of
    any type by their text (``category_key``), so either side may change the dtype.
    """
    module = type(values).__module__
    if module.startswith("pyarrow") and hasattr(values, "to_numpy"):
        # An Arrow array copies only when asked to (any null or text needs a copy).
        return as_column(_library_numpy(values, arrow_numpy, "to_pylist"))
    if module.startswith("polars") and hasattr(values, "to_numpy"):
        return as_column(_library_numpy(values, polars_numpy, "to_list"))
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        # Only a column of a numeric dtype is read as floats at once: converting an object
        # column would parse its text, so "1.5" would pass in one batch and be wrong in the
        # next, beside a value that does not parse.
        kind = getattr(values, "dtype", None)
        if numeric and getattr(kind, "kind", None) in _NUMBER_KINDS:
            # A float32 column stays float32: its bounds and edges are rounded to match.
            # A pandas nullable or Arrow-backed dtype ("Float32", "float32[pyarrow]") is no
            # numpy dtype, but names the numpy one it holds.
            held = kind if isinstance(kind, np.dtype) else getattr(kind, "numpy_dtype", None)
            target = held if isinstance(held, np.dtype) and is_narrow(held) else np.float64
            try:
                return values.to_numpy(dtype=target, na_value=np.nan)
            except (TypeError, ValueError):
                pass
        values = values.to_numpy()
    if isinstance(values, (str, bytes)):
        return None
    if not isinstance(values, np.ndarray):
        if not hasattr(values, "__len__"):
            return None
        # Object dtype keeps each value's own type, so "3" stays text in a numeric column.
        values = np.fromiter(values, dtype=object, count=len(values))
    if values.ndim != 1:
        return None
    return values
