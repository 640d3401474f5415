"""`inferwatch demo`: scenarios, the scaled rule config, the page receiver, and one real run
through the short scenario with Prometheus and Alertmanager, stopped by Ctrl-C."""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import require_binary
from inferwatch.demo import cli
from inferwatch.demo.receiver import PageReceiver, format_alert
from inferwatch.demo.scenario import SCENARIOS, duration, rule_config, scenario
from inferwatch.generate import render
from inferwatch.generate.config import duration_seconds, from_dict
from inferwatch.generate.rules import ALERTS

EXPECTED_PAGES = {"InferwatchErrorBudgetBurnFast", "InferwatchFeatureDrift"}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_every_scenario_tells_the_whole_story() -> None:
    for name in SCENARIOS:
        phases = scenario(name)
        assert [p.name for p in phases] == ["baseline", "feature-drift", "error-burst",
                                            "latency-regression", "recovery"]
        baseline, drift, burst, slow, recovery = phases
        assert baseline.faults == recovery.faults == {"error_ratio": 0.0, "slow_ratio": 0.0,
                                                      "slow_seconds": 0.0}
        assert drift.drift > 0 and burst.error_ratio > 0 and slow.slow_ratio > 0
        assert not (baseline.drift or recovery.drift or recovery.malformed_ratio)


def test_speed_divides_every_phase() -> None:
    normal, fast = scenario("short"), scenario("short", speed=4)
    assert [p.seconds / 4 for p in normal] == pytest.approx([p.seconds for p in fast])


@pytest.mark.parametrize("name, speed", [("long", 1.0), ("short", 0.0), ("short", -1.0)])
def test_bad_scenario_or_speed_is_a_clear_error(name: str, speed: float) -> None:
    with pytest.raises(ValueError, match=r"scenario|speed"):
        scenario(name, speed)


@pytest.mark.parametrize("flag", ["0", "-2", "fast", "1000"])
def test_cli_refuses_a_bad_speed(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--speed", flag)
    assert "--speed" in capsys.readouterr().err


@given(st.floats(min_value=0.05, max_value=100.0))
def test_rule_config_is_valid_and_keeps_windows_ordered_at_any_speed(speed: float) -> None:
    cfg = from_dict(rule_config(speed))
    assert duration_seconds(cfg.windows.rate) >= 10  # ten scrapes at one per second
    for burn in (cfg.slo.fast_burn, cfg.slo.slow_burn):
        assert duration_seconds(burn.short_window) < duration_seconds(burn.long_window)
    assert {a.name for a in ALERTS} == set(cfg.alerts)


def test_rule_config_scales_the_rendered_rules() -> None:
    rules = render(from_dict(rule_config(6)))["alerts/alerting-rules.yml"]
    assert "for: 5s" in rules and "for: 30m" not in rules
    assert "rate10s" in render(from_dict(rule_config(6)))["alerts/recording-rules.yml"]


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_duration_is_a_prometheus_duration(seconds: float) -> None:
    text = duration(seconds)
    assert duration_seconds(text) == max(round(seconds), 1)


def test_format_alert_shows_identity_and_summary_and_never_fails() -> None:
    line = format_alert({"status": "firing", "labels": {
        "alertname": "InferwatchGpuLost", "severity": "critical", "gpu": "1"},
        "annotations": {"summary": "GPU 1 is lost"}})
    assert line == 'PAGE FIRING   critical InferwatchGpuLost {gpu="1"}: GPU 1 is lost'
    assert format_alert({}).startswith("PAGE ?")


def test_receiver_prints_each_alert_and_rejects_other_payloads() -> None:
    lines: list[str] = []
    with PageReceiver(port=0, out=lines.append) as receiver:
        def post(body: bytes) -> int:
            request = urllib.request.Request(receiver.url, data=body)
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        payload = {"alerts": [
            {"status": "firing", "labels": {"alertname": "A", "severity": "warning"}},
            {"status": "resolved", "labels": {"alertname": "B", "severity": "critical"}}]}
        assert post(json.dumps(payload).encode()) == 200
        assert post(b"not json") == 400
        assert post(b'{"no": "alerts"}') == 400
        assert receiver.names() == {"A"} and receiver.names("resolved") == {"B"}
    assert len(lines) == 2 and lines[0].startswith("PAGE FIRING")


# --- a real run ------------------------------------------------------------------------------


def _read_lines(stream, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


@pytest.mark.integration
def test_demo_short_scenario_prints_the_pages_and_ctrl_c_stops_every_process() -> None:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "inferwatch.cli", "demo", "--scenario", "short", "--speed", "3",
         "--rate", "15"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(demo.stdout, lines), daemon=True).start()
    seen: list[str] = []
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                if demo.poll() is not None:
                    break
                continue
            if not children and "scenario" in seen[-1] and "->" in seen[-1]:
                children = psutil.Process(demo.pid).children(recursive=True)
            pages = {line.split()[4] for line in seen if " PAGE FIRING " in line}
            if pages >= EXPECTED_PAGES:
                break
        output = "\n".join(seen)
        assert {line.split()[4] for line in seen if " PAGE FIRING " in line} >= EXPECTED_PAGES, \
            output
        assert "Prometheus     http://127.0.0.1:" in output
        assert any("firing:" in line for line in seen), output
        # model, exporter, Alertmanager, Prometheus
        assert len(children) >= 4, [c.cmdline() for c in children]

        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
    time.sleep(0.5)
    while not lines.empty():
        seen.append(lines.get())
    assert seen[-1] == "stopped: every demo process has exited", seen[-5:]
    assert [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] \
        == []
