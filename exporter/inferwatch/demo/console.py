"""One line at a time on the demo's terminal.

Pages arrive on the webhook's handler threads while the runner prints its status: a plain
``print`` writes the text and the newline separately, so two lines could end up on one, and
anyone reading the output (a person, a test, ``grep``) would miss a page.

>>> say("PAGE FIRING example")
PAGE FIRING example
"""

from __future__ import annotations

import sys
import threading

_lock = threading.Lock()


def say(line: str) -> None:
    """Write `line` and its newline in one piece, and flush."""
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
