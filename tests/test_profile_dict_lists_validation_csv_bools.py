"""Three ways training data was profiled apart from the live data it describes: a dict of
plain lists, a probability matrix scored without its class names, and CSV booleans."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from inferwatch.quality import profile_cli
from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.drift import DriftScorer
from inferwatch.quality.reference import Reference, ReferenceError
from inferwatch.quality.validation import score

# --- 1. a dict of plain lists ---------------------------------------------------------------

# What a column built by hand or by df[c].tolist() holds: text beside missing values, whole
# floats (a code read as 10115.0), numbers and bools.
CELLS = st.one_of(st.sampled_from(["Paris", "Rome", "10115", "SW1A"]),
                  st.sampled_from([float("nan"), None]),
                  st.sampled_from([10115.0, 75001.0, 0.5, -2.25]),
                  st.integers(-5, 5), st.booleans())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 40).flatmap(
    lambda n: st.lists(st.lists(CELLS, min_size=n, max_size=n), min_size=1, max_size=3)))
def test_a_dict_of_lists_is_profiled_as_the_dataframe_of_the_same_lists(columns):
    data = {f"c{i}": column for i, column in enumerate(columns)}
    try:
        expected = Reference.from_data(pd.DataFrame(data), bins=3).to_dict()
    except ReferenceError:
        return  # a column no container can profile (all missing in one way, say)
    assert Reference.from_data(data, bins=3).to_dict() == expected


def test_training_rows_sent_live_as_a_dict_of_lists_show_no_drift():
    rng = np.random.default_rng(0)
    n = 2000
    city = [math.nan if rng.random() < 0.3 else str(rng.choice(["Paris", "Rome", "Oslo"]))
            for _ in range(n)]
    zipc = [str(rng.choice(["SW1A", "EC1A"])) if rng.random() < 0.5 else
            float(rng.choice([10115, 75001])) for _ in range(n)]
    train = {"city": city, "zip": zipc}
    ref = Reference.from_data(train)
    assert set(ref.features["city"].categories) == {"Oslo", "Paris", "Rome", "__other__"}
    assert ref.features["city"].missing_rate == pytest.approx(city.count(math.nan) / n, abs=0.02)
    assert set(ref.features["zip"].categories) == {"10115", "75001", "EC1A", "SW1A",
                                                   "__other__"}
    result = BatchChecker(ref).check(train)  # the live checks read the same dict
    assert result.unseen_category.tolist() == [0, 0]
    psi = DriftScorer(ref).arrays(result.flat_bin_counts)["psi"]
    assert np.all(psi < 1e-9)


def test_numbers_and_bools_in_one_list_keep_their_types():
    data = {"n": [1, 2.5, None, 4], "b": [True, 2.5, False, 1.0]}
    ref = Reference.from_data(data)
    assert ref.features["n"].is_numeric and ref.features["n"].missing_rate == 0.25
    # A bool beside numbers is no 1.0: the column is categories, as in a DataFrame.
    assert ref.features["b"].categories == ("1", "2.5", "False", "True", "__other__")
    assert ref == Reference.from_data(pd.DataFrame(data))


# --- 2. a probability matrix scored without class names -----------------------------------

def _classifier(labels_of):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = labels_of(X[:, 0] > 0)
    return X, y, LogisticRegression().fit(X, y)


def test_probabilities_whose_columns_are_no_label_are_refused_naming_the_fix():
    X, y, clf = _classifier(lambda positive: np.where(positive, "fraud", "legit"))
    with pytest.raises(ValueError, match=r"prediction_names=list\(model.classes_\)"):
        Reference.from_data(X, predictions=clf.predict_proba(X), y_true=y)
    named = Reference.from_data(X, predictions=clf.predict_proba(X), y_true=y,
                                prediction_names=list(clf.classes_))
    assert named.validation.value == pytest.approx(clf.score(X, y))


def test_numbered_columns_with_labels_that_are_not_their_numbers_are_refused():
    # Classes 1 and 2: label 1 is also column "1" (class 2), so some label matches a name,
    # yet every row would be scored against the wrong class.
    X, y, clf = _classifier(lambda positive: positive.astype(int) + 1)
    with pytest.raises(ValueError, match="prediction_names"):
        Reference.from_data(X, predictions=clf.predict_proba(X), y_true=y)


@pytest.mark.parametrize("labels_of", [lambda p: p.astype(int), lambda p: p,
                                       lambda p: p.astype(float)])
def test_columns_numbered_as_the_classes_still_score(labels_of):
    X, y, clf = _classifier(labels_of)
    ref = Reference.from_data(X, predictions=clf.predict_proba(X), y_true=y)
    assert ref.validation.value == pytest.approx(clf.score(X, y))


def test_named_columns_keep_scoring_a_label_the_model_never_predicts_as_a_miss():
    probabilities = {"no": np.array([0.9, 0.2, 0.6]), "yes": np.array([0.1, 0.8, 0.4])}
    assert score(probabilities, ["no", "yes", "maybe"]).value == pytest.approx(2 / 3)


def _profile(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    profile_cli.add_arguments(parser)
    return profile_cli.run(parser.parse_args(argv))


def test_the_cli_refuses_probability_columns_no_label_names(tmp_path, capsys):
    X, y, clf = _classifier(lambda positive: positive.astype(int))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    proba = clf.predict_proba(X)
    frame["p_0"], frame["p_1"], frame["label"] = proba[:, 0], proba[:, 1], y
    frame.to_csv(tmp_path / "val.csv", index=False)
    out = tmp_path / "val.json"
    code = _profile([str(tmp_path / "val.csv"), "-o", str(out), "--predictions-column",
                     "p_0,p_1", "--target", "label"])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    [line] = err.splitlines()
    assert "--predictions-column" in line and "'p_0'" in line and "--target" in line
    # Named by their classes, the same columns score.
    frame.rename(columns={"p_0": "0", "p_1": "1"}).to_csv(tmp_path / "val.csv", index=False)
    code = _profile([str(tmp_path / "val.csv"), "-o", str(out), "--predictions-column",
                     "0,1", "--target", "label"])
    assert code == 0, capsys.readouterr().err
    assert Reference.load(out).validation.value == pytest.approx(clf.score(X, y))


# --- 3. CSV booleans ------------------------------------------------------------------------

@pytest.mark.parametrize("true, false", [("true", "false"), ("True", "False"),
                                         ("TRUE", "FALSE")])
def test_csv_booleans_meet_live_booleans_as_from_data_reads_them(tmp_path, true, false):
    csv = tmp_path / "train.csv"
    csv.write_text(f"is_new,amount,pred\n{true},1.5,{true}\n{false},2.5,{false}\n"
                   f"{true},3.0,{false}\n,1.0,{true}\n")
    out = tmp_path / "ref.json"
    assert _profile([str(csv), "-o", str(out), "--predictions-column", "pred"]) == 0
    cli = Reference.load(out)
    api = Reference.from_data(pd.read_csv(csv).drop(columns="pred"),
                              predictions={"pred": pd.read_csv(csv)["pred"]})
    assert cli == api
    live = [{"is_new": True, "amount": 2.0}, {"is_new": False, "amount": 2.0}]
    assert BatchChecker(cli).check(live).unseen_category.tolist() == [0, 0]


def test_a_text_column_that_only_starts_like_booleans_keeps_its_text(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("flag,amount\ntrue,1.5\nfalse,2.5\nunknown,3.0\n")
    out = tmp_path / "ref.json"
    assert _profile([str(csv), "-o", str(out)]) == 0
    assert Reference.load(out).features["flag"].categories == (
        "false", "true", "unknown", "__other__")
