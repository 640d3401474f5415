"""What a worker's snapshot says of each model version besides its counts: when the process
that laid out its series started, and the label caps it counts under.

Both travel as the extra ``multiproc`` of a model state (``state.register_extra``), so a
snapshot of a release without it still reads (no extra: nothing known), the archive keeps
them through folds, and merging takes the largest of each: the newest start, and per
capped family the largest cap any worker counts under.

- ``since`` decides which histogram buckets a merge serves when workers disagree (a
  reference re-profiled, buckets reconfigured and the server reloaded): those of the
  process started last. A start, not a snapshot's ``written_at``: two live workers
  rewrite their files every second, and the newest write would flip between them.
- ``caps`` bounds each capped label across workers (``merged_caps``): a worker caps only
  what it saw itself, and recycled workers (``--max-requests``) would each add new values.

>>> meta = WorkerMeta(5.0, {"inferwatch_actions_total": 3})
>>> meta.merge(WorkerMeta(7.0, {"inferwatch_actions_total": 2, "inferwatch_errors_total": 4}))
>>> meta.since, sorted(meta.caps.items())
(7.0, [('inferwatch_actions_total', 3), ('inferwatch_errors_total', 4)])
>>> WorkerMeta.from_dict(meta.to_dict()).caps == meta.caps
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from inferwatch.core.state import register_extra

META = "multiproc"


class WorkerMeta:
    """The start of the process that laid the series out, and the caps they count under."""

    __slots__ = ("caps", "since")

    def __init__(self, since: float = -math.inf, caps: Mapping[str, int] | None = None) -> None:
        self.since = since
        self.caps = dict(caps or {})

    def merge(self, other: WorkerMeta) -> None:
        """The newest start; per family the largest cap (order-free: every reader agrees)."""
        if not isinstance(other, WorkerMeta):
            raise ValueError(f"cannot merge {type(other).__name__} into WorkerMeta")
        self.since = max(self.since, other.since)
        for metric, limit in other.caps.items():
            self.caps[metric] = max(self.caps.get(metric, 0), limit)

    def reset(self) -> None:
        """Nothing to reset in a forked child: the next publish writes its own."""

    def to_dict(self) -> dict[str, Any]:
        return {"since": self.since if math.isfinite(self.since) else None,
                "caps": dict(self.caps)}

    @classmethod
    def from_dict(cls, data: dict) -> WorkerMeta:
        """Read back :meth:`to_dict`; a malformed one is a ValueError (counted by the
        caller, as any extra that does not decode)."""
        if not isinstance(data, dict):
            raise ValueError("multiproc extra: expected an object")
        return cls(since_in(data), _caps_in(data.get("caps")))


def since_in(data: object) -> float:
    """The ``since`` of a :meth:`WorkerMeta.to_dict`-shaped `data`, -inf when unknown."""
    since = data.get("since") if isinstance(data, dict) else None
    if isinstance(since, (int, float)) and not isinstance(since, bool) and math.isfinite(since):
        return float(since)
    return -math.inf


def since_of_model(data: object) -> float:
    """The ``since`` a snapshot's state section holds for one model (-inf when none)."""
    extras = data.get("extras") if isinstance(data, dict) else None
    return since_in(extras.get(META)) if isinstance(extras, dict) else -math.inf


def meta_of(extras: Mapping[str, object]) -> WorkerMeta | None:
    found = extras.get(META)
    return found if isinstance(found, WorkerMeta) else None


def _caps_in(caps: object) -> dict[str, int]:
    if caps is None:
        return {}
    if not isinstance(caps, dict):
        raise ValueError("multiproc extra: caps must be an object")
    found = {}
    for metric, limit in caps.items():
        if type(limit) is not int or limit < 1:
            raise ValueError(f"multiproc extra: cap of {metric!r} must be a whole number >= 1")
        found[str(metric)] = limit
    return found


register_extra(META, WorkerMeta.from_dict)
