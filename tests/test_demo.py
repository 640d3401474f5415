"""`inferwatch demo`: scenarios, the scaled rule config, the page receiver, and one real run
through the short scenario with Prometheus and Alertmanager, stopped by Ctrl-C."""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from conftest import require_binary
from inferwatch.demo import cli
from inferwatch.demo.receiver import PageReceiver, format_alert
from inferwatch.demo.runner import rate_window_seconds
from inferwatch.demo.scenario import (
    _WINDOWS,
    DRIFT_WINDOW_SECONDS,
    SCENARIOS,
    check_speed,
    drift_window_seconds,
    duration,
    max_speed,
    rule_config,
    scenario,
)
from inferwatch.demo.stack import STOP_TIMEOUT_SECONDS
from inferwatch.generate import render
from inferwatch.generate.config import from_dict
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.rules_alerts import ALERTS

# The incident's pages; the retrained challenger, right more often on the shifted inputs
# (informational); and price-estimate's quiet shift, which only its adaptive baseline sees.
EXPECTED_PAGES = {"InferwatchErrorBudgetBurnFast", "InferwatchFeatureDrift",
                  "InferwatchShadowBetter", "InferwatchPredictionShift"}


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


def test_receiver_prints_an_alert_when_it_fires_and_resolves_and_counts_repeats() -> None:
    lines: list[str] = []
    drift = {"alertname": "InferwatchFeatureDrift", "severity": "warning", "feature": "a"}
    burn = {"alertname": "InferwatchErrorBudgetBurnFast", "severity": "critical"}
    with PageReceiver(port=0, out=lines.append) as receiver:
        # What Alertmanager sends: every alert of the group again on each notification.
        for alerts in ([("firing", drift)], [("firing", drift), ("firing", burn)],
                       [("firing", drift), ("firing", burn)], [("resolved", drift),
                                                               ("firing", burn)],
                       [("resolved", drift), ("firing", burn)], [("firing", drift)]):
            receiver._accept({"alerts": [{"status": status, "labels": labels}
                                         for status, labels in alerts]})
        assert [line.split()[1:4] for line in lines] == [
            ["FIRING", "warning", "InferwatchFeatureDrift"],
            ["FIRING", "critical", "InferwatchErrorBudgetBurnFast"],
            ["RESOLVED", "warning", "InferwatchFeatureDrift"],
            ["FIRING", "warning", "InferwatchFeatureDrift"],
        ]
        assert receiver.repeats == 6
        assert receiver.digest() == ("pages: InferwatchErrorBudgetBurnFast, InferwatchFeatureDrift"
                                     " firing, 0 resolved, 6 repeats not shown")


@given(rate=st.floats(1.0, 1000.0), fraction=st.floats(0.01, 1.0))
@example(rate=12.09375, fraction=1.0)  # the row floor meets the window, 1 ulp above it
def test_every_window_and_for_scales_with_any_allowed_speed(rate: float, fraction: float) -> None:
    speed = max_speed(rate) * fraction
    check_speed(speed, rate)
    cfg = from_dict(rule_config(speed))
    scaled = {"rate": cfg.windows.rate, "no_traffic_lookback": cfg.windows.no_traffic_lookback,
              "versions_serving": cfg.windows.versions_serving,
              "fast_burn.long": cfg.slo.fast_burn.long_window,
              "fast_burn.short": cfg.slo.fast_burn.short_window,
              "slow_burn.long": cfg.slo.slow_burn.long_window,
              "slow_burn.short": cfg.slo.slow_burn.short_window,
              "accuracy": cfg.accuracy.window,
              "for": rule_config(speed)["alerts"]["InferwatchFeatureDrift"]["for"],
              "baseline.window": cfg.baselines.predictions.window,
              "baseline.history": cfg.baselines.predictions.baseline_window,
              "baseline.min_history": cfg.baselines.predictions.min_history}
    assert cfg.baselines.predictions.baseline_offset == cfg.baselines.predictions.baseline_window
    for name, (seconds, _floor) in _WINDOWS.items():
        assert abs(duration_seconds(scaled[name]) - seconds / speed) <= 0.5, name
    # At the highest speed the row floor meets the scaled window, up to the rounding of
    # max_speed: the window is still the scaled one.
    assert drift_window_seconds(speed, rate) == pytest.approx(DRIFT_WINDOW_SECONDS / speed,
                                                              rel=1e-12)


@given(rate=st.floats(1.0, 1000.0), factor=st.floats(1.01, 50.0))
def test_speeds_past_the_story_are_refused(rate: float, factor: float) -> None:
    with pytest.raises(ValueError, match="--speed"):
        check_speed(max_speed(rate) * factor, rate)


def test_the_cli_refuses_speed_4_at_10_requests_a_second(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(parse("--speed", "4", "--rate", "10", "--no-stack")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--speed 4" in err and "--speed 2 or less" in err


def test_demo_without_scikit_learn_says_which_extra_to_install() -> None:
    code = ("import sys; sys.modules['sklearn'] = None; from inferwatch.cli import main; "
            "sys.exit(main(['demo', '--no-stack']))")
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60)
    assert finished.returncode == 1
    assert finished.stdout == ""
    assert finished.stderr.count("\n") == 1, finished.stderr
    assert "pip install 'inferwatch[demo]'" in finished.stderr


@given(elapsed=st.floats(0.0, 1e5), speed=st.floats(0.05, 6.0))
def test_the_calls_per_second_window_never_reaches_before_the_traffic(elapsed: float,
                                                                       speed: float) -> None:
    window = rate_window_seconds(elapsed, speed)
    assert 2 <= window <= max(2.0, elapsed)
    if elapsed >= 600 / speed:
        assert window == max(10, round(60 / speed))


# --- a real run ------------------------------------------------------------------------------


# The demo's command line, with a dump of every thread's stack on SIGUSR1: a demo that does
# not stop after Ctrl-C then says where it waits.
_DUMPS_STACKS_ON_SIGUSR1 = (
    "import faulthandler, signal, sys; faulthandler.register(signal.SIGUSR1, all_threads=True);"
    " from inferwatch.cli import main; sys.exit(main(sys.argv[1:]))")


def _read_lines(stream, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


def _read_timed_lines(stream, lines: queue.Queue[tuple[float, str]]) -> None:
    for line in stream:
        lines.put((time.monotonic(), line.rstrip("\n")))


@pytest.mark.integration
def test_demo_short_scenario_prints_the_pages_and_ctrl_c_stops_every_process() -> None:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [sys.executable, "-c", _DUMPS_STACKS_ON_SIGUSR1, "demo", "--scenario", "short",
         "--speed", "6", "--rate", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        # As at a terminal: a runner started in the background (`cmd &`) ignores SIGINT, the
        # demo inherited that and rightly kept ignoring the Ctrl-C this test sends.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(demo.stdout, lines), daemon=True)
    reader.start()
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
        assert "streaming      http://127.0.0.1:" in output
        assert "quiet shift    http://127.0.0.1:" in output
        shift = [line for line in seen
                 if " PAGE FIRING " in line and "InferwatchPredictionShift" in line]
        assert all('model="price-estimate"' in line for line in shift), shift
        better = [line for line in seen
                  if " PAGE FIRING " in line and "InferwatchShadowBetter" in line]
        assert all(" info " in line and 'model_version="1.1.0-rc1"' in line
                   for line in better), better
        # model, streaming model, quiet-shift model, exporter, Alertmanager, Prometheus
        assert len(children) >= 6, [c.cmdline() for c in children]
        for module in ("inferwatch.demo.streaming", "inferwatch.demo.quiet_shift"):
            assert any(module in " ".join(c.cmdline()) for c in children), module

        demo.send_signal(signal.SIGINT)
        # The demo's own bound, not a speed: the traffic thread's join, then each child its
        # SIGTERM wait and, if need be, its SIGKILL wait, one after the other. On a loaded
        # machine a child's shutdown (Prometheus writing its head block) takes its time.
        try:
            status = demo.wait(15 + 2 * STOP_TIMEOUT_SECONDS * len(children) + 30)
        except subprocess.TimeoutExpired:
            demo.send_signal(signal.SIGUSR1)  # where every thread of the demo waits
            time.sleep(3)
            while not lines.empty():
                seen.append(lines.get())
            pytest.fail("the demo did not stop after Ctrl-C:\n" + "\n".join(seen[-80:]))
        assert status == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
    reader.join(30)  # the demo has exited: its output ends, and so does the reader
    while not lines.empty():
        seen.append(lines.get())
    assert seen[-1] == "stopped: every demo process has exited", seen[-5:]
    assert [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] \
        == []


def test_lines_from_many_threads_never_share_a_line(capsys) -> None:
    from inferwatch.demo.console import say

    def write(thread: int) -> None:
        for i in range(300):
            say(f"PAGE FIRING thread-{thread} line-{i}")

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines) == sorted(f"PAGE FIRING thread-{t} line-{i}"
                                   for t in range(8) for i in range(300))


# Run here, not in a file of its own: two whole demos at once (xdist runs files side by
# side) race for the demo's preferred ports and the machine's two cores.
@pytest.mark.integration
def test_the_first_summary_reads_the_rate_the_traffic_sends(tmp_path: Path) -> None:
    # Prometheus scrapes new targets some seconds after it is ready: traffic sent before its
    # first sample was lost to every rate, and calls/s read 5 of 10 at first, 9 after a minute.
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_path)}
    demo = subprocess.Popen(
        [sys.executable, "-m", "inferwatch.cli", "demo", "--scenario", "short", "--speed", "2",
         "--rate", "10"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        cwd=tmp_path,
        # As at a terminal: under a runner started in the background (`cmd &`) SIGINT is
        # ignored, the demo inherits that and plays its whole scenario after the Ctrl-C below.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: queue.Queue[tuple[float, str]] = queue.Queue()
    threading.Thread(target=_read_timed_lines, args=(demo.stdout, lines), daemon=True).start()
    seen: list[str] = []
    traffic_began = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and demo.poll() is None:
            try:
                arrived, line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            if traffic_began is None and re.match(r"\[\d\d:\d\d\] phase baseline", line):
                traffic_began = arrived
            if re.match(r"\[\d\d:\d\d\] baseline: sent ", line):
                break
        first = seen[-1] if seen else ""
        figure = re.search(r"\| ([\d.]+) calls/s", first)
        sent = re.search(r"baseline: sent (\d+)", first)
        assert figure and sent and traffic_began is not None, "\n".join(seen)
        # What the traffic managed, not what it was asked for: on a machine busy with other
        # work it sends fewer than --rate, and the summary must read what was sent. The
        # defect this guards read half (5 calls/s of 10 sent).
        achieved = min(10.0, int(sent.group(1)) / max(0.5, arrived - traffic_began))
        assert float(figure.group(1)) >= 0.75 * achieved, (first, achieved)
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(15 + 12 * STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait(10)
