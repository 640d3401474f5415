"""Row containers that are not arrays: scipy.sparse matrices and xgboost's DMatrix.

Both are checked as the dense rows they stand for, a bounded block of rows at a time, so a
wide matrix never becomes dense whole. They differ in what an entry they do not store
means: zero in a scipy.sparse matrix, a missing value in a DMatrix (xgboost keeps no
missing value, and reads an absent one as missing).

>>> import scipy.sparse as sp
>>> [block.tolist() for block in dense_blocks(sp.csr_matrix([[0.0, 2.0]]), None)]
[[[0.0, 2.0]]]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

# Cells made dense at a time (1 MB of float64), however wide the rows are.
BLOCK_CELLS = 1 << 17


def is_sparse(obj: Any) -> bool:
    """True for a 2-D scipy.sparse matrix or array, checked without importing scipy.

    >>> is_sparse(np.zeros((2, 2)))
    False
    """
    return type(obj).__module__.startswith("scipy.sparse") and hasattr(obj, "tocsr") \
        and getattr(obj, "ndim", 0) == 2


def is_dmatrix(obj: Any) -> bool:
    """True for an xgboost DMatrix (what ``Booster.predict`` takes), without importing it."""
    return type(obj).__module__.startswith("xgboost") and hasattr(obj, "get_data") and \
        hasattr(obj, "num_col")


def row_shape(obj: Any) -> tuple[int, int]:
    """(rows, columns) of a sparse matrix or DMatrix."""
    if is_dmatrix(obj):
        return int(obj.num_row()), int(obj.num_col())
    rows, width = obj.shape
    return int(rows), int(width)


def dense_blocks(obj: Any, order: Sequence[int] | None) -> Iterator[np.ndarray]:
    """The rows of `obj` as dense float blocks of at most ``BLOCK_CELLS`` cells, columns
    taken in `order` (None: as they are). Absent entries are zeros in a scipy.sparse matrix
    and NaN (missing) in a DMatrix."""
    absent_missing = is_dmatrix(obj)
    csr = obj.get_data() if absent_missing else obj.tocsr()
    rows, width = csr.shape
    step = max(1, BLOCK_CELLS // max(width, 1))
    for start in range(0, rows, step):
        part = csr[start:start + step]
        if absent_missing:
            block = np.full(part.shape, np.nan)
            counts = np.diff(part.indptr)
            block[np.repeat(np.arange(part.shape[0]), counts), part.indices] = part.data
        else:
            block = part.toarray()
        yield block if order is None else block[:, order]


def column_order(obj: Any, names: Sequence[str]) -> list[int] | None:
    """Where each of `names` is among a DMatrix's own feature names, when it names the same
    features in another order; None to take its columns as they are."""
    own = getattr(obj, "feature_names", None) if is_dmatrix(obj) else None
    if own is None or list(own) == list(names) or sorted(own) != sorted(names):
        return None
    at = {name: j for j, name in enumerate(own)}
    return [at[name] for name in names]
