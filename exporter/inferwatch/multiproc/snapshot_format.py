"""The snapshot file of one worker (or of the archive of dead ones): a versioned binary frame.

A snapshot is everything a process publishes in multi-worker mode: the states of its
model versions (``ModelState.to_dict()``) plus its process-wide counters. Sketch bin
counts are most of the bytes, so they are moved out of the JSON into one packed array;
parsing a list of integers in JSON costs about ten times more than reading the same
numbers from a buffer, and a merged scrape reads every worker's file.

The frame::

    b"IWSNAP\\n"  format (1 byte)  header length (8 bytes, big-endian)  blob length (8)
    header: UTF-8 JSON    blob: the sketch bin counts, little-endian    CRC-32 (4)

The CRC covers everything before it, so a truncated or damaged file (a full disk, a copy
cut short) is detected and skipped rather than misread.

A drift reference (tens of kilobytes of JSON) is the same in every model version that uses
it and in every worker: the header keeps each distinct one once, as a JSON string in
``shared``, and an extra points at it (``{"shared": index}``). A reader parses a given
reference text once per process and hands out the same parsed object, which decoders
treat as read-only and may memoise on (``DriftState.from_dict`` does).

>>> from inferwatch.core.state import ModelState
>>> state = ModelState("fraud", "1")
>>> state.summary("inferwatch_prediction", ("value",)).observe(np.array([0.2, 0.4]), now=0.0)
>>> raw = decode(encode(Snapshot(models=[model_dict(state)])))
>>> exact_models(raw)[0].summaries["inferwatch_prediction"][("value",)].count
2
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferwatch.core.rolling_sketch import RollingSketch
from inferwatch.core.state import ModelState

FORMAT_VERSION = 1
MAGIC = b"IWSNAP\n"
_LENGTHS = struct.Struct(">BQQ")
_CRC = struct.Struct(">I")
# A header past this is not ours (or is damaged); refusing it bounds what a read allocates.
MAX_HEADER_BYTES = 256 << 20
MAX_BLOB_BYTES = 2 << 30
# The largest file a valid frame can be: readers never read past it (a FIFO, /dev/zero).
MAX_SNAPSHOT_BYTES = len(MAGIC) + _LENGTHS.size + MAX_HEADER_BYTES + MAX_BLOB_BYTES + _CRC.size
# Process-wide counters a snapshot carries besides the model states, summed across files.
PROCESS_COUNTERS = ("internal_errors", "overflow", "events_dropped", "event_values_dropped",
                    "files_skipped")


class SnapshotError(ValueError):
    """A snapshot file that is not a complete, valid snapshot of this format."""




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
    """A decoded file: the JSON header and the packed sketch counts it points into."""

    header: dict[str, Any]
    counts: np.ndarray

    @property
    def folded(self) -> list[str]:
        return [str(name) for name in self.header.get("folded", ())]


# --- writing --------------------------------------------------------------------------------

def encode(snapshot: Snapshot) -> bytes:
    """The snapshot as one self-checking byte string."""
    blob_parts: list[np.ndarray] = []
    shared: dict[str, int] = {}
    header = {
        "format": FORMAT_VERSION,
        "written_at": snapshot.written_at,
        "models": [_pack_model(data, blob_parts, snapshot.written_at, shared)
                   for data in snapshot.models],
        "shared": list(shared),
        "internal_errors": snapshot.internal_errors,
        "overflow": snapshot.overflow,
        "events_dropped": snapshot.events_dropped,
        "event_values_dropped": snapshot.event_values_dropped,
        "files_skipped": snapshot.files_skipped,
        "dependencies": snapshot.dependencies,
        "folded": snapshot.folded,
    }
    counts = np.concatenate(blob_parts) if blob_parts else np.zeros(0, dtype=np.int64)
    header["dtype"] = _narrowest(counts)
    blob = counts.astype(header["dtype"]).tobytes()
    head = json.dumps(header, separators=(",", ":")).encode()
    body = MAGIC + _LENGTHS.pack(FORMAT_VERSION, len(head), len(blob)) + head + blob
    return body + _CRC.pack(zlib.crc32(body))


def model_dict(state: ModelState) -> dict[str, Any]:
    """What a snapshot stores of one model version: ``state.to_dict()``, extras included.

    Called with the state's lock held; the rest of :func:`encode` needs no lock.
    """
    return state.to_dict()


def _narrowest(counts: np.ndarray) -> str:
    """The smallest little-endian type holding every count: fewer bytes for every scrape."""
    largest = int(counts.max()) if counts.size else 0
    for dtype, limit in (("<u1", 1 << 8), ("<u2", 1 << 16), ("<u4", 1 << 32)):
        if largest < limit:
            return dtype
    return "<i8"


def _pack_model(data: dict[str, Any], blob_parts: list[np.ndarray], written_at: float,
                shared: dict[str, int]) -> dict[str, Any]:
    return {**data, "extras": {name: _share_reference(extra, shared)
                               for name, extra in data.get("extras", {}).items()},
            "summaries": {
        metric: [_pack_summary(labels, summary, blob_parts, written_at)
                 for labels, summary in rows]
        for metric, rows in data["summaries"].items()
    }}


def _share_reference(extra: Any, shared: dict[str, int]) -> Any:
    reference = extra.get("reference") if isinstance(extra, dict) else None
    if not isinstance(reference, dict):
        return extra
    text = json.dumps(reference, separators=(",", ":"))
    return {**extra, "reference": {"shared": shared.setdefault(text, len(shared))}}


def _pack_summary(labels: list[str], summary: dict, blob_parts: list[np.ndarray],
                  written_at: float) -> list:
    rolling = summary["sketch"]
    config = [rolling["max_age_seconds"], rolling["age_buckets"], rolling["relative_accuracy"],
              rolling["max_bins"]]
    newest = _bucket_id(config, written_at)
    buckets, in_window = [], []
    for bucket_id, sketch in rolling["buckets"]:
        positive, negative = sketch["positive"], sketch["negative"]
        arrays = []
        for store in (positive, negative):
            array = np.asarray(store["counts"], dtype=np.int64)
            arrays.append(array)
            if array.size:
                blob_parts.append(array)
        buckets.append([bucket_id, sketch["zero_count"], sketch["sum"],
                        positive["offset"], arrays[0].size, negative["offset"], arrays[1].size])
        if newest - config[1] < bucket_id <= newest:
            in_window.append((sketch, positive["offset"], arrays[0], negative["offset"],
                              arrays[1]))
    return [labels, summary["count"], summary["sum"], config, buckets,
            _pack_window(newest, in_window, config[3], blob_parts)]


def _pack_window(newest: int, in_window: list, max_bins: int,
                 blob_parts: list[np.ndarray]) -> list | None:
    """The buckets of the window ending at `newest`, merged: what a reader at the same
    moment needs instead of every bucket."""
    if not in_window:
        return None
    packed = [newest, sum(entry[0]["zero_count"] for entry in in_window),
              sum(entry[0]["sum"] for entry in in_window)]
    for offset_at, array_at in ((1, 2), (3, 4)):
        dense = dense_bins([(entry[offset_at], entry[array_at]) for entry in in_window],
                           max_bins)
        if dense is None:
            packed += [0, 0]
        else:
            blob_parts.append(dense[1])
            packed += [dense[0], int(dense[1].size)]
    return packed


_templates: dict[tuple, RollingSketch] = {}


def _bucket_id(config: list, now: float) -> int:
    key = tuple(config)
    template = _templates.get(key)
    if template is None:
        template = _templates[key] = RollingSketch(*config)
    return template.bucket_id(now)


# --- reading --------------------------------------------------------------------------------

def decode(data: bytes) -> RawSnapshot:
    """Check the frame and split it; SnapshotError says what is wrong."""
    fixed = len(MAGIC) + _LENGTHS.size
    if len(data) < fixed + _CRC.size or not data.startswith(MAGIC):
        raise SnapshotError("not an inferwatch snapshot (bad magic or too short)")
    version, head_len, blob_len = _LENGTHS.unpack_from(data, len(MAGIC))
    if version != FORMAT_VERSION:
        raise SnapshotError(f"snapshot format {version} is not {FORMAT_VERSION}")
    if head_len > MAX_HEADER_BYTES or blob_len > MAX_BLOB_BYTES:
        raise SnapshotError("snapshot lengths are out of range")
    end = fixed + head_len + blob_len
    if len(data) != end + _CRC.size:
        raise SnapshotError(f"snapshot is {len(data)} bytes, its frame says {end + _CRC.size}"
                            " (truncated?)")
    (crc,) = _CRC.unpack_from(data, end)
    if zlib.crc32(memoryview(data)[:end]) != crc:
        raise SnapshotError("snapshot checksum mismatch (damaged file)")
    try:
        header = json.loads(data[fixed:fixed + head_len])
        dtype = np.dtype(header["dtype"])
        if header.get("format") != FORMAT_VERSION or dtype.kind not in "iu":
            raise ValueError("bad format or dtype")
        counts = np.frombuffer(data, dtype=dtype, count=blob_len // dtype.itemsize,
                               offset=fixed + head_len)
        if counts.size * dtype.itemsize != blob_len or (counts.size and counts.min() < 0):
            raise ValueError("the bin counts are not whole non-negative integers")
        if not isinstance(header.get("models"), list):
            raise ValueError("models is not a list")
        _resolve_shared(header)
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"snapshot header is invalid: {exc}") from exc
    return RawSnapshot(header, counts)


# reference text -> its parsed JSON, shared by every snapshot that holds the same text
_shared_documents: dict[str, Any] = {}
MAX_SHARED_DOCUMENTS = 64


def _resolve_shared(header: dict[str, Any]) -> None:
    """Put each parsed shared document where the models point at it."""
    texts = header.get("shared", [])
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ValueError("shared is not a list of strings")
    documents = [_shared_document(text) for text in texts]
    for model in header["models"]:
        extras = model.get("extras") if isinstance(model, dict) else None
        if not isinstance(extras, dict):
            continue
        for name, extra in extras.items():
            pointer = extra.get("reference") if isinstance(extra, dict) else None
            if isinstance(pointer, dict) and set(pointer) == {"shared"}:
                index = pointer["shared"]
                if type(index) is not int or not 0 <= index < len(documents):
                    raise ValueError(f"extra {name!r} points at no shared document")
                extras[name] = {**extra, "reference": documents[index]}


def _shared_document(text: str) -> Any:
    document = _shared_documents.get(text)
    if document is None:
        document = json.loads(text)
        if len(_shared_documents) >= MAX_SHARED_DOCUMENTS:
            _shared_documents.clear()  # model versions come and go; the live ones return
        _shared_documents[text] = document
    return document


def exact_models(raw: RawSnapshot) -> list[ModelState]:
    """Full :class:`ModelState` objects, every age bucket kept (what folding needs).

    Raises SnapshotError for any inconsistency between the header and the counts.
    """
    try:
        return [_exact_model(model, raw.counts, cursor)
                for model, cursor in zip(raw.header["models"], _model_cursors(raw))]
    except SnapshotError:
        raise
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise SnapshotError(f"snapshot model state is invalid: {exc}") from exc


def _model_cursors(raw: RawSnapshot) -> list[int]:
    """Where each model's sketch counts start in the blob."""
    cursors, position = [], 0
    for model in raw.header["models"]:
        cursors.append(position)
        for rows in model["summaries"].values():
            for row in rows:
                for bucket in [*row[4], *([row[5]] if row[5] is not None else [])]:
                    position += int(bucket[4]) + int(bucket[6])
    if position != raw.counts.size:
        raise SnapshotError(f"snapshot header describes {position} bin counts, "
                            f"the file holds {raw.counts.size}")
    return cursors


def _exact_model(model: dict, counts: np.ndarray, position: int) -> ModelState:
    summaries = {}
    for metric, rows in model["summaries"].items():
        out_rows = []
        for labels, count, total, config, buckets, window in rows:
            max_age, age_buckets, accuracy, max_bins = config
            sketch_buckets = []
            for bucket_id, zero, sketch_sum, pos_offset, pos_n, neg_offset, neg_n in buckets:
                positive = counts[position:position + pos_n].tolist()
                position += pos_n
                negative = counts[position:position + neg_n].tolist()
                position += neg_n
                sketch_buckets.append([bucket_id, {
                    "format": 1, "relative_accuracy": accuracy, "max_bins": max_bins,
                    "zero_count": zero, "sum": sketch_sum,
                    "positive": {"offset": pos_offset, "counts": positive},
                    "negative": {"offset": neg_offset, "counts": negative},
                }])
            if window is not None:  # a merged copy of some buckets above: skipped here
                position += int(window[4]) + int(window[6])
            rolling = {"format": 1, "max_age_seconds": max_age, "age_buckets": age_buckets,
                       "relative_accuracy": accuracy, "max_bins": max_bins,
                       "buckets": sketch_buckets}
            out_rows.append([labels, {"sketch": rolling, "count": count, "sum": total}])
        summaries[metric] = out_rows
    return ModelState.from_dict({**model, "summaries": summaries})


def dense_bins(segments: list[tuple[int, np.ndarray]],
               max_bins: int) -> tuple[int, np.ndarray] | None:
    """Bin segments (first key, counts) summed into one run: (first key, counts), or None.

    Past `max_bins` keys the lowest ones fold into the lowest kept key, as the sketch's
    own store does, so the result does not depend on how values were split across workers
    (and nothing larger than `max_bins` is ever allocated).

    >>> dense_bins([(3, np.array([1, 2])), (4, np.array([5]))], max_bins=10)
    (3, array([1, 7]))
    """
    segments = [(offset, counts) for offset, counts in segments if counts.size]
    if not segments:
        return None
    high = max(offset + counts.size - 1 for offset, counts in segments)
    low = max(min(offset for offset, _ in segments), high - max_bins + 1)
    dense = np.zeros(high - low + 1, dtype=np.int64)
    for offset, counts in segments:
        if offset < low:
            cut = min(low - offset, counts.size)
            dense[0] += int(counts[:cut].sum())
            counts, offset = counts[cut:], low
        dense[offset - low:offset - low + counts.size] += counts
    nonzero = np.flatnonzero(dense)
    if not nonzero.size:
        return None
    return low + int(nonzero[0]), dense[nonzero[0]:nonzero[-1] + 1]
