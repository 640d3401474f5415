"""A batch job run again with the same multi-worker directory pushes its own run's counts,
not every run's added up.

The previous run's workers (and the job's own process) were folded into the directory's
archive when they exited, and the next run's push merged that archive in: a job scoring 61
rows pushed 61, then 122. docs/integrations.md says the gateway "holds the last run of every
model of every job". A job's start now clears what earlier processes left there, and keeps
the files of processes that still run. Each run is a script of its own with a real fork
pool, pushing to a real Pushgateway.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from test_pushgateway import gateway  # noqa: F401 (the fixture)

_JOB = """
import json, multiprocessing, os, sys

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.multiproc import attach

mode, gateway, directory = sys.argv[1], sys.argv[2], sys.argv[3]
registry = Registry(drain_interval=3600)  # nothing published but at exit or push
attach(registry, directory)
model = inferwatch.instrument(lambda x: 0.25, name="pool", version="1", registry=registry)
fork = multiprocessing.get_context("fork")


def work(i):
    model([float(i)])
    if mode == "pool_before_job":
        registry.multiproc.publish(force=True)  # a live worker's file, before the job starts
    return i


def score(pool, rows):
    pool.map(work, range(rows), chunksize=1)


if mode == "pool_before_job":
    # Started, and scoring, before the job: its workers still run when the job starts.
    pool = fork.Pool(2)
    score(pool, 4)
    with inferwatch.push.on_exit(gateway, "nightly", registry=registry, retries=0):
        model([0.0])
        score(pool, 6)
        pool.close()
        pool.join()
elif mode == "two_jobs":
    # Two jobs in one process: the second does not clear what the first's pool counted,
    # as this process's own counts carry on too.
    for _ in range(2):
        with inferwatch.push.on_exit(gateway, "nightly", registry=registry, retries=0):
            model([0.0])
            with fork.Pool(2) as pool:
                score(pool, 6)
                pool.close()
                pool.join()
else:
    with inferwatch.push.on_exit(gateway, "nightly", registry=registry, retries=0):
        model([0.0])
        with fork.Pool(3) as pool:
            score(pool, 60)
            pool.close()
            pool.join()
print(json.dumps({"files": sorted(os.listdir(directory))}))
"""


def run_job(tmp_path, mode: str, gateway_address: str) -> dict:
    script = tmp_path / "job.py"
    script.write_text(_JOB)
    directory = tmp_path / "snapshots"
    directory.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items()
           if key != "INFERWATCH_MULTIPROC_DIR"}
    result = subprocess.run([sys.executable, str(script), mode, gateway_address,
                             str(directory)], capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def pushed_calls(gateway) -> float | None:  # noqa: F811
    return gateway.value("inferwatch_requests_total", job="nightly", model="pool",
                         outcome="ok")


@pytest.mark.integration
def test_each_run_of_a_job_pushes_its_own_calls(tmp_path, gateway):  # noqa: F811
    for _ in range(3):
        run_job(tmp_path, "pool", gateway.address)
        assert pushed_calls(gateway) == 61


@pytest.mark.integration
def test_the_files_of_workers_running_when_the_job_starts_are_kept(tmp_path,
                                                                    gateway):  # noqa: F811
    run_job(tmp_path, "pool", gateway.address)  # an earlier run, in the archive
    run_job(tmp_path, "pool_before_job", gateway.address)
    # The pool's 4 calls before the job and 6 in it, and this process's 1.
    assert pushed_calls(gateway) == 11


@pytest.mark.integration
def test_a_second_job_in_the_same_process_carries_the_first_on(tmp_path,
                                                              gateway):  # noqa: F811
    run_job(tmp_path, "pool", gateway.address)  # an earlier process's run: cleared
    run_job(tmp_path, "two_jobs", gateway.address)
    assert pushed_calls(gateway) == 14
