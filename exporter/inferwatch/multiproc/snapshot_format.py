"""The snapshot file of one worker (or of the archive of dead ones): a versioned binary frame.

A snapshot is everything a process publishes in multi-worker mode: the states of its
model versions (``ModelState.to_dict()``) plus its process-wide counters. A merged scrape
reads every worker's file, so the frame is laid out for reading many alike:

- **layout** (JSON): the series, in order (``snapshot_layout``). Workers of one
  deployment write the same text, which a reader parses once.
- **state** (JSON, small): what differs per process and is not summed: identity fields,
  gauges, process-wide counters, other extras, and how many bins each part holds.
- **exact** (JSON): every age bucket of every summary, read only when folding a dead
  worker or when a file is older than the window (the window rows cover the rest).
- **values** (float64) and **table** (int64): the numbers at the positions the layout
  fixes.
- **bins** (the narrowest unsigned integer type): sketch and drift bin counts.

The frame::

    b"IWSNAP\\n"  format (1 byte)  six section lengths (8 bytes each, big-endian)
    the layout's CRC-32 (4 bytes)  layout  state  exact  values  table  bins
    CRC-32 of all but the layout (4 bytes)

The last CRC covers everything but the layout, which has its own in the frame's head, so
a truncated or damaged file (a full disk, a copy cut short) is detected and skipped rather
than misread.

>>> from inferwatch.core.state import ModelState
>>> state = ModelState("fraud", "1")
>>> state.summary("inferwatch_prediction", ("value",)).observe(np.array([0.2, 0.4]), now=0.0)
>>> raw = decode(encode(Snapshot(models=[model_dict(state)])))
>>> exact_models(raw)[0].summaries["inferwatch_prediction"][("value",)].count
2
"""

from __future__ import annotations

import itertools
import json
import operator
import re
import struct
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferwatch.core.rolling_sketch import RollingSketch
from inferwatch.core.state import ModelState
from inferwatch.forking import renew_at_fork
from inferwatch.multiproc.snapshot_layout import (
    DRIFT_WINDOWS,
    NEG_N,
    NEG_OFFSET,
    NEWEST,
    POS_N,
    POS_OFFSET,
    SKETCH_SUM,
    WINDOW_ROW,
    ZERO,
    DriftWindowLayout,
    Layout,
    pack_layout,
    parse_layout,
)

FORMAT_VERSION = 2
MAGIC = b"IWSNAP\n"
SECTIONS = ("layout", "state", "exact", "values", "table", "bins")
_LENGTHS = struct.Struct(">B6QI")
_CRC = struct.Struct(">I")
# A JSON section past this is not ours (or is damaged); refusing it bounds what a read
# allocates.
MAX_HEADER_BYTES = 256 << 20
MAX_BLOB_BYTES = 2 << 30
# The largest file a valid frame can be: readers never read past it (a FIFO, /dev/zero).
MAX_SNAPSHOT_BYTES = (len(MAGIC) + _LENGTHS.size + 3 * MAX_HEADER_BYTES + 3 * MAX_BLOB_BYTES
                      + _CRC.size)
# Counts above this are not ours (float64 holds whole numbers exactly below 2**53).
_MAX_COUNT = float(1 << 53)
# Process-wide counters a snapshot carries besides the model states, summed across files.
PROCESS_COUNTERS = ("internal_errors", "overflow", "events_dropped", "event_values_dropped",
                    "files_skipped")


class SnapshotError(ValueError):
    """A snapshot file that is not a complete, valid snapshot of this format."""


class OtherFormat(SnapshotError):
    """A snapshot frame of another format version: written by another inferwatch release
    (an upgrade under way), not damaged. Its writer may still run and publish it."""

    def __init__(self, version: int) -> None:
        super().__init__(f"snapshot format {version} is not {FORMAT_VERSION} (written by"
                         " another inferwatch release)")
        self.version = version


@dataclass
class Snapshot:
    """What one process publishes, or what the archive of dead workers holds."""

    models: list[dict[str, Any]] = field(default_factory=list)  # model_dict() of each state
    internal_errors: dict[str, float] = field(default_factory=dict)
    overflow: dict[str, float] = field(default_factory=dict)
    events_dropped: dict[str, float] = field(default_factory=dict)
    event_values_dropped: dict[str, float] = field(default_factory=dict)
    files_skipped: dict[str, float] = field(default_factory=dict)
    dependencies: dict[str, str] = field(default_factory=dict)
    # Archive only: names of the worker snapshots already folded in (see multiproc_store).
    folded: list[str] = field(default_factory=list)
    written_at: float = 0.0


@dataclass
class RawSnapshot:
    """A decoded, checked file: its layout, state section and arrays, and where the bins
    of each window row and drift window start."""

    header: dict[str, Any] = field(default_factory=dict)  # the state section
    layout: Layout | None = None
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bins: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    windows: list[list[int]] = field(default_factory=list)  # one row per summary
    window_sums: list[float] = field(default_factory=list)
    window_starts: list[int] = field(default_factory=list)
    drift_ids: tuple[int, ...] = ()  # every drift window's bucket ids, end to end
    drift_rows: list[int] = field(default_factory=list)  # and their rows
    drift_span: tuple[int, int] = (0, 0)  # where the drift windows' bins are
    # Per drift window in table order: (its position in the table, its bucket ids, where
    # its rows start in drift_rows, where its bins start after drift_span[0]). Shared by
    # every file whose windows hold the same buckets: read-only.
    drift_shape: tuple[tuple[int, tuple[int, ...], int, int], ...] = ()
    exact_text: bytes = b""
    exact_start: int = 0
    _exact: list | None = None
    _drift: dict | None = None

    @property
    def folded(self) -> list[str]:
        return [str(name) for name in self.header.get("folded", ())]

    @property
    def drift(self) -> dict[int, tuple[tuple[int, ...], list[int], int]]:
        """Position of a drift window in the table -> (bucket ids, rows, where its bins
        start). Built on first use: a merge reads drift_shape, only folding reads this."""
        if self._drift is None:
            start, rows = self.drift_span[0], self.drift_rows
            self._drift = {at: (ids, rows[row:row + len(ids)], start + bins)
                           for at, ids, row, bins in self.drift_shape}
        return self._drift

    def exact(self) -> list[dict[str, Any]]:
        """Per model, ``{"summaries": [...]}``: per summary, each age bucket's row and
        where its bins start.

        Parsed on first use: only folding, and files older than the window, need it.
        Raises SnapshotError when the section does not match the bins.
        """
        if self._exact is None:
            self._exact = _parse_exact(self)
        return self._exact

    def exact_buckets(self, model: int, summary: int) -> list[tuple[list, int]]:
        """(row, where its bins start) of each age bucket of one summary of one model."""
        return self.exact()[model]["summaries"][summary]


# --- writing --------------------------------------------------------------------------------

def encode(snapshot: Snapshot) -> bytes:
    """The snapshot as one self-checking byte string."""
    packed = pack_layout(snapshot.models,
                         lambda config: bucket_id(config, snapshot.written_at))
    parts = packed.window_bins + packed.drift_bins + packed.exact_bins
    counts = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    dtype = _narrowest(counts)
    state = {"format": FORMAT_VERSION, "written_at": snapshot.written_at,
             "models": packed.states, "dtype": dtype,
             "exact_bins": int(sum(part.size for part in packed.exact_bins)),
             **{name: getattr(snapshot, name) for name in PROCESS_COUNTERS},
             "dependencies": snapshot.dependencies, "folded": snapshot.folded}
    layout = _json(packed.layout)
    sections = [layout, _json(state), _json(packed.exacts), packed.values.astype("<f8").tobytes(),
                packed.table.astype("<i8").tobytes(), counts.astype(dtype).tobytes()]
    head = MAGIC + _LENGTHS.pack(FORMAT_VERSION, *map(len, sections), zlib.crc32(layout))
    rest = b"".join(sections[1:])
    return head + layout + rest + _CRC.pack(zlib.crc32(rest, zlib.crc32(head)))


def _json(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def model_dict(state: ModelState) -> dict[str, Any]:
    """What a snapshot stores of one model version: ``state.to_dict()``, extras included,
    its summaries' sketch bins as arrays (which :func:`encode` packs as they are).

    Called with the state's lock held; the rest of :func:`encode` needs no lock.
    """
    data = state.to_dict(packed=True)
    info = data.get("info")
    if isinstance(info, dict) and not all(type(value) is str for value in info.values()):
        # A number or bool set on a ModelState used directly (state.info["k"] = 3) was
        # written as it was, and readers refused the whole file (every counter of the
        # worker) on every scrape. Written as its text, as ModelState.from_dict reads it.
        data["info"] = {key: value if type(value) is str else str(value)
                        for key, value in info.items()}
    return data


_BIN_DTYPES = {name: np.dtype(name) for name in ("<u1", "<u2", "<u4", "<i8")}


def _narrowest(counts: np.ndarray) -> str:
    """The smallest little-endian type holding every count: fewer bytes for every scrape."""
    largest = int(counts.max()) if counts.size else 0
    for dtype, limit in (("<u1", 1 << 8), ("<u2", 1 << 16), ("<u4", 1 << 32)):
        if largest < limit:
            return dtype
    return "<i8"


_templates: dict[tuple, RollingSketch] = {}


def bucket_id(config: list | tuple, now: float) -> int:
    """The id of the age bucket holding `now` for a summary of `config` (max age, age
    buckets, relative accuracy, max bins), by the sketch's own arithmetic.

    >>> bucket_id((600.0, 5, 0.01, 2048), 1_000.0)
    8
    """
    key = tuple(config)
    template = _templates.get(key)
    if template is None:
        if len(_templates) >= 64:
            _templates.clear()  # settings a crafted layout invents must not pile up
        template = _templates[key] = RollingSketch(*config)
    return template.bucket_id(now)


# --- reading --------------------------------------------------------------------------------

def decode(data: bytes) -> RawSnapshot:
    """Check the frame and every number the merge relies on; SnapshotError says what is
    wrong."""
    fixed = len(MAGIC) + _LENGTHS.size
    # The format byte first: another release's frame may be laid out (and sized) otherwise.
    if len(data) > len(MAGIC) and data.startswith(MAGIC) \
            and data[len(MAGIC)] != FORMAT_VERSION:
        raise OtherFormat(data[len(MAGIC)])
    if len(data) < fixed + _CRC.size or not data.startswith(MAGIC):
        raise SnapshotError("not an inferwatch snapshot (bad magic or too short)")
    _, *lengths, layout_crc = _LENGTHS.unpack_from(data, len(MAGIC))
    if max(lengths[:3]) > MAX_HEADER_BYTES or max(lengths[3:]) > MAX_BLOB_BYTES:
        raise SnapshotError("snapshot lengths are out of range")
    end = fixed + sum(lengths)
    if len(data) != end + _CRC.size:
        raise SnapshotError(f"snapshot is {len(data)} bytes, its frame says {end + _CRC.size}"
                            " (truncated?)")
    (crc,) = _CRC.unpack_from(data, end)
    view = memoryview(data)
    starts = [fixed]
    for length in lengths:
        starts.append(starts[-1] + length)
    # The layout has a checksum of its own (read by _layout): most of a file's bytes,
    # compared with the copy already parsed rather than summed again.
    if zlib.crc32(view[starts[1]:end], zlib.crc32(view[:fixed])) != crc:
        raise SnapshotError("snapshot checksum mismatch (damaged file)")
    try:
        layout = _layout(data, starts[0], starts[1], layout_crc)
        state_text = view[starts[1]:starts[2]].tobytes()
        header, state_key = _known_state(state_text)
        checked = header is not None
        if header is None:
            header = json.loads(state_text)
        if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
            raise ValueError("the state section is not of this format")
        # Only what _narrowest writes: an unsigned 64-bit array does not add into the
        # merge's int64 ones (the whole scrape failed), a big-endian one misreads.
        dtype = _BIN_DTYPES.get(header["dtype"])
        if dtype is None:
            raise ValueError(f"bin counts of type {header['dtype']!r} are not of this format")
        if lengths[3] % 8 or lengths[4] % 8 or lengths[5] % dtype.itemsize:
            raise ValueError("the arrays are not whole numbers of items")
        values = np.frombuffer(data, dtype="<f8", count=lengths[3] // 8, offset=starts[3])
        table = np.frombuffer(data, dtype="<i8", count=lengths[4] // 8, offset=starts[4])
        bins = np.frombuffer(data, dtype=dtype, count=lengths[5] // dtype.itemsize,
                             offset=starts[5])
        if bins.dtype.kind == "i" and bins.size and not 0 <= bins.min() <= bins.max() < (
                _MAX_COUNT):
            raise ValueError("a bin count is negative or past any real count")
        if values.size != layout.size or table.size != layout.table_size:
            raise ValueError(f"{values.size} values and {table.size} table entries, the"
                             f" layout places {layout.size} and {layout.table_size}")
        counts = values[layout.counts_at]
        # A NaN makes the minimum NaN, which no comparison passes.
        if counts.size and not (counts.min() >= 0 and counts.max() < _MAX_COUNT
                                and (counts == np.floor(counts)).all()):
            raise ValueError("a histogram's or summary's count is not a whole number")
        models = header.get("models")
        if not isinstance(models, list) or len(models) != len(layout.models) or not all(
                isinstance(model, dict) for model in models):
            raise ValueError("the state's models do not match the layout's")
        if not checked:
            _check_header(header)
            if state_key is not None:
                _remember_state(state_key, header)
        raw = RawSnapshot(header, layout, values, bins,
                          exact_text=data[starts[2]:starts[3]])
        position = _check_windows(raw, table)
        position = _check_drift(raw, table, position)
        exact_bins = header.get("exact_bins")
        if type(exact_bins) is not int or position + exact_bins != bins.size:
            raise ValueError(f"the sections describe {position} + {exact_bins!r} bin counts,"
                             f" the file holds {bins.size}")
        raw.exact_start = position
    except SnapshotError:
        raise
    # OverflowError: a JSON integer too large for a float; RecursionError: JSON nested
    # deeper than the parser's stack.
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError,
            RecursionError) as exc:
        raise SnapshotError(f"snapshot is invalid: {exc}") from exc
    return raw


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# options.RESERVED_LABELS, which info may not name: the exporter reads snapshots without
# loading the instrumentation's options (a test keeps the two equal).
RESERVED_LABELS = frozenset(("model", "model_version", "job", "instance"))
_EMPTY: dict[str, Any] = {}
_STR = frozenset((str,))  # the types of values that are all exactly str
# Info keys already judged to be label names: a bounded set, so crafted files cannot grow it.
_INFO_KEYS: set[str] = set()
MAX_INFO_KEYS = 1024


# The state section as encode() writes it: this head, the time of writing (a JSON number),
# then the rest. The rest -> that section parsed and checked by _check_header: a worker's
# state (identity, gauges, process counters) stays as it was from one publish to the next
# while its written_at moves, so a reader parses the text once, not at every scrape. Keyed
# by the exact bytes, so changed text is parsed anew; least recently used first, bounded
# in entries and text held.
_STATE_HEAD = b'{"format":%d,"written_at":' % FORMAT_VERSION
_JSON_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_states: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
_states_lock = threading.Lock()
renew_at_fork(globals(), "_states_lock")
MAX_STATES = 256
MAX_STATE_BYTES = 16 << 20
MAX_STATE_TEXT = 1 << 20  # a larger section is parsed every time
_state_bytes = 0


def _known_state(text: bytes) -> tuple[dict[str, Any] | None, bytes | None]:
    """(the checked state section `text` holds, if the same one but for its time of writing
    was decoded before; else None, the key to remember it by once checked, None if it is
    not to be remembered)."""
    if not text.startswith(_STATE_HEAD) or len(text) > MAX_STATE_TEXT:
        return None, None
    number = _JSON_NUMBER.match(text, len(_STATE_HEAD))
    if number is None or number.end() - number.start() > 40:  # no time is written longer
        return None, None
    rest = text[number.end():]
    # A second "written_at" key would be the one json keeps: not of encode(), not remembered.
    if b'"written_at"' in rest:
        return None, None
    found = _states.get(rest)
    if found is None:
        return None, rest
    with _states_lock:
        if rest in _states:
            _states.move_to_end(rest)
    # As json reads a number: an int unless it has a fraction or an exponent.
    written = number.group(0)
    header = dict(found)  # the nested parts are shared: readers of a snapshot never change it
    header["written_at"] = (float(written) if number.group(1) or number.group(2)
                            else int(written))
    return header, None


def _remember_state(rest: bytes, header: dict[str, Any]) -> None:
    """Remember a checked state section by the text after its time of writing."""
    global _state_bytes
    with _states_lock:
        old = _states.pop(rest, None)
        if old is not None:
            _state_bytes -= len(rest)
        while _states and (len(_states) >= MAX_STATES
                           or _state_bytes + len(rest) > MAX_STATE_BYTES):
            _state_bytes -= len(_states.popitem(last=False)[0])
        _states[rest] = header
        _state_bytes += len(rest)


def _check_header(header: dict[str, Any]) -> None:
    """What the merge reads from the state section without guarding each use: process
    counters, dependencies, folded names and the models' info labels (an info key such as
    ``model`` would relabel the model's series, ``__name__`` break the exposition)."""
    for name in PROCESS_COUNTERS:
        counts = header.get(name, _EMPTY)
        if counts is _EMPTY:
            continue
        if not isinstance(counts, dict) or (counts and not all(
                type(value) in (int, float) and 0 <= value < _MAX_COUNT
                for value in counts.values())):
            raise ValueError(f"{name} is not a map of counts")
    # Types compared as a set, in C: every file's header is checked on every scrape.
    dependencies = header.get("dependencies", _EMPTY)
    if not isinstance(dependencies, dict) or not _STR.issuperset(
            map(type, dependencies.values())):
        raise ValueError("dependencies is not a map of versions")
    folded = header.get("folded", [])
    if not isinstance(folded, list) or not _STR.issuperset(map(type, folded)):
        raise ValueError("folded is not a list of names")
    for model in header["models"]:
        info = model.get("info", _EMPTY)
        if not isinstance(info, dict) or not _STR.issuperset(map(type, info.values())):
            raise ValueError("a model's info is not a map of label names to strings")
        # Workers of one deployment name the same few keys: each is judged once.
        if not _INFO_KEYS.issuperset(info):
            for key in info:
                if not (type(key) is str and _LABEL_NAME.fullmatch(key)
                        and not key.startswith("__") and key not in RESERVED_LABELS):
                    raise ValueError(f"a model's info has the key {key!r}, which is no label"
                                     " name of its own")
            if len(_INFO_KEYS) < MAX_INFO_KEYS:
                _INFO_KEYS.update(info)


# (CRC-32, length) of a layout section -> its parsed layout: finding a worker's layout
# costs a comparison of its bytes, not a hash of them. A deployment has one layout, a
# rollout two, but workers that each saw other error types or classes have one each: a
# scrape reads them all in turn, so every live one must fit (a cache of 16 and 17 live
# layouts parsed each of them on every scrape, 20 times slower). Least recently used first.
_by_crc: OrderedDict[tuple[int, int], Layout] = OrderedDict()
_by_crc_lock = threading.Lock()
renew_at_fork(globals(), "_by_crc_lock")
MAX_LAYOUTS = 256
# And at most this much layout text held (a layout's parsed form is of its size or so).
MAX_LAYOUT_BYTES = 64 << 20
_layout_bytes = 0


def _layout(data: bytes, start: int, end: int, crc: int) -> Layout:
    """The layout in ``data[start:end]``, parsed or found among those already parsed."""
    global _layout_bytes
    key = (crc, end - start)
    found = _by_crc.get(key)
    # startswith compares in place, by memcmp: no copy of the section (most of the file).
    if found is not None and data.startswith(found.text, start):
        with _by_crc_lock:
            if key in _by_crc:
                _by_crc.move_to_end(key)
        return found
    text = data[start:end]
    if zlib.crc32(text) != crc:
        raise ValueError("the layout's checksum does not match it")
    layout = parse_layout(text)
    with _by_crc_lock:
        # Cleared when full, model versions that came and went had the live layouts parsed
        # again too: the least recently used go, and the live ones stay.
        old = _by_crc.pop(key, None)
        if old is not None:
            _layout_bytes -= len(old.text)
        while _by_crc and (len(_by_crc) >= MAX_LAYOUTS
                           or _layout_bytes + len(text) > MAX_LAYOUT_BYTES):
            _layout_bytes -= len(_by_crc.popitem(last=False)[1].text)
        _by_crc[key] = layout
        _layout_bytes += len(text)
    return layout


def _check_windows(raw: RawSnapshot, table: np.ndarray) -> int:
    """Check the summaries' window rows; where each one's bins start. Returns their end."""
    layout = raw.layout
    width = layout.summaries * WINDOW_ROW  # type: ignore[union-attr]
    raw.window_sums = raw.values[layout.additive:].tolist()  # type: ignore[union-attr]
    if not width:
        return 0
    # Columns as lists, checked by min and max in C: a file holds few summaries or many,
    # and numpy's cost per call was most of a few rows' check.
    numbers = table[:width].tolist()
    positive, negative = numbers[POS_N::WINDOW_ROW], numbers[NEG_N::WINDOW_ROW]
    if min(min(numbers[ZERO::WINDOW_ROW]), min(positive), min(negative)) < 0 or min(
            numbers[NEWEST::WINDOW_ROW]) < -1:
        raise ValueError("a summary's window row has a negative count")
    sizes = list(map(operator.add, positive, negative))
    # Runs longer than the file's bins would place every later run at a wrong start.
    if max(sizes) > raw.bins.size:
        raise ValueError("a summary's window row has more bins than the file holds")
    raw.windows = [numbers[at:at + WINDOW_ROW] for at in range(0, width, WINDOW_ROW)]
    starts = list(itertools.accumulate(sizes, initial=0))
    end = starts.pop()
    raw.window_starts = starts
    return end


# (layout serial, every drift window's bucket ids) -> their checked shape: workers of one
# clock hold the same buckets, so each scrape checks the ids of a few files, not of all.
# Cleared when full: the ids move on once a bucket's time (minutes). Only layouts of up to
# MAX_CACHED_IDS ids (250 windows of 16 buckets) are kept: a few MiB at most.
_drift_shapes: dict[tuple[int, bytes], tuple] = {}
MAX_DRIFT_SHAPES = 32
MAX_CACHED_IDS = 4096


def _check_drift(raw: RawSnapshot, table: np.ndarray, position: int) -> int:
    """Check each drift window's bucket ids and rows; where its bins start. Returns the end."""
    layout = raw.layout
    if not layout.drift_windows:  # type: ignore[union-attr]
        return position
    ids = table[layout.drift_ids_at]  # type: ignore[union-attr]
    key = (layout.serial, ids.tobytes())  # type: ignore[union-attr]
    shape = _drift_shapes.get(key)
    if shape is None:
        shape = _drift_shape(layout, ids.tolist())  # type: ignore[arg-type]
        if ids.size <= MAX_CACHED_IDS:
            if len(_drift_shapes) >= MAX_DRIFT_SHAPES:
                _drift_shapes.clear()
            _drift_shapes[key] = shape
    rows = table[layout.drift_rows_at]  # type: ignore[union-attr]
    if not 0 <= int(rows.min()) <= int(rows.max()) < _MAX_COUNT:
        raise ValueError("a drift window's buckets are not distinct ids with row counts")
    windows, drift_ids, used, size = shape
    raw.drift_shape = windows
    raw.drift_ids = drift_ids
    raw.drift_rows = rows[used].tolist()
    raw.drift_span = (position, position + size)
    return position + size


def _drift_shape(layout: Layout, numbers: list[int]) -> tuple:
    """(drift_shape, drift_ids, where the used rows are among all windows' rows, the
    bins they hold) of windows holding the bucket ids `numbers`, end to end; ValueError
    when they are not distinct ids, each window's used ones first."""
    at = 0
    position = 0
    windows = []
    all_ids: list[int] = []
    used_rows: list[int] = []
    for window in layout.drift_windows:
        size = window.age_buckets
        ids = numbers[at:at + size]
        used = size - ids.count(-1)
        live = ids[:used]
        if (used < size and ids[used:] != [-1] * (size - used)) or (
                used and not 0 <= min(live) <= max(live) < _MAX_COUNT) or (
                used > 1 and len({i % size for i in live}) != used):
            raise ValueError("a drift window's buckets are not distinct ids with row counts")
        windows.append((window.at, tuple(live), len(used_rows), position))
        all_ids += live
        all_ids.append(-1)  # ends each window's ids: equal keys mean equal layouts of bins
        used_rows.extend(range(at, at + used))
        at += size
        position += used * window.total
    return tuple(windows), tuple(all_ids), np.array(used_rows, np.intp), position


def _parse_exact(raw: RawSnapshot) -> list:
    try:
        exact = json.loads(raw.exact_text)
        if not isinstance(exact, list) or len(exact) != len(raw.layout.models):  # type: ignore[union-attr]
            raise ValueError("the exact section's models do not match the layout's")
        position = raw.exact_start
        parsed = []
        for model, layout in zip(exact, raw.layout.models):  # type: ignore[union-attr]
            summaries = model["summaries"]
            if not isinstance(summaries, list) or len(summaries) != len(layout.summaries):
                raise ValueError("the exact section's summaries do not match the layout's")
            placed = []
            for rows in summaries:
                buckets = []
                for row in rows:
                    if not (isinstance(row, list) and len(row) == WINDOW_ROW + 1
                            and all(type(field) is int for field in row[:WINDOW_ROW])
                            and type(row[SKETCH_SUM]) in (int, float)
                            and min(row[ZERO], row[POS_N], row[NEG_N]) >= 0):
                        raise ValueError(f"an age bucket's row {row!r} is invalid")
                    buckets.append((row, position))
                    position += row[POS_N] + row[NEG_N]
                placed.append(buckets)
            parsed.append({"summaries": placed})
        if position != raw.bins.size:
            raise ValueError(f"the exact section describes {position} bin counts, the file"
                             f" holds {raw.bins.size}")
        return parsed
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"snapshot age buckets are invalid: {exc}") from exc


def exact_models(raw: RawSnapshot) -> list[ModelState]:
    """Full :class:`ModelState` objects, every age bucket kept (what folding needs).

    Raises SnapshotError for any inconsistency between the sections.
    """
    try:
        return [ModelState.from_dict(data) for data in model_dicts(raw)]
    except SnapshotError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, OverflowError) as exc:
        raise SnapshotError(f"snapshot model state is invalid: {exc}") from exc


def model_dicts(raw: RawSnapshot) -> list[dict[str, Any]]:
    """The snapshot's models as ``ModelState.to_dict()`` wrote them."""
    values = raw.values.tolist()
    dicts = []
    for layout, state, exact in zip(raw.layout.models, raw.header["models"], raw.exact()):  # type: ignore[union-attr]
        at = layout.additive_at
        counters: dict[str, list] = {}
        for metric, labels in layout.counters:
            counters.setdefault(metric, []).append([list(labels), values[at]])
            at += 1
        exemplars = {index: found for index, found in state.get("exemplars", ())}
        histograms: dict[str, list] = {}
        for index, (metric, labels, bounds) in enumerate(layout.histograms):
            end = at + bounds.size + 1
            hist = {"bounds": bounds.tolist(), "counts": [_int(v) for v in values[at:end]],
                    "sum": values[end]}
            if index in exemplars:
                hist["exemplars"] = exemplars[index]
            histograms.setdefault(metric, []).append([list(labels), hist])
            at = end + 1
        summaries: dict[str, list] = {}
        for (metric, labels, config), buckets in zip(layout.summaries, exact["summaries"]):
            rolling = {"format": 1, "max_age_seconds": config[0], "age_buckets": config[1],
                       "relative_accuracy": config[2], "max_bins": config[3],
                       "buckets": [[row[NEWEST], _sketch_dict(row, start, config, raw.bins)]
                                   for row, start in buckets]}
            summaries.setdefault(metric, []).append(
                [list(labels), {"sketch": rolling, "count": _int(values[at]),
                                "sum": values[at + 1]}])
            at += 2
        extras = dict(state.get("extras", {}))
        if layout.drift is not None:
            extras["drift"] = {"reference": layout.drift.reference,
                               "max_labels": layout.drift.max_labels,
                               **{name: _window_dict(window, raw)
                                  for name, window in zip(DRIFT_WINDOWS, layout.drift.windows)}}
        settings = layout.summary_settings
        state = {key: value for key, value in state.items() if key != "exemplars"}
        dicts.append({**state, "model": layout.model, "version": layout.version,
                      "summary_settings": [list(settings.quantiles), settings.max_age_seconds,
                                           settings.age_buckets, settings.relative_accuracy],
                      "counters": counters, "histograms": histograms, "summaries": summaries,
                      "extras": extras})
    return dicts


def _int(value: float) -> int:
    if value != int(value):
        raise ValueError(f"{value!r} is not a whole count")
    return int(value)


def _sketch_dict(row: list, start: int, config: tuple, bins: np.ndarray) -> dict:
    middle, end = start + row[POS_N], start + row[POS_N] + row[NEG_N]
    return {"format": 1, "relative_accuracy": config[2], "max_bins": config[3],
            "zero_count": row[ZERO], "sum": row[SKETCH_SUM],
            "positive": {"offset": row[POS_OFFSET], "counts": bins[start:middle].tolist()},
            "negative": {"offset": row[NEG_OFFSET], "counts": bins[middle:end].tolist()}}


def _window_dict(window: DriftWindowLayout, raw: RawSnapshot) -> dict:
    from inferwatch.quality.drift_window import WINDOW_FORMAT, WINDOW_VERSION

    ids, rows, start = raw.drift[window.at]
    total = window.total
    return {"format": WINDOW_FORMAT, "version": WINDOW_VERSION, "bins": list(window.bins),
            "max_age_seconds": window.max_age_seconds, "age_buckets": window.age_buckets,
            "buckets": [{"id": bucket, "rows": count,
                         "counts": raw.bins[start + i * total:start + (i + 1) * total].tolist()}
                        for i, (bucket, count) in enumerate(zip(ids, rows))]}
