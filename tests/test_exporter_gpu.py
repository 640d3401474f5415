"""The GPU collector against a fake NVML that raises the real pynvml error classes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pynvml
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fake_nvml import FakeGpu, FakeMigInstance, FakeNVML
from inferwatch.standalone.collectors.gpu import GpuCollector
from inferwatch.standalone.collectors.process import ProcessCollector
from inferwatch.standalone.scrape import Scraper

GIB = 2**30


def two_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(uuid="GPU-aaaa", utilization_gpu=42, utilization_memory=17,
                memory_used=3 * GIB, memory_total=40 * GIB, temperature=61,
                power_mw=123_456, power_limit_mw=300_000, energy_mj=1_234_567_891,
                sm_clock_mhz=1410, memory_clock_mhz=1215),
        FakeGpu(uuid="GPU-bbbb", name="NVIDIA L4", utilization_gpu=100, utilization_memory=0,
                memory_used=0, memory_total=24 * GIB, temperature=35, power_mw=16_000,
                power_limit_mw=72_000, energy_mj=5_000, sm_clock_mhz=210,
                memory_clock_mhz=405),
    ]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    nvml = FakeNVML(two_gpus()).install(monkeypatch)
    yield nvml
    nvml.release_all()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scrape_text(*collectors, timeout: float = 5.0) -> str:
    registry = CollectorRegistry()
    registry.register(Scraper(list(collectors), timeout=timeout))
    return generate_latest(registry).decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample by (name, labels), parsed with prometheus_client's own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(*collectors, timeout: float = 5.0) -> dict[tuple[str, frozenset], float]:
    return samples(scrape_text(*collectors, timeout=timeout))


def value(result, metric: str, /, **labels: str) -> float:
    return result[(metric, frozenset(labels.items()))]


def device_series(result, gpu: str) -> dict:
    return {key: v for key, v in result.items() if ("gpu", gpu) in key[1]}


def success(result, collector: str) -> float:
    return value(result, "inferwatch_exporter_collector_success", collector=collector)


def test_two_gpus_exact_values_in_base_units(fake: FakeNVML) -> None:
    result = scrape(GpuCollector())
    a = {"gpu": "0", "uuid": "GPU-aaaa"}
    b = {"gpu": "1", "uuid": "GPU-bbbb"}
    assert success(result, "gpu") == 1
    assert value(result, "inferwatch_gpu_up", **a) == 1
    assert value(result, "inferwatch_gpu_up", **b) == 1
    assert value(result, "inferwatch_gpu_info", **a, name="NVIDIA A100-SXM4-40GB",
                 driver_version="550.54.15") == 1
    assert value(result, "inferwatch_gpu_info", **b, name="NVIDIA L4",
                 driver_version="550.54.15") == 1
    assert value(result, "inferwatch_gpu_utilization_ratio", **a) == 0.42
    assert value(result, "inferwatch_gpu_memory_utilization_ratio", **a) == 0.17
    assert value(result, "inferwatch_gpu_utilization_ratio", **b) == 1.0
    assert value(result, "inferwatch_gpu_memory_used_bytes", **a) == 3 * GIB
    assert value(result, "inferwatch_gpu_memory_total_bytes", **a) == 40 * GIB
    assert value(result, "inferwatch_gpu_memory_total_bytes", **b) == 24 * GIB
    assert value(result, "inferwatch_gpu_temperature_celsius", **a) == 61
    assert value(result, "inferwatch_gpu_power_watts", **a) == pytest.approx(123.456)
    assert value(result, "inferwatch_gpu_power_limit_watts", **a) == 300.0
    assert value(result, "inferwatch_gpu_power_limit_watts", **b) == 72.0
    assert value(result, "inferwatch_gpu_energy_joules_total", **a) == pytest.approx(
        1_234_567.891)
    assert value(result, "inferwatch_gpu_energy_joules_total", **b) == 5.0
    assert value(result, "inferwatch_gpu_clock_hertz", **a, clock="sm") == 1.41e9
    assert value(result, "inferwatch_gpu_clock_hertz", **a, clock="memory") == 1.215e9
    assert value(result, "inferwatch_gpu_clock_hertz", **b, clock="sm") == 2.1e8
    # Opt-in only: no per-process series by default.
    assert not any(name == "inferwatch_gpu_process_memory_bytes" for name, _ in result)


def test_lost_gpu_is_down_alone_and_recovers(fake: FakeNVML) -> None:
    collector = GpuCollector()
    before = scrape(collector)
    fake.gpus[1].lost = True
    during = scrape(collector)
    assert success(during, "gpu") == 1
    # The lost device keeps its labels (uuid remembered) so its series stays one series.
    assert device_series(during, "1") == {
        ("inferwatch_gpu_up", frozenset({"gpu": "1", "uuid": "GPU-bbbb"}.items())): 0.0}
    assert device_series(during, "0") == device_series(before, "0")
    fake.gpus[1].lost = False
    after = scrape(collector)
    assert device_series(after, "1") == device_series(before, "1")
    assert device_series(after, "0") == device_series(before, "0")


@pytest.mark.parametrize("error", [pynvml.NVMLError_Unknown, pynvml.NVMLError_Uninitialized,
                                   pynvml.NVMLError_ResetRequired])
def test_device_error_marks_only_that_device_down(fake: FakeNVML, error: type) -> None:
    fake.gpus[0].fail = {"nvmlDeviceGetClockInfo": error}
    result = scrape(GpuCollector())
    assert success(result, "gpu") == 1
    assert value(result, "inferwatch_gpu_up", gpu="0", uuid="GPU-aaaa") == 0
    # A half-read device exposes nothing but its up series.
    assert len(device_series(result, "0")) == 1
    assert value(result, "inferwatch_gpu_up", gpu="1", uuid="GPU-bbbb") == 1


@pytest.mark.parametrize("missing", ["library", "driver"])
def test_no_nvml_fails_only_the_gpu_collector_and_retries_with_backoff(
        monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    fake = FakeNVML(two_gpus(), **{missing: False}).install(monkeypatch)
    clock = Clock()
    gpu = GpuCollector(retry_initial=10, retry_max=40, clock=clock)
    process = ProcessCollector(pids=[os.getpid()])
    result = scrape(gpu, process)
    assert success(result, "gpu") == 0
    assert success(result, "process") == 1
    assert value(result, "inferwatch_process_threads", pid=str(os.getpid()),
                 process=_own_name()) >= 1
    assert not any(name.startswith("inferwatch_gpu_") for name, _ in result)
    assert fake.calls["nvmlInit"] == 1

    # Within the backoff: no new attempt.
    clock.now += 9
    assert success(scrape(gpu, process), "gpu") == 0
    assert fake.calls["nvmlInit"] == 1
    # Past it: a new attempt, still failing, so the next wait doubles (20 s).
    clock.now += 1
    scrape(gpu, process)
    assert fake.calls["nvmlInit"] == 2
    clock.now += 19
    scrape(gpu, process)
    assert fake.calls["nvmlInit"] == 2

    # The driver arrives: the next attempt succeeds and devices appear.
    setattr(fake, missing, True)
    clock.now += 1
    result = scrape(gpu, process)
    assert fake.calls["nvmlInit"] == 3
    assert success(result, "gpu") == 1
    assert value(result, "inferwatch_gpu_up", gpu="1", uuid="GPU-bbbb") == 1


def test_pynvml_not_importable_fails_only_the_gpu_collector(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    result = scrape(GpuCollector(), ProcessCollector(pids=[os.getpid()]))
    assert success(result, "gpu") == 0
    assert success(result, "process") == 1


def test_driver_gone_after_init_reinitializes(fake: FakeNVML,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    collector = GpuCollector()
    assert success(scrape(collector), "gpu") == 1
    real_count = fake.nvmlDeviceGetCount

    def driver_gone():
        fake.calls["nvmlDeviceGetCount"] += 1
        raise pynvml.NVMLError_DriverNotLoaded()

    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", driver_gone)
    assert success(scrape(collector), "gpu") == 0
    assert fake.calls["nvmlShutdown"] == 1
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", real_count)
    result = scrape(collector)
    assert success(result, "gpu") == 1
    assert fake.calls["nvmlInit"] == 2
    assert value(result, "inferwatch_gpu_up", gpu="0", uuid="GPU-aaaa") == 1


def test_not_supported_fields_are_skipped(fake: FakeNVML) -> None:
    fake.gpus[0].not_supported = {"nvmlDeviceGetPowerUsage",
                                  "nvmlDeviceGetTotalEnergyConsumption",
                                  "nvmlDeviceGetMigMode", "nvmlDeviceRegisterEvents"}
    result = scrape(GpuCollector())
    assert success(result, "gpu") == 1
    assert value(result, "inferwatch_gpu_up", gpu="0", uuid="GPU-aaaa") == 1
    names_0 = {name for name, labels in device_series(result, "0")}
    names_1 = {name for name, labels in device_series(result, "1")}
    assert names_1 - names_0 == {"inferwatch_gpu_power_watts",
                                 "inferwatch_gpu_energy_joules_total"}
    assert value(result, "inferwatch_gpu_power_limit_watts", gpu="0", uuid="GPU-aaaa") == 300


def test_hanging_nvml_call_costs_only_the_gpu_collector(fake: FakeNVML) -> None:
    hang = fake.hang("nvmlDeviceGetTemperature")
    # Long enough that the healthy process collector finishes on a busy machine too.
    scraper = Scraper([GpuCollector(), ProcessCollector(pids=[os.getpid()])], timeout=2.0)
    registry = CollectorRegistry()
    registry.register(scraper)
    result = samples(generate_latest(registry).decode())
    assert hang.entered.is_set()
    assert success(result, "gpu") == 0
    assert success(result, "process") == 1
    assert value(result, "inferwatch_exporter_collector_duration_seconds",
                 collector="gpu") >= 2.0
    assert not any(name.startswith("inferwatch_gpu_") for name, _ in result)

    # Still hung: reported at once, and not started a second time.
    counts = fake.calls["nvmlDeviceGetCount"]
    result = samples(generate_latest(registry).decode())
    assert success(result, "gpu") == 0
    assert success(result, "process") == 1
    assert fake.calls["nvmlDeviceGetCount"] == counts

    hang.release()
    deadline = time.monotonic() + 60  # a safety net: the condition ends the wait
    while True:
        result = samples(generate_latest(registry).decode())
        if success(result, "gpu") == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert success(result, "gpu") == 1
    assert value(result, "inferwatch_gpu_temperature_celsius", gpu="0", uuid="GPU-aaaa") == 61


def test_xid_events_are_counted_per_device_and_code(fake: FakeNVML) -> None:
    collector = GpuCollector()
    first = scrape(collector)  # registers both devices for Xid events
    assert not any(name == "inferwatch_gpu_xid_errors_total" for name, _ in first)
    fake.emit_xid(0, 79)
    fake.emit_xid(0, 79)
    fake.emit_xid(1, 48)
    result = scrape(collector)
    xid = "inferwatch_gpu_xid_errors_total"
    assert value(result, xid, gpu="0", uuid="GPU-aaaa", xid="79") == 2
    assert value(result, xid, gpu="1", uuid="GPU-bbbb", xid="48") == 1
    # A counter: no new events, same values; more events add up.
    assert scrape(collector)[(xid, frozenset(
        {"gpu": "0", "uuid": "GPU-aaaa", "xid": "79"}.items()))] == 2
    fake.emit_xid(0, 79)
    assert value(scrape(collector), xid, gpu="0", uuid="GPU-aaaa", xid="79") == 3
    assert fake.event_sets == 1


def test_xid_not_counted_for_device_without_event_support(fake: FakeNVML) -> None:
    fake.gpus[1].not_supported = {"nvmlDeviceRegisterEvents"}
    collector = GpuCollector()
    scrape(collector)
    fake.emit_xid(1, 48)  # never delivered: the device could not be registered
    fake.emit_xid(0, 13)
    result = scrape(collector)
    assert success(result, "gpu") == 1
    xids = {key: v for key, v in result.items() if key[0] == "inferwatch_gpu_xid_errors_total"}
    assert xids == {("inferwatch_gpu_xid_errors_total",
                     frozenset({"gpu": "0", "uuid": "GPU-aaaa", "xid": "13"}.items())): 1}


def test_mig_instances_carry_gpu_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = two_gpus()
    gpus[0].mig = [FakeMigInstance(1, 2 * GIB, 10 * GIB), FakeMigInstance(2, 0, 20 * GIB)]
    gpus[0].processes = [(4242, 1 * GIB, 1), (4343, 2 * GIB, 2)]
    gpus[1].processes = [(5151, 512 * 2**20, 0xFFFFFFFF), (5252, None, 0xFFFFFFFF)]
    FakeNVML(gpus).install(monkeypatch)
    result = scrape(GpuCollector(process_memory=True))
    a = {"gpu": "0", "uuid": "GPU-aaaa"}
    assert value(result, "inferwatch_gpu_memory_used_bytes", **a, gpu_instance="1") == 2 * GIB
    assert value(result, "inferwatch_gpu_memory_total_bytes", **a, gpu_instance="2") == 20 * GIB
    # The whole device is still reported, without gpu_instance.
    assert value(result, "inferwatch_gpu_memory_total_bytes", **a) == 40 * GIB
    # Utilization is not available per MIG instance: skipped, not an error.
    assert not any(name == "inferwatch_gpu_utilization_ratio" and ("gpu_instance", "1") in labels
                   for name, labels in result)
    process = "inferwatch_gpu_process_memory_bytes"
    assert value(result, process, **a, pid="4242", gpu_instance="1") == 1 * GIB
    assert value(result, process, **a, pid="4343", gpu_instance="2") == 2 * GIB
    assert value(result, process, gpu="1", uuid="GPU-bbbb", pid="5151") == 512 * 2**20
    # NVML could not tell this process's usage: left out rather than reported as 0.
    assert not any(("pid", "5252") in labels for _, labels in result)
    # Empty MIG slots (7 possible, 2 used) are not errors.
    assert success(result, "gpu") == 1


@pytest.mark.integration
def test_exposition_passes_promtool(monkeypatch: pytest.MonkeyPatch) -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not os.path.exists(promtool):
        pytest.skip("promtool is not installed (make tools)")
    gpus = two_gpus()
    gpus[0].mig = [FakeMigInstance(1, 2 * GIB, 10 * GIB)]
    gpus[0].processes = [(4242, GIB, 1)]
    gpus[1].lost = True
    fake = FakeNVML(gpus).install(monkeypatch)
    collector = GpuCollector(process_memory=True)
    scrape(collector)
    fake.emit_xid(0, 79)
    text = scrape_text(collector, ProcessCollector(pids=[os.getpid()]))
    assert "inferwatch_gpu_xid_errors_total{" in text
    checked = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                             capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


_LABEL_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_LABEL_TEXT, uuid=_LABEL_TEXT, driver=_LABEL_TEXT)
def test_any_device_strings_round_trip_through_the_exposition(
        monkeypatch: pytest.MonkeyPatch, name: str, uuid: str, driver: str) -> None:
    with monkeypatch.context() as patch:
        FakeNVML([FakeGpu(uuid=uuid, name=name)], driver_version=driver).install(patch)
        result = scrape(GpuCollector())
    assert value(result, "inferwatch_gpu_info", gpu="0", uuid=uuid, name=name,
                 driver_version=driver) == 1


def _own_name() -> str:
    import psutil

    return psutil.Process().name()
