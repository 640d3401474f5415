"""The outcome entries of request-path calls (``request_id=``): the row each prediction is
joined by (the drain's own row of it, or its labels read off the result), a huge batch's first
rows kept as arrays until an outcome comes, and one drain's entries remembered in the order
of their calls, whichever fold read them. Called by :mod:`inferwatch.core.drain_folds` and
:mod:`inferwatch.core.huge_records`.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from inferwatch import faults
from inferwatch.core.array_rows import ArrayRows
from inferwatch.core.classifier_outputs import output_matrix_rows
from inferwatch.core.column_arrays import is_column
from inferwatch.core.library_columns import (
    SERIES_VALUES,
    is_pandas_frame,
    is_pandas_series,
    is_polars_series,
)
from inferwatch.core.object_labels import (
    arrow_holds_labels,
    arrow_label_rows,
    category_label_rows,
    text_label_rows,
)
from inferwatch.core.outcome_labels import joinable_labels, kept_label, record_labels
from inferwatch.core.outcome_sizes import row_bytes
from inferwatch.core.records import label_column
from inferwatch.core.result_arrays import categorical_codes
from inferwatch.frame_joins import same_columns

if TYPE_CHECKING:
    from inferwatch.core.outcomes import OutcomeJoiner
    from inferwatch.core.prediction_batch import PredictionBatch
    from inferwatch.core.request_record import RequestRecord

_ndarray = np.ndarray


def join_row(prediction: object, row: tuple[tuple | None, tuple | None] | None,
             probabilities: bool | None, task: str,
             read_class_names: Callable[[], Sequence[object] | None]
             ) -> tuple[tuple | None, tuple | None]:
    """(classes, values) an outcome joins `prediction` by: the drain's own `row` of it,
    or, where the drain kept no classes for it, the labels read off the result itself.
    Labels no class was declared for are refused by the drain as metric labels, and a
    pipeline's ``[{"label", "score"}]`` then leaves only its score, which an outcome's
    label would be judged against as a regressor's value. Never raises: a result that
    fails when read is counted as a fault, and the other records of its drain still join.
    """
    try:
        if probabilities and isinstance(prediction, (list, tuple)):
            # One matrix per output: the drain counts each output's class under its
            # output's number ("0:1"), and keeps no row of them for several outputs.
            classes = _top_classes_per_output(prediction, read_class_names)
            if classes is not None:
                return classes, None
        if row is not None:
            if row[0] is None and task != "regression":
                labels = record_labels(prediction)
                if labels is not None:
                    return labels, None
            return row
        return joinable_labels(prediction), None
    except Exception as exc:
        faults.record("prediction", exc)
        return row if row is not None else (None, None)


def _top_classes_per_output(result: list | tuple,
                            read_class_names: Callable[[], Sequence[object] | None]
                            ) -> tuple | None:
    """Each row's predicted class per output, from one probability matrix per output
    (scikit-learn's ``MultiOutputClassifier.predict_proba``), kept as ``predict``'s
    ``(n, k)`` labels are: a tuple of k labels per row (for one output, its label), each
    named by its output's classes (`read_class_names`, read only for such a list), or by
    its column number where they do not name its columns, as the drain names the class it
    counts. An output's row without probabilities (NaN, an infinity) has no class: None in
    that cell alone, which the joiner counts as ``unsupported_prediction`` while the row's
    other outputs, and the other rows, are judged. None for anything else.

    >>> proba = [np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[0.3, 0.7], [0.6, 0.4]])]
    >>> _top_classes_per_output(proba, lambda: [np.array(["no", "yes"]), None])
    (('no', '1'), ('yes', '0'))
    >>> _top_classes_per_output(proba[:1], lambda: None)
    ('0', '1')
    >>> proba[1][0, 0] = np.nan
    >>> _top_classes_per_output(proba, lambda: None)
    (('0', None), ('1', '0'))
    """
    if not result or not all(getattr(part, "ndim", 0) == 2 for part in result):
        return None
    matrices = [np.asarray(part) for part in result]
    rows = matrices[0].shape[0]
    if any(m.shape[0] != rows or m.shape[1] < 1 or m.dtype.kind != "f" for m in matrices):
        return None
    names = read_class_names()
    # A list, not an array: outputs of different class counts are ragged.
    if not isinstance(names, (list, tuple)) or len(names) != len(matrices):
        names = [None] * len(matrices)
    columns = []
    for matrix, classes in zip(matrices, names):
        width = matrix.shape[1]
        labels = list(map(kept_label, classes)) if classes is not None and \
            np.ndim(classes) == 1 and len(classes) == width else list(map(str, range(width)))
        # The first column wins a tie, as the drain's predicted class does.
        top = [labels[at] for at in matrix.argmax(axis=1).tolist()]
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            top = [label if whole else None for label, whole in zip(top, finite.tolist())]
        columns.append(top)
    return tuple(columns[0]) if len(columns) == 1 else tuple(zip(*columns))


def _joined_top_classes(records: list[RequestRecord],
                        read_class_names: Callable[[], Sequence[object] | None]
                        ) -> list[tuple] | None:
    """:func:`_top_classes_per_output` of each record's ``predict_proba`` answer, where
    every one is a list (or tuple) of float matrices of the same widths, one per output
    (a drain of ``MultiOutputClassifier.predict_proba`` calls: ``output_matrix_rows``),
    read off the matrices joined per output at once and split by the rows of each call:
    each row's classes are its own, so the same tuples. None for any other answers, which
    join_row reads one by one.

    >>> from inferwatch.core.request_record import RequestRecord
    >>> def record(*matrices):
    ...     made = RequestRecord(0.01, request_id="r-1")
    ...     made.prediction = list(matrices)
    ...     return made
    >>> one, two = np.array([[0.9, 0.1]]), np.array([[0.2, 0.8], [0.6, 0.4]])
    >>> _joined_top_classes([record(one, one), record(two, two)], lambda: None)
    [(('0', '0'),), (('1', '1'), ('0', '0'))]
    """
    if len(records) < 2:
        return None
    answers = [record.prediction for record in records]
    sizes = output_matrix_rows(answers)
    if sizes is None:
        return None
    try:
        joined = _top_classes_per_output(
            [np.concatenate([answer[j] for answer in answers]) for j in range(len(answers[0]))],
            read_class_names)
    except Exception:  # read one by one instead, each fault counted as join_row counts it
        return None
    if joined is None:
        return None
    ends = np.cumsum(sizes).tolist()
    return [joined[end - size:end] for size, end in zip(sizes, ends)]


class JoinsInOrder:
    """The outcome cache's entries for one drain's records of one kind, remembered in the
    order of their calls (the cache evicts the oldest first), though the folds that read
    them go by shape: a huge batch's runs before the general path's.

    >>> from inferwatch.core.outcomes import OutcomeJoiner
    >>> first, second = object(), object()
    >>> joins = JoinsInOrder(OutcomeJoiner(), [first, second])
    >>> joins.add(second, ("r-2", ("b",), None, 2.0))
    >>> joins.extend([(first, ("r-1", ("a",), None, 1.0))])
    >>> joins.remember(); list(joins.outcomes._pending)
    ['r-1', 'r-2']
    """

    __slots__ = ("_entries", "_out_of_order", "_records", "outcomes")

    def __init__(self, outcomes: OutcomeJoiner, records: Sequence[object]) -> None:
        self.outcomes = outcomes
        self._records = records
        self._entries: list[tuple[object, tuple]] = []
        self._out_of_order = False

    def row_cap(self, row_bytes: int | None = None, request_id: object = None) -> int:
        """:meth:`~inferwatch.core.outcomes.OutcomeJoiner.row_cap` (`row_bytes` None: the
        smallest object's)."""
        if row_bytes is None:
            return self.outcomes.row_cap(request_id=request_id)
        return self.outcomes.row_cap(row_bytes, request_id)

    def add(self, record: object, entry: tuple) -> None:
        """The entry of a record folded apart from the others (a huge batch)."""
        self._entries.append((record, entry))
        self._out_of_order = True

    def extend(self, pairs: Iterable[tuple[object, tuple]]) -> None:
        """(record, entry) pairs, in the records' order."""
        self._entries.extend(pairs)

    def fold_out_of_order(self) -> None:
        """The records are folded in parts, each extending the entries in its own order:
        :meth:`remember` puts them back in the records' order."""
        self._out_of_order = True

    def remember(self) -> None:
        """Remember every entry added, in the records' order, in one hold of the cache."""
        entries = self._entries
        if self._out_of_order and len(entries) > 1:
            position = {id(record): index for index, record in enumerate(self._records)}
            entries.sort(key=lambda pair: position[id(pair[0])])
        if entries:
            self.outcomes.remember_many([entry for _, entry in entries])
        entries.clear()


def general_joins(joins: JoinsInOrder, records: list[RequestRecord], rows: list,
                  probabilities: bool | None, task: str,
                  read_class_names: Callable[[], Sequence[object] | None]
                  ) -> Iterator[tuple[RequestRecord, tuple]]:
    """(record, entry) for each of `records` read by the general path that the outcome
    cache keeps, each
    joined by `rows`, its drain's own row of it (:func:`join_row`); a huge label output
    beside scores (``{"label": labels, "score": scores}``, a DataFrame with a ``label``
    column) by its first rows' labels read at C speed, where the general path reads them
    one Python call per row (:func:`label_output_rows`)."""
    unlabelled = _frames_without_label(records)
    tops = _joined_top_classes(records, read_class_names) if probabilities else None
    for at, (record, row) in enumerate(zip(records, rows)):
        request_id = record.request_id
        if request_id is None:
            continue
        if tops is not None:  # join_row's top classes per output, read for all at once
            yield record, (request_id, tops[at], None, record.started_at)
            continue
        if unlabelled and row is not None:
            # A frame without a "label" column: no label output to read (both readers
            # below look for that column, about 1 us a frame each), the drain's row it is.
            yield record, (request_id, *row, record.started_at)
            continue
        kept = None
        # Where join_row reads a result's label output (record_labels).
        if probabilities is False and (row is None or (row[0] is None and task != "regression")):
            kept = label_output_rows(record.prediction, functools.partial(
                joins.row_cap, request_id=request_id))
        if kept is not None:
            yield record, (request_id, kept[0], None, record.started_at, kept[1])
        else:
            yield record, (request_id, *join_row(record.prediction, row, probabilities,
                                                 task, read_class_names), record.started_at)


def _frames_without_label(records: list[RequestRecord]) -> bool:
    """Whether every record's result is a pandas DataFrame of the same column labels, none
    of them ``"label"``: one look for all, where the label readers look at each frame.

    >>> import pandas as pd
    >>> from inferwatch.core.request_record import RequestRecord
    >>> def record(frame):
    ...     made = RequestRecord(0.01, request_id="r-1")
    ...     made.prediction = frame
    ...     return made
    >>> _frames_without_label([record(pd.DataFrame({"a": [1.0]}))] * 2)
    True
    >>> _frames_without_label([record(pd.DataFrame({"label": ["x"]}))])
    False
    """
    if not records:
        return False
    first = records[0].prediction
    if not is_pandas_frame(first.__class__):
        return False
    predictions = [record.prediction for record in records]
    if len(set(map(type, predictions))) != 1:
        return False
    try:
        columns = first.columns
        return "label" not in columns and same_columns(predictions, columns)
    except Exception:  # an odd frame: each is looked at by the readers
        return False


def label_output_rows(result: object, row_cap: Callable[[int], int]
                      ) -> tuple[ArrayRows, int] | None:
    """(The first rows of its labels, the whole count) of a result whose ``"label"`` output
    of more than :data:`ARRAY_ROWS_FROM` rows sits beside others (a dict of columns, a
    DataFrame): integer, text or bool labels of a numpy array as their array, a column of
    text or missing values as :func:`label_column_rows` reads it; what
    :func:`~inferwatch.core.outcome_labels.record_labels` makes of them. None for anything else
    (read by the general path)."""
    if not (isinstance(result, Mapping) or is_pandas_frame(result.__class__)):
        return None
    try:
        if "label" not in result:  # type: ignore[operator]
            return None
        column = result["label"]  # type: ignore[index]
        # A look at the column first: a service's one-row {"label": ..., "score": ...} per
        # call ends here, before the records reader the general path runs anyway.
        rows = len(column) if column.__class__ is _ndarray or is_column(column.__class__) \
            else 0
        if (column.__class__ is _ndarray and column.ndim != 1) or rows <= ARRAY_ROWS_FROM \
                or label_column(result) is not None:
            return None
    except Exception:  # an odd container: the general path reads it
        return None
    if is_pandas_series(column.__class__) and SERIES_VALUES(column).__class__ is _ndarray \
            and getattr(column.dtype, "kind", "") in "iuUbO":
        column = column.to_numpy()
    if column.__class__ is _ndarray and column.dtype.kind in "iuUb":
        least = row_bytes({"U": "", "b": "True"}.get(column.dtype.kind, "0"))
        return join_rows((column[:row_cap(least)],), True, copy=True), rows
    kept = label_column_rows(column, row_cap)
    return None if kept is None else (kept, rows)


def remember_apart(outcomes: OutcomeJoiner, predictions: PredictionBatch, task: str,
                   probabilities: bool | None, record: RequestRecord,
                   row: tuple[tuple | None, tuple | None] | None) -> None:
    """Remember the outcome entry of a record read apart (:class:`LaterRecord`), joined by
    `row`, its read's own row of it, as the general path joins it."""
    joins = JoinsInOrder(outcomes, [record])
    joins.extend(general_joins(joins, [record], [row], probabilities, task,
                               functools.cache(predictions.read_class_names)))
    joins.remember()


# A result of more rows than this waits for its outcome as an array (ArrayRows); a shorter
# one as a tuple, which costs less to make than the array's copy and object.
ARRAY_ROWS_FROM = 4096


def rows_as_tuples(results: list[np.ndarray], labels: bool
                   ) -> list[tuple[tuple, int]]:
    """Each of `results`' rows as a tuple of Python objects, with what they hold in bytes,
    read off the array of them all in one conversion (as ArrayRows reads and sizes it)."""
    joined = np.concatenate(results) if len(results) > 1 else results[0]
    rows = join_rows((joined,), labels, copy=False)
    cells, sizes = rows.rows(), rows.row_sizes()
    if len(cells) == len(results):  # a row each (a service's calls): no slicing at all
        return list(zip(zip(cells), sizes.tolist()))
    # Each result's share of the sizes in one reduceat: a numpy sum per result cost more
    # than the rest of its join entry (every result has a row: its start is its own).
    lengths = [result.shape[0] for result in results]
    starts = np.cumsum(lengths) - lengths
    cell = iter(cells)
    return [(tuple(itertools.islice(cell, length)), held) for length, held in
            zip(lengths, np.add.reduceat(sizes, starts).tolist())]


def kept_array_rows(joins: JoinsInOrder, request_id: str, result: np.ndarray, labels: bool,
                    rest: list | None) -> tuple[ArrayRows | None, ArrayRows | None]:
    """(classes, values) the join keeps of a 1-D `result`: its first rows, as many as the
    cache could keep of the shortest row there is (see :func:`kept_as_arrays`)."""
    shortest = {"U": "", "b": "True"}.get(result.dtype.kind, "0") if labels else 0.0
    cap = joins.row_cap(row_bytes(shortest), request_id)
    rows = kept_as_arrays((result[:cap],), labels, rest)
    return (rows, None) if labels else (None, rows)


def joined_column(result: np.ndarray) -> np.ndarray:
    """A 1-D result, or the one column of an ``(n, 1)`` result (a Keras model's, a
    ``reshape(-1, 1)``): the rows a join keeps."""
    return result if result.ndim == 1 else result[:, 0]


# Bool labels are joined as their classes' text.
_BOOL_NAMES = ("False", "True")


def join_rows(columns: tuple[np.ndarray, ...], labels: bool, copy: bool) -> ArrayRows:
    """`columns` as the rows a join keeps (ArrayRows): bool labels as indices of their
    text, other labels as their text, values as floats."""
    if labels and len(columns) == 1 and columns[0].dtype.kind == "b":
        return ArrayRows((columns[0].view(np.int8),), names=_BOOL_NAMES, copy=copy)
    return ArrayRows(columns, labels, copy=copy)


def kept_as_arrays(columns: tuple[np.ndarray, ...], labels: bool, rest: list | None
                   ) -> ArrayRows:
    """`columns` as the rows a join keeps: copied now, or with `rest` (a drain that folds
    slices after this hold of the lock) viewed now and copied by the drain after the hold,
    which spares the hold a copy of megabytes into fresh memory (1.2 ms for 300,000 rows
    of two outputs, most of it page faults)."""
    rows = join_rows(columns, labels, copy=rest is None)
    if rest is not None:
        rest.append(rows)
    return rows


def may_hold_labels(result: object, columns: bool = True) -> bool:
    """A first look (in C for an array): a column :func:`label_column_rows` may read
    (with `columns` False, a numpy array only)."""
    if result.__class__ is _ndarray:
        return result.ndim == 1 and result.dtype.kind in "OS" and \
            result.shape[0] > ARRAY_ROWS_FROM
    return columns and is_column(result.__class__)


def label_column_rows(result: Any, row_cap: Callable[[int], int]) -> ArrayRows | None:
    """The join rows of a 1-D result of more than :data:`ARRAY_ROWS_FROM` rows of labels
    that the general path reads a Python call per row: an array of Python objects or of
    bytes (its items), a pandas categorical Series (its codes and categories), a column of
    text or integers with missing rows (a pandas, polars or pyarrow one, read by Arrow);
    None for any other."""
    read = label_column_reader(result)
    return None if read is None else read(row_cap)


def label_column_reader(result: Any
                        ) -> Callable[[Callable[[int], int]], ArrayRows | None] | None:
    """What reads `result`'s join rows as :func:`label_column_rows` does, given the
    ``row_cap``; None for a result that it tells by its class and type alone is no such
    column (no pass over its rows). The reader may still find the rows are no labels (an
    array of objects that holds a number): it returns None then. A drain calls it with
    the monitor's lock let go, since telling text apart reads every row."""
    if result.__class__ is _ndarray:
        if not may_hold_labels(result):
            return None
        return functools.partial(_text_array_rows, result)
    if not is_column(result.__class__) or len(result) <= ARRAY_ROWS_FROM:
        return None
    if is_polars_series(result.__class__):
        if not arrow_holds_labels(result.slice(0, 0).to_arrow().type):
            return None
        return functools.partial(arrow_label_rows, len(result), result.null_count(),
                                 lambda rows: result.slice(0, rows).to_arrow())
    if not is_pandas_series(result.__class__):  # a pyarrow Array or ChunkedArray
        if not arrow_holds_labels(result.type):
            return None
        return functools.partial(arrow_label_rows, len(result), result.null_count,
                                 lambda rows: result.slice(0, rows))
    categorical = categorical_codes(result)
    if categorical is not None:
        codes, categories = categorical
        return functools.partial(category_label_rows, codes, categories.tolist())
    if getattr(result.dtype, "storage", None) == "python":
        # pandas' text held as Python strings: read as they are. Made Arrow's, each would
        # be converted (and would keep its UTF-8 form, which its size then counts).
        return lambda row_cap: text_label_rows(result.to_numpy(dtype=object), row_cap)
    arrow = getattr(result.array, "__arrow_array__", None)
    # Text, integers and bools (pandas' nullable dtypes, ArrowDtype): the kinds whose
    # Arrow type arrow_label_rows reads.
    if arrow is None or getattr(result.dtype, "kind", "") not in "iubOSU":
        return None

    def read(row_cap: Callable[[int], int]) -> ArrayRows | None:
        column = arrow()
        return arrow_label_rows(len(column), column.null_count,
                                lambda rows: column.slice(0, rows), row_cap)

    return read


def _text_array_rows(result: np.ndarray, row_cap: Callable[[int], int]) -> ArrayRows | None:
    """:func:`~inferwatch.core.object_labels.text_label_rows` of an array of Python
    objects or of bytes."""
    return text_label_rows(result if result.dtype.kind == "O" else result.tolist(), row_cap)
