"""One line at a time on the demo's terminal.

Pages arrive on the webhook's handler threads while the runner prints its status: a plain
``print`` writes the text and the newline separately, so two lines could end up on one, and
anyone reading the output (a person, a test, ``grep``) would miss a page.

>>> say("PAGE FIRING example")
PAGE FIRING example
"""

from __future__ import annotations

import errno
import os
import sys
import threading

_lock = threading.Lock()
# What a write to a reader that has gone fails with: a closed pipe, a hung-up terminal.
_GONE = (errno.EPIPE, errno.EIO)
_reader_gone = False
_main_told = False


def _renew_lock_after_fork() -> None:
    # A fork while another thread was printing would otherwise leave the child's lock held.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_lock_after_fork)


def say(line: str) -> None:
    """Write `line` and its newline in one piece, and flush.

    When the reader has gone (``inferwatch demo | head``, or the terminal was closed), later
    lines go nowhere, and the main thread gets a BrokenPipeError, which the demo takes as a
    request to stop; a webhook or worker thread carries on, since the error is not its to
    handle.
    """
    global _reader_gone, _main_told
    with _lock:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except OSError as exc:
            # A closed terminal answers EIO, not EPIPE: the reader is as gone, and the demo
            # must not end in a traceback (or a webhook thread die) over its own output.
            if exc.errno not in _GONE:
                raise
            _reader_gone = True
            # Without this, every later line and the flush at exit raised again, each
            # with a traceback on the terminal.
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            finally:
                os.close(devnull)
        # Told once, even when a webhook thread met the closed pipe first: the demo then
        # stops, and its last lines during the cleanup go nowhere without raising again.
        if _reader_gone and not _main_told and (
                threading.current_thread() is threading.main_thread()):
            _main_told = True
            raise BrokenPipeError(errno.EPIPE, "the reader of the output has gone")
