"""Reference profiles: binning, categories, inputs, files and their errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inferwatch.catalogue import OTHER
from inferwatch.quality.profiling import profile_column
from inferwatch.quality.reference import Reference, ReferenceError


def test_continuous_column_gets_equal_quantile_bins():
    values = np.random.default_rng(0).normal(size=10_000)
    profile = profile_column("x", values, bins=10)
    assert profile.kind == "numeric" and profile.n_bins == 10
    np.testing.assert_allclose(profile.fractions, 0.1, atol=0.001)
    assert profile.min == values.min() and profile.max == values.max()
    assert profile.missing_rate == 0.0 and profile.count == 10_000
    assert list(profile.edges) == sorted(set(profile.edges))


def test_discrete_column_gets_one_bin_per_value_and_no_empty_bins():
    values = np.repeat([0, 1, 2], [500, 300, 200])
    profile = profile_column("n", values, bins=10)
    assert profile.edges == (1.0, 2.0)
    assert profile.fractions == (0.5, 0.3, 0.2)


def test_constant_column_keeps_open_bins_either_side():
    profile = profile_column("c", np.full(50, 3.0))
    assert profile.fractions == (0.0, 1.0, 0.0)
    assert profile.bin_index(2.9) == 0 and profile.bin_index(3.0) == 1
    assert profile.bin_index(3.1) == 2


def test_missing_values_are_excluded_from_fractions_and_counted():
    profile = profile_column("m", [1.0, None, np.nan, 2.0, 3.0, np.inf], bins=3)
    assert profile.missing_rate == pytest.approx(3 / 6)
    assert sum(profile.fractions) == pytest.approx(1.0)
    assert profile.max == 3.0


def test_all_missing_column_profiles_and_saves(tmp_path):
    ref = Reference.from_data({"empty": [np.nan, np.nan]})
    profile = ref.features["empty"]
    assert profile.fractions == (0.0,) and profile.min is None and profile.missing_rate == 1.0
    ref.save(tmp_path / "r.json")
    assert Reference.load(tmp_path / "r.json") == ref


def test_categories_are_capped_with_the_rest_in_other():
    values = ["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["d"] * 6 + ["e"] * 4
    profile = profile_column("cat", values, max_categories=2)
    assert profile.kind == "categorical"
    assert profile.categories == ("a", "b", OTHER)
    assert profile.fractions == (0.5, 0.3, 0.2)


def test_category_ties_are_broken_by_name_so_files_are_deterministic():
    profile = profile_column("cat", ["z", "y", "x", "y", "z", "x"], max_categories=2)
    assert profile.categories == ("x", "y", OTHER)


def test_dtype_decides_the_kind_unless_named_categorical():
    ref = Reference.from_data(pd.DataFrame({
        "num": [1.0, 2.0, 3.0, 4.0],
        "flag": [True, False, True, True],
        "text": ["a", "b", "a", None],
        "code": pd.Categorical(["x", "y", "x", "x"]),
        "zip": [10115, 10117, 10115, 10115],
        "nullable": pd.array([1, None, 3, 4], dtype="Int64"),
    }), categorical=["zip"])
    kinds = {name: p.kind for name, p in ref.features.items()}
    assert kinds == {"num": "numeric", "flag": "categorical", "text": "categorical",
                     "code": "categorical", "zip": "categorical", "nullable": "numeric"}
    assert ref.features["flag"].categories == ("True", "False", OTHER)
    assert ref.features["zip"].categories == ("10115", "10117", OTHER)
    assert ref.features["text"].missing_rate == 0.25
    assert ref.features["nullable"].missing_rate == 0.25


def test_array_dict_and_dataframe_inputs_give_the_same_reference():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    names = ["a", "b", "c"]
    from_array = Reference.from_data(X, feature_names=names)
    from_dict = Reference.from_data({n: X[:, i] for i, n in enumerate(names)})
    from_frame = Reference.from_data(pd.DataFrame(X, columns=names))
    assert from_array == from_dict == from_frame
    assert Reference.from_data(X).feature_names == ["x0", "x1", "x2"]
    assert Reference.from_data(X[:, 0]).feature_names == ["x0"]


def test_feature_names_select_columns_of_a_frame():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "label": [0, 1]})
    assert Reference.from_data(frame, feature_names=["b", "a"]).feature_names == ["b", "a"]
    with pytest.raises(ReferenceError, match=r"no column named \['zz'\]"):
        Reference.from_data(frame, feature_names=["zz"])


def test_prediction_shapes():
    X = np.zeros((4, 1))
    assert Reference.from_data(X, predictions=np.arange(4.0)).output_names == ["value"]
    proba = np.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5], [0.3, 0.7]])
    assert Reference.from_data(X, predictions=proba).output_names == ["0", "1"]
    named = Reference.from_data(X, predictions=proba, prediction_names=["legit", "fraud"])
    assert named.output_names == ["legit", "fraud"]
    assert named.predictions["fraud"].max == 0.9
    labels = Reference.from_data(X, predictions={"label": ["a", "b", "a", "a"]})
    assert labels.outputs["label"].kind == "categorical"
    with pytest.raises(ReferenceError, match="predictions have 3 rows but X has 4"):
        Reference.from_data(X, predictions=np.arange(3.0))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"bins": 0}, "bins must be a positive integer"),
    ({"max_categories": 0}, "max_categories must be a positive integer"),
    ({"categorical": ["nope"]}, r"categorical names unknown columns: \['nope'\]"),
    ({"feature_names": ["only_one"]}, "1 names for 2 columns"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ReferenceError, match=message):
        Reference.from_data(np.zeros((3, 2)), **kwargs)


def test_bad_containers_are_named():
    with pytest.raises(ReferenceError, match="different lengths"):
        Reference.from_data({"a": [1, 2], "b": [1]})
    with pytest.raises(ReferenceError, match="expected 1-D or 2-D data"):
        Reference.from_data(np.zeros((2, 2, 2)))


def test_check_features():
    ref = Reference.from_data({"a": [1.0], "b": [2.0]})
    ref.check_features(["b", "a"])
    with pytest.raises(ReferenceError, match=r"missing \['b'\]; not in the reference \['c'\]"):
        ref.check_features(["a", "c"])
    with pytest.raises(ReferenceError, match="order differs"):
        ref.check_features(["b", "a"], ordered=True)


# --- files ----------------------------------------------------------------------------------

def mixed_reference() -> Reference:
    rng = np.random.default_rng(2)
    return Reference.from_data(
        {"age": rng.normal(40, 10, 500), "city": rng.choice(["Köln", "Paris", "Lyon"], 500)},
        predictions=rng.random((500, 2)), prediction_names=["no", "yes"])


def test_save_load_round_trip_and_format(tmp_path):
    ref = mixed_reference()
    path = tmp_path / "reference.json"
    ref.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "inferwatch.reference" and data["version"] == 1
    assert [f["name"] for f in data["features"]] == ["age", "city"]
    loaded = Reference.load(path)
    assert loaded == ref
    assert loaded.features["age"].edges == ref.features["age"].edges


def test_save_is_deterministic(tmp_path):
    mixed_reference().save(tmp_path / "one.json")
    mixed_reference().save(tmp_path / "two.json")
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "two.json").read_bytes()


def write_modified(tmp_path, change) -> str:
    data = mixed_reference().to_dict()
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(version=2), "key 'version' is 2"),
    (lambda d: d.update(format="other"), "key 'format' is 'other'"),
    (lambda d: d.pop("format"), "not an inferwatch reference profile .it has no 'format' key"),
    (lambda d: d["features"][0].update(fractions=[1.0]),
     r"features\[0\] \('age'\): key 'fractions' has 1"),
    (lambda d: d["features"][0].update(edges=[3.0, 1.0, *d["features"][0]["edges"][2:]]),
     r"\('age'\): key 'edges' must be strictly increasing"),
    (lambda d: d["features"][1].update(categories=["a", "b", "c", "d"]),
     r"\('city'\): key 'categories' must be distinct and end with '__other__'"),
    (lambda d: d["features"][1].update(kind="text"), r"\('city'\): key 'kind' is 'text'"),
    (lambda d: d["outputs"][1].update(name="no"), r"outputs\[1\]: duplicate name 'no'"),
    (lambda d: d["outputs"][0].update(fractions=[0.5] * len(d["outputs"][0]["fractions"])),
     r"outputs\[0\] \('no'\): key 'fractions' sums to"),
    (lambda d: d["features"][0].update(missing_rate=2), r"key 'missing_rate'"),
    (lambda d: d.update(features="age"), "key 'features' must be a list"),
])
def test_load_names_the_file_key_and_feature(tmp_path, change, message):
    path = write_modified(tmp_path, change)
    with pytest.raises(ReferenceError, match=message) as info:
        Reference.load(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_load_missing_or_corrupt_file(tmp_path):
    with pytest.raises(ReferenceError, match="reference file not found"):
        Reference.load(tmp_path / "absent.json")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": "inferwatch.reference", "vers', encoding="utf-8")
    with pytest.raises(ReferenceError, match=r"corrupt.json: not valid JSON \(line 1"):
        Reference.load(corrupt)
    corrupt.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ReferenceError, match="expected a JSON object"):
        Reference.load(corrupt)


@settings(max_examples=80, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 300),
                  elements=st.floats(-1e9, 1e9) | st.just(np.nan) | st.sampled_from([0.0, 1.0])),
       st.integers(1, 20))
def test_profile_properties_for_any_numeric_column(values, bins):
    profile = profile_column("x", values, bins=bins)
    finite = values[np.isfinite(values)]
    assert profile.n_bins <= bins + 2
    assert profile.missing_rate == pytest.approx(1 - len(finite) / len(values))
    if len(finite):
        assert sum(profile.fractions) == pytest.approx(1.0)
        # The fractions are exactly where searchsorted puts the training values.
        index = np.searchsorted(profile.edges, finite, side="right")
        np.testing.assert_allclose(np.bincount(index, minlength=profile.n_bins) / len(finite),
                                   profile.fractions)
        if profile.min != profile.max:
            assert profile.fractions[0] > 0  # no edge at the minimum
    restored = Reference.from_dict(json.loads(json.dumps(Reference({"x": profile}).to_dict())))
    assert restored.features["x"] == profile


# --- inputs a profile must refuse, or read as live inputs are read --------------------------

@pytest.mark.parametrize(("X", "kwargs", "message"), [
    ({"": np.arange(3.0)}, {}, r"X: column 1 of 1 has no name"),
    ({"a": np.arange(3.0), "": np.arange(3.0)}, {}, r"X: column 2 of 2 has no name"),
    (np.zeros((3, 2)), {"feature_names": ["a", ""]}, r"X: column 2 of 2 has no name"),
    (pd.DataFrame({"": np.arange(3.0), "a": np.arange(3.0)}), {},
     r"X: column 1 of 2 has no name"),
])
def test_an_empty_column_name_is_refused_with_its_position(X, kwargs, message):
    # A reference file holds no empty name: profiling one would write a file that never loads.
    with pytest.raises(ReferenceError, match=message):
        Reference.from_data(X, **kwargs)


def test_an_unnamed_column_left_out_by_name_is_no_error(tmp_path):
    frame = pd.DataFrame({"": np.arange(3.0), "a": np.arange(3.0)})
    ref = Reference.from_data(frame, feature_names=["a"])
    ref.save(tmp_path / "r.json")
    assert Reference.load(tmp_path / "r.json") == ref


def test_an_integer_too_large_for_a_float_is_a_reference_error():
    with pytest.raises(ReferenceError, match="feature 'a': holds an integer too large"):
        Reference.from_data({"a": np.array([10**400, 1], dtype=object)})
    with pytest.raises(ReferenceError, match="feature 'a'"):
        # An object column, as later pandas make of it (2.0.3 refuses the plain list).
        Reference.from_data(pd.DataFrame({"a": pd.Series([10**400, 1], dtype=object)}))
    assert Reference.from_data({"a": np.array([10**400, 1], dtype=object)},
                               categorical=["a"]).features["a"].n_bins == 3


def test_deeply_nested_json_is_a_reference_error(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(ReferenceError, match=r"deep\.json: not a reference file"):
        Reference.load(deep)


def test_a_failed_save_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    with pytest.raises(OSError):
        mixed_reference().save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


@pytest.mark.parametrize("column", [
    pd.to_datetime(["2020-01-01", None] * 5),
    pd.date_range("2020-01-01", periods=10, tz="UTC"),
    pd.to_timedelta(np.arange(10), unit="s"),
    np.array([np.datetime64("2020-01-01")] * 10),
])
def test_dates_and_times_are_refused_with_what_to_do(column):
    with pytest.raises(ReferenceError, match=r"feature 't': holds dates or times .*convert it"):
        Reference.from_data(pd.DataFrame({"t": column, "a": np.arange(10.0)}))


def test_dates_named_categorical_keep_nat_missing():
    ref = Reference.from_data(pd.DataFrame({"t": pd.to_datetime(["2020-01-01", None] * 50)}),
                              categorical=["t"])
    profile = ref.features["t"]
    assert profile.missing_rate == 0.5
    assert profile.fractions == (1.0, 0.0) and len(profile.categories) == 2


@pytest.mark.parametrize("X", [
    pd.DataFrame({0: [1.0, 2.0], "0": [30.0, 40.0]}),
    {0: [1.0, 2.0], "0": [30.0, 40.0]},
    [{0: 1.0, "0": 30.0}],
])
def test_column_names_alike_as_text_are_refused(X):
    # Live inputs are matched by str(name): the two would be one feature.
    with pytest.raises(ReferenceError, match=r"columns 0 and '0' are both named '0'"):
        Reference.from_data(X)


def test_a_true_duplicate_column_is_named():
    frame = pd.DataFrame([[1.0, 2.0]], columns=["a", "a"])
    with pytest.raises(ReferenceError, match="X: duplicate column name 'a'"):
        Reference.from_data(frame)


def test_a_list_of_row_dicts_is_profiled_as_its_columns():
    rng = np.random.default_rng(5)
    columns = {"a": rng.normal(size=200), "c": rng.choice(["x", "y"], 200).astype(object)}
    rows = [{"a": a, "c": c} for a, c in zip(columns["a"], columns["c"])]
    assert Reference.from_data(rows, bins=4) == Reference.from_data(columns, bins=4)
    # Keys matched as text, as live rows are; a key absent from a row is a missing value.
    ref = Reference.from_data([{0: 1.0, "b": 2.0}, {"0": 3.0}])
    assert ref.feature_names == ["0", "b"]
    assert (ref.features["0"].min, ref.features["0"].max) == (1.0, 3.0)
    assert ref.features["b"].missing_rate == 0.5
    with pytest.raises(ReferenceError, match="X: row 1 is a list in a list of row dicts"):
        Reference.from_data([{"a": 1.0}, [2.0]])


@pytest.mark.parametrize("label", [10**400, "abc"])
def test_a_regressors_label_that_is_no_float_is_a_reference_error(label):
    """score() let a raw OverflowError or ValueError out of from_data."""
    with pytest.raises(ReferenceError, match="y_true: a regressor's labels must be numbers"):
        Reference.from_data(np.zeros((3, 1)), predictions=np.array([0.1, 0.2, 0.3]),
                            y_true=[label, 1.0, 2.0])
