"""Whether a failed batch job's exception was counted already, so that a push counts it once.

A job pushed by ``push.on_exit`` that fails counts its exception for each model, unless a
model counted it on its way out: an instrumented call or the stream it returned (its
wrapper's frame is in the traceback), or a ``with mon.request()`` block (whose exit is not:
while a job runs, the request module keeps the last few exceptions such blocks counted).
Apart from ``pushgateway.py`` because this reads the request path's code and state, where
that module speaks HTTP.

>>> counted_already(RuntimeError("raised by the job itself"))
False
"""

from __future__ import annotations

import threading
from collections import deque
from types import CodeType

from inferwatch.core import request as request_module
from inferwatch.forking import renew_at_fork

# How many of the failures `with mon.request()` blocks counted are kept while a job runs:
# the job's own exception is the last one, or close to it; a job that catches many
# failing requests must not keep them all.
FAILURES_KEPT = 16

_jobs_open = 0
_jobs_lock = threading.Lock()
renew_at_fork(globals(), "_jobs_lock")
_counting: frozenset[CodeType] = frozenset()


def job_began() -> None:
    """A pushed job began: requests' failures are kept until the last open job ends."""
    global _jobs_open
    with _jobs_lock:
        _jobs_open += 1
        if request_module.failures_counted is None:
            request_module.failures_counted = deque(maxlen=FAILURES_KEPT)


def job_ended() -> None:
    """A pushed job ended: with none left open, no failure is kept (nor its traceback)."""
    global _jobs_open
    with _jobs_lock:
        _jobs_open = max(0, _jobs_open - 1)
        if not _jobs_open:
            request_module.failures_counted = None


def counted_already(exc: BaseException) -> bool:
    """Whether a model counted `exc` as it came out of the model's call, stream or request."""
    kept = request_module.failures_counted
    if kept is not None and any(failure is exc for failure in list(kept)):
        return True
    counting = _counting_code()
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in counting:
            return True
        tb = tb.tb_next
    return False


def _counting_code() -> frozenset[CodeType]:
    """The code of the request path's functions that count an exception passing through
    them: a call's wrappers (their closures found in the code that makes them), the
    follower of a stream a call returned, and the proxies of an SDK's stream objects. Only
    these: ``instrument()`` refusing its arguments, or a proxy passing on ``fit``, runs in
    the same modules and counts nothing."""
    global _counting
    if _counting:
        return _counting
    from inferwatch.core import call_wrappers, stream_objects, streams

    recorder = call_wrappers._CallRecorder
    codes = {recorder.call.__code__, recorder.call_async.__code__, recorder.join.__code__,
             streams.follow_sync.__code__, streams.follow_async.__code__}
    for proxy in (stream_objects.StreamProxy, stream_objects.AsyncStreamProxy):
        codes.update((proxy._step.__code__, proxy._aborting.__code__))
    for maker in (call_wrappers._sync_wrapper, call_wrappers._async_wrapper):
        codes.update(code for code in maker.__code__.co_consts if isinstance(code, CodeType)
                     and code.co_name in ("instrumented", "with_input"))
    _counting = frozenset(codes)
    return _counting
