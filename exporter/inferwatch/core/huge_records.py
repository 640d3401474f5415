"""Request-path calls (``request_id=``, an event log, ``mon.request()``) of huge batches,
folded as the fast path folds them (their first slice in the drain's first hold of the lock,
the others each in a hold of its own; a column of labels, which takes a pass over every row
to tell, read and joined with the lock let go, then sliced alike), or read whole with the
lock let go, and joined by their first rows. Called by
:func:`inferwatch.core.drain_folds.fold_requests` before the general path, which would read
every row in one hold.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from inferwatch.core import pending_calls, record_joins
from inferwatch.core.array_rows import ArrayRows
from inferwatch.core.class_probabilities import top_classes
from inferwatch.core.column_arrays import is_column
from inferwatch.core.outcome_labels import kept_label
from inferwatch.core.outcome_sizes import row_bytes
from inferwatch.core.pending_calls import (
    LaterJoin,
    LaterLabelColumn,
    LaterRecord,
    LaterSlices,
    first_slices,
    output_columns,
    output_rows,
    output_slice,
    unsliced_rows,
)
from inferwatch.core.prediction_classes import whole_number_classes
from inferwatch.core.record_joins import (
    JoinsInOrder,
    join_row,
    kept_as_arrays,
    label_column_reader,
    may_hold_labels,
)

if TYPE_CHECKING:
    from inferwatch.core.outcomes import OutcomeJoiner
    from inferwatch.core.prediction_batch import PredictionBatch
    from inferwatch.core.request_record import RequestRecord

_ndarray = np.ndarray


def records_apart(records: list[RequestRecord], results: list, probabilities: bool | None,
                  rest: list) -> tuple[list[RequestRecord], list]:
    """The records and results left for this hold: each huge result that no slice reads as
    the whole reads it (:func:`~inferwatch.core.pending_calls.unsliced_rows`) goes to
    `rest`, read and joined with the lock let go."""
    kept, kept_results = [], []
    for record, result in zip(records, results):
        if unsliced_rows(result) > pending_calls.SLICE_ROWS:
            rest.append(LaterRecord(probabilities, record))
        else:
            kept.append(record)
            kept_results.append(result)
    return kept, kept_results


def fold_huge_label_columns(records: list[RequestRecord], results: list,
                            task: str, rest: list) -> tuple[list[RequestRecord], list]:
    """Leave for the drain to fold with the lock let go (:class:`LaterLabelColumn`, appended
    to `rest`) the records whose result is a column of more than :data:`ARRAY_ROWS_FROM`
    rows that may hold labels (and missing values) that the general path reads a Python
    call per row: an array of Python objects (scikit-learn's ``predict`` for a model fit on
    a pandas text column) or of bytes, a pandas categorical Series, a column of text,
    integer or bool labels that Arrow holds (:func:`join_label_column` reads it); and a
    numpy text array of more than one slice under a request id, whose join rows take a
    pass over each to size (:func:`_huge_text_array`). Returns
    the other records and their results. Only a drain of at most ``SERIES_LOOKED_AT``
    records is looked into for columns other than numpy's (a column's length is a Python
    call)."""
    columns = len(results) <= pending_calls.SERIES_LOOKED_AT
    if task == "regression":
        return records, results
    # Every drain but one with such a batch ends here: a look at the results' classes (in
    # C), then at each array's length, never a Python call per result.
    kinds = set(map(type, results))
    longer = min(record_joins.ARRAY_ROWS_FROM, pending_calls.SLICE_ROWS)
    if not (columns and any(map(is_column, kinds))) and not (
            _ndarray in kinds and any(
                result.__class__ is _ndarray and result.ndim == 1 and
                result.shape[0] > longer for result in results)):
        return records, results
    others, other_results = [], []
    for record, result in zip(records, results):
        read = label_column_reader(result) if may_hold_labels(result, columns) else \
            functools.partial(text_array_rows, result) if _huge_text_array(record, result) \
            else None
        if read is not None:
            rest.append(LaterLabelColumn(record, result, read))
        else:
            others.append(record)
            other_results.append(result)
    return others, other_results


def _huge_text_array(record: RequestRecord, result: object) -> bool:
    """A numpy text array of more than one slice of labels under a request id: folded as
    the fast path folds it either way, but the rows its outcome keeps (up to 580,000 of
    them) are sized a row at a time, 20 ms for the most, which waits for the lock let go."""
    return result.__class__ is _ndarray and result.ndim == 1 and \
        result.dtype.kind == "U" and result.shape[0] > pending_calls.SLICE_ROWS and \
        record.request_id is not None


def text_array_rows(result: np.ndarray, row_cap: Callable[[int], int]) -> ArrayRows:
    """The join rows of a 1-D numpy text array, as the request path's one-array fold keeps
    them (``record_joins.kept_array_rows``): a copy of as many of its first rows as the
    cache could keep of the shortest text there is."""
    return ArrayRows((result[:row_cap(row_bytes(""))],), labels=True)


def join_label_column(part: LaterLabelColumn, outcomes: OutcomeJoiner) -> bool:
    """Read `part`'s column as the general path joins it, at C speed per row, with the
    monitor's lock let go (the read touches nothing it guards): its first rows' labels
    (:func:`label_column_rows`) remembered for its request id's outcome, as if the call had
    finished last in its drain. Whether it is a column of text, integer or bool labels and
    missing values; the general path reads any other."""
    record = part.record
    request_id = record.request_id
    # Read for its kind alone (no row kept) when no outcome will join it.
    row_cap = (lambda least: 0) if request_id is None else \
        functools.partial(outcomes.row_cap, request_id=request_id)
    rows = part.read(row_cap)
    if rows is None:
        return False
    if request_id is not None:
        joins = JoinsInOrder(outcomes, [record])
        joins.add(record, (request_id, rows, None, record.started_at, len(part.result)))
        joins.remember()
    return True


def add_whole_first_slice(predictions: PredictionBatch, result: object,
                          later: list[LaterSlices]) -> None:
    """Count a huge column of labels as the fast path counts one: its first slice added to
    `predictions` with the whole batch size, the others appended to `later`."""
    cut: list[tuple[int, dict[int, int]]] = []
    add_first_slice(predictions, result, False, later, cut)
    for first, whole in cut:
        for index, whole_rows in whole.items():
            predictions.batch_sizes[first + index] = whole_rows


def add_first_slice(predictions: PredictionBatch, result: object, probabilities: bool,
                    rest: list[LaterSlices], cut: list[tuple[int, dict[int, int]]]) -> None:
    """Count a huge `result` as the fast path counts one: its first slice here, the others
    added to `rest` (folded after the lock is let go), its whole batch size to `cut`."""
    first = len(predictions.batch_sizes)
    added, whole = first_slices([result], probabilities, rest, {result.__class__})
    predictions.add_results(added, probabilities=probabilities, sizes_in_order=True)
    if whole and len(predictions.batch_sizes) == first + 1:
        cut.append((first, whole))


def fold_huge_matrices(predictions: PredictionBatch, joins: JoinsInOrder, task: str,
                       read_class_names: Callable[[], Sequence[object] | None],
                       records: list[RequestRecord], rest: list[LaterSlices],
                       cut: list[tuple[int, dict[int, int]]]) -> list[RequestRecord]:
    """Fold the records of `records` whose ``predict_proba`` returned a matrix of more than
    one slice of rows as the fast path folds one (its first slice here, the others added to
    `rest`, its batch size to `cut`), and join each by its first rows, as many as the
    outcome cache can keep: read as the general path reads a record, only never the rows
    past those; a classifier's numeric matrix by each row's top column, read with the lock
    let go (:class:`LaterJoin`, :func:`matrix_top_entry`). Returns the other records, for
    the general path."""
    if all(r.prediction.__class__ is not _ndarray or r.prediction.ndim != 2 or
           r.prediction.shape[0] <= pending_calls.SLICE_ROWS for r in records):
        return records  # every drain but one with a huge matrix: one look per record
    others = []
    for record in records:
        result = record.prediction
        if result.__class__ is not _ndarray or result.ndim != 2 or \
                result.shape[0] <= pending_calls.SLICE_ROWS:
            others.append(record)
            continue
        add_first_slice(predictions, result, True, rest, cut)
        if record.request_id is None:
            continue
        names = read_class_names()
        if task != "regression" and result.dtype.kind in "fiu" and result.shape[1] > 1:
            # Each kept row's top column (10 ms for the 580,000 rows a cache keeps) is read
            # with the lock let go; the class names are read here, as the fold reads them.
            rest.append(LaterJoin(record, functools.partial(matrix_top_entry, record, names)))
            continue
        cap = joins.row_cap(_shortest_label_bytes(names), record.request_id)
        kept = result[:cap]  # a regressor's rows, or a matrix of objects: read as a call's
        row = predictions.joinable_rows(kept, True)
        joins.add(record, (record.request_id, *join_row(kept, row, True, task,
                                                        read_class_names),
                           record.started_at, result.shape[0]))
    return others


def matrix_top_entry(record: RequestRecord, names: Sequence[object] | None,
                     outcomes: OutcomeJoiner) -> tuple:
    """The outcome entry of a huge ``predict_proba`` matrix's call: each of its first rows'
    top column, as many rows as the cache can keep of the shortest class name (or of None,
    past a row without a class), with the class names; made text when an outcome comes."""
    result = record.prediction
    request_id = record.request_id
    cap = outcomes.row_cap(_shortest_label_bytes(names), request_id)
    top = top_classes(result[:cap], names)
    if cap < result.shape[0] and bool((top[1] < 0).any()):
        # A row without a class holds None, smaller than any label: more may fit.
        top = top_classes(result[:outcomes.row_cap(request_id=request_id)], names)
    return (request_id, ArrayRows((top[1],), names=top[0], copy=False), None,
            record.started_at, result.shape[0])


def _shortest_label_bytes(names: Sequence[object] | None) -> int:
    """What the shortest label a matrix's row can be joined as holds (a column's index as
    its text, "0", when the model names no classes)."""
    labels = [kept_label(name) for name in names] if names is not None and \
        np.ndim(names) == 1 and len(names) else ["0"]
    return min(map(row_bytes, labels))


def fold_huge_table(predictions: PredictionBatch, joins: JoinsInOrder, task: str,
                    read_class_names: Callable[[], Sequence[object] | None],
                    record: RequestRecord, rest: list[LaterSlices],
                    cut: list[tuple[int, dict[int, int]]]) -> bool:
    """Fold `record` if its ``predict`` returned a table of more than
    :data:`ARRAY_ROWS_FROM` rows and several columns (scikit-learn's
    ``MultiOutputClassifier``'s labels, a multi-output regressor's values) as the fast path
    folds one (in slices past ``SLICE_ROWS``), and join it by its first rows, as many as
    the outcome cache can keep, as a copy of their columns (a tuple of labels or of floats
    a row once an outcome comes); whether it did. The general path made every row of the
    table a tuple of Python objects under the monitor's lock: 2.7 s for a million rows of
    two text labels."""
    result = record.prediction
    labels = _table_joined_as_labels(result, task, read_class_names)
    if labels is None:
        return False
    add_first_slice(predictions, result, False, rest, cut)
    if record.request_id is None:
        return True
    columns = tuple(result[:, column] for column in range(result.shape[1]))
    shortest = {"U": "", "b": "True"}.get(result.dtype.kind, "0") if labels else 0.0
    cap = joins.row_cap(row_bytes((shortest,) * len(columns)), record.request_id)
    rows = kept_as_arrays(tuple(column[:cap] for column in columns), labels, rest)
    joins.add(record, (record.request_id, rows if labels else None,
                       None if labels else rows, record.started_at, result.shape[0]))
    return True


def _table_joined_as_labels(result: object, task: str,
                            read_class_names: Callable[[], Sequence[object] | None]
                            ) -> bool | None:
    """Whether the general path joins `result`, a table of more than
    :data:`ARRAY_ROWS_FROM` rows and several columns, by a tuple of labels a row (integer,
    text or bool labels; integers are values under ``task="regression"``) or by a tuple of
    floats (True, False); None for a table it reads otherwise (objects, bytes; floats a
    classifier's task reads as probabilities), or for no such table.

    >>> table = np.zeros((record_joins.ARRAY_ROWS_FROM + 1, 2), dtype=np.int64)
    >>> _table_joined_as_labels(table, "auto", lambda: None)
    True
    >>> _table_joined_as_labels(table, "regression", lambda: None)
    False
    >>> _table_joined_as_labels(table.astype(float), "classification", lambda: None)
    """
    if result.__class__ is not _ndarray or result.ndim != 2 or result.shape[1] < 2 or \
            result.shape[0] <= record_joins.ARRAY_ROWS_FROM:
        return None
    kind = result.dtype.kind
    if kind in "Ub" or (kind in "iu" and task != "regression"):
        return True
    if kind in "iu" or (kind == "f" and (task == "regression" or (
            task == "auto" and read_class_names() is None))):
        return False
    return None


def fold_huge_outputs(predictions: PredictionBatch, joins: JoinsInOrder, task: str,
                      read_class_names: Callable[[], Sequence[object] | None],
                      records: list[RequestRecord], rest: list[LaterSlices],
                      cut: list[tuple[int, dict[int, int]]]) -> list[RequestRecord]:
    """Fold the records of `records` whose result holds several outputs of more than one
    slice of rows (:func:`~inferwatch.core.pending_calls.output_rows`: a dict, tuple or
    list of 1-D numeric arrays, a plain numeric DataFrame) as the fast path folds one, and
    join each by its first rows, as many as the outcome cache can keep; and each huge table
    (:func:`fold_huge_table`). Only a drain of at most ``SERIES_LOOKED_AT`` records is
    looked into, as on the fast path. Returns the other records, for the general path."""
    if len(records) > pending_calls.SERIES_LOOKED_AT:
        return records
    others = []
    for record in records:
        result = record.prediction
        if result.__class__ is _ndarray:
            if result.ndim != 2 or not fold_huge_table(predictions, joins, task,
                                                       read_class_names, record, rest, cut):
                others.append(record)
            continue
        rows = output_rows(result)
        if rows <= pending_calls.SLICE_ROWS:
            others.append(record)
            continue
        add_first_slice(predictions, result, False, rest, cut)
        if record.request_id is None:
            continue
        # The rows past this cap could not be kept, and are never made Python objects.
        columns = output_columns(result)
        least, exact = _least_row_bytes(columns, task, read_class_names)
        cap = joins.row_cap(least, record.request_id)
        if exact and cap < rows:
            # Outputs all floats, read as values: its first rows wait as a copy of their
            # arrays (a tuple of floats a row once an outcome comes), as many as fit.
            values = kept_as_arrays(tuple(column[:cap] for column in columns), False, rest)
            joins.add(record, (record.request_id, None, values, record.started_at, rows,
                               least * cap))
            continue
        # A row dropped anywhere (a NaN, an infinity) changes how the whole call joins:
        # such a result joins as the whole reads it.
        kept = output_slice(result, 0, cap) if cap < rows and _no_row_dropped(columns) \
            else result
        classes, values = join_row(kept, predictions.joinable_rows(kept, False), False,
                                   task, read_class_names)
        joined = classes if classes is not None else values
        if joined is not None and len(joined) == min(cap, rows):  # a row of each row
            # Rows of floats alone hold exactly `least` bytes each: not sized again.
            held = (least * len(values),) if exact and classes is None and \
                values is not None else ()
            joins.add(record, (record.request_id, classes, values, record.started_at, rows,
                               *held))
            continue
        if kept is not result:  # joined by output, or not at all: as the whole reads
            classes, values = join_row(result, predictions.joinable_rows(result, False),
                                       False, task, read_class_names)
        joins.add(record, (record.request_id, classes, values, record.started_at))
    return others


def _no_row_dropped(columns: list[np.ndarray]) -> bool:
    """Whether normalising a result of these 1-D output `columns` keeps every row: a
    row with a NaN or an infinity in any output is dropped, and the whole call then joins
    by what is left (``tests/test_huge_batches.py`` tells which rules move a join)."""
    return all(column.dtype.kind != "f" or bool(np.isfinite(column).all())
               for column in columns)


def _least_row_bytes(columns: list[np.ndarray], task: str,
                     read_class_names: Callable[[], Sequence[object] | None]
                     ) -> tuple[int, bool]:
    """What the outcome join holds at least for a row of a result of these output
    `columns` (:func:`~inferwatch.core.pending_calls.output_columns`). Outputs all of floats,
    read as values (as ``drain_folds._fold_plain_arrays`` tells), join as a tuple of floats a row;
    a result with a label output joins by its labels alone (``{"label", "score"}``), text
    a row; any other by one float at least. With whether the bytes are exact (a row of
    floats alone)."""
    outputs = len(columns)
    kinds = {column.dtype.kind for column in columns}
    if kinds == {"f"} and (task == "regression" or (
            task == "auto" and whole_number_classes(read_class_names()) is None)):
        return (row_bytes((0.0,) * outputs) if outputs > 1 else row_bytes(0.0)), True
    if task != "regression" and not kinds.isdisjoint("iub"):
        return row_bytes("0"), False  # joined by its labels: text of a character at least
    return row_bytes(0.0), False
