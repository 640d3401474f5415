"""What a drain folds besides its calls' counts and latencies: the stages, actions and
predictions of request records, stream records, and the data-quality and drift checks of a
model with a reference profile. Each is a function of the state it writes, called by
:meth:`inferwatch.core.monitor.Monitor.drain` under the monitor's lock.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from inferwatch import faults
from inferwatch.core import pending_calls
from inferwatch.core.array_rows import ArrayRows
from inferwatch.core.class_probabilities import top_classes
from inferwatch.core.column_arrays import is_column
from inferwatch.core.object_labels import (
    arrow_label_rows,
    category_label_rows,
    text_label_rows,
)
from inferwatch.core.outcome_labels import joinable_labels, kept_label, record_labels
from inferwatch.core.outcomes import row_bytes
from inferwatch.core.pending_calls import (
    LaterRecord,
    LaterSlices,
    first_slices,
    huge_rows_as_arrays,
    output_columns,
    output_rows,
    output_slice,
    unsliced_rows,
)
from inferwatch.core.prediction_classes import (
    whole_number_classes,
)
from inferwatch.core.predictions import DEFAULT_OUTPUT
from inferwatch.core.records import label_column
from inferwatch.core.result_arrays import categorical_codes
from inferwatch.core.stacked_results import (
    SERIES_VALUES,
    is_pandas_frame,
    is_pandas_series,
    is_polars_series,
)

_ndarray = np.ndarray

if TYPE_CHECKING:
    from inferwatch.core.label_caps import LabelCap
    from inferwatch.core.options import Settings
    from inferwatch.core.outcomes import OutcomeJoiner
    from inferwatch.core.prediction_batch import PredictionBatch
    from inferwatch.core.request_record import RequestRecord
    from inferwatch.core.state import ModelState
    from inferwatch.core.stream_records import StreamRecord
    from inferwatch.quality.checks import BatchResult
    from inferwatch.quality.tracker import FeatureTracker


def check_predictions(tracker: FeatureTracker, predictions: PredictionBatch,
                      now: float) -> None:
    """Bin a drain's predicted values into `tracker`'s prediction drift windows, under the
    reference's output names; predicted labels where the reference profiled labels."""
    values = {name: np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
              for name, chunks in predictions.values.items()}
    if predictions.classes:
        output = _label_output(tracker, predictions)
        if output not in values:
            labels = _predicted_labels(tracker, predictions.classes, output)
            if labels is not None:
                values[output] = labels
    tracker.check_predictions(_by_reference_names(tracker, values), predictions.rows(), now)


def count_input_checks(state: ModelState, feature_labels: Sequence[str],
                       result: BatchResult) -> None:
    """Count what a check of inputs found: missing, out-of-range and unseen values per
    feature (by its label), and inputs that could not be read, by reason."""
    for metric, counts in (("inferwatch_feature_missing_total", result.missing),
                           ("inferwatch_feature_out_of_range_total", result.out_of_range),
                           ("inferwatch_feature_unseen_category_total",
                            result.unseen_category)):
        for index in np.flatnonzero(counts).tolist():
            state.inc(metric, (feature_labels[index],), int(counts[index]))
    for reason, count in result.input_errors.items():
        if count:
            state.inc("inferwatch_input_errors_total", (reason,), count)


def _by_reference_names(tracker: FeatureTracker, values: dict[str, np.ndarray]
                        ) -> dict[str, np.ndarray]:
    """`values` under the reference's output names. Probability columns are named by the
    model's ``classes_`` (``"0"``, ``"1"``); a reference profiled with ``prediction_names``
    (``["legit", "fraud"]``) names the same columns in the same order. When no name
    matches and the counts agree, the columns are matched by position, as they were
    profiled; prediction drift was silently never scored."""
    names = tracker.reference.output_names
    if len(values) != len(names) or not values or any(name in values for name in names):
        return values
    return dict(zip(names, values.values()))


def _label_output(tracker: FeatureTracker, predictions: PredictionBatch) -> str:
    """The reference output a drain's predicted labels are compared with: the one label
    column of a dict or DataFrame result (``{"label", "score"}``), by its name, where the
    reference profiled an output of that name (from the same dicts); else ``value`` (a
    reference profiled from ``predict(X)``)."""
    if len(predictions.label_outputs) == 1:
        name = next(iter(predictions.label_outputs))
        if name in tracker.reference.outputs:
            return name
    return DEFAULT_OUTPUT


def _predicted_labels(tracker: FeatureTracker, classes: list[np.ndarray],
                      output: str = DEFAULT_OUTPUT) -> np.ndarray | None:
    """A classifier's predicted labels as the reference's `output` reads them: a numeric
    profile reads labels as numbers, a categorical one as text. None without such an
    output, or with labels of another kind."""
    profile = tracker.reference.outputs.get(output)
    if profile is None:
        return None
    labels = np.concatenate(classes) if len(classes) > 1 else classes[0]
    if not profile.is_numeric:
        return labels.astype(object)
    try:
        return labels.astype(np.float64)  # ints and bools; "0" / "1" of a predict_proba
    except (TypeError, ValueError):
        return None


def _join_row(prediction: object, row: tuple[tuple | None, tuple | None] | None,
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


def detect_generation(state: ModelState, streams: list[StreamRecord]) -> None:
    """A model of ``task="auto"`` whose first results are streams or text of its own is a
    generation model. Called once the drain's predictions have told their task: a model
    that predicts is what its predictions show, whichever came first in the drain, and the
    chunks of a web response's body (a classifier's scores sent as server-sent events)
    are no model's stream."""
    if state.info.get("task") == "auto" and any(r.from_model for r in streams):
        # A class label in a lone str is classified only when the model declares
        # task="classification" (or its classes=).
        state.info = {**state.info, "task": "generation"}


def fold_streams(state: ModelState, s: Settings, streams: list[StreamRecord]) -> None:
    """Fold stream records into `state`: time to first item, items, the time between items,
    text length and tokens."""
    first = [r.first_item for r in streams if r.first_item is not None]
    if first:
        state.histogram("inferwatch_stream_first_item_seconds", (),
                        s.latency_buckets).observe(np.asarray(first))
    items = [r.items for r in streams if r.items is not None]
    if items:
        state.histogram("inferwatch_stream_items", (), s.stream_item_buckets).observe(
            np.asarray(items, dtype=np.float64))
    # A stream of one item has no gaps (None): it still shows the series, at zero.
    itemised = [r for r in streams if r.items]
    if itemised:
        interval = state.histogram("inferwatch_stream_item_interval_seconds", (),
                                   s.stream_interval_buckets)
        # Streams share their bounds' tuple unless the buckets were reconfigured while
        # some were open: one sum per bounds, then folded into the series' own.
        by_bounds: dict[tuple[float, ...] | None, list[list[int]]] = {}
        for r in itemised:
            if r.gaps is not None:
                by_bounds.setdefault(r.gap_bounds, []).append(r.gaps)
        for bounds, gaps in by_bounds.items():
            interval.add_counts(np.sum(gaps, axis=0), 0.0, bounds)
        interval.sum += sum(r.gap_sum for r in itemised)
    chars = [r.chars for r in streams if r.chars is not None]
    if chars:
        state.histogram("inferwatch_output_characters", (), s.text_length_buckets).observe(
            np.asarray(chars, dtype=np.float64))
    input_tokens = [r.input_tokens for r in streams if r.input_tokens is not None]
    output = [(r.output_tokens, r.duration) for r in streams if r.output_tokens is not None]
    # A count of 0 read is a count: the series exists from the first reply that gave
    # one, or rate() over it reads "no data" instead of 0.
    if input_tokens:
        state.inc("inferwatch_tokens_total", ("input",), sum(input_tokens))
    if output:
        state.inc("inferwatch_tokens_total", ("output",), sum(n for n, _ in output))
        speeds = [n / seconds for n, seconds in output if seconds > 0]
        state.histogram("inferwatch_output_tokens_per_second", (),
                        s.tokens_per_second_buckets).observe(np.asarray(speeds))


def fold_requests(state: ModelState, settings: Settings, caps: dict[str, LabelCap],
                  outcomes: OutcomeJoiner, requests: list[RequestRecord],
                  predictions: PredictionBatch, rest: list[LaterSlices] | None = None,
                  cut: list[tuple[int, dict[int, int]]] | None = None) -> None:
    """Fold the stages, actions and predictions of request records, one vectorised pass each
    (their counts and latencies are the drain's own); predictions with a request id are
    remembered in `outcomes` for their ground truth, and so are text answers, with nothing
    to compare. With `rest` and `cut`, a huge 1-D array of labels or values is folded as
    the fast path folds one: its first slice here, the others appended to `rest` for the
    drain to fold with the lock let go between them, and (first batch size index, {index:
    whole rows}) appended to `cut` for the drain to correct the batch sizes with."""
    stage_times: dict[str, list[float]] = {}
    actions: dict[str, float] = {}
    by_kind: dict[bool | None, list[RequestRecord]] = {}
    texts: list[RequestRecord] = []
    for record in requests:
        for stage, seconds in record.stages:
            stage_times.setdefault(stage, []).append(seconds)
        if record.action is not None:
            actions[record.action] = actions.get(record.action, 0) + 1
        if record.has_prediction:
            by_kind.setdefault(record.probabilities, []).append(record)
        elif record.request_id is not None and _answered_text(record):
            texts.append(record)
    stage_cap = caps["inferwatch_stage_duration_seconds"]
    for stage, times in stage_times.items():
        state.histogram("inferwatch_stage_duration_seconds", (stage_cap.fold(stage),),
                        settings.latency_buckets).observe(np.asarray(times))
    for action, count in caps["inferwatch_actions_total"].fold_counts(actions).items():
        state.inc("inferwatch_actions_total", (action,), count)
    # Read once a drain, and only for a result that needs its classes.
    read_class_names = functools.cache(predictions.read_class_names)
    for probabilities, records in by_kind.items():
        joins = JoinsInOrder(outcomes, records)
        _fold_records(predictions, joins, settings.task, read_class_names, probabilities,
                      records, rest, cut)
        joins.remember()
    if texts:
        # Known, with no class or value to compare: its outcome is unsupported_prediction,
        # not an unknown id, and a repeat of it a duplicate.
        outcomes.remember_many((record.request_id, None, None, record.started_at)
                               for record in texts)


def _fold_records(predictions: PredictionBatch, joins: JoinsInOrder, task: str,
                  read_class_names: Callable[[], Sequence[object] | None],
                  probabilities: bool | None, records: list[RequestRecord],
                  rest: list[LaterSlices] | None, cut: list[tuple[int, dict[int, int]]] | None
                  ) -> None:
    """Fold the predictions of `records`, of one kind (`probabilities`), and add their
    outcome entries to `joins`: huge batches first, each by the fold for its shape, then
    the others by the one-array fold or the general path."""
    if probabilities and rest is not None and cut is not None:
        records = _fold_huge_matrices(predictions, joins, task, read_class_names, records,
                                      rest, cut)
    if not records:
        return
    if probabilities is False and rest is not None and cut is not None:
        records = _fold_huge_tables(predictions, joins, task, read_class_names, records,
                                    rest, cut)
        if records:
            records = _fold_huge_outputs(predictions, joins, task, read_class_names,
                                         records, rest, cut)
        if not records:
            return
    results = [r.prediction for r in records]
    if rest is not None and cut is not None and probabilities is False:
        # As their arrays: folded in slices, and joined by their first rows' arrays.
        results = huge_rows_as_arrays(results, min(ARRAY_ROWS_FROM, pending_calls.SLICE_ROWS))
        records, results = _fold_huge_label_columns(predictions, joins, task, records,
                                                   results, rest, cut)
        if not records:
            return
    if probabilities is False and _fold_plain_arrays(
            predictions, joins, task, read_class_names, records, results, rest, cut):
        return
    if rest is not None and len(records) <= pending_calls.SERIES_LOOKED_AT and any(
            unsliced_rows(result) > pending_calls.SLICE_ROWS for result in results):
        records, results = _apart(records, results, probabilities, rest)
        if not records:
            return
    rows = predictions.add_records(results, probabilities)
    joins.extend(_general_joins(joins, records, rows, probabilities, task, read_class_names))


def _apart(records: list[RequestRecord], results: list, probabilities: bool | None,
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


def remember_apart(outcomes: OutcomeJoiner, predictions: PredictionBatch, task: str,
                   probabilities: bool | None, record: RequestRecord,
                   row: tuple[tuple | None, tuple | None] | None) -> None:
    """Remember the outcome entry of a record read apart (:class:`LaterRecord`), joined by
    `row`, its read's own row of it, as the general path joins it."""
    joins = JoinsInOrder(outcomes, [record])
    joins.extend(_general_joins(joins, [record], [row], probabilities, task,
                                functools.cache(predictions.read_class_names)))
    joins.remember()


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

    def remember(self) -> None:
        """Remember every entry added, in the records' order, in one hold of the cache."""
        entries = self._entries
        if self._out_of_order and len(entries) > 1:
            position = {id(record): index for index, record in enumerate(self._records)}
            entries.sort(key=lambda pair: position[id(pair[0])])
        if entries:
            self.outcomes.remember_many([entry for _, entry in entries])
        entries.clear()


def _general_joins(joins: JoinsInOrder, records: list[RequestRecord], rows: list,
                   probabilities: bool | None, task: str,
                   read_class_names: Callable[[], Sequence[object] | None]
                   ) -> Iterator[tuple[RequestRecord, tuple]]:
    """(record, entry) for each of `records` read by the general path that the outcome
    cache keeps, each
    joined by `rows`, its drain's own row of it (:func:`_join_row`); a huge label output
    beside scores (``{"label": labels, "score": scores}``, a DataFrame with a ``label``
    column) by its first rows' labels read at C speed, where the general path reads them
    one Python call per row (:func:`_label_output_rows`)."""
    for record, row in zip(records, rows):
        request_id = record.request_id
        if request_id is None:
            continue
        kept = None
        # Where _join_row reads a result's label output (record_labels).
        if probabilities is False and (row is None or (row[0] is None and task != "regression")):
            kept = _label_output_rows(record.prediction, functools.partial(
                joins.row_cap, request_id=request_id))
        if kept is not None:
            yield record, (request_id, kept[0], None, record.started_at, kept[1])
        else:
            yield record, (request_id, *_join_row(record.prediction, row, probabilities,
                                                  task, read_class_names), record.started_at)


def _label_output_rows(result: object, row_cap: Callable[[int], int]
                       ) -> tuple[ArrayRows, int] | None:
    """(The first rows of its labels, the whole count) of a result whose ``"label"`` output
    of more than :data:`ARRAY_ROWS_FROM` rows sits beside others (a dict of columns, a
    DataFrame): integer, text or bool labels of a numpy array as their array, a column of
    text or missing values as :func:`_label_column_rows` reads it; what
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
        return _join_rows((column[:row_cap(least)],), True, copy=True), rows
    kept = _label_column_rows(column, row_cap)
    return None if kept is None else (kept, rows)


def _fold_plain_arrays(predictions: PredictionBatch, joins: JoinsInOrder, task: str,
                       read_class_names: Callable[[], Sequence[object] | None],
                       records: list[RequestRecord], results: list,
                       rest: list[LaterSlices] | None = None,
                       cut: list[tuple[int, dict[int, int]]] | None = None) -> bool:
    """Records whose ``predict`` returned a 1-D array with rows, of one kind that folds
    whole, folded as the fast path folds such calls (one concatenation): floats read as
    values (a regressor's answer), or integer or text labels of one kind (a classifier's).
    Each record's rows are remembered for its outcome: a short one's as a tuple, made in
    one conversion of them all; a long one's (past :data:`ARRAY_ROWS_FROM`) as a copy of its
    first rows' array (:class:`~inferwatch.core.array_rows.ArrayRows`), made objects only
    when an outcome judges them. False, folding nothing, for anything else, which the
    general path normalises record by record (at 30 times the cost per call).

    What :func:`~inferwatch.core.predictions.normalize` makes of each such array is these
    values or these labels and nothing else: float classes only under
    ``task="classification"`` or, task auto, for a model whose ``classes_`` are whole
    numbers; integers are values only under ``task="regression"``. A NaN or an infinity,
    or a label no class may be, is counted as the fast path counts it and joined in its
    row's place (NaN, or the label's text), as the general path joins it
    (``tests/test_outcomes_array_rows.py`` compares the two). A huge array is sliced as
    :func:`fold_requests` says, given `rest` and `cut`; its outcome join keeps the whole
    array's count either way.
    """
    if not all(r.__class__ is _ndarray and r.shape[0] and (
            r.ndim == 1 or (r.ndim == 2 and r.shape[1] == 1)) for r in results):
        return False
    if len({r.ndim for r in results}) != 1:
        return False  # rows and (n, 1) columns: each call read on its own
    kinds = {r.dtype.kind for r in results}
    if kinds == {"f"}:
        if task == "classification" or (
                task == "auto" and whole_number_classes(read_class_names()) is not None):
            return False
        labels = False
    elif len(kinds) == 1 and kinds <= {"i", "u", "U", "b"} and task != "regression":
        labels = True  # one kind: numpy joins int64 and uint64 as float64, ints and text
    else:
        return False
    added, whole = (results, {}) if rest is None or cut is None else \
        first_slices(results, False, rest, {_ndarray})
    first = len(predictions.batch_sizes)
    predictions.add_results(added, probabilities=False, sizes_in_order=bool(whole))
    if whole and len(predictions.batch_sizes) == first + len(added):
        cut.append((first, whole))  # type: ignore[union-attr]
    named = [(record, result) for record, result in zip(records, results)
             if record.request_id is not None]
    if not named:
        return True
    # A batch of many rows keeps its first rows as a copy of their array, made text or
    # floats only when an outcome judges them (array_rows); as many as fit when each is
    # the shortest row there is, which the cache cuts to what fits exactly. The others'
    # rows are made objects here, all in one conversion. Remembered in the calls' order.
    few = [_column(result) for _, result in named if result.shape[0] <= ARRAY_ROWS_FROM]
    few_rows = iter(_rows_as_tuples(few, labels) if few else ())
    entries = []
    for record, result in named:
        if result.shape[0] > ARRAY_ROWS_FROM:
            entries.append((record, (record.request_id, *_array_rows(
                joins, record.request_id, _column(result), labels, rest),
                record.started_at, result.shape[0])))
            continue
        rows, held = next(few_rows)
        entries.append((record, (record.request_id, rows, None, record.started_at, len(rows),
                                 held) if labels else
                        (record.request_id, None, rows, record.started_at, len(rows), held)))
    joins.extend(entries)
    return True


# A result of more rows than this waits for its outcome as an array (ArrayRows); a shorter
# one as a tuple, which costs less to make than the array's copy and object.
ARRAY_ROWS_FROM = 4096


def _rows_as_tuples(results: list[np.ndarray], labels: bool
                    ) -> list[tuple[tuple, int]]:
    """Each of `results`' rows as a tuple of Python objects, with what they hold in bytes,
    read off the array of them all in one conversion (as ArrayRows reads and sizes it)."""
    joined = np.concatenate(results) if len(results) > 1 else results[0]
    rows = _join_rows((joined,), labels, copy=False)
    cells, sizes = rows.rows(), rows.row_sizes()
    converted, offset = [], 0
    for result in results:
        end = offset + result.shape[0]
        converted.append((tuple(cells[offset:end]), int(sizes[offset:end].sum())))
        offset = end
    return converted


def _array_rows(joins: JoinsInOrder, request_id: str, result: np.ndarray, labels: bool,
                rest: list | None) -> tuple[ArrayRows | None, ArrayRows | None]:
    """(classes, values) the join keeps of a 1-D `result`: its first rows, as many as the
    cache could keep of the shortest row there is (see :func:`_kept_as_arrays`)."""
    shortest = {"U": "", "b": "True"}.get(result.dtype.kind, "0") if labels else 0.0
    cap = joins.row_cap(row_bytes(shortest), request_id)
    rows = _kept_as_arrays((result[:cap],), labels, rest)
    return (rows, None) if labels else (None, rows)


def _column(result: np.ndarray) -> np.ndarray:
    """A 1-D result, or the one column of an ``(n, 1)`` result (a Keras model's, a
    ``reshape(-1, 1)``): the rows a join keeps."""
    return result if result.ndim == 1 else result[:, 0]


# Bool labels are joined as their classes' text.
_BOOL_NAMES = ("False", "True")


def _join_rows(columns: tuple[np.ndarray, ...], labels: bool, copy: bool) -> ArrayRows:
    """`columns` as the rows a join keeps (ArrayRows): bool labels as indices of their
    text, other labels as their text, values as floats."""
    if labels and len(columns) == 1 and columns[0].dtype.kind == "b":
        return ArrayRows((columns[0].view(np.int8),), names=_BOOL_NAMES, copy=copy)
    return ArrayRows(columns, labels, copy=copy)


def _kept_as_arrays(columns: tuple[np.ndarray, ...], labels: bool, rest: list | None
                    ) -> ArrayRows:
    """`columns` as the rows a join keeps: copied now, or with `rest` (a drain that folds
    slices after this hold of the lock) viewed now and copied by the drain after the hold,
    which spares the hold a copy of megabytes into fresh memory (1.2 ms for 300,000 rows
    of two outputs, most of it page faults)."""
    rows = _join_rows(columns, labels, copy=rest is None)
    if rest is not None:
        rest.append(rows)
    return rows


def _fold_huge_label_columns(predictions: PredictionBatch, joins: JoinsInOrder,
                            task: str, records: list[RequestRecord], results: list,
                            rest: list[LaterSlices], cut: list[tuple[int, dict[int, int]]]
                            ) -> tuple[list[RequestRecord], list]:
    """Fold the records whose result is a column of more than :data:`ARRAY_ROWS_FROM`
    labels (and missing values) that the general path reads a Python call per row: an
    array of Python objects (scikit-learn's ``predict`` for a model fit on a pandas text
    column; a Series or list of text, as their arrays) or of bytes, a pandas categorical
    Series, a column of text, integer or bool labels that Arrow holds. Each is counted as
    the fast path counts it (its first slice here, the others added to `rest`, its batch
    size to `cut`), and joined by its first rows' labels as :func:`_label_column_rows`
    reads them: what the general path joins, at C speed per row. Returns the other records
    and their results. Only a drain of at most ``SERIES_LOOKED_AT`` records is looked into
    for columns other than numpy's (a column's length is a Python call)."""
    columns = len(results) <= pending_calls.SERIES_LOOKED_AT
    if task == "regression" or not any(_may_hold_labels(result, columns) for result in results):
        return records, results  # every drain but one with such a batch: one look each
    others, other_results = [], []
    for record, result in zip(records, results):
        request_id = record.request_id
        # Read for its kind alone (no row kept) when no outcome will join it.
        row_cap = (lambda least: 0) if request_id is None else \
            functools.partial(joins.row_cap, request_id=request_id)
        rows = _label_column_rows(result, row_cap) if _may_hold_labels(result, columns) \
            else None
        if rows is None:  # not text labels: read as the general path reads them
            others.append(record)
            other_results.append(result)
            continue
        _add_first_slice(predictions, result, False, rest, cut)
        if request_id is not None:
            joins.add(record, (request_id, rows, None, record.started_at, len(result)))
    return others, other_results


def _may_hold_labels(result: object, columns: bool = True) -> bool:
    """A first look (in C for an array): a column :func:`_label_column_rows` may read
    (with `columns` False, a numpy array only)."""
    if result.__class__ is _ndarray:
        return result.ndim == 1 and result.dtype.kind in "OS" and \
            result.shape[0] > ARRAY_ROWS_FROM
    return columns and is_column(result.__class__)


def _label_column_rows(result: Any, row_cap: Callable[[int], int]) -> ArrayRows | None:
    """The join rows of a 1-D result of more than :data:`ARRAY_ROWS_FROM` rows of labels
    that the general path reads a Python call per row: an array of Python objects or of
    bytes (its items), a pandas categorical Series (its codes and categories), a column of
    text or integers with missing rows (a pandas, polars or pyarrow one, read by Arrow);
    None for any other."""
    if result.__class__ is _ndarray:
        if not _may_hold_labels(result):
            return None
        return text_label_rows(result if result.dtype.kind == "O" else result.tolist(),
                               row_cap)
    if not is_column(result.__class__) or len(result) <= ARRAY_ROWS_FROM:
        return None
    if is_polars_series(result.__class__):
        return arrow_label_rows(len(result), result.null_count(),
                               lambda rows: result.slice(0, rows).to_arrow(), row_cap)
    if not is_pandas_series(result.__class__):  # a pyarrow Array or ChunkedArray
        return arrow_label_rows(len(result), result.null_count,
                               lambda rows: result.slice(0, rows), row_cap)
    categorical = categorical_codes(result)
    if categorical is not None:
        codes, categories = categorical
        return category_label_rows(codes, categories.tolist(), row_cap)
    if getattr(result.dtype, "storage", None) == "python":
        # pandas' text held as Python strings: read as they are. Made Arrow's, each would
        # be converted (and would keep its UTF-8 form, which its size then counts).
        return text_label_rows(result.to_numpy(dtype=object), row_cap)
    arrow = getattr(result.array, "__arrow_array__", None)
    if arrow is None:
        return None
    column = arrow()
    return arrow_label_rows(len(column), column.null_count,
                           lambda rows: column.slice(0, rows), row_cap)


def _add_first_slice(predictions: PredictionBatch, result: object, probabilities: bool,
                     rest: list[LaterSlices], cut: list[tuple[int, dict[int, int]]]) -> None:
    """Count a huge `result` as the fast path counts one: its first slice here, the others
    added to `rest` (folded after the lock is let go), its whole batch size to `cut`."""
    first = len(predictions.batch_sizes)
    added, whole = first_slices([result], probabilities, rest, {result.__class__})
    predictions.add_results(added, probabilities=probabilities, sizes_in_order=True)
    if whole and len(predictions.batch_sizes) == first + 1:
        cut.append((first, whole))


def _fold_huge_matrices(predictions: PredictionBatch, joins: JoinsInOrder, task: str,
                        read_class_names: Callable[[], Sequence[object] | None],
                        records: list[RequestRecord], rest: list[LaterSlices],
                        cut: list[tuple[int, dict[int, int]]]) -> list[RequestRecord]:
    """Fold the records of `records` whose ``predict_proba`` returned a matrix of more than
    one slice of rows as the fast path folds one (its first slice here, the others added to
    `rest`, its batch size to `cut`), and join each by its first rows, as many as the
    outcome cache can keep: read as the general path reads a record, only never the rows
    past those. Returns the other records, for the general path."""
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
        _add_first_slice(predictions, result, True, rest, cut)
        if record.request_id is None:
            continue
        names = read_class_names()
        labels = [kept_label(name) for name in names] if names is not None and \
            np.ndim(names) == 1 and len(names) else ["0"]
        cap = joins.row_cap(min(map(row_bytes, labels)), record.request_id)
        kept = result[:cap]
        top = top_classes(kept, names) if task != "regression" else None
        if top is not None and cap < result.shape[0] and bool((top[1] < 0).any()):
            # A row without a class holds None, smaller than any label: more may fit.
            kept = result[:joins.row_cap(request_id=record.request_id)]
            top = top_classes(kept, names)
        if top is not None:
            # Each kept row's class by its column: made text when an outcome comes.
            classes = ArrayRows((top[1],), names=top[0], copy=False)
            joins.add(record, (record.request_id, classes, None, record.started_at,
                               result.shape[0]))
            continue
        row = predictions.joinable_rows(kept, True)
        joins.add(record, (record.request_id, *_join_row(kept, row, True, task,
                                                         read_class_names),
                           record.started_at, result.shape[0]))
    return others


def _fold_huge_tables(predictions: PredictionBatch, joins: JoinsInOrder, task: str,
                      read_class_names: Callable[[], Sequence[object] | None],
                      records: list[RequestRecord], rest: list[LaterSlices],
                      cut: list[tuple[int, dict[int, int]]]) -> list[RequestRecord]:
    """Fold the records whose ``predict`` returned a table of more than
    :data:`ARRAY_ROWS_FROM` rows and several columns (scikit-learn's
    ``MultiOutputClassifier``'s labels, a multi-output regressor's values) as the fast path
    folds one (in slices past ``SLICE_ROWS``), and join each by its first rows, as many as
    the outcome cache can keep, as a copy of their columns (a tuple of labels or of floats
    a row once an outcome comes). The general path made every row of the table a tuple of
    Python objects under the monitor's lock: 2.7 s for a million rows of two text labels.
    Returns the other records, for the general path."""
    if all(r.prediction.__class__ is not _ndarray or r.prediction.ndim != 2
           or r.prediction.shape[0] <= ARRAY_ROWS_FROM for r in records):
        return records  # every drain but one with a huge table: one look per record
    others = []
    for record in records:
        result = record.prediction
        labels = _table_joined_as_labels(result, task, read_class_names)
        if labels is None:
            others.append(record)
            continue
        _add_first_slice(predictions, result, False, rest, cut)
        if record.request_id is None:
            continue
        columns = tuple(result[:, column] for column in range(result.shape[1]))
        shortest = {"U": "", "b": "True"}.get(result.dtype.kind, "0") if labels else 0.0
        cap = joins.row_cap(row_bytes((shortest,) * len(columns)), record.request_id)
        rows = _kept_as_arrays(tuple(column[:cap] for column in columns), labels, rest)
        joins.add(record, (record.request_id, rows if labels else None,
                           None if labels else rows, record.started_at, result.shape[0]))
    return others


def _table_joined_as_labels(result: object, task: str,
                            read_class_names: Callable[[], Sequence[object] | None]
                            ) -> bool | None:
    """Whether the general path joins `result`, a table of more than
    :data:`ARRAY_ROWS_FROM` rows and several columns, by a tuple of labels a row (integer,
    text or bool labels; integers are values under ``task="regression"``) or by a tuple of
    floats (True, False); None for a table it reads otherwise (objects, bytes; floats a
    classifier's task reads as probabilities), or for no such table.

    >>> table = np.zeros((ARRAY_ROWS_FROM + 1, 2), dtype=np.int64)
    >>> _table_joined_as_labels(table, "auto", lambda: None)
    True
    >>> _table_joined_as_labels(table, "regression", lambda: None)
    False
    >>> _table_joined_as_labels(table.astype(float), "classification", lambda: None)
    """
    if result.__class__ is not _ndarray or result.ndim != 2 or result.shape[1] < 2 or \
            result.shape[0] <= ARRAY_ROWS_FROM:
        return None
    kind = result.dtype.kind
    if kind in "Ub" or (kind in "iu" and task != "regression"):
        return True
    if kind in "iu" or (kind == "f" and (task == "regression" or (
            task == "auto" and read_class_names() is None))):
        return False
    return None


def _fold_huge_outputs(predictions: PredictionBatch, joins: JoinsInOrder, task: str,
                       read_class_names: Callable[[], Sequence[object] | None],
                       records: list[RequestRecord], rest: list[LaterSlices],
                       cut: list[tuple[int, dict[int, int]]]) -> list[RequestRecord]:
    """Fold the records of `records` whose result holds several outputs of more than one
    slice of rows (:func:`~inferwatch.core.pending_calls.output_rows`: a dict, tuple or
    list of 1-D numeric arrays, a plain numeric DataFrame) as the fast path folds one, and
    join each by its first rows, as many as the outcome cache can keep. Only a drain of at
    most ``SERIES_LOOKED_AT`` records is looked into, as on the fast path. Returns the other
    records, for the general path."""
    if len(records) > pending_calls.SERIES_LOOKED_AT:
        return records
    others = []
    for record in records:
        result = record.prediction
        rows = output_rows(result)
        if rows <= pending_calls.SLICE_ROWS:
            others.append(record)
            continue
        _add_first_slice(predictions, result, False, rest, cut)
        if record.request_id is None:
            continue
        # The rows past this cap could not be kept, and are never made Python objects.
        columns = output_columns(result)
        least, exact = _least_row_bytes(columns, task, read_class_names)
        cap = joins.row_cap(least, record.request_id)
        if exact and cap < rows:
            # Outputs all floats, read as values: its first rows wait as a copy of their
            # arrays (a tuple of floats a row once an outcome comes), as many as fit.
            values = _kept_as_arrays(tuple(column[:cap] for column in columns), False, rest)
            joins.add(record, (record.request_id, None, values, record.started_at, rows,
                               least * cap))
            continue
        # A row dropped anywhere (a NaN, an infinity) changes how the whole call joins:
        # such a result joins as the whole reads it.
        kept = output_slice(result, 0, cap) if cap < rows and _no_row_dropped(columns) \
            else result
        classes, values = _join_row(kept, predictions.joinable_rows(kept, False), False,
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
            classes, values = _join_row(result, predictions.joinable_rows(result, False),
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
    read as values (as :func:`_fold_plain_arrays` tells), join as a tuple of floats a row;
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


def _answered_text(record: RequestRecord) -> bool:
    """Whether `record` is a request whose model answered with text (one ``str``, or a
    stream of items) and no prediction: a stream that failed answered nothing."""
    stream = record.stream
    return stream is not None and stream.error_type is None and record.error_type is None
