"""An outcome's rows as the joiner reads them: a scalar is one row, an array or a list one
per element, and a prediction of several outputs takes a table of as many columns.
Apart from the joiner because the shadow's comparison reads a late outcome the same way.

>>> as_rows("fraud"), as_table([[1.0, 2.0]], 2)
(['fraud'], [[1.0, 2.0]])
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np

from inferwatch.core.outcome_labels import scalar_value


def target_float(target: Any) -> float:
    """`target` as a float; a number too large for one (an int past 1e308) as the infinity
    of its sign, which is what it is to a float error: a row with no error to observe."""
    try:
        return float(target)
    except OverflowError:
        return math.inf if target > 0 else -math.inf


def as_rows(y_true: Any) -> list:
    """The outcome's rows: a scalar is one, an array or a list one per element.

    >>> as_rows("fraud"), as_rows([[1, 2], [3]]), as_rows({"a": 1})
    (['fraud'], [[1, 2], [3]], [])
    """
    if isinstance(y_true, (str, bytes)):
        return [y_true]
    if isinstance(y_true, (Mapping, AbstractSet)):
        return []  # no order to join rows by: a shape mismatch, not one label judged wrong
    if isinstance(y_true, Iterator):  # a generator of labels: one row per label it yields
        y_true = list(y_true)
    try:
        if np.ndim(y_true) == 0:
            return [scalar_value(y_true)]
        return list(labels_array(y_true).reshape(-1))
    except ValueError:  # ragged rows: each one as given, to match (or not) its prediction
        return list(y_true)


def labels_array(y_true: Any) -> np.ndarray:
    """``np.asarray(y_true)``, with each label kept as given where numpy would turn a list
    of mixed labels into text: ``[1.0, "spam"]`` would read ``"1.0"``, never class ``1``.

    >>> labels_array([1.0, "spam"]).tolist(), labels_array(np.array(["a"])).dtype.kind
    ([1.0, 'spam'], 'U')
    """
    array = np.asarray(y_true)
    if array.dtype.kind in "US" and not isinstance(y_true, np.ndarray):
        return np.asarray(y_true, dtype=object)
    return array


def as_table(y_true: Any, outputs: int) -> list | None:
    """The outcome's rows of `outputs` targets each, for a prediction of several outputs: a
    table with one column per output, or one row of them. None for any other shape (a
    scalar, another width, a dict: outputs are joined by their order, not by name).

    >>> as_table([1.0, None], 2), as_table([[1.0, 2.0], [3.0, 4.0]], 2)
    ([[1.0, None]], [[1.0, 2.0], [3.0, 4.0]])
    >>> [as_table(y, 2) for y in (1.0, [1.0, 2.0, 3.0], [[1.0], [2.0]], {"a": 1, "b": 2})]
    [None, None, None, None]
    """
    if isinstance(y_true, (str, bytes)):
        return None
    if isinstance(y_true, Iterator):  # a generator of rows: one row per item, as for one output
        y_true = list(y_true)
    try:
        table = labels_array(y_true)
    except (ValueError, TypeError):  # ragged rows: no table of one width
        return None
    if table.ndim == 1 and table.shape[0] == outputs:
        return [table.tolist()]
    if table.ndim == 2 and table.shape[1] == outputs:
        return table.tolist()
    return None


def broadcast(rows: list, n: int) -> list:
    return rows * n if len(rows) == 1 else rows
