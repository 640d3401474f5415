"""A fake NVML at the lowest layer: the ``pynvml`` module's own functions, patched.

The collector still imports the real ``pynvml`` and catches its real error classes; only
the calls that would reach ``libnvidia-ml.so`` are replaced. Answers are the binding's
own ctypes structures, handles are real ``c_nvmlDevice_t`` pointers, and a call the fake
does not implement still goes to the real binding (and fails: no library here), so a
collector calling something unexpected shows up as a test failure, not a silent pass.

    fake = FakeNVML([FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b")])
    fake.install(monkeypatch)
"""

from __future__ import annotations

import ctypes
import threading
from collections import Counter
from dataclasses import dataclass, field

import pynvml

_DEVICE_BASE = 0x10000
_MIG_BASE = 0x80000
_EVENT_SET_ADDRESS = 0xE0000
NOT_MIG = 0xFFFFFFFF


def _pointer(address: int, kind: type) -> object:
    return ctypes.cast(ctypes.c_void_p(address), kind)


def _address(handle: object) -> int:
    return ctypes.cast(handle, ctypes.c_void_p).value or 0


@dataclass
class FakeMigInstance:
    gpu_instance_id: int
    memory_used: int
    memory_total: int


@dataclass
class FakeGpu:
    """One device; values in NVML's own units (percent, MHz, mW, mJ, bytes, celsius)."""

    uuid: str
    name: str = "NVIDIA A100-SXM4-40GB"
    utilization_gpu: int = 0
    utilization_memory: int = 0
    memory_used: int = 0
    memory_total: int = 40 * 2**30
    temperature: int = 40
    power_mw: int = 60_000
    power_limit_mw: int = 400_000
    energy_mj: int = 0
    sm_clock_mhz: int = 1410
    memory_clock_mhz: int = 1215
    # (pid, used bytes or None when NVML cannot tell, gpu instance id or NOT_MIG)
    processes: list[tuple[int, int | None, int]] = field(default_factory=list)
    mig: list[FakeMigInstance] | None = None  # None: MIG mode disabled
    max_mig_devices: int = 7
    not_supported: set[str] = field(default_factory=set)  # pynvml function names
    # pynvml function name -> the NVMLError subclass it raises on this device
    fail: dict[str, type[pynvml.NVMLError]] = field(default_factory=dict)
    lost: bool = False


class Hang:
    """A call that blocks until released (bounded, so a forgotten release cannot wedge tests)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def block(self) -> None:
        self.entered.set()
        self._released.wait(timeout=30)


class FakeNVML:
    """Simulated devices behind the real ``pynvml`` API; ``calls`` counts every call by name."""

    def __init__(self, gpus: list[FakeGpu], *, library: bool = True, driver: bool = True,
                 driver_version: str = "550.54.15") -> None:
        self.gpus = gpus
        self.library = library
        self.driver = driver
        self.driver_version = driver_version
        self.calls: Counter[str] = Counter()
        self.hangs: dict[str, Hang] = {}
        self.initialized = False
        self.event_sets = 0
        self._registered: set[int] = set()
        self._events: list[tuple[int, int]] = []  # (device index, xid)
        self._lock = threading.Lock()

    # --- test controls --------------------------------------------------------------------

    def hang(self, function: str) -> Hang:
        """Make every call of `function` block until the returned hang is released."""
        self.hangs[function] = Hang()
        return self.hangs[function]

    def release_all(self) -> None:
        for hang in self.hangs.values():
            hang.release()

    def emit_xid(self, index: int, xid: int) -> None:
        """An Xid error on a device; delivered only if the device was registered (like NVML)."""
        with self._lock:
            if index in self._registered:
                self._events.append((index, xid))

    def install(self, monkeypatch: object) -> FakeNVML:
        for name in _PATCHED:
            monkeypatch.setattr(pynvml, name, getattr(self, name))
        return self

    # --- plumbing -------------------------------------------------------------------------

    def _enter(self, function: str) -> None:
        self.calls[function] += 1
        hang = self.hangs.get(function)
        if hang is not None:
            hang.block()
        if function != "nvmlInit" and not self.initialized:
            raise pynvml.NVMLError_Uninitialized()

    def _device(self, function: str, handle: object) -> tuple[int, FakeGpu]:
        self._enter(function)
        index = (_address(handle) - _DEVICE_BASE) // 0x10
        if not 0 <= index < len(self.gpus) or _address(handle) >= _MIG_BASE:
            raise pynvml.NVMLError_InvalidArgument()
        gpu = self.gpus[index]
        if gpu.lost:
            raise pynvml.NVMLError_GpuIsLost()
        if function in gpu.not_supported:
            raise pynvml.NVMLError_NotSupported()
        if function in gpu.fail:
            raise gpu.fail[function]()
        return index, gpu

    def _mig(self, function: str, handle: object) -> FakeMigInstance:
        self._enter(function)
        parent, slot = divmod(_address(handle) - _MIG_BASE, 0x100)
        gpu = self.gpus[parent]
        if gpu.lost:
            raise pynvml.NVMLError_GpuIsLost()
        return (gpu.mig or [])[slot]

    @staticmethod
    def _is_mig(handle: object) -> bool:
        return _address(handle) >= _MIG_BASE

    # --- the pynvml functions -------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        if not self.library:
            raise pynvml.NVMLError_LibraryNotFound()
        if not self.driver:
            raise pynvml.NVMLError_DriverNotLoaded()
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError_InvalidArgument()
        if self.gpus[index].lost:
            raise pynvml.NVMLError_GpuIsLost()
        return _pointer(_DEVICE_BASE + index * 0x10, pynvml.c_nvmlDevice_t)

    def nvmlDeviceGetUUID(self, handle: object) -> str:
        return self._device("nvmlDeviceGetUUID", handle)[1].uuid

    def nvmlDeviceGetName(self, handle: object) -> str:
        return self._device("nvmlDeviceGetName", handle)[1].name

    def nvmlDeviceGetUtilizationRates(self, handle: object) -> object:
        if self._is_mig(handle):
            self._mig("nvmlDeviceGetUtilizationRates", handle)
            raise pynvml.NVMLError_NotSupported()  # as on real MIG instances
        gpu = self._device("nvmlDeviceGetUtilizationRates", handle)[1]
        return pynvml.c_nvmlUtilization_t(gpu=gpu.utilization_gpu, memory=gpu.utilization_memory)

    def nvmlDeviceGetMemoryInfo(self, handle: object, version: object = None) -> object:
        if self._is_mig(handle):
            mig = self._mig("nvmlDeviceGetMemoryInfo", handle)
            used, total = mig.memory_used, mig.memory_total
        else:
            gpu = self._device("nvmlDeviceGetMemoryInfo", handle)[1]
            used, total = gpu.memory_used, gpu.memory_total
        return pynvml.c_nvmlMemory_t(total=total, free=total - used, used=used)

    def nvmlDeviceGetTemperature(self, handle: object, sensor: int) -> int:
        gpu = self._device("nvmlDeviceGetTemperature", handle)[1]
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError_InvalidArgument()
        return gpu.temperature

    def nvmlDeviceGetPowerUsage(self, handle: object) -> int:
        return self._device("nvmlDeviceGetPowerUsage", handle)[1].power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: object) -> int:
        return self._device("nvmlDeviceGetEnforcedPowerLimit", handle)[1].power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int:
        return self._device("nvmlDeviceGetTotalEnergyConsumption", handle)[1].energy_mj

    def nvmlDeviceGetClockInfo(self, handle: object, clock_type: int) -> int:
        gpu = self._device("nvmlDeviceGetClockInfo", handle)[1]
        clocks = {pynvml.NVML_CLOCK_SM: gpu.sm_clock_mhz, pynvml.NVML_CLOCK_MEM:
                  gpu.memory_clock_mhz}
        if clock_type not in clocks:
            raise pynvml.NVMLError_InvalidArgument()
        return clocks[clock_type]

    def nvmlDeviceGetMigMode(self, handle: object) -> list[int]:
        gpu = self._device("nvmlDeviceGetMigMode", handle)[1]
        mode = pynvml.NVML_DEVICE_MIG_DISABLE if gpu.mig is None else pynvml.NVML_DEVICE_MIG_ENABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: object) -> int:
        return self._device("nvmlDeviceGetMaxMigDeviceCount", handle)[1].max_mig_devices

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: object, slot: int) -> object:
        index, gpu = self._device("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        if gpu.mig is None:
            raise pynvml.NVMLError_InvalidArgument()
        if not 0 <= slot < len(gpu.mig):
            raise pynvml.NVMLError_NotFound()
        return _pointer(_MIG_BASE + index * 0x100 + slot, pynvml.c_nvmlDevice_t)

    def nvmlDeviceGetGpuInstanceId(self, handle: object) -> int:
        if not self._is_mig(handle):
            self._device("nvmlDeviceGetGpuInstanceId", handle)
            raise pynvml.NVMLError_InvalidArgument()
        return self._mig("nvmlDeviceGetGpuInstanceId", handle).gpu_instance_id

    def nvmlDeviceGetComputeRunningProcesses(self, handle: object) -> list[object]:
        gpu = self._device("nvmlDeviceGetComputeRunningProcesses", handle)[1]
        processes = []
        for pid, used, gpu_instance in gpu.processes:
            raw = pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value if used is None else used
            record = pynvml.nvmlStructToFriendlyObject(pynvml.c_nvmlProcessInfo_v3_t(
                pid=pid, usedGpuMemory=raw, gpuInstanceId=gpu_instance,
                computeInstanceId=gpu_instance))
            if record.usedGpuMemory == pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value:
                record.usedGpuMemory = None  # what the binding does for this marker
            processes.append(record)
        return processes

    def nvmlEventSetCreate(self) -> object:
        self._enter("nvmlEventSetCreate")
        self.event_sets += 1
        return _pointer(_EVENT_SET_ADDRESS, pynvml.c_nvmlEventSet_t)

    def nvmlEventSetFree(self, event_set: object) -> None:
        self._enter("nvmlEventSetFree")
        self.event_sets -= 1

    def nvmlDeviceRegisterEvents(self, handle: object, event_types: int,
                                 event_set: object) -> None:
        index, _ = self._device("nvmlDeviceRegisterEvents", handle)
        if _address(event_set) != _EVENT_SET_ADDRESS:
            raise pynvml.NVMLError_InvalidArgument()
        if event_types & pynvml.nvmlEventTypeXidCriticalError:
            with self._lock:
                self._registered.add(index)

    def nvmlEventSetWait(self, event_set: object, timeout_ms: int) -> object:
        self._enter("nvmlEventSetWait")
        with self._lock:
            if not self._events:
                raise pynvml.NVMLError_Timeout()
            index, xid = self._events.pop(0)
        return pynvml.c_nvmlEventData_t(
            device=_pointer(_DEVICE_BASE + index * 0x10, pynvml.c_nvmlDevice_t),
            eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=xid,
            gpuInstanceId=NOT_MIG, computeInstanceId=NOT_MIG)


_PATCHED = [name for name in vars(FakeNVML) if name.startswith("nvml")]
