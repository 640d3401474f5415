"""Standalone exporter: a stepped wall clock (process collector), a misread GPU count and a
device read past the budget (gpu collector), and a percent-encoded reserved path (CLI)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from psutil import _pslinux

from fake_nvml import FakeGpu, FakeNVML
from inferwatch.standalone import cli
from inferwatch.standalone.collectors import gpu as gpu_module
from inferwatch.standalone.collectors.gpu import GpuCollector
from inferwatch.standalone.collectors.process import ProcessCollector
from inferwatch.standalone.scrape import Scraper
from processes import sleeping_child, watched_pids

UNSIGNED_MINUS_ONE = 0xFFFFFFFF


@pytest.fixture
def server():
    with sleeping_child() as process:
        yield process



def step_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """What an NTP step or a resumed VM does to /proc/stat's btime, and so to psutil's
    create_time() of every process; the kernel's start ticks do not move."""
    real = _pslinux.boot_time
    stepped = lambda: real() + seconds  # noqa: E731
    monkeypatch.setattr(_pslinux, "boot_time", stepped)
    monkeypatch.setattr(psutil, "boot_time", stepped)


# --- the process collector across a clock step -----------------------------------------------

@pytest.mark.parametrize("by_pidfile", [False, True], ids=["pid", "pidfile"])
@pytest.mark.parametrize("children", [False, True], ids=["alone", "children"])
@pytest.mark.parametrize("seconds", [5.0, -5.0, 3600.0])
def test_a_stepped_clock_keeps_a_running_server_watched(
        server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, by_pidfile: bool, children: bool,
        seconds: float) -> None:
    pid = str(server.pid)
    if by_pidfile:
        pidfile = tmp_path / "server.pid"
        pidfile.write_text(pid)
        collector = ProcessCollector(pidfiles=[str(pidfile)], children=children)
    else:
        collector = ProcessCollector(pids=[server.pid], children=children)
    assert pid in watched_pids(collector)
    step_clock(monkeypatch, seconds)
    assert pid in watched_pids(collector)
    assert pid in watched_pids(collector)
    assert "reused" not in caplog.text


REUSE = textwrap.dedent("""
    import json, logging, subprocess, sys, time
    from inferwatch.standalone.collectors.process import ProcessCollector
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    def seen(collector):
        return sorted({s.labels["pid"] for f in collector.collect() for s in f.samples})
    server = subprocess.Popen(["sleep", "600"])
    collector = ProcessCollector(pids=[server.pid], children=sys.argv[1] == "children")
    before = seen(collector)
    server.kill(); server.wait()
    # The kernel's start times count clock ticks (10 ms at most): the next process must
    # start at least one tick later to be told apart, as any real successor does.
    time.sleep(0.05)
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(server.pid - 1))
    other = subprocess.Popen(["sleep", "600"])
    after = [seen(collector), seen(collector)]
    other.kill(); other.wait()
    print(json.dumps({"pid": server.pid, "other": other.pid, "before": before,
                      "after": after}))
""")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a pid namespace (to hand a pid out again) needs root and unshare")
@pytest.mark.parametrize("children", ["children", "alone"])
def test_a_really_reused_pid_is_still_told_apart(children: str) -> None:
    result = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable,
                             "-c", REUSE, children], capture_output=True, text=True,
                            timeout=60)
    if result.returncode != 0 and "unshare" in result.stderr:
        pytest.skip(f"no pid namespace here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["other"] == found["pid"]  # the pid was handed out again
    assert found["before"] == [str(found["pid"])]
    assert found["after"] == [[], []]
    assert result.stderr.count("now belongs to another process") == 1


# --- the gpu collector: a misread device count ------------------------------------------------

class MisreadCount(FakeNVML):
    """A driver (or a binding) that answers the device count with an unsigned -1."""

    def c_nvmlDeviceGetCount_v2(self, count: object) -> None:
        count._obj.value = UNSIGNED_MINUS_ONE  # type: ignore[attr-defined]


def scrape(registry: CollectorRegistry) -> dict[tuple[str, frozenset], float]:
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_an_implausible_device_count_is_bounded_counted_and_said_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    fake = MisreadCount([FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b")]).install(monkeypatch)
    collector = GpuCollector(budget=0.8)
    registry = CollectorRegistry()
    registry.register(Scraper([collector], timeout=1.0))
    try:
        with caplog.at_level(logging.INFO, logger="inferwatch"):
            first, second = scrape(registry), scrape(registry)
    finally:
        collector.close()
    for result in (first, second):
        assert result[("inferwatch_exporter_collector_success",
                       frozenset({("collector", "gpu")}))] == 1
        up = {dict(labels)["gpu"]: v for (name, labels), v in result.items()
              if name == "inferwatch_gpu_up"}
        assert up == {"0": 1, "1": 1}  # the real GPUs; no phantom reported down
        assert result[("inferwatch_gpu_devices", frozenset())] == 2
    key = ("inferwatch_gpu_nvml_errors_total",
           frozenset({("gpu", ""), ("uuid", ""), ("field", "devices"),
                      ("reason", "implausible_value")}))
    assert (first[key], second[key]) == (1, 2)
    # Two scrapes ask for at most MAX_DEVICES handles each (the real ones are cached).
    assert fake.calls["nvmlDeviceGetHandleByIndex_v2"] <= 2 * gpu_module.MAX_DEVICES
    assert caplog.text.count(str(UNSIGNED_MINUS_ONE)) == 1
    assert "is lost or cannot be reached" not in caplog.text


# --- the CLI: a reserved path, percent-encoded -------------------------------------------------

@pytest.mark.parametrize("path", ["/-/%72eady", "/-/%68ealthy", "/%2D/ready", "/%2d%2f%72eady"])
def test_an_encoded_reserved_path_exits_2_naming_the_flag(
        path: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args([f"--web.telemetry-path={path}"])
    assert exit_info.value.code == 2
    assert "--web.telemetry-path" in capsys.readouterr().err


def test_the_exporter_refuses_an_encoded_reserved_path_without_a_traceback() -> None:
    command = [sys.executable, "-m", "inferwatch.standalone.cli",
               "--web.telemetry-path=/-/%72eady", "--web.listen-address=127.0.0.1:24931",
               "--no-collector.gpu"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 2, result.stderr
    assert "--web.telemetry-path" in result.stderr
    assert "Traceback" not in result.stderr
