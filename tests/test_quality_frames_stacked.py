"""A drain of many small DataFrames (a frame per call, as a scikit-learn pipeline is fed) is
checked against the reference as one array when each frame is one: exactly the reference's
columns in order, of one numeric dtype. It counts what checking each frame alone counts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.core.call_input import snapshot_input
from inferwatch.frame_values import FrameValues
from inferwatch.quality import input_batches
from inferwatch.quality.reference import Reference
from inferwatch.quality.tracker import FeatureTracker
from test_quality import assert_same

NAMES = ["amount", "age", "zone"]
_RNG = np.random.default_rng(7)
# "zone" is categorical by declaration, with whole-number codes: read as text either way.
REFERENCE = Reference.from_data(
    pd.DataFrame({"amount": _RNG.normal(100, 20, 400), "age": _RNG.integers(18, 80, 400),
                  "zone": _RNG.integers(1, 5, 400)}), categorical=["zone"])

def _checked_together_as_alone(inputs: list, seen: list | None = None,
                               reference: Reference = REFERENCE) -> None:
    """A drain's inputs checked together count what each counts checked alone. `seen`: the
    inputs as the drain reads them (as a call captured them, or read back from their bytes),
    when not `inputs` themselves."""
    together = FeatureTracker(reference).check_inputs(inputs if seen is None else seen,
                                                      now=1000.0)
    alone = FeatureTracker(reference)
    expected = alone.checker.empty_result()
    for value in inputs:
        expected.add(alone.checker.check(value))
    assert_same(together, expected)


_DTYPES = st.sampled_from(["float64", "float32", "int64", "int32", "bool"])
_SHAPES = st.sampled_from(["as the reference", "columns reordered", "an extra column",
                           "a column missing", "two dtypes", "nullable Int64", "no rows"])


def _frame(rng: np.random.Generator, rows: int, dtype: str, shape: str) -> pd.DataFrame:
    values = np.column_stack([rng.normal(100, 40, rows), rng.integers(10, 90, rows),
                              rng.integers(0, 7, rows)])
    if dtype.startswith("float"):
        values[rng.random(values.shape) < 0.1] = np.nan
    frame = pd.DataFrame(values.astype(dtype if dtype != "bool" else "float64"),
                         columns=NAMES)
    if dtype == "bool":
        frame = frame > 50
    if shape == "columns reordered":
        frame = frame[["zone", "amount", "age"]]
    elif shape == "an extra column":
        frame["note"] = frame["amount"]
    elif shape == "a column missing":
        frame = frame[["amount", "age"]]
    elif shape == "two dtypes":
        frame = frame.astype({"age": "int64" if dtype.startswith("float") else "float64"},
                             errors="ignore")
    elif shape == "nullable Int64" and dtype in ("int64", "int32"):
        frame = frame.astype("Int64")
    elif shape == "no rows":
        frame = frame.iloc[:0]
    return frame


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**16),
       frames=st.lists(st.tuples(st.integers(1, 4), _DTYPES, _SHAPES,
                                 st.sampled_from(["pandas", "polars", "as a call captured it"])),
                       min_size=1, max_size=8))
def test_frames_checked_together_count_what_each_counts_alone(seed, frames):
    rng = np.random.default_rng(seed)
    inputs = [_frame(rng, rows, dtype, shape) for rows, dtype, shape, _ in frames]
    # polars frames too: a null in an integer column reads as a float there.
    inputs = [pl.from_pandas(frame) if kind == "polars" else frame
              for frame, (*_, kind) in zip(inputs, frames)]
    # A call captures a frame of one numeric block as its values (frame_values.FrameValues).
    seen = [snapshot_input(frame) if kind == "as a call captured it" else frame
            for frame, (*_, kind) in zip(inputs, frames)]
    _checked_together_as_alone(inputs, seen)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**16),
       frames=st.lists(st.tuples(st.integers(1, 4), _DTYPES,
                                 st.one_of(st.just("as the reference"), _SHAPES),
                                 st.booleans()), min_size=1, max_size=8))
def test_a_drain_of_captured_frames_counts_what_each_counts_alone(seed, frames):
    """Every call's input a frame captured as its values (a scikit-learn pipeline fed a frame
    per request): read as one array when all are the reference's columns of one dtype, with
    rows, their column indexes shared or each its own; each frame alone otherwise."""
    rng = np.random.default_rng(seed)
    inputs, shared = [], {}
    for rows, dtype, shape, own_columns in frames:
        frame = _frame(rng, rows, dtype, shape)
        if not own_columns:  # one index object for every frame of these columns
            frame.columns = shared.setdefault(tuple(frame.columns), frame.columns)
        inputs.append(frame)
    seen = [snapshot_input(frame) for frame in inputs]
    _checked_together_as_alone(inputs, seen)
    names = REFERENCE.feature_names
    stacked = input_batches._captured_frames_as_rows(seen, names) if all(
        value.__class__ is FrameValues for value in seen) else None
    plain = [value.rows() for value in seen if value.__class__ is FrameValues]
    as_one = len(plain) == len(seen) and len({rows.dtype for rows in plain}) == 1 and all(
        list(frame.columns) == NAMES and len(frame) for frame in inputs)
    assert (stacked is not None) == as_one
    if as_one:
        expected = np.concatenate([frame.to_numpy() for frame in inputs])
        assert stacked.dtype == expected.dtype and stacked.flags.c_contiguous
        np.testing.assert_array_equal(stacked, expected)


def test_a_polars_frame_is_read_as_rows_only_on_the_same_terms():
    names = REFERENCE.feature_names
    plain = pl.DataFrame({name: [1.0, 2.0] for name in NAMES})
    assert input_batches._polars_frame_as_rows(plain, names).tolist() == \
        [[1.0] * 3, [2.0] * 3]
    with_null = pl.DataFrame({name: [1, None] for name in NAMES}, schema={
        name: pl.Int64 for name in NAMES})
    for frame in (plain.select(["zone", "amount", "age"]), with_null, plain.head(0),
                  plain.with_columns(pl.col("age").cast(pl.Int64))):
        assert input_batches._polars_frame_as_rows(frame, names) is None


def test_a_frame_per_call_is_read_as_rows_only_as_the_reference_s_columns_of_one_dtype():
    names = REFERENCE.feature_names
    plain = pd.DataFrame(np.ones((2, 3)), columns=NAMES)
    assert input_batches._frame_as_rows(plain, names, []).tolist() == [[1.0] * 3] * 2
    mixed = plain.astype({"age": "int64"})
    reordered = plain[["zone", "amount", "age"]]
    nullable = plain.astype("Float64")
    for frame in (mixed, reordered, nullable, plain.iloc[:0]):
        assert input_batches._frame_as_rows(frame, names, []) is None
    # The same terms for a frame captured as its values.
    assert input_batches._frame_as_rows(snapshot_input(plain), names, []).tolist() == \
        [[1.0] * 3] * 2
    for frame in (reordered, plain.iloc[:0]):
        assert input_batches._frame_as_rows(snapshot_input(frame), names, []) is None


class _ReadAsAmount:
    """A key that is not "amount" but reads as it: the feature is named twice."""

    def __str__(self) -> str:
        return "amount"


def _row(rng: np.random.Generator, names: list) -> dict:
    row = {name: float(rng.normal(100, 40)) for name in names}
    if rng.random() < 0.2:
        row[names[0]] = None
    return row


_INPUTS = st.sampled_from(["1-D row", "1-D row of another width", "empty 1-D array",
                           "int 1-D row", "row dict", "list of row dicts",
                           "list naming a feature twice", "list with a non-dict",
                           "2-D array", "frame", "list of float rows", "flat list row",
                           "list rows with text", "ragged list rows", "empty list",
                           "list of bool and int rows", "dict of columns",
                           "dict of int columns", "dict of a mixed column",
                           "dict of columns with None", "dict of columns, one missing",
                           "dict of columns, one extra", "dict of columns of two dtypes",
                           "dict of uneven columns"])


def _input(rng: np.random.Generator, kind: str) -> object:
    if kind == "1-D row":
        values = rng.normal(100, 40, 3)
        values[rng.random(3) < 0.2] = np.nan
        return values
    if kind == "1-D row of another width":
        return rng.normal(100, 40, 4)
    if kind == "empty 1-D array":
        return np.zeros(0)
    if kind == "int 1-D row":
        return rng.integers(0, 7, 3)
    if kind == "row dict":
        return _row(rng, NAMES)
    if kind == "list of row dicts":
        return [_row(rng, NAMES) for _ in range(int(rng.integers(1, 4)))]
    if kind == "list naming a feature twice":  # "amount" and a key read as "amount"
        return [{**_row(rng, NAMES), _ReadAsAmount(): 2.0}]
    if kind == "list with a non-dict":
        return [_row(rng, NAMES), 5.0]
    if kind == "2-D array":
        return rng.normal(100, 40, (2, 3))
    if kind == "list of float rows":
        return rng.normal(100, 40, (int(rng.integers(1, 3)), 3)).tolist()
    if kind == "flat list row":
        return rng.normal(100, 40, 3).tolist()
    if kind == "list rows with text":
        return [[1.5, "a", 3]]
    if kind == "ragged list rows":
        return [[1.0, 2.0, 3.0], [1.0]]
    if kind == "empty list":
        return []
    if kind == "list of bool and int rows":
        return [[True, 2, 3], [False, 5, 6]]
    if kind.startswith("dict of"):
        rows = int(rng.integers(1, 4))
        columns = {name: rng.normal(100, 40, rows).tolist() for name in NAMES}
        if kind == "dict of int columns":
            columns = {name: rng.integers(0, 7, rows).tolist() for name in NAMES}
        elif kind == "dict of a mixed column":
            columns["zone"] = [1, 2.5, 3][:rows]
        elif kind == "dict of columns with None":
            columns["age"] = [None] * rows
        elif kind == "dict of columns, one missing":
            del columns["zone"]
        elif kind == "dict of columns, one extra":
            columns["note"] = [1.0] * rows
        elif kind == "dict of columns of two dtypes":
            columns["zone"] = rng.integers(0, 7, rows).tolist()
        elif kind == "dict of uneven columns":
            columns["zone"] = columns["zone"] + [1.0]
        return columns
    return _frame(rng, 2, "float64", "as the reference")


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**16), kinds=st.lists(_INPUTS, min_size=1, max_size=10))
def test_rows_of_many_shapes_checked_together_count_what_each_counts_alone(seed, kinds):
    """1-D rows, lists of numeric rows and lists of row dicts join the drain's other rows
    (each cost 32 to 34 us a call checked alone), and still count what each counts alone."""
    rng = np.random.default_rng(seed)
    inputs = [_input(rng, kind) for kind in kinds]
    _checked_together_as_alone(inputs)


_LISTS = st.sampled_from(["list of float rows", "flat list row", "list rows with text",
                          "ragged list rows", "empty list", "list of bool and int rows",
                          "list of int rows", "flat list with an int", "flat list with None",
                          "flat list of another width", "list of rows with nan",
                          "list of numpy float rows", "list of an empty row"])


def _list_input(rng: np.random.Generator, kind: str) -> list:
    rows = rng.normal(100, 40, (int(rng.integers(1, 3)), 3)).tolist()
    if kind == "list of int rows":
        return rng.integers(0, 7, (2, 3)).tolist()
    if kind == "flat list with an int":
        return [rows[0][0], 2, rows[0][2]]
    if kind == "flat list with None":
        return [rows[0][0], None, rows[0][2]]
    if kind == "flat list of another width":
        return rows[0] + [1.0]
    if kind == "list of rows with nan":
        rows[0][1] = float("nan")
        return rows
    if kind == "list of numpy float rows":
        return [list(map(np.float64, row)) for row in rows]
    if kind == "list of an empty row":
        return [[]]
    return _input(rng, kind)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**16),
       kinds=st.lists(st.one_of(st.sampled_from(["list of float rows", "flat list row"]),
                                _LISTS), min_size=1, max_size=8))
def test_a_drain_of_json_lists_counts_what_each_counts_alone(seed, kinds):
    """Every call's input a JSON array (of rows, or one row): read as one array of rows when
    each is of Python floats of the reference's width, one shape per drain; each alone
    otherwise. Either way it counts what each counts alone."""
    rng = np.random.default_rng(seed)
    inputs = [_list_input(rng, kind) for kind in kinds]
    _checked_together_as_alone(inputs)
    stacked = input_batches._float_lists_as_rows(inputs, len(NAMES))
    as_rows = set(kinds) in ({"list of float rows"}, {"list of rows with nan"},
                             {"list of float rows", "list of rows with nan"})
    as_one_row_each = set(kinds) == {"flat list row"}
    _assert_read_as_one_array(stacked, as_rows or as_one_row_each, lambda: [
        np.asarray(value).reshape(-1, len(NAMES)) for value in inputs])


def _assert_read_as_one_array(stacked: np.ndarray | None, taken: bool,
                              rows: Callable[[], list]) -> None:
    """The one-array read was taken exactly when `taken`, and then holds `rows()` (each
    call's rows, in call order) as floats."""
    assert (stacked is not None) == taken
    if stacked is not None:
        assert stacked.dtype == np.float64
        np.testing.assert_array_equal(stacked, np.concatenate(rows()))


_DICTS = st.sampled_from(["dict of columns", "dict of int columns", "dict of a mixed column",
                          "dict of columns with None", "dict of columns, one missing",
                          "dict of columns, one extra", "dict of columns of two dtypes",
                          "dict of uneven columns", "row dict", "dict of empty columns",
                          "dict of columns in another order", "dict of an array column",
                          "dict of columns with nan"])


def _dict_input(rng: np.random.Generator, kind: str) -> dict:
    columns = _input(rng, "dict of columns")
    if kind == "dict of empty columns":
        return {name: [] for name in NAMES}
    if kind == "dict of columns in another order":
        return {name: columns[name] for name in reversed(NAMES)}
    if kind == "dict of an array column":
        return {**columns, "age": np.asarray(columns["age"])}
    if kind == "dict of columns with nan":
        columns["amount"][0] = float("nan")
        return columns
    return _input(rng, kind)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**16),
       kinds=st.lists(st.one_of(st.sampled_from(["dict of columns"]), _DICTS),
                      min_size=1, max_size=8))
def test_a_drain_of_json_objects_of_columns_counts_what_each_counts_alone(seed, kinds):
    """Every call's input a JSON object of columns: read as one array of rows when each holds
    exactly the reference's features as lists of Python floats, in any key order; each
    alone otherwise. Either way it counts what each counts alone."""
    rng = np.random.default_rng(seed)
    inputs = [_dict_input(rng, kind) for kind in kinds]
    _checked_together_as_alone(inputs)
    stacked = input_batches._float_columns_as_rows(inputs, NAMES)
    plain = {"dict of columns", "dict of columns in another order", "dict of columns with nan"}
    _assert_read_as_one_array(stacked, set(kinds) <= plain, lambda: [
        np.column_stack([value[name] for name in NAMES]) for value in inputs])


_RECORDS = st.sampled_from(["row dict", "row dict with None", "row dict with an int",
                            "row dict, a feature missing", "row dict, one extra",
                            "row dict naming a feature twice", "row dict with nan",
                            "row dict in another order", "row dict of numpy floats",
                            "row dict with a bool", "list of row dicts",
                            "list of row dicts with None", "empty list"])


def _record_input(rng: np.random.Generator, kind: str) -> object:
    row = {name: float(rng.normal(100, 40)) for name in NAMES}
    if kind == "row dict with None":
        row["age"] = None
    elif kind == "row dict with an int":
        row["zone"] = 3
    elif kind == "row dict, a feature missing":
        del row["zone"]
    elif kind == "row dict, one extra":
        row["note"] = 1.0
    elif kind == "row dict naming a feature twice":
        del row["zone"]
        row[_ReadAsAmount()] = 2.0
    elif kind == "row dict with nan":
        row["amount"] = float("nan")
    elif kind == "row dict in another order":
        row = dict(reversed(row.items()))
    elif kind == "row dict of numpy floats":
        row = {name: np.float64(value) for name, value in row.items()}
    elif kind == "row dict with a bool":
        row["zone"] = True
    elif kind == "list of row dicts":
        return [row, {name: float(rng.normal(100, 40)) for name in NAMES}]
    elif kind == "list of row dicts with None":
        return [row, {**row, "age": None}]
    elif kind == "empty list":
        return []
    return row


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**16), as_lists=st.booleans(),
       kinds=st.lists(st.one_of(st.sampled_from(["row dict"]), _RECORDS),
                      min_size=1, max_size=8))
def test_a_drain_of_json_records_counts_what_each_counts_alone(seed, as_lists, kinds):
    """Every call's input a JSON object of one row, or a JSON array of such records: read as
    one array of rows when each holds exactly the reference's features as Python floats, in
    any key order; as rows otherwise. Either way it counts what each counts alone."""
    rng = np.random.default_rng(seed)
    inputs = [_record_input(rng, kind) for kind in kinds]
    if as_lists:
        inputs = [value if value.__class__ is list else [value] for value in inputs]
    _checked_together_as_alone(inputs)
    plain = {"row dict", "row dict with nan", "row dict in another order", "list of row dicts"}
    if as_lists:
        stacked = input_batches._float_lists_as_rows(inputs, len(NAMES), NAMES)
    else:
        plain.discard("list of row dicts")  # a list among dicts: no drain of dicts alone
        stacked = input_batches._float_row_dicts_as_rows(inputs, NAMES) if all(
            value.__class__ is dict for value in inputs) else None
    records = [row for value in inputs for row in (value if as_lists else [value])]
    _assert_read_as_one_array(stacked, set(kinds) <= plain, lambda: [
        np.array([[row[name] for name in NAMES] for row in records])])


@pytest.mark.parametrize("reader", ["_float_lists_as_rows", "_float_columns_as_rows",
                                    "_captured_frames_as_rows"])
def test_a_drain_whose_one_array_read_fails_is_read_call_by_call(monkeypatch, reader):
    """An input another thread changes while the drain reads it (a row's length, say) can
    make the one-array read raise: the drain's inputs are then read call by call, counting
    what each counts alone, never lost."""
    failed = []

    def fail(*args):
        failed.append(reader)
        raise ValueError("iterator too short")

    monkeypatch.setattr(input_batches, reader, fail)
    rng = np.random.default_rng(5)
    if reader == "_float_lists_as_rows":
        inputs = [_list_input(rng, "list of float rows") for _ in range(3)]
    elif reader == "_float_columns_as_rows":
        inputs = [_dict_input(rng, "dict of columns") for _ in range(3)]
    else:
        inputs = [_frame(rng, 2, "float64", "as the reference") for _ in range(3)]
    seen = [snapshot_input(value) for value in inputs]
    _checked_together_as_alone(inputs, seen)
    assert failed == [reader]


def test_row_dicts_naming_a_feature_twice_count_once_each_in_one_drain():
    """Each call's row dict that names "amount" twice (once by a key that reads as it) is one
    wrong_shape, as it is alone: it is not read among the drain's other rows."""
    rows = [{"amount": 1.0, "age": 30.0, _ReadAsAmount(): 2.0} for _ in range(3)]
    together = FeatureTracker(REFERENCE).check_inputs([*rows, {"amount": 1.0}], now=1000.0)
    assert together.input_errors["wrong_shape"] == 3  # one when they were read as rows
    _checked_together_as_alone([*rows, {"amount": 1.0}])


def test_a_one_feature_reference_reads_each_1d_array_as_its_column():
    reference = Reference.from_data({"x": np.arange(100.0)})
    inputs = [np.array([1.0, np.nan, 500.0]), np.array([2.0])]
    together = FeatureTracker(reference).check_inputs(inputs, now=1000.0)
    assert (together.rows, together.missing.tolist(), together.out_of_range.tolist()) == \
        (4, [1], [1])


_SCALARS_AND_COLUMNS = st.one_of(
    st.floats(), st.integers(), st.booleans(), st.text(max_size=3), st.binary(max_size=3),
    st.none(), st.lists(st.floats(), max_size=3), st.just(np.float64(1.5)),
    st.just(np.arange(2)), st.just(range(2)), st.just(np.array(3.0)))


@settings(max_examples=200, deadline=None)
@given(row=st.dictionaries(st.text(max_size=3), _SCALARS_AND_COLUMNS, max_size=5))
def test_a_row_dict_is_told_by_its_classes_as_by_the_length_of_each_value(row):
    from inferwatch.quality.batch_values import is_row, length

    assert is_row(row) == (bool(row) and all(length(v) is None for v in row.values()))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), width=st.integers(1, 4), rows=st.integers(1, 6))
def test_numeric_row_dicts_count_what_the_same_rows_as_an_array_count(data, width, rows):
    """Row dicts holding exactly the features as numbers are read as one matrix, by an item
    getter per row, in the reference's order whatever each dict's key order."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    names = [f"f{i}" for i in range(width)]
    reference = Reference.from_data(pd.DataFrame(rng.normal(size=(300, width)), columns=names))
    cell = st.one_of(st.floats(-5, 5), st.just(float("nan")), st.integers(-5, 5))
    table = [[data.draw(cell) for _ in names] for _ in range(rows)]
    dicts = [dict(data.draw(st.permutations(list(zip(names, values))))) for values in table]
    checker = FeatureTracker(reference).checker
    as_rows, as_array = checker.check(dicts), checker.check(np.array(table))
    assert_same(as_rows, as_array)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**16), one_feature=st.booleans(),
       calls=st.lists(st.tuples(st.sampled_from(["the width", "the width", "empty", "wider",
                                                 "twice the width", "2-D row"]),
                                st.sampled_from(["float64", "float32", "int64", "bool"])),
                      min_size=1, max_size=8))
def test_inputs_kept_as_their_bytes_count_what_each_counts_alone(seed, one_feature, calls):
    """A fast-path call keeps a small numeric input as its bytes; the drain reads 1-D rows
    of the reference's width (with one feature, any 1-D column) as one array of rows."""
    from inferwatch.core.pending_calls import call_columns

    rng = np.random.default_rng(seed)
    width = 1 if one_feature else 3
    reference = Reference.from_data(rng.normal(size=(300, width)))
    inputs = []
    for shape, dtype in calls:
        length = {"the width": width, "empty": 0, "wider": width + 1,
                  "twice the width": 2 * width}.get(shape, width)
        values = rng.normal(scale=2.0, size=(1, width) if shape == "2-D row" else length)
        inputs.append(values.astype(dtype) if dtype != "bool" else values > 0)
    pending = [(0.001, 0.5, x, x.tobytes(), None) for x in inputs]
    _, _, kept, _ = call_columns(pending, width)
    _checked_together_as_alone(inputs, kept, reference)
