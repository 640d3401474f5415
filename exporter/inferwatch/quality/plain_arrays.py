"""numpy array subclasses, and tensors, as the plain arrays the drain reads.

A subclass keeps the methods of ndarray but not their meaning: ``np.matrix.ravel()`` stays
2-D, and ``np.concatenate`` drops a masked array's mask. Results and inputs of such a class
are made plain before anything else reads them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np


def plain_array(array: np.ndarray) -> np.ndarray:
    """An ndarray subclass as a plain ndarray: ``np.matrix`` (what ``.todense()`` and a
    sparse matrix's ``.mean(axis=1)`` return) as its data, a masked array with its masked
    entries missing (NaN, or None in an array of objects).

    >>> plain_array(np.ma.masked_array([1, 2], mask=[True, False])).tolist()
    [nan, 2.0]
    """
    if not isinstance(array, np.ma.MaskedArray):
        return np.asarray(array)
    data, mask = np.asarray(array.data), np.ma.getmaskarray(array)
    if not mask.any():
        return data
    if data.dtype.kind in "mM":
        # NaT is a time's missing value. As objects, a nanosecond time (pandas' unit) would
        # become a plain integer, read as a number rather than as the time it is.
        filled = data.copy()
        filled[mask] = np.array("NaT", dtype=data.dtype)
        return filled
    filled = data.astype(float if data.dtype.kind in "iufb" else object)
    filled[mask] = np.nan if filled.dtype.kind == "f" else None
    return filled


def tensor_array(tensor: object) -> np.ndarray:
    """A torch tensor's values as a numpy array, from any device; a bfloat16 (or another
    float numpy lacks) as float32, which holds every such value exactly.

    >>> class Tensor:  # what a torch tensor offers
    ...     def detach(self): return self
    ...     def cpu(self): return self
    ...     def numpy(self): return np.array([0.5, 1.5])
    >>> tensor_array(Tensor()).tolist()
    [0.5, 1.5]
    """
    values = tensor.detach()  # type: ignore[attr-defined]
    # .numpy() refuses a sparse tensor (COO, CSR: a multi-label model's output, a
    # recommender's input), a quantized one (a statically quantized model's output) and a
    # lazily conjugated or negated view (``x.conj()``): each would cost the whole call's
    # predictions, so they are made dense, dequantized and resolved first.
    if str(getattr(values, "layout", "torch.strided")) != "torch.strided" and \
            hasattr(values, "to_dense"):
        _refuse_too_large(tuple(int(n) for n in values.shape))
        values = values.to_dense()
    if getattr(values, "is_quantized", False) is True:
        values = values.dequantize()
    values = values.cpu()
    for resolve in ("resolve_conj", "resolve_neg"):
        if hasattr(values, resolve):
            values = getattr(values, resolve)()
    try:
        return np.asarray(values.numpy())
    except TypeError:
        return np.asarray(values.float().numpy())


def _refuse_too_large(shape: tuple[int, ...]) -> None:
    """Raise SparseResultTooLarge for a sparse tensor that would hold more columns or values
    dense than a scipy.sparse result may: a few kilobytes of non-zeros over a million labels
    would be gigabytes of zeros, read (and folded column by column) under the monitor's
    lock. A result's rows then count as ``bad_shape``; an input's check is given up.

    >>> _refuse_too_large((2, 4096))
    >>> _refuse_too_large((2, 1_000_000))  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    SparseResultTooLarge: (2, 1000000)
    """
    from inferwatch.core.result_arrays import (
        MAX_SPARSE_RESULT_CELLS,
        MAX_SPARSE_RESULT_COLUMNS,
        SparseResultTooLarge,
    )

    if math.prod(shape) > MAX_SPARSE_RESULT_CELLS or (
            len(shape) > 1 and shape[-1] > MAX_SPARSE_RESULT_COLUMNS):
        raise SparseResultTooLarge(shape)


def is_tensor(value: object) -> bool:
    """A torch tensor (or any array that must be detached and moved to the CPU first)."""
    return hasattr(value, "detach") and hasattr(value, "cpu")


def is_sparse_tensor(value: object) -> bool:
    """A torch tensor of a sparse layout (COO, CSR, CSC, BSR, BSC)."""
    return is_tensor(value) and hasattr(value, "to_dense") and \
        str(getattr(value, "layout", "torch.strided")) != "torch.strided"


class UnreadableTensor(Exception):
    """A sparse tensor whose entries are not one number each (a hybrid tensor's dense
    blocks): the input is the model's to take, so it is no schema error of the caller's."""


def sparse_tensor_rows(tensor: object, rows: int, width: int, block_rows: int,
                       as_column: bool = False) -> Iterator[np.ndarray]:
    """The `rows` x `width` dense rows of a 1-D or 2-D sparse tensor, `block_rows` at a
    time: never dense whole, as a one-hot input over a large vocabulary would be gigabytes
    of zeros. A 1-D tensor is one row, or with `as_column` one column. Repeated entries
    are summed, as ``to_dense()`` sums them.

    >>> class Tensor:  # what a torch sparse COO tensor offers
    ...     layout, shape = "torch.sparse_coo", (3, 2)
    ...     def detach(self): return self
    ...     def cpu(self): return self
    ...     def coalesce(self): return self
    ...     def to_sparse_coo(self): return self
    ...     def indices(self): return Plain(np.array([[0, 2], [1, 0]]))
    ...     def values(self): return Plain(np.array([5.0, 7.0]))
    >>> class Plain(Tensor):
    ...     def __init__(self, array): self.array = array
    ...     def numpy(self): return self.array
    >>> [block.tolist() for block in sparse_tensor_rows(Tensor(), 3, 2, 2)]
    [[[0.0, 5.0], [0.0, 0.0]], [[7.0, 0.0]]]
    """
    coo = tensor.detach()  # type: ignore[attr-defined]
    if str(getattr(coo, "layout", "")) != "torch.sparse_coo":
        coo = coo.to_sparse_coo() if hasattr(coo, "to_sparse_coo") else coo.to_sparse()
    # Coalesced entries are sorted row-major with repeats summed: each block of rows is
    # then one slice of them.
    coo = coo.coalesce()
    index = tensor_array(coo.indices()).astype(np.int64, copy=False)
    values = tensor_array(coo.values())
    if values.ndim != 1 or index.ndim != 2 or index.shape[0] not in (1, 2):
        raise UnreadableTensor(f"a sparse tensor of {index.shape[0]} sparse and"
                               f" {values.ndim - 1} dense dimensions is not read as rows")
    if index.shape[0] == 2:
        row_of, column_of = index
    elif as_column:
        row_of, column_of = index[0], np.zeros_like(index[0])
    else:
        row_of, column_of = np.zeros_like(index[0]), index[0]
    for start in range(0, rows, block_rows):
        stop = min(rows, start + block_rows)
        first, last = np.searchsorted(row_of, (start, stop)).tolist()
        block = np.zeros((stop - start, width), dtype=values.dtype)
        block[row_of[first:last] - start, column_of[first:last]] = values[first:last]
        yield block
