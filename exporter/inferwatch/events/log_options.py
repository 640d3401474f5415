"""The checks of an event log's options that are more than a comparison: the sink's path,
positive integer sizes, the sample rate, what counts as a flag, and the message for an event
bound too small to hold an event.

Apart from the log because they run when a log is made (the sample rate also when it is
changed), and name the option at fault; the log's module is its queue and its writer
thread.
"""

from __future__ import annotations

import numbers
import os
import sys

# The smallest event bound accepted: room for a timestamp, a model, a version and a request
# id of ordinary length, with the JSON around them.
MIN_EVENT_BYTES = 256


def too_small_message(option: str, max_bytes: int, rotate_bytes: int,
                      max_event_bytes: int) -> str:
    """Why the event bound is too small, naming `option`, the one it comes from."""
    if option == "max_bytes":
        return (f"max_bytes: {max_bytes} bytes leaves {max_event_bytes} bytes per event (a "
                f"file is a tenth of max_bytes); use at least {MIN_EVENT_BYTES * 10} bytes, "
                f"or give rotate_bytes and max_event_bytes of at least {MIN_EVENT_BYTES}")
    if option == "rotate_bytes":
        return (f"rotate_bytes: {rotate_bytes} bytes leaves {max_event_bytes} bytes per "
                f"event; use at least {MIN_EVENT_BYTES}")
    return f"max_event_bytes: {max_event_bytes} is too small for an event; use at least " \
        f"{MIN_EVENT_BYTES}"


def positive(**values: int) -> tuple[int, ...]:
    """The values as plain ints (a numpy integer from a computed size is one too)."""
    out = []
    for name, value in values.items():
        # A flag is an int to Python: `max_bytes=True` would become a 1-byte bound.
        if isinstance(value, (bool, numpy_bool_types())) or \
                not isinstance(value, numbers.Integral) or value <= 0:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        out.append(int(value))
    return tuple(out)


def checked_sample_rate(rate: object) -> float:
    """`rate` as a float from 0 to 1, or a configuration error naming ``sample_rate``.

    A rate read from an environment variable or YAML may still be text: comparing it would
    raise a bare TypeError that names no option. A numpy number is a number; a flag is not.
    """
    if isinstance(rate, (bool, numpy_bool_types())) or \
            not isinstance(rate, numbers.Real) or not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"sample_rate: expected a number from 0 to 1, got {rate!r}")
    return float(rate)


def numpy_bool_types() -> tuple[type, ...]:
    """numpy's bool type when numpy is loaded: a flag, not a number, as bool is."""
    numpy = sys.modules.get("numpy")
    return (numpy.bool_,) if numpy is not None else ()


def sink_path(sink: object) -> str | os.PathLike:
    """`sink` as a path, or a configuration error naming the option.

    An empty path would be the current directory: a log configured from an unset
    environment variable would be written wherever the server was started.
    """
    if isinstance(sink, (bytes, bytearray)):
        sink = os.fsdecode(bytes(sink))
    if not isinstance(sink, (str, os.PathLike)):
        raise ValueError(f"sink: expected a file or directory path, got {sink!r}")
    text = os.fspath(sink)
    if isinstance(text, bytes):
        sink = text = os.fsdecode(text)
    if not text:
        raise ValueError("sink: the path is empty; give the log's file or directory")
    return sink
