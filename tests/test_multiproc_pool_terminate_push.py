"""Multi-worker mode with multiprocessing: workers stopped by SIGTERM publish their calls,
and a push sends every worker's calls merged.

``with Pool() as pool:`` ends with ``terminate()``, which SIGTERMs the workers: they died
past the finalizers that publish a worker's last calls, and most calls never reached the
merged view. ``inferwatch.push()`` pushed only the pushing process's own monitors, never
what the pool's workers had published. Each job runs as a script in its own process (real
fork pools, a real Pushgateway on a loopback port); the drain never publishes on its own
(its interval is an hour), so every count comes from a worker's exit or the push itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

import inferwatch
from inferwatch import faults
from inferwatch.core.registry import Registry
from inferwatch.multiproc import attach
from inferwatch.serving.pushgateway import PushError
from test_pushgateway import Gateway, gateway  # noqa: F401 (the fixture)

_JOB = """
import json, multiprocessing, os, signal, sys, time
from concurrent.futures import ProcessPoolExecutor

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.multiproc import attach
from inferwatch.multiproc.store import SnapshotDirectory

DIRECTORY = os.environ["INFERWATCH_MULTIPROC_DIR"]
registry = Registry(drain_interval=3600)  # nothing published but at exit, SIGTERM or push
attach(registry, DIRECTORY)
model = inferwatch.instrument(lambda x: 0.5, name="pool", version="1", registry=registry)
fork = multiprocessing.get_context("fork")
ready = None


def work(i):
    return model(i)


def remember(queue):
    global ready
    ready = queue


def busy(i):
    for _ in range(5):
        model(i)
    ready.put(os.getpid())
    time.sleep(600)  # until terminated


def handler_name(i):
    return getattr(signal.getsignal(signal.SIGTERM), "__name__", "")


def users_handler(signum, frame):
    os._exit(7)


def report_handler(queue):
    model(0)
    queue.put(handler_name(0))
    time.sleep(600)


def fork_again_into(i, queue):
    queue.put(fork_again(i))


def fork_again(i):
    # A grandchild forked by a multiprocessing worker, then SIGTERMed by it.
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        for _ in range(3):
            model(i)
        os.write(writer, b"x")
        time.sleep(600)
        os._exit(0)
    os.read(reader, 1)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM


def merged_calls():
    view = SnapshotDirectory(DIRECTORY).read_view(time.time())
    return sum(state.counters.get("inferwatch_requests_total", {}).get(("ok",), 0)
               for state in view.states)


def run(mode, gateway):
    result = {}
    if mode == "with_pool":
        with fork.Pool(2) as pool:
            assert pool.map(work, range(20)) == [0.5] * 20
    elif mode == "terminate":
        pool = fork.Pool(2)
        assert pool.map(work, range(20)) == [0.5] * 20
        pool.terminate()
        pool.join()
    elif mode == "executor":
        with ProcessPoolExecutor(2, mp_context=fork) as executor:
            assert list(executor.map(work, range(20))) == [0.5] * 20
    elif mode == "busy_pool":
        queue = fork.SimpleQueue()
        pool = fork.Pool(2, initializer=remember, initargs=(queue,))
        workers = multiprocessing.active_children()
        pool.map_async(busy, range(2), chunksize=1)
        busy_pids = {queue.get() for _ in range(2)}
        pool.terminate()
        pool.join()
        result["exitcodes"] = [p.exitcode for p in workers if p.pid in busy_pids]
    elif mode == "busy_process":
        queue = fork.SimpleQueue()
        remember(queue)
        process = fork.Process(target=busy, args=(0,))
        process.start()
        queue.get()
        process.terminate()
        process.join()
        result["exitcodes"] = [process.exitcode]
    elif mode == "users_handler":
        # Processes rather than a Pool: what is checked is the handler each child keeps,
        # not Pool.terminate()'s own shutdown of its queues.
        signal.signal(signal.SIGTERM, users_handler)
        queue = fork.SimpleQueue()
        children = [fork.Process(target=report_handler, args=(queue,)) for _ in range(2)]
        for child in children:
            child.start()
        result["handlers"] = [queue.get() for _ in children]
        for child in children:
            child.terminate()
            child.join()
        result["exitcodes"] = [child.exitcode for child in children]
    elif mode == "os_fork":
        pid = os.fork()
        if pid == 0:  # a worker forked the way gunicorn forks its workers
            os._exit(0 if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else 1)
        _, status = os.waitpid(pid, 0)
        result["child_keeps_default"] = os.waitstatus_to_exitcode(status) == 0
        result["parent_keeps_default"] = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    elif mode == "fork_again":
        queue = fork.SimpleQueue()
        children = [fork.Process(target=fork_again_into, args=(i, queue)) for i in range(2)]
        for child in children:
            child.start()
        result["grandchildren_died_by_sigterm"] = [queue.get() for _ in children]
        for child in children:
            child.join()
    elif mode == "push":
        pool = fork.Pool(2)
        pool.map(work, range(40))
        pool.close()
        pool.join()
        model(40)  # one call in this process
        result["pushed"] = inferwatch.push(gateway, "nightly", registry=registry,
                                           grouping_key={"instance": "batch-1"})
    elif mode == "failed_job":
        try:
            with inferwatch.push.on_exit(gateway, "nightly", registry=registry):
                pool = fork.Pool(2)
                pool.map(work, range(10))
                pool.close()
                pool.join()
                raise RuntimeError("database went away")
        except RuntimeError as exc:
            result["raised"] = str(exc)
    result["merged"] = merged_calls()
    return result


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)))
"""


def run_job(tmp_path, mode: str, *args: str) -> dict:
    """Run the job script in `mode` with a fresh multi-worker directory; what it printed."""
    script = tmp_path / "job.py"
    script.write_text(_JOB)
    directory = tmp_path / f"snapshots-{len(list(tmp_path.glob('snapshots-*')))}"
    directory.mkdir()
    result = subprocess.run(
        [sys.executable, str(script), mode, *args], capture_output=True, text=True,
        timeout=120, env={**os.environ, "INFERWATCH_MULTIPROC_DIR": str(directory)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- workers stopped by SIGTERM -----------------------------------------------------------------

@pytest.mark.parametrize("mode", ["with_pool", "terminate", "executor"])
def test_every_call_of_a_pool_reaches_the_merged_view_however_the_pool_ends(tmp_path, mode):
    """`with Pool()` and terminate() SIGTERM the workers (most calls were lost);
    ProcessPoolExecutor lets them exit (it was right, and stays so)."""
    for _ in range(3):
        assert run_job(tmp_path, mode)["merged"] == 20


@pytest.mark.parametrize("mode", ["busy_pool", "busy_process"])
def test_a_worker_terminated_while_busy_publishes_and_still_dies_by_sigterm(tmp_path, mode):
    for _ in range(3):
        result = run_job(tmp_path, mode)
        assert result["exitcodes"] and set(result["exitcodes"]) == {-signal.SIGTERM}
        assert result["merged"] == 5 * len(result["exitcodes"])


def test_a_sigterm_handler_installed_before_the_fork_is_left_alone(tmp_path):
    """The app's (or its framework's) handler, inherited by the workers, stays theirs."""
    result = run_job(tmp_path, "users_handler")
    assert result["handlers"] == ["users_handler", "users_handler"]
    assert result["exitcodes"] == [7, 7]


def test_processes_forked_without_multiprocessing_keep_sigterms_default(tmp_path):
    """gunicorn forks its workers with os.fork and installs its own handlers; the process
    that attached keeps SIGTERM's default action too."""
    result = run_job(tmp_path, "os_fork")
    assert result["child_keeps_default"] and result["parent_keeps_default"]


def test_a_process_a_worker_forks_publishes_when_sigtermed_and_dies_by_it(tmp_path):
    for _ in range(2):
        result = run_job(tmp_path, "fork_again")
        assert result["grandchildren_died_by_sigterm"] == [True, True]
        assert result["merged"] == 6


# --- pushing the merged view --------------------------------------------------------------------

@pytest.mark.integration
def test_a_push_sends_every_workers_calls_merged(tmp_path, gateway):  # noqa: F811
    result = run_job(tmp_path, "push", gateway.address)
    assert result["merged"] == 41
    assert result["pushed"] == [{"job": "nightly", "model": "pool", "instance": "batch-1"}]
    labels = {"job": "nightly", "model": "pool", "instance": "batch-1"}
    assert gateway.value("inferwatch_requests_total", outcome="ok", **labels) == 41
    assert gateway.value("inferwatch_request_duration_seconds_count", **labels) == 41


@pytest.mark.integration
def test_a_failed_job_pushes_the_pools_calls_and_its_failure(tmp_path, gateway):  # noqa: F811
    result = run_job(tmp_path, "failed_job", gateway.address)
    assert result["raised"] == "database went away"
    assert gateway.value("inferwatch_requests_total", job="nightly", model="pool",
                         outcome="ok") == 10
    assert gateway.value("inferwatch_errors_total", job="nightly", model="pool",
                         error_type="RuntimeError") == 1


@pytest.mark.integration
def test_a_push_that_cannot_read_the_directory_fails_rather_than_push_lower_counts(
        tmp_path, gateway, monkeypatch):  # noqa: F811
    registry = Registry(drain_interval=3600)
    try:
        attach(registry, str(tmp_path))
        registry.monitor("pool", "1").record_call(0.01, 0.5)

        def unreadable():
            raise OSError(24, "Too many open files")

        monkeypatch.setattr(registry.multiproc, "merged_view", unreadable)
        before = faults.internal_error_counts().get("multiproc_read", 0)
        with pytest.raises(PushError, match=r"multi-worker directory .* Too many open files"):
            inferwatch.push(gateway.address, "nightly", registry=registry)
        assert faults.internal_error_counts().get("multiproc_read", 0) == before + 1
        assert gateway.samples("inferwatch_requests_total", job="nightly") == []
    finally:
        registry.close()
