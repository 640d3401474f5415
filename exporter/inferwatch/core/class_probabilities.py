"""Class probability matrices: telling them by their shape, and reading them.

A ``predict_proba`` matrix (or a binary classifier's positive-class column alone) gives
each row's predicted class, its confidence and one probability output per class; rows
that are NaN, infinite, out of [0, 1] or do not sum to 1 are counted invalid by reason.
Its checks are whole-matrix numpy passes, a job of its own apart from reading other
outputs. A multi-label classifier's matrix is no distribution: each column is one label's own
probability (:func:`add_label_probabilities`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from inferwatch.core.prediction_classes import SMALL_INTEGER_LIMIT, class_name
from inferwatch.core.result_arrays import classes_key, distinct_names, extend, missing_as_nan
from inferwatch.core.unit_sketch import sketched_columns

if TYPE_CHECKING:
    from inferwatch.core.predictions import Prediction

# Rows of a probability matrix may drift from 1 by float error; more than this is a fault.
PROBABILITY_SUM_TOLERANCE = 1e-3
# A softmax or a calibrator may land a hair outside [0, 1] by float error (1.0000000002,
# -1e-12): that is no fault (probability_out_of_range feeds a critical alert), and is read
# as the bound it missed. Anything further out is a real out-of-range probability.
PROBABILITY_RANGE_TOLERANCE = 1e-6

# Where add_probabilities lists the matrices it reads, while a caller records them (see
# :func:`recording_distributions`): per thread, as drains of different models run at once.
_RECORDING = threading.local()


def recording_distributions(matrices: list[tuple[list[str], np.ndarray]] | None
                            ) -> list[tuple[list[str], np.ndarray]] | None:
    """From now on (on this thread) append to `matrices` each class-probability matrix
    :func:`add_probabilities` records, as (its column names, its rows as recorded); None
    stops. Returns what was recording before, for the caller to put back.

    A drain sums the columns past the output cap per row (each row's probability of a
    class that has no series of its own): from the matrix, in one pass, not column by
    column from the outputs recorded apart.

    >>> from inferwatch.core.predictions import Prediction
    >>> matrices = []
    >>> previous = recording_distributions(matrices)
    >>> add_probabilities(Prediction(), np.array([[0.2, 0.8]]), ["a", "b"])
    >>> _ = recording_distributions(previous)
    >>> [(names, matrix.tolist()) for names, matrix in matrices]
    [(['a', 'b'], [[0.2, 0.8]])]
    """
    previous = getattr(_RECORDING, "matrices", None)
    _RECORDING.matrices = matrices
    return previous


def names_each_column(class_names: Sequence[object] | None, width: int) -> bool:
    """Whether a model's classes name each of `width` columns, one label each: what lets a
    ``predict``'s rows be read as class probabilities (task auto).

    >>> names_each_column(["no", "yes"], 2), names_each_column(None, 2)
    (True, False)
    """
    return class_names is not None and len(class_names) == width and \
        np.ndim(class_names[0]) == 0


def looks_like_probabilities(array: np.ndarray, task: str,
                             class_names: Sequence[object] | None, by_shape: bool) -> bool:
    """2-D float rows in [0, 1] that sum to 1 are class probabilities when the task says
    classification, or (task auto) when the model's ``classes_`` has one class per column
    or the matrix was handed over as a prediction with no method to go by. A multi-output
    regressor whose outputs happen to sum to 1 is therefore not taken for a classifier."""
    if task == "regression" or array.ndim != 2 or array.shape[1] < 2 or array.dtype.kind != "f":
        return False
    if task == "classification":
        return True
    if not by_shape and not names_each_column(class_names, array.shape[1]):
        return False
    return bool(probability_rows(array).all())


def probability_rows(array: np.ndarray) -> np.ndarray:
    """Which rows of a 2-D float array lie in [0, 1] and sum to 1 (within the tolerances):
    what :func:`looks_like_probabilities` asks of every row.

    >>> probability_rows(np.array([[0.2, 0.8], [0.5, 0.7], [np.nan, 1.0]])).tolist()
    [True, False, False]
    """
    # Rows near the float maximum overflow the sum: they are no probabilities, not a warning.
    with np.errstate(invalid="ignore", over="ignore"):
        rows = ((array >= -PROBABILITY_RANGE_TOLERANCE) &
                (array <= 1 + PROBABILITY_RANGE_TOLERANCE)).all(axis=1)
        rows &= np.abs(array.sum(axis=1) - 1.0) <= PROBABILITY_SUM_TOLERANCE
    return rows


def add_probabilities(prediction: Prediction, array: np.ndarray,
                      class_names: Sequence[object] | None, prefix: str = "") -> None:
    """A probability matrix (rows of class probabilities, or a binary classifier's
    positive-class column) recorded in `prediction`: each row's top class and its
    confidence, one output per class column (named by `class_names`, after `prefix`), and
    the rows that are no probabilities counted as invalid by reason."""
    if array.ndim == 1 and array.dtype.kind == "O" and array.size and \
            isinstance(array[0], (list, tuple, np.ndarray)):
        # One probability row per element (a pandas Series of lists, rows of different
        # lengths): as many rows as elements, never one row of objects.
        array = _object_rows(array)
    # A binary classifier's positive-class probabilities alone, one per row (shape (n,), as
    # hand-written classifiers and some SDKs return): read as the (n, 1) column below. As
    # one row of n columns it would be one call's row of n classes, every batch of three or
    # more counted as probability_sum and its predicted classes named by column numbers.
    positive_column = array.ndim == 1 and two_classes(class_names) and \
        not _one_binary_row(array)
    rows = array.shape[0] if array.ndim == 2 or positive_column else 1
    # Rows the model returned, even when none of them can be read as probabilities: the
    # batch size counts them as it counts any other call's.
    prediction.rows = max(prediction.rows, rows)
    matrix = _probability_floats(prediction, array, rows)
    if matrix is None:
        return
    if matrix.ndim == 1:
        matrix = matrix.reshape(-1, 1) if positive_column else matrix.reshape(1, -1)
    elif matrix.ndim != 2:
        prediction.rows = max(prediction.rows, matrix.shape[0] if matrix.ndim else 1)
        prediction.count_invalid("bad_shape", 1)
        return
    if matrix.shape[1] == 1 and two_classes(class_names):
        # A binary classifier's predict_proba giving the positive class's column alone (old
        # Keras wrappers, some SDKs): read as argmax of a single column it would predict the
        # first class for every row, with p as its confidence and every row counted as
        # probability_sum.
        matrix = np.concatenate([1.0 - matrix, matrix], axis=1)
    rows, width = matrix.shape
    prediction.rows = max(prediction.rows, rows)
    if rows == 0 or width == 0:
        return
    # Reductions along a row of a few columns cost numpy a loop per row: whole-matrix
    # checks first, and per row only when one finds something.
    finite = np.isfinite(matrix)
    if not finite.all():
        finite_rows = finite.all(axis=1)
        nan_rows = np.isnan(matrix).any(axis=1)
        prediction.count_invalid("nan", int(nan_rows.sum()))
        prediction.count_invalid("inf", int((~finite_rows & ~nan_rows).sum()))
        matrix = matrix[finite_rows]
    names = [prefix + name for name in column_names(width, class_names)]
    if matrix.shape[0] == 0:
        # No row holds probabilities: still a classifier's output, of which every row
        # lacks its class (an outcome counts each row unjudged, as for labels).
        prediction.class_outputs += 1
        prediction.probability_outputs.update(names)
        return
    if matrix.min() < 0 or matrix.max() > 1:
        low, high = -PROBABILITY_RANGE_TOLERANCE, 1 + PROBABILITY_RANGE_TOLERANCE
        out_of_unit = ((matrix < low) | (matrix > high)).any(axis=1)
        prediction.count_invalid("probability_out_of_range", int(out_of_unit.sum()))
        matrix = _near_unit_clipped(matrix)
        # Huge values can overflow a row's sum: counted below, never warned about on the
        # application's stderr (values in [0, 1] cannot, and skip this context's cost).
        with np.errstate(over="ignore", invalid="ignore"):
            bad_sums = count_bad_sums(row_sums(matrix))
        in_unit = False
    else:
        bad_sums = count_bad_sums(row_sums(matrix))
        in_unit = True
    prediction.count_invalid("probability_sum", bad_sums)
    top = top_columns(matrix)
    confidence = np.maximum(matrix[:, 0], matrix[:, 1]) if width == 2 else \
        matrix[np.arange(matrix.shape[0]), top]
    prediction.class_outputs += 1
    # Integer class names (sklearn's 0 and 1, or column numbers) stay numbers, which a drain
    # counts in one pass; any other name is text.
    prediction.add_classes(class_codes(tuple(names), top))
    # Every column's sketch values and the confidence's in one pass, for a matrix whose
    # values need no clipping (clipped, a -0.0 would turn 0.0 where its column alone keeps it).
    shared = sketched_columns(matrix, None if width == 2 else top) if in_unit else None
    sketched = prediction.sketched if prediction.sketched is not None else {}
    if prediction.confidence is None:
        prediction.confidence = confidence
        if shared is not None:
            sketched[id(confidence)] = (confidence, shared[1])
    else:
        prediction.confidence = np.concatenate([prediction.confidence, confidence])
    for j, name in enumerate(names):
        column = matrix[:, j]
        extend(prediction.values, name, column)
        if shared is not None and prediction.values[name] is column:
            sketched[id(column)] = (column, shared[0][:, j])
    if sketched:
        prediction.sketched = sketched
    prediction.probability_outputs.update(names)
    recording = getattr(_RECORDING, "matrices", None)
    if recording is not None:
        recording.append((names, matrix))


def label_outputs(class_names: Sequence[object] | None) -> int | None:
    """How many labels a multi-label classifier names: its classes are one pair of classes
    per output (``[array([0, 1]), array([0, 1]), ...]``, as ``ClassifierChain`` and a
    classifier fit on a 2-D label-indicator matrix name them); None for any other classes.

    >>> label_outputs([np.array([0, 1])] * 3), label_outputs([0, 1, 2]), label_outputs(None)
    (3, None, None)
    """
    try:
        if class_names is None or isinstance(class_names, (str, bytes)) or \
                not len(class_names) or np.ndim(class_names[0]) != 1:
            return None
        if all(np.ndim(names) == 1 and len(names) == 2 for names in class_names):
            return len(class_names)
    except TypeError:  # no length, or ragged: names no labels
        pass
    return None


def add_label_probabilities(prediction: Prediction, array: np.ndarray, labels: int,
                            names: Sequence[object] | None = None) -> bool:
    """A multi-label classifier's probabilities (one column per label, each the probability
    of its label alone, so a row sums to anything in [0, labels]) recorded in `prediction`:
    each label's column as its own output, named by `names` (by default its number). A row
    has no one predicted class nor a confidence, and its sum is no fault; a NaN, infinite or
    out-of-range value counts its row invalid once by reason. False, recording nothing, for
    a shape that is not one column per label (read as any other probabilities then).

    >>> from inferwatch.core.predictions import Prediction
    >>> p = Prediction()
    >>> add_label_probabilities(p, np.array([[0.9, 0.8, 0.1], [0.2, 0.1, 0.0]]), 3)
    True
    >>> p.rows, p.classes, p.invalid, p.values["0"].tolist()
    (2, None, {}, [0.9, 0.2])
    """
    if array.ndim == 1 and array.dtype.kind == "O" and array.size and \
            isinstance(array[0], (list, tuple, np.ndarray)):
        array = _object_rows(array)  # a pandas Series of rows
    if array.ndim == 1 and array.shape[0] == labels:
        array = array.reshape(1, -1)  # one row, handed over alone
    if array.ndim != 2 or array.shape[1] != labels:
        return False
    rows = array.shape[0]
    prediction.rows = max(prediction.rows, rows)
    matrix = _probability_floats(prediction, array, rows)
    if matrix is None or rows == 0:
        return True
    finite = np.isfinite(matrix)
    all_finite = bool(finite.all())
    if not all_finite:
        nan_rows = np.isnan(matrix).any(axis=1)
        prediction.count_invalid("nan", int(nan_rows.sum()))
        prediction.count_invalid("inf", int((~finite.all(axis=1) & ~nan_rows).sum()))
    checked = matrix if all_finite else matrix[finite]
    if checked.size and (checked.min() < 0 or checked.max() > 1):
        low, high = -PROBABILITY_RANGE_TOLERANCE, 1 + PROBABILITY_RANGE_TOLERANCE
        # An infinite value is counted as inf alone, as in a matrix of classes.
        out_of_unit = (matrix < low) | (matrix > high)
        if not all_finite:
            out_of_unit &= finite
        prediction.count_invalid("probability_out_of_range", int(out_of_unit.any(axis=1).sum()))
        near = ((matrix < 0) & (matrix >= low)) | ((matrix > 1) & (matrix <= high))
        # A new array: `matrix` may be the caller's own.
        matrix = np.where(near, np.clip(matrix, 0.0, 1.0), matrix)
    names = [str(j) for j in range(labels)] if names is None else [str(n) for n in names]
    for j, name in enumerate(names):
        # Labels are independent: one label's missing probability leaves the others' kept.
        column = matrix[:, j]
        extend(prediction.values, name, column if all_finite else column[finite[:, j]])
    prediction.probability_outputs.update(names)
    return True


def _near_unit_clipped(matrix: np.ndarray) -> np.ndarray:
    """`matrix` with the values just outside [0, 1] (within the tolerance of a float
    sum) clipped onto it: a new array where any is, since `matrix` may be the caller's own."""
    low, high = -PROBABILITY_RANGE_TOLERANCE, 1 + PROBABILITY_RANGE_TOLERANCE
    near = ((matrix < 0) & (matrix >= low)) | ((matrix > 1) & (matrix <= high))
    return np.where(near, np.clip(matrix, 0.0, 1.0), matrix) if near.any() else matrix


def top_columns(matrix: np.ndarray) -> np.ndarray:
    """Each row's top column of a matrix of finite numbers, the first one on a tie."""
    if matrix.shape[1] == 2:  # a binary classifier: one comparison, as argmax reads it
        return (matrix[:, 1] > matrix[:, 0]).view(np.int8)
    return matrix.argmax(axis=1)


def top_classes(matrix: np.ndarray, class_names: Sequence[object] | None
                ) -> tuple[list[str], np.ndarray] | None:
    """(each column's class, each row's top column or -1 for a row without finite
    numbers) of a numeric `matrix` of two or more columns, as :func:`add_probabilities`
    reads the class of each row; None for any other array. For the rows an outcome joins,
    read without making a Python object per row.

    >>> names, top = top_classes(np.array([[0.9, 0.1], [np.nan, 0.5], [0.2, 0.8]]),
    ...                          ["no", "yes"])
    >>> names, top.tolist()
    (['no', 'yes'], [0, -1, 1])
    """
    if matrix.__class__ is not np.ndarray or matrix.ndim != 2 or matrix.shape[1] < 2 or \
            matrix.dtype.kind not in "fiu":
        return None
    floats = matrix.astype(np.float64, copy=False)
    finite = np.isfinite(floats)
    finite_rows = None if finite.all() else finite.all(axis=1)
    if finite_rows is not None:
        floats = floats[finite_rows]
    # The narrowest integer that holds a column's index: a copy of a million rows' top
    # columns is then a megabyte at most for a classifier of fewer than 128 classes.
    top = np.full(matrix.shape[0], -1, dtype=np.min_scalar_type(-matrix.shape[1]))
    if floats.shape[0]:
        if floats.min() < 0 or floats.max() > 1:
            floats = _near_unit_clipped(floats)
        if finite_rows is None:
            top[:] = top_columns(floats)
        else:
            top[finite_rows] = top_columns(floats)
    return list(column_names(matrix.shape[1], class_names)), top


def _probability_floats(prediction: Prediction, array: np.ndarray,
                        rows: int) -> np.ndarray | None:
    """`array` as float64 probabilities; None, its `rows` counted as unsupported_type, for
    values that are no numbers."""
    if array.dtype.kind in "cmMUSV":
        # Casting would drop the imaginary part, and numpy would warn about it on the
        # application's stderr from the drain thread: such output is not probabilities;
        # nor are times (cast, nanoseconds since 1970 would read as out-of-range ones), nor
        # text, which numpy would parse ("0.2" is no probability a model returned).
        prediction.count_invalid("unsupported_type", rows)
        return None
    if array.dtype.kind == "O":
        # Numbers with pd.NA among them (a nullable Float64 DataFrame): each NA is a
        # missing probability, its row counted as nan, and the other rows still recorded.
        # Anything else (text, which float() would parse) is no probabilities.
        numbers = missing_as_nan(array)
        if numbers is None:
            prediction.count_invalid("unsupported_type", rows)
        return numbers
    return array.astype(np.float64, copy=False)


def _one_binary_row(array: np.ndarray) -> bool:
    """Whether a 1-D array of a binary classifier is one row `[p0, p1]`: two numbers summing
    to 1, as a handler hands over one request's row (``r.prediction(proba[0],
    probabilities=True)``). Two positive-class probabilities sum to 1 only by chance.

    >>> _one_binary_row(np.array([0.3, 0.7])), _one_binary_row(np.array([0.3, 0.9]))
    (True, False)
    """
    if array.shape[0] != 2 or array.dtype.kind not in "fiu":
        return False
    with np.errstate(invalid="ignore", over="ignore"):
        return bool(abs(float(array[0]) + float(array[1]) - 1.0) <= PROBABILITY_SUM_TOLERANCE)


def binary_rows(pairs: np.ndarray) -> np.ndarray:
    """Which rows of an (n, 2) array :func:`_one_binary_row` takes for one row ``[p0, p1]``
    (the two summing to 1), each as it judges a 1-D array of two.

    >>> binary_rows(np.array([[0.3, 0.7], [0.3, 0.9], [np.nan, 1.0]])).tolist()
    [True, False, False]
    """
    values = pairs.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.abs(values[:, 0] + values[:, 1] - 1.0) <= PROBABILITY_SUM_TOLERANCE


def two_classes(class_names: Sequence[object] | None) -> bool:
    """Whether the model names exactly two classes (a binary classifier's ``classes_``).

    >>> two_classes(["legit", "fraud"]), two_classes([0, 1, 2]), two_classes(None)
    (True, False, False)
    """
    try:
        return class_names is not None and len(class_names) == 2 and all(
            np.ndim(c) == 0 for c in class_names)
    except TypeError:  # no length: names no classes
        return False


def _object_rows(array: np.ndarray) -> np.ndarray:
    """A 1-D array of row sequences as a 2-D object matrix, or as a (n, 1) column of the
    rows themselves when they differ in length (each then counted as unsupported)."""
    try:
        matrix = np.array(array.tolist(), dtype=object)
    except ValueError:  # ragged rows
        matrix = None
    if matrix is None or matrix.ndim != 2 or matrix.shape[0] != array.shape[0]:
        return array.reshape(-1, 1)
    return matrix


def row_sums(matrix: np.ndarray) -> np.ndarray:
    """Each row's sum, added column by column as numpy adds a row of fewer than 8 values
    (the same floats), without its loop per row; wider rows take numpy's own sum. A new
    array, the caller's to change."""
    width = matrix.shape[1]
    if width >= 8:
        return matrix.sum(axis=1)
    if width == 1:
        return matrix[:, 0].copy()
    total = matrix[:, 0] + matrix[:, 1]
    for j in range(2, width):
        total += matrix[:, j]
    return total


def count_bad_sums(sums: np.ndarray) -> int:
    """How many of the row sums `sums` (a new array, changed in place) lie further than
    the tolerance from 1: the rows counted as ``probability_sum``.

    >>> count_bad_sums(np.array([1.0, 0.9995, 1.2, np.nan, 0.5]))
    2
    """
    # In place: a drain's sums of a hundred thousand rows would otherwise cost two new
    # arrays, each a fresh mapping of memory the first write faults in page by page.
    np.subtract(sums, 1.0, out=sums)
    np.abs(sums, out=sums)
    return int(np.count_nonzero(sums > PROBABILITY_SUM_TOLERANCE))


def class_codes(names: tuple[str, ...], top: np.ndarray) -> np.ndarray:
    """Each row's class, from its top column `top`: the class's integer (the column's name
    is one, as scikit-learn's 0 and 1 are), else its name as a Python string.

    >>> class_codes(("0", "1"), np.array([1, 0], dtype=np.int8)).tolist()
    [1, 0]
    >>> class_codes(("no", "yes"), np.array([1, 0])).tolist()
    ['yes', 'no']
    """
    start = _consecutive_from(names)
    if start is not None:
        # Names 0, 1, ... (or any run of consecutive integers) in column order: the column
        # plus the first name, where gathering from the names costs four times as much.
        codes = top.astype(np.int64)
        if start:
            codes += start
        return codes
    codes = integer_labels(names)
    return codes[top] if codes is not None else np.asarray(names, dtype=object)[top]


@functools.lru_cache(maxsize=256)
def _consecutive_from(names: tuple[str, ...]) -> int | None:
    """The first of `names` when they are consecutive integers in ascending order (as
    :func:`integer_labels` reads them), else None."""
    codes = integer_labels(names)
    if codes is None or not codes.size or \
            not np.array_equal(codes, np.arange(codes[0], codes[0] + codes.size)):
        return None
    return int(codes[0])


@functools.lru_cache(maxsize=256)
def integer_labels(names: tuple[str, ...]) -> np.ndarray | None:
    """`names` as an int64 array when each is exactly how Python writes an integer (so the
    label text comes back unchanged), else None. Never to be written to: it is shared.

    >>> integer_labels(("0", "1", "-3")).tolist(), integer_labels(("1", "01"))
    ([0, 1, -3], None)
    """
    try:
        values = [int(name) for name in names]
    except ValueError:
        return None
    if any(str(value) != name or not -SMALL_INTEGER_LIMIT < value < SMALL_INTEGER_LIMIT
           for value, name in zip(values, names)):
        return None
    codes = np.array(values, dtype=np.int64)
    codes.flags.writeable = False
    return codes


# Column names per (width, classes): a drain reads a matrix of a model's classes each time,
# and naming 20,000 classes costs about 0.1 s. A few models' worth are kept.
_NAMED_COLUMNS: dict[tuple, list[str]] = {}
_NAMED_COLUMNS_MAX = 64


def column_names(width: int, class_names: Sequence[object] | None) -> list[str]:
    """The names of a matrix's columns. Never to be written to: it is shared."""
    key = classes_key(class_names)
    if key is None:
        return _names_of_columns(width, class_names)
    found = _NAMED_COLUMNS.get((width, key))
    if found is None:
        found = _names_of_columns(width, class_names)
        if len(_NAMED_COLUMNS) >= _NAMED_COLUMNS_MAX:
            _NAMED_COLUMNS.clear()
        _NAMED_COLUMNS[(width, key)] = found
    return found


def _names_of_columns(width: int, class_names: Sequence[object] | None) -> list[str]:
    if class_names is not None and len(class_names) == width and all(
            np.ndim(c) == 0 for c in class_names):
        # Repeated names (classes 1 and "1") would mix two columns in one series.
        return distinct_names([class_name(c.item() if isinstance(c, np.generic) else c)
                               for c in class_names])
    return [str(j) for j in range(width)]
