"""The demo's lifecycle under misuse: bad URLs and flags, stop signals at awkward moments,
children that will not stop, and peers that answer nonsense."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

HOST = "127.0.0.1"
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _gone(pid: int) -> bool:
    """True once `pid` is no longer a running process of ours (reaped or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


class _Interrupted(Exception):
    """What the test's SIGTERM handler raises, as the demo's own handler does."""


@pytest.fixture
def sigterm_raises() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise _Interrupted()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- the traffic command's URL ------------------------------------------------------------


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "localhost:8080", "ftp://127.0.0.1:8080",
                                 "http://", "http://127.0.0.1:99999", "http://127.0.0.1:x",
                                 "http://127.0.0.1:8080/?a=1", ""])
def test_the_traffic_command_refuses_a_model_url_it_cannot_send_to(url: str) -> None:
    # Without http:// the first request raised ValueError outside its try: a traceback.
    try:
        result = subprocess.run(
            [sys.executable, "-m", "inferwatch.demo.traffic", f"--model-url={url}",
             "--scenario", "short", "--speed", "40"],
            capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"--model-url {url!r} was accepted and the traffic ran on")
    assert result.returncode == 2, result.stderr[-800:]
    assert "--model-url" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_generator_refuses_a_url_without_a_scheme() -> None:
    from inferwatch.demo.scenario import scenario
    from inferwatch.demo.traffic import TrafficGenerator

    # Refused before the dataset loads; before, every request counted as unreachable.
    with pytest.raises(ValueError, match="model_url"):
        TrafficGenerator("127.0.0.1:8080", scenario("short"))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40),
                 st.builds(lambda scheme, rest: scheme + rest,
                           st.sampled_from(["http://", "https://", "HTTP://", "http:/"]),
                           st.text(max_size=30))))
def test_every_accepted_model_url_makes_a_request(url: str) -> None:
    from inferwatch.demo.traffic import url_problem

    problem = url_problem(url)
    if problem is None:
        # What _post builds for each call: it must not raise for a URL the CLI took.
        request = urllib.request.Request(url.rstrip("/") + "/predict", data=b"{}",
                                         method="POST")
        assert request.host
    else:
        assert isinstance(problem, str) and problem


# --- stopping every child ---------------------------------------------------------------------


def test_closing_the_stack_stops_every_child_when_one_will_not_stop(tmp_path: Path) -> None:
    from inferwatch.demo.stack import Stack, StackError

    stack = Stack(tmp_path)
    oldest = stack.start("oldest", SLEEPER)
    stuck = stack.start("stuck", SLEEPER)
    newest = stack.start("newest", SLEEPER)
    real_wait = stuck.popen.wait

    def never(timeout: float | None = None) -> int:
        # A child in uninterruptible sleep: even SIGKILL's wait runs out.
        raise subprocess.TimeoutExpired(stuck.argv, timeout or 0)

    stuck.popen.wait = never  # type: ignore[method-assign]
    try:
        with pytest.raises(StackError, match=r"stuck \(pid \d+\)"):
            stack.close()
        assert newest.popen.poll() is not None
        assert oldest.popen.poll() is not None, "a child older than the stuck one was left"
        assert stack.processes == []
    finally:
        stuck.popen.wait = real_wait  # type: ignore[method-assign]
        for process in (oldest, stuck, newest):
            if process.popen.poll() is None:
                process.popen.kill()
            process.popen.wait(10)


def test_a_stop_signal_as_a_child_starts_leaves_no_child_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sigterm_raises: None) -> None:
    from inferwatch.demo.stack import Stack

    started: list[int] = []
    real_popen = subprocess.Popen

    class SignalledAfterFork(real_popen):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self.pid)
            # SIGTERM arrives right after the fork, before the stack records the child.
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(subprocess, "Popen", SignalledAfterFork)
    stack = Stack(tmp_path)
    try:
        with pytest.raises(_Interrupted):
            stack.start("sleeper", SLEEPER)
        monkeypatch.setattr(subprocess, "Popen", real_popen)
        assert len(started) == 1
        assert [p.pid for p in stack.processes] == started, "the child was not recorded"
        stack.close()
        assert _gone(started[0])
    finally:
        for pid in started:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def test_a_stop_signal_as_the_demo_starts_is_a_clean_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inferwatch.demo import runner

    made: list[str] = []

    def mkdtemp(prefix: str = "") -> str:
        path = str(tmp_path / f"{prefix}made")
        os.mkdir(path)
        made.append(path)
        # SIGTERM while the temporary directory is made, before anything else starts.
        os.kill(os.getpid(), signal.SIGTERM)
        return path

    monkeypatch.setattr(runner, "tempfile", types.SimpleNamespace(mkdtemp=mkdtemp))

    def before(signum: int, frame: Any) -> None:
        raise AssertionError("the demo's own handler should have run")

    previous = {sig: signal.signal(sig, before) for sig in (signal.SIGTERM, signal.SIGHUP)}
    lines: list[str] = []
    try:
        demo = runner.Demo(scenario="short", with_stack=False, out=lines.append)
        assert demo.run() == 0
        assert signal.getsignal(signal.SIGTERM) is before, "the handlers were not restored"
        assert signal.getsignal(signal.SIGHUP) is before
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert made and not Path(made[0]).exists(), "the temporary directory was left behind"
    assert lines[-1].startswith("stopped")


# --- the page receiver -------------------------------------------------------------------------

_label_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                          st.text(max_size=10), st.lists(st.integers(), max_size=2))


@pytest.fixture
def page_receiver() -> Iterator[Any]:
    from inferwatch.demo.receiver import PageReceiver

    with PageReceiver(port=0, out=lambda line: None) as receiver:
        yield receiver


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.fixed_dictionaries(
    {"status": st.sampled_from(["firing", "resolved", 3, None]),
     "labels": st.dictionaries(st.sampled_from(["alertname", "model", "severity"]),
                               _label_values, max_size=3)}), min_size=1, max_size=8))
@example(alerts=[{"status": "firing", "labels": {"alertname": "Drift\nNow"}}])
def test_the_page_digest_takes_whatever_labels_were_posted(
        page_receiver: Any, alerts: list[dict[str, Any]]) -> None:
    for _ in range(2):  # twice, so there are repeats and the summary shows the digest
        page_receiver._accept({"alerts": alerts})
    digest = page_receiver.digest()
    assert digest.startswith("pages: ")
    assert "\n" not in digest


def test_a_page_named_by_a_number_does_not_break_the_live_summary(tmp_path: Path) -> None:
    # Anyone on the host can post to the webhook; a numeric alertname next to a real one
    # made sorted() raise TypeError in the summary, out of the demo's main loop.
    from inferwatch.demo.receiver import PageReceiver

    with PageReceiver(port=0, out=lambda line: None) as receiver:
        for _ in range(2):
            for name in (7, "InferwatchFeatureDrift", None):
                body = json.dumps({"alerts": [{"status": "firing",
                                               "labels": {"alertname": name}}]}).encode()
                with urllib.request.urlopen(urllib.request.Request(receiver.url, data=body),
                                            timeout=10) as response:
                    assert response.status == 200
        digest = receiver.digest()
    assert "InferwatchFeatureDrift" in digest and "7" in digest and "None" in digest
    assert "3 repeats not shown" in digest


def test_the_receiver_lets_go_of_a_sender_that_stalls_mid_body(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from inferwatch.demo import receiver as receiver_module

    monkeypatch.setattr(receiver_module, "REQUEST_TIMEOUT_SECONDS", 0.5)
    lines: list[str] = []
    with receiver_module.PageReceiver(port=0, out=lines.append) as receiver:
        port = int(receiver.url.rsplit(":", 1)[1].strip("/"))
        with socket.create_connection((HOST, port), timeout=10) as client:
            client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"al")
            started = time.monotonic()
            try:
                data = client.recv(1024)
            except TimeoutError:
                pytest.fail("the receiver still held the stalled connection after 10 s")
            assert data == b"" and time.monotonic() - started < 9
        # It still takes pages afterwards.
        body = json.dumps({"alerts": [{"status": "firing",
                                       "labels": {"alertname": "X"}}]}).encode()
        with urllib.request.urlopen(urllib.request.Request(receiver.url, data=body),
                                    timeout=10) as response:
            assert response.status == 200
    assert lines and "X" in lines[0]


# --- Prometheus answering something else ------------------------------------------------------


class _Answer(BaseHTTPRequestHandler):
    status = 503
    body = b"Service Unavailable"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


@pytest.fixture
def fake_prometheus() -> Iterator[tuple[ThreadingHTTPServer, type[_Answer]]]:
    handler = type("Answer", (_Answer,), {})
    server = ThreadingHTTPServer((HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status,body", [(503, b"Service Unavailable"), (500, b"<html>"),
                                         (200, b"[1, 2]"), (200, b'{"status": "success"}'),
                                         (200, b"not json")])
def test_a_query_answered_with_something_else_is_a_stack_error(
        fake_prometheus: tuple[ThreadingHTTPServer, type[_Answer]], status: int,
        body: bytes) -> None:
    from inferwatch.demo.stack import StackError, query

    server, handler = fake_prometheus
    handler.status, handler.body = status, body
    with pytest.raises(StackError, match="query failed"):
        query(f"http://{HOST}:{server.server_address[1]}", "up", timeout=5)


def test_the_live_summary_survives_a_prometheus_that_answers_503_in_text(
        fake_prometheus: tuple[ThreadingHTTPServer, type[_Answer]], tmp_path: Path) -> None:
    from inferwatch.demo.runner import Demo
    from inferwatch.demo.traffic import TrafficStats

    server, _ = fake_prometheus
    demo = Demo(scenario="short", workdir=tmp_path, with_stack=True, out=lambda line: None)
    demo.ports["prometheus"] = server.server_address[1]
    line = demo._summary(types.SimpleNamespace(stats=TrafficStats(sent=3, ok=3)))
    assert "sent 3, ok 3" in line and "Prometheus not answering" in line


def test_waiting_for_a_port_where_something_else_answers_is_a_stack_error(
        tmp_path: Path) -> None:
    from inferwatch.demo.stack import Stack, StackError

    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen()
        stop = threading.Event()

        def answer_nonsense() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                with connection:
                    connection.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")

        thread = threading.Thread(target=answer_nonsense, daemon=True)
        thread.start()
        try:
            with Stack(tmp_path) as stack:
                process = stack.start("sleeper", SLEEPER)
                with pytest.raises(StackError, match="not ready"):
                    stack.wait_ready(process, f"http://{HOST}:{listener.getsockname()[1]}/",
                                     timeout=1.0)
        finally:
            stop.set()
            thread.join(10)


# --- the model service's flags ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_the_model_refuses_a_drift_window_before_training(value: str) -> None:
    # It trained for seconds, then ended in a traceback from inferwatch.instrument.
    result = subprocess.run(
        [sys.executable, "-m", "inferwatch.demo.model", f"--listen={HOST}:0",
         f"--metrics-listen={HOST}:0", f"--drift-window={value}"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr[-800:]
    assert "--drift-window" in result.stderr and "Traceback" not in result.stderr
