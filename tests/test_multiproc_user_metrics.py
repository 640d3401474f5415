"""Multi-worker mode: what /metrics serves beside inferwatch's merged view.

prometheus_client's default registry (the application's own metrics, the process_ and
python_gc_ collectors) holds the values of the worker that answers: served as they are,
those counters would go back and forth from one scrape to the next. They are served merged
(prometheus_client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR) or not at all; a process
without INFERWATCH_MULTIPROC_DIR serves the default registry as before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from test_multiproc_gunicorn import Server, gunicorn, metric_value

WORKERS = 3
APP = "user_metrics_app:app"
PER_PROCESS = ("process_", "python_gc_", "python_info")
HINT = "PROMETHEUS_MULTIPROC_DIR"


def _spread_calls(server: Server, arrived: Path, total: int) -> None:
    """`total` calls, every worker serving at least one (the barrier of test_multiproc_gunicorn):
    each worker then holds only part of the application's count."""
    with ThreadPoolExecutor(WORKERS * 4) as pool:
        held, sent = [], 0
        deadline = time.monotonic() + 60
        while len(list(arrived.iterdir())) < WORKERS:
            assert time.monotonic() < deadline, f"{list(arrived.iterdir())} arrived"
            if sent < WORKERS * 4 - 1:
                held.append(pool.submit(server.predict, 1.0, hold=True))
                sent += 1
            time.sleep(0.05)
        pids = [future.result() for future in held]
        pids += pool.map(server.predict, [1.0] * (total - sent))
    assert len(set(pids)) == WORKERS


def _families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _start(tmp_path: Path, env: dict[str, str]):
    arrived = tmp_path / "arrived"
    arrived.mkdir()
    env = {"HOLD_DIR": str(arrived), "HOLD_FOR": str(WORKERS), **env}
    return arrived, gunicorn(tmp_path, APP, env=env, workers=WORKERS)


@pytest.mark.integration
def test_without_prometheus_multiproc_dir_one_workers_series_are_left_off(tmp_path, monkeypatch):
    for name in (HINT, HINT.lower()):
        monkeypatch.delenv(name, raising=False)
    arrived, server_context = _start(tmp_path, {})
    total = 60
    with server_context as server:
        _spread_calls(server, arrived, total)
        server.wait_for("inferwatch_requests_total", float(total), outcome="ok")
        for _ in range(2 * WORKERS):
            families = _families(server.get("/metrics").decode())
            leaked = sorted(n for n in families if n.startswith(PER_PROCESS) or n == "shop_orders")
            assert leaked == [], f"one worker's series on the merged endpoint: {leaked}"
            samples = [s for f in families.values() for s in f]
            assert metric_value(samples, "inferwatch_requests_total", outcome="ok") == total
        log = server.log.read_text()
    # Each worker warns once, at start-up (the app has a metric of its own), how to get the
    # application's metrics merged.
    assert log.count(HINT) == WORKERS, log


@pytest.mark.integration
def test_with_prometheus_multiproc_dir_the_apps_metrics_are_served_merged(tmp_path):
    prometheus_dir = tmp_path / "prometheus"
    prometheus_dir.mkdir()
    arrived, server_context = _start(tmp_path, {HINT: str(prometheus_dir)})
    total = 60
    with server_context as server:
        _spread_calls(server, arrived, total)
        server.wait_for("inferwatch_requests_total", float(total), outcome="ok")
        # prometheus_client writes each increment to its file at once: every worker's
        # answer is the whole server's count, whichever worker answers.
        for _ in range(2 * WORKERS):
            families = _families(server.get("/metrics").decode())
            assert [s.value for s in families["shop_orders"]
                    if s.name == "shop_orders_total"] == [total]
            assert not [n for n in families if n.startswith(PER_PROCESS)]
        only = _families(server.get("/metrics?name[]=shop_orders_total").decode())
        assert [(s.name, s.value) for f in only.values() for s in f] == [
            ("shop_orders_total", total)]
        ours = _families(server.get("/metrics?name[]=inferwatch_requests_total").decode())
        assert list(ours) == ["inferwatch_requests"]
        log = server.log.read_text()
    assert HINT not in log, log


def _run(body: str, **env: str) -> subprocess.CompletedProcess:
    # A process of its own: the default registries are the process's.
    script = textwrap.dedent("""
        import socket, urllib.request
        import prometheus_client
        import inferwatch

        def scrape(port):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
                return r.read().decode()

        def free_port():
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                return sock.getsockname()[1]
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": os.pathsep.join(sys.path),
                                            "PATH": "/usr/bin:/bin", **env})


def test_the_masters_serve_leaves_its_own_process_series_off(tmp_path):
    # inferwatch.serve() in the gunicorn master (docs/multiprocess.md) serves the merged view
    # as every worker does: the master's process_ series are not the server's.
    done = _run("""
        import logging
        logging.basicConfig(level=logging.INFO)
        model = inferwatch.instrument(lambda x: 0.5, name="fraud", version="1")
        model([1.0])
        port = free_port()
        server = inferwatch.serve(port, addr="127.0.0.1")
        print(scrape(port))
        server.shutdown()
    """, INFERWATCH_MULTIPROC_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    families = _families(done.stdout)
    assert "inferwatch_requests" in families
    assert not [n for n in families if n.startswith(PER_PROCESS)]
    # No metric of the application's own: the hint is information, not a warning.
    hints = [line for line in done.stderr.splitlines() if HINT in line]
    assert len(hints) == 1 and hints[0].startswith("INFO:"), done.stderr


def test_single_process_mode_still_serves_the_default_registry():
    done = _run("""
        from prometheus_client import REGISTRY
        from inferwatch.serving.exposition import resolve_registry

        prometheus_client.Counter("app_logins", "Logins.").inc()
        assert resolve_registry(None) is REGISTRY
        model = inferwatch.instrument(lambda x: 0.5, name="fraud", version="1")
        model([1.0])
        port = free_port()
        server = inferwatch.serve(port, addr="127.0.0.1")
        print(scrape(port))
        server.shutdown()
    """)
    assert done.returncode == 0, done.stderr
    families = _families(done.stdout)
    assert {"inferwatch_requests", "app_logins", "process_cpu_seconds"} <= set(families)
    assert HINT not in done.stderr


def test_an_application_metric_under_an_inferwatch_name_stops_start_up(tmp_path):
    prometheus_dir, inferwatch_dir = tmp_path / "prometheus", tmp_path / "inferwatch"
    prometheus_dir.mkdir()
    inferwatch_dir.mkdir()
    env = {"INFERWATCH_MULTIPROC_DIR": str(inferwatch_dir), HINT: str(prometheus_dir)}
    clash = _run("""
        prometheus_client.Counter("inferwatch_requests", "Clashes.", ["outcome"])
        try:
            inferwatch.make_wsgi_app()
        except ValueError as exc:
            print("refused:", exc)
    """, **env)
    assert clash.returncode == 0, clash.stderr
    assert clash.stdout.startswith("refused:") and "inferwatch_requests_total" in clash.stdout
    # inferwatch added to prometheus_client's registry for the application's own exposition
    # (README) is no clash.
    added = _run("""
        from prometheus_client import REGISTRY
        from inferwatch.serving.bridge import InferwatchCollector

        REGISTRY.register(InferwatchCollector())
        inferwatch.make_wsgi_app()
        print("served")
    """, **env)
    assert (added.returncode, added.stdout) == (0, "served\n"), added.stderr
