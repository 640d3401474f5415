"""Making a cleaned prediction event safe to store: fields dropped or replaced by a keyed hash.

:class:`Redaction` drops fields or replaces them with a keyed hash, in an event that
:func:`~inferwatch.events.clean.clean` made plain JSON. Field paths are
dotted: ``inputs.ssn`` is the key ``ssn`` inside ``inputs``. A list met on the way is
crossed element by element, so ``inputs.ssn`` also covers a batch of records given as a
list, and ``*`` matches every key at its level (``inputs.*.email``). A key that itself
contains a dot is matched as the path it spells, and a tuple key (a pandas MultiIndex
column) is stored as its dotted path, so ``inputs.user.ssn`` reaches both.

>>> policy = Redaction(drop=["inputs.ssn"], hash_fields=["request_id"],
...                    secret=b"0123456789abcdef")
>>> event = policy.apply(clean({"request_id": "r-1", "inputs": {"ssn": "1\\n2", "age": 41}}))
>>> event["inputs"], event["request_id"][:12]
({'age': 41}, 'hmac-sha256:')
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Sequence

from inferwatch.events.clean import clean
from inferwatch.events.field_names import FOLDED, fold_name, names_key, same_field
from inferwatch.events.fields import (
    UNSAFE,
    AxisRecords,
    ColumnIndexRow,
    ColumnIndexRows,
    IndexedRows,
    LabelledValues,
    NamedRows,
    PartlyNamed,
)
from inferwatch.events.request_bodies import named_tensor, split_unreadable, wraps_records
from inferwatch.faults import bounded_request_id

HASH_PREFIX = "hmac-sha256:"
MIN_SECRET_BYTES = 16
# The largest array hash_value() hashes whole, as a log of the default max_event_bytes does.
HASH_ARRAY_BYTES = 64 * 1024


def canonical_bytes(value: object) -> bytes:
    """The bytes a value is hashed as: UTF-8 for a string, compact sorted JSON otherwise.

    >>> canonical_bytes("4111"), canonical_bytes({"b": 1, "a": [1.0, None]})
    (b'4111', b'{"a":[1.0,null],"b":1}')
    """
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")


def hash_value(secret: bytes | str, value: object, *, max_event_bytes: int = HASH_ARRAY_BYTES,
               request_id: bool = False) -> str:
    """The stored form of a hashed field: ``"hmac-sha256:"`` + hex HMAC-SHA256 of the value.

    Use it to find the events of a known value without storing that value. The value is
    cleaned as the log cleans it before hashing: a string loses its control characters and
    JSON text is its parsed value (hashed as compact sorted JSON), a numpy scalar is a
    number, a datetime ISO text. An array or JSON text larger than the log's
    `max_event_bytes` (default 64 KiB) is stored, and hashed, as its truncation marker: pass
    the log's bound to find it. `request_id=True` hashes the value as the log stores a
    request id: text as its cleaned text, JSON or not, and one over 1,024 characters as its
    ``"sha256:"`` digest.

    >>> key = b"0123456789abcdef"
    >>> hash_value(key, "4111") == HASH_PREFIX + hmac.new(key, b"4111", "sha256").hexdigest()
    True
    >>> hash_value(key, "Jane\\tDoe\\r\\n") == hash_value(key, "JaneDoe")
    True
    """
    key = _secret_key(secret)
    # The encoder cleans the whole event with the log's bound, then hashes what is stored:
    # hashing the value as given would miss text holding JSON or a control character.
    # A request id given as text stays text, JSON or not, as the log stores it.
    cleaned = identity_text(value) if request_id else None
    if cleaned is None:
        cleaned = clean(value, max_array_bytes=max_event_bytes)
    if request_id and isinstance(cleaned, str):
        # The log bounds an id before hashing it, as every path that hands one over does.
        cleaned = bounded_request_id(cleaned)
    return _hmac(key, cleaned)


def identity_text(value: object) -> str | None:
    """An identity field (a request id, a model name) as the log stores it when given as
    text or UTF-8 bytes: its cleaned text, never parsed as JSON, since events are found and
    joined by it. None for any other value, which is cleaned as every value is.

    >>> identity_text('["x"]\\n'), identity_text(b"r-17"), identity_text(17)
    ('["x"]', 'r-17', None)
    """
    if type(value) is str:  # what an id or a name usually is: no conversion to guard
        return value if value.isprintable() else UNSAFE.sub("", value)
    try:
        if isinstance(value, str):
            text = str.__str__(value)  # a str Enum's characters, as cleaning reads them
        elif isinstance(value, (bytes, bytearray)):
            text = bytes(value).decode("utf-8")
        else:
            return None
    except Exception:  # bytes that are not UTF-8, an object that raises when looked at
        return None
    return text if text.isprintable() else UNSAFE.sub("", text)


def _secret_key(secret: object) -> bytes:
    """The HMAC key of `secret`: a str as its UTF-8, bytes as they are.

    Anything else is refused by name: ``bytes(16)`` is sixteen zero bytes, so a number read
    from YAML or an environment parser would otherwise key every hash with a guessable
    key, or fail with a bare TypeError.
    """
    if isinstance(secret, str):
        return secret.encode("utf-8")
    if isinstance(secret, (bytes, bytearray, memoryview)):
        return bytes(secret)
    raise ValueError(f"secret: expected text or bytes, got {type(secret).__name__}")


def _hmac(key: bytes, cleaned: object) -> str:
    return HASH_PREFIX + hmac.new(key, canonical_bytes(cleaned), hashlib.sha256).hexdigest()


def parse_path(path: str, option: str) -> tuple[str, ...]:
    """Split a dotted field path; a malformed one is a configuration error naming `option`.

    >>> parse_path("inputs.*.email", "redact")
    ('inputs', '*', 'email')
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"{option}: field paths must be non-empty strings, got {path!r}")
    segments = tuple(path.split("."))
    if any(not segment for segment in segments):
        raise ValueError(f"{option}: empty segment in field path {path!r}")
    return segments


class Redaction:
    """Which fields to drop and which to hash, with the secret the hashes are keyed by.

    >>> Redaction(hash_fields=["inputs.email"])
    Traceback (most recent call last):
    ...
    ValueError: hash_fields needs a secret: pass secret=... or set INFERWATCH_EVENT_SECRET
    """

    def __init__(self, drop: Sequence[str] | None = (), hash_fields: Sequence[str] | None = (),
                 secret: bytes | str | None = None) -> None:
        # An option left empty in YAML or forwarded as an optional argument is None: no
        # paths, not a bare "'NoneType' object is not iterable".
        drop = () if drop is None else drop
        hash_fields = () if hash_fields is None else hash_fields
        for option, paths in (("redact", drop), ("hash_fields", hash_fields)):
            if isinstance(paths, (str, bytes)) or not isinstance(paths, Iterable):
                raise ValueError(f"{option}: expected a list of field paths, got {paths!r}")
        self.drop = [parse_path(p, "redact") for p in drop]
        self.hash = [parse_path(p, "hash_fields") for p in hash_fields]
        for option, paths in (("redact", self.drop), ("hash_fields", self.hash)):
            if any(len(p) == 1 and fold_name(p[0]) == "ts" for p in paths):
                # The log orders, filters and bounds events by their time: without it an
                # event would sort first and escape every --since.
                raise ValueError(f"{option}: 'ts' cannot be redacted or hashed: every event "
                                 "keeps its time")
        both = set(self.drop) & set(self.hash)
        if both:
            names = ", ".join(sorted(".".join(p) for p in both))
            raise ValueError(f"fields both in redact and hash_fields: {names}")
        named = {(fold_name(p[0]), *p[1:]) for p in self.drop + self.hash}
        given = len(self.drop), len(self.hash)
        self.drop = _with_twins(self.drop, named)
        self.hash = _with_twins(self.hash, named)
        # Per drop path, the hash paths that win the fields both reach (see _beats).
        self._spared = [
            [h for j, h in enumerate(self.hash)
             if _beats(h, j < given[1], d, i < given[0])]
            for i, d in enumerate(self.drop)]
        self._key = b""
        if self.hash:
            if secret is None:
                raise ValueError("hash_fields needs a secret: pass secret=... or set "
                                 "INFERWATCH_EVENT_SECRET")
            self._key = _secret_key(secret)
            if not self._key:
                raise ValueError("hash_fields needs a secret: pass secret=... or set "
                                 "INFERWATCH_EVENT_SECRET")
            if len(self._key) < MIN_SECRET_BYTES:
                raise ValueError(f"secret: at least {MIN_SECRET_BYTES} bytes are needed so "
                                 f"hashed values cannot be guessed, got {len(self._key)}")

    def __bool__(self) -> bool:
        return bool(self.drop or self.hash)

    def apply(self, event: dict, dropped: dict[str, int] | None = None) -> dict:
        """Drop, then hash, the configured fields of a cleaned event, in place; returns it.

        Redaction fails closed: where a path names a field but meets text (inputs given as
        free text, not named fields), or values with no names (a number, the rows of a
        plain array: see :func:`_unnamed_inside`), the whole text or value is dropped (a
        ``redact`` path, counted as ``unstructured`` in `dropped`) or hashed (a
        ``hash_fields`` path), since the field may be inside it.

        >>> Redaction(drop=["inputs.ssn"]).apply({"inputs": "ssn 123-45-6789", "id": 1})
        {'inputs': {'dropped': 'unstructured'}, 'id': 1}
        >>> Redaction(drop=["inputs.ssn"]).apply({"inputs": [[78051120, 1.5]], "id": 1})
        {'inputs': {'dropped': 'unstructured'}, 'id': 1}
        >>> Redaction(drop=["inputs.0"]).apply({"inputs": [[78051120, 1.5]], "id": 1})
        {'inputs': [{'1': 1.5}], 'id': 1}
        """
        def drop_text(parent: dict | list, key: str | int) -> None:
            parent[key] = {"dropped": "unstructured"}  # type: ignore[index]
            if dropped is not None:
                dropped["unstructured"] = dropped.get("unstructured", 0) + 1

        for path, winners in zip(self.drop, self._spared):
            if winners:
                _visit(event, path, _delete, drop_text, spare=_reached_by(winners), trail=(),
                       inside=False)
            else:
                _visit(event, path, _delete, drop_text, inside=False)
        for path in self.hash:
            _visit(event, path, self._replace_with_hash, self._replace_with_hash, inside=False)
        return event

    def _replace_with_hash(self, parent: dict | list, key: str | int) -> None:
        parent[key] = _hmac(self._key, parent[key])  # type: ignore[index]


# The raw input and the features computed from it often hold the same personal field, and
# which of the two an event's values land in depends on how the caller handed them over
# (``r.features()`` without ``r.inputs()``, or only the model call's argument): a key named
# under one is removed or hashed under the other too. Redaction fails closed.
_TWIN_FIELDS = {"inputs": "features", "features": "inputs"}


def _with_twins(paths: list[tuple[str, ...]], named: set[tuple[str, ...]]
                ) -> list[tuple[str, ...]]:
    """`paths`, plus the same key under the twin field of each path that names a key inside
    ``inputs`` or ``features``, unless a rule already names that twin (`named`: dropping
    ``inputs.ssn`` and hashing ``features.ssn`` is a choice, kept). Not for the whole field,
    nor for every key at once (``inputs.*``): dropping the raw input wholesale is a choice
    to keep the features. A ``*`` anywhere else names keys as a literal segment does
    (``features.*.email``), and has its twin.

    >>> _with_twins([("inputs", "ssn"), ("inputs",), ("features", "*"), ("inputs", "id"),
    ...              ("features", "*", "email")], named={("features", "id")})[5:]
    [('features', 'ssn'), ('inputs', '*', 'email')]
    """
    twins: list[tuple[str, ...]] = []
    for path in paths:
        twin = _TWIN_FIELDS.get(fold_name(path[0])) if len(path) > 1 and path[1:] != ("*",) \
            else None
        if twin is not None:
            twin_path = (twin, *path[1:])
            if twin_path not in named and twin_path not in twins:
                twins.append(twin_path)
    return paths + twins


def _beats(hashed: tuple[str, ...], given_hash: bool, dropped: tuple[str, ...],
           given_drop: bool) -> bool:
    """Whether the hash path wins over the drop path where both reach a field.

    A rule written for a field beats the twin of one written for the other field; between
    rules of the same kind, the one naming a key where the other has ``*`` wins. Paths of
    different lengths never compete: dropping a field removes everything inside it.
    Rules that overlap with neither more specific (``inputs.*.ssn``, ``inputs.user.*``)
    leave the drop to win: redaction fails closed.

    >>> _beats(("inputs", "user_id"), True, ("inputs", "*"), True)
    True
    >>> _beats(("inputs", "*"), True, ("inputs", "user_id"), True)
    False
    """
    if len(hashed) != len(dropped) or hashed == dropped:
        return False
    pairs = list(zip(hashed, dropped))
    if any(h != "*" and d != "*" and not same_field(h, d) for h, d in pairs):
        return False  # they never reach the same field
    if given_hash != given_drop:
        return given_hash
    return all(h != "*" or d == "*" for h, d in pairs)


def _reached_by(paths: list[tuple[str, ...]]) -> Callable[[tuple[str, ...]], bool]:
    """Whether one of `paths` names the field at the given keys (a prefix of them, for a
    dotted key that lies inside the field)."""
    def reached(keys: tuple[str, ...]) -> bool:
        return any(len(keys) >= len(path) and
                   all(p == "*" or same_field(k, p) for k, p in zip(keys, path))
                   for path in paths)
    return reached


def _delete(parent: dict, key: str) -> None:
    del parent[key]


def _visit(node: object, path: tuple[str, ...], action: Callable[[dict, str], None],
           on_text: Callable[[dict | list, str | int], None], named: bool = True,
           spare: Callable[[tuple[str, ...]], bool] | None = None,
           trail: tuple[str, ...] = (), inside: bool = True) -> None:
    """Apply `action` to every field `path` reaches under `node`.

    With `spare`, `trail` holds the keys from the event down to `node`, and a field whose
    keys `spare` accepts is left alone (a more specific rule acts on it instead).

    `on_text` gets text met where `path` still names a field below it (reached by a
    literal segment, `named`): the field may hide inside. Text reached through ``*``
    holds no field the path names, and is left alone.

    A key holding dots is also read as the path it spells (``"user.ssn"``, as
    ``pandas.json_normalize`` and flattened feature stores name columns): the field
    ``inputs.user.ssn`` is then redacted whichever way the caller nested it.

    A mapping inside a field (`inside`; not the event itself) that has no key the path
    names may hold the field without its name: see :func:`_visit_unkeyed`. A serving body
    that holds a frame's rows apart from their names (pandas' "split" form, Seldon's) is
    read as its records first (``request_bodies.split_unreadable``).
    """
    kind = type(node)
    if kind is not dict and isinstance(node, list):
        if isinstance(node, IndexedRows) and path[0] != "*":
            _visit_labels(node, path, action, on_text, spare, trail)
        elif isinstance(node, NamedRows) and _column_index(path[0]):
            # A column named by its index, as a sparse matrix's are: its records are keyed
            # by the column's name.
            column = int(fold_name(path[0]))
            name = node.names[column] if column < len(node.names) else None
            if name is not None and not same_field(name, path[0]):
                _visit(list(node), (name, *path[1:]), action, on_text, named, spare, trail)
        for index, item in enumerate(node):
            if isinstance(item, str):
                if named:
                    on_text(node, index)
            elif (type(item) is dict and "data" in item and
                  split_unreadable(node, index, path)) or \
                    (named and _unnamed_inside(node, index, path)):
                on_text(node, index)
            else:
                _visit(node[index], path, action, on_text, named, spare, trail)
        return
    if kind is not dict:  # a plain dict, most of what is visited, is none of these
        if not isinstance(node, dict):
            return
        if isinstance(node, LabelledValues) and \
                _visit_column(node, path, action, on_text, spare, trail):
            return
    head, rest = path[0], path[1:]
    dotted, named_keys = _key_plan(node, head)
    # Dotted keys first: one acted on whole must not be hashed again through `*` below.
    done = [key for key in dotted
            if _visit_dotted(node, key, path, action, on_text, spare, trail)] if dotted else []
    if head == "*":
        keys = [key for key in node if key not in done] if done else list(node)
    else:
        keys = named_keys
        if done:
            keys = [key for key in keys if key not in done]
        if not keys and not done and inside and \
                not _SCALAR_TYPES.issuperset(map(type, node.values())):
            if named_tensor(node, head):  # KServe's and Triton's inputs: the name a value
                keys = ["data"]
            else:
                _visit_unkeyed(node, path, action, on_text, named, spare, trail)
                return
    for key in keys:
        if spare is not None and spare((*trail, key)):
            continue
        if not rest:
            action(node, key)
        elif split_unreadable(node, key, rest):
            on_text(node, key)
        elif isinstance(node[key], str):
            if head != "*":
                on_text(node, key)
        elif head != "*" and _unnamed_inside(node, key, rest):
            on_text(node, key)
        else:
            _visit(node[key], rest, action, on_text, head != "*", spare,
                   (*trail, key) if spare is not None else trail)


def _visit_unkeyed(node: dict, path: tuple[str, ...], action: Callable[[dict, str], None],
                   on_text: Callable[[dict | list, str | int], None], named: bool,
                   spare: Callable[[tuple[str, ...]], bool] | None,
                   trail: tuple[str, ...]) -> None:
    """Visit the values of a mapping inside a field that has no key `path` names: a feed
    (``{"input": X}``) holds the model's input matrix under a name of its own. Rows named
    by the reference's columns (:class:`NamedRows`) or read from a "split" body are
    visited as the field itself; a matrix with no names (rows of plain values, a sparse
    matrix's or a default-labelled frame's rows by column index) may hold the field
    without its name, and is dropped or hashed whole where a literal segment led here
    (`named`). Other values (numbers and text under a key, records, a vector of one
    column) are named by their keys, and left alone.

    >>> feed = {"input": [[78051120, 1.5]], "mode": "fast"}
    >>> _visit_unkeyed(feed, ("ssn",), _delete, lambda parent, key: parent.pop(key), True,
    ...                None, ())
    >>> feed
    {'mode': 'fast'}
    """
    for key in [key for key, value in node.items() if isinstance(value, (dict, list))]:
        if split_unreadable(node, key, path):
            if named:
                on_text(node, key)
            continue
        value = node[key]
        if isinstance(value, NamedRows):
            _visit(value, path, action, on_text, named, spare, trail)
        elif named and _unnamed_matrix(value):
            on_text(node, key)
        elif wraps_records(value, path[0]):
            # An envelope around the field's records (MLflow's "dataframe_records",
            # "instances" or "inputs", a frame's to_dict("index")): read as the field.
            _visit(value, path, action, on_text, named, spare,
                   (*trail, key) if spare is not None else trail)


# What a cleaned value holds besides containers: a mapping of these alone (a record, most
# mappings redaction meets) holds no matrix, told in one pass in C.
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})


def _unnamed_matrix(value: object) -> bool:
    """Whether `value` is a matrix whose columns have no names: rows (lists) holding plain
    cells outside any mapping, or rows keyed by column index."""
    if isinstance(value, (ColumnIndexRows, ColumnIndexRow)):
        return True
    if type(value) is not list:
        return False
    pending = [item for item in value if type(item) is list]
    while pending:
        for item in pending.pop():
            kind = type(item)
            if kind is int or kind is float or kind is str:
                return True
            if kind is list:
                pending.append(item)
    return False


def _unnamed_inside(parent: dict | list, key: str | int, path: tuple[str, ...]) -> bool:
    """Whether ``parent[key]``, met where a literal segment named it and `path` still
    names a field inside it, can hold that field only without its name, as text can: a
    number, a list holding numbers outside any mapping (the rows of a plain array), the
    rows of a sparse matrix or of a DataFrame labelled by integers (keyed by column index)
    under a path naming a column by name, the records of a DataFrame whose named columns
    axis the path names (its labels are the field's values: e-mails after a pivot), a
    namedtuple with renamed fields (``_1``) that lacks the key, or a Series labelled by an
    unnamed index whose labels and name both miss the field (the labels may be the
    field's values: a column of a frame indexed by e-mail). Redaction fails closed: the
    caller drops or hashes it whole.

    Rows of equal length are read by column index first when `path` names one
    (``inputs.0``), as a sparse matrix's rows are stored: they become ``{"0": ..., ...}``
    in place, and the path reaches them. One row alone is not: a list of numbers may as
    well be one column.

    >>> event = {"inputs": [[7, 1.5], [8, 2.5]]}
    >>> _unnamed_inside(event, "inputs", ("0",)), event["inputs"]
    (False, [{'0': 7, '1': 1.5}, {'0': 8, '1': 2.5}])
    >>> _unnamed_inside({"inputs": [7, 1.5]}, "inputs", ("0",))
    True
    """
    value = parent[key]
    if type(value) is dict:  # a plain mapping names its fields (none of the kinds below)
        return False
    if isinstance(value, (ColumnIndexRows, ColumnIndexRow)):
        # A sparse matrix's columns are known by index only.
        return path[0] != "*" and not _column_index(path[0])
    if isinstance(value, AxisRecords):
        # The column labels are values of the field the axis names (e-mails after a pivot).
        return path[0] != "*" and any(axis == "*" or same_field(axis, path[0])
                                      for axis in value.axes)
    if isinstance(value, PartlyNamed):
        # A renamed field (`_1`) may be the one the path names.
        return path[0] != "*" and not names_key(value, path[0])
    if isinstance(value, list):
        if _column_index(path[0]) and _dense_rows(value):
            parent[key] = [{str(column): item for column, item in enumerate(row)}  # type: ignore[index]
                           for row in value]
            return False
        return _holds_unnamed_numbers(value)
    if isinstance(value, LabelledValues):
        head = path[0]
        if head == "*" or _names_column(value, head):
            return False
        return not names_key(value, head)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _column_index(segment: str) -> bool:
    folded = fold_name(segment)
    return folded.isascii() and folded.isdigit()


def _dense_rows(value: list) -> bool:
    """Whether `value` is the rows of a 2-D array: lists of one length, of plain values."""
    if not value or not all(type(row) is list for row in value):
        return False
    width = len(value[0])
    return all(len(row) == width and not any(isinstance(item, (dict, list)) for item in row)
               for row in value)


def _holds_unnamed_numbers(value: list) -> bool:
    """Whether a number lies in `value` or its nested lists, outside every mapping."""
    pending = [value]
    while pending:
        for item in pending.pop():
            kind = type(item)
            if kind is int or kind is float:
                return True
            if kind is list:
                pending.append(item)
    return False


def _names_column(node: LabelledValues, head: str) -> bool:
    """Whether `head` names the Series stored as `node` (or the first part of a dotted
    name), as :func:`_visit_column` reads it."""
    if node.column is None:
        return False
    segments = [segment for segment in str(node.column).split(".") if fold_name(segment)]
    return bool(segments) and (head == "*" or same_field(segments[0], head))


def _visit_labels(node: IndexedRows, path: tuple[str, ...],
                  action: Callable[[dict, str], None],
                  on_text: Callable[[dict | list, str | int], None],
                  spare: Callable[[tuple[str, ...]], bool] | None = None,
                  trail: tuple[str, ...] = ()) -> None:
    """Visit the value of each row of `node` whose label names the field `path` names,
    as that field: a row read from a frame whose columns axis is named is labelled by
    field names (`spare` and `trail` as for :func:`_visit`). A path naming the index or
    the value key is left to the rows themselves.

    >>> rows = IndexedRows([{"field": "ssn", "0": "1"}, {"field": "age", "0": 41}],
    ...                    "field", "0")
    >>> _visit_labels(rows, ("ssn",), _delete, lambda parent, key: None)
    >>> rows
    [{'field': 'ssn'}, {'field': 'age', '0': 41}]
    """
    head, rest = path[0], path[1:]
    index_key, value_key = node.index_key, node.value_key
    if same_field(index_key, head) or same_field(value_key, head):
        return
    for row in node:
        if not isinstance(row, dict) or value_key not in row:
            continue
        label = row.get(index_key)
        if not isinstance(label, str) or not same_field(label, head):
            continue
        if spare is not None and spare((*trail, label)):
            continue
        if not rest:
            action(row, value_key)
        elif isinstance(row[value_key], str) or _unnamed_inside(row, value_key, rest):
            on_text(row, value_key)
        else:
            _visit(row[value_key], rest, action, on_text, True, spare,
                   (*trail, label) if spare is not None else trail)


def _visit_column(node: LabelledValues, path: tuple[str, ...],
                  action: Callable[[dict, str], None],
                  on_text: Callable[[dict | list, str | int], None],
                  spare: Callable[[tuple[str, ...]], bool] | None = None,
                  trail: tuple[str, ...] = ()) -> bool:
    """Visit the values of a Series stored by its labels as the column its name spells,
    as if stored as the rows ``{name: value}`` of a one-column DataFrame; True when `path`
    names the column (`spare` and `trail` as for :func:`_visit`).

    Reached only by ``*``, the column is visited by its labels, as every mapping is,
    unless a more specific rule names the column (``hash_fields=["inputs.comment"]`` with
    ``redact=["inputs.*"]``): that rule acts on it instead.

    >>> column = LabelledValues({"jane": "a", "joe": "b"}, "comment")
    >>> _visit(column, ("comment",), _delete, lambda parent, key: None)
    >>> column
    {}
    """
    if node.column is None:
        return False
    segments = [segment for segment in str(node.column).split(".") if fold_name(segment)]
    if not segments or any(wanted != "*" and not same_field(segment, wanted)
                           for segment, wanted in zip(segments, path)):
        return False
    column_trail = (*trail, *segments)
    if spare is not None and spare(column_trail):
        return True  # a more specific rule names it, as it would the one-column rows
    named = path[:len(segments)]
    if all(wanted == "*" for wanted in named):
        return False
    # A name longer than the path lies inside the field the path names, as a dotted key.
    rest = path[len(segments):]
    literal = named[-1] != "*"
    for key in list(node):
        if not rest:
            action(node, key)
        elif isinstance(node[key], str):
            if literal:
                on_text(node, key)
        elif literal and _unnamed_inside(node, key, rest):
            on_text(node, key)
        else:
            _visit(node[key], rest, action, on_text, literal, spare,
                   column_trail if spare is not None else trail)
    return True


# Characters no reader sees: format characters (zero-width space and joiners, soft hyphen,
# bidi marks, byte order mark, tags), variation selectors and the fillers that render blank.
# A service's events repeat the same few mappings (its inputs, its features): what a
# mapping's keys mean to a path is remembered by those keys. Keys are the user's data, so
# both memos stay bounded: many plans of mappings of a few keys, and a few plans of wide
# ones (a model's hundreds of features), each at most _WIDE_KEYS_MAX keys.
_PLANS: dict[tuple, tuple[list[str], list[str]]] = {}
_PLANS_MAX = 4096
_PLAN_KEYS_MAX = 64
_WIDE_PLANS: dict[tuple, tuple[list[str], list[str]]] = {}
_WIDE_PLANS_MAX = 16
_WIDE_KEYS_MAX = 4096


def _key_plan(node: dict, head: str) -> tuple[list[str], list[str]]:
    """The dotted keys of `node` and its keys naming the field `head` (none for ``*``).

    >>> _key_plan({"User.ssn": 1, "SSN": 2, "age": 3}, "ssn")
    (['User.ssn'], ['SSN'])
    """
    width = len(node)
    if width > _WIDE_KEYS_MAX:
        return _dotted_keys(node), [] if head == "*" else _keys_naming(node, head)
    plans, most = (_PLANS, _PLANS_MAX) if width <= _PLAN_KEYS_MAX else \
        (_WIDE_PLANS, _WIDE_PLANS_MAX)
    memo_key = (head, *node)
    plan = plans.get(memo_key)
    if plan is None:
        plan = (_dotted_keys(node), [] if head == "*" else _keys_naming(node, head))
        if len(plans) >= most:
            plans.clear()
        plans[memo_key] = plan
    return plan


def _keys_naming(node: dict, wanted: str) -> list[str]:
    """The keys of `node` that name the field `wanted`, as :func:`_same_field` tells: the
    same keys, with `wanted` folded once and each key's folded form read from the memo
    inline (a mapping's every key is looked at for every path, which made this most of an
    event's redaction).

    >>> _keys_naming({"SSN": 1, "age": 2, "s\u200bsn": 3}, "ssn")
    ['SSN', 's\u200bsn']
    """
    folded_wanted = fold_name(wanted)
    memo = FOLDED.get
    return [key for key in node
            if key == wanted or (memo(key) or fold_name(key)) == folded_wanted]


def _dotted_keys(node: dict) -> list[str]:
    try:
        # One pass in C: most mappings hold no dotted key, and this runs per visited mapping.
        if "." not in "".join(node):
            return []
    except TypeError:  # keys not cleaned to text yet
        pass
    return [key for key in node if isinstance(key, str) and "." in key]


def _visit_dotted(node: dict, key: str, path: tuple[str, ...],
                  action: Callable[[dict, str], None],
                  on_text: Callable[[dict | list, str | int], None],
                  spare: Callable[[tuple[str, ...]], bool] | None = None,
                  trail: tuple[str, ...] = ()) -> bool:
    """Visit the dotted `key` of `node` as the path it spells; True when acted on whole (or
    spared whole: `spare` and `trail` as for :func:`_visit`)."""
    # Empty segments spell nothing: a MultiIndex column ("", "ssn") is stored as ".ssn".
    segments = [segment for segment in key.split(".") if fold_name(segment)]
    if not segments:
        return False
    for segment, wanted in zip(segments, path):
        if wanted != "*" and not same_field(segment, wanted):
            return False
    if spare is not None and spare((*trail, *segments)):
        return True  # a more specific rule names it, as it would the same keys nested
    if len(segments) >= len(path):
        # The key is the field or lies inside it (``ssn.last4`` under ``ssn``).
        action(node, key)
        return True
    rest = path[len(segments):]
    named = path[len(segments) - 1] != "*"
    if isinstance(node[key], str):
        if named:
            on_text(node, key)
    elif named and _unnamed_inside(node, key, rest):
        on_text(node, key)
    else:
        _visit(node[key], rest, action, on_text, named, spare, (*trail, *segments))
    return False
