"""Turning what a model server passes into named fields, so redaction can find them.

Redaction works on field paths (``inputs.ssn``), so an input must be a mapping (or a list
of mappings) before it is redacted: written as the ``str()`` of a DataFrame, a field would
escape every rule. :func:`named_fields` converts the containers model servers use:

- pandas DataFrame: a list of row records; by column index (a :class:`ColumnIndexRows`)
  when its columns are labelled by integers alone (``pd.DataFrame(X)``: they name no
  field), and an :class:`AxisRecords` when its columns axis is named (``pivot``,
  ``unstack``, ``crosstab``: the column labels are values of the field the axis names)
- pandas Series indexed by row (by position, number or time): a column, as the one-column
  DataFrame of its name (``[{name: value}, ...]``); unnamed, a list of its values
- other pandas Series labelled by a named index (a column of a frame indexed by e-mail):
  the rows of ``series.reset_index()``, ``[{index name: label, name: value}, ...]``, an
  :class:`IndexedRows` that remembers both keys, so a path naming the index reaches the
  labels, one naming the Series the values, and one naming a label (a row read from a
  frame whose columns axis is named) that label's value
- other pandas Series (labelled by text under an unnamed index: a row read by
  ``iterrows`` or ``loc``, a Series made from a dict): a mapping of its labels to its
  values, a :class:`LabelledValues` that also remembers the Series' name, so a redaction
  path naming either the labels or the name reaches the values (and one naming neither
  drops the whole field: its labels may be the field's values)
- polars DataFrame: a list of row records (by column index for the ``column_0``,
  ``column_1``, ... of ``pl.DataFrame(X)``); Series: rows of its name as a pandas
  column's (a list of its values when it has no name)
- dataclass, attrs class, namedtuple, pydantic model (v1 or v2): a mapping of its fields
  (a :class:`PartlyNamed` for a namedtuple whose fields were renamed ``_1``, ``_2``, as
  ``df.itertuples()`` renames a column that is no identifier)
- numpy structured array or record: row records (a plain array stays a list of numbers)
- :class:`NamedColumns`, a dense input (a 2-D numpy array or list of rows, one row, a
  scipy.sparse matrix, a DataFrame without column names of its own) with the names of
  its columns: row records keyed by those names, a :class:`NamedRows` that keeps the
  names in order, so ``inputs.0`` still names the first column (a mapping holding the
  input under one key, ``{"input": X}``, gets them for that value)
- scipy.sparse matrix or array, sparse torch tensor: each row's non-zero entries,
  ``{column index: value}`` (a :class:`ColumnIndexRows`: a path naming a column by name
  cannot reach it, and fails closed)
- bytes in UTF-8, and text holding a JSON object or array: the parsed value
- numpy datetime64: ISO 8601 text at its own precision; durations (``timedelta``, pandas
  ``Timedelta``, numpy ``timedelta64``): seconds

Anything else with no plain JSON form (an arbitrary object, bytes that are not UTF-8) is
*unstructured*: :func:`named_fields` raises :class:`Unstructured`, and the event keeps a
small marker in its place rather than its ``str()``, unless the log is told to keep it.

>>> import dataclasses
>>> @dataclasses.dataclass
... class Applicant:
...     ssn: str
...     age: int
>>> named_fields(Applicant("123-45-6789", 41))
{'ssn': '123-45-6789', 'age': 41}
>>> named_fields(b'{"ssn": "123"}')
{'ssn': '123'}
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import pathlib
import re
import sys
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

# C0 and C1 controls (CR, LF, ESC, NUL, NEL...), DEL, the Unicode line and paragraph
# separators (str.splitlines and JavaScript treat them as line breaks) and lone surrogates
# (they cannot be encoded as UTF-8, so they would break the write, not just the line).
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# A JSON object or array (or a JSON string holding one), perhaps after white space, a byte
# order mark or characters that cleaning removes: the only text worth parsing. Text that
# becomes JSON once cleaned is parsed too, or a field inside it would be stored as text
# that `*` paths leave alone.
_JSON_CONTAINER = re.compile("[\\s\ufeff\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]*[\\[{\"]")
# A sparse matrix is sized as the CSR form its rows are read from, with 8-byte column
# indices and row pointers: known from its shape and entry count before anything is built.
SPARSE_INDEX_BYTES = 8


class Unstructured(Exception):
    """A value with no plain JSON form; `reason` says why, `kind` names its type."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(f"{reason}: {kind}")
        self.reason = reason
        self.kind = kind


class LabelledValues(dict):
    """A pandas Series as a mapping of its labels to its values, and its name (`column`).

    Whether the labels or the name are the field names cannot be told from the Series: a
    row read by ``df.iterrows()`` is labelled by the frame's columns and named by the row,
    a column of a frame indexed by user name is labelled by the rows and named by the
    column. Redaction reads both (see ``events.redact``); the stored line is the mapping.
    """

    __slots__ = ("column",)

    def __init__(self, values: dict, column: object) -> None:
        super().__init__(values)
        self.column = column


class IndexedRows(list):
    """A pandas Series labelled by a named index, as the rows of ``series.reset_index()``:
    ``[{index_key: label, value_key: value}, ...]``.

    The labels are usually row keys (a column of a frame indexed by e-mail), read by a
    path naming the index; but a row read by ``df.iterrows()`` from a frame whose columns
    axis is named (after ``pivot``, ``unstack``) is labelled by field names. Redaction reads
    a label that names the path's field as that field too (see ``events.redact``).
    """

    __slots__ = ("index_key", "value_key")

    def __init__(self, rows: list, index_key: object, value_key: object) -> None:
        super().__init__(rows)
        self.index_key = index_key
        self.value_key = value_key


class ColumnIndexRows(list):
    """The rows of a sparse matrix, ``[{column index: value}, ...]``: its columns have no
    names, so a path naming one by name fails closed (see ``events.redact``)."""

    __slots__ = ()


class ColumnIndexRow(dict):
    """One row of a sparse 1-D array, ``{column index: value}``, as :class:`ColumnIndexRows`."""

    __slots__ = ()


class AxisRecords(list):
    """The row records of a pandas DataFrame whose columns axis is named (after ``pivot``,
    ``unstack``, ``crosstab``), with the names of that axis (`axes`): its column labels are
    then the values of the field the axis names (an e-mail per column), so a path naming
    the axis drops or hashes the whole field (see ``events.redact``)."""

    __slots__ = ("axes",)

    def __init__(self, rows: list, axes: Sequence[object]) -> None:
        super().__init__(rows)
        self.axes = tuple(axes)


class PartlyNamed(dict):
    """A namedtuple some of whose fields lost their names (``df.itertuples()`` and
    ``namedtuple(rename=True)`` call a field that is no identifier ``_1``): a path naming a
    key it lacks may name one of those, and fails closed (see ``events.redact``)."""

    __slots__ = ()


def _by_column_index(rows: object) -> object:
    if type(rows) is list:
        return ColumnIndexRows(rows)
    if type(rows) is dict and "truncated" not in rows:
        return ColumnIndexRow(rows)
    return rows  # a truncation marker holds no cell


class NamedRows(list):
    """The row records a :class:`NamedColumns` input is logged as, with its column names
    in order (`names`): a path naming a column by index (``inputs.0``, as it names a
    sparse matrix's) reaches the column of that name (see ``events.redact``)."""

    __slots__ = ("names",)

    def __init__(self, rows: list, names: Sequence[object]) -> None:
        super().__init__(rows)
        self.names = tuple(names)


class NamedColumns:
    """A dense model input and the names of its columns, as the model's reference profile
    knows them, converted on the writer thread: logged as row records keyed by the names
    (as a DataFrame is), so ``redact=["inputs.ssn"]`` reaches the column named ``ssn`` of a
    plain array. A value of another shape or width is logged as it would be unwrapped."""

    __slots__ = ("names", "value")

    def __init__(self, value: object, names: Sequence[str]) -> None:
        self.value = value
        self.names = tuple(names)


# The event fields that may hold the model's input matrix.
_INPUT_FIELDS = ("inputs", "features")


def name_dense_columns(event: dict, names: Sequence[str]) -> dict:
    """`event` (as emitted, before the log reads it) with its ``inputs`` and ``features``
    marked to be logged as records keyed by `names`, where they are dense arrays, rows or
    default-labelled DataFrames of that width, alone or as the one value of a mapping (a
    feed, ``{"input": X}``: a new mapping, the caller's is not changed); returns it.
    Nothing is converted here: the log's writer thread does it.

    >>> import numpy as np
    >>> event = name_dense_columns({"inputs": np.array([[7, 1.5]])}, ["ssn", "amount"])
    >>> named_fields(event["inputs"])
    [{'ssn': 7.0, 'amount': 1.5}]
    >>> named_fields(name_dense_columns({"inputs": [7, 1.5]}, ["ssn", "amount"])["inputs"])
    [{'ssn': 7, 'amount': 1.5}]
    """
    if not names:
        return event
    for field in _INPUT_FIELDS:
        value = event.get(field)
        if value is None or isinstance(value, (str, bytes, NamedColumns)):
            continue
        if isinstance(value, Mapping):
            event[field] = _named_feed(value, names)
        else:
            event[field] = NamedColumns(value, names)
    return event


def _named_feed(feed: Mapping, names: Sequence[str]) -> Mapping:
    """A mapping holding the model's input matrix under one key (``{"input": X}``, as an
    ONNX session, a Keras model with a named input or a Triton client is fed) as a new
    mapping whose value is to be logged by `names`; any other mapping as it is. A key
    among `names` is a column given by name, not a feed.

    >>> _named_feed({"ssn": [7, 8]}, ["ssn", "amount"])
    {'ssn': [7, 8]}
    >>> type(_named_feed({"input": [[7, 1.5]]}, ["ssn", "amount"])["input"]).__name__
    'NamedColumns'
    """
    try:
        if len(feed) != 1:
            return feed
        ((key, value),) = feed.items()
        if isinstance(key, str) and key in names:
            return feed
        if value is None or isinstance(value, (str, bytes, bool, int, float, Mapping,
                                               NamedColumns)):
            return feed
        return {key: NamedColumns(value, names)}
    except Exception:  # the caller's own Mapping raised when read: logged as it is
        return feed


# What pandas infers of an index holding row positions or row keys, never field names.
_ROW_INDEX_TYPES = frozenset({
    "integer", "floating", "mixed-integer-float", "decimal", "complex", "boolean",
    "datetime64", "datetime", "date", "time", "timedelta64", "timedelta", "period",
    "interval", "empty"})


class NotConverted(Exception):
    """Not a container this module converts: the caller handles the value itself."""


def parse_json_text(text: str, max_chars: int) -> object | None:
    """The object or array `text` holds as JSON, or None for any other text.

    >>> parse_json_text(' [1, {"a": 2}]', 100), parse_json_text("hello", 100)
    ([1, {'a': 2}], None)
    >>> parse_json_text('\\ufeff{"a": "x\\ty"}\\x00', 100)
    {'a': 'xy'}
    """
    if len(text) > max_chars or not _JSON_CONTAINER.match(text):
        return None
    # What cleaning would strip anyway: the stored strings lose these characters, and a
    # raw tab or NUL inside a string would otherwise make strict JSON refuse the whole text.
    text = UNSAFE.sub("", text).strip().strip("\ufeff").strip()
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(parsed, str) and parsed is not text and len(parsed) < len(text):
        # JSON encoded twice (a message body sent as a JSON string): its fields are fields.
        return parse_json_text(parsed, max_chars)
    return parsed if isinstance(parsed, (dict, list)) else None


def type_name(value: object) -> str:
    """The qualified name of `value`'s type, as markers and counts show it.

    >>> type_name(object())
    'builtins.object'
    """
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def named_fields(value: object, max_bytes: int = 1 << 20) -> object:
    """`value` as plain containers: mappings of named fields, lists, strings and numbers.

    The result may still hold non-JSON leaves (numpy scalars, nested objects): the caller
    cleans it recursively. A scipy.sparse matrix larger than `max_bytes` becomes a marker
    (see :func:`sparse_rows`). Raises :class:`Unstructured` for bytes that are not UTF-8
    text and :class:`NotConverted` for a value this module does not know.

    >>> import numpy as np
    >>> people = np.array([("ann", 41)], dtype=[("name", "U8"), ("age", "i4")])
    >>> [sorted(row) for row in named_fields(people)]
    [['age', 'name']]
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise Unstructured("binary", type_name(value)) from None
        parsed = parse_json_text(text, max_bytes)
        return text if parsed is None else parsed
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):  # namedtuple
        names = type(value)._fields
        by_name = dict(zip(names, value))
        # Renamed fields are called `_<position>`: their own names are lost.
        if any(name == f"_{position}" for position, name in enumerate(names)):
            return PartlyNamed(by_name)
        return by_name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    attributes = getattr(type(value), "__attrs_attrs__", None)
    if attributes is not None and not isinstance(value, type):
        return {a.name: getattr(value, a.name) for a in attributes}
    converted = _from_library(value, max_bytes)
    if converted is not NotImplemented:
        return converted
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (uuid.UUID, decimal.Decimal, pathlib.PurePath)):
        return str(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):  # pandas.Timedelta too
        return value.total_seconds()
    raise NotConverted(type_name(value))


def _records_of_repeated_columns(frame: Any) -> list[dict[object, object]]:
    """Row records of a DataFrame whose columns repeat a name: the second ``a`` is ``a.1``,
    as ``pandas.read_csv`` names them (``to_dict`` would keep one of them, with a warning
    printed into the model server's log).

    >>> import pandas as pd
    >>> _records_of_repeated_columns(pd.DataFrame([[1, 2, 3]], columns=["a", "a", "b"]))
    [{'a': 1, 'a.1': 2, 'b': 3}]
    """
    taken = {str(name) for name in frame.columns}
    seen: dict[object, int] = {}
    names: list[object] = []
    for name in frame.columns:
        count = seen.get(name, 0)
        seen[name] = count + 1
        if count:
            renamed = f"{name}.{count}"
            while renamed in taken:  # a column of that name exists already
                count += 1
                renamed = f"{name}.{count}"
            taken.add(renamed)
            name = renamed
        names.append(name)
    renamed_frame = frame.copy(deep=False)
    renamed_frame.columns = names
    return renamed_frame.to_dict(orient="records")


def _from_library(value: object, max_bytes: int) -> object:
    # Only libraries already imported can have made `value`: nothing is imported here.
    if type(value) is NamedColumns:
        return _named_columns(value, max_bytes)
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
        if value.dtype.names:
            return _records(value)
        if value.dtype.kind in "mM":
            return _numpy_time(numpy, value)
    if is_sparse(value):
        return _by_column_index(sparse_rows(value, max_bytes))
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor) and \
            value.layout is not torch.strided:
        return _by_column_index(_sparse_tensor_rows(value, max_bytes))
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        if isinstance(value, pandas.DataFrame):
            return _frame_records(value)
        if isinstance(value, pandas.Series):
            return _series_fields(value)
        if value is pandas.NA or value is pandas.NaT:
            return None
        if isinstance(value, pandas.Timestamp):
            return value.isoformat()
    polars = sys.modules.get("polars")
    if polars is not None:
        if isinstance(value, polars.DataFrame):
            if _polars_default_labels(value.columns):
                # pl.DataFrame(X): no names, only positions, as a sparse matrix's columns.
                return ColumnIndexRows([dict(enumerate(row)) for row in value.iter_rows()])
            return value.to_dicts()
        if isinstance(value, polars.Series):
            values = value.to_list()
            # A polars Series is always a column; "" is the name of an unnamed one.
            return [{value.name: item} for item in values] if value.name else values
    for module in ("pydantic", "pydantic.v1"):
        pydantic = sys.modules.get(module)
        base = getattr(pydantic, "BaseModel", None)
        if base is not None and isinstance(value, base):
            dump = getattr(value, "model_dump", None)
            return dump() if callable(dump) else value.dict()  # type: ignore[attr-defined]
    return NotImplemented


def _frame_records(frame: Any) -> object:
    """A pandas DataFrame as row records: by column index (:class:`ColumnIndexRows`) when
    its columns are labelled by integers alone (``pd.DataFrame(X)``), which name no field;
    as :class:`AxisRecords` when its columns axis is named, its labels values of that field.

    >>> import pandas as pd
    >>> rows = _frame_records(pd.DataFrame([[7, 1.5]]))
    >>> rows, type(rows).__name__
    ([{0: 7, 1: 1.5}], 'ColumnIndexRows')
    >>> wide = _frame_records(pd.DataFrame({"a@x.org": [1.0]}).rename_axis(columns="email"))
    >>> wide, wide.axes
    ([{'a@x.org': 1.0}], ('email',))
    """
    columns = frame.columns
    if not columns.is_unique:
        records = _records_of_repeated_columns(frame)
    else:
        records = frame.to_dict(orient="records")
    axes = [name for name in columns.names if name is not None]
    if axes:
        return AxisRecords(records, axes)
    if len(columns) and columns.nlevels == 1 and columns.inferred_type == "integer":
        return ColumnIndexRows(records)
    return records


def _pandas_default_labels(columns: Any, width: int) -> bool:
    """Whether a DataFrame's columns are those of ``pd.DataFrame(X)``: 0 to `width` - 1."""
    return len(columns) == width and columns.nlevels == 1 and \
        columns.inferred_type == "integer" and list(columns) == list(range(width))


def _polars_default_labels(columns: Sequence[str]) -> bool:
    """Whether a polars DataFrame's columns are those of ``pl.DataFrame(X)``:
    ``column_0``, ``column_1``, ..."""
    return bool(columns) and all(name == f"column_{position}"
                                 for position, name in enumerate(columns))


def _series_fields(series: Any) -> object:
    """A pandas Series as named fields: a column when its index holds rows, as the rows of
    a one-column DataFrame (so a path naming the column reaches every value), a list of
    values when it has no name (text is then dropped whole by any path into the field);
    labelled by a named index, the rows of ``reset_index()`` (:class:`IndexedRows`), so a
    path naming the index reaches the labels; labelled otherwise, as
    :class:`LabelledValues`.

    >>> import pandas as pd
    >>> _series_fields(pd.Series(["a", "b"], name="comment"))
    [{'comment': 'a'}, {'comment': 'b'}]
    >>> _series_fields(pd.Series(["a", "b"])), _series_fields(pd.Series({"ssn": "1"}))
    (['a', 'b'], {'ssn': '1'})
    >>> row = pd.Series({"ssn": "1"}, name="jane")
    >>> _series_fields(row), _series_fields(row).column
    ({'ssn': '1'}, 'jane')
    >>> scores = pd.Series([0.5], index=pd.Index(["a@example.com"], name="email"))
    >>> _series_fields(scores.rename("score"))
    [{'email': 'a@example.com', 'score': 0.5}]
    """
    name = series.name
    index = series.index
    if index.inferred_type in _ROW_INDEX_TYPES:
        values = series.tolist()
        return values if name is None else [{name: item} for item in values]
    if index.nlevels == 1 and index.name is not None:
        # An unnamed Series' values are the column 0, as reset_index() names them. A value
        # named as the index keeps the value, as a later key does: the label is not written.
        value_key = 0 if name is None else name
        rows = [{index.name: label, value_key: item}
                for label, item in zip(index.tolist(), series.tolist())]
        return IndexedRows(rows, index.name, value_key)
    # As to_dict() pairs them (the last of a repeated label kept), at a fraction of its cost.
    return LabelledValues(dict(zip(index.tolist(), series.tolist())), name)


def _named_columns(wrapped: NamedColumns, max_bytes: int) -> object:
    """A dense input as row records keyed by its column names (:class:`NamedRows`): a 2-D
    array or list of rows of their width, one row (1-D, of that length) as a list of one
    record, and with a single name a 1-D array as that column's rows (as the input checks
    read them); a sparse matrix's non-zero entries by name. Anything else, or an array too
    large to write, is returned as it is, to be logged as it would be unwrapped.

    >>> _named_columns(NamedColumns([[1, 2], [3, 4]], ["a", "b"]), 1024)
    [{'a': 1, 'b': 2}, {'a': 3, 'b': 4}]
    >>> _named_columns(NamedColumns([1, 2], ["a", "b"]), 1024)
    [{'a': 1, 'b': 2}]
    >>> _named_columns(NamedColumns([1, 2, 3], ["a", "b"]), 1024)
    [1, 2, 3]
    """
    value, names = wrapped.value, list(wrapped.names)
    width = len(names)
    if is_sparse(value):
        shape = getattr(value, "shape", ())
        rows = sparse_rows(value, max_bytes)
        if len(shape) == 2 and shape[1] == width and isinstance(rows, list):
            return NamedRows([{names[column]: item for column, item in row.items()}
                              for row in rows], names)
        if len(shape) == 1 and shape[0] == width and isinstance(rows, dict):
            return NamedRows([{names[column]: item for column, item in rows.items()}], names)
        return _by_column_index(rows)
    frame = _frame_by_names(value, names, max_bytes)
    if frame is not None:
        return frame
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        if value.dtype.names or value.ndim not in (1, 2) or value.nbytes > max_bytes:
            return value
        plain = _numpy_time(numpy, value) if value.dtype.kind in "mM" else value.tolist()
    elif isinstance(value, (list, tuple)) and not hasattr(type(value), "_fields"):
        # Each cell takes at least 2 bytes written: a larger list is cut when cleaned.
        if len(value) * width > max_bytes // 2:
            return value
        plain = [row.tolist() if numpy is not None and isinstance(row, numpy.ndarray) and
                 row.ndim == 1 and not row.dtype.names else row for row in value]
    else:
        return value
    if plain and all(_is_row(row) for row in plain):
        if all(len(row) == width for row in plain):
            return NamedRows([dict(zip(names, row)) for row in plain], names)
        return value
    if not any(_is_row(item) or isinstance(item, Mapping) for item in plain):
        if width == 1:
            return NamedRows([{names[0]: item} for item in plain], names)
        if len(plain) == width:
            return NamedRows([dict(zip(names, plain))], names)
    return value


def _frame_by_names(value: object, names: list[str], max_bytes: int) -> object | None:
    """A DataFrame whose columns have no names of their own (``pd.DataFrame(X)``,
    ``pl.DataFrame(X)``), of the width of `names`, as row records keyed by them (a
    :class:`NamedRows`); any other frame as it is (its own labels name its fields, or it is
    too large to write); None for a value that is no DataFrame."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.DataFrame):
        if not _pandas_default_labels(value.columns, len(names)) or \
                int(value.memory_usage(index=False).sum()) > max_bytes:
            return value
        rows = value.itertuples(index=False, name=None)
    else:
        polars = sys.modules.get("polars")
        if polars is None or not isinstance(value, polars.DataFrame):
            return None
        if len(value.columns) != len(names) or not _polars_default_labels(value.columns) or \
                value.estimated_size() > max_bytes:
            return value
        rows = value.iter_rows()
    return NamedRows([dict(zip(names, row)) for row in rows], names)


def _is_row(item: object) -> bool:
    return isinstance(item, (list, tuple)) and not hasattr(type(item), "_fields")


def _numpy_time(numpy: object, value: object) -> object:
    """A numpy datetime64 as ISO 8601 text at its own precision, a timedelta64 as seconds.

    ``tolist()`` gives an int for units finer than microseconds (pandas' ``[ns]``) or dates
    out of Python's range: a bare count of ticks no reader can tell is a time. NaT is None.
    A timedelta64 in months or years has no length in seconds and raises (counted).
    """
    np = numpy
    array = np.asarray(value)  # type: ignore[attr-defined]
    missing = np.isnat(array)  # type: ignore[attr-defined]
    if array.dtype.kind == "M":
        plain = np.asarray(np.datetime_as_string(array), dtype=object)  # type: ignore
    else:
        plain = np.asarray(array / np.timedelta64(1, "s"), dtype=object)  # type: ignore
    plain[missing] = None
    return plain.tolist()


def _records(value: object) -> object:
    """A structured numpy array as row records (nested fields stay named)."""
    names = value.dtype.names  # type: ignore[attr-defined]
    if value.ndim == 0:  # type: ignore[attr-defined]
        return {name: value[name] for name in names}  # type: ignore[index]
    return [{name: row[name] for name in names} for row in value.reshape(-1)]  # type: ignore


def is_sparse(value: object) -> bool:
    """Whether `value` is a scipy.sparse matrix or array, told without importing scipy.

    >>> is_sparse([[0.0, 1.5]])
    False
    """
    # Not imported: a matrix exists only once scipy.sparse is loaded.
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and bool(sparse.issparse(value))


def sparse_rows(matrix: object, max_bytes: int = 1 << 20) -> object:
    """A scipy.sparse matrix or array as the non-zero entries of each row.

    A 2-D matrix becomes a list with one ``{column index: value}`` mapping per row, in row
    order (an empty mapping for a row of zeros), as a dense array becomes a list of rows; a
    1-D array becomes one mapping. Explicit zeros are left out and duplicate entries
    summed, as scipy reads them. The matrix is never made dense: one whose CSR form
    (``SPARSE_INDEX_BYTES`` per column index and row pointer) passes `max_bytes` becomes
    ``{"truncated": "sparse", "nnz": ..., "shape": [...], "dtype": ...}``. Raises
    :class:`Unstructured` for an array of more than 2 dimensions.

    >>> from scipy.sparse import csr_matrix
    >>> sparse_rows(csr_matrix([[0.0, 1.5, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]]))
    [{1: 1.5, 3: 2.0}, {}]
    >>> sparse_rows(csr_matrix([[1.0] * 100]), max_bytes=1024)
    {'truncated': 'sparse', 'nnz': 100, 'shape': [1, 100], 'dtype': 'float64'}
    """
    shape = [int(n) for n in matrix.shape]  # type: ignore[attr-defined]
    if len(shape) not in (1, 2):
        raise Unstructured("unsupported_type", type_name(matrix))
    rows = shape[0] if len(shape) == 2 else 1
    nnz = int(matrix.nnz)  # type: ignore[attr-defined]
    dtype = matrix.dtype  # type: ignore[attr-defined]
    if nnz * (dtype.itemsize + SPARSE_INDEX_BYTES) + (rows + 1) * SPARSE_INDEX_BYTES \
            > max_bytes:
        return {"truncated": "sparse", "nnz": nnz, "shape": shape, "dtype": str(dtype)}
    csr = matrix.tocsr()  # type: ignore[attr-defined]
    if not csr.has_canonical_format:
        # Summed on a copy: the caller's matrix is read, never changed.
        csr = csr.copy()
        csr.sum_duplicates()
    bounds = csr.indptr.tolist()
    columns = csr.indices.tolist()
    values = csr.data.tolist()
    by_row = [{columns[k]: values[k] for k in range(start, end) if values[k] != 0}
              for start, end in zip(bounds, bounds[1:])]
    return by_row if len(shape) == 2 else by_row[0]


def _sparse_tensor_rows(tensor: object, max_bytes: int = 1 << 20) -> object:
    """A sparse torch tensor (COO, CSR, CSC, BSR) as the non-zero entries of each row, as
    :func:`sparse_rows` gives a scipy.sparse matrix's, within the same `max_bytes` (read
    from a coalesced COO copy: the caller's tensor is never changed, nor made dense).
    torch is not among the package's dependencies: tests/test_events_sparse.py checks this
    against scipy.sparse where torch is installed (``make test-torch``)."""
    shape = [int(n) for n in tensor.shape]  # type: ignore[attr-defined]
    if len(shape) not in (1, 2):
        raise Unstructured("unsupported_type", type_name(tensor))
    coo = tensor if tensor.is_sparse else tensor.to_sparse_coo()  # type: ignore[attr-defined]
    coo = coo.coalesce()
    nnz = int(coo._nnz())
    rows = shape[0] if len(shape) == 2 else 1
    if nnz * (coo.element_size() + SPARSE_INDEX_BYTES) + (rows + 1) * SPARSE_INDEX_BYTES \
            > max_bytes:
        return {"truncated": "sparse", "nnz": nnz, "shape": shape,
                "dtype": str(coo.dtype).removeprefix("torch.")}
    indices = coo.indices().cpu().tolist()
    values = coo.values().cpu().tolist()
    if len(shape) == 1:
        return {column: value for column, value in zip(indices[0], values) if value != 0}
    by_row: list[dict[int, object]] = [{} for _ in range(rows)]
    for row, column, value in zip(indices[0], indices[1], values):
        if value != 0:
            by_row[row][column] = value
    return by_row
