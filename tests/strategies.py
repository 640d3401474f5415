"""Hypothesis strategies shared by the tests of what users hand inferwatch."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import strategies as st

_SCALAR_OUTPUTS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                            st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5))
_ARRAY_OUTPUTS = st.builds(
    lambda shape, scale: np.random.default_rng(sum(shape)).random(shape) * scale,
    st.tuples(st.integers(1, 4), st.integers(1, 3)), st.sampled_from([1.0, -1.0, 1e308]))


def _as_matrix(array: np.ndarray) -> np.matrix:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(array)


# ndarray subclasses: np.matrix (``.todense()``, a sparse matrix's ``.mean(axis=1)``), whose
# ravel() stays 2-D, and masked arrays, whose mask np.concatenate drops.
_SUBCLASS_OUTPUTS = st.one_of(
    _ARRAY_OUTPUTS.map(_as_matrix),
    st.builds(lambda array, seed: np.ma.masked_array(
        array, mask=np.random.default_rng(seed).random(array.shape) < 0.3),
        _ARRAY_OUTPUTS, st.integers(0, 9)))
# Anything a model may return, or a caller pass as an outcome: scalars of every kind,
# arrays (some near overflow), and lists, tuples and dicts of them, ragged or not.
ANY_OUTPUT = st.recursive(
    st.one_of(_SCALAR_OUTPUTS, _ARRAY_OUTPUTS, _SUBCLASS_OUTPUTS),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=12)
