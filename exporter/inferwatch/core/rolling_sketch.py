"""A sliding time window of DDSketches, as the Go client's Summary keeps one.

``max_age_seconds`` is split into ``age_buckets`` buckets of equal width. A bucket's id is
``floor(now / width)``: aligned to the epoch, so the buckets of different worker processes
line up and merge by id. Values go into the bucket of the time they are added; the window
at ``now`` merges the buckets with ids in ``(current - age_buckets, current]``, so it covers
between ``max_age - width`` and ``max_age`` seconds of data. Older buckets are dropped, and
so are buckets more than a window ahead (a clock stepped back), so at most
``2 * age_buckets`` buckets are ever held.

Time is always passed in (seconds since the epoch), which keeps the class deterministic.

>>> window = RollingSketch(max_age_seconds=600, age_buckets=5)
>>> window.add([1.0, 2.0, 3.0], now=1_000.0)
>>> window.window(now=1_000.0).count, window.window(now=1_000.0 + 600).count
(3, 0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from inferwatch.core.ddsketch import DEFAULT_MAX_BINS, DEFAULT_RELATIVE_ACCURACY, DDSketch

FORMAT_VERSION = 1
DEFAULT_MAX_AGE_SECONDS = 600.0
DEFAULT_AGE_BUCKETS = 5
MAX_AGE_BUCKETS = 1000
# The narrowest age bucket: finer than any clock's resolution that a window could use.
MIN_BUCKET_SECONDS = 1e-6
_FLOAT_MAX = float(np.finfo(np.float64).max)
# Values added in small batches wait, as arrays, until this many values or batches have
# come (or a reader, or another bucket's values): a sketch's fixed cost per add is most of
# what a drain of a few calls costs, and one add of all of them gives the same bins. What
# waits stays small: at most about 16 KiB of values and 64 arrays per window.
WAIT_MAX_VALUES = 2048
WAIT_MAX_BATCHES = 64


def bucket_width(max_age_seconds: float, age_buckets: int) -> float:
    """Seconds a bucket of a window of `max_age_seconds` in `age_buckets` buckets spans."""
    return float(max_age_seconds) / int(age_buckets)


def bucket_of(now: float, width: float) -> int:
    """The id of the bucket of `width` seconds that holds time `now` (epoch-aligned).

    >>> bucket_of(1_000.0, bucket_width(600, 5))
    8
    """
    try:
        position = now / width
    except OverflowError:  # an integer past the float range
        position = math.inf
    if not math.isfinite(position):
        raise ValueError(f"now must be a finite time in seconds, got {now!r}")
    return math.floor(position)


# (type, relative_accuracy, type, max_bins) that a DDSketch has accepted.
_VALID_SKETCH_SETTINGS: set[tuple] = set()

class RollingSketch:
    """Quantiles over the last `max_age_seconds`, kept in `age_buckets` epoch-aligned buckets.

    >>> rolling = RollingSketch()
    >>> rolling.add([10.0, 20.0, 30.0], now=1_700_000_000.0)
    >>> [round(v, 1) for v in rolling.quantiles([0.5], now=1_700_000_060.0)]
    [19.9]
    """

    __slots__ = ("_age_buckets", "_buckets", "_max_age", "_max_bins", "_relative_accuracy",
                 "_waiting", "_waiting_bucket", "_waiting_values", "_width")

    def __init__(
        self,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        age_buckets: int = DEFAULT_AGE_BUCKETS,
        relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
        max_bins: int = DEFAULT_MAX_BINS,
    ) -> None:
        if isinstance(max_age_seconds, bool) or not isinstance(max_age_seconds, (int, float)):
            raise ValueError(f"max_age_seconds must be a number, got {max_age_seconds!r}")
        # Compared as it is: math.isfinite() of an integer past the float range raises
        # OverflowError, which would not name the option.
        if not 0 < max_age_seconds <= _FLOAT_MAX:
            raise ValueError(
                f"max_age_seconds must be a positive finite number, got {max_age_seconds!r}")
        if isinstance(age_buckets, bool) or not isinstance(age_buckets, (int, np.integer)):
            raise ValueError(f"age_buckets must be an integer, got {age_buckets!r}")
        if not 1 <= age_buckets <= MAX_AGE_BUCKETS:
            raise ValueError(f"age_buckets must be in [1, {MAX_AGE_BUCKETS}], got {age_buckets!r}")
        # Validates relative_accuracy and max_bins, naming them, before any bucket exists
        # (once per distinct pair: a merged scrape builds a window per series).
        settings = (type(relative_accuracy), relative_accuracy, type(max_bins), max_bins)
        if settings not in _VALID_SKETCH_SETTINGS:
            DDSketch(relative_accuracy, max_bins)
            if len(_VALID_SKETCH_SETTINGS) < 64:
                _VALID_SKETCH_SETTINGS.add(settings)
        self._max_age = float(max_age_seconds)
        self._age_buckets = int(age_buckets)
        self._width = bucket_width(self._max_age, self._age_buckets)
        if self._width < MIN_BUCKET_SECONDS:
            # A bucket of 0 seconds (a subnormal max_age) divided by zero on the first add,
            # and one of 1e-300 s made every timestamp's bucket id overflow.
            raise ValueError(
                f"max_age_seconds / age_buckets must be at least {MIN_BUCKET_SECONDS} seconds,"
                f" got {max_age_seconds!r} / {age_buckets!r}"
            )
        self._relative_accuracy = float(relative_accuracy)
        self._max_bins = int(max_bins)
        self._buckets: dict[int, DDSketch] = {}
        # Small batches not yet in a sketch: arrays of values, all of bucket _waiting_bucket.
        self._waiting: list[np.ndarray] = []
        self._waiting_bucket = 0
        self._waiting_values = 0

    @property
    def max_age_seconds(self) -> float:
        return self._max_age

    @property
    def age_buckets(self) -> int:
        return self._age_buckets

    @property
    def max_bins(self) -> int:
        return self._max_bins

    @property
    def bucket_ids(self) -> list[int]:
        """Ids of the buckets held, oldest first."""
        self._settle()
        return sorted(self._buckets)

    @property
    def nbytes(self) -> int:
        """Bytes held by the bin arrays of every bucket."""
        self._settle()
        return sum(sketch.nbytes for sketch in self._buckets.values())

    def bucket_id(self, now: float) -> int:
        """The id of the bucket that holds time `now` (seconds since the epoch).

        >>> RollingSketch(max_age_seconds=600, age_buckets=5).bucket_id(1_000.0)
        8
        """
        return bucket_of(now, self._width)

    def put(self, bucket_id: int, sketch: DDSketch) -> None:
        """Hold `sketch` as the bucket `bucket_id` (a merged view builds windows this way).

        >>> rolling = RollingSketch(max_age_seconds=600, age_buckets=5)
        >>> rolling.put(rolling.bucket_id(1_000.0), DDSketch())
        >>> rolling.bucket_ids
        [8]
        """
        if (sketch.relative_accuracy, sketch.max_bins) != (self._relative_accuracy,
                                                           self._max_bins):
            raise ValueError("the sketch's relative_accuracy and max_bins differ from the window's")
        self._settle()
        self._buckets[int(bucket_id)] = sketch

    def _new_sketch(self) -> DDSketch:
        return DDSketch(self._relative_accuracy, self._max_bins)

    def _expire(self, current: int) -> None:
        oldest, newest = current - self._age_buckets, current + self._age_buckets
        for bucket in [b for b in self._buckets if b <= oldest or b > newest]:
            del self._buckets[bucket]

    def add(self, values: Sequence[float] | np.ndarray, now: float,
            total: float | None = None) -> None:
        """Add values observed at time `now`; non-finite values are ignored. `total`, when
        the caller has it, is the values' float64 sum (as :func:`quiet_sum` gives it).

        A small batch waits (a copy of it) until more come, up to :data:`WAIT_MAX_VALUES`,
        or until anything reads the window: every reader sees the same bins as if each
        batch had gone into its bucket at once.

        >>> r = RollingSketch(); r.add([1.0, 2.0], now=0.0); r.add([3.0], now=0.0)
        >>> r.window(now=0.0).count
        3
        """
        current = self.bucket_id(now)
        array = np.asarray(values, dtype=np.float64).ravel()
        if self._waiting and current != self._waiting_bucket:
            self._settle()
        if array.size >= WAIT_MAX_VALUES:
            self._settle()
            self._add_now(array, current, total)
            return
        self._waiting.append(array.copy())  # it waits: the caller may reuse its array
        self._waiting_bucket = current
        self._waiting_values += array.size
        if self._waiting_values >= WAIT_MAX_VALUES or len(self._waiting) >= WAIT_MAX_BATCHES:
            self._settle()

    def _settle(self) -> None:
        """Put the waiting values into their bucket's sketch, in one add."""
        if not self._waiting:
            return
        waiting, self._waiting, self._waiting_values = self._waiting, [], 0
        self._add_now(waiting[0] if len(waiting) == 1 else np.concatenate(waiting),
                      self._waiting_bucket)

    def _add_now(self, values: np.ndarray, current: int, total: float | None = None) -> None:
        self._expire(current)
        sketch = self._buckets.get(current)
        if sketch is None:
            sketch = self._buckets[current] = self._new_sketch()
        sketch.add(values, total)

    def window(self, now: float) -> DDSketch:
        """A new sketch merging the buckets in the window ending at `now`; drops expired ones."""
        self._settle()
        current = self.bucket_id(now)
        self._expire(current)
        merged = self._new_sketch()
        for bucket, sketch in self._buckets.items():
            if bucket <= current:
                merged.merge(sketch)
        return merged

    def quantiles(self, qs: Sequence[float], now: float) -> list[float]:
        """Quantiles of the window ending at `now` (nan when it is empty).

        >>> r = RollingSketch(); r.add([1.0, 2.0, 3.0], now=0.0)
        >>> r.quantiles([0.5], now=0.0) == r.window(now=0.0).quantiles([0.5])
        True
        """
        self._settle()
        current = self.bucket_id(now)
        self._expire(current)
        inside = [sketch for bucket, sketch in self._buckets.items() if bucket <= current]
        if len(inside) == 1:
            # One bucket is the whole window: no merged copy to build (quantiles only read).
            return inside[0].quantiles(qs)
        if not inside:
            return self._new_sketch().quantiles(qs)
        return DDSketch.merged_quantiles(inside, qs)

    def _config(self) -> tuple[float, int, float, int]:
        return (self._max_age, self._age_buckets, self._relative_accuracy, self._max_bins)

    def merge(self, other: RollingSketch) -> None:
        """Merge `other` bucket by bucket (ids are epoch-aligned, so workers line up).

        >>> a, b = RollingSketch(), RollingSketch()
        >>> a.add([1.0], now=0.0); b.add([2.0], now=0.0)
        >>> a.merge(b); a.window(now=0.0).count
        2
        """
        if not isinstance(other, RollingSketch):
            raise TypeError(f"can only merge a RollingSketch, got {type(other).__name__}")
        if other._config() != self._config():
            raise ValueError(
                "cannot merge rolling sketches with different (max_age_seconds, age_buckets, "
                f"relative_accuracy, max_bins): {self._config()} and {other._config()}"
            )
        self._settle()
        other._settle()
        for bucket, sketch in list(other._buckets.items()):
            mine = self._buckets.get(bucket)
            if mine is None:
                self._buckets[bucket] = sketch.copy()
            else:
                mine.merge(sketch)

    def to_dict(self, packed: bool = False) -> dict[str, Any]:
        """A JSON-serialisable form: the config and each bucket's sketch, by id (`packed`:
        bin counts as arrays, as :meth:`DDSketch.to_dict` gives them).

        >>> r = RollingSketch(); r.add([1.0], now=0.0)
        >>> RollingSketch.from_dict(r.to_dict()).window(now=0.0).count
        1
        """
        self._settle()
        return {
            "format": FORMAT_VERSION,
            "max_age_seconds": self._max_age,
            "age_buckets": self._age_buckets,
            "relative_accuracy": self._relative_accuracy,
            "max_bins": self._max_bins,
            "buckets": [[bucket, self._buckets[bucket].to_dict(packed)]
                        for bucket in self.bucket_ids],
        }

    @classmethod
    def from_dict(cls, data: object) -> RollingSketch:
        """Rebuild from :meth:`to_dict` output; ValueError naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError(f"rolling sketch must be a dict, got {type(data).__name__}")
        if type(data.get("format")) is not int or data["format"] != FORMAT_VERSION:
            raise ValueError(
                f"rolling sketch format must be {FORMAT_VERSION}, got {data.get('format')!r}"
            )
        fields = ("max_age_seconds", "age_buckets", "relative_accuracy", "max_bins", "buckets")
        missing = [name for name in fields if name not in data]
        if missing:
            raise ValueError(f"rolling sketch is missing the field(s) {missing}")
        rolling = cls(data["max_age_seconds"], data["age_buckets"], data["relative_accuracy"],
                      data["max_bins"])
        buckets = data["buckets"]
        if not isinstance(buckets, list):
            raise ValueError("rolling sketch buckets must be a list of [id, sketch] pairs")
        for entry in buckets:
            if not (isinstance(entry, list) and len(entry) == 2):
                raise ValueError(f"rolling sketch bucket must be an [id, sketch] pair: {entry!r}")
            bucket, sketch_data = entry
            if isinstance(bucket, bool) or not isinstance(bucket, int):
                raise ValueError(f"rolling sketch bucket id must be an integer, got {bucket!r}")
            if bucket in rolling._buckets:
                raise ValueError(f"rolling sketch bucket id {bucket} appears twice")
            sketch = DDSketch.from_dict(sketch_data)
            if (sketch.relative_accuracy, sketch.max_bins) != (rolling._relative_accuracy,
                                                               rolling._max_bins):
                raise ValueError(f"rolling sketch bucket {bucket} has a different sketch config")
            rolling._buckets[bucket] = sketch
        return rolling

    def __repr__(self) -> str:
        return (f"RollingSketch(max_age_seconds={self._max_age}, age_buckets={self._age_buckets},"
                f" buckets={self.bucket_ids})")
