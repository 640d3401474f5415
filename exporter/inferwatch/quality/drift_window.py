"""The rolling window of drift bin counts: :class:`DriftWindow`, and its snapshot format.

A window keeps every feature's bin counts end to end (a
:class:`~inferwatch.quality.bin_layout.BinLayout`) over a rolling window in epoch-aligned
age buckets, so windows from several worker processes merge bucket by bucket. Apart from
the scoring (:mod:`inferwatch.quality.drift`) because it is state: filled as calls are
recorded, saved in snapshots and merged across workers, while scoring is arithmetic on the
summed counts at scrape time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from inferwatch import faults
from inferwatch.quality.bin_layout import BinLayout

WINDOW_FORMAT = "inferwatch.drift_window"
WINDOW_VERSION = 1
_INT64_MAX = 2**63 - 1
# The smallest bucket whose ids stay int64 for any time up to 2**32 seconds (the year 2106).
_MIN_BUCKET_SECONDS = 2.0**32 / 2**62
# A window holds age_buckets rows of counts, allocated up front: a snapshot naming 10**8
# buckets (or bins) was a MemoryError rather than a refused file. The cap on buckets is the
# quantile windows' own; the cap on cells (512 MiB of counts) is far past any real profile.
MAX_AGE_BUCKETS = 1000
MAX_WINDOW_CELLS = 2**26


def _finite(value: int | float) -> bool:
    """Whether `value` is a finite float64 (an int past its range is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


class DriftWindow:
    """Bin counts over the last `max_age_seconds`, in `age_buckets` epoch-aligned buckets.

    A bucket's id is ``floor(now / (max_age_seconds / age_buckets))``, the same in every
    process, so windows merge bucket by bucket. The window holds the current bucket and the
    ``age_buckets - 1`` before it, so it spans between ``(age_buckets - 1) / age_buckets``
    and all of `max_age_seconds`. Memory is ``age_buckets`` rows of counts, whatever the
    traffic.

    A merged bucket may be ahead of this process's clock (a worker whose clock runs fast).
    It is kept, and read once the window reaches it; but when this window's own rows need
    its slot and it is more than one bucket ahead of both those rows and every row this
    window added before, the local rows win: the foreign bucket is dropped and counted in
    ``future_buckets_dropped`` (and as a ``drift`` internal error). Rows whose time is
    behind buckets this window itself filled are still refused (`add` returns False).

    >>> window = DriftWindow([2, 3], max_age_seconds=60, age_buckets=6)
    >>> window.add([np.array([1, 0]), np.array([0, 0, 1])], rows=1, now=1000.0)
    True
    >>> counts, rows = window.counts(now=1030.0)
    >>> [c.tolist() for c in counts], rows
    ([[1, 0], [0, 0, 1]], 1)
    >>> window.counts(now=1100.0)[1]
    0
    """

    def __init__(self, n_bins_per_feature: BinLayout | Sequence[int],
                 max_age_seconds: float = 3600.0, age_buckets: int = 6) -> None:
        if not (isinstance(max_age_seconds, (int, float)) and not isinstance(max_age_seconds, bool)
                and _finite(max_age_seconds)
                and max_age_seconds > 0):
            raise ValueError(f"max_age_seconds must be a positive number, got {max_age_seconds!r}")
        if not isinstance(age_buckets, int) or isinstance(age_buckets, bool) or age_buckets < 1:
            raise ValueError(f"age_buckets must be a positive integer, got {age_buckets!r}")
        if max_age_seconds / age_buckets < _MIN_BUCKET_SECONDS:
            # Bucket ids are int64: today's id of a smaller bucket does not fit, and every
            # add raised an OverflowError into the caller.
            raise ValueError(f"max_age_seconds / age_buckets must be at least"
                             f" {_MIN_BUCKET_SECONDS:.3g} seconds, got"
                             f" {max_age_seconds!r} / {age_buckets!r}")
        if age_buckets > MAX_AGE_BUCKETS:
            raise ValueError(f"age_buckets must be at most {MAX_AGE_BUCKETS}, got {age_buckets!r}")
        self.layout = (n_bins_per_feature if isinstance(n_bins_per_feature, BinLayout)
                       else BinLayout(n_bins_per_feature))
        if age_buckets * self.layout.total > MAX_WINDOW_CELLS:
            raise ValueError(f"age_buckets x bins must be at most {MAX_WINDOW_CELLS} counts,"
                             f" got {age_buckets} x {self.layout.total}")
        self.max_age_seconds = float(max_age_seconds)
        self.bucket_seconds = self.max_age_seconds / age_buckets
        self._start_empty(age_buckets)

    def _start_empty(self, age_buckets: int) -> None:
        """No bucket of the window's layout and settings holds a count yet."""
        self.age_buckets = age_buckets
        self._ids = np.full(age_buckets, -1, dtype=np.int64)
        self._counts = np.zeros((age_buckets, self.layout.total), dtype=np.int64)
        self._rows = np.zeros(age_buckets, dtype=np.int64)
        self._lock = threading.Lock()
        # Bumped by every add and merge: scores computed for one value still hold.
        self.changes = 0
        # The newest bucket a local add wrote: the only clock the window has of its own.
        self._newest_added = -1
        self.future_buckets_dropped = 0

    @classmethod
    def empty(cls, bins: tuple[int, ...], max_age_seconds: float,
              age_buckets: int) -> DriftWindow:
        """A new window of `bins` per feature: ``DriftWindow(bins, max_age_seconds,
        age_buckets)``, and the same errors, with the settings checked once per distinct
        value (a merged view builds two windows per model on every scrape).

        >>> DriftWindow.empty((2, 3), 60.0, 6).counts(now=1000.0)[1]
        0
        """
        key = (bins, type(max_age_seconds), max_age_seconds, type(age_buckets), age_buckets)
        accepted = _ACCEPTED_WINDOWS.get(key)
        if accepted is None:
            checked = cls(layout_of(bins), max_age_seconds=max_age_seconds,
                          age_buckets=age_buckets)  # raises as the constructor does
            accepted = (checked.layout, checked.max_age_seconds, checked.bucket_seconds)
            if len(_ACCEPTED_WINDOWS) < MAX_ACCEPTED_WINDOWS:
                _ACCEPTED_WINDOWS[key] = accepted
        window = cls.__new__(cls)
        window.layout, window.max_age_seconds, window.bucket_seconds = accepted
        window._start_empty(age_buckets)
        return window

    def renew_lock(self) -> None:
        """A new lock in a forked child (one held at fork time would never be released)."""
        self._lock = threading.Lock()

    def bucket_id(self, now: float) -> int:
        try:
            bucket = math.floor(now / self.bucket_seconds)
        except (ValueError, OverflowError, TypeError):
            # NaN or infinity: a bare "cannot convert float NaN to integer" (an
            # OverflowError for infinity) named neither the argument nor the problem.
            raise ValueError(f"drift window: now must be a finite number of Unix seconds, "
                             f"got {now!r}") from None
        if not -_INT64_MAX <= bucket <= _INT64_MAX:
            # Stored as int64, it was an OverflowError from numpy.
            raise ValueError(f"drift window: now is too far from the epoch for buckets of"
                             f" {self.bucket_seconds!r} seconds, got {now!r}")
        return bucket

    def add(self, bin_counts: Any, rows: int, now: float | None = None) -> bool:
        """Add counts (flat or per feature) and `rows`; False when `now` is already too old."""
        flat = np.asarray(self.layout.join(bin_counts))
        if flat.dtype.kind not in "iub":
            # Cast as they were, a NaN count became -2**63 and 2.5 became 2: a window of
            # negative counts scores nonsense, and its snapshot no longer loads.
            try:
                whole = flat.astype(np.float64)
            except (TypeError, ValueError):
                whole = np.array([np.nan])
            if not (np.isfinite(whole).all() and (whole == np.floor(whole)).all()):
                raise ValueError("counts must be whole numbers >= 0")
            if len(whole) and whole.max() >= 2.0**63:
                # Cast to int64 it became -2**63: a negative count no scorer accepts.
                raise ValueError(f"counts must be at most {_INT64_MAX}, got {whole.max()!r}")
            flat = whole
        elif flat.dtype.kind == "u" and len(flat) and int(flat.max()) > _INT64_MAX:
            # Compared as Python ints: numpy 1 compares uint64 with int64 as floats, where
            # 2**63 equals the int64 maximum, and the count was stored negative.
            raise ValueError(f"counts must be at most {_INT64_MAX}, got {flat.max()!r}")
        if not (isinstance(rows, (int, float, np.integer, np.floating)) and math.isfinite(rows)
                and rows == math.floor(rows)):
            raise ValueError(f"rows must be a whole number >= 0, got {rows!r}")
        if rows < 0 or (len(flat) and flat.min() < 0):
            raise ValueError("counts and rows must be non-negative")
        bucket = self.bucket_id(time.time() if now is None else now)
        slot = bucket % self.age_buckets
        dropped = False
        with self._lock:
            held = int(self._ids[slot])
            if held > bucket:
                if held <= max(self._newest_added, bucket) + 1:
                    return False  # its bucket has already been recycled for newer data
                # Merged from a clock running ahead: kept, it would refuse every local row
                # of this slot until the clock caught up, possibly for hours.
                dropped = True
                self.future_buckets_dropped += 1
            if held != bucket:
                self._ids[slot] = bucket
                self._counts[slot] = 0
                self._rows[slot] = 0
            self._counts[slot] = _saturated(self._counts[slot], flat.astype(np.int64, copy=False))
            self._rows[slot] = min(int(self._rows[slot]) + int(rows), _INT64_MAX)
            self._newest_added = max(self._newest_added, bucket)
            self.changes += 1
        if dropped:
            faults.record("drift")
        return True

    def flat_counts(self, now: float | None = None) -> tuple[np.ndarray, int]:
        """(all features' bin counts end to end, rows) inside the window at `now`."""
        current = self.bucket_id(time.time() if now is None else now)
        with self._lock:
            live = (self._ids > current - self.age_buckets) & (self._ids <= current)
            if self._counts.size and self._counts.max() > _INT64_MAX // self.age_buckets:
                # The int64 sum would wrap to negative counts, which scoring refuses.
                summed = self._counts[live].sum(axis=0, dtype=np.float64)
                over = summed >= 2.0**63
                counts = np.where(over, 0.0, summed).astype(np.int64)
                counts[over] = _INT64_MAX
            else:
                counts = self._counts[live].sum(axis=0)
            rows = min(sum(int(r) for r in self._rows[live].tolist()), _INT64_MAX)
        return counts, rows

    def counts(self, now: float | None = None) -> tuple[list[np.ndarray], int]:
        """(per-feature bin counts, rows) inside the window at `now` (default: the clock)."""
        flat, rows = self.flat_counts(now)
        return self.layout.split(flat), rows

    def check_mergeable(self, other: DriftWindow) -> None:
        """Raise ValueError when :meth:`merge` would refuse `other`."""
        if other.layout != self.layout:
            raise ValueError(f"cannot merge windows with different bins: {self.layout} and"
                             f" {other.layout}")
        if (other.bucket_seconds, other.age_buckets) != (self.bucket_seconds, self.age_buckets):
            raise ValueError("cannot merge windows with different max_age_seconds or age_buckets")

    def merge(self, other: DriftWindow, now: float | None = None) -> DriftWindow:
        """Add another window's buckets (same layout and bucket size) into this one; with
        `now`, as :meth:`merge_buckets` takes it."""
        self.check_mergeable(other)
        with other._lock:
            ids, counts, rows = other._ids.copy(), other._counts.copy(), other._rows.copy()
        self.merge_buckets(ids.tolist(), rows.tolist(), counts, now=now)
        return self

    def merge_buckets(self, ids: Sequence[int], rows: Sequence[int],
                      counts: Sequence[np.ndarray], now: float | None = None) -> None:
        """Fold buckets of another window of this layout in, as :meth:`merge` does: a bucket
        adds to the same bucket here and replaces an older one in its slot.

        Given `now`, a bucket ahead of the current bucket at `now` is dropped and counted,
        whatever its slot holds (by ids alone, a window quiet for a while cannot be told
        from a clock running far ahead), and a bucket in the window at `now` replaces one
        held ahead of `now` (dropped and counted too). Without `now` (a merged view read at
        the newest worker's time, which may be ahead of this clock after it stepped back)
        every newer bucket wins its slot.

        >>> window = DriftWindow([2], max_age_seconds=60, age_buckets=6)
        >>> window.merge_buckets([100, -1], [3, 0], [np.array([1, 2]), np.array([0, 0])])
        >>> window.counts(now=1000.0)[1]
        3
        """
        current = None if now is None else self.bucket_id(now)
        dropped = 0
        with self._lock:
            for bucket, bucket_rows, bucket_counts in zip(ids, rows, counts):
                if bucket < 0:
                    continue
                if current is not None and bucket > current:
                    # Kept, a bucket ahead of `now` (a clock running fast, a fold's archive)
                    # took its slot from the rows still in the window, and through the
                    # archive refused every later bucket of that slot until the clock
                    # reached it, hours later.
                    dropped += 1
                    continue
                slot = bucket % self.age_buckets
                held = int(self._ids[slot])
                if held == bucket:
                    self._counts[slot] = _saturated(self._counts[slot],
                                                    np.asarray(bucket_counts, dtype=np.int64))
                    self._rows[slot] = min(int(self._rows[slot]) + int(bucket_rows), _INT64_MAX)
                elif held < bucket or (current is not None and held > current
                                       and bucket > current - self.age_buckets):
                    if held > bucket:
                        # Held ahead of `now`: the bucket in the window wins its slot (the
                        # held one was silently kept, and this one's rows lost).
                        dropped += 1
                    self._ids[slot] = bucket
                    self._counts[slot] = bucket_counts
                    self._rows[slot] = bucket_rows
            self.future_buckets_dropped += dropped
            self.changes += 1
        for _ in range(dropped):
            faults.record("drift")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot (only buckets that were used)."""
        with self._lock:
            order = np.argsort(self._ids)
            buckets = [{"id": int(self._ids[s]), "rows": int(self._rows[s]),
                        "counts": self._counts[s].tolist()}
                       for s in order.tolist() if self._ids[s] >= 0]
            newest_added = self._newest_added
        data = {"format": WINDOW_FORMAT, "version": WINDOW_VERSION,
                "bins": self.layout.sizes.tolist(), "max_age_seconds": self.max_age_seconds,
                "age_buckets": self.age_buckets, "buckets": buckets}
        if newest_added >= 0:
            # Without it a copy took buckets it filled itself for a clock running ahead:
            # after a step back of a whole window, a late add replaced rows the original
            # keeps (and refuses the add for).
            data["newest_added"] = newest_added
        return data

    @classmethod
    def from_dict(cls, data: Any) -> DriftWindow:
        """Rebuild a window from :meth:`to_dict`; a malformed snapshot is a ValueError."""
        if not isinstance(data, dict):
            raise ValueError("drift window: expected an object")
        if data.get("format") != WINDOW_FORMAT or data.get("version") != WINDOW_VERSION:
            raise ValueError(f"drift window: keys 'format'/'version' are"
                             f" {data.get('format')!r}/{data.get('version')!r},"
                             f" expected {WINDOW_FORMAT!r}/{WINDOW_VERSION}")
        bins = data.get("bins")
        if (not isinstance(bins, list) or not set(map(type, bins)) <= {int}
                or (bins and min(bins) < 1)):
            raise ValueError("drift window: key 'bins' must be a list of positive integers")
        try:
            window = cls(layout_of(tuple(bins)), max_age_seconds=data.get("max_age_seconds"),
                         age_buckets=data.get("age_buckets"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"drift window: {exc}") from None
        buckets = data.get("buckets")
        if not isinstance(buckets, list) or len(buckets) > window.age_buckets:
            raise ValueError(f"drift window: key 'buckets' must be a list of at most"
                             f" {window.age_buckets} buckets")
        for i, bucket in enumerate(buckets):
            where = f"drift window: buckets[{i}]"
            if not isinstance(bucket, dict):
                raise ValueError(f"{where}: expected an object")
            bucket_id, rows, counts = bucket.get("id"), bucket.get("rows"), bucket.get("counts")
            # Both are kept as int64: a larger one would be an OverflowError, not the
            # ValueError a malformed snapshot promises.
            if not _is_int(bucket_id) or not 0 <= bucket_id <= _INT64_MAX:
                raise ValueError(f"{where}: key 'id' must be an integer from 0 to {_INT64_MAX}")
            if not _is_int(rows) or not 0 <= rows <= _INT64_MAX:
                raise ValueError(f"{where}: key 'rows' must be an integer from 0 to {_INT64_MAX}")
            array = _count_array(counts, window.layout.total)
            if array is None:
                raise ValueError(f"{where}: key 'counts' must be {window.layout.total}"
                                 " non-negative integers")
            slot = bucket_id % window.age_buckets
            if window._ids[slot] >= 0:
                raise ValueError(f"{where}: id {bucket_id} shares a slot with another bucket")
            window._ids[slot] = bucket_id
            window._counts[slot] = array
            window._rows[slot] = rows
        # Absent in snapshots of earlier releases: the window then knows no clock of its own.
        newest_added = data.get("newest_added", -1)
        if not _is_int(newest_added) or not -1 <= newest_added <= _INT64_MAX:
            raise ValueError(f"drift window: key 'newest_added' must be an integer from -1"
                             f" to {_INT64_MAX}")
        window._newest_added = newest_added
        return window


def _saturated(counts: np.ndarray, more: np.ndarray) -> np.ndarray:
    """`counts` + `more` (both int64, >= 0), held at the int64 maximum: a wrapped sum is a
    negative count, which makes every later score of the window raise."""
    total = counts + more
    if len(total) and total.min() < 0:
        total = np.where(total < 0, _INT64_MAX, total)
    return total


# (bins, max_age_seconds, age_buckets, with their types) -> what DriftWindow made of the
# settings it accepted: (layout, max_age_seconds, bucket_seconds).
# A few per deployment.
_ACCEPTED_WINDOWS: dict[tuple, tuple[BinLayout, float, float]] = {}
MAX_ACCEPTED_WINDOWS = 64
_layouts: dict[tuple[int, ...], BinLayout] = {}


def layout_of(bins: tuple[int, ...]) -> BinLayout:
    """One BinLayout per distinct bin list: a merged scrape decodes many windows alike."""
    layout = _layouts.get(bins)
    if layout is None:
        if len(_layouts) >= 64:
            _layouts.clear()
        layout = _layouts[bins] = BinLayout(bins)
    return layout


def _count_array(counts: Any, size: int) -> np.ndarray | None:
    """`counts` as int64 when it is `size` non-negative integers (no bools), else None.

    Checked whole-array: a merged scrape decodes two windows per model and worker.
    """
    if not isinstance(counts, list) or len(counts) != size:
        return None
    if size and not set(map(type, counts)) <= {int}:
        return None
    try:
        array = np.asarray(counts, dtype=np.int64)
    except OverflowError:
        return None
    if array.size and array.min() < 0:
        return None
    return array


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
