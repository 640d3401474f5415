"""Faults inside inferwatch: counted, logged at most once a minute, never raised.

inferwatch runs inside someone else's model server, so every entry point that could
fail on our side is wrapped by :func:`guard` or calls :func:`record` directly.

>>> record("example")
>>> internal_error_counts()["example"] >= 1
True
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

log = logging.getLogger("inferwatch")

LOG_INTERVAL_SECONDS = 60.0
# Components are names from our own code, never user data, so this cap is only a safety net.
_MAX_COMPONENTS = 64

_lock = threading.Lock()
_counts: dict[str, int] = {}
_last_logged: dict[str, float] = {}

T = TypeVar("T")


def record(component: str, exc: BaseException | None = None, count: int = 1) -> None:
    """Count `count` swallowed faults of `component`; log them, rate-limited per component."""
    try:
        now = time.monotonic()
        with _lock:
            if component not in _counts and len(_counts) >= _MAX_COMPONENTS:
                component = "__other__"
            _counts[component] = _counts.get(component, 0) + count
            last = _last_logged.get(component)
            should_log = last is None or now - last >= LOG_INTERVAL_SECONDS
            if should_log:
                _last_logged[component] = now
        if should_log:
            log.warning(
                "inferwatch: internal fault in %s (counted in inferwatch_internal_errors_total;"
                " further faults here are logged at most once a minute)",
                component,
                exc_info=exc,
            )
    except Exception:  # pragma: no cover - logging itself failed; nothing left to do
        pass


def _reset_after_fork() -> None:
    # A fork while another thread held the lock would otherwise deadlock the child.
    global _lock
    _lock = threading.Lock()
    # The parent's faults are the parent's to export: a child that re-exported them would
    # count each once per process. (Registered before the registry's hook, which records a
    # fault of its own fork steps here, and multi-worker mode's baseline reads these.)
    _counts.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def internal_error_counts() -> dict[str, int]:
    """A copy of the fault counts by component."""
    # No lock, as multiproc.store.skipped_counts(): a forked child's hooks read it.
    return dict(_counts)


def guard(component: str, fn: Callable[..., T], *args: object, default: T | None = None,
          **kwargs: object) -> T | None:
    """Call `fn`, turning any exception into a counted internal fault.

    >>> guard("example", int, "12")
    12
    >>> guard("example", int, "not a number") is None
    True
    """
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        record(component, exc)
        return default


def text_of(value: object, component: str) -> str | None:
    """The text of user data: ``str(value)``, the characters of a str subclass, the UTF-8
    text of bytes; None (a counted fault) when its ``__str__`` raises.

    >>> class Hostile:
    ...     def __str__(self):
    ...         raise RuntimeError("no")
    >>> text_of(17, "example"), text_of(Hostile(), "example"), text_of(b"r-1", "example")
    ('17', None, 'r-1')
    """
    if value.__class__ is str:
        return value
    if isinstance(value, str):
        # Its characters, as a plain str: a str Enum member's own __str__ ("Action.SHOWN")
        # is not the text the exposition writes, and a subclass's methods may raise.
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray)):
        # An id read from a message or a raw header: its text, not its repr ("b'r-1'"),
        # which the same id given as text would never match. A byte that is not UTF-8 is
        # written as its escape (a lone surrogate would break every UTF-8 write).
        return bytes(value).decode("utf-8", "backslashreplace")
    try:
        return str(value)
    except Exception as exc:
        record(component, exc)
        return None


# A request id is kept as given up to this many characters (what the event log stores whole
# too); a longer one is replaced by its digest, so that an id costs at most this much
# memory wherever it is held (the outcome join's cache, pending records, events).
MAX_REQUEST_ID_CHARS = 1024
REQUEST_ID_DIGEST_PREFIX = "sha256:"


def request_id_text(value: object, component: str) -> str | None:
    """The text a request id is joined by, whichever way it came (a header, ``request_id=``,
    ``record_outcome``): :func:`text_of`, with a whole-number float (a pandas id column
    with a gap is float64) or Decimal (a NUMERIC column) as the integer it is, so that
    ``record_outcome(101.0, ...)`` joins the prediction made for ``101``, as a label ``1.0``
    is class ``1``. A bool is no number here: ``True`` stays ``"True"``. The text is then
    bounded by :func:`bounded_request_id`.

    >>> [request_id_text(v, "example") for v in ("r-1", 101, 101.0, 1.5, True)]
    ['r-1', '101', '101', '1.5', 'True']
    """
    if value.__class__ is str:  # the usual id
        return bounded_request_id(value)  # type: ignore[arg-type]
    if value.__class__ is not int and (isinstance(value, (float, Decimal)) or
                                       _is_numpy_float(value)):
        whole = _whole_number(value)
        if whole is not None:
            return bounded_request_id(str(whole))
    text = text_of(value, component)
    return None if text is None else bounded_request_id(text)


def bounded_request_id(text: str) -> str:
    """`text` as a request id: itself up to ``MAX_REQUEST_ID_CHARS`` characters, else
    ``"sha256:"`` + the hex SHA-256 of its UTF-8, as the event log stores such an id
    (``events.sinks.stored_request_id``). Applying it twice changes nothing, so an id read
    back from an event joins too.

    >>> bounded_request_id("r-17"), bounded_request_id(" r 17\u00e9 ")
    ('r-17', ' r 17é ')
    >>> bounded_request_id("x" * 2000)[:15]
    'sha256:5c0e0ea4'
    """
    if len(text) <= MAX_REQUEST_ID_CHARS:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return REQUEST_ID_DIGEST_PREFIX + digest


# The exponent of the largest float (1.8e308): a whole Decimal up to it is read as a float is.
_MAX_WHOLE_DIGITS = 308


def _is_numpy_float(value: object) -> bool:
    """Whether `value` is a numpy float of another width than float64 (a float already).
    Light entry points (the command line) load this module without numpy, and no id can be
    a numpy float before numpy is loaded."""
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.floating)


def _whole_number(value: float | Decimal) -> int | None:
    """The integer a whole-number float or Decimal is; None for a fraction, NaN or an
    infinity, and for a Decimal past a float's range, whose digits would cost without
    bound (``Decimal("1e999999")``)."""
    try:
        if isinstance(value, Decimal):
            whole = value.is_finite() and value.adjusted() <= _MAX_WHOLE_DIGITS and \
                value == value.to_integral_value()
        else:
            whole = value.is_integer()  # type: ignore[union-attr]
        return int(value) if whole else None
    except Exception:  # a float subclass of the caller's whose methods raise
        return None
