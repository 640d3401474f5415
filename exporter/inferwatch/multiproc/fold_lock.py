"""The fold lock of a snapshot directory: ``.fold.lock``, ``flock``-ed exclusively by the one
process folding and shared by a reader that holds folds off for one read.

``flock`` needs no write access: anyone who can open the file can hold it, and one who
holds it for good stops every fold, so dead workers' snapshots pile up. The file is
created private (0600), one left readable to others (by an earlier release) is made
private by the first fold of its owner's, and one owned by a user this process does not
trust is never locked: it is counted as ``foreign_owner`` like another user's snapshot.
A fold that finds the lock held, or refused, for longer than FOLD_LOCK_STALL_SECONDS in a
row is counted as a ``multiproc_fold`` fault (once per such span) and logged.

Apart from the directory (store.py) because who may hold the lock, and for how long, is a
question of its own; the directory only asks for it.

>>> import tempfile
>>> lock = FoldLock(tempfile.mkdtemp(), frozenset({os.geteuid()}), count_skip=print)
>>> with lock.exclusive(timeout=0.0) as locked:
...     locked, oct(os.stat(lock.path).st_mode & 0o777)
(True, '0o600')
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator

from inferwatch import faults

LOCK = ".fold.lock"
LOCK_MODE = 0o600
# How long this process may find the lock held (or refused) at every try before a fold
# skipped for it counts as a fault: a fold holds it for milliseconds.
FOLD_LOCK_STALL_SECONDS = 60.0


class FoldLock:
    """The lock file of the directory `path`; `count_skip(reason)` counts a lock file
    refused or replaced (``symlink``, ``foreign_owner``)."""

    def __init__(self, path: str, trusted_uids: frozenset[int],
                 count_skip: Callable[[str], None]) -> None:
        self.path = os.path.join(path, LOCK)
        self.trusted_uids = trusted_uids
        self._count_skip = count_skip
        # Monotonic time of the first of the tries in a row that could not take the lock.
        self._blocked_since: float | None = None

    @contextlib.contextmanager
    def exclusive(self, timeout: float, create: bool = True) -> Iterator[bool]:
        """The lock held exclusively within `timeout` seconds (True), or not (False).

        Without `create`, a lock file that is missing or cannot be opened is False too;
        with it, such an error is raised.
        """
        flags = (os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                 | (os.O_CREAT if create else 0))
        try:
            fd = self._open(flags)
        except OSError:
            if create:
                raise
            # No one has ever folded here, or no one can (a directory under the lock's
            # name): a clear before the server starts goes on without it.
            yield False
            return
        try:
            started = time.monotonic()
            locked = self._trusted(fd) and flock_within(fd, fcntl.LOCK_EX, timeout, pause=0.02)
        except BaseException:
            os.close(fd)
            raise
        if locked:
            self._blocked_since = None
        else:
            self._blocked(started)
        with _held(fd, locked) as held:
            yield held

    @contextlib.contextmanager
    def shared(self, timeout: float) -> Iterator[bool]:
        """The lock held shared (folds wait, readers do not), opened read-only; False when
        it cannot be had (an exporter reading as another user cannot open it)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            yield False
            return
        try:
            locked = flock_within(fd, fcntl.LOCK_SH, timeout, pause=0.01)
        except OSError:
            locked = False
        except BaseException:
            os.close(fd)
            raise
        with _held(fd, locked) as held:
            yield held

    def _open(self, flags: int) -> int:
        try:
            return os.open(self.path, flags, LOCK_MODE)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
        # A symlink under the lock's name (a copied directory, a planted link): no one can
        # hold it (every opener refuses links), and keeping it would stop every fold and
        # clear for good.
        self._count_skip("symlink")
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISLNK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        return os.open(self.path, flags, LOCK_MODE)

    def _trusted(self, fd: int) -> bool:
        """Whether the open lock file may be locked: owned by a trusted user. One of this
        process's user that others may open (an earlier release made it 0644) is made
        private first, so no one else opens it from now on."""
        status = os.fstat(fd)
        if status.st_uid not in self.trusted_uids:
            # Whoever made it can hold it at will; locking it would hand them every fold.
            self._count_skip("foreign_owner")
            return False
        if status.st_mode & 0o077 and status.st_uid == os.geteuid():
            with contextlib.suppress(OSError):
                os.fchmod(fd, LOCK_MODE)
        return True

    def _blocked(self, started: float) -> None:
        """A try that could not take the lock: one more fault each FOLD_LOCK_STALL_SECONDS
        that every try since `_blocked_since` failed."""
        since = self._blocked_since
        if since is None:
            self._blocked_since = started
            return
        held = time.monotonic() - since
        if held < FOLD_LOCK_STALL_SECONDS:
            return
        self._blocked_since = time.monotonic()
        try:
            owner = os.stat(self.path, follow_symlinks=False).st_uid
        except OSError:
            owner = None
        if owner is not None and owner not in self.trusted_uids:
            # Never locked by a trusted process, so removing it cannot let two folds run.
            why = (f"is owned by uid {owner}, a user this process does not trust, and is "
                   "never locked: remove it, the next fold makes a private one")
        else:
            why = f"was held by another process at every try for {held:.0f}s"
        faults.record("multiproc_fold", TimeoutError(
            f"fold skipped: the fold lock {self.path} {why}; dead workers' snapshots wait "
            "to be folded"))


@contextlib.contextmanager
def _held(fd: int, locked: bool) -> Iterator[bool]:
    """Whether the lock on `fd` is held, for the time of a ``with``: released (if held)
    and `fd` closed at its end, whatever ends it."""
    try:
        if locked:
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        else:
            yield False
    finally:
        os.close(fd)


def flock_within(fd: int, operation: int, timeout: float, pause: float) -> bool:
    """Take the lock `operation` (``LOCK_EX`` or ``LOCK_SH``) on `fd` within `timeout`
    seconds, trying again every `pause`; whether it was taken."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
