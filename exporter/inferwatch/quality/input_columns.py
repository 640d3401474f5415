"""Reading user data into named columns: pandas and polars DataFrames, Arrow tables, numpy
structured and plain arrays, scipy.sparse matrices, dicts of columns and lists of row dicts,
each read as one 1-D numpy array a column, found by name (never by position), named as text.

Apart from the profiling because the batch checks read live frames with the same helpers, and
category-typed columns (pandas ``category``, Arrow dictionaries) are read here for both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from inferwatch.quality.category_keys import category_key, category_keys, is_missing
from inferwatch.quality.profile import ReferenceError
from inferwatch.quality.sparse_rows import is_sparse


def is_dataframe(obj: Any) -> bool:
    """True for a pandas or polars DataFrame or an Arrow table or record batch, checked
    without importing any of them: their columns are read by name, never by position."""
    module = type(obj).__module__
    if module.startswith("pandas"):
        return hasattr(obj, "columns") and hasattr(obj, "iloc") and getattr(obj, "ndim", 0) == 2
    return (module.startswith("polars") and hasattr(obj, "columns") and hasattr(obj, "height")
            ) or _is_arrow(obj)


def _is_arrow(obj: Any) -> bool:
    """An Arrow Table or RecordBatch (what ``pyarrow.parquet.read_table`` returns): its
    ``columns`` are the column arrays, its names are ``column_names``."""
    return type(obj).__module__.startswith("pyarrow") and hasattr(obj, "column_names") \
        and hasattr(obj, "num_rows")


def frame_names(frame: Any) -> list[Any]:
    """The column keys of a frame (:func:`is_dataframe`), in the frame's order."""
    return list(frame.column_names) if _is_arrow(frame) else list(frame.columns)


def frame_column(frame: Any, key: Any) -> Any:
    """The column `key` of a frame: a pandas or polars Series, or for Arrow a numpy array
    (nulls as NaN in numbers, None elsewhere, as ``to_pandas()`` gives them)."""
    if _is_arrow(frame):
        return arrow_numpy(frame.column(key))
    return frame[key]


def arrow_numpy(column: Any) -> np.ndarray:
    """An Arrow array or chunked array as numpy (nulls as NaN in numbers, None elsewhere).

    A dictionary-encoded column (what a pandas category column written to Parquet reads
    back as) is decoded first: a chunked one's ``to_numpy`` gives each null the value of
    some other row, so a missing category would count as a present one.
    """
    kind = getattr(column, "type", None)
    if hasattr(kind, "value_type") and hasattr(kind, "index_type"):
        column = column.cast(kind.value_type)
        kind = column.type
    if getattr(kind, "tz", None) is not None:
        # to_numpy() drops the zone (naive UTC): the values keep it, as pandas' do, so
        # each instant has the one text ``category_key`` gives it whatever carries it.
        return _objects(column.to_pylist())
    return column.to_numpy(zero_copy_only=False)


def polars_numpy(column: Any) -> np.ndarray:
    """A polars Series as numpy. An aware Datetime keeps its zone, as :func:`arrow_numpy`
    keeps an Arrow one's; raises what polars raises for a type numpy has no match for
    (``Int128``)."""
    if getattr(column.dtype, "time_zone", None) is not None:
        return _objects(column.to_list())
    return column.to_numpy()


def is_category_typed(column: Any) -> bool:
    """A column whose type says its values are categories, whatever they hold: a pandas
    ``category`` Series or an Arrow dictionary array (what one reads back as from Parquet).
    Numeric categories (zip codes, store ids) are labels: their order and range mean
    nothing, and their share of rows is what drifts. A text or boolean dtype (pandas
    ``string``, ``str`` and ``boolean``, Arrow-backed or Arrow ``string`` and ``bool``,
    polars ``String`` and ``Boolean``) says so too, even with no value to show it: an
    all-missing one profiled as numbers would count every live value a wrong type."""
    kind = getattr(column, "dtype", None)
    if type(kind).__name__ == "CategoricalDtype" or _is_text_or_bool_typed(column):
        return True
    if type(kind).__module__.startswith("polars") and type(kind).__name__ in (
            "Categorical", "Enum"):
        return True
    kind = getattr(column, "type", None)
    return hasattr(kind, "value_type") and hasattr(kind, "index_type")


def _is_text_or_bool_typed(column: Any) -> bool:
    kind = getattr(column, "dtype", None)
    module, name = type(kind).__module__, type(kind).__name__
    if module.startswith("polars"):
        return name in ("String", "Utf8", "Boolean")
    if module.startswith("pandas"):
        return name in ("StringDtype", "BooleanDtype") or \
            str(getattr(kind, "pyarrow_dtype", "")) in _ARROW_TEXT_OR_BOOL
    kind = getattr(column, "type", None)
    return type(kind).__module__.startswith("pyarrow") and str(kind) in _ARROW_TEXT_OR_BOOL


# Arrow's names (``str()`` of the type) of its text and boolean types.
_ARROW_TEXT_OR_BOOL = frozenset(("string", "large_string", "string_view", "bool"))


def _is_category_typed(frame: Any, key: Any) -> bool:
    return is_category_typed(frame.column(key) if _is_arrow(frame) else frame[key])


class CategoryColumn(np.ndarray):
    """An object array of a category-typed column's values (:func:`category_values`): it
    is profiled as categories whatever it holds, even when every value is missing."""


def category_values(column: Any) -> np.ndarray:
    """A category-typed column (:func:`is_category_typed`) as an object array of its
    categories' text (None where missing), so it is profiled as categories even when they
    are numbers; live values of either type meet the same text (:func:`category_key`).
    A text or boolean column holds its own values, which the profile keys as it keys a
    plain column's.

    >>> import pandas as pd
    >>> category_values(pd.Series(pd.Categorical([10115, None, 7]))).tolist()
    ['10115', None, '7']
    """
    coded = _pandas_codes(column)
    if coded is not None:
        codes, categories = coded
        # One key per category, then one gather: a million rows of 500 levels cost 500
        # conversions, not a million. Code -1 (missing) picks the None at the end.
        keys = [None if is_missing(v) else category_key(v) for v in categories]
        return np.array([*keys, None], dtype=object)[codes].view(CategoryColumn)
    if type(column).__module__.startswith("pyarrow"):
        values = arrow_numpy(column)
    elif type(column).__module__.startswith("polars"):
        values = _objects(column.to_list())
    else:
        values = np.asarray(column.astype(object) if hasattr(column, "astype") else column,
                            dtype=object)
    if values.dtype == object and _is_text_or_bool_typed(column):
        # Text and booleans are keyed when profiled, as a plain column's are: only the
        # type needs to say categories.
        return values.view(CategoryColumn)
    # One conversion per distinct value (a text column of a million rows holds a few
    # hundred), by the same keys the profile of a plain column takes.
    keys, present = category_keys(values)
    out = np.array(keys, dtype=object)
    out[~present] = None
    return out.view(CategoryColumn)


def _pandas_codes(column: Any) -> tuple[np.ndarray, list] | None:
    """A pandas categorical's integer codes (-1 where missing) and its categories as Python
    objects; None for any other column."""
    if type(getattr(column, "dtype", None)).__name__ != "CategoricalDtype":
        return None
    categorical = getattr(column, "cat", column)  # a Series, or a Categorical itself
    codes, categories = getattr(categorical, "codes", None), getattr(
        categorical, "categories", None)
    if codes is None or categories is None:
        return None
    return np.asarray(codes, dtype=np.intp), list(categories.astype(object))


def _to_numpy(column: Any, name: str, what: str) -> np.ndarray:
    """A frame's or dict's column as numpy; a type numpy has no match for (a polars
    ``Int128``) is refused naming the column, not with its library's own error."""
    if isinstance(column, np.ndarray):
        return column
    module = type(column).__module__
    try:
        if module.startswith("polars"):
            return polars_numpy(column)
        if module.startswith("pyarrow"):
            return arrow_numpy(column)
        return column.to_numpy() if hasattr(column, "to_numpy") else _as_array(column)
    except ReferenceError:
        raise
    except Exception as exc:
        kind = getattr(column, "dtype", getattr(column, "type", type(column).__name__))
        raise ReferenceError(f"{what}: column {name!r} of type {kind} cannot be read as"
                             f" numbers or text ({type(exc).__name__}: {exc}); cast it to one"
                             " numpy holds (Int64, Float64, String), or leave it out") from None


def frame_rows(frame: Any, start: int, stop: int) -> Any:
    """Rows `start` to `stop` of a pandas (``iloc``), polars (slicing) or Arrow frame."""
    if hasattr(frame, "iloc"):
        return frame.iloc[start:stop]
    if _is_arrow(frame):
        return frame.slice(start, stop - start)
    return frame[start:stop]


# Densifying a sparse matrix to profile it costs 8 bytes a cell: past this many cells
# (400 MB) the profile asks for fewer rows or columns rather than exhaust memory.
MAX_SPARSE_CELLS = 50_000_000


def columns(data: Any, names: Sequence[str] | None, *, default_prefix: str, what: str,
            one_d_name: str | None = None) -> dict[str, np.ndarray]:
    """`data` read as named 1-D columns (names as text), each container as
    :meth:`~inferwatch.quality.reference.Reference.from_data` describes it. `names` picks
    and orders the columns, or names those of an array; unnamed, an array's are
    `default_prefix` and the index, a 1-D one the single column `one_d_name` when given.
    `what` names the argument in the :class:`ReferenceError` a problem raises."""
    if is_sparse(data):
        rows, width = data.shape
        if rows * width > MAX_SPARSE_CELLS:
            raise ReferenceError(
                f"{what}: a sparse matrix of {rows} x {width} is {rows * width:,} cells once "
                f"dense, more than {MAX_SPARSE_CELLS:,}: profile a sample of the rows, or the "
                "columns a model's inputs are checked on")
        data = data.toarray()  # implicit entries are zeros, stored NaN stays missing
    if _is_row_list(data):
        data = _rows_as_columns(data, what)
    if isinstance(data, np.ndarray) and data.dtype.names is not None:
        data = record_columns(data, what)
    if is_dataframe(data):
        keys = frame_names(data)
        cols = {name: category_values(data[c]) if _is_category_typed(data, c)
                else _to_numpy(data.column(c) if _is_arrow(data) else data[c], name, what)
                for name, c in zip(_text_names(keys, what), keys)}
        return _select(cols, names, what)
    if isinstance(data, Mapping):
        for name, v in zip(_text_names(list(data), what), data.values()):
            _refuse_non_sequence(v, f"{what}: column {name!r}")
        cols = {name: v if isinstance(v, np.ndarray) else
                category_values(v) if is_category_typed(v) else
                _to_numpy(v, name, what) if type(v).__module__.startswith(("pyarrow", "polars"))
                else _as_array(v)
                for name, v in zip(_text_names(list(data), what), data.values())}
        for k, v in cols.items():
            if v.ndim != 1:
                raise ReferenceError(f"{what}: column {k!r} is not 1-D (shape {v.shape});"
                                     " a column of lists or arrays is not one value a row:"
                                     " flatten it into one column a field, or leave it out")
        if len({len(v) for v in cols.values()}) > 1:
            lengths = {k: len(v) for k, v in cols.items()}
            raise ReferenceError(f"{what}: columns have different lengths {lengths}")
        return _select(cols, names, what)
    if is_category_typed(data):
        data = category_values(data)
    elif type(data).__module__.startswith(("pyarrow", "polars")):
        # A polars Series or an Arrow array (frames were read above), as its column is.
        data = _to_numpy(data, str(names[0]) if names else one_d_name or f"{default_prefix}0",
                         what)
    _refuse_non_sequence(data, what)
    try:
        # asanyarray: a category column stays one (CategoryColumn), and categorical.
        arr = np.asanyarray(data) if isinstance(data, CategoryColumn) else np.asarray(data)
    except ValueError as exc:
        raise ReferenceError(f"{what}: cannot read as an array ({exc})") from None
    if arr.dtype.kind == "U" and isinstance(data, (list, tuple)):
        # numpy makes text of every cell of rows that mix numbers and text ([[1.5, "a"]]):
        # as objects the numbers stay numbers, as they do in columns or beside a None.
        arr = np.array(data, dtype=object)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
        if names is None and one_d_name is not None:
            names = [one_d_name]
    if arr.ndim != 2:
        raise ReferenceError(f"{what}: expected 1-D or 2-D data, got shape {arr.shape}")
    if names is None:
        names = [f"{default_prefix}{i}" for i in range(arr.shape[1])]
    names = [str(n) for n in names]
    if len(names) != arr.shape[1]:
        raise ReferenceError(f"{what}: {len(names)} names for {arr.shape[1]} columns")
    if len(set(names)) != len(names):
        raise ReferenceError(f"{what}: duplicate names in {names}")
    _refuse_unnamed(names, what)
    return {name: arr[:, i] for i, name in enumerate(names)}


def _refuse_non_sequence(values: Any, what: str) -> None:
    """Refuse what numpy would read as one value (shape ``()``), not a column of them: a
    "not 1-D" error would send the user looking for nested cells that are not there.

    >>> try:
    ...     _refuse_non_sequence({"a", "b"}, "X: column 'c'")
    ... except ReferenceError as exc:
    ...     print(exc)
    X: column 'c' is a set, not a sequence of values: a set has no row order; pass a list \
of the values, one a row
    """
    if isinstance(values, np.ndarray) or hasattr(values, "__array__") or is_dataframe(values):
        return
    if isinstance(values, (str, bytes, bytearray)):
        hint = ("it is one text, and is not split into a value a row; pass a list of the"
                " values, one a row ([\"a\", \"b\"], not \"ab\")")
    elif isinstance(values, (set, frozenset)):
        hint = "a set has no row order; pass a list of the values, one a row"
    elif isinstance(values, Mapping):
        hint = "pass a list of the values, one a row"
    elif isinstance(values, Iterator):
        hint = ("it can be read only once, and its length is unknown; pass a list of the"
                " values (list(...))")
    elif not isinstance(values, Sequence) and not hasattr(values, "__len__"):
        hint = "pass a list of the values, one a row"
    else:
        return
    kind = type(values).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    raise ReferenceError(f"{what} is {article} {kind}, not a sequence of values: {hint}")


def _as_array(values: Any) -> np.ndarray:
    """A column as numpy; cells numpy cannot stack (lists of different lengths) stay
    objects, for :func:`refuse_nested` to name, not numpy's ValueError. A list whose cells
    numpy would change the type of stays objects too (:func:`_retyped`).

    >>> _as_array(["Paris", float("nan"), 10115.0]).tolist()
    ['Paris', nan, 10115.0]
    """
    try:
        arr = np.asarray(values)
    except ValueError:
        if not hasattr(values, "__len__") or isinstance(values, (str, bytes)):
            raise ReferenceError("a column is not a sequence of values") from None
        return _objects(values)
    if isinstance(values, (list, tuple)) and _retyped(arr, values):
        return _objects(values)
    return arr


def _objects(values: Any) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def _retyped(arr: np.ndarray, values: list | tuple) -> bool:
    """Whether numpy changed some cell's type reading `values` as `arr`: text beside a NaN
    or a number makes every cell text (NaN the category "nan", 10115.0 the category
    "10115.0"), and a bool beside numbers becomes one. The live checks read a list as
    objects, as a DataFrame keeps them: profiled otherwise, training data drifts from its
    own profile."""
    kind = arr.dtype.kind
    if kind == "U":
        return not all(isinstance(v, str) for v in values)
    if kind == "S":
        return not all(isinstance(v, bytes) for v in values)
    if kind in "iufc":
        return any(isinstance(v, (bool, np.bool_)) for v in values)
    return False


def record_columns(records: np.ndarray, what: str) -> dict[str, np.ndarray]:
    """A numpy structured array (``np.genfromtxt(..., names=True)``, a recarray) as its
    columns by field name: each record is one row, never one value of a single column.

    >>> record_columns(np.array([(1, 2.5)], dtype=[("n", "i4"), ("x", "f8")]), "X")
    {'n': array([1], dtype=int32), 'x': array([2.5])}
    """
    if records.ndim != 1:
        raise ReferenceError(f"{what}: a structured array of shape {records.shape}; expected"
                             " one record per row (1-D)")
    return {name: np.asarray(records[name]) for name in records.dtype.names or ()}


def _select(cols: dict[str, np.ndarray], names: Sequence[str] | None,
            what: str) -> dict[str, np.ndarray]:
    if names is None:
        _refuse_unnamed(list(cols), what)
        return cols
    missing = [str(n) for n in names if str(n) not in cols]
    if missing:
        raise ReferenceError(f"{what}: no column named {missing} (columns: {list(cols)})")
    if "" in {str(n) for n in names}:
        _refuse_unnamed(list(cols), what)
    return {str(n): cols[str(n)] for n in names}


def _refuse_unnamed(names: list[str], what: str) -> None:
    """A profile is found by its name, and a reference file holds no empty one."""
    if "" in names:
        raise ReferenceError(f"{what}: column {names.index('') + 1} of {len(names)} has no"
                             " name (an empty string): name it, or leave it out")


def _text_names(keys: list[Any], what: str) -> list[str]:
    """Column names as text, as live inputs are matched; two keys with one text (0 and "0")
    would make one profile of two columns."""
    names = [str(k) for k in keys]
    if len(set(names)) != len(names):
        first: dict[str, Any] = {}
        for key, name in zip(keys, names):
            if name in first:
                if repr(first[name]) == repr(key):
                    raise ReferenceError(f"{what}: duplicate column name {name!r}")
                raise ReferenceError(f"{what}: columns {first[name]!r} and {key!r} are both"
                                     f" named {name!r} as text; rename one")
            first[name] = key
    return names


def _is_row_list(data: Any) -> bool:
    return isinstance(data, (list, tuple)) and any(isinstance(row, Mapping) for row in data)


def _rows_as_columns(rows: Sequence[Any], what: str) -> dict[str, np.ndarray]:
    """Row dicts as columns by key (text, as live rows are read); a key absent from a row is
    a missing value of that row."""
    keyed = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ReferenceError(f"{what}: row {i} is a {type(row).__name__} in a list of"
                                 " row dicts")
        keyed.append(dict(zip(_text_names(list(row), f"{what}: row {i}"), row.values())))
    names = dict.fromkeys(name for row in keyed for name in row)
    return {name: np.fromiter((row.get(name) for row in keyed), dtype=object, count=len(keyed))
            for name in names}
