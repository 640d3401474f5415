"""Where each feature's bins sit in one flat array of counts: :class:`BinLayout`.

A module of its own because three read it: the drift scoring, the drift window and the
batch checks that count into it. It holds no statistics and no state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


class BinLayout:
    """Where each feature's bins sit in one flat array of counts.

    >>> layout = BinLayout([3, 2])
    >>> layout.starts.tolist(), layout.total
    ([0, 3], 5)
    >>> [part.tolist() for part in layout.split(np.arange(5))]
    [[0, 1, 2], [3, 4]]
    """

    __slots__ = ("sizes", "starts", "total")

    def __init__(self, sizes: Sequence[int]) -> None:
        sizes_arr = np.asarray(list(sizes), dtype=np.int64).reshape(-1)
        if np.any(sizes_arr < 1):
            raise ValueError(f"every feature needs at least one bin, got {sizes_arr.tolist()}")
        self.sizes = sizes_arr
        self.starts = np.concatenate(([0], np.cumsum(sizes_arr)))[:-1].astype(np.int64)
        self.total = int(sizes_arr.sum())

    @classmethod
    def of(cls, profiles: Any) -> BinLayout:
        """The layout of a mapping (or sequence) of reference profiles."""
        items = profiles.values() if isinstance(profiles, Mapping) else profiles
        return cls([p.n_bins for p in items])

    def __len__(self) -> int:
        return len(self.sizes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BinLayout) and np.array_equal(self.sizes, other.sizes)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BinLayout({self.sizes.tolist()})"

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        """Per-feature views into a flat array."""
        return np.split(flat, self.starts[1:]) if len(self.sizes) else []

    def join(self, counts: Any) -> np.ndarray:
        """A flat array from per-feature arrays (or a flat array, checked for length)."""
        if isinstance(counts, np.ndarray) and counts.ndim == 1 and counts.dtype != object:
            flat = counts
        else:
            parts = [np.asarray(c).reshape(-1) for c in counts]
            if len(parts) != len(self.sizes):
                raise ValueError(f"expected counts for {len(self.sizes)} features,"
                                 f" got {len(parts)}")
            for i, (part, size) in enumerate(zip(parts, self.sizes)):
                if len(part) != size:
                    raise ValueError(f"feature {i}: expected {size} bin counts, got {len(part)}")
            flat = np.concatenate(parts) if parts else np.zeros(0)
        if len(flat) != self.total:
            raise ValueError(f"expected {self.total} bin counts in all, got {len(flat)}")
        return flat
