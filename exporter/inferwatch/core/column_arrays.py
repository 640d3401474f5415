"""Huge columns of any library read as numpy arrays, or cut into rows of their own type.

A model may answer a batch with a pandas Series (numpy's, masked, or pyarrow's), a polars
Series, a pyarrow array or a Python list. The drain folds a huge one in slices, each in a
hold of the monitor's lock of its own: a column numpy holds, or can hold by a conversion in
C, is read as that array (``numeric_column_array``, ``rows_as_array``); any other is cut into
rows of its own type (``column_rows``), each made Python objects in its own hold. Told apart
without importing any of those libraries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from inferwatch.core.library_columns import is_pandas_series


def is_column(kind: type) -> bool:
    """Whether `kind` is a 1-D column of a dataframe library: a pandas or polars Series, a
    pyarrow Array or ChunkedArray (told without importing any of them)."""
    if kind.__name__ == "Series":
        return kind.__module__.startswith(("pandas", "polars"))
    return kind.__module__.startswith("pyarrow") and (
        kind.__name__ == "ChunkedArray" or kind.__name__.endswith("Array"))


def is_text_column(kind: type) -> bool:
    """Whether `kind` may be a column of text that Arrow holds: :func:`is_column`'s kinds,
    and the Arrow-backed arrays of pandas (pandas 3's ``Series.values`` of text, an
    ``ArrowDtype`` column's ``.array``).

    >>> import pandas as pd
    >>> is_text_column(type(pd.Series(["a"], dtype="string[pyarrow]").array))
    True
    """
    return is_column(kind) or (kind.__module__.startswith("pandas")
                               and hasattr(kind, "__arrow_array__"))


def column_rows(column: Any, start: int, stop: int) -> Any:
    """Rows `start` to `stop` of a column :func:`is_column` tells, in its own class (a view
    in each library: no rows copied).

    >>> import pandas as pd
    >>> column_rows(pd.Series([1, 2, 3], dtype="Int64"), 1, 3).tolist()
    [2, 3]
    """
    if is_pandas_series(column.__class__):
        return column.iloc[start:stop]
    return column.slice(start, stop - start)


def numeric_column_array(column: Any) -> np.ndarray | None:
    """A numeric column that Arrow or pandas' masks hold (a pandas ``Float64``, ``Int64``,
    ``boolean`` or ``float64[pyarrow]`` Series, a polars Series, a pyarrow array) as the
    numpy array it reads as, converted in C: floats as float64 with NaN for each missing
    row (as a float column's missing values are read), integers and bools as their numpy
    type when no row is missing. None for any other (text, integers with missing rows:
    their labels are read by :mod:`~inferwatch.core.object_labels`; a column with no value
    at all, which each library reads its own way).

    >>> import pandas as pd
    >>> numeric_column_array(pd.Series([0.5, None], dtype="Float64")).tolist()
    [0.5, nan]
    >>> numeric_column_array(pd.Series([1, None], dtype="Int64")) is None
    True
    """
    try:
        if is_pandas_series(column.__class__):
            kind = getattr(column.dtype, "kind", "")
            if kind == "f":
                if column.isna().all():
                    return None  # no value at all: read as pandas reads it, whole
                return column.to_numpy(dtype=np.float64, na_value=np.nan)
            numpy_dtype = getattr(column.dtype, "numpy_dtype", None)
            if kind in "iub" and kind and numpy_dtype is not None and not column.hasnans:
                return column.to_numpy(dtype=numpy_dtype)
            return None
        if column.__class__.__name__ == "Series":  # a polars one: polars is loaded
            import polars as pl

            dtype, nulls = column.dtype, column.null_count()
            if (dtype.is_float() and nulls < len(column)) or (
                    (dtype.is_integer() or dtype == pl.Boolean) and not nulls):
                return column.to_numpy()
            return None
        import pyarrow as pa

        kind, nulls = column.type, column.null_count
        if (pa.types.is_floating(kind) and nulls < len(column)) or (
                (pa.types.is_integer(kind) or pa.types.is_boolean(kind)) and not nulls):
            array = np.asarray(column)  # a missing float as NaN
            return array if array.ndim == 1 else None
    except Exception:  # an odd column: read as it is
        return None
    return None


# The types of the items of a list that make it a column an array reads alike (see
# rows_as_array), by the type of its first item.
_TEXT_ROW_TYPES = frozenset((str, type(None)))
_ROW_TYPES = {str: _TEXT_ROW_TYPES, type(None): _TEXT_ROW_TYPES, int: frozenset((int,)),
              float: frozenset((float,))}
_ROW_DTYPES = {int: np.int64, float: np.float64}


def rows_as_array(result: Sequence[object]) -> np.ndarray | None:
    """A list or tuple of plain ``int`` (each within int64), of plain ``float``, or of
    ``str`` and None (one of them text) as the 1-D array the fold reads it as: int64,
    float64, or an array of the Python objects; None for any other. One look at each item's
    type, in C, and one conversion.

    >>> rows_as_array(["a", None, "b"]).tolist(), rows_as_array(["a", 1])
    (['a', None, 'b'], None)
    >>> rows_as_array([1, 2]).dtype, rows_as_array([2**70]), rows_as_array([True, 1])
    (dtype('int64'), None, None)
    """
    if not result:
        return None
    first = result[0].__class__
    types = _ROW_TYPES.get(first)
    if types is None or not types.issuperset(map(type, result)):
        return None
    dtype = _ROW_DTYPES.get(first)
    if dtype is not None:
        try:
            return np.array(result, dtype=dtype)
        except OverflowError:  # an integer past int64: read as the list is
            return None
    if all(item is None for item in result):
        return None
    array = np.empty(len(result), dtype=object)
    array[:] = result
    return array
