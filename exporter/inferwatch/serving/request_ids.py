"""The ids a request carries in its headers: the caller's request id (``X-Request-ID`` by
default) and the trace id of a W3C ``traceparent``. Apart from the middleware because the
ASGI and the WSGI middleware both read them, each from its own form of the headers.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from inferwatch.faults import bounded_request_id

if TYPE_CHECKING:
    from inferwatch.core.monitor import Monitor

# W3C trace context: version, trace id, parent id, flags; a later version may add fields.
_TRACEPARENT = re.compile(r"(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})"
                          r"-(?P<parent>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})(?P<more>-.*)?",
                          re.DOTALL)


def clean_request_id(value: str) -> str | None:
    """A request id from a header (its latin-1 text, as the app reads it), None if empty:
    bounded as every other request id is (:func:`inferwatch.faults.bounded_request_id`)
    and otherwise as it came, so that ground truth the app reports under the value it read
    joins the request (``record_outcome`` bounds its id the same way).

    >>> clean_request_id("r-17"), clean_request_id("commande-\u00c3\u00a917"), clean_request_id("")
    ('r-17', 'commande-Ã©17', None)
    """
    return bounded_request_id(value) or None


def trace_id_from_traceparent(value: str) -> str | None:
    """The trace id of a W3C ``traceparent`` header, None when it is not valid: the
    version is two lowercase hex digits but not ``ff``, version ``00`` has exactly four
    fields, the trace id (32) and parent id (16 lowercase hex digits) are not all zeros and
    the flags are two hex digits. None as well when the caller did not sample the trace
    (flags without the ``sampled`` bit), as for an OpenTelemetry span: no backend holds
    that trace, so an exemplar would point nowhere.

    >>> trace_id_from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    '4bf92f3577b34da6a3ce929d0e0e4736'
    >>> trace_id_from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")
    >>> trace_id_from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
    """
    found = _TRACEPARENT.fullmatch(value.strip())
    if found is None or found["version"] == "ff" or (
            found["version"] == "00" and found["more"] is not None):
        return None
    trace = found["trace"]
    if trace == "0" * 32 or found["parent"] == "0" * 16 or not int(found["flags"], 16) & 1:
        return None
    return trace


def follows_callers_trace(monitor: Monitor) -> bool:
    """Whether a ``traceparent`` header may give the request its trace id: not where the
    model was instrumented with ``exemplars=False``, which keeps trace ids out of its
    exemplars and its event log whatever their source."""
    return monitor.settings.exemplars is not False
