"""Frames that name nothing: pandas and polars DataFrames whose column names are the ones
their library gives a frame made from an array or from rows.

``pd.DataFrame(array)`` (and ``read_csv(header=None)``) names its columns 0 to k-1, and
``pl.from_numpy(array)`` names them ``column_0`` to ``column_{k-1}``: no feature, class or
output is called that. Such a frame is read as the array it holds, by position, wherever a
frame is otherwise read by its names: a live input against a reference
(``quality/checks.py``), and a model's result (``core/predictions.py`` and the drain's
readers), whose probability columns are then named by the model's classes.

Apart from both packages because each reads frames, and neither imports the other.

>>> import pandas as pd
>>> unnamed_frame_matrix(pd.DataFrame([[0.2, 0.8]])).tolist()
[[0.2, 0.8]]
>>> unnamed_frame_matrix(pd.DataFrame([[0.2, 0.8]], columns=["no", "yes"])) is None
True
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def default_frame_names(keys: list[Any]) -> bool:
    """Whether a frame's column keys are the ones its library gives a frame made from an
    array or from rows, which name nothing: pandas' ``0`` to ``k-1``, polars' ``column_0``
    to ``column_{k-1}``.

    >>> default_frame_names([0, 1, 2]), default_frame_names(["column_0", "column_1"])
    (True, True)
    >>> default_frame_names([1, 0]), default_frame_names(["age", "income"]), default_frame_names([])
    (False, False, False)
    """
    if not keys:
        return False
    if all(isinstance(key, numbers.Integral) and not isinstance(key, bool) for key in keys):
        return keys == list(range(len(keys)))
    return all(key == f"column_{j}" for j, key in enumerate(keys))


def unnamed_frame_matrix(frame: Any) -> np.ndarray | None:
    """The numbers of a pandas or polars DataFrame that names nothing, as the 2-D array it
    was made from (one dtype: a frame of integers stays integers, labels); None for any
    other object, for a frame with names, and for one holding anything but plain numbers
    or bools (text, a nullable dtype, numbers beside bools), which is read by its columns.

    >>> import polars as pl
    >>> unnamed_frame_matrix(pl.from_numpy(np.array([[1, 2]]))).tolist()
    [[1, 2]]
    >>> import pandas as pd
    >>> unnamed_frame_matrix(pd.DataFrame([["a", 0.5]])) is None
    True
    """
    if type(frame).__name__ != "DataFrame":  # every other result: one look
        return None
    try:
        module = type(frame).__module__
        if not module.startswith(("pandas", "polars")):
            return None
        columns = frame.columns
        if module.startswith("pandas"):
            if type(columns).__name__ == "RangeIndex":
                if columns.start != 0 or columns.step != 1 or not len(columns):
                    return None
            elif columns.dtype.kind not in "iu" or not default_frame_names(list(columns)):
                return None
            dtypes = list(frame.dtypes)
        else:
            if not columns or columns[0] != "column_0" or not default_frame_names(columns):
                return None
            dtypes = [_POLARS_NUMPY.get(str(dtype)) for dtype in frame.dtypes]
        if not all(isinstance(d, np.dtype) and d.kind in "biuf" for d in dtypes):
            return None
        if len({d.kind == "b" for d in dtypes}) > 1:
            return None  # bools beside numbers: an object matrix, read by its columns
        matrix = frame.to_numpy()
        return matrix if isinstance(matrix, np.ndarray) and matrix.ndim == 2 else None
    except Exception:  # an odd frame: read by its columns, as before
        return None


# The numpy dtype a polars column of plain numbers or bools reads as.
_POLARS_NUMPY = {name: np.dtype(numpy_name) for name, numpy_name in (
    ("Float64", "float64"), ("Float32", "float32"), ("Int8", "int8"), ("Int16", "int16"),
    ("Int32", "int32"), ("Int64", "int64"), ("UInt8", "uint8"), ("UInt16", "uint16"),
    ("UInt32", "uint32"), ("UInt64", "uint64"), ("Boolean", "bool"))}
