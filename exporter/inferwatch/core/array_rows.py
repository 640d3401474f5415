"""The rows of a huge batch that wait for their outcome, kept as arrays until one comes.

A batch of millions of rows called with ``request_id=`` keeps its first rows (as many as
the outcome cache's bytes allow, about 580,000 one-character labels) for the ground-truth
join. Made Python strings and floats in the drain, they held the monitor's lock for 11 ms
of a 10-million-row drain, which a scrape or a ``record_outcome`` caller waited out. Kept as
a copy of their array slice (8 bytes a row), they become Python objects only when an
outcome judges them, outside every lock the drain takes.

The cache bounds an entry by what its rows hold once made objects (:func:`row_sizes`, the
sizes ``sys.getsizeof`` gives), so an entry of :class:`ArrayRows` keeps exactly the rows,
and counts exactly the bytes, that a tuple of the same rows would.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np

from inferwatch.core.prediction_classes import labels_and_lengths

_EMPTY_STR_BYTES = sys.getsizeof("")
# A non-ASCII str's header by its characters' width (1, 2 or 4 bytes), measured on fresh
# strings of two characters (one character's are shared singletons): ``sys.getsizeof`` of
# text adds its UTF-8 form once anything has asked for it (pickle, sqlite), so the same
# label sized twice could differ.
_TEXT_HEADERS = {width: sys.getsizeof(chr(code) * 2) - 3 * width
                 for width, code in ((1, 0xE9), (2, 0x100), (4, 0x10000))}
_FLOAT_BYTES = sys.getsizeof(0.0)
_EMPTY_TUPLE_BYTES = sys.getsizeof(())
_TUPLE_SLOT_BYTES = 8
# A label is joined as its first this many characters (outcome_labels.MAX_JOINED_LABEL_CHARS).
MAX_LABEL_CHARS = 256
# Rows of at most this many names are counted a name at a time (a binary classifier's).
_FEW_NAMES = 8
# A magnitude's digits are one more than the powers of ten it reaches.
_POWERS_OF_TEN = [10**k for k in range(1, 20)]


class ArrayRows(Sequence):
    """Rows of one call's result, read as the join reads them: integer or text labels as
    their text (cut to 256 characters), several label columns (a multi-output classifier's
    table) as a tuple of their texts a row; the index of each row's class among `names` as
    that name (-1: None, a row without a class); float values as floats (an infinity as
    NaN, a row without a finite value); several float outputs as a tuple of floats a row.
    Copies, so that the call's own array (and the millions of rows past these) is not
    held; or views with ``copy=False``, until :meth:`own` copies them.

    >>> labels = ArrayRows((np.array([7, -3, 12]),), labels=True)
    >>> len(labels), labels[1], tuple(labels), labels[1:].row_sizes().tolist()
    (3, '-3', ('7', '-3', '12'), [51, 51])
    >>> tuple(ArrayRows((np.array([0.5, 1.5]), np.array([10.0, 20.0]))))
    ((0.5, 10.0), (1.5, 20.0))
    >>> tuple(ArrayRows((np.array([1, -1, 0], dtype=np.int8),), names=["no", "yes"]))
    ('yes', None, 'no')
    >>> table = ArrayRows((np.array([1, 0]), np.array([True, False]), np.array(["a", "b"])),
    ...                   labels=True)
    >>> table[1], int(table.row_sizes()[0]) == sys.getsizeof(("1", "True", "a")) + sum(
    ...     map(sys.getsizeof, ("1", "True", "a")))
    (('0', 'False', 'b'), True)
    >>> texts = ArrayRows((np.array(["cat", "éa"]),), labels=True)
    >>> tuple(texts), texts.row_sizes().tolist() == [sys.getsizeof("cat"), text_bytes("éa")]
    (('cat', 'éa'), True)
    """

    __slots__ = ("_columns", "_labels", "_names", "_sizes")

    def __init__(self, columns: tuple[np.ndarray, ...], labels: bool = False, *,
                 names: Sequence[str] | None = None, copy: bool = True) -> None:
        # copy=False: views of the call's arrays, which the drain copies (own()) once it
        # has let go of the monitor's lock; the call holds them until then anyway.
        self._columns = tuple(np.array(column, copy=True) for column in columns) if copy \
            else tuple(columns)
        self._labels = labels
        # With names: one column of each row's index into them, -1 for a row with none.
        self._names = None if names is None else tuple(names)
        self._sizes: np.ndarray | None = None  # read twice when the cache fits the rows

    def _name_sizes(self) -> np.ndarray:
        """The size of None (a row without a name), then of each name, as int64."""
        return np.array([_object_size(None), *map(_object_size, self._names or ())],
                        dtype=np.int64)

    def own(self) -> None:
        """Copy the rows off the call's arrays they still view (made with ``copy=False``),
        so that the entry holds only its own rows. A join reading them meanwhile reads the
        same rows either way."""
        if any(column.base is not None for column in self._columns):
            self._columns = tuple(np.array(column, copy=True) for column in self._columns)

    def __len__(self) -> int:
        return self._columns[0].shape[0]

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> ArrayRows: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):  # copied: a short slice keeps no more than itself
            part = ArrayRows(tuple(column[index] for column in self._columns), self._labels,
                             names=self._names)
            if self._sizes is not None:  # read once: the cache sizes, then cuts, then sizes
                part._sizes = self._sizes[index]
            return part
        cells = [column[index].item() for column in self._columns]
        if self._names is not None:
            return None if cells[0] < 0 else self._names[cells[0]]
        if self._labels:
            if len(cells) > 1:
                return tuple(str(cell)[:MAX_LABEL_CHARS] for cell in cells)
            return str(cells[0])[:MAX_LABEL_CHARS]
        # Integer values (a regressor's whole numbers) are joined as the floats they read as.
        cells = [float(cell) if math.isfinite(cell) else math.nan for cell in cells]
        return cells[0] if len(cells) == 1 else tuple(cells)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ArrayRows):
            other = other.rows()
        return isinstance(other, (tuple, list)) and tuple(self.rows()) == tuple(other)

    __hash__ = None  # type: ignore[assignment]  # equal to a tuple, so never a key

    def __repr__(self) -> str:
        return f"ArrayRows({len(self)} rows)"

    def rows(self) -> list:
        """Every row as the Python object a tuple of the rows would hold."""
        if self._names is not None:  # index -1, past the names, is a row without one
            return np.array([*self._names, None], dtype=object)[self._columns[0]].tolist()
        if self._labels and len(self._columns) > 1:
            return list(zip(*map(_label_texts, self._columns)))
        if self._labels and self._columns[0].dtype.kind == "U":
            return _cut_texts(self._columns[0])
        if self._labels:
            return labels_and_lengths(self._columns[0])[0]
        columns = [finite_or_nan(column.astype(np.float64, copy=False)).tolist()
                   for column in self._columns]
        return columns[0] if len(columns) == 1 else list(zip(*columns))

    def held_bytes(self) -> int:
        """What the rows hold once made objects: ``row_sizes().sum()``."""
        if self._sizes is None and self._names is not None:
            indices, sizes = self._columns[0], self._name_sizes()
            if len(self._names) <= _FEW_NAMES:  # a pass per name beats bincount's copy
                counts = [np.count_nonzero(indices == index)
                          for index in range(-1, len(self._names))]
                return int(np.dot(counts, sizes))
            counts = np.bincount(indices.astype(np.int64) + 1, minlength=len(sizes))
            return int(counts @ sizes)
        if self._sizes is None and self._labels and len(self._columns) == 1 and \
                self._columns[0].dtype.kind != "U":
            return _EMPTY_STR_BYTES * len(self) + labels_length(self._columns[0])
        return int(self.row_sizes().sum())

    def row_sizes(self) -> np.ndarray:
        """Each row's ``sys.getsizeof`` once made an object (a tuple's items included), as
        int64 (read-only), read off the arrays once."""
        if self._sizes is None:
            if self._names is not None:
                self._sizes = self._name_sizes()[self._columns[0].astype(np.int64) + 1]
            elif self._labels and len(self._columns) > 1:  # a tuple of texts a row
                self._sizes = np.full(len(self), _EMPTY_TUPLE_BYTES + len(self._columns)
                                      * _TUPLE_SLOT_BYTES, dtype=np.int64)
                for column in self._columns:
                    self._sizes += _label_sizes(column)
            elif self._labels and self._columns[0].dtype.kind == "U":
                self._sizes = _text_sizes(self._columns[0])
            elif self._labels:
                self._sizes = label_lengths(self._columns[0]) + _EMPTY_STR_BYTES
            else:
                width = len(self._columns)
                each = _FLOAT_BYTES if width == 1 else \
                    _EMPTY_TUPLE_BYTES + width * (_TUPLE_SLOT_BYTES + _FLOAT_BYTES)
                self._sizes = np.full(len(self), each, dtype=np.int64)
            self._sizes.flags.writeable = False
        return self._sizes


def _object_size(value: object) -> int:
    """``sys.getsizeof`` of text or None as the cache sizes them (:func:`text_bytes`)."""
    if value.__class__ is str:
        return text_bytes(value)
    return sys.getsizeof(value)


def text_bytes(text: str) -> int:
    """``sys.getsizeof(text)`` of a fresh copy of `text`: without the UTF-8 form that a
    non-ASCII str keeps once asked for it, so a label is sized alike however it was made.

    >>> all(text_bytes(t) == sys.getsizeof(t) for t in ("", "cat", chr(233) * 3, chr(0x3b1),
    ...                                                 chr(0x1F600) * 2))
    True
    >>> import pickle
    >>> cached = chr(233) + "t"; _ = pickle.dumps(cached)  # keeps its UTF-8 form
    >>> sys.getsizeof(cached) > text_bytes(cached) == sys.getsizeof(chr(233) + "t")
    True
    """
    if text.isascii():
        return _EMPTY_STR_BYTES + len(text)
    widest = max(map(ord, text))
    width = 1 if widest < 0x100 else 2 if widest < 0x10000 else 4
    return _TEXT_HEADERS[width] + (len(text) + 1) * width


_BOOL_TEXTS = np.array(["False", "True"], dtype=object)
_BOOL_SIZES = np.array([sys.getsizeof("False"), sys.getsizeof("True")], dtype=np.int64)


def _label_texts(column: np.ndarray) -> list[str]:
    """One column of a label table as the join keeps its cells: text cut to
    :data:`MAX_LABEL_CHARS` characters, a bool as "True" or "False", an integer as its
    text."""
    kind = column.dtype.kind
    if kind == "U":
        return _cut_texts(column)
    if kind == "b":
        return _BOOL_TEXTS[column.astype(np.int8)].tolist()
    return labels_and_lengths(column)[0]


def _label_sizes(column: np.ndarray) -> np.ndarray:
    """Each cell's ``sys.getsizeof`` once :func:`_label_texts` made it text, as int64."""
    kind = column.dtype.kind
    if kind == "U":
        return _text_sizes(column)
    if kind == "b":
        return _BOOL_SIZES[column.astype(np.int8)]
    return label_lengths(column) + _EMPTY_STR_BYTES


def _cut_texts(texts: np.ndarray) -> list[str]:
    """A numpy text array's labels as the join keeps them: each cut to
    :data:`MAX_LABEL_CHARS` characters."""
    if texts.dtype.itemsize // 4 <= MAX_LABEL_CHARS:
        return texts.tolist()
    return [text[:MAX_LABEL_CHARS] for text in texts.tolist()]


def _text_sizes(texts: np.ndarray) -> np.ndarray:
    """Each label's ``sys.getsizeof`` once made a ``str`` (cut as :func:`_cut_texts` cuts
    it), read off the array where every character is ASCII, else text by text."""
    texts = np.ascontiguousarray(texts)  # a table's column is a strided view
    if not texts.size or int(texts.view(np.uint32).max()) < 128:
        lengths = np.char.str_len(texts).astype(np.int64)
        np.minimum(lengths, MAX_LABEL_CHARS, out=lengths)
        return lengths + _EMPTY_STR_BYTES
    return np.fromiter(map(_object_size, _cut_texts(texts)), dtype=np.int64,
                       count=texts.shape[0])


def finite_or_nan(values: np.ndarray) -> np.ndarray:
    """`values` with each infinity read as NaN, as the join reads a row without a finite
    value (the drain counts it as ``inf``, the joiner as a row it cannot judge).

    >>> finite_or_nan(np.array([1.0, np.inf, -np.inf])).tolist()
    [1.0, nan, nan]
    """
    infinite = np.isinf(values)
    return np.where(infinite, np.nan, values) if infinite.any() else values


def label_lengths(labels: np.ndarray) -> np.ndarray:
    """The length of each integer label's text (``len(str(v))``), as int64: a pass per
    power of ten the largest magnitude reaches (none for labels 0 to 9).

    >>> label_lengths(np.array([0, 9, -10, 12345, -(2**63)])).tolist()
    [1, 1, 3, 5, 20]
    >>> label_lengths(np.array([2**64 - 1], dtype=np.uint64)).tolist()
    [20]
    """
    lengths = np.ones(labels.shape[0], dtype=np.int64)
    for longer in _longer_than_one(labels):
        lengths += longer
    return lengths


def labels_length(labels: np.ndarray) -> int:
    """``sum(len(str(v)) for v in labels)``, counted without an array of each length.

    >>> labels_length(np.array([0, 9, -10, 12345])), labels_length(np.array([3] * 1000))
    (10, 1000)
    """
    return labels.shape[0] + sum(int(np.count_nonzero(longer))
                                 for longer in _longer_than_one(labels))


def _longer_than_one(labels: np.ndarray) -> Iterator[np.ndarray]:
    """Masks whose sum over them is each label's length less one: its minus sign, then
    each power of ten its magnitude reaches."""
    if not labels.size:
        return
    low, high = int(labels.min()), int(labels.max())
    magnitude = labels
    if low < 0:
        signed = labels.astype(np.int64, copy=False)
        negative = signed < 0
        yield negative
        # -(v + 1) fits an int64 for every v, -v does not for the smallest.
        magnitude = np.where(negative, -(signed + 1), signed).astype(np.uint64)
        magnitude += negative
    for power in _POWERS_OF_TEN:
        if power > max(high, -low):
            return
        yield magnitude >= power

