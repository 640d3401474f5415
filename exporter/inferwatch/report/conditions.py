"""Alert conditions over windows of the drain's ring, and over a model's versions: which
window the ring can read (:class:`Windows`), which versions served calls lately
(InferwatchTooManyVersionsServing, and InferwatchModelStale's gate), and the conditions
on counts the ring keeps no samples of (InferwatchInputSchemaErrors,
InferwatchStreamFirstItemSlow), judged exactly while their window runs from the state's
start and, past it, only where the totals since then already decide.

>>> from inferwatch.core.state import ModelState
>>> state = ModelState("fraud", "1", loaded_at=0.0)
>>> state.inc("inferwatch_requests_total", ("ok",), 3)
>>> Peer.of(state)
Peer(key=('fraud', '1'), requests=3.0, loaded_at=0.0, shadow=False)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inferwatch.core.history import INPUT_ERRORS
from inferwatch.generate.rules_alerts import SCHEMA_ERRORS
from inferwatch.report.flags import (
    FIRING,
    NO_DATA,
    OK,
    Thresholds,
    _flag,
    _number,
    _pct,
    _rate_ratio,
    _span,
    _windowed,
)
from inferwatch.report.model import Flag

if TYPE_CHECKING:
    from inferwatch.core.history import History, Sample
    from inferwatch.core.state import ModelState


@dataclass(frozen=True)
class Peer:
    """One version of a model as InferwatchTooManyVersionsServing counts it: its calls so
    far, when it began counting them, and whether it is a shadow (the rule leaves those out).
    """

    key: tuple[str, str]
    requests: float
    loaded_at: float
    shadow: bool

    @classmethod
    def of(cls, state: ModelState) -> Peer:
        """The peer `state` stands for; cheap enough to read under its monitor's lock."""
        calls = float(sum(state.counters.get("inferwatch_requests_total", {}).values()))
        return cls(state.key, calls, state.loaded_at, state.info.get("role") == "shadow")


class Windows:
    """The ring's samples at the start of each window of one state, and whether the window
    is known: read against a sample from its start, or starting before the state began
    counting (its counts are all in the window). Otherwise the totals since the start
    would stand for the window, and show a spike long over as holding now."""

    def __init__(self, state: ModelState, history: History | None, now: float,
                 start: float) -> None:
        self.state, self.history, self.now, self.start = state, history, now, start

    def base(self, seconds: float, *, features: bool = False) -> tuple[Sample | None, bool]:
        if self.history is None:
            return None, True  # a snapshot's report: every window runs from the start
        found = self.history.before(self.state.key, self.now - seconds, features=features)
        return found, found is not None or self.now - seconds <= self.start

    def reach(self, *, features: bool = False) -> float:
        """Seconds back the ring's samples of the state reach (with feature counts)."""
        samples = self.history.samples(self.state.key) if self.history is not None else []
        held = [s.at for s in samples if not features or s.features is not None]
        return max(0.0, self.now - held[0]) if held else 0.0

    def unreached(self, alert: str, threshold: float, seconds: float, *,
                  features: bool = False) -> Flag:
        what = "per-feature counts" if features else "totals"
        held = self.reach(features=features)
        # To the minute: samples come every 10 seconds, and 4210s says less than 70m.
        held = round(held / 60) * 60 if held >= 120 else held
        return Flag(alert, NO_DATA, math.nan, threshold,
                    f"needs the last {_span(seconds)}; this process's ring holds {what} of "
                    f"the last {_span(held)}: see Prometheus")




def first_item(histogram: Any, windows: Windows, t: Thresholds, rate_known: bool) -> Flag:
    """InferwatchStreamFirstItemSlow: p99 time to first item over windows.rate, from the
    ring's first-item buckets at the window's start (none there: the model had not streamed
    yet, so every count is in the window)."""
    from inferwatch.report.live import histogram_quantile
    alert, limit = "InferwatchStreamFirstItemSlow", t.first_item_p99_seconds
    if not rate_known:
        return windows.unreached(alert, limit, t.rate_window_seconds)
    base, _ = windows.base(t.rate_window_seconds)
    counts = histogram.counts.astype(float)
    before = None if base is None else base.first_item
    if before is not None and before.shape == counts.shape:
        counts = counts - before
    p99 = histogram_quantile(0.99, histogram.bounds.tolist(), counts.tolist())
    return _flag(alert, p99, limit, above=True,
                 detail=f"p99 time to first item {_number(p99, 's')} over "
                        f"{_span(t.rate_window_seconds)}, threshold {limit:g}s")


def schema_errors(state: ModelState, windows: Windows, t: Thresholds,
                   totals: dict[str, float], rate_known: bool) -> Flag:
    """InferwatchInputSchemaErrors: input errors of each schema reason per call over
    windows.rate, the worst reason against data_quality.schema_error_ratio. A reason the
    window's first sample has no count of had none then: its count is all in the window."""
    alert, limit = "InferwatchInputSchemaErrors", t.schema_error_ratio
    base, _ = windows.base(t.rate_window_seconds)
    if not rate_known:
        return windows.unreached(alert, limit, t.rate_window_seconds)
    calls = _windowed(state, base, "requests", totals)
    errors = state.counters.get(INPUT_ERRORS, {})
    worst, name = math.nan, ""
    for reason in SCHEMA_ERRORS:
        count = float(errors.get((reason,), 0.0))
        before = base.totals.get(f"{INPUT_ERRORS}|{reason}", 0.0) if base is not None else 0.0
        ratio = _rate_ratio(count - before, calls)
        if not math.isnan(ratio) and (math.isnan(worst) or ratio > worst):
            worst, name = ratio, reason
    window = _span(t.rate_window_seconds)
    shown = f"worst reason {name!r}: {_pct(worst)} per call" if name else "no calls"
    return _flag(alert, worst, limit, above=True,
                 detail=f"{shown} over {window} ({', '.join(SCHEMA_ERRORS)}), "
                        f"threshold {_pct(limit)}")


class Peers(list):
    """A model's versions (:class:`Peer`), with whether each served calls lately worked out
    once per time however many of its versions' rows read it: an index reads every
    version's ring once per version of the model otherwise."""

    def __init__(self, peers: Sequence[Peer] = ()) -> None:
        super().__init__(peers)
        self._served: dict[tuple, bool | None] = {}

    def served(self, windows: Windows, seconds: float) -> dict[tuple[str, str], bool | None]:
        """:func:`served` of each peer: by key, over the last `seconds`."""
        from inferwatch.core.history import History

        # Only the ring itself is shared by every row: a view of it (a version whose counts
        # restarted) reads that version's samples its own way.
        shared = type(windows.history) is History
        found = {}
        for peer in self:
            memo = (peer, seconds, windows.now, id(windows.history))
            if shared and memo in self._served:
                found[peer.key] = self._served[memo]
                continue
            found[peer.key] = served(peer, windows, seconds)
            if shared:
                self._served[memo] = found[peer.key]
        return found


def served(peer: Peer, windows: Windows, seconds: float) -> bool | None:
    """Whether `peer`'s calls rose within the last `seconds` (None: the ring cannot say)."""
    history, now = windows.history, windows.now
    if peer.requests <= 0:
        return False
    if math.isfinite(peer.loaded_at) and now - seconds <= peer.loaded_at:
        return True  # every call it counted is in the window
    if history is None:
        return True  # a snapshot's report: every window runs from the start
    base = history.before(peer.key, now - seconds)
    if base is not None and base.totals["requests"] <= peer.requests:
        return peer.requests > base.totals["requests"]
    samples = history.samples(peer.key)
    if samples and samples[0].at >= now - seconds and \
            samples[0].totals["requests"] < peer.requests:
        return True  # rose since a sample taken within the window
    return None


def versions_serving(peers: Sequence[Peer], served: dict[tuple[str, str], bool | None],
                      t: Thresholds) -> Flag:
    """InferwatchTooManyVersionsServing: the model's versions, shadows left out, whose calls
    rose within windows.versions_serving, against predictions.max_versions."""
    primary = [peer.key for peer in peers if not peer.shadow]
    sure = sum(1 for key in primary if served.get(key))
    unknown = sum(1 for key in primary if served.get(key) is None)
    window = _span(t.versions_serving_seconds)
    detail = (f"{sure} versions served calls in the last {window}"
              + (f" ({unknown} more may have: the ring does not reach back that far)"
                 if unknown else "")
              + f", shadow models not counted; at most {t.max_versions} expected")
    if sure > t.max_versions:
        return Flag("InferwatchTooManyVersionsServing", FIRING, float(sure), t.max_versions,
                    detail)
    if sure + unknown > t.max_versions:
        return Flag("InferwatchTooManyVersionsServing", NO_DATA, math.nan, t.max_versions,
                    detail)
    return Flag("InferwatchTooManyVersionsServing", OK, float(sure), t.max_versions, detail)
