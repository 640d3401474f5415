"""Which of a drain's stacked float calls a model's whole-number classes read as labels.

A ``predict`` whose float output holds only the model's classes (scikit-learn fit on a
float target answers 0.0 / 1.0) is recorded as class labels, one returning anything else
as values (:func:`~inferwatch.core.predictions.normalize`), and that is judged call by
call. A drain stacks calls of one width into one matrix; judged once, one call's stray
value made every call of the drain values. This finds the calls that read otherwise than
the first, so that the drain reads them apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inferwatch.core.class_probabilities import looks_like_probabilities
from inferwatch.core.prediction_classes import class_members, whole_number_classes


def calls_read_alike(stacked: np.ndarray, sizes: Sequence[int], task: str,
                     class_names: Sequence[object] | None,
                     probabilities: bool | None) -> list[bool] | None:
    """For calls of `sizes` rows each, one after another in `stacked` (a 2-D float
    matrix), whether each reads its whole-number class columns as the first call does;
    None when every call reads them alike (or no column has such classes), so that one
    stacked read is right.

    A single column is labels when each value is a class or NaN, as
    ``_whole_class_labels`` reads it (task auto only); each column of a multi-output
    model's (one array of classes per column) when each value is one of that column's
    classes, as ``_whole_output_labels`` reads it (any task but regression), unless the
    rows are read as probabilities.

    >>> calls_read_alike(np.array([[1.0], [0.0]]), [1, 1], "auto", [0], False)
    [True, False]
    >>> calls_read_alike(np.array([[1.0], [0.0]]), [1, 1], "auto", [0, 1], False) is None
    True
    """
    if probabilities or task == "regression" or class_names is None or \
            stacked.ndim != 2 or stacked.dtype.kind != "f" or not stacked.shape[0]:
        return None
    width = stacked.shape[1]
    if width == 1:
        classes = whole_number_classes(class_names) if task == "auto" else None
        if classes is None:
            return None
        column = stacked[:, 0].astype(np.float64, copy=False)
        judged = [class_members(column, classes) | np.isnan(column)]
    else:
        per_output = _classes_per_column(class_names, width)
        if per_output is None or looks_like_probabilities(
                stacked, task, class_names, by_shape=probabilities is None):
            return None
        judged = [class_members(stacked[:, j].astype(np.float64, copy=False), classes)
                  for j, classes in per_output]
    counts = np.asarray(sizes, dtype=np.int64)
    ends = np.cumsum(counts)
    starts = ends - counts
    # Per column, the strays before each call's end less those before its start: none
    # means the call's column is labels. One row of such flags per call.
    labelled = np.empty((counts.size, len(judged)), dtype=bool)
    for j, fits in enumerate(judged):
        strays = np.concatenate(([0], np.cumsum(~fits)))
        labelled[:, j] = strays[ends] == strays[starts]
    alike = (labelled == labelled[0]).all(axis=1)
    return None if alike.all() else alike.tolist()


def _classes_per_column(class_names: Sequence[object],
                        width: int) -> list[tuple[int, np.ndarray]] | None:
    """(column, its whole-number classes) for a multi-output model's columns that have
    them (one array of classes per column, as ``_per_output`` reads them); None when none
    has."""
    if len(class_names) != width or not all(np.ndim(names) == 1 for names in class_names):
        return None
    found = [(j, classes) for j, names in enumerate(class_names)
             if (classes := whole_number_classes(names)) is not None]
    return found or None
