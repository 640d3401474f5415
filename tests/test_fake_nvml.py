"""The fake libnvidia-ml is held to the real binding: its symbols, structures and answers."""

from __future__ import annotations

import ctypes
import inspect
import re
from pathlib import Path

import pynvml
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from fake_nvml import (
    NEWER_THAN_FLOOR,
    NOT_MIG,
    PROCESS_RECORD,
    SYMBOLS,
    TEMPERATURE_CALL,
    FakeGpu,
    FakeMigInstance,
    FakeNVML,
)

ROOT = Path(__file__).resolve().parents[1]
# The first nvidia-ml-py whose process record matches the driver's (12.535.77 had 32 bytes).
FIRST_RIGHT_PROCESS_RECORD = Version("12.535.108")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNVML:
    gpu = FakeGpu(uuid="GPU-a", mig=[FakeMigInstance(3, 1, 8, compute_instance_id=1,
                                                      uuid="MIG-a", profile="1g.5gb")],
                  processes=[(77, 1024, 3, 1)])
    return FakeNVML([gpu]).install(monkeypatch)


def test_every_fake_symbol_is_one_the_binding_looks_up() -> None:
    source = inspect.getsource(pynvml)
    looked_up = set(re.findall(r'_nvmlGetFunctionPointer\("(\w+)"\)', source))
    # A binding older than a symbol never looks it up; the driver has it all the same.
    newer = {name for name in NEWER_THAN_FLOOR if not hasattr(pynvml, name)}
    assert set(SYMBOLS) - newer <= looked_up, set(SYMBOLS) - newer - looked_up


def test_the_dependency_floor_has_the_drivers_process_record() -> None:
    # Python 3.10 has no tomllib: the dependency line is found by its quoted form.
    line = re.search(r'"(nvidia-ml-py[^"]*)"', (ROOT / "pyproject.toml").read_text())
    assert line is not None
    requirement = Requirement(line.group(1))
    floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert floors and min(floors) >= FIRST_RIGHT_PROCESS_RECORD
    assert ctypes.sizeof(pynvml.c_nvmlProcessInfo_v3_t) == ctypes.sizeof(PROCESS_RECORD[24])


def test_calls_before_init_and_stale_handles_fail_as_in_nvml(fake: FakeNVML) -> None:
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()
    pynvml.nvmlInit()
    stale = pynvml.nvmlDeviceGetHandleByIndex(0)
    pynvml.nvmlShutdown()
    pynvml.nvmlInit()
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetUUID(stale)
    assert pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(0)) == "GPU-a"
    pynvml.nvmlShutdown()
    assert fake.refcount == 0
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlShutdown()


def test_no_library_is_the_bindings_own_library_not_found(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    FakeNVML([], library=False).install(monkeypatch)
    with pytest.raises(pynvml.NVMLError_LibraryNotFound):
        pynvml.nvmlInit()


def test_a_symbol_the_driver_lacks_is_function_not_found_or_the_mismatch_error(
        fake: FakeNVML) -> None:
    fake.missing = {TEMPERATURE_CALL, "nvmlDeviceGetComputeRunningProcesses_v3"}
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        getattr(pynvml, TEMPERATURE_CALL)(handle, pynvml.NVML_TEMPERATURE_GPU)
    # The binding turns FunctionNotFound into an exception that is not an NVMLError.
    with pytest.raises(pynvml.NVMLLibraryMismatchError) as raised:
        pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    assert not isinstance(raised.value, pynvml.NVMLError)
    pynvml.nvmlShutdown()


def test_answers_come_back_through_the_bindings_structures(fake: FakeNVML) -> None:
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
    assert isinstance(memory, pynvml.c_nvmlMemory_v2_t)
    assert (memory.total, memory.version) == (40 * 2**30, pynvml.nvmlMemory_v2)
    assert pynvml.nvmlDeviceGetPciInfo(handle).busId == "00000000:3B:00.0"
    assert pynvml.nvmlDeviceGetMigMode(handle) == [1, 1]
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetUtilizationRates(handle)  # a MIG-enabled GPU has none
    instance = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, 0)
    assert pynvml.nvmlDeviceGetName(instance) == "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
    assert (pynvml.nvmlDeviceGetGpuInstanceId(instance),
            pynvml.nvmlDeviceGetComputeInstanceId(instance)) == (3, 1)
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, 1)
    (process,) = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    assert (process.pid, process.usedGpuMemory, process.gpuInstanceId,
            process.computeInstanceId) == (77, 1024, 3, 1)
    assert getattr(pynvml, TEMPERATURE_CALL)(handle, pynvml.NVML_TEMPERATURE_GPU) == 40
    pynvml.nvmlShutdown()


def test_not_available_usage_is_none_as_the_binding_reports_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNVML([FakeGpu(uuid="GPU-a", processes=[(5, None, NOT_MIG, NOT_MIG)])]).install(
        monkeypatch)
    pynvml.nvmlInit()
    (process,) = pynvml.nvmlDeviceGetComputeRunningProcesses(
        pynvml.nvmlDeviceGetHandleByIndex(0))
    pynvml.nvmlShutdown()
    assert process.usedGpuMemory is None


def test_a_string_longer_than_the_buffer_is_insufficient_size(
        monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNVML([FakeGpu(uuid="GPU-" + "a" * 200)]).install(monkeypatch)
    pynvml.nvmlInit()
    with pytest.raises(pynvml.NVMLError_InsufficientSize):
        pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(0))
    pynvml.nvmlShutdown()


def test_non_root_cannot_read_a_mig_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = FakeGpu(uuid="GPU-a", mig=[FakeMigInstance(1, 1, 8)])
    fake = FakeNVML([gpu], root=False).install(monkeypatch)
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    for call in (lambda: pynvml.nvmlDeviceGetMemoryInfo(handle),
                 lambda: pynvml.nvmlDeviceGetComputeRunningProcesses(handle),
                 lambda: pynvml.nvmlDeviceRegisterEvents(
                     handle, pynvml.nvmlEventTypeXidCriticalError, pynvml.nvmlEventSetCreate())):
        with pytest.raises(pynvml.NVMLError_NoPermission):
            call()
    instance = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, 0)
    assert pynvml.nvmlDeviceGetMemoryInfo(instance).total == 8
    pynvml.nvmlShutdown()
    assert fake.refcount == 0
