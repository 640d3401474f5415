"""More of `inferwatch demo` at its edges: the figures of the summary line with a shadow
model, a second run right after the first, hostile webhooks, a reader that goes away, a
child that dies, and the paces the scripted stories and the traffic accept."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promtool_cases import assert_promtool_passes

HOST = "127.0.0.1"


# --- the summary line ------------------------------------------------------------------------


def test_the_summary_figures_leave_out_the_shadow_challenger(tmp_path: Path) -> None:
    # The challenger records a call for every prediction under its own model_version: summed
    # in, 10 requests/s read as 20 calls/s and a 30% error ratio as 15%.
    from inferwatch.demo.runner import summary_queries

    champion = 'inferwatch_requests_total{model="breast-cancer",model_version="1.0.0",'
    shadow = 'inferwatch_requests_total{model="breast-cancer",model_version="1.1.0-rc1",'
    queries = summary_queries("30s")
    series = [{"series": champion + 'outcome="ok"}', "values": "0+7x60"},
              {"series": champion + 'outcome="error"}', "values": "0+3x60"},
              {"series": shadow + 'outcome="ok"}', "values": "0+10x60"}]
    checks = [{"expr": queries["calls/s"], "eval_time": "60s",
               "exp_samples": [{"labels": "{}", "value": 10}]},
              {"expr": queries["errors"], "eval_time": "60s",
               "exp_samples": [{"labels": "{}", "value": 0.3}]}]
    assert_promtool_passes(tmp_path, series, exprs=checks, interval="1s",
                           evaluation_interval="1s")


def test_the_summary_counts_requests_that_got_no_answer(tmp_path: Path) -> None:
    from inferwatch.demo.runner import Demo
    from inferwatch.demo.traffic import TrafficStats

    demo = Demo(scenario="short", workdir=tmp_path, with_stack=False, out=lambda line: None)

    class Generator:
        stats = TrafficStats(sent=40, ok=10, failed=2, unreachable=28)

    assert "unreachable 28" in demo._summary(Generator())


def test_a_child_that_dies_stops_the_demo_with_its_last_log_lines(tmp_path: Path) -> None:
    # A dead model left the demo printing `sent` climbing and every figure frozen.
    from inferwatch.demo.runner import Demo
    from inferwatch.demo.stack import Stack

    demo = Demo(scenario="short", workdir=tmp_path, with_stack=False, out=lambda line: None)
    with Stack(tmp_path) as stack:
        stack.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
        model = stack.start("model", [sys.executable, "-c",
                                      "print('MemoryError: the model ran out'); exit(3)"])
        model.popen.wait(30)
        said = demo._exited(stack)
    assert said is not None
    assert "model exited with status 3" in said and "the model ran out" in said


# --- ports -------------------------------------------------------------------------------------


def test_a_port_in_time_wait_after_the_last_run_is_still_the_usual_one() -> None:
    # The last demo's connections linger in TIME_WAIT for a minute; the servers bind through
    # them (SO_REUSEADDR), so a second run must not move every port "to another program".
    from inferwatch.demo.stack import free_port

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection((HOST, port))
    served, _ = listener.accept()
    served.close()  # the server closes first, as after a `Connection: close` reply
    client.recv(1)
    client.close()
    listener.close()
    assert free_port(HOST, port) == port
    # A port another program listens on is still taken.
    with socket.socket() as other:
        other.bind((HOST, 0))
        other.listen()
        taken = other.getsockname()[1]
        assert free_port(HOST, taken) != taken


# --- the page receiver -------------------------------------------------------------------------


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_webhook_with_a_bad_content_length_is_a_400_not_a_traceback(
        capfd: pytest.CaptureFixture[str]) -> None:
    from inferwatch.demo.receiver import PageReceiver

    lines: list[str] = []
    with PageReceiver(HOST, 0, out=lines.append) as receiver:
        host, port = HOST, int(receiver.url.rsplit(":", 1)[1].strip("/"))
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
            reply = sock.recv(200)
        status = _post(receiver.url, json.dumps({"alerts": [{
            "status": "firing", "labels": ["not", "a", "map"], "annotations": "text"}]}).encode(),
            {"Content-Type": "application/json"})
    assert reply.startswith(b"HTTP/1.0 400") or reply.startswith(b"HTTP/1.1 400"), reply
    assert status == 200
    assert lines == ["PAGE FIRING   ?        ?"]
    assert "Traceback" not in capfd.readouterr().err


_TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
_VALUES = st.one_of(_TEXT, st.integers(), st.none(), st.lists(_TEXT, max_size=2))


@given(st.fixed_dictionaries({}, optional={
    "status": _VALUES,
    "labels": st.one_of(_VALUES, st.dictionaries(
        st.sampled_from(["alertname", "severity", "model", "feature"]), _VALUES)),
    "annotations": st.one_of(_VALUES, st.dictionaries(st.just("summary"), _VALUES))}))
def test_every_alert_prints_as_exactly_one_plain_line(alert: dict[str, Any]) -> None:
    # A summary templated over lines, or a label value with a newline or an escape sequence,
    # split one page into several that read as others, or drove the terminal.
    from inferwatch.demo.receiver import format_alert

    line = format_alert(alert)
    assert line.startswith("PAGE ")
    assert line.isprintable(), repr(line)


# --- a reader that goes away ---------------------------------------------------------------------


def test_a_reader_that_goes_away_stops_the_output_without_tracebacks(tmp_path: Path) -> None:
    # `inferwatch demo | head`: the first line past the reader raised in every thread, and
    # the flush at exit once more, each with a traceback.
    script = textwrap.dedent("""
        import sys, threading
        from inferwatch.demo.console import say
        worker = threading.Thread(target=say, args=("PAGE from a webhook thread",))
        worker.start(); worker.join()
        try:
            say("summary line")
        except BrokenPipeError:
            print("main thread told", file=sys.stderr)
        say("stopped: every demo process has exited")
    """)
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, "-c", script], stdout=write,
                                stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, \
        result.stderr
    assert result.stderr.strip() == "main thread told"


# --- paces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["streaming", "quiet_shift"])
def test_a_story_at_infinite_speed_is_a_usage_error(module: str) -> None:
    # Every phase lasted no time: `--loop` printed phase lines into its log without end.
    result = subprocess.run(
        [sys.executable, "-m", f"inferwatch.demo.{module}", "--speed", "inf", "--loop",
         "--metrics-listen", f"{HOST}:0"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stdout[-500:] + result.stderr[-500:]
    assert "speed" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("flag,value", [("--rate", "0"), ("--rate", "inf"),
                                        ("--speed", "0"), ("--speed", "inf")])
def test_the_traffic_command_refuses_a_pace_it_cannot_keep(flag: str, value: str) -> None:
    # 0 ended in a traceback; inf sent as fast as it could, without end.
    try:
        result = subprocess.run(
            [sys.executable, "-m", "inferwatch.demo.traffic", "--model-url",
             f"http://{HOST}:9", flag, value], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{flag} {value} ran on instead of being refused")
    assert result.returncode == 2, result.stderr[-500:]
    assert flag in result.stderr and value in result.stderr
    assert "Traceback" not in result.stderr


def test_a_generator_at_an_infinite_rate_is_refused() -> None:
    from inferwatch.demo.model import load_dataset
    from inferwatch.demo.scenario import scenario
    from inferwatch.demo.traffic import TrafficGenerator

    with pytest.raises(ValueError, match="rate"):
        TrafficGenerator(f"http://{HOST}:9", scenario("short"), rate=float("inf"),
                         data=load_dataset())


# --- the README pictures -------------------------------------------------------------------------


def test_the_pictures_run_removes_its_working_directory_when_a_start_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from inferwatch.demo import snapshot
    from inferwatch.demo.stack import Stack, StackError

    def no_model(*args: object, **kwargs: object) -> None:
        raise StackError("replica-a exited with status 1")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(Stack, "start_model", no_model)
    started = time.monotonic()
    with pytest.raises(StackError):
        snapshot.run(tmp_path / "dashboards", tmp_path / "out")
    assert time.monotonic() - started < 30
    assert list(tmp_path.glob("inferwatch-snapshot-*")) == []
