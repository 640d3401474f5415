"""The exporter's command line, its collector framework, and the real process end to end."""

from __future__ import annotations

import base64
import doctest
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch.standalone
import inferwatch.standalone.collectors
from exporter_process import ExporterProcess
from inferwatch.standalone import cli, scrape
from inferwatch.standalone.collectors import MODULES, gpu, process
from inferwatch.standalone.scrape import (
    Collector,
    CollectorError,
    MetricSet,
    Scraper,
    register,
    registered_collectors,
)


def parse(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def enabled(*argv: str) -> list[str]:
    args = parse(*argv)
    return [c.name for c in cli.enabled_collectors(args, registered_collectors())]


# --- flags ---------------------------------------------------------------------------------

def test_defaults_follow_node_exporter() -> None:
    args = parse()
    assert args.listen_address == ("", 9400)
    assert args.telemetry_path == "/metrics"
    assert args.web_config_file is None
    assert args.scrape_timeout == 5.0
    assert (args.log_level, args.log_format) == ("info", "logfmt")
    assert enabled() == ["gpu", "process"]


def test_every_registered_collector_can_be_switched() -> None:
    names = list(registered_collectors())
    for name in names:
        assert name not in enabled(f"--no-collector.{name}")
        assert enabled("--collector.disable-defaults", f"--collector.{name}") == [name]
    assert enabled("--collector.disable-defaults") == []


def test_multiproc_collector_is_on_when_a_directory_is_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inferwatch.multiproc.worker import ENV_VAR

    monkeypatch.delenv(ENV_VAR, raising=False)
    assert "multiproc" not in enabled()
    assert "multiproc" in enabled(f"--multiproc.dir={tmp_path}")
    assert "multiproc" not in enabled(f"--multiproc.dir={tmp_path}", "--no-collector.multiproc")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert sorted(enabled()) == ["gpu", "multiproc", "process"]
    assert "multiproc" not in enabled("--no-collector.multiproc")
    assert enabled("--collector.disable-defaults", "--collector.process") == ["process"]


def test_collector_flags_reach_the_collectors() -> None:
    args = parse("--collector.gpu.process-memory", "--process.pid=12", "--process.pid", "34",
                 "--process.pidfile=/run/app.pid", "--process.name=gunicorn",
                 "--process.name", "uvicorn", "--no-process.children")
    built = {c.name: c for c in cli.enabled_collectors(args, registered_collectors())}
    assert built["gpu"].process_memory is True
    assert built["process"].pids == (12, 34)
    assert built["process"].pidfiles == ("/run/app.pid",)
    assert built["process"].names == ("gunicorn", "uvicorn")
    assert built["process"].children is False
    assert parse().gpu_process_memory is False


@pytest.mark.parametrize(("address", "expected"), [
    (":9400", ("", 9400)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9401", ("::1", 9401)),
    ("localhost:65535", ("localhost", 65535)),
])
def test_listen_addresses(address: str, expected: tuple[str, int]) -> None:
    assert parse(f"--web.listen-address={address}").listen_address == expected


@pytest.mark.parametrize(("argv", "flag"), [
    (["--web.listen-address=9400"], "--web.listen-address"),
    (["--web.listen-address=:99999"], "--web.listen-address"),
    (["--web.listen-address=::1:9400"], "--web.listen-address"),
    (["--web.telemetry-path=metrics"], "--web.telemetry-path"),
    (["--web.telemetry-path=/"], "--web.telemetry-path"),
    (["--web.telemetry-path=/-/healthy"], "--web.telemetry-path"),
    (["--web.telemetry-path=/-/ready"], "--web.telemetry-path"),
    (["--web.telemetry-path=/metrics?x=1"], "--web.telemetry-path"),
    (["--web.telemetry-path=/metrics#top"], "--web.telemetry-path"),
    (["--web.telemetry-path=/my metrics"], "--web.telemetry-path"),
    (["--scrape.timeout=0"], "--scrape.timeout"),
    (["--scrape.timeout=soon"], "--scrape.timeout"),
    (["--process.pid=abc"], "--process.pid"),
    (["--process.pid=0"], "--process.pid"),
    (["--process.name="], "--process.name"),  # an unset $SERVER: it matched any process
    (["--log.format=xml"], "--log.format"),
    (["--log.level=loud"], "--log.level"),
    (["--web.max-requests=0"], "--web.max-requests"),
    (["--collector.nosuch"], "--collector.nosuch"),
    (["--no-collector.gpu=1"], "--no-collector.gpu"),
])
def test_bad_flags_exit_2_naming_the_flag(argv: list[str], flag: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err


# --- the collector framework ---------------------------------------------------------------

def test_every_listed_module_registers_a_collector_of_its_own_name() -> None:
    # What adding a collector takes: a module named after it, listed in MODULES.
    found = registered_collectors()
    for module in MODULES:
        assert found[module].__module__ == f"inferwatch.standalone.collectors.{module}"


def test_a_new_collector_gets_its_flags_and_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scrape, "_REGISTERED", dict(scrape._REGISTERED))

    @register
    class Sample(Collector):
        name = "sample_source"
        default_enabled = False
        metric_names = ("inferwatch_process_threads",)

        def __init__(self, threads: int = 1) -> None:
            self.threads = threads

        @classmethod
        def add_arguments(cls, group) -> None:
            group.add_argument("--sample_source.threads", dest="sample_threads", type=int,
                               default=1)

        @classmethod
        def from_args(cls, args) -> Sample:
            return cls(args.sample_threads)

        def collect(self):
            metrics = MetricSet()
            metrics.add("inferwatch_process_threads", {"pid": "1", "process": "x"},
                        self.threads)
            return metrics.families()

    assert "sample_source" not in enabled()
    built = cli.enabled_collectors(
        parse("--collector.sample_source", "--sample_source.threads=7",
              "--collector.disable-defaults"), registered_collectors())
    text = scrape_text(Scraper(built, timeout=5))
    assert 'inferwatch_process_threads{pid="1",process="x"} 7.0' in text
    assert 'inferwatch_exporter_collector_success{collector="sample_source"} 1.0' in text
    with pytest.raises(ValueError, match="already registered"):
        register(type("Other", (Collector,), {"name": "sample_source"}))
    with pytest.raises(ValueError, match="lower-case"):
        register(type("Bad", (Collector,), {"name": "Bad-Name"}))


class Raising(Collector):
    name = "raising"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def collect(self):
        raise self.error


class Gated(Collector):
    """Blocks in collect() until released; counts how often it was started."""

    name = "gated"
    metric_names = ("inferwatch_process_threads",)

    def __init__(self) -> None:
        self.started = 0
        self.release = threading.Event()
        self.entered = threading.Event()

    def collect(self):
        self.started += 1
        self.entered.set()
        self.release.wait(30)
        metrics = MetricSet()
        metrics.add("inferwatch_process_threads", {"pid": "1", "process": "gated"}, 3)
        return metrics.families()


def scrape_text(scraper: Scraper) -> str:
    reg = CollectorRegistry()
    reg.register(scraper)
    return generate_latest(reg).decode()


def success_of(text: str) -> dict[str, float]:
    return {s.labels["collector"]: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "inferwatch_exporter_collector_success"}


def test_a_raising_collector_costs_only_itself_and_logs_rate_limited(
        caplog: pytest.LogCaptureFixture) -> None:
    bug = Raising(KeyError("boom"))
    expected = Raising(CollectorError("no device"))
    expected.name = "unavailable"
    own = process.ProcessCollector(pids=[os.getpid()])
    scraper = Scraper([bug, expected, own], timeout=5)
    with caplog.at_level(logging.WARNING, logger="inferwatch.standalone"):
        for _ in range(3):
            text = scrape_text(scraper)
    assert success_of(text) == {"raising": 0, "unavailable": 0, "process": 1}
    assert f'inferwatch_process_threads{{pid="{os.getpid()}"' in text
    messages = [r.getMessage() for r in caplog.records]
    assert sum("raising" in m for m in messages) == 1
    assert sum("unavailable failed: no device" in m for m in messages) == 1
    raised = next(r for r in caplog.records if "raising" in r.getMessage())
    assert raised.exc_info is not None  # a bug gets its traceback, an expected failure not


def test_hung_collector_is_not_restarted_and_concurrent_scrapes_share_a_run() -> None:
    gated = Gated()
    scraper = Scraper([gated], timeout=30)
    texts: list[str] = []
    scrapers = [threading.Thread(target=lambda: texts.append(scrape_text(scraper)))
                for _ in range(3)]
    for thread in scrapers:
        thread.start()
    assert gated.entered.wait(10)
    # Release only once all three scrapes are parked on the one running collect(): a scrape
    # that arrives after a run has finished rightly starts a new one.
    deadline = time.monotonic() + 120  # a safety net: the condition ends the wait
    while scraper.scrapes_sharing("gated") < 3:
        assert time.monotonic() < deadline, "the scrapes never met on one run"
        time.sleep(0.005)
    gated.release.set()
    for thread in scrapers:
        thread.join(30)
    assert gated.started == 1
    assert [success_of(t) for t in texts] == [{"gated": 1}] * 3

    hung = Gated()
    short = Scraper([hung], timeout=0.2)
    assert success_of(scrape_text(short)) == {"gated": 0}
    assert success_of(scrape_text(short)) == {"gated": 0}
    assert hung.started == 1
    assert sum(t.name == "inferwatch-collector-gated" for t in threading.enumerate()) == 1
    hung.release.set()
    deadline = time.monotonic() + 60  # a safety net: the condition ends the wait
    while any(t.name == "inferwatch-collector-gated" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the released collector thread never ended"
        time.sleep(0.02)
    # The run finished: the next scrape starts a new one. Its own deadline is raised so
    # that a slow machine cannot turn the new run into a timeout.
    short.timeout = 30.0
    assert success_of(scrape_text(short)) == {"gated": 1}
    assert hung.started == 2


def test_describe_does_no_collecting() -> None:
    gated = Gated()
    reg = CollectorRegistry()
    reg.register(Scraper([gated, gpu.GpuCollector(), process.ProcessCollector()], timeout=1))
    assert gated.started == 0
    with pytest.raises(ValueError, match="Duplicated"):
        reg.register(Scraper([process.ProcessCollector()], timeout=1))


# --- logs ----------------------------------------------------------------------------------

@given(message=st.text(max_size=80))
def test_log_lines_stay_one_line_and_round_trip_as_json(message: str) -> None:
    record = logging.makeLogRecord({"msg": message, "levelno": logging.WARNING,
                                    "levelname": "WARNING", "name": "inferwatch.standalone"})
    line = cli.LogfmtFormatter().format(record)
    assert "\n" not in line and "\r" not in line
    assert " level=warn " in line
    assert json.loads(cli.JsonFormatter().format(record))["msg"] == message


def test_doctests() -> None:
    for module in (inferwatch.standalone, inferwatch.standalone.collectors, scrape, cli, gpu,
                   process):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__


# --- the real process ----------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_real_exporter_serves_and_exits_cleanly(tmp_path: Path, exporters: list,
                                                signum: int) -> None:
    exporter = ExporterProcess(tmp_path, f"--process.pid={os.getpid()}", "--no-process.children",
                        "--log.format=json")
    exporters.append(exporter)
    status, text = exporter.get()
    assert status == 200
    # No NVIDIA driver here: the gpu collector does not apply, which is not a failure.
    assert success_of(text) == {"gpu": 1, "process": 1}
    assert "inferwatch_gpu_devices 0.0" in text
    assert f'inferwatch_process_cpu_seconds_total{{pid="{os.getpid()}"' in text
    assert "inferwatch_exporter_build_info{" in text
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if os.path.exists(promtool):
        checked = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                                 capture_output=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    assert exporter.stop(signum) == 0
    lines = [json.loads(line) for line in exporter.log_path.read_text().splitlines()]
    assert {"ts", "level", "logger", "msg"} <= set(lines[0])
    assert any(line["msg"] == "shutting down" for line in lines)
    cpu_only = [line for line in lines if "does not apply" in line["msg"]]
    assert len(cpu_only) == 1 and cpu_only[0]["level"] == "info"


@pytest.mark.integration
def test_real_exporter_serves_at_the_telemetry_path(tmp_path: Path, exporters: list) -> None:
    exporter = ExporterProcess(tmp_path, "--web.telemetry-path=/custom/metrics",
                               "--no-collector.gpu")
    exporters.append(exporter)
    assert exporter.url.endswith("/custom/metrics")
    status, text = exporter.get()
    assert status == 200 and success_of(text) == {"process": 1}
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(exporter.url.replace("/custom/metrics", "/metrics"), timeout=5)
    assert refused.value.code == 404
    assert exporter.stop() == 0


@pytest.mark.integration
def test_real_exporter_applies_the_web_config(tmp_path: Path, exporters: list) -> None:
    bcrypt = pytest.importorskip("bcrypt")
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    exporter = ExporterProcess(tmp_path, f"--web.config.file={config}", "--no-collector.gpu")
    exporters.append(exporter)
    assert exporter.get()[0] == 401
    token = base64.b64encode(b"prometheus:s3cret").decode()
    status, text = exporter.get({"Authorization": f"Basic {token}"})
    assert status == 200
    assert success_of(text) == {"process": 1}
    assert exporter.stop() == 0


@pytest.mark.integration
def test_real_exporter_rejects_a_bad_web_config_naming_the_flag(tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    config.write_text("basic_auth_users:\n  prometheus: not-a-bcrypt-hash\n")
    finished = subprocess.run(
        [sys.executable, "-m", "inferwatch.standalone.cli", "--web.listen-address=127.0.0.1:0",
         f"--web.config.file={config}"], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert "--web.config.file" in finished.stderr
    assert str(config) in finished.stderr


@pytest.mark.integration
def test_real_exporter_refuses_tls_below_1_2_at_startup(tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    for name in ("server.crt", "server.key"):
        (tmp_path / name).write_text("unused: the version is refused before files are read\n")
    config.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                      "  min_version: TLS10\n")
    finished = subprocess.run(
        [sys.executable, "-m", "inferwatch.standalone.cli", "--web.listen-address=127.0.0.1:0",
         "--no-collector.gpu", f"--web.config.file={config}"],
        capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert "--web.config.file" in finished.stderr
    assert "min_version: TLS10 is below TLS 1.2" in finished.stderr
    assert "Traceback" not in finished.stderr


@pytest.mark.integration
def test_real_exporter_reports_a_busy_port(tmp_path: Path, exporters: list) -> None:
    first = ExporterProcess(tmp_path, "--no-collector.gpu")
    exporters.append(first)
    port = first.url.split(":")[2].split("/")[0]
    finished = subprocess.run(
        [sys.executable, "-m", "inferwatch.standalone.cli",
         f"--web.listen-address=127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1
    assert "--web.listen-address" in finished.stderr
    assert first.stop() == 0
