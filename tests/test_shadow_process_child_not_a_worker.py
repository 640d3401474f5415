"""A process-mode shadow's child imports the app to rebuild the challenger: it must not act
as a multi-worker worker there (publish the app's import-time calls again) nor start
children of its own (the app's import-time ``shadow()``).

Against a real gunicorn --preload server with a real multi-worker directory, and a script
run as ``__main__``, which ``spawn`` runs again in the child before anything else.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch.multiproc
from conftest import free_port
from inferwatch.core import shadow_process
from inferwatch.multiproc.store import SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId

APPS = Path(__file__).parent / "apps"
WORKERS = 3
# A shadow's child publishes (when it wrongly does) at its registry's first drain, a
# second after the app's import: each is given three before its absence is trusted.
CHILD_PUBLISH_GRACE_SECONDS = 3.0


def champion_class(x: int) -> str:
    return "a" if x % 2 == 0 else "b"


def challenger_class(x: int) -> str:
    return "a" if x % 3 == 0 else "b"


def expected_counts(calls: list[list[int]]) -> dict[str, float]:
    agreement = collections.Counter(
        "agree" if champion_class(x) == challenger_class(x) else "disagree"
        for rows in calls for x in rows)
    return {"calls": float(len(calls)), "rows": float(sum(map(len, calls))),
            "agree": float(agreement["agree"]), "disagree": float(agreement["disagree"])}


def metric(samples: list, name: str, **labels: str) -> float:
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def scrape(url: str) -> list:
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def is_multiprocessing_child(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return any("multiprocessing" in part for part in process.cmdline())
    return False


def shadow_children(master: psutil.Process) -> list[psutil.Process]:
    children = []
    for process in master.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any("spawn_main" in part for part in process.cmdline()):
                children.append(process)
    return children


def snapshot_pids(directory: Path) -> set[int]:
    return {worker.pid for worker in map(WorkerId.parse, os.listdir(directory)) if worker}


@contextlib.contextmanager
def preloaded_gunicorn(tmp_path: Path):
    directory = tmp_path / "multiproc"
    directory.mkdir()
    port = free_port()
    log = tmp_path / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "--preload", "--workers", str(WORKERS),
               "--bind", f"127.0.0.1:{port}", "--chdir", str(APPS), "--log-level", "warning",
               "--graceful-timeout", "5", "--timeout", "120", "shadow_child_app:app"]
    env = {**os.environ, "INFERWATCH_MULTIPROC_DIR": str(directory),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a safety limit: both cores may be busy
        while True:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
            with contextlib.suppress(OSError):
                scrape(url + "/metrics")
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url, psutil.Process(process.pid), directory, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its own session: only what it started
        process.wait(timeout=5)


@pytest.mark.integration
def test_preloaded_gunicorn_counts_the_warm_up_once_and_no_shadow_child_publishes(tmp_path):
    calls = [[0, 1]]  # the master's warm-up at import, before the workers are forked
    requests = [[(i * 7 + j) % 10 for j in range(1 + i % 3)] for i in range(60)]
    with preloaded_gunicorn(tmp_path) as (url, master, directory, log):
        def predict(rows: list[int]) -> int:
            query = ",".join(map(str, rows))
            with urllib.request.urlopen(f"{url}/predict?x={query}", timeout=60) as response:
                return json.load(response)["pid"]

        with ThreadPoolExecutor(6) as pool:
            served_by = set(pool.map(predict, requests))
        calls += requests
        want = expected_counts(calls)

        # Every sampled call has ended as a call of the challenger's, compared or not.
        deadline = time.monotonic() + 60
        while metric(scrape(url + "/metrics"), "inferwatch_requests_total",
                     model_version="1-rc") < want["calls"]:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        children = shadow_children(master)
        assert children, "no shadow child process runs"
        latest_start = max(child.create_time() for child in children)
        while time.time() < latest_start + CHILD_PUBLISH_GRACE_SECONDS:
            time.sleep(0.2)

        samples = scrape(url + "/metrics")
        workers = {child.pid for child in master.children() if not is_multiprocessing_child(child)}
        assert served_by <= workers
        # Only the master (its warm-up) and the workers publish; no shadow child does.
        assert snapshot_pids(directory) <= {master.pid} | workers
        assert not snapshot_pids(directory) & {child.pid for child in children}
        for version in ("1", "1-rc"):
            assert metric(samples, "inferwatch_requests_total", model_version=version,
                          outcome="ok") == want["calls"], version
            assert metric(samples, "inferwatch_batch_size_sum", model_version=version) \
                == want["rows"], version
        assert metric(samples, "inferwatch_shadow_sampled_total") == want["calls"]
        assert metric(samples, "inferwatch_shadow_compared_total") == want["calls"]
        for result in ("agree", "disagree"):
            assert metric(samples, "inferwatch_shadow_agreement_total", result=result) \
                == want[result], result
        # Asked inside each child: its process publishes as no worker.
        assert metric(samples, "inferwatch_predicted_class_total", model_version="1-rc",
                      **{"class": "worker"}) == 0
        assert metric(samples, "inferwatch_shadow_dropped_total") == 0
        assert metric(samples, "inferwatch_errors_total") == 0
        text = log.read_text()
        assert "cannot start in its child process" not in text, text
        assert "daemonic processes" not in text, text


SCRIPT = textwrap.dedent('''
    import json
    import os

    import inferwatch
    import inferwatch.multiproc
    from inferwatch.core.registry import default_registry


    class Champion:
        classes_ = ["a", "b"]

        def predict(self, rows):
            return ["a" if x % 2 == 0 else "b" for x in rows]


    class Challenger:
        classes_ = ["a", "b"]

        def predict(self, rows):
            if default_registry().multiproc is not None:
                return ["worker" for _ in rows]
            return ["a" if x % 3 == 0 else "b" for x in rows]


    # As a one-script server starts: spawn runs all this again in the shadow's child.
    cleared = inferwatch.multiproc.clear_directory()
    model = inferwatch.instrument(Champion(), name="clf", version="1", task="classification")
    handle = inferwatch.shadow(model, Challenger(), version="2", sample=1.0, mode="process")
    model.predict([0, 1])

    if __name__ == "__main__":
        for x in range(5):
            model.predict([x])
        handle.flush()
        inferwatch.multiproc.shutdown()
        print(json.dumps({"pid": os.getpid(), "cleared": cleared}))
''')


def test_a_script_run_again_in_the_shadow_child_neither_publishes_nor_clears_nor_spawns(
        tmp_path):
    directory = tmp_path / "multiproc"
    directory.mkdir()
    script = tmp_path / "one_script_server.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "INFERWATCH_MULTIPROC_DIR": str(directory),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["cleared"] == 0
    # Exited: the script folded its own snapshot into the archive; nothing else was written.
    assert not snapshot_pids(directory), os.listdir(directory)
    view = SnapshotDirectory(str(directory)).read_view(time.time())
    counters = {state.version: state.counters for state in view.states}
    assert sorted(counters) == ["1", "2"], "the script's counts are lost"
    want = expected_counts([[0, 1], [0], [1], [2], [3], [4]])
    for version in ("1", "2"):
        assert counters[version]["inferwatch_requests_total"][("ok",)] == want["calls"]
    assert counters["2"]["inferwatch_shadow_compared_total"][("1",)] == want["calls"]
    assert ("worker",) not in counters["2"].get("inferwatch_predicted_class_total", {})
    assert "cannot start in its child process" not in done.stderr, done.stderr


def test_this_process_is_no_shadow_child_and_keeps_its_directory(tmp_path, monkeypatch):
    monkeypatch.setenv(inferwatch.multiproc.ENV_VAR, str(tmp_path))
    assert not shadow_process.in_shadow_child()
    assert inferwatch.multiproc.directory_from_env() == str(tmp_path)
