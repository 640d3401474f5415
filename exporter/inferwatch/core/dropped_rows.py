"""A one-call prediction's rows put back in place where the drain dropped some.

The drain keeps only the finite values and the classes it can count; the outcome join needs
every row in its place, so that one row without a prediction (a NaN, None, ``pd.NA``) leaves
the other rows of its batch joinable. Apart from ``prediction_batch`` because it reads the
call's own result once more, by its library, only for the calls that dropped rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from inferwatch.core.column_arrays import is_column, numeric_column_array
from inferwatch.core.library_columns import is_pandas_frame
from inferwatch.core.pending_calls import output_columns, output_rows
from inferwatch.core.prediction_classes import as_text
from inferwatch.core.predictions import Prediction, normalize  # noqa: F401  (doctests)
from inferwatch.core.records import records_as_columns
from inferwatch.core.result_arrays import is_missing, missing_as_nan, to_array


def values_with_dropped_rows(prediction: Prediction, result: object
                       ) -> dict[str, np.ndarray] | None:
    """Each output's values of a one-call `prediction` of which non-finite values were
    dropped, with NaN back in their rows, read off its `result`: one row without a value
    must leave the others of its batch joinable (the joiner counts the row, unjudged).
    None when the rows are whole, or when `result` does not tell which were dropped.

    >>> prediction = Prediction(rows=3, values={"value": np.array([1.0, 3.0])})
    >>> values_with_dropped_rows(prediction, [1.0, float("inf"), 3.0])["value"].tolist()
    [1.0, nan, 3.0]
    >>> two = Prediction(rows=2, values={"0": np.array([1.0]), "1": np.array([5.0, 6.0])})
    >>> {name: v.tolist() for name, v in values_with_dropped_rows(
    ...     two, (np.array([np.nan, 1.0]), np.array([5.0, 6.0]))).items()}
    {'0': [nan, 1.0], '1': [5.0, 6.0]}
    """
    values = prediction.values
    rows = prediction.rows
    if not values or all(len(kept) == rows for kept in values.values()):
        return None
    try:
        if result.__class__ is not dict and output_rows(result) == rows and \
                len(parts := output_columns(result)) == len(values):
            # A tuple or list of 1-D arrays, a DataFrame: its outputs in order, as the
            # prediction named them (a frame may give a name twice).
            columns = {name: np.asarray(part, dtype=np.float64)
                       for name, part in zip(values, parts)}
        elif isinstance(result, Mapping):  # named outputs: the value outputs among them
            columns = {str(name): np.asarray(column, dtype=np.float64)
                       for name, column in result.items() if str(name) in values}
        elif (positional := _value_parts(result, values)) is not None:
            columns = positional  # value outputs beside label outputs, by position or name
        else:
            # A pandas Float64 column reads its missing rows as NaN here on every pandas
            # version (pandas 2 refused to make floats of pd.NA: the batch joined nothing).
            held = numeric_column_array(result) if is_column(result.__class__) else None
            array = np.asarray(result if held is None else held, dtype=np.float64)
            if array.ndim == 2 and array.shape[1] == 1 and len(values) == 1:
                array = array[:, 0]
            if array.ndim == 1 and len(values) == 1:
                columns = {next(iter(values)): array}
            elif array.ndim == 2 and list(values) == list(map(str, range(array.shape[1]))):
                columns = {name: array[:, j] for j, name in enumerate(values)}
            else:
                return None
    except (TypeError, ValueError):  # labels, NA of an extension array: not told here
        return None
    filled = {}
    for name, kept in values.items():
        column = columns.get(name)
        if column is None or column.shape != (rows,):
            return None
        finite = np.isfinite(column)
        if int(finite.sum()) != len(kept):  # dropped for another reason than here seen
            return None
        whole = np.full(rows, np.nan)
        whole[finite] = kept
        filled[name] = whole
    return filled


def _value_parts(result: object, values: Mapping[str, np.ndarray]
                 ) -> dict[str, np.ndarray] | None:
    """The value outputs of a tuple or list of 1-D arrays (named by position, ``"0"``,
    ``"1"``, ...), of rows of dicts or of a DataFrame of distinct column names, as float
    arrays, where other outputs beside them hold labels; None for any other result.

    >>> parts = _value_parts((np.array(["a", "b"]), np.array([0.5, np.nan])),
    ...                      {"1": np.array([0.5])})
    >>> parts["1"].tolist()
    [0.5, nan]
    """
    if isinstance(result, (tuple, list)) and all(
            part.__class__ is np.ndarray and part.ndim == 1 for part in result):
        positions = {str(index): part for index, part in enumerate(result)}
        if not set(values) <= set(positions):
            return None
        return {name: np.asarray(positions[name], dtype=np.float64) for name in values}
    records = records_as_columns(result)  # rows of dicts: named by their keys
    if records is not None:
        named = {str(key): column for key, column in records.items()}
        if len(named) != len(records) or not set(values) <= set(named):
            return None
        return {name: np.asarray(named[name], dtype=np.float64) for name in values}
    if is_pandas_frame(result.__class__):
        names = [str(name) for name in result.columns]  # type: ignore[attr-defined]
        if len(set(names)) != len(names) or not set(values) <= set(names):
            return None
        return {name: np.asarray(result.iloc[:, names.index(name)],  # type: ignore[attr-defined]
                                 dtype=np.float64) for name in values}
    return None


def rows_with_missing_classes(prediction: Prediction, result: object
                          ) -> tuple[str | None, ...] | None:
    """Each row's class of a one-call classifier `prediction` of which rows without a
    class (None, NaN, pd.NA) were dropped, with None in their rows, told by its `result`:
    one row without a class must leave the others of its batch joinable (the joiner counts
    the row, unjudged). None when no row was missing, or when rows were dropped for
    another reason too (which class is whose is then not known).

    A probability matrix's row without numbers (NaN, an infinity, pd.NA) has no top class,
    and is None the same way.

    >>> prediction = normalize(np.array([1, None, 0], dtype=object))
    >>> rows_with_missing_classes(prediction, np.array([1, None, 0], dtype=object))
    ('1', None, '0')
    >>> proba = np.array([[0.9, 0.1], [np.nan, np.nan], [0.2, 0.8]])
    >>> rows_with_missing_classes(normalize(proba, probabilities=True), proba)
    ('0', None, '1')
    """
    if prediction.probability_outputs:
        return _rows_with_missing_top_classes(prediction, result)
    missing_count = prediction.invalid.get("nan", 0)
    classes = prediction.classes
    if not missing_count or prediction.class_outputs > 1 or prediction.values or (
            classes is None and not prediction.class_like):
        return None
    rows = prediction.rows
    missing = _missing_rows(result, rows)
    kept = 0 if classes is None else len(classes)
    if missing is None or int(missing.sum()) != rows - kept:
        return None
    labels = np.full(rows, None, dtype=object)
    if kept:
        labels[~missing] = as_text(classes.reshape(-1))
    return tuple(labels.tolist())


def _rows_with_missing_top_classes(prediction: Prediction, result: object
                                   ) -> tuple[str | None, ...] | None:
    """Each row's top class of a one-output probability `prediction` whose rows without
    numbers were dropped, None in their rows; None when none was, or when `result` does
    not tell which (rows dropped for another reason, several outputs' matrices)."""
    dropped = prediction.invalid.get("nan", 0) + prediction.invalid.get("inf", 0)
    classes = prediction.classes
    if not dropped or prediction.class_outputs != 1:
        return None
    rows = prediction.rows
    kept = 0 if classes is None else len(classes)  # none: no row held probabilities
    unread = _rows_without_probabilities(result, rows)
    if unread is None or int(unread.sum()) != rows - kept:
        return None
    labels = np.full(rows, None, dtype=object)
    if kept:
        labels[~unread] = as_text(classes.reshape(-1))
    return tuple(labels.tolist())


def _rows_without_probabilities(result: object, rows: int) -> np.ndarray | None:
    """Which of the `rows` of a probability matrix `result` (or a binary classifier's
    positive-class column, or one row) hold a value that is no finite number, as
    ``class_probabilities`` drops them; None for any other shape. Never raises.

    >>> _rows_without_probabilities([[0.5, 0.5], [None, 1.0]], 2).tolist()
    [False, True]
    >>> _rows_without_probabilities([0.2, float("inf"), 0.7], 3).tolist()
    [False, True, False]
    """
    try:
        array = to_array(result)
        matrix = missing_as_nan(array) if array.dtype.kind == "O" else \
            array.astype(np.float64, copy=False)
        if matrix is None:
            return None
        finite = np.isfinite(matrix)
        if matrix.ndim == 2 and matrix.shape[0] == rows:
            return ~finite.all(axis=1)
        if matrix.ndim == 1 and matrix.shape[0] == rows:  # one probability per row
            return ~finite
        if matrix.ndim == 1 and rows == 1:  # one row of class probabilities
            return np.array([not finite.all()])
        return None
    except Exception:
        return None


def _missing_rows(result: object, rows: int) -> np.ndarray | None:
    """Which of the `rows` of a one-column `result` are missing (None, NaN, pd.NA, a
    polars or pyarrow null); None for any other shape. Never raises: an object that
    fails when read is no column told here.

    >>> _missing_rows([1, None, float("nan")], 3).tolist()
    [False, True, True]
    """
    try:
        # Asked of the class: a pandas object looks a missing attribute up among its
        # columns, some microseconds a call.
        kind = type(result)
        if callable(getattr(kind, "is_null", None)):  # polars Series, pyarrow arrays
            missing = np.asarray(result.is_null(), dtype=bool)
        elif callable(getattr(kind, "isna", None)):  # pandas objects
            if kind.__name__ == "Series" and kind.__module__.startswith("pandas"):
                result = result.array  # whose isna makes no Series
            missing = np.asarray(result.isna(), dtype=bool)
        else:
            array = to_array(result)
            if array.dtype.kind == "f":
                missing = np.isnan(array)
            elif array.dtype.kind == "O":
                cells = array.reshape(-1).tolist()
                missing = np.fromiter((cell is None or is_missing(cell) for cell in cells),
                                      dtype=bool, count=len(cells)).reshape(array.shape)
            else:  # ints, bools, text: no value in them is missing
                return None
        if missing.ndim == 2 and missing.shape[1] == 1:  # one column of a frame
            missing = missing[:, 0]
        return missing if missing.shape == (rows,) else None
    except Exception:
        return None
