"""A drain's fold of plain float calls: a function or regressor that returns one float a
call (or a list of one float, ``return [score]``), with nothing else waiting (no errors,
requests, streams or probabilities, and no reference profile).

This is the model that most deployments of many small models run, each called a few times
between two drains, and there the general fold's fixed cost is most of what a drain
costs: :class:`~inferwatch.core.prediction_batch.PredictionBatch` and the checks for huge
batches, containers, frames, classes and probability matrices, which such calls cannot
hold, take about 180 Python calls for a chunk of ten. This fold makes the same changes to
the state, in the same order, with a third of them (``tests/test_float_fold.py`` drains
random chunks both ways and compares the states).

>>> from inferwatch.core.registry import Registry
>>> registry = Registry(drain_interval=3600)
>>> mon = registry.monitor("m", "1")
>>> for value in (0.5, 1.5, float("nan")):
...     mon.record_call(0.01, value)
>>> mon.drain()
>>> mon.state.summaries["inferwatch_prediction"][("value",)].count
2
>>> mon.state.counters["inferwatch_invalid_predictions_total"][("nan",)]
1.0
>>> registry.close()
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

import numpy as np

from inferwatch import faults
from inferwatch.core.call_input import held_bytes
from inferwatch.core.options import VALUE_BUCKETS
from inferwatch.core.prediction_batch import FLOAT_SCALARS
from inferwatch.core.prediction_classes import whole_number_classes
from inferwatch.core.prediction_state import finite_values, record_output
from inferwatch.core.state import float_array

if TYPE_CHECKING:
    from inferwatch.core.monitor import Monitor
    from inferwatch.core.options import Settings
    from inferwatch.core.state import ModelState

_DURATION = operator.itemgetter(0)
_RESULT = operator.itemgetter(1)
_FIRST = operator.itemgetter(0)
_TWO = {2}  # (duration, result): a call that kept no input and no array bytes
_ONE = {1}
_LISTS = {list}


def fold_plain_floats(monitor: Monitor, calls: list[tuple], now: float,
                      settings: Settings) -> bool:
    """Fold `calls` into `monitor`'s state as the general fold would and return True when
    each is a plain float call (every one a float, or every one a list of one float) and
    the model's floats are values; else False, having changed nothing. The caller holds
    the monitor's lock and has taken only `calls`."""
    results = list(map(_RESULT, calls))
    kinds = set(map(type, results))
    held = results  # what the calls kept while they waited, sized for the pending bound
    if kinds == _LISTS and set(map(len, results)) == _ONE:
        # ``return [score]``: a list of one float is one row of one value, as the float is.
        held, results = results, list(map(_FIRST, results))
        held_kinds, kinds = kinds, set(map(type, results))
    else:
        held_kinds = kinds
    if not kinds <= FLOAT_SCALARS or set(map(len, calls)) != _TWO:
        return False
    task = settings.task
    # A classifier's whole-number labels returned as floats are read as its classes, and a
    # declared classification task reads every float so: the general fold tells those.
    if task == "classification" or (
            task == "auto" and whole_number_classes(monitor.class_names()) is not None):
        return False
    state = monitor.state
    calls_folded = len(calls)
    monitor.fit_drained(held_bytes(held, held_kinds) / calls_folded)
    state.inc("inferwatch_requests_total", ("ok",), calls_folded)
    state.histogram("inferwatch_request_duration_seconds", (), settings.latency_buckets
                    ).observe(float_array(list(map(_DURATION, calls))))
    invalid: dict[str, int] = {}
    try:
        values = finite_values(float_array(results), invalid)
    except Exception as exc:  # as the general fold's guard over reading the results
        faults.record("prediction", exc)
        values = None
    try:
        _record_values(monitor, state, settings, values, calls_folded, invalid, now)
    except Exception as exc:  # as the general fold's guard over its flush
        faults.record("drain", exc)
    return True


def _record_values(monitor: Monitor, state: ModelState, settings: Settings,
                   values: np.ndarray | None,
                   calls_folded: int, invalid: dict[str, int], now: float) -> None:
    """The batch sizes, the default output's summary and histogram, and the invalid counts:
    what ``PredictionBatch.flush`` records of these calls."""
    if values is not None and state.info.get("task") == "auto":
        state.info = {**state.info, "task": "regression"}
    state.histogram("inferwatch_batch_size", (), settings.batch_buckets).observe_repeated(
        1.0, calls_folded)
    if values is not None:
        (output,) = monitor._caps["inferwatch_prediction"].fold_many(["value"])
        bounds = settings.value_buckets if settings.value_buckets is not None else VALUE_BUCKETS
        record_output(state, settings, output, values, False, bounds, now, invalid)
    for reason, count in invalid.items():
        state.inc("inferwatch_invalid_predictions_total", (reason,), count)
