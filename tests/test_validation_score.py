"""The validation score kept in a reference: computed, saved, exported, and checked."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_classification
from sklearn.linear_model import LinearRegression, LogisticRegression

import inferwatch
from inferwatch.quality import profile_cli
from inferwatch.quality.reference import Reference, ReferenceError
from inferwatch.quality.validation import Validation, score


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=1,
                max_size=50).filter(lambda rows: any(p % 1 for p, _ in rows)))
def test_continuous_predictions_are_scored_by_mean_absolute_error(rows):
    predicted = np.array([p for p, _ in rows])
    truth = np.array([y for _, y in rows])
    result = score(predicted, truth)
    assert result.metric == "mean_absolute_error" and result.rows == len(rows)
    assert result.value == pytest.approx(float(np.mean(np.abs(predicted - truth))))


def test_a_real_classifier_and_regressor_on_held_out_rows():
    X, y = make_classification(n_samples=600, n_features=5, random_state=0)
    clf = LogisticRegression().fit(X[:400], y[:400])
    held_out, labels = X[400:], y[400:]
    ref = Reference.from_data(held_out, clf.predict(held_out), y_true=labels)
    assert ref.validation == Validation("accuracy", clf.score(held_out, labels), 200)
    # Probabilities named by class: the argmax class is what is scored.
    proba = Reference.from_data(held_out, clf.predict_proba(held_out),
                                prediction_names=[str(c) for c in clf.classes_],
                                y_true=labels)
    assert proba.validation.value == pytest.approx(clf.score(held_out, labels))
    reg = LinearRegression().fit(X[:400], X[:400, 0] * 3 + 0.5)
    truth = held_out[:, 0] * 3 + 0.5 + 0.25
    ref = Reference.from_data(held_out, reg.predict(held_out), y_true=truth)
    assert ref.validation.metric == "mean_absolute_error"
    assert ref.validation.value == pytest.approx(0.25, abs=1e-6)


def test_saved_and_loaded_and_older_files_unchanged(tmp_path):
    ref = Reference.from_data({"x": [1.0, 2.0, 3.0]}, ["a", "b", "a"], y_true=["a", "a", "a"])
    path = tmp_path / "reference.json"
    ref.save(path)
    loaded = Reference.load(path)
    assert loaded.validation == Validation("accuracy", 2 / 3, 3) and loaded == ref
    plain = Reference.from_data({"x": [1.0, 2.0, 3.0]})
    assert "validation" not in plain.to_dict()  # files without labels keep their bytes


@pytest.mark.parametrize(("validation", "message"), [
    ({"metric": "f1", "value": 0.5, "rows": 3}, "metric must be one of"),
    ({"metric": "accuracy", "value": 1.5, "rows": 3}, "value 1.5 is not a valid accuracy"),
    ({"metric": "accuracy", "value": 0.5, "rows": 0}, "rows must be a positive integer"),
    ({"metric": "accuracy", "value": 0.5}, "expected keys"),
])
def test_a_bad_validation_in_a_file_is_named(tmp_path, validation, message):
    data = Reference.from_data({"x": [1.0, 2.0]}).to_dict() | {"validation": validation}
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ReferenceError, match=f"validation: {message}"):
        Reference.load(path)


def test_labels_without_predictions_or_of_another_length_are_refused():
    with pytest.raises(ReferenceError, match="y_true needs the predictions"):
        Reference.from_data({"x": [1.0, 2.0]}, y_true=[1, 0])
    with pytest.raises(ReferenceError, match="y_true: y_true has 3 rows"):
        Reference.from_data({"x": [1.0, 2.0]}, [1, 0], y_true=[1, 0, 1])


def test_profile_target_scores_the_prediction_column(tmp_path, capsys):
    frame = pd.DataFrame({"amount": [1.0, 2.0, 3.0, 4.0], "pred": [1, 0, 1, 1],
                          "label": [1, 0, 0, 1]})
    frame.to_csv(tmp_path / "val.csv", index=False)
    parser = argparse.ArgumentParser()
    profile_cli.add_arguments(parser)
    out = tmp_path / "ref.json"
    code = profile_cli.run(parser.parse_args([str(tmp_path / "val.csv"), "-o", str(out),
                                              "--predictions-column", "pred",
                                              "--target", "label"]))
    assert code == 0 and "validation accuracy 0.75" in capsys.readouterr().out
    ref = Reference.load(out)
    assert ref.feature_names == ["amount"] and ref.validation.value == 0.75
    for argv, message in ((["--target", "label"], "--target needs --predictions-column"),
                          (["--predictions-column", "pred", "--target", "nope"],
                           "unknown column 'nope' in --target"),
                          (["--predictions-column", "pred", "--target", "pred"],
                           "also a --predictions-column")):
        code = profile_cli.run(parser.parse_args([str(tmp_path / "val.csv"), "-o", str(out),
                                                  *argv]))
        assert code == 2 and message in capsys.readouterr().err


def test_the_model_exports_its_reference_score_in_both_formats(scraper):
    ref = Reference.from_data(np.arange(8.0).reshape(4, 2), [1, 0, 1, 1], y_true=[1, 0, 0, 1])
    model = inferwatch.instrument(lambda x: 1, name="fraud", version="2", reference=ref,
                                  registry=scraper.registry)
    model(np.ones((1, 2)))
    [sample] = [s for s in scraper.samples() if s.name == "inferwatch_reference_validation"]
    assert sample.labels == {"model": "fraud", "model_version": "2", "metric": "accuracy"}
    assert sample.value == 0.75
    from inferwatch.core.encode import Encoder

    page = Encoder().page(openmetrics=True)
    page.add(scraper.registry.monitor("fraud", "2").state, now=0.0)
    assert 'inferwatch_reference_validation{metric="accuracy",model="fraud",model_version="2"}' \
           ' 0.75' in page.text()


def test_the_score_survives_a_snapshot_round_trip_and_a_merge():
    from inferwatch.core.state import ModelState

    state = ModelState("fraud", "2", validation={"accuracy": 0.97})
    copy = ModelState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert copy.validation == {"accuracy": 0.97}
    other = ModelState("fraud", "2")
    other.merge(copy)
    assert other.validation == {"accuracy": 0.97}
