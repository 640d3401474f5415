"""Turning what a model returns into numbers to record.

Models return Python and numpy scalars, 1-D score arrays, 2-D probability matrices,
lists, dicts of named outputs, pandas objects and tensors. `normalize` reduces each to
a :class:`Prediction`: values per output, predicted classes, top-class confidence and
the number of rows. It runs when pending calls are drained, never on the request path.

>>> p = normalize([[0.2, 0.8], [0.9, 0.1]], probabilities=True)
>>> p.rows, p.classes.tolist(), p.confidence.round(2).tolist()
(2, ['1', '0'], [0.8, 0.9])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_OUTPUT = "value"
# Rows of a probability matrix may drift from 1 by float error; more than this is a fault.
PROBABILITY_SUM_TOLERANCE = 1e-3

_EMPTY = np.empty(0, dtype=np.float64)


@dataclass
class Prediction:
    """One call's predictions, flattened per output."""

    rows: int = 0
    values: dict[str, np.ndarray] = field(default_factory=dict)
    classes: np.ndarray | None = None  # str labels, one per row
    confidence: np.ndarray | None = None
    invalid: dict[str, int] = field(default_factory=dict)

    def count_invalid(self, reason: str, n: int) -> None:
        if n:
            self.invalid[reason] = self.invalid.get(reason, 0) + int(n)


def to_array(obj: object) -> np.ndarray:
    """A numpy view of arrays, lists, pandas objects and (CPU or GPU) tensors."""
    if isinstance(obj, np.ndarray):
        return obj
    detach = getattr(obj, "detach", None)
    if detach is not None and hasattr(obj, "cpu"):  # torch tensors, possibly on a GPU
        return np.asarray(detach().cpu().numpy())
    to_numpy = getattr(obj, "to_numpy", None)
    if to_numpy is not None:  # pandas Series / DataFrame
        return np.asarray(to_numpy())
    numpy_method = getattr(obj, "numpy", None)
    if numpy_method is not None and not isinstance(obj, (list, tuple)):  # tf / jax tensors
        return np.asarray(numpy_method())
    array = np.asarray(obj)
    if array.dtype.kind == "U" and isinstance(obj, (str, list, tuple)):
        # numpy's fixed-width str dtype drops trailing NULs, merging "a\x00" into "a".
        return np.array(obj, dtype=object)
    return array


def _is_dataframe(obj: object) -> bool:
    return hasattr(obj, "columns") and hasattr(obj, "to_numpy") and hasattr(obj, "items")


def normalize(
    result: object,
    *,
    probabilities: bool = False,
    class_names: Sequence[object] | None = None,
    task: str = "auto",
) -> Prediction:
    """Reduce a model's return value to a :class:`Prediction`.

    `probabilities` says the value came from ``predict_proba`` (2-D rows are class
    probabilities); `class_names` labels its columns (``model.classes_``); `task` is
    ``auto``, ``classification`` or ``regression`` and decides what a 1-D array means.

    >>> normalize(0.7).values["value"].tolist()
    [0.7]
    >>> normalize({"price": [1.0, 2.0]}).values["price"].tolist()
    [1.0, 2.0]
    >>> normalize(np.array([1, 0, 1]), task="auto").classes.tolist()
    ['1', '0', '1']
    """
    prediction = Prediction()
    if isinstance(result, Mapping) or _is_dataframe(result):
        items = result.items()
        for name, column in items:
            _add_output(prediction, str(name), to_array(column), task)
        return prediction
    array = to_array(result)
    if probabilities or _looks_like_probabilities(array, task):
        _add_probabilities(prediction, array, class_names)
    elif array.ndim == 2 and array.shape[1] > 1:
        # Multi-output regression: one output per column.
        prediction.rows = array.shape[0]
        for j in range(array.shape[1]):
            _add_output(prediction, str(j), array[:, j], task, count_rows=False)
    else:
        _add_output(prediction, DEFAULT_OUTPUT, array, task)
    return prediction


def _looks_like_probabilities(array: np.ndarray, task: str) -> bool:
    """2-D float rows in [0, 1] that sum to 1 are class probabilities (softmax outputs)."""
    if task == "regression" or array.ndim != 2 or array.shape[1] < 2 or array.dtype.kind != "f":
        return False
    if task == "classification":
        return True
    with np.errstate(invalid="ignore"):
        in_unit = bool(((array >= 0) & (array <= 1)).all())
        sums_to_one = bool((np.abs(array.sum(axis=1) - 1.0) <= PROBABILITY_SUM_TOLERANCE).all())
    return in_unit and sums_to_one


def _add_output(prediction: Prediction, name: str, array: np.ndarray, task: str,
                count_rows: bool = True) -> None:
    flat = array.reshape(-1) if array.ndim != 1 else array
    if count_rows:
        prediction.rows = max(prediction.rows, flat.shape[0])
    kind = flat.dtype.kind
    if kind == "f" or (kind in "iu" and task == "regression"):
        values = flat.astype(np.float64, copy=False)
        finite = np.isfinite(values)
        if not finite.all():
            prediction.count_invalid("nan", int(np.isnan(values).sum()))
            prediction.count_invalid("inf", int(np.isinf(values).sum()))
            values = values[finite]
        _extend(prediction.values, name, values)
    elif kind in "iubUSO":
        if kind == "O":
            labels = np.array([str(_class_label(v)) for v in flat], dtype=object)
        else:
            labels = flat.astype(str)
        prediction.classes = labels if prediction.classes is None else np.concatenate(
            [prediction.classes, labels]
        )
    else:
        prediction.count_invalid("unsupported_type", flat.shape[0])


def _class_label(value: object) -> object:
    if isinstance(value, float) and not np.isfinite(value):
        return "nan"
    return value


def _add_probabilities(prediction: Prediction, array: np.ndarray,
                       class_names: Sequence[object] | None) -> None:
    if array.dtype.kind == "c":
        # Casting would drop the imaginary part, and numpy would warn about it on the
        # application's stderr from the drain thread: such output is not probabilities.
        prediction.count_invalid("unsupported_type", array.shape[0] if array.ndim == 2 else 1)
        return
    matrix = array.astype(np.float64, copy=False)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    elif matrix.ndim != 2:
        prediction.count_invalid("bad_shape", 1)
        return
    rows, width = matrix.shape
    prediction.rows = rows
    if rows == 0 or width == 0:
        return
    finite_rows = np.isfinite(matrix).all(axis=1)
    if not finite_rows.all():
        prediction.count_invalid("nan", int(np.isnan(matrix).any(axis=1).sum()))
        prediction.count_invalid("inf", int((~finite_rows & ~np.isnan(matrix).any(axis=1)).sum()))
        matrix = matrix[finite_rows]
    if matrix.shape[0] == 0:
        return
    out_of_unit = ((matrix < 0) | (matrix > 1)).any(axis=1)
    prediction.count_invalid("probability_out_of_range", int(out_of_unit.sum()))
    bad_sum = np.abs(matrix.sum(axis=1) - 1.0) > PROBABILITY_SUM_TOLERANCE
    prediction.count_invalid("probability_sum", int(bad_sum.sum()))
    names = _column_names(width, class_names)
    top = matrix.argmax(axis=1)
    prediction.classes = np.asarray(names, dtype=object)[top].astype(str)
    prediction.confidence = matrix[np.arange(matrix.shape[0]), top]
    for j, name in enumerate(names):
        _extend(prediction.values, name, matrix[:, j])


def _column_names(width: int, class_names: Sequence[object] | None) -> list[str]:
    if class_names is not None and len(class_names) == width:
        return [str(c) for c in class_names]
    return [str(j) for j in range(width)]


def _extend(values: dict[str, np.ndarray], name: str, array: np.ndarray) -> None:
    previous = values.get(name)
    values[name] = array if previous is None else np.concatenate([previous, array])
