"""A function returning a float, or a list or tuple of floats, called with
``request_id=`` (a regressor served as a function, in the delayed-ground-truth flow): its
drain's finite floats are read as arrays by the one-array fold
(``record_arrays._finite_floats_as_rows``), with the series, the rows kept for each id and
the outcomes judged that the general path, reading each result alone, makes."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fold_checks import as_the_general_path, watched
from inferwatch.core import drain_folds, record_arrays
from test_outcomes_array_rows import judged_after_drain


class _WholeClassifier:
    """A classifier whose classes are whole numbers: its float answers are classes."""

    classes_ = np.array([0, 1, 2])

    def predict(self, x):
        return x


_value = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, 1.0, 2.0, -0.0, 1e300]))


def _of_kind(kind: type, value: float) -> object:
    """`value` as a float of `kind` (Python's, or a numpy scalar: float32 rounds it, past
    its range to an infinity)."""
    with np.errstate(over="ignore"):
        return kind(value)


_KINDS = st.sampled_from([float, float, np.float64, np.float32])


@st.composite
def _calls(draw) -> list[tuple[float, str | None]]:
    """Calls of a drain, most under a request id; in some drains every value finite; in
    some numpy's float scalars (of one kind, or mixed with Python's)."""
    finite = draw(st.booleans())
    kind = draw(_KINDS)
    mixed = draw(st.integers(0, 3)) == 0
    values = [_of_kind(draw(_KINDS) if mixed else kind, value) for value in draw(st.lists(
        _value.filter(lambda v: not finite or np.isfinite(v)), min_size=1, max_size=30))]
    return [(value, f"r-{number}" if draw(st.integers(0, 4)) else None)
            for number, value in enumerate(values)]


def _judged(calls, task: str, classifier: bool, cache_bytes: int) -> tuple[dict, dict]:
    return judged_after_drain(calls, _WholeClassifier() if classifier else None, task,
                              cache_bytes, lambda value: value + 0.25)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=_calls(), task=st.sampled_from(["auto", "classification", "regression"]),
       classifier=st.booleans(), cache_bytes=st.sampled_from([2048, 2**20]))
def test_float_records_join_as_each_float_read_alone(monkeypatch, calls, task, classifier,
                                                      cache_bytes):
    as_the_general_path(monkeypatch, record_arrays, "_finite_floats_as_rows",
                        lambda: _judged(calls, task, classifier, cache_bytes))


def test_finite_float_records_take_the_one_array_fold(monkeypatch):
    """The fold above is the one such a drain takes (a test of a fold that never ran would
    prove nothing); a NaN among the floats sends the drain to the general path."""
    taken = watched(monkeypatch, drain_folds, "_fold_plain_arrays")
    series, entries = _judged([(0.5, "r-0"), (np.float64(1.5), "r-1"), (2.5, None)], "auto",
                              False, 2**20)
    assert sum(value for key, value in series.items()
               if key[0] == "inferwatch_batch_size_count") == 3
    _judged([(0.5, "r-0"), (float("nan"), "r-1")], "auto", False, 2**20)
    assert taken == [True, False]
    assert sorted(entries) == ["r-0", "r-1"]


@st.composite
def _sequence_calls(draw) -> list[tuple[object, str | None]]:
    """Calls returning lists (or tuples) of floats, of one length or of several (an empty
    one in some drains), most under a request id; in some drains every value finite."""
    finite = draw(st.booleans())
    kind = draw(st.sampled_from([list, tuple]))
    scalar = draw(_KINDS)
    widths = st.just(draw(st.integers(1, 3))) if draw(st.booleans()) else st.integers(0, 4)
    value = _value.filter(lambda v: not finite or np.isfinite(v))
    results = [kind(_of_kind(scalar, v) for v in draw(st.lists(value, min_size=width,
                                                                max_size=width)))
               for width in draw(st.lists(widths, min_size=1, max_size=20))]
    return [(result, f"r-{number}" if draw(st.integers(0, 4)) else None)
            for number, result in enumerate(results)]


def _first_plus(result) -> object:
    return result[0] + 0.25 if len(result) else 0.25


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=_sequence_calls(), task=st.sampled_from(["auto", "classification", "regression"]),
       classifier=st.booleans(), cache_bytes=st.sampled_from([2048, 2**20]))
def test_float_list_records_join_as_each_list_read_alone(monkeypatch, calls, task, classifier,
                                                          cache_bytes):
    as_the_general_path(monkeypatch, record_arrays, "_finite_floats_as_rows", lambda:
                        judged_after_drain(calls, _WholeClassifier() if classifier else None,
                                           task, cache_bytes, _first_plus))


def test_finite_float_lists_take_the_one_array_fold(monkeypatch):
    """Lists and tuples of floats take the same fold; an empty one, or a NaN, among them
    sends the drain to the general path."""
    taken = watched(monkeypatch, drain_folds, "_fold_plain_arrays")
    for calls in ([([0.5], "r-0"), ([np.float32(1.5)], "r-1"), ([2.5], None)],
                  [((0.5, 0.7), "r-0"), ((1.0, 2.0, 3.0), "r-1")],
                  [([0.5], "r-0"), ([], "r-1")],
                  [([0.5], "r-0"), ([float("nan")], "r-1")]):
        _, entries = judged_after_drain(calls, None, "auto", 2**20, _first_plus)
        assert sorted(entries) == ["r-0", "r-1"]
    assert taken == [True, True, False, False]
    assert entries["r-0"][:2] == (None, "(0.5,)")
