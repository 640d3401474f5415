"""What a stream's record holds, and how token counts are read.

A :class:`StreamRecord` is what one streamed, text or token-counted call hands the drain,
ended ``ok``, ``error`` or ``cancelled``. The token counts in it come from a result's
``usage`` (:func:`usage_tokens`), from the model's own ``usage=`` function
(:func:`read_usage`) or its ``count_tokens=`` (:func:`count`): a count that is there but
no count is a ``tokens`` fault, never a number.

Apart from ``streams.py``, which follows streams to their end, because more read these
records than follow streams: the drain folds them, a request record carries one, and the
web middleware's body clock (``stream_objects.py``) makes them, none of them with a
stream's bookkeeping.

>>> StreamRecord(0.25, items=3).event_fields()
{'outcome': 'ok', 'items': 3}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from inferwatch import faults

OK, ERROR, CANCELLED = "ok", "error", "cancelled"


@dataclass(slots=True)
class StreamRecord:
    """What one streamed (or text, or token-counted) call produced, for the drain.

    `items` is None for a single result (text, or a response read for its usage);
    `gaps` holds bucket counts of the time between items under `gap_bounds` (the
    ``stream_interval_buckets`` when the stream began; the last bucket is +Inf).
    `counts_call` is False when a request record already counts the call (a stream
    consumed inside ``mon.request()`` or a web request); `counts_error` is True for such a
    stream that failed once its request had ended, whose failure nothing else counts: the
    drain counts its class, and no call. `from_model` is True for what the model returned
    itself (a generator, an SDK's stream, text): only that makes a model of
    ``task="auto"`` a generation model, never the chunks of a web response's body, which
    may carry a classifier's scores.
    """

    duration: float
    outcome: str = OK
    error_type: type | None = None
    first_item: float | None = None
    items: int | None = None
    gaps: list[int] | None = None
    gap_sum: float = 0.0
    chars: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    text: str | None = None
    counts_call: bool = True
    counts_error: bool = False
    gap_bounds: tuple[float, ...] | None = None
    from_model: bool = False

    def event_fields(self) -> dict[str, object]:
        """The event-log view: counts, never the items (the joined text only if kept)."""
        fields: dict[str, object] = {"outcome": self.outcome}
        for name in ("items", "first_item", "chars", "input_tokens", "output_tokens"):
            value = getattr(self, name)
            if value is not None:
                fields["first_item_seconds" if name == "first_item" else name] = value
        return fields


def usage_tokens(result: object) -> tuple[int | None, int | None] | None:
    """Input and output tokens from a result's ``usage``, as hosted LLM clients return them.

    Reads ``usage.prompt_tokens`` / ``usage.completion_tokens`` (OpenAI and compatible
    servers) or ``usage.input_tokens`` / ``usage.output_tokens`` (Anthropic), as attributes
    or mapping keys. None when the result carries no usage (a stream's other chunks).

    >>> usage_tokens({"usage": {"prompt_tokens": 12, "completion_tokens": 30}})
    (12, 30)
    >>> usage_tokens("no usage here") is None
    True
    """
    usage = result.get("usage") if isinstance(result, Mapping) else getattr(result, "usage", None)
    if usage is None:
        return None
    found = []
    for names in (("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens")):
        value = None
        for name in names:
            value = usage.get(name) if isinstance(usage, Mapping) else getattr(usage, name, None)
            if value is not None:
                break
        found.append(count(value))
    return None if found == [None, None] else (found[0], found[1])


def count(value: object) -> int | None:
    """A token count from user code: a non-negative int, or None when it is not one. One
    that is there but no count (a tokenizer's list of ids, a string, NaN, a negative
    number) is counted as a ``tokens`` fault: its tokens are lost, and that must show."""
    if value is None:
        return None
    number = None
    if not isinstance(value, bool):
        try:
            number = int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError, OverflowError):
            pass
    if number is None or number < 0 or number != value:
        faults.record("tokens", TypeError(
            f"a token count must be a non-negative int, got {value.__class__.__name__}"))
        return None
    return number


def read_usage(usage: Callable[[object], tuple | None], result: object) -> tuple | None:
    """`usage` of `result` as a pair, or None. A user's function that raises or answers
    anything but a pair (a bare count, a dict) is a fault of its own: the call it read
    still counts, without those tokens.

    >>> read_usage(lambda r: (3, 4), "x"), read_usage(lambda r: 7, "x")
    ((3, 4), None)
    """
    try:
        read = usage(result)
        if read is None:
            return None
        pair = None if isinstance(read, (str, bytes, Mapping)) else tuple(read)
        if pair is None or len(pair) != 2:
            raise TypeError(f"usage= returned {read.__class__.__name__}, "
                            "not a pair (input_tokens, output_tokens)")
        return pair
    except Exception as exc:
        faults.record("tokens", exc)
        return None


def tokens_only(stream: StreamRecord) -> StreamRecord | None:
    """A stream's tokens without its items, or None when it counted none."""
    if stream.input_tokens is None and stream.output_tokens is None:
        return None
    return StreamRecord(stream.duration, stream.outcome, stream.error_type,
                        input_tokens=stream.input_tokens, output_tokens=stream.output_tokens,
                        from_model=stream.from_model)
