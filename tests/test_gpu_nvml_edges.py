"""NVML answers a real fleet gives that the driver documents badly: binding drift, memory
struct refusals, and memory readings no device can have."""

from __future__ import annotations

import ctypes
import subprocess

import pynvml
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require_binary
from fake_nvml import FakeGpu, FakeMigInstance, FakeNVML
from inferwatch.standalone.collectors.gpu import GpuCollector
from test_gpu_edges import ERRORS, scrape, scrape_text, series, success

GIB = 2**30
GPU0 = {"gpu": "0", "uuid": "GPU-aaaa"}


def labels(**extra: str) -> frozenset:
    return frozenset({**GPU0, **extra}.items())


@pytest.fixture
def collector():
    gpu = GpuCollector(process_memory=True)
    yield gpu
    gpu.close()


def raising(exc: BaseException):
    def call(*args: object) -> object:
        raise exc
    return call


@pytest.mark.parametrize("exc", [TypeError("takes 1 positional argument but 2 were given"),
                                 AttributeError("module has no attribute 'c_nvmlPower_t'"),
                                 ctypes.ArgumentError("argument 1: wrong type")])
def test_a_binding_wrapper_that_breaks_costs_one_field_not_every_gpu(
        monkeypatch: pytest.MonkeyPatch, collector: GpuCollector, exc: BaseException) -> None:
    FakeNVML([FakeGpu(uuid="GPU-aaaa", temperature=61),
              FakeGpu(uuid="GPU-bbbb", temperature=35)]).install(monkeypatch)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetPowerUsage", raising(exc))
    result = scrape(collector)
    assert success(result) == 1
    assert series(result, "inferwatch_gpu_power_watts") == {}
    temperatures = {dict(k)["uuid"]: v for k, v in
                    series(result, "inferwatch_gpu_temperature_celsius").items()}
    assert temperatures == {"GPU-aaaa": 61, "GPU-bbbb": 35}
    errors = series(result, ERRORS)
    assert errors[frozenset({**GPU0, "field": "power", "reason": "other"}.items())] == 1
    assert all(v == 1 for v in series(result, "inferwatch_gpu_up").values())


@pytest.mark.parametrize("refusal", ["not_supported", "version"])
def test_a_driver_refusing_only_the_v2_memory_struct_still_reports_v1_memory(
        monkeypatch: pytest.MonkeyPatch, collector: GpuCollector, refusal: str) -> None:
    gpu = FakeGpu(uuid="GPU-aaaa", memory_used=3 * GIB, memory_reserved=GIB // 2,
                  memory_total=40 * GIB)
    if refusal == "not_supported":
        gpu.not_supported.add("nvmlDeviceGetMemoryInfo_v2")
    else:
        gpu.fail["nvmlDeviceGetMemoryInfo_v2"] = pynvml.NVMLError_ArgumentVersionMismatch
    FakeNVML([gpu]).install(monkeypatch)
    result = scrape(collector)
    assert success(result) == 1
    # v1 counts the reserved memory as used, as the docs say of the fallback.
    assert result[("inferwatch_gpu_memory_used_bytes", labels())] == 3 * GIB + GIB // 2
    assert result[("inferwatch_gpu_memory_total_bytes", labels())] == 40 * GIB
    assert ("inferwatch_gpu_memory_reserved_bytes", labels()) not in result
    assert result[("inferwatch_gpu_field_available", labels(field="memory"))] == 1
    assert series(result, ERRORS) == {}


def test_memory_refused_in_both_structs_is_unavailable_not_an_error(
        monkeypatch: pytest.MonkeyPatch, collector: GpuCollector) -> None:
    # A unified-memory board (GB10) answers NotSupported to every memory call.
    FakeNVML([FakeGpu(uuid="GPU-aaaa", not_supported={
        "nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetMemoryInfo"})]).install(monkeypatch)
    result = scrape(collector)
    assert success(result) == 1
    assert series(result, "inferwatch_gpu_memory_used_bytes") == {}
    assert result[("inferwatch_gpu_field_available", labels(field="memory"))] == 0
    assert series(result, ERRORS) == {}


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(total=st.integers(1, 2**40), used=st.integers(0, 2**41), reserved=st.integers(0, 2**41))
def test_memory_past_the_total_is_never_exported_as_used(
        monkeypatch: pytest.MonkeyPatch, total: int, used: int, reserved: int) -> None:
    with monkeypatch.context() as patch:
        FakeNVML([FakeGpu(uuid="GPU-aaaa", memory_used=used, memory_reserved=reserved,
                          memory_total=total)]).install(patch)
        gpu = GpuCollector()
        try:
            result = scrape(gpu)
        finally:
            gpu.close()
    assert success(result) == 1
    used_series = series(result, "inferwatch_gpu_memory_used_bytes")
    implausible = frozenset({**GPU0, "field": "memory", "reason": "implausible_value"}.items())
    if used <= total and reserved <= total:
        assert used_series == {frozenset(GPU0.items()): used}
        assert implausible not in series(result, ERRORS)
    else:
        assert used_series == {}
        assert series(result, "inferwatch_gpu_memory_total_bytes") == {}
        assert series(result, ERRORS)[implausible] == 1
    assert result[("inferwatch_gpu_up", frozenset(GPU0.items()))] == 1


def test_a_mig_device_reporting_more_used_than_its_slice_is_counted_alone(
        monkeypatch: pytest.MonkeyPatch, collector: GpuCollector) -> None:
    FakeNVML([FakeGpu(uuid="GPU-aaaa", memory_total=80 * GIB, mig=[
        FakeMigInstance(1, memory_used=2 * GIB, memory_total=10 * GIB, uuid="MIG-1"),
        FakeMigInstance(2, memory_used=2**63, memory_total=10 * GIB, uuid="MIG-2"),
    ])]).install(monkeypatch)
    result = scrape(collector)
    assert success(result) == 1
    used = {dict(k).get("mig_uuid", ""): v
            for k, v in series(result, "inferwatch_gpu_memory_used_bytes").items()}
    assert used == {"": 0, "MIG-1": 2 * GIB}
    errors = series(result, ERRORS)
    assert errors[frozenset({**GPU0, "field": "mig_memory",
                             "reason": "implausible_value"}.items())] == 1


def test_the_edge_exposition_passes_promtool(
        monkeypatch: pytest.MonkeyPatch, collector: GpuCollector, tmp_path) -> None:
    promtool = require_binary("promtool")
    FakeNVML([FakeGpu(uuid="GPU-aaaa", memory_used=50 * GIB, memory_total=40 * GIB,
                      not_supported={"nvmlDeviceGetMemoryInfo_v2"}),
              FakeGpu(uuid="GPU-bbbb", processes=[(10, None, 0xFFFFFFFF, 0xFFFFFFFF),
                                                  (11, GIB, 0xFFFFFFFF, 0xFFFFFFFF)])]
             ).install(monkeypatch)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetPowerUsage", raising(TypeError("x")))
    text = scrape_text(collector)
    checked = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                             capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert 'inferwatch_gpu_process_memory_bytes{gpu="1"' in text
    assert 'pid="10"' not in text  # NVML cannot tell its memory: left out, not 0
