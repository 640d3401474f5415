"""Delayed ground truth: join an outcome with the prediction made for the same request id.

Predictions with a request id are remembered in a bounded, insertion-ordered cache with a
time-to-live. Memory is bounded twice, whatever the traffic: by `max_entries` and by
`max_bytes` (``Settings.outcome_cache_bytes``: what each entry holds, estimated from the
objects it keeps); the oldest entries make room for a new one. Every row of a batch call is
kept and joined; only a single batch larger than the whole of `max_bytes` keeps its first
rows, and an outcome for the rows it could not keep counts them as unmatched with the reason
``rows_over_bound``. A single-row entry takes about 350 bytes and a 64-row batch entry about
3 KB (``benchmarks/bench_outcome_cache.py`` measures both), so the default 50,000 entries of
single rows take about 18 MB and batch entries stop at the 32 MiB default. The ids of
predictions that left the cache (joined with their outcome, expired, or evicted by a bound)
are remembered in a second bounded set, inside the same byte budget, of which they keep up
to an eighth even when predictions waiting need room: an outcome that arrives twice is
reported as a ``duplicate``, not counted twice, and one whose prediction a bound evicted
counts ``evicted`` (the cache is too small), not ``unknown_id`` (a wrong id). An outcome
that judges nothing (every label not known yet, or a ``shape_mismatch``) leaves its
prediction waiting for one that does; the first outcome that judges a row is final.

Two calls made under one id while the first waits for its outcome (``predict`` then
``predict_proba``, or an explanation call) join the first, as a request's first call is its
prediction: a later call takes the id only once the first has expired, or once an outcome
joined it (an id used again). A row of a classifier's batch without a predicted class (None,
NaN, pd.NA) is kept as None: its outcome counts it once as ``unsupported_prediction``, never
incorrect, and the batch's other rows are judged.

A regressor of several outputs (scikit-learn's ``MultiOutputRegressor``, a model fit on a 2-D
``y``, an ``(n, k)`` float array, a dict of named float outputs) keeps each row as a tuple of
its k values, in the order the model returned its outputs; the byte estimate counts the
tuple and each value (about 48 + 32k bytes a row: a 64-row batch of two outputs takes about
7.5 KB), so the bound holds for any k. Its outcome gives k targets per row, in that order
(a 2-D ``(n, k)`` table, or one row of k, which judges every row as one label does), and
each target is judged against its own output: ``inferwatch_outcome_error`` observes one
absolute error per target, so its sum over its count is the mean absolute error over every
output. A missing target is skipped and counted as one ``missing_label``, the row's other
targets are judged; a row of another width, or a dict of targets (outputs are joined by
order, not by name), counts ``shape_mismatch``. A classifier of several outputs
(scikit-learn's ``MultiOutputClassifier``: an ``(n, k)`` array of labels, a dict of label
columns, or from ``predict_proba`` a probability matrix per output, read as each output's
top class) keeps each row as a tuple of its k labels the same way, and each label of an
outcome row counts one ``inferwatch_outcomes_total{result}`` against its own output.

>>> joiner = OutcomeJoiner()
>>> joiner.remember("r-1", ("fraud",), None, at=100.0)
>>> joiner.join("r-1", "fraud", at=160.0).correct
1
>>> joiner.join("r-1", "fraud", at=170.0).unmatched
'duplicate'
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from inferwatch.core.outcome_labels import class_text, same_class
from inferwatch.core.outcome_sizes import (
    EMPTY_TUPLE_BYTES,
    ENTRY_OVERHEAD_BYTES,
    SMALLEST_ROW_BYTES,
    TUPLE_SLOT_BYTES,
    fitted_entry,
    row_cap,
    rows_held_bytes,
    sizeof,
)
from inferwatch.core.outcome_truth import as_rows, as_table, broadcast, target_float

DEFAULT_MAX_ENTRIES = 50_000
DEFAULT_MAX_BYTES = 32 * 2**20
# A remembered id's slot in its ordered dict, link node and byte count, at the most slack
# the table keeps (just past a resize, with every slot churned): these ids may now fill
# their share of the bytes, so their estimate may not fall short either (tracemalloc).
_JOINED_OVERHEAD_BYTES = 180
_EXPIRED_OVERHEAD_BYTES = 60  # an expired id's slot in the set that marks it
# An evicted id's slot in the dict that keeps when its prediction was made, and that time,
# at the most slack likewise.
_EVICTED_OVERHEAD_BYTES = 150
# The ids of predictions that left the cache keep up to this share of max_bytes when
# predictions waiting need room: dropped before any of those, a duplicate or the outcome of
# an evicted prediction, however soon after, would read as an unknown id.
_GONE_IDS_SHARE = 8
DEFAULT_TTL_SECONDS = 7 * 86400.0


@dataclass(frozen=True)
class Join:
    """The result of one outcome: counts for classifiers, absolute errors for regressors."""

    correct: int = 0
    incorrect: int = 0
    errors: tuple[float, ...] = ()
    delay: float | None = None
    unmatched: str | None = None
    rows_over_bound: int = 0  # outcome rows past what the memory bound let the entry keep
    # Labels not known yet (None, NaN, pd.NA), not judged: one per row, or for a regressor
    # of several outputs one per missing target (the row's other targets are judged).
    missing_labels: int = 0
    # Rows of a classifier's batch that had no predicted class (None, NaN, pd.NA), not
    # judged whatever their label: counted as ``unsupported_prediction``, one per row.
    unpredicted_rows: int = 0
    # Nothing judged (every label that could judge a row not known yet, or a shape
    # mismatch): the prediction still waits for an outcome that judges it, and no label
    # delay is observed. Its rows are counted as any outcome's are, each under one reason.
    waits: bool = False


def _check_bounds(max_entries: int, ttl_seconds: float, max_bytes: int) -> None:
    if max_entries < 1:
        raise ValueError(f"outcome cache max_entries must be at least 1, got {max_entries}")
    if max_bytes < 1:
        raise ValueError(f"outcome cache max_bytes must be at least 1, got {max_bytes}")
    if not ttl_seconds > 0:
        raise ValueError(f"outcome ttl_seconds must be positive, got {ttl_seconds}")


class OutcomeJoiner:
    """A bounded cache of recent predictions by request id."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES,
                 ttl_seconds: float = DEFAULT_TTL_SECONDS, *,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        _check_bounds(max_entries, ttl_seconds, max_bytes)
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # request id -> (classes or None, values or None, time, bytes, rows the call returned);
        # values are floats, or for a prediction of several outputs a tuple of floats per row.
        self._pending: OrderedDict[str, tuple[tuple | None, tuple | None, float, int, int]] = \
            OrderedDict()
        # request id -> bytes, of each prediction that left the cache: joined with its
        # outcome, expired when it came, or evicted by a bound. An outcome for one is a
        # duplicate, expired or evicted: not an unknown id.
        self._joined: OrderedDict[str, int] = OrderedDict()
        # The ids in _joined whose prediction had expired when its outcome came: another
        # outcome for one is expired too, not a duplicate of an outcome that was counted.
        self._expired: set[str] = set()
        # The ids in _joined whose prediction a bound evicted -> when it was made: an
        # outcome for one says the cache is too small (or, past the ttl, expired).
        self._evicted: dict[str, float] = {}
        self._bytes = 0  # the estimate for both, kept under max_bytes
        self._joined_bytes = 0  # the part of it _joined takes

    def renew_lock(self) -> None:
        """A new lock in a forked child (one held at fork time would never be released)."""
        self._lock = threading.Lock()

    def resize(self, max_entries: int, ttl_seconds: float, max_bytes: int) -> None:
        """Take new bounds (``mon.configure(outcome_cache_size=...)`` on a running model):
        predictions waiting are kept, the oldest going first past a smaller bound.

        >>> joiner = OutcomeJoiner()
        >>> for i in range(3):
        ...     joiner.remember(f"r-{i}", ("a",), None, at=0.0)
        >>> joiner.resize(2, 60.0, DEFAULT_MAX_BYTES)
        >>> list(joiner._pending), joiner.join("r-2", "a", at=120.0).unmatched
        (['r-1', 'r-2'], 'expired')
        """
        _check_bounds(max_entries, ttl_seconds, max_bytes)
        with self._lock:
            self.max_entries, self.ttl_seconds, self.max_bytes = (max_entries, ttl_seconds,
                                                                  max_bytes)
            while len(self._pending) > max_entries:
                self._evict_oldest_pending()
            while len(self._joined) > max_entries:
                self._forget_oldest_joined()
            self._make_room()

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def estimated_bytes(self) -> int:
        """What the cache holds now, by the estimate that `max_bytes` bounds."""
        return self._bytes

    def remember(self, request_id: str,
                 classes: tuple[str, ...] | tuple[tuple[str, ...], ...] | None,
                 values: tuple[float, ...] | tuple[tuple[float, ...], ...] | None,
                 at: float) -> None:
        """Keep a prediction until its outcome arrives (or it is evicted or expires): its
        classes, or its values (a tuple of each row's outputs for several outputs). While
        a prediction for `request_id` waits within the ttl, it stays and this one is not
        kept.

        >>> joiner = OutcomeJoiner()
        >>> joiner.remember("r-1", None, ((1.0, 10.0), (2.0, 20.0)), at=0.0)
        >>> joiner.join("r-1", [[1.5, 10.0], [2.0, 18.0]], at=1.0).errors
        (0.5, 0.0, 0.0, 2.0)
        >>> joiner.remember("r-2", ("a",), None, at=0.0)
        >>> joiner.remember("r-2", ("b",), None, at=5.0)  # the first call's prediction stays
        >>> joiner.join("r-2", "a", at=6.0).correct
        1
        """
        rows = len(classes or values or ())
        classes, values, size = fitted_entry(request_id, classes or None, values or None,
                                             self.max_bytes)
        with self._lock:
            if self._waits(request_id, at):
                return
            old = self._pending.pop(request_id, None)
            if old is not None:
                self._bytes -= old[3]
            self._pending[request_id] = (classes, values, at, size, rows)
            self._bytes += size
            while len(self._pending) > self.max_entries:
                self._evict_oldest_pending()
            self._make_room()

    def row_cap(self, row_bytes: int = SMALLEST_ROW_BYTES, request_id: object = None) -> int:
        """The most rows one remembered prediction can keep within ``max_bytes``, each row's
        object at least `row_bytes` (:func:`row_bytes` of the shortest; default: the
        smallest any object is), under `request_id` (default: the smallest id): a caller
        holding a longer batch passes its first this many rows and the whole count
        (:meth:`remember_many`), and the rest are never converted to Python objects, nor
        sized once converted.

        >>> from inferwatch.core.outcome_sizes import row_bytes
        >>> joiner = OutcomeJoiner(max_bytes=4096)
        >>> joiner.row_cap(), joiner.row_cap(row_bytes(0.5)), joiner.row_cap(row_bytes("7"))
        (157, 118, 65)
        """
        return row_cap(self.max_bytes, row_bytes, request_id)

    def remember_many(self, entries: Iterable[tuple]) -> None:
        """``remember`` for many predictions at once, under one hold of the lock: the cache
        ends as it would after remembering each in turn. Each entry is (request id,
        classes, values, time), or with a fifth item, the rows of the whole batch when
        only its first :meth:`row_cap` rows are given, and with a sixth, what its rows'
        objects hold in bytes, as :func:`row_bytes` sizes each (its caller read that off the
        array they came from: a million rows are then not sized again one by one).

        >>> cache = OutcomeJoiner(max_entries=2)
        >>> cache.remember_many([("r-1", ("a",), None, 1.0), ("r-2", None, (0.5,), 2.0),
        ...                      ("r-3", ("b",), None, 3.0, 10)])
        >>> list(cache._pending), cache.kept_rows("r-3")
        (['r-2', 'r-3'], (10, 1))
        """
        max_bytes = self.max_bytes
        cap = row_cap(max_bytes)
        fitted = []
        for request_id, classes, values, at, *whole in entries:
            kept = classes or values
            if kept and kept.__class__ is tuple and len(kept) <= cap and \
                    (classes is None or values is None):
                # A tuple of rows (a service's calls, a row or a few each): entry_bytes's
                # sum, without its calls; the rows as the caller sized them, if it did.
                size = ENTRY_OVERHEAD_BYTES + sizeof(request_id) + EMPTY_TUPLE_BYTES + \
                    TUPLE_SLOT_BYTES * len(kept) + (
                        whole[1] if len(whole) > 1 else
                        sizeof(kept[0]) if len(kept) == 1 else rows_held_bytes(kept))
                if size <= max_bytes:
                    fitted.append((request_id, (classes, values, at, size,
                                                whole[0] if whole else len(kept))))
                    continue
            rows = whole[0] if whole else len(kept or ())
            classes, values, size = fitted_entry(request_id, classes or None, values or None,
                                                 max_bytes, whole[1] if len(whole) > 1 else None)
            fitted.append((request_id, (classes, values, at, size, rows)))
        if not fitted:
            return
        with self._lock:
            pending, max_entries, ttl = self._pending, self.max_entries, self.ttl_seconds
            for request_id, entry in fitted:
                old = pending.get(request_id)
                if old is not None:
                    if not entry[2] - old[2] > ttl:
                        continue  # one more call of a request that waits: see _waits
                    del pending[request_id]
                    self._bytes -= old[3]
                pending[request_id] = entry
                self._bytes += entry[3]
                # Each in turn: trimming once at the end could evict others (a joined id
                # that an entry-count eviction would have spared).
                while len(pending) > max_entries:
                    self._evict_oldest_pending()
                # The bound now, not the one the entries were fitted to: a configure() from
                # another thread may have lowered it since.
                if self._bytes > self.max_bytes:
                    self._make_room()

    def _waits(self, request_id: str, at: float) -> bool:
        """Whether a call made at `at` under `request_id` is one more call of a request
        whose prediction still waits for its outcome (within the ttl). A second call under
        the id (an explanation, ``predict_proba`` after ``predict``) then leaves it as it
        is: silently replaced, the outcome would judge whichever call came last, not the
        request's first call, its prediction as a request block reads it."""
        old = self._pending.get(request_id)
        return old is not None and not at - old[2] > self.ttl_seconds

    def _forget_oldest_joined(self) -> None:
        request_id, size = self._joined.popitem(last=False)
        self._bytes -= size
        self._joined_bytes -= size
        self._expired.discard(request_id)
        self._evicted.pop(request_id, None)

    def _remember_gone(self, request_id: str, reason: str, predicted_at: float) -> None:
        """Remember the id of a prediction that left the cache, for what an outcome for it
        is then: `reason` "joined" (a duplicate), "expired" or "evicted"."""
        old = self._joined.pop(request_id, None)  # a request id used again
        if old is not None:
            self._bytes -= old
            self._joined_bytes -= old
        self._expired.discard(request_id)
        self._evicted.pop(request_id, None)
        size = sys.getsizeof(request_id) + _JOINED_OVERHEAD_BYTES
        if reason == "expired":
            self._expired.add(request_id)
            size += _EXPIRED_OVERHEAD_BYTES
        elif reason == "evicted":
            self._evicted[request_id] = predicted_at
            size += _EVICTED_OVERHEAD_BYTES
        self._joined[request_id] = size
        self._bytes += size
        self._joined_bytes += size
        while len(self._joined) > self.max_entries:
            self._forget_oldest_joined()

    def _evict_oldest_pending(self) -> None:
        request_id, entry = self._pending.popitem(last=False)
        self._bytes -= entry[3]
        # Its id stays: an outcome for it says the cache is too small, not the id wrong.
        self._remember_gone(request_id, "evicted", entry[2])

    def _make_room(self) -> None:
        # The ids of predictions gone only tell what a later outcome for one is: they go
        # before any prediction still waiting, down to their share of the bytes. Each turn
        # forgets an id or turns an entry into one: it ends.
        keep_gone = self.max_bytes // _GONE_IDS_SHARE
        while self._bytes > self.max_bytes:
            if self._joined and (self._joined_bytes > keep_gone or len(self._pending) <= 1):
                self._forget_oldest_joined()
            elif len(self._pending) > 1:
                self._evict_oldest_pending()
            else:
                return  # one entry alone, fitted to the bound when it was remembered

    def kept_rows(self, request_id: str) -> tuple[int, int] | None:
        """(rows the call returned, rows kept within the bound) of the prediction waiting
        for `request_id`; None when none waits. A shadow's comparison reads it to count each
        row past a bound once, not once per cache.

        >>> joiner = OutcomeJoiner()
        >>> joiner.remember("r-1", ("a", "b"), None, at=0.0)
        >>> joiner.kept_rows("r-1"), joiner.kept_rows("r-2")
        ((2, 2), None)
        """
        with self._lock:
            entry = self._pending.get(request_id)
        if entry is None:
            return None
        classes, values, _, _, rows = entry
        return rows, len(classes or values or ())

    def knows(self, request_id: str) -> bool:
        """Whether a prediction for `request_id` waits here, or one left here (joined,
        expired or evicted) and its id is still remembered: an outcome for it is this
        version's, even a repeat.

        >>> joiner = OutcomeJoiner()
        >>> joiner.remember("r-1", ("a",), None, at=0.0)
        >>> _ = joiner.join("r-1", "a", at=1.0)
        >>> joiner.knows("r-1"), joiner.knows("r-2")
        (True, False)
        """
        with self._lock:
            return request_id in self._pending or request_id in self._joined

    def join(self, request_id: str, y_true: Any, at: float) -> Join:
        """Join `y_true` with the prediction remembered for `request_id`.

        A prediction of several outputs takes k targets per row, judged element-wise, in the
        order the outputs were returned; one row of targets judges every row, as one label
        does for a single output. An outcome that judges nothing (every label not known
        yet, or a shape mismatch) leaves the prediction waiting for one that does; the
        first outcome that judges a row is final. An outcome whose time is not known (`at`
        NaN) expires by the prediction's age now.

        >>> joiner = OutcomeJoiner()
        >>> joiner.remember("r-1", None, ((1.0, 10.0),), at=0.0)
        >>> joined = joiner.join("r-1", [3.0, None], at=1.0)
        >>> joined.errors, joined.missing_labels
        ((2.0,), 1)
        >>> joiner.remember("r-2", None, ((1.0, 10.0),), at=0.0)
        >>> joiner.join("r-2", 1.0, at=1.0).unmatched  # one target for two outputs
        'shape_mismatch'
        >>> joiner.join("r-2", [None, None], at=2.0).missing_labels  # not known yet
        2
        >>> joiner.join("r-2", [1.0, 12.0], at=3.0).errors
        (0.0, 2.0)
        """
        # A label whose time is not known came now, as far as its prediction's ttl goes:
        # NaN is past no ttl, and a prediction however old would be judged.
        now = at if at == at else time.time()
        with self._lock:
            entry = self._pending.get(request_id)
            if entry is None:
                return Join(unmatched=self._gone_reason(request_id, now))
            if now - entry[2] > self.ttl_seconds:
                self._settle(request_id, entry, "expired")
                return Join(unmatched="expired")
        # Judged outside the lock, which the drain takes to remember predictions.
        joined = _judged(entry, y_true, at)
        if joined.waits:
            return joined
        with self._lock:
            current = self._pending.get(request_id)
            if current is entry:
                self._settle(request_id, entry, "joined")
            elif current is None and self._evicted.get(request_id) == entry[2]:
                # A drain evicted it meanwhile: it was still here when its outcome came.
                self._remember_gone(request_id, "joined", entry[2])
                self._make_room()
            elif current is None:
                # Another outcome for it, from another thread, was judged meanwhile.
                return Join(unmatched=self._gone_reason(request_id, now))
            else:
                # A new call under the id took its place meanwhile, as it does only once
                # the prediction has expired.
                return Join(unmatched="expired")
        return joined

    def _gone_reason(self, request_id: str, now: float) -> str:
        """Why an outcome for `request_id`, which no prediction waits for, is unmatched."""
        if request_id not in self._joined:
            return "unknown_id"
        if request_id in self._expired:
            return "expired"
        predicted_at = self._evicted.get(request_id)
        if predicted_at is not None:
            return "expired" if now - predicted_at > self.ttl_seconds else "evicted"
        return "duplicate"

    def _settle(self, request_id: str, entry: tuple, reason: str) -> None:
        """Take the waiting `entry` out of the cache, its id remembered for `reason`."""
        del self._pending[request_id]
        self._bytes -= entry[3]
        self._remember_gone(request_id, reason, entry[2])
        self._make_room()


def _judged(entry: tuple, y_true: Any, at: float) -> Join:
    """What `y_true` says of the remembered prediction `entry`, received at `at`."""
    classes, values, predicted_at, _, rows = entry
    outputs = _output_count(classes if classes is not None else values)
    truth = as_rows(y_true) if outputs is None else as_table(y_true, outputs)
    if truth is None:
        return Join(unmatched="shape_mismatch", waits=True)
    # A clock stepped back reads 0; a time not known (NaN, a missing timestamp column)
    # is no delay at all, not a label that arrived at once.
    delay: float | None = max(0.0, at - predicted_at) if at == at else None
    if len(truth) != rows and len(truth) != 1 and (classes is not None or
                                                    values is not None):
        return Join(unmatched="shape_mismatch", waits=True)
    # Loaded on the first outcome, not with the hot path: the rule data quality reads
    # missing values by (None, NaN, pd.NA, NaT).
    from inferwatch.quality.category_keys import is_missing

    kept = len(classes or values or ())
    # One label for the whole batch judges every row it could keep: the rows past the
    # bound are counted as they are for a label per row, never silently lost.
    over = rows - kept
    truth = truth[:kept]
    if classes is not None:
        pairs = list(zip(classes, broadcast(truth, len(classes))))
        if outputs is not None:  # each label against its own output's class
            pairs = [(p, t) for row, targets in pairs for p, t in zip(row, targets)]
        # A row with no class is counted as that, once, even when its label is
        # missing too: the label could never have judged it.
        predicted = [(p, t) for p, t in pairs if p is not None]
        known = [(p, t) for p, t in predicted if not is_missing(t)]
        correct = sum(1 for p, t in known if same_class(p, class_text(t)))
        waits = bool(predicted) and not known  # a row a later label could judge, none known
        return Join(correct=correct, incorrect=len(known) - correct,
                    delay=None if waits else delay, rows_over_bound=over,
                    missing_labels=len(predicted) - len(known),
                    unpredicted_rows=len(pairs) - len(predicted), waits=waits)
    if values is not None:
        pairs = zip(values, broadcast(truth, len(values)))
        if outputs is not None:  # each target against its own output's value
            pairs = ((p, t) for row, targets in pairs for p, t in zip(row, targets))
        judged = _absolute_errors(pairs, is_missing)
        if judged is None:
            return Join(unmatched="shape_mismatch", waits=True)
        errors, missing, not_known = judged
        # Every target unjudged because it is not known yet (not one that can never be: an
        # infinite target, a prediction without a finite value).
        waits = not errors and 0 < missing == not_known
        return Join(errors=tuple(errors), delay=None if waits else delay,
                    rows_over_bound=over, missing_labels=missing, waits=waits)
    # Remembered with nothing to compare: every label was one no class may take (an
    # undeclared string, a large id) and the prediction no value.
    return Join(unmatched="unsupported_prediction")


def _absolute_errors(pairs: Iterable[tuple[Any, Any]], is_missing: Callable[[Any], bool]
                     ) -> tuple[list[float], int, int] | None:
    """(finite absolute errors, missing labels, of which not known yet) of (prediction,
    label) pairs; a missing label, or one no finite error can be measured against, is
    counted and not judged. None when a label is not a number.

    >>> _absolute_errors([(1.0, 3.0), (2.0, None), (1.0, float("inf"))], lambda t: t is None)
    ([2.0], 2, 1)
    >>> _absolute_errors([(1.0, "high")], lambda t: t is None) is None
    True
    >>> _absolute_errors([(1.0, 10**400)], lambda t: t is None)  # past a float: infinite
    ([], 1, 0)
    """
    errors, missing, not_known = [], 0, 0
    for p, t in pairs:
        if is_missing(t):
            missing += 1
            not_known += 1
            continue
        try:
            target = target_float(t)
            error = abs(float(p) - target)
        except (TypeError, ValueError, OverflowError):
            return None
        if target != target:  # "nan" read from a CSV, Decimal("NaN"): not known yet either
            missing += 1
            not_known += 1
            continue
        if math.isfinite(error):
            errors.append(error)
        else:
            # An infinite target ("inf" in a CSV), or one so far off that the error
            # overflows: no error to observe (it would make the histogram's sum infinite
            # for good), but the row is counted, not silently lost.
            missing += 1
    return errors, missing, not_known


def _output_count(values: tuple | None) -> int | None:
    """How many outputs each remembered row holds when they are several (each row a tuple);
    None for one value per row.

    >>> _output_count(((1.0, 2.0, 3.0),)), _output_count((1.0,)), _output_count(None)
    (3, None, None)
    """
    if values is None or values[0].__class__ is not tuple:
        return None
    return len(values[0])


