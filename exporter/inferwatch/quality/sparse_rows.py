"""Row containers that are not arrays: scipy.sparse matrices, xgboost's DMatrix and
CatBoost's Pool.

Each is checked as the dense rows it stands for, a bounded block of rows at a time, so a
wide matrix never becomes dense whole. The sparse ones differ in what an entry they do not
store means: zero in a scipy.sparse matrix, a missing value in a DMatrix (xgboost keeps no
missing value, and reads an absent one as missing). A Pool is read through its own
``get_features()``, which only a Pool of numeric features answers: CatBoost keeps no
category or text as it was given, only its hash.

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


def _readable_dmatrix(matrix: Any) -> None:
    """Raise :class:`UnreadableRows` for a QuantileDMatrix: its ``get_data()`` gives the
    bin cut values the rows fell in, not the rows."""
    if type(matrix).__name__ == "QuantileDMatrix":
        raise UnreadableRows(
            "an xgboost QuantileDMatrix keeps only the bins its rows fell in, not the rows, "
            "so its inputs are not checked against the reference: pass the model a DMatrix "
            "or the DataFrame the QuantileDMatrix is made of")


def is_catboost_pool(obj: Any) -> bool:
    """True for a CatBoost Pool (what a CatBoost model's predict takes besides frames and
    arrays), without importing catboost."""
    return type(obj).__module__.startswith("catboost") and hasattr(obj, "get_features") and \
        hasattr(obj, "num_row") and hasattr(obj, "get_cat_feature_indices")


class UnreadableRows(Exception):
    """Rows held where they cannot be read back: a CatBoost Pool of categorical, text or
    embedding features, or a quantized one; an xgboost QuantileDMatrix. The input is valid
    (the model reads it), so it is no schema error of the caller's: what cannot be
    checked is inferwatch's shortfall."""


def _readable_pool(pool: Any) -> None:
    """Raise :class:`UnreadableRows` for a Pool whose features cannot be read back."""
    held = [kind for kind, indices in (
        ("categorical", pool.get_cat_feature_indices()),
        ("text", pool.get_text_feature_indices()),
        ("embedding", pool.get_embedding_feature_indices())) if len(indices)]
    if held or pool.is_quantized():
        raise UnreadableRows(
            f"a CatBoost Pool of {' and '.join(held) or 'quantized'} features cannot be "
            "read back (CatBoost keeps only hashes of them), so its inputs are not checked "
            "against the reference: pass the model the DataFrame the Pool is made of")


def row_shape(obj: Any) -> tuple[int, int]:
    """(rows, columns) of a sparse matrix, DMatrix or Pool."""
    if is_dmatrix(obj) or is_catboost_pool(obj):
        return int(obj.num_row()), int(obj.num_col())
    rows, width = obj.shape
    return int(rows), int(width)


def dense_blocks(obj: Any, order: Sequence[int] | None) -> Iterator[np.ndarray]:
    """The rows of `obj` as dense float blocks of at most ``BLOCK_CELLS`` cells, columns
    taken in `order` (None: as they are). Absent entries are zeros in a scipy.sparse matrix
    and NaN (missing) in a DMatrix. A Pool or QuantileDMatrix that cannot be read back
    raises :class:`UnreadableRows` before any block."""
    if is_catboost_pool(obj):
        yield from _pool_blocks(obj, order)
        return
    absent_missing = is_dmatrix(obj)
    if absent_missing:
        _readable_dmatrix(obj)
    csr = obj.get_data() if absent_missing else obj.tocsr()
    rows, width = csr.shape
    step = max(1, BLOCK_CELLS // max(width, 1))
    for start in range(0, rows, step):
        part = csr[start:start + step]
        if absent_missing:
            # The DMatrix's own dtype (float32): a float64 block would lose the float32
            # reading of the reference's bounds, and a training row at a column's minimum
            # would count as out of range.
            block = np.full(part.shape, np.nan, dtype=part.dtype)
            counts = np.diff(part.indptr)
            block[np.repeat(np.arange(part.shape[0]), counts), part.indices] = part.data
        else:
            block = part.toarray()
        yield block if order is None else block[:, order]


def _pool_blocks(pool: Any, order: Sequence[int] | None) -> Iterator[np.ndarray]:
    """A Pool's rows as float blocks (CatBoost's float32, a missing value NaN). Its
    ``get_features()`` copies every row it is asked for, so a large Pool is read a slice of
    rows at a time."""
    _readable_pool(pool)
    rows, width = row_shape(pool)
    step = max(1, BLOCK_CELLS // max(width, 1))
    for start in range(0, rows, step):
        part = pool if rows <= step else pool.slice(np.arange(start, min(start + step, rows)))
        block = np.asarray(part.get_features())
        yield block if order is None else block[:, order]


def column_order(obj: Any, names: Sequence[str]) -> list[int] | None:
    """Where each of `names` is among a DMatrix's or Pool's own feature names, when it names
    the same features in another order; None to take its columns as they are."""
    own = getattr(obj, "feature_names", None) if is_dmatrix(obj) else \
        _pool_names(obj) if is_catboost_pool(obj) else None
    if own is None or list(own) == list(names) or sorted(own) != sorted(names):
        return None
    at = {name: j for j, name in enumerate(own)}
    return [at[name] for name in names]


def _pool_names(pool: Any) -> list[str] | None:
    """A Pool's feature names; None when it was given none (CatBoost names them "")."""
    names = pool.get_feature_names()
    return None if not names or "" in names else list(names)
