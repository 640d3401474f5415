"""The fold of plain float calls (core/float_fold.py) leaves the state the general fold
leaves: the same series in the same order, the same counts, sums, sketches and invalid
counts, and the same pending bound, on random chunks of floats, numpy float scalars, NaN
and infinities (each alone, or in a list of one), under every task and option that changes
how floats are read."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.core import monitor_drain
from inferwatch.core.registry import Registry

NOW = 1_700_000_000.0

_number = st.floats(allow_nan=True, allow_infinity=True, width=64)
_value = st.one_of(
    _number,
    _number.map(np.float64),
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(np.float32),
)
_calls = st.lists(st.tuples(st.floats(0.0, 5.0), _value), min_size=1, max_size=90)


def some_in_lists_of_one(draw: st.DrawFn, calls: list[tuple[float, object]]
                         ) -> list[tuple[float, object]]:
    """`calls` (duration, result) with none, all or some of the results each in a list
    of one."""
    wrapped = draw(st.sampled_from(["none", "all", "some"]))
    if wrapped == "none":
        return calls
    return [(duration, [value] if wrapped == "all" or draw(st.booleans()) else value)
            for duration, value in calls]


@st.composite
def _chunk(draw: st.DrawFn) -> list[tuple[float, object]]:
    """Calls returning floats; in some chunks each a list of one float (``return
    [score]``), in some a mix of both (which the general fold reads)."""
    return some_in_lists_of_one(draw, draw(_calls))


_options = st.fixed_dictionaries({
    "task": st.sampled_from(["auto", "regression", "classification"]),
    "output_range": st.one_of(st.none(), st.tuples(st.floats(-10, 0), st.floats(0, 10))),
    "value_buckets": st.one_of(st.none(), st.just((0.0, 0.5, 1.0, 10.0))),
})
_classes = st.sampled_from([None, ["cat", "dog"], [0, 1], [0.0, 1.0, 2.0]])


def drained_state(monitor: object, chunks: list) -> dict:
    """`monitor`'s state (its loading time left out) after draining `chunks` of
    (duration, result) calls, one drain each, through whichever fold monitor_drain uses."""
    for step, chunk in enumerate(chunks):
        for duration, value in chunk:
            monitor.record_call(duration, value)
        monitor.drain(now=NOW + step)
    data = monitor.state.to_dict()
    data.pop("loaded_at")
    return data


def _state_of(chunks: list, options: dict, classes: list | None) -> tuple[dict, tuple]:
    """The state and pending bound after draining `chunks` (:func:`drained_state`)."""
    registry = Registry(drain_interval=3600)
    try:
        monitor = registry.monitor("m", "1").configure(**options)
        monitor._class_names = None if classes is None else (lambda: classes)
        data = drained_state(monitor, chunks)
        return data, (monitor._kept_per_call, monitor._sized, monitor._chunk)
    finally:
        registry.close()


def _same(a: object, b: object) -> bool:
    """Equal, NaN equal to NaN (an empty window's sums)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def both_folds(fold_name: str, run: Callable[[], object]) -> tuple[object, object, list[bool]]:
    """`run()` with monitor_drain's fold `fold_name` watched, then with that fold refusing
    every chunk (the general fold takes them): both results, and whether the fold took each
    chunk it was offered in the first run."""
    used: list[bool] = []
    fold = getattr(monitor_drain, fold_name)

    def watched(*args: object) -> bool:
        folded = fold(*args)
        used.append(folded)
        return folded

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(monitor_drain, fold_name, watched)
        fast = run()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(monitor_drain, fold_name, lambda *args: False)
        general = run()
    return fast, general, used


@settings(max_examples=120, deadline=None)
@given(chunks=st.lists(_chunk(), min_size=1, max_size=3), options=_options, classes=_classes)
def test_plain_float_calls_fold_as_the_general_fold_folds_them(chunks, options, classes):
    fast, general, used = both_folds("fold_plain_floats",
                                     lambda: _state_of(chunks, options, classes))
    assert _same(fast, general), (fast, general)
    # The fold took every chunk it may take, and no other.
    whole_classes = classes is not None and all(not isinstance(c, str) for c in classes)
    takes = options["task"] == "regression" or (options["task"] == "auto" and not whole_classes)
    assert used == [takes and len({type(value) is list for _, value in chunk}) == 1
                    for chunk in chunks]


def test_a_chunk_with_anything_but_plain_floats_takes_the_general_fold():
    registry = Registry(drain_interval=3600)
    try:
        monitor = registry.monitor("m", "1")
        used = []
        fold = monitor_drain.fold_plain_floats
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(monitor_drain, "fold_plain_floats",
                          lambda *args: used.append(fold(*args)) or used[-1])
            for chunk in ([(0.1, 0.5), (0.1, None)],  # a call recorded with no prediction
                          [(0.1, 0.5), (0.1, 3)],  # an int: maybe a class label
                          [(0.1, np.array([0.5]))],
                          [(0.1, [0.5]), (0.1, [0.5, 0.7])],  # a list of two values: 2 rows
                          [(0.1, [0.5]), (0.1, [])],  # no rows at all
                          [(0.1, [0.5]), (0.1, ["cat"])]):
                for duration, value in chunk:
                    monitor.record_call(duration, value)
                monitor.drain(now=NOW)
            monitor.record_call(0.1, 0.5)
            monitor.record_error(0.1, ValueError)  # errors too: the general fold
            monitor.drain(now=NOW)
        assert used == [False] * 6
        requests = monitor.state.counters["inferwatch_requests_total"]
        assert requests[("ok",)] == 12 and requests[("error",)] == 1
    finally:
        registry.close()
