"""A frame that names nothing is read by position, as the array it was made from is.

``pd.DataFrame(array)`` names its columns 0 to k-1, and ``pl.from_numpy(array)``
``column_0`` to ``column_{k-1}``: names no reference has (one profiled from an array names
its features ``x0``, ``x1``; one with names, by them). Every row of such a frame counted
every feature ``missing_column`` and every column ``extra_column``, checked nothing, and
fired the schema alert, where the array itself was checked by position. Such a frame is now
read as its array is; a frame whose names are its own (a renamed feature) is still a schema
break.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch

_TRAIN = np.random.default_rng(4).uniform(0, 10, size=(300, 3))
_REFERENCES = {
    "array": inferwatch.Reference.from_data(_TRAIN),
    "named": inferwatch.Reference.from_data(
        pd.DataFrame(_TRAIN, columns=["age", "income", "tenure"])),
    "default frame": inferwatch.Reference.from_data(pd.DataFrame(_TRAIN)),
}
_FORMS = {
    "array": lambda rows: rows,
    "pandas": pd.DataFrame,
    "polars": pl.from_numpy,
}


def _figures(reference: str, form: str, calls: list[np.ndarray], paths: list[str]) -> list:
    from conftest import Scraper

    scraper = Scraper()
    try:
        model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                      registry=scraper.registry,
                                      reference=_REFERENCES[reference])
        mon = inferwatch.monitor("m", "1", registry=scraper.registry)
        for i, (rows, path) in enumerate(zip(calls, paths)):
            x = _FORMS[form](rows)
            if path == "plain":
                model(x)
            elif path == "request_id":
                model(x, request_id=f"r-{i}")
            else:
                with mon.request():
                    model(x)
        return sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                      for s in scraper.samples()
                      if s.name.startswith(("inferwatch_feature", "inferwatch_input",
                                            "inferwatch_drift")))
    finally:
        scraper.registry.close()


@st.composite
def _calls(draw) -> tuple[list[np.ndarray], list[str]]:
    value = st.one_of(st.floats(-5, 15), st.just(np.nan))
    calls = []
    for _ in range(draw(st.integers(1, 5))):
        rows = draw(st.integers(1, 4))
        cells = draw(st.lists(st.lists(value, min_size=3, max_size=3), min_size=rows,
                              max_size=rows))
        calls.append(np.array(cells, dtype=float))
    paths = draw(st.lists(st.sampled_from(["plain", "request_id", "request"]),
                          min_size=len(calls), max_size=len(calls)))
    return calls, paths


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=_calls(), reference=st.sampled_from(sorted(_REFERENCES)),
       form=st.sampled_from(["pandas", "polars"]))
def test_a_frame_that_names_nothing_is_checked_as_its_array_is(drawn, reference, form):
    calls, paths = drawn
    figures = _figures(reference, form, calls, paths)
    assert figures == _figures(reference, "array", calls, paths)
    assert not any(name == "inferwatch_input_errors_total" and value
                   for name, _, value in figures)


def test_the_array_reference_counts_what_the_frame_holds(scraper):
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry, reference=_REFERENCES["array"])
    model(pd.DataFrame([[1.0, np.nan, 50.0], [2.0, 3.0, 4.0]]))
    assert scraper.value("inferwatch_feature_missing_total", model="m", feature="x1") == 1
    assert scraper.value("inferwatch_feature_out_of_range_total", model="m",
                         feature="x2") == 1
    assert scraper.total("inferwatch_input_errors_total", model="m") == 0


def test_a_frame_with_names_of_its_own_is_still_a_schema_break(scraper):
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry, reference=_REFERENCES["named"])
    model(pd.DataFrame([[1.0, 2.0, 3.0]], columns=["age", "salary", "tenure"]))
    assert scraper.value("inferwatch_input_errors_total", model="m",
                         reason="missing_column") == 1
    assert scraper.value("inferwatch_input_errors_total", model="m",
                         reason="extra_column") == 1
    # Numbered in another order, or from 1, a frame's numbers are names: not read by position.
    model(pd.DataFrame([[1.0, 2.0, 3.0]], columns=[1, 2, 3]))
    assert scraper.value("inferwatch_input_errors_total", model="m",
                         reason="missing_column") == 4


def test_a_frame_that_names_nothing_of_another_width_is_a_wrong_width(scraper):
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry, reference=_REFERENCES["array"])
    model(pd.DataFrame(np.ones((4, 2))))
    model(np.ones((4, 2)))
    assert scraper.value("inferwatch_input_errors_total", model="m", reason="wrong_width") == 2
