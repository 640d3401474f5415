"""Columns and frames of pandas, polars and pyarrow: told apart without importing those
libraries, their dtypes read as numpy kinds, and many calls' columns of one plain type read
as the numpy arrays each call alone reads as (or joined, for a frame) so that a drain reads
them at once.

A module of its own because these are the libraries' layouts (a Series' own array, a masked
or Arrow-backed one, a polars dtype's name), apart from what the drain's readers in
:mod:`inferwatch.core.stacked_results` make of them.
"""

from __future__ import annotations

import itertools
import operator
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from inferwatch.core.predictions import DEFAULT_OUTPUT
from inferwatch.core.result_arrays import row_lists, sequence_cells

# An array's dtype, read in C over many arrays (``set(map(DTYPE_OF, arrays))``).
DTYPE_OF = operator.attrgetter("dtype")
NDARRAY_ONLY = {np.ndarray}
# A pandas Series' own array: for a numpy dtype, the numpy array that ``to_numpy()`` only
# wraps in a read-only view, at about a tenth of its cost.
SERIES_VALUES = operator.attrgetter("_values")


ARRAY_OF = operator.attrgetter("array")  # a pandas Series' ExtensionArray or ndarray


def is_pandas_series(kind: type) -> bool:
    """Whether `kind` is pandas' Series."""
    return kind.__name__ == "Series" and kind.__module__.startswith("pandas")


def is_polars_series(kind: type) -> bool:
    """Whether `kind` is polars' Series."""
    return kind.__name__ == "Series" and kind.__module__.startswith("polars")


# polars dtypes whose Series without nulls read as numpy arrays of the same values: an Enum
# or Categorical declares classes, and nulls are dropped and counted, call by call.
_POLARS_PLAIN = frozenset({"Float64", "Float32", "Int8", "Int16", "Int32", "Int64", "UInt8",
                           "UInt16", "UInt32", "UInt64", "Boolean", "String"})


def plain_polars_arrays(results: Sequence[object]) -> list[np.ndarray] | None:
    """The arrays of many polars Series of one plain dtype and no nulls, as each reads
    alone; None for any other Series."""
    # The first call's dtype first: polars makes an Enum's dtype anew at each look
    # (about 20 us), which a drain of Enums then pays once, not once a call.
    if str(results[0].dtype) not in _POLARS_PLAIN:  # type: ignore[attr-defined]
        return None
    dtypes = {result.dtype for result in results}  # type: ignore[attr-defined]
    if len(dtypes) != 1:
        return None
    if any(result.null_count() for result in results):  # type: ignore[attr-defined]
        return None
    # Joined first (about 0.1 us a Series), then one conversion: each Series' own
    # to_numpy() cost 0.5 us.
    try:
        joined = np.asarray(sys.modules["polars"].concat(results, rechunk=False).to_numpy())
    except Exception:  # a polars that will not join them: each Series converted alone
        return [np.asarray(result.to_numpy()) for result in results]  # type: ignore[attr-defined]
    return split_rows(joined, list(map(len, results)))  # type: ignore[arg-type]


def split_rows(joined: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    """`joined`, the rows of many calls one after another, cut back into each call's rows
    (`lengths`, in the calls' order): views of it.

    >>> [part.tolist() for part in split_rows(np.arange(5.0), [2, 3])]
    [[0.0, 1.0], [2.0, 3.0, 4.0]]
    """
    if len(set(lengths)) == 1:
        return list(joined.reshape(len(lengths), lengths[0], *joined.shape[1:]))
    return np.split(joined, list(itertools.accumulate(lengths[:-1])))


def is_arrow_array(kind: type) -> bool:
    """Whether `kind` is one of pyarrow's arrays (a ``ChunkedArray`` is not)."""
    pa = sys.modules.get("pyarrow")  # loaded wherever such a result was made
    return pa is not None and kind.__module__.startswith("pyarrow") and \
        issubclass(kind, pa.Array)


_ARROW_TYPE_OF = operator.attrgetter("type")


_NULLS_OF = operator.attrgetter("null_count")


def plain_arrow_arrays(results: Sequence[Any]) -> list[np.ndarray] | None:
    """The numpy arrays of many pyarrow arrays of one number or bool type and no nulls,
    each what it reads as alone (its ``to_numpy``: a float's view, a bool's copy); None
    for any other arrays (text is counted as Arrow text, a dictionary as categories, and
    nulls are dropped and counted call by call).

    >>> import pyarrow as pa
    >>> [a.tolist() for a in plain_arrow_arrays([pa.array([0.5]), pa.array([1.0, 2.0])])]
    [[0.5], [1.0, 2.0]]
    >>> plain_arrow_arrays([pa.array([0.5, None])]) is None
    True
    """
    import pyarrow as pa

    types = set(map(_ARROW_TYPE_OF, results))
    if len(types) != 1:
        return None
    (kind,) = types
    if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or
            pa.types.is_boolean(kind)) or any(map(_NULLS_OF, results)):
        return None
    lengths = list(map(len, results))
    if not all(lengths):
        return None  # an empty answer: read as each call reads it
    return split_rows(pa.chunked_array(results, type=kind).to_numpy(), lengths)


def label_columns(kinds: Sequence[str], names: Sequence[object], task: str) -> int:
    """How many of a frame's columns, of these numpy kinds (:func:`column_kind`,
    :func:`polars_kind`) and names, are read as labels. A frame of two or more is read call
    by call: each call's labels of every column are admitted as classes before the next
    call's (past ``max_classes`` the order decides), where one frame of all the calls would
    admit a column's labels before the next column's.

    >>> label_columns(["i", "f"], ["label", "score"], "auto")
    1
    >>> label_columns(["i", "f"], ["id", "value"], "classification")
    2
    """
    count = 0
    for kind, name in zip(kinds, names):
        if kind not in "fiu" or (kind in "iu" and task != "regression") or (
                kind == "f" and task == "classification" and name == DEFAULT_OUTPUT):
            count += 1
    return count


def column_kind(dtype: object) -> str:
    """The numpy kind a pandas column of `dtype` reads as: a nullable dtype its numpy
    dtype's; text and categories (and numpy's objects) ``O``.

    >>> import pandas as pd
    >>> [column_kind(d) for d in (np.dtype("float32"), pd.Int64Dtype(), pd.StringDtype())]
    ['f', 'i', 'O']
    """
    return getattr(getattr(dtype, "numpy_dtype", dtype), "kind", "O")


# pandas' arrays of its nullable dtypes (numbers and bools with a mask for pd.NA).
_MASKED_ARRAYS = frozenset({"IntegerArray", "FloatingArray", "BooleanArray"})


def masked_series_arrays(results: Sequence[object]) -> list | None:
    """The arrays of many pandas Series of one nullable numeric or bool dtype, each a
    call's; None for any other results, or an empty one.

    >>> import pandas as pd
    >>> [a.tolist() for a in masked_series_arrays([pd.Series([1, None], dtype="Int64"),
    ...                                            pd.Series([3], dtype="Int64")])]
    [[1, <NA>], [3]]
    >>> masked_series_arrays([pd.Series([1.0])]) is None
    True
    """
    first = results[0]
    if not is_pandas_series(type(first)) or \
            type(getattr(first, "array", None)).__name__ not in _MASKED_ARRAYS:
        return None
    try:
        arrays = list(map(ARRAY_OF, results))
    except AttributeError:
        return None
    # One dtype object for all (pandas keeps one of each nullable dtype), told by identity
    # before any dtype is hashed.
    dtype = arrays[0].dtype
    if len(set(map(type, arrays))) != 1 or not (
            all(map(operator.is_, map(DTYPE_OF, arrays), itertools.repeat(dtype))) or
            len(set(map(DTYPE_OF, arrays))) == 1) or not all(map(len, arrays)):
        return None
    return arrays


def is_polars_frame(kind: type) -> bool:
    """Whether `kind` is polars' DataFrame."""
    return kind.__name__ == "DataFrame" and kind.__module__.startswith("polars")


def polars_kind(dtype: object) -> str:
    """A polars dtype as the numpy kind its column reads as for :func:`label_columns`:
    ``f`` for floats, ``i`` for integers, ``O`` for anything else (text, Enum, bools).

    >>> import polars as pl
    >>> polars_kind(pl.Float32), polars_kind(pl.UInt8), polars_kind(pl.Enum(["a"]))
    ('f', 'i', 'O')
    """
    if dtype.is_float():  # type: ignore[attr-defined]
        return "f"
    return "i" if dtype.is_integer() else "O"  # type: ignore[attr-defined]


def is_pandas_frame(kind: type) -> bool:
    """Whether `kind` is pandas' DataFrame."""
    return kind.__name__ == "DataFrame" and kind.__module__.startswith("pandas")


def frame_dtypes(frame: object) -> set:
    """The distinct dtypes of a pandas DataFrame's columns. ``DataFrame.dtypes`` builds a
    Series (about 30 us); the dtypes of the blocks pandas holds the columns in (each
    column in one) are read in a fifth of a microsecond.

    >>> import pandas as pd
    >>> sorted(map(str, frame_dtypes(pd.DataFrame({"a": [1.0], "b": [2], "c": [3.0]}))))
    ['float64', 'int64']
    """
    try:
        return set(map(DTYPE_OF, frame._mgr.blocks))  # type: ignore[attr-defined]
    except Exception:  # a pandas without the block manager
        return set(frame.dtypes)  # type: ignore[attr-defined]


def frame_rows(frame: Any) -> np.ndarray:
    """``frame.to_numpy()`` of a pandas DataFrame of one numpy dtype, read as the values of
    the one block pandas holds them in (in the columns' order), seen row by row: about a
    fifth of what ``to_numpy()`` costs a call. A frame of several blocks, or a pandas of
    other internals, is read by ``to_numpy()``.

    >>> import pandas as pd
    >>> frame_rows(pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})).tolist()
    [[1.0, 3.0], [2.0, 4.0]]
    """
    try:
        blocks = frame._mgr.blocks
        if len(blocks) == 1:
            block = blocks[0]
            values = block.values
            placement = block._mgr_locs.indexer
            if values.__class__ is np.ndarray and values.ndim == 2 and \
                    placement.__class__ is slice and placement.start == 0 and \
                    placement.step == 1:
                return values.T
    except Exception:  # a pandas whose frames keep their values otherwise
        pass
    return frame.to_numpy()


def plain_series_arrays(results: Sequence[object]) -> list[np.ndarray] | None:
    """The arrays of many pandas Series of one plain numpy dtype (a function returning a
    Series per call): read as those arrays are, since a Series' name and index name no
    output. None for nullable numbers, categories or mixed dtypes, which are read call by
    call (their missing values and categories have rules of their own).

    The arrays are the Series' own memory: the drain only reads them (joins copy them)."""
    try:
        held = list(map(SERIES_VALUES, results))
    except AttributeError:  # a pandas that keeps its arrays elsewhere: the public read
        held = None
    if held is not None and set(map(type, held)) == NDARRAY_ONLY:
        # A Series of a numpy dtype holds an array of that very dtype: the dtypes are read
        # off the arrays in C, not through each Series' dtype property (about 0.9 us).
        array_dtypes = set(map(DTYPE_OF, held))
        if len(array_dtypes) != 1 or next(iter(array_dtypes)).kind not in "fiubO":
            return None
        return held
    # pandas' text dtypes become objects with their missing values (NaN or pd.NA), which
    # the object path counts as missing, as a Series read alone has them counted. The
    # first call's dtype first: a drain of nullable numbers or categories is told at one
    # look, not after hashing every call's dtype (about 0.5 us each).
    dtype = results[0].dtype  # type: ignore[attr-defined]
    text = type(dtype).__name__ == "StringDtype"
    if not text and not (isinstance(dtype, np.dtype) and dtype.kind in "fiubO"):
        return None
    if len({result.dtype for result in results}) != 1:  # type: ignore[attr-defined]
        return None
    return [result.to_numpy() for result in results]  # type: ignore[attr-defined]


def row_list_results(results: Sequence[object]) -> list[list[list]] | None:
    """Each result's rows as lists (``result_arrays.row_lists``), where every result is a
    pandas Series or a 1-D numpy object array whose every cell is a row (a list, a tuple or
    a 1-D array: ``df.apply(..., axis=1)`` per call): the lists a model returning them as
    lists gives, which a drain reads together. None for any other results.

    >>> import pandas as pd
    >>> row_list_results([pd.Series([[0.2, 0.8]]), pd.Series([(0.6, 0.4)])])
    [[[0.2, 0.8]], [[0.6, 0.4]]]
    """
    first = results[0]
    kind = first.__class__
    # The first result tells most drains at once: numbers, labels, anything but rows.
    if kind is np.ndarray:
        if not (first.dtype.kind == "O" and first.ndim == 1  # type: ignore[attr-defined]
                and sequence_cells(first)):  # type: ignore[arg-type]
            return None
    elif not (is_pandas_series(kind) and first.dtype.kind == "O"):  # type: ignore[attr-defined]
        return None
    if not all(map(operator.is_, map(type, results), itertools.repeat(kind))):
        return None
    arrays = results if kind is np.ndarray else plain_series_arrays(results)
    if arrays is None:
        return None
    if not all(array.__class__ is np.ndarray and array.ndim == 1 and  # type: ignore[attr-defined]
               array.dtype.kind == "O" and sequence_cells(array) for array in arrays):
        return None
    return list(map(row_lists, arrays))


