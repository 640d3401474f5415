"""A small ring of recent totals per model version, for the status page's sparklines.

The background drain takes one :class:`Sample` per model version every
``interval_seconds`` (never a call on the request path); the ring keeps ``span_seconds`` of
them, so its memory is bounded whatever the traffic: a handful of totals and one array of
latency bucket counts per sample. Per-feature quality counts, which grow with the number of
features, are kept only on samples of the last ``feature_span_seconds``, at most one a minute.

A window's numbers are the difference between the state now and the newest sample at least
the window's length old (or zero, before the first sample: since the start), as Prometheus'
``increase()`` would read them from two scrapes.

>>> from inferwatch.core.state import ModelState
>>> history = History(interval_seconds=10, span_seconds=60)
>>> state = ModelState("fraud", "1")
>>> state.inc("inferwatch_requests_total", ("ok",), 5)
>>> history.record([state], now=100.0)
>>> state.inc("inferwatch_requests_total", ("ok",), 20)
>>> now_totals = totals_of(state)
>>> before = history.before(("fraud", "1"), 100.0 + 30)
>>> now_totals["requests"] - before.totals["requests"]
20.0
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from inferwatch.core.state import ModelState

DEFAULT_INTERVAL_SECONDS = 10.0
# An hour and ten minutes: InferwatchNoTraffic compares the last 5m with the 5m an hour ago.
DEFAULT_SPAN_SECONDS = 4200.0
FEATURE_INTERVAL_SECONDS = 60.0
FEATURE_SPAN_SECONDS = 600.0
# Model versions the ring follows; the registry caps them too (100 models x 10 versions),
# this keeps the ring small even then. A version no longer sampled makes room for a new
# one; while every followed version is still sampled, a newcomer gets no ring.
MAX_KEYS = 200

LATENCY = "inferwatch_request_duration_seconds"
FIRST_ITEM = "inferwatch_stream_first_item_seconds"
INPUT_ERRORS = "inferwatch_input_errors_total"
QUALITY_COUNTERS = ("inferwatch_feature_missing_total", "inferwatch_feature_out_of_range_total")


@dataclass(frozen=True)
class Sample:
    """The totals of one model version at time ``at`` (unix seconds)."""

    at: float
    totals: dict[str, float]
    latency: np.ndarray | None  # non-cumulative bucket counts, +Inf last
    features: dict[str, dict[str, float]] | None = None  # metric -> feature -> count
    # Time to a stream's first item, as `latency`; None for a model that never streamed.
    first_item: np.ndarray | None = None


def totals_of(state: ModelState) -> dict[str, float]:
    """The scalar totals a sample keeps: calls by outcome, rows predicted, invalid
    predictions, outcomes, the absolute errors joined (their sum and count), and input
    errors by reason (``inferwatch_input_errors_total|<reason>``, a handful of reasons: the
    catalogue fixes them).

    >>> state = ModelState("m", "1")
    >>> state.inc("inferwatch_requests_total", ("error",), 2)
    >>> state.inc("inferwatch_input_errors_total", ("missing_column",), 3)
    >>> totals = totals_of(state)
    >>> totals["errors"], totals["inferwatch_input_errors_total|missing_column"]
    (2.0, 3.0)
    """
    requests = state.counters.get("inferwatch_requests_total", {})
    outcomes = state.counters.get("inferwatch_outcomes_total", {})
    batch = state.histograms.get("inferwatch_batch_size", {}).get(())
    totals = {
        "requests": float(sum(requests.values())),
        "errors": float(requests.get(("error",), 0.0)),
        "rows": float(batch.sum) if batch is not None else 0.0,
        "invalid": float(sum(state.counters.get("inferwatch_invalid_predictions_total",
                                                {}).values())),
        "correct": float(outcomes.get(("correct",), 0.0)),
        "outcomes": float(sum(outcomes.values())),
    }
    errors = state.histograms.get("inferwatch_outcome_error", {}).get(())
    totals["inferwatch_outcome_error_sum"] = float(errors.sum) if errors is not None else 0.0
    totals["inferwatch_outcome_error_count"] = float(errors.count) if errors is not None else 0.0
    for labels, count in state.counters.get(INPUT_ERRORS, {}).items():
        if labels:
            totals[f"{INPUT_ERRORS}|{labels[0]}"] = float(count)
    return totals


def feature_counts_of(state: ModelState) -> dict[str, dict[str, float]]:
    """Per-feature quality totals: metric -> feature -> count."""
    return {metric: {labels[0]: value for labels, value in
                     state.counters.get(metric, {}).items()}
            for metric in QUALITY_COUNTERS}


class History:
    """Rings of :class:`Sample` by (model, model_version); thread-safe, bounded."""

    def __init__(self, interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
                 span_seconds: float = DEFAULT_SPAN_SECONDS) -> None:
        # Finite, too: an infinite span would size the ring with an OverflowError.
        if not 0 < interval_seconds <= span_seconds < float("inf"):
            raise ValueError("History: interval_seconds must be positive and at most "
                             f"span_seconds, a finite number, got {interval_seconds!r} "
                             f"and {span_seconds!r}")
        self.interval_seconds = float(interval_seconds)
        self.span_seconds = float(span_seconds)
        self._length = int(span_seconds // interval_seconds) + 1
        self._rings: dict[tuple[str, str], deque[Sample]] = {}
        self._last_features: dict[tuple[str, str], float] = {}
        self._last_record = float("-inf")
        # Monotonic seconds at the last round: how long ago it was when the wall clock
        # stepped back behind it.
        self._last_mono = float("-inf")
        # The time of the sampling round before the current one: a version whose newest
        # sample is neither from it nor from the current round is no longer sampled.
        self._previous_round = float("-inf")
        self._lock = threading.Lock()

    def renew_lock(self) -> None:
        """A new lock in a forked child (the parent's may have been held at fork)."""
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every sample: a forked child that counts from zero must not read its
        windows against the parent's totals (its first windows would show the parent's
        traffic as negative)."""
        with self._lock:
            self._rings.clear()
            self._last_features.clear()
            self._last_record = float("-inf")
            self._last_mono = float("-inf")
            self._previous_round = float("-inf")

    def _start_round(self, now: float) -> None:
        if now != self._last_record:
            self._previous_round = self._last_record
            self._last_record = now
        self._last_mono = time.monotonic()

    def due(self, now: float) -> bool:
        """Whether a sample is due: the drain asks once per round. Behind the last round
        (the clock stepped back: NTP, a resumed VM), the last round is moved onto the new
        time line, as long before `now` as the monotonic clock says it was: the ring goes
        on at its pace, neither due at every round until the wall clock caught up nor
        stopped for as long as the step.

        >>> history = History(interval_seconds=10, span_seconds=60)
        >>> history.due(1000.0)
        True
        >>> history.record([], now=1000.0)
        >>> history.due(1005.0), history.due(1010.0), history.due(1000.0 - 3600)
        (False, True, False)
        """
        if not _finite(now):
            return False  # no round at no time: see record()
        elapsed = now - self._last_record
        if elapsed < 0.0:
            with self._lock:
                since = max(0.0, time.monotonic() - self._last_mono)
                self._last_record = now - since
            elapsed = since
        return elapsed >= self.interval_seconds

    def record(self, states: Iterable[ModelState], now: float) -> None:
        """Append one sample per state. Call with states nobody writes meanwhile (a copy,
        or under the monitor's lock). A time that is not finite records nothing: a round
        at NaN would leave no later time ever due, and a sample there matches no window."""
        if not _finite(now):
            return
        with self._lock:
            self._start_round(now)
            for state in states:
                self._record_one(state, now)

    def record_one(self, state: ModelState, now: float) -> None:
        """Append one sample of `state` (read under its monitor's lock by the caller); at a
        time that is not finite, none (see :meth:`record`)."""
        if not _finite(now):
            return
        with self._lock:
            self._start_round(now)
            self._record_one(state, now)

    def _record_one(self, state: ModelState, now: float) -> None:
        key = state.key
        ring = self._rings.pop(key, None)  # re-inserted last: the dict keeps recency order
        if ring is None:
            if len(self._rings) >= MAX_KEYS:
                # The drain samples every version each round, so evicting the least
                # recently seen one whatever its age would evict a ring per newcomer per
                # round: past MAX_KEYS versions, every ring would hold one sample and every
                # window would read "since the start". Only a version that missed the last
                # round (no longer sampled: the least recently seen, first) makes room.
                oldest = next(iter(self._rings))
                newest = self._rings[oldest][-1].at if self._rings[oldest] else None
                if newest is not None and newest in (self._previous_round, now):
                    return
                del self._rings[oldest]
                self._last_features.pop(oldest, None)
            ring = deque(maxlen=self._length)
        self._rings[key] = ring
        # After the clock stepped back, samples stamped later than now would leave the ring
        # out of time order, and before() reads it in order: they go.
        while ring and ring[-1].at > now:
            ring.pop()
        totals = totals_of(state)
        # Totals below the last sample's: the counts restarted (a worker forked from a
        # process that had served calls zeroes its own). A window read against an older
        # sample would show negative requests and error rates, so the ring restarts too,
        # as increase() reads a counter reset.
        if ring and any(value < ring[-1].totals.get(name, 0.0)
                        for name, value in totals.items()):
            ring.clear()
            self._last_features.pop(key, None)
        latency = state.histograms.get(LATENCY, {}).get(())
        features = None
        since_features = now - self._last_features.get(key, float("-inf"))
        if since_features >= FEATURE_INTERVAL_SECONDS or since_features < 0.0:
            features = feature_counts_of(state)
            self._last_features[key] = now
        first_item = state.histograms.get(FIRST_ITEM, {}).get(())
        ring.append(Sample(now, totals,
                           None if latency is None else latency.counts.copy(), features,
                           None if first_item is None else first_item.counts.copy()))
        # Per-feature counts are kept for the recent past only: older samples drop them.
        cutoff = now - FEATURE_SPAN_SECONDS
        for i, sample in enumerate(ring):
            if sample.at >= cutoff:
                break
            if sample.features is not None:
                ring[i] = Sample(sample.at, sample.totals, sample.latency, None,
                                 sample.first_item)

    def samples(self, key: tuple[str, str]) -> list[Sample]:
        """The samples of one model version, oldest first."""
        with self._lock:
            ring = self._rings.get(key)
            return list(ring) if ring is not None else []

    def before(self, key: tuple[str, str], at: float, *,
               features: bool = False) -> Sample | None:
        """The newest sample taken at or before `at` (with feature counts when asked); None
        at a NaN time, which is no time: not the newest sample, whose window would read as
        nothing having happened."""
        if at != at:
            return None
        found = None
        for sample in self.samples(key):
            if sample.at > at:
                break
            if not features or sample.features is not None:
                found = sample
        return found

    def keys(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._rings)


def _finite(value: float) -> bool:
    return -math.inf < value < math.inf
