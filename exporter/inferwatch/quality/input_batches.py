"""How a drain's inputs, one per call, are grouped into the batches the checker reads at
once: every call's input that reads as rows of the reference's features (a 2-D or 1-D
numeric array, a pandas or polars DataFrame of exactly those columns, a JSON array of rows,
a JSON object of columns, row dicts, sparse rows) joins one array, or one list of row dicts,
so that a drain of a thousand one-row calls is checked once, not a thousand times (about
30 us a call, checked alone). What cannot join is a batch of its own, and counts as it
would alone (``empty_batch``, ``wrong_width``, ``wrong_shape``).

>>> import numpy as np
>>> [b.tolist() for b in batches([np.zeros((1, 2)), np.ones((1, 2))], 2)]
[[[0.0, 0.0], [1.0, 1.0]]]
"""

from __future__ import annotations

import importlib
import itertools
import operator
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from inferwatch import faults
from inferwatch.frame_joins import joined_frame, same_columns
from inferwatch.frame_names import default_frame_names
from inferwatch.frame_values import FrameValues
from inferwatch.quality.batch_values import PLAIN_SCALARS, is_row, named_series_row
from inferwatch.quality.plain_arrays import plain_array
from inferwatch.quality.sparse_rows import is_sparse

_ARRAY_ONLY = {np.ndarray}
# Data quality depends only on the catalogue and fault counting (tests/test_walls.py), so it
# names its own attrgetters rather than import the drain's.
SHAPE_OF, DTYPE_OF = operator.attrgetter("shape"), operator.attrgetter("dtype")


def batches(inputs: Sequence[Any], width: int | None = None,
             names: Sequence[str] | None = None) -> list[Any]:
    """Group per-call inputs: row dicts into one list, 2-D arrays of the reference's `width`
    (None: of the first array's) into one array, and pandas DataFrames that are such an
    array (:func:`_frame_as_rows`, given the reference's feature `names`) with them.

    A dict is a row by the checker's own rule (:func:`~inferwatch.quality.batch_values.is_row`);
    an empty dict or a dict of columns is a batch of its own. So is an array or sparse
    matrix without rows or of another width: empty_batch and wrong_width count calls, and
    stacked they would count once (or, empty beside others, not at all).

    >>> [b.shape for b in batches([np.zeros((1, 3)), [[1.0, 2.0, 3.0]]], 3)]
    [(2, 3)]
    >>> [getattr(b, "shape", b) for b in batches([{"a": 1.0}, np.zeros(0)], 3)]
    [(0,), [{'a': 1.0}]]
    """
    kinds = set(map(type, inputs))
    if kinds == _ARRAY_ONLY:
        # The usual drain: every call's input a 2-D array of the reference's width and a
        # numeric kind, told by a look per distinct shape and dtype rather than per input.
        shapes = set(map(SHAPE_OF, inputs))
        first = inputs[0].shape
        wide = width if width is not None else (first[1] if len(first) == 2 else -1)
        dtypes = set(map(DTYPE_OF, inputs))
        # One dtype only: stacking bools with floats makes True the number 1.0 (a seen
        # category "1" where alone it is "True"), and int64 with floats rounds codes past
        # 2**53, so a call's values would be read by what else its drain held. Arrays of
        # Python objects (a text category beside numbers) keep each cell's object, stacked.
        if all(_stackable(shape, wide) for shape in shapes) and len(dtypes) == 1 and \
                next(iter(dtypes)).kind in "fiubO":
            return [inputs[0] if len(inputs) == 1 else np.concatenate(inputs)]
        if width and len(dtypes) == 1 and next(iter(dtypes)).kind in "fiubO" and all(
                len(shape) == 1 and shape[0] and (width == 1 or shape[0] == width)
                for shape in shapes):
            # 1-D arrays: each one row of features (with one feature, its column).
            return [np.concatenate(inputs).reshape(-1, width)]
    try:
        stacked = _stacked_alike(inputs, kinds, width, names)
    except Exception:  # a list another thread changed meanwhile: read call by call below
        stacked = None
    if stacked is not None:
        return [stacked]
    batches: list[Any] = []
    rows: list[dict] = []
    arrays: dict[np.dtype, list[np.ndarray]] = {}  # stacked by dtype, as above
    sparse: dict[Any, list[Any]] = {}
    array_width = sparse_width = width
    frame_columns: list = []  # the column indexes of frames already read as rows
    # Captured frames of other columns than the reference's (a renamed feature), grouped by
    # their columns and dtype: one frame a group, not one of 30 us built per call and 40 us
    # checked.
    other_frames: dict[tuple, list[FrameValues]] = {}
    column_dicts: dict[tuple, list[dict]] = {}
    # Told once a drain: a look per call costs every row dict of the drain.
    has_series = names is not None and any(map(_is_pandas_series_class, kinds))
    for item in inputs:
        if isinstance(item, np.ndarray) and item.__class__ is not np.ndarray:
            item = plain_array(item)
        elif item.__class__ is FrameValues:  # a one-block frame, captured as its values
            values = None if names is None else _frame_as_rows(item, names, frame_columns)
            if values is None:
                key = _frame_group(item)
                if key is not None:
                    other_frames.setdefault(key, []).append(item)
                    continue
            item = item.frame() if values is None else values
        elif names is not None and _is_pandas_frame(item):
            values = _frame_as_rows(item, names, frame_columns)
            if values is None:
                other_frames.setdefault(_PANDAS, []).append(item)
                continue
            item = values
        elif names is not None and _is_polars_frame(item):
            values = _polars_frame_as_rows(item, names)
            if values is None:
                other_frames.setdefault(_POLARS, []).append(item)
                continue
            item = values
        elif item.__class__ is list and item and item[0].__class__ is not dict:
            item = _numeric_rows(item)
        elif has_series and _is_pandas_series(item):
            row = named_series_row(item, names)
            if row is not None:  # df.iloc[i]: a row dict by its labels, among the others
                item = row
        if item.__class__ is np.ndarray and item.ndim == 1 and width and item.shape[0] and \
                (width == 1 or item.shape[0] == width):
            # One row of features (with one feature, that feature's column), as the checker
            # reads a 1-D array: stacked with the others, not checked alone (33 us a call).
            item = item.reshape(-1, 1) if width == 1 else item.reshape(1, -1)
        if item.__class__ is dict and names is not None and len(item) == len(names):
            columns = _columns_as_rows(item, names)
            if columns is not None:
                item = columns
        if isinstance(item, dict) and _is_row(item) and _names_once(item):
            rows.append(item)
        elif item.__class__ is dict and names is not None and \
                (keys := _list_columns_keys(item)) is not None:
            # A JSON object of arrays holding text beside numbers: joined with the drain's
            # others of the same keys, list by list (72 us a call, checked alone).
            column_dicts.setdefault(keys, []).append(item)
        elif item.__class__ is list and item and _rows_alone(item):
            # A list of row dicts (a JSON array of records): its rows join the other calls'
            # rows, as a call's one row dict does, not checked alone (34 us a call).
            rows.extend(item)
        elif isinstance(item, np.ndarray) and item.ndim == 2 and item.dtype.kind in "fiubO" and \
                _stackable(item.shape, item.shape[1] if array_width is None else array_width):
            array_width = item.shape[1]
            arrays.setdefault(item.dtype, []).append(item)
        elif is_sparse(item) and _stackable(
                item.shape, item.shape[1] if sparse_width is None else sparse_width):
            sparse_width = item.shape[1]
            sparse.setdefault(getattr(item, "dtype", None), []).append(item)
        else:
            batches.append(item)
    if rows:
        batches.append(rows)
    for dicts in column_dicts.values():
        batches.append(dicts[0] if len(dicts) == 1 else _joined_list_columns(dicts))
    for key, frames in other_frames.items():
        batches.extend(_pandas_frames_joined(frames) if key is _PANDAS else
                       _polars_frames_joined(frames) if key is _POLARS else
                       [_joined_frames(frames)])
    for same in arrays.values():
        batches.append(same[0] if len(same) == 1 else np.concatenate(same))
    for same in sparse.values():
        batches.extend(_stacked_sparse(same))
    return batches


def _frame_group(frame: FrameValues) -> tuple | None:
    """What a captured frame is grouped by with others of the same columns (their names as
    text, in order, and its dtype); None for one that names a column twice (each such
    frame is a ``wrong_shape`` of its own), one that names nothing (of another width than
    the reference's: a ``wrong_width`` of its own), or one without rows."""
    keys = list(frame.columns)  # listed once: a pandas text index lists at 0.7 us a name
    columns = tuple(map(str, keys))
    if not len(frame) or len(set(columns)) != len(columns) or default_frame_names(keys):
        return None
    return columns, frame.values.dtype


def _joined_frames(frames: list[FrameValues]) -> Any:
    """One pandas DataFrame of the rows of captured frames of one group, in call order;
    the checker counts a frame's errors per row, so one frame counts what each did."""
    if len(frames) == 1:
        return frames[0].frame()
    pandas = sys.modules["pandas"]  # loaded: the captured frames came from it
    return pandas.DataFrame(np.concatenate([frame.rows() for frame in frames]),
                            columns=frames[0].columns, copy=False)


# The keys of other_frames (in batches) for frames of several columns' dtypes, grouped on
# their own terms below.
_PANDAS, _POLARS = ("pandas",), ("polars",)


def _pandas_frames_joined(frames: list[Any]) -> list[Any]:
    """pandas DataFrames that are no array of the reference's rows (a text category beside
    numbers, the usual tabular input; other columns than the reference's), as few frames as
    check alike: those of the same columns of the same dtypes, joined column by column
    (:func:`~inferwatch.frame_joins.joined_frame`), one frame a group. A frame is checked
    alone (120 us for a frame of a row) where joining it could change what it counts: one
    that names a column twice or nothing (counted once a frame), or has no rows. Its
    columns are looked at once a group: its other frames have the same."""
    groups: list[tuple[tuple, Any, list[Any]]] = []
    alone: list[Any] = []
    for frame in frames:
        try:
            kinds = tuple(frame._mgr.get_dtypes()) if len(frame) else None
        except Exception:  # a pandas without these internals: checked alone, as before
            kinds = None
        if kinds is None:
            alone.append(frame)
            continue
        for group_kinds, columns, members in groups:
            # Compared, not hashed: pandas makes its text dtype anew for each frame.
            if group_kinds == kinds and frame.columns.dtype == columns.dtype and \
                    same_columns([frame], columns):
                members.append(frame)
                break
        else:
            keys = list(frame.columns)
            if len(set(map(str, keys))) != len(keys) or default_frame_names(keys):
                alone.append(frame)
            else:
                groups.append((kinds, frame.columns, [frame]))
    return alone + [members[0] if len(members) == 1 else joined_frame(members)
                    for _, _, members in groups]


def _polars_frames_joined(frames: list[Any]) -> list[Any]:
    """polars DataFrames that are no array of the reference's rows, joined by
    ``pl.concat`` where they share one schema (its names and dtypes), one frame a group, on
    the terms of :func:`_pandas_frames_joined`."""
    groups: dict[tuple, list[Any]] = {}
    alone: list[Any] = []
    for frame in frames:
        try:
            schema = tuple(frame.schema.items())
            names = [name for name, _ in schema]
            if not frame.height or default_frame_names(names):
                alone.append(frame)
                continue
        except Exception:  # a polars without these: checked alone
            alone.append(frame)
            continue
        groups.setdefault(schema, []).append(frame)
    joined = []
    for members in groups.values():
        if len(members) == 1:
            joined.append(members[0])
            continue
        try:
            joined.append(sys.modules["polars"].concat(members))
        except Exception:  # frames polars will not join: each checked alone
            joined.extend(members)
    return alone + joined


def _list_columns_keys(columns: dict) -> tuple | None:
    """The keys, as text, of a dict of columns that are all Python lists of one length (a
    JSON object of arrays), which the checker reads list by list, each value as the object
    it is: such dicts of the same keys join by joining their lists. None for any other
    dict (an empty or ragged one, arrays, a key written twice as text), checked alone."""
    keys = tuple(map(str, columns))
    if len(set(keys)) != len(keys):
        return None
    lengths = set()
    for value in columns.values():
        if value.__class__ is not list:
            return None
        lengths.add(len(value))
    return keys if len(lengths) == 1 and 0 not in lengths else None


def _joined_list_columns(dicts: list[dict]) -> dict:
    """One dict of the joined lists of dicts of the same keys, in the same order
    (:func:`_list_columns_keys`), in call order, keyed as the first is."""
    columns = [list(d.values()) for d in dicts]  # in one order of keys read as text
    return {key: list(_chain(c[j] for c in columns)) for j, key in enumerate(dicts[0])}


def _stacked_alike(inputs: Sequence[Any], kinds: set[type], width: int | None,
                   names: Sequence[str] | None) -> np.ndarray | None:
    """One array of the rows of a drain whose every call's input (of the classes `kinds`)
    is of one of the shapes read in passes over all the calls (frames captured as their
    values, JSON arrays, JSON objects of columns, JSON records), on the terms of each; None
    for any other drain."""
    if names is not None and kinds == _CAPTURED_ONLY:
        return _captured_frames_as_rows(inputs, names)
    if width and kinds == _LIST_ONLY:
        return _float_lists_as_rows(inputs, width, names)
    if names is not None and kinds == _DICT_ONLY and len(inputs) > 1:
        stacked = _float_columns_as_rows(inputs, names)
        return _float_row_dicts_as_rows(inputs, names) if stacked is None else stacked
    return None


_CAPTURED_ONLY = {FrameValues}
_VALUES_OF, _COLUMNS_OF = operator.attrgetter("values"), operator.attrgetter("columns")


def _captured_frames_as_rows(frames: Sequence[FrameValues], names: Sequence[str]
                             ) -> np.ndarray | None:
    """The rows of a drain's captured frames, stacked in call order, when every frame holds
    the reference's feature `names` as its columns, in order, has rows, and all share one
    dtype: what :func:`_frame_as_rows` reads frame by frame, told by a look per distinct
    shape, dtype and column index (a drain's frames from one caller share one index) rather
    than per frame. None otherwise: the frames are then read one at a time."""
    values = list(map(_VALUES_OF, frames))  # each one row per column, as pandas holds it
    dtypes = set(map(DTYPE_OF, values))
    if len(dtypes) != 1:  # one dtype only, as for arrays (see batches)
        return None
    width = len(names)
    if not all(shape[0] == width and shape[1] for shape in set(map(SHAPE_OF, values))):
        return None
    seen: list = []
    distinct = {id(columns): columns for columns in map(_COLUMNS_OF, frames)}
    if not all(_named_as(columns, names, seen) for columns in distinct.values()):
        return None
    return np.ascontiguousarray(np.concatenate(values, axis=1).T)


_LIST_ONLY, _FLOAT_ONLY = {list}, {float}
_chain = itertools.chain.from_iterable


def _float_lists_as_rows(inputs: Sequence[list], width: int,
                         names: Sequence[str] | None = None) -> np.ndarray | None:
    """A drain's JSON-shaped inputs, every call's a list of rows of Python floats (``[[...]]``,
    a JSON array of arrays) or every call's one row of them (``[...]``), each row of the
    reference's `width`: one float array of their rows in call order, which is what each
    call's ``np.asarray`` gives, stacked (:func:`_numeric_rows`). Read by a pass in C over
    the rows and one over their values, not an ``np.asarray`` per call. Every call's a list
    of row dicts (a JSON array of records): as :func:`_float_row_dicts_as_rows` reads
    their rows. None for any other lists (ints, None, text, ragged or empty rows): each is
    then read on its own."""
    if not all(inputs):  # an empty list is a batch of its own
        return None
    firsts = set(map(type, map(_FIRST, inputs)))
    if firsts == _DICT_ONLY:
        records = list(_chain(inputs))
        if names is None or set(map(type, records)) != _DICT_ONLY:
            return None
        return _float_row_dicts_as_rows(records, names)
    if firsts == _LIST_ONLY:
        rows = list(_chain(inputs))
        if set(map(type, rows)) != _LIST_ONLY:
            return None
    elif firsts == _FLOAT_ONLY:
        rows = inputs  # one row per call
    else:
        return None
    if set(map(len, rows)) != {width} or set(map(type, _chain(rows))) != _FLOAT_ONLY:
        return None
    count = len(rows) * width
    return np.fromiter(_chain(rows), dtype=np.float64, count=count).reshape(-1, width)


_FIRST = operator.itemgetter(0)
_DICT_ONLY = {dict}


def _float_row_dicts_as_rows(rows: Sequence[dict], names: Sequence[str]
                             ) -> np.ndarray | None:
    """Row dicts (JSON objects of one row), each exactly the reference's features (two or
    more), every value a Python float: one float array of the rows, in their order, which
    the checker reads as it reads the row dicts (their numbers are the same, and a row dict
    names no feature twice). Read by a pass in C over the rows and one over their values,
    where the checker would read each dict's values apart. None for any other dicts (a
    missing, extra or misnamed feature, ints, None, text, lists): they are read as rows."""
    width = len(names)
    if width < 2 or set(map(len, rows)) != {width}:
        return None
    try:
        values = list(map(operator.itemgetter(*names), rows))
    except KeyError:
        return None
    if set(map(type, _chain(values))) != _FLOAT_ONLY:
        return None
    count = len(rows) * width
    return np.fromiter(_chain(values), dtype=np.float64, count=count).reshape(-1, width)


def _float_columns_as_rows(inputs: Sequence[dict], names: Sequence[str]
                           ) -> np.ndarray | None:
    """A drain's JSON objects of columns, every call's exactly the reference's features,
    each a list of Python floats, of one length within a call: one float array of their
    rows in call order, which is what each call's :func:`_json_columns` gives, stacked.
    Read by a pass in C over each feature's lists and one over their values, not call by
    call. None for any other dicts (row dicts, ints, None, uneven or empty columns, a
    missing or extra feature): each is then read on its own."""
    if set(map(len, inputs)) != {len(names)}:
        return None
    lengths = None
    columns = []
    for name in names:
        try:
            lists = list(map(operator.itemgetter(name), inputs))
        except KeyError:
            return None
        if set(map(type, lists)) != _LIST_ONLY:
            return None
        counts = list(map(len, lists))
        if lengths is None:
            if 0 in counts:
                return None
            lengths = counts
        elif counts != lengths:
            return None
        if set(map(type, _chain(lists))) != _FLOAT_ONLY:
            return None
        columns.append(lists)
    rows = sum(lengths)
    return np.column_stack([np.fromiter(_chain(lists), dtype=np.float64, count=rows)
                            for lists in columns])


def _is_pandas_series(item: Any) -> bool:
    return _is_pandas_series_class(item.__class__)


def _is_pandas_series_class(cls: type) -> bool:
    return cls.__name__ == "Series" and cls.__module__.startswith("pandas")


def _is_pandas_frame(item: Any) -> bool:
    cls = item.__class__
    return cls.__name__ == "DataFrame" and cls.__module__.startswith("pandas")


def _is_polars_frame(item: Any) -> bool:
    cls = item.__class__
    return cls.__name__ == "DataFrame" and cls.__module__.startswith("polars")


def _polars_frame_as_rows(frame: Any, names: Sequence[str]) -> np.ndarray | None:
    """A polars DataFrame's values as a 2-D array, on the terms of :func:`_frame_as_rows`:
    exactly the reference's columns in its order, all of one numeric dtype, and read by
    numpy in a dtype of that kind (an integer column with nulls reads as floats, whose text
    as a category differs: such a frame is checked as a frame). Never raises."""
    try:
        if not frame.height or len(set(frame.dtypes)) != 1 or (
                frame.columns != list(names) and not (
                    len(frame.columns) == len(names) and default_frame_names(frame.columns))):
            return None
        dtype = frame.dtypes[0]
        if not (dtype.is_numeric() or dtype == _polars_boolean()):
            return None
        rows = frame.to_numpy()
        integer = dtype.is_integer() if hasattr(dtype, "is_integer") else False
    except Exception:  # a polars without these: the frame is checked as one
        return None
    if rows.ndim != 2 or rows.dtype.kind not in "fiub" or (integer and rows.dtype.kind == "f"):
        return None
    return rows


def _polars_boolean() -> Any:
    import polars  # loaded by the caller's frame already

    return polars.Boolean


def _frame_as_rows(frame: Any, names: Sequence[str], seen: list) -> np.ndarray | None:
    """A pandas DataFrame's values as a 2-D array, when the frame holds exactly the
    reference's feature `names` as its columns, in that order, all of one numeric numpy
    dtype (one block): the checker reads such a frame as it reads that array, and stacked
    with a drain's other such inputs they are checked at once, not at about 190 us a frame
    (a frame per call, its columns read one by one). None for any other frame, checked as
    a frame. A frame captured as :class:`~inferwatch.frame_values.FrameValues` (one
    numeric block) is read on the same terms, from its values. `seen`: column indexes
    already matched, whose frames skip the name comparison. Never raises."""
    try:
        if frame.__class__ is FrameValues:
            if not len(frame) or not _named_as(frame.columns, names, seen):
                return None
            return frame.rows()
        manager = frame._mgr  # the block manager: one dtype for every column when one block
        if manager.nblocks != 1 or not len(frame):
            return None
        dtype = manager.blocks[0].dtype
        if not isinstance(dtype, np.dtype) or dtype.kind not in "fiub":
            return None
        if not _named_as(frame.columns, names, seen):
            return None
        rows = frame.to_numpy()
    except Exception:  # a pandas without these internals: the frame is checked as one
        return None
    return rows if rows.ndim == 2 and rows.dtype == dtype else None


def _named_as(columns: Any, names: Sequence[str], seen: list) -> bool:
    """Whether a frame's `columns` are the reference's feature `names`, in order, read as
    text, or its library's own names of as many columns (``pd.DataFrame(array)``: the
    checker reads such a frame by position); an index already in `seen` is known to be (a
    drain's frames often share one)."""
    if any(columns is known for known in seen):
        return True
    if len(columns) != len(names):
        return False
    keys = list(columns)
    if list(map(str, keys)) != list(names) and not default_frame_names(keys):
        return False
    if len(seen) < 8:
        seen.append(columns)
    return True


def _stackable(shape: tuple[int, ...], width: int) -> bool:
    return len(shape) == 2 and shape[1] == width and shape[0] > 0


def _columns_as_rows(columns: dict, names: Sequence[str]) -> np.ndarray | None:
    """A dict of columns (a JSON object of arrays) holding exactly the reference's features,
    each a list or 1-D array that numpy reads as numbers of one dtype shared by all, as the
    2-D array of its rows in the reference's order: the checker reads each column as that
    array's column, and it joins the drain's other rows (89 us a call, checked alone). None
    for any other dict (a row dict among them). Never raises."""
    try:
        if not PLAIN_SCALARS.isdisjoint(map(type, columns.values())) or \
                any(key.__class__ is not str for key in columns):
            return None  # a row dict: a number is no column (np.asarray: 0.8 us a value)
        lists = _json_columns(columns, names)
        if lists is not None:
            return lists
        read = [np.asarray(columns[name]) if name in columns else None for name in names]
        if any(column is None or column.ndim != 1 or not column.shape[0] or
               column.dtype.kind not in "fiub" for column in read):
            return None
        if len({column.dtype for column in read}) != 1 or \
                len({column.shape[0] for column in read}) != 1:
            return None
        return np.column_stack(read)
    except Exception:  # a column numpy cannot read: the dict is checked as it is
        return None


def _json_columns(columns: dict, names: Sequence[str]) -> np.ndarray | None:
    """:func:`_columns_as_rows` for columns that are lists of one length, all of floats,
    all of ints or all of bools (a JSON object of arrays): read by numpy in one call, the
    dtype the lists' one class gives each of them alone. None for anything else, which is
    read column by column."""
    read = [columns.get(name) for name in names]
    if len(columns) != len(names) or any(column.__class__ is not list for column in read):
        return None
    lengths = set(map(len, read))
    if len(lengths) != 1 or 0 in lengths or \
            set(map(type, itertools.chain.from_iterable(read))) not in _ONE_CLASS:
        return None
    block = np.array(read)  # (features, rows); an int past int64 reads as objects
    return block.T.copy() if block.ndim == 2 and block.dtype.kind in "fiub" else None


_ONE_CLASS = ({float}, {int}, {bool})


def _numeric_rows(items: list) -> Any:
    """A list of feature rows (a JSON array of arrays) or one row as the array the checker
    reads it as (``np.asarray``), when that is numeric: such an array joins the drain's
    others. The list as it is otherwise (text, objects, ragged rows, row dicts), for the
    checker to read alone. Never raises."""
    try:
        values = np.asarray(items)
    except Exception:  # ragged rows: one wrong_shape for this batch, read alone
        return items
    return values if values.dtype.kind in "fiub" else items


def _rows_alone(items: list) -> bool:
    """Whether every item of a list is a row dict (:func:`_is_row`) with no key named twice
    once read as text (``0`` and ``"0"``: one ``wrong_shape`` for its own batch), so that its
    rows are checked alike among other calls' rows."""
    for item in items:
        if item.__class__ is not dict or not _is_row(item) or not _names_once(item):
            return False
    return True


def _names_once(row: dict) -> bool:
    """Whether a row dict names no feature twice once its keys are read as text (``0`` and
    ``"0"``, or a key whose text is another's): such a row is one ``wrong_shape`` for its
    own batch, so it is checked alone, not among other calls' rows. Keys that are all
    ``str`` are told by one look at their classes."""
    if len(row) < 2:
        return True
    classes = set(map(type, row))
    return classes == _TEXT_ONLY or len(set(map(str, row))) == len(row)


_TEXT_ONLY = {str}


def _is_row(item: dict) -> bool:
    try:
        return is_row(item)
    except Exception:
        # A value whose len() misbehaves: the dict goes to the checker on its own, which
        # reads it again and counts the fault, without losing the other calls' inputs.
        return False


def _stacked_sparse(matrices: list[Any]) -> list[Any]:
    """Sparse inputs of one width as one matrix (one check of their rows, not one a call);
    as they are if scipy cannot stack them."""
    if len(matrices) == 1:
        return matrices
    try:
        # Loaded already: these matrices are its objects.
        return [importlib.import_module("scipy.sparse").vstack(matrices, format="csr")]
    except Exception as exc:
        faults.record("quality", exc)
        return matrices
