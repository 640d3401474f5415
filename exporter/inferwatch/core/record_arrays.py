"""Request-path results read as the numpy arrays they equal, for the one-array fold
(``drain_folds._fold_plain_arrays``), which reads a drain's 1-D arrays in one pass and
remembers each call's rows for its outcome.

Each reader here takes a drain's results only when every one is of its kind, and makes of
each exactly the array the general path reads it as (a float as a one-row float array, a
list of floats as its 1-D array, a Series as its values); otherwise it hands them on as
they are, and the general path normalises them one by one. Each has a property test that
compares the series, the rows kept and the outcomes judged with the general path's
(``tests/test_outcomes_*_records.py``, ``test_outcomes_label_scalars.py``,
``test_outcomes_text_labels.py``).

>>> [row.tolist() for row in as_plain_arrays([0.5, 2.0])]
[[0.5], [2.0]]
>>> as_plain_arrays([{"label": "cat"}])
[{'label': 'cat'}]
"""

from __future__ import annotations

import itertools

import numpy as np

from inferwatch.core.column_arrays import is_text_column
from inferwatch.core.library_columns import (
    DTYPE_OF,
    is_arrow_array,
    is_pandas_series,
    is_polars_series,
    plain_arrow_arrays,
    plain_polars_arrays,
    plain_series_arrays,
)
from inferwatch.core.object_labels import arrow_text_rows
from inferwatch.core.prediction_batch import FLOAT_SCALARS
from inferwatch.core.prediction_classes import bytes_text
from inferwatch.core.result_arrays import plain_result_arrays
from inferwatch.core.stacked_results import NDIM_OF


def as_plain_arrays(results: list) -> list:
    """`results` as the arrays one of the readers below makes of them, or as they are."""
    return _arrow_text_as_arrays(_object_text_as_arrays(_column_numbers_as_arrays(
        _series_as_arrays(_text_labels_as_rows(_scalar_labels_as_rows(
            _finite_floats_as_rows(_subclasses_as_arrays(results))))))))


def _subclasses_as_arrays(results: list) -> list:
    """`results` that are all 1-D masked arrays (or other 1-D ndarray subclasses), as the
    plain arrays the general path reads each as
    (:func:`~inferwatch.core.result_arrays.plain_result_arrays`; a masked entry NaN, or
    None among objects); any other `results` as they are.

    >>> [row.tolist() for row in _subclasses_as_arrays([np.ma.masked_array([0.5])] * 2)]
    [[0.5], [0.5]]
    """
    if len(results) < 2 or results[0].__class__ is np.ndarray or \
            getattr(results[0], "ndim", None) != 1:
        return results  # the one-array fold takes 1-D arrays: others are read past it
    arrays = plain_result_arrays(results)
    return arrays if arrays is not None and set(map(NDIM_OF, arrays)) == _ONE_DIMENSION \
        else results


_ONE_DIMENSION = {1}


def _finite_floats_as_rows(results: list) -> list:
    """`results` that are all floats (Python's or numpy's float scalars), none NaN or
    infinite (a regressor served as a function, called with ``request_id=``), as one-row
    arrays, views of one array, which the one-array fold reads as the general path reads
    each float; `results` that are all lists (or all tuples) of such floats with at least
    one each, none NaN or infinite (``[score]``, ``(low, high)``), as the 1-D arrays the
    general path reads them as; any other `results` as they are. (A NaN or an infinity
    among them sends them all to the general path, which joins such a float as no row,
    its outcome counted as ``unsupported_prediction``, where an array's row of it is
    joined as NaN.)

    >>> [row.tolist() for row in _finite_floats_as_rows([0.5, 2.0])]
    [[0.5], [2.0]]
    >>> _finite_floats_as_rows([0.5, float("nan")])
    [0.5, nan]
    >>> [row.tolist() for row in _finite_floats_as_rows([[0.5], [1.0, 2.0]])]
    [[0.5], [1.0, 2.0]]
    """
    if not results:
        return results
    kinds = set(map(type, results))
    if kinds <= FLOAT_SCALARS:
        column = np.array(results, dtype=np.float64).reshape(-1, 1)
        return list(column) if np.isfinite(column).all() else results
    if kinds == _ARRAY_ONLY:
        return _zero_dim_as_rows(results)
    if kinds not in (_LIST_ONLY, _TUPLE_ONLY) or not all(results):
        return results
    # Every value's type in one pass in C.
    if not set(map(type, itertools.chain.from_iterable(results))) <= FLOAT_SCALARS:
        return results
    lengths = list(map(len, results))
    if len(set(lengths)) == 1:
        block = np.array(results, dtype=np.float64)
        rows = list(block)
    else:
        block = np.fromiter(itertools.chain.from_iterable(results), dtype=np.float64,
                            count=sum(lengths))
        rows = np.split(block, np.cumsum(lengths[:-1]))
    return rows if np.isfinite(block).all() else results


_LIST_ONLY = {list}
_TUPLE_ONLY = {tuple}
_ARRAY_ONLY = {np.ndarray}


def _zero_dim_as_rows(results: list) -> list:
    """`results` that are all 0-d numpy arrays of one dtype of numbers or bools, none a NaN
    or an infinity (``x.squeeze()`` of one row), as the one-row arrays of their values,
    which the general path reads each as; any other `results` as they are (a NaN in a 0-d
    array is joined as no row, in a one-row array as NaN).

    >>> [row.tolist() for row in _zero_dim_as_rows([np.array(0.5), np.array(2.0)])]
    [[0.5], [2.0]]
    >>> _zero_dim_as_rows([np.array(0.5), np.array([1.0])])[1].tolist()
    [1.0]
    """
    if set(map(NDIM_OF, results)) != _ZERO_DIMENSIONS or \
            len(dtypes := set(map(DTYPE_OF, results))) != 1 or \
            next(iter(dtypes)).kind not in "fiub":
        return results
    column = np.array(results).reshape(-1, 1)
    if column.dtype.kind == "f" and not np.isfinite(column).all():
        return results
    return list(column)


_ZERO_DIMENSIONS = {0}


def _scalar_labels_as_rows(results: list) -> list:
    """`results` that are all integer scalars, Python's or numpy's (a classifier served as
    a function returning ``clf.predict(x)[0]``), or all bools, as one-row arrays of those
    labels, views of one array, which the one-array fold reads as the general path reads
    each label; any other `results` as they are (integers that no one integer dtype holds
    too: numpy would make them floats or objects).

    >>> [row.tolist() for row in _scalar_labels_as_rows([1, np.int64(0)])]
    [[1], [0]]
    >>> _scalar_labels_as_rows([1, True]), _scalar_labels_as_rows([2**64, -1])
    ([1, True], [18446744073709551616, -1])
    """
    if not results:
        return results
    kinds = set(map(type, results))
    if kinds <= _INT_SCALARS:
        expected = "iu"
    elif kinds <= _BOOL_SCALARS:
        expected = "b"
    elif kinds in (_LIST_ONLY, _TUPLE_ONLY):
        return _label_lists_as_rows(results)
    else:
        return results
    try:
        column = np.array(results).reshape(-1, 1)
    except (OverflowError, ValueError):
        return results
    return list(column) if column.dtype.kind in expected else results


def _label_lists_as_rows(results: list) -> list:
    """`results` that are all lists (or all tuples) of Python ints, or of bools, with at
    least one each (``[label]``), as the arrays the general path reads them as: int64, or
    bool; any other `results` as they are (an int past int64 alone reads as uint64 or
    objects).

    >>> [row.tolist() for row in _label_lists_as_rows([[1], [0, 2]])]
    [[1], [0, 2]]
    >>> _label_lists_as_rows([[1], [True]])
    [[1], [True]]
    """
    if not all(results):
        return results
    kinds = set(map(type, itertools.chain.from_iterable(results)))
    if kinds not in (_INT_ONLY, _BOOL_ONLY):
        return results
    lengths = list(map(len, results))
    dtype = np.int64 if kinds == _INT_ONLY else bool
    try:
        block = np.fromiter(itertools.chain.from_iterable(results), dtype=dtype,
                            count=sum(lengths))
    except OverflowError:
        return results
    if len(set(lengths)) == 1:
        return list(block.reshape(len(results), lengths[0]))
    return np.split(block, np.cumsum(lengths[:-1]))


_INT_ONLY = {int}
_BOOL_ONLY = {bool}


def _text_labels_as_rows(results: list) -> list:
    """`results` that are all text labels (``str`` or numpy's), or all lists of them with
    at least one each (a classifier served as a function returning ``"fraud"`` or
    ``["fraud"]``), as the arrays of that text, which the one-array fold reads as the
    general path reads each label; any other `results` as they are, text ending in a NUL
    too (numpy's fixed-width text would drop it).

    >>> [row.tolist() for row in _text_labels_as_rows(["cat", "dog"])]
    [['cat'], ['dog']]
    >>> [row.tolist() for row in _text_labels_as_rows([["cat"], ["dog", "owl"]])]
    [['cat'], ['dog', 'owl']]
    >>> _text_labels_as_rows(["cat", "a\\x00"])
    ['cat', 'a\\x00']
    >>> [row.tolist() for row in _text_labels_as_rows([b"cat", b"r-\\xff"])]
    [['cat'], ['r-\\\\xff']]
    """
    if not results:
        return results
    kinds = set(map(type, results))
    if kinds <= _TEXT_SCALARS:
        labels = results
    elif kinds == _BYTES_ONLY:  # a scalar string tensor's numpy: its text, as a label's
        labels = list(map(bytes_text, results))
    elif kinds == _LIST_ONLY and all(results):
        labels = list(itertools.chain.from_iterable(results))
        if not set(map(type, labels)) <= _TEXT_SCALARS:
            return results
    else:
        return results
    rows = _text_rows(labels, list(map(len, results)) if kinds == _LIST_ONLY else None)
    return results if rows is None else rows


def _text_rows(labels: list, lengths: list[int] | None) -> list | None:
    """`labels` (all text) as arrays of numpy's text: one row each (`lengths` None), or
    cut into calls of `lengths` rows; None when one ends in NUL, which numpy's fixed-width
    text would drop."""
    if any(label.endswith("\x00") for label in labels):
        return None
    block = np.array(labels, dtype=str)
    if lengths is None or set(lengths) == _ONE_ROW:  # a row each: rows of one 2-D array
        return list(block.reshape(-1, 1))
    return np.split(block, np.cumsum(lengths[:-1]))


_ONE_ROW = {1}


_TEXT_SCALARS = frozenset({str, np.str_})
_BYTES_ONLY = {bytes}


def _series_as_arrays(results: list) -> list:
    """`results` that are all pandas Series of one plain numpy dtype (a function returning
    ``pd.Series(model.predict(x))``) as their arrays, which is how the general path reads
    each (:func:`~inferwatch.core.library_columns.plain_series_arrays`: a Series' name and
    index name no output); Series of text (objects or pandas' own text dtypes) as arrays
    of that text when every row is text, none ending in NUL (:func:`_text_labels_as_rows`'
    rule); any other `results` as they are."""
    if not results or len(kinds := set(map(type, results))) != 1 or \
            not is_pandas_series(next(iter(kinds))):
        return results
    # Text Arrow holds (pandas 3's own): its rows converted by pyarrow for all at once.
    found = arrow_text_rows(results)
    if found is not None:
        labels, lengths = found
    else:
        arrays = plain_series_arrays(results)
        if arrays is None:
            return results
        if arrays[0].dtype.kind != "O":
            return arrays
        labels = np.concatenate(arrays).tolist()
        lengths = list(map(len, arrays))
    if set(map(type, labels)) != _STR_ONLY:
        return results  # missing rows, numbers among the text: read call by call
    rows = _text_rows(labels, lengths)
    return results if rows is None else rows


def _column_numbers_as_arrays(results: list) -> list:
    """`results` that are all pyarrow arrays, or all polars Series, of one number or bool
    type, every one with rows and none null, as their numpy arrays, which is how the
    general path reads each (their ``to_numpy``); any other `results` as they are (text:
    :func:`_arrow_text_as_arrays`; nulls are dropped and counted call by call).

    >>> import polars as pl
    >>> [row.tolist() for row in _column_numbers_as_arrays([pl.Series([0.5]),
    ...                                                     pl.Series([1.0, 2.0])])]
    [[0.5], [1.0, 2.0]]
    >>> _column_numbers_as_arrays([pl.Series(["cat"])])[0].dtype
    String
    """
    if not results or len(kinds := set(map(type, results))) != 1:
        return results
    (kind,) = kinds
    if is_arrow_array(kind):
        arrays = plain_arrow_arrays(results)
    elif is_polars_series(kind) and str(results[0].dtype) not in _POLARS_TEXT and \
            all(map(len, results)):
        arrays = plain_polars_arrays(results)
    else:
        return results
    return results if arrays is None else arrays


_POLARS_TEXT = frozenset({"String", "Utf8"})


_STR_ONLY = {str}

# Object arrays longer than this are read as they are (a join keeps the first rows of a
# longer result as an array of them, which is made for numpy's own dtypes).
_OBJECT_ROWS_MAX = 4096


def _object_text_as_arrays(results: list) -> list:
    """`results` that are all 1-D numpy arrays of Python objects, every row text (what a
    scikit-learn classifier fit on a pandas column of labels predicts: its ``classes_``
    are objects), as arrays of that text, which is how the general path reads each;
    any other `results` as they are, text ending in NUL too (:func:`_text_rows`).

    >>> [row.tolist() for row in _object_text_as_arrays([np.array(["cat"], dtype=object)])]
    [['cat']]
    >>> _object_text_as_arrays([np.array(["cat", None], dtype=object)])[0].dtype
    dtype('O')
    """
    if not results or set(map(type, results)) != _NDARRAY_ONLY or not all(
            result.dtype.kind == "O" and result.ndim == 1 and
            0 < result.shape[0] <= _OBJECT_ROWS_MAX for result in results):
        return results
    labels = (np.concatenate(results) if len(results) > 1 else results[0]).tolist()
    kinds = set(map(type, labels))
    if kinds and kinds <= _STR_OR_BYTES and kinds != _STR_ONLY:
        # Text as bytes (a string tensor's numpy): each its text, as its label is read.
        labels = [bytes_text(label) if label.__class__ is bytes else label
                  for label in labels]
    elif kinds != _STR_ONLY:
        return results  # missing rows, numbers among the text: read call by call
    rows = _text_rows(labels, [result.shape[0] for result in results])
    return results if rows is None else rows


_NDARRAY_ONLY = {np.ndarray}
_STR_OR_BYTES = frozenset({str, bytes})


def _arrow_text_as_arrays(results: list) -> list:
    """`results` that are all columns of text that Arrow holds, of one class (pandas 3's
    ``Series.values``, a pyarrow array, a polars ``String`` Series), every row text, as
    arrays of that text, which is how the general path reads each; any other `results` as
    they are, text ending in NUL too (:func:`_text_rows`).

    >>> import pyarrow as pa
    >>> [row.tolist() for row in _arrow_text_as_arrays([pa.array(["cat"]), pa.array(["dog"])])]
    [['cat'], ['dog']]
    >>> _arrow_text_as_arrays([pa.array(["cat", None])])[0].null_count
    1
    """
    if not results or len(kinds := set(map(type, results))) != 1:
        return results
    (kind,) = kinds
    if not is_text_column(kind) or is_pandas_series(kind):  # Series: _series_as_arrays
        return results
    found = arrow_text_rows(results)
    if found is None:
        return results
    labels, lengths = found
    if set(map(type, labels)) != _STR_ONLY:
        return results  # missing rows: read call by call
    rows = _text_rows(labels, lengths)
    return results if rows is None else rows


_INT_SCALARS = frozenset({int, np.int64, np.int32, np.int16, np.int8, np.uint64, np.uint32,
                          np.uint16, np.uint8})
_BOOL_SCALARS = frozenset({bool, np.bool_})
