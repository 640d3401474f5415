"""Huge batches of text labels held as Python objects, joined with their outcomes at C speed.

scikit-learn's ``predict`` returns its classes' own array: for a model fit on a pandas column
of text (an ``object`` column, pandas' default), an array of Python strings. A pandas Series
of text and a list of ``str`` are read the same way. Under ``request_id=``, the general path
read such a batch's labels one Python call per row (each checked, made text, cut, sized):
536 ms for a million rows, all of it in one hold of the monitor's lock, which a scrape or a
``record_outcome`` caller waited out.

Labels repeat: a classifier has a few classes. So the join's rows are read here once per
distinct value (a set of them, built in C; a categorical column's codes; pyarrow's
dictionary encoding of a column Arrow holds: pandas 3's text, nullable integers, polars and
pyarrow columns), and each kept row becomes the index of its label's text (an
:class:`~inferwatch.core.array_rows.ArrayRows` with names), made text only when an outcome
comes. The rows kept, their text and their bytes are those the general path keeps
(``tests/test_object_labels.py`` compares the two).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from inferwatch.core.array_rows import MAX_LABEL_CHARS, ArrayRows
from inferwatch.core.outcome_labels import kept_label
from inferwatch.core.outcome_sizes import row_bytes
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


@functools.cache
def pyarrow_module() -> Any:
    """pyarrow, or None where it is not installed: pandas runs without it (its text is then
    Python objects, which the object readers take), and a drain of pandas columns must not
    fail for want of it. Looked for once: a missing module is searched for on every import.

    >>> pyarrow_module().__name__
    'pyarrow'
    """
    try:
        import pyarrow
        import pyarrow.compute  # the counts below use it
    except ImportError:
        return None
    return pyarrow


def arrow_text_counts(columns: Sequence[Any]) -> tuple[dict[str | None, int], list[int]] | None:
    """({label: rows}, each column's rows) of `columns` (one call's each), columns of text
    that Arrow holds (pandas' ``string[pyarrow]`` and pandas 3's text, an ArrowDtype string,
    a polars ``String`` Series, a pyarrow text array), labels in the order their rows first
    name them, a missing row counted under None: pyarrow's count in C++, where each row
    made a Python string costs 80 ns. None when any column is of another kind.

    >>> import pandas as pd
    >>> arrow_text_counts([pd.Series(["b", "a", None], dtype="string[pyarrow]"),
    ...                    pd.Series(["b"], dtype="string[pyarrow]")])
    ({'b': 2, 'a': 1, None: 1}, [3, 1])
    >>> arrow_text_counts([pd.Series(["b"], dtype=object)]) is None
    True
    """
    found = _joined_text(columns)
    if found is None:
        return None  # another kind, or text and large text: read as Python strings
    joined, lengths = found
    counted = pyarrow_module().compute.value_counts(joined)
    return dict(zip(counted.field(0).to_pylist(), counted.field(1).to_pylist())), lengths


def arrow_text_rows(columns: Sequence[Any]) -> tuple[list[str | None], list[int]] | None:
    """Every row of `columns` (one call's each), columns of text that Arrow holds (as
    :func:`arrow_text_counts` takes them), as one list of Python strings, a missing row
    None, and each column's rows: one conversion by pyarrow for them all, where each
    column's ``to_numpy()`` cost pandas about 3 us. None when any column is of another
    kind.

    >>> import pandas as pd
    >>> arrow_text_rows([pd.Series(["b", None], dtype="string[pyarrow]"),
    ...                  pd.Series(["a"], dtype="string[pyarrow]")])
    (['b', None, 'a'], [2, 1])
    >>> arrow_text_rows([pd.Series(["b"], dtype=object)]) is None
    True
    """
    found = _joined_text(columns)
    if found is None:
        return None
    joined, lengths = found
    # An array of Python objects (None where missing) made in C++: its list costs a tenth
    # of to_pylist()'s.
    return joined.to_numpy(zero_copy_only=False).tolist(), lengths


def _joined_text(columns: Sequence[Any]) -> tuple[Any, list[int]] | None:
    """The text that `columns` hold as one Arrow ``ChunkedArray`` of one type, and each
    column's rows; None when any column holds something else, none is given, or pyarrow
    is not installed."""
    pa = pyarrow_module()
    if pa is None or not columns:
        return None
    found = _text_chunks(pa, columns)
    return None if found is None else (pa.chunked_array(found[0]), found[1])


def _text_chunks(pa: Any, columns: Sequence[Any]) -> tuple[list, list[int]] | None:
    """The Arrow chunks of text that `columns` hold, all of one type, and each column's
    rows; None when any column holds something else."""
    arrows = _pandas_arrow_texts(columns)
    if arrows is None:
        joined = _polars_joined_text(columns)
        if joined is not None:
            return joined
        arrows = []
        for column in columns:
            arrow = _arrow_text(column)
            if arrow is None:
                return None
            arrows.append(arrow)
    chunks = []
    for arrow in arrows:
        chunks.extend(arrow.chunks if isinstance(arrow, pa.ChunkedArray) else (arrow,))
    # One type (text and large text are not counted together), which is text: the batched
    # look checked the first column only.
    if not chunks or len({chunk.type for chunk in chunks}) != 1 or \
            _arrow_text(chunks[0]) is None:
        return None
    return chunks, [len(arrow) for arrow in arrows]


def _polars_joined_text(columns: Sequence[Any]) -> tuple[list, list[int]] | None:
    """:func:`_text_chunks` of many polars ``String`` Series: joined by polars first (about
    0.1 us a Series) and converted once, where each Series' own ``to_arrow()`` cost 2 us.
    None for anything else."""
    first = columns[0]
    if not first.__class__.__module__.startswith("polars") or \
            len(set(map(type, columns))) != 1:
        return None
    # The first one's dtype first: polars makes an Enum's dtype anew at each look (about
    # 7 us), which a drain of Enums must not pay once a call.
    if _arrow_text(first) is None or len({column.dtype for column in columns}) != 1:
        return None
    try:
        arrow = sys.modules["polars"].concat(columns, rechunk=False).to_arrow()
    except Exception:  # a polars that will not join them: each Series is read alone
        return None
    chunks = arrow.chunks if hasattr(arrow, "chunks") else [arrow]
    if not chunks or _arrow_text(chunks[0]) is None:
        return None
    return chunks, [len(column) for column in columns]


def _pandas_arrow_texts(columns: Sequence[Any]) -> list | None:
    """The Arrow data of many pandas Series (or pandas' Arrow-backed arrays, a Series'
    ``values``) whose arrays are all of one class, the first one's dtype Arrow-held text by
    :func:`_arrow_text`'s rule (each checked at its chunks' type by the caller): each
    column's dtype and storage looked at once, not per call (about 2 us a column). None
    for anything else, which is looked at column by column."""
    first = columns[0]
    if not first.__class__.__module__.startswith("pandas"):
        return None
    if _arrow_text(first) is None:  # first: a Series of numbers makes an array when asked
        return None
    try:
        arrays = columns if hasattr(first.__class__, "__arrow_array__") else \
            [column.array for column in columns]
    except AttributeError:
        return None
    if len(set(map(type, arrays))) != 1:
        return None
    return [array.__arrow_array__() for array in arrays]


def _arrow_text(column: Any) -> Any:
    """The Arrow array of text that `column` holds, or None."""
    import pyarrow as pa

    cls = column.__class__
    module = cls.__module__
    if module.startswith("pyarrow"):
        arrow = column
    elif module.startswith("polars"):
        if str(column.dtype) not in ("String", "Utf8"):
            return None
        arrow = column.to_arrow()
    else:
        dtype = column.dtype
        if getattr(dtype, "storage", None) != "pyarrow" and \
                type(dtype).__name__ != "ArrowDtype":
            return None
        # A Series through its array; pandas' Arrow-backed array (``Series.values``) itself.
        values = column if hasattr(cls, "__arrow_array__") else column.array
        arrow = getattr(values, "__arrow_array__", None)
        if arrow is None:
            return None
        arrow = arrow()
    arrow_type = getattr(arrow, "type", None)
    if arrow_type is None or not (pa.types.is_string(arrow_type) or
                                  pa.types.is_large_string(arrow_type) or
                                  getattr(pa.types, "is_string_view", pa.types.is_string)(
                                      arrow_type)):
        return None
    return arrow


def arrow_holds_labels(arrow_type: Any) -> bool:
    """Whether a column of this Arrow type holds labels :func:`arrow_label_rows` reads:
    text, integers or bools.

    >>> import pyarrow as pa
    >>> arrow_holds_labels(pa.string()), arrow_holds_labels(pa.float64())
    (True, False)
    """
    import pyarrow as pa

    return any(is_label(arrow_type) for is_label in (
        pa.types.is_string, pa.types.is_large_string, pa.types.is_integer,
        pa.types.is_boolean, getattr(pa.types, "is_string_view", pa.types.is_string)))


def arrow_label_rows(rows: int, nulls: int, head: Callable[[int], Any],
                     row_cap: Callable[[int], int]) -> ArrayRows | None:
    """:func:`text_label_rows` of a column of text, integer or bool labels held by Arrow
    (pandas 3's text, a ``string[pyarrow]``, nullable ``Int64`` or ``boolean`` Series, a
    polars ``String``, integer or bool Series, a pyarrow array) of `rows` rows, `nulls` of
    them missing: its first rows, ``head(n)`` as an Arrow array, encoded by pyarrow as each
    distinct label and the index of each row's (in C++: no Python object a row). None for
    an array of another type, a text longer than 256 characters, or a column without any
    label (the general path reads those).

    >>> import pyarrow as pa
    >>> column = pa.array(["cat", None, "dog", "cat"])
    >>> tuple(arrow_label_rows(4, 1, lambda n: column.slice(0, n), lambda least: 3))
    ('cat', None, 'dog')
    >>> tuple(arrow_label_rows(3, 1, lambda n: pa.array([7, None, 70001]), lambda least: 3))
    ('7', None, '70001')
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if nulls >= rows:
        return None  # no row has a label: nothing to join
    # No row holds less than this: the rows past it could never be kept.
    most = min(rows, row_cap(row_bytes(None) if nulls else row_bytes("")))
    column = head(most)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not arrow_holds_labels(column.type):
        return None
    encoded = pc.dictionary_encode(column)
    distinct = encoded.dictionary.to_pylist()
    if any(isinstance(label, str) and len(label) > MAX_LABEL_CHARS for label in distinct):
        return None  # as in text_label_rows: the general path tells how it is joined
    texts: list[str | None] = [kept_label(label) for label in distinct]
    sizes = [row_bytes(text) for text in texts]
    if encoded.null_count:
        sizes.append(row_bytes(None))
    cap = min(most, row_cap(min(sizes)))
    indices = pc.fill_null(encoded.indices.slice(0, cap), len(texts))
    return _rows_by_name(np.asarray(indices, dtype=np.int64), [*texts, None])

