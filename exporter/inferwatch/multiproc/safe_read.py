"""Reading one entry of the shared directory without trusting it.

Anyone able to write to the directory can put anything there: a symlink, a FIFO, another
user's file, one larger than any snapshot. :func:`read_entry` opens an entry so that none
of these is followed, blocks or is read whole; what it refuses it raises as
:class:`Skipped`, with the reason the directory counts it under. Apart from the directory
(store.py) because every read of an entry, by a reader or a fold, goes through this one
function.
"""

from __future__ import annotations

import errno
import os
import stat

from inferwatch.multiproc.snapshot_format import MAX_SNAPSHOT_BYTES

# Why an entry was skipped rather than read or removed; "other_reference": a snapshot
# read, but its drift window left out, binned by another reference than the one merged
# (``reference_choice``).
SKIP_REASONS = ("symlink", "not_regular", "foreign_owner", "too_large", "undeletable",
                "other_reference")


class Skipped(Exception):
    """An entry that is not a snapshot this process may read; `reason` is in SKIP_REASONS."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_entry(path: str, trusted_uids: frozenset[int],
               unchanged: tuple[int, int, int] | None = None
               ) -> tuple[bytes | None, tuple[int, int, int]]:
    """The bytes of the regular file at `path` and its (inode, mtime, size) key; no bytes
    (None) when the key equals `unchanged`: the caller has them already.

    Raises :class:`Skipped` for a symlink, anything but a regular file (a FIFO, a device,
    a directory), a file owned by a user not in `trusted_uids`, or one larger than any
    snapshot can be; OSError (FileNotFoundError included) for the rest. Never blocks.

    >>> import tempfile
    >>> read_entry(tempfile.mkdtemp(), frozenset({os.geteuid()}))
    Traceback (most recent call last):
    ...
    inferwatch.multiproc.safe_read.Skipped: not_regular
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Skipped("symlink") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Skipped("not_regular")
        if info.st_uid not in trusted_uids:
            raise Skipped("foreign_owner")
        if info.st_size > MAX_SNAPSHOT_BYTES:
            raise Skipped("too_large")
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        if key == unchanged:
            return None, key
        chunks, left = [], MAX_SNAPSHOT_BYTES + 1  # it may grow after fstat
        # Asking for the size fstat gave (plus one, to see the end): a larger request
        # allocates that much on every read, for every worker's file.
        want = info.st_size + 1
        while left > 0 and (chunk := os.read(fd, min(left, want))):
            want = 1 << 16
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise Skipped("too_large")
        return b"".join(chunks), key
    finally:
        os.close(fd)

