"""A gunicorn config file for the file download tests: ``gunicorn -c sendfile_counter.py``.

Each worker counts what ``os.sendfile`` sends, one line of bytes per call in the file named
by ``SENDFILE_LOG``: a test reads whether gunicorn sent a body by sendfile, and how much.
"""

from __future__ import annotations

import os
from typing import Any


def post_worker_init(worker: Any) -> None:
    log_path = os.environ["SENDFILE_LOG"]
    real_sendfile = os.sendfile

    def counted_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int,
                         *args: Any, **kwargs: Any) -> int:
        sent = real_sendfile(out_fd, in_fd, offset, count, *args, **kwargs)
        with open(log_path, "a") as log:
            log.write(f"{sent}\n")
        return sent

    # socket.sendfile looks os.sendfile up at each call, so gunicorn's sends come here.
    os.sendfile = counted_sendfile
