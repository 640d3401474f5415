"""Delayed ground truth: join an outcome with the prediction made for the same request id.

Predictions with a request id are remembered in a bounded, insertion-ordered cache with a
time-to-live. Memory is bounded twice, whatever the traffic: by `max_entries` and by
`max_bytes` (an entry is counted as ``ENTRY_BYTES`` plus ``ROW_BYTES`` per row); the oldest
entries make room for a new one. Every row of a batch call is kept and joined; only a
single batch larger than `max_bytes` keeps its first rows, and an outcome for the rows it
could not keep counts them as unmatched with the reason ``rows_over_bound``. Ids that were
already joined are remembered in a second bounded set so an outcome that arrives twice is
reported, not counted twice.

>>> joiner = OutcomeJoiner()
>>> joiner.remember("r-1", ("fraud",), None, at=100.0)
>>> joiner.join("r-1", "fraud", at=160.0)
Join(correct=1, incorrect=0, errors=(), delay=60.0, unmatched=None, rows_over_bound=0)
>>> joiner.join("r-1", "fraud", at=170.0).unmatched
'duplicate'
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_MAX_ENTRIES = 50_000
DEFAULT_TTL_SECONDS = 7 * 86400.0
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# What one entry costs in memory: the dict slot, key and tuples, plus a Python object per
# row (a short str label or a float), measured with sys.getsizeof on CPython 3.11.
ENTRY_BYTES = 300
ROW_BYTES = 64


@dataclass(frozen=True)
class Join:
    """The result of one outcome: counts for classifiers, absolute errors for regressors."""

    correct: int = 0
    incorrect: int = 0
    errors: tuple[float, ...] = ()
    delay: float | None = None
    unmatched: str | None = None
    rows_over_bound: int = 0  # outcome rows past what the memory bound let the entry keep


class OutcomeJoiner:
    """A bounded cache of recent predictions by request id."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES,
                 ttl_seconds: float = DEFAULT_TTL_SECONDS,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_entries < 1:
            raise ValueError(f"outcome cache max_entries must be at least 1, got {max_entries}")
        if not ttl_seconds > 0:
            raise ValueError(f"outcome ttl_seconds must be positive, got {ttl_seconds}")
        if max_bytes < ENTRY_BYTES + ROW_BYTES:
            raise ValueError(f"outcome cache max_bytes must be at least "
                             f"{ENTRY_BYTES + ROW_BYTES}, got {max_bytes}")
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.max_bytes = max_bytes
        self.bytes = 0
        self._lock = threading.Lock()
        # request id -> (classes or None, values or None, time, rows the call returned)
        self._pending: OrderedDict[str, tuple[tuple | None, tuple | None, float, int]] = \
            OrderedDict()
        self._joined: OrderedDict[str, None] = OrderedDict()

    def renew_lock(self) -> None:
        """A new lock in a forked child (one held at fork time would never be released)."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pending)

    def remember(self, request_id: str, classes: tuple[str, ...] | None,
                 values: tuple[float, ...] | None, at: float) -> None:
        """Keep a prediction until its outcome arrives (or it is evicted or expires)."""
        rows = len(classes or values or ())
        fit = max(1, (self.max_bytes - ENTRY_BYTES) // ROW_BYTES)
        entry = (classes[:fit] if classes else None, values[:fit] if values else None, at,
                 rows)
        with self._lock:
            previous = self._pending.pop(request_id, None)
            if previous is not None:
                self.bytes -= _entry_bytes(previous)
            self._pending[request_id] = entry
            self.bytes += _entry_bytes(entry)
            while len(self._pending) > self.max_entries or (
                    self.bytes > self.max_bytes and len(self._pending) > 1):
                _, evicted = self._pending.popitem(last=False)
                self.bytes -= _entry_bytes(evicted)

    def join(self, request_id: str, y_true: Any, at: float) -> Join:
        """Join `y_true` with the prediction remembered for `request_id`."""
        with self._lock:
            entry = self._pending.pop(request_id, None)
            if entry is None:
                duplicate = request_id in self._joined
                return Join(unmatched="duplicate" if duplicate else "unknown_id")
            self.bytes -= _entry_bytes(entry)
            self._joined[request_id] = None
            while len(self._joined) > self.max_entries:
                self._joined.popitem(last=False)
        classes, values, predicted_at, rows = entry
        if at - predicted_at > self.ttl_seconds:
            return Join(unmatched="expired")
        truth = _as_rows(y_true)
        delay = max(0.0, at - predicted_at)
        if len(truth) != rows and len(truth) != 1 and (classes is not None or
                                                        values is not None):
            return Join(unmatched="shape_mismatch")
        kept = len(classes or values or ())
        over = rows - kept if len(truth) == rows else 0
        truth = truth[:kept]
        if classes is not None:
            correct = sum(1 for p, t in zip(classes, _broadcast(truth, len(classes)))
                          if p == _class_text(t))
            return Join(correct=correct, incorrect=len(classes) - correct, delay=delay,
                        rows_over_bound=over)
        if values is not None:
            errors = []
            for p, t in zip(values, _broadcast(truth, len(values))):
                try:
                    error = abs(float(p) - float(t))
                except (TypeError, ValueError):
                    return Join(unmatched="shape_mismatch")
                if math.isfinite(error):
                    errors.append(error)
            return Join(errors=tuple(errors), delay=delay, rows_over_bound=over)
        return Join(delay=delay)


def _entry_bytes(entry: tuple) -> int:
    classes, values = entry[0], entry[1]
    return ENTRY_BYTES + ROW_BYTES * len(classes or values or ())


def _as_rows(y_true: Any) -> list:
    if isinstance(y_true, (str, bytes)) or np.ndim(y_true) == 0:
        return [y_true]
    return list(np.asarray(y_true).reshape(-1))


def _broadcast(rows: list, n: int) -> list:
    return rows * n if len(rows) == 1 else rows


def _class_text(value: Any) -> str:
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a label 1.0 from a float column matches class "1"
    return str(value)
