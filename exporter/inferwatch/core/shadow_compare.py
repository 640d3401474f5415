"""Comparing a shadow model's predictions with its champion's, and scoring both on outcomes.

A :class:`Comparison` receives pairs of results for the same input (champion first) and
writes the comparison series into the shadow model's state: agreement and a confusion
count for classes, the distribution of the difference for values and probabilities. For a
request with an id it keeps both predictions, every row of a batch, in a cache bounded by
entries and by `max_bytes` (32 MiB by default, as the champion's own outcome cache: the
estimate of :mod:`inferwatch.core.outcomes`), so that an outcome scores the two models on
exactly the same requests. Only a single batch larger than the whole bound keeps its first
rows; an outcome counts the others as ``rows_over_bound``.

It runs on the drain thread, never on the request path.

>>> from inferwatch.core.state import ModelState
>>> state = ModelState("fraud", "2")
>>> comparison = Comparison("1", max_classes=10, declared_classes=["a", "b"])
>>> comparison.add("predict", ["a", "b"], ["a", "a"], "r-1", at=0.0)
>>> comparison.fold_into(state, now=0.0)
>>> sorted(state.counters["inferwatch_shadow_agreement_total"].items())
[(('1', 'agree'), 1.0), (('1', 'disagree'), 1.0)]
>>> comparison.score("r-1", ["a", "b"], at=5.0)
(2, 2)
>>> comparison.fold_into(state, now=5.0)
>>> sorted(state.counters["inferwatch_shadow_outcomes_total"].items())
[(('1', 'correct', 'correct'), 1.0), (('1', 'correct', 'incorrect'), 1.0)]
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferwatch import faults
from inferwatch.core import shadow_rows
from inferwatch.core.call_input import held_bytes
from inferwatch.core.class_probabilities import two_classes
from inferwatch.core.label_caps import LabelCap
from inferwatch.core.outcome_labels import class_text, same_class
from inferwatch.core.outcome_truth import as_rows, as_table, target_float
from inferwatch.core.outcomes import DEFAULT_MAX_BYTES
from inferwatch.core.prediction_classes import known_class_set
from inferwatch.core.predictions import Prediction, normalize
from inferwatch.core.result_arrays import SparseResultTooLarge
from inferwatch.core.shadow_rows import (
    Batch,
    aligned,
    in_place,
    in_terms_of,
    label_rows,
    output_rows,
    pair_fitted,
    row_count,
    take_rows,
)

# Shadow minus champion: symmetric around zero, fine near it (probabilities, small scores).
DIFFERENCE_BUCKETS = (-10.0, -1.0, -0.5, -0.25, -0.1, -0.05, -0.01, 0.0, 0.01, 0.05, 0.1,
                      0.25, 0.5, 1.0, 10.0)
# Reads of parts of one side's result that finding its lost rows may take in one batch (on
# the drain thread): as many as reading 10,000 rows one by one took, which halving spends on
# far more rows when few of them lose a value. Past it the batch is not compared.
MAX_CHECKS = 20_000
# ``stream``: the champion answered with a stream (a generator, an SDK's stream object),
# which only its caller may read, so there is nothing to compare (see Shadow.offer).
DROP_REASONS = ("queue_full", "timeout", "error", "crashed", "incomparable", "shutdown",
                "stream")
# Pairs waiting for the drain: a stalled drain must not hold every result of every sampled
# call (the monitor bounds its own pending calls the same way); past either bound a pair is
# dropped as ``queue_full``.
MAX_PENDING_PAIRS = 100_000
MAX_PENDING_BYTES = 128 * 1024 * 1024
# Rows of outcomes scored on both sides waiting for the drain (two lists of bools or floats
# each, some 64 bytes a row at most): the same guard against a stalled drain.
MAX_PENDING_SCORED_ROWS = 250_000
_FLOAT_MAX = float(np.finfo(np.float64).max)


class Comparison:
    """Pairs of predictions in, comparison series out (see the module docstring)."""

    def __init__(self, champion_version: str, *, max_classes: int = 20,
                 task: str = "auto", difference_buckets: Sequence[float] = DIFFERENCE_BUCKETS,
                 outcome_error_buckets: Sequence[float] = (0.01, 0.1, 1.0),
                 cache_size: int = 50_000, ttl_seconds: float = 7 * 86400.0,
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 champion_classes: Callable[[], object] = lambda: None,
                 shadow_classes: Callable[[], object] = lambda: None,
                 declared_classes: Sequence[object] | None = None,
                 max_pending: int = MAX_PENDING_PAIRS,
                 max_pending_bytes: int = MAX_PENDING_BYTES,
                 max_pending_scored: int = MAX_PENDING_SCORED_ROWS) -> None:
        self.champion_version = champion_version
        self.task = task
        self.difference_buckets = tuple(difference_buckets)
        self.outcome_error_buckets = tuple(outcome_error_buckets)
        self._champion_cap = LabelCap(max_classes)
        self._shadow_cap = LabelCap(max_classes)
        # Strings become class labels only when a model names them (classes_) or the
        # settings declare them (classes=), as in the model's own series.
        self.declared_classes = declared_classes
        self._champion_classes = champion_classes
        self._shadow_classes = shadow_classes
        self._lock = threading.Lock()
        self._pairs: list[tuple[str, Any, Any, str | None, float]] = []
        self._pending_bytes = 0
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self._scored: list[tuple[list[bool] | None, list[bool] | None,
                                 list[float] | None, list[float] | None, int]] = []
        self._scored_rows = 0  # rows `_scored` holds, which max_pending_scored bounds
        self._scored_over = 0  # rows of outcomes no bound let in, for rows_over_bound
        self.max_pending_scored = max_pending_scored
        self._drops: dict[str, int] = {}
        self._sampled = 0
        # request id -> (champion rows, shadow rows, time, bytes, rows the calls returned)
        self._cache: OrderedDict[str, tuple[tuple, tuple, float, int, int]] = OrderedDict()
        self._bytes = 0  # the estimate max_bytes bounds
        # request id -> the entry an outcome is judging now, outside the lock
        self._judging: dict[str, tuple] = {}
        self.cache_size = cache_size
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds

    def renew_lock(self) -> None:
        """A new lock in a forked child, which starts with nothing pending: what the parent
        had not folded yet is the parent's to count."""
        self._lock = threading.Lock()
        for cap in (self._champion_cap, self._shadow_cap):  # folded under their own locks
            cap.renew_lock()
        self._pairs, self._scored, self._drops, self._sampled = [], [], {}, 0
        self._judging = {}  # a thread of the parent's judging: none in the child
        self._pending_bytes = self._scored_rows = self._scored_over = 0

    # --- fed by the shadow's workers (any thread) -------------------------------------------
    def add(self, method: str, champion: object, shadow: object, request_id: str | None,
            at: float) -> None:
        """One sampled call that both models answered; dropped as ``queue_full`` when the
        pairs waiting for the drain are past their bound."""
        try:
            size = held_bytes([champion]) + held_bytes([shadow])
        except Exception as exc:
            faults.record("shadow", exc)
            size = 0
        with self._lock:
            if len(self._pairs) >= self.max_pending or (
                    self._pairs and self._pending_bytes + size > self.max_pending_bytes):
                self._drops["queue_full"] = self._drops.get("queue_full", 0) + 1
                return
            self._pairs.append((method, champion, shadow, request_id, at))
            self._pending_bytes += size

    def comparable(self, method: str, champion: object, shadow: object) -> bool:
        """Whether the fold will compare this one call (an output in common, a row both
        sides hold whole), as it compares a call alone: what a shadow's event says of it.
        Counts nothing; False for anything it cannot read. Never raises."""
        try:
            for batch in shadow_rows.batches(self._columns([(method, champion, shadow,
                                                             None, 0.0)])):
                folded = self._fold_batch(batch, {"agree": 0, "disagree": 0}, {}, {})
                if folded is None or (folded[1] is not None and not folded[1].any()):
                    return False
            return True
        except Exception as exc:
            faults.record("shadow", exc)
            return False

    def dropped(self, reason: str, count: int = 1) -> None:
        """A sampled call that will not be compared, and why."""
        with self._lock:
            self._drops[reason] = self._drops.get(reason, 0) + count

    def sampled(self, count: int) -> None:
        with self._lock:
            self._sampled += count

    def pending(self) -> int:
        """Pairs waiting to be folded into the state."""
        return len(self._pairs)

    # --- outcomes ---------------------------------------------------------------------------
    def knows(self, request_id: str) -> bool:
        return request_id in self._cache

    def waiting(self, request_id: str) -> bool:
        """Whether a pair of `request_id` waits for the drain (a newer call of an id known
        already, which its outcome must score)."""
        pairs = self._pairs  # taken whole by the fold: a look at either list is sound
        return any(pair[3] == request_id for pair in pairs)

    def score(self, request_id: str, y_true: object, at: float,
              counted: tuple[int, int] | None = None) -> tuple[int, int] | None:
        """Score both predictions made for `request_id`: (rows, rows the champion got right)
        for classes (labels, for several class outputs), (rows, 0) for values; None when
        nothing was scored: the request was not compared, its pair expired, or the outcome
        judged nothing. `counted` is (rows, rows kept) of the challenger's own join of the
        same request, whose outcome counts its rows past the bound already: only rows that
        this cache alone lost are counted here.

        As the challenger's own join reads an outcome: one that judges nothing (every label
        not known yet, or a shape mismatch) leaves the pair waiting for one that does, and
        the first outcome that judges a row is final. An outcome whose time is not known
        (`at` NaN) expires by the pair's age now."""
        # A label whose time is not known came now, as far as the pair's ttl goes: NaN is
        # past no ttl, and a pair however old would be scored.
        now = at if at == at else time.time()
        with self._lock:
            entry = self._cache.get(request_id)
            if entry is None or self._judging.get(request_id) is entry:
                # Not compared, or another outcome for it is being judged this moment (the
                # first of the two to judge a row is final).
                return None
            self._judging[request_id] = entry
        try:
            verdict = (_EXPIRED if now - entry[2] > self.ttl_seconds
                       else _verdict(entry, y_true, counted))
        finally:
            # Judged outside the lock, which the drain takes to remember pairs.
            with self._lock:
                if self._judging.get(request_id) is entry:
                    del self._judging[request_id]
        if verdict.waits:
            self._note_over(verdict.over)  # its rows are counted as any outcome's are
            return None
        with self._lock:
            # Evicted by the bound or replaced by a new call meanwhile: it was still here
            # when its outcome came, and is scored all the same.
            if self._cache.get(request_id) is entry:
                del self._cache[request_id]
                self._bytes -= entry[3]
        if verdict.scored is not None:
            self._scored_add(verdict.scored, verdict.rows)
        else:
            self._note_over(verdict.over)
        return verdict.result

    def _note_over(self, over: int) -> None:
        if over:
            with self._lock:
                self._scored_over += over

    def _scored_add(self, entry: tuple, rows: int) -> None:
        """Keep one scored outcome for the drain. Outcomes may arrive far faster than a
        stalled drain folds them: past `max_pending_scored` rows, an outcome's rows are
        not kept, and count as ``rows_over_bound`` as a batch past the cache's bound does."""
        with self._lock:
            if self._scored_rows + rows > self.max_pending_scored:
                self._scored_over += rows + entry[4]
                return
            self._scored.append(entry)
            self._scored_rows += rows

    # --- on the drain thread ----------------------------------------------------------------
    def fold_into(self, state: Any, now: float) -> None:
        """Compare what arrived since the last fold and write it into `state`."""
        with self._lock:
            pairs, self._pairs, self._pending_bytes = self._pairs, [], 0
            scored, self._scored, self._scored_rows = self._scored, [], 0
            over, self._scored_over = self._scored_over, 0
            drops, self._drops = self._drops, {}
            sampled, self._sampled = self._sampled, 0
        version = self.champion_version
        differences: dict[str, list[np.ndarray]] = {}
        agreement = {"agree": 0, "disagree": 0}
        confusion: dict[tuple[str, str], int] = {}
        compared = 0
        # Whatever fails here (an allocation, a result no code path foresaw) is counted as a
        # fault and its calls as incomparable: the pairs were taken, so they are never tried
        # again, and sampled calls still add up to compared and dropped ones.
        try:
            batches = shadow_rows.batches(self._columns(pairs))
        except Exception as exc:
            faults.record("shadow", exc)
            drops["incomparable"] = drops.get("incomparable", 0) + len(pairs)
        else:
            for batch in batches:
                compared += self._fold_calls(batch, agreement, confusion, differences, drops)
        # The accounting first, each part on its own: a failing write of one series must
        # lose neither the counts nor the other series.
        if sampled:
            state.inc("inferwatch_shadow_sampled_total", (version,), sampled)
        if compared:
            state.inc("inferwatch_shadow_compared_total", (version,), compared)
        for reason, count in drops.items():
            state.inc("inferwatch_shadow_dropped_total", (version, reason), count)
        _guarded(self._fold_agreement, state, agreement, confusion)
        for output, chunks in differences.items():
            _guarded(self._fold_differences, state, output, chunks, now)
        _guarded(self._fold_scores, state, scored, over)

    def _fold_agreement(self, state: Any, agreement: dict, confusion: dict) -> None:
        version = self.champion_version
        for result, count in agreement.items():
            if count:
                state.inc("inferwatch_shadow_agreement_total", (version, result), count)
        for (champion_class, shadow_class), count in confusion.items():
            state.inc("inferwatch_shadow_confusion_total",
                      (version, self._champion_cap.fold(champion_class),
                       self._shadow_cap.fold(shadow_class)), count)

    def _fold_differences(self, state: Any, output: str, chunks: list[np.ndarray],
                          now: float) -> None:
        version = self.champion_version
        values = np.concatenate(chunks)
        # Both sides are finite (a row holding nan or inf is not compared), so an
        # infinity here is a difference past the float range (1e308 against -1e308):
        # a compared row, observed as the farthest apart a float can say.
        values = np.clip(values[~np.isnan(values)], -_FLOAT_MAX, _FLOAT_MAX)
        if not len(values):
            return
        # OpenMetrics has no negative quantiles: the summary holds how far apart the
        # two are, the histogram which way.
        state.summary("inferwatch_shadow_absolute_difference", (version, output)).observe(
            np.abs(values), now)
        state.histogram("inferwatch_shadow_difference", (version, output),
                        self.difference_buckets).observe(values)

    def _remember_calls(self, calls: list, found: tuple[list, list] | tuple[()]) -> None:
        if not found:
            return  # compared, but no single output an outcome could score
        for (request_id, at), start, stop in calls:
            if request_id is not None:
                champion = found[0][start:stop]
                if any(row is not None for row in champion):
                    self._remember(request_id, champion, found[1][start:stop], at)

    def _fold_scores(self, state: Any, scored: list, over: int = 0) -> None:
        version = self.champion_version
        table: dict[tuple[str, str], int] = {}
        for champion_right, shadow_right, champion_error, shadow_error, rows_over in scored:
            over += rows_over
            if champion_right is not None:
                for c, s in zip(champion_right, shadow_right):
                    key = ("correct" if c else "incorrect", "correct" if s else "incorrect")
                    table[key] = table.get(key, 0) + 1
            elif champion_error is not None:
                for side, errors in (("champion", champion_error), ("shadow", shadow_error)):
                    finite = [e for e in errors if math.isfinite(e)]
                    if finite:
                        state.histogram("inferwatch_shadow_outcome_error", (version, side),
                                        self.outcome_error_buckets).observe(
                            np.asarray(finite, dtype=np.float64))
        if over:
            state.inc("inferwatch_outcomes_unmatched_total", ("rows_over_bound",), over)
        for (champion_result, shadow_result), count in table.items():
            state.inc("inferwatch_shadow_outcomes_total",
                      (version, champion_result, shadow_result), count)

    def _columns(self, pairs: list) -> list:
        """`pairs` with a binary classifier's positive-class probabilities as columns (see
        shadow_rows.positive_columns), told by each side's own classes."""
        if not any(pair[0] == "predict_proba" for pair in pairs):
            return pairs
        champion_names, shadow_names, _ = self._names_now()
        return shadow_rows.positive_columns(pairs, two_classes(champion_names),
                                            two_classes(shadow_names))

    def _fold_calls(self, batch: Batch, agreement: dict, confusion: dict, differences: dict,
                    drops: dict) -> int:
        """Fold one batch, each of its calls counted compared or incomparable; returns how
        many were compared. Calls that cannot be compared together are tried one by one: a
        call is compared as it would be alone, whatever other calls share its drain."""
        parts: list[Batch] = []
        try:
            folded = self._fold_batch(batch, agreement, confusion, differences)
            if folded is None and len(batch.calls) > 1:
                parts = shadow_rows.apart(batch)
        except Exception as exc:
            faults.record("shadow", exc)
            folded = None
        if parts:
            return sum(self._fold_calls(one, agreement, confusion, differences, drops)
                       for one in parts)
        if folded is None:  # no output in common: nothing was compared
            drops["incomparable"] = drops.get("incomparable", 0) + len(batch.calls)
            return 0
        found, keep = folded
        # A call every row of which one side lost compared nothing, as it would alone.
        empty = 0 if keep is None else sum(
            1 for _, start, stop in batch.calls if not keep[start:stop].any())
        if empty:
            drops["incomparable"] = drops.get("incomparable", 0) + empty
        try:
            self._remember_calls(batch.calls, found)
        except Exception as exc:  # compared; only an outcome cannot score it
            faults.record("shadow", exc)
        return len(batch.calls) - empty

    def _fold_batch(self, batch: Batch, agreement: dict, confusion: dict, differences: dict
                    ) -> tuple[tuple[list, list] | tuple[()], np.ndarray | None] | None:
        """Compare one batch into the fold's counts: what `_compare` returns and which rows
        were compared (None: all of them), None when nothing was compared. A batch that
        cannot be compared leaves the counts as they were (the other batches of the fold
        are still counted)."""
        ours: dict = {"agree": 0, "disagree": 0}
        pairs: dict = {}
        diffs: dict = {}
        try:
            names = self._side_names(batch.method, self._names_now())
            champion_result, shadow_result, narrowed = aligned(batch.method, batch.champion,
                                                               batch.shadow)
            champion, shadow = self._normalize(batch.method, champion_result, shadow_result,
                                               names)
            rows_lost = bool(champion.invalid or shadow.invalid)
            keep = None
            if rows_lost:
                # A value one side could not hold (nan, inf, a label no class may be) left
                # its row out of that side: rows no longer line up by position. Only rows
                # both sides hold whole are compared; the others are remembered as None, so
                # that an outcome still finds every other row of the batch in its place.
                whole = self._whole_rows(batch.method, champion_result, shadow_result,
                                         champion, shadow, names)
                if whole is None:
                    return None
                champion, shadow, keep = whole
            if not (champion.rows and champion.rows == shadow.rows
                    and (rows_lost or batch.rows in (None, champion.rows))):
                return None
            found = self._compare(champion, shadow, ours, pairs, diffs)
        except SparseResultTooLarge:
            return None  # refused by design (each side's own counts say bad_shape): no fault
        except Exception as exc:
            faults.record("shadow", exc)
            return None
        if found is None:
            return None
        for key, count in ours.items():
            agreement[key] += count
        for key, count in pairs.items():
            confusion[key] = confusion.get(key, 0) + count
        for output, chunks in diffs.items():
            differences.setdefault(output, []).extend(chunks)
        # A champion narrowed to the outputs both return no longer holds what an outcome
        # row (a target per champion output) judges.
        if narrowed or not found:
            return (), keep
        return (found if keep is None else in_place(found, keep)), keep

    def _whole_rows(self, method: str, champion_result: object, shadow_result: object,
                    champion: Prediction, shadow: Prediction,
                    names: tuple) -> tuple[Prediction, Prediction, np.ndarray] | None:
        """Both sides' predictions over the rows that neither side loses a value of, and
        which rows those are; None unless both results are rows of one count (arrays, dicts
        of outputs, DataFrames, rows of dicts) that normalize reads as that many rows."""
        rows = row_count(champion_result)
        if rows is None or not rows == row_count(shadow_result) == champion.rows == shadow.rows:
            return None
        champion_names, shadow_names, known = names
        ours = self._whole(method, champion_result, rows, champion, champion_names, known)
        theirs = self._whole(method, shadow_result, rows, shadow, shadow_names, known)
        if ours is None or theirs is None:
            return None
        keep = ours & theirs
        if not keep.any():
            return None
        index = np.flatnonzero(keep)
        pair = self._normalize(method, take_rows(champion_result, index),
                               take_rows(shadow_result, index), names)
        if pair[0].invalid or pair[1].invalid:
            return None
        return pair[0], pair[1], keep

    def _whole(self, method: str, result: object, rows: int, prediction: Prediction,
               class_names: list | None, known: Any) -> np.ndarray | None:
        """Which rows of one side's `result` (read whole as `prediction`) normalize keeps
        every value of; None past :data:`MAX_CHECKS`."""
        if not prediction.invalid:
            return np.ones(rows, dtype=bool)
        if isinstance(result, np.ndarray) and result.dtype.kind == "f" and \
                self.task != "classification" and method != "predict_proba":
            # Float values lose their NaN and inf alone: one pass, at any size.
            return np.isfinite(result.reshape(rows, -1)).all(axis=1)
        # Anything else is read by normalize itself, in halves: a half that loses nothing is
        # kept whole, and one that does is halved again down to single rows, so that a few
        # lost rows cost some reads each (log2 of the rows), not one read a row.
        keep = np.zeros(rows, dtype=bool)
        spans = [(0, rows)]
        checks = 0
        while spans:
            start, stop = spans.pop()
            if stop - start < rows:  # the whole result is `prediction`, read already
                checks += 1
                if checks > MAX_CHECKS:
                    return None
                part = self._read(method, take_rows(result, np.arange(start, stop)),
                                  class_names, known)
                if not part.invalid and part.rows == stop - start:
                    keep[start:stop] = True
                    continue
            if stop - start > 1:
                middle = (start + stop) // 2
                spans += [(middle, stop), (start, middle)]
        return keep

    def _names_now(self) -> tuple[list | None, list | None, Any]:
        champion_names = _names(self._champion_classes)
        shadow_names = _names(self._shadow_classes)
        # Either side's classes are plausible labels for both: a challenger that answers a
        # class the champion never does is exactly what the confusion counts should show.
        known = known_class_set([*(champion_names or ()), *(shadow_names or ())],
                                self.declared_classes)
        return champion_names, shadow_names, known

    @staticmethod
    def _side_names(method: str, names: tuple) -> tuple:
        """(champion's classes, challenger's classes, labels known) as each side is read.
        Every method reads its model's ``classes_``, as the model's own series do: a
        classifier fit on a float target predicts 0.0 / 1.0, which are then its classes
        (predictions._whole_class_labels). A side naming no classes reads its ``predict``
        by the other's, so that the same 0.0 / 1.0 are not classes on one side and values
        on the other."""
        champion_names, shadow_names, known = names
        if method != "predict_proba":
            champion_names, shadow_names = (
                champion_names if champion_names is not None else shadow_names,
                shadow_names if shadow_names is not None else champion_names)
        return champion_names, shadow_names, known

    def _normalize(self, method: str, champion_result: object, shadow_result: object,
                   names: tuple) -> tuple[Prediction, Prediction]:
        champion_names, shadow_names, known = names
        return (self._read(method, champion_result, champion_names, known),
                self._read(method, shadow_result, shadow_names, known))

    def _read(self, method: str, result: object, class_names: list | None,
              known: Any) -> Prediction:
        return normalize(result, probabilities=method == "predict_proba", task=self.task,
                         class_names=class_names, known_classes=known)

    def _compare(self, champion: Prediction, shadow: Prediction, agreement: dict,
                 confusion: dict, differences: dict) -> tuple[list, list] | tuple[()] | None:
        """Fold one batch: None when the two share no output, else what outcomes need (both
        sides' rows, or () when no single output holds them)."""
        remembered: tuple | None = None
        compared = False
        if champion.classes is not None and shadow.classes is not None and \
                len(champion.classes) == len(shadow.classes):
            compared = True
            ours = champion.classes.astype(str)
            theirs = in_terms_of(shadow.classes.astype(str), ours)
            same = int(np.count_nonzero(ours == theirs))
            agreement["agree"] += same
            agreement["disagree"] += len(ours) - same
            pairs, counts = np.unique(np.stack([ours, theirs], axis=1), axis=0,
                                      return_counts=True)
            for (c, s), n in zip(pairs.tolist(), counts.tolist()):
                confusion[(c, s)] = confusion.get((c, s), 0) + n
            remembered = (ours.tolist(), theirs.tolist())
            if len(ours) != champion.rows:  # several class outputs, one column after another
                remembered = label_rows(ours, theirs, champion.rows)
        for output, values in champion.values.items():
            other = shadow.values.get(output)
            if other is None or len(other) != len(values):
                continue
            compared = True
            with np.errstate(over="ignore", invalid="ignore"):  # far apart: not a warning
                differences.setdefault(output, []).append(
                    np.asarray(other, dtype=np.float64) - np.asarray(values, dtype=np.float64))
            if remembered is None and len(champion.values) == 1:
                remembered = (np.asarray(values, dtype=np.float64).tolist(),
                              np.asarray(other, dtype=np.float64).tolist())
        if not compared:
            return None
        if remembered is None and len(champion.values) > 1:
            remembered = output_rows(champion, shadow)
        return remembered or ()

    def _remember(self, request_id: str, champion: list, shadow: list, at: float) -> None:
        rows = min(len(champion), len(shadow))
        if not rows:
            return
        champion, shadow, size = pair_fitted(request_id, tuple(champion[:rows]),
                                             tuple(shadow[:rows]), self.max_bytes)
        with self._lock:
            cache = self._cache
            old = cache.pop(request_id, None)
            if old is not None:
                self._bytes -= old[3]
            cache[request_id] = (champion, shadow, at, size, rows)
            self._bytes += size
            while len(cache) > self.cache_size or (self._bytes > self.max_bytes and
                                                   len(cache) > 1):
                self._bytes -= cache.popitem(last=False)[1][3]


@dataclass(frozen=True)
class _Verdict:
    """What one outcome says of a remembered pair."""

    # (champion right, shadow right, champion errors, shadow errors, rows over) for the
    # drain to fold; None when no row was judged.
    scored: tuple | None = None
    rows: int = 0  # rows judged
    over: int = 0  # rows past the cache's bound that this outcome counts
    result: tuple[int, int] | None = None  # what score() returns
    # Nothing judged that a later outcome could judge (every label not known yet, a shape
    # mismatch, a label that is not a number): the pair waits for that one.
    waits: bool = False


_WAITS = _Verdict(waits=True)
_EXPIRED = _Verdict()


def _verdict(entry: tuple, y_true: object, counted: tuple[int, int] | None) -> _Verdict:
    """What `y_true` says of the remembered pair `entry` (see Comparison.score)."""
    champion, shadow, _, _, rows = entry
    # A row left out of the comparison (a value one side could not hold) is None.
    first = next((row for row in champion if row is not None), None)
    if first.__class__ is tuple:  # several outputs: a row of targets per row
        return _outputs_verdict(champion, shadow, rows, y_true, counted, len(first))
    truth = as_rows(y_true)
    n = len(champion)
    if len(truth) not in (1, rows):
        return _WAITS
    over = _uncounted(rows - n, n, counted)  # one label for the batch too, as the join
    truth = truth * n if len(truth) == 1 else truth[:n]
    from inferwatch.quality.category_keys import is_missing  # as the champion's join reads

    known = [i for i, t in enumerate(truth)
             if champion[i] is not None and not is_missing(t)]
    if len(known) < n:  # rows whose label is not known yet are not judged
        if not known:
            # A row a later label could judge, none known: the pair waits for that label.
            return _Verdict(over=over, waits=first is not None)
        champion, shadow = [champion[i] for i in known], [shadow[i] for i in known]
        truth, n = [truth[i] for i in known], len(known)
    if isinstance(champion[0], str):
        truth_text = [class_text(t) for t in truth]
        champion_right = [same_class(p, t) for p, t in zip(champion, truth_text)]
        shadow_right = [same_class(p, t) for p, t in zip(shadow, truth_text)]
        return _Verdict((champion_right, shadow_right, None, None, over), n, over,
                        (n, sum(champion_right)))
    errors = _both_errors(zip(champion, shadow, truth))
    if errors is None or not errors[0]:  # a target not a number, or none known yet
        return _WAITS if errors is None else _Verdict(over=over, waits=True)
    judged = len(errors[0])
    return _Verdict((None, None, *errors, over), judged, over, (judged, 0))


def _outputs_verdict(champion: tuple, shadow: tuple, rows: int, y_true: object,
                     counted: tuple[int, int] | None, outputs: int) -> _Verdict:
    """Both sides of a prediction of several outputs against rows of targets, one per
    output in the champion's order (as the champion's own join reads them): every known
    target adds one absolute error per side."""
    from inferwatch.quality.category_keys import is_missing

    truth = as_table(y_true, outputs)
    if truth is None or len(truth) not in (1, rows):
        return _WAITS
    n = len(champion)
    over = _uncounted(rows - n, n, counted)  # one label for the batch too, as the join
    truth = truth * n if len(truth) == 1 else truth[:n]
    first = next(row for row in champion if row is not None)
    if isinstance(first[0], str):  # a multi-output classifier: each label alone
        champion_right, shadow_right = [], []
        for ours, theirs, targets in zip(champion, shadow, truth):
            if ours is None:
                continue
            for p, q, t in zip(ours, theirs, targets):
                if not is_missing(t):
                    text = class_text(t)
                    champion_right.append(same_class(p, text))
                    shadow_right.append(same_class(q, text))
        if not champion_right:  # every label not known yet
            return _Verdict(over=over, waits=True)
        judged = len(champion_right)
        return _Verdict((champion_right, shadow_right, None, None, over), judged, over,
                        (judged, sum(champion_right)))
    errors = _both_errors((p, q, t) for ours, theirs, targets in zip(champion, shadow, truth)
                          if ours is not None
                          for p, q, t in zip(ours, theirs, targets) if not is_missing(t))
    if errors is None or not errors[0]:  # a target not a number, or none known yet
        return _WAITS if errors is None else _Verdict(over=over, waits=True)
    return _Verdict((None, None, *errors, over), len(errors[0]), over, (n, 0))


def _both_errors(rows: Iterable[tuple[Any, Any, Any]]) -> tuple[list[float], list[float]] | None:
    """Each side's absolute errors against the targets of (champion, challenger, target)
    rows, read as the champion's join reads them: a target that reads as NaN (text "nan")
    is not known yet and left out, and an int past the float range is an infinite error
    (judged, never observed). None when a target is not a number.

    >>> _both_errors([(1.0, 2.0, 4), (1.0, 2.0, "nan"), (0.0, 0.0, 10 ** 400)])
    ([3.0, inf], [2.0, inf])
    >>> _both_errors([(1.0, 2.0, "high")]) is None
    True
    """
    champion_error, shadow_error = [], []
    for ours, theirs, target in rows:
        try:
            value = target_float(target)
            errors = abs(float(ours) - value), abs(float(theirs) - value)
        except (TypeError, ValueError, OverflowError):
            return None
        if value == value:
            champion_error.append(errors[0])
            shadow_error.append(errors[1])
    return champion_error, shadow_error


def _uncounted(over: int, kept: int, counted: tuple[int, int] | None) -> int:
    """Of `over` rows this cache could not keep (it kept `kept`), those the challenger's own
    join (`counted`: its rows and rows kept, of the same call) does not count already: both
    count into the challenger's one ``rows_over_bound`` series.

    >>> _uncounted(300, 100, None), _uncounted(300, 100, (400, 250)), _uncounted(0, 400, (400, 250))
    (300, 150, 0)
    """
    if not over or counted is None:
        return over
    rows, own_kept = counted
    return max(0, over - (rows - own_kept))




def _guarded(write: Callable[..., None], *args: Any) -> None:
    try:
        write(*args)
    except Exception as exc:
        faults.record("shadow", exc)


def _names(read: Callable[[], object]) -> list | None:
    try:
        names = read()
        return None if names is None else list(names)
    except Exception as exc:
        faults.record("shadow", exc)
        return None
