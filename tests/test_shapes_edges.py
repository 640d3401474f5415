"""Output shapes met in the field that were recorded wrongly: each is recorded by its rows,
the caller gets the model's own object back, and nothing becomes an internal fault."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults
from recorded_samples import predicted_classes, recorded, sample

_FEW = settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def recorded_prediction(result: object, **options: object) -> tuple[dict, int]:
    """``recorded``, counting the internal faults of reading predictions alone."""
    return recorded(result, fault_kind="prediction", **options)


# bfloat16 values: numpy has no such dtype, and torch refuses .numpy() on one.
_BF16_VALUES = st.lists(st.sampled_from([0.0, 0.5, -1.25, 3.0, 1024.0, 0.0078125]),
                        min_size=1, max_size=6)


@pytest.mark.torch
@_FEW
@given(values=_BF16_VALUES, calls=st.integers(1, 3))
def test_bfloat16_tensor_outputs_are_recorded(values, calls):
    torch = pytest.importorskip("torch")
    column = torch.tensor(values, dtype=torch.bfloat16).reshape(-1, 1)
    samples, faulted = recorded_prediction(column, calls=calls)
    assert faulted == 0
    assert sample(samples, "inferwatch_batch_size_sum") == len(values) * calls
    assert sample(samples, "inferwatch_prediction_count", output="value") == len(values) * calls
    assert sample(samples, "inferwatch_prediction_sum", output="value") == pytest.approx(
        sum(values) * calls)
    heads = (torch.tensor(values, dtype=torch.bfloat16), torch.zeros(len(values)))
    samples, faulted = recorded_prediction(heads, calls=calls)
    assert faulted == 0
    assert sample(samples, "inferwatch_prediction_sum", output="0") == pytest.approx(
        sum(values) * calls)


@pytest.mark.torch
@_FEW
@given(labels=st.lists(st.integers(0, 9), min_size=2, max_size=40), calls=st.integers(1, 3))
def test_integer_tensor_is_a_batch_of_class_labels(labels, calls):
    """``logits.argmax(dim=1)``: n class ids, not one sample of n outputs whose labels
    would be position-prefixed (``"17:3"``) and grow with the batch."""
    torch = pytest.importorskip("torch")
    samples, faulted = recorded_prediction(torch.tensor(labels), calls=calls)
    assert faulted == 0
    assert sample(samples, "inferwatch_batch_size_sum") == len(labels) * calls
    expected = {str(v): float(labels.count(v) * calls) for v in set(labels)}
    assert predicted_classes(samples) == expected
    flags = torch.tensor([v > 4 for v in labels])
    samples, _ = recorded_prediction(flags)
    assert predicted_classes(samples) == {str(v): float(sum(1 for f in labels if (f > 4) == v))
                                 for v in {f > 4 for f in labels}}


@_FEW
@given(values=st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), min_size=1, max_size=20),
       calls=st.integers(1, 3))
def test_floats_with_missing_values_in_an_object_array_are_values(values, calls):
    """A JSON-decoded output (``[0.3, null, 0.9]``): its numbers are predictions and each
    null a missing one, not every row an unsupported type."""
    if all(v is None for v in values):
        values = [*values, 0.5]
    for result in (values, np.array(values, dtype=object)):
        samples, faulted = recorded_prediction(result, calls=calls)
        assert faulted == 0
        present = [v for v in values if v is not None]
        assert sample(samples, "inferwatch_batch_size_sum") == len(values) * calls
        assert sample(samples, "inferwatch_prediction_count", output="value") == \
            len(present) * calls
        assert sample(samples, "inferwatch_prediction_sum", output="value") == pytest.approx(
            sum(present) * calls)
        assert sample(samples, "inferwatch_invalid_predictions_total", reason="nan") == \
            (len(values) - len(present)) * calls
        assert sample(samples, "inferwatch_invalid_predictions_total",
                      reason="unsupported_type") == 0


@_FEW
@given(labels=st.lists(st.one_of(st.none(), st.sampled_from(["cat", "dog"])), min_size=1,
                       max_size=20))
def test_a_null_class_label_counts_as_missing(labels):
    """A polars column of labels with nulls: a null is a missing prediction (as pandas'
    ``pd.NA`` is), not an unsupported type."""
    pl = pytest.importorskip("polars")
    for column in (pl.Series(labels, dtype=pl.Utf8), np.array(labels, dtype=object)):
        samples, faulted = recorded_prediction(column, classes=["cat", "dog"])
        assert faulted == 0
        assert sample(samples, "inferwatch_invalid_predictions_total", reason="nan") == \
            labels.count(None)
        assert sample(samples, "inferwatch_invalid_predictions_total",
                      reason="unsupported_type") == 0
        assert predicted_classes(samples) == {v: float(labels.count(v))
                                              for v in set(labels) - {None}}
    flags = pl.Series([True, None, False, True])
    samples, _ = recorded_prediction(flags)
    assert predicted_classes(samples) == {"True": 2.0, "False": 1.0}
    assert sample(samples, "inferwatch_invalid_predictions_total", reason="nan") == 1


def test_sparse_multilabel_predictions_are_their_rows():
    """OneVsRestClassifier fitted on a sparse label matrix predicts a scipy.sparse matrix:
    one row per sample, a class column per label."""
    sp = pytest.importorskip("scipy.sparse")
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0], axis=1).astype(int)
    fitted = OneVsRestClassifier(LogisticRegression()).fit(x, sp.csr_matrix(y))
    out = fitted.predict(x[:7])
    assert sp.issparse(out)
    samples, faulted = recorded_prediction(out, calls=2)
    dense = out.toarray()
    assert faulted == 0
    assert sample(samples, "inferwatch_batch_size_sum") == 14
    assert predicted_classes(samples) == {f"{j}:{v}": 2.0 * float((dense[:, j] == v).sum())
                                 for j in range(2) for v in set(dense[:, j].tolist())}
    column = sp.csr_matrix(np.array([[0.25], [0.5], [2.0]]))
    samples, _ = recorded_prediction(column, task="regression")
    assert sample(samples, "inferwatch_batch_size_sum") == 3
    assert sample(samples, "inferwatch_prediction_sum", output="value") == 2.75


@_FEW
@given(rows=st.lists(st.floats(0, 1), min_size=1, max_size=10), calls=st.integers(1, 3))
def test_predict_proba_as_a_dataframe_is_probabilities(rows, calls):
    """AutoGluon's and H2O's predict_proba return a DataFrame with a column per class."""
    frame = pd.DataFrame({"no": [1.0 - p for p in rows], "yes": rows})
    samples, faulted = recorded_prediction(frame, proba=True, calls=calls)
    assert faulted == 0
    assert sample(samples, "inferwatch_prediction_confidence_count") == len(rows) * calls
    top = ["yes" if p > 1.0 - p else "no" for p in rows]
    assert predicted_classes(samples) == {c: float(top.count(c) * calls) for c in set(top)}
    assert sample(samples, "inferwatch_prediction_sum", output="yes") == pytest.approx(
        sum(rows) * calls)


def test_pyarrow_array_with_nulls_is_recorded():
    pa = pytest.importorskip("pyarrow")
    samples, faulted = recorded_prediction(pa.array([1.5, None, 2.5]), calls=2)
    assert faulted == 0
    assert sample(samples, "inferwatch_batch_size_sum") == 6
    assert sample(samples, "inferwatch_prediction_sum", output="value") == 8.0
    assert sample(samples, "inferwatch_invalid_predictions_total", reason="nan") == 2


@_FEW
@given(shape=st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(1, 3)))
def test_rows_of_a_higher_rank_output_are_its_first_dimension(shape):
    """A (batch, sequence, k) output is batch rows, whatever it holds per row."""
    values = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) / 10
    samples, faulted = recorded_prediction(values)
    assert faulted == 0
    assert sample(samples, "inferwatch_batch_size_sum") == shape[0]
    assert sample(samples, "inferwatch_prediction_count", output="value") == values.size
    samples, _ = recorded_prediction(np.full(shape, 0.5), proba=True)
    assert sample(samples, "inferwatch_batch_size_sum") == shape[0]
    assert sample(samples, "inferwatch_invalid_predictions_total", reason="bad_shape") == 1


@_FEW
@given(calls=st.lists(st.tuples(st.booleans(), st.lists(st.integers(0, 200), min_size=1,
                                                        max_size=5)), min_size=2, max_size=8))
def test_signed_and_unsigned_labels_in_one_drain_stay_classes(calls):
    """Calls returning int64 labels and calls returning uint64 labels, drained together,
    count as the classes they are (numpy would join them as floats)."""
    from conftest import Scraper

    if len({unsigned for unsigned, _ in calls}) == 1:
        calls = [*calls, (not calls[0][0], [7])]
    arrays = iter([np.array(labels, dtype=np.uint64 if unsigned else np.int64)
                   for unsigned, labels in calls])
    scraper = Scraper(drain_interval=3600)
    try:
        predict = inferwatch.instrument(lambda x: next(arrays), name="m", version="1",
                                        registry=scraper.registry)
        for _ in calls:
            predict(None)
        counts = {s.labels["class"]: s.value for s in scraper.samples()
                  if s.name == "inferwatch_predicted_class_total" and s.value}
        unsupported = scraper.value("inferwatch_invalid_predictions_total",
                                    reason="unsupported_type") or 0
    finally:
        scraper.registry.close()
    everything = [v for _, labels in calls for v in labels]
    assert counts == {str(v): float(everything.count(v)) for v in set(everything)}
    assert unsupported == 0


@pytest.mark.torch
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(st.floats(-3, 3), st.just(float("nan")), st.just(50.0)),
                         min_size=3, max_size=3), min_size=1, max_size=6))
def test_bfloat16_input_tensors_are_checked_against_the_reference(rows):
    """A model fed bfloat16 tensors, with a reference profile: the quality counts are those
    of the same values in float32 (np.asarray refuses bfloat16, and every check was an
    internal error)."""
    torch = pytest.importorskip("torch")

    from inferwatch.core.registry import Registry

    reference = inferwatch.Reference.from_data(np.random.default_rng(0).normal(size=(100, 3)))
    counts = []
    before = faults.internal_error_counts().get("quality", 0)
    for dtype in (torch.bfloat16, torch.float32):
        registry = Registry(drain_interval=3600)
        try:
            model = inferwatch.instrument(lambda x: x.sum(dim=1), name="m", version="1",
                                          reference=reference, registry=registry)
            model(torch.tensor(rows, dtype=torch.float32).to(dtype))
            registry.drain()
            state = registry.monitor("m", "1").state
            counts.append({name: state.counters.get(name, {}) for name in (
                "inferwatch_feature_missing_total", "inferwatch_feature_out_of_range_total",
                "inferwatch_input_errors_total")})
        finally:
            registry.close()
    assert counts[0] == counts[1]
    assert sum(counts[0]["inferwatch_feature_missing_total"].values()) == sum(
        v != v for row in rows for v in row)
    assert faults.internal_error_counts().get("quality", 0) == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=8),
       st.lists(st.sampled_from([10**400, -(10**400), 2**1024]), min_size=1, max_size=3))
def test_integers_past_the_float_range_among_floats_count_as_inf(values, huge):
    """Python keeps a JSON body's 400-digit integer exact: among float outputs it
    is an infinite value (it raised in the drain and lost the call)."""
    result = [*values, *huge]
    samples, faulted = recorded_prediction(result)
    assert faulted == 0
    assert sample(samples, "inferwatch_invalid_predictions_total", reason="inf") == len(huge)
    assert sample(samples, "inferwatch_prediction_count", output="value") == len(values)


def _binary_figures(result: object) -> dict:
    """Rows, classes and invalid counts of `predict_proba` returning `result`, for a model
    whose ``classes_`` names two classes."""
    from inferwatch.core.registry import Registry

    class Binary:
        classes_ = np.array(["legit", "fraud"])

        def predict_proba(self, x: object) -> object:
            return result

    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(Binary(), name="m", version="1", registry=registry)
        model.predict_proba(None)
        registry.drain()
        state = registry.monitor("m", "1").state
        return {"rows": state.histograms["inferwatch_batch_size"][()].sum,
                "classes": state.counters.get("inferwatch_predicted_class_total", {}),
                "invalid": {k: v for k, v in state.counters.get(
                    "inferwatch_invalid_predictions_total", {}).items() if v}}
    finally:
        registry.close()


@pytest.mark.torch
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.floats(0, 1), min_size=1, max_size=8))
def test_a_binary_classifiers_1d_probability_tensor_reads_as_the_array_does(values):
    """``torch.sigmoid(logits).squeeze()`` from a model whose ``classes_`` names two
    classes: a column of positive-class probabilities, one row each, as the same numpy
    array is read. Taken for one unbatched sample, a batch of three was one row of three
    classes, predicting a class `2` the model does not have."""
    torch = pytest.importorskip("torch")

    array = np.array(values)
    assert _binary_figures(torch.tensor(values, dtype=torch.float64)) == \
        _binary_figures(array)
    if len(values) != 2:
        assert set(_binary_figures(torch.tensor(values))["classes"]) <= {("legit",),
                                                                          ("fraud",)}
