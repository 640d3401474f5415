"""Lining up a champion's and a challenger's results row by row, for the comparison.

How two results for the same calls are put side by side before they are compared: the
calls whose results stack into one array per side (:func:`batches`, a binary classifier's
positive-class probabilities as columns first: :func:`positive_columns`; or each call
alone: :func:`apart`), rows cut out of a result of any shape (:func:`row_count`,
:func:`take_rows`), named outputs narrowed to those both return in the champion's order
(:func:`aligned`), labels of one side in the other's words (:func:`in_terms_of`), rows of
several outputs or class columns as one tuple a row (:func:`output_rows`,
:func:`label_rows`), rows a side lost put back as None (:func:`in_place`), and both sides
cut to the outcome cache's bound (:func:`pair_fitted`).
These are pure functions of the two results; :class:`~inferwatch.core.shadow_compare.Comparison`
(its locking, its pending pairs, its cache and the series it folds) is apart from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from inferwatch.core.outcome_sizes import entry_bytes, fitted_entry
from inferwatch.core.predictions import Prediction
from inferwatch.core.records import records_as_columns
from inferwatch.core.result_arrays import is_dataframe


def in_place(found: tuple[list, list], keep: np.ndarray) -> tuple[list, list] | tuple[()]:
    """Both sides' rows (of the rows `keep` marks) back in the batch's positions, a row left
    out as None; () when they are not one per kept row.

    >>> in_place((["a", "b"], ["a", "c"]), np.array([True, False, True]))
    (['a', None, 'b'], ['a', None, 'c'])
    """
    kept = int(np.count_nonzero(keep))
    if len(found[0]) != kept or len(found[1]) != kept:
        return ()
    sides = []
    for rows in found:
        placed: list = [None] * len(keep)
        for index, row in zip(np.flatnonzero(keep).tolist(), rows):
            placed[index] = row
        sides.append(placed)
    return sides[0], sides[1]

def label_rows(ours: np.ndarray, theirs: np.ndarray, rows: int) -> tuple[list, list] | None:
    """Each row of both sides' class labels as a tuple of every output's label, for a
    multi-output classifier whose labels come prefixed by their output (``"0:spam"``), one
    output's column after another; None when a column lost labels (a label no class may
    be) and rows can no longer be told apart.

    >>> label_rows(np.array(["0:a", "0:b", "1:x", "1:y"]), np.array(["0:a", "0:a", "1:x",
    ...                                                                "1:x"]), 2)
    ([('a', 'x'), ('b', 'y')], [('a', 'x'), ('a', 'x')])
    """
    if not rows or len(ours) % rows or len(theirs) != len(ours):
        return None
    sides = []
    for labels in (ours, theirs):
        columns = []
        for j, column in enumerate(np.asarray(labels, dtype=object).reshape(-1, rows).tolist()):
            prefix = f"{j}:"
            if not all(label.startswith(prefix) for label in column):
                return None
            columns.append([label[len(prefix):] for label in column])
        sides.append(list(zip(*columns)))
    return sides[0], sides[1]


def output_rows(champion: Prediction, shadow: Prediction) -> tuple[list, list] | None:
    """Each row of both sides as a tuple of every output's value, in the champion's order;
    None unless the shadow returns the same outputs, row for row (else no outcome row of
    targets can judge both)."""
    names = list(champion.values)
    theirs = [shadow.values.get(name) for name in names]
    if len(shadow.values) != len(names) or any(
            column is None or len(column) != len(champion.values[name])
            for name, column in zip(names, theirs)):
        return None
    ours = [np.asarray(champion.values[name], dtype=np.float64).tolist() for name in names]
    return (list(zip(*ours)),
            list(zip(*(np.asarray(column, dtype=np.float64).tolist() for column in theirs))))


def pair_fitted(request_id: str, champion: tuple, shadow: tuple,
                 max_bytes: int) -> tuple[tuple, tuple, int]:
    """Both sides' rows within `max_bytes`, by the outcome cache's estimate: a batch larger
    than the whole bound keeps its first rows (at least one), each side within half."""
    size = entry_bytes(request_id, champion, shadow)
    if size <= max_bytes:
        return champion, shadow, size
    kept = min(len(fitted_entry(request_id, side, None, max_bytes // 2)[0] or ())
               for side in (champion, shadow))
    champion, shadow = champion[:max(kept, 1)], shadow[:max(kept, 1)]
    return champion, shadow, entry_bytes(request_id, champion, shadow)


_BOOL_AS_INT = {"True": "1", "False": "0"}
_INT_AS_BOOL = {"1": "True", "0": "False"}


def in_terms_of(theirs: np.ndarray, ours: np.ndarray) -> np.ndarray:
    """The challenger's labels in the champion's words where one answers bools and the
    other 0/1: the same classes, as outcome scoring counts them (outcome_labels.same_class)."""
    ours_bool = bool(np.isin(ours, ("True", "False")).any())
    theirs_bool = bool(np.isin(theirs, ("True", "False")).any())
    if ours_bool == theirs_bool:
        return theirs
    mapping = _BOOL_AS_INT if theirs_bool else _INT_AS_BOOL
    out = theirs.astype(object)
    for old, new in mapping.items():
        out[theirs == old] = new
    return out.astype(str)


class Batch(NamedTuple):
    """Calls whose results stack into one array per side: compared in one pass."""

    method: str
    champion: object
    shadow: object
    rows: int | None
    calls: list  # ((request id, time), first row, end row) per call


def _named_outputs(result: object) -> dict[str, object] | None:
    """`result`'s outputs by name (a dict, a DataFrame, rows of dicts), or None when its
    outputs have no names."""
    records = records_as_columns(result)
    if records is not None:
        result = records
    if isinstance(result, Mapping):
        return {str(name): column for name, column in result.items()}
    if is_dataframe(result):
        return {str(name): result[name] for name in result.columns}
    return None


def aligned(method: str, champion: object, shadow: object) -> tuple[object, object, bool]:
    """Both sides' named outputs as the outputs both return, in the champion's order, and
    whether the champion lost one by it. Class labels of several outputs are compared by
    position, so a challenger returning its outputs in another order (or one more) must not
    pair one output's labels with another's. Anything else is left as it is."""
    if method == "predict_proba":
        return champion, shadow, False  # columns name classes, read by their names
    ours, theirs = _named_outputs(champion), _named_outputs(shadow)
    if ours is None or theirs is None:
        return champion, shadow, False
    common = [name for name in ours if name in theirs]
    if not common or (len(common) == len(ours) == len(theirs) and list(theirs) == common):
        return champion, shadow, False
    return ({name: ours[name] for name in common}, {name: theirs[name] for name in common},
            len(common) < len(ours))


def row_count(result: object) -> int | None:
    """How many rows `result` holds where its rows can be cut out of it: an array of rows
    (1-D or 2-D), a list of values or rows, rows of dicts, a dict of columns of one length,
    a pandas DataFrame or Series; None for anything else (a list of output arrays, a
    tensor, ragged rows, columns of different lengths).

    >>> row_count({"price": [1.0, 2.0], "eta": np.array([3.0, 4.0])}), row_count(np.ones(3))
    (2, 3)
    >>> row_count({"price": [1.0, 2.0], "eta": [3.0]}) is None
    True
    """
    if type(result) is dict:  # a Mapping of its own kind (a ModelOutput) is read its own way
        sizes = {_column_rows(column) for column in result.values()}
        return (sizes.pop() or None) if len(sizes) == 1 else None
    if isinstance(result, (list, tuple)) and result and \
            all(isinstance(row, Mapping) for row in result):
        return len(result)  # rows of dicts
    if isinstance(result, np.ndarray):
        return len(result) if result.ndim in (1, 2) and len(result) else None
    if _pandas(result):
        return len(result) or None  # type: ignore[arg-type]
    if isinstance(result, (list, tuple)) and result and \
            not any(getattr(part, "ndim", 0) >= 1 for part in result):
        try:
            array = np.asarray(result)
        except (ValueError, TypeError):  # ragged rows
            return None
        return len(array) if array.ndim in (1, 2) else None
    return None


def take_rows(result: object, index: np.ndarray) -> object:
    """The rows `index` names of a `result` that :func:`row_count` counts, in the same
    kind of result (a list stays a list, a DataFrame a DataFrame): normalize reads the part
    as it reads the whole.

    >>> take_rows({"price": [1.0, 2.0, 3.0]}, np.array([0, 2]))
    {'price': [1.0, 3.0]}
    """
    if type(result) is dict:
        return {name: _take(column, index) for name, column in result.items()}
    return _take(result, index)


def _pandas(obj: object) -> bool:
    """A pandas DataFrame or Series: its rows are taken by position (``iloc``)."""
    return hasattr(type(obj), "iloc")


def _column_rows(column: object) -> int | None:
    if isinstance(column, np.ndarray):
        return len(column) if column.ndim else None
    if isinstance(column, (list, tuple)) or _pandas(column):
        return len(column)  # type: ignore[arg-type]
    return None


def _take(rows: object, index: np.ndarray) -> object:
    if isinstance(rows, np.ndarray):
        return rows[index]
    if _pandas(rows):
        return rows.iloc[index]  # type: ignore[attr-defined]
    return [rows[i] for i in index.tolist()]  # type: ignore[index]


def _stackable(method: str, result: object) -> bool:
    """Whether `result`'s shape says it is rows: a 1-D predict_proba result may be one row
    [p0, p1] of a binary classifier, and two one-row calls stacked would read as that."""
    return isinstance(result, np.ndarray) and len(result) > 0 and \
        result.dtype.kind in "biufUSO" and \
        (result.ndim == 2 or (result.ndim == 1 and method != "predict_proba"))


def positive_columns(pairs: list, champion_binary: bool, shadow_binary: bool) -> list:
    """`pairs` with each side's ``predict_proba`` answered as a binary classifier's
    positive-class column alone (1-D, of a length other than 2) given as the (n, 1) column
    normalize reads it as: a column stacks with other calls' as rows, where two 1-D calls
    of one row each would stack into one row [p0, p1]. A length of 2 stays as it is: it may
    be one row [p0, p1] (normalize tells), and stacks with nothing."""

    def column(result: object, binary: bool) -> object:
        if binary and isinstance(result, np.ndarray) and result.ndim == 1 and \
                len(result) != 2 and result.dtype.kind == "f":
            return result.reshape(-1, 1)
        return result

    if not (champion_binary or shadow_binary):
        return pairs
    return [(pair[0], column(pair[1], champion_binary), column(pair[2], shadow_binary),
             *pair[3:]) if pair[0] == "predict_proba" else pair for pair in pairs]


def apart(batch: Batch) -> list[Batch]:
    """`batch`'s calls each as a batch of its own (a drain's calls that could not be
    compared together are then compared one by one)."""
    return [Batch(batch.method, batch.champion[start:stop],  # type: ignore[index]
                  batch.shadow[start:stop], None, [(key, 0, None)])  # type: ignore[index]
            for key, start, stop in batch.calls]


def batches(pairs: list) -> list[Batch]:
    """Consecutive calls of one method whose results are arrays of one shape per row go
    together (one normalize per side for all of them); anything else goes alone."""
    batches: list[Batch] = []
    group: list = []
    key = None

    def close() -> None:
        if not group:
            return
        if len(group) == 1:
            method, champion, shadow, request_id, at = group[0]
            # One call: its rows are what normalize finds (None checks nothing more).
            batches.append(Batch(method, champion, shadow, None, [((request_id, at), 0, None)]))
        else:
            calls, start = [], 0
            for _, champion, _, request_id, at in group:
                calls.append(((request_id, at), start, start + len(champion)))
                start += len(champion)
            batches.append(Batch(group[0][0], np.concatenate([g[1] for g in group]),
                                 np.concatenate([g[2] for g in group]), start, calls))
        group.clear()

    for pair in pairs:
        method, champion, shadow = pair[0], pair[1], pair[2]
        if _stackable(method, champion) and _stackable(method, shadow) and \
                len(champion) == len(shadow):
            this = (method, champion.shape[1:], champion.dtype.kind, shadow.shape[1:],
                    shadow.dtype.kind)
        else:
            this = None
        if this is None or this != key:
            close()
        key = this
        group.append(pair)
        if this is None:
            close()
    close()
    return batches
