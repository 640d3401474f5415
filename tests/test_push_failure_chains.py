"""A failed job's exception is counted once when it reaches the job by another route than
the model call that counted it: raised from it (``raise ... from exc``), raised while
handling it, or re-raised by a process pool whose worker's model call failed.

Each of these was counted twice: by the model call, then once more by the job, because the
exception the job ended with was not the one the call counted (or, for a pool, its
traceback holds no frame of this process's model call). Pushed to a real Pushgateway; the
pool jobs run as scripts of their own with real fork pools.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import inferwatch
from inferwatch.serving.job_failures import counted_already
from test_pushgateway import gateway  # noqa: F401 (the fixture)


def bad_row(x):
    raise ValueError("bad row")


def counts(pushed, job: str, model: str) -> dict[str, float | None]:
    """The pushed request outcomes and error types of one model of `job`."""
    found: dict[str, float | None] = {}
    for outcome in ("ok", "error"):
        found[outcome] = pushed.value("inferwatch_requests_total", job=job, model=model,
                                      outcome=outcome)
    for sample in pushed.samples("inferwatch_errors_total", job=job, model=model):
        found[sample.labels["error_type"]] = sample.value
    return found


@pytest.mark.integration
@pytest.mark.parametrize("reraise", ["from", "while_handling", "from_a_chain"])
def test_a_job_raising_a_model_error_by_another_exception_counts_it_once(
        gateway, scraper, reraise):  # noqa: F811
    registry = scraper.registry
    scoring = inferwatch.instrument(bad_row, name="scoring", version="1", registry=registry)
    with pytest.raises(RuntimeError, match="scoring failed"), \
            inferwatch.push.on_exit(gateway.address, "nightly", registry=registry, retries=0):
        try:
            scoring([1.0])
        except ValueError as exc:
            if reraise == "from":
                raise RuntimeError("scoring failed") from exc
            if reraise == "while_handling":
                raise RuntimeError("scoring failed")  # noqa: B904 (the implicit chain)
            try:
                raise KeyError("row 7") from exc
            except KeyError as middle:
                raise RuntimeError("scoring failed") from middle
    assert counts(gateway, "nightly", "scoring") == {"ok": 0, "error": 1, "ValueError": 1}


@pytest.mark.integration
def test_a_job_error_unrelated_to_any_model_call_is_still_counted(gateway, scraper):  # noqa: F811
    registry = scraper.registry
    scoring = inferwatch.instrument(lambda x: 0.5, name="scoring", version="1",
                                    registry=registry)
    with pytest.raises(RuntimeError), \
            inferwatch.push.on_exit(gateway.address, "nightly", registry=registry, retries=0):
        scoring([1.0])
        try:
            raise KeyError("a lookup of the job's own")
        except KeyError:
            raise RuntimeError("the job's own failure") from None
    assert counts(gateway, "nightly", "scoring") == {"ok": 1, "error": 1, "RuntimeError": 1}


def test_a_cycle_in_an_exception_chain_ends_the_walk():
    first, second = ValueError("a"), RuntimeError("b")
    first.__context__, second.__context__ = second, first
    assert counted_already(first) is False


_POOL_JOB = """
import json, multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.multiproc import attach

mode, gateway, directory = sys.argv[1], sys.argv[2], sys.argv[3]
registry = Registry(drain_interval=3600)  # nothing published but at exit or push
if directory != "-":
    attach(registry, directory)


def score(x):
    if x[0] == 3.0:
        raise ValueError("bad row")
    return 0.25


model = inferwatch.instrument(score, name="pool", version="1", registry=registry)
fork = multiprocessing.get_context("fork")


def work(i):
    if mode == "worker_error" and i == 3:
        raise KeyError("row 3 has no id")
    return model([float(i)])


raised = None
try:
    with inferwatch.push.on_exit(gateway, "pooljob", registry=registry, retries=0):
        if mode == "executor":
            with ProcessPoolExecutor(2, mp_context=fork) as executor:
                list(executor.map(work, range(6)))
        else:
            pool = fork.Pool(2)
            try:
                pool.map(work, range(6))
            finally:
                pool.close()
                pool.join()
except Exception as exc:
    raised = type(exc).__name__
print(json.dumps({"raised": raised}))
"""


def run_pool_job(tmp_path, mode: str, gateway_address: str, *, shared: bool) -> dict:
    script = tmp_path / "pool_job.py"
    script.write_text(_POOL_JOB)
    directory = "-"
    if shared:
        directory = str(tmp_path / "snapshots")
        os.mkdir(directory)
    env = {key: value for key, value in os.environ.items()
           if key != "INFERWATCH_MULTIPROC_DIR"}
    result = subprocess.run([sys.executable, str(script), mode, gateway_address, directory],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["pool", "executor"])
def test_a_model_error_a_pool_re_raises_is_counted_once_by_its_worker(
        tmp_path, gateway, mode):  # noqa: F811
    assert run_pool_job(tmp_path, mode, gateway.address, shared=True) == {
        "raised": "ValueError"}
    assert counts(gateway, "pooljob", "pool") == {"ok": 5, "error": 1, "ValueError": 1}


@pytest.mark.integration
def test_a_pool_workers_own_error_is_counted_by_the_job(tmp_path, gateway):  # noqa: F811
    # Not from a model call: no worker counted it, so the job counts it for each model.
    assert run_pool_job(tmp_path, "worker_error", gateway.address, shared=True) == {
        "raised": "KeyError"}
    assert counts(gateway, "pooljob", "pool") == {"ok": 5, "error": 1, "KeyError": 1}


@pytest.mark.integration
def test_without_a_shared_directory_the_job_counts_what_its_pool_counted(
        tmp_path, gateway):  # noqa: F811
    # The workers' counts never reach this process's push: the failure would vanish.
    assert run_pool_job(tmp_path, "pool", gateway.address, shared=False) == {
        "raised": "ValueError"}
    assert counts(gateway, "pooljob", "pool") == {"ok": 0, "error": 1, "ValueError": 1}
