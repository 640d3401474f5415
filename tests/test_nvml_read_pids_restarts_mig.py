"""NVML reads of the standalone exporter's GPU collector, as hosts really answer them:
pids reused by restarted workers, restarts of NVML that fail, MIG counts a driver misreads,
bindings that lack a call."""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pynvml
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fake_nvml import FakeGpu, FakeMigInstance, FakeNVML, _error, _put_string
from inferwatch.standalone.collectors import nvml_read
from inferwatch.standalone.collectors.gpu import GpuCollector
from inferwatch.standalone.collectors.process_start import process_started
from inferwatch.standalone.scrape import Scraper

Samples = dict[tuple[str, frozenset], float]
NOT_MIG = 0xFFFFFFFF
PROCESS = "inferwatch_gpu_process_memory_bytes"
ERRORS = "inferwatch_gpu_nvml_errors_total"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scrape(collector: GpuCollector) -> Samples:
    registry = CollectorRegistry()
    registry.register(Scraper([collector], timeout=5.0))
    text = generate_latest(registry).decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def series(result: Samples, metric: str) -> dict[frozenset, float]:
    return {labels: v for (name, labels), v in result.items() if name == metric}


def success(result: Samples) -> float:
    return result[("inferwatch_exporter_collector_success", frozenset({("collector", "gpu")}))]


def names(result: Samples) -> dict[str, str]:
    return {dict(labels)["pid"]: dict(labels)["process"] for labels in series(result, PROCESS)}


# --- process names follow the process, not the pid -------------------------------------------

class HostNVML(FakeNVML):
    """NVML as on a host: a pid's name is the executable of whatever process holds it now."""

    def c_nvmlSystemGetProcessName(self, pid: ctypes.c_uint, buffer: ctypes.Array,
                                   size: ctypes.c_uint) -> None:
        try:
            name = psutil.Process(pid.value).exe()
        except psutil.Error:
            name = self.process_names.get(pid.value, "")
            if not name:
                raise _error(pynvml.NVMLError_NotFound) from None
        _put_string(buffer, size, name)


def start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def wait_until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


@pytest.fixture
def worker() -> Iterator[subprocess.Popen]:
    process = start(["sleep", "60"])
    wait_until(lambda: psutil.Process(process.pid).exe().endswith("sleep"))
    yield process
    stop(process)


def take_pid(pid: int, argv: list[str], attempts: int = 50) -> subprocess.Popen | None:
    """A new process started on `pid` (the kernel hands out the pid after ns_last_pid);
    None where this host does not let the test choose."""
    for _ in range(attempts):
        try:
            with open("/proc/sys/kernel/ns_last_pid", "w") as last:
                last.write(str(pid - 1))
        except OSError:
            return None
        process = start(argv)
        if process.pid == pid:
            return process
        stop(process)  # another process took the pid first: try again
    return None


def test_a_restarted_worker_on_a_reused_pid_gets_its_own_name(
        monkeypatch: pytest.MonkeyPatch, worker: subprocess.Popen) -> None:
    """A model server restarts a worker; the kernel gives the new one the old pid. The
    `process` label must name the new executable, not the one that held the pid before."""
    pid = worker.pid
    fake = HostNVML([FakeGpu(uuid="GPU-a", processes=[(pid, 2**30, NOT_MIG, NOT_MIG)])])
    fake.install(monkeypatch)
    collector = GpuCollector(process_memory=True)
    try:
        assert names(scrape(collector)) == {str(pid): psutil.Process(pid).exe()}
        # The holder's start in clock ticks since boot (what tells processes apart), and
        # its successor started at least two ticks later, as any reuse of a pid is (a pid
        # comes back only after the kernel has handed out all the others). Waited for on
        # the clock those ticks count: the wall clock against psutil's create_time() differs
        # by up to a second, and the successor often came within the holder's own tick.
        old_start = process_started(pid)
        assert old_start is not None
        ticks = os.sysconf("SC_CLK_TCK")
        stop(worker)
        wait_until(lambda: time.clock_gettime(time.CLOCK_BOOTTIME) * ticks > old_start + 2)
        successor = take_pid(pid, [sys.executable, "-c", "import time; time.sleep(60)"])
        if successor is None:
            pytest.skip("this host does not let a test choose the next pid")
        try:
            new_name = psutil.Process(pid).exe()
            assert new_name != "/usr/bin/sleep" and not new_name.endswith("/sleep")
            assert names(scrape(collector)) == {str(pid): new_name}
        finally:
            stop(successor)
    finally:
        collector.close()


def test_a_pid_whose_process_went_away_is_asked_again(
        monkeypatch: pytest.MonkeyPatch, worker: subprocess.Popen) -> None:
    """The cached name belongs to the process that held the pid: once that process is
    gone, NVML's answer for the pid is taken again instead of the dead process's name."""
    pid = worker.pid
    fake = HostNVML([FakeGpu(uuid="GPU-a", processes=[(pid, 2**30, NOT_MIG, NOT_MIG)])])
    fake.install(monkeypatch)
    collector = GpuCollector(process_memory=True)
    try:
        assert names(scrape(collector))[str(pid)].endswith("sleep")
        stop(worker)
        fake.process_names = {pid: "tritonserver"}  # what NVML now says of the pid
        assert names(scrape(collector)) == {str(pid): "tritonserver"}
        # Still the same (unseen) process: asked once, then cached again.
        asked = fake.calls["nvmlSystemGetProcessName"]
        assert names(scrape(collector)) == {str(pid): "tritonserver"}
        assert fake.calls["nvmlSystemGetProcessName"] == asked
    finally:
        collector.close()


def test_the_name_cache_is_bounded_however_many_processes_one_scrape_lists(
        monkeypatch: pytest.MonkeyPatch) -> None:
    many = nvml_read.MAX_PROCESS_NAMES + 300
    processes = [(100_000 + i, 2**20, NOT_MIG, NOT_MIG) for i in range(many)]
    fake = FakeNVML([FakeGpu(uuid="GPU-a", processes=processes)]).install(monkeypatch)
    fake.process_names = {pid: f"w{pid}" for pid, *_ in processes}
    collector = GpuCollector(process_memory=True)
    try:
        result = scrape(collector)
        assert success(result) == 1
        # Every process's memory is still there (512 series, the rest in __other__).
        assert sum(series(result, PROCESS).values()) == many * 2**20
        assert len(collector._process_names) <= nvml_read.MAX_PROCESS_NAMES
    finally:
        collector.close()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.text(min_size=1, max_size=100), second=st.text(min_size=1, max_size=100))
def test_any_name_nvml_gives_is_the_label_capped_and_kept_while_the_process_lives(
        monkeypatch: pytest.MonkeyPatch, first: str, second: str) -> None:
    first, second = first.replace("\x00", "?"), second.replace("\x00", "?")
    pid = os.getpid()  # a live process whose identity does not change
    fake = FakeNVML([FakeGpu(uuid="GPU-a", processes=[(pid, 2**30, NOT_MIG, NOT_MIG)])])
    fake.install(monkeypatch)
    fake.process_names = {pid: first}
    collector = GpuCollector(process_memory=True)
    try:
        assert names(scrape(collector)) == {str(pid): first[:nvml_read.MAX_PROCESS_NAME]}
        fake.process_names = {pid: second}
        assert names(scrape(collector)) == {str(pid): first[:nvml_read.MAX_PROCESS_NAME]}
    finally:
        collector.close()


# --- a restart of NVML that fails -------------------------------------------------------------

def test_recovery_after_a_failed_restart_is_said_at_info_and_backs_off_once_per_attempt(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A GPU falls off the bus; the restart that would find it again fails (the driver is
    being reloaded). The log said NVML is unavailable, so its return must be said at INFO,
    and each failed attempt doubles the wait once."""
    fake = FakeNVML([FakeGpu(uuid="GPU-a")]).install(monkeypatch)
    clock = Clock()
    collector = GpuCollector(clock=clock, retry_initial=5.0, retry_max=300.0)
    try:
        assert success(scrape(collector)) == 1
        fake.gpus[0].lost = True
        assert success(scrape(collector)) == 1  # gpu_up 0; a restart is due in 5s
        fake.driver = False
        fake.plug([FakeGpu(uuid="GPU-a")])
        first_retry = collector._next_init
        assert first_retry == clock.now + 5
        clock.now = first_retry
        assert success(scrape(collector)) == 0  # the restart's init fails
        assert collector._next_init == clock.now + 10
        fake.driver = True
        clock.now = collector._next_init
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="inferwatch.standalone.gpu"):
            result = scrape(collector)
        assert success(result) == 1
        assert result[("inferwatch_gpu_up", frozenset({("gpu", "0"), ("uuid", "GPU-a")}))] == 1
        said = [(r.levelno, r.getMessage()) for r in caplog.records
                if r.getMessage().startswith("NVML initialized")]
        assert said == [(logging.INFO, "NVML initialized (driver 550.54.15)")]
    finally:
        collector.close()


def test_a_failed_restart_while_no_gpu_is_counted_is_followed_by_an_info_line(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """NVML sees no GPU (quiet restarts look for one); then the driver is unloaded for a
    while (a driver upgrade). When it is back with a GPU, its init is said at INFO."""
    fake = FakeNVML([]).install(monkeypatch)
    clock = Clock()
    collector = GpuCollector(clock=clock)
    try:
        assert success(scrape(collector)) == 1
        clock.now = collector._next_init
        fake.driver = False
        fake.plug([FakeGpu(uuid="GPU-a")])
        assert success(scrape(collector)) == 0  # nvmlInit: driver not loaded
        fake.driver = True
        clock.now = collector._next_init
        with caplog.at_level(logging.DEBUG, logger="inferwatch.standalone.gpu"):
            result = scrape(collector)
        assert result[("inferwatch_gpu_devices", frozenset())] == 1
        assert [r.levelno for r in caplog.records
                if r.getMessage().startswith("NVML initialized")] == [logging.INFO]
    finally:
        collector.close()


# --- MIG ------------------------------------------------------------------------------------

def mig_gpu(**kwargs: object) -> FakeGpu:
    return FakeGpu(uuid="GPU-m", mig=[FakeMigInstance(gpu_instance_id=1, memory_used=2**30,
                                                      memory_total=10 * 2**30)], **kwargs)


def test_a_misread_mig_device_count_does_not_spend_the_scrape_on_empty_slots(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver answering an unsigned -1 for the MIG device count: the real MIG device is
    still read, the count is counted as implausible, and no billions of slot calls."""
    fake = FakeNVML([mig_gpu(max_mig_devices=0xFFFFFFFF)]).install(monkeypatch)
    collector = GpuCollector(budget=0.5)
    try:
        result = scrape(collector)
        assert success(result) == 1
        assert fake.calls["nvmlDeviceGetMigDeviceHandleByIndex"] <= nvml_read.MAX_MIG_ID
        used = {dict(labels).get("gpu_instance"): v
                for labels, v in series(result, "inferwatch_gpu_memory_used_bytes").items()}
        assert used["1"] == 2**30
        reasons = {(dict(labels)["field"], dict(labels)["reason"])
                   for labels in series(result, ERRORS)}
        assert reasons == {("mig_devices", "implausible_value")}
    finally:
        collector.close()


def test_a_binding_without_the_mig_handle_call_costs_only_the_mig_series(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNVML([mig_gpu(), FakeGpu(uuid="GPU-b", memory_used=2**30)]).install(monkeypatch)
    monkeypatch.delattr(pynvml, "nvmlDeviceGetMigDeviceHandleByIndex")
    collector = GpuCollector()
    try:
        result = scrape(collector)
        assert success(result) == 1
        assert series(result, "inferwatch_gpu_up") == {
            frozenset({("gpu", "0"), ("uuid", "GPU-m")}): 1,
            frozenset({("gpu", "1"), ("uuid", "GPU-b")}): 1}
        assert result[("inferwatch_gpu_memory_used_bytes",
                       frozenset({("gpu", "1"), ("uuid", "GPU-b")}))] == 2**30
        assert fake.calls["nvmlDeviceGetPowerUsage"] == 2
    finally:
        collector.close()


def test_a_driver_without_the_mig_handle_call_is_counted_once_per_scrape(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every slot would answer FunctionNotFound: one error per scrape, not one per slot."""
    fake = FakeNVML([mig_gpu()]).install(monkeypatch)
    fake.missing.add("nvmlDeviceGetMigDeviceHandleByIndex")
    collector = GpuCollector()
    try:
        result = scrape(collector)
        assert success(result) == 1
        assert series(result, ERRORS) == {
            frozenset({("gpu", "0"), ("uuid", "GPU-m"), ("field", "mig_devices"),
                       ("reason", "function_not_found")}): 1}
    finally:
        collector.close()


def test_a_process_keeps_its_identity_when_the_boot_time_steps(
        monkeypatch: pytest.MonkeyPatch, worker: subprocess.Popen) -> None:
    """psutil's create_time() adds /proc/stat's boot time, whole seconds the kernel derives
    from the wall clock at each read: one step of it made a process's start read a second
    apart, and a successor started a second after the pid's last holder read as that very
    process, keeping its name. The identity must be the start since boot alone."""
    import psutil._pslinux as pslinux

    pid = worker.pid
    before = process_started(pid)
    real_boot_time = psutil.boot_time()
    monkeypatch.setattr(pslinux, "boot_time", lambda: real_boot_time - 1.0)
    monkeypatch.setattr(psutil, "boot_time", lambda: real_boot_time - 1.0)
    assert process_started(pid) == before
    fake = HostNVML([FakeGpu(uuid="GPU-a", processes=[(pid, 2**30, NOT_MIG, NOT_MIG)])])
    fake.install(monkeypatch)
    asked: list[int] = []
    real_ask = fake.c_nvmlSystemGetProcessName

    def counted(pid_value, buffer, size):  # type: ignore[no-untyped-def]
        asked.append(pid_value.value)
        return real_ask(pid_value, buffer, size)

    monkeypatch.setattr(fake, "c_nvmlSystemGetProcessName", counted)
    collector = GpuCollector(process_memory=True)
    try:
        scrape(collector)
        monkeypatch.setattr(pslinux, "boot_time", lambda: real_boot_time)
        monkeypatch.setattr(psutil, "boot_time", lambda: real_boot_time)
        assert names(scrape(collector)) == {str(pid): psutil.Process(pid).exe()}
        assert asked == [pid]  # one process, asked once
    finally:
        collector.close()
