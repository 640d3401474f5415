"""Making a prediction event plain JSON: no control characters, nothing a tool can misread.

:func:`clean` turns whatever a model server hands over (numpy arrays and scalars, tuples,
enums, datetimes, objects) into plain JSON values and strips control characters from every
string and key, so no input can start a new line or forge a record in a plain-text tool.
What :mod:`inferwatch.events.redact` then drops or hashes is this cleaned event.

>>> clean({"ssn": "1\\n2", "scores": (0.5, float("nan"))})
{'ssn': '12', 'scores': [0.5, 'NaN']}
"""

from __future__ import annotations

import datetime
import decimal
import enum
import math
import numbers
import pathlib
import sys
import uuid
from collections.abc import Mapping

from inferwatch.events.fields import (
    UNSAFE,
    AxisRecords,
    ColumnIndexRow,
    ColumnIndexRows,
    IndexedRows,
    LabelledValues,
    NamedRows,
    NotConverted,
    PartlyNamed,
    Unstructured,
    is_sparse,
    named_fields,
    parse_json_text,
    type_name,
)

MAX_DEPTH = 32
MAX_ITEMS = 100_000
# The least int_max_str_digits Python allows: an int this long is written and read back
# under any setting; a longer one would make json.dumps raise and cost the whole event.
MAX_INT_DIGITS = 640
_INT_BOUND = 10 ** MAX_INT_DIGITS
_INT_LOW = -_INT_BOUND

# What no stored string or key keeps (see events.fields.UNSAFE).
_UNSAFE = UNSAFE
# First characters of text that may hold a JSON object or array: white space, a byte order
# mark or a character cleaning strips may lead (see events.fields.parse_json_text). A set
# lookup on the first character either way, so plain text pays nothing for the longer list.
_JSON_FIRST = frozenset(
    "{[\" \t\r\n\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u202f\u205f\u3000\ufeff"
    + "".join(map(chr, range(0x2000, 0x200b))) + "".join(map(chr, range(0x20)))
    + "".join(map(chr, range(0x7f, 0xa0))) + "\u2028\u2029"
    + "".join(map(chr, range(0xD800, 0xE000))))


def clean_text(text: str) -> str:
    """`text` without control characters, line separators or lone surrogates.

    >>> clean_text('ok\\r\\n{"forged": 1}\\x1b[2J')
    'ok{"forged": 1}[2J'
    """
    return _UNSAFE.sub("", text)


def clean(value: object, *, max_array_bytes: int = 1 << 20, keep_unstructured: bool = False,
          dropped: dict[str, int] | None = None) -> object:
    """A copy of `value` made of plain JSON values (dict, list, str, int, float, bool, None).

    Containers become named fields first (a DataFrame, a dataclass, a pydantic model, a
    structured array, a scipy.sparse matrix, JSON text or UTF-8 bytes: see
    :mod:`inferwatch.events.fields`), so redaction can find them. A key with no text form of
    its own (an arbitrary object, whose ``str()`` may quote personal data) is stored as a
    marker naming its type and counted, as such a value is. Strings and keys lose
    their control characters; NaN and infinities become the strings ``"NaN"``,
    ``"Infinity"`` and ``"-Infinity"`` (strict JSON has no such numbers); arrays larger than
    `max_array_bytes`, containers nested deeper than 32 levels or holding more than 100,000
    items, and ints of more than 640 digits are replaced by a small marker saying what was
    there; so are containers met once the whole value has passed 100,000 items (or
    `max_array_bytes` / 2 when more), so shared references (``x = [x, x]`` forty times over)
    cannot make the work grow exponentially. A value with no JSON form (an arbitrary
    object, non-UTF-8 bytes) is replaced by ``{"dropped": reason, "type": ...}`` and
    counted by reason in `dropped`, unless `keep_unstructured` asks for its ``str()``.

    >>> import numpy as np
    >>> clean({"x": np.array([1.5, np.nan]), 3: np.int64(7), "t\\n": ("a\\rb",)})
    {'x': [1.5, 'NaN'], '3': 7, 't': ['ab']}
    >>> clean({"raw": b'{"ssn": "1"}', "obj": object()})
    {'raw': {'ssn': '1'}, 'obj': {'dropped': 'unsupported_type', 'type': 'builtins.object'}}
    """
    return _Cleaner(max_array_bytes, keep_unstructured, dropped).clean(value, 0)


def _plain_floats(value: dict) -> bool:
    """Whether `value` is clean as it is: text keys that print and finite floats only (a
    model's features, an event's stage timings), told in C, where the item loop of
    ``_Cleaner._mapping`` was most of an event's cleaning.

    >>> _plain_floats({"f0": 0.5, "f1": 2.0}), _plain_floats({"f0": float("nan")})
    (True, False)
    >>> _plain_floats({"f0": 1}), _plain_floats({"a\\n": 0.5}), _plain_floats({1.0: 0.5})
    (False, False, False)
    >>> class Text(str): ...
    >>> _plain_floats({Text("f0"): 0.5})
    False
    """
    # Keys of exactly str: the item loop makes a subclass's (a str Enum's) plain text.
    if not _FLOATS_ONLY.issuperset(map(type, value.values())) or \
            not _TEXT_ONLY.issuperset(map(type, value)) or not "".join(value).isprintable():
        return False
    # The sum is finite only when every value is (nan and inf carry through); one that
    # overflows takes the item loop, which keeps each finite value.
    return math.isfinite(sum(value.values()))


_FLOATS_ONLY = frozenset({float})
_TEXT_ONLY = frozenset({str})


class _Cleaner:
    __slots__ = ("budget", "dropped", "keep_unstructured", "max_array_bytes")

    def __init__(self, max_array_bytes: int, keep_unstructured: bool,
                 dropped: dict[str, int] | None) -> None:
        self.max_array_bytes = max_array_bytes
        self.keep_unstructured = keep_unstructured
        self.dropped = dropped
        # Items left to visit in the whole value. The per-container cap alone does not bound
        # the work: a container may hold the same object many times, and 32 levels of two
        # references each are 2**32 visits. Each written item takes at least 2 bytes, so no
        # value that fits the event is cut.
        self.budget = max(MAX_ITEMS, max_array_bytes // 2)

    def clean(self, value: object, depth: int) -> object:
        kind = type(value)
        if kind is str:
            if value[:1] in _JSON_FIRST:  # type: ignore[index]
                parsed = parse_json_text(value, self.max_array_bytes)  # type: ignore[arg-type]
                if parsed is not None:
                    return self.clean(parsed, depth)
            return value if value.isprintable() else _UNSAFE.sub("", value)  # type: ignore
        if value is None or kind is bool:
            return value
        if kind is int:
            return value if _INT_LOW < value < _INT_BOUND else _long_int(value)  # type: ignore
        if kind is float:
            return value if math.isfinite(value) else _non_finite(value)  # type: ignore
        if depth >= MAX_DEPTH:
            return {"truncated": "depth"}
        depth += 1
        try:
            # A plain dict first: the Mapping check of an abstract class costs more than
            # cleaning a small mapping's items.
            if kind is dict or (isinstance(value, Mapping) and not is_sparse(value)):
                # A scipy.sparse DOK matrix is a dict keyed by (row, column): read by rows,
                # as the other sparse formats are, not as a mapping.
                return self._mapping(value, depth)
            if (kind is list or isinstance(value, (list, tuple, set, frozenset))) and \
                    not hasattr(kind, "_fields"):  # a namedtuple keeps its field names
                if len(value) > MAX_ITEMS:
                    return {"truncated": "list", "length": len(value)}
                if len(value) > self.budget:
                    return {"truncated": "items", "length": len(value)}
                self.budget -= len(value)
                # A finite float inline, as the mapping's loop reads one: scores and an
                # embedding's values are most of what lists hold.
                clean_item, isfinite = self.clean, math.isfinite
                return [v if type(v) is float and isfinite(v) else clean_item(v, depth)
                        for v in value]
            return self._other(value, depth)
        except Exception:
            # The caller's own object raised when looked at: a Mapping whose len(), items()
            # or [] fails, or a context-local proxy read on the writer thread, where it is
            # unbound (even isinstance() raises then). Only this value is lost: each item of
            # a container is cleaned on its own, so the rest of the event is kept.
            return self._unstructured(value, "conversion_error")

    def _mapping(self, value: Mapping, depth: int) -> object:
        if len(value) > MAX_ITEMS:
            return {"truncated": "mapping", "length": len(value)}
        if len(value) > self.budget:
            return {"truncated": "items", "length": len(value)}
        self.budget -= len(value)
        if type(value) is dict and _plain_floats(value):
            return dict(value)
        out = {}
        # Distinct keys of a plain-text dict stay distinct; only a key turned into text (1
        # and "1", b"ssn" and "ssn", "a\n" and "a") can land on one already stored.
        converted = False
        isfinite = math.isfinite
        for key, item in value.items():
            # Plain scalars inline: this loop is most of the writer's time.
            if type(key) is not str or not key.isprintable():
                key = self._key(key)
                converted = True
            if converted and key in out:
                # The first value keeps the key; a silent overwrite would lose the other
                # without a trace, and a renamed key could escape a redaction path.
                self._count("key_collision")
                continue
            kind = type(item)
            if kind is float:  # first: most of an event's values are (features, timings)
                out[key] = item if isfinite(item) else self.clean(item, depth)
            elif kind is str and item[:1] not in _JSON_FIRST:
                out[key] = item if item.isprintable() else _UNSAFE.sub("", item)
            elif (kind is int and _INT_LOW < item < _INT_BOUND) or kind is bool or \
                    item is None:
                out[key] = item
            else:
                out[key] = self.clean(item, depth)
        return out

    def _key(self, key: object) -> str:
        try:
            return _clean_key(key)
        except _NoKeyText as exc:
            reason = exc.reason
        except Exception:  # the caller's own __str__ or __hash__ of a key part
            reason = "conversion_error"
        if self.keep_unstructured and reason != "conversion_error":
            try:
                if isinstance(key, (bytes, memoryview)):  # as a binary value is kept
                    return _UNSAFE.sub("", bytes(key).decode("utf-8", "backslashreplace"))
                return _UNSAFE.sub("", str(key))
            except Exception:
                reason = "conversion_error"
        self._count(reason)
        return f"<dropped {reason}: {_UNSAFE.sub('', type_name(key))}>"

    def _count(self, reason: str) -> None:
        if self.dropped is not None:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _other(self, value: object, depth: int) -> object:
        # Subclasses first (bool is an int, IntEnum is an int, str subclasses carry no surprises).
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return self.clean(int(value), depth)
        if isinstance(value, float):
            return self.clean(float(value), depth)
        if isinstance(value, str):
            # Its text, as json.dumps writes it: str() of a str-valued enum is "Class.NAME".
            return self.clean(str.__str__(value), depth)
        too_large = self._too_large(value)
        if too_large is not None:
            return too_large
        try:
            fields = named_fields(value, self.max_array_bytes)
            cleaned = self.clean(fields, depth)
            if isinstance(fields, LabelledValues) and isinstance(cleaned, dict):
                return self._labelled(cleaned, fields.column)
            if isinstance(fields, IndexedRows) and isinstance(cleaned, list):
                return self._indexed(cleaned, fields.index_key, fields.value_key)
            if isinstance(fields, NamedRows) and isinstance(cleaned, list):
                return self._named(cleaned, fields.names)
            if isinstance(fields, ColumnIndexRows) and isinstance(cleaned, list):
                return ColumnIndexRows(cleaned)
            if isinstance(fields, ColumnIndexRow) and isinstance(cleaned, dict):
                return ColumnIndexRow(cleaned)
            if isinstance(fields, AxisRecords) and isinstance(cleaned, list):
                return self._axis(cleaned, fields.axes)
            if isinstance(fields, PartlyNamed) and isinstance(cleaned, dict):
                return PartlyNamed(cleaned)
            return cleaned
        except NotConverted:
            pass
        except Unstructured as exc:
            return self._unstructured(value, exc.reason)
        except Exception:  # the user's own conversion (model_dump, to_dict) failed
            return self._unstructured(value, "conversion_error")
        try:
            tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
        except Exception:  # not AttributeError: the object cannot be read at all
            return self._unstructured(value, "conversion_error")
        if callable(tolist):
            try:
                plain = tolist()
                if type(plain) is type(value):  # np.longdouble: no Python type to become
                    return self._number(value, depth)
                return self.clean(plain, depth)
            except Exception:
                return self._unstructured(value, "conversion_error")
        return self._unstructured(value, "unsupported_type")

    @staticmethod
    def _labelled(cleaned: dict, column: object) -> dict:
        """The cleaned labels of a Series, with its name as the text a key of it would be
        stored as (the name of a column redaction reads; None for an unnamed Series). A
        name with no text form no path can name: unnamed."""
        try:
            return LabelledValues(cleaned, None if column is None else _clean_key(column))
        except Exception:
            return LabelledValues(cleaned, None)

    @staticmethod
    def _named(cleaned: list, names: tuple) -> list:
        """The cleaned records of a dense input, with its column names as they are stored
        as keys (a name with no text form is stored as a marker: the position keeps its
        place, naming nothing)."""
        stored: list[str | None] = []
        for name in names:
            try:
                stored.append(_clean_key(name))
            except Exception:
                stored.append(None)
        return NamedRows(cleaned, stored)

    @staticmethod
    def _axis(cleaned: list, axes: tuple) -> list:
        """The cleaned records of a frame whose columns axis is named, with the axis names
        as text. A name with no text form is kept as ``"*"``: no path can name it, yet the
        labels are values of some field, so any path meeting the records fails closed
        (see :func:`_unnamed_inside`)."""
        stored: list[str] = []
        for name in axes:
            try:
                stored.append(_clean_key(name))
            except Exception:
                stored.append("*")
        return AxisRecords(cleaned, stored)

    @staticmethod
    def _indexed(cleaned: list, index_key: object, value_key: object) -> list:
        """The cleaned rows of a Series labelled by a named index, with the keys of the
        label and the value as they are stored. A key with no text form was stored as a
        marker no path names: the plain rows."""
        try:
            return IndexedRows(cleaned, _clean_key(index_key), _clean_key(value_key))
        except Exception:
            return cleaned

    def _number(self, value: object, depth: int) -> object:
        if isinstance(value, numbers.Real):
            return self.clean(float(value), depth)  # type: ignore[arg-type]
        return self._unstructured(value, "unsupported_type")  # np.clongdouble, as complex

    def _too_large(self, value: object) -> dict | None:
        limit = self.max_array_bytes
        if isinstance(value, (bytes, bytearray, memoryview)):
            # A memoryview's length counts items, not bytes; copying it to count them would
            # hold a second copy of the caller's whole buffer just to find it too large.
            size = value.nbytes if isinstance(value, memoryview) else len(value)
            return {"truncated": "bytes", "length": size} if size > limit else None
        # A sparse torch tensor raises for nbytes (its rows are bounded when read).
        nbytes = _attribute(value, "nbytes")
        if nbytes is None and callable(_attribute(value, "memory_usage")):  # a DataFrame
            try:
                nbytes = int(value.memory_usage(index=False).sum())  # type: ignore[attr-defined]
            except Exception:
                nbytes = None
        if isinstance(nbytes, int) and nbytes > limit:
            shape = _attribute(value, "shape")
            dtype = _attribute(value, "dtype")
            try:
                dtype_text = "" if dtype is None else _UNSAFE.sub("", str(dtype))
            except Exception:  # the caller's own dtype object and its __str__
                dtype_text = ""
            return {"truncated": "array", "nbytes": nbytes,
                    "shape": list(shape) if isinstance(shape, tuple) else None,
                    "dtype": dtype_text}
        return None

    def _unstructured(self, value: object, reason: str) -> object:
        if self.keep_unstructured:
            try:
                if isinstance(value, (bytes, bytearray, memoryview)):
                    return _UNSAFE.sub("", bytes(value).decode("utf-8", "backslashreplace"))
                return _UNSAFE.sub("", str(value))
            except Exception:
                reason = "conversion_error"
        if self.dropped is not None:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return {"dropped": reason, "type": _UNSAFE.sub("", type_name(value))}


def _attribute(value: object, name: str) -> object:
    """`value`'s attribute `name`, None when it has none or looking it up raises: a probe
    for what kind of object `value` is must not cost the value, let alone the event."""
    try:
        return getattr(value, name, None)
    except Exception:
        return None


class _NoKeyText(Exception):
    """A key with no text form of its own: its str() is a repr that may quote its fields
    (`reason` ``unsupported_type``), or bytes that are not UTF-8 (``binary``)."""

    def __init__(self, kind: str, reason: str = "unsupported_type") -> None:
        super().__init__(kind)
        self.reason = reason


# Keys whose str() is their plain value, as cleaning writes such a value.
_TEXT_KEYS = (uuid.UUID, decimal.Decimal, pathlib.PurePath, datetime.date, datetime.time,
              datetime.timedelta)


def _clean_key(key: object) -> str:
    """The text a key is stored as: the text its value would be, so redaction paths find it.

    str() of a str-valued enum is ``"Class.NAME"`` and of bytes ``"b'...'"``: a feature
    keyed ``Feature.SSN`` (value ``"ssn"``) or ``b"ssn"`` would escape ``redact=["inputs.ssn"]``.
    An enum whose value is a str, mixed in or not, is stored as that value. Raises
    :class:`_NoKeyText` for an arbitrary object (a frozen dataclass, a frozenset).
    """
    if type(key) is str:
        text = key
    elif isinstance(key, str):
        text = str.__str__(key)
    elif isinstance(key, bool):
        text = str(bool(key))
    elif isinstance(key, int):
        text = str(int(key))
    elif isinstance(key, float):
        text = str(float(key))
    elif isinstance(key, enum.Enum):
        # A plain enum with a str value (`SSN = "ssn"`) names its field by that value, as a
        # str-mixed one does; by name it would escape `redact=["inputs.ssn"]`.
        text = str.__str__(key.value) if isinstance(key.value, str) else key.name
    elif isinstance(key, (bytes, memoryview)):
        try:
            text = bytes(key).decode("utf-8")
        except UnicodeDecodeError:
            # str() would store the repr "b'\\xff'": binary, as such a value is.
            raise _NoKeyText(type_name(key), "binary") from None
    elif isinstance(key, tuple):
        # A pandas MultiIndex names a column ("user", "ssn"): as its repr the field would
        # escape `redact=["inputs.user.ssn"]`; dotted, it is the path it spells.
        text = ".".join(_clean_key(part) for part in key)
    elif key is None or isinstance(key, _TEXT_KEYS):
        text = str(key)
    else:
        numpy = sys.modules.get("numpy")
        if numpy is None or not isinstance(key, numpy.generic):
            # A repr such as "Applicant(ssn='123-45-6789')": stored, it would put the
            # fields of the key on disk where no redaction path reaches them.
            raise _NoKeyText(type_name(key))
        text = str(key)  # a numpy number, datetime64 or bool: its value
    return _UNSAFE.sub("", text)


def _long_int(number: int) -> dict:
    return {"truncated": "int", "bits": number.bit_length()}


def _non_finite(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"
