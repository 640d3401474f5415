"""The record a ``mon.request()`` block hands to the drain when it ends, and its event-log
entry.

Apart from the request because the drain, the call wrappers, the streams and the shadows
read a request's record without opening requests: they need its fields, not the per-thread
bookkeeping of blocks entered and left.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import CodeType
from typing import TYPE_CHECKING, NamedTuple

from inferwatch.frame_values import as_logged

if TYPE_CHECKING:
    from inferwatch.core.stream_records import StreamRecord


@dataclass(slots=True, init=False)
class RequestRecord:
    """What one ``mon.request()`` block saw, handed to the drain when the block ends.

    >>> record = RequestRecord(0.25, request_id="r-17")
    >>> record.stages, record.has_prediction, record.probabilities
    ([], False, False)
    """

    duration: float
    request_id: str | None = None
    started_at: float = 0.0  # wall-clock time, for the label delay of outcomes
    stages: list[tuple[str, float]] = field(default_factory=list)
    prediction: object = None
    probabilities: bool | None = False
    has_prediction: bool = False
    features: object = None
    inputs: object = None
    stage_outputs: dict[str, object] | None = None
    action: str | None = None
    error_type: type | None = None
    # The instrumented model calls that raised inside the request, caught by the app or not:
    # each counts in the errors metric by its class, and one that the request's own failure
    # is (or came from) stands for it there, so that one failure is never counted twice.
    model_errors: list[ModelError] | None = None
    # The request ended with an exception that is none of its model errors and came from
    # none of them (the app's own bug after a model call failed and was retried): counted by
    # its class besides them. Decided as it ended (see Request.ending_with).
    own_error: bool = False
    # Kept only for a log that stores messages (read when the call failed, not at the drain:
    # the exception and the frames it holds are not kept).
    error_message: object = None
    # Given by ``r.features()`` rather than taken from the model call's argument: logged as
    # ``features`` even without ``r.inputs()``.
    named_features: bool = False
    # A consumer that stopped a streamed result early: its own outcome, not an error.
    cancelled: bool = False
    trace_id: str | None = None
    stream: StreamRecord | None = None  # a streamed or text result's figures

    def __init__(self, duration: float, request_id: str | None = None,
                 started_at: float = 0.0) -> None:
        # Written out: one is made per request, and the generated __init__ (a default
        # factory among sixteen fields) costs half again as much.
        self.duration = duration
        self.request_id = request_id
        self.started_at = started_at
        self.stages = []
        self.prediction = self.features = self.inputs = self.stage_outputs = None
        self.action = self.error_type = self.trace_id = self.stream = self.error_message = None
        self.model_errors = None
        self.probabilities = self.has_prediction = self.cancelled = self.named_features = \
            self.own_error = False

    def event(self, model: str, version: str) -> dict[str, object]:
        """The event-log entry for this request (the log redacts and bounds it)."""
        event: dict[str, object] = {
            "ts": self.started_at, "model": model, "model_version": version,
            "request_id": self.request_id, "trace_id": self.trace_id,
            # Without a separate raw input, the call's argument is the input: logged once.
            "inputs": as_logged(self.inputs if self.inputs is not None or self.named_features
                                else self.features),
            "stages": _stage_totals(self.stages),
            "duration_seconds": self.duration, "action": self.action,
        }
        if self.features is not None and (self.inputs is not None or self.named_features):
            event["features"] = as_logged(self.features)
        if self.stage_outputs:
            event["stage_outputs"] = self.stage_outputs
        if self.stream is not None:
            event["stream"] = self.stream.event_fields()
            if self.stream.text is not None:
                event["output_text"] = self.stream.text
        if self.model_errors is not None:
            event["model_errors"] = [error.error_type.__name__ for error in self.model_errors]
        if self.error_type is not None:
            error: dict[str, object] = {"type": self.error_type.__name__}
            if self.error_message is not None:
                error["message"] = self.error_message
            event["error"] = error
        elif self.has_prediction:
            key = "probabilities" if self.probabilities else "prediction"
            event[key] = self.prediction
        return event


class ModelError(NamedTuple):
    """A model call that raised inside a request, as the request keeps it: never the
    exception, whose traceback holds the frames of the call (a batch's tensors, on a GPU
    too) until the request ends, but what tells it apart while it lives: its id, and the
    code of the frame that recorded it (an instrumented call's wrapper), which no exception
    of the app's own passes through should it be made where a freed one lay."""

    exception_id: int
    error_type: type
    caught_in: CodeType | None


def model_error(error: BaseException | None, error_type: type | None = None) -> ModelError:
    """`error` (or, where none is at hand, a failure of class `error_type`, which no
    exception will match) as a request keeps it; read in the ``except`` block that caught
    it, where its traceback's first entry is that block's frame.

    >>> def caught():
    ...     try:
    ...         raise TimeoutError("backend")
    ...     except TimeoutError as exc:
    ...         return exc, model_error(exc)
    >>> exc, error = caught()
    >>> error.exception_id == id(exc), error.error_type, error.caught_in is caught.__code__
    (True, <class 'TimeoutError'>, True)
    """
    if error is None:
        return ModelError(0, error_type, None)  # type: ignore[arg-type]
    trace = error.__traceback__
    return ModelError(id(error), error.__class__, None if trace is None else trace.tb_frame.f_code)


# How far an exception's chain (its cause, its context, an exception group's members) is
# followed to a model error, and how deep a traceback is searched for the frame that caught
# one: far beyond what an app chains, and a request ending with a cycle or an endless
# chain still costs a bounded walk.
MAX_CHAINED = 16
MAX_TRACEBACK = 1000

# An exception group (asyncio.TaskGroup's, anyio's) holds the failures of its tasks: one of
# them may be a model error. Built in from Python 3.11; before it, the exceptiongroup
# backport that anyio installs.
_GROUPS: type | tuple[()] = getattr(builtins, "BaseExceptionGroup", ())
if not _GROUPS:
    try:
        from exceptiongroup import BaseExceptionGroup as _GROUPS  # type: ignore[no-redef]
    except ImportError:
        pass


def from_model_error(error: BaseException, model_errors: list[ModelError]) -> bool:
    """Whether `error`, which a request ends with, is one of the request's `model_errors`
    or was raised from one or while handling one (``__cause__``, ``__context__``, an
    exception group's members; up to :data:`MAX_CHAINED` exceptions).

    >>> def failing():
    ...     try:
    ...         raise TimeoutError("backend")
    ...     except TimeoutError as exc:
    ...         return exc, model_error(exc)
    >>> exc, error = failing()
    >>> try:
    ...     raise RuntimeError("try again") from exc
    ... except RuntimeError as raised:
    ...     from_model_error(raised, [error]), from_model_error(KeyError("label"), [error])
    (True, False)
    """
    known = {error.exception_id: error for error in tuple(model_errors)}
    for exc in linked_exceptions(error):
        mark = known.get(id(exc))
        if mark is not None and exc.__class__ is mark.error_type and (
                mark.caught_in is None or _passed_through(exc, mark.caught_in)):
            return True
    return False


def linked_exceptions(error: BaseException) -> Iterator[BaseException]:
    """`error`, then the exceptions it was raised from or while handling (``__cause__``
    first, then ``__context__``) and an exception group's members, each once, up to
    :data:`MAX_CHAINED` in all: a cycle or a huge group cannot hold the caller.

    >>> try:
    ...     try:
    ...         raise KeyError("a")
    ...     except KeyError as first:
    ...         raise ValueError("b") from first
    ... except ValueError as second:
    ...     [type(e).__name__ for e in linked_exceptions(second)]
    ['ValueError', 'KeyError']
    """
    waiting = [error]
    seen: set[int] = set()
    while waiting and len(seen) < MAX_CHAINED:
        exc = waiting.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        yield exc
        if isinstance(exc, _GROUPS):
            waiting.extend(exc.exceptions[:MAX_CHAINED])
        for linked in (exc.__context__, exc.__cause__):  # the cause is looked at first
            if linked is not None:
                waiting.append(linked)


def _passed_through(error: BaseException, code: CodeType) -> bool:
    """Whether `error`'s traceback has a frame running `code`."""
    trace = error.__traceback__
    for _ in range(MAX_TRACEBACK):
        if trace is None:
            return False
        if trace.tb_frame.f_code is code:
            return True
        trace = trace.tb_next
    return False


def _stage_totals(stages: list[tuple[str, float]]) -> dict[str, float]:
    """Seconds spent in each stage: a stage run twice in one request (a retry, two model
    calls as its inference) spent the time of both, not only that of the last."""
    totals: dict[str, float] = {}
    for name, seconds in stages:
        totals[name] = totals.get(name, 0.0) + seconds
    return totals


# The log cuts a message to its own bound when it writes it; this only keeps a message of
# megabytes (an array quoted whole) from waiting in memory for the drain.
MESSAGE_CHARS_KEPT = 4096


class _UnreadableMessage:
    """Stands for a message whose ``str()`` raised: the log stores its marker and counts it
    as ``conversion_error``, as for an event emitted by hand with such an exception."""

    def __str__(self) -> str:
        raise ValueError("the exception's message could not be read")


UNREADABLE_MESSAGE = _UnreadableMessage()


def error_message_for(events: object, error: BaseException) -> object:
    """The message of `error` for the event log `events`: None unless that log stores
    messages (``EventLog(error_messages=True)``). Read when the call fails, so the record
    keeps text, not the exception and the frames of its traceback.

    >>> from types import SimpleNamespace
    >>> error_message_for(SimpleNamespace(keeps_error_messages=True), ValueError("bad row"))
    'bad row'
    >>> error_message_for(SimpleNamespace(), ValueError("bad row")) is None
    True
    """
    try:
        if getattr(events, "keeps_error_messages", False) is not True:
            return None
    except Exception:  # a log of the user's own whose attributes raise stores no message
        return None
    try:
        return str(error)[:MESSAGE_CHARS_KEPT]
    except Exception:  # the model's own __str__: it must not cost the call or the event
        return UNREADABLE_MESSAGE
