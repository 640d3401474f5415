"""CPU, memory, threads and file descriptors of the model-serving processes (psutil).

The processes are chosen each scrape, so restarts are followed: by pid, by pidfile
(re-read every scrape) or by name. A name matches the process name, or the base name of
any command-line argument that is not an option, so ``gunicorn`` finds
``python /venv/bin/gunicorn app:app`` and ``python -m uvicorn app:app``. The exporter
never watches itself unless its pid is given explicitly. Descendants of every chosen
process are included by default (gunicorn and uvicorn workers are children of a
master). A process that vanishes between listing and reading is left out, never an
error.

>>> ProcessCollector(pids=[1]).name
'process'
"""

from __future__ import annotations

import argparse
import logging
import os
import stat
import time
from collections.abc import Iterable, Mapping, Sequence

import psutil
from prometheus_client.metrics_core import Metric

from inferwatch.standalone.collectors.process_start import process_started
from inferwatch.standalone.scrape import Collector, MetricSet, register

log = logging.getLogger("inferwatch.standalone.process")

# A runaway fork loop under a watched master must not become a cardinality explosion.
MAX_PROCESSES = 512
CAP_WARNING_INTERVAL_SECONDS = 60.0
_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess)


# A pidfile's mtime is a wall-clock time, so the start it is compared with is one too
# (psutil's: the boot time, in whole seconds, plus the start ticks): one second of slack.
START_TOLERANCE_SECONDS = 1.0

# Linux's PID_MAX_LIMIT, the ceiling of kernel.pid_max: no process has a larger pid.
PID_MAX_LIMIT = 4_194_304

# The kernel keeps a process name (comm) in TASK_COMM_LEN = 16 bytes with the NUL: 15 bytes
# of UTF-8, so a non-ASCII name is cut after fewer than 15 characters.
COMM_BYTES = 15


def read_pidfile(path: str) -> int | None:
    """The pid in a pidfile, or None while it is missing, not yet written, or not a file.

    >>> read_pidfile("/nonexistent/pidfile") is None
    True
    """
    found = read_pidfile_stamped(path)
    return None if found is None else found[0]


def read_pidfile_stamped(path: str) -> tuple[int, tuple[int, int], float] | None:
    """The pid in a pidfile, the file's (inode, mtime) and its mtime in seconds; None
    while it is missing, not yet written, or not a file.

    The file is opened without blocking and read only when it is a regular file: a named
    pipe (or a device) in its place would otherwise park the collector's thread in open()
    until some writer came, and the process collector would report nothing meanwhile.

    >>> read_pidfile_stamped("/nonexistent/pidfile") is None
    True
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        data = os.read(fd, 64)
    except OSError:
        return None
    finally:
        os.close(fd)
    text = data.decode("ascii", errors="replace").strip()
    if not (text.isdigit() and 0 < int(text) <= PID_MAX_LIMIT):
        return None
    return int(text), (info.st_ino, info.st_mtime_ns), info.st_mtime


def matches_name(name: str, process_name: str, cmdline: Sequence[str]) -> bool:
    """Whether `name` is the process name or the base name of a non-option argument.

    >>> matches_name("gunicorn", "python3", ["python3", "/venv/bin/gunicorn", "app:app"])
    True
    >>> matches_name("gunicorn", "python3", ["python3", "--process.name=gunicorn"])
    False

    A process title in the ``NAME: role`` form counts as NAME: with setproctitle installed,
    gunicorn renames its master and workers ``gunicorn: master [app:app]`` and
    ``gunicorn: worker [app:app]``, and neither the name nor any argument is then
    ``gunicorn`` (postgres, sshd and nginx title themselves the same way).

    >>> matches_name("gunicorn", "gunicorn: master [app:app]", ["gunicorn: master [app:app]"])
    True
    >>> matches_name("gunicorn", "gunicorn: maste", ["gunicorn:", "master", "[app:app]"])
    True
    >>> matches_name("gunicorn", "gunicorn-helper", ["gunicorn-helper: idle"])
    False

    The name as ``ps -e``, ``top`` and ``pgrep`` show it, cut by the kernel to 15 bytes,
    matches too (psutil gives the full name where it can):

    >>> matches_name("my-long-model-s", "my-long-model-server", ["/opt/my-long-model-server"])
    True

    A NAME that is a path matches an argument that is that path:

    >>> matches_name("/venv/bin/gunicorn", "python3", ["python3", "/venv/bin/gunicorn"])
    True
    """
    if process_name == name or _titled(name, process_name) or _is_comm_of(name, process_name):
        return True
    if cmdline and _titled(name, cmdline[0]):
        return True
    # A path names the program by its path: `/srv/venv/bin/gunicorn` (as ps shows it).
    return any(
        not arg.startswith("-") and (os.path.basename(arg) == name or arg == name)
        for arg in cmdline
    )


def _utf8(text: str) -> bytes | None:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None


def _is_comm_of(name: str, process_name: str) -> bool:
    """Whether `name` is `process_name` cut to the kernel's 15 bytes (and is not all of it)."""
    short, full = _utf8(name), _utf8(process_name)
    return (short is not None and full is not None and len(short) == COMM_BYTES
            and len(full) > COMM_BYTES and full.startswith(short))


def full_name(name: str, cmdline: Sequence[str]) -> str:
    """The process name, whole where the kernel cut it to 15 bytes and the program's path
    still holds it.

    psutil restores a cut name only when it is 15 characters long, so a name with
    non-ASCII letters (cut after fewer characters, maybe mid-letter) stayed cut, and the
    ``process`` label read ``模型服务器`` for ``模型服务器推理``.

    >>> full_name("模型服务器", ["/srv/模型服务器推理", "--port=8000"])
    '模型服务器推理'
    >>> full_name("python3", ["/usr/bin/python3", "serve.py"])
    'python3'

    A script started through its ``#!`` line is named by the kernel after the script, but
    its command line starts with the interpreter (and the options on that line): the name
    is the first argument after them that starts with the kernel's 15 bytes.

    >>> full_name("my-long-model-s", ["/venv/bin/python", "-u", "./bin/my-long-model-server"])
    'my-long-model-server'
    """
    short = _utf8(name)
    if short is None or len(short) != COMM_BYTES:
        return name
    # The program's own path first: for a binary it is the name, even when a later argument
    # (a weights file named after the server) starts with the same 15 bytes.
    for position, argument in enumerate(cmdline):
        if position and argument.startswith("-"):
            continue  # an interpreter's option, never the program
        extended = os.path.basename(argument)
        whole = _utf8(extended)
        if whole is not None and whole.startswith(short):
            return extended
    return name


def _titled(name: str, title: str) -> bool:
    # psutil splits a title without NUL separators at its spaces: "gunicorn:" alone.
    return title == f"{name}:" or title.startswith(f"{name}: ")


def descendants(roots: Iterable[int], parents: Mapping[int, int]) -> set[int]:
    """Every pid below `roots` in the tree that `parents` (pid -> parent pid) describes.

    Linear in the size of `parents`: the links are inverted once, then walked once.

    >>> sorted(descendants([1], {2: 1, 3: 2, 4: 1, 5: 9}))
    [2, 3, 4]
    """
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        if pid != ppid:
            children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _wrappers_of(own: int, table: Mapping[int, psutil.Process],
                 parents: Mapping[int, int]) -> set[int]:
    """The ancestors that started this exporter with its own options (``timeout``, tini,
    ``docker run --init``, sudo): their command lines end with ours, so the name after
    ``--process.name`` in them would match, and the wrapper be watched as the server.

    >>> _wrappers_of(1, {}, {})
    set()
    """
    own_process = table.get(own)
    cmdline = list((getattr(own_process, "info", None) or {}).get("cmdline") or ())
    options = next((i for i, arg in enumerate(cmdline) if arg.startswith("-")), None)
    if options is None:
        return set()
    ours, found, pid = cmdline[options:], set(), parents.get(own)
    while pid is not None and pid not in found and pid in table and pid != own:
        theirs = (getattr(table[pid], "info", None) or {}).get("cmdline") or ()
        if list(theirs[-len(ours):]) == ours:
            found.add(pid)
        pid = parents.get(pid)
    return found


@register
class ProcessCollector(Collector):
    """Per process (labels ``pid``, ``process`` = the process name).

    >>> collector = ProcessCollector(pids=[os.getpid()])
    >>> str(os.getpid()) in {s.labels["pid"] for f in collector.collect() for s in f.samples}
    True
    """

    name = "process"
    help = "CPU seconds, resident memory, threads and open fds of the serving processes"
    metric_names = (
        "inferwatch_process_cpu_seconds_total",
        "inferwatch_process_resident_memory_bytes",
        "inferwatch_process_threads",
        "inferwatch_process_open_fds",
    )

    def __init__(
        self,
        *,
        pids: Sequence[int] = (),
        pidfiles: Sequence[str] = (),
        names: Sequence[str] = (),
        children: bool = True,
    ) -> None:
        self.pids = tuple(pids)
        self.pidfiles = tuple(pidfiles)
        self.names = tuple(names)
        self.children = children
        self._warned_pidfiles: set[str] = set()
        # Where a pid came from -> the pid said not to be running there; one entry per
        # source, so a pidfile that keeps naming dead pids cannot grow it.
        self._warned_gone: dict[str, int] = {}
        # The same for "its pid went to another process": apart, so that the warning that a
        # pid is not running does not silence the one that it runs again as another process.
        self._warned_reused: dict[str, int] = {}
        # --process.name values that matched no process at the last scrape (warned once).
        self._unmatched_names: set[str] = set()
        # Source -> (pid, start) of the process first seen there: a pid is reused once
        # its process exits, and the unrelated process that gets it must not be watched
        # (and its CPU and memory shown) as the model server. The start is the kernel's,
        # as for GPU process names: psutil's adds the wall-clock boot time, which a clock
        # step (NTP, a resumed VM) moves for every process, and a live server read as reused.
        self._identities: dict[str, tuple[int, float]] = {}
        # Pidfile -> (inode, mtime) when its identity was taken: a rewritten pidfile names
        # a new process, even under the same pid.
        self._pidfile_keys: dict[str, tuple[int, int]] = {}
        self._cap_said_at = float("-inf")

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--process.pid", dest="process_pids", type=_pid, action="append",
                           default=[], metavar="PID", help="watch this pid (repeatable)")
        group.add_argument("--process.pidfile", dest="process_pidfiles", action="append",
                           type=_pidfile, default=[], metavar="FILE",
                           help="watch the pid written in FILE, re-read every scrape "
                                "(repeatable)")
        group.add_argument("--process.name", dest="process_names", action="append",
                           type=_name, default=[], metavar="NAME",
                           help="watch processes named NAME, or run as NAME "
                                "(python -m NAME, /path/NAME) (repeatable)")
        group.add_argument("--process.children", dest="process_children",
                           action=argparse.BooleanOptionalAction, default=True,
                           help="also watch every descendant of a watched process, "
                                "e.g. gunicorn workers (default: on)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ProcessCollector:
        return cls(
            pids=getattr(args, "process_pids", ()),
            pidfiles=getattr(args, "process_pidfiles", ()),
            names=getattr(args, "process_names", ()),
            children=getattr(args, "process_children", True),
        )

    def collect(self) -> Iterable[Metric]:
        metrics = MetricSet()
        for process in self._watched():
            self._read(process, metrics)
        return metrics.families()

    def _watched(self) -> list[psutil.Process]:
        # One pass over the process table per scrape finds named roots and every parent
        # link; asking psutil for each root's children would walk the table once per root.
        own = os.getpid()
        table: dict[int, psutil.Process] = {}
        parents: dict[int, int] = {}
        if self.names or self.children:
            for process in psutil.process_iter(["name", "cmdline", "ppid"]):
                table[process.pid] = process
                ppid = process.info.get("ppid")
                if ppid is not None:
                    parents[process.pid] = ppid
        roots: set[int] = set()
        for pid, source, written_at in self._root_pids():
            try:
                if pid not in table:
                    table[pid] = psutil.Process(pid)
                running = table[pid].status() != psutil.STATUS_ZOMBIE
                if running and not self._same_process(source, pid, table[pid], written_at):
                    continue
            except _GONE:
                running = False
            except psutil.AccessDenied:
                running = True
            self._say_if_gone(source, pid, running)
            if running:
                roots.add(pid)
        ours = {own, *_wrappers_of(own, table, parents)} if self.names else {own}
        for name in self.names:
            found = False
            for pid, process in table.items():
                info = getattr(process, "info", None) or {}
                cmdline = info.get("cmdline") or ()
                if pid not in ours and matches_name(name, full_name(info.get("name") or "",
                                                                    cmdline), cmdline):
                    roots.add(pid)
                    found = True
            self._say_if_unmatched(name, found)
        below = descendants(roots, parents) - roots - {own} if self.children else set()
        self._say_if_over_cap(len(roots) + len(below))
        # The processes asked for come first: under a fork loop (the very case the cap is
        # for) pids wrap around, and by pid alone the master would lose its place to its
        # own children.
        chosen = (sorted(roots) + sorted(below))[:MAX_PROCESSES]
        return [table[pid] for pid in chosen]

    def _same_process(self, source: str, pid: int, process: psutil.Process,
                      written_at: float | None) -> bool:
        """Whether `process` is the one `source` meant, not a later owner of its pid (warned
        once); `written_at` is the pidfile's mtime (None for --process.pid)."""
        started = process_started(pid)
        if started is None:
            return True  # no start time to compare: as before, the pid decides
        known = self._identities.get(source)
        if known is None or known[0] != pid:
            if written_at is not None and _started_after(process, written_at):
                # Started after the pidfile was last written: the server that wrote it is
                # gone (a crash leaves its pidfile) and its pid went to this process.
                self._say_reused(source, pid)
                return False
            self._identities[source] = known = (pid, started)
        if known[1] != started:
            self._say_reused(source, pid)
            return False
        return True

    def _say_if_unmatched(self, name: str, found: bool) -> None:
        """Warn once when a --process.name matches no process (a typo, a server not started
        yet): as for a pid not running, an empty output with success 1 and no log line
        would leave the operator guessing."""
        if found:
            if name in self._unmatched_names:
                self._unmatched_names.discard(name)
                log.info("--process.name=%s: matches a process again", name)
        elif name not in self._unmatched_names:
            self._unmatched_names.add(name)
            log.warning("--process.name=%s: no process matches (NAME is compared with each "
                        "process's name and with each argument and its base name); "
                        "skipped until one does", name)

    def _say_reused(self, source: str, pid: int) -> None:
        if self._warned_reused.get(source) != pid:
            self._warned_reused[source] = pid
            log.warning("%s: pid %d now belongs to another process (the one meant exited "
                        "and its pid was reused); skipped", source, pid)

    def _say_if_over_cap(self, watched: int) -> None:
        """Warn about the cap at most once a minute: a fork-happy server stays over it for
        hours, and a line per scrape would bury every other log line."""
        now = time.monotonic()
        if watched > MAX_PROCESSES:
            if now - self._cap_said_at >= CAP_WARNING_INTERVAL_SECONDS:
                self._cap_said_at = now
                log.warning("watching %d processes, exposing %d: the ones asked for, then "
                            "their descendants by pid", watched, MAX_PROCESSES)
        elif self._cap_said_at != float("-inf"):
            self._cap_said_at = float("-inf")
            log.info("watching %d processes, all exposed again", watched)

    def _say_if_gone(self, source: str, pid: int, running: bool) -> None:
        """Warn once when a pid asked for is not running: a stale pidfile after a crash, or
        a host pid given to an exporter in its own pid namespace, would otherwise show as
        an empty output with success 1 and not one log line."""
        if running:
            self._warned_reused.pop(source, None)
            if self._warned_gone.pop(source, None) == pid:
                log.info("%s: pid %d is running again", source, pid)
        elif self._warned_gone.get(source) != pid:
            self._warned_gone[source] = pid
            log.warning("%s: pid %d is not running (exited, or in another pid namespace); "
                        "skipped until it runs", source, pid)

    def _root_pids(self) -> list[tuple[int, str, float | None]]:
        """The pids asked for, each with where it came from (for the log) and, for a
        pidfile, when it was written."""
        pids: list[tuple[int, str, float | None]] = [
            (pid, f"--process.pid={pid}", None) for pid in self.pids]
        for path in self.pidfiles:
            found = read_pidfile_stamped(path)
            if found is None:
                if path not in self._warned_pidfiles:
                    self._warned_pidfiles.add(path)
                    log.warning("pidfile %s is missing or holds no pid; skipped until it does",
                                path)
                continue
            self._warned_pidfiles.discard(path)
            pid, key, written_at = found
            source = f"pidfile {path}"
            if self._pidfile_keys.get(path) != key:
                # Rewritten (a restart): whatever it names now is a fresh identity.
                self._pidfile_keys[path] = key
                self._identities.pop(source, None)
            pids.append((pid, source, written_at))
        return pids

    @staticmethod
    def _read(process: psutil.Process, metrics: MetricSet) -> None:
        """Add one process's samples; a process gone mid-read adds nothing at all."""
        samples: list[tuple[str, float]] = []
        try:
            with process.oneshot():
                if process.status() == psutil.STATUS_ZOMBIE:
                    return  # exited, not yet reaped by its parent: gone for our purposes
                name = process.name()
                if len(_utf8(name) or b"") == COMM_BYTES:  # cut: the one case worth a read
                    try:
                        name = full_name(name, process.cmdline())
                    except psutil.AccessDenied:
                        pass  # the kernel's 15 bytes are still a name
                times = process.cpu_times()
                samples.append(("inferwatch_process_cpu_seconds_total", times.user + times.system))
                samples.append(("inferwatch_process_resident_memory_bytes",
                                process.memory_info().rss))
                samples.append(("inferwatch_process_threads", process.num_threads()))
                try:
                    samples.append(("inferwatch_process_open_fds", process.num_fds()))
                except psutil.AccessDenied:
                    pass  # another user's process: the other fields are still readable
        except (*_GONE, psutil.AccessDenied):
            return
        labels = {"pid": str(process.pid), "process": name}
        for metric, value in samples:
            metrics.add(metric, labels, value)


def _started_after(process: psutil.Process, written_at: float) -> bool:
    """Whether `process` started after the wall-clock time `written_at` (False when that
    cannot be told). A clock step between the two still misleads it: nothing records
    where the wall clock stood when the pidfile was written."""
    try:
        return process.create_time() > written_at + START_TOLERANCE_SECONDS
    except (psutil.Error, OSError):
        return False


def _name(text: str) -> str:
    if not text.strip():
        # An unset variable in --process.name=$SERVER: '' would match unrelated processes.
        raise argparse.ArgumentTypeError("is empty; give a process name")
    return text


def _pidfile(text: str) -> str:
    if not text.strip():
        # An unset variable in --process.pidfile=$PIDFILE: it would watch nothing, silently.
        raise argparse.ArgumentTypeError("is empty; give the file the server writes its pid to")
    return text


def _pid(text: str) -> int:
    """A pid as the kernel can hand it out: 1 to PID_MAX_LIMIT, in ASCII digits."""
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= PID_MAX_LIMIT:
        raise argparse.ArgumentTypeError(
            f"not a process id (1 to {PID_MAX_LIMIT}): {text!r}")
    return int(text)
