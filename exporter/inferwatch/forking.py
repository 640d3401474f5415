"""Module-level locks that a forked child gets fresh, and which process a shadow's child is.

A lock another thread held when a model server forked (gunicorn, ``multiprocessing``) is
never released in the child, whose copy of that thread does not exist: the first use
there would wait for good. Each such lock is made anew in the child, right after the fork.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


def renew_at_fork(namespace: dict[str, Any], name: str,
                  factory: Callable[[], Any] = threading.Lock) -> None:
    """Replace ``namespace[name]`` (a module's ``globals()``) with ``factory()`` in every
    child forked from now on; code that reads the global at each use gets the new one.

    >>> _lock = threading.Lock()
    >>> renew_at_fork(globals(), "_lock")
    """
    def renew() -> None:
        namespace[name] = factory()

    _renewals.append(renew)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=renew)


# What renew_at_fork renews: catch_up_after_fork() renews it too.
_renewals: list[Callable[[], None]] = []


def wait_for_system_thread_exit(thread: threading.Thread, deadline: float) -> None:
    """Wait (until the ``time.monotonic()`` `deadline`) for the system thread of an ended
    `thread` to be gone too, before a fork: ``join()`` returns as the thread lets go of its
    Python state, a moment before the system thread exits, and CPython 3.12's fork warning
    counts system threads (on Linux; elsewhere this returns at once).

    >>> done = threading.Thread(target=lambda: None)
    >>> done.start(); done.join()
    >>> wait_for_system_thread_exit(done, time.monotonic() + 1.0)
    """
    if thread.is_alive():
        return
    task = f"/proc/self/task/{thread.native_id}"
    while thread.native_id is not None and os.path.exists(task) \
            and time.monotonic() < deadline:
        time.sleep(0.0002)


def join_before_fork(threads: list[threading.Thread], seconds: float,
                     nudge: Callable[[], None] | None = None,
                     on_fault: Callable[[Exception], None] | None = None) -> None:
    """Wait at most `seconds` in all for `threads`, each told to stop, to end before a fork,
    and for their system threads to be gone (:func:`wait_for_system_thread_exit`). One that
    does not end in time is left running: the child renews every lock anyway. `nudge` is
    called between short joins, for threads that may have gone back to sleep past the stop;
    a fault joining one thread goes to `on_fault` and the others are still waited for.

    >>> worker = threading.Thread(target=lambda: None)
    >>> worker.start()
    >>> join_before_fork([worker], 1.0)
    >>> worker.is_alive()
    False
    """
    deadline = time.monotonic() + seconds
    for thread in threads:
        try:
            if nudge is None:
                thread.join(max(0.0, deadline - time.monotonic()))
            while thread.is_alive() and time.monotonic() < deadline:
                nudge()  # type: ignore[misc]  # only reached with a nudge
                thread.join(min(0.01, max(0.0, deadline - time.monotonic())))
            wait_for_system_thread_exit(thread, deadline)
        except Exception as exc:
            if on_fault is not None:
                on_fault(exc)


# The name of a process-mode shadow's child (core/shadow_process.py). Multiprocessing sets
# a spawned child's name first of all it prepares, before it runs the parent's __main__
# again or unpickles the challenger: the one mark in place before any of the app's code
# runs there, and it touches no environment variable (which other threads of the serving
# process would see change while a child starts). Here, in a leaf module, so that the
# multi-worker code can ask without loading the shadow machinery.
CHILD_NAME = "inferwatch-shadow"


def in_shadow_child() -> bool:
    """Whether this process is a shadow's child (``shadow(mode="process")``).

    Such a child serves no request: the app's module it imports to rebuild the challenger
    re-runs what a worker did as it loaded. It publishes nothing to the multi-worker
    directory, and a process-mode shadow made there (at the app's import) starts no
    child: a daemonic process may have none, and a challenger run in it in a thread
    instead would answer calls no one sees, and could hang or crash the very child that
    process mode keeps it out of.

    >>> in_shadow_child()
    False
    """
    return multiprocessing.current_process().name == CHILD_NAME


# --- forks that skip Python's at-fork hooks ------------------------------------------------
# uWSGI without --lazy-apps forks its workers from C (and so does any C extension calling
# fork()): os.register_at_fork hooks never run there, and every worker would go on as the
# master, writing the master's snapshot file over its siblings'. The pid the hooks last ran
# for tells such a process from the one its state was made in.
_pid = os.getpid()
# The pids caught up (or being caught up) with, and by which call: a hook that starts the
# drain thread again must not begin the catch-up anew, nor may a second thread.
_caught_up: dict[int, object] = {}
# inferwatch's own after-fork-in-child hooks, in the order a full import registers them
# (faults first: the registry's hook records its faults there, and multi-worker mode's
# baseline reads them). Those of a module not imported have nothing to renew.
# tests/test_fork_without_python_hooks.py checks that every hook is named here.
CHILD_HOOKS: tuple[tuple[str, str], ...] = (
    ("inferwatch.faults", "_reset_after_fork"),
    ("inferwatch.multiproc.store", "_reset_after_fork"),
    ("inferwatch.serving.pushgateway", "_note_forked"),
    ("inferwatch.events.log_lifetime", "_after_fork_in_child"),
    ("inferwatch.events.sqlite", "_close_inherited_locks"),
    ("inferwatch.core.monitor", "_renew_locks_after_fork"),
    ("inferwatch.core.registry", "_reset_after_fork"),
    ("inferwatch.core.streams", "_OPEN.clear"),
    ("inferwatch.core.shadow_lifetime", "_after_fork"),
    ("inferwatch.core.shadow_process", "_renew_resource_tracker_lock"),
    ("inferwatch.core.instrument", "_renew_tokens_lock"),
    ("inferwatch.demo.console", "_renew_lock_after_fork"),
)
# The lists a monitor's calls wait in until the drain folds them.
_PENDING_LISTS = ("_calls", "_proba_calls", "_errors", "_requests", "_streams")


def _note_pid_after_fork() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_note_pid_after_fork)


def forked_without_hooks(pid: int | None = None) -> bool:
    """Whether this process was forked without Python's at-fork hooks (`pid`: its pid, when
    the caller has it): its state, identity and locks are still its parent's.

    >>> forked_without_hooks()
    False
    """
    return (os.getpid() if pid is None else pid) != _pid


def catch_up_after_fork(pid: int | None = None, *, just_forked: bool = False) -> bool:
    """In a process forked without Python's at-fork hooks, run inferwatch's own hooks now
    (new locks, a worker identity and snapshot file of its own, none of the parent's
    counts, drain and writer threads started again); True when this call did. Once per
    process; anywhere else it returns False at once. Never raises.

    What the drain and publish paths call first. The calls this process recorded before
    then, still waiting for a drain, are kept as its own: it has folded none of them, and
    one calls it before it folds any. (Calls its parent had recorded and not folded when
    it forked are among them and cannot be told apart: they count in both processes.)
    `just_forked`: called right after the fork (uWSGI's post-fork hook), before this
    process recorded anything: every call waiting is the parent's, and dropped here, as
    Python's own at-fork hooks drop it.

    >>> catch_up_after_fork()
    False
    """
    global _pid
    try:
        pid = os.getpid() if pid is None else pid
        if pid == _pid:
            return False
        claim = object()
        if _caught_up.setdefault(pid, claim) is not claim:
            return False  # another thread (or this catch-up, re-entered) has it in hand
        kept = [] if just_forked else _pending_calls()
        for renew in list(_renewals):
            _run_guarded(renew)
        for module_name, attribute in CHILD_HOOKS:
            hook = _hook(module_name, attribute)
            if hook is not None:
                _run_guarded(hook)
        _restore_pending_calls(kept)
        _pid = pid
        return True
    except Exception as exc:  # a bug of ours: never into the caller's drain or request
        _record_fault(exc)
        return False


def _hook(module_name: str, attribute: str) -> Callable[[], Any] | None:
    target: Any = sys.modules.get(module_name)
    for part in attribute.split("."):
        if target is None:
            return None
        target = getattr(target, part, None)
    return target if callable(target) else None


def _run_guarded(hook: Callable[[], Any]) -> None:
    # One hook's failure must not keep the others from renewing their locks.
    try:
        hook()
    except Exception as exc:
        _record_fault(exc)


def _record_fault(exc: Exception) -> None:
    faults_module = sys.modules.get("inferwatch.faults")
    if faults_module is not None:
        try:
            faults_module.record("fork", exc)
        except Exception:  # pragma: no cover - counting itself failed; nothing left to do
            pass


def _pending_calls() -> list[tuple[Any, list, list[tuple[list, list]]]]:
    """Every live monitor's calls waiting for a drain, by the list they wait in (the calls
    it handed to the drain first: they are older), before the hooks empty them."""
    monitors = sys.modules.get("inferwatch.core.monitor")
    if monitors is None:
        return []
    kept = []
    for monitor in list(monitors._live_monitors):
        try:
            lists = [getattr(monitor, name) for name in _PENDING_LISTS]
            older: dict[int, list] = {id(pending): [] for pending in lists}
            for source, taken in list(monitor._handed_off):
                older.setdefault(id(source), []).extend(taken)
            kept.append((monitor, monitor._handed_off,
                         [(pending, older[id(pending)] + list(pending)) for pending in lists]))
        except Exception as exc:
            _record_fault(exc)
    return kept


def _restore_pending_calls(kept: list[tuple[Any, list, list[tuple[list, list]]]]) -> None:
    """Put the calls :func:`_pending_calls` saw back, in the very lists the instrumented
    wrappers append to, and count them as not yet finished (the hooks counted every call
    started so far as the parent's, finished)."""
    for monitor, handed_off, lists in kept:
        try:
            if monitor._handed_off is handed_off:
                continue  # of no registry: the hooks did not reset it, its calls are there
            restored = 0
            for pending, calls in lists:
                if calls:
                    pending[:0] = calls
                    restored += len(calls)
            monitor._finished -= restored
        except Exception as exc:
            _record_fault(exc)



def _catch_up_in_uwsgi_worker() -> None:
    catch_up_after_fork(just_forked=True)


def _hook_into_uwsgi() -> None:
    """Inside uWSGI, catch up in each worker right after uWSGI forks it (its post-fork
    hook), before it serves a request: the master's calls waiting for a drain then, a
    warm-up as the app loaded, stay the master's. Without it (the hook replaced since, by
    ``uwsgidecorators`` imported later) the drain and publish paths still catch up, later.
    """
    uwsgi = sys.modules.get("uwsgi")  # there only inside uWSGI's embedded interpreter
    if uwsgi is None:
        return
    try:
        decorators = sys.modules.get("uwsgidecorators")
        chain = getattr(decorators, "postfork_chain", None)
        if isinstance(chain, list):
            chain.append(_catch_up_in_uwsgi_worker)  # that module's hook runs the chain
            return
        previous = getattr(uwsgi, "post_fork_hook", None)

        def post_fork_hook() -> None:
            _catch_up_in_uwsgi_worker()
            if callable(previous):
                previous()

        uwsgi.post_fork_hook = post_fork_hook
    except Exception as exc:  # an odd uwsgi module: the later catch-up is left
        _record_fault(exc)


_hook_into_uwsgi()
