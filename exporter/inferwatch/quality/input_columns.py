"""Reading user data into named columns: pandas and polars DataFrames, Arrow tables, numpy
structured and plain arrays, scipy.sparse matrices, dicts of columns and lists of row dicts,
each read as one 1-D numpy array a column, found by name (never by position), named as text;
live, a frame whose names are its library's defaults (:func:`default_frame_names`) names
nothing, and the batch checks read it by position (:mod:`inferwatch.frame_names`).

Apart from the profiling because the batch checks read live frames with the same helpers, and
category-typed columns (pandas ``category``, Arrow dictionaries) are read here for both.
"""

from __future__ import annotations

import contextlib
import decimal
import fractions
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
    `default_prefix` and the index, a 1-D one (or, with `one_d_name`, one of a single column,
    shape (n, 1)) the single column `one_d_name` when given.
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
        shapes = "" if one_d_name is None else f" ({PREDICTION_SHAPES})"
        raise ReferenceError(f"{what}: cannot read as an array ({exc}){shapes}") from None
    if arr.dtype.kind == "U" and isinstance(data, (list, tuple)):
        # numpy makes text of every cell of rows that mix numbers and text ([[1.5, "a"]]):
        # as objects the numbers stay numbers, as they do in columns or beside a None.
        arr = np.array(data, dtype=object)
    if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1 and one_d_name is not None):
        # A single column, shape (n, 1) (CatBoost's predict, a Keras Dense(1)), is the one
        # output the live side reads it as: named "0" it would be compared with the
        # probability column of class 0.
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


# The shapes of predictions a reference reads, for the errors about others.
PREDICTION_SHAPES = ("predictions are read as a 1-D array or one column (one output), a 2-D"
                     " array (probability columns, or one label column per output), one (n, k)"
                     " probability matrix per output in a list (a multi-output classifier's"
                     " predict_proba), or a dict or DataFrame of named outputs")


# Integer label columns up to this many a row are a multi-output classifier's, as the live
# side reads them; a wider integer matrix is token ids there (one sequence a row).
MAX_LABEL_COLUMNS = 20
# The output the live side compares predicted labels with.
LABEL_OUTPUT = "value"


def is_matrix_list(predictions: Any) -> bool:
    """A list of arrays of which one at least is 2-D or more: one probability matrix per
    output (scikit-learn's ``MultiOutputClassifier.predict_proba``), never rows."""
    return isinstance(predictions, (list, tuple)) and any(
        getattr(part, "ndim", 0) >= 2 for part in predictions)


def probability_list_columns(matrices: Sequence[Any], names: Any) -> dict[str, np.ndarray]:
    """The columns of one probability matrix per output, named as the live side names them:
    ``<output>:<class>`` by each output's classes (`names` as a list of them, a
    multi-output classifier's ``classes_``), ``<output>:<column>`` without; or `names` in
    full, one a column."""
    arrays = [np.asarray(part) for part in matrices]
    shapes = [part.shape for part in arrays]
    if any(len(shape) != 2 for shape in shapes) or len({shape[0] for shape in shapes}) > 1:
        raise ReferenceError(f"predictions: a list of arrays of shapes {shapes}:"
                             f" {PREDICTION_SHAPES}, all of the same rows")
    widths = [shape[1] for shape in shapes]
    if names is None:
        labels = [f"{j}:{i}" for j, width in enumerate(widths) for i in range(width)]
    elif len(names) == len(arrays) and all(
            np.ndim(classes) == 1 and len(classes) == width
            for classes, width in zip(names, widths)):
        labels = [f"{j}:{category_key(c)}" for j, classes in enumerate(names)
                  for c in classes]
    elif len(names) == sum(widths) and all(np.ndim(name) == 0 for name in names):
        labels = [str(name) for name in names]
    else:
        raise ReferenceError(
            f"predictions: prediction_names gives {len(names)} names but the probability matrices"
            f" have {sum(widths)} columns ({' + '.join(map(str, widths))}): pass one name a"
            " column, or one list of classes per output (prediction_names=model.classes_)")
    if len(set(labels)) != len(labels):
        raise ReferenceError(f"predictions: duplicate names in {labels}")
    columns = (part[:, i] for part, width in zip(arrays, widths) for i in range(width))
    return dict(zip(labels, columns))


def is_plain_matrix(predictions: Any) -> bool:
    """A 2-D numpy array or a list of rows: its columns are outputs numbered as the live
    side numbers a model's matrix (a DataFrame's and a dict's keep their names)."""
    if isinstance(predictions, np.ndarray):
        return predictions.ndim == 2 and predictions.dtype.names is None
    return isinstance(predictions, (list, tuple)) and bool(predictions) and all(
        isinstance(row, (list, tuple)) for row in predictions)


def as_live_outputs(columns: dict[str, np.ndarray], task: str) -> dict[str, np.ndarray]:
    """A matrix's columns as the live side records them: value columns as outputs of
    their own, label columns as classes ``<column>:<label>`` (each output's labels apart)
    that it compares with the reference's ``value`` output. Profiled as numeric outputs
    ``0``, ``1``, the labels would match no live output, and drift never be scored."""
    if len(columns) < 2:
        return columns
    integer_labels = task != "regression" and len(columns) <= MAX_LABEL_COLUMNS
    labelled = [name for name, column in columns.items()
                if _holds_labels(column, integer_labels)]
    if not labelled:
        return columns
    outputs = {name: column for name, column in columns.items() if name not in labelled}
    if LABEL_OUTPUT in outputs:
        raise ReferenceError(f"predictions: the output named {LABEL_OUTPUT!r} holds values"
                             f" while {labelled} hold labels, which are profiled as"
                             f" {LABEL_OUTPUT!r}: rename it")
    outputs[LABEL_OUTPUT] = np.concatenate(
        [_prefixed_labels(columns[name], f"{name}:") for name in labelled])
    return outputs


def _holds_labels(column: np.ndarray, integer_labels: bool) -> bool:
    """Whether the live side reads `column` as class labels: bools and text, integers
    where `integer_labels`, and Python objects holding no fractional number."""
    kind = column.dtype.kind
    if kind in "bUS":
        return True
    if kind in "iu":
        return integer_labels
    if kind != "O":
        return False
    return not any(isinstance(v, (float, np.floating, decimal.Decimal, fractions.Fraction))
                   and not is_missing(v) for v in column.tolist())


def _prefixed_labels(column: np.ndarray, prefix: str) -> np.ndarray:
    """``<prefix><label>`` for each label, as the live side writes a multi-output
    classifier's (None where missing); each distinct label's text made once."""
    if column.dtype.kind != "O":
        distinct, inverse = np.unique(column, return_inverse=True)
        text = np.array([prefix + category_key(v) for v in distinct.tolist()], dtype=object)
        return text[inverse.reshape(-1)]
    # Keyed by type too: True and 1 are equal keys, and different labels.
    known: dict[tuple[type, Any], str | None] = {}
    out = np.empty(len(column), dtype=object)
    for i, value in enumerate(column.tolist()):
        key = (type(value), value)
        try:
            out[i] = known[key]
        except (KeyError, TypeError):
            text = None if is_missing(value) else prefix + category_key(value)
            with contextlib.suppress(TypeError):  # an unhashable cell (refused before)
                known[key] = text
            out[i] = text
    return out


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
