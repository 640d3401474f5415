"""The bin store behind a DDSketch: counts per bin key for one sign, and its dict form.

A module of its own because it is the sketch's memory layout (a dense int64 array whose
span never exceeds ``max_bins``, folding the keys closest to zero), apart from what the
sketch does with keys: turn values into them and read quantiles off them. The dict form
is the store's part of :meth:`DDSketch.to_dict` and of the checks :meth:`DDSketch.from_dict`
makes of a snapshot's bins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inferwatch.core.sketch_limits import MAX_TOTAL_COUNT


class Store:
    """Counts per bin key for one sign: a dense array whose first cell is key `offset`.

    `min_key`/`max_key` bound the non-empty bins (meaningless while `total` is 0). When the
    span of keys would exceed `max_bins`, every key below ``max_key - max_bins + 1`` folds
    into that key. The result depends only on the multiset of keys added, not their order,
    so merging stores equals adding everything to one.
    """

    __slots__ = ("bins", "max_bins", "max_key", "min_key", "offset", "total")

    def __init__(self, max_bins: int) -> None:
        self.max_bins = max_bins
        self.bins = np.zeros(0, dtype=np.int64)
        self.offset = 0
        self.min_key = 0
        self.max_key = -1
        self.total = 0

    def add_keys(self, keys: np.ndarray) -> None:
        lo = int(keys.min())
        hi = int(keys.max())
        if hi - lo >= self.max_bins:
            lo = hi - self.max_bins + 1
            keys = np.maximum(keys, lo)
        self.add_dense(lo, np.bincount(keys - lo))

    def add_key_list(self, keys: list[int]) -> None:
        """:meth:`add_keys` for a few keys as Python ints (a drain's handful of values): one
        store per key costs less than numpy's fixed cost per call. The same bins result."""
        new_lo, new_hi = self._kept_range(min(keys), max(keys))
        self._make_room(new_lo, new_hi)
        bins, offset = self.bins, self.offset
        for key in keys:  # keys below the kept range fold into its lowest bin
            bins[(key if key >= new_lo else new_lo) - offset] += 1
        self.total += len(keys)
        self.min_key, self.max_key = new_lo, new_hi

    def add_dense(self, lo: int, counts: np.ndarray) -> None:
        """Add `counts[i]` to key ``lo + i``; the first and last counts must be non-zero."""
        new_lo, new_hi = self._kept_range(lo, lo + counts.size - 1)
        self._make_room(new_lo, new_hi)
        added = int(counts.sum())
        if lo < new_lo:
            cut = new_lo - lo
            self.bins[new_lo - self.offset] += counts[:cut].sum()
            counts = counts[cut:]
            lo = new_lo
        start = lo - self.offset
        self.bins[start : start + counts.size] += counts
        self.total += added
        self.min_key, self.max_key = new_lo, new_hi

    def _kept_range(self, lo: int, hi: int) -> tuple[int, int]:
        """The key range after adding keys lo..hi: with the stored ones, at most max_bins wide
        (the lowest keys fold into its first bin)."""
        if self.total:
            lo, hi = min(lo, self.min_key), max(hi, self.max_key)
        if hi - lo >= self.max_bins:
            lo = hi - self.max_bins + 1
        return lo, hi

    def _make_room(self, new_lo: int, new_hi: int) -> None:
        """Make the array cover [new_lo, new_hi], folding existing keys below new_lo."""
        bins, offset = self.bins, self.offset
        if offset <= new_lo and new_hi < offset + bins.size:
            if self.total and self.min_key < new_lo:
                cut = new_lo - offset
                folded = bins[:cut].sum()
                bins[:cut] = 0
                bins[cut] += folded
            return
        span = new_hi - new_lo + 1
        # Slack on both sides so a slowly widening range does not reallocate on every add.
        length = min(self.max_bins, span + max(64, span // 2))
        start = new_lo - (length - span) // 2
        grown = np.zeros(length, dtype=np.int64)
        if self.total:
            keep_lo = max(self.min_key, new_lo)
            if keep_lo <= self.max_key:
                grown[keep_lo - start : self.max_key - start + 1] = bins[
                    keep_lo - offset : self.max_key - offset + 1
                ]
            if self.min_key < new_lo:
                fold_end = min(new_lo, self.max_key + 1) - offset
                grown[new_lo - start] += bins[self.min_key - offset : fold_end].sum()
        self.bins, self.offset = grown, start

    def used(self) -> np.ndarray:
        """The counts from min_key to max_key (a view)."""
        if not self.total:
            return self.bins[:0]
        return self.bins[self.min_key - self.offset : self.max_key - self.offset + 1]

    def copy(self) -> Store:
        other = Store(self.max_bins)
        other.bins = self.bins.copy()
        other.offset, other.min_key, other.max_key = self.offset, self.min_key, self.max_key
        other.total = self.total
        return other


def store_to_dict(store: Store, packed: bool = False) -> dict[str, Any]:
    """A store as its non-empty bin range: ``{"offset": first key, "counts": [...]}``;
    `packed`: the counts as a copy of the int64 bins, for a worker file's packer (a list
    would be read back into an array there, at about five times the cost).

    >>> store = Store(64); store.add_dense(3, np.array([2, 0, 1]))
    >>> store_to_dict(store), store_to_dict(store, packed=True)["counts"].dtype.name
    ({'offset': 3, 'counts': [2, 0, 1]}, 'int64')
    """
    used = store.used()
    return {"offset": store.min_key if store.total else 0,
            "counts": used.copy() if packed else used.tolist()}


def store_from_dict(store: Store, data: object, name: str, lowest: int, highest: int) -> None:
    """Add to `store` the bins of `data`, :func:`store_to_dict` output as a snapshot holds
    it: keys within `lowest`..`highest`, ValueError naming the sketch field `name` if not."""
    if not isinstance(data, dict) or set(data) != {"offset", "counts"}:
        raise ValueError(f"sketch field {name!r} must be a dict with 'offset' and 'counts'")
    offset, counts = data["offset"], data["counts"]
    if counts.__class__ is np.ndarray and counts.ndim == 1 and counts.dtype.kind in "iu":
        counts = counts.tolist()  # a packed store_to_dict, not read from a file
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise ValueError(f"sketch {name}.offset must be an integer, got {offset!r}")
    if not isinstance(counts, list):
        raise ValueError(f"sketch {name}.counts must be a list, got {type(counts).__name__}")
    if not counts:
        return
    if len(counts) > store.max_bins:
        raise ValueError(f"sketch {name}.counts has {len(counts)} bins, more than max_bins")
    if not lowest <= offset <= highest - len(counts) + 1:
        raise ValueError(f"sketch {name}: bin keys out of the indexable range")
    if any(isinstance(c, bool) or not isinstance(c, int) for c in counts):
        raise ValueError(f"sketch {name}.counts must hold integers only")
    array = np.array(counts, dtype=object)
    if array.min() < 0 or array.sum() > MAX_TOTAL_COUNT:
        raise ValueError(f"sketch {name}.counts must be non-negative, in total <= 2**61")
    array = array.astype(np.int64)
    if array[0] == 0 or array[-1] == 0:
        raise ValueError(f"sketch {name}.counts must start and end with a non-empty bin")
    store.add_dense(offset, array)

