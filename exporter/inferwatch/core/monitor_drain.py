"""The drain of a :class:`~inferwatch.core.monitor.Monitor`: folding its pending calls
into its state.

Apart from the monitor because folding is a job of its own, run by the background drain
thread and before every scrape, never on the request path; the monitor keeps what a call
touches (its pending lists and the hand-off) and takes these methods as its base class,
so they read and write the very attributes the monitor sets up in its ``__init__``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from inferwatch import faults
from inferwatch.core import pending_calls
from inferwatch.core.array_rows import ArrayRows
from inferwatch.core.call_input import held_bytes, record_bytes
from inferwatch.core.call_values import cancellations, count_value
from inferwatch.core.drain_folds import (
    check_predictions,
    count_input_checks,
    detect_generation,
    fold_requests,
    fold_streams,
)
from inferwatch.core.float_fold import fold_plain_floats
from inferwatch.core.huge_records import add_whole_first_slice, join_label_column
from inferwatch.core.pending_calls import (
    LaterInputs,
    LaterJoin,
    LaterLabelColumn,
    LaterRecord,
    LaterSlices,
    LaterWhole,
    call_columns,
    first_input_slices,
    first_slices,
    take,
)
from inferwatch.core.prediction_batch import PredictionBatch
from inferwatch.core.probability_fold import fold_probability_rows
from inferwatch.core.record_joins import remember_apart
from inferwatch.core.state import float_array

if TYPE_CHECKING:
    from inferwatch.core.options import Settings
    from inferwatch.core.request_record import RequestRecord
    from inferwatch.quality.tracker import FeatureTracker

# A drain folds its calls in chunks of about this many, each under one hold of the monitor
# lock, letting go between them: a scrape, an outcome or a caller adding a call waits for
# one chunk (milliseconds), never for a backlog of max_pending calls (tens of seconds when
# calls come faster than they fold). A request or stream record counts as
# _RECORD_WEIGHT calls: it costs that many plain calls to fold.
DRAIN_CHUNK_CALLS = 1 << 15
_RECORD_WEIGHT = 8

# What one chunk may take to fold: calls that fold slowly (rows of an HF pipeline, score
# arrays of a classifier: tens of microseconds each) make for smaller chunks, sized by what
# the monitor's last chunk cost a call, so that a reader waits, and a scrape's budget runs
# over, by about this much at most, not by the seconds a full chunk of them takes. A monitor
# not drained yet starts with _FIRST_CHUNK_CALLS; no chunk is under _MIN_CHUNK_CALLS, for
# which the fixed cost of a chunk would be most of it.
DRAIN_CHUNK_SECONDS = 0.05
_FIRST_CHUNK_CALLS = 1 << 9
_MIN_CHUNK_CALLS = 64

# What a drain that is not the background one (a scrape's first of all) spends folding a
# monitor's backlog, while calls keep coming, before it stops and leaves the rest pending
# for the next drain: a scrape answers within Prometheus' default 10 s timeout while calls
# outpace the fold. At a load the fold keeps up with, the backlog is at most about a drain
# interval of calls, which fold well within it; and with no call coming meanwhile (a test,
# a notebook, a flush after the load) a drain folds everything, however long it takes.
DRAIN_BUDGET_SECONDS = 2.0
_clock = time.monotonic  # what the budget is measured by (a test replaces it)
# The longest a drain that must see every call folded waits for another drain's folds after
# its first hold (huge results read whole, later slices): minutes of rows at most.
APART_WAIT_SECONDS = 120.0
_fold_clock = time.perf_counter  # what a chunk's fold time is measured by (likewise)
# budget_mark() of a monitor with nothing waiting: every call finished is more than it.
NOTHING_WAITED = -1


class MonitorDrain:
    """What a monitor's drain does: take the pending calls and fold them into the state."""

    # Seconds the last chunk took per call (weighted as :func:`_weighted` counts); None: none yet.
    _fold_seconds_per_call: float | None = None

    def drain_due(self, clock: float) -> bool:
        """The background drain's pass: fold the pending calls if they are due.

        They are due once ``drain_min_calls`` wait (or a full list was handed off), or once
        some have waited ``drain_max_wait_seconds`` since a pass first found them, and at
        once when outcomes were deferred; `clock` is monotonic seconds. A monitor with
        nothing new costs a few truth tests, in this one frame: a pass visits every model
        version, most of them idle in a deployment of many. Readers (a scrape,
        ``record_outcome``, a worker's snapshot) call :meth:`drain`, which takes everything.
        Returns whether it drained. Never raises.

        >>> from inferwatch.core.registry import Registry
        >>> registry = Registry(drain_interval=3600)  # no background pass meanwhile
        >>> mon = registry.monitor("m", "1").configure(drain_max_wait_seconds=5)
        >>> mon.record_call(0.01, 0.5)
        >>> mon.drain_due(clock=100.0), mon.drain_due(clock=104.0), mon.drain_due(clock=105.0)
        (False, False, True)
        """
        try:
            if not (self._calls or self._proba_calls or self._errors or self._requests
                    or self._streams or self._handed_off_calls or self._deferred_outcomes):
                self._waiting_since = None
                return False
            settings = self.settings
            if not self._deferred_outcomes and not self._handed_off and \
                    self.pending() < settings.drain_min_calls:
                since = self._waiting_since
                if since is None:
                    self._waiting_since = since = clock
                if clock - since < settings.drain_max_wait_seconds:
                    return False
        except Exception as exc:
            faults.record("drain", exc)
        # Its own thread, where nobody waits for it: it folds the whole backlog (chunk by
        # chunk, so that nobody waits for it either).
        self.drain(budget=None)
        return True

    def drain(self, now: float | None = None, *, budget: float | None = None,
              deadline: float | None = None, finished_before: int | None = None) -> None:
        """Fold pending calls into the state. Never raises.

        Every call finished before this drain began is folded when it returns, unless
        folding them took longer than `budget` seconds while more calls came (None, the
        default: no bound, as a caller that must see its own calls folded needs: an
        outcome's join, a shadow's score, a new reference; a scrape passes one): calls
        outpace the fold, and the ones left stay pending, whole, for the next drain (none
        is lost or counted twice); a `deadline` on :data:`_clock` stands for the budget
        (one shared by many monitors). With `finished_before`, what this monitor's
        :meth:`calls_finished` was when that deadline was set by a drain of other monitors
        first, it is checked before the first chunk too, calls having come since then.
        They are folded in chunks of at most :data:`DRAIN_CHUNK_CALLS` and about
        :data:`DRAIN_CHUNK_SECONDS`, the monitor's lock let go between two, so that a
        reader waits for one chunk, not for the backlog, and a budget runs over by one
        chunk at most.

        A monitor with nothing new returns at once, taking no lock (unless another drain is
        folding, which it waits for): a process with many models pays for the ones that were
        called. (A dropped call leaves its full list pending, so a drop is never missed
        here.) Drain listeners (a shadow's comparisons) run first, each guarding itself.
        """
        for listener in self.drain_listeners:
            listener()
        if not (self._calls or self._proba_calls or self._errors or self._requests
                or self._streams or self._handed_off):
            try:
                # Another drain may have just taken the calls and still be folding them:
                # wait for it, so that every call finished before this drain is folded when
                # it returns (a lock held by a reader costs the same short wait). A try
                # rather than locked(), which the reentrant lock lacks before Python 3.14.
                if self._lock.acquire(blocking=False):
                    self._lock.release()
                else:
                    with self._lock:
                        pass
                # Not while this thread holds the lock itself (a drain reached from inside
                # one): the folds waited for need it.
                if self._apart_folds and budget is None and deadline is None and \
                        not self._lock._is_owned():  # type: ignore[attr-defined]
                    self._wait_for_apart_folds()
            except Exception as exc:
                faults.record("drain", exc)
            return
        self._waiting_since = None
        try:
            # Read once: a configure() that swaps the settings while this drain folds its
            # chunks (the lock let go between two) must not fold some of them under the
            # old buckets and caps and the rest under the new.
            settings = self.settings
            when = self.window_time(now)
            # What waits now, per kind: taken from the front of each kind's queue (handed-off
            # lists, then the list), by this drain or a concurrent one, it is all folded once
            # this drain has taken as many (each take folds under the same lock hold).
            with self._take_lock:
                left = self._pending_counts()
            # Read by the budget's check only: a drain with none (the background one, an
            # outcome's join) skips the count.
            arrived = finished_before if finished_before is not None else \
                self.calls_finished() if budget is not None or deadline is not None else 0
            # A deadline the monitors drained before this one may have spent is checked
            # before the first chunk too; a fresh one after each chunk.
            check = deadline is not None and finished_before is not None
            if deadline is None and budget is not None:
                deadline = _clock() + budget
            while True:
                if check and _clock() >= deadline and self.calls_finished() > arrived:
                    faults.record("drain_budget")
                    return
                check = deadline is not None
                started = _fold_clock()
                weighted = _weighted(left)
                # Later slices, and join rows still viewing a call's arrays (ArrayRows).
                rest: list[LaterSlices | LaterInputs | ArrayRows] = []
                with self._lock:
                    taken = self._drain_locked(when, rest, left, settings)
                    if rest:  # counted before the lock is let go: see _wait_for_apart_folds
                        self._begin_apart_folds()
                if rest:
                    try:
                        self._fold_apart(rest, when, settings)
                    finally:
                        self._end_apart_folds()
                if taken:
                    self._measure_chunk(_fold_clock() - started,
                                        weighted - _weighted(left))
                if not taken or not any(left):
                    return
                time.sleep(0)  # as between slices: a waiting reader takes the lock now
        except Exception as exc:
            faults.record("drain", exc)

    def _fold_apart(self, rest: list, when: float, settings: Settings) -> None:
        """What the drain's first hold left for later: join rows copied off the calls'
        arrays, then huge results read whole and the later slices of huge batches, each
        folded in a hold of the lock of its own."""
        for part in rest:  # a join's rows, copied off the call's arrays first
            if part.__class__ is ArrayRows:
                part.own()
            elif part.__class__ is LaterJoin:  # an entry left to make: before the slices
                self._guarded(self._join_apart, part)
        for part in rest:
            if part.__class__ is ArrayRows or part.__class__ is LaterJoin:
                continue
            time.sleep(0)  # a scrape or caller waiting for the lock gets it now
            if part.__class__ is LaterWhole or part.__class__ is LaterRecord:
                # One that fails (an odd object read) is counted, and the others still fold.
                self._guarded(self._drain_read_apart, part, when, settings)
                continue
            if part.__class__ is LaterLabelColumn:
                self._guarded(self._drain_label_column_apart, part, when, settings)
                continue
            for piece in part.slices:
                time.sleep(0)
                with self._lock:
                    if part.__class__ is LaterInputs:
                        self._drain_input_slice(piece, part, when)
                    else:
                        self._drain_slice(piece, part.probabilities, when, settings)

    def _begin_apart_folds(self) -> None:
        with self._apart:
            self._apart_folds += 1

    def _end_apart_folds(self) -> None:
        with self._apart:
            self._apart_folds -= 1
            if not self._apart_folds:
                self._apart.notify_all()

    def _wait_for_apart_folds(self) -> None:
        """Wait for the folds another drain does after its first hold (a huge result read
        whole, later slices): a drain that must see every call folded (an outcome's join,
        a shadow's score) returns after them. A scrape's drain (with a budget) does not
        wait: it shows those rows at its next scrape. At most :data:`APART_WAIT_SECONDS`,
        should that drain's thread never come back (stopped at the interpreter's exit)."""
        give_up = time.monotonic() + APART_WAIT_SECONDS
        with self._apart:
            while self._apart_folds:
                left = give_up - time.monotonic()
                if left <= 0:
                    faults.record("drain_wait")
                    return
                self._apart.wait(min(left, 1.0))

    def budget_mark(self) -> int:
        """What a drain of many monitors keeps of this one as it sets their shared deadline
        (the `finished_before` of :meth:`drain`): :meth:`calls_finished`, or
        :data:`NOTHING_WAITED` when nothing waits, for which every call found later came
        since. A few truth tests for an idle monitor, which a scrape of many finds most of.

        >>> from inferwatch.core.registry import Registry
        >>> registry = Registry(drain_interval=3600)
        >>> mon = registry.monitor("m", "1")
        >>> mon.budget_mark() == NOTHING_WAITED
        True
        >>> mon.record_call(0.01, 0.5)
        >>> mon.budget_mark() == mon.calls_finished() == 1
        True
        >>> registry.close()
        """
        if not (self._calls or self._proba_calls or self._errors or self._requests
                or self._streams or self._handed_off_calls):
            return NOTHING_WAITED
        return self.calls_finished()

    def calls_finished(self) -> int:
        """Calls finished so far: folded, waiting, or dropped (what a drain's budget looks
        at to tell whether calls came while it folded)."""
        return self._finished + self.pending() + count_value(self._dropped)

    def _measure_chunk(self, seconds: float, weighted: int) -> None:
        """Remember what a chunk of `weighted` calls took to fold: the next is sized by it."""
        if weighted > 0 and seconds >= 0:
            self._fold_seconds_per_call = seconds / weighted

    def _chunk_calls(self) -> int:
        """How many (weighted) calls the next chunk takes: about :data:`DRAIN_CHUNK_SECONDS`
        worth at the last chunk's cost, within :data:`_MIN_CHUNK_CALLS` and
        :data:`DRAIN_CHUNK_CALLS`."""
        cost = self._fold_seconds_per_call
        if cost is None:
            fitting = _FIRST_CHUNK_CALLS
        elif cost * DRAIN_CHUNK_CALLS <= DRAIN_CHUNK_SECONDS:
            fitting = DRAIN_CHUNK_CALLS
        else:
            fitting = int(DRAIN_CHUNK_SECONDS / cost)
        return min(DRAIN_CHUNK_CALLS, max(_MIN_CHUNK_CALLS, fitting))

    def _pending_counts(self) -> list[int]:
        """Calls waiting per kind (calls, probability calls, errors, requests, streams), the
        lists handed off included; under the take lock."""
        lists = (self._calls, self._proba_calls, self._errors, self._requests, self._streams)
        counts = [len(pending) for pending in lists]
        for source, items in self._handed_off:
            for kind, pending in enumerate(lists):
                if source is pending:
                    counts[kind] += len(items)
        return counts

    def _drain_slice(self, rows: np.ndarray, probabilities: bool, now: float,
                     settings: Settings | None = None) -> None:
        """Rows of a huge batch after its first slice: values, classes and drift only (the
        call, its latency and its batch size were counted with the first slice); folded
        with `settings`, the drain's (default: the monitor's)."""
        if settings is None:
            settings = self.settings
        predictions = PredictionBatch(settings, self._caps, self.features, self.class_names)
        predictions.add_results([rows], probabilities=probabilities)
        self._flush_apart(predictions, now, batch_size=False)

    def _flush_apart(self, predictions: PredictionBatch, now: float,
                     batch_size: bool = True) -> None:
        """Fold what a slice, or a result read apart, added to `predictions` (under the
        lock): its drift checks (which read its rows per call), then its values, classes
        and, unless `batch_size` is False (a later slice: the call's size was counted with
        its first), its batch size."""
        tracker = self.features
        if tracker is not None:
            check_predictions(tracker, predictions, now)
        if not batch_size:
            predictions.batch_sizes.clear()
            predictions.repeated_sizes.clear()
        predictions.flush(self.state, now)
        self._slices_drained += 1  # the state changed with no call finishing: publish it

    def _drain_read_apart(self, part: LaterWhole | LaterRecord, now: float,
                          settings: Settings) -> None:
        """A huge result the drain's first hold left whole (its call counted there): read
        with the lock let go (the part that costs a Python call per row, or a sort of its
        labels), its classes counted and, for a request-path call under a request id, its
        outcome join made likewise; then its batch size, values, classes and drift folded
        under the lock. Reading touches nothing the lock guards. A joined call's entry is
        remembered after the other calls of its drain, as if it had finished last."""
        record = part.record if part.__class__ is LaterRecord else None
        result = part.result if record is None else record.prediction  # type: ignore[union-attr]
        predictions = PredictionBatch(settings, self._caps, self.features, self.class_names)
        prediction = predictions.read_one(result, part.probabilities)
        if prediction is None:
            return  # counted as a fault by the read
        if record is not None and record.request_id is not None:
            remember_apart(self.outcomes, predictions, settings.task, part.probabilities,
                           record, predictions.joinable_row(prediction, result))
        predictions.count_classes_apart(prediction)
        with self._lock:
            predictions.add_read(prediction)
            self._flush_apart(predictions, now)

    def _join_apart(self, part: LaterJoin) -> None:
        """Remember the outcome entry the drain's first hold left to make, with no lock of
        the monitor held (as if its call had finished last in its drain)."""
        self.outcomes.remember_many([part.entry(self.outcomes)])

    def _drain_label_column_apart(self, part: LaterLabelColumn, now: float,
                                  settings: Settings) -> None:
        """A request-path call's huge column of labels, which the drain's first hold left
        (its call counted there): read and joined with the lock let go, then folded a slice
        per hold, its first with the call's batch size; read whole, as a
        :class:`LaterRecord`, when it holds anything but labels."""
        if not join_label_column(part, self.outcomes):
            self._drain_read_apart(LaterRecord(False, part.record), now, settings)
            return
        later: list[LaterSlices] = []
        predictions = PredictionBatch(settings, self._caps, self.features, self.class_names)
        with self._lock:
            add_whole_first_slice(predictions, part.result, later)
            self._flush_apart(predictions, now)
        for slices in later:
            for piece in slices.slices:
                time.sleep(0)  # a scrape or caller waiting for the lock gets it now
                with self._lock:
                    self._drain_slice(piece, False, now, settings)

    def _drain_input_slice(self, rows: np.ndarray, part: LaterInputs, now: float) -> None:
        """Rows of a huge input after its first slice: checked against the reference (the
        call, and its first rows, were counted with the first slice)."""
        tracker = self.features
        if tracker is None or tracker is not part.checked_by:
            return  # the reference was switched off or replaced since: none checks it now
        try:
            count_input_checks(self.state, tracker.feature_labels,
                               tracker.check_inputs([rows], now, window=part.window))
        except Exception as exc:
            faults.record("drain", exc)
        self._slices_drained += 1  # the state changed with no call finishing: publish it

    def _take_pending(self, left: list[int]) -> tuple[list, list, list, list, list]:
        """A chunk of about :meth:`_chunk_calls` pending calls, of each kind the oldest and
        at most as many as `left` says are still to take (lowered by what is taken).

        Each kind gets a share of the chunk in proportion to what it has left: filled kind
        by kind, a backlog of plain calls kept the errors out of every chunk, so while calls
        outpaced the fold the error counter stood still and error-rate alerts were blind."""
        lists = (self._calls, self._proba_calls, self._errors, self._requests, self._streams)
        chunk_calls = self._chunk_calls()
        with self._take_lock:
            weighted = _weighted(left)
            taken = []
            for kind, pending in enumerate(lists):
                if weighted <= chunk_calls:
                    want = left[kind]
                else:  # at least one of each kind left: a small share still moves on
                    want = min(left[kind], max(1, -(-left[kind] * chunk_calls // weighted)))
                chunk = self._take_handed_off(pending, want) if self._handed_off and want \
                    else []
                if want > len(chunk):
                    more = _take_front(pending, want - len(chunk))
                    chunk = more if not chunk else chunk + more
                # A whole list is taken as it is then: a call appended meanwhile comes along.
                left[kind] = max(0, left[kind] - len(chunk))
                taken.append(chunk)
        return taken[0], taken[1], taken[2], taken[3], taken[4]

    def _take_handed_off(self, source: list, most: int) -> list:
        """Up to `most` calls of the lists handed off from `source`, oldest first; under the
        take lock."""
        # A list handed off while this runs (a stream the garbage collector records, set
        # off by an allocation below) lands in the fresh list, after the ones kept.
        entries, self._handed_off = self._handed_off, []
        taken: list = []
        kept = []
        for entry in entries:
            if entry[0] is not source or len(taken) >= most:
                kept.append(entry)
                continue
            items = entry[1]
            room = most - len(taken)
            if len(items) <= room:
                taken.extend(items)
            else:
                taken.extend(items[:room])
                kept.append((source, items[room:]))
        self._handed_off[:0] = kept
        self._handed_off_calls -= len(taken)
        return taken

    def _drain_locked(self, now: float, rest: list[LaterSlices | LaterInputs] | None,
                      left: list[int], settings: Settings | None = None) -> int:
        """Fold a chunk of what is pending (see :meth:`_take_pending`) into the state and
        return how many calls that was; with `rest`, huge numpy results are cut to their
        first slice here and the other slices appended to `rest` for the caller. Folded
        with `settings`, the drain's (default: the monitor's)."""
        if settings is None:
            settings = self.settings
        calls, proba_calls, errors, requests, streams = self._take_pending(left)
        total = len(calls) + len(proba_calls) + len(errors) + len(requests) + len(streams)
        self._report_dropped()
        if not total:
            return 0
        self._finished += total
        if self.features is None:
            if calls and total == len(calls) and \
                    fold_plain_floats(self, calls, now, settings):  # type: ignore[arg-type]
                return total
            if proba_calls and total == len(proba_calls) and \
                    fold_probability_rows(self, proba_calls, now,  # type: ignore[arg-type]
                                           settings):
                return total
        state = self.state
        durations: list[float] = []
        predictions = PredictionBatch(settings, self._caps, self.features, self.class_names)
        cut: list[tuple[int, dict[int, int]]] = []  # (first batch size index, whole rows)
        inputs: list = []  # of fast-path calls with a reference profile: ok, then failed
        failed_inputs: list = []
        kept_bytes = 0  # of the arrays these calls held while they waited
        feature_count = None if self.features is None else len(
            self.features.checker.feature_names)
        for pending, probabilities in ((calls, False), (proba_calls, True)):
            if not pending:
                continue
            call_durations, results, kept, stacked = call_columns(pending, feature_count)
            inputs.extend(kept)
            durations.extend(call_durations)
            kept_bytes += held_bytes(kept)  # DataFrames and tensors too, by estimate
            if stacked is not None and stacked[1] is None:
                # Lists or tuples of small arrays of one layout, each output one array.
                outputs = stacked[0]
                if rest is None or outputs.rows_per_call <= pending_calls.SLICE_ROWS:
                    kept_bytes += outputs.nbytes
                    _add_guarded(predictions.add_stacked_outputs, outputs, probabilities)
                    continue
                results = outputs.thawed()  # to be sliced, as each call's copies were
            elif stacked is not None:  # arrays of one shape and dtype: already one array
                array, shape = stacked
                kept_bytes += array.nbytes
                if rest is None or shape[0] <= pending_calls.SLICE_ROWS:
                    _add_guarded(predictions.add_stacked, array, shape, len(pending),
                                 probabilities)
                    continue
                results = list(array.reshape((len(pending), *shape)))  # to be sliced
            whole: dict[int, int] = {}
            kinds = set(map(type, results))  # in C; cutting arrays keeps their class
            # What results held while they waited: arrays past the copy limit, frames,
            # tensors (a drain of one kind sizes one of them).
            kept_bytes += held_bytes(results, kinds)
            if rest is not None:
                calls_here = len(results)
                results, whole = first_slices(results, probabilities, rest, kinds,
                                              defer=True, durations=call_durations)
                # A huge pandas Series is cut as its array; a result read apart is gone
                # (all of them, and nothing is left to add here: an empty drain of floats
                # would still name a value output).
                if whole or len(results) != calls_here:
                    if not results:
                        continue
                    kinds = set(map(type, results))
            first = len(predictions.batch_sizes)
            # An output the fold cannot read (a __hash__ that raises, say) costs its
            # chunk's prediction metrics, never its request counts and latencies below.
            added = _add_guarded(predictions.add_results, results, probabilities=probabilities,
                                 sizes_in_order=bool(whole), kinds=kinds)
            if added and whole and len(predictions.batch_sizes) == first + len(results):
                cut.append((first, whole))
        ok = len(calls) + len(proba_calls)
        sized = ok
        if requests:
            # Records (calls with request_id=, an event log, request blocks) hold their
            # result and inputs as fast-path calls do: the byte bound counts them too.
            kept_bytes += record_bytes(requests)
            sized += len(requests)
        if sized:
            self.fit_drained(kept_bytes / sized)
        error_counts: dict[str, float] = {}
        cancelled = 0
        # Only failures are told apart by it: a drain of calls that all answered skips it.
        cancelled_types = cancellations() if errors or requests else ()
        for failure in errors:
            duration, error_type = failure[0], failure[1]
            if len(failure) > 2:
                failed_inputs.append(failure[2])
            durations.append(duration)
            if issubclass(error_type, cancelled_types):
                cancelled += 1
            else:
                key = error_type.__name__
                error_counts[key] = error_counts.get(key, 0) + 1
        for stream in streams:
            if not stream.counts_call:
                if stream.counts_error:  # failed once its request had ended: nothing else counts it
                    key = stream.error_type.__name__
                    error_counts[key] = error_counts.get(key, 0) + 1
                continue
            durations.append(stream.duration)
            if stream.outcome == "cancelled":
                cancelled += 1
            elif stream.error_type is not None:
                key = stream.error_type.__name__
                error_counts[key] = error_counts.get(key, 0) + 1
            else:
                ok += 1
        for record in requests:
            durations.append(record.duration)
            model_errors = record.model_errors
            if model_errors is not None:
                # Its model calls that raised, caught by the app or not: each counts by its
                # class, and they stand for the request's own failure below, which is then
                # counted only as the request's outcome (never one failure twice), unless it
                # came from none of them (own_error: the app's own bug after a retry).
                for error in model_errors:
                    key = error.error_type.__name__
                    error_counts[key] = error_counts.get(key, 0) + 1
            if record.cancelled:
                cancelled += 1
            elif record.error_type is None:
                ok += 1
            elif issubclass(record.error_type, cancelled_types):
                cancelled += 1
            elif model_errors is None or record.own_error:
                key = record.error_type.__name__
                error_counts[key] = error_counts.get(key, 0) + 1
            if record.stream is not None:  # counted just above, as its request
                streams.append(record.stream)
        # Each step below reads what callers handed in (predictions, inputs, stream
        # records): one that fails on an odd object is counted and skipped, never taking the
        # drain's request counts and latencies down with it.
        if requests:
            self._guarded(fold_requests, self.state, settings, self._caps, self.outcomes,
                          requests, predictions, rest, cut)
        if streams:
            self._guarded(fold_streams, self.state, settings, streams)
        n_errors = len(durations) - ok - cancelled
        if ok:
            state.inc("inferwatch_requests_total", ("ok",), ok)
        if cancelled:
            state.inc("inferwatch_requests_total", ("cancelled",), cancelled)
        if n_errors:
            state.inc("inferwatch_requests_total", ("error",), n_errors)
        if error_counts:  # a request that answered may have had a model call fail
            cap = self._caps["inferwatch_errors_total"]
            for key, count in cap.fold_counts(error_counts).items():
                state.inc("inferwatch_errors_total", (key,), count)
        latency = state.histogram("inferwatch_request_duration_seconds", (),
                                  settings.latency_buckets)
        latency.observe(float_array(durations))
        for record in requests:
            if record.trace_id is not None:
                latency.exemplar(record.duration, record.trace_id, record.started_at)
        tracker = self.features
        if tracker is not None:
            self._guarded(self._check_features, tracker, requests, predictions, now, inputs,
                          failed_inputs, rest)
        for first, whole in cut:  # a sliced call's batch size is all its rows
            for index, rows in whole.items():
                predictions.batch_sizes[first + index] = rows
        self._guarded(predictions.flush, state, now)
        if streams:  # after the predictions, which tell a task="auto" model's task first
            self._guarded(detect_generation, state, streams)
        if self.events is not None and requests:
            self._guarded(self._emit_events, requests)
        return total

    @staticmethod
    def _guarded(step: Callable[..., None], *args: Any) -> None:
        try:
            step(*args)
        except Exception as exc:
            faults.record("drain", exc)

    def _check_features(self, tracker: FeatureTracker, requests: list[RequestRecord],
                        predictions: PredictionBatch, now: float, inputs: list,
                        failed_inputs: list,
                        rest: list[LaterSlices | LaterInputs] | None = None) -> None:
        # A call that raised made no prediction: its input is checked (missing values,
        # ranges, schema) but stays out of the drift window.
        ok = [r.features for r in requests if r.features is not None and r.error_type is None]
        failed = [r.features for r in requests
                  if r.features is not None and r.error_type is not None]
        ok += inputs
        failed += failed_inputs
        for inputs, window in ((ok, True), (failed, False)):
            if inputs and rest is not None:  # a huge input's later rows: one hold each
                inputs = first_input_slices(inputs, window, rest, tracker)
            if inputs:
                count_input_checks(self.state, tracker.feature_labels,
                                   tracker.check_inputs(inputs, now, window=window))
        check_predictions(tracker, predictions, now)

    def _emit_events(self, requests: list[RequestRecord]) -> None:
        # Loaded here: only a monitor with an event log gets this far.
        from inferwatch.events.fields import name_dense_columns

        events = self.events
        # An EventLog bounds the bytes its queued events hold: each keeps its call's input
        # and output until the writer encodes it, so the event is sized here, off the
        # request path. Another object with an emit() of its own takes the event as it is.
        offer = getattr(events, "_offer", None)
        emit = events.emit
        size_of = _HeldBytes()
        tracker = self.features
        # A plain array's columns get the reference's names, which redaction paths use.
        names = None if tracker is None else tracker.checker.feature_names
        for record in requests:
            event = record.event(self.name, self.version)
            if names:
                name_dense_columns(event, names)
            if offer is None:
                emit(event)
            else:
                offer(event, _event_bytes(record, size_of))

    def _report_dropped(self) -> None:
        dropped = count_value(self._dropped)
        if dropped > self._dropped_reported:
            self.state.inc("inferwatch_calls_dropped_total", (), dropped - self._dropped_reported)
            faults.record("backlog", count=dropped - self._dropped_reported)
            self._dropped_reported = dropped


# What an event holds besides its inputs and outputs: the dict, its keys, its numbers and
# the short strings of its identity.
EVENT_BYTES = 1024


class _HeldBytes:
    """Sizes the inputs and outputs of one drain's events, cheaply: a numpy array and text
    exactly; of any other class the first object is sized (:func:`held_bytes`) and stands for the
    others, scaled by their ``len()`` where the class has one (the rows of a DataFrame,
    the items of a list), so that a drain of many frames sizes one."""

    __slots__ = ("_learned",)

    def __init__(self) -> None:
        # Per class: the bytes per item of len() (True) or per object (False).
        self._learned: dict[type, tuple[float, bool]] = {}

    def __call__(self, value: object) -> int:
        cls = value.__class__
        if cls is np.ndarray:
            return value.nbytes  # type: ignore[attr-defined]
        if cls is str or cls is bytes:  # exact, and no text stands for another's width
            return value.__sizeof__()  # as sys.getsizeof: text holds no references
        try:
            learned = self._learned.get(cls)
            if learned is None:
                if not hasattr(cls, "__len__"):
                    learned = self._learned[cls] = (held_bytes([value]), False)
                else:
                    items = len(value)  # type: ignore[arg-type]
                    if items <= 0:
                        return held_bytes([value])  # nothing to scale the others by
                    learned = self._learned[cls] = (held_bytes([value]) / items, True)
            per, by_length = learned
            return int(per * len(value)) if by_length else int(per)  # type: ignore[arg-type]
        except Exception:  # a len() that raises (a 0-d tensor): sized on its own
            return held_bytes([value])


def _event_bytes(record: RequestRecord, size_of: _HeldBytes) -> int:
    """About how many bytes the event of `record` holds until the writer encodes it."""
    size = EVENT_BYTES
    try:
        inputs, features = record.inputs, record.features
        if inputs is not None:
            size += size_of(inputs)
        if features is not None and features is not inputs:
            size += size_of(features)
        if record.prediction is not None:
            size += size_of(record.prediction)
        if record.stage_outputs:
            for output in record.stage_outputs.values():
                if output is not None:
                    size += size_of(output)
        if record.request_id is not None:
            size += size_of(record.request_id)
        stream = record.stream
        if stream is not None and stream.text is not None:
            size += size_of(stream.text)
    except Exception:  # an object that cannot be sized still has its event logged
        pass
    return size


def _weighted(counts: list[int]) -> int:
    """Calls waiting per kind (as :meth:`MonitorDrain._pending_counts` gives them), a request
    or stream record counting as :data:`_RECORD_WEIGHT` calls. Written out: a generator
    over the five kinds cost a drain of a few calls about a microsecond each time."""
    calls, proba_calls, errors, requests, streams = counts
    return calls + proba_calls + errors + _RECORD_WEIGHT * (requests + streams)


def _add_guarded(add: Callable[..., None], *args: Any, **kwargs: Any) -> bool:
    """Add results to a prediction batch; False, the fault counted, if that raised."""
    try:
        add(*args, **kwargs)
    except Exception as exc:
        faults.record("prediction", exc)
        return False
    return True


def _take_front(pending: list, most: int) -> list:
    """The first `most` items of `pending` (all when fewer), taken out of it: a slice and
    one ``del`` of the same prefix, which the appends racing with it never touch."""
    n = len(pending)
    if most >= n:
        return take(pending)  # the usual drain: the whole list
    taken = pending[:most]
    del pending[:most]
    return taken
