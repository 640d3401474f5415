"""The part of a snapshot that every worker of a deployment shares: its layout.

Workers of one deployment publish the same series: the same models, label values,
histogram bounds, quantile settings and drift references. A snapshot's layout section
names them once, in order, and the numbers live in one float64 array whose positions the
layout fixes. A reader parses each distinct layout text once (``snapshot_format`` keeps
the last few), so reading a worker's file costs a checksum, a small JSON document and
array views, and workers with one layout merge by adding their arrays.

A snapshot's numbers, by position:

- **values** (float64): every model's *additive* values first, model by model: its
  counters, then each histogram's bucket counts and sum, then each summary's count and
  sum. Adding two snapshots' additive parts is merging those series. Then the sketch sum
  of each summary's window row.
- **table** (int64): a window row per summary (:data:`WINDOW_ROW` fields: the buckets of
  the window the writer saw, merged), then per drift window its bucket ids and row counts
  (``age_buckets`` each; unused slots hold id -1).

>>> from inferwatch.core.state import ModelState
>>> state = ModelState("fraud", "1"); state.inc("inferwatch_requests_total", ("ok",), 3)
>>> packed = pack_layout([state.to_dict()])
>>> layout = parse_layout(json.dumps(packed.layout).encode())
>>> layout.models[0].counters, packed.values[:layout.additive].tolist()
([('inferwatch_requests_total', ('ok',))], [3.0])
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferwatch import faults
from inferwatch.core.rolling_sketch import MAX_AGE_BUCKETS, RollingSketch
from inferwatch.core.state import HistogramState, SummarySettings

# A summary's window row: newest bucket id (-1: none), zero count, then the positive and
# negative bin runs as (first key, number of bins). An age bucket's row in the exact
# section has the same fields, its sketch sum after them.
WINDOW_ROW = 6
NEWEST, ZERO, POS_OFFSET, POS_N, NEG_OFFSET, NEG_N = range(WINDOW_ROW)
SKETCH_SUM = WINDOW_ROW
DRIFT_WINDOWS = ("features", "outputs")


@dataclass(frozen=True)
class DriftWindowLayout:
    """One drift window's shape: bins per column, and its age buckets."""

    bins: tuple[int, ...]
    max_age_seconds: float
    age_buckets: int
    at: int  # position of its bucket ids in the table; its row counts follow
    # Bins of one bucket: read per window of every file a scrape decodes, summed once.
    total: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", sum(self.bins))


@dataclass(frozen=True)
class DriftLayout:
    reference: Any  # the parsed reference document, one object per distinct text
    windows: tuple[DriftWindowLayout, DriftWindowLayout]  # features, outputs
    max_labels: int


@dataclass
class ModelLayout:
    """One model version's series, in the order its values are stored."""

    model: str
    version: str
    summary_settings: SummarySettings
    counters: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    histograms: list[tuple[str, tuple[str, ...], np.ndarray]] = field(default_factory=list)
    summaries: list[tuple[str, tuple[str, ...], tuple]] = field(default_factory=list)
    drift: DriftLayout | None = None
    additive_at: int = 0  # where its additive values start
    first_summary: int = 0  # index of its first summary among the snapshot's summaries

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.version)


@dataclass
class Layout:
    """A parsed layout section: the models, and where each number is."""

    models: list[ModelLayout]
    additive: int  # values before this index add across snapshots
    summaries: int  # the window sums follow the additive values, one per summary
    table_size: int  # window rows, then drift slots
    drift_windows: list[DriftWindowLayout]  # in table order
    counts_at: np.ndarray  # positions of the values that are counts (histograms, summaries)
    text: bytes = b""  # the layout section it was parsed from
    # Positions in the table of every drift window's bucket ids, and of its row counts:
    # a reader gathers each kind with one index, whatever the windows' sizes.
    drift_ids_at: np.ndarray = field(default_factory=lambda: np.zeros(0, np.intp))
    drift_rows_at: np.ndarray = field(default_factory=lambda: np.zeros(0, np.intp))

    @property
    def size(self) -> int:
        """Length of the values array."""
        return self.additive + self.summaries
    serial: int = field(default_factory=lambda: next(_serials))  # unique in this process


_serials = itertools.count()


# --- writing --------------------------------------------------------------------------------

@dataclass
class Packed:
    """A snapshot's models, split into its sections (see the module's docstring)."""

    layout: dict[str, Any]
    values: np.ndarray
    table: np.ndarray
    states: list[dict[str, Any]]  # per model: what is not summed, exemplars included
    exacts: list[dict[str, Any]]  # per model: every age bucket's row
    window_bins: list[np.ndarray]
    drift_bins: list[np.ndarray]
    exact_bins: list[np.ndarray]


def pack_layout(models: list[dict[str, Any]],
                bucket_id: Callable[[list], int] | None = None) -> Packed:
    """Split model dicts (``ModelState.to_dict()``) into the snapshot's sections.

    `bucket_id(config)` gives the newest age bucket's id at writing time for a summary's
    config; its window row holds the buckets of the window ending there, merged.
    """
    shared: dict[str, int] = {}
    packed = Packed({}, np.zeros(0), np.zeros(0, np.int64), [], [], [], [], [])
    layouts = []
    additive: list[float] = []
    window_sums: list[float] = []
    windows: list[int] = []
    drift: list[int] = []
    for data in models:
        layout: dict[str, Any] = {"model": data["model"], "version": data["version"],
                                  "summary_settings": data["summary_settings"],
                                  "counters": [], "histograms": [], "summaries": []}
        exact: dict[str, Any] = {"summaries": []}
        exemplars: list = []
        for metric, rows in data["counters"].items():
            for labels, value in _text_rows(rows, _added):
                layout["counters"].append([metric, labels])
                additive.append(value)
        for metric, rows in data["histograms"].items():
            for labels, hist in _text_rows(rows, _merged_histograms):
                if hist.get("exemplars"):
                    exemplars.append([len(layout["histograms"]), hist["exemplars"]])
                layout["histograms"].append([metric, labels, hist["bounds"]])
                additive.extend(hist["counts"])
                additive.append(hist["sum"])
        for metric, rows in data["summaries"].items():
            for labels, summary in _text_rows(rows, _merged_summaries):
                rolling = summary["sketch"]
                config = [rolling["max_age_seconds"], rolling["age_buckets"],
                          rolling["relative_accuracy"], rolling["max_bins"]]
                layout["summaries"].append([metric, labels, config])
                additive += [summary["count"], summary["sum"]]
                newest = bucket_id(config) if bucket_id is not None else -1
                exact["summaries"].append(_pack_buckets(rolling["buckets"], newest, config,
                                                        windows, window_sums, packed))
        extras = {}
        for name, extra in data.get("extras", {}).items():
            if name == "drift" and _is_drift(extra):
                layout["drift"] = _pack_drift(extra, shared, drift, packed.drift_bins)
            else:
                extras[name] = extra
        state = {"info": data.get("info", {}), "loaded_at": data.get("loaded_at"),
                 "trained_at": data.get("trained_at"), "validation": data.get("validation", {}),
                 "objectives": data.get("objectives", {}), "gauges": data.get("gauges", {}),
                 "extras": extras}
        if exemplars:  # (histogram index, its exemplars): few, and served by the merged view
            state["exemplars"] = exemplars
        packed.states.append(state)
        layouts.append(layout)
        packed.exacts.append(exact)
    packed.layout = {"shared": list(shared), "models": layouts}
    packed.values = np.array(additive + window_sums, dtype=np.float64)
    packed.table = np.array(windows + drift, dtype=np.int64)
    return packed


def _text_rows(rows: list, combine: Callable[[Any, Any], Any]) -> list:
    """`rows` (``[labels, value]``) with every label value as text, as the exposition shows
    it: readers take only strings, and one int label value (a class id) made every reader
    refuse the whole file, losing all of the worker's counts. Rows equal only as text are
    one series in the exposition, combined by `combine` (a layout names a series once)."""
    if all(type(value) is str for labels, _ in rows for value in labels):
        return rows
    combined: dict[tuple[str, ...], Any] = {}
    for labels, value in rows:
        key = tuple(str(label) for label in labels)
        combined[key] = combine(combined[key], value) if key in combined else value
    return [[list(key), value] for key, value in combined.items()]


def _added(first: float, second: float) -> float:
    return first + second


def _merged_histograms(first: dict, second: dict) -> dict:
    merged = HistogramState.from_dict(first)
    try:
        merged.merge(HistogramState.from_dict(second))
    except ValueError as exc:  # other buckets: the first is kept, as a merge keeps it
        faults.record("multiproc_write", exc)
    return merged.to_dict()


def _merged_summaries(first: dict, second: dict) -> dict:
    sketch = RollingSketch.from_dict(first["sketch"])
    try:
        sketch.merge(RollingSketch.from_dict(second["sketch"]))
    except ValueError as exc:  # other window settings: the first is kept
        faults.record("multiproc_write", exc)
        return first
    return {"sketch": sketch.to_dict(), "count": first["count"] + second["count"],
            "sum": first["sum"] + second["sum"]}


def _pack_buckets(buckets: list, newest: int, config: list, windows: list[int],
                  window_sums: list[float], packed: Packed) -> list:
    """One summary's buckets as exact rows; its window row at `newest` into `windows`."""
    rows, in_window = [], []
    for bucket, sketch in buckets:
        arrays = [np.asarray(sketch[sign]["counts"], dtype=np.int64)
                  for sign in ("positive", "negative")]
        packed.exact_bins.extend(a for a in arrays if a.size)
        rows.append([bucket, sketch["zero_count"], sketch["positive"]["offset"],
                     int(arrays[0].size), sketch["negative"]["offset"], int(arrays[1].size),
                     sketch["sum"]])
        if newest - config[1] < bucket <= newest:
            in_window.append((rows[-1], arrays))
    if not in_window:
        windows += [-1, 0, 0, 0, 0, 0]
        window_sums.append(0.0)
        return rows
    window = [newest, sum(row[ZERO] for row, _ in in_window)]
    for sign, offset_at in ((0, POS_OFFSET), (1, NEG_OFFSET)):
        dense = dense_bins([(row[offset_at], arrays[sign]) for row, arrays in in_window],
                           config[3])
        if dense is None:
            window += [0, 0]
        else:
            packed.window_bins.append(dense[1])
            window += [dense[0], int(dense[1].size)]
    windows.extend(window)
    window_sums.append(sum(row[SKETCH_SUM] for row, _ in in_window))
    return rows


def _is_drift(extra: Any) -> bool:
    return (isinstance(extra, dict) and isinstance(extra.get("reference"), dict)
            and all(isinstance(extra.get(name), dict) for name in DRIFT_WINDOWS))


def _pack_drift(extra: dict, shared: dict[str, int], table: list[int],
                drift_bins: list[np.ndarray]) -> dict:
    text = json.dumps(extra["reference"], separators=(",", ":"))
    packed: dict[str, Any] = {"reference": shared.setdefault(text, len(shared)),
                              "max_labels": extra.get("max_labels")}
    for name in DRIFT_WINDOWS:
        window = extra[name]
        slots = window["age_buckets"]
        buckets = window["buckets"]
        ids = [bucket["id"] for bucket in buckets] + [-1] * (slots - len(buckets))
        rows = [bucket["rows"] for bucket in buckets] + [0] * (slots - len(buckets))
        table.extend(ids)
        table.extend(rows)
        drift_bins.extend(np.asarray(bucket["counts"], dtype=np.int64) for bucket in buckets)
        # A window's "newest_added" is left out: only DriftWindow.add reads it, and windows
        # rebuilt from snapshots (the merged view, the archive's folds) are only merged
        # and read, never added to; the worker that adds keeps its own window in memory.
        packed[name] = {"bins": window["bins"], "max_age_seconds": window["max_age_seconds"],
                        "age_buckets": slots}
    return packed


def layout_of_states(states: list) -> Layout:
    """The parsed layout of a snapshot of `states` (``ModelState`` objects).

    >>> from inferwatch.core.state import ModelState
    >>> layout_of_states([ModelState("fraud", "1")]).models[0].key
    ('fraud', '1')
    """
    return parse_layout(json.dumps(pack_layout([s.to_dict() for s in states]).layout).encode())


# --- reading --------------------------------------------------------------------------------

def parse_layout(text: bytes) -> Layout:
    """The layout in `text`; ValueError if it is not one.

    A drift reference (tens of kilobytes of JSON) is the same in every model version that
    uses it: the layout keeps each distinct one once, as a JSON string in ``shared``, and
    a model's drift points at it by index. It is parsed into one object per layout, which
    decoders treat as read-only and may memoise on (``DriftState`` does).
    """
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ValueError("layout models is not a list")
    texts = data.get("shared", [])
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ValueError("shared is not a list of strings")
    layout = _parse(data["models"], [json.loads(t) for t in texts])
    layout.text = text
    return layout


def _parse(models: list, documents: list[Any]) -> Layout:
    parsed = []
    additive = 0
    summaries = 0
    seen_models: set[tuple[str, str]] = set()
    for model in models:
        if not isinstance(model, dict):
            raise ValueError("a model's layout is not an object")
        entry = ModelLayout(_text(model["model"]), _text(model["version"]),
                            _settings(model["summary_settings"]),
                            additive_at=additive, first_summary=summaries)
        # A series twice in one layout would add into one merged slot once, not twice.
        if entry.key in seen_models:
            raise ValueError(f"model {entry.key!r} is laid out twice")
        seen_models.add(entry.key)
        series: set[tuple] = set()
        for metric, labels in model["counters"]:
            entry.counters.append(_once(series, "c", _text(metric), _labels(labels)))
        for metric, labels, bounds in model["histograms"]:
            array = np.array(bounds, dtype=np.float64)
            # An infinite bound would be a second +Inf bucket.
            if array.ndim != 1 or not np.all(np.diff(array) > 0) or not np.isfinite(
                    array).all():
                raise ValueError(f"histogram {metric!r} bounds are not increasing numbers")
            entry.histograms.append((*_once(series, "h", _text(metric), _labels(labels)),
                                     array))
        for metric, labels, config in model["summaries"]:
            entry.summaries.append((*_once(series, "s", _text(metric), _labels(labels)),
                                    _config(config)))
        additive += (len(entry.counters) + 2 * len(entry.summaries)
                     + sum(bounds.size + 2 for _, _, bounds in entry.histograms))
        summaries += len(entry.summaries)
        drift = model.get("drift")
        if drift is not None:
            index = drift["reference"]
            if type(index) is not int or not 0 <= index < len(documents):
                raise ValueError(f"model {entry.model!r} points at no shared document")
            windows = tuple(DriftWindowLayout(_bins(drift[name]["bins"]),
                                              _seconds(drift[name]["max_age_seconds"]),
                                              _count(drift[name]["age_buckets"], 1,
                                                     MAX_AGE_BUCKETS), -1)
                            for name in DRIFT_WINDOWS)
            _check_reference(documents[index], windows)
            max_labels = drift.get("max_labels")
            entry.drift = DriftLayout(documents[index], windows,  # type: ignore[arg-type]
                                      200 if max_labels is None else _count(max_labels, 0))
        parsed.append(entry)
    position = summaries * WINDOW_ROW  # the window rows come first in the table
    drift_windows = []
    for entry in parsed:
        if entry.drift is not None:
            placed = []
            for window in entry.drift.windows:
                placed.append(DriftWindowLayout(window.bins, window.max_age_seconds,
                                                window.age_buckets, position))
                position += 2 * window.age_buckets
            drift_windows.extend(placed)
            entry.drift = DriftLayout(entry.drift.reference, tuple(placed),  # type: ignore[arg-type]
                                      entry.drift.max_labels)
    counts_at = []
    for entry in parsed:
        at = entry.additive_at + len(entry.counters)
        for _, _, bounds in entry.histograms:
            counts_at.extend(range(at, at + bounds.size + 1))
            at += bounds.size + 2
        counts_at.extend(range(at, at + 2 * len(entry.summaries), 2))
    ids_at: list[int] = []
    rows_at: list[int] = []
    for window in drift_windows:
        ids_at.extend(range(window.at, window.at + window.age_buckets))
        rows_at.extend(range(window.at + window.age_buckets, window.at + 2 * window.age_buckets))
    return Layout(parsed, additive, summaries, position, drift_windows,
                  np.array(counts_at, dtype=np.intp), drift_ids_at=np.array(ids_at, np.intp),
                  drift_rows_at=np.array(rows_at, np.intp))


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _labels(labels: Any) -> tuple[str, ...]:
    if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
        raise ValueError(f"label values must be a list of strings, got {labels!r}")
    return tuple(labels)


def _count(value: Any, least: int, most: float = float("inf")) -> int:
    if type(value) is not int or not least <= value <= most:
        raise ValueError(f"expected an integer from {least} to {most}, got {value!r}")
    return value


def _seconds(value: Any) -> float:
    if type(value) not in (int, float) or not 0 < value < float("inf"):
        raise ValueError(f"expected a positive number of seconds, got {value!r}")
    return float(value)


def _once(seen: set[tuple], kind: str, metric: str,
          labels: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    if (kind, metric, labels) in seen:
        raise ValueError(f"series {metric}{labels} is laid out twice")
    seen.add((kind, metric, labels))
    return metric, labels


def _settings(settings: Any) -> SummarySettings:
    """A model's quantile settings, checked as the sketch and the renderer need them."""
    if not isinstance(settings, list) or len(settings) != 4:
        raise ValueError(f"summary settings {settings!r} are not four settings")
    quantiles, max_age, age_buckets, accuracy = settings
    quantiles = tuple(map(float, quantiles))
    if not all(0.0 <= q <= 1.0 for q in quantiles):
        raise ValueError(f"quantiles must be in [0, 1], got {quantiles!r}")
    RollingSketch(float(max_age), int(age_buckets), float(accuracy))
    return SummarySettings(quantiles, float(max_age), int(age_buckets), float(accuracy))


def _check_reference(document: Any, windows: tuple[DriftWindowLayout, ...]) -> None:
    """The reference must parse, and bin features and outputs as the windows do: scoring
    would fail otherwise, and the windows' bins (allocated for every age bucket, used or
    not) stay in proportion to the reference text."""
    # Loaded only where a model has a reference: the exporter stays free of it otherwise.
    # Compiled once per parsed document, as DriftState would at merge time.
    from inferwatch.quality.tracker import _decoded_reference

    _, scorers, _ = _decoded_reference(document)
    for scorer, window in zip(scorers, windows):
        if tuple(scorer.layout.sizes.tolist()) != window.bins:
            raise ValueError("a drift window's bins are not those of its reference")


def _bins(bins: Any) -> tuple[int, ...]:
    if not isinstance(bins, list) or not all(type(b) is int and b >= 1 for b in bins):
        raise ValueError("drift bins must be a list of positive integers")
    return tuple(bins)


def _config(config: Any) -> tuple:
    """(max_age_seconds, age_buckets, relative_accuracy, max_bins), checked by the sketch."""
    if not isinstance(config, list) or len(config) != 4:
        raise ValueError(f"summary config {config!r} is not four settings")
    RollingSketch(*config)
    return tuple(config)


# Cells of a grid that bins are added in (a few MiB at most); past it, run by run.
MAX_GRID_CELLS = 1 << 18
# Count types that widen to int64 exactly: the bin types of a file, and int64 sums.
WIDENING_TYPES = frozenset(np.dtype(name) for name in ("u1", "u2", "u4", "i1", "i2", "i4",
                                                         "i8"))

# The largest count of each unsigned type (np.iinfo costs more than adding a series).
_LARGEST_UNSIGNED = {np.dtype(name): int(np.iinfo(name).max) for name in ("u1", "u2", "u4")}


def summed_rows(grid: np.ndarray) -> np.ndarray:
    """The rows of a 2-D grid of counts (a type of :data:`WIDENING_TYPES`) added, as int64.

    Files hold bins in the narrowest unsigned type: added in a type just wide enough for
    the largest possible sum, a cast per cell is saved. Integer sums are exact (int64 ones
    wrap alike) in any order, so the sums are those of adding row by row into int64.

    >>> summed_rows(np.array([[255, 1], [255, 2]], dtype=np.uint8)).tolist()
    [510, 3]
    """
    # np.add.reduce is what ndarray.sum calls, less a Python wrapper that costs about as
    # much as adding a few workers' bins.
    largest_count = _LARGEST_UNSIGNED.get(grid.dtype)
    if largest_count is not None:
        largest = grid.shape[0] * largest_count
        if largest < 1 << 32:
            wide = np.uint16 if largest < 1 << 16 else np.uint32
            return np.add.reduce(grid, axis=0, dtype=wide).astype(np.int64)
    return np.add.reduce(grid, axis=0, dtype=np.int64)


def dense_bins(segments: list[tuple[int, np.ndarray]],
               max_bins: int) -> tuple[int, np.ndarray] | None:
    """Bin segments (first key, counts) summed into one run: (first key, counts), or None.

    Past `max_bins` keys the lowest ones fold into the lowest kept key, as the sketch's
    own store does, so the result does not depend on how values were split across workers
    (and nothing larger than `max_bins` is ever allocated).

    >>> dense_bins([(3, np.array([1, 2])), (4, np.array([5]))], max_bins=10)
    (3, array([1, 7]))
    """
    segments = [segment for segment in segments if segment[1].size]
    if not segments:
        return None
    high = max([offset + counts.size for offset, counts in segments]) - 1
    lowest = min([offset for offset, _ in segments])
    low = max(lowest, high - max_bins + 1)
    width = high - low + 1
    types = {counts.dtype for _, counts in segments}
    if lowest == low and len(segments) * width <= MAX_GRID_CELLS and types <= WIDENING_TYPES:
        # One row per segment in the files' own (narrow) type, added down the rows in one
        # call: a series of many workers costs one numpy add, not one per worker.
        grid = np.zeros((len(segments), width),
                        dtype=types.pop() if len(types) == 1 else np.result_type(*types))
        for index, (offset, counts) in enumerate(segments):
            grid[index, offset - low:offset - low + counts.size] = counts
        dense = summed_rows(grid)
    else:
        dense = np.zeros(width, dtype=np.int64)
        for offset, counts in segments:
            if offset < low:
                cut = min(low - offset, counts.size)
                dense[0] += int(counts[:cut].sum())
                counts, offset = counts[cut:], low
            dense[offset - low:offset - low + counts.size] += counts
    (nonzero,) = dense.nonzero()
    if not nonzero.size:
        return None
    return low + int(nonzero[0]), dense[nonzero[0]:nonzero[-1] + 1]
