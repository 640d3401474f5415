"""A drain's fold of class-probability rows: a classifier's ``predict_proba`` called a few
(to a few thousand) times between two drains, each call returning a small float matrix of
one shape, with nothing else waiting (no errors, requests, streams or other calls, and no
reference profile).

This is the classifier that most deployments of many models run, called a few times a
second, and there the general fold's fixed cost is nearly all of what a drain costs: the
matrix goes through :func:`~inferwatch.core.predictions.normalize`'s look for every
container a model may return, :func:`~inferwatch.core.class_probabilities.add_probabilities`'
checks and a count of its classes, each a dozen numpy calls on a few values (about 100 us
for ten one-row calls). Here up to :data:`FEW_ROWS` rows are read in Python, more with the
general fold's own numpy functions, and the fold makes the same changes to the state, in
the same order (``tests/test_probability_fold.py`` drains random chunks both ways and
compares the states). The first drain, which admits the class columns to their cap and
tells the task, is the general fold's; so are rows it would count as invalid (NaN, out of
[0, 1]), outputs a label cap would fold, and every rarer case (one column, a multi-label
classifier, more than :data:`MOST_ROWS` rows).

>>> import numpy as np
>>> from inferwatch.core.registry import Registry
>>> class Classifier:
...     classes_ = np.array([0, 1])
...     def predict_proba(self, x):
...         return np.array([[0.2, 0.8]])
>>> from inferwatch import instrument
>>> registry = Registry(drain_interval=3600)
>>> model = instrument(Classifier(), name="m", version="1", registry=registry)
>>> for step in range(2):  # the first drain admits the outputs; the second folds here
...     for _ in range(3):
...         _ = model.predict_proba([[1.0]])
...     registry.drain()
>>> registry.monitors()[0].state.counters["inferwatch_predicted_class_total"][("1",)]
6.0
>>> registry.close()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from inferwatch import faults
from inferwatch.core.call_input import held_bytes
from inferwatch.core.class_probabilities import (
    PROBABILITY_SUM_TOLERANCE,
    column_names,
    count_bad_sums,
    integer_labels,
    label_outputs,
    row_sums,
    top_columns,
)
from inferwatch.core.options import VALUE_BUCKETS
from inferwatch.core.pending_calls import call_columns
from inferwatch.core.prediction_state import count_folded_classes, record_output
from inferwatch.core.state import float_array
from inferwatch.core.unit_sketch import sketched_columns

if TYPE_CHECKING:
    from inferwatch.core.label_caps import LabelCap
    from inferwatch.core.monitor import Monitor
    from inferwatch.core.options import Settings
    from inferwatch.core.state import ModelState

# Up to this many rows in a drain, reading them as Python floats costs less than numpy's
# fixed cost per call; more are read with numpy, as the general fold reads them.
FEW_ROWS = 48
# Past this many rows the general fold's fixed cost is little of a drain's: it takes them
# (and cuts a huge call's matrix into slices, which this fold does not).
MOST_ROWS = 16_384


def fold_probability_rows(monitor: Monitor, calls: list[tuple], now: float,
                          settings: Settings) -> bool:
    """Fold `calls` (``predict_proba`` calls) into `monitor`'s state as the general fold
    would and return True when they are rows of class probabilities it reads plainly; else
    False, having changed nothing. The caller holds the monitor's lock and has taken only
    `calls`."""
    first = calls[0]
    # A fast-path array call is (duration, array or its layout, input, the array's bytes).
    if len(first) != 4 or len(first[1].shape) != 2 or \
            first[1].shape[0] * len(calls) > MOST_ROWS:
        return False
    try:
        found = _readable(monitor, calls)
    except Exception:  # the general fold reads them, and counts what fails as it does
        return False
    if found is None:
        return False
    durations, held, matrix, names, read = found
    rows_per_call = first[1].shape[0]
    state = monitor.state
    calls_folded = len(calls)
    monitor.fit_drained(held / calls_folded)
    state.inc("inferwatch_requests_total", ("ok",), calls_folded)
    state.histogram("inferwatch_request_duration_seconds", (), settings.latency_buckets
                    ).observe(float_array(durations))
    try:
        _record(state, settings, monitor._caps, matrix, names, read,
                (rows_per_call, calls_folded), now)
    except Exception as exc:  # as the general fold's guard over its flush
        faults.record("drain", exc)
    return True


def _readable(monitor: Monitor, calls: list[tuple]) -> tuple | None:
    """(durations, bytes the calls held, their stacked float64 matrix, its class columns'
    names, :func:`_read_few`'s reading of its rows) when this fold takes `calls`; None when
    the general fold must."""
    durations, _, kept, stacked = call_columns(calls)
    if stacked is None or kept:
        return None
    matrix, (_, width) = stacked
    if matrix.dtype.kind != "f" or width < 2:
        return None
    class_names = monitor.class_names()
    if label_outputs(class_names) is not None:
        return None  # a multi-label classifier's columns: one probability per label
    names = column_names(width, class_names)
    # Outputs admitted by an earlier drain, which told the task from them too.
    if not monitor._caps["inferwatch_prediction"].admitted(names) or \
            monitor.state.info.get("task") == "auto":
        return None
    held = held_bytes(kept) + matrix.nbytes  # as the calls held it, before any widening
    matrix = matrix.astype(np.float64, copy=False)
    read = _read_few(matrix.tolist(), width) if matrix.shape[0] <= FEW_ROWS else \
        _read_many(matrix)
    return None if read is None else (durations, held, matrix, names, read)


def _record(state: ModelState, settings: Settings, caps: dict[str, LabelCap],
            matrix: np.ndarray, names: list[str],
            read: tuple[list[int] | np.ndarray, int, dict[int, int]],
            sizes: tuple[int, int], now: float) -> None:
    """What ``PredictionBatch.flush`` records of one probability matrix, in its order: the
    batch sizes (`sizes`: rows per call, calls), each class column's quantiles and
    histogram, the predicted classes, the confidence and the invalid counts."""
    top, bad_sums, counts = read
    rows_per_call, calls = sizes
    state.histogram("inferwatch_batch_size", (), settings.batch_buckets).observe_repeated(
        float(rows_per_call), calls)
    invalid: dict[str, int] = {}
    if bad_sums < 0:  # rows of 8 or more columns: numpy sums them pairwise
        bad_sums = count_bad_sums(row_sums(matrix))
    if bad_sums:
        invalid["probability_sum"] = bad_sums
    bounds = settings.value_buckets if settings.value_buckets is not None else VALUE_BUCKETS
    width = matrix.shape[1]
    shared = sketched_columns(matrix, None if width == 2 else top)  # its values lie in [0, 1]
    for j, name in enumerate(names):
        record_output(state, settings, name, matrix[:, j], True, bounds, now, invalid,
                      None if shared is None else shared[0][:, j])
    # Classes named by integers are counted by their value (in one pass over their range),
    # others as they first come: labels are admitted to the cap in that order.
    codes = integer_labels(tuple(names))
    order = sorted(counts, key=codes.__getitem__) if codes is not None else counts
    count_folded_classes(state, caps["inferwatch_predicted_class_total"],
                         {names[column]: counts[column] for column in order})
    confidence = np.maximum(matrix[:, 0], matrix[:, 1]) if width == 2 else \
        matrix[np.arange(matrix.shape[0]), top]
    state.summary("inferwatch_prediction_confidence", (), probabilities=True).observe(
        confidence, now, sketched=None if shared is None else shared[1])
    for reason, count in invalid.items():
        state.inc("inferwatch_invalid_predictions_total", (reason,), count)


def _read_few(rows: list[list[float]], width: int
              ) -> tuple[list[int], int, dict[int, int]] | None:
    """Each row's top column (the first on a tie, as argmax reads it), how many rows do not
    sum to 1 (-1: left to numpy), and rows per top column as they first come; None when a
    value is NaN, infinite or outside [0, 1] (the general fold counts and clips those). A
    row is summed column by column, as numpy sums a row of fewer than 8 values; a wider
    one numpy sums pairwise."""
    top = []
    counts: dict[int, int] = {}
    bad_sums = 0 if width < 8 else -1
    for row in rows:
        total = best_value = row[0]
        best = 0
        if not 0.0 <= best_value <= 1.0:
            return None
        for j in range(1, width):
            value = row[j]
            if not 0.0 <= value <= 1.0:
                return None
            total += value
            if value > best_value:
                best, best_value = j, value
        top.append(best)
        counts[best] = counts.get(best, 0) + 1
        if bad_sums >= 0 and abs(total - 1.0) > PROBABILITY_SUM_TOLERANCE:
            bad_sums += 1
    return top, bad_sums, counts


def _read_many(matrix: np.ndarray) -> tuple[np.ndarray, int, dict[int, int]] | None:
    """:func:`_read_few` of many rows, with the general fold's numpy functions."""
    if not (matrix.min() >= 0.0 and matrix.max() <= 1.0):  # NaN fails this too
        return None
    bad_sums = count_bad_sums(row_sums(matrix))
    top = top_columns(matrix)
    per_column = np.bincount(top, minlength=matrix.shape[1]).tolist()
    present = [column for column, rows in enumerate(per_column) if rows]
    if len(present) > 1:  # as they first come: the row where each is first on top
        present.sort(key=lambda column: int((top == column).argmax()))
    return top, bad_sums, {column: per_column[column] for column in present}
