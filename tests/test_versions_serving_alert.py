"""InferwatchTooManyVersionsServing counts the versions that serve calls, not the versions whose
inferwatch_model_info is still exported: real model processes, scraped by a real Prometheus,
which evaluates the generated alert's expression.

A retired version's info series can outlive it: in multi-worker mode the merged view keeps a
dead worker's identity (a gunicorn HUP reload never clears the directory), and in one process
the monitor of a hot-swapped version stays registered. Its counters stand still, so it must
not count; two versions that both take calls must.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port
from processes import prometheus, stop, wait_ready
from test_rules_semantics_edges import alert_expr

pytestmark = pytest.mark.integration

ALERT = "InferwatchTooManyVersionsServing"
MODEL = 'job="inferwatch-model", model="fraud"'

# The model service of each scenario: serves /metrics on PORT and keeps calling version 2.
APP = r'''
import subprocess
import sys
import threading
import time

OLD_WORKER = """
import sys, threading, time
import inferwatch, inferwatch.multiproc
predict = inferwatch.instrument(lambda x: 0.5, name="fraud", version="1")
for _ in range(20):
    predict(1.0)
def keep_calling():
    while True:
        predict(1.0)
        time.sleep(0.05)
if sys.argv[1] == "alive":
    threading.Thread(target=keep_calling, daemon=True).start()
    sys.stdin.read()  # until the service that started this worker is gone
inferwatch.multiproc.shutdown()
"""

port, scenario = int(sys.argv[1]), sys.argv[2]
if scenario == "worker-exited":
    subprocess.run([sys.executable, "-c", OLD_WORKER, "exited"], check=True)
elif scenario == "worker-alive":
    worker = subprocess.Popen([sys.executable, "-c", OLD_WORKER, "alive"],
                              stdin=subprocess.PIPE)

import inferwatch

callers = []
if scenario in ("swapped", "canary"):
    old = inferwatch.instrument(lambda x: 0.5, name="fraud", version="1")
    for _ in range(20):
        old(1.0)
    if scenario == "canary":
        callers.append(old)
    else:
        del old
callers.append(inferwatch.instrument(lambda x: 0.7, name="fraud", version="2"))
inferwatch.serve(port=port, addr="127.0.0.1")
while True:
    for predict in callers:
        predict(1.0)
    time.sleep(0.05)
'''

# The scenario, whether it runs in multi-worker mode, and the versions serving calls.
SCENARIOS = {
    "worker-exited": (True, 1),   # a reload from version 1 to 2: v1's worker has exited
    "worker-alive": (True, 2),    # a worker of each version takes calls
    "swapped": (False, 1),        # one process replaced version 1 with version 2
    "canary": (False, 2),         # one process routes calls to both versions
}


def _start_app(tmp_path: Path, scenario: str, multi_worker: bool) -> tuple[subprocess.Popen, int]:
    script = tmp_path / "app.py"
    script.write_text(APP)
    env = {k: v for k, v in os.environ.items() if k != "INFERWATCH_MULTIPROC_DIR"}
    if multi_worker:
        directory = tmp_path / "multiproc"
        directory.mkdir()
        env["INFERWATCH_MULTIPROC_DIR"] = str(directory)
    port = free_port()
    log = (tmp_path / "app.log").open("w")
    app = subprocess.Popen([sys.executable, str(script), str(port), scenario],
                           stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    wait_ready(f"http://127.0.0.1:{port}/metrics", process=app)
    return app, port


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_only_versions_that_take_calls_count_as_serving(tmp_path: Path, scenario: str) -> None:
    multi_worker, serving = SCENARIOS[scenario]
    expr = alert_expr({}, ALERT)
    app, port = _start_app(tmp_path, scenario, multi_worker)
    try:
        with prometheus(tmp_path, [f"127.0.0.1:{port}"]) as server:
            # Both versions' info series are scraped, version 2's calls seen rising: what the
            # alert reads is all there.
            server.wait_for(f"count by (model) (inferwatch_model_info{{{MODEL}}}) == 2", 60)
            server.wait_for(f'increase(inferwatch_requests_total{{{MODEL}, model_version="2", '
                            f'outcome="ok"}}[15m]) > 0', 60)
            if serving == 1:
                assert server.query(expr) == []
            else:
                [result] = server.wait_for(expr, 60)
                assert result["metric"] == {"model": "fraud"}
                assert float(result["value"][1]) == 2
    finally:
        stop(app)


@pytest.mark.parametrize("window, alert_for, refused", [
    ("15m", None, False), ("59m", None, False), ("1h", None, True),
    ("20m", "20m", True), ("20m", "2h", False)])
def test_the_serving_window_must_be_shorter_than_the_alerts_for(window, alert_for, refused):
    """A retired version counts for the window after its last call: a window as long as the
    alert's `for` fires on every rollout, so the config says so, naming the key."""
    from inferwatch.generate.config import from_dict
    from inferwatch.generate.config_schema import ConfigError

    data = {"windows": {"versions_serving": window}}
    if alert_for is not None:
        data["alerts"] = {"InferwatchTooManyVersionsServing": {"for": alert_for}}
    if refused:
        with pytest.raises(ConfigError, match=r"windows\.versions_serving: .* must be shorter "
                                              r"than InferwatchTooManyVersionsServing's for"):
            from_dict(data)
    else:
        assert from_dict(data).windows.versions_serving == window
