"""The model's own score on its validation data, kept in its reference profile.

A fixed accuracy floor cannot suit a fraud model validated at 99% and a recommender at 60%.
With the validation score in the reference, the accuracy alert judges live accuracy against
what this model achieved before it shipped. The score is computed from the same predictions
that profile the outputs:

- one output is read as the live path reads a model's ``predict`` under the same `task`
  (:func:`reads_as_values`, instrument()'s ``task`` option): with ``task="auto"`` floats are
  a regressor's values and ints, bools and text a classifier's labels; with
  ``"classification"`` every output is labels, with ``"regression"`` numbers are values;
- labels are scored by **accuracy**, the share of rows whose prediction equals the label
  (compared as :func:`~inferwatch.quality.category_keys.category_key` strings, as live
  outcomes are); predictions of which none is ever one of the labels (labels encoded 0/1,
  predictions ``"fraud"``/``"legit"``) are refused, not scored 0;
- values are scored by the **mean absolute error**;
- several outputs are class probabilities: the predicted class is the column with the
  highest probability, named by the output, and the score is accuracy; columns that
  cannot be the labels' classes (no label is one of their names, or they are numbered
  ``0``..``k-1`` and some label is no such number) are refused, not scored near 0;
- several float outputs (any numbers under ``task="regression"``) with labels of one column
  per output (a 2-D ``y_true``, in the outputs' order) are a multi-output regressor: the
  score is the **mean absolute error** over every labelled target, as live outcomes observe
  one error per target (for labels with no gaps, scikit-learn's
  ``mean_absolute_error(multioutput="uniform_average")``).

Rows whose label is missing are left out (for several outputs, each missing target); a
score needs at least one row.

>>> import numpy as np
>>> score(np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]))
Validation(metric='accuracy', value=0.75, rows=4)
>>> score(np.array([1.5, 2.0]), np.array([1.0, 3.0]))
Validation(metric='mean_absolute_error', value=0.75, rows=2)
>>> score(np.array([1.0, 0.0]), np.array([1, 1]), task="classification")
Validation(metric='accuracy', value=0.5, rows=2)
>>> score({"no": np.array([0.9, 0.2]), "yes": np.array([0.1, 0.8])}, np.array(["no", "no"]))
Validation(metric='accuracy', value=0.5, rows=2)
>>> score({"0": np.array([1.0, 2.0]), "1": np.array([5.0, 6.0])}, [[1.5, 5.0], [2.0, 8.0]])
Validation(metric='mean_absolute_error', value=0.625, rows=2)
"""

from __future__ import annotations

import decimal
import fractions
import math
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferwatch.catalogue import TASKS
from inferwatch.quality.category_keys import category_key, is_missing

METRICS = ("accuracy", "mean_absolute_error")


class ValidationError(ValueError):
    """Labels that cannot be scored against the predictions."""


@dataclass(frozen=True)
class Validation:
    """One validation score: `metric` (accuracy or mean_absolute_error) over `rows` rows."""

    metric: str
    value: float
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "rows": self.rows}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Validation:
        """Read :meth:`to_dict`'s output, naming the first bad key."""
        if not isinstance(data, dict) or set(data) != {"metric", "value", "rows"}:
            raise ValidationError(f"{where}: expected keys metric, value and rows")
        metric, value, rows = data["metric"], data["value"], data["rows"]
        if metric not in METRICS:
            raise ValidationError(f"{where}: metric must be one of {', '.join(METRICS)}, "
                                  f"got {metric!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not _finite(value) or value < 0 or (metric == "accuracy" and value > 1):
            raise ValidationError(f"{where}: value {reprlib.repr(value)} is not a valid"
                                  f" {metric}")
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise ValidationError(f"{where}: rows must be a positive integer, got {rows!r}")
        return cls(metric, float(value), rows)


def _finite(value: int | float) -> bool:
    """A finite number a float64 holds: a hand-edited ``10**400`` is invalid, not an
    OverflowError."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def check_task(task: Any) -> None:
    """Refuse a `task` instrument() would refuse, with the words it uses.

    >>> check_task("auto")
    >>> try:
    ...     check_task("regresion")
    ... except ValidationError as exc:
    ...     print(exc)
    task must be one of ('auto', 'classification', 'regression'), got 'regresion'
    """
    if not isinstance(task, str) or task not in TASKS:
        raise ValidationError(f"task must be one of {TASKS}, got {task!r}")


def reads_as_values(kind: str, task: str) -> bool:
    """Whether one output of numpy dtype kind `kind` holds a regressor's values under
    `task`, as the live path reads a model's output (core/predictions.py; a test keeps the
    two agreeing): floats unless the task is classification, integers only under
    regression; bools and text are labels whatever the task. Live, under ``task="auto"``, a
    model whose ``classes_`` are whole numbers (scikit-learn fit on a float target) has its
    float ``predict`` read as classes as well; a reference has no model to ask, so that
    classifier's reference is built with ``task="classification"``.

    >>> reads_as_values("f", "auto"), reads_as_values("i", "auto")
    (True, False)
    >>> reads_as_values("f", "classification"), reads_as_values("i", "regression")
    (False, True)
    """
    return (kind == "f" and task != "classification") or \
        (kind in ("i", "u") and task == "regression")


def score(predictions: Any, y_true: Any, task: str = "auto") -> Validation:
    """Score `predictions` (a 1-D array, or a dict of named probability columns or of a
    multi-output regressor's outputs) on `y_true`, reading them as a model of `task` is read
    live (``auto``, ``classification`` or ``regression``).

    >>> score(np.array(["cat", "dog"]), ["cat", None])
    Validation(metric='accuracy', value=1.0, rows=1)
    """
    check_task(task)
    table = np.asarray(y_true, dtype=object)
    columns = predictions if isinstance(predictions, dict) else {"value": predictions}
    if not columns:
        raise ValidationError("the predictions have no output to score")
    columns = {str(name): np.asarray(col).reshape(-1) for name, col in columns.items()}
    one_column_per_output = table.ndim == 2 and table.shape[1] == len(columns)
    if len(columns) > 1:
        if task == "regression" and not one_column_per_output:
            raise ValidationError(
                f"task='regression' scores {len(columns)} outputs as a multi-output "
                f"regressor's: y_true needs one column per output, in their order (an "
                f"(n, {len(columns)}) table), got shape {table.shape}")
        if task == "classification" and table.ndim == 2 and table.shape[1] > 1:
            raise ValidationError(
                f"task='classification' scores {len(columns)} outputs as class "
                f"probabilities against one label a row, but y_true has {table.shape[1]} "
                "columns (a multi-output classifier's score is not kept)")
        if one_column_per_output and task != "classification":
            return _multi_output_error(columns, table, is_missing, task)
    labels = table.reshape(-1)
    for name, col in columns.items():
        # Named: with several outputs, the first one's length may well be the right one.
        if len(col) != len(labels):
            output = f" (output {name!r})" if len(columns) > 1 else ""
            raise ValidationError(f"y_true has {len(labels)} rows but the predictions"
                                  f"{output} have {len(col)}")
    keep = np.array([not is_missing(v) for v in labels], dtype=bool)
    if not keep.any():
        raise ValidationError("y_true has no row with a label")
    labels = labels[keep]
    columns = {name: col[keep] for name, col in columns.items()}
    if len(columns) > 1:
        _refuse_unnamed_classes(list(columns), labels)
        names = np.array(list(columns), dtype=object)
        matrix = np.column_stack([_probabilities(name, col) for name, col in columns.items()])
        # argmax takes a NaN for the top probability: a row with no valid probabilities
        # would name a class, and score a hit when it happened to be the label. It has no
        # class (the live path drops such rows as invalid): a miss.
        valid = np.isfinite(matrix).all(axis=1)
        predicted = np.where(valid, names[np.argmax(np.where(valid[:, None], matrix, 0.0),
                                                     axis=1)], None)
        return _accuracy(predicted, labels, category_key)
    (predicted,) = columns.values()
    kind, numbers = _output_kind(predicted)
    if reads_as_values(kind, task):
        try:
            truth = np.asarray(labels, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise ValidationError("a regressor's labels must be numbers that fit a float, "
                                  f"got {repr(_first_non_number(labels))[:40]}") from None
        error, pairs = _mean_absolute_error(numbers.astype(np.float64), truth)
        return Validation("mean_absolute_error", error, int(pairs.sum()))
    _refuse_disjoint_labels(predicted, labels)
    return _accuracy(predicted, labels, category_key)


def _output_kind(column: np.ndarray) -> tuple[str, np.ndarray]:
    """The dtype kind the live path reads `column` as, and the column as that kind: an
    array of Python objects holding numbers, one of them fractional (a list of floats with
    None), is floats, NaN where missing, as live; one of integers or text stays objects
    (labels).

    >>> _output_kind(np.array([1.5, None], dtype=object))[0]
    'f'
    >>> _output_kind(np.array([1, None], dtype=object))[0]
    'O'
    """
    if column.dtype.kind != "O" or not column.size or isinstance(column[0], (str, bytes)):
        return column.dtype.kind, column
    fractional = False
    for value in column.tolist():
        if is_missing(value):
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, _NUMBERS):
            return "O", column
        fractional = fractional or isinstance(value, _FRACTIONAL)
    if not fractional:
        return "O", column
    try:
        return "f", np.array([np.nan if is_missing(v) else float(v) for v in column.tolist()],
                             dtype=np.float64)
    except OverflowError:  # a Fraction past the float range: not a value live either
        return "O", column


# What the live path reads as numbers among Python objects (core/result_arrays.py).
_NUMBERS = (int, float, np.integer, np.floating, decimal.Decimal, fractions.Fraction)
_FRACTIONAL = (float, np.floating, decimal.Decimal, fractions.Fraction)


class DisjointLabelsError(ValidationError):
    """Predicted labels of which none is ever one of the labels: every row would be a miss.
    `predicted` and `labels` are a few of each, for a caller to name its own way to fix
    it."""

    def __init__(self, message: str, predicted: list[str], labels: list[str]) -> None:
        super().__init__(message)
        self.predicted = predicted
        self.labels = labels


def _refuse_disjoint_labels(predicted: np.ndarray, labels: np.ndarray) -> None:
    """Refuse predicted labels that share no class with the labels (keys compared as a live
    outcome compares them: True and 1 are one class). Scored, the accuracy would be 0: a
    target label-encoded as 0/1 against the decoded ``"fraud"``/``"legit"`` the model
    returns, and the accuracy alert, whose threshold would fall below 0, could never fire.

    >>> _refuse_disjoint_labels(np.array([True, False]), np.array([1, 1], dtype=object))
    >>> try:
    ...     _refuse_disjoint_labels(np.array(["no", "yes"]), np.array([0, 1], dtype=object))
    ... except DisjointLabelsError as exc:
    ...     exc.predicted, exc.labels
    (['no', 'yes'], ['0', '1'])
    """
    predicted_classes = {_same_class(category_key(p)) for p in predicted.tolist()
                         if p is not None and not is_missing(p)}
    label_classes = {_same_class(category_key(y)) for y in labels.tolist()}
    if not predicted_classes or not predicted_classes.isdisjoint(label_classes):
        return
    shown_predicted, shown_labels = (sorted(found)[:3] for found in (predicted_classes,
                                                                     label_classes))
    raise DisjointLabelsError(
        f"no prediction is one of the labels: the predictions are labels such as "
        f"{', '.join(map(repr, shown_predicted))} and y_true holds "
        f"{', '.join(map(repr, shown_labels))}, so every row would be a miss and the "
        f"accuracy alert could never fire; give y_true in the classes the model predicts "
        f"(decode an encoded target: encoder.inverse_transform(y_true)), or predictions "
        f"encoded as the labels are", shown_predicted, shown_labels)


class ClassNamesError(ValidationError):
    """Probability columns whose names are not the classes the labels name: the predicted
    class (the name of the top column) could never be scored right. `names` are the
    columns, `labels` a few of the labels, for a caller to name its own way to fix it."""

    def __init__(self, message: str, names: list[str], labels: list[str]) -> None:
        super().__init__(message)
        self.names = names
        self.labels = labels


def _refuse_unnamed_classes(names: list[str], labels: np.ndarray) -> None:
    """Refuse probability columns that cannot be the labels' classes: no label is one of
    their names, or they are numbered ``0``..``k-1`` (a matrix given without
    ``prediction_names``) and some label is no such number (classes 1 and 2, whose column
    ``"1"`` holds class 2). Scored anyway, the accuracy would be near 0 and the accuracy
    alert could never fire. Which column is which class is not in the data: scikit-learn
    orders ``classes_`` by value, a network its own way, so no order is guessed.

    >>> _refuse_unnamed_classes(["0", "1"], np.array([True, False, 1], dtype=object))
    >>> try:
    ...     _refuse_unnamed_classes(["0", "1"], np.array(["fraud", "legit"], dtype=object))
    ... except ClassNamesError as exc:
    ...     exc.labels
    ['fraud', 'legit']
    """
    classes = {_same_class(name) for name in names}
    found = sorted({_same_class(category_key(y)) for y in labels.tolist()})
    unknown = [y for y in found if y not in classes]
    numbered = names == [str(i) for i in range(len(names))]
    if not unknown or (len(unknown) < len(found) and not numbered):
        return  # a label the model has no column for is a miss, as live
    shown = ", ".join(repr(n) for n in names[:6]) + (", ..." if len(names) > 6 else "")
    examples = ", ".join(repr(y) for y in unknown[:3])
    why = ("no label is one of them" if len(unknown) == len(found) else
           f"they are numbered, and labels such as {unknown[0]!r} are no column's number")
    raise ClassNamesError(
        f"the predictions are read as class probabilities, one column per class, the "
        f"predicted class being the name of the top column; the columns are {shown} but "
        f"{why} (labels: {examples}): name the columns by the model's classes, in their "
        f"order (prediction_names=list(model.classes_)), or pass the predicted labels "
        f"(model.predict(X))", list(names), unknown[:3])


def _same_class(key: str) -> str:
    """One key for the labels a live outcome takes for the same class (True and 1)."""
    return {"True": "1", "False": "0"}.get(key, key)


def _multi_output_error(columns: dict[str, np.ndarray], table: np.ndarray,
                        is_missing: Callable[[Any], bool], task: str = "auto") -> Validation:
    """The mean absolute error of several outputs, values under `task`, over every target
    with a label: each output against its column of `table`, in order. `rows` counts the
    rows with at least one target scored.

    >>> from inferwatch.quality.category_keys import is_missing
    >>> outputs = {"a": np.array([1.0, 2.0]), "b": np.array([3.0, 4.0])}
    >>> _multi_output_error(outputs, np.array([[2.0, None], [2.0, 5.0]]), is_missing)
    Validation(metric='mean_absolute_error', value=0.6666666666666666, rows=2)
    """
    read = [_output_kind(col) for col in columns.values()]
    if not all(reads_as_values(kind, task) for kind, _ in read):
        numbers = "numbers" if task == "regression" else "floats"
        raise ValidationError("labels of one column per output are scored as a multi-output "
                              f"regressor's: every output must be {numbers}")
    predicted = np.column_stack([values.astype(np.float64) for _, values in read])
    if table.shape[0] != predicted.shape[0]:
        raise ValidationError(f"y_true has {table.shape[0]} rows but the predictions have "
                              f"{predicted.shape[0]}")
    missing = np.array([[is_missing(v) for v in row] for row in table.tolist()],
                       dtype=bool).reshape(table.shape)
    if missing.all():
        raise ValidationError("y_true has no row with a label")
    try:
        truth = np.where(missing, np.nan, table).astype(np.float64)
    except (TypeError, ValueError, OverflowError):
        labels = table[~missing]
        raise ValidationError("a regressor's labels must be numbers that fit a float, "
                              f"got {repr(_first_non_number(labels))[:40]}") from None
    error, pairs = _mean_absolute_error(predicted, truth)
    return Validation("mean_absolute_error", error, int(pairs.any(axis=1).sum()))


def _mean_absolute_error(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean absolute error over the places where both are finite, and those places."""
    pairs = np.isfinite(truth) & np.isfinite(predicted)
    if not pairs.any():
        raise ValidationError("no row has both a finite prediction and a finite label")
    return float(np.mean(np.abs(predicted[pairs] - truth[pairs]))), pairs


def _first_non_number(labels: np.ndarray) -> object:
    for label in labels.tolist():
        try:
            float(label)
        except (TypeError, ValueError, OverflowError):
            return label
    return None


def _probabilities(name: str, col: np.ndarray) -> np.ndarray:
    try:
        return col.astype(np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValidationError(f"output {name!r} is read as class probabilities, one column "
                              "per class, and must be numbers, got "
                              f"{repr(_first_non_number(col))[:40]}") from None


# Labels a live outcome takes for the same class (core/outcomes.py): a classifier whose
# predict() returns bools, scored on 0/1 labels, would otherwise read an accuracy of 0.
SAME_CLASSES = frozenset({("True", "1"), ("1", "True"), ("False", "0"), ("0", "False")})


def _accuracy(predicted: np.ndarray, labels: np.ndarray, key) -> Validation:
    # None: a row with no predicted class, a miss.
    hits = 0
    for p, y in zip(predicted.tolist(), labels.tolist()):
        if p is not None:
            pk, yk = key(p), key(y)
            hits += pk == yk or (pk, yk) in SAME_CLASSES
    return Validation("accuracy", hits / len(labels), len(labels))
