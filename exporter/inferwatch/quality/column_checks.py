"""Counting one column against its profile: missing, out-of-range, unseen and wrongly
typed values and the drift bins, for one input feature or one model output.

A :class:`CompiledColumn` is a profile compiled once into the arrays and lookups those
counts need. Apart from :mod:`~inferwatch.quality.checks` because that module reads a
batch's container into columns, and this one counts a column once it is read, the same way
for input features and predictions; the range rules (:func:`value_range`,
:func:`at_precision`) are kept beside the counts that apply them.
"""

from __future__ import annotations

import numpy as np

from inferwatch.quality.batch_values import is_narrow, to_float
from inferwatch.quality.category_keys import category_key, category_keys, is_missing
from inferwatch.quality.profile import Profile


class ColumnCounts:
    """What :meth:`CompiledColumn.count` finds in one column: its missing, wrong-type,
    non-finite, out-of-range and unseen values, and its bin counts."""

    __slots__ = ("bins", "missing", "non_finite", "out_of_range", "unseen", "wrong_type")

    def __init__(self) -> None:
        self.missing = self.out_of_range = self.unseen = self.wrong_type = self.non_finite = 0
        self.bins: np.ndarray | int = 0


# The text of a bool category, and of the number a bool is (category keys write 1.0 as 1).
_BOOL_KEYS = {"False": "0", "True": "1"}


class CompiledColumn:
    """One feature's profile turned into the arrays and lookups the checks need."""

    def __init__(self, profile: Profile, tolerance: float) -> None:
        self.name = profile.name
        self.numeric = profile.is_numeric
        self.n_bins = profile.n_bins
        self.edges = np.asarray(profile.edges, dtype=np.float64)
        self.lo, self.hi = value_range(profile, tolerance)
        self.lookup = {c: i for i, c in enumerate(profile.categories[:-1])}
        if self.lookup and set(self.lookup) <= set(_BOOL_KEYS):
            # Profiled as bools (a bool column), served as numbers: a float matrix cannot
            # hold a bool, and a model reads True as 1.0. Unseen, each row was drift.
            self.lookup.update({number: self.lookup[word] for word, number
                                in _BOOL_KEYS.items() if word in self.lookup})
        self.other = self.n_bins - 1
        self._narrow: dict[str, tuple[float, float, np.ndarray]] = {}

    def count(self, values: np.ndarray, out: ColumnCounts) -> None:
        """Count `values`, one 1-D array of this column's cells, into `out`."""
        if self.numeric:
            self._count_numeric(values, out)
        else:
            self._count_categorical(values, out)

    def _count_numeric(self, values: np.ndarray, out: ColumnCounts) -> None:
        lo, hi, edges = self.lo, self.hi, self.edges
        if is_narrow(values.dtype):
            key = values.dtype.str
            if key not in self._narrow:
                self._narrow[key] = (float(at_precision(np.float64(lo), values.dtype)),
                                     float(at_precision(np.float64(hi), values.dtype)),
                                     at_precision(edges, values.dtype, edges=True))
            lo, hi, edges = self._narrow[key]
        floats, n_wrong = to_float(values)
        out.wrong_type = n_wrong
        nan = np.isnan(floats)
        out.missing = int(nan.sum()) - n_wrong
        if nan.any():
            floats = floats[~nan]
        out.non_finite = int(np.isinf(floats).sum())
        out.out_of_range = int(((floats < lo) | (floats > hi)).sum())
        index = np.searchsorted(edges, floats, side="right")
        out.bins = np.bincount(index, minlength=self.n_bins)

    def _count_categorical(self, values: np.ndarray, out: ColumnCounts) -> None:
        try:
            keys, present = category_keys(values)
        except Exception:
            # An integer past Python's limit on digits as text (4,300), or an object whose
            # __str__ raises, has no text: without this, one such value would lose the
            # counts of its whole batch.
            keys, present = _keys_one_by_one(values)
        out.missing = len(values) - int(present.sum())
        keys = keys[present]
        if len(keys) == 0:
            out.bins = np.zeros(self.n_bins, dtype=np.int64)
            return
        # Look up each distinct value once; the batch's distinct values are dropped after
        # the call, so unseen categories never accumulate.
        distinct, inverse = np.unique(keys, return_inverse=True)
        per_distinct = np.bincount(inverse.ravel(), minlength=len(distinct))
        bin_of = np.fromiter((self.lookup.get(k, self.other) for k in distinct.tolist()),
                             dtype=np.intp, count=len(distinct))
        out.bins = np.bincount(bin_of, weights=per_distinct, minlength=self.n_bins).astype(np.int64)
        unseen = bin_of == self.other
        out.unseen = int(per_distinct[unseen].sum())


# The key of a value without text: no profile names a category with a NUL byte in front.
_NO_TEXT = "\x00no text"


def _keys_one_by_one(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`category_keys` for a column some value of which has no text; those values
    are present, under a key no category has, so they count as unseen."""
    present = np.fromiter((not is_missing(v) for v in values), dtype=bool, count=len(values))
    keys = np.empty(len(values), dtype=object)
    for i, (v, ok) in enumerate(zip(values, present)):
        if not ok:
            keys[i] = ""
            continue
        try:
            keys[i] = category_key(v)
        except Exception:
            keys[i] = _NO_TEXT
    return keys, present


_FLOAT_MAX = float(np.finfo(np.float64).max)


def at_precision(bounds: np.ndarray, dtype: np.dtype, *, edges: bool = False) -> np.ndarray:
    """Range bounds or bin `edges` (one row per feature) rounded to the precision of live
    values of `dtype` (float32, float16), as float64.

    A float32 input 0.1 is 0.100000001 as a float64: against a float64 reference whose
    maximum is 0.1 it would be out of range, and binned above an edge at 0.1, though it is
    the very number the training data held. Rounded to float32, the bound is that same
    0.100000001. Infinite bounds (an empty range) stay infinite and finite ones stay finite,
    so infinities are still always out of range.

    >>> float(at_precision(np.float64(0.1), np.dtype(np.float32)))
    0.10000000149011612
    >>> float(at_precision(np.float64(1e300), np.dtype(np.float32)))
    3.4028234663852886e+38
    """
    big = float(np.finfo(dtype).max)
    values = np.asarray(bounds, dtype=np.float64)
    finite = np.isfinite(values)
    # Bounds past the narrow type's range would round to an infinity, and let one in.
    clipped = np.where(finite, np.clip(values, -big, big), values)
    rounded = clipped.astype(dtype)
    if edges and rounded.ndim and rounded.shape[-1] > 1:
        # Edges (one row of them per feature) closer than the narrow type's step would
        # round to one and empty the bin between: a constant's own bin, [v, v + 1 ulp),
        # must still hold v. Each is kept a step above the one before it. With fewer than
        # two edges a row (a feature with no value in training, one bin) none is between.
        rows = rounded.reshape(-1, rounded.shape[-1])
        for k in range(1, rows.shape[1]):
            step = np.nextafter(rows[:, k - 1], dtype.type(np.inf))
            rows[:, k] = np.where(rows[:, k] < step, step, rows[:, k])
    return rounded.astype(np.float64)


def value_range(profile: Profile, tolerance: float) -> tuple[float, float]:
    """The bounds a value of `profile` is out of range past, widened by `tolerance` times
    the span on each side.

    The bounds stay finite, so infinities are always out of range, even when the span
    overflows. A column with no value in the reference has an empty range: every live
    value is out of it.

    >>> value_range(Profile("x", "numeric", (1.0,), min=-1.7e308, max=1.7e308), 0.1)[1]
    1.7976931348623157e+308
    >>> value_range(Profile("x", "numeric", (0.0,)), 0.0)
    (inf, -inf)
    """
    if profile.min is None or profile.max is None:
        return np.inf, -np.inf
    span = profile.max - profile.min
    # 0 * inf is NaN, and a NaN bound compares False with everything.
    slack = tolerance * span if tolerance and span else 0.0
    return max(profile.min - slack, -_FLOAT_MAX), min(profile.max + slack, _FLOAT_MAX)
