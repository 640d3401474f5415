"""A reference's validation score reads the predictions as the live path reads them: the
same task rule (auto, classification, regression), labels that can never match refused,
and an outcome too large for a float judged as an infinite one."""

from __future__ import annotations

import argparse
import fractions

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression

import inferwatch
from inferwatch.core.options import TASKS as INSTRUMENT_TASKS
from inferwatch.core.outcomes import OutcomeJoiner
from inferwatch.quality import profile_cli, validation
from inferwatch.quality.category_keys import category_key, is_missing
from inferwatch.quality.reference import Reference, ReferenceError
from inferwatch.quality.validation import SAME_CLASSES, ValidationError, score


def run_profile(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inferwatch profile")
    profile_cli.add_arguments(parser)
    return profile_cli.run(parser.parse_args(argv))


# --- labels that share no value with the predictions --------------------------------------

def test_decoded_predictions_on_an_encoded_target_are_refused_naming_the_fix():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)  # a LabelEncoder's 0/1
    X = pd.DataFrame({"a": y + rng.normal(0, 0.1, 300)})
    predicted = np.where(X["a"].to_numpy() > 0.5, "fraud", "legit")
    with pytest.raises(ReferenceError) as caught:
        Reference.from_data(X, predictions=predicted, y_true=y)
    message = str(caught.value)
    assert "no prediction is one of the labels" in message
    assert "'fraud'" in message and "0" in message and "inverse_transform" in message


def test_bools_against_ones_and_zeros_are_one_class_not_disjoint():
    # True and 1 are one class, as a live outcome judges them.
    validation = score(np.array([True, False, True]), [1, 0, 0])
    assert validation.metric == "accuracy" and validation.value == pytest.approx(2 / 3)


LABELS = st.sampled_from(["a", "b", "c", 1, 2, 0, 0.0, True, False, None])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(LABELS, LABELS), min_size=1, max_size=60))
def test_accuracy_or_a_refusal_when_no_prediction_can_be_right(pairs):
    predicted = np.array([p for p, _ in pairs], dtype=object)
    truth = [y for _, y in pairs]
    # Numbers with a float among them are a regressor's values unless declared labels.
    task = "classification" if any(isinstance(p, float) for p, _ in pairs) else "auto"
    labelled = [(p, y) for p, y in pairs if not is_missing(y)]
    if not labelled:
        with pytest.raises(ValidationError, match="no row with a label"):
            score(predicted, truth, task)
        return

    def same(key: str) -> str:
        return {"True": "1", "False": "0"}.get(key, key)

    predicted_classes = {same(category_key(p)) for p, _ in labelled if p is not None}
    label_classes = {same(category_key(y)) for _, y in labelled}
    if predicted_classes and predicted_classes.isdisjoint(label_classes):
        with pytest.raises(ValidationError, match="no prediction is one of the labels"):
            score(predicted, truth, task)
        return
    expected = sum(p is not None and (category_key(p) == category_key(y) or
                                      (category_key(p), category_key(y)) in SAME_CLASSES)
                   for p, y in labelled) / len(labelled)
    result = score(predicted, truth, task)
    assert result.metric == "accuracy" and result.rows == len(labelled)
    assert result.value == pytest.approx(expected)


def test_profile_refuses_a_prediction_column_no_target_value_matches(tmp_path, capsys):
    pd.DataFrame({"amount": [1.0, 2.0, 3.0, 4.0], "pred": ["fraud", "legit"] * 2,
                  "label": [1, 0, 1, 0]}).to_csv(tmp_path / "val.csv", index=False)
    code = run_profile([str(tmp_path / "val.csv"), "-o", str(tmp_path / "ref.json"),
                        "--predictions-column", "pred", "--target", "label"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--predictions-column 'pred'" in err and "--target 'label'" in err
    assert "'fraud'" in err and "same classes" in err
    assert not (tmp_path / "ref.json").exists()


# --- the task rule: the same as the live path's ----------------------------------------------

def test_the_tasks_are_instruments():
    # The quality package does not import the hot path: the two lists are kept equal here.
    assert validation.TASKS == profile_cli.TASKS == INSTRUMENT_TASKS


def test_a_regressor_with_whole_number_predictions_is_scored_by_its_error(scraper):
    rng = np.random.default_rng(2)
    X = pd.DataFrame({"sqm": rng.uniform(30, 200, 600)})
    price = (X.sqm * 3000 + rng.normal(0, 20000, 600)).round().to_numpy()
    model = LinearRegression().fit(X, price)
    predicted = np.round(model.predict(X))  # floats, every one a whole number
    ref = Reference.from_data(X, predictions=predicted, y_true=price)
    assert ref.validation.metric == "mean_absolute_error"
    assert ref.validation.value == pytest.approx(float(np.mean(np.abs(predicted - price))))
    # Live, the same model's outcomes are errors too: the two agree on what it is.
    wrapped = inferwatch.instrument(lambda frame: np.round(model.predict(frame)), name="house",
                                    version="1", reference=ref, registry=scraper.registry)
    monitor = inferwatch.monitor("house", "1", registry=scraper.registry)
    for i in range(20):
        wrapped(X.iloc[i:i + 1], request_id=f"h{i}")
        monitor.record_outcome(f"h{i}", float(price[i]))
    assert scraper.value("inferwatch_outcome_error_count") == 20
    assert scraper.total("inferwatch_outcomes_total") == 0
    assert scraper.value("inferwatch_reference_validation",
                         metric="mean_absolute_error") == pytest.approx(ref.validation.value)


# Outputs of every kind a predict returns, each with labels it can be scored on.
OUTPUTS = {
    "whole floats": (np.array([1.0, 0.0, 1.0, 1.0]), [1, 0, 0, 1]),
    "fractional floats": (np.array([0.5, 1.5, 2.0, 3.0]), [1.0, 1.0, 2.0, 3.5]),
    "float32 zeros and ones": (np.array([1.0, 0.0, 1.0, 0.0], dtype=np.float32), [1, 0, 0, 0]),
    "ints": (np.array([1, 0, 2, 1]), [1, 0, 1, 1]),
    "bools": (np.array([True, False, True, True]), [1, 0, 0, 1]),
    "text": (np.array(["cat", "dog", "cat", "cat"]), ["cat", "dog", "dog", "cat"]),
}


@pytest.mark.parametrize("task", INSTRUMENT_TASKS)
@pytest.mark.parametrize("output", list(OUTPUTS))
def test_the_reference_reads_each_output_as_the_live_path_does(scraper, task, output):
    predicted, labels = OUTPUTS[output]
    if output == "text" and task == "regression":
        pytest.skip("live, text outputs are labels whatever the task; nothing to compare")
    classes = {"classes": ["cat", "dog"]} if output == "text" else {}
    ref = Reference.from_data({"x": np.arange(4.0)}, predictions=predicted, y_true=labels,
                              task=task)
    rows = iter(predicted.tolist())
    wrapped = inferwatch.instrument(lambda x: np.array([next(rows)], dtype=predicted.dtype),
                                    name="m", version="1", task=task,
                                    registry=scraper.registry, **classes)
    monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
    for i, label in enumerate(labels):
        wrapped([float(i)], request_id=f"r{i}")
        monitor.record_outcome(f"r{i}", label)
    judged_as_classes = scraper.total("inferwatch_outcomes_total")
    judged_as_values = scraper.value("inferwatch_outcome_error_count") or 0
    if ref.validation.metric == "accuracy":
        assert judged_as_values == 0 and judged_as_classes > 0
        if judged_as_classes == len(labels):  # live, 0.5 is no class: not judged at all
            correct = scraper.value("inferwatch_outcomes_total", result="correct") or 0
            assert ref.validation.value == correct / len(labels)
    else:
        assert judged_as_classes == 0 and judged_as_values == len(labels)
        assert ref.validation.value == pytest.approx(
            scraper.value("inferwatch_outcome_error_sum") / len(labels))
    assert validation.reads_as_values(predicted.dtype.kind, task) == (
        ref.validation.metric == "mean_absolute_error")


def test_a_float_zero_one_classifier_scores_accuracy_once_declared(scraper):
    predicted = np.array([1.0, 0.0, 1.0, 0.0], dtype=np.float32)
    assert score(predicted, [1, 0, 0, 0]).metric == "mean_absolute_error"  # auto: values
    validation = score(predicted, [1, 0, 0, 0], task="classification")
    assert validation.metric == "accuracy" and validation.value == 0.75


def test_object_outputs_are_read_as_the_live_path_reads_them():
    # A list of floats with a gap: values, as live (a regressor's None row).
    assert score(np.array([1.5, None, 2.0], dtype=object), [1.0, 2.0, 2.0]).metric == \
        "mean_absolute_error"
    # Integers with a gap stay labels.
    assert score(np.array([1, None, 2], dtype=object), [1, 2, 2]).metric == "accuracy"


def test_a_bad_task_is_refused_as_instrument_refuses_it():
    with pytest.raises(ValueError) as live:
        inferwatch.instrument(lambda x: 1, name="m", task="regresion")
    expected = "task must be one of ('auto', 'classification', 'regression'), got 'regresion'"
    assert expected in str(live.value)
    for y_true in (None, [1.0, 2.0]):
        with pytest.raises(ReferenceError) as caught:
            Reference.from_data({"x": [1.0, 2.0]}, predictions=[1.5, 2.5], y_true=y_true,
                                task="regresion")
        assert expected in str(caught.value)


def test_several_outputs_follow_the_declared_task():
    outputs = {"0": np.array([1.0, 2.0]), "1": np.array([5.0, 6.0])}
    table = [[1.5, 5.0], [2.0, 8.0]]
    assert score(outputs, table, task="regression").value == 0.625
    # Integer outputs of a declared regressor are values too.
    ints = {"0": np.array([1, 2]), "1": np.array([5, 6])}
    assert score(ints, table, task="regression").metric == "mean_absolute_error"
    with pytest.raises(ValidationError, match="one column per output"):
        score(outputs, [1.0, 2.0], task="regression")
    with pytest.raises(ValidationError, match="one label a row"):
        score(outputs, table, task="classification")


def test_the_task_is_kept_through_save_and_load(tmp_path):
    ref = Reference.from_data({"x": [1.0, 2.0, 3.0]}, predictions=[1.0, 0.0, 1.0],
                              y_true=[1, 0, 0], task="classification")
    path = tmp_path / "reference.json"
    ref.save(path)
    loaded = Reference.load(path)
    assert loaded == ref and loaded.validation.metric == "accuracy"
    assert "task" not in ref.to_dict()  # the metric says it: older files keep their bytes


@pytest.mark.parametrize(("written", "task", "metric"), [
    (["1", "0", "1", "1"], None, "accuracy"),  # ints: a classifier's labels
    (["1.0", "0.0", "1.0", "1.0"], None, "mean_absolute_error"),  # floats: values
    (["250000.0", "180000.0", "99000.0", "120000.0"], None, "mean_absolute_error"),
    (["1.0", "0.0", "1.0", "1.0"], "classification", "accuracy"),
    (["1", "0", "1", "1"], "regression", "mean_absolute_error"),
    (["1", "", "1", "1"], None, "accuracy"),  # a missing prediction keeps ints ints
])
def test_profile_reads_a_csv_prediction_column_as_written(tmp_path, capsys, written, task,
                                                          metric):
    labels = ["1", "0", "0", "1"] if written[0] in ("1", "1.0") else \
        ["250000", "170000", "100000", "121000"]
    rows = "".join(f"{i}.5,{p},{y}\n" for i, (p, y) in enumerate(zip(written, labels)))
    (tmp_path / "val.csv").write_text("amount,pred,label\n" + rows)
    argv = [str(tmp_path / "val.csv"), "-o", str(tmp_path / "ref.json"),
            "--predictions-column", "pred", "--target", "label"]
    code = run_profile(argv + (["--task", task] if task else []))
    assert code == 0, capsys.readouterr().err
    assert Reference.load(tmp_path / "ref.json").validation.metric == metric


@pytest.mark.parametrize(("predictions", "metric"), [
    (pd.array([1, None, 0, 1], dtype="Int64"), "accuracy"),  # ints with a gap: still labels
    (np.array([1, 0, 0, 1]), "accuracy"),
    (np.array([1.0, 0.0, 0.0, 1.0]), "mean_absolute_error"),  # floats: values
])
def test_profile_reads_a_parquet_prediction_column_as_typed(tmp_path, capsys, predictions,
                                                           metric):
    pytest.importorskip("pyarrow")
    pd.DataFrame({"amount": [1.5, 2.5, 3.5, 4.5], "pred": predictions,
                  "label": [1, 0, 1, 1]}).to_parquet(tmp_path / "val.parquet")
    code = run_profile([str(tmp_path / "val.parquet"), "-o", str(tmp_path / "ref.json"),
                        "--predictions-column", "pred", "--target", "label"])
    assert code == 0, capsys.readouterr().err
    assert Reference.load(tmp_path / "ref.json").validation.metric == metric


def test_profile_refuses_a_bad_task_and_a_task_without_a_target(tmp_path, capsys):
    pd.DataFrame({"amount": [1.0, 2.0], "pred": [1, 0], "label": [1, 1]}).to_csv(
        tmp_path / "val.csv", index=False)
    parser = argparse.ArgumentParser(prog="inferwatch profile")
    profile_cli.add_arguments(parser)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args([str(tmp_path / "val.csv"), "-o", "r.json", "--task", "regresion"])
    assert exited.value.code == 2 and "invalid choice: 'regresion'" in capsys.readouterr().err
    code = run_profile([str(tmp_path / "val.csv"), "-o", str(tmp_path / "r.json"),
                        "--predictions-column", "pred", "--task", "classification"])
    assert code == 2 and "--task needs --target" in capsys.readouterr().err


# --- an outcome too large for a float -----------------------------------------------------

@pytest.mark.parametrize("label", [10**400, -(10**400), fractions.Fraction(10**400, 3)],
                         ids=["int", "negative int", "fraction"])
def test_a_target_past_the_float_range_is_a_missing_label(label):
    joiner = OutcomeJoiner()
    joiner.remember("r", None, (2.5,), at=0.0)
    joined = joiner.join("r", label, at=1.0)
    assert joined.unmatched is None and joined.errors == () and joined.missing_labels == 1


def test_a_huge_regression_outcome_counts_as_missing_label_live(scraper):
    wrapped = inferwatch.instrument(lambda x: 2.5, name="r", version="1",
                                    registry=scraper.registry)
    monitor = inferwatch.monitor("r", "1", registry=scraper.registry)
    for request_id, label in (("inf", float("inf")), ("big", 10**400), ("ok", 3.0)):
        wrapped([1.0], request_id=request_id)
        monitor.record_outcome(request_id, label)
    assert scraper.value("inferwatch_outcomes_unmatched_total", reason="missing_label") == 2
    assert scraper.value("inferwatch_outcomes_unmatched_total", reason="shape_mismatch") is None
    assert scraper.value("inferwatch_outcome_error_count") == 1
