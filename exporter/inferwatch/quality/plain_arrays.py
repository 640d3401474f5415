"""numpy array subclasses as the plain arrays the drain reads.

A subclass keeps the methods of ndarray but not their meaning: ``np.matrix.ravel()`` stays
2-D, and ``np.concatenate`` drops a masked array's mask. Results and inputs of such a class
are made plain before anything else reads them.
"""

from __future__ import annotations

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
    filled = data.astype(float if data.dtype.kind in "iufb" else object)
    filled[mask] = np.nan if filled.dtype.kind == "f" else None
    return filled
