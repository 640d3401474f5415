"""Times given by users as numbers, datetimes or text, read as Unix seconds: when an outcome's
label became known (``record_outcome(at=)``), and what ``inferwatch events --since`` reads.
"""

from __future__ import annotations

import datetime
import re

import numpy as np

from inferwatch import faults

_INF = float("inf")

# Unix seconds of 5138-11-16: a larger epoch number is in ms, us or ns.
_EPOCH_SECONDS_LIMIT = 1e11


def epoch_seconds(value: float) -> float:
    """`value` in seconds, also when it is Unix time in milliseconds, microseconds or
    nanoseconds, told by its size as ``inferwatch events --since`` tells them.

    Kafka record timestamps, JavaScript's ``Date.now()`` and Java log epoch milliseconds,
    OpenTelemetry nanoseconds; read as seconds they name a year past 5000, and every outcome
    joined with one would be ``expired`` or observe an absurd delay. Seconds reach 1e11 only
    in the year 5138, so the unit is plain from the size.

    >>> epoch_seconds(1_700_000_000_000), epoch_seconds(1_700_000_000_000_000_000)
    (1700000000.0, 1700000000.0)
    >>> epoch_seconds(1_700_000_000.5)
    1700000000.5
    """
    for scale in (1.0, 1e3, 1e6, 1e9):
        if abs(value) / scale < _EPOCH_SECONDS_LIMIT:
            return value / scale
    return value  # beyond every unit (or NaN): as given, for the caller to judge


def seconds_of(at: object) -> float:
    """When an outcome's label became known, as Unix seconds: a number, a datetime,
    ``pd.Timestamp`` or ``np.datetime64`` (what a labels table holds), or ISO 8601 text with
    an offset; NaN for a time that is not known (``pd.NaT``), which joins with no label
    delay. A number (or numeric text) of 1e11 or more is epoch milliseconds, microseconds
    or nanoseconds by its size (a Kafka or JavaScript timestamp: :func:`epoch_seconds`);
    a bool is no time (counted, joined with no delay).

    A naive datetime or ``pd.Timestamp`` is UTC, as a naive ``np.datetime64`` is, as pandas
    reads one, and as ``instrument(trained_at=)`` reads one: the labels of one table would
    otherwise be read hours apart by their type alone (``datetime.timestamp()`` takes a
    naive one as the host's local time, ``pd.Timestamp.timestamp()`` as UTC), and label
    delays would change with the server's time zone. Text is refused without an offset
    (counted, joined with no delay): it is often a local time written out by another
    system, which no rule here could read right.

    >>> seconds_of(datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
    1767225600.0
    >>> seconds_of(datetime.datetime(2026, 1, 1)), seconds_of("2026-01-01T02:00:00+02:00")
    (1767225600.0, 1767225600.0)
    >>> seconds_of(np.datetime64("2026-01-01T00:00:00")), seconds_of(np.datetime64("NaT", "s"))
    (1767225600.0, nan)
    >>> seconds_of("1767225600"), seconds_of("not a time"), seconds_of(float("inf"))
    (1767225600.0, nan, nan)
    >>> seconds_of("2026-01-01T00:00:00")  # no offset: which zone is not known
    nan
    >>> seconds_of(1767225600000), seconds_of("1767225600000000")
    (1767225600.0, 1767225600.0)
    """
    if isinstance(at, np.datetime64):
        return _seconds_of_datetime64(at)
    if isinstance(at, str):
        return _seconds_of_text(at)
    if isinstance(at, datetime.date) and not isinstance(at, datetime.datetime):
        at = datetime.datetime(at.year, at.month, at.day)  # a day: its midnight, UTC
    if isinstance(at, datetime.datetime):
        if at != at:  # pd.NaT, a datetime that is no time
            return float("nan")
        try:
            if at.utcoffset() is None:
                at = at.replace(tzinfo=datetime.timezone.utc)
            return float(at.timestamp())
        except (ValueError, OverflowError, OSError):  # a date past any clock
            faults.record("outcome")
            return float("nan")
    stamp = getattr(at, "timestamp", None)
    if callable(stamp):
        try:
            return float(stamp())
        except (ValueError, OverflowError, OSError):  # pd.NaT, or a date past any clock
            return float("nan")
    try:
        # A bool is no time (float(True) would be a second past 1970: the label expired).
        seconds = _INF if isinstance(at, (bool, np.bool_)) else epoch_seconds(
            float(at))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        seconds = _INF
    if seconds == seconds and not -_INF < seconds < _INF:
        # A time no clock reads ("yesterday", infinity): the label's arrival is not known,
        # but the label is, so it is still joined (an infinite time would also have made
        # it expired, and the delay histogram's sum infinite for good). Counted.
        faults.record("outcome")
        return float("nan")
    return seconds


# Ticks per second of the np.datetime64 units finer than a second.
_TICKS_PER_SECOND = {"ms": 10**3, "us": 10**6, "ns": 10**9, "ps": 10**12, "fs": 10**15,
                     "as": 10**18}


def _seconds_of_datetime64(at: np.datetime64) -> float:
    """Unix seconds of `at` in whatever unit it holds; NaN for NaT.

    Not through ``datetime64[ns]``, which holds only 1677-09-21 .. 2262-04-11 and wraps
    around silently outside it: a label time of 3000-01-01 would read as 1830 and join
    with no delay instead of expiring. Finer units are counted in Python integers and
    divided once, so the result is the float nearest the instant, as
    ``datetime.timestamp()`` gives for the same instant.

    >>> _seconds_of_datetime64(np.datetime64("3000-01-01")), _seconds_of_datetime64(
    ...     np.datetime64("1970-01-01T00:00:01.5", "ns"))
    (32503680000.0, 1.5)
    """
    if np.isnat(at):
        return float("nan")
    unit, multiple = np.datetime_data(at.dtype)
    ticks_per_second = _TICKS_PER_SECOND.get(unit)
    if ticks_per_second is not None:
        return int(at.astype(np.int64)) * multiple / ticks_per_second
    # A second or coarser (years and months have no fixed length): whole seconds, unless
    # that many seconds are past int64, where the cast would wrap around as well.
    whole = at.astype("datetime64[s]")
    if whole.astype(at.dtype) != at:
        faults.record("outcome", OverflowError(
            f"record_outcome(at={at!r}): past any time Unix seconds can count"))
        return float("nan")
    return float(int(whole.astype(np.int64)))


_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _seconds_of_text(text: str) -> float:
    """Unix seconds of `at` given as text: a number of seconds, ISO 8601 with an offset
    ("Z", "+02:00"), or a date alone (its midnight UTC). Anything else is NaN and a counted
    fault whose message says why."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or -_INF < seconds < _INF:  # "nan": not known, as NaN is
            return epoch_seconds(seconds)
        faults.record("outcome", ValueError(
            f"record_outcome(at={text[:64]!r}): not a time; expected Unix seconds, a "
            "datetime or ISO 8601 text with an offset"))
        return float("nan")
    text = text.strip()
    if _DATE_ONLY.fullmatch(text):
        # A day is midnight UTC, as a `date` is here and `trained_at="2026-10-01"` is: only a
        # time of day without an offset is ambiguous by hours.
        text += "T00:00:00+00:00"
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        faults.record("outcome", ValueError(
            f"record_outcome(at={text[:64]!r}): not a time; expected Unix seconds, a "
            "datetime or ISO 8601 text with an offset"))
        return float("nan")
    if when.utcoffset() is None:
        faults.record("outcome", ValueError(
            f"record_outcome(at={text[:64]!r}): ISO 8601 text needs an offset ('Z' or "
            "'+02:00'); its time zone is not known, so the label delay is not recorded"))
        return float("nan")
    try:
        return float(when.timestamp())
    except (ValueError, OverflowError, OSError):
        faults.record("outcome")
        return float("nan")
