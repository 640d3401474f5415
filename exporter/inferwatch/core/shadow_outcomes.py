"""Outcomes the champion got for calls its challenger has not answered yet.

An outcome can come while the challenger's copy of the call is still queued or running:
neither the comparison nor the challenger's own join knows the request id yet, and scored
at once the outcome would be lost for the challenger. :class:`HeldOutcomes` knows the ids
of the calls in the shadow's queue or under way, holds their outcomes (a bounded number),
and hands them back as the last call of the id ends.

>>> held = HeldOutcomes(max_held=8)
>>> held.enter("r-1")
>>> held.hold("r-1", "fraud", 10.0), held.hold("r-2", "legit", 10.0)
(True, False)
>>> held.release("r-1")
[('fraud', 10.0)]
"""

from __future__ import annotations

import threading


class HeldOutcomes:
    """Request ids of a shadow's calls queued or under way (how many of each), and the
    outcomes held for them; at most `max_held` outcomes (past it, one is scored at once,
    as before a call could be held)."""

    def __init__(self, max_held: int) -> None:
        self.max_held = max_held
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}
        self._held: dict[str, list[tuple[object, float]]] = {}
        self._count = 0

    def enter(self, request_id: str) -> None:
        """A call under `request_id` was queued."""
        with self._lock:
            self._calls[request_id] = self._calls.get(request_id, 0) + 1

    def hold(self, request_id: str, y_true: object, when: float) -> bool:
        """Hold an outcome for a call of `request_id` queued or under way; False when there
        is none (or the bound is reached): the caller scores it now."""
        with self._lock:
            if request_id not in self._calls or self._count >= self.max_held:
                return False
            self._held.setdefault(request_id, []).append((y_true, when))
            self._count += 1
            return True

    def release(self, request_id: str) -> list[tuple[object, float]]:
        """One call of `request_id` ended or was dropped: the outcomes held for the id once
        none of its calls is left (to score, or to let go), else none."""
        with self._lock:
            left = self._calls.get(request_id, 0) - 1
            if left > 0:
                self._calls[request_id] = left
                return []
            self._calls.pop(request_id, None)
            held = self._held.pop(request_id, [])
            self._count -= len(held)
            return held
