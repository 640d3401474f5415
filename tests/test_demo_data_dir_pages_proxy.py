"""The demo's CLI, traffic, page receiver and stack as users meet them: a kept workdir that
holds another program's data, an empty flag, an oversized page, a rate no thread can keep,
a corporate http_proxy, a machine without scikit-learn."""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import http.server
import json
import socket
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.demo import cli, traffic
from inferwatch.demo.receiver import MAX_BODY_BYTES, PageReceiver
from inferwatch.demo.scenario import scenario
from inferwatch.demo.stack import DATA_MARKER, Process, Stack, StackError, query

HOST = "127.0.0.1"


# --- `inferwatch demo`: the workdir is checked before anything starts -------------------------


class _Started(Exception):
    """The demo got as far as making its Demo: the model would train, children start."""


@pytest.fixture
def demo_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Runs `inferwatch demo ARGS` in-process up to the point where the demo starts."""
    import inferwatch.demo.runner as runner
    import inferwatch.demo.stack as stack

    class FakeDemo:
        def __init__(self, **kwargs: Any) -> None:
            raise _Started(kwargs)

    monkeypatch.setattr(runner, "Demo", FakeDemo)
    monkeypatch.setattr(cli, "_has_scikit_learn", lambda: True)
    # As if both binaries were installed, wherever this runs.
    monkeypatch.setattr(stack, "find_alertmanager", lambda: "/usr/bin/alertmanager")
    import shutil

    which = shutil.which
    monkeypatch.setattr(shutil, "which",
                        lambda name, *a, **k: "/usr/bin/prometheus" if name == "prometheus"
                        else which(name, *a, **k))

    def run(*argv: str) -> tuple[int | None, str, dict[str, Any] | None]:
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser)
        args = parser.parse_args(list(argv))
        try:
            status: int | None = cli.run(args)
            started = None
        except _Started as exc:
            status, started = None, exc.args[0]
        return status, capsys.readouterr().err, started

    return run


def _foreign(workdir: Path, name: str, kind: str) -> Path:
    data = workdir / name
    if kind == "files":
        data.mkdir()
        (data / "wal").mkdir()
        (data / "queries.active").write_text("x")
    elif kind == "symlink":
        outside = workdir.parent / f"{workdir.name}-elsewhere"
        outside.mkdir()
        data.symlink_to(outside)
    else:
        data.write_text("a file where the data directory goes\n")
    return data


@pytest.mark.parametrize("name", ["prometheus-data", "alertmanager-data"])
@pytest.mark.parametrize("kind", ["files", "symlink", "file"])
def test_a_foreign_data_dir_in_the_workdir_is_refused_before_anything_starts(
        demo_cli: Any, tmp_path: Path, name: str, kind: str) -> None:
    # Refused only by Stack.fresh_data_dir, after the model had trained and the model,
    # exporter and Alertmanager had started: a minute lost, and exit 1 for bad CLI use.
    workdir = tmp_path / "kept"
    workdir.mkdir()
    data = _foreign(workdir, name, kind)
    status, err, started = demo_cli("--workdir", str(workdir), "--once")
    assert started is None, "the demo started despite a data directory it must not empty"
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("inferwatch demo: "), err
    assert str(data) in lines[0] and "--workdir" in lines[0]
    # Nothing of the user's was touched.
    if kind == "files":
        assert sorted(p.name for p in data.iterdir()) == ["queries.active", "wal"]


def test_the_same_data_dir_check_as_the_stack(tmp_path: Path, demo_cli: Any) -> None:
    # The CLI says exactly what the stack would have said.
    _foreign(tmp_path, "prometheus-data", "files")
    _, err, _ = demo_cli("--workdir", str(tmp_path))
    with Stack(tmp_path) as stack, pytest.raises(StackError) as raised:
        stack.fresh_data_dir("prometheus-data")
    assert err.strip() == f"inferwatch demo: {raised.value}"


def test_a_data_dir_the_demo_made_or_no_stack_still_starts(
        demo_cli: Any, tmp_path: Path) -> None:
    ours = tmp_path / "prometheus-data"
    ours.mkdir()
    (ours / DATA_MARKER).write_text("made by inferwatch demo\n")
    (ours / "wal").mkdir()
    (tmp_path / "alertmanager-data").mkdir()  # empty: fine as well
    status, err, started = demo_cli("--workdir", str(tmp_path))
    assert status is None and started is not None, err
    assert started["with_stack"] is True
    # Without the stack the data directories are never touched, so they do not matter.
    (tmp_path / "alertmanager-data").rmdir()
    _foreign(tmp_path, "alertmanager-data", "files")
    status, err, started = demo_cli("--workdir", str(tmp_path), "--no-stack")
    assert status is None and started is not None and started["with_stack"] is False, err


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_workdir_is_refused_naming_the_flag(demo_cli: Any, value: str) -> None:
    # `--workdir "$DIR"` with DIR unset: the demo ran in a temporary directory and removed
    # it, with every log, at exit, though the user had asked to keep them.
    status, err, started = demo_cli("--workdir", value)
    assert started is None
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--workdir" in lines[0] and "empty" in lines[0], err


# --- the page receiver and an oversized page ---------------------------------------------------


def _post_raw(port: int, body_length: int, sent: int) -> bytes:
    """POST `sent` bytes of a body announced as `body_length`; the raw answer."""
    with socket.create_connection((HOST, port), timeout=20) as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {body_length}\r\n\r\n".encode())
        errors: list[OSError] = []

        def send() -> None:
            try:
                sock.sendall(b"x" * sent)
            except OSError as exc:
                errors.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        sender.join(30)
        assert not sender.is_alive()
        assert errors == [], f"the sender saw {errors} before it could read the answer"
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


@settings(max_examples=4, deadline=None)
@given(extra=st.integers(min_value=1, max_value=3 << 20))
def test_a_page_over_a_mebibyte_is_answered_413_and_fully_read(extra: int) -> None:
    # Answered 400 with the body unread: the kernel reset the connection, and the sender
    # (Alertmanager, a proxy) saw a broken pipe rather than why its page was refused.
    lines: list[str] = []
    with PageReceiver(HOST, 0, out=lines.append) as receiver:
        port = receiver._server.server_address[1]
        length = MAX_BODY_BYTES + extra
        answer = _post_raw(port, length, length)
        assert answer.split(b"\r\n", 1)[0].split()[1] == b"413", answer[:200]
        # The receiver still takes pages.
        body = json.dumps({"alerts": [{"status": "firing",
                                       "labels": {"alertname": "X"}}]}).encode()
        with urllib.request.urlopen(urllib.request.Request(receiver.url, data=body),
                                    timeout=10) as response:
            assert response.status == 200
    assert lines == ["PAGE FIRING   ?        X"]


def test_an_oversized_page_through_http_client_reads_413() -> None:
    with PageReceiver(HOST, 0, out=lambda line: None) as receiver:
        port = receiver._server.server_address[1]
        conn = http.client.HTTPConnection(HOST, port, timeout=20)
        try:
            conn.request("POST", "/", body=b"[" * (MAX_BODY_BYTES + 1),
                         headers={"Content-Type": "application/json"})
            assert conn.getresponse().status == 413
        finally:
            conn.close()


@settings(max_examples=30, deadline=None)
@given(length=st.sampled_from(["-1", "-99999999", "0", "abc", "1e3", ""]))
def test_a_bad_content_length_is_still_a_400(length: str) -> None:
    with PageReceiver(HOST, 0, out=lambda line: None) as receiver:
        port = receiver._server.server_address[1]
        with socket.create_connection((HOST, port), timeout=20) as sock:
            sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
                         .encode())
            answer = sock.recv(65536)
    assert answer.split()[1] == b"400", answer


# --- the traffic command ------------------------------------------------------------------------


@pytest.fixture
def traffic_main(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """`traffic.main` with a generator that sends nothing; returns the rates it got."""
    rates: list[float] = []

    class FakeGenerator:
        def __init__(self, url: str, phases: Any, *, rate: float, **kwargs: Any) -> None:
            rates.append(rate)

        def run(self) -> None:
            pass

        def stop(self) -> None:
            pass

    monkeypatch.setattr(traffic, "TrafficGenerator", FakeGenerator)
    return rates


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rate=st.one_of(st.floats(min_value=1000.001, max_value=1e300),
                      st.sampled_from([1e9, 1e6, 1001.0])))
def test_the_traffic_refuses_a_rate_no_thread_can_keep(
        traffic_main: list[float], rate: float, capsys: pytest.CaptureFixture[str]) -> None:
    # 1e9 requests per second: the pacing loop never waited and spun a core at 100%.
    with pytest.raises(SystemExit) as exited:
        traffic.main(["--rate", repr(rate)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--rate" in err and "1000" in err
    assert traffic_main == []


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rate=st.floats(min_value=0.001, max_value=1000.0))
def test_the_traffic_takes_any_rate_the_demo_takes(traffic_main: list[float],
                                                     rate: float) -> None:
    traffic_main.clear()
    assert traffic.main(["--rate", repr(rate)]) == 0
    assert traffic_main == [rate]


def test_the_traffic_without_scikit_learn_says_what_to_install(
        traffic_main: list[float], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The compose image has it; `pip install inferwatch` does not: a ModuleNotFoundError
    # traceback was all the user got.
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] == "sklearn"
                        else real(name, *a))
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setattr(traffic, "TrafficGenerator", _real_generator)
    assert traffic.main(["--rate", "5"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scikit-learn" in err and "inferwatch[demo]" in err


_real_generator = traffic.TrafficGenerator


def _small_dataset() -> Any:
    from inferwatch.demo.model import Dataset

    rng = np.random.default_rng(0)
    names = list(traffic.DRIFTED_FEATURES)
    return Dataset(names, rng.normal(size=(20, len(names))), np.array(["web"] * 20),
                   np.array(["benign", "malignant"] * 10))


@pytest.mark.parametrize("phases", [[], "zero"])
def test_a_generator_with_nothing_to_play_is_refused(phases: Any) -> None:
    # No phase: run() with loop=True spun a core forever, with keep_going it raised
    # IndexError; phases of no time, looped, posted /faults as fast as they could.
    if phases == "zero":
        phases = [dataclasses.replace(p, seconds=0.0) for p in scenario("short")]
    with pytest.raises(ValueError, match="phase"):
        traffic.TrafficGenerator(f"http://{HOST}:9", phases, loop=True,
                                 data=_small_dataset())


# --- a corporate http_proxy in the environment --------------------------------------------------


class _Ok(http.server.BaseHTTPRequestHandler):
    def _ok(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        data = json.dumps({"status": "success",
                           "data": {"resultType": "vector", "result": []}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _ok

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A proxy that cannot reach this machine's loopback, as a real one cannot."""

    def _refuse(self) -> None:
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _refuse

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def behind_a_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A local service answering 200, with http_proxy pointing at a proxy that cannot
    reach it; yields the service's URL."""
    servers = [http.server.ThreadingHTTPServer((HOST, 0), handler) for handler in (_Ok, _Proxy)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = f"http://{HOST}:{servers[1].server_address[1]}"
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, proxy)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    # urllib builds its shared opener, and reads the environment, on first use.
    monkeypatch.setattr(urllib.request, "_opener", None)
    try:
        yield f"http://{HOST}:{servers[0].server_address[1]}"
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_the_stack_reaches_its_processes_behind_a_proxy(behind_a_proxy: str) -> None:
    # Every component read as "not ready" after a minute: the polls went to the proxy.
    with Stack() as stack:
        process = stack.start("sleeper", [sys.executable, "-c",
                                          "import time; time.sleep(60)"])
        assert isinstance(process, Process)
        stack.wait_ready(process, behind_a_proxy + "/-/ready", timeout=5)
    assert query(behind_a_proxy, "up") == []


def test_the_traffic_reaches_a_local_model_behind_a_proxy(behind_a_proxy: str) -> None:
    # Every request counted as failed (the proxy's 502), though the model was right here.
    generator = traffic.TrafficGenerator(behind_a_proxy, scenario("short", 100),
                                         data=_small_dataset())
    try:
        assert generator._post("/predict", {"request_id": "r", "instances": [{}]}) == 200
    finally:
        generator._pool.shutdown(wait=True)


def test_the_traffic_to_a_remote_model_still_honours_the_proxy() -> None:
    assert traffic._opener_for("http://model.internal:8080") is urllib.request.urlopen
    assert traffic._opener_for("http://localhost:8080") is not urllib.request.urlopen
    assert traffic._opener_for("http://[::1]:8080") is not urllib.request.urlopen
