"""The record both sinks store, how an event becomes one, and how a sink is chosen.

An event becomes a :class:`Record`: one line of compact JSON (no newline inside, no control
character anywhere) plus the columns SQLite indexes. :class:`Encoder` does the work on the
writer thread: error normalisation, :func:`~inferwatch.events.clean.clean`, redaction, and
the size bound (bulky fields are replaced by ``{"truncated_bytes": n}`` and listed under
``"truncated"`` until the record fits).

>>> record = Encoder(max_event_bytes=1024).encode(
...     {"ts": 1.0, "model": "fraud", "error": ValueError("card 4111"), "inputs": [1, 2]})
>>> record.line.decode(), record.error
('{"ts":1.0,"model":"fraud","error":{"type":"ValueError"},"inputs":[1,2]}', 'ValueError')
"""

from __future__ import annotations

import datetime
import decimal
import enum
import fractions
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

from inferwatch.events.clean import clean, clean_text
from inferwatch.events.fields import type_name
from inferwatch.events.redact import Redaction, identity_text

# A request id is what events are found and joined by, so it is never cut: a longer one is
# stored as its digest, which a query by the id computes too; the rule every path bounds
# ids by, so an id joins outcomes from any of them.
from inferwatch.faults import bounded_request_id as stored_request_id

FORMATS = ("jsonl", "sqlite")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".log")
# What a JSONL log configured as a directory is called inside it.
DIRECTORY_LOG_NAME = "events.jsonl"
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")

# Identity fields stay whole when an event is truncated; they are capped instead.
IDENTITY_FIELDS = ("ts", "model", "model_version", "request_id", "trace_id", "error", "truncated")
# Those stored as the text given, never parsed as JSON: events are found and joined by them.
TEXT_IDENTITY_FIELDS = ("model", "model_version", "request_id", "trace_id")
MAX_IDENTITY_CHARS = 256
# An error event is always kept, so its message must not push it past max_event_bytes.
MAX_ERROR_MESSAGE_CHARS = 1024
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_DAY_SECONDS = 86_400
# What listing the first truncated field adds to an event's line, besides the name.
_TRUNCATED_LIST_BYTES = b',"truncated":[]'


class Record(NamedTuple):
    """One encoded event: the JSON line (without its newline) and its indexed columns."""

    ts: float
    model: str | None
    model_version: str | None
    request_id: str | None
    trace_id: str | None
    error: str | None
    line: bytes


class TooLarge(Exception):
    """An event that stays above max_event_bytes even with its bulky fields truncated."""


class SinkError(Exception):
    """A write that failed after `written` of the records were stored."""

    def __init__(self, written: int, cause: BaseException) -> None:
        super().__init__(f"{written} records written before: {cause!r}")
        self.written = written
        self.cause = cause


class Sink(Protocol):
    def write(self, records: list[Record]) -> None: ...

    def close(self) -> None: ...

    def forget_after_fork(self) -> None: ...


# One encoder for every line: json.dumps given options builds a new encoder per call,
# about a third of its time on a typical event.
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _dumps(value: object) -> bytes:
    return _JSON.encode(value).encode("utf-8")


def normalize_error(error: object, keep_message: bool,
                    dropped: dict[str, int] | None = None) -> dict | None:
    """The stored form of an event's error: its type, and its message only when opted in.

    Exception messages often quote user data, hence the opt-in. An error given as text
    (or as a mapping's ``"type"``, or an enum) names its type only when it reads as one, a
    dotted identifier (``"TimeoutError"``, ``"db.errors.Deadlock"``); other text (``str(exc)``
    passed as the error) is the message, of the type ``"Error"``. An error event is always
    kept: a type or message whose ``str()`` raises is replaced (``"Error"``, a marker) and
    counted as ``conversion_error`` in `dropped`.

    >>> normalize_error(KeyError("alice@example.com"), keep_message=False)
    {'type': 'KeyError'}
    >>> normalize_error("no user alice@example.com", keep_message=False)
    {'type': 'Error'}
    """
    if not is_error(error):
        return None
    try:
        kind, message = _error_parts(error)
    except Exception:  # an object that raises when looked at: still an error, unnamed
        if dropped is not None:
            dropped["conversion_error"] = dropped.get("conversion_error", 0) + 1
        kind, message = "Error", None
    text = _str_or_none(kind, dropped)
    # A type of control characters alone is cleaned to nothing: still an error, named so.
    kind_text = clean_text("Error" if text is None else text)[:MAX_IDENTITY_CHARS]
    out: dict = {"type": kind_text or "Error"}
    if keep_message and message is not None:
        text = _str_or_none(message, dropped)
        out["message"] = text[:MAX_ERROR_MESSAGE_CHARS] if text is not None else {
            "dropped": "conversion_error", "type": type_name(message)}
    return out


# Values that say "no error" by being empty: compared by type, never truth-tested.
_SIZED_TYPES = (str, bytes, bytearray, list, tuple, dict, set, frozenset)


def is_error(value: object) -> bool:
    """Whether an event's ``"error"`` value says the prediction failed.

    ``None``, ``False``, a zero (``0``, ``0.0``, a numpy zero or false) and an empty
    string, bytes or plain collection mean "no error", as they do to code that writes
    ``error=int(failed)`` or ``error=message or ""``: such an event is sampled like any
    other and stored without an error. Anything else is an error. No truth test on
    other objects: an array or a DataFrame has none and raises, which would lose the very
    events that are always to be kept.

    >>> [is_error(v) for v in (None, False, 0, 0.0, "", [], {}, "ValueError", 1, [0])]
    [False, False, False, False, False, False, False, True, True, True]
    """
    if value is None or value is False:
        return False
    kind = type(value)
    if kind is int or kind is float:
        return value != 0  # NaN is not zero: something was set
    if kind in _SIZED_TYPES:
        return len(value) > 0  # type: ignore[arg-type]
    numpy = sys.modules.get("numpy")
    try:
        if numpy is None or not isinstance(value, numpy.generic):  # a numpy scalar, not array
            return True
        plain = value.item()
    except Exception:  # isinstance() too raises for an unbound context-local proxy
        return True
    return type(plain) is not type(value) and is_error(plain)


def has_model_errors(value: object) -> bool:
    """Whether an event's ``"model_errors"`` names any failed model call.

    By type and length, as :func:`is_error` reads ``"error"``: the names often come as a
    numpy array or a pandas Series, which have no truth value. ``None``, ``False`` and an
    empty collection name none; anything else without a length (a single name given as
    an object) names one.

    >>> import numpy as np
    >>> [has_model_errors(v) for v in (None, [], np.array([]), ["KeyError"], np.array(["E"]))]
    [False, False, False, True, True]
    """
    if value is None or value is False:
        return False
    if type(value) in _SIZED_TYPES:
        return len(value) > 0  # type: ignore[arg-type]
    try:
        return len(value) > 0  # type: ignore[arg-type]
    except Exception:  # no length (a 0-d array, a scalar): read as an error value is
        return is_error(value)


def normalize_model_errors(model_errors: object,
                           dropped: dict[str, int] | None = None) -> object:
    """The stored form of an event's ``"model_errors"``: a list of exception types, one per
    failed call, each read as :func:`normalize_error` reads a type and never with a message
    (the list has no room for one, and messages often quote user data).

    Text names a type only when it reads as one; other text, ``None``, a number or anything
    else is the type ``"Error"``, so the failed call is still counted. A single error given
    alone (text, an exception) is a list of one. Values naming no failure (``None``, an empty
    collection) are left as given. Entries that cannot be read are one ``"Error"``, counted
    as ``conversion_error`` in `dropped`.

    >>> normalize_model_errors(["TimeoutError", "no user alice@example.com", KeyError("x")])
    ['TimeoutError', 'Error', 'KeyError']
    """
    if not has_model_errors(model_errors):
        return model_errors
    try:
        entries = _model_error_entries(model_errors)
    except Exception:  # the caller's own iterator: the failure still counts, unnamed
        if dropped is not None:
            dropped["conversion_error"] = dropped.get("conversion_error", 0) + 1
        return ["Error"]
    names = []
    for entry in entries:
        error = normalize_error(entry, keep_message=False, dropped=dropped)
        names.append(error["type"] if error is not None else "Error")
    return names


# Values that name one error however they could be iterated (a mapping, by its keys).
_SINGLE_ERROR_TYPES = (str, bytes, bytearray, dict, BaseException, type, enum.Enum)


def _model_error_entries(model_errors: object) -> list[object]:
    if isinstance(model_errors, _SINGLE_ERROR_TYPES):
        return [model_errors]
    try:
        iterator = iter(model_errors)  # type: ignore[call-overload]
    except TypeError:  # an object without entries (a 0-d array) names one error
        return [model_errors]
    return list(iterator)


def _error_parts(error: object) -> tuple[object, object]:
    """The error's type name and message, the message unread: it is read only when kept."""
    if isinstance(error, BaseException):
        return type(error).__qualname__, error
    if isinstance(error, type) and issubclass(error, BaseException):
        return error.__qualname__, None
    if isinstance(error, dict):
        return _type_or_message(error.get("type", "Error"), error.get("message"))
    if isinstance(error, (str, enum.Enum)):
        return _type_or_message(error, None)  # a bare string or an enum code
    # A flag (`1`, `np.True_`) names no type, and the str() of anything else (an array of
    # the batch's rows, an object) would put user data in the indexed error column.
    return "Error", None


def _type_or_message(kind: object, message: object) -> tuple[object, object]:
    """`kind` as the error's type when its text reads as a type name; else the type
    ``"Error"``, and the text as the message when none is given (kept only when messages
    are). Raises what `kind`'s ``str()`` raises."""
    if isinstance(kind, type) and issubclass(kind, BaseException):
        return kind.__qualname__, message
    text = str(kind)
    # As stored: a control character is cleaned out of a type name, not taken for text.
    if is_type_name(clean_text(text)):
        return text, message
    return "Error", text if message is None else message


def is_type_name(text: str) -> bool:
    """Whether `text` reads as the name of an error type: dotted identifiers (a class
    defined in a function is ``outer.<locals>.Inner``), never free text, which may quote
    the user data an error message does.

    >>> [is_type_name(t) for t in ("ValueError", "db.Deadlock", "E1234", "bad ssn 078-05")]
    [True, True, True, False]
    """
    return bool(text) and all(part.isidentifier() or part == "<locals>"
                              for part in text.split("."))


def _str_or_none(value: object, dropped: dict[str, int] | None) -> str | None:
    try:
        return str(value)
    except Exception:  # the caller's own __str__: it must not cost the error event
        if dropped is not None:
            dropped["conversion_error"] = dropped.get("conversion_error", 0) + 1
        return None


class Encoder:
    """Turns a raw event dict into a :class:`Record`; runs on the writer thread only."""

    def __init__(self, redaction: Redaction | None = None, *, max_event_bytes: int = 64 * 1024,
                 error_messages: bool = False, keep_unstructured: bool = False) -> None:
        self.redaction = redaction if redaction else None
        self.max_event_bytes = max_event_bytes
        self.error_messages = error_messages
        self.keep_unstructured = keep_unstructured
        # Values left out of encoded events, by reason; the caller reads and resets it.
        self.values_dropped: dict[str, int] = {}

    def encode(self, event: dict, now: float | None = None) -> Record:
        """Clean, redact and size-bound `event`; raises TypeError for a non-dict, TooLarge."""
        if not isinstance(event, dict):
            raise TypeError(f"an event is a dict, got {type(event).__name__}")
        raw = dict(event)
        if "ts" in raw:
            try:
                raw["ts"] = _unix_seconds(raw["ts"])
            except Exception:  # an object that raises when looked at: no time, the write time
                raw["ts"] = None
        if "error" in raw:
            raw["error"] = normalize_error(raw["error"], self.error_messages,
                                           self.values_dropped)
        if "model_errors" in raw:
            raw["model_errors"] = normalize_model_errors(raw["model_errors"],
                                                         self.values_dropped)
        identity = _identity_texts(raw)
        obj = clean(raw, max_array_bytes=self.max_event_bytes,
                    keep_unstructured=self.keep_unstructured, dropped=self.values_dropped)
        assert isinstance(obj, dict)
        for key, text in identity.items():
            if obj.get(key) is None:  # else a key cleaned to the same name came first
                obj[key] = text
        ts = obj["ts"] = _event_time(obj.get("ts"), now)
        request_id = obj.get("request_id")
        if isinstance(request_id, str):
            # Before hashing: an instrumented call hands a long id over as its digest
            # already, and one id must hash alike however it came (hash_value(request_id=)).
            obj["request_id"] = stored_request_id(request_id)
        if self.redaction is not None:
            # Before any cut: a hash of a cut value would match no hash_value() of the whole.
            self.redaction.apply(obj, self.values_dropped)
            obj["ts"] = ts  # a `*` path spares it: readers order and filter by it
        _bound_identity(obj)
        line = _dumps(obj)
        if len(line) > self.max_event_bytes:
            line = self._shrink(obj)
        error = obj.get("error")
        return Record(float(ts), _text(obj.get("model")), _text(obj.get("model_version")),
                      _text(obj.get("request_id")), _text(obj.get("trace_id")),
                      _text(error.get("type")) if isinstance(error, dict) else _text(error),
                      line)

    def _shrink(self, obj: dict) -> bytes:
        """Truncate the bulkiest fields until the line fits, each encoded once.

        The line's length is kept by arithmetic, not by encoding the event again after
        each cut: an event of thousands of small fields would otherwise hold the writer
        thread for minutes while the queue behind it overflows. A field whose marker and
        name would take more room than its value is left whole: cutting it cannot help.
        When cutting fields one by one is not enough (thousands of small ones), the last
        fields are left out whole (see :meth:`_omit_last_fields`).
        """
        obj.pop("truncated", None)  # ours to write: it lists what this method cut
        length = len(_dumps(obj))
        sizes = sorted(((len(_dumps(v)), k) for k, v in obj.items()
                        if k not in IDENTITY_FIELDS), reverse=True)
        truncated: list = []
        for size, key in sizes:
            marker = {"truncated_bytes": size}
            # A name in the list, after a comma; the first one also opens the list.
            listed = len(_dumps(key)) + (1 if truncated else len(_TRUNCATED_LIST_BYTES))
            gain = size - len(_dumps(marker)) - listed
            if gain <= 0:
                continue
            obj[key] = marker
            truncated.append(key)
            length -= gain
            if length <= self.max_event_bytes:
                break
        if length > self.max_event_bytes:
            length = self._omit_last_fields(obj, truncated, length)
        if not truncated or length > self.max_event_bytes:
            return self._cut_error_message(obj, truncated)
        obj["truncated"] = truncated
        line = _dumps(obj)
        if len(line) > self.max_event_bytes:  # pragma: no cover - the arithmetic is exact
            raise TooLarge(f"event above {self.max_event_bytes} bytes after truncation")
        return line

    def _omit_last_fields(self, obj: dict, truncated: list, length: int) -> int:
        """Leave out the last fields of `obj` whole until its line fits; the line's length.

        Each of thousands of small fields is shorter than the marker that would replace it,
        so only leaving fields out makes room. The first fields are kept, and one entry
        ``{"omitted_fields": n, "truncated_bytes": b}`` at the end of `truncated` says how
        many were left out and how many bytes they took (names and values, as written);
        naming each would take about as much room as the fields. Counted, not encoded
        again: one pass over the fields.
        """
        candidates = [k for k in obj if k not in IDENTITY_FIELDS]
        entries = {k: len(_dumps(k)) + len(_dumps(obj[k])) + 2 for k in candidates}
        # The entry's room at its largest (every candidate left out), so the line fits
        # whatever the counts turn out to be.
        room = len(_dumps({"omitted_fields": len(candidates),
                           "truncated_bytes": sum(entries.values())}))
        length += 1 + room if truncated else len(_TRUNCATED_LIST_BYTES) + room
        listed = set(truncated)
        omitted, omitted_bytes = 0, 0
        for key in reversed(candidates):
            if length <= self.max_event_bytes:
                break
            # Its `"name":value` and a comma; its name in the list too, when it was cut.
            length -= entries[key] + (len(_dumps(key)) + 1 if key in listed else 0)
            # As written before any cut: what the reader lost.
            omitted_bytes += len(_dumps(key)) + 1 + (
                obj[key]["truncated_bytes"] if key in listed else len(_dumps(obj[key])))
            del obj[key]
            omitted += 1
        if omitted:
            truncated[:] = [k for k in truncated if k in obj]
            truncated.append({"omitted_fields": omitted, "truncated_bytes": omitted_bytes})
        return length

    def _cut_error_message(self, obj: dict, truncated: list[str]) -> bytes:
        """The line with the error's message cut, when that alone makes it fit.

        An error event is always kept, but a message of up to MAX_ERROR_MESSAGE_CHARS
        characters (4 KiB in UTF-8) may not fit a small max_event_bytes: the message gives
        way, last, rather than the whole event. Rare, so the line is encoded again.
        """
        error = obj.get("error")
        if isinstance(error, dict) and "message" in error:
            error["message"] = {"truncated_bytes": len(_dumps(error["message"]))}
            obj["truncated"] = [*truncated, "error.message"]
            line = _dumps(obj)
            if len(line) <= self.max_event_bytes:
                return line
        raise TooLarge(f"event above {self.max_event_bytes} bytes after truncation")


def _unix_seconds(ts: object) -> object:
    """A datetime or date `ts` (Python, pandas or numpy) or a `Decimal` or `Fraction` of
    seconds as Unix seconds; other values unchanged.

    Cleaned, a datetime would be ISO text, which is no ``ts`` and would be replaced by the
    write time: a replayed or backfilled event would lose its time without a word. A naive
    datetime is UTC, as ``inferwatch events --since`` reads one; a date is its midnight UTC,
    as ``record_outcome(at=)`` reads one; NaT is no time (None). A Decimal (a time read
    from a database column) is a number of seconds, like a float.

    >>> _unix_seconds(datetime.date(2024, 1, 1)), _unix_seconds(decimal.Decimal("1.5"))
    (1704067200.0, 1.5)
    """
    if type(ts) is float:  # what an event's time usually is
        return ts
    if isinstance(ts, datetime.datetime):
        try:
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=datetime.timezone.utc)
            return ts.timestamp()
        except Exception:  # pandas.NaT, or the caller's own tzinfo failing
            return None
    if isinstance(ts, datetime.date):
        return float((ts.toordinal() - _EPOCH_ORDINAL) * _DAY_SECONDS)
    if isinstance(ts, (decimal.Decimal, fractions.Fraction)):
        try:
            return float(ts)  # NaN or past a float's range: the write time, as a float's
        except (ArithmeticError, ValueError):  # a signalling NaN
            return None
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(ts, numpy.datetime64):
        if numpy.isnat(ts):
            return None
        # Whole seconds and the fraction apart: nanoseconds over 1e9 would round the sum.
        try:
            whole = ts.astype("datetime64[s]")
            fraction = (ts - whole) / numpy.timedelta64(1, "s")
            return int(whole.astype("int64")) + float(fraction)
        except (ArithmeticError, ValueError, TypeError):  # beyond what seconds can count
            return None
    return ts


def _identity_texts(raw: dict) -> dict[str, str]:
    """The identity fields of `raw` given as text (or UTF-8 bytes), cleaned as text; each
    is set to None in `raw` so that cleaning passes it over.

    Cleaning parses text holding JSON into fields, which an id is not: ``'["x"]'`` stored
    as a list would be found by neither ``--request-id '["x"]'`` nor an outcome joined by
    that id, and JSONL and SQLite would disagree on it.
    """
    texts: dict[str, str] = {}
    for key in TEXT_IDENTITY_FIELDS:
        text = identity_text(raw.get(key))
        if text is not None:
            texts[key] = text
            raw[key] = None
    return texts


def _event_time(ts: object, now: float | None) -> float:
    """`ts` when it is a finite number, else the write time."""
    if type(ts) in (int, float):
        try:
            if math.isfinite(ts):  # type: ignore[arg-type]
                return ts  # type: ignore[return-value]
        except OverflowError:  # an int too large for a float
            pass
    return time.time() if now is None else now


def _bound_identity(obj: dict) -> None:
    for key in ("model", "model_version", "trace_id"):
        value = obj.get(key)
        if isinstance(value, str) and len(value) > MAX_IDENTITY_CHARS:
            obj[key] = value[:MAX_IDENTITY_CHARS]
    request_id = obj.get("request_id")
    if isinstance(request_id, str):
        obj["request_id"] = stored_request_id(request_id)


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else _dumps(value).decode("utf-8")


def infer_format(path: Path, format: str | None = None) -> str:
    """`format` when given, else the format the path's suffix names (a directory is JSONL).

    >>> infer_format(Path("events.db")), infer_format(Path("logs/events.jsonl"))
    ('sqlite', 'jsonl')
    """
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {format!r}")
        return format
    suffix = path.suffix.lower()
    if suffix in SQLITE_SUFFIXES:
        return "sqlite"
    if suffix in JSONL_SUFFIXES or path.is_dir():
        return "jsonl"
    raise ValueError(f"format: cannot tell the format of {str(path)!r} from its suffix; use a "
                     f"suffix among {', '.join(JSONL_SUFFIXES + SQLITE_SUFFIXES)} or pass "
                     "format='jsonl' or 'sqlite'")


def log_file(path: Path, format: str) -> Path:
    """Where the log configured as `path` is written: a directory holds a JSONL log as
    ``events.jsonl`` inside it, the files of every process beside that name.

    >>> log_file(Path("/tmp"), "jsonl"), log_file(Path("/tmp/e.jsonl"), "jsonl")
    (PosixPath('/tmp/events.jsonl'), PosixPath('/tmp/e.jsonl'))
    """
    if format == "jsonl" and path.is_dir():
        return path / DIRECTORY_LOG_NAME
    return path


def open_sink(path: Path, format: str, *, max_bytes: int, rotate_bytes: int) -> Sink:
    """A sink for `path`; nothing is touched on disk until the first write."""
    if format == "sqlite":
        from inferwatch.events.sqlite import SqliteSink

        return SqliteSink(path, max_bytes=max_bytes, chunk_bytes=rotate_bytes)
    from inferwatch.events.jsonl import JsonlSink

    return JsonlSink(path, max_bytes=max_bytes, rotate_bytes=rotate_bytes)


@dataclass
class Query:
    """Filters for reading events back; every field left as None matches everything."""

    request_id: str | None = None
    model: str | None = None
    since: float | None = None
    until: float | None = None
    errors_only: bool = False
    limit: int | None = None

    def __post_init__(self) -> None:
        # Compared with what the encoder stored: a long id is stored as its digest.
        if isinstance(self.request_id, str):
            self.request_id = stored_request_id(clean_text(self.request_id))
        # Likewise a model name is stored cleaned and cut: `--model` with the name as the
        # code gave it must find its events.
        if isinstance(self.model, str):
            self.model = clean_text(self.model)[:MAX_IDENTITY_CHARS]

    def matches(self, event: dict) -> bool:
        """Whether a decoded event passes every filter.

        >>> Query(model="fraud", errors_only=True).matches({"model": "fraud", "error": None})
        False
        """
        # As text, as the SQLite columns hold them: an id given as a number (a database
        # key) is stored as one, and `--request-id 17` must find it in either format.
        if self.request_id is not None and \
                _text(event.get("request_id")) != self.request_id:
            return False
        if self.model is not None and _text(event.get("model")) != self.model:
            return False
        ts = event.get("ts")
        if self.since is not None or self.until is not None:
            if not isinstance(ts, (int, float)) or ts != ts:  # NaN (a foreign line): no time
                return False
            if self.since is not None and ts < self.since:
                return False
            if self.until is not None and ts > self.until:
                return False
        return not (self.errors_only and not event.get("error"))


@dataclass
class ReadStats:
    """What a read skipped: lines that are not a complete JSON object (a torn tail), and
    files it may not open (another user's worker writes its own with mode 0600), each
    with the reason; `files_read` tells a log read in part from one not read at all."""

    unreadable: int = 0
    unreadable_files: dict[Path, str] = field(default_factory=dict)
    files_read: int = 0

    def skip_file(self, path: Path, error: OSError) -> None:
        self.unreadable_files.setdefault(path, error.strerror or str(error))


def query_events(path: Path, query: Query, format: str | None = None,
                 stats: ReadStats | None = None) -> Iterator[bytes]:
    """The stored lines matching `query`, oldest first by ``ts``."""
    if infer_format(path, format) == "sqlite":
        from inferwatch.events.sqlite import query_sqlite

        return query_sqlite(path, query, stats)
    from inferwatch.events.jsonl import query_jsonl

    return query_jsonl(path, query, stats or ReadStats())

