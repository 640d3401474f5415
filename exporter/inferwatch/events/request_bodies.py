"""Serving request bodies that hold a frame's rows without naming them where a path looks:
pandas' "split" form (MLflow's ``dataframe_split``), Seldon's ``names`` beside its rows,
KServe's and Triton's named tensors, and rows one level down under an envelope's key
(MLflow's ``dataframe_records``, ``instances``, ``inputs``). Each is read here so that a
redaction path naming a column reaches its cells (``redact._visit``), or is told to be
unreadable, for the caller to drop or hash whole.
"""

from __future__ import annotations

from inferwatch.events.field_names import fold_name, names_key, same_field
from inferwatch.events.fields import NamedRows

# The parts of a pandas DataFrame's "split" (and "tight") form: `to_dict("split")`,
# `to_json(orient="split")`, an MLflow scoring body's "dataframe_split".
SPLIT_PARTS = frozenset({"columns", "data", "index", "index_names", "column_names"})


def split_unreadable(parent: dict | list, key: str | int, path: tuple[str, ...]) -> bool:
    """Read ``parent[key]``, when it is a DataFrame in the "split" form and `path` names
    no part of that form, as its row records keyed by its columns (a :class:`NamedRows`,
    in place: the index is left out), so a path naming a column reaches its cells. True
    when it cannot be read so (ragged rows, repeated or unnamed columns, or a columns axis
    the path names): the caller drops or hashes it whole.

    >>> body = {"x": {"columns": ["ssn", "age"], "index": [0], "data": [["1", 41]]}}
    >>> split_unreadable(body, "x", ("ssn",)), body
    (False, {'x': [{'ssn': '1', 'age': 41}]})
    >>> split_unreadable({"x": {"columns": ["ssn"], "data": [["1", 41]]}}, "x", ("ssn",))
    True
    """
    value = parent[key]  # type: ignore[index]
    if type(value) is dict and "names" in value and value.keys() <= _SELDON_PARTS:
        return _seldon_unreadable(parent, key, path)
    if type(value) is not dict or "columns" not in value or "data" not in value or \
            not value.keys() <= SPLIT_PARTS:
        return False
    head = path[0]
    if head == "*" or (fold_name(head) in SPLIT_PARTS and
                       not _names_a_column(value["columns"], head)):
        return False  # the path names the parts themselves
    axes = value.get("column_names")
    if isinstance(axes, list) and any(isinstance(axis, str) and same_field(axis, head)
                                      for axis in axes):
        return True  # the column labels are values of the field the path names
    records = _split_records(value["columns"], value["data"])
    if records is None:
        return True
    parent[key] = records  # type: ignore[index]
    return False


# Seldon Core's request body: ``{"names": [...], "ndarray": [[...]]}`` or ``{"names": [...],
# "tensor": {"shape": [rows, columns], "values": [...]}}``.
_SELDON_PARTS = frozenset({"names", "ndarray", "tensor"})


def _seldon_unreadable(parent: dict | list, key: str | int, path: tuple[str, ...]) -> bool:
    """:func:`split_unreadable` for a Seldon body whose ``names`` hold the field `path`
    names: its rows (``ndarray``, or a 2-D ``tensor``'s values) read as records keyed by the
    names; True, for the caller to drop or hash it whole, when they cannot be.

    >>> body = {"x": {"names": ["ssn", "age"], "ndarray": [["1", 41]]}}
    >>> _seldon_unreadable(body, "x", ("ssn",)), body
    (False, {'x': [{'ssn': '1', 'age': 41}]})
    """
    value = parent[key]  # type: ignore[index]
    head = path[0]
    if head == "*" or not _names_a_column(value["names"], head):
        return False
    rows = value.get("ndarray")
    tensor = value.get("tensor")
    if rows is None and type(tensor) is dict:
        shape, flat = tensor.get("shape"), tensor.get("values")
        if type(shape) is list and len(shape) == 2 and type(flat) is list and \
                all(type(size) is int and size >= 0 for size in shape) and \
                len(flat) == shape[0] * shape[1]:
            rows = [flat[start:start + shape[1]] for start in range(0, len(flat), shape[1])] \
                if shape[1] else []
    records = _split_records(value["names"], rows)
    if records is None:
        return True
    parent[key] = records  # type: ignore[index]
    return False


def _names_a_column(columns: object, head: str) -> bool:
    """Whether `head` names one of a "split" body's `columns` (a column called ``data``
    or ``index`` is the field a path names, not the body's part of that name: redaction
    fails closed).

    >>> _names_a_column(["Data", "age"], "data"), _names_a_column(["age"], "data")
    (True, False)
    """
    if type(columns) is not list:
        return False
    return any((type(column) is str or type(column) is int) and same_field(str(column), head)
               for column in columns)


def _split_records(columns: object, data: object) -> NamedRows | None:
    """The rows of a "split" body as records keyed by its columns; None when its columns
    are not distinct names (text, whole numbers, or a MultiIndex's parts, dotted) or a row
    is not a list of their number."""
    if type(columns) is not list or type(data) is not list:
        return None
    names: list[str] = []
    for column in columns:
        if type(column) is str or type(column) is int:
            names.append(str(column))
        elif type(column) is list and column and \
                all(type(part) is str or type(part) is int for part in column):
            names.append(".".join(str(part) for part in column))
        else:
            return None
    if len(set(names)) != len(names):
        return None
    width = len(names)
    if any(type(row) is not list or len(row) != width for row in data):
        return None
    return NamedRows([dict(zip(names, row)) for row in data], names)


# A named tensor of the KServe (Open Inference Protocol) and Triton request bodies:
# ``{"name": "ssn", "shape": [1], "datatype": "INT64", "data": [...]}``.
_TENSOR_KEYS = frozenset({"name", "shape", "datatype", "data", "parameters"})


def named_tensor(node: dict, head: str) -> bool:
    """Whether `node` is a named tensor whose name is the field `head`: its ``data`` is
    that field's values.

    >>> named_tensor({"name": "SSN", "shape": [1], "data": [1]}, "ssn")
    True
    """
    name = node.get("name")
    return type(name) is str and "data" in node and node.keys() <= _TENSOR_KEYS and \
        same_field(name, head)


def wraps_records(value: object, head: str) -> bool:
    """Whether `value`, met under a key the path does not name, may hold the field's
    records further down: rows (a list of mappings), a mapping holding rows or another
    mapping (an envelope, rows by their index), or a mapping with a key `head` names.

    >>> wraps_records([{"ssn": 1}], "ssn"), wraps_records({"ssn": [1]}, "ssn")
    (True, True)
    >>> wraps_records({"body": {"rows": [{"ssn": 1}]}}, "ssn")
    True
    >>> wraps_records({"age": [30]}, "ssn"), wraps_records([0.5, 1.5], "ssn")
    (False, False)
    """
    if type(value) is list:
        return _rows(value)
    if type(value) is not dict or not value:
        return False
    return any(type(item) is dict or (type(item) is list and _rows(item))
               for item in value.values()) or names_key(value, head)


def _rows(value: list) -> bool:
    return bool(value) and all(type(item) is dict for item in value)
