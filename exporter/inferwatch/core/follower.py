"""Which results of an instrumented call are followed, and how: the :class:`Follower`.

The wrappers in ``call_wrappers.py`` hand the follower each result whose class they have
not yet seen to be a plain prediction. It works out, once per class, what kind of result
that is (a generator, an async generator, another iterator object, text, a generation
pipeline's list of texts, or a prediction), and once per settings object what the
model's settings ask of its results (its
:class:`Plan`: interval buckets, token counting, usage, kept text), and answers
:data:`UNFOLLOWED` for a prediction, or what the caller gets instead: a generator that
follows the stream (``streams.py``), a proxy of an iterator object (``stream_objects.py``),
or the result itself, recorded as one text or response.

Apart from ``streams.py`` because telling which results are streams, on every call, is
one job, and following a stream to its end is another.

>>> _kind(str), _kind(list), _kind(type(iter([])))
('text', 'plain', 'iterator')
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Generator, Iterator, Mapping
from types import AsyncGeneratorType, GeneratorType
from typing import TYPE_CHECKING, NamedTuple, SupportsIndex

from inferwatch import faults
from inferwatch.core.records import generated_texts
from inferwatch.core.stream_records import CANCELLED, OK, usage_tokens
from inferwatch.core.streams import Tracker, follow_async, follow_sync
from inferwatch.core.streams import _ref as _weak_ref
from inferwatch.core.streams import _unwatch as _leave_open_streams
from inferwatch.core.streams import _watch as _join_open_streams

if TYPE_CHECKING:
    from inferwatch.core.monitor import Monitor
    from inferwatch.core.options import Settings
    from inferwatch.core.request_record import RequestRecord

_NOT_LEAN = object()
# What a wrapper hands back when the result is an ordinary prediction.
UNFOLLOWED = object()
# Result classes a wrapper has seen to be plain predictions; beyond this many it stops
# remembering new ones (they still work, through the slower check).
MAX_PLAIN_CLASSES = 256
_FAULT = "stream"
# A list's kinds beyond _kind's: a generation pipeline's texts, or a list that does not tell
# (an empty one), judged again on the next call.
_GENERATED, _UNDECIDED = "generated text", "undecided"


def _kind(cls: type) -> str:
    """How a result class is followed: 'generator' and 'async generator' (by a generator of
    ours), 'iterator' and 'async iterator' (any other iterator object: by a proxy), 'text'
    (str), or 'plain' (a prediction; a file, whose lines are no model's items)."""
    if issubclass(cls, (str, bytes, bytearray, memoryview, io.IOBase)):
        return "text" if issubclass(cls, str) else "plain"
    if cls is GeneratorType:
        return "generator"
    if cls is AsyncGeneratorType:
        return "async generator"
    if hasattr(cls, "__next__") and hasattr(cls, "__iter__"):
        return "iterator"
    if hasattr(cls, "__anext__") and hasattr(cls, "__aiter__"):
        return "async iterator"
    return "plain"


class Plan(NamedTuple):
    """What a model's settings say about its results, worked out once per settings object."""

    bounds: tuple[float, ...]
    count_tokens: Callable[[object], int] | None
    usage: Callable[[object], tuple | None] | None
    generative: bool
    text_is_label: bool
    keep_chars: int


def _plan(settings: Settings) -> Plan:
    usage = usage_tokens if settings.usage is True else (settings.usage or None)
    return Plan(settings.stream_interval_buckets, settings.count_tokens, usage,
                settings.count_tokens is not None or usage is not None,
                _text_is_label(settings), settings.event_text_chars)


def _text_is_label(settings: Settings) -> bool:
    """A lone ``str`` result is a class label when the model says it classifies: by
    ``task="classification"``, or under task auto by declaring its ``classes=``."""
    return settings.task == "classification" or (
        settings.task == "auto" and settings.classes is not None)


def _is_array_subclass(cls: type) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and cls is not numpy.ndarray and issubclass(cls, numpy.ndarray)


class Follower:
    """Turns the results of one instrumented callable into streams and text records.

    The wrappers in ``call_wrappers.py`` check ``result.__class__ in follower.plain`` (one set
    lookup) and call the follower only for other classes. It answers :data:`UNFOLLOWED`
    for an ordinary prediction, which the wrapper then records as usual.
    """

    __slots__ = ("__weakref__", "class_texts", "input_position", "kinds", "lean_settings",
                 "monitor", "plain", "plan", "proxies", "settings")

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.input_position = 0  # of the text input, among the call's positional arguments
        self.plain: set[type] = set()
        self.kinds: dict[type, str] = {}
        # Text results found among the model's classes (its labels), by _names_a_class.
        self.class_texts: set[str] = set()
        self.proxies = _proxy_classes()
        self._use(monitor.settings)
        # The monitor empties `plain` when configure() changes its settings.
        follow_settings = getattr(monitor, "follow_settings", None)
        if follow_settings is not None:
            follow_settings(self)

    def _use(self, settings: Settings) -> None:
        # `settings` is stored last: a call that planned for settings a second configure()
        # has replaced since stores its stale plan under stale settings, which the next
        # call sees and plans anew, never under the newest ones, where it would stay.
        self.plan = _plan(settings)
        # A generator function's wrapper takes its one-generator path while this is the
        # monitor's `fast_settings`: streams need only counts (no token counting, no usage
        # read along the way: Anthropic's events carry it before the last one), the monitor
        # is on its fast path, and nothing has been reconfigured since.
        plan = self.plan
        self.lean_settings = settings if plan.count_tokens is None and \
            plan.usage is not usage_tokens else _NOT_LEAN
        self.settings = settings

    def __call__(self, result: object, start: float, args: tuple,
                 record: RequestRecord | None = None, slow: bool = False,
                 kwargs: Mapping[str, object] | None = None) -> object:
        """Follow `result` of a call that began at `start` (perf_counter seconds).

        On the slow path (`slow`), `record` is the call's own request record, or None when
        the call joined an open ``mon.request()``. `kwargs` are the call's keyword
        arguments, where its text input may be. Never raises into the caller.
        """
        tracker = None
        try:
            cls = result.__class__
            monitor = self.monitor
            if monitor.settings is not self.settings:  # configure() replaced them
                self._use(monitor.settings)
            plan, planned_for = self.plan, self.settings
            # The common stream first, with nothing to work out: its time to first item
            # is what this path adds.
            if cls is GeneratorType and not slow and plan.count_tokens is None:
                return _open_sync(result, None, monitor, plan, start)
            kind = self.kinds.get(cls)
            if kind is None:
                kind = _kind(cls)
                if cls is list:
                    kind = _list_kind(result)
                if kind != _UNDECIDED and len(self.kinds) < MAX_PLAIN_CLASSES:
                    self.kinds[cls] = kind
            if kind == _GENERATED:
                texts = generated_texts(result) if result else []
                if texts is not None:
                    tracker = self._tracker(start, args, kwargs, record, slow)
                    _record_texts(tracker, texts, result)
                    return result
                kind = _UNDECIDED  # this call's list is no text: a prediction
            if kind == "plain" or kind == _UNDECIDED or (kind == "text" and
                                                         plan.text_is_label):
                if not plan.generative:
                    # An ndarray subclass stays out of `plain`: the wrappers copy it on
                    # their way past this follower, as they copy an ndarray on theirs.
                    # A list stays out until one is seen to be no generated text.
                    if kind != _UNDECIDED and len(self.plain) < MAX_PLAIN_CLASSES and \
                            not _is_array_subclass(cls):
                        self.plain.add(cls)
                        # Settings replaced while this call planned: the monitor's clear
                        # may have run before the add, so the class is not kept as plain.
                        if monitor.settings is not planned_for:
                            self.plain.discard(cls)
                    return UNFOLLOWED
                if kind == "text":
                    return UNFOLLOWED
            if kind == "text" and not plan.generative and self._names_a_class(result):
                return UNFOLLOWED  # the label of a model that names its classes
            # A generator's wrapper stands for it in the open streams, its tracker with it.
            tracker = self._tracker(start, args, kwargs, record, slow, kind != "generator")
            return _follow(result, kind, tracker, self.proxies)
        except Exception as exc:
            faults.record(_FAULT, exc)
            if tracker is not None:
                tracker.done = True  # the wrapper records the call itself, once
            return UNFOLLOWED

    def _names_a_class(self, text: str) -> bool:
        """Whether `text` is one of the classes the model names (scikit-learn's
        ``classes_``, a Hugging Face config's ``id2label``): a label, though task auto and
        no ``classes=`` make other text results generated text. The texts found are
        remembered (a classifier answers with the same few); others are looked up again."""
        if text in self.class_texts:
            return True
        for name in self.monitor.class_names() or ():
            if isinstance(name, str) and name == text:
                if len(self.class_texts) < MAX_PLAIN_CLASSES:
                    self.class_texts.add(str(text))
                return True
        return False

    def _tracker(self, start: float, args: tuple, kwargs: Mapping[str, object] | None,
                 record: RequestRecord | None, slow: bool, watched: bool = True) -> Tracker:
        """A tracker for this call, with its input's tokens counted when the model asks;
        kept in the open streams unless `watched` is False."""
        plan = self.plan
        tracker = Tracker(self.monitor, plan, start, watched)
        if slow:
            tracker.on_slow_path(record)
        if plan.count_tokens is not None:
            text = _text_input(args, self.input_position, kwargs)
            if isinstance(text, str):
                tracker.input_tokens = tracker.tokens_of(text)
            elif isinstance(text, list) and text and all(isinstance(t, str) for t in text):
                # A batch of prompts (a pipeline's list of texts): their tokens together.
                counts = [tracker.tokens_of(t) for t in text]
                if None not in counts:
                    tracker.input_tokens = sum(counts)  # type: ignore[arg-type]
        return tracker


# Keywords that name a call's text input in LLM clients and pipelines, and ones that never
# do although they come first: ollama's generate(model=..., prompt=...), an OpenAI-compatible
# create(model=..., messages=...). The model's name counted as the prompt's tokens.
TEXT_KEYWORDS = ("prompt", "messages", "input", "inputs", "text", "text_inputs", "query",
                 "question", "content")
NOT_TEXT_KEYWORDS = frozenset({"model", "model_name", "model_id", "engine", "deployment",
                               "deployment_id"})


def _text_input(args: tuple, position: int, kwargs: Mapping[str, object] | None) -> object:
    """A call's text input: its positional argument at `position`, else the keyword that
    names one (:data:`TEXT_KEYWORDS`), else its first keyword argument that names no model
    (``gen(p="...")``).

    >>> _text_input(("hi",), 0, None), _text_input((), 0, {"prompt": "hi", "n": 2})
    ('hi', 'hi')
    >>> _text_input((), 0, {"model": "llama3.1", "prompt": "why?", "stream": True})
    'why?'
    """
    if len(args) > position:
        return args[position]
    if not kwargs:
        return None
    for name in TEXT_KEYWORDS:
        if name in kwargs:
            return kwargs[name]
    return next((value for name, value in kwargs.items() if name not in NOT_TEXT_KEYWORDS),
                None)


def _list_kind(result: list) -> str:
    """How a list result is followed: as text when it is a Hugging Face generation
    pipeline's answer (``[{"generated_text": ...}]``), as a prediction when it is anything
    else, or (an empty list) not known yet."""
    if not result:
        return _UNDECIDED
    return _GENERATED if generated_texts(result) is not None else "plain"


def _record_texts(tracker: Tracker, texts: list[str], result: object) -> None:
    """A call that returned generated texts, recorded as one that returned text: their
    length together and each one's tokens (``count_tokens=``), never as a prediction."""
    for text in texts:
        tracker.on_item(text)
    tracker.end(OK, None, None, None, None, 0.0, sum(map(str.__len__, texts)), result)


def _follow(result: object, kind: str, tracker: Tracker, proxies: tuple[type, type]) -> object:
    """What the caller gets for a result of `kind` that is not an ordinary prediction;
    `proxies` are the sync and async proxies of iterator objects."""
    if kind == "generator":
        return _open_sync(result, tracker, tracker.monitor, tracker.plan,  # type: ignore[arg-type]
                          tracker.start)
    if kind == "async generator":
        return follow_async(result, tracker)  # type: ignore[arg-type]
    if kind == "iterator" or kind == "async iterator":
        sync_proxy, async_proxy = proxies
        return (sync_proxy if kind == "iterator" else async_proxy)(result, tracker)
    tracker.single(result)
    return result


def _proxy_classes() -> tuple[type, type]:
    """The proxies of iterator objects, sync and async. Their module builds on this one, so
    it is imported here, once this one is loaded: when a model is instrumented, not within
    a call's time to first item."""
    from inferwatch.core.stream_objects import AsyncStreamProxy, StreamProxy

    return StreamProxy, AsyncStreamProxy


def _open_sync(stream: Iterator, tracker: Tracker | None, monitor: Monitor, plan: Plan,
               start: float) -> Iterator:
    """The caller's wrapper for a generator, not started, as the generator is not: a
    ``send(value)`` before the first item raises the generator's own TypeError and leaves
    both usable. A wrapper collected unstarted never runs its frame; its tracker (made now
    when the stream needs none before it ends) ends the stream then, as cancelled, and a
    ``close()`` or ``throw()`` before the first item ends it at once
    (:class:`FollowedGenerator`). The wrapper, not its tracker, is kept in the open streams:
    started, it holds the stream's figures, and one still open at exit is closed then, or
    its tracker ended if it never started (``streams.end_open_streams``).
    """
    if tracker is None:
        tracker = Tracker(monitor, plan, start, False)  # positional: a keyword costs a dict
    wrapper = follow_sync(stream, None, tracker, monitor, plan, start)
    _join_open_streams(_weak_ref(wrapper, _leave_open_streams))  # two calls of C code
    return FollowedGenerator(wrapper, tracker)


class FollowedGenerator:
    """The generator that follows a stream (:func:`follow_sync`, unstarted), as its caller
    holds it: a ``close()`` or ``throw()`` before the first item ends the stream then, as
    cancelled. The generator alone could not from Python 3.12, where closing one that never
    started runs none of its code and keeps its frame, which holds the tracker, until it is
    freed: the stream would stay in flight, its duration running on, for as long as the
    caller kept it (a response object that holds its body).

    It passes for that generator: its ``__class__`` (``isinstance``, ``inspect``), its
    ``gi_*`` attributes and ``repr()`` are the generator's, and ``next()``, ``send()``,
    ``throw()`` and ``close()`` step it. ``iter()`` is the generator itself, so that a loop
    steps it with no call of this object per item; the loop's first step starts it, and a
    started generator's close() ends its stream on every version.
    """

    __slots__ = ("__weakref__", "tracker", "wrapper")

    def __init__(self, wrapper: Generator, tracker: Tracker) -> None:
        self.wrapper = wrapper
        self.tracker = tracker

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # type: ignore[override]
        return GeneratorType

    def __iter__(self) -> Generator:
        return self.wrapper

    def __next__(self) -> object:
        return next(self.wrapper)

    @property
    def send(self) -> Callable[[object], object]:
        # The generator's own: a send(value) before the first item raises from it, with no
        # frame of this object in the traceback, which would keep the stream open as long as
        # the caller keeps the error, though it let go of the stream.
        return self.wrapper.send

    def throw(self, *args: object) -> object:
        try:
            return self.wrapper.throw(*args)  # type: ignore[arg-type]
        finally:
            self._end_if_never_started()

    def close(self) -> None:
        self.wrapper.close()
        self._end_if_never_started()

    def _end_if_never_started(self) -> None:
        # Started, the wrapper owns its tracker and has ended the stream itself. One that
        # another thread is starting at this moment still has its frame, and ends itself.
        tracker = self.tracker
        if not tracker.owned and self.wrapper.gi_frame is None:
            tracker.end(CANCELLED, None, None, 0, None, 0.0, None)

    def __getattr__(self, name: str) -> object:
        if name in FollowedGenerator.__slots__:  # not set: no generator to ask
            raise AttributeError(name)
        return getattr(self.wrapper, name)

    def __repr__(self) -> str:
        return repr(self.wrapper)

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple:
        return self.wrapper.__reduce_ex__(protocol)  # a generator's TypeError: no pickling
