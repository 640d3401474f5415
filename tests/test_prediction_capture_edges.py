"""Call results met in the field whose rows, classes or probabilities were recorded wrongly:
each is counted by its rows, with its nulls as missing values, and never raises."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorded_samples import predicted_classes, recorded, sample

_FEW = settings(max_examples=20, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


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
    samples, faulted = recorded(result, calls=calls)
    assert faulted == 0
    present = [v for v in labels if v is not None]
    expected = {str(v): float(present.count(v) * calls) for v in set(present)}
    # As the same labels in a pandas Int64 column are: classes, never regression values.
    assert predicted_classes(samples) == expected
    assert not _outputs(samples)
    assert sample(samples, "inferwatch_invalid_predictions_total", reason="nan") == \
        labels.count(None) * calls
    assert sample(samples, "inferwatch_batch_size_sum") == len(labels) * calls


def test_polars_labels_with_nulls_match_pandas_nullable_labels():
    pl = pytest.importorskip("polars")
    labels = [1, None, 0, 1]
    from_polars, _ = recorded(pl.Series(labels), calls=2)
    from_pandas, _ = recorded(pd.Series(labels, dtype="Int64"), calls=2)
    assert predicted_classes(from_polars) == predicted_classes(from_pandas) == {"0": 2.0, "1": 4.0}


# --- predict_proba that cannot be read still counts its rows ------------------------------

@pytest.mark.parametrize("result", [
    np.array([[1 + 2j, 0j], [0.5 + 0j, 0.5 + 0j]]),
    np.array([["a", "b"], ["c", "d"]], dtype=object),
    np.array([[b"a", b"b"], [b"c", b"d"]]),
    np.array([["2020-01-01", "2020-01-02"], ["2020-01-03", "2020-01-04"]],
             dtype="datetime64[D]"),
], ids=["complex", "objects", "bytes", "datetime"])
def test_unreadable_probabilities_count_their_rows(result):
    samples, faulted = recorded(result, proba=True, calls=3)
    assert faulted == 0
    assert sample(samples, "inferwatch_batch_size_sum") == 2 * 3
    assert sample(samples, "inferwatch_batch_size_count") == 3
    assert sample(samples, "inferwatch_invalid_predictions_total",
                  reason="unsupported_type") == 2 * 3
    assert not predicted_classes(samples) and not _outputs(samples)


# --- a nullable Float64 probability frame: each NA row is missing, the rest recorded -------

@_FEW
@given(rows=st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), min_size=1, max_size=6),
       calls=st.integers(1, 3))
def test_nullable_probability_frame_records_its_complete_rows(rows, calls):
    first = pd.array(rows, dtype="Float64")
    second = pd.array([None if p is None else 1.0 - p for p in rows], dtype="Float64")
    frame = pd.DataFrame({"legit": first, "fraud": second})
    samples, faulted = recorded(frame, proba=True, calls=calls)
    assert faulted == 0
    complete = [p for p in rows if p is not None]
    assert sample(samples, "inferwatch_batch_size_sum") == len(rows) * calls
    assert sample(samples, "inferwatch_invalid_predictions_total", reason="nan") == \
        rows.count(None) * calls
    assert sample(samples, "inferwatch_invalid_predictions_total",
                  reason="unsupported_type") == 0
    assert sum(predicted_classes(samples).values()) == len(complete) * calls
    assert sample(samples, "inferwatch_prediction_count", output="legit") == len(complete) * calls
    assert sample(samples, "inferwatch_prediction_sum", output="legit") == pytest.approx(
        sum(complete) * calls)
