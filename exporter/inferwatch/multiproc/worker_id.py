"""Who wrote a file of the shared directory, and whether that process still runs.

A worker is named by its pid, its start time and the kernel's boot id, so a reused pid (or
the same pid and start of a previous boot) is another worker; whether one still runs is
read from ``/proc/<pid>/stat`` where there is one, else from psutil. Apart from the
directory (store.py) because it asks the system about processes, not the directory about
files: the directory asks it which snapshots and writes in progress have lost their writer.

>>> WorkerId.parse("worker-12-345.snapshot")
WorkerId(pid=12, start=345, boot='')
>>> temp_owner("archive.snapshot.tmp-12-345")
WorkerId(pid=12, start=345, boot='')
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass

import psutil

WORKER = re.compile(r"worker-(\d+)-(\d+)(?:-([0-9a-f]{32}))?\.snapshot")
# A worker's temp file carries its writer's boot id in the snapshot's name; an archive's
# temp file has none, and is judged by pid and start alone.
_TEMP = re.compile(
    r"(?:worker-\d+-\d+(?:-([0-9a-f]{32}))?|archive)\.snapshot\.tmp-(\d+)-(\d+)")
# Where the kernel gives start times in ticks since boot (Linux), they are exact and
# never move. Elsewhere psutil's start time adds the wall-clock boot time: read twice it
# can differ by a second or so; a reused pid is never that quick.
_PROC_STAT = sys.platform.startswith("linux") and os.path.exists("/proc/self/stat")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
WALL_CLOCK_TOLERANCE_CENTISECONDS = 200
# A start time counted from boot stays below this (it would take 31 years of uptime); one
# counted from the epoch is past it since 2001. Releases of snapshot format 1 named their
# workers by wall-clock start on Linux too: read as a time since boot, a live old worker's
# start never matched, and it was taken for dead while it still wrote its file.
EPOCH_START_CENTISECONDS = 10**11


def _read_boot_id() -> str:
    """This boot's id (32 hex digits) where the kernel gives one, else ''."""
    if not _PROC_STAT:
        return ""  # start times there are wall-clock times: one boot's are another's
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as handle:
            text = handle.read(64).decode("ascii", "replace")
    except OSError:
        return ""
    digits = text.strip().replace("-", "").lower()
    return digits if re.fullmatch(r"[0-9a-f]{32}", digits) else ""


BOOT_ID = _read_boot_id()


@dataclass(frozen=True)
class WorkerId:
    """A process, told apart from a later one that reuses its pid by its start time.

    >>> WorkerId.current().alive()
    True
    >>> WorkerId.parse(WorkerId(12, 345).name)
    WorkerId(pid=12, start=345, boot='')
    """

    pid: int
    # Process start time in centiseconds: since boot on Linux, else (and in the names of
    # releases before times since boot, see EPOCH_START_CENTISECONDS) since the epoch.
    start: int
    boot: str = ""  # the boot id the start time counts from ('' where there is none)

    @classmethod
    def current(cls) -> WorkerId:
        if _PROC_STAT:
            found = _proc_stat(os.getpid())
            if found is not None:
                return cls(os.getpid(), found[1], BOOT_ID)
        return cls(os.getpid(), _start_of(psutil.Process()))

    @classmethod
    def parse(cls, name: str) -> WorkerId | None:
        match = WORKER.fullmatch(name)
        return cls(int(match[1]), int(match[2]), match[3] or "") if match else None

    @property
    def name(self) -> str:
        boot = f"-{self.boot}" if self.boot else ""
        return f"worker-{self.pid}-{self.start}{boot}.snapshot"

    def alive(self, stats: dict[int, tuple[str, int] | None] | None = None) -> bool:
        """Whether this very process still runs (a zombie has stopped: it counts as dead).

        `stats` (pid -> what ``/proc/<pid>/stat`` gave) shares lookups between the workers
        of one pass over a directory: several files of one pid (a worker's snapshot and
        temp file, pids reused across restarts) cost one lookup, not one each.
        """
        if self.boot and self.boot != BOOT_ID:
            return False  # of another boot: every process of that one has ended
        if _PROC_STAT and (self.boot or self.start < EPOCH_START_CENTISECONDS):
            try:
                if stats is None:
                    found = _proc_stat(self.pid)
                elif self.pid in stats:
                    found = stats[self.pid]
                else:
                    found = stats[self.pid] = _proc_stat(self.pid)
            except OSError:
                return True  # it exists; never fold what might still be writing
            if found is None:
                return False
            state, start = found
            return state not in ("Z", "X", "x") and start == self.start
        try:
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            # A wall-clock start: as its writer judged it, a second or so either way.
            return abs(_start_of(process) - self.start) <= WALL_CLOCK_TOLERANCE_CENTISECONDS
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return False
        except psutil.AccessDenied:
            return True  # it exists; never fold what might still be writing


def _start_of(process: psutil.Process) -> int:
    return round(process.create_time() * 100)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """The state letter and start time (centiseconds since boot) of process `pid`, from
    ``/proc/<pid>/stat``; None when there is no such process.

    A wall-clock start time (psutil's) moves when the clock is stepped (NTP, a resumed VM):
    every live worker would then look like a dead one whose pid was reused, be folded,
    and have what it publishes afterwards skipped as already folded.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0].decode("ascii", "replace"), round(int(fields[19]) * 100 / _CLOCK_TICKS)


def alive(name: str, stats: dict[int, tuple[str, int] | None] | None = None) -> bool:
    """Whether the writer of the snapshot `name` still runs (never False on doubt)."""
    worker = WorkerId.parse(name)
    return worker is None or worker_alive(worker, stats)


def worker_alive(worker: WorkerId, stats: dict[int, tuple[str, int] | None] | None) -> bool:
    """Whether `worker` still runs; True when that cannot be told (never fold what might
    still be writing)."""
    try:
        return worker.alive(stats)
    except (OSError, ValueError, IndexError, psutil.Error):
        return True


def temp_owner(name: str) -> WorkerId | None:
    """The writer of the temp file `name` (a write in progress), or None when `name` is
    not one."""
    match = _TEMP.fullmatch(name)
    return WorkerId(int(match[2]), int(match[3]), match[1] or "") if match else None

