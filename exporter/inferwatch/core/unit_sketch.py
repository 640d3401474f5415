"""Quantiles of probabilities: an absolute error of at most 0.001 on [0, 1].

A relative-error sketch suits latencies and scores, but near 1 it reads 0.99 for 0.9999: the
interesting part of a confident probability is ``1 - p``. So a probability series sketches
``t(p) = p`` up to 0.5 and ``t(p) = 1 / (1 - p)`` above it. ``t`` grows with ``p``, so ranks
and quantiles carry over, and a relative error ``alpha`` on ``t`` is an absolute error of at
most ``alpha / 2`` on ``p`` below 0.5 and ``alpha / (1 - alpha) * (1 - p)`` above it: 0.999
and 0.9999 stay apart. With ``alpha = 0.002`` every quantile is within 0.001 of a value at
its rank (0.001002 just above 0.5).

The sketch keeps ``PROBABILITY_MAX_BINS`` bins (from 1 - p = 1e-9 down to p = 1e-3, the rest
folds into the lowest, within the 0.001 bound), and that bin budget is what marks a rolling
sketch as one of probabilities through every snapshot and multi-worker merge. Values outside
[0, 1] are clipped for the sketch (they are counted as invalid elsewhere); the sum is exact.

>>> import numpy as np
>>> t = to_sketch(np.array([0.0, 0.25, 0.5, 0.999, 0.9999, 1.0]))
>>> [round(p, 9) for p in from_sketch(t).tolist()]
[0.0, 0.25, 0.5, 0.999, 0.9999, 0.999999999]
"""

from __future__ import annotations

import numpy as np

PROBABILITY_RELATIVE_ACCURACY = 0.002
PROBABILITY_MAX_BINS = 8191
ABSOLUTE_ERROR = PROBABILITY_RELATIVE_ACCURACY / 2
_SMALLEST_COMPLEMENT = 1e-9  # 1 - p is kept from here up: p = 1 reads 0.999999999


# Up to this many values, plain Python beats numpy's fixed cost per call (a drain of a few
# one-row predict_proba calls, the quantiles of a scrape).
_FEW_VALUES = 48


def to_sketch(probabilities: np.ndarray) -> np.ndarray:
    """What the sketch holds for `probabilities` (clipped to [0, 1])."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 1 and p.size <= _FEW_VALUES:
        return np.array(_to_sketch_few(p.tolist()), dtype=np.float64)
    if p.size and not (p.min() >= 0.0 and p.max() <= 1.0):  # nan fails this, stays nan
        # maximum and minimum rather than np.clip, whose checks cost more than the clipping:
        # the same values (-0.0 becomes 0.0, which the sketch's zero bin holds alike).
        p = np.minimum(np.maximum(p, 0.0), 1.0)
    high = p > 0.5
    if not high.any():
        return p
    # Computed for every value and picked without a branch per value: np.where over a mask
    # of mixed rows mispredicts half its branches (timed alone on 100,000 random
    # probabilities, the transform took four times these passes), and gathering the high
    # half costs more still. For p > 0.5,
    # 1 / (1 - p) is at least 2, so the maximum picks it; below, it is zeroed and p is kept
    # (NaN stays NaN, and -0.0 too: numpy's maximum gives its second argument on a tie):
    # the floats np.where gives.
    transformed = 1.0 - p
    np.maximum(transformed, _SMALLEST_COMPLEMENT, out=transformed)
    np.divide(1.0, transformed, out=transformed)
    np.multiply(transformed, high, out=transformed)
    return np.maximum(transformed, p, out=transformed)


def sketched_columns(matrix: np.ndarray, top: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`to_sketch` of each column of a probability matrix whose values all lie in
    [0, 1], and of each row's top value (`top`: its column; the larger of two when None),
    in one pass over the matrix: the same floats as each column's and the confidence's own
    transform, as ``t`` grows with ``p``, so the top value's ``t`` is the row's largest.
    None for a matrix of a few values, which :func:`to_sketch` reads in Python.

    >>> m = np.array([[0.2, 0.8]] * 30)
    >>> columns, top = sketched_columns(m)
    >>> bool((columns[:, 1] == to_sketch(m[:, 1])).all()), bool((top == columns[:, 1]).all())
    (True, True)
    """
    if matrix.size <= _FEW_VALUES or matrix.ndim != 2 or matrix.shape[1] < 2:
        return None
    columns = to_sketch(matrix)
    if top is None:
        return columns, np.maximum(columns[:, 0], columns[:, 1])
    return columns, columns[np.arange(matrix.shape[0]), top]


def _to_sketch_few(values: list[float]) -> list[float]:
    """:func:`to_sketch` of a few values, the same floats: numpy's ``maximum`` and
    ``minimum`` keep NaN and return the second argument on a tie (-0.0 clipped is 0.0), and
    values are clipped only when some value lies outside [0, 1] or is NaN."""
    if not all(0.0 <= v <= 1.0 for v in values):  # nan fails this, as numpy's check
        values = [v if v > 0.0 or v != v else 0.0 for v in values]
        values = [v if v < 1.0 or v != v else 1.0 for v in values]
    return [1.0 / (c if (c := 1.0 - v) > _SMALLEST_COMPLEMENT or c != c
                   else _SMALLEST_COMPLEMENT) if v > 0.5 else v for v in values]


def from_sketch_values(values: list[float]) -> list[float]:
    """:func:`from_sketch` of a list (a scrape's few quantiles), as a list: the same floats.

    >>> from_sketch_values([0.25, 2.0, float("inf")])
    [0.25, 0.5, 1.0]
    """
    if len(values) > _FEW_VALUES:
        return from_sketch(np.asarray(values, dtype=np.float64)).tolist()
    result = []
    for t in values:
        p = 1.0 - 1.0 / t if t > 1.0 else t
        # np.clip's bounds: NaN and -0.0 pass as they are.
        result.append(1.0 if p > 1.0 else 0.0 if p < 0.0 else p)
    return result


def from_sketch(values: np.ndarray) -> np.ndarray:
    """The probabilities that sketch values stand for (NaN stays NaN).

    A representative lies within the relative accuracy of a value at its rank, so no value
    falls between 0.5 * (1 + alpha) and 2 * (1 - alpha): 1 separates the two halves.
    """
    t = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = np.where(t > 1.0, 1.0 - 1.0 / t, t)
    return np.clip(p, 0.0, 1.0)
