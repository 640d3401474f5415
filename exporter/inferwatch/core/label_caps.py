"""Cardinality caps for label values that users can grow.

A value seen before, or new while there is room, keeps its own series; past the cap it
folds into ``__other__``. Folding happens where counts are aggregated, so the sum over
series always equals the number of observations.

``overflowed`` counts each distinct value folded, once: not each fold, which would make it
depend on how often the drain runs (it folds each distinct value once a drain) and on how
often a folded model or version is looked up.

>>> cap = LabelCap(2)
>>> [cap.fold(v) for v in ["a", "b", "c", "a", "c", "d"]]
['a', 'b', '__other__', 'a', '__other__', '__other__']
>>> cap.overflowed
2
"""

from __future__ import annotations

import threading

from inferwatch.catalogue import OTHER, clean_label_value

__all__ = ["FOLDED_MEMORY", "LabelCap", "clean_label_value"]

# Folded values a cap remembers, so that each counts once. Past this many the memory starts
# over: an unbounded label (ids, messages) keeps counting, and a cap stays small however
# many values it folds.
FOLDED_MEMORY = 1024
# Folded outputs and classes of one model remembered by LabelCap.fold_many: a model's own
# label set, bounded (a classifier of 65,536 classes counts each folded one once).
REMEMBERED_FOLDS = 1 << 16


def _exact_text(value: object) -> str:
    """The label text of `value`, always a plain ``str``.

    A ``str`` subclass (a ``str``-mixin Enum member, ``numpy.str_``) is its characters, as
    its equality and hash say: kept as the object, it would read ``Action.SHOWN`` wherever
    a copy of the state calls ``str()`` on it (the status page, worker snapshots) while
    ``/metrics`` shows ``shown``, and an overridden ``__hash__`` or ``__eq__`` would run
    inside the cap (in ``inferwatch.monitor()``: in the caller's code).

    >>> import enum
    >>> class Action(str, enum.Enum):
    ...     SHOWN = "shown"
    >>> text = _exact_text(Action.SHOWN)
    >>> text, type(text).__name__
    ('shown', 'str')
    """
    if value.__class__ is not str and isinstance(value, str):
        value = str.__str__(value)  # a plain copy of the characters; no method of theirs runs
    text = clean_label_value(value)
    # A __str__ may return a str subclass too.
    return text if text.__class__ is str else str.__str__(text)


class LabelCap:
    """Admits at most `limit` distinct values; the rest fold into ``__other__``."""

    __slots__ = ("_folded", "_lock", "_remembered", "_remembered_limit", "_seen", "limit",
                 "overflowed")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"label cap must be at least 1, got {limit}")
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.overflowed = 0
        # Hashes of the values folded (not the texts: up to 128 characters each).
        self._folded: set[int] = set()
        # Texts folded by fold_many, and the limit they were folded under (see there).
        self._remembered: set[str] = set()
        self._remembered_limit = limit

    def renew_lock(self) -> None:
        """A new lock in a forked child (one held at fork time would never be released)."""
        self._lock = threading.Lock()

    def reset_counts(self) -> None:
        """Forget the folds counted, keeping the values admitted (their series stay): a
        forked child counts the values it folds itself, not its parent's again.

        >>> cap = LabelCap(1)
        >>> cap.fold("a"), cap.fold("b")
        ('a', '__other__')
        >>> cap.reset_counts()
        >>> cap.overflowed, cap.fold("a"), cap.fold("b"), cap.overflowed
        (0, 'a', '__other__', 1)
        """
        self.overflowed = 0
        self._folded = set()
        self._remembered = set()

    def fold(self, value: object) -> str:
        if value.__class__ is str and value in self._seen:
            return value  # a value already admitted is its own clean text
        text = _exact_text(value)
        if text in self._seen:
            return text
        with self._lock:
            if text in self._seen:
                return text
            if len(self._seen) < self.limit and text != OTHER:
                self._seen.add(text)
                return text
            key = hash(text)
            if key not in self._folded:
                if len(self._folded) >= FOLDED_MEMORY:
                    self._folded = set()
                self._folded.add(key)
                self.overflowed += 1
            return OTHER

    def stored_as(self, value: object) -> str:
        """What `value` would be stored as, without admitting it or counting an overflow:
        itself when admitted already or while there is room, else ``__other__``. A lookup
        (a route asking which series a value is) must not fill the cap nor count a fold.

        >>> cap = LabelCap(1)
        >>> cap.stored_as("a"), cap.overflowed, cap.fold("a"), cap.stored_as("b")
        ('a', 0, 'a', '__other__')
        >>> cap.overflowed
        0
        """
        text = _exact_text(value)
        if text in self._seen:
            return text
        # Unlocked reads: a set's membership and length are each read whole under the GIL.
        return OTHER if text == OTHER or len(self._seen) >= self.limit else text

    def fold_many(self, values: list[object]) -> list[str]:
        """Each of `values` folded as :meth:`fold` folds it, for a model's own outputs and
        classes, which come back at every drain: a text folded here before is not handed to
        the cap again. The cap remembers FOLDED_MEMORY folded values and then starts over,
        so a classifier of 20,000 classes would count its folded classes again at every
        drain; up to REMEMBERED_FOLDS of them are remembered here, each counted once.

        >>> cap = LabelCap(1)
        >>> labels = [str(n) for n in range(3000)]
        >>> _ = cap.fold_many(labels); _ = cap.fold_many(labels)
        >>> cap.overflowed
        2999
        """
        if self._remembered_limit != self.limit:
            # A new limit (configure()) may admit values folded under the old one.
            self._remembered, self._remembered_limit = set(), self.limit
        remembered = self._remembered
        folded = []
        for value in values:
            if value.__class__ is str and value in remembered:
                folded.append(OTHER)
                continue
            label = self.fold(value)
            if label == OTHER and value.__class__ is str:
                if len(remembered) >= REMEMBERED_FOLDS:
                    remembered.clear()
                remembered.add(value)
            folded.append(label)
        return folded

    def fold_counts(self, counts: dict[str, float]) -> dict[str, float]:
        """Fold a dict of value -> count, conserving the total."""
        folded: dict[str, float] = {}
        for value, count in counts.items():
            key = self.fold(value)
            folded[key] = folded.get(key, 0) + count
        return folded
