"""Each call's rows of a prediction made of many calls' rows: the (classes, values) an
outcome joins a call by. Apart from ``prediction_batch`` because the outcome join reads
them per call, and the batch records them whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inferwatch.core.dropped_rows import rows_with_missing_classes, values_with_dropped_rows
from inferwatch.core.prediction_classes import class_labels
from inferwatch.core.predictions import Prediction
from inferwatch.core.result_arrays import plain_result


def split_rows(prediction: Prediction, sizes: Sequence[int], result: object = None
               ) -> list[tuple[tuple | None, tuple | None] | None]:
    """Per-call (classes, values) of a prediction made of several calls' rows. Values of
    several outputs (a multi-output regressor) are a tuple per row, of every output's value
    in the order the outputs were returned. `result`: what the prediction was read from
    (one call's result, or the calls' results joined into one), which tells the rows whose
    missing or non-finite values were dropped (each then None or NaN in its place).

    >>> prediction = Prediction(rows=3, values={"a": np.array([1.0, 2.0, 3.0]),
    ...                                         "b": np.array([10.0, 20.0, 30.0])})
    >>> split_rows(prediction, [1, 2])
    [(None, ((1.0, 10.0),)), (None, ((2.0, 20.0), (3.0, 30.0)))]
    """
    if result is not None:
        result = plain_result(result)  # a sparse row, a masked array: as the drain read it
        labels = rows_with_missing_classes(prediction, result)
        if labels is not None:
            if len(sizes) == 1:
                return [(labels, None)]
            ends = np.cumsum(sizes).tolist()
            return [(labels[end - size:end], None) for size, end in zip(sizes, ends)]
        filled = None if prediction.classes is not None else \
            values_with_dropped_rows(prediction, result)
        if filled is not None:
            prediction = Prediction(rows=prediction.rows, values=filled)
    classes = prediction.classes
    if classes is None and len(prediction.values) > 1:
        return split_output_rows(list(prediction.values.values()), sizes)
    values = None if classes is not None else next(iter(prediction.values.values()), None)
    column = classes if classes is not None else values
    if column is None or len(column) != sum(sizes) or prediction.class_outputs > 1:
        # Rows were dropped as invalid, or several outputs' labels share the column (so
        # many dropped that as many as the rows are left, by chance): no safe per-call
        # split. The record's own result is joined instead.
        return [None] * len(sizes)
    # One conversion of the whole column, then slices of a list: a record's rows cost a
    # tuple each, not a numpy slice and a conversion each.
    cells = class_labels(column) if classes is not None else column.tolist()
    if len(cells) == len(sizes) and 0 not in sizes:  # one row per call, the usual request
        if classes is not None:
            return [((cell,), None) for cell in cells]
        return [(None, (cell,)) for cell in cells]
    rows, offset = [], 0
    for size in sizes:
        part = tuple(cells[offset:offset + size])
        rows.append((part, None) if classes is not None else (None, part))
        offset += size
    return rows


def split_output_rows(outputs: list[np.ndarray], sizes: Sequence[int]) -> list[
        tuple[None, tuple] | None]:
    """Per-call values of several outputs, each row a tuple of its outputs' values."""
    if any(len(output) != sum(sizes) for output in outputs):
        # A non-finite value was dropped from one output: which row lost it is not known.
        return [None] * len(sizes)
    cells = list(zip(*(output.tolist() for output in outputs)))
    rows, offset = [], 0
    for size in sizes:
        rows.append((None, tuple(cells[offset:offset + size])))
        offset += size
    return rows
