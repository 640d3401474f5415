"""Huge batches of text labels held as Python objects, joined with their outcomes at C speed.

scikit-learn's ``predict`` returns its classes' own array: for a model fit on a pandas column
of text (an ``object`` column, pandas' default), an array of Python strings. A pandas Series
of text and a list of ``str`` are read the same way. Under ``request_id=``, the general path
read such a batch's labels one Python call per row (each checked, made text, cut, sized):
536 ms for a million rows, all of it in one hold of the monitor's lock, which a scrape or a
``record_outcome`` caller waited out.

Labels repeat: a classifier has a few classes. So the join's rows are read here once per
distinct value (a set of them, built in C), and each kept row becomes the index of its
label's text (an :class:`~inferwatch.core.array_rows.ArrayRows` with names), made text only
when an outcome comes. The rows kept, their text and their bytes are those the general path
keeps (``tests/test_object_labels.py`` compares the two).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from inferwatch.core.array_rows import MAX_LABEL_CHARS, ArrayRows
from inferwatch.core.outcomes import kept_label, row_bytes
from inferwatch.core.result_arrays import is_missing


def text_label_rows(labels: Sequence[object], row_cap: Callable[[int], int]
                    ) -> ArrayRows | None:
    """The rows a join keeps of `labels`, a 1-D array (or list) of Python objects that holds text
    (``str`` or ``bytes``) and missing values (None, NaN, ``pd.NA``) only, at least one of
    them text, none longer than 256 characters: its first rows, as many as
    ``row_cap(least bytes a row holds)`` allows, each its label's text (bytes decoded), or
    None for a missing value. None, keeping nothing, for any other content, which the
    general path reads row by row.

    >>> rows = text_label_rows(np.array(["cat", None, b"dog", "cat"], dtype=object),
    ...                        lambda least: 3)
    >>> tuple(rows), len(rows)
    (('cat', None, 'dog'), 3)
    >>> text_label_rows(np.array(["cat", 1], dtype=object), lambda least: 3) is None
    True
    """
    try:
        # 1 and True are one key of a set, but any number makes the whole column no
        # text labels, so the set tells that as well as a pass over every row.
        distinct = set(labels)
    except TypeError:  # unhashable rows (a list each), or pd.NA compared with a label
        return None
    text_of: dict[object, str | None] = {}
    for value in distinct:
        if isinstance(value, (str, bytes)):
            if len(value) > MAX_LABEL_CHARS:
                # A declared class (a category) is joined whole where it is the row's
                # class, cut where it is not: the general path tells which.
                return None
            text_of[value] = kept_label(value)
        elif value is None or is_missing(value):
            text_of[value] = None
        else:
            return None
    texts = list(text_of.values())
    if all(text is None for text in texts):
        return None  # a column without a label joins nothing
    cap = min(len(labels), row_cap(min(map(row_bytes, texts))))
    position = {value: index for index, value in enumerate(text_of)}
    indices = np.fromiter(map(position.__getitem__, labels[:cap]), dtype=np.int64,
                          count=cap)
    return _rows_by_name(indices, texts)


def category_label_rows(codes: np.ndarray, categories: Sequence[object],
                        row_cap: Callable[[int], int]) -> ArrayRows | None:
    """:func:`text_label_rows` of a pandas categorical column, read off its `codes` (-1 for
    a missing row) and `categories`: no pass over its rows in Python at all. None when a
    category is no text of at most 256 characters, or no row has a category.

    >>> rows = category_label_rows(np.array([1, -1, 0], dtype=np.int8), ["cat", "dog"],
    ...                            lambda least: 10)
    >>> tuple(rows)
    ('dog', None, 'cat')
    """
    if not len(categories) or not all(isinstance(value, (str, bytes)) and
                                      len(value) <= MAX_LABEL_CHARS for value in categories):
        return None
    missing = codes < 0
    if missing.all():
        return None  # no row has a label: nothing to join
    texts: list[str | None] = [kept_label(value) for value in categories]
    least = min(map(row_bytes, texts))
    if missing.any():  # None, smaller than any text, lets more rows fit
        least = min(least, row_bytes(None))
    cap = min(codes.shape[0], row_cap(least))
    # Index -1 (a missing row) is the None appended last.
    indices = codes[:cap].astype(np.int64)
    indices[indices < 0] = len(texts)
    return _rows_by_name(indices, [*texts, None])


def _rows_by_name(indices: np.ndarray, texts: list[str | None]) -> ArrayRows:
    """Rows of indices into `texts` as the indices of the names they use (-1 for None):
    the entry keeps alive only the labels its rows hold."""
    used = np.flatnonzero(np.bincount(indices, minlength=len(texts)))
    renumbered = np.full(len(texts), -1, dtype=np.int32)
    names: list[str] = []
    for index in used.tolist():
        text = texts[index]
        if text is not None:
            renumbered[index] = len(names)
            names.append(text)
    return ArrayRows((renumbered[indices],), names=names, copy=False)

