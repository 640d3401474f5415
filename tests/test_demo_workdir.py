"""`inferwatch demo` run again in the same --workdir, the page receiver when its output
fails, the faults the scenario injects while requests read them, and the demo's
command line and processes at their edges."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from conftest import require_binary, sleeps_of
from inferwatch.demo.stack import (
    Stack,
    StackError,
    alertmanager_config,
    free_port,
    query,
    write_yaml,
)
from waiting import wait_until

HOST = "127.0.0.1"


def _json(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


# --- a second run in the same --workdir -----------------------------------------------------


def _run_prometheus(workdir: Path, rules: str | None) -> list[dict[str, Any]]:
    """One short Prometheus run in `workdir`; returns what it knows of `demo_run_marker`."""
    require_binary("prometheus")
    config: dict[str, Any] = {"global": {"evaluation_interval": "1s", "scrape_interval": "1s"},
                              "rule_files": [], "scrape_configs": []}
    if rules is not None:
        (workdir / "rules.yml").write_text(rules)
        config["rule_files"] = [str(workdir / "rules.yml")]
    port = free_port(HOST)
    with Stack(workdir) as stack:
        stack.start_prometheus("prometheus", write_yaml(workdir / "prometheus.yml", config),
                               HOST, port)
        url = f"http://{HOST}:{port}"
        if rules is not None:
            wait_until(lambda: query(url, "demo_run_marker"), what="the recording rule")
        return query(url, "count_over_time(demo_run_marker[1h])")


def test_a_second_run_in_the_same_workdir_starts_prometheus_with_no_old_data(
        tmp_path: Path) -> None:
    # The WAL of the first run was replayed: its series (and the `for:` state of its alerts,
    # ALERTS_FOR_STATE) came back, so the demo's alerts fired early, even in the baseline.
    rules = "groups: [{name: g, rules: [{record: demo_run_marker, expr: vector(1)}]}]\n"
    assert _run_prometheus(tmp_path, rules)
    assert _run_prometheus(tmp_path, None) == []


def test_a_second_run_in_the_same_workdir_starts_alertmanager_with_no_old_state(
        tmp_path: Path) -> None:
    # Its notification log and silences outlived the run: the second run's pages, identical
    # to the first's, counted as already sent and no PAGE line was printed.
    def run(silence: bool) -> list[Any]:
        port = free_port(HOST)
        config = write_yaml(tmp_path / "alertmanager.yml",
                            alertmanager_config(f"http://{HOST}:9/"))
        with Stack(tmp_path) as stack:
            stack.start_alertmanager(config, HOST, port)
            url = f"http://{HOST}:{port}/api/v2/silences"
            if silence:
                now = time.time()
                _json(url, {"matchers": [{"name": "alertname", "value": "X", "isRegex": False}],
                            "startsAt": _iso(now), "endsAt": _iso(now + 3600),
                            "createdBy": "test", "comment": "first run"})
            return _json(url)

    require_binary("prometheus-alertmanager")
    assert len(run(silence=True)) == 1
    assert run(silence=False) == []


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def test_a_data_directory_the_demo_did_not_make_is_refused_and_left_alone(
        tmp_path: Path) -> None:
    # `--workdir ~` may hold a real Prometheus's data: never delete it.
    theirs = tmp_path / "prometheus-data"
    theirs.mkdir()
    (theirs / "precious").write_text("keep me")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me too")
    (tmp_path / "alertmanager-data").symlink_to(outside)
    with Stack(tmp_path) as stack:
        with pytest.raises(StackError, match="prometheus-data"):
            stack.fresh_data_dir("prometheus-data")
        with pytest.raises(StackError, match="alertmanager-data"):
            stack.fresh_data_dir("alertmanager-data")
    assert (theirs / "precious").read_text() == "keep me"
    assert (outside / "precious").read_text() == "keep me too"


def test_a_data_directory_the_demo_made_is_emptied_and_an_empty_one_reused(
        tmp_path: Path) -> None:
    from inferwatch.demo.stack import DATA_MARKER

    (tmp_path / "empty-data").mkdir()
    with Stack(tmp_path) as stack:
        ours = stack.fresh_data_dir("prometheus-data")
        (ours / "wal").mkdir()
        assert stack.fresh_data_dir("prometheus-data") == ours
        assert [p.name for p in ours.iterdir()] == [DATA_MARKER]
        assert [p.name for p in stack.fresh_data_dir("empty-data").iterdir()] == [DATA_MARKER]


# --- the page receiver when its output fails --------------------------------------------------


def _post_status(url: str, body: Any) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("error", [BrokenPipeError(32, "Broken pipe"),
                                   ValueError("I/O operation on closed file."),
                                   OSError(5, "Input/output error")])
def test_a_page_is_answered_200_when_printing_it_fails(
        error: Exception, capsys: pytest.CaptureFixture[str]) -> None:
    # The demo's stdout is closed or its reader has gone: the exception escaped the handler
    # and Alertmanager got no answer (or a 400) for a page it had delivered.
    from inferwatch.demo.receiver import PageReceiver

    def out(line: str) -> None:
        raise error

    with PageReceiver(port=0, out=out) as receiver:
        for name in ("A", "B", "A"):
            page = {"alerts": [{"status": "firing", "labels": {"alertname": name}}]}
            assert _post_status(receiver.url, page) == 200
        assert receiver.names() == {"A", "B"}
        assert receiver.repeats == 1
        assert getattr(receiver, "output_failures", None) == 2
    assert capsys.readouterr().err.count("cannot print pages") == 1


# --- faults applied while requests read them --------------------------------------------------


def test_a_request_never_sees_faults_half_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    # /faults set its values one by one without the lock the requests read them under: a
    # request in between drew the new error_ratio with the old slow_ratio.
    from inferwatch.demo import model as demo_model

    class Service(demo_model.ModelService):
        def __init__(self) -> None:  # no model: only the simulated feature store is used
            self.faults = demo_model.Faults()
            self._lock = threading.Lock()

    service = Service()
    outcomes: list[tuple[bool, list[float]]] = []
    sleeps = sleeps_of(monkeypatch, demo_model)

    def one_request() -> None:
        try:
            service._feature_store()
        except demo_model.FeatureStoreTimeout:
            outcomes.append((True, sleeps))
        else:
            outcomes.append((False, sleeps))

    class Faults(demo_model.Faults):
        armed = False

        def __setattr__(self, name: str, value: Any) -> None:
            super().__setattr__(name, value)
            if self.armed and name == "error_ratio":
                # A request arrives just as the first value is set; it either runs now or,
                # when update() holds the requests off, once the whole body is applied.
                reader = threading.Thread(target=one_request)
                reader.start()
                self.__dict__["reader"] = reader
                reader.join(0.5)

    service.faults = faults = Faults()
    faults.armed = True
    faults.update({"error_ratio": 1.0, "slow_ratio": 1.0, "slow_seconds": 0.25})
    faults.__dict__["reader"].join(10)
    assert outcomes in ([(True, [0.25])], [(False, [])]), outcomes


# --- the demo's processes on a port in use ----------------------------------------------------


@pytest.mark.parametrize("module, flag", [("model", "--listen"),
                                          ("streaming", "--metrics-listen"),
                                          ("quiet_shift", "--metrics-listen")])
def test_each_demo_process_names_a_port_in_use_in_one_line(module: str, flag: str) -> None:
    # `python -m inferwatch.demo.model` (the compose stack's model) ended in a traceback.
    import socket
    import subprocess
    import sys

    if module == "model":
        pytest.importorskip("sklearn")
    with socket.socket() as held:
        held.bind((HOST, 0))
        held.listen()
        port = held.getsockname()[1]
        argv = [sys.executable, "-m", f"inferwatch.demo.{module}", f"{flag}={HOST}:{port}"]
        if module == "model":
            other = "--metrics-listen" if flag == "--listen" else "--listen"
            argv.append(f"{other}={HOST}:{free_port(HOST)}")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{HOST}:{port}" in done.stderr and "address already in use" in done.stderr.lower()
