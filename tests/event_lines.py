"""The line an event log writes for one event, under given redaction rules: what the
redaction tests read, without a log on disk."""

from __future__ import annotations

import json

from inferwatch.events.redact import Redaction
from inferwatch.events.sinks import Encoder

SECRET = "s" * 32


def written_line(event: dict, *, redact: list[str] = (), hash_fields: list[str] = ()) -> str:
    """The line a log with these options writes for `event`."""
    policy = Redaction(drop=redact, hash_fields=hash_fields, secret=SECRET)
    return Encoder(policy).encode(event, now=1.0).line.decode()


def stored_event(event: dict, **rules: object) -> dict:
    """`event` as the log stores it under `rules` (redact=, hash_fields=)."""
    return json.loads(written_line(event, **rules))
