"""The GPU collector against a fake libnvidia-ml behind the real pynvml binding."""

from __future__ import annotations

import ctypes
import doctest
import logging
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

from fake_nvml import (
    NOT_MIG,
    PROCESS_RECORD,
    TEMPERATURE_CALL,
    FakeGpu,
    FakeMigInstance,
    FakeNVML,
)
from inferwatch.standalone.collectors import gpu as gpu_module
from inferwatch.standalone.collectors import nvml_read, nvml_xid
from inferwatch.standalone.collectors.gpu import GpuCollector
from inferwatch.standalone.collectors.process import ProcessCollector
from inferwatch.standalone.scrape import Scraper

GIB = 2**30
MIB = 2**20


def two_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(uuid="GPU-aaaa", utilization_gpu=42, utilization_memory=17,
                memory_used=3 * GIB, memory_reserved=500 * MIB, memory_total=40 * GIB,
                temperature=61, power_mw=123_456, power_limit_mw=300_000,
                energy_mj=1_234_567_891, sm_clock_mhz=1410, memory_clock_mhz=1215),
        FakeGpu(uuid="GPU-bbbb", name="NVIDIA L4", pci_bus_id="00000000:AF:00.0",
                utilization_gpu=100, utilization_memory=0, memory_used=0,
                memory_total=24 * GIB, temperature=35, power_mw=16_000,
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


def sample_list(text: str) -> list[tuple[str, frozenset, float]]:
    """Every sample, duplicates kept, parsed with prometheus_client's own parser."""
    return [(sample.name, frozenset(sample.labels.items()), sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(name, labels): v for name, labels, v in sample_list(text)}


def scrape(*collectors, timeout: float = 5.0) -> dict[tuple[str, frozenset], float]:
    return samples(scrape_text(*collectors, timeout=timeout))


def value(result, metric: str, /, **labels: str) -> float:
    return result[(metric, frozenset(labels.items()))]


def names(result) -> set[str]:
    return {name for name, _ in result}


def device_series(result, gpu: str) -> dict:
    return {key: v for key, v in result.items() if ("gpu", gpu) in key[1]}


def success(result, collector: str) -> float:
    return value(result, "inferwatch_exporter_collector_success", collector=collector)


def errors(result) -> dict[tuple[str, str, str], float]:
    """nvml_errors_total by (gpu, field, reason)."""
    found = {}
    for (name, labels), v in result.items():
        if name == "inferwatch_gpu_nvml_errors_total":
            d = dict(labels)
            found[(d["gpu"], d["field"], d["reason"])] = v
    return found


def available(result, gpu: str, field: str) -> float:
    uuid = {"0": "GPU-aaaa", "1": "GPU-bbbb"}[gpu]
    return value(result, "inferwatch_gpu_field_available", gpu=gpu, uuid=uuid, field=field)


A = {"gpu": "0", "uuid": "GPU-aaaa"}
B = {"gpu": "1", "uuid": "GPU-bbbb"}


# --- values and units -----------------------------------------------------------------------

def test_two_gpus_exact_values_in_base_units(fake: FakeNVML) -> None:
    result = scrape(GpuCollector())
    assert success(result, "gpu") == 1
    assert value(result, "inferwatch_gpu_devices") == 2
    assert value(result, "inferwatch_gpu_up", **A) == 1
    assert value(result, "inferwatch_gpu_up", **B) == 1
    assert value(result, "inferwatch_gpu_info", **A, name="NVIDIA A100-SXM4-40GB",
                 driver_version="550.54.15", pci_bus_id="00000000:3B:00.0") == 1
    assert value(result, "inferwatch_gpu_info", **B, name="NVIDIA L4",
                 driver_version="550.54.15", pci_bus_id="00000000:AF:00.0") == 1
    assert value(result, "inferwatch_gpu_utilization_ratio", **A) == 0.42
    assert value(result, "inferwatch_gpu_memory_utilization_ratio", **A) == 0.17
    assert value(result, "inferwatch_gpu_utilization_ratio", **B) == 1.0
    assert value(result, "inferwatch_gpu_memory_total_bytes", **A) == 40 * GIB
    assert value(result, "inferwatch_gpu_memory_total_bytes", **B) == 24 * GIB
    assert value(result, "inferwatch_gpu_temperature_celsius", **A) == 61
    assert value(result, "inferwatch_gpu_power_watts", **A) == pytest.approx(123.456)
    assert value(result, "inferwatch_gpu_power_limit_watts", **A) == 300.0
    assert value(result, "inferwatch_gpu_power_limit_watts", **B) == 72.0
    assert value(result, "inferwatch_gpu_energy_joules_total", **A) == pytest.approx(
        1_234_567.891)
    assert value(result, "inferwatch_gpu_energy_joules_total", **B) == 5.0
    assert value(result, "inferwatch_gpu_clock_hertz", **A, clock="sm") == 1.41e9
    assert value(result, "inferwatch_gpu_clock_hertz", **A, clock="memory") == 1.215e9
    assert value(result, "inferwatch_gpu_clock_hertz", **B, clock="sm") == 2.1e8
    assert all(available(result, "0", f) == 1 for f in (
        "utilization", "memory", "temperature", "power", "power_limit", "energy", "clocks",
        "xid_events"))
    assert errors(result) == {}
    # Opt-in only: no per-process series by default.
    assert "inferwatch_gpu_process_memory_bytes" not in names(result)


def test_memory_used_is_allocated_memory_without_reserved_as_nvidia_smi_shows(
        fake: FakeNVML) -> None:
    result = scrape(GpuCollector())
    assert value(result, "inferwatch_gpu_memory_used_bytes", **A) == 3 * GIB
    assert value(result, "inferwatch_gpu_memory_reserved_bytes", **A) == 500 * MIB
    assert fake.calls["nvmlDeviceGetMemoryInfo"] == 0


def test_memory_falls_back_to_v1_on_a_driver_without_v2(fake: FakeNVML) -> None:
    fake.missing = {"nvmlDeviceGetMemoryInfo_v2"}
    result = scrape(GpuCollector())
    # v1 counts reserved memory as used: it is all that such a driver can tell.
    assert value(result, "inferwatch_gpu_memory_used_bytes", **A) == 3 * GIB + 500 * MIB
    assert ("inferwatch_gpu_memory_reserved_bytes", frozenset(A.items())) not in result
    assert available(result, "0", "memory") == 1
    assert errors(result) == {}


# --- what "down" means ----------------------------------------------------------------------

def test_lost_gpu_is_down_alone_and_recovers(fake: FakeNVML) -> None:
    collector = GpuCollector()
    before = scrape(collector)
    fake.gpus[1].lost = True
    during = scrape(collector)
    assert success(during, "gpu") == 1
    # The lost device keeps its labels (uuid remembered) so its series stays one series.
    assert device_series(during, "1") == {
        ("inferwatch_gpu_up", frozenset(B.items())): 0.0}
    assert device_series(during, "0") == device_series(before, "0")
    fake.gpus[1].lost = False
    after = scrape(collector)
    assert device_series(after, "1") == device_series(before, "1")
    assert device_series(after, "0") == device_series(before, "0")


@pytest.mark.parametrize("error", [pynvml.NVMLError_GpuIsLost, pynvml.NVMLError_ResetRequired])
def test_lost_or_reset_required_on_any_field_marks_only_that_device_down(
        fake: FakeNVML, error: type) -> None:
    fake.gpus[0].fail = {"nvmlDeviceGetClockInfo": error}
    result = scrape(GpuCollector())
    assert success(result, "gpu") == 1
    assert device_series(result, "0") == {("inferwatch_gpu_up", frozenset(A.items())): 0.0}
    assert value(result, "inferwatch_gpu_up", **B) == 1


@pytest.mark.parametrize("symbol", ["nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetUUID"])
def test_a_device_that_cannot_be_reached_is_down(fake: FakeNVML, symbol: str) -> None:
    fake.gpus[1].fail = {symbol: pynvml.NVMLError_Unknown}
    result = scrape(GpuCollector())
    assert value(result, "inferwatch_gpu_up", gpu="1", uuid="") == 0
    assert value(result, "inferwatch_gpu_up", **A) == 1


@pytest.mark.parametrize("error", [
    pynvml.NVMLError_Unknown, pynvml.NVMLError_Timeout, pynvml.NVMLError_InvalidArgument,
    pynvml.NVMLError_Deprecated, pynvml.NVMLError_NotReady, pynvml.NVMLError_Uninitialized,
])
def test_other_errors_cost_one_field_are_counted_and_keep_the_device_up(
        fake: FakeNVML, error: type) -> None:
    fake.gpus[0].fail = {"nvmlDeviceGetClockInfo": error}
    collector = GpuCollector()
    first = scrape(collector)
    assert success(first, "gpu") == 1
    assert value(first, "inferwatch_gpu_up", **A) == 1
    assert ("inferwatch_gpu_clock_hertz", frozenset({**A, "clock": "sm"}.items())) not in first
    assert value(first, "inferwatch_gpu_temperature_celsius", **A) == 61
    reason = pynvml.nvmlExceptionClass(error().value).__name__.removeprefix("NVMLError_")
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in reason).lstrip("_")
    # Two clock reads (sm and memory) per scrape, each one failure.
    assert errors(first) == {("0", "clocks", snake): 2}
    assert errors(scrape(collector)) == {("0", "clocks", snake): 4}
    # No verdict on availability from a failed read.
    assert ("inferwatch_gpu_field_available",
            frozenset({**A, "field": "clocks"}.items())) not in first


# --- Xid events -----------------------------------------------------------------------------

def test_xid_events_are_counted_per_device_and_code(fake: FakeNVML) -> None:
    collector = GpuCollector()
    first = scrape(collector)  # registers both devices for Xid events
    assert "inferwatch_gpu_xid_errors_total" not in names(first)
    fake.emit_xid(0, 79)
    fake.emit_xid(0, 79)
    fake.emit_xid(1, 48)
    result = scrape(collector)
    xid = "inferwatch_gpu_xid_errors_total"
    assert value(result, xid, **A, xid="79") == 2
    assert value(result, xid, **B, xid="48") == 1
    # A counter: no new events, same values; more events add up.
    assert value(scrape(collector), xid, **A, xid="79") == 2
    fake.emit_xid(0, 79)
    assert value(scrape(collector), xid, **A, xid="79") == 3
    assert len(fake.live_sets) == 1


def test_xid_unsupported_is_a_series_and_one_log_line(
        fake: FakeNVML, caplog: pytest.LogCaptureFixture) -> None:
    fake.gpus[1].not_supported = {"nvmlDeviceRegisterEvents"}
    collector = GpuCollector()
    with caplog.at_level(logging.INFO, logger="inferwatch.standalone.gpu"):
        scrape(collector)
        fake.emit_xid(1, 48)  # never delivered: the device could not be registered
        fake.emit_xid(0, 13)
        result = scrape(collector)
    assert success(result, "gpu") == 1
    assert available(result, "1", "xid_events") == 0
    assert available(result, "0", "xid_events") == 1
    xids = {key: v for key, v in result.items() if key[0] == "inferwatch_gpu_xid_errors_total"}
    assert xids == {("inferwatch_gpu_xid_errors_total",
                     frozenset({**A, "xid": "13"}.items())): 1}
    said = [r.getMessage() for r in caplog.records if "xid events" in r.getMessage()]
    assert said == ["GPU 1: xid events is not available (not supported)"]
    # Not retried on every scrape: the answer does not change while NVML stays up.
    assert fake.calls["nvmlDeviceRegisterEvents"] == 2


def test_unknown_on_registration_keeps_the_device_and_rebuilds_the_event_set(
        fake: FakeNVML) -> None:
    fake.gpus[0].fail = {"nvmlDeviceRegisterEvents": pynvml.NVMLError_Unknown}
    collector = GpuCollector()
    first = scrape(collector)
    assert success(first, "gpu") == 1
    assert value(first, "inferwatch_gpu_up", **A) == 1
    assert value(first, "inferwatch_gpu_temperature_celsius", **A) == 61
    assert errors(first) == {("0", "xid_events", "unknown"): 1}
    broken = set(fake.live_sets)
    fake.gpus[0].fail = {}
    second = scrape(collector)  # frees the undefined set and builds a new one
    assert value(second, "inferwatch_gpu_up", **A) == 1
    assert len(fake.live_sets) == 1 and fake.live_sets.isdisjoint(broken)
    assert fake.registered() == {0, 1}
    fake.emit_xid(0, 31)
    fake.emit_xid(1, 43)
    third = scrape(collector)
    assert value(third, "inferwatch_gpu_xid_errors_total", **A, xid="31") == 1
    assert value(third, "inferwatch_gpu_xid_errors_total", **B, xid="43") == 1


def test_a_device_whose_registration_keeps_failing_does_not_starve_the_others(
        fake: FakeNVML) -> None:
    fake.gpus[0].fail = {"nvmlDeviceRegisterEvents": pynvml.NVMLError_Unknown}
    collector = GpuCollector()
    counted = 0.0
    for _ in range(12):
        fake.emit_xid(1, 43)
        result = scrape(collector)
        assert value(result, "inferwatch_gpu_up", **A) == 1
        counted = result.get(("inferwatch_gpu_xid_errors_total",
                              frozenset({**B, "xid": "43"}.items())), 0.0)
    # Device 1's Xids get through on most scrapes; device 0 is retried ever more rarely.
    assert counted >= 6
    assert fake.calls["nvmlDeviceRegisterEvents"] < 12


def test_a_failed_wait_is_counted_and_the_set_rebuilt(fake: FakeNVML) -> None:
    collector = GpuCollector()
    scrape(collector)
    fake.wait_error = pynvml.NVMLError_GpuIsLost  # a GPU in the set fell off the bus
    failed = scrape(collector)
    assert success(failed, "gpu") == 1
    assert errors(failed) == {("", "xid_wait", "gpu_is_lost"): 1}
    assert value(failed, "inferwatch_gpu_up", **A) == 1
    # The broken set delivers nothing: Xids are counted only because it was rebuilt.
    fake.emit_xid(1, 79)
    result = scrape(collector)
    assert value(result, "inferwatch_gpu_xid_errors_total", **B, xid="79") == 1
    assert len(fake.live_sets) == 1


# --- MIG ------------------------------------------------------------------------------------

def mig_gpus() -> list[FakeGpu]:
    gpus = two_gpus()
    gpus[0].mig = [FakeMigInstance(1, 2 * GIB, 10 * GIB, uuid="MIG-one", profile="2g.10gb"),
                   None,
                   FakeMigInstance(2, 0, 20 * GIB, uuid="MIG-two", profile="3g.20gb")]
    gpus[0].processes = [(4242, 1 * GIB, 1, 0), (4343, 2 * GIB, 2, 0)]
    gpus[1].processes = [(5151, 512 * MIB, NOT_MIG, NOT_MIG), (5252, None, NOT_MIG, NOT_MIG)]
    return gpus


def test_mig_devices_carry_instance_ids_uuid_and_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNVML(mig_gpus()).install(monkeypatch)
    fake.process_names = {4242: "python", 5151: "tritonserver"}
    result = scrape(GpuCollector(process_memory=True))
    one = {**A, "gpu_instance": "1", "compute_instance": "0", "mig_uuid": "MIG-one",
           "mig_profile": "2g.10gb"}
    two = {**A, "gpu_instance": "2", "compute_instance": "0", "mig_uuid": "MIG-two",
           "mig_profile": "3g.20gb"}
    assert value(result, "inferwatch_gpu_memory_used_bytes", **one) == 2 * GIB
    assert value(result, "inferwatch_gpu_memory_total_bytes", **two) == 20 * GIB
    # The whole device is still reported, without gpu_instance.
    assert value(result, "inferwatch_gpu_memory_total_bytes", **A) == 40 * GIB
    process = "inferwatch_gpu_process_memory_bytes"
    assert value(result, process, **A, pid="4242", process="python", gpu_instance="1",
                 compute_instance="0") == 1 * GIB
    assert value(result, process, **A, pid="4343", process="", gpu_instance="2",
                 compute_instance="0") == 2 * GIB
    assert value(result, process, **B, pid="5151", process="tritonserver") == 512 * MIB
    # NVML could not tell this process's usage: left out rather than reported as 0.
    assert not any(("pid", "5252") in labels for _, labels in result)
    # Empty MIG slots are not errors.
    assert success(result, "gpu") == 1
    assert errors(result) == {}


def test_mig_enabled_gpu_has_no_utilization_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNVML(mig_gpus()).install(monkeypatch)
    result = scrape(GpuCollector())
    assert not any(name == "inferwatch_gpu_utilization_ratio" and ("gpu", "0") in labels
                   for name, labels in result)
    assert available(result, "0", "utilization") == 0
    assert available(result, "1", "utilization") == 1


def test_two_compute_instances_in_one_gpu_instance_are_two_series(
        monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = two_gpus()
    gpus[0].mig = [FakeMigInstance(1, 1 * GIB, 10 * GIB, compute_instance_id=0,
                                   uuid="MIG-c0", profile="1c.2g.10gb"),
                   FakeMigInstance(1, 2 * GIB, 10 * GIB, compute_instance_id=1,
                                   uuid="MIG-c1", profile="1c.2g.10gb")]
    FakeNVML(gpus).install(monkeypatch)
    every = sample_list(scrape_text(GpuCollector()))
    keys = [(name, labels) for name, labels, _ in every]
    assert len(keys) == len(set(keys)), "duplicate samples"
    used = {dict(labels)["compute_instance"]: v for name, labels, v in every
            if name == "inferwatch_gpu_memory_used_bytes" and ("gpu_instance", "1") in labels}
    assert used == {"0": 1 * GIB, "1": 2 * GIB}


@pytest.mark.parametrize("empty", [pynvml.NVMLError_NotFound, pynvml.NVMLError_InvalidArgument,
                                   pynvml.NVMLError_NotSupported])
def test_every_kind_of_empty_mig_slot_is_skipped(monkeypatch: pytest.MonkeyPatch,
                                                 empty: type) -> None:
    gpus = mig_gpus()
    gpus[0].empty_slot_error = empty
    FakeNVML(gpus).install(monkeypatch)
    result = scrape(GpuCollector())
    assert value(result, "inferwatch_gpu_up", **A) == 1
    used = [labels for name, labels in result if name == "inferwatch_gpu_memory_used_bytes"
            and ("gpu", "0") in labels and any(k == "gpu_instance" for k, _ in labels)]
    assert len(used) == 2
    assert errors(result) == {}


def test_a_failing_max_mig_device_count_costs_only_the_instances(
        monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = mig_gpus()
    gpus[0].fail = {"nvmlDeviceGetMaxMigDeviceCount": pynvml.NVMLError_Unknown}
    FakeNVML(gpus).install(monkeypatch)
    result = scrape(GpuCollector())
    assert value(result, "inferwatch_gpu_up", **A) == 1
    assert value(result, "inferwatch_gpu_memory_total_bytes", **A) == 40 * GIB
    assert errors(result) == {("0", "mig_devices", "unknown"): 1}


def test_non_root_exporter_on_a_mig_gpu_sees_instances_and_says_what_it_cannot_see(
        monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNVML(mig_gpus(), root=False).install(monkeypatch)
    result = scrape(GpuCollector(process_memory=True))
    assert success(result, "gpu") == 1
    assert value(result, "inferwatch_gpu_up", **A) == 1
    # The parent's memory, processes and Xid events need root on a MIG GPU ...
    for field in ("memory", "processes", "xid_events"):
        assert available(result, "0", field) == 0, field
        assert available(result, "1", field) == 1, field
    assert ("inferwatch_gpu_memory_used_bytes", frozenset(A.items())) not in result
    # ... its MIG devices' memory does not.
    assert value(result, "inferwatch_gpu_memory_used_bytes", **A, gpu_instance="1",
                 compute_instance="0", mig_uuid="MIG-one", mig_profile="2g.10gb") == 2 * GIB
    assert errors(result) == {}


# --- per-process memory -----------------------------------------------------------------------

def test_a_binding_newer_than_the_driver_costs_only_per_process_memory(
        fake: FakeNVML) -> None:
    # nvidia-ml-py >= 12.550 raises NVMLLibraryMismatchError (not an NVMLError) when the
    # driver lacks nvmlDeviceGetComputeRunningProcesses_v3 (drivers before 510.39).
    fake.missing = {"nvmlDeviceGetComputeRunningProcesses_v3"}
    fake.gpus[0].processes = [(4242, GIB, NOT_MIG, NOT_MIG)]
    result = scrape(GpuCollector(process_memory=True))
    assert success(result, "gpu") == 1
    assert value(result, "inferwatch_gpu_up", **A) == 1
    assert value(result, "inferwatch_gpu_temperature_celsius", **B) == 35
    assert "inferwatch_gpu_process_memory_bytes" not in names(result)
    assert errors(result) == {("0", "processes", "library_mismatch"): 1,
                              ("1", "processes", "library_mismatch"): 1}


class Binding32(ctypes.Structure):
    """nvidia-ml-py 12.535.77's c_nvmlProcessInfo_t: 32 bytes, against the driver's 24."""

    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong),
                ("gpuInstanceId", ctypes.c_uint), ("computeInstanceId", ctypes.c_uint),
                ("usedGpuCcProtectedMemory", ctypes.c_ulonglong)]


PROCESSES = [(4242, 1 * GIB, NOT_MIG, NOT_MIG), (4343, 2 * GIB, NOT_MIG, NOT_MIG),
             (4444, 300 * MIB, NOT_MIG, NOT_MIG)]


@pytest.mark.parametrize("binding, driver", [(32, 24), (24, 32)])
def test_mismatched_process_record_sizes_never_become_series(
        monkeypatch: pytest.MonkeyPatch, binding: int, driver: int) -> None:
    gpus = two_gpus()
    gpus[0].processes = PROCESSES
    FakeNVML(gpus, process_record_size=driver).install(monkeypatch)
    if binding == 32:
        monkeypatch.setattr(pynvml, "c_nvmlProcessInfo_v3_t", Binding32)
    assert ctypes.sizeof(pynvml.c_nvmlProcessInfo_v3_t) == binding
    assert ctypes.sizeof(PROCESS_RECORD[driver]) == driver
    # The real binding does misread them: what the collector must not trust.
    pynvml.nvmlInit()
    read = pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(0))
    pynvml.nvmlShutdown()
    assert [p.pid for p in read][1:] != [4343, 4444]
    result = scrape(GpuCollector(process_memory=True))
    assert success(result, "gpu") == 1
    assert value(result, "inferwatch_gpu_up", **A) == 1
    assert "inferwatch_gpu_process_memory_bytes" not in names(result)
    assert errors(result) == {("0", "processes", "implausible_record"): 1}


def test_matching_process_records_are_read_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = two_gpus()
    gpus[0].processes = PROCESSES
    FakeNVML(gpus, process_record_size=24).install(monkeypatch)
    result = scrape(GpuCollector(process_memory=True))
    found = {dict(labels)["pid"]: v for name, labels in result
             if name == "inferwatch_gpu_process_memory_bytes"
             for v in [result[(name, labels)]]}
    assert found == {"4242": 1 * GIB, "4343": 2 * GIB, "4444": 300 * MIB}


def test_process_series_are_bounded_and_nothing_is_lost_in_the_fold(
        monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = two_gpus()
    gpus[0].processes = [(1000 + i, MIB * (i + 1), NOT_MIG, NOT_MIG) for i in range(10)]
    fake = FakeNVML(gpus).install(monkeypatch)
    fake.process_names = {1000 + i: "x" * 500 for i in range(10)}
    monkeypatch.setattr(gpu_module, "MAX_PROCESS_SERIES", 4)
    result = scrape(GpuCollector(process_memory=True))
    series = {labels: v for (name, labels), v in result.items()
              if name == "inferwatch_gpu_process_memory_bytes"}
    assert len(series) == 5
    assert sum(series.values()) == sum(MIB * (i + 1) for i in range(10))
    assert value(result, "inferwatch_gpu_process_memory_bytes", **A, pid="__other__",
                 process="__other__") == sum(MIB * (i + 1) for i in range(4, 10))
    assert all(len(dict(labels)["process"]) <= 64 for labels in series)


# --- lifecycle --------------------------------------------------------------------------------

@pytest.mark.parametrize("devices", [None, []], ids=["no library", "no devices"])
def test_a_host_without_gpus_is_not_a_failure(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        devices: list | None) -> None:
    fake = FakeNVML(devices or [], library=devices is not None).install(monkeypatch)
    clock = Clock()
    gpu = GpuCollector(retry_initial=10, retry_max=40, clock=clock)
    process = ProcessCollector(pids=[os.getpid()])
    with caplog.at_level(logging.INFO, logger="inferwatch.standalone.gpu"):
        for _ in range(3):
            result = scrape(gpu, process)
            assert success(result, "gpu") == 1
            assert success(result, "process") == 1
            assert value(result, "inferwatch_gpu_devices") == 0
            assert {n for n in names(result) if n.startswith("inferwatch_gpu_")} == {
                "inferwatch_gpu_devices"}
            clock.now += 20
    said = [r for r in caplog.records if "does not apply" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    assert fake.refcount == (0 if devices is None else 1)


@pytest.mark.parametrize("devices", [None, []], ids=["no library", "no devices"])
def test_a_host_without_gpus_is_said_once_at_start_up(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        devices: list | None) -> None:
    FakeNVML(devices or [], library=devices is not None).install(monkeypatch)
    gpu = GpuCollector()
    with caplog.at_level(logging.INFO, logger="inferwatch.standalone.gpu"):
        gpu.start()
        for _ in range(1000):  # until the probe thread has spoken (bounded)
            said = [r for r in caplog.records if "does not apply" in r.getMessage()]
            if said:
                break
            time.sleep(0.01)
        result = scrape(gpu)
    said = [r for r in caplog.records if "does not apply" in r.getMessage()]
    assert [(r.levelno, r.threadName) for r in said] == [(logging.INFO, "inferwatch-gpu-probe")]
    assert success(result, "gpu") == 1
    assert value(result, "inferwatch_gpu_devices") == 0
    gpu.close()


def test_a_driver_installed_later_is_picked_up_after_the_backoff(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNVML(two_gpus(), library=False).install(monkeypatch)
    clock = Clock()
    gpu = GpuCollector(retry_initial=10, retry_max=40, clock=clock)
    assert value(scrape(gpu), "inferwatch_gpu_devices") == 0
    fake.library = True
    clock.now += 9  # within the backoff: not looked for again
    assert value(scrape(gpu), "inferwatch_gpu_devices") == 0
    assert fake.calls["nvmlInitWithFlags"] == 0
    clock.now += 1
    result = scrape(gpu)
    assert value(result, "inferwatch_gpu_devices") == 2
    assert value(result, "inferwatch_gpu_up", **B) == 1


def test_nvml_present_and_failing_is_a_failure_with_backoff(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNVML(two_gpus(), driver=False).install(monkeypatch)
    clock = Clock()
    gpu = GpuCollector(retry_initial=10, retry_max=40, clock=clock)
    process = ProcessCollector(pids=[os.getpid()])
    result = scrape(gpu, process)
    assert success(result, "gpu") == 0
    assert success(result, "process") == 1
    assert not any(name.startswith("inferwatch_gpu_") for name in names(result))
    assert fake.calls["nvmlInitWithFlags"] == 1
    clock.now += 9  # within the backoff: no new attempt
    assert success(scrape(gpu, process), "gpu") == 0
    assert fake.calls["nvmlInitWithFlags"] == 1
    clock.now += 1  # past it: a new attempt, still failing, so the next wait doubles
    scrape(gpu, process)
    assert fake.calls["nvmlInitWithFlags"] == 2
    clock.now += 19
    scrape(gpu, process)
    assert fake.calls["nvmlInitWithFlags"] == 2
    fake.driver = True
    clock.now += 1
    result = scrape(gpu, process)
    assert fake.calls["nvmlInitWithFlags"] == 3
    assert success(result, "gpu") == 1
    assert value(result, "inferwatch_gpu_up", **B) == 1


def test_pynvml_not_importable_fails_only_the_gpu_collector(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    result = scrape(GpuCollector(), ProcessCollector(pids=[os.getpid()]))
    assert success(result, "gpu") == 0
    assert success(result, "process") == 1


@pytest.mark.parametrize("symbol", ["nvmlSystemGetDriverVersion", "nvmlDeviceGetCount_v2"])
def test_a_failure_right_after_init_shuts_nvml_down_and_backs_off(
        fake: FakeNVML, symbol: str) -> None:
    fake.fail = {symbol: pynvml.NVMLError_Unknown}
    clock = Clock()
    gpu = GpuCollector(retry_initial=10, retry_max=40, clock=clock)
    for _ in range(3):
        assert success(scrape(gpu), "gpu") == 0
        assert fake.refcount == 0  # NVML's init count does not grow scrape after scrape
        clock.now += 1
    assert fake.calls["nvmlInitWithFlags"] == 1
    fake.fail = {}
    clock.now += 10
    result = scrape(gpu)
    assert success(result, "gpu") == 1 and fake.refcount == 1


def test_driver_gone_after_init_reinitializes_with_fresh_handles(fake: FakeNVML) -> None:
    clock = Clock()
    collector = GpuCollector(retry_initial=10, clock=clock)
    assert success(scrape(collector), "gpu") == 1
    fake.fail = {"nvmlDeviceGetCount_v2": pynvml.NVMLError_DriverNotLoaded}
    assert success(scrape(collector), "gpu") == 0
    assert fake.refcount == 0 and fake.live_sets == set()
    fake.fail = {}
    clock.now += 10
    result = scrape(collector)
    assert success(result, "gpu") == 1
    assert fake.calls["nvmlInitWithFlags"] == 2
    # Handles from the first init are stale now: cached ones would read as down.
    assert value(result, "inferwatch_gpu_up", **A) == 1
    assert value(result, "inferwatch_gpu_up", **B) == 1


def test_a_driver_upgrade_under_a_running_exporter_says_restart(
        fake: FakeNVML, caplog: pytest.LogCaptureFixture) -> None:
    fake.fail = {"nvmlInitWithFlags": pynvml.NVMLError_LibRmVersionMismatch}
    with caplog.at_level(logging.WARNING):
        assert success(scrape(GpuCollector()), "gpu") == 0
    assert any("restart the exporter" in r.getMessage() for r in caplog.records)


def test_a_restart_after_a_driver_upgrade_picks_up_the_new_driver_cleanly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    old = FakeNVML(two_gpus(), driver_version="550.54.15").install(monkeypatch)
    first = GpuCollector()
    assert value(scrape(first), "inferwatch_gpu_info", **A, name="NVIDIA A100-SXM4-40GB",
                 driver_version="550.54.15", pci_bus_id="00000000:3B:00.0") == 1
    first.close()  # the exporter stops: the kernel module can now be unloaded
    assert old.refcount == 0 and old.live_sets == set()
    new = FakeNVML(two_gpus(), driver_version="570.86.10").install(monkeypatch)
    second = GpuCollector()
    scrape(second)
    new.emit_xid(0, 94)
    result = scrape(second)
    assert value(result, "inferwatch_gpu_info", **A, name="NVIDIA A100-SXM4-40GB",
                 driver_version="570.86.10", pci_bus_id="00000000:3B:00.0") == 1
    assert value(result, "inferwatch_gpu_xid_errors_total", **A, xid="94") == 1
    assert new.refcount == 1 and len(new.live_sets) == 1
    assert old.calls["nvmlInitWithFlags"] == 1


# --- deprecated and missing functions ---------------------------------------------------------

def test_a_binding_without_either_temperature_call_costs_only_temperature(
        fake: FakeNVML, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(pynvml, "nvmlDeviceGetTemperature")
    monkeypatch.delattr(pynvml, "nvmlDeviceGetTemperatureV", raising=False)  # since 12.570
    result = scrape(GpuCollector())
    assert success(result, "gpu") == 1
    assert value(result, "inferwatch_gpu_up", **A) == 1
    assert "inferwatch_gpu_temperature_celsius" not in names(result)
    assert available(result, "0", "temperature") == 0


@pytest.mark.skipif(not hasattr(pynvml, "nvmlDeviceGetTemperatureV"),
                    reason="a binding before nvidia-ml-py 12.570 has only the old call")
def test_the_replacement_temperature_call_is_used_where_present(
        fake: FakeNVML, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(pynvml, "nvmlDeviceGetTemperature")  # as the binding will drop it
    result = scrape(GpuCollector())
    assert value(result, "inferwatch_gpu_temperature_celsius", **A) == 61
    assert fake.calls["nvmlDeviceGetTemperature"] == 0


def test_an_older_driver_without_the_replacement_falls_back(fake: FakeNVML) -> None:
    fake.missing = {"nvmlDeviceGetTemperatureV"}
    result = scrape(GpuCollector())
    assert value(result, "inferwatch_gpu_temperature_celsius", **A) == 61
    assert available(result, "0", "temperature") == 1
    assert errors(result) == {}


def test_not_supported_fields_are_skipped_and_marked(fake: FakeNVML) -> None:
    fake.gpus[0].not_supported = {"nvmlDeviceGetPowerUsage",
                                  "nvmlDeviceGetTotalEnergyConsumption",
                                  "nvmlDeviceGetMigMode", "nvmlDeviceRegisterEvents"}
    result = scrape(GpuCollector())
    assert success(result, "gpu") == 1
    assert value(result, "inferwatch_gpu_up", **A) == 1
    metrics_0 = {name for name, _ in device_series(result, "0")}
    metrics_1 = {name for name, _ in device_series(result, "1")}
    assert metrics_1 - metrics_0 == {"inferwatch_gpu_power_watts",
                                     "inferwatch_gpu_energy_joules_total"}
    assert value(result, "inferwatch_gpu_power_limit_watts", **A) == 300
    assert available(result, "0", "power") == 0 and available(result, "0", "energy") == 0
    assert available(result, "1", "power") == 1
    assert errors(result) == {}


# --- cost -------------------------------------------------------------------------------------

def test_identity_is_read_once_and_again_only_after_a_loss(fake: FakeNVML) -> None:
    collector = GpuCollector()
    scrape(collector)
    identity = ("nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetUUID", "nvmlDeviceGetName",
                "nvmlDeviceGetPciInfo_v3")
    first = {symbol: fake.calls[symbol] for symbol in identity}
    assert first == dict.fromkeys(identity, 2)
    scrape(collector)
    assert {symbol: fake.calls[symbol] for symbol in identity} == first
    fake.gpus[1].lost = True
    scrape(collector)
    fake.gpus[1].lost = False
    scrape(collector)
    assert fake.calls["nvmlDeviceGetUUID"] == 3  # device 1 again, device 0 still cached


# --- whole-exporter properties ----------------------------------------------------------------

def test_hanging_nvml_call_costs_only_the_gpu_collector(fake: FakeNVML) -> None:
    hang = fake.hang(TEMPERATURE_CALL)
    # The deadline leaves the healthy collector ample time even on a loaded machine.
    scraper = Scraper([GpuCollector(), ProcessCollector(pids=[os.getpid()])], timeout=2.0)
    registry = CollectorRegistry()
    registry.register(scraper)
    result = samples(generate_latest(registry).decode())
    assert hang.entered.is_set()
    assert success(result, "gpu") == 0
    assert success(result, "process") == 1
    assert value(result, "inferwatch_exporter_collector_duration_seconds",
                 collector="gpu") >= 2.0
    assert not any(name.startswith("inferwatch_gpu_") for name in names(result))

    # Still hung: reported at once, and not started a second time.
    counts = fake.calls["nvmlDeviceGetCount_v2"]
    result = samples(generate_latest(registry).decode())
    assert success(result, "gpu") == 0
    assert success(result, "process") == 1
    assert fake.calls["nvmlDeviceGetCount_v2"] == counts

    hang.release()
    deadline = time.monotonic() + 60  # a safety net: the condition ends the wait
    while True:
        result = samples(generate_latest(registry).decode())
        if success(result, "gpu") == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert success(result, "gpu") == 1
    assert value(result, "inferwatch_gpu_temperature_celsius", **A) == 61


@pytest.mark.integration
def test_exposition_passes_promtool(monkeypatch: pytest.MonkeyPatch) -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not os.path.exists(promtool):
        pytest.skip("promtool is not installed (make tools)")
    gpus = mig_gpus()
    gpus[0].fail = {"nvmlDeviceGetClockInfo": pynvml.NVMLError_Timeout}
    gpus[1].lost = True
    fake = FakeNVML(gpus).install(monkeypatch)
    fake.process_names = {4242: 'we"ird\\name'}
    collector = GpuCollector(process_memory=True)
    scrape(collector)
    fake.emit_xid(0, 79)
    text = scrape_text(collector, ProcessCollector(pids=[os.getpid()]))
    assert "inferwatch_gpu_xid_errors_total{" in text
    assert "inferwatch_gpu_nvml_errors_total{" in text
    checked = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                             capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# What NVML can hand back: text that fits its buffers (95 bytes and a NUL), without NULs.
_LABEL_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",),
                                    exclude_characters="\x00"),
                      min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 79)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_LABEL_TEXT, uuid=_LABEL_TEXT, driver=_LABEL_TEXT)
def test_any_device_strings_round_trip_through_the_exposition(
        monkeypatch: pytest.MonkeyPatch, name: str, uuid: str, driver: str) -> None:
    with monkeypatch.context() as patch:
        FakeNVML([FakeGpu(uuid=uuid, name=name)], driver_version=driver).install(patch)
        result = scrape(GpuCollector())
    assert value(result, "inferwatch_gpu_info", gpu="0", uuid=uuid, name=name,
                 driver_version=driver, pci_bus_id="00000000:3B:00.0") == 1


def test_doctests() -> None:
    for module in (nvml_read, nvml_xid):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# --- values a driver misreports ----------------------------------------------------------------

def test_a_negative_temperature_from_the_old_call_stays_negative(fake: FakeNVML) -> None:
    """Drivers before R555 lack nvmlDeviceGetTemperatureV; the old call's value is read as
    unsigned, so -5 C read as 4294967291 C."""
    fake.missing = {"nvmlDeviceGetTemperatureV"}
    fake.gpus[0].temperature = -5
    assert value(scrape(GpuCollector()), "inferwatch_gpu_temperature_celsius", **A) == -5


def test_a_utilization_past_100_percent_is_no_ratio_and_is_counted(fake: FakeNVML) -> None:
    fake.gpus[0].utilization_gpu = 101
    fake.gpus[1].utilization_memory = 150
    result = scrape(GpuCollector())
    assert not any(name.endswith("utilization_ratio") for name, _ in result)
    assert errors(result) == {("0", "utilization", "implausible_value"): 1.0,
                              ("1", "utilization", "implausible_value"): 1.0}


def test_a_device_renumbered_by_a_restarted_nvml_never_wears_anothers_uuid(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """GPU B falls off the bus and NVML restarts: C is device 1 now. Were C's uuid read to
    fail, its down series was labelled with B's remembered uuid."""
    gpus = [FakeGpu(uuid="GPU-A"), FakeGpu(uuid="GPU-B"), FakeGpu(uuid="GPU-C")]
    fake = FakeNVML(gpus).install(monkeypatch)
    clock = Clock()
    collector = GpuCollector(clock=clock)
    try:
        assert value(scrape(collector), "inferwatch_gpu_up", gpu="1", uuid="GPU-B") == 1
        fake.fail["nvmlDeviceGetCount_v2"] = pynvml.NVMLError_Unknown
        scrape(collector)  # NVML released
        del fake.fail["nvmlDeviceGetCount_v2"]
        fake.gpus = [gpus[0], gpus[2]]
        gpus[2].fail = {"nvmlDeviceGetUUID": pynvml.NVMLError_Unknown}
        clock.now += 3600
        ups = {key: v for key, v in scrape(collector).items() if key[0] == "inferwatch_gpu_up"}
        assert ("inferwatch_gpu_up", frozenset({"gpu": "1", "uuid": "GPU-B"}.items())) not in ups
        assert ups[("inferwatch_gpu_up", frozenset({"gpu": "1", "uuid": ""}.items()))] == 0
    finally:
        fake.release_all()
