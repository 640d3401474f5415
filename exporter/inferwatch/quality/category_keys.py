"""Category keys: the text a value stands for as a category, and what counts as missing.

The reference profiles categories by these keys, and at run time the batch checks, outcome
labels and shadow comparisons look live values up by them: one conversion, so a value meets
its category whichever container carries it. Apart from the profiling, so that the run-time
readers load only this.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import numpy as np


def is_missing(v: Any) -> bool:
    """None, a float or Decimal NaN, a pandas NA / NaT or a numpy NaT."""
    if v is None:
        return True
    if isinstance(v, (float, np.floating)):
        return v != v
    if isinstance(v, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(v))
    if isinstance(v, decimal.Decimal):  # a database NUMERIC's NaN, quiet or signalling
        return v.is_nan()
    return type(v).__name__ in ("NAType", "NaTType")


def category_keys(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Category keys (text) of a column and the mask of non-missing values.

    The same conversion (:func:`category_key`) serves the reference and the checks, so a
    value matches its category whichever container it arrives in.

    >>> keys, present = category_keys(np.array(["a", None, 1], dtype=object))
    >>> keys.tolist(), present.tolist()
    (['a', '', '1'], [True, False, True])
    """
    kind = col.dtype.kind
    if kind == "U":
        return col, np.ones(len(col), dtype=bool)
    if kind == "S":  # bytes: decoded as UTF-8 (astype(str) raises on anything past ASCII)
        return np.array([raw.decode("utf-8", "replace") for raw in col.tolist()],
                        dtype=object), np.ones(len(col), dtype=bool)
    if kind == "f":
        present = ~np.isnan(col)
        return np.array([category_key(v) for v in col.tolist()], dtype=object), present
    if kind in "iub":
        return np.array([str(v) for v in col.tolist()], dtype=object), \
            np.ones(len(col), dtype=bool)
    # An object column's tolist() hands back its own values; any other (datetime64) would
    # turn them into Python numbers or datetimes, so its numpy scalars are kept.
    found = _object_keys(col.tolist() if col.dtype.kind == "O" else list(col))
    present = np.fromiter((key is not None for key in found), dtype=bool, count=len(found))
    keys = np.array(["" if key is None else key for key in found], dtype=object)
    return keys, present


def _object_keys(values: list) -> list[str | None]:
    """The key of each value (None where missing), converted once per distinct value: a
    training column of a million rows holds a few hundred categories. Values are told apart
    by type as well (``1``, ``1.0`` and ``True`` are equal in a dict but are the categories
    ``1``, ``1`` and ``True``); one that cannot be hashed is converted on its own.

    >>> _object_keys(["a", None, True, 1, float("nan"), "a"])
    ['a', None, 'True', '1', None, 'a']
    """
    by_type: dict[type, dict[Any, str | None]] = {}

    def key_of(value: Any) -> str | None:
        kind = value.__class__
        known = by_type.get(kind)
        if known is None:
            if not _keyed_by_value(kind):
                return _key(value)
            known = by_type[kind] = {}
        try:
            return known[value]
        except KeyError:
            found = known[value] = _key(value)
            return found

    return [key_of(value) for value in values]


def _keyed_by_value(kind: type) -> bool:
    """Whether equal values of type `kind` always have one key: text, numbers and bytes.
    Not so for a Decimal (``1.0`` and ``1`` are equal, their text is not), and nothing is
    assumed of other types, which are converted value by value."""
    return kind in (str, int, float, bool, bytes) or issubclass(
        kind, (np.str_, np.bytes_, np.number, np.bool_))


def _key(value: Any) -> str | None:
    return None if is_missing(value) else category_key(value)


def category_key(value: Any) -> str:
    """The category a value stands for: its text, with whole floats written as integers.

    A code read as 10115.0 from one source and 10115 from another is the same category.

    >>> category_key(10115.0), category_key(10115), category_key(0.5), category_key(True)
    ('10115', '10115', '0.5', 'True')
    >>> category_key(b"red"), category_key(np.float16(3))
    ('red', '3')
    """
    if isinstance(value, (float, np.floating)):
        # As a Python float: comparing a float16 with 2**53 overflows it, with a warning.
        number = float(value)
        if number.is_integer() and abs(number) < 2**53:
            return str(int(number))
    elif isinstance(value, (bytes, bytearray)):
        # Decoded as a numpy bytes column is: b"red" in a row dict is the category "red",
        # not "b'red'".
        return bytes(value).decode("utf-8", "replace")
    elif isinstance(value, (datetime.date, datetime.timedelta, np.datetime64, np.timedelta64)):
        try:
            return _time_key(value)
        except (ValueError, TypeError, OverflowError):  # NaT, a subclass numpy cannot read
            return str(value)
    return str(value)


def _time_key(value: Any) -> str:
    """One text per instant or duration, whatever carries it: numpy's text depends on the
    column's unit (``2024-01-01T10:30:00.000000`` in a pandas ``us`` column, nine digits in
    an ``ns`` one) and a Timestamp, a datetime and a numpy value each write their own, so a
    timestamp profiled as a category would be unseen in live data of another container.

    >>> _time_key(np.datetime64("2024-01-01T10:30", "ns")), _time_key(
    ...     datetime.datetime(2024, 1, 1, 10, 30)), _time_key(np.datetime64("2024-01-01", "us"))
    ('2024-01-01 10:30:00', '2024-01-01 10:30:00', '2024-01-01')
    >>> _time_key(np.timedelta64(90, "s")), _time_key(datetime.timedelta(seconds=90))
    ('0:01:30', '0:01:30')
    """
    if isinstance(value, datetime.timedelta) and hasattr(value, "to_timedelta64"):
        value = value.to_timedelta64()  # a pandas Timedelta, nanoseconds and all
    if isinstance(value, np.timedelta64):
        if np.isnat(value):
            return "NaT"
        micro = value.astype("timedelta64[us]")
        if micro != value or not isinstance(micro.item(), datetime.timedelta):
            return str(value)  # finer than a microsecond, or months and years
        value = micro.item()
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return str(value)  # aware: pandas and datetime write the same ISO text and offset
    if hasattr(value, "to_datetime64"):
        value = value.to_datetime64()  # a pandas Timestamp, nanoseconds and all
    elif not isinstance(value, np.datetime64):
        value = np.datetime64(value)
    if np.isnat(value):
        return "NaT"
    if np.datetime_data(value.dtype)[0] in ("h", "m"):
        value = value.astype("datetime64[s]")  # "10:30" is "10:30:00" in a column of seconds
    text = str(np.datetime_as_string(value))
    if "T" not in text:
        return text  # a date (or a month, a year)
    day, time = text.split("T")
    if "." in time:
        time = time.rstrip("0").rstrip(".")
    return day if time in ("00:00", "00:00:00") else f"{day} {time}"
