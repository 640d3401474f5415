"""Which labels a prediction keeps for its outcome join, and how a label and a class compare.

A classifier's labels are kept as text, each cut to 256 characters (what a Prometheus
label value may hold is no bound here): a whole number of any type as the integer it is,
bytes decoded, a row without a label (None, NaN, ``pd.NA``) as None, which the joiner counts
unjudged. Outputs side by side (a dict, a DataFrame, a tuple or list of arrays, rows of
dicts) keep each row as a tuple of its outputs' labels. An outcome's label is read the same
way, and a class matches it as scikit-learn's ``accuracy_score`` would (True and 1 alike).

>>> joinable_labels(np.array(["spam", "ham"])), same_class("1", "True")
(('spam', 'ham'), True)
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np

from inferwatch.core.array_rows import MAX_LABEL_CHARS
from inferwatch.core.column_arrays import is_column
from inferwatch.core.library_columns import is_pandas_frame, is_pandas_series
from inferwatch.core.pending_calls import output_columns
from inferwatch.core.prediction_classes import bytes_text
from inferwatch.core.records import label_column, records_as_columns
from inferwatch.core.result_arrays import (
    arrow_nulls,
    plain_result,
    row_lists,
    sequence_cells,
)
from inferwatch.core.result_arrays import is_missing as _is_missing

# Labels a classifier's bools and 0/1 stand for alike (scikit-learn's accuracy_score
# counts True against 1 as correct).
_SAME_CLASSES = frozenset({("True", "1"), ("1", "True"), ("False", "0"), ("0", "False")})


MAX_JOINED_LABEL_CHARS = MAX_LABEL_CHARS


def same_class(predicted: str, label: str) -> bool:
    """Whether a label is the predicted class. A label no class was declared for was kept
    cut to its first 256 characters: the outcome's label is read the same way.

    >>> same_class("1", "True"), same_class("x" * 256, "x" * 300), same_class("a", "b")
    (True, True, False)
    >>> same_class("1.0", "1"), same_class("0.0", "False"), same_class("1.0", "10")
    (True, True, False)
    """
    if predicted == label or (predicted, label) in _SAME_CLASSES:
        return True
    # A classifier fit on a float column (``classes_ == [0.0, 1.0]``) keeps its classes as
    # "0.0" and "1.0", while a label 1 or 1.0 reads "1": read the class as labels are read.
    whole = _whole_float_text(predicted)
    if whole is not None:
        return whole == label or (whole, label) in _SAME_CLASSES
    return len(label) > MAX_JOINED_LABEL_CHARS == len(predicted) and \
        label[:MAX_JOINED_LABEL_CHARS] == predicted


def _whole_float_text(text: str) -> str | None:
    """The integer text of a whole-number float's text ("1.0", "-2.0"); None for any other.

    >>> _whole_float_text("1.0"), _whole_float_text("-2.0"), _whole_float_text("1.5")
    ('1', '-2', None)
    """
    if not text.endswith(".0"):
        return None
    digits = text[:-2]
    unsigned = digits[1:] if digits.startswith("-") else digits
    if not (unsigned.isascii() and unsigned.isdigit()):
        return None
    return str(int(digits))


def joinable_labels(result: Any) -> tuple[str | None, ...] | None:
    """The labels of a prediction whose classes no Prometheus label may hold (strings not
    declared as classes, ids past the small-integer bound): kept for outcome joins only,
    each cut to 256 characters, a row without a label (None, NaN, pd.NA) as None. None
    when `result` is not a column of such labels.

    >>> joinable_labels(np.array(["spam", "ham"])), joinable_labels([70001])
    (('spam', 'ham'), ('70001',))
    >>> joinable_labels(["spam", None]), joinable_labels([None]) is None
    (('spam', None), True)
    >>> joinable_labels(np.array([0.5])) is None
    True
    >>> joinable_labels([{"label": "POSITIVE", "score": 0.97}])  # a pipeline's answer
    ('POSITIVE',)

    Outputs side by side (a dict, a DataFrame, a tuple or list of arrays, rows of dicts) are
    joined a row at a time, each row a tuple of its outputs' labels; float outputs beside
    labels are their scores, and are left out.

    >>> joinable_labels([np.array(["spam", "ham"])]), joinable_labels({"label": ["spam"]})
    (('spam', 'ham'), ('spam',))
    >>> joinable_labels({"a": np.array([1, 0]), "b": np.array(["x", "y"]),
    ...                  "score": np.array([0.9, 0.6])})
    (('1', 'x'), ('0', 'y'))
    """
    result = plain_result(result)
    labelled = record_labels(result)
    if labelled is not None:
        return labelled
    rows = [result] if isinstance(result, (str, bytes, int, np.generic)) else \
        _cells_with_missing(result)
    try:
        outputs = _side_by_side(rows)
        if outputs is not None:  # class outputs, joined in the order returned
            columns = [_as_rows(np.asarray(column)) for column in outputs]
            if not columns or any(c.ndim != 1 or len(c) != len(columns[0])
                                  for c in columns):
                return None
            # Beside labels, float outputs are their scores: joined by the labels alone,
            # as a pipeline's {"label", "score"} is.
            columns = [c for c in columns if c.dtype.kind != "f"] or columns
            rows = columns[0] if len(columns) == 1 else \
                np.array([c.tolist() for c in columns], dtype=object).T
        array = _as_rows(np.asarray(rows))
    except (ValueError, TypeError):
        return None
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]  # one output's column (a one-column DataFrame): its rows
    if array.ndim == 2 and array.shape[1] > 1 and array.dtype.kind in "USiubO":
        return _label_rows(array)
    # Bytes labels (``np.array([b"spam"])``, a model fit on labels read as bytes) are kept
    # decoded, as an outcome's bytes labels are read.
    if array.ndim != 1 or array.dtype.kind not in "USiuO":
        return None
    labels = array.tolist()
    if all(_is_label(label) for label in labels):
        return tuple(map(kept_label, labels))
    # One row without a label leaves the others joinable; a column of none is no labels.
    absent = [label is None or _is_missing(label) for label in labels]
    if all(absent) or not all(gone or _is_label(label) for label, gone in zip(labels, absent)):
        return None
    return tuple(None if gone else kept_label(label) for label, gone in zip(labels, absent))


def _as_rows(array: np.ndarray) -> np.ndarray:
    """`array`, or where its every cell is a row (a Series of lists) the array the list of
    those rows makes, as the drain reads it (``result_arrays.sequence_rows``).

    >>> _as_rows(np.array([None, None], dtype=object)).shape
    (2,)
    """
    if array.dtype.kind == "O" and array.ndim == 1 and sequence_cells(array):
        return np.asarray(row_lists(array))
    return array


def _cells_with_missing(result: Any) -> Any:
    """A column with missing rows that numpy would read as floats with NaN (a pandas
    nullable ``Int64``, a polars or pyarrow column of integers with nulls: a classifier's
    labels) as its Python objects, None for each missing row; `result` itself otherwise.

    >>> import pandas as pd
    >>> _cells_with_missing(pd.Series([7, None], dtype="Int64")).tolist()
    [7, None]
    """
    if not is_column(result.__class__):
        return result
    if is_pandas_series(result.__class__):
        if isinstance(result.dtype, np.dtype) or not result.hasnans:
            return result
        return result.to_numpy(dtype=object, na_value=None)
    if not arrow_nulls(result):
        return result
    cells = result.to_list() if hasattr(result, "to_list") else result.to_pylist()
    column = np.empty(len(cells), dtype=object)
    column[:] = cells
    return column


def _side_by_side(result: Any) -> list | None:
    """The outputs of a result that holds them side by side, each a column of its rows: a
    dict's values, a DataFrame's columns, a tuple or list of 1-D numpy arrays (a
    multi-output model's tuple, ONNX Runtime's ``session.run``), or the columns rows of
    dicts make (``to_dict("records")``), as the drain counts their classes by output. None
    for anything else (a list of rows is rows).

    >>> len(_side_by_side((np.array([1, 2, 0]), np.array([2, 1, 1])))), _side_by_side([[1, 2]])
    (2, None)
    """
    if isinstance(result, Mapping):
        return list(result.values())
    if is_pandas_frame(result.__class__):  # by position: a frame may name a column twice
        return output_columns(result)
    if isinstance(result, (tuple, list)) and result and all(
            part.__class__ is np.ndarray and part.ndim == 1 for part in result):
        return list(result)
    records = records_as_columns(result)  # rows of dicts: the columns they make
    return None if records is None else [np.asarray(column) for column in records.values()]


def _is_label(value: Any) -> bool:
    """Whether a cell of an array of Python objects is a label a join keeps (text, bytes,
    an integer; a bool is a class the drain keeps already)."""
    return isinstance(value, (str, bytes, int)) and not isinstance(value, bool)


_RECORD_LABELS = (str, bytes, int, np.integer, np.bool_, np.str_, np.bytes_)


def record_labels(result: Any) -> tuple[str, ...] | None:
    """The labels of a classifier's rows of dicts (``[{"label": ..., "score": ...}]``, a
    Hugging Face pipeline's answer) or of one such dict, as text; None for anything else,
    or for a label that is neither text, bytes nor an integer. The score is the label's
    confidence, never a value an outcome is judged against.

    A row whose label is missing (None, NaN, ``pd.NA``) is None, which the joiner counts
    unjudged, while the others are judged: its score is never a value, even when no row
    has a label.

    >>> record_labels({"label": "refund", "score": 0.6}), record_labels([{"score": 0.6}])
    (('refund',), None)
    >>> record_labels([{"label": "spam", "score": 0.9}, {"label": None, "score": 0.1}])
    ('spam', None)
    >>> record_labels({"label": float("nan"), "score": 0.1})
    (None,)
    """
    column = label_column(result)
    if column is None:
        column = _label_output(result)
    if column is None:
        return None
    labelled = [isinstance(label, _RECORD_LABELS) for label in column]
    if all(labelled):
        return tuple(map(kept_label, column))
    if not all(known or label is None or _is_missing(label)
               for known, label in zip(labelled, column)):
        return None
    return tuple(kept_label(label) if known else None
                 for known, label in zip(labelled, column))


def _label_output(result: Any) -> list | None:
    """The ``"label"`` output of outputs side by side (a dict of columns, a DataFrame:
    ``{"label": labels, "score": scores}``), one cell a row; None for anything else.

    >>> _label_output({"label": np.array(["spam", "ham"]), "score": np.array([0.9, 0.8])})
    ['spam', 'ham']
    >>> _label_output({"label": "spam"}), _label_output({"price": np.zeros(2)})
    (None, None)
    """
    if isinstance(result, Mapping):
        if "label" not in result:
            return None
        column = result["label"]
    elif is_pandas_frame(result.__class__) and "label" in result.columns:  # type: ignore[attr-defined]
        column = result["label"]  # type: ignore[index]
        if is_pandas_frame(column.__class__):
            return None  # named twice: no one label output
    else:
        return None
    if isinstance(column, (str, bytes)) or np.ndim(column) != 1:
        return None
    return np.asarray(_cells_with_missing(column), dtype=object).tolist()


def _label_rows(table: np.ndarray) -> tuple[tuple[str, ...], ...] | None:
    """Each row of a multi-output classifier's ``(n, k)`` labels (scikit-learn's
    ``MultiOutputClassifier``, a multi-label indicator matrix) as a tuple of its k labels
    in output order, the way a regressor of several outputs keeps its values; None when a
    cell is not a label.

    A cell without a label (None, NaN, pd.NA) is None, which the joiner counts unjudged while
    the row's other outputs, and the other rows, are judged; a table without any label, or
    with a cell that is no label (a score), is None.

    >>> _label_rows(np.array([[1, 0], [0, 2]]))
    (('1', '0'), ('0', '2'))
    >>> _label_rows(np.array([["a", None], ["b", "c"]], dtype=object))
    (('a', None), ('b', 'c'))
    >>> _label_rows(np.array([[None, None]], dtype=object))
    >>> _label_rows(np.array([["a", 0.5]], dtype=object))
    """
    rows = table.tolist()
    # Bools are labels here, unlike in one column (whose classes the drain keeps already):
    # a multi-label indicator table is kept nowhere else.
    if table.dtype.kind != "O":
        return tuple(tuple(map(kept_label, row)) for row in rows)
    labelled = False
    for row in rows:
        for label in row:
            if isinstance(label, (str, bytes, int)):
                labelled = True
            elif not (label is None or _is_missing(label)):
                return None
    if not labelled:
        return None
    return tuple(tuple(kept_label(label) if isinstance(label, (str, bytes, int)) else None
                       for label in row) for row in rows)


def kept_label(value: Any) -> str:
    """A predicted label as a join keeps it: its text (:func:`class_text`), cut to 256
    characters.

    >>> kept_label(np.int64(1)), len(kept_label("x" * 300))
    ('1', 256)
    """
    return class_text(value)[:MAX_JOINED_LABEL_CHARS]


def class_text(value: Any) -> str:
    """A label's text as a class is kept: bytes decoded (labels read back from Kafka or
    Redis), a whole number of any type as the integer it is.

    >>> [class_text(v) for v in (b"spam", np.bytes_(b"1"), 1.0, Decimal("2.0"), True)]
    ['spam', '1', '1', '2', 'True']
    """
    if isinstance(value, np.generic) or getattr(value, "ndim", None) == 0:
        value = scalar_value(value.item() if isinstance(value, np.generic) else value)
    if isinstance(value, bytes):
        # As a class label's bytes are read (bytes_text): a byte that is not UTF-8 is its
        # escape, so two labels stay two (U+FFFD made b"\xfe" and b"\xff" one).
        return bytes_text(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a label 1.0 from a float column matches class "1"
    elif isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)  # a NUMERIC column read from a database: Decimal("1.0")
    return str(value)


def scalar_value(value: Any) -> Any:
    """The Python value of a 0-d array or tensor (``np.array(1.0)``, ``torch.tensor(1)``);
    any other value as it is. Its text (``tensor(1)``) would never match a class.

    >>> scalar_value(np.array(1.0)), scalar_value("a")
    (1.0, 'a')
    """
    if isinstance(value, np.generic) or getattr(value, "ndim", None) != 0:
        return value
    try:
        array = np.asarray(value)
    except Exception:  # an object whose conversion fails: judged as it is
        return value
    if array.ndim != 0 or array.dtype.kind == "O":
        return value
    return array.item()


__all__ = ["MAX_JOINED_LABEL_CHARS", "class_text", "joinable_labels", "kept_label",
           "record_labels", "same_class", "scalar_value"]
