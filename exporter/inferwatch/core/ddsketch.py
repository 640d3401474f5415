"""Relative-error quantile sketch (DDSketch) backing the rolling prediction summaries.

prometheus_client's Summary exposes no quantiles, so inferwatch keeps its own. A value
``x`` goes to the logarithmic bin ``ceil(log(|x|) / log(gamma))`` with
``gamma = (1 + alpha) / (1 - alpha)``; every value in a bin lies within ``alpha``
relative error of the bin's representative value, so every quantile does too. Positive
and negative values have their own store, values too small to index count as zero.
Stores are dense int64 arrays capped at ``max_bins`` bins: past the cap the bins closest
to zero fold together, so memory never depends on how many values were added, and two
sketches merge by adding aligned arrays, which is what lets worker processes combine.

Not thread-safe: the caller serialises access (sketches are filled when data is collected,
not on the request path).

>>> sketch = DDSketch()
>>> sketch.add([1.0, 2.0, 3.0, 4.0, 100.0])
>>> [round(v, 1) for v in sketch.quantiles([0.0, 0.5, 1.0])]  # each within 1%
[1.0, 3.0, 100.5]
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

import numpy as np

from inferwatch.core.sketch_limits import MAX_TOTAL_COUNT, check_max_bins, check_relative_accuracy
from inferwatch.core.sketch_store import Store, store_from_dict, store_to_dict

FORMAT_VERSION = 1
DEFAULT_RELATIVE_ACCURACY = 0.01
DEFAULT_MAX_BINS = 2048
# How strict JSON (the status snapshot) writes a float that is no finite number.
NON_FINITE_TEXT = ("+Inf", "-Inf", "NaN")
# Bin key -> representative value, per relative accuracy; emptied when it reaches the bound
# (a sketch spans at most max_bins keys, so a window's quantiles use few of them).
_KEY_VALUES: dict[float, dict[int, float]] = {}
_KEY_VALUES_MAX = 1 << 14
# Accuracies with a memo: every snapshot file names its own, so their number is bounded too.
_KEY_ACCURACIES_MAX = 64

# A tuple of quantiles -> them as checked floats (callers never change the list they get).
_WANTED: dict[tuple, list[float]] = {}
_WANTED_MAX = 256
# Runs of up to this many bins are searched in Python (see DDSketch._value_at).
_PYTHON_RUN_MAX = 32

_FLOAT_MAX = float(np.finfo(np.float64).max)
_FLOAT_TINY = float(np.finfo(np.float64).tiny)
# relative accuracy -> (lowest, highest) key of a finite value
_KEY_RANGES: dict[float, tuple[int, int]] = {}
# (type, relative accuracy, type, max bins) -> an empty sketch of those settings and its key
# range: a merged scrape builds a sketch per series, and would check and derive the same
# settings for each. Bounded as _KEY_RANGES is: every snapshot file names its own.
_DENSE_TEMPLATES: dict[tuple, tuple[DDSketch, int, int]] = {}
# Below this a float sum of non-negative whole numbers is exact (every partial sum is
# below 2**53, with room for the sum's rounding).
_EXACT_FLOAT_SUM = float(1 << 52)
# Up to this many values are summed as Python floats: saving and restoring numpy's error
# state (np.errstate) costs more than the sum of a drain's few values.
_PYTHON_SUM_MAX = 64
# Up to this many values are added by :meth:`DDSketch._add_few`: a drain often brings a
# handful, and numpy's fixed cost per call is most of the cost of adding them.
_FEW_VALUES = 64
# Up to this many keys are counted one by one in Python; more take one numpy bincount.
_KEY_LIST_MAX = 16


def quiet_sum(values: np.ndarray) -> float:
    """The sum of `values`, never a numpy warning: past the float range it is +-inf (and
    inf - inf is nan), as prometheus_client would report.

    >>> quiet_sum(np.array([1e308, 1e308])), quiet_sum(np.arange(100.0))
    (inf, 4950.0)
    """
    if values.size <= _PYTHON_SUM_MAX:
        return float(sum(values.ravel().tolist()))
    with np.errstate(over="ignore", invalid="ignore"):
        return float(values.sum())


class DDSketch:
    """Quantiles within `relative_accuracy` relative error, in memory bounded by `max_bins`.

    >>> import numpy as np
    >>> values = np.random.default_rng(0).lognormal(size=10_000)
    >>> sketch = DDSketch(relative_accuracy=0.01)
    >>> sketch.add(values)
    >>> exact = np.quantile(values, 0.99, method="lower")
    >>> bool(abs(sketch.quantiles([0.99])[0] - exact) <= 0.01 * exact)
    True
    """

    __slots__ = ("_log_gamma", "_max_bins", "_min_indexable", "_multiplier", "_negative",
                 "_positive", "_relative_accuracy", "_sum", "_zero_count")

    def __init__(
        self,
        relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
        max_bins: int = DEFAULT_MAX_BINS,
    ) -> None:
        self._relative_accuracy = check_relative_accuracy(relative_accuracy)
        self._max_bins = check_max_bins(max_bins)
        gamma = (1.0 + self._relative_accuracy) / (1.0 - self._relative_accuracy)
        self._log_gamma = math.log(gamma)
        self._multiplier = 1.0 / self._log_gamma
        # Below this the lowest bin's bounds would be subnormal; such values count as zero.
        self._min_indexable = _FLOAT_TINY * gamma
        self._positive = Store(self._max_bins)
        self._negative = Store(self._max_bins)
        self._zero_count = 0
        self._sum = 0.0

    @classmethod
    def from_bins(cls, relative_accuracy: float, max_bins: int, *,
                  positive: tuple[int, np.ndarray] | None = None,
                  negative: tuple[int, np.ndarray] | None = None,
                  zero_count: int = 0, total: float = 0.0) -> DDSketch:
        """A sketch from dense bin runs ``(first key, counts)``, checked as whole arrays.

        What merging many processes' bins needs: :meth:`from_dict` checks bin by bin.
        The span is still bounded by `max_bins`, so no input can grow memory.

        >>> s = DDSketch.from_bins(0.01, 2048, positive=(0, np.array([2, 0, 1])), zero_count=1)
        >>> s.count
        4
        """
        sketch = cls(relative_accuracy, max_bins)
        lowest, highest = sketch._key_range()
        for store, run in ((sketch._positive, positive), (sketch._negative, negative)):
            if run is None:
                continue
            first, counts = int(run[0]), np.asarray(run[1])
            if counts.ndim != 1 or counts.dtype.kind not in "iu" or (counts < 0).any():
                raise ValueError("bin counts must be a 1-D array of non-negative integers")
            # Bounded as from_dict bounds them: int64 bins summing past 2**63 (or uint64
            # ones cast to int64) would wrap negative, and a positive store would then read
            # negative quantiles. The float sum is a bound check only.
            if counts.size and (counts.max() > MAX_TOTAL_COUNT or
                                counts.sum(dtype=np.float64) > MAX_TOTAL_COUNT):
                raise ValueError(f"bin counts add up to more than {MAX_TOTAL_COUNT}")
            nonzero = np.flatnonzero(counts)
            if nonzero.size:  # add_dense wants non-zero first and last counts
                lo, hi = int(nonzero[0]), int(nonzero[-1])
                if not lowest <= first + lo <= first + hi <= highest:
                    raise ValueError(f"bin keys {first + lo}..{first + hi} are outside"
                                     f" {lowest}..{highest}, the keys of finite values")
                store.add_dense(first + lo, counts[lo:hi + 1].astype(np.int64, copy=False))
        return sketch._with_totals(zero_count, total)

    @classmethod
    def from_dense_bins(cls, relative_accuracy: float, max_bins: int, *,
                        positive: tuple[int, np.ndarray] | None = None,
                        negative: tuple[int, np.ndarray] | None = None,
                        zero_count: int = 0, total: float = 0.0) -> DDSketch:
        """:meth:`from_bins` for runs as ``snapshot_layout.dense_bins`` makes them (int64,
        1-D, non-negative, first and last counts non-zero, at most `max_bins` keys): the
        same sketch, bins laid out alike, and the same errors for the same input.

        For the merged view only, which builds one sketch per series on every scrape: what
        such runs are is not checked again, and the settings are checked once. Keys outside
        the finite range and counts past the bound are still refused (a crafted file's
        offsets and counts reach here unchecked). Anything else uses :meth:`from_bins`.

        >>> s = DDSketch.from_dense_bins(0.01, 2048, positive=(0, np.array([2, 0, 1])))
        >>> s.count, s.quantiles([1.0]) == DDSketch.from_bins(
        ...     0.01, 2048, positive=(0, np.array([2, 0, 1]))).quantiles([1.0])
        (3, True)
        """
        key = (type(relative_accuracy), relative_accuracy, type(max_bins), max_bins)
        found = _DENSE_TEMPLATES.get(key)
        if found is None:
            template = cls(relative_accuracy, max_bins)  # raises as from_bins would
            found = (template, *template._key_range())
            if len(_DENSE_TEMPLATES) < 64:
                _DENSE_TEMPLATES[key] = found
        template, lowest, highest = found
        sketch = cls.__new__(cls)
        sketch._relative_accuracy = template._relative_accuracy
        sketch._max_bins = bins_bound = template._max_bins
        sketch._log_gamma = template._log_gamma
        sketch._multiplier = template._multiplier
        sketch._min_indexable = template._min_indexable
        sketch._positive = Store(bins_bound)
        sketch._negative = Store(bins_bound)
        for store, run in ((sketch._positive, positive), (sketch._negative, negative)):
            if run is None:
                continue
            first, counts = int(run[0]), run[1]
            # Sums of a thousand files' counts near 2**53 wrap in int64. (np.minimum.reduce
            # and np.add.reduce are what counts.min() and counts.sum() call, less their
            # Python wrappers: a merged scrape builds a sketch per series.)
            if np.minimum.reduce(counts) < 0:
                raise ValueError("bin counts must be a 1-D array of non-negative integers")
            # from_bins's bound: the largest count or the float sum past it. A float sum
            # within half of it bounds every (non-negative) count too: one reduction.
            added = np.add.reduce(counts, dtype=np.float64)
            if added > MAX_TOTAL_COUNT / 2 and (counts.max() > MAX_TOTAL_COUNT
                                                 or added > MAX_TOTAL_COUNT):
                raise ValueError(f"bin counts add up to more than {MAX_TOTAL_COUNT}")
            span = counts.size
            last = first + span - 1
            if not lowest <= first <= last <= highest:
                raise ValueError(f"bin keys {first}..{last} are outside"
                                 f" {lowest}..{highest}, the keys of finite values")
            # The bins as add_dense lays them out in an empty store (its slack included):
            # a sketch merged or grown later behaves as one from from_bins.
            length = min(bins_bound, span + max(64, span // 2))
            start = first - (length - span) // 2
            bins = np.zeros(length, dtype=np.int64)
            bins[first - start:first - start + span] = counts
            store.bins, store.offset = bins, start
            store.total = int(added) if added < _EXACT_FLOAT_SUM else int(counts.sum())
            store.min_key, store.max_key = first, last
        return sketch._with_totals(zero_count, total)

    def _with_totals(self, zero_count: int, total: float) -> DDSketch:
        """This sketch, its bins set, given its zero count and sum (checked as counts)."""
        if not 0 <= zero_count <= MAX_TOTAL_COUNT:
            raise ValueError(f"zero_count must be a count in [0, 2**61], got {zero_count}")
        self._zero_count = int(zero_count)
        if self.count > MAX_TOTAL_COUNT:
            raise ValueError(f"bin counts add up to more than {MAX_TOTAL_COUNT}")
        self._sum = float(total)
        return self

    def _key_range(self) -> tuple[int, int]:
        """The lowest and highest key a finite value can have at this accuracy."""
        found = _KEY_RANGES.get(self._relative_accuracy)
        if found is None:
            found = (int(self._keys(np.array([self._min_indexable]))[0]),
                     int(self._keys(np.array([_FLOAT_MAX]))[0]))
            if len(_KEY_RANGES) < 64:
                _KEY_RANGES[self._relative_accuracy] = found
        return found

    @property
    def relative_accuracy(self) -> float:
        return self._relative_accuracy

    @property
    def max_bins(self) -> int:
        return self._max_bins

    @property
    def min_indexable(self) -> float:
        """Values with a smaller magnitude are counted as zero."""
        return self._min_indexable

    @property
    def count(self) -> int:
        """Number of finite values added."""
        return self._positive.total + self._negative.total + self._zero_count

    @property
    def sum(self) -> float:
        """Sum of the finite values added."""
        return self._sum

    @property
    def is_empty(self) -> bool:
        return self.count == 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the bin arrays (what grows with the data; bounded by max_bins)."""
        return int(self._positive.bins.nbytes + self._negative.bins.nbytes)

    def _keys(self, magnitudes: np.ndarray) -> np.ndarray:
        # In place on one temporary: a big batch pays for its rows, not for copies of them.
        logs = np.log(magnitudes)
        logs *= self._multiplier
        np.ceil(logs, out=logs)
        return logs.astype(np.int64)

    def _key_value(self, keys: np.ndarray) -> np.ndarray:
        # The bin (gamma^(k-1), gamma^k] is represented by gamma^(k-1) * (1 + alpha): within
        # alpha of both ends. Clipping at the float maximum keeps that bound for the top bin.
        # Only the top key can overflow, to inf, which the clip brings back: no warning for
        # it (this runs on a memo miss only, so the errstate costs a scrape nothing).
        with np.errstate(over="ignore"):
            lower = np.exp((keys.astype(np.float64) - 1.0) * self._log_gamma)
            return np.minimum(lower * (1.0 + self._relative_accuracy), _FLOAT_MAX)

    def add(self, values: Sequence[float] | np.ndarray, total: float | None = None) -> None:
        """Add values; nan and ±inf are ignored (callers count them on their own). `total`,
        when the caller has summed them already, is their sum as :func:`quiet_sum` gives it.

        >>> s = DDSketch()
        >>> s.add([0.5, -2.0, 0.0, float("nan")])
        >>> s.count, s.sum
        (3, -1.5)
        """
        array = np.asarray(values, dtype=np.float64).ravel()
        if not array.size:
            return
        few = array.size <= _FEW_VALUES
        if few:
            values = array.tolist()
            total, smallest = float(sum(values)), min(values)  # sum: as quiet_sum does
        else:
            if total is None:
                total = quiet_sum(array)
            smallest = array.min()
        # The usual batch: every value finite (a nan or inf makes the sum so) and positive
        # beyond the zero bin. Its keys go in as they are, without sorting by sign.
        if total - total == 0.0 and smallest >= self._min_indexable:
            self._sum += total
            keys = self._keys(array)
            if array.size <= _KEY_LIST_MAX:
                self._positive.add_key_list(keys.tolist())
            else:
                self._positive.add_keys(keys)
            return
        if few:
            self._add_few(array)
            return
        finite = np.isfinite(array)
        if not finite.all():
            array = array[finite]
            if not array.size:
                return
        self._sum += quiet_sum(array)
        indexable = np.abs(array) >= self._min_indexable
        positive = array > 0.0
        positive &= indexable
        if positive.all():
            self._positive.add_keys(self._keys(array))
            return
        negative = array < 0.0
        negative &= indexable
        if positive.any():
            self._positive.add_keys(self._keys(array[positive]))
        if negative.any():
            self._negative.add_keys(self._keys(-array[negative]))
        self._zero_count += int(array.size - np.count_nonzero(indexable))

    def _add_few(self, array: np.ndarray) -> None:
        """:meth:`add` for a few values, sorted in Python; keys still come from numpy's log,
        so a value lands in the same bin whichever path adds it."""
        positive: list[float] = []
        negative: list[float] = []
        finite: list[float] = []
        zeros = 0
        smallest = self._min_indexable
        for value in array.tolist():
            if value - value != 0.0:  # nan, or inf (inf - inf is nan)
                continue
            finite.append(value)
            if value >= smallest:
                positive.append(value)
            elif value <= -smallest:
                negative.append(-value)
            else:
                zeros += 1
        if not finite:
            return
        self._sum += float(sum(finite))  # what quiet_sum gives for this many values
        if positive:
            self._positive.add_key_list(self._keys(np.array(positive)).tolist())
        if negative:
            self._negative.add_key_list(self._keys(np.array(negative)).tolist())
        self._zero_count += zeros

    def merge(self, other: DDSketch) -> None:
        """Add every value of `other` into this sketch.

        >>> a, b = DDSketch(), DDSketch()
        >>> a.add([1.0, 2.0]); b.add([3.0])
        >>> a.merge(b); a.count
        3
        """
        _check_mergeable(self, other)
        if other is self:
            other = other.copy()
        for mine, theirs in ((self._positive, other._positive), (self._negative, other._negative)):
            if theirs.total:
                mine.add_dense(theirs.min_key, theirs.used())
        self._zero_count += other._zero_count
        self._sum += other._sum

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """Values at quantiles `qs` (each in [0, 1]); nan for every q when empty.

        The rank of q is ``floor(q * (count - 1))``, as numpy's ``method="lower"``.

        >>> s = DDSketch()
        >>> s.add([-3.0, 0.0, 5.0])
        >>> [round(v, 2) for v in s.quantiles([0.0, 0.5, 1.0])]
        [-2.97, 0.0, 5.0]
        """
        return self._quantiles(qs, _run(self._negative), self._zero_count, _run(self._positive))

    @staticmethod
    def merged_quantiles(sketches: Sequence[DDSketch], qs: Sequence[float]) -> list[float]:
        """:meth:`quantiles` of all `sketches` together (one accuracy and bin budget), what
        merging them into a new sketch would give, without building it when their bins fit.

        >>> a, b = DDSketch(), DDSketch()
        >>> a.add([1.0, 2.0]); b.add([-3.0, 4.0])
        >>> merged = DDSketch(); merged.merge(a); merged.merge(b)
        >>> DDSketch.merged_quantiles([a, b], [0.0, 1.0]) == merged.quantiles([0.0, 1.0])
        True
        """
        if not sketches:
            return DDSketch().quantiles(qs)
        first = sketches[0]
        # Bin keys mean values only at their own accuracy: read at another, they would be
        # silently wrong quantiles (merge() refuses the same mix).
        for sketch in sketches:
            _check_mergeable(first, sketch)
        runs = []
        for sign in ("_negative", "_positive"):
            stores = [store for store in (getattr(s, sign) for s in sketches) if store.total]
            if not stores:
                runs.append(_EMPTY_RUN)
                continue
            lo = min(store.min_key for store in stores)
            hi = max(store.max_key for store in stores)
            if hi - lo >= first._max_bins:  # the merge would fold bins: let it
                merged = DDSketch(first._relative_accuracy, first._max_bins)
                for sketch in sketches:
                    merged.merge(sketch)
                return merged.quantiles(qs)
            counts = np.zeros(hi - lo + 1, dtype=np.int64)
            for store in stores:
                counts[store.min_key - lo : store.max_key - lo + 1] += store.used()
            runs.append((lo, counts, sum(store.total for store in stores)))
        zeros = sum(sketch._zero_count for sketch in sketches)
        return first._quantiles(qs, runs[0], zeros, runs[1])

    def _quantiles(self, qs: Sequence[float], negative: tuple[int, np.ndarray, int],
                   zero_count: int, positive: tuple[int, np.ndarray, int]) -> list[float]:
        # Plain Python for the handful of quantiles a scrape asks for: numpy's fixed cost per
        # call was most of a summary's scrape. The values still come from numpy's exp.
        wanted = _wanted(qs)
        negatives = negative[2]
        below_positive = negatives + zero_count
        count = below_positive + positive[2]
        if count == 0:
            return [math.nan] * len(wanted)
        # q * (count - 1) is a float: past 2**53 values it can round up to count, a rank
        # past the last value that would read the empty bin above the largest one.
        last = count - 1
        ranks = [min(math.floor(q * last), last) for q in wanted]
        if not below_positive:  # the usual window: every value positive
            return self._value_at(positive, ranks)
        result = [0.0] * len(ranks)
        in_negative = [i for i, rank in enumerate(ranks) if rank < negatives]
        if in_negative:
            # The r-th smallest value is the (negatives - 1 - r)-th smallest magnitude.
            magnitudes = self._value_at(negative, [negatives - 1 - ranks[i] for i in in_negative])
            for i, value in zip(in_negative, magnitudes):
                result[i] = -value
        in_positive = [i for i, rank in enumerate(ranks) if rank >= below_positive]
        if in_positive:
            values = self._value_at(positive, [ranks[i] - below_positive for i in in_positive])
            for i, value in zip(in_positive, values):
                result[i] = value
        return result

    def _value_at(self, run: tuple[int, np.ndarray, int], ranks: list[int]) -> list[float]:
        """The values at `ranks` (0 the smallest) of a run (first key, counts, total)."""
        counts = run[1]
        if counts.size <= _PYTHON_RUN_MAX:
            # A window of few bins (a model of few distinct outputs): its running counts in
            # Python cost less than numpy's cumsum and searchsorted, which find the same keys.
            cumulative = list(accumulate(counts.tolist()))
            first = run[0]
            keys = [bisect_right(cumulative, rank) + first for rank in ranks]
        else:
            keys = (counts.cumsum().searchsorted(ranks, side="right") + run[0]).tolist()
        # A scrape asks for the same few bins again and again: their values are remembered
        # per accuracy, as numpy computed them, so every path gives the same floats.
        memo = _KEY_VALUES.get(self._relative_accuracy)
        if memo is None:
            if len(_KEY_VALUES) >= _KEY_ACCURACIES_MAX:
                _KEY_VALUES.clear()
            memo = _KEY_VALUES.setdefault(self._relative_accuracy, {})
        found = [memo.get(key) for key in keys]
        if None not in found:
            return found  # type: ignore[return-value]
        fresh = dict(zip(keys, self._key_value(np.array(keys, dtype=np.int64)).tolist()))
        if len(memo) >= _KEY_VALUES_MAX:
            memo.clear()
        memo.update(fresh)
        return [fresh[key] for key in keys]

    def copy(self) -> DDSketch:
        """An independent copy."""
        other = DDSketch.__new__(DDSketch)
        for name in ("_log_gamma", "_max_bins", "_min_indexable", "_multiplier",
                     "_relative_accuracy", "_sum", "_zero_count"):
            setattr(other, name, getattr(self, name))
        other._positive = self._positive.copy()
        other._negative = self._negative.copy()
        return other

    def to_dict(self, packed: bool = False) -> dict[str, Any]:
        """A JSON-serialisable form: plain ints, floats and lists of the non-empty bin range;
        `packed`: the bin counts as int64 arrays, for a worker file's packer.

        >>> s = DDSketch(); s.add([1.0, 1.0])
        >>> DDSketch.from_dict(s.to_dict()).count, DDSketch.from_dict(s.to_dict(True)).count
        (2, 2)
        """
        return {
            "format": FORMAT_VERSION,
            "relative_accuracy": self._relative_accuracy,
            "max_bins": self._max_bins,
            "zero_count": self._zero_count,
            "sum": self._sum,
            "positive": store_to_dict(self._positive, packed),
            "negative": store_to_dict(self._negative, packed),
        }

    @classmethod
    def from_dict(cls, data: object) -> DDSketch:
        """Rebuild a sketch from :meth:`to_dict` output; ValueError naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError(f"sketch must be a dict, got {type(data).__name__}")
        if type(data.get("format")) is not int or data["format"] != FORMAT_VERSION:
            raise ValueError(f"sketch format must be {FORMAT_VERSION}, got {data.get('format')!r}")
        sketch = cls(_field(data, "relative_accuracy"), _field(data, "max_bins"))
        zero_count = _field(data, "zero_count")
        if isinstance(zero_count, bool) or not isinstance(zero_count, int) or not (
            0 <= zero_count <= MAX_TOTAL_COUNT
        ):
            raise ValueError(f"sketch zero_count must be a count, got {zero_count!r}")
        total_sum = _field(data, "sum")
        if total_sum in NON_FINITE_TEXT:  # as strict JSON carries an overflowed sum
            total_sum = float(total_sum)
        if isinstance(total_sum, bool) or not isinstance(total_sum, (int, float)):
            raise ValueError(f"sketch sum must be a number, got {total_sum!r}")
        try:
            sketch._sum = float(total_sum)
        except OverflowError:  # an integer past the float range: a crafted snapshot
            raise ValueError("sketch sum must be a number in the float range") from None
        sketch._zero_count = zero_count
        lowest, highest = sketch._key_range()
        for name, store in (("positive", sketch._positive), ("negative", sketch._negative)):
            store_from_dict(store, _field(data, name), name, lowest, highest)
        if sketch.count > MAX_TOTAL_COUNT:
            raise ValueError(f"sketch counts add up to more than {MAX_TOTAL_COUNT}")
        return sketch

    def __repr__(self) -> str:
        return (f"DDSketch(relative_accuracy={self._relative_accuracy}, "
                f"max_bins={self._max_bins}, count={self.count})")


_EMPTY_RUN: tuple[int, np.ndarray, int] = (0, np.zeros(0, dtype=np.int64), 0)


def _wanted(qs: Sequence[float]) -> list[float]:
    """`qs` as floats, each checked to lie in [0, 1]; a scrape's tuple of quantiles is
    checked once and remembered."""
    remembered = qs.__class__ is tuple
    if remembered:
        try:
            found = _WANTED.get(qs)
        except TypeError:  # an item that is no number (the check below names it)
            found, remembered = None, False
        if found is not None:
            return found
    wanted = [float(q) for q in (qs.ravel().tolist() if isinstance(qs, np.ndarray) else qs)]
    if not all(0.0 <= q <= 1.0 for q in wanted):  # nan fails too
        raise ValueError(f"quantiles must be in [0, 1], got {list(qs)!r}")
    if remembered:
        if len(_WANTED) >= _WANTED_MAX:
            _WANTED.clear()
        _WANTED[qs] = wanted
    return wanted


def _run(store: Store) -> tuple[int, np.ndarray, int]:
    """A store's non-empty bins as (first key, counts, total)."""
    return (store.min_key, store.used(), store.total)


def _field(data: dict[str, Any], name: str) -> Any:
    if name not in data:
        raise ValueError(f"sketch is missing the field {name!r}")
    return data[name]


def _check_mergeable(sketch: DDSketch, other: object) -> None:
    """Refuse to add `other` to `sketch`: bin keys mean values only at their own accuracy."""
    if not isinstance(other, DDSketch):
        raise TypeError(f"can only merge a DDSketch, got {type(other).__name__}")
    if other._relative_accuracy != sketch._relative_accuracy:
        raise ValueError(
            "cannot merge sketches with different relative_accuracy: "
            f"{sketch._relative_accuracy} and {other._relative_accuracy}"
        )
