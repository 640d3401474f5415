"""Whether a failed batch job's exception was counted already, so that a push counts it once.

A job pushed by ``push.on_exit`` that fails counts its exception for each model, unless a
model counted it on its way out: an instrumented call or the stream it returned (its
wrapper's frame is in the traceback), or a ``with mon.request()`` block (whose exit is not:
while a job runs, the request module keeps the last few exceptions such blocks counted).
So is an exception raised from or while handling one a model counted (``__cause__``,
``__context__``), and, when the pool's workers publish to the job's multi-worker directory,
one a process pool re-raises from a worker whose model call failed: the worker counted it.
Apart from ``pushgateway.py`` because this reads the request path's code and state, where
that module speaks HTTP.

>>> counted_already(RuntimeError("raised by the job itself"))
False
"""

from __future__ import annotations

import re
import sys
import threading
from collections import deque
from types import CodeType

from inferwatch.core import request as request_module
from inferwatch.core.request_record import MAX_TRACEBACK, linked_exceptions
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


def counted_already(exc: BaseException, *, workers_publish: bool = False) -> bool:
    """Whether a model counted `exc` as it came out of the model's call, stream or request,
    or counted an exception `exc` was raised from or while handling (up to
    :data:`~inferwatch.core.request_record.MAX_CHAINED` linked exceptions, an exception
    group's members included).

    `workers_publish`: the job's process pool publishes to the multi-worker directory the
    push reads, so an exception a pool re-raised from a worker's model call was counted
    there. Without it, the workers' counts never reach the push: the job counts it.
    """
    kept = request_module.failures_counted
    kept_failures = [] if kept is None else list(kept)
    for current in linked_exceptions(exc):
        if any(failure is current for failure in kept_failures) or _passed_counting(current):
            return True
        if workers_publish and _counted_in_worker(current):
            return True
    return False


def _passed_counting(exc: BaseException) -> bool:
    """Whether `exc`'s traceback has a frame of the code that counts an exception."""
    counting = _counting_code()
    tb = exc.__traceback__
    for _ in range(MAX_TRACEBACK):
        if tb is None:
            return False
        if tb.tb_frame.f_code in counting:
            return True
        tb = tb.tb_next
    return False


# A worker's frame as traceback.format_exception writes it: '  File "path", line 7, in name'.
_FRAME_LINE = re.compile(r'^\s*File "(?P<file>[^"\n]*)", line \d+, in (?P<name>\S+)\s*$',
                         re.MULTILINE)
# Where a process pool keeps a worker's formatted traceback: the ``__cause__`` it gives the
# exception it re-raises (multiprocessing's Pool, concurrent.futures' ProcessPoolExecutor).
_REMOTE_TRACEBACKS = (("multiprocessing.pool", "RemoteTraceback"),
                      ("concurrent.futures.process", "_RemoteTraceback"))


def _counted_in_worker(exc: BaseException) -> bool:
    """Whether `exc` is a process pool worker's traceback (the cause of the exception the
    pool re-raised) that passed through the code counting an exception, in the worker."""
    if not any(isinstance(exc, kind) for kind in _remote_traceback_types()):
        return False
    text = getattr(exc, "tb", None)
    if not isinstance(text, str):
        return False
    counting = {(code.co_filename, code.co_name) for code in _counting_code()}
    return any((frame["file"], frame["name"]) in counting
               for frame in _FRAME_LINE.finditer(text))


def _remote_traceback_types() -> list[type]:
    # From the modules as loaded: a pool that re-raised has loaded its own, and a job that
    # ran none must not import them here.
    found = []
    for module_name, class_name in _REMOTE_TRACEBACKS:
        kind = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(kind, type):
            found.append(kind)
    return found


def _counting_code() -> frozenset[CodeType]:
    """The code of the request path's functions that count an exception passing through
    them: a call's wrappers (their closures found in the code that makes them), the
    follower of a stream a call returned, and the proxies of an SDK's stream objects. Only
    these: ``instrument()`` refusing its arguments, or a proxy passing on ``fit``, runs in
    the same modules and counts nothing."""
    global _counting
    if _counting:
        return _counting
    from inferwatch.core import call_recorder, call_wrappers, stream_objects, streams

    recorder = call_recorder.CallRecorder
    codes = {recorder.call.__code__, recorder.call_async.__code__, recorder.join.__code__,
             streams.follow_sync.__code__, streams.follow_async.__code__}
    for proxy in (stream_objects.StreamProxy, stream_objects.AsyncStreamProxy):
        codes.update((proxy._step.__code__, proxy._aborting.__code__))
    for maker in (call_wrappers._sync_wrapper, call_wrappers._async_wrapper):
        codes.update(code for code in maker.__code__.co_consts if isinstance(code, CodeType)
                     and code.co_name in ("instrumented", "with_input"))
    _counting = frozenset(codes)
    return _counting
