"""A barrier across gunicorn workers, so a test can be certain every worker served a call.

A request with ``hold=1`` records its worker's pid in ``$HOLD_DIR`` and then blocks its
worker, thread and event loop alike, until ``$HOLD_FOR`` distinct workers have arrived.
A blocked worker accepts no connection, so while the test keeps opening new ones, each is
taken by a worker that has not arrived yet: the spread no longer depends on how the kernel
schedules accept().
"""

from __future__ import annotations

import os
import time

HOLD_SECONDS = 60.0


def hold_until_every_worker_arrived() -> None:
    directory = os.environ["HOLD_DIR"]
    expected = int(os.environ["HOLD_FOR"])
    open(os.path.join(directory, str(os.getpid())), "w").close()
    deadline = time.monotonic() + HOLD_SECONDS
    while len(os.listdir(directory)) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
