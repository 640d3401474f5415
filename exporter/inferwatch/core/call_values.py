"""How the monitor reads what it is handed about a call: a duration as seconds, an error
as its class, a cancellation as no failure, and the value of a counter.

Apart from the monitor because the request records, the streams, the middleware and the
shadows read calls the same way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import sys

from inferwatch import faults

# A caller that gave up (a client timeout, a disconnect) is not a model failure: these are
# counted as outcome="cancelled", never as errors that burn the error budget.
# A call that a KeyboardInterrupt or SystemExit ends was stopped by its process stopping
# (Ctrl-C, gunicorn's quick shutdown on SIGINT or SIGQUIT exits inside the running request),
# not failed by the model: counted against the model's errors, every quick restart would
# burn its error budget.
CANCELLATIONS = (asyncio.CancelledError, concurrent.futures.CancelledError, KeyboardInterrupt,
                 SystemExit)


def cancellations() -> tuple[type[BaseException], ...]:
    """The exception classes that count as ``cancelled``: :data:`CANCELLATIONS`, and trio's
    ``Cancelled`` (anyio on trio, hypercorn's trio worker) once trio is loaded. trio is
    looked up among the loaded modules only, never imported: where it is not loaded, no
    trio exception exists. Read when a failure is folded or a stream ends, never per call.

    >>> import asyncio
    >>> asyncio.CancelledError in cancellations(), KeyError in cancellations()
    (True, False)
    """
    cancelled = getattr(sys.modules.get("trio"), "Cancelled", None)
    if isinstance(cancelled, type) and issubclass(cancelled, BaseException):
        return (*CANCELLATIONS, cancelled)
    return CANCELLATIONS


_INF = float("inf")


def seconds(duration: object) -> float:
    """A duration handed to :meth:`Monitor.record_call` as seconds: a finite number >= 0,
    else 0.0 and a counted fault.

    >>> seconds(2), seconds(float("nan"))
    (2.0, 0.0)
    """
    try:
        if not isinstance(duration, bool):
            seconds = float(duration)  # type: ignore[arg-type]
            if 0.0 <= seconds < _INF:
                return seconds
    except (TypeError, ValueError, OverflowError):
        pass
    faults.record("request")
    return 0.0


def error_class(error: object) -> type:
    """The exception class of what :meth:`Monitor.record_error` was given: the class of
    an exception object, an exception class (a subclass of ``type``'s own), else
    ``Exception`` and a counted fault.

    >>> error_class(KeyError("k")).__name__
    'KeyError'
    """
    if isinstance(error, BaseException):
        return error.__class__
    if isinstance(error, type) and issubclass(error, BaseException):
        return error
    faults.record("request")
    return Exception


def count_value(counter: itertools.count) -> int:
    """The next value `counter` gives, without taking it.

    >>> count_value(itertools.count(17))
    17
    """
    # itertools.count exposes its next value only through repr: "count(17)".
    return int(repr(counter)[6:-1])
