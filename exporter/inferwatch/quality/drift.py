"""Drift of binned counts against reference fractions: PSI, Jensen-Shannon and KS distances.

All features are scored at once: their bins sit end to end in one flat array described by
a :class:`BinLayout`, so every statistic is a handful of numpy operations whatever the
number of features. :class:`DriftWindow` keeps those flat counts over a rolling window in
epoch-aligned age buckets, so windows from several worker processes merge bucket by bucket.

>>> ref = np.array([0.25, 0.25, 0.25, 0.25])
>>> round(psi(ref, np.array([25, 25, 25, 25])), 6)
0.0
>>> round(js_distance(ref, np.array([50, 50, 0, 0])), 4)
0.5579
>>> ks_distance(ref, np.array([50, 50, 0, 0]))
0.5
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from inferwatch import faults

METHODS = ("psi", "js", "ks")
# PSI divides by bin shares; an empty bin (in the reference or the window) counts as this
# share instead of zero, the usual convention (and Evidently's value).
EPSILON = 1e-4
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


# --- statistics on flat arrays ---------------------------------------------------------------

def _shares(flat: np.ndarray, layout: BinLayout) -> tuple[np.ndarray, np.ndarray]:
    """Each bin's share of its feature's total, and the totals (NaN shares when empty)."""
    flat = flat.astype(np.float64, copy=False)
    with np.errstate(over="ignore"):
        totals = np.add.reduceat(flat, layout.starts) if layout.total else np.zeros(0)
    if not np.isfinite(totals).all():
        # Finite counts whose sum overflows (1e308 twice) gave every bin a share of 0, and
        # a KS of 1: shares do not change when a feature's counts are scaled down first.
        scale = np.maximum.reduceat(flat, layout.starts)
        flat = flat / np.repeat(np.where(scale > 0, scale, 1.0), layout.sizes)
        totals = np.add.reduceat(flat, layout.starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = flat / np.repeat(totals, layout.sizes)
    return shares, totals


def _psi(p: np.ndarray, q: np.ndarray, layout: BinLayout, epsilon: float) -> np.ndarray:
    p = np.maximum(p, epsilon)
    q = np.maximum(q, epsilon)
    return np.add.reduceat((q - p) * np.log(q / p), layout.starts)


def _js(p: np.ndarray, q: np.ndarray, layout: BinLayout) -> np.ndarray:
    m = 0.5 * (p + q)
    with np.errstate(invalid="ignore", divide="ignore"):
        # 0 * log(0 / m) is 0; m > 0 wherever p > 0 or q > 0.
        terms = np.where(p > 0, p * np.log2(p / m), 0.0) + np.where(q > 0, q * np.log2(q / m), 0.0)
    divergence = 0.5 * np.add.reduceat(terms, layout.starts)
    return np.sqrt(np.clip(divergence, 0.0, 1.0))


def _ks(p: np.ndarray, q: np.ndarray, layout: BinLayout, ordered: np.ndarray) -> np.ndarray:
    diff = p - q
    running = np.cumsum(diff)
    before = np.concatenate(([0.0], running))[layout.starts]
    cdf_gap = np.maximum.reduceat(np.abs(running - np.repeat(before, layout.sizes)), layout.starts)
    total_variation = 0.5 * np.add.reduceat(np.abs(diff), layout.starts)
    return np.where(ordered, cdf_gap, total_variation)


def _scores(ref_shares: np.ndarray, ref_totals: np.ndarray, counts: np.ndarray,
            layout: BinLayout, ordered: np.ndarray, methods: Sequence[str],
            epsilon: float) -> dict[str, np.ndarray]:
    q, totals = _shares(counts, layout)
    empty = (totals <= 0) | (ref_totals <= 0)
    q = np.nan_to_num(q, nan=0.0)
    out: dict[str, np.ndarray] = {}
    for method in methods:
        if method == "psi":
            values = _psi(ref_shares, q, layout, epsilon)
        elif method == "js":
            values = _js(ref_shares, q, layout)
        elif method == "ks":
            values = _ks(ref_shares, q, layout, ordered)
        else:
            raise ValueError(f"unknown drift method {method!r}; choose from {METHODS}")
        values[empty] = np.nan
        out[method] = values
    return out


def _checked(flat: np.ndarray, what: str) -> np.ndarray:
    """`flat` when every value is a finite number >= 0, else a ValueError naming `what`.

    A NaN, infinite or negative count or fraction has no share of a distribution: scored
    as it is, it gives a finite number that looks like real drift (a NaN count made a
    feature's total NaN and its other bins a PSI of 8.5).
    """
    if flat.dtype.kind not in "iub":
        try:
            bad = not bool(np.isfinite(flat).all())
        except TypeError:
            raise ValueError(f"{what} must be numbers, got dtype {flat.dtype}") from None
        if bad:
            raise ValueError(f"{what} must be finite numbers >= 0, got"
                             f" {flat[~np.isfinite(flat)][0]!r}")
    if flat.size and flat.min() < 0:
        raise ValueError(f"{what} must be finite numbers >= 0, got {flat.min()!r}")
    return flat


def _checked_epsilon(epsilon: Any) -> float:
    """A PSI floor in (0, 1): at 0 an empty bin is log(0) (NaN or infinite PSI), and at 1 or
    more every share is floored to the same value, so nothing ever drifts."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating)) \
            or not 0.0 < float(epsilon) < 1.0:
        raise ValueError(f"epsilon must be a number between 0 and 1 (exclusive), got"
                         f" {epsilon!r}")
    return float(epsilon)


def _pairs(ref_fractions: Any, counts: Any) -> tuple[bool, BinLayout, np.ndarray, np.ndarray]:
    single = len(ref_fractions) > 0 and np.ndim(ref_fractions[0]) == 0
    refs = [ref_fractions] if single else list(ref_fractions)
    cnts = [counts] if single else list(counts)
    if len(refs) != len(cnts):
        raise ValueError(f"{len(refs)} reference distributions but {len(cnts)} count arrays")
    layout = BinLayout([len(r) for r in refs])
    ref_flat = layout.join([np.asarray(r, dtype=np.float64) for r in refs])
    count_flat = np.asarray(layout.join(cnts))
    return single, layout, _checked(ref_flat, "reference fractions"), \
        _checked(count_flat, "counts")


def _one_method(method: str, ref_fractions: Any, counts: Any, ordered: Any = True,
                epsilon: float = EPSILON) -> Any:
    epsilon = _checked_epsilon(epsilon)
    single, layout, ref_flat, count_flat = _pairs(ref_fractions, counts)
    ref_shares, ref_totals = _shares(ref_flat, layout)
    ordered_mask = np.broadcast_to(np.asarray(ordered, dtype=bool), (len(layout),))
    values = _scores(np.nan_to_num(ref_shares), ref_totals, count_flat, layout, ordered_mask,
                     (method,), epsilon)[method]
    return float(values[0]) if single else values


def psi(ref_fractions: Any, counts: Any, *, epsilon: float = EPSILON) -> Any:
    """Population stability index: sum over bins of (q - p) * ln(q / p).

    `p` are the reference fractions, `q` the window's counts as shares; shares below
    `epsilon` count as `epsilon`. One feature (1-D arrays) gives a float; a sequence of
    per-feature arrays gives an array with one value per feature (NaN when empty).

    >>> round(psi([0.5, 0.5], [90, 10]), 4)
    0.8789
    >>> psi([[0.5, 0.5], [1.0]], [[50, 50], [7]]).tolist()
    [0.0, 0.0]
    """
    return _one_method("psi", ref_fractions, counts, epsilon=epsilon)


def js_distance(ref_fractions: Any, counts: Any) -> Any:
    """Jensen-Shannon distance, base 2 (in [0, 1]), between the reference and the window.

    Equal to ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.

    >>> js_distance([1.0, 0.0], [0, 10])
    1.0
    """
    return _one_method("js", ref_fractions, counts)


def ks_distance(ref_fractions: Any, counts: Any, *, ordered: Any = True) -> Any:
    """Largest gap between the cumulative distributions over the ordered bins.

    For unordered (categorical) bins, pass ``ordered=False`` (or one flag per feature): the
    result is then the total variation distance, half the sum of absolute differences,
    which is the largest gap over every set of categories.

    >>> ks_distance([0.5, 0.5, 0.0], [0, 5, 5])
    0.5
    >>> ks_distance([0.5, 0.5, 0.0], [0, 5, 5], ordered=False)
    0.5
    """
    return _one_method("ks", ref_fractions, counts, ordered=ordered)


# --- scoring against a reference -------------------------------------------------------------

class DriftScorer:
    """Drift of window counts against a set of profiles, compiled once for scrape time.

    `profiles` is ``reference.features``, ``reference.outputs`` or a Reference (its features).

    >>> from inferwatch.quality.reference import Reference
    >>> ref = Reference.from_data({"a": np.arange(100.0)}, bins=4)
    >>> scorer = DriftScorer(ref)
    >>> scorer.scores([np.array([0, 0, 0, 10])])[("a", "ks")]
    0.75
    """

    def __init__(self, profiles: Any, *, methods: Sequence[str] = METHODS,
                 epsilon: float = EPSILON) -> None:
        profiles = getattr(profiles, "features", profiles)
        if isinstance(methods, str):
            # One method by name (what the config's drift.method holds), not its letters.
            methods = (methods,)
        for method in methods:
            if method not in METHODS:
                raise ValueError(f"unknown drift method {method!r}; choose from {METHODS}")
        self.names = list(profiles)
        self.methods = tuple(methods)
        self.epsilon = _checked_epsilon(epsilon)
        self.layout = BinLayout.of(profiles)
        ref_flat = np.concatenate([np.asarray(p.fractions, dtype=np.float64)
                                   for p in profiles.values()]) if self.names else np.zeros(0)
        shares, self._ref_totals = _shares(ref_flat, self.layout)
        self._ref_shares = np.nan_to_num(shares)
        self.ordered = np.array([p.is_numeric for p in profiles.values()], dtype=bool)

    def arrays(self, counts: Any) -> dict[str, np.ndarray]:
        """method -> one value per profile, in profile order (NaN where nothing was counted)."""
        if not self.names:
            return {m: np.zeros(0) for m in self.methods}
        flat = self._flat(counts)
        return _scores(self._ref_shares, self._ref_totals, flat, self.layout, self.ordered,
                       self.methods, self.epsilon)

    def scores(self, counts: Any) -> dict[tuple[str, str], float]:
        """(name, method) -> drift, for counts given flat, per profile, or by name."""
        arrays = self.arrays(counts)
        out: dict[tuple[str, str], float] = {}
        for method, values in arrays.items():
            for name, value in zip(self.names, values.tolist()):
                out[(name, method)] = value
        return out

    def _flat(self, counts: Any) -> np.ndarray:
        if isinstance(counts, Mapping):
            # A misspelled name was scored as a profile without rows (NaN, "no data"),
            # hiding the drift of the feature it meant.
            known = set(self.names)
            unknown = [name for name in counts if name not in known]
            if unknown:
                more = ", ..." if len(unknown) > 10 else ""
                raise ValueError(f"counts name no profile: {', '.join(map(repr, unknown[:10]))}"
                                 f"{more} (profiles: {', '.join(map(repr, self.names[:10]))}"
                                 f"{', ...' if len(self.names) > 10 else ''})")
            counts = [counts.get(name, np.zeros(size)) for name, size in
                      zip(self.names, self.layout.sizes.tolist())]
        return _checked(np.asarray(self.layout.join(counts)), "counts")


def drift_scores(reference: Any, window_counts: Any, *, methods: Sequence[str] = METHODS,
                 epsilon: float = EPSILON) -> dict[tuple[str, str], float]:
    """(name, method) -> drift of `window_counts` against a reference.

    `reference` is a Reference (scores its features) or a mapping of profiles such as
    ``reference.outputs`` (scores predictions). `window_counts` is what
    :meth:`DriftWindow.counts` returns first: per-profile bin counts (or a flat array, or a
    dict by name). Compile a :class:`DriftScorer` once instead when scoring repeatedly.

    >>> from inferwatch.quality.reference import Reference
    >>> ref = Reference.from_data({"a": np.arange(100.0)}, bins=4)
    >>> drift_scores(ref, [np.array([25, 25, 25, 25])])
    {('a', 'psi'): 0.0, ('a', 'js'): 0.0, ('a', 'ks'): 0.0}
    """
    return DriftScorer(reference, methods=methods, epsilon=epsilon).scores(window_counts)


# --- the rolling window ---------------------------------------------------------------------

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
        elif flat.dtype.kind == "u" and len(flat) and flat.max() > _INT64_MAX:
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
