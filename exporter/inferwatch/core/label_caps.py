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

__all__ = ["FOLDED_COLUMNS", "FOLDED_MEMORY", "FoldedColumns", "LabelCap", "clean_label_value"]

# Folded values a cap remembers, so that each counts once. Past this many the memory starts
# over: an unbounded label (ids, messages) keeps counting, and a cap stays small however
# many values it folds.
FOLDED_MEMORY = 1024
# Folded outputs and classes of one model remembered by LabelCap.fold_many: a model's own
# label set, bounded (a classifier of 65,536 classes counts each folded one once).
REMEMBERED_FOLDS = 1 << 16


class FoldedColumns(str):
    """The output that holds the values of a matrix's columns past the output cap, read in
    one pass (:meth:`LabelCap.fold_columns` counted them): it folds into ``__other__``
    as each of those columns would, and counts nothing more itself."""

    __slots__ = ()


FOLDED_COLUMNS = FoldedColumns(OTHER)


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

    __slots__ = ("_columns_counted", "_folded", "_lock", "_remembered", "_remembered_limit",
                 "_seen", "limit", "overflowed")

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
        # The matrix columns fold_columns counted, as ranges (first, past the last), one
        # per limit configure() set at most: each column in them was counted or has an
        # output of its own (and keeps it).
        self._columns_counted: list[tuple[int, int]] = []

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
        self._columns_counted = []

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

    def admitted(self, values: list[str]) -> bool:
        """Whether every one of `values` is admitted already, so that :meth:`fold_many`
        would give each back unchanged (and change nothing).

        >>> cap = LabelCap(1)
        >>> cap.admitted(["a"]), cap.fold("a"), cap.admitted(["a"]), cap.admitted(["a", "b"])
        (False, 'a', True, False)
        """
        seen = self._seen
        return all(value in seen for value in values)

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
            if (value.__class__ is str and value in remembered) or \
                    value.__class__ is FoldedColumns:
                folded.append(OTHER)
                continue
            label = self.fold(value)
            if label == OTHER and value.__class__ is str:
                if len(remembered) >= REMEMBERED_FOLDS:
                    remembered.clear()
                remembered.add(value)
            folded.append(label)
        return folded

    def fold_columns(self, width: int) -> list[int]:
        """The columns of a matrix of `width` columns, outputs ``"0"`` .. ``"width - 1"``
        folded in order by :meth:`fold_many`, that may keep outputs of their own: the first
        `limit`, and any later one admitted already. Every other column folds into
        ``__other__`` whatever else a drain folds (the first `limit` fill the cap if nothing
        else has), so those are counted here, by number, each once, and never handed to the
        cap one name at a time: a model's logits over a vocabulary of 200,000 tokens would
        otherwise cost a fold per column at every drain.

        >>> cap = LabelCap(2)
        >>> cap.fold_columns(5), cap.overflowed
        ([0, 1], 3)
        >>> cap.fold_columns(5), cap.fold_columns(6), cap.overflowed
        ([0, 1], [0, 1], 4)
        """
        with self._lock:
            first = min(width, self.limit)
            admitted = sorted(column for column in map(_column_number, self._seen)
                              if first <= column < width)
            # A limit changed by configure() moves where folding starts; a column counted
            # under the old one is not counted again.
            counted = self._columns_counted
            overlap = sum(max(0, min(width, high) - max(first, low)) for low, high in counted)
            self.overflowed += width - first - overlap - sum(
                not any(low <= column < high for low, high in counted) for column in admitted)
            self._columns_counted = _joined([*counted, (first, width)])
        return [*range(first), *admitted]

    def fold_counts(self, counts: dict[str, float]) -> dict[str, float]:
        """Fold a dict of value -> count, conserving the total."""
        folded: dict[str, float] = {}
        for value, count in counts.items():
            key = self.fold(value)
            folded[key] = folded.get(key, 0) + count
        return folded


def _column_number(text: str) -> int:
    """The column `text` names as a matrix's output (``"12"``), or -1 when it names none.

    >>> _column_number("12"), _column_number("012"), _column_number("price")
    (12, -1, -1)
    """
    if not text.isdecimal() or not text.isascii() or (text[0] == "0" and len(text) > 1):
        return -1
    return int(text)


def _joined(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`ranges` of columns as the fewest ranges that hold the same columns.

    >>> _joined([(20, 90), (5, 7), (3, 20)])
    [(3, 90)]
    """
    joined: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if joined and low <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], high))
        else:
            joined.append((low, high))
    return joined
