"""One line at a time on the demo's terminal.

Pages arrive on the webhook's handler threads while the runner prints its status: a plain
``print`` writes the text and the newline separately, so two lines could end up on one, and
anyone reading the output (a person, a test, ``grep``) would miss a page.

>>> say("PAGE FIRING example")
PAGE FIRING example
"""

from __future__ import annotations

import os
import sys
import threading

_lock = threading.Lock()


def _renew_lock_after_fork() -> None:
    # A fork while another thread was printing would otherwise leave the child's lock held.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_lock_after_fork)


def say(line: str) -> None:
    """Write `line` and its newline in one piece, and flush."""
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
