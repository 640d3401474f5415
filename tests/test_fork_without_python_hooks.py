"""Workers forked from C, past Python's at-fork hooks (uWSGI without ``--lazy-apps``).

uWSGI's default pre-forking loads the app in the master and forks the workers with libc's
``fork()``: no ``os.register_at_fork`` hook runs in them. Here the fork is libc's too
(``ctypes``), in a fresh interpreter: the master instruments a model in multi-worker mode,
serves calls, folds and publishes them, then forks workers that each serve calls of their
own, publish (a scrape of their own) and leave as a worker does: their publisher closed (what
its exit handler does; ``os._exit`` skips exit handlers).
Each worker must write a snapshot of its own, and the merged counts must be every
process's calls once: caught up with on its first scrape, on its first hand-off to the
drain, or by uWSGI's post-fork hook (its ``uwsgi`` module faked: the only layer that
cannot run here), which leaves the master's calls not yet folded at the fork to the master.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from inferwatch.forking import CHILD_HOOKS
from inferwatch.multiproc.store import ARCHIVE, SnapshotDirectory
from inferwatch.multiproc.worker_id import WORKER, WorkerId

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="forks through libc's fork()")

MASTER_CALLS = 7

SCRIPT = textwrap.dedent('''
    import ctypes, json, os, sys

    directory, workers, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    uwsgi_hook = sys.argv[4] == "uwsgi-hook"
    if uwsgi_hook:
        # What uWSGI's embedded interpreter has: a module whose post_fork_hook it calls in
        # each worker right after the fork (the server itself is not installed here).
        import types
        sys.modules["uwsgi"] = types.ModuleType("uwsgi")

    import inferwatch
    from inferwatch.core.registry import Registry
    from inferwatch.multiproc import attach

    class Model:
        def predict(self, rows):
            return [0 for _ in rows]

    # No drain pass of the master's may be under way at a fork: a lock it held then would
    # stay held in the worker, which nothing renews until it first drains or publishes.
    registry = Registry(drain_interval=3600)
    publisher = attach(registry, directory)
    # A bound that lists fill well before: a worker's hand-off to the drain (which wakes
    # it) comes within a few hundred calls. All of a worker's calls fit: none is dropped.
    model = inferwatch.instrument(Model(), name="fraud", version="1", registry=registry,
                                  max_pending=2000)
    for _ in range(MASTER_CALLS):
        model.predict([[1.0]])
    if not uwsgi_hook:
        publisher.merged_view()  # the master's calls folded and published, as a scrape does
    # Under uWSGI's hook they are still waiting for a drain at the fork (a warm-up as the
    # app loads): they stay the master's, published by it at its exit.

    # PyDLL keeps the GIL across the call: the child starts as the forking thread left it.
    libc_fork = ctypes.PyDLL(None).fork
    children = []
    for index in range(workers):
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = libc_fork()
        if pid == 0:
            os.close(ready_r); os.close(go_w)
            if uwsgi_hook:
                sys.modules["uwsgi"].post_fork_hook()
            for _ in range(calls):
                model.predict([[2.0]])
            before_scrape = registry._drainer_pid == os.getpid()
            publisher.merged_view()  # a scrape of this worker's: publishes its snapshot
            os.write(ready_w, json.dumps({
                "pid": os.getpid(),
                "file": publisher.worker.name,
                "drainer": registry._drainer_pid == os.getpid()
                and registry._drainer.is_alive(),
                "before_scrape": before_scrape,
            }).encode() + b"\\n")
            os.read(go_r, 1)  # the parent has looked at every worker's file
            # The final snapshot and its fold: a scrape publishes only when a second has
            # passed since the drain thread last did, so its snapshot may be older.
            publisher.close()
            os._exit(0)
        os.close(ready_w); os.close(go_r)
        children.append((pid, ready_r, go_w))

    reports = []
    for pid, ready_r, go_w in children:
        with os.fdopen(ready_r) as ready:
            reports.append(json.loads(ready.readline()))
    files = sorted(name for name in os.listdir(directory) if name.endswith(".snapshot"))
    print(json.dumps({"master": publisher.worker.name, "reports": reports,
                      "files_while_serving": files}), flush=True)
    for pid, ready_r, go_w in children:
        os.write(go_w, b"x")
        os.close(go_w)
    statuses = [os.waitpid(pid, 0)[1] for pid, _, _ in children]
    print(json.dumps({"statuses": statuses}), flush=True)
    publisher.close()
''').replace("MASTER_CALLS", str(MASTER_CALLS))


def ok_requests(directory: Path) -> float:
    view = SnapshotDirectory(str(directory)).read_view(time.time())
    return sum(state.counters["inferwatch_requests_total"].get(("ok",), 0.0)
               for state in view.states if state.model == "fraud")


@pytest.mark.parametrize(("calls", "caught_up"), [
    (3, "scrape"), (1000, "hand-off"), (3, "uwsgi-hook"), (1000, "uwsgi-hook")])
def test_each_libc_forked_worker_publishes_its_own_calls(tmp_path, calls, caught_up):
    workers = 3
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(workers),
                             str(calls), caught_up],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    serving, ended = lines
    reports = serving["reports"]
    assert ended["statuses"] == [0] * workers

    # Each worker named by its own pid and start: one file each, beside the master's.
    names = {report["file"] for report in reports}
    assert len(names) == workers and serving["master"] not in names
    for report in reports:
        worker = WorkerId.parse(report["file"])
        assert worker is not None and worker.pid == report["pid"]
        assert report["drainer"], "the worker runs a drain thread of its own"
        # A full list woke the drain, or uWSGI's hook ran: the worker was its own before
        # any scrape.
        assert report["before_scrape"] is (caught_up != "scrape")
    # (The master's is there once it has published: not yet under uWSGI's hook.)
    assert names <= set(serving["files_while_serving"]) <= names | {serving["master"]}

    # Every call once: the master's (published before it forked) and each worker's.
    expected = MASTER_CALLS + workers * calls
    assert ok_requests(tmp_path) == expected
    # Everyone has exited: all folded into the archive, nothing counted twice or lost.
    assert [n for n in os.listdir(tmp_path) if WORKER.fullmatch(n)] == []
    assert (tmp_path / ARCHIVE).exists()


def test_every_after_fork_hook_of_inferwatch_is_caught_up_with():
    """A hook registered with os.register_at_fork and missing from CHILD_HOOKS would never
    run in a worker forked from C."""
    root = Path(__file__).resolve().parents[1] / "exporter" / "inferwatch"
    registered = set()
    for path in root.rglob("*.py"):
        text = path.read_text()
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        for match in re.finditer(r"register_at_fork\((.*?)\)\n", text, re.S):
            hook = re.search(r"after_in_child=([\w.]+)", match[1])
            if hook is not None and module != "inferwatch.forking":
                registered.add((module, hook[1]))
    assert registered, "no hook found: the pattern above no longer matches the sources"
    assert registered == set(CHILD_HOOKS)


HELD_LOCK_SCRIPT = textwrap.dedent('''
    import ctypes, json, os, signal, sys, threading

    held_lock = sys.argv[1]
    import inferwatch
    from inferwatch.core.registry import Registry

    class Model:
        def predict(self, rows):
            return [0 for _ in rows]

    registry = Registry(drain_interval=3600)
    model = inferwatch.instrument(Model(), name="fraud", version="1", registry=registry,
                                  max_pending=4000)
    monitor = registry.monitor("fraud", "1")
    lock = {"take": monitor._take_lock, "monitor": monitor._lock,
            "registry": registry._lock}[held_lock]
    held, release = threading.Event(), threading.Event()

    def fold_under_way():  # a parent's thread (its drain) holding the lock at the fork
        with lock:
            held.set()
            release.wait()

    threading.Thread(target=fold_under_way, daemon=True).start()
    held.wait()
    pid = ctypes.PyDLL(None).fork()  # past Python's at-fork hooks, as uWSGI forks
    if pid == 0:
        signal.alarm(30)  # a worker stuck on its parent's lock ends here, as SIGALRM
        # First what takes the held lock: the lookup a handler does for an outcome, the
        # outcome, or enough calls that a list fills and is handed to the drain.
        if held_lock == "registry":
            inferwatch.monitor("fraud", registry=registry)
        if held_lock == "monitor":
            monitor.record_outcome("r-1", 1)
        for _ in range(1500):
            model.predict([[1.0]])
        registry.drain()
        state = registry.monitor("fraud", "1").state
        print(json.dumps({
            "ok": state.counters["inferwatch_requests_total"].get(("ok",), 0.0),
            "drainer": registry._drainer_pid == os.getpid()}), flush=True)
        os._exit(0)
    release.set()
    print(json.dumps({"status": os.waitpid(pid, 0)[1]}), flush=True)
''')


@pytest.mark.parametrize("held_lock", ["take", "monitor", "registry"])
def test_a_worker_never_waits_on_a_lock_its_parents_thread_held_at_the_fork(held_lock):
    """uWSGI's post-fork hook replaced (``uwsgidecorators`` imported after inferwatch): a
    worker catches up on its first monitor lookup, outcome or hand-off to the drain, before
    it takes a lock that a thread of the master held when it forked; else it would wait for
    good on a request path."""
    result = subprocess.run([sys.executable, "-c", HELD_LOCK_SCRIPT, held_lock],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines[-1] == {"status": 0}, result.stderr
    worker = lines[0]
    assert worker["ok"] == 1500  # every call of the worker's own, none of the master's
    assert worker["drainer"]
