"""Snapshot frames taken apart and put together again with valid checksums: what a crafted
or damaged file looks like once it passes the checksum (shared by the snapshot tests)."""

from __future__ import annotations

import zlib

import numpy as np

from inferwatch.multiproc.snapshot_format import _CRC, _LENGTHS, FORMAT_VERSION, MAGIC, SECTIONS
from inferwatch.quality.reference import Reference

REFERENCE = Reference.from_data({"x": np.random.default_rng(3).normal(size=400),
                                 "color": ["red", "green", "blue", "red"] * 100},
                                predictions=np.random.default_rng(4).random(400))


def sections(data: bytes) -> dict[str, bytes]:
    _, *lengths, _ = _LENGTHS.unpack_from(data, len(MAGIC))
    position, found = len(MAGIC) + _LENGTHS.size, {}
    for name, length in zip(SECTIONS, lengths):
        found[name] = data[position:position + length]
        position += length
    return found


def framed(parts: dict[str, bytes]) -> bytes:
    """A frame around `parts` whose checksums hold."""
    ordered = [parts[name] for name in SECTIONS]
    head = MAGIC + _LENGTHS.pack(FORMAT_VERSION, *map(len, ordered), zlib.crc32(ordered[0]))
    rest = b"".join(ordered[1:])
    return head + ordered[0] + rest + _CRC.pack(zlib.crc32(rest, zlib.crc32(head)))
