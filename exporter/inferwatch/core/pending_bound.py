"""The bound on what a monitor's request path leaves for the drain: ``max_pending`` calls
and ``max_pending_bytes``, shared by every monitor of a registry (:class:`PendingBudget`).

A call appends to a list without a check until the list holds its length (an eighth of the
bound, shared out among the monitors); then the list is handed to the drain whole
(:meth:`PendingBound.hand_off`), charged to the budget, and a new one starts. Only when the
drain has fallen behind by the whole bound is a call dropped, and counted. The length
follows what the calls of the last drain held (about 100 bytes each and the arrays kept
for them), so that heavy calls stay within the byte bound.

>>> from inferwatch.core.registry import Registry
>>> mon = Registry(drain_interval=3600).monitor("m", "1")
>>> mon._max_calls <= mon.settings.max_pending
True
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from inferwatch import faults
from inferwatch.core.call_input import held_bytes, record_bytes
from inferwatch.core.request_record import RequestRecord
from inferwatch.forking import catch_up_after_fork

if TYPE_CHECKING:
    from inferwatch.core.options import Settings

_NOTHING = object()
# What a pending call holds besides the arrays kept for it: its tuple, a float, references.
_CALL_BYTES = 100


# The list length before any call was sized (see Monitor._sized).
_FIRST_LIST_LENGTH = 8


def _list_length(max_calls: int, sharers: int = 1) -> int:
    """Calls a request path appends before it hands its list to the drain: an eighth of the
    bound, so that several lists can wait while a drain is late, shared out among the
    monitors that share the bound (whose lists all fill at once while a drain is late)."""
    return max(1, max_calls // 8 // max(1, sharers))


class PendingBudget:
    """What waits for the drain across the monitors that share this budget (every monitor of
    a registry): the lists handed to the drain, and the length each monitor's request path
    may fill without a check (one list, see :meth:`PendingBound.hand_off`), in calls and in bytes.

    ``max_pending`` and ``max_pending_bytes`` bound this total, not each monitor's: a
    stalled drain would otherwise hold that much per model version, growing with their
    number. Changed only under `lock`, once per list handed off or taken by a drain.

    >>> from inferwatch.core.registry import Registry
    >>> registry = Registry(drain_interval=3600)
    >>> one, two = registry.monitor("a", "1"), registry.monitor("b", "1")
    >>> one.pending_budget is two.pending_budget
    True
    >>> registry.close()
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.bytes = 0
        self.sharers = 0  # monitors sharing it: each gets an equal share of list lengths

    def renew_lock(self) -> None:
        self.lock = threading.Lock()


class PendingBound:
    """How a :class:`~inferwatch.core.monitor.Monitor` bounds its pending calls (a base class
    of it, before :class:`~inferwatch.core.monitor_drain.MonitorDrain`, whose take of
    handed-off calls it wraps): it reads and writes the attributes the monitor sets up."""

    settings: Settings
    pending_budget: PendingBudget

    def hand_off(self, pending: list, item: object) -> None:
        """`pending` is full: give its calls to the drain whole, start it anew with `item`.

        Only when the drain has fallen behind by ``max_pending`` calls (or
        ``max_pending_bytes``) in all, across every monitor sharing this one's
        :class:`PendingBudget`, is `item` dropped, and counted. Never raises: this runs on
        the caller's request path.
        """
        try:
            # A worker forked past Python's at-fork hooks (uWSGI pre-forking) whose first
            # list fills before any drain: its locks are its parent's until it catches up,
            # and one a parent's thread held at the fork would never be let go.
            catch_up_after_fork()
            behind = False  # a list handed to the drain, or a call dropped: wake it
            with self._take_lock:
                if self._chunk < self._wanted_chunk and \
                        self.pending_budget.calls < self.settings.max_pending:
                    # A drain left room for the full length since (read without the lock:
                    # only a hint, the fit itself takes it).
                    self._fit_pending()
                if len(pending) >= self._chunk:
                    if item.__class__ is tuple:
                        self._fit_heavier(item)  # may make the list long enough for `item`
                    elif item.__class__ is RequestRecord:
                        self._fit_held(record_bytes([item]))
                    elif not self._sized:
                        # A request or stream record: what it holds is sized by its drain,
                        # as always; the short lists a monitor starts with end here, or a
                        # server of requests only would hand off every few requests.
                        self._sized = True
                        self._fit_pending()
                if len(pending) >= self._chunk:
                    behind = True
                    full = len(pending)
                    if not self._charge_hand_off(full):
                        next(self._dropped)
                        item = _NOTHING
                    else:
                        # Exactly the calls charged: an append racing with this lands after
                        # them, and stays for the next hand-off or drain.
                        taken = pending[:full]
                        del pending[:full]
                        self._handed_off.append((pending, taken))
                        self._handed_off_calls += len(taken)
                if item is not _NOTHING:
                    pending.append(item)
            wake = self.wake_drain
            if behind and wake is not None:
                wake()
        except Exception as exc:
            # The call is kept all the same (a list one longer than its bound, taken whole
            # by the next hand-off or drain): dropped, it would stay in flight for good.
            if item is not _NOTHING and (not pending or pending[-1] is not item):
                pending.append(item)
            try:
                faults.record("backlog", exc)
            except Exception:  # the recursion limit reached again: the call is kept all the same
                pass

    def _charge_hand_off(self, calls: int) -> bool:
        """Charge `calls` handed to the drain to the pending budget; False (nothing charged)
        when they would take it past ``max_pending`` or ``max_pending_bytes``. The list
        keeps its own length charged for the calls appended after it; under the take lock.
        """
        settings = self.settings
        per_call = self._bytes_per_call()
        added_bytes = calls * per_call
        # Calls so heavy that fewer than 8 fit in max_pending_bytes: a monitor keeps 8 of
        # them all the same (its bound in calls is never below 8), or with a drain that keeps
        # up it would drop every call past the first between two drains.
        heavy = settings.max_pending_bytes // per_call < 8 and \
            self._handed_off_calls + calls + self._chunk <= 8
        budget = self.pending_budget
        with budget.lock:
            total_calls = budget.calls + calls
            total_bytes = budget.bytes + added_bytes
            if total_calls > settings.max_pending or (
                    total_bytes > settings.max_pending_bytes and not heavy):
                return False
            budget.calls, budget.bytes = total_calls, total_bytes
        self._handed_off_bytes += added_bytes
        return True

    def _take_handed_off(self, source: list, most: int) -> list:
        """The drain's take of handed-off calls (see :class:`MonitorDrain`), giving what it
        takes back to the pending budget; under the take lock."""
        before = self._handed_off_calls
        taken = super()._take_handed_off(source, most)
        if before != self._handed_off_calls:
            self._release_handed_off(before - self._handed_off_calls, before)
        return taken

    def _release_handed_off(self, calls: int, held: int) -> None:
        """Give back `calls` of the `held` calls handed off: their share of the bytes charged
        for them (all of it once none is left, so no rounding stays charged)."""
        released = self._handed_off_bytes if calls >= held else \
            self._handed_off_bytes * calls // held
        self._handed_off_bytes -= released
        budget = self.pending_budget
        with budget.lock:
            budget.calls -= calls
            budget.bytes -= released

    def share_pending_budget(self, budget: PendingBudget) -> None:
        """Count this monitor's pending calls in `budget` (its registry's) from now on,
        with every other monitor sharing it."""
        with self._take_lock:
            old = self.pending_budget
            if budget is old:
                return
            calls = self._reserved_calls + self._handed_off_calls
            held = self._reserved_bytes + self._handed_off_bytes
            with old.lock:
                old.calls -= calls
                old.bytes -= held
                old.sharers -= 1
            with budget.lock:
                budget.calls += calls
                budget.bytes += held
                budget.sharers += 1
            self.pending_budget = budget
            self._fit_pending()

    def refit_pending(self) -> None:
        """Fit the list length to this monitor's share of its pending budget again (another
        monitor came to share it). Never raises."""
        try:
            self._fit_pending()
        except Exception as exc:
            faults.record("backlog", exc)

    def _bytes_per_call(self) -> int:
        """What a pending call is taken to hold: about 100 bytes, and the arrays the calls
        of the last drain (or a heavier call handed off since) kept."""
        return _CALL_BYTES + int(-(-self._kept_per_call // 1))

    def _fit_heavier(self, call: tuple) -> None:
        """Shrink the bound when `call` holds more than the calls of the last drain did: one
        call sized per hand-off, so that calls growing heavier between two drains (or a
        drain stalled from the start) stay within ``max_pending_bytes``."""
        # Sized as a drain sizes it: each array once (its copied bytes ride beside it).
        self._fit_held(held_bytes([part for part in call[1:]
                                   if part is not None and part.__class__ is not bytes]))

    def fit_drained(self, kept_per_call: float) -> None:
        """Fit the bound to what each call of a drain kept (array bytes, by estimate). It
        moves only with that (a settings change refits it on its own): a drain of calls
        like the last one's leaves it as it is."""
        if kept_per_call != self._kept_per_call or not self._sized:
            self._kept_per_call = kept_per_call
            self._sized = True
            self._fit_pending()

    def _fit_held(self, held: int) -> None:
        """Shrink the bound when one pending call or record holds `held` bytes, more than
        the average of the last drain's."""
        if held > self._kept_per_call or not self._sized:
            self._kept_per_call = max(self._kept_per_call, float(held))
            self._sized = True
            self._fit_pending()

    def _fit_pending(self) -> None:
        """The bound on pending calls in force: ``max_pending``, or fewer, so that as many
        calls as the last drain's (about 100 bytes each and the arrays kept for them) fit in
        ``max_pending_bytes``; and the list length, its share of an eighth of that among the
        monitors sharing the budget, charged to the budget (grown only into room left
        there). Pushed to the wrappers when their list length changes."""
        settings = self.settings
        per_call = self._bytes_per_call()
        self._max_calls = max(8, min(settings.max_pending,
                                     int(settings.max_pending_bytes // per_call)))
        budget = self.pending_budget
        with budget.lock:
            wanted = _list_length(self._max_calls, budget.sharers)
            if not self._sized:
                wanted = min(wanted, _FIRST_LIST_LENGTH)
            chunk = wanted
            if wanted > self._reserved_calls:
                # The other monitors' lists and handed-off calls first: a list grows only
                # into the room they leave (never below what it already holds).
                room = min(settings.max_pending - (budget.calls - self._reserved_calls),
                           (settings.max_pending_bytes - (budget.bytes - self._reserved_bytes))
                           // per_call)
                chunk = max(1, self._reserved_calls, min(wanted, room))
            held = chunk * per_call
            budget.calls += chunk - self._reserved_calls
            budget.bytes += held - self._reserved_bytes
            self._reserved_calls, self._reserved_bytes = chunk, held
            self._wanted_chunk = wanted
            if chunk != self._chunk:
                self._chunk = chunk
                for set_limit in list(self._limit_setters.values()):
                    set_limit(chunk)
