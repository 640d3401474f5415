"""What a drain folds besides its calls' counts and latencies: the stages, actions and
predictions of request records, stream records, and the data-quality and drift checks of a
model with a reference profile. Each is a function of the state it writes, called by
:meth:`inferwatch.core.monitor.Monitor.drain` under the monitor's lock.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from inferwatch.core import pending_calls, record_joins
from inferwatch.core.class_probabilities import column_names
from inferwatch.core.huge_records import (
    fold_huge_label_columns,
    fold_huge_matrices,
    fold_huge_outputs,
    records_apart,
)
from inferwatch.core.pending_calls import (
    LaterSlices,
    first_slices,
    huge_rows_as_arrays,
    unsliced_rows,
)
from inferwatch.core.prediction_classes import whole_number_classes
from inferwatch.core.predictions import DEFAULT_OUTPUT
from inferwatch.core.record_arrays import as_plain_arrays
from inferwatch.core.record_joins import (
    JoinsInOrder,
    general_joins,
    joined_column,
    kept_array_rows,
    rows_as_tuples,
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
    score = tracker.reference.score_output
    if score is not None:
        # Labels are never binned against a profile of probabilities: a label 1 falls in
        # its top bin, a label 0 in its bottom one, and every drain read as drift.
        if score not in values:
            positive = _positive_probabilities(values, predictions)
            if positive is not None:
                values[score] = positive
    elif predictions.classes:
        output = _label_output(tracker, predictions)
        if output not in values:
            labels = _predicted_labels(tracker, predictions.classes, output)
            if labels is not None:
                values[output] = labels
    tracker.check_predictions(
        _by_reference_names(tracker, values, predictions),
        predictions.rows(), now)


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


def _by_reference_names(tracker: FeatureTracker, values: dict[str, np.ndarray],
                        predictions: PredictionBatch) -> dict[str, np.ndarray]:
    """`values` under the reference's output names. Probability columns are named by the
    model's ``classes_`` (``"0"``, ``"1"``); a reference profiled with ``prediction_names``
    (``["legit", "fraud"]``) names the same columns in the same order. When no name
    matches and the counts agree, the columns are matched by position, as they were
    profiled; prediction drift was silently never scored. So are they against the profile
    of an unnamed matrix, whose outputs are its column numbers: for classes 1, 2 and 3, the
    live column ``"1"`` is the first, the profile's ``"1"`` the second (and so for each
    matrix of a multi-output classifier's list of them)."""
    names = tracker.reference.output_names
    if not values:
        return values
    if len(predictions.probability_outputs) == len(names):
        columns = _live_columns(names, predictions.read_class_names())
        if columns is not None and columns != names and \
                all(column in values for column in columns):
            matched = {name: value for name, value in values.items()
                       if name not in predictions.probability_outputs}
            matched.update(zip(names, (values[column] for column in columns)))
            return matched
    if len(values) != len(names) or any(name in values for name in names):
        return values
    return dict(zip(names, values.values()))


def _live_columns(names: list[str], class_names: Sequence[object] | None
                  ) -> list[str] | None:
    """The live names of the probability columns a profile of an unnamed matrix names by
    number, in their order: ``"0"`` to ``"k-1"`` for one matrix (live, its classes), and
    ``"j:0"`` to ``"j:k-1"`` for output j of a multi-output classifier's list of them
    (live, ``"j:<class>"``); None for a profile named otherwise.

    >>> _live_columns(["0", "1", "2"], [1, 2, 3])
    ['1', '2', '3']
    >>> _live_columns(["0:0", "0:1", "1:0", "1:1"], [np.array([1, 2]), np.array(["a", "b"])])
    ['0:1', '0:2', '1:a', '1:b']
    >>> _live_columns(["legit", "fraud"], [0, 1]) is None
    True
    """
    if names == [str(i) for i in range(len(names))]:
        return column_names(len(names), class_names)
    widths: list[int] = []
    for name in names:
        output, _, column = name.partition(":")
        if output == str(len(widths) - 1) and column == str(widths[-1]):
            widths[-1] += 1
        elif output == str(len(widths)) and column == "0":
            widths.append(1)
        else:
            return None
    per_output = list(class_names) if class_names is not None and \
        len(class_names) == len(widths) and \
        all(np.ndim(classes) == 1 for classes in class_names) else [None] * len(widths)
    return [f"{j}:{name}" for j, width in enumerate(widths)
            for name in column_names(width, per_output[j])]


def _positive_probabilities(values: dict[str, np.ndarray], predictions: PredictionBatch
                            ) -> np.ndarray | None:
    """The second column of a binary classifier's probabilities (its ``classes_[1]``,
    what ``predict_proba(X)[:, 1]`` takes), from a drain whose only class probabilities
    are those two columns; else None."""
    if len(predictions.probability_outputs) != 2:
        return None
    positive = column_names(2, predictions.read_class_names())[1]
    if positive not in predictions.probability_outputs:
        return None
    return values.get(positive)


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
    the others by the one-array fold or the general path. Of more than
    ``SERIES_LOOKED_AT`` records, those whose call took ``LOOKED_AT_SECONDS`` or more and
    whose result may hold more rows than a slice or the join's tuples (``may_be_huge``)
    are folded apart, that many at a time, each part looked into for huge batches as a
    drain of few records is (as :func:`~inferwatch.core.pending_calls.first_slices` looks
    at the fast path's calls)."""
    if rest is not None and cut is not None and len(records) > pending_calls.SERIES_LOOKED_AT:
        # The request path folds apart what holds more rows than a slice, or than the
        # outcome join keeps as tuples (a table of labels past ARRAY_ROWS_FROM rows).
        rows = min(record_joins.ARRAY_ROWS_FROM, pending_calls.SLICE_ROWS)
        slow = [record for record in records
                if record.duration >= pending_calls.LOOKED_AT_SECONDS
                and pending_calls.may_be_huge(record.prediction, rows)]
        if slow:
            picked = set(map(id, slow))
            joins.fold_out_of_order()
            _fold_records(predictions, joins, task, read_class_names, probabilities,
                          [record for record in records if id(record) not in picked], rest,
                          cut)
            for start in range(0, len(slow), pending_calls.SERIES_LOOKED_AT):
                _fold_records(predictions, joins, task, read_class_names, probabilities,
                              slow[start:start + pending_calls.SERIES_LOOKED_AT], rest, cut)
            return
    if probabilities and rest is not None and cut is not None:
        records = fold_huge_matrices(predictions, joins, task, read_class_names, records,
                                     rest, cut)
    if not records:
        return
    if probabilities is False and rest is not None and cut is not None:
        records = fold_huge_outputs(predictions, joins, task, read_class_names, records,
                                    rest, cut)
        if not records:
            return
    results = [r.prediction for r in records]
    if rest is not None and cut is not None and probabilities is False:
        # As their arrays: folded in slices, and joined by their first rows' arrays.
        results = huge_rows_as_arrays(results, min(record_joins.ARRAY_ROWS_FROM,
                                                   pending_calls.SLICE_ROWS))
        records, results = fold_huge_label_columns(records, results, task, rest)
        if not records:
            return
    if probabilities is False and _fold_plain_arrays(
            predictions, joins, task, read_class_names, records, as_plain_arrays(results),
            rest, cut):
        return
    if rest is not None and len(records) <= pending_calls.SERIES_LOOKED_AT and any(
            unsliced_rows(result) > pending_calls.SLICE_ROWS for result in results):
        records, results = records_apart(records, results, probabilities, rest)
        if not records:
            return
    # One-row dicts of a label and scores (a classifier served as a function), or a
    # pipeline's list of one: read as one dict of columns, as the fast path reads them,
    # and joined by the rows the general path would make of each.
    rows = predictions.add_dict_records(results) if probabilities is False and \
        len(results) > 1 else None
    if rows is None:
        rows = predictions.add_records(results, probabilities)
    joins.extend(general_joins(joins, records, rows, probabilities, task, read_class_names))


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
    if not all(r.__class__ is _ndarray and (
            r.ndim == 1 or (r.ndim == 2 and r.shape[1] == 1)) and r.shape[0] for r in results):
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
    longest_tuple = record_joins.ARRAY_ROWS_FROM  # read now: a test sets another
    few = [result for _, result in named if result.shape[0] <= longest_tuple]
    if results[0].ndim == 2:  # every one an (n, 1) column (checked above): its one column
        few = [joined_column(result) for result in few]
    if len(few) == len(named):  # no long batch among them (a service's calls): at once
        joins.extend((record, _tuple_entry(record, rows, held, labels))
                     for (record, _), (rows, held) in zip(named, rows_as_tuples(few, labels)))
        return True
    few_rows = iter(rows_as_tuples(few, labels) if few else ())
    entries = []
    for record, result in named:
        if result.shape[0] > longest_tuple:
            entries.append((record, (record.request_id, *kept_array_rows(
                joins, record.request_id, joined_column(result), labels, rest),
                record.started_at, result.shape[0])))
            continue
        entries.append((record, _tuple_entry(record, *next(few_rows), labels)))
    joins.extend(entries)
    return True


def _tuple_entry(record: RequestRecord, rows: tuple, held: int, labels: bool) -> tuple:
    """The outcome entry of a short result's rows, made a tuple and sized in one pass with
    the drain's others (:func:`~inferwatch.core.record_joins.rows_as_tuples`)."""
    if labels:
        return (record.request_id, rows, None, record.started_at, len(rows), held)
    return (record.request_id, None, rows, record.started_at, len(rows), held)


def _answered_text(record: RequestRecord) -> bool:
    """Whether `record` is a request whose model answered with text (one ``str``, or a
    stream of items) and no prediction: a stream that failed answered nothing."""
    stream = record.stream
    return stream is not None and stream.error_type is None and record.error_type is None
