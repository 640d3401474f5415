"""Multi-worker mode with multiprocessing: a pool whose workers exit publishes every call,
and a push sends every worker's calls merged.

``inferwatch.push()`` pushed only the pushing process's own monitors, never what the pool's
workers had published. Each job runs as a script in its own process (real fork pools, a
real Pushgateway on a loopback port); the drain never publishes on its own (its interval
is an hour), so every count comes from a worker's exit or the push itself.
"""

from __future__ import annotations

import json
import os
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
import json, multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.multiproc import attach
from inferwatch.multiproc.store import SnapshotDirectory

DIRECTORY = os.environ["INFERWATCH_MULTIPROC_DIR"]
registry = Registry(drain_interval=3600)  # nothing published but at exit or push
attach(registry, DIRECTORY)
model = inferwatch.instrument(lambda x: 0.5, name="pool", version="1", registry=registry)
fork = multiprocessing.get_context("fork")


def work(i):
    return model(i)


def merged_calls():
    view = SnapshotDirectory(DIRECTORY).read_view(time.time())
    return sum(state.counters.get("inferwatch_requests_total", {}).get(("ok",), 0)
               for state in view.states)


def run(mode, gateway):
    result = {}
    if mode == "close_join":
        with fork.Pool(2) as pool:
            assert pool.map(work, range(20)) == [0.5] * 20
            pool.close()
            pool.join()
    elif mode == "executor":
        with ProcessPoolExecutor(2, mp_context=fork) as executor:
            assert list(executor.map(work, range(20))) == [0.5] * 20
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

@pytest.mark.parametrize("mode", ["close_join", "executor"])
def test_every_call_of_a_pool_that_lets_its_workers_exit_reaches_the_merged_view(tmp_path,
                                                                                 mode):
    """A pool whose workers exit (close() and join(), also inside `with Pool()`, or a
    ProcessPoolExecutor) publishes every call; docs/multiprocess.md says so, and why
    terminate() (what `with Pool()` ends with alone) loses the calls since the last publish."""
    for _ in range(3):
        assert run_job(tmp_path, mode)["merged"] == 20


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
