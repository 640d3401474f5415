"""Call results met in the field whose rows, classes or probabilities were recorded wrongly:
each is counted by its rows, with its nulls as missing values, and never raises."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults

_FEW = settings(max_examples=20, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _recorded(result: object, *, proba: bool = False, calls: int = 1, **options: object
              ) -> tuple[dict[tuple[str, tuple], float], int]:
    """The samples after `calls` calls returning `result` (by ``predict_proba`` when
    `proba`), and how many internal faults they raised; asserts the caller got `result`."""
    from conftest import Scraper

    class Model:
        def predict(self, x: object) -> object:
            return result

        def predict_proba(self, x: object) -> object:
            return result

    scraper = Scraper(drain_interval=3600)
    before = sum(faults.internal_error_counts().values())
    try:
        model = inferwatch.instrument(Model(), name="m", version="1",
                                      registry=scraper.registry, **options)
        method = model.predict_proba if proba else model.predict
        for _ in range(calls):
            assert method(None) is result
        samples = {(s.name, tuple(sorted((k, v) for k, v in s.labels.items()
                                         if k not in ("model", "model_version")))): s.value
                   for s in scraper.samples()}
    finally:
        scraper.registry.close()
    return samples, sum(faults.internal_error_counts().values()) - before


def _get(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _classes(samples: dict) -> dict[str, float]:
    return {dict(labels)["class"]: value for (name, labels), value in samples.items()
            if name == "inferwatch_predicted_class_total" and value}


def _outputs(samples: dict) -> set[str]:
    return {dict(labels)["output"] for (name, labels), value in samples.items()
            if name == "inferwatch_prediction_count" and value}


_LABELS_WITH_NULLS = st.lists(st.one_of(st.none(), st.integers(0, 4)), min_size=1,
                              max_size=8).filter(lambda v: any(x is not None for x in v))


# --- integer labels in a polars / pyarrow column with nulls stay classes ------------------

@_FEW
@given(labels=_LABELS_WITH_NULLS, calls=st.integers(1, 3), kind=st.sampled_from(
    ["polars", "pyarrow", "polars_frame"]))
def test_integer_labels_with_nulls_in_arrow_columns_stay_classes(labels, calls, kind):
    if kind.startswith("polars"):
        pl = pytest.importorskip("polars")
        column = pl.Series("label", labels, dtype=pl.Int64)
        result = pl.DataFrame([column]) if kind == "polars_frame" else column
    else:
        pa = pytest.importorskip("pyarrow")
        result = pa.array(labels, type=pa.int64())
    samples, faulted = _recorded(result, calls=calls)
    assert faulted == 0
    present = [v for v in labels if v is not None]
    expected = {str(v): float(present.count(v) * calls) for v in set(present)}
    # As the same labels in a pandas Int64 column are: classes, never regression values.
    assert _classes(samples) == expected
    assert not _outputs(samples)
    assert _get(samples, "inferwatch_invalid_predictions_total", reason="nan") == \
        labels.count(None) * calls
    assert _get(samples, "inferwatch_batch_size_sum") == len(labels) * calls


def test_polars_labels_with_nulls_match_pandas_nullable_labels():
    pl = pytest.importorskip("polars")
    labels = [1, None, 0, 1]
    from_polars, _ = _recorded(pl.Series(labels), calls=2)
    from_pandas, _ = _recorded(pd.Series(labels, dtype="Int64"), calls=2)
    assert _classes(from_polars) == _classes(from_pandas) == {"0": 2.0, "1": 4.0}


# --- predict_proba that cannot be read still counts its rows ------------------------------

@pytest.mark.parametrize("result", [
    np.array([[1 + 2j, 0j], [0.5 + 0j, 0.5 + 0j]]),
    np.array([["a", "b"], ["c", "d"]], dtype=object),
    np.array([[b"a", b"b"], [b"c", b"d"]]),
    np.array([["2020-01-01", "2020-01-02"], ["2020-01-03", "2020-01-04"]],
             dtype="datetime64[D]"),
], ids=["complex", "objects", "bytes", "datetime"])
def test_unreadable_probabilities_count_their_rows(result):
    samples, faulted = _recorded(result, proba=True, calls=3)
    assert faulted == 0
    assert _get(samples, "inferwatch_batch_size_sum") == 2 * 3
    assert _get(samples, "inferwatch_batch_size_count") == 3
    assert _get(samples, "inferwatch_invalid_predictions_total",
                reason="unsupported_type") == 2 * 3
    assert not _classes(samples) and not _outputs(samples)


# --- a nullable Float64 probability frame: each NA row is missing, the rest recorded -------

@_FEW
@given(rows=st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), min_size=1, max_size=6),
       calls=st.integers(1, 3))
def test_nullable_probability_frame_records_its_complete_rows(rows, calls):
    first = pd.array(rows, dtype="Float64")
    second = pd.array([None if p is None else 1.0 - p for p in rows], dtype="Float64")
    frame = pd.DataFrame({"legit": first, "fraud": second})
    samples, faulted = _recorded(frame, proba=True, calls=calls)
    assert faulted == 0
    complete = [p for p in rows if p is not None]
    assert _get(samples, "inferwatch_batch_size_sum") == len(rows) * calls
    assert _get(samples, "inferwatch_invalid_predictions_total", reason="nan") == \
        rows.count(None) * calls
    assert _get(samples, "inferwatch_invalid_predictions_total",
                reason="unsupported_type") == 0
    assert sum(_classes(samples).values()) == len(complete) * calls
    assert _get(samples, "inferwatch_prediction_count", output="legit") == len(complete) * calls
    assert _get(samples, "inferwatch_prediction_sum", output="legit") == pytest.approx(
        sum(complete) * calls)
