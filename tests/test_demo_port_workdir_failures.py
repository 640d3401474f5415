"""The demo as users meet it: a port answered by something else, a kept workdir in a bad
state, senders that hang up, a model that dies while the demo plays slowly."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.demo.receiver import PageReceiver
from inferwatch.demo.scenario import scenario
from inferwatch.demo.stack import StackError
from inferwatch.demo.traffic import TrafficGenerator

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]


class _Answering:
    """A TCP server on a free loopback port that answers each connection with `answer`."""

    def __init__(self) -> None:
        self.answer = b""
        self._sock = socket.create_server((HOST, 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(65536)
                    conn.sendall(self.answer)
                except OSError:
                    pass

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def not_http() -> Iterator[_Answering]:
    server = _Answering()
    yield server
    server.close()


# --- traffic to a port where no HTTP service answers ------------------------------------------


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=st.one_of(
    st.binary(min_size=1, max_size=80).filter(lambda b: not b.startswith(b"HTTP/")),
    st.sampled_from([b"SSH-2.0-OpenSSH_9.6\r\n",
                     b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"predictions\"",
                     b"HTTP/1.1 200 OK\r\n" + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n"])))
def test_a_post_to_something_that_is_not_http_counts_as_no_answer(
        not_http: _Answering, answer: bytes) -> None:
    # Another program on the model's port, or a model dying mid-answer: the error escaped
    # the traffic thread, which died with a traceback and sent nothing more.
    not_http.answer = answer
    generator = TrafficGenerator(f"http://{HOST}:{not_http.port}", scenario("short", 100))
    try:
        status = generator._post("/predict", {"request_id": "r", "instances": [{}]})
    finally:
        generator._pool.shutdown(wait=True)
    assert status is None or 100 <= status <= 599


def test_the_traffic_keeps_going_against_a_port_that_does_not_speak_http(
        not_http: _Answering, monkeypatch: pytest.MonkeyPatch) -> None:
    not_http.answer = b"SSH-2.0-OpenSSH_9.6\r\n"
    died: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_value))
    phases = scenario("short", 100)
    generator = TrafficGenerator(f"http://{HOST}:{not_http.port}", phases[:1], rate=50)
    thread = threading.Thread(target=generator.run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert died == []
    stats = generator.stats
    assert stats.sent > 0 and stats.unreachable == stats.sent - stats.ok - stats.failed


# --- the page receiver and senders that hang up ------------------------------------------------


def test_a_sender_that_hangs_up_prints_no_traceback_among_the_pages(
        capfd: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    resets = 8
    with PageReceiver(HOST, 0, out=lines.append) as receiver:
        server = receiver._server
        done = threading.Semaphore(0)
        shutdown_request = server.shutdown_request

        def counted(request: Any) -> None:
            try:
                shutdown_request(request)
            finally:
                done.release()

        server.shutdown_request = counted  # type: ignore[method-assign]
        port = server.server_address[1]
        for _ in range(resets):
            # Oversized, so the answer goes out unread, to a sender already gone (reset).
            sock = socket.create_connection((HOST, port))
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n"
                         + b"x" * 100000)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        for _ in range(resets):
            assert done.acquire(timeout=30)
        body = json.dumps({"alerts": [{"status": "firing", "labels": {
            "alertname": "InferwatchLatencyHigh", "severity": "warning"}}]}).encode()
        with urllib.request.urlopen(urllib.request.Request(receiver.url, data=body),
                                    timeout=10) as response:
            assert response.status == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err
    assert lines == ["PAGE FIRING   warning  InferwatchLatencyHigh"]


# --- a kept workdir the demo cannot write into -------------------------------------------------


def _demo_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "exporter"))
    return subprocess.run([sys.executable, "-m", "inferwatch.cli", "demo", *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def test_a_workdir_whose_log_cannot_be_written_is_one_line_not_a_traceback(
        tmp_path: Path) -> None:
    (tmp_path / "model.log").mkdir()  # as a file of another user would refuse it
    done = _demo_cli("--no-stack", "--once", "--scenario", "short", "--speed", "2",
                     "--workdir", str(tmp_path))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("inferwatch demo")]
    assert len(errors) == 1 and "model.log" in errors[0], done.stderr


class _FakeProcess:
    pid = os.getpid()


class _FakeStack:
    """Starts nothing: the processes are not what this test is about."""

    processes: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: _FakeProcess()


@pytest.mark.parametrize("name", ["inferwatch.yaml", "alertmanager.yml", "prometheus.yml",
                                  "alerts"])
def test_a_workdir_whose_configs_cannot_be_written_is_a_stack_error(
        tmp_path: Path, name: str) -> None:
    from inferwatch.demo.runner import Demo

    target = tmp_path / name
    if name == "alerts":
        target.write_text("a file where the rules go\n")
    else:
        target.mkdir()
    demo = Demo(scenario="short", workdir=tmp_path, out=lambda line: None)
    with PageReceiver(HOST, 0, out=lambda line: None) as receiver, \
            pytest.raises(StackError) as raised:
        demo._start_processes(_FakeStack(), receiver)  # type: ignore[arg-type]
    assert str(tmp_path) in str(raised.value)
    assert "\n" not in str(raised.value)


# --- a model that dies while the demo plays slowly ---------------------------------------------


def test_a_model_that_dies_stops_a_slow_demo_within_seconds(tmp_path: Path) -> None:
    # At --speed 0.05 the summary comes every 200 s; the children were looked at only then.
    script = textwrap.dedent(f"""
        import sys, time
        from inferwatch.demo.runner import Demo

        def start(self, stack, receiver):
            stack.start("model", [sys.executable, "-c",
                                  "import time; time.sleep(0.5); print('out of memory'); exit(3)"])

        Demo._start_processes = start
        lines = []
        demo = Demo(scenario="short", speed=0.05, workdir={str(tmp_path)!r}, with_stack=False,
                    out=lines.append)
        began = time.monotonic()
        status = demo.run()
        print(status, round(time.monotonic() - began, 1))
        print("\\n".join(lines))
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "exporter"))
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=45, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail("the demo did not notice its dead model")
    assert done.returncode == 0, done.stderr
    status, seconds = done.stdout.splitlines()[0].split()
    assert status == "1" and float(seconds) < 20
    assert "model exited with status 3" in done.stdout and "out of memory" in done.stdout
