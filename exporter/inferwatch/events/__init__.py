"""The structured per-prediction event log: one JSON record per prediction, off the request path.

>>> import tempfile, pathlib
>>> log = EventLog(pathlib.Path(tempfile.mkdtemp()) / "events.jsonl")
>>> log.emit({"model": "fraud", "request_id": "r-1", "probabilities": [0.1, 0.9]})
>>> log.close()

See docs/events.md for the event schema, sampling, redaction, rotation and reading back.
"""

from __future__ import annotations

from inferwatch.events.dropped import REASONS, DroppedEventsCollector, dropped_totals
from inferwatch.events.log import EventLog
from inferwatch.events.redact import hash_value

__all__ = ["REASONS", "DroppedEventsCollector", "EventLog", "dropped_totals", "hash_value"]
