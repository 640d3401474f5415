"""A function returning one integer or bool label, Python's or numpy's (a classifier served
as a function: ``clf.predict(x)[0]``), called with ``request_id=``: its drain's labels are
read as one-row arrays by the one-array fold (``record_arrays._scalar_labels_as_rows``), with
the series, the rows kept for each id and the outcomes judged that the general path,
reading each label alone, makes."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fold_checks import as_the_general_path, watched
from inferwatch.core import drain_folds, record_arrays
from inferwatch.core.stacked_results import StackedResults
from test_outcomes_array_rows import judged_after_drain


class _IntClassifier:
    """A classifier of three whole-number classes whose predict gives its input back."""

    classes_ = np.array([0, 1, 2])

    def predict(self, x):
        return x


_INTS = [int, np.int64, np.int32, np.int8, np.uint8, np.uint64]
_BOOLS = [bool, np.bool_]


@st.composite
def _calls(draw) -> list[tuple[object, str | None]]:
    """Calls of a drain, most under a request id: integer labels of one kind or several,
    or bools; in some drains one of the other kind, or an integer past int64."""
    family = draw(st.sampled_from(["ints", "ints", "bools"]))
    if family == "ints":
        kinds = draw(st.lists(st.sampled_from(_INTS), min_size=1, max_size=3))
        values = [draw(st.sampled_from(kinds))(draw(st.integers(0, 3)))
                  for _ in range(draw(st.integers(1, 25)))]
    else:
        values = [draw(st.sampled_from(_BOOLS))(draw(st.booleans()))
                  for _ in range(draw(st.integers(1, 25)))]
    odd = draw(st.sampled_from(["none", "none", "none", "bool", "int", "huge", "negative"]))
    position = draw(st.integers(0, len(values) - 1))
    if odd == "bool":
        values[position] = True
    elif odd == "int":
        values[position] = 1
    elif odd == "huge":
        values[position] = 2**64 + 5
    elif odd == "negative":
        values[position] = -1
    return [(value, f"r-{number}" if draw(st.integers(0, 4)) else None)
            for number, value in enumerate(values)]


def _judged(calls, task: str, classifier: bool, cache_bytes: int) -> tuple[dict, dict]:
    return judged_after_drain(calls, _IntClassifier() if classifier else None, task,
                              cache_bytes, lambda value: str(value))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=_calls(), task=st.sampled_from(["auto", "classification", "regression"]),
       classifier=st.booleans(), cache_bytes=st.sampled_from([2048, 2**20]))
def test_label_records_join_as_each_label_read_alone(monkeypatch, calls, task, classifier,
                                                      cache_bytes):
    as_the_general_path(monkeypatch, record_arrays, "_scalar_labels_as_rows",
                        lambda: _judged(calls, task, classifier, cache_bytes))


def test_label_scalars_take_the_one_array_fold(monkeypatch):
    """The fold above is the one such a drain takes (a test of a fold that never ran would
    prove nothing); bools beside integers, or an integer past every integer dtype, send
    the drain to the general path."""
    taken = watched(monkeypatch, drain_folds, "_fold_plain_arrays")
    for calls in ([(1, "r-0"), (np.int64(2), "r-1"), (0, None)],
                  [(True, "r-0"), (np.bool_(False), "r-1")],
                  [(1, "r-0"), (True, "r-1")],
                  [(1, "r-0"), (2**64, "r-1")]):
        series, entries = _judged(calls, "auto", True, 2**20)
        assert sorted(entries) == ["r-0", "r-1"]
    assert taken == [True, True, False, False]
    assert sum(value for key, value in series.items()
               if key[0] == "inferwatch_outcomes_total" and ("result", "correct") in key[1]) == 2


@st.composite
def _list_calls(draw) -> list[tuple[object, str | None]]:
    """Calls returning ``[label]`` (lists, or tuples, of one to three Python ints, or of
    bools); in some drains an odd one: a bool among ints, an int past int64 (uint64 or
    objects alone), a float, an empty list."""
    container = draw(st.sampled_from([list, tuple]))
    bools = draw(st.booleans())
    values = [container(draw(st.lists(st.booleans() if bools else st.integers(-1, 3),
                                      min_size=1, max_size=3)))
              for _ in range(draw(st.integers(1, 12)))]
    odd = draw(st.sampled_from(["none", "none", "bool", "huge", "uint64", "float", "empty"]))
    position = draw(st.integers(0, len(values) - 1))
    values[position] = {"none": values[position], "bool": container([True]),
                        "huge": container([2**64 + 5]), "uint64": container([2**63]),
                        "float": container([1.5]), "empty": container()}[odd]
    return [(value, f"r-{number}" if draw(st.integers(0, 4)) else None)
            for number, value in enumerate(values)]


def _first(value) -> str:
    return str(value[0]) if len(value) else "0"


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=_list_calls(), task=st.sampled_from(["auto", "classification", "regression"]),
       classifier=st.booleans(), cache_bytes=st.sampled_from([2048, 2**20]))
def test_label_lists_join_as_each_list_read_alone(monkeypatch, calls, task, classifier,
                                                  cache_bytes):
    """``[label]`` under ``request_id=``: read as the int64 (or bool) arrays each list
    alone is (``record_arrays._label_lists_as_rows``)."""
    as_the_general_path(
        monkeypatch, record_arrays, "_label_lists_as_rows",
        lambda: judged_after_drain(calls, _IntClassifier() if classifier else None, task,
                                   cache_bytes, _first))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=_list_calls(), task=st.sampled_from(["auto", "classification", "regression"]),
       classifier=st.booleans())
def test_label_lists_record_what_each_list_read_alone_records(monkeypatch, calls, task,
                                                              classifier):
    """``[label]`` on the plain path: one array for the drain (``_add_flat_lists``)."""
    plain = [(value, None) for value, _ in calls]
    as_the_general_path(
        monkeypatch, StackedResults, "_add_flat_lists",
        lambda: judged_after_drain(plain, _IntClassifier() if classifier else None, task,
                                   2**20, _first),
        lambda self, results, probabilities: False)


def test_label_lists_take_the_batched_readers(monkeypatch):
    read = watched(monkeypatch, record_arrays, "_label_lists_as_rows",
                   lambda found: bool(found) and isinstance(found[0], np.ndarray))
    flat = watched(monkeypatch, StackedResults, "_add_flat_lists")
    for calls in ([([1], "r-0"), ([0, 2], "r-1")], [([True], "r-0"), ([False], "r-1")],
                  [([1], "r-0"), ([2**64], "r-1")]):
        _, entries = judged_after_drain(calls, _IntClassifier(), "auto", 2**20, _first)
        assert sorted(entries) == ["r-0", "r-1"]
    assert read == [True, True, False]
    judged_after_drain([([1], None), ([0], None), ([2], None)], _IntClassifier(), "auto",
                       2**20, _first)
    assert flat[-1] is True


_ZERO_DIM = {
    "float64": st.sampled_from([0.5, 1.0, 2.0, -0.0, float("nan"), float("inf")]),
    "float32": st.sampled_from([0.5, 1.0, 2.0]),
    "int64": st.integers(-1, 3),
    "bool": st.booleans(),
}


@st.composite
def _zero_dim_calls(draw) -> list[tuple[object, str | None]]:
    """0-d arrays (``x.squeeze()`` of one row) of one dtype, a NaN among floats at times,
    and now and then a 1-D array or a 0-d array of another dtype among them."""
    dtype = draw(st.sampled_from(sorted(_ZERO_DIM)))
    values = []
    for _ in range(draw(st.integers(1, 12))):
        own = dtype if draw(st.integers(0, 8)) else draw(st.sampled_from(sorted(_ZERO_DIM)))
        value = np.array(draw(_ZERO_DIM[own]), dtype=own)
        values.append(value.reshape(1) if draw(st.integers(0, 12)) == 0 else value)
    return [(value, f"r-{number}" if draw(st.integers(0, 4)) else None)
            for number, value in enumerate(values)]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=_zero_dim_calls(), task=st.sampled_from(["auto", "classification", "regression"]),
       classifier=st.booleans())
def test_zero_dim_arrays_join_as_each_read_alone(monkeypatch, calls, task, classifier):
    """0-d arrays under ``request_id=``: read as the one-row arrays of their values
    (``record_arrays._zero_dim_as_rows``), unless a NaN or an infinity is among them."""
    as_the_general_path(
        monkeypatch, record_arrays, "_zero_dim_as_rows",
        lambda: judged_after_drain(calls, _IntClassifier() if classifier else None, task,
                                   2**20, lambda value: str(np.ravel(value)[0])))


def test_zero_dim_arrays_take_the_batched_reader(monkeypatch):
    read = watched(monkeypatch, record_arrays, "_zero_dim_as_rows",
                   lambda found: bool(found) and found[0].shape == (1,))
    for values in ([0.5, 1.5], [0.5, float("nan")]):
        calls = [(np.array(value), f"r-{n}") for n, value in enumerate(values)]
        _, entries = judged_after_drain(calls, None, "auto", 2**20, lambda value: "0.5")
        assert sorted(entries) == ["r-0", "r-1"]
    assert read == [True, False]
