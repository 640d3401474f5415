"""Which drift reference a merged model scores against when snapshots hold several.

A reference re-profiled and loaded again (a redeploy, ``configure(reference=...)``) bins
rows by other edges, so the drift windows of two references never add. That is normal
operation, not a fault: per model version, the snapshots' windows are grouped by
reference (``merge_plan.drift_groups``: equal reference documents, as each snapshot
carries its reference whole, and alike window settings), one group is merged and
scored, and the others are left out. A snapshot whose left-out window holds rows inside
the view's window is counted once per scrape as
``inferwatch_multiproc_files_skipped_total{reason="other_reference"}``; its counters
(requests, missing values, out of range...) still sum.

The group merged is, in order of what decides:

1. the one holding most rows in the windows of live processes;
2. the one most live processes hold;
3. the one holding most rows in the windows of exited workers (the archive's);
4. the one met first in the scrape's order.

So neither the archive of exited workers nor an idle preloaded master ever outranks live
workers that score rows, and a worker restarted with a new reference takes over once it
holds more of the window's rows than those still scoring against the old one.

A fold meets the same choice between the archive's drift state and a dead worker's
(:func:`settle_drift`): the dead worker's, which is the newer, is kept unless its window
is empty and the archive's is not.

>>> rows_in_window([(10, 3), (11, 4), (5, 100)], 60.0, 6, now=11 * 10.0)  # 5: aged out
7
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inferwatch.multiproc.merge_plan import DriftGroups, MergePlan
    from inferwatch.multiproc.snapshot_format import RawSnapshot
    from inferwatch.multiproc.snapshot_layout import ModelLayout

OTHER_REFERENCE = "other_reference"  # the reason a left-out drift window is counted under

ModelKey = tuple[str, str]


def chosen_references(raws: Sequence[RawSnapshot], groups: DriftGroups, now: float,
                      exited: Container[int]) -> dict[ModelKey, int]:
    """The drift group (``merge_plan.drift_groups``) merged for each contested model
    version, by the order of the module's docstring; `exited` holds the ``id()`` of the
    archive and exited workers' snapshots."""
    # (model, group) -> [-live rows, -live holders, -exited rows, first met]: least wins.
    ranks: dict[tuple[ModelKey, int], list[int]] = {}
    for raw in raws:
        live = id(raw) not in exited
        layout = raw.layout
        for index, model in enumerate(layout.models):  # type: ignore[union-attr]
            if model.drift is None or model.key not in groups.contested:
                continue
            group = groups.group[(layout.serial, index)]  # type: ignore[union-attr]
            rank = ranks.setdefault((model.key, group), [0, 0, 0, len(ranks)])
            rows = drift_rows(raw, model, now)
            if live:
                rank[0] -= rows
                rank[1] -= 1
            else:
                rank[2] -= rows
    best: dict[ModelKey, tuple[list[int], int]] = {}
    for (key, group), rank in ranks.items():
        if key not in best or rank < best[key][0]:
            best[key] = (rank, group)
    return {key: group for key, (_, group) in best.items()}


def left_out(plan: MergePlan, raws: Iterable[RawSnapshot], now: float) -> int:
    """Snapshots whose drift windows the plan leaves out for another reference while
    they hold rows inside the window at `now` (each model of a snapshot counts once)."""
    count = 0
    for raw in raws:
        layout = raw.layout
        for index in plan.maps[layout.serial].other_reference:  # type: ignore[union-attr]
            if drift_rows(raw, layout.models[index], now):  # type: ignore[union-attr]
                count += 1
    return count


def drift_rows(raw: RawSnapshot, model: ModelLayout, now: float) -> int:
    """Rows in `model`'s drift window of `raw` at `now`, as ``DriftState.rows`` counts
    them: those of the features window, or of the outputs one where that holds none."""
    rows = 0
    for window in model.drift.windows:  # type: ignore[union-attr]
        for at, ids, row_at, _ in raw.drift_shape:
            if at == window.at:
                rows = rows_in_window(zip(ids, raw.drift_rows[row_at:row_at + len(ids)]),
                                      window.max_age_seconds, window.age_buckets, now)
                break
        if rows:
            return rows
    return rows


def rows_in_window(buckets: Iterable[tuple[int, int]], max_age_seconds: float,
                   age_buckets: int, now: float) -> int:
    """Rows of the (bucket id, rows) `buckets` inside the window at `now`, by the
    arithmetic of ``DriftWindow.bucket_id``; 0 for a `now` no bucket id can hold."""
    try:
        current = math.floor(now / (float(max_age_seconds) / age_buckets))
    except (ValueError, OverflowError):
        return 0
    return sum(rows for bucket, rows in buckets if current - age_buckets < bucket <= current)


def settle_drift(archived: Any, folded: Any, now: float) -> int:
    """Of the drift states (``DriftState``) of the archive's `archived` model state and a
    dead worker's `folded` one that do not add (another reference, or other window
    settings), keep one in `archived` and drop the other's from `folded`; the rows in the
    window at `now` dropped (0 as well where they add, and nothing changes).

    The dead worker's state is the newer: kept, unless its window is empty at `now` and
    the archive's is not (a worker restarted with a new reference that served nothing).
    """
    mine, theirs = archived.extras.get("drift"), folded.extras.get("drift")
    try:
        if mine is None or theirs is None or _alike(mine, theirs):
            return 0
        mine_rows, their_rows = mine.rows(now), theirs.rows(now)
    except (ValueError, TypeError, AttributeError):
        return 0  # not drift states: merging them reports what is wrong, as a fault
    del folded.extras["drift"]
    if not their_rows and mine_rows:
        return their_rows
    archived.extras["drift"] = theirs
    return mine_rows


def _alike(archived: Any, folded: Any) -> bool:
    try:
        archived.check_mergeable(folded)  # bins, and the windows' age buckets
    except ValueError:
        return False
    # Bins alike, edges perhaps not: a reference profiled again on other data.
    return archived.reference is folded.reference or archived.reference == folded.reference
