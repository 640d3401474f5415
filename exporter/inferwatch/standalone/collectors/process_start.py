"""A process's start, read so that it identifies that process across scrapes.

Both the GPU collector (process names cached by pid) and the process collector (a
worker's pidfile against the process now holding that pid) need to tell a process from a
successor that got its pid.

>>> process_started(PID_MAX + 1) is None  # no process has a pid above the kernel's limit
True
"""

from __future__ import annotations

import psutil

# Linux's PID_MAX_LIMIT: a larger pid in a process record is a misread record.
PID_MAX = 4_194_304


def process_started(pid: int) -> float | None:
    """When the process with this pid started, as an identity of that process; None when
    this pid namespace cannot see it. Only equality means anything: the unit is clock
    ticks where ``/proc`` has them, else psutil's seconds.

    On Linux, the start in clock ticks since boot (``/proc/<pid>/stat``, field 22), which
    nothing changes: psutil's ``create_time()`` adds the boot time, whole seconds that
    ``/proc/stat`` derives from the wall clock at each read, so one process could read
    one second apart on two scrapes, and a successor started exactly a second after the
    pid's last holder could read as that same process and keep its name.

    >>> import os
    >>> process_started(os.getpid()) == process_started(os.getpid())
    True
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
        # The name (field 2) may hold spaces and parentheses: fields follow its last ")".
        return float(data[data.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        pass
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError, ValueError):
        return None
