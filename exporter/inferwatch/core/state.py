"""The aggregated state of one model version: what a scrape renders and workers merge.

Calls are recorded on the request path as plain appends; draining folds them into a
:class:`ModelState`. The same class is what a worker process publishes and what the
merged multi-worker view sums, so there is exactly one way to render metrics.

Merge rules: counters and histograms add, sketches merge bucket by bucket, and each
gauge declares its rule in :data:`GAUGE_MERGE`.

>>> a, b = ModelState("fraud", "1"), ModelState("fraud", "1")
>>> a.inc("inferwatch_requests_total", ("ok",), 2); b.inc("inferwatch_requests_total", ("ok",))
>>> a.merge(b); a.counters["inferwatch_requests_total"][("ok",)]
3.0
"""

from __future__ import annotations

import copy
import importlib
import inspect
import math
import struct
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferwatch import faults
from inferwatch.core.ddsketch import DEFAULT_MAX_BINS, DEFAULT_RELATIVE_ACCURACY, quiet_sum
from inferwatch.core.rolling_sketch import RollingSketch
from inferwatch.core.sketch_limits import MAX_MAX_BINS
from inferwatch.core.unit_sketch import (
    PROBABILITY_MAX_BINS,
    PROBABILITY_RELATIVE_ACCURACY,
    from_sketch_values,
    to_sketch,
)

Labels = tuple[str, ...]

# Up to this many values are counted one by one with a binary search in Python: numpy's
# fixed cost per call (searchsorted, bincount, an array add: about 1.5 us) is most of what
# a drain of a few calls pays for each histogram.
_FEW_VALUES = 8
# From this many values per bound, counting the values at or below each bound (a pass per
# bound, skipping the bounds outside the values' range) beats a binary search per value:
# with 12 bounds, 11 against 20 us at 4,096 values, 0.1 against 1.5 ms at 100,000 (where
# the search's array of indices is also another temporary the size of the batch). Sorting
# first loses to both here (85 us at 4,096 values, 4 ms at 100,000).
_COMPARE_PER_BOUND = 150

# Mergeable parts beyond counters, histograms and sketches, by name: "module:Class" (with
# a from_dict classmethod, imported only when a snapshot holds one) or a decoder function.
# Each extra has merge(other) and to_dict(); reset() if it should survive a fork.
EXTRA_TYPES: dict[str, str | Callable[[dict], object]] = {
    "drift": "inferwatch.quality.tracker:DriftState",
}


# From this many values, packing them as C doubles beats numpy's conversion of a list.
_PACK_FROM = 64


def float_array(values: Sequence[float]) -> np.ndarray:
    """A float64 array of a drain's Python numbers (durations, float results).

    Packing many as C doubles is about three times faster than ``np.asarray`` on a tuple
    or list of floats (a few take ``np.asarray``, which is cheaper for them); anything
    that is not a number takes numpy's own conversion (and raises as it would).

    >>> float_array((0.5, 2, float("nan"))).tolist()[:2]
    [0.5, 2.0]
    >>> float_array([]).shape
    (0,)
    """
    if len(values) < _PACK_FROM:
        return np.asarray(values, dtype=np.float64)
    try:
        # A bytearray, not bytes: the array stays writable, as numpy's own would be.
        return np.frombuffer(bytearray(struct.pack(f"{len(values)}d", *values)),
                             dtype=np.float64)
    except (struct.error, TypeError, OverflowError, ValueError):
        return np.asarray(values, dtype=np.float64)


def register_extra(name: str, from_dict: str | Callable[[dict], object]) -> None:
    """Let ``ModelState.extras[name]`` travel in worker snapshots and merge.

    >>> register_extra("doc_example", dict)
    >>> decode_extra("doc_example", {"a": 1})
    {'a': 1}
    >>> _ = EXTRA_TYPES.pop("doc_example")
    """
    EXTRA_TYPES[name] = from_dict


def decode_extra(name: str, data: dict) -> object:
    decoder = EXTRA_TYPES[name]
    if isinstance(decoder, str):
        module_name, _, class_name = decoder.partition(":")
        decoder = getattr(importlib.import_module(module_name), class_name).from_dict
    return decoder(data)

# How each per-model gauge combines across worker processes.
GAUGE_MERGE: dict[str, str] = {
    "inferwatch_requests_in_flight": "sum",
}


@dataclass
class SummarySettings:
    """Rolling-quantile settings shared by every summary of one model."""

    quantiles: tuple[float, ...] = (0.5, 0.9, 0.99)
    max_age_seconds: float = 600.0
    age_buckets: int = 5
    relative_accuracy: float = 0.01


class HistogramState:
    """Bucket counts (not cumulative; the last bucket is +Inf) and the sum of observations."""

    __slots__ = ("_bound_list", "bounds", "counts", "exemplars", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)
        self.sum = 0.0
        # bucket index -> (trace id, observed value, unix time): the latest one per bucket
        self.exemplars: dict[int, tuple[str, float, float]] = {}
        self._bound_list: list[float] | None = None  # the bounds as floats, once needed

    def _bucket_of(self, value: float) -> int:
        """The bucket holding `value`: as ``searchsorted(bounds, value, "left")``, so a value
        equal to a bound is in that bound's bucket (``le``), and nan is in +Inf."""
        bounds = self._bound_list
        if bounds is None:
            bounds = self._bound_list = self.bounds.tolist()
        return bisect_left(bounds, value) if value == value else len(bounds)

    def exemplar(self, value: float, trace_id: str, at: float) -> None:
        """Link the bucket holding `value` to a trace (its latest one wins)."""
        self.exemplars[self._bucket_of(float(value))] = (trace_id, float(value), float(at))

    def observe(self, values: np.ndarray, total: float | None = None) -> None:
        """Count `values` into their buckets; `total`, when the caller summed them already
        (as :func:`quiet_sum` does), is added to the sum instead of summing them again."""
        size = values.size
        if size == 0:
            return
        if size <= _FEW_VALUES:
            few = values.ravel().tolist()
            bounds = self._bound_list
            if bounds is None:
                bounds = self._bound_list = self.bounds.tolist()
            counts, inf_bucket = self.counts, len(bounds)
            for value in few:  # as _bucket_of, inline
                counts[bisect_left(bounds, value) if value == value else inf_bucket] += 1
            self.sum += float(sum(few))  # as quiet_sum adds a few values
            return
        if size >= _COMPARE_PER_BOUND * self.bounds.size and self.bounds.size:
            # Values <= bound (`le`), as the search per value counts them; nan is at or below
            # no bound, so it lands in +Inf either way.
            cumulative = _at_or_below_each(np.ascontiguousarray(values), self.bounds.tolist())
            per_bucket = cumulative.copy()  # np.diff(prepend=0), without its concatenation
            per_bucket[1:] -= cumulative[:-1]
            self.counts[:-1] += per_bucket
            self.counts[-1] += size - int(cumulative[-1])
        else:
            # side="left": a value equal to a bound belongs to that bucket (Prometheus' `le`).
            index = self.bounds.searchsorted(values, "left")  # the method: no dispatch wrapper
            self.counts += np.bincount(index, minlength=self.counts.shape[0])
        self.sum += _finite_sum(values) if total is None else total

    def observe_repeated(self, value: float, times: int) -> None:
        """`times` observations of one value (a drain's calls of one row each)."""
        self.counts[self._bucket_of(value)] += times
        self.sum += value * times

    def observe_one(self, value: float) -> None:
        self.counts[self._bucket_of(value)] += 1
        self.sum += value

    def add_counts(self, counts: Sequence[int], total: float,
                   bounds: Sequence[float] | None = None) -> None:
        """Add bucket counts kept elsewhere (+Inf last) and their sum.

        The counts are for this histogram's bounds, or for `bounds` (a stream that began
        before its buckets were reconfigured). Counts under other bounds move to the lowest
        of these bounds at or above their own: an ``le`` that still holds, at the coarser
        of the two resolutions.

        >>> h = HistogramState((1.0, 2.0))
        >>> h.add_counts([1, 1, 1, 0], 2.0, bounds=(0.5, 1.5, 3.0))
        >>> h.counts.tolist()
        [1, 1, 1]
        """
        counts = np.asarray(counts, dtype=np.int64)
        if bounds is not None and not np.array_equal(bounds, self.bounds):
            moved = np.searchsorted(self.bounds, np.asarray(bounds, dtype=np.float64), "left")
            counts = np.bincount(np.append(moved, len(self.bounds)), weights=counts,
                                 minlength=len(self.counts)).astype(np.int64)
        self.counts += counts
        self.sum += float(total)

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def merge(self, other: HistogramState) -> None:
        if not np.array_equal(self.bounds, other.bounds):
            raise ValueError("cannot merge histograms with different buckets")
        self.counts += other.counts
        self.sum += other.sum
        for index, exemplar in other.exemplars.items():
            self.offer_exemplar(index, exemplar)

    def offer_exemplar(self, index: int, exemplar: tuple[str, float, float]) -> None:
        """Keep `exemplar` (trace id, value, unix time) for bucket `index` if it is the
        newest seen there: how merged workers' exemplars combine."""
        mine = self.exemplars.get(index)
        if mine is None or exemplar[2] > mine[2]:
            self.exemplars[index] = exemplar

    def to_dict(self) -> dict:
        data = {"bounds": self.bounds.tolist(), "counts": self.counts.tolist(), "sum": self.sum}
        if self.exemplars:
            data["exemplars"] = [[i, *e] for i, e in sorted(self.exemplars.items())]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> HistogramState:
        state = cls(data["bounds"])
        bounds = state.bounds
        if bounds.ndim != 1 or np.isnan(bounds).any() or (np.diff(bounds) <= 0).any():
            # Out of order, a value's bucket by binary search is wrong, and counts go
            # to buckets they do not belong in once merged with this one.
            raise ValueError(f"histogram bounds must be increasing numbers, got"
                             f" {data['bounds']!r}")
        counts = np.asarray(data["counts"], dtype=np.int64)
        if counts.shape != state.counts.shape:
            raise ValueError("histogram counts do not match its buckets")
        if counts.size and counts.min() < 0:
            # Rendered as a cumulative histogram, a negative bucket made counts go down.
            raise ValueError("histogram counts must be >= 0")
        state.counts = counts
        state.sum = float(data["sum"])
        for index, trace_id, value, at in data.get("exemplars", []):
            if 0 <= int(index) < counts.shape[0]:
                state.exemplars[int(index)] = (str(trace_id), float(value), float(at))
        return state


def value_bins(relative_accuracy: float) -> int:
    """The bin budget per sign of a value sketch: as many bins as keep the span it covers
    at about that of the default (2048 bins at 1%: about 17.8 decades), however fine the
    accuracy. A fixed budget would shrink the span with the accuracy (1.8 decades at 0.1%),
    and a finer accuracy would read most values of an ordinary spread folded together.

    >>> value_bins(0.01), value_bins(0.001), value_bins(0.05)
    (2048, 20481, 2048)
    """
    def bin_width(accuracy: float) -> float:
        return math.log((1 + accuracy) / (1 - accuracy))

    wanted = math.ceil(DEFAULT_MAX_BINS * bin_width(DEFAULT_RELATIVE_ACCURACY)
                       / bin_width(relative_accuracy))
    bins = min(MAX_MAX_BINS, max(DEFAULT_MAX_BINS, wanted))
    # The probability sketches are told apart by their budget (SummaryState.probabilities).
    return bins + 1 if bins == PROBABILITY_MAX_BINS else bins


class SummaryState:
    """Cumulative count and sum plus a rolling-window sketch for the quantiles.

    With `probabilities`, the sketch has an absolute error of at most 0.001 on [0, 1]
    (``core/unit_sketch.py``) instead of the settings' relative accuracy.

    >>> s = SummaryState(SummarySettings(), probabilities=True)
    >>> s.observe(np.array([0.9986, 0.99997, 0.999999]), now=0.0)
    >>> [round(v, 4) for v in s.quantiles([0.0, 0.5, 1.0], now=0.0)]
    [0.9986, 1.0, 1.0]
    >>> s.quantiles([0.5], now=0.0)[0] < 0.99998
    True
    """

    __slots__ = ("count", "sketch", "sum")

    def __init__(self, settings: SummarySettings, probabilities: bool = False,
                 sketch: RollingSketch | None = None) -> None:
        if sketch is not None:  # a merged view's, built from bins
            self.sketch, self.count, self.sum = sketch, 0, 0.0
            return
        self.sketch = RollingSketch(
            max_age_seconds=settings.max_age_seconds,
            age_buckets=settings.age_buckets,
            relative_accuracy=PROBABILITY_RELATIVE_ACCURACY if probabilities
            else settings.relative_accuracy,
            max_bins=PROBABILITY_MAX_BINS if probabilities
            else value_bins(settings.relative_accuracy),
        )
        self.count = 0
        self.sum = 0.0

    @property
    def probabilities(self) -> bool:
        """Whether the sketch holds probabilities (its bin budget says so, in every copy)."""
        return self.sketch.max_bins == PROBABILITY_MAX_BINS

    def observe(self, values: np.ndarray, now: float, total: float | None = None,
                sketched: np.ndarray | None = None) -> None:
        """Add `values` observed at `now`; `total` as :meth:`HistogramState.observe` takes it.
        `sketched`, for probabilities, is ``to_sketch(values)`` where the caller made it
        already (:func:`~inferwatch.core.unit_sketch.sketched_columns`)."""
        if values.size == 0:
            return
        if total is None:
            total = _finite_sum(values)
        if self.probabilities:
            self.sketch.add(to_sketch(values) if sketched is None else sketched, now)
        elif values.dtype == np.float64 and values.ndim == 1 and values.flags.c_contiguous:
            # The very array the sketch sums (no conversion or copy that could reorder the
            # sum): its sum is the sketch's too, summed once.
            self.sketch.add(values, now, total=total)
        else:
            self.sketch.add(values, now)
        self.count += int(values.size)
        self.sum += total

    def quantiles(self, quantiles: Sequence[float], now: float) -> list[float]:
        """The window's quantiles at `now`, in the unit of the observed values."""
        values = self.sketch.quantiles(quantiles, now)
        if self.probabilities:
            return from_sketch_values(values)
        return values

    def merge(self, other: SummaryState) -> None:
        self.sketch.merge(other.sketch)
        self.count += other.count
        self.sum += other.sum

    def to_dict(self, packed: bool = False) -> dict:
        return {"sketch": self.sketch.to_dict(packed), "count": self.count, "sum": self.sum}

    @classmethod
    def from_dict(cls, data: dict, settings: SummarySettings) -> SummaryState:
        state = cls(settings)
        state.sketch = RollingSketch.from_dict(data["sketch"])
        state.count = int(data["count"])
        state.sum = float(data["sum"])
        return state


@dataclass
class ModelState:
    """Everything recorded for one (model, model_version)."""

    model: str
    version: str
    info: dict[str, str] = field(default_factory=dict)
    loaded_at: float = math.nan
    trained_at: float = math.nan
    validation: dict[str, float] = field(default_factory=dict)  # metric -> reference score
    objectives: dict[str, float] = field(default_factory=dict)  # config key -> declared value
    summary_settings: SummarySettings = field(default_factory=SummarySettings)
    counters: dict[str, dict[Labels, float]] = field(default_factory=dict)
    histograms: dict[str, dict[Labels, HistogramState]] = field(default_factory=dict)
    summaries: dict[str, dict[Labels, SummaryState]] = field(default_factory=dict)
    gauges: dict[str, dict[Labels, float]] = field(default_factory=dict)
    # Extra mergeable parts (drift windows, ...) keyed by name; each has merge/to_dict.
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.version)

    # --- recording (called while draining, under the monitor's lock) ----------------------
    def inc(self, metric: str, labels: Labels = (), amount: float = 1.0) -> None:
        series = self.counters.setdefault(metric, {})
        series[labels] = series.get(labels, 0.0) + float(amount)

    def inc_many(self, metric: str, counts: dict[Labels, float]) -> None:
        series = self.counters.setdefault(metric, {})
        for labels, amount in counts.items():
            series[labels] = series.get(labels, 0.0) + float(amount)

    def histogram(self, metric: str, labels: Labels, bounds: Sequence[float]) -> HistogramState:
        series = self.histograms.setdefault(metric, {})
        state = series.get(labels)
        if state is None:
            state = series[labels] = HistogramState(bounds)
        return state

    def summary(self, metric: str, labels: Labels = (),
                probabilities: bool = False) -> SummaryState:
        """The series' summary; a new one sketches probabilities when `probabilities`."""
        series = self.summaries.setdefault(metric, {})
        state = series.get(labels)
        if state is None:
            state = series[labels] = SummaryState(self.summary_settings, probabilities)
        return state

    def set_gauge(self, metric: str, labels: Labels, value: float) -> None:
        self.gauges.setdefault(metric, {})[labels] = float(value)

    # --- merging --------------------------------------------------------------------------
    def merge(self, other: ModelState, now: float | None = None) -> None:
        """Fold `other` (the same model version from another process) into this state.

        `now` (this process's clock, when the caller has one) goes to each extra whose
        ``merge`` takes it: a drift window then keeps its own rows against buckets of a
        clock running a window or more ahead. A series of another layout (histogram
        buckets, quantile settings, drift bins) is a ValueError, raised before anything
        is folded.
        """
        self._check_mergeable(other)
        self._merge_identity(other.info, other.loaded_at, other.trained_at, other.validation,
                             other.objectives)
        for metric, series in other.counters.items():
            self.inc_many(metric, series)
        for metric, series in other.histograms.items():
            mine = self.histograms.setdefault(metric, {})
            for labels, hist in series.items():
                if labels in mine:
                    mine[labels].merge(hist)
                else:
                    mine[labels] = HistogramState.from_dict(hist.to_dict())
        for metric, series in other.summaries.items():
            mine_s = self.summaries.setdefault(metric, {})
            for labels, summ in series.items():
                target = mine_s.get(labels)
                if target is None:
                    target = mine_s[labels] = SummaryState(self.summary_settings,
                                                           summ.probabilities)
                target.merge(summ)
        self._merge_gauges(other.gauges)
        for name, extra in other.extras.items():
            if name in self.extras:
                mine_e = self.extras[name]
                if now is not None and merge_takes_now(mine_e):
                    mine_e.merge(extra, now=now)  # type: ignore[attr-defined]
                else:
                    mine_e.merge(extra)  # type: ignore[attr-defined]
            else:
                self.extras[name] = copy.deepcopy(extra)

    def _check_mergeable(self, other: ModelState) -> None:
        """Raise ValueError if :meth:`merge` would refuse a part of `other`: refused half way,
        the counters were folded already, and a caller that tried again counted them twice."""
        for metric, series in other.histograms.items():
            mine = self.histograms.get(metric, {})
            for labels, hist in series.items():
                if labels in mine and not np.array_equal(mine[labels].bounds, hist.bounds):
                    raise ValueError(f"cannot merge histogram {metric}{list(labels)}: its"
                                     " buckets differ")
        fresh: dict[bool, tuple] = {}
        for metric, series in other.summaries.items():
            mine_s = self.summaries.get(metric, {})
            for labels, summ in series.items():
                target = mine_s.get(labels)
                if target is not None:
                    config = target.sketch._config()
                else:
                    if summ.probabilities not in fresh:
                        fresh[summ.probabilities] = SummaryState(
                            self.summary_settings, summ.probabilities).sketch._config()
                    config = fresh[summ.probabilities]
                if summ.sketch._config() != config:
                    raise ValueError(f"cannot merge summary {metric}{list(labels)}: its"
                                     " window or accuracy differs")
        for name, extra in other.extras.items():
            check = getattr(self.extras.get(name), "check_mergeable", None)
            if check is not None:
                check(extra)

    def merge_identity_of(self, data: dict) -> None:
        """Fold the identity fields (info, times, validation, objectives) of a
        :meth:`to_dict`-shaped `data`, another process's view of this model version, as
        :meth:`merge` folds them. Folding the same identity twice changes nothing.

        >>> state = ModelState("m", "1", loaded_at=5.0)
        >>> state.merge_identity_of({"loaded_at": 3.0, "info": {"task": "regression"}})
        >>> state.loaded_at, state.info
        (3.0, {'task': 'regression'})
        """
        identity = _identity_in(data)
        self._merge_identity(identity["info"], identity["loaded_at"], identity["trained_at"],
                             identity["validation"], identity["objectives"])

    def merge_gauges_of(self, data: dict) -> None:
        """Fold the gauges of a :meth:`to_dict`-shaped `data`, by each gauge's rule.

        >>> state = ModelState("m", "1")
        >>> for _ in range(2):
        ...     state.merge_gauges_of({"gauges": {"inferwatch_requests_in_flight": [[[], 2.0]]}})
        >>> state.gauges["inferwatch_requests_in_flight"][()]
        4.0
        """
        gauges = data.get("gauges")
        if gauges:
            self._merge_gauges(_series_in(gauges, float, _gauge_combined))

    def _merge_identity(self, info: dict[str, str], loaded_at: float, trained_at: float,
                        validation: dict[str, float], objectives: dict[str, float]) -> None:
        self.info = {**info, **self.info}
        if self.info.get("task") == "auto" and info.get("task", "auto") != "auto":
            self.info["task"] = info["task"]  # a worker that has seen predictions knows
        if info.get("role") == "shadow":
            # A process still running this version as a shadow: its failures count here,
            # and the serving alerts must go on leaving it out until none does.
            self.info["role"] = "shadow"
        self.loaded_at = _nanmin(self.loaded_at, loaded_at)
        self.trained_at = _nanmax(self.trained_at, trained_at)
        self.validation = {**validation, **self.validation}
        self.objectives = {**objectives, **self.objectives}

    def _merge_gauges(self, gauges: dict[str, dict[Labels, float]]) -> None:
        for metric, series in gauges.items():
            rule = GAUGE_MERGE.get(metric, "max")
            mine_g = self.gauges.setdefault(metric, {})
            for labels, value in series.items():
                if labels not in mine_g:
                    mine_g[labels] = value
                elif rule == "sum":
                    mine_g[labels] += value
                else:
                    mine_g[labels] = max(mine_g[labels], value)

    # --- serialisation (worker snapshots) ---------------------------------------------------
    def to_dict(self, packed: bool = False) -> dict:
        """A JSON-serialisable form of every series; `packed`: the summaries' sketch bins
        as int64 arrays, which only a worker file's packer reads (``model_dict``)."""
        s = self.summary_settings
        return {
            "model": self.model,
            "version": self.version,
            "info": dict(self.info),
            "loaded_at": _json_float(self.loaded_at),
            "trained_at": _json_float(self.trained_at),
            "validation": dict(self.validation),
            "objectives": dict(self.objectives),
            "summary_settings": [list(s.quantiles), s.max_age_seconds, s.age_buckets,
                                 s.relative_accuracy],
            "counters": _series_out(self.counters, float),
            "histograms": _series_out(self.histograms, HistogramState.to_dict),
            "summaries": _series_out(self.summaries, _packed_summary if packed
                                     else SummaryState.to_dict),
            "gauges": _series_out(self.gauges, float),
            "extras": {name: extra.to_dict() for name, extra in self.extras.items()
                       if name in EXTRA_TYPES},
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelState:
        """Rebuild a state from :meth:`to_dict`; a malformed one is a ValueError naming the
        key (a KeyError, TypeError or AttributeError named nothing, and escaped callers
        that catch the ValueError a bad snapshot promises)."""
        if not isinstance(data, dict):
            raise ValueError(f"model state: expected an object, got {type(data).__name__}")
        settings = _part("summary_settings", lambda: _settings_in(data["summary_settings"]))
        return cls(
            model=_part("model", lambda: _text_in(data["model"])),
            version=_part("version", lambda: _text_in(data["version"])),
            **_identity_in(data),
            summary_settings=settings,
            counters=_part("counters", lambda: _series_in(data.get("counters", {}), float)),
            histograms=_part("histograms", lambda: _series_in(
                data.get("histograms", {}), HistogramState.from_dict, _merged_into)),
            summaries=_part("summaries", lambda: _series_in(
                data.get("summaries", {}), lambda d: SummaryState.from_dict(d, settings),
                _merged_into)),
            gauges=_part("gauges", lambda: _series_in(data.get("gauges", {}), float,
                                                      _gauge_combined)),
            extras=_part("extras", lambda: decode_extras(data.get("extras", {}))),
        )


def _part(key: str, read: Callable[[], Any]) -> Any:
    """`read()`, any error of malformed data raised as a ValueError naming `key`."""
    try:
        return read()
    except (KeyError, TypeError, AttributeError, IndexError, OverflowError,
            ValueError) as exc:
        raise ValueError(f"model state: key {key!r}: {exc!r}") from None


def _text_in(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value


def _settings_in(value: object) -> SummarySettings:
    quantiles, max_age, age_buckets, accuracy = value  # type: ignore[misc]
    if not all(isinstance(q, (int, float)) and not isinstance(q, bool) and 0.0 <= q <= 1.0
               for q in quantiles):
        raise ValueError(f"quantiles must be numbers in [0, 1], got {quantiles!r}")
    settings = SummarySettings(tuple(float(q) for q in quantiles), max_age, age_buckets,
                               accuracy)
    # Built once here: bad window settings failed only when a summary was first made
    # from them, in the drain, far from the snapshot that held them.
    SummaryState(settings)
    return settings


def merge_takes_now(extra: object) -> bool:
    """Whether `extra.merge` takes a `now` (extras registered by others may not).

    >>> class Counted:
    ...     def merge(self, other, now=None): ...
    >>> merge_takes_now(Counted()), merge_takes_now(object())
    (True, False)
    """
    kind = type(extra)
    found = _TAKES_NOW.get(kind)
    if found is None:
        try:
            found = "now" in inspect.signature(kind.merge).parameters  # type: ignore[attr-defined]
        except (AttributeError, TypeError, ValueError):
            found = False
        _TAKES_NOW[kind] = found
    return found


_TAKES_NOW: dict[type, bool] = {}


def _identity_in(data: dict) -> dict[str, Any]:
    """The identity fields of a :meth:`ModelState.to_dict`-shaped dict, typed."""
    return {"info": _part("info", lambda: {str(k): str(v)
                                           for k, v in data.get("info", {}).items()}),
            "loaded_at": _part("loaded_at", lambda: _from_json_float(data.get("loaded_at"))),
            "trained_at": _part("trained_at", lambda: _from_json_float(data.get("trained_at"))),
            "validation": _part("validation", lambda: {
                str(k): float(v) for k, v in data.get("validation", {}).items()}),
            "objectives": _part("objectives", lambda: {
                str(k): float(v) for k, v in data.get("objectives", {}).items()})}


def decode_extras(extras: object) -> dict[str, object]:
    """Extras of a snapshot; one this process cannot decode is left out and counted.

    >>> decode_extras({"no_such_extra": {}})
    {}
    """
    if not isinstance(extras, dict):
        raise ValueError("snapshot extras must be a dict")
    decoded = {}
    for name, data in extras.items():
        if name not in EXTRA_TYPES:
            faults.record("snapshot_extra")
            continue
        try:
            decoded[name] = decode_extra(name, data)
        except Exception as exc:
            faults.record("snapshot_extra", exc)
    return decoded


def _at_or_below_each(values: np.ndarray, bounds: list[float]) -> np.ndarray:
    """How many of `values` are at or below each bound, one pass per bound. A bound below
    the smallest value or at or above the largest needs no pass: a batch of scores in
    [0, 1] against the default bounds reads its rows five times instead of eleven, for the
    two passes of min and max. A nan makes both nan, and then every bound is counted."""
    smallest, largest = float(values.min()), float(values.max())
    at_or_below = np.empty(values.shape, dtype=bool)
    if smallest != smallest:  # nan: it is at or below no bound
        return np.array([np.count_nonzero(np.less_equal(values, bound, out=at_or_below))
                         for bound in bounds], dtype=np.int64)
    size = values.size
    return np.array([0 if bound < smallest else size if bound >= largest else
                     np.count_nonzero(np.less_equal(values, bound, out=at_or_below))
                     for bound in bounds], dtype=np.int64)


def _finite_sum(values: np.ndarray) -> float:
    # A sum past the float range is +-inf, as prometheus_client would report; not a warning.
    return quiet_sum(values)


def _nanmin(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else min(a, b)


def _nanmax(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else max(a, b)


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


def _from_json_float(value: object) -> float:
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def _packed_summary(summary: SummaryState) -> dict:
    return summary.to_dict(packed=True)


def _series_out(series_by_metric: dict, convert) -> dict:
    return {
        metric: [[list(labels), convert(value)] for labels, value in series.items()]
        for metric, series in series_by_metric.items()
    }


def _series_in(data: dict, convert, combine: Callable[[str, Any, Any], Any] | None = None
               ) -> dict:
    """Series by metric from :func:`_series_out` rows, label values as text.

    Rows whose labels are equal only as text (``[1]`` and ``["1"]``, a state whose label
    values were not all strings) are one series in the exposition: they are combined with
    `combine(metric, first, second)` (counters add), where the later one silently replaced
    the first and its counts were lost.
    """
    if not isinstance(data, dict):
        raise ValueError(f"expected an object of series by metric, got {type(data).__name__}")
    series: dict = {}
    for metric, rows in data.items():
        name = str(metric)
        mine = series.setdefault(name, {})
        for labels, value in rows:
            # A string's letters were taken as label values one by one.
            if not isinstance(labels, (list, tuple)):
                raise ValueError(f"{metric}: labels must be a list, got {labels!r}")
            key = tuple(str(v) for v in labels)
            converted = convert(value)
            if key in mine:
                converted = (combine or _added)(name, mine[key], converted)
            mine[key] = converted
    return series


def _added(metric: str, first: float, second: float) -> float:
    return first + second


def _gauge_combined(metric: str, first: float, second: float) -> float:
    """Two values of one gauge series, by the gauge's rule (:data:`GAUGE_MERGE`)."""
    return first + second if GAUGE_MERGE.get(metric, "max") == "sum" else max(first, second)


def _merged_into(metric: str, first: Any, second: Any) -> Any:
    """Two histograms or summaries of one series merged (a ValueError when their buckets
    or windows differ, as :meth:`ModelState.merge` refuses them)."""
    first.merge(second)
    return first
