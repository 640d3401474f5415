"""Reading a class-probability matrix in one pass: its columns' and its confidence's sketch
values from one transform of the matrix, each row's class from its top column without a
gather, and its bad row sums counted in place, each the same as read apart: the same
floats (the sign of zero included), the same labels, the same count, and a drain leaves
the same state either way."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inferwatch.core import class_probabilities, probability_fold
from inferwatch.core.class_probabilities import (
    PROBABILITY_SUM_TOLERANCE,
    class_codes,
    count_bad_sums,
    integer_labels,
    row_sums,
    top_columns,
)
from inferwatch.core.probability_fold import MOST_ROWS
from inferwatch.core.unit_sketch import sketched_columns, to_sketch
from test_float_fold import _same
from test_probability_fold import _chunks, _classes, _options, _state_of
from test_probability_quantiles import _bitwise

_unit = st.one_of(st.floats(0.0, 1.0), st.floats(0.49, 0.51), st.floats(1 - 1e-8, 1.0),
                  st.sampled_from([0.0, -0.0, 0.5, 1.0, 1e-300, 1 - 1e-9]))


@st.composite
def _matrices(draw: st.DrawFn) -> np.ndarray:
    width = draw(st.integers(2, 6))
    rows = draw(st.integers(1, 60))
    return draw(hnp.arrays(np.float64, (rows, width), elements=_unit))


@settings(max_examples=300, deadline=None)
@given(matrix=_matrices())
def test_one_transform_of_the_matrix_is_each_columns_and_the_confidences(matrix):
    width = matrix.shape[1]
    top = top_columns(matrix)
    shared = sketched_columns(matrix, None if width == 2 else top)
    if matrix.size <= 48:
        assert shared is None  # a few values: each column goes Python's way
        return
    _same_as_apart(matrix, top, shared)


def _same_as_apart(matrix: np.ndarray, top: np.ndarray,
                   shared: tuple[np.ndarray, np.ndarray]) -> None:
    """Each column's and the confidence's sketch values are what each would get alone."""
    columns, top_sketched = shared
    width = matrix.shape[1]
    for j in range(width):
        assert _bitwise(np.ascontiguousarray(columns[:, j]), to_sketch(matrix[:, j].copy()))
    top_values = np.maximum(matrix[:, 0], matrix[:, 1]) if width == 2 else \
        matrix[np.arange(matrix.shape[0]), top]
    assert _bitwise(np.ascontiguousarray(top_sketched), to_sketch(top_values))


def _big_matrix(kind: str, rows: int, seed: int) -> np.ndarray:
    """`rows` rows of a classifier's probabilities: a binary one's, a five-class softmax's,
    a tree's (exact 0s and 1s), or rows with -0.0, halves and the tiniest values."""
    rng = np.random.default_rng(seed)
    if kind == "binary":
        p = rng.random(rows) ** rng.uniform(0.1, 10)
        return np.column_stack([1 - p, p])
    if kind == "softmax":
        logits = rng.normal(scale=rng.uniform(0.1, 8), size=(rows, 5))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if kind == "tree":
        p = rng.integers(0, 11, rows) / 10
        return np.column_stack([1 - p, p])
    p = rng.choice([0.5, 0.25, 1e-300, 0.999999], rows)
    matrix = np.column_stack([1 - p, p])
    matrix[rng.integers(0, rows, 5), 0] = -0.0
    return matrix


@pytest.mark.parametrize("kind", ["binary", "softmax", "tree", "edges"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_large_matrix_is_sketched_as_its_columns_are(kind, seed):
    matrix = _big_matrix(kind, 5_000 + 37 * seed, seed)
    top = top_columns(matrix)
    _same_as_apart(matrix, top, sketched_columns(matrix, None if matrix.shape[1] == 2 else top))


_names = st.one_of(
    st.integers(-5, 5).flatmap(lambda start: st.integers(2, 6).map(
        lambda width: tuple(str(start + j) for j in range(width)))),  # consecutive
    st.lists(st.integers(-9, 9), min_size=2, max_size=6, unique=True).map(
        lambda values: tuple(map(str, values))),  # integers in any order
    st.lists(st.sampled_from(["a", "b", "no", "yes", "01", "1.0"]), min_size=2, max_size=6,
             unique=True).map(tuple),  # text, and text that only looks like a number
)


@settings(max_examples=300, deadline=None)
@given(names=_names, data=st.data())
def test_each_rows_class_is_its_top_columns_name(names, data):
    rows = data.draw(st.integers(0, 40))
    top = np.array(data.draw(st.lists(st.integers(0, len(names) - 1), min_size=rows,
                                      max_size=rows)), dtype=np.int64)
    if len(names) == 2:  # a binary classifier's top columns: bools read as int8
        top = top.astype(bool).view(np.int8)
    codes = class_codes(names, top)
    numbers = integer_labels(names)
    expected = numbers[top] if numbers is not None else np.asarray(names, dtype=object)[top]
    assert codes.dtype == expected.dtype
    assert codes.tolist() == expected.tolist()


@settings(max_examples=300, deadline=None)
@given(sums=hnp.arrays(np.float64, st.integers(0, 80),
                       elements=st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                          st.floats(0.998, 1.002),
                                          st.sampled_from([1.0 + PROBABILITY_SUM_TOLERANCE,
                                                           1.0 - PROBABILITY_SUM_TOLERANCE]))))
def test_bad_sums_are_counted_as_the_distance_from_one_reads_them(sums):
    with np.errstate(over="ignore", invalid="ignore"):
        expected = int((np.abs(sums - 1.0) > PROBABILITY_SUM_TOLERANCE).sum())
        assert count_bad_sums(sums.copy()) == expected


@settings(max_examples=100, deadline=None)
@given(matrix=_matrices())
def test_row_sums_add_the_columns_in_numpys_order(matrix):
    column_by_column = matrix[:, 0].copy()
    for j in range(1, matrix.shape[1]):
        column_by_column += matrix[:, j]
    assert _bitwise(row_sums(matrix), column_by_column)
    assert (row_sums(matrix) == matrix.sum(axis=1)).all()  # numpy's floats (0.0 for -0.0)
    assert row_sums(matrix) is not row_sums(matrix)  # a new array each time, to change


@settings(max_examples=100, deadline=None)
@given(data=st.data(), options=_options)
def test_a_drain_leaves_the_same_state_with_the_matrix_sketched_in_one_pass(data, options):
    """Through the instrumented model, both folds (the first drain's general one, and the
    few-rows fold after it): sketch values shared or made column by column, the same
    state, bounds and caps."""
    width, drains = data.draw(_chunks())
    classes = data.draw(_classes(width))
    shared = _state_of(drains, options, classes)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(class_probabilities, "sketched_columns", lambda *args: None)
        patch.setattr(probability_fold, "sketched_columns", lambda *args: None)
        apart = _state_of(drains, options, classes)
    assert _same(shared, apart), (shared, apart)


@pytest.mark.parametrize("kind", ["binary", "softmax", "tree", "edges"])
def test_a_drain_of_many_rows_leaves_the_same_state_with_the_matrix_sketched_at_once(kind):
    """A drain of one call of a large matrix (the general fold), then of a few calls of it
    (the few-rows fold takes up to MOST_ROWS rows), then of more (the general fold's stacked
    calls) leaves the state it leaves read column by column."""
    matrix = _big_matrix(kind, MOST_ROWS // 3, 7)
    drains = [[matrix], [matrix] * 3, [matrix] * 4]
    options = {"task": "auto", "output_range": None, "value_buckets": None,
               "max_outputs": 20, "max_classes": 50}
    shared = _state_of(drains, options, None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(class_probabilities, "sketched_columns", lambda *args: None)
        patch.setattr(probability_fold, "sketched_columns", lambda *args: None)
        apart = _state_of(drains, options, None)
    assert _same(shared, apart)
