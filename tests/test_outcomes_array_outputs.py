"""Calls returning their outputs as 1-D float arrays, called with ``request_id=``: a tuple
``(prices, etas)``, a runtime's list of outputs (ONNX Runtime's ``session.run``), or a dict
``{"price": prices}``. A drain of them is read as one dict of columns
(``PredictionBatch.add_dict_records``), each call joined by its own rows, with the series,
the rows kept for each id and the outcomes judged that the general path, reading each
call alone, makes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fold_checks import as_the_general_path, watched
from inferwatch.core.prediction_batch import PredictionBatch
from test_outcomes_dict_records import _judged

_VALUE = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, 1.0, 0.5]))
_LABELS = {"int64": st.integers(0, 2), "<U3": st.sampled_from(["cat", "dog"]),
           "object": st.sampled_from(["cat", "dog", 1, 2.5])}


@st.composite
def _drain(draw: st.DrawFn) -> list[tuple[object, str | None]]:
    """The calls of one drain, (result, request id or None) each: every result the same
    count of outputs in one container; rows per call one, or several, or none; in some
    drains a NaN, a float32 output, an output of two dimensions or a call of other rows."""
    container = draw(st.sampled_from(["tuple", "list", "dict"]))
    width = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.float64, np.float64, np.float32]))
    # An output of labels among them at times: integers, numpy text, or text as Python
    # objects (a number among those, read as values when a call's are all numbers).
    kinds = [draw(st.sampled_from(["float"] * 4 + sorted(_LABELS))) for _ in range(width)]
    fixed = draw(st.sampled_from([1, 1, None]))
    results = []
    for _ in range(draw(st.integers(2, 20))):
        rows = fixed if fixed is not None else draw(st.integers(0, 3))
        arrays = [np.array(draw(st.lists(_VALUE, min_size=rows, max_size=rows)), dtype=dtype)
                  if kind == "float" else
                  np.array(draw(st.lists(_LABELS[kind], min_size=rows, max_size=rows)),
                           dtype=kind)
                  for kind in kinds]
        results.append(arrays)
    odd = draw(st.sampled_from(["none", "none", "none", "nan", "2-D", "rows"]))
    at = draw(st.integers(0, len(results) - 1))
    if odd == "nan" and results[at][0].size and results[at][0].dtype.kind == "f":
        results[at][0][0] = np.nan
    elif odd == "2-D":
        results[at][-1] = results[at][-1].reshape(-1, 1)
    elif odd == "rows":
        results[at][0] = np.append(results[at][0], 1.0)
    if container == "tuple":
        results = [tuple(arrays) for arrays in results]
    elif container == "dict":
        names = ["price", "eta", "0"][:width]
        results = [dict(zip(names, arrays)) for arrays in results]
    return [(result, None if draw(st.integers(0, 5)) == 0 else f"r-{number}")
            for number, result in enumerate(results)]


def _truth(result: object) -> object:
    first = next(iter(result.values())) if isinstance(result, dict) else result[0]
    flat = np.ravel(first)
    if not flat.size:
        return 0.25
    return float(flat[0]) + 0.25 if flat.dtype.kind == "f" else flat[0].item() \
        if isinstance(flat[0], np.generic) else flat[0]


_options = st.fixed_dictionaries(
    {}, optional={"task": st.sampled_from(["classification", "regression"]),
                  "classes": st.sampled_from([[0, 1, 2], ["cat", "dog"]])})


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(drains=st.lists(_drain(), min_size=1, max_size=3), options=_options,
       cache_bytes=st.sampled_from([2048, 2**20]))
def test_array_outputs_join_as_each_call_read_alone(monkeypatch, drains, options,
                                                    cache_bytes):
    as_the_general_path(monkeypatch, PredictionBatch, "add_dict_records",
                        lambda: _judged(drains, options, 50, cache_bytes, truth=_truth),
                        lambda self, results: None)


@pytest.mark.parametrize("container", [tuple, list, "dict"])
def test_array_outputs_take_the_dict_fold(monkeypatch, container):
    """The fold above is the one such a drain takes (a test of a fold that never ran would
    prove nothing); a NaN among them sends the drain to the general path."""
    def result(price: float, eta: float) -> object:
        arrays = [np.array([price]), np.array([eta])]
        return dict(zip(["price", "eta"], arrays)) if container == "dict" else \
            container(arrays)

    taken = watched(monkeypatch, PredictionBatch, "add_dict_records",
                    lambda rows: rows is not None)
    series, entries = _judged([[(result(10.0, 3.0), "r-0"), (result(12.0, 4.0), "r-1")],
                               [(result(10.0, 3.0), "r-2"), (result(np.nan, 4.0), "r-3")]],
                              {}, 50, 2**20, truth=_truth)
    assert taken == [True, False]
    assert sum(value for key, value in series.items()
               if key[0] == "inferwatch_batch_size_count") == 4
    assert entries[0]["r-1"][:2] == (None, "((12.0, 4.0),)")
    assert sorted(entries[1]) == ["r-0", "r-1", "r-2", "r-3"]
