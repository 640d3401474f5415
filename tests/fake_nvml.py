"""A fake ``libnvidia-ml.so.1`` behind the real ``pynvml`` binding.

The binding's own Python functions run unchanged: they build the real ctypes structures,
look symbols up with ``_nvmlGetFunctionPointer``, check return codes and raise the real
``NVMLError_*`` classes (and ``NVMLLibraryMismatchError`` where the binding does). Only
the shared library is replaced: :class:`FakeNVML` installs itself as ``pynvml.nvmlLib``
(through the binding's own loader), and each C symbol is a Python function that receives
the ctypes arguments the binding passes and answers with an ``nvmlReturn_t`` code, as
the driver would. A symbol the fake does not define is missing from the library, so the
binding raises ``NVMLError_FunctionNotFound`` for it, exactly as with an old driver.

The fake is as strict as the driver where that matters: calls before ``nvmlInit`` fail
with UNINITIALIZED, handles of an earlier init are INVALID_ARGUMENT, strings that do not
fit the caller's buffer are INSUFFICIENT_SIZE, versioned structures must carry their
version, and process records are written in the driver's layout (24 bytes, or 32 for
the 535.43-535.86 drivers), whatever size the binding allocated.

Two opt-in options add symbols a default fake lacks: ``process_lists=True`` answers the
MPS client and graphics process lists (``FakeGpu.mps_processes``,
``FakeGpu.graphics_processes``), and ``v2_processes=True`` the ``_v2`` variants of every
process list that is there (24-byte records); with ``missing`` holding the ``_v3``
symbols, that is a driver older than 510.39.

    fake = FakeNVML([FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b")])
    fake.install(monkeypatch)
"""

from __future__ import annotations

import ctypes
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pynvml

NOT_MIG = 0xFFFFFFFF
NOT_AVAILABLE = 0xFFFFFFFFFFFFFFFF
_HANDLE_BASE = 0x100000
_EVENT_SET_BASE = 0x900000


class _DriverRecord24(ctypes.Structure):
    """``nvmlProcessInfo_t`` as drivers other than 535.43-535.86 write it (24 bytes)."""

    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong),
                ("gpuInstanceId", ctypes.c_uint), ("computeInstanceId", ctypes.c_uint)]


class _DriverRecord32(ctypes.Structure):
    """``nvmlProcessInfo_t`` of the 535.43-535.86 drivers (and of nvidia-ml-py 12.535.77)."""

    _fields_ = [*_DriverRecord24._fields_, ("usedGpuCcProtectedMemory", ctypes.c_ulonglong)]


PROCESS_RECORD = {24: _DriverRecord24, 32: _DriverRecord32}


@dataclass
class FakeMigInstance:
    """One MIG device (a compute instance inside a GPU instance)."""

    gpu_instance_id: int
    memory_used: int
    memory_total: int
    compute_instance_id: int = 0
    profile: str = "1g.10gb"
    memory_reserved: int = 0
    uuid: str = ""


@dataclass
class FakeGpu:
    """One device; values in NVML's own units (percent, MHz, mW, mJ, bytes, celsius)."""

    uuid: str
    name: str = "NVIDIA A100-SXM4-40GB"
    pci_bus_id: str = "00000000:3B:00.0"
    utilization_gpu: int = 0
    utilization_memory: int = 0
    memory_used: int = 0          # allocated (v2 "used")
    memory_reserved: int = 0      # held by the driver and firmware (v1 counts it as used)
    memory_total: int = 40 * 2**30
    temperature: int = 40
    power_mw: int = 60_000
    power_limit_mw: int = 400_000
    energy_mj: int = 0
    sm_clock_mhz: int = 1410
    memory_clock_mhz: int = 1215
    # (pid, used bytes or None when NVML cannot tell, gpu instance id, compute instance id)
    processes: list[tuple[int, int | None, int, int]] = field(default_factory=list)
    # MPS clients and graphics contexts, in the same form; answered only by a FakeNVML
    # made with process_lists=True (without it those symbols are missing, as before).
    mps_processes: list[tuple[int, int | None, int, int]] = field(default_factory=list)
    graphics_processes: list[tuple[int, int | None, int, int]] = field(default_factory=list)
    # None: MIG mode disabled. Otherwise one entry per slot; None marks an empty slot.
    mig: list[FakeMigInstance | None] | None = None
    max_mig_devices: int = 7
    empty_slot_error: type[pynvml.NVMLError] = pynvml.NVMLError_NotFound
    not_supported: set[str] = field(default_factory=set)  # C symbol names
    # C symbol name -> the NVMLError subclass it answers on this device
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


class _Return(Exception):
    """An nvmlReturn_t code to hand back to the binding."""

    def __init__(self, error: type[pynvml.NVMLError] | int) -> None:
        super().__init__(error)
        self.code = error if isinstance(error, int) else error().value


def _error(error: type[pynvml.NVMLError] | int) -> _Return:
    return _Return(error)


def _target(argument: object) -> object:
    """What a ``byref(x)`` argument points at."""
    return argument._obj  # type: ignore[attr-defined]


def _address(pointer: object) -> int:
    return ctypes.cast(pointer, ctypes.c_void_p).value or 0


def _set_pointer(pointer: object, address: int) -> None:
    ctypes.c_void_p.from_buffer(pointer).value = address


def _put_string(buffer: ctypes.Array, size: ctypes.c_uint, text: str) -> None:
    data = text.encode()
    if len(data) + 1 > size.value or len(data) + 1 > ctypes.sizeof(buffer):
        raise _error(pynvml.NVMLError_InsufficientSize)
    buffer.value = data


class FakeNVML:
    """Simulated devices behind the real binding; ``calls`` counts C calls by symbol."""

    def __init__(self, gpus: list[FakeGpu], *, library: bool = True, driver: bool = True,
                 driver_version: str = "550.54.15", root: bool = True,
                 process_record_size: int = 24, v2_processes: bool = False,
                 process_lists: bool = False) -> None:
        self.gpus = gpus
        self.library = library
        self.driver = driver
        self.driver_version = driver_version
        self.root = root
        self.process_record_size = process_record_size
        self.v2_processes = v2_processes
        self.process_lists = process_lists
        self.missing: set[str] = set()  # symbols this "driver" lacks
        self.fail: dict[str, type[pynvml.NVMLError]] = {}  # system-wide symbol failures
        self.wait_error: type[pynvml.NVMLError] | None = None  # next wait answers this
        self.process_names: dict[int, str] = {}
        self.calls: Counter[str] = Counter()
        self.hangs: dict[str, Hang] = {}
        self.refcount = 0  # NVML's own init reference count
        self.generation = 0  # bumped by every first init: handles of older ones are stale
        self.live_sets: set[int] = set()
        self._on_bus: list[FakeGpu] | None = None  # what plug() put there, not yet seen
        self._set_devices: dict[int, set[int]] = {}
        self._broken_sets: set[int] = set()
        self._next_set = _EVENT_SET_BASE
        self._events: dict[int, list[tuple[int, int]]] = {}
        self._lock = threading.Lock()

    # --- test controls --------------------------------------------------------------------

    def install(self, monkeypatch: object) -> FakeNVML:
        """Be the library the binding loads (``CDLL("libnvidia-ml.so.1")``)."""

        def load(name: str, *args: object, **kwargs: object) -> _Library:
            if name != "libnvidia-ml.so.1" or not self.library:
                raise OSError(f"{name}: cannot open shared object file")
            return _Library(self)

        monkeypatch.setattr(pynvml, "CDLL", load)  # type: ignore[attr-defined]
        monkeypatch.setattr(pynvml, "nvmlLib", None)  # type: ignore[attr-defined]
        monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})  # type: ignore
        monkeypatch.setattr(pynvml, "_nvmlLib_refcount", 0)  # type: ignore[attr-defined]
        return self

    def plug(self, gpus: list[FakeGpu]) -> None:
        """Put these devices on the bus instead of the current ones.

        NVML enumerates devices when its init count goes from 0 to 1, so the new devices
        are seen only from the next ``nvmlInit`` after every init was shut down. Until
        then a device taken off the bus answers GPU_IS_LOST, as a GPU that fell off it.
        """
        for gpu in self.gpus:
            if all(gpu is not kept for kept in gpus):
                gpu.lost = True
        self._on_bus = list(gpus)

    def hang(self, symbol: str) -> Hang:
        """Make every call of `symbol` block until the returned hang is released."""
        self.hangs[symbol] = Hang()
        return self.hangs[symbol]

    def release_all(self) -> None:
        for hang in self.hangs.values():
            hang.release()

    def emit_xid(self, index: int, xid: int) -> None:
        """An Xid error on a device, delivered to every working set it is registered in."""
        with self._lock:
            for event_set, devices in self._set_devices.items():
                if index in devices and event_set not in self._broken_sets:
                    self._events.setdefault(event_set, []).append((index, xid))

    def handle(self, index: int) -> int:
        return _HANDLE_BASE * (self.generation + 1) + index * 0x100

    def registered(self) -> set[int]:
        """Devices registered for Xid events in a working set."""
        with self._lock:
            return {index for event_set, devices in self._set_devices.items()
                    if event_set not in self._broken_sets for index in devices}

    # --- plumbing -------------------------------------------------------------------------

    def call(self, symbol: str, implementation: Callable[..., object], *args: object) -> int:
        self.calls[symbol] += 1
        hang = self.hangs.get(symbol)
        if hang is not None:
            hang.block()
        try:
            if symbol not in ("nvmlInitWithFlags", "nvmlInit_v2") and self.refcount == 0:
                raise _error(pynvml.NVMLError_Uninitialized)
            if symbol in self.fail:
                raise _error(self.fail[symbol])
            implementation(*args)
        except _Return as answer:
            return answer.code
        return pynvml.NVML_SUCCESS

    def _device(self, symbol: str, handle: object) -> tuple[int, FakeGpu]:
        index, slot = self._decode(handle)
        if slot is not None:
            raise _error(pynvml.NVMLError_InvalidArgument)
        gpu = self.gpus[index]
        self._check(symbol, gpu)
        return index, gpu

    def _any(self, symbol: str, handle: object) -> tuple[int, FakeGpu, FakeMigInstance | None]:
        """A device or a MIG device handle."""
        index, slot = self._decode(handle)
        gpu = self.gpus[index]
        self._check(symbol, gpu)
        if slot is None:
            return index, gpu, None
        instance = (gpu.mig or [])[slot] if gpu.mig and slot < len(gpu.mig) else None
        if instance is None:
            raise _error(pynvml.NVMLError_InvalidArgument)
        return index, gpu, instance

    def _decode(self, handle: object) -> tuple[int, int | None]:
        offset = _address(handle) - _HANDLE_BASE * (self.generation + 1)
        index, rest = divmod(offset, 0x100)
        if not 0 <= index < len(self.gpus) or offset < 0:
            raise _error(pynvml.NVMLError_InvalidArgument)
        return index, (rest - 1 if rest else None)

    @staticmethod
    def _check(symbol: str, gpu: FakeGpu) -> None:
        if gpu.lost:
            raise _error(pynvml.NVMLError_GpuIsLost)
        if symbol in gpu.not_supported:
            raise _error(pynvml.NVMLError_NotSupported)
        if symbol in gpu.fail:
            raise _error(gpu.fail[symbol])

    def _mig_parent_needs_root(self, gpu: FakeGpu) -> None:
        if gpu.mig is not None and not self.root:
            raise _error(pynvml.NVMLError_NoPermission)

    def opted_out(self, symbol: str) -> bool:
        """Whether `symbol` is one of the opt-in process-list symbols left out of this fake
        (a subclass that defines one itself always has it)."""
        if getattr(type(self), f"c_{symbol}", None) is not getattr(FakeNVML, f"c_{symbol}", None):
            return False
        if symbol.startswith(("nvmlDeviceGetMPSComputeRunningProcesses",
                              "nvmlDeviceGetGraphicsRunningProcesses")) \
                and not self.process_lists:
            return True
        return symbol.endswith("RunningProcesses_v2") and not self.v2_processes

    def _write_processes(self, symbol: str, handle: object, which: str, count: object,
                         records: object, record_size: int) -> None:
        gpu = self._device(symbol, handle)[1]
        self._mig_parent_needs_root(gpu)
        processes = getattr(gpu, which)
        wanted, room = len(processes), _target(count).value
        _target(count).value = wanted
        if wanted == 0:
            return
        if records is None or room < wanted:
            raise _error(pynvml.NVMLError_InsufficientSize)
        # The driver writes its own layout, whatever the binding's structure says.
        layout = PROCESS_RECORD[record_size]
        base = ctypes.addressof(records)  # type: ignore[arg-type]
        assert wanted * ctypes.sizeof(layout) <= ctypes.sizeof(records)  # type: ignore
        for i, (pid, used, gpu_instance, compute_instance) in enumerate(processes):
            record = layout(pid=pid, usedGpuMemory=NOT_AVAILABLE if used is None else used,
                            gpuInstanceId=gpu_instance, computeInstanceId=compute_instance)
            ctypes.memmove(base + i * ctypes.sizeof(layout), ctypes.addressof(record),
                           ctypes.sizeof(layout))

    # --- the C symbols (named c_<symbol>) ---------------------------------------------------

    def c_nvmlInitWithFlags(self, flags: int) -> None:
        if not self.driver:
            raise _error(pynvml.NVMLError_DriverNotLoaded)
        if self.refcount == 0:
            self.generation += 1
            if self._on_bus is not None:  # enumerate the bus again
                self.gpus, self._on_bus = self._on_bus, None
        self.refcount += 1

    def c_nvmlShutdown(self) -> None:
        self.refcount -= 1

    def c_nvmlSystemGetDriverVersion(self, buffer: ctypes.Array, size: ctypes.c_uint) -> None:
        _put_string(buffer, size, self.driver_version)

    def c_nvmlSystemGetProcessName(self, pid: ctypes.c_uint, buffer: ctypes.Array,
                                   size: ctypes.c_uint) -> None:
        if pid.value not in self.process_names:
            raise _error(pynvml.NVMLError_NotFound)  # not in this pid namespace
        _put_string(buffer, size, self.process_names[pid.value])

    def c_nvmlDeviceGetCount_v2(self, count: object) -> None:
        _target(count).value = len(self.gpus)

    def c_nvmlDeviceGetHandleByIndex_v2(self, index: ctypes.c_uint, handle: object) -> None:
        if not 0 <= index.value < len(self.gpus):
            raise _error(pynvml.NVMLError_InvalidArgument)
        self._check("nvmlDeviceGetHandleByIndex_v2", self.gpus[index.value])
        _set_pointer(_target(handle), self.handle(index.value))

    def c_nvmlDeviceGetUUID(self, handle: object, buffer: ctypes.Array,
                            size: ctypes.c_uint) -> None:
        _, gpu, instance = self._any("nvmlDeviceGetUUID", handle)
        _put_string(buffer, size, instance.uuid if instance else gpu.uuid)

    def c_nvmlDeviceGetName(self, handle: object, buffer: ctypes.Array,
                            size: ctypes.c_uint) -> None:
        _, gpu, instance = self._any("nvmlDeviceGetName", handle)
        _put_string(buffer, size, f"{gpu.name} MIG {instance.profile}" if instance else gpu.name)

    def c_nvmlDeviceGetPciInfo_v3(self, handle: object, info: object) -> None:
        gpu = self._device("nvmlDeviceGetPciInfo_v3", handle)[1]
        _target(info).busId = gpu.pci_bus_id.encode()

    def c_nvmlDeviceGetUtilizationRates(self, handle: object, utilization: object) -> None:
        _, gpu, instance = self._any("nvmlDeviceGetUtilizationRates", handle)
        if instance is not None or gpu.mig is not None:
            # Neither a MIG device nor a MIG-enabled GPU reports utilization.
            raise _error(pynvml.NVMLError_NotSupported)
        _target(utilization).gpu = gpu.utilization_gpu
        _target(utilization).memory = gpu.utilization_memory

    def _memory(self, symbol: str, handle: object) -> tuple[int, int, int]:
        _, gpu, instance = self._any(symbol, handle)
        if instance is None:
            self._mig_parent_needs_root(gpu)
            return gpu.memory_total, gpu.memory_reserved, gpu.memory_used
        return instance.memory_total, instance.memory_reserved, instance.memory_used

    def c_nvmlDeviceGetMemoryInfo(self, handle: object, memory: object) -> None:
        total, reserved, used = self._memory("nvmlDeviceGetMemoryInfo", handle)
        answer = _target(memory)
        answer.total, answer.used, answer.free = total, reserved + used, total - reserved - used

    def c_nvmlDeviceGetMemoryInfo_v2(self, handle: object, memory: object) -> None:
        answer = _target(memory)
        if answer.version != pynvml.nvmlMemory_v2:
            raise _error(pynvml.NVMLError_ArgumentVersionMismatch)
        total, reserved, used = self._memory("nvmlDeviceGetMemoryInfo_v2", handle)
        answer.total, answer.reserved, answer.used = total, reserved, used
        answer.free = total - reserved - used

    def c_nvmlDeviceGetTemperature(self, handle: object, sensor: object, value: object) -> None:
        gpu = self._device("nvmlDeviceGetTemperature", handle)[1]
        if sensor.value != pynvml.NVML_TEMPERATURE_GPU:  # type: ignore[attr-defined]
            raise _error(pynvml.NVMLError_InvalidArgument)
        _target(value).value = gpu.temperature

    def c_nvmlDeviceGetTemperatureV(self, handle: object, temperature: object) -> None:
        gpu = self._device("nvmlDeviceGetTemperatureV", handle)[1]
        answer = _target(temperature)
        if answer.version != getattr(pynvml, "nvmlTemperature_v1", None):
            raise _error(pynvml.NVMLError_ArgumentVersionMismatch)
        if answer.sensorType != pynvml.NVML_TEMPERATURE_GPU:
            raise _error(pynvml.NVMLError_InvalidArgument)
        answer.temperature = gpu.temperature

    def c_nvmlDeviceGetPowerUsage(self, handle: object, value: object) -> None:
        _target(value).value = self._device("nvmlDeviceGetPowerUsage", handle)[1].power_mw

    def c_nvmlDeviceGetEnforcedPowerLimit(self, handle: object, value: object) -> None:
        gpu = self._device("nvmlDeviceGetEnforcedPowerLimit", handle)[1]
        _target(value).value = gpu.power_limit_mw

    def c_nvmlDeviceGetTotalEnergyConsumption(self, handle: object, value: object) -> None:
        gpu = self._device("nvmlDeviceGetTotalEnergyConsumption", handle)[1]
        _target(value).value = gpu.energy_mj

    def c_nvmlDeviceGetClockInfo(self, handle: object, clock: object, value: object) -> None:
        gpu = self._device("nvmlDeviceGetClockInfo", handle)[1]
        clocks = {pynvml.NVML_CLOCK_SM: gpu.sm_clock_mhz,
                  pynvml.NVML_CLOCK_MEM: gpu.memory_clock_mhz}
        if clock.value not in clocks:  # type: ignore[attr-defined]
            raise _error(pynvml.NVMLError_InvalidArgument)
        _target(value).value = clocks[clock.value]  # type: ignore[attr-defined]

    def c_nvmlDeviceGetMigMode(self, handle: object, current: object, pending: object) -> None:
        gpu = self._device("nvmlDeviceGetMigMode", handle)[1]
        mode = pynvml.NVML_DEVICE_MIG_DISABLE if gpu.mig is None else pynvml.NVML_DEVICE_MIG_ENABLE
        _target(current).value = _target(pending).value = mode

    def c_nvmlDeviceGetMaxMigDeviceCount(self, handle: object, count: object) -> None:
        gpu = self._device("nvmlDeviceGetMaxMigDeviceCount", handle)[1]
        if gpu.mig is None:
            raise _error(pynvml.NVMLError_NotSupported)
        _target(count).value = gpu.max_mig_devices

    def c_nvmlDeviceGetMigDeviceHandleByIndex(self, handle: object, slot: ctypes.c_uint,
                                              mig_handle: object) -> None:
        index, gpu = self._device("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        if gpu.mig is None or not 0 <= slot.value < gpu.max_mig_devices:
            raise _error(pynvml.NVMLError_InvalidArgument)
        if slot.value >= len(gpu.mig) or gpu.mig[slot.value] is None:
            raise _error(gpu.empty_slot_error)
        _set_pointer(_target(mig_handle), self.handle(index) + slot.value + 1)

    def c_nvmlDeviceGetGpuInstanceId(self, handle: object, value: object) -> None:
        instance = self._any("nvmlDeviceGetGpuInstanceId", handle)[2]
        if instance is None:
            raise _error(pynvml.NVMLError_NotSupported)
        _target(value).value = instance.gpu_instance_id

    def c_nvmlDeviceGetComputeInstanceId(self, handle: object, value: object) -> None:
        instance = self._any("nvmlDeviceGetComputeInstanceId", handle)[2]
        if instance is None:
            raise _error(pynvml.NVMLError_NotSupported)
        _target(value).value = instance.compute_instance_id

    def c_nvmlDeviceGetComputeRunningProcesses_v3(self, handle: object, count: object,
                                                  records: object) -> None:
        self._write_processes("nvmlDeviceGetComputeRunningProcesses_v3", handle, "processes",
                              count, records, self.process_record_size)

    def c_nvmlDeviceGetComputeRunningProcesses_v2(self, handle: object, count: object,
                                                  records: object) -> None:
        self._write_processes("nvmlDeviceGetComputeRunningProcesses_v2", handle, "processes",
                              count, records, 24)

    def c_nvmlDeviceGetMPSComputeRunningProcesses_v3(self, handle: object, count: object,
                                                     records: object) -> None:
        self._write_processes("nvmlDeviceGetMPSComputeRunningProcesses_v3", handle,
                              "mps_processes", count, records, self.process_record_size)

    def c_nvmlDeviceGetMPSComputeRunningProcesses_v2(self, handle: object, count: object,
                                                     records: object) -> None:
        self._write_processes("nvmlDeviceGetMPSComputeRunningProcesses_v2", handle,
                              "mps_processes", count, records, 24)

    def c_nvmlDeviceGetGraphicsRunningProcesses_v3(self, handle: object, count: object,
                                                   records: object) -> None:
        self._write_processes("nvmlDeviceGetGraphicsRunningProcesses_v3", handle,
                              "graphics_processes", count, records, self.process_record_size)

    def c_nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle: object, count: object,
                                                   records: object) -> None:
        self._write_processes("nvmlDeviceGetGraphicsRunningProcesses_v2", handle,
                              "graphics_processes", count, records, 24)

    def c_nvmlEventSetCreate(self, event_set: object) -> None:
        with self._lock:
            self._next_set += 0x10
            address = self._next_set
            self.live_sets.add(address)
            self._set_devices[address] = set()
        _set_pointer(_target(event_set), address)

    def c_nvmlEventSetFree(self, event_set: object) -> None:
        address = _address(event_set)
        with self._lock:
            if address not in self.live_sets:
                raise _error(pynvml.NVMLError_InvalidArgument)
            self.live_sets.discard(address)
            self._set_devices.pop(address, None)
            self._events.pop(address, None)
            self._broken_sets.discard(address)

    def c_nvmlDeviceRegisterEvents(self, handle: object, event_types: ctypes.c_ulonglong,
                                   event_set: object) -> None:
        address = _address(event_set)
        if address not in self.live_sets:
            raise _error(pynvml.NVMLError_InvalidArgument)
        try:
            index, gpu = self._device("nvmlDeviceRegisterEvents", handle)
            self._mig_parent_needs_root(gpu)
        except _Return as answer:
            if answer.code == pynvml.NVML_ERROR_UNKNOWN:
                self._broken_sets.add(address)  # undefined state: nothing arrives any more
            raise
        if address in self._broken_sets:
            raise _error(pynvml.NVMLError_Unknown)
        if event_types.value & pynvml.nvmlEventTypeXidCriticalError:
            with self._lock:
                self._set_devices[address].add(index)

    def c_nvmlEventSetWait_v2(self, event_set: object, data: object,
                              timeout_ms: ctypes.c_uint) -> None:
        address = _address(event_set)
        with self._lock:
            if address not in self.live_sets:
                raise _error(pynvml.NVMLError_InvalidArgument)
            if self.wait_error is not None:
                error, self.wait_error = self.wait_error, None
                self._broken_sets.add(address)
                raise _error(error)
            if address in self._broken_sets:
                raise _error(pynvml.NVMLError_Unknown)
            pending = self._events.get(address)
            if not pending:
                raise _error(pynvml.NVMLError_Timeout)
            index, xid = pending.pop(0)
        answer = _target(data)
        _set_pointer(answer.device, self.handle(index))
        answer.eventType = pynvml.nvmlEventTypeXidCriticalError
        answer.eventData = xid
        answer.gpuInstanceId = answer.computeInstanceId = NOT_MIG


class _Library:
    """What ``CDLL("libnvidia-ml.so.1")`` returns: one attribute per exported symbol."""

    def __init__(self, fake: FakeNVML) -> None:
        self._fake = fake

    def __getattr__(self, symbol: str) -> Callable[..., int]:
        implementation = getattr(self._fake, f"c_{symbol}", None)
        if implementation is None or symbol in self._fake.missing \
                or self._fake.opted_out(symbol):
            raise AttributeError(symbol)  # the binding turns this into FunctionNotFound
        fake = self._fake

        def function(*args: object) -> int:
            return fake.call(symbol, implementation, *args)

        return function


SYMBOLS = tuple(name[2:] for name in vars(FakeNVML) if name.startswith("c_nvml"))
# Symbols a driver answers that the bindings from the dependency floor (12.550.52) up may not
# call: nvmlDeviceGetTemperatureV came with nvidia-ml-py 12.570.
NEWER_THAN_FLOOR = frozenset({"nvmlDeviceGetTemperatureV"})
# The temperature call the installed binding makes, the one the collector reads first.
TEMPERATURE_CALL = "nvmlDeviceGetTemperatureV" if hasattr(pynvml, "nvmlDeviceGetTemperatureV") \
    else "nvmlDeviceGetTemperature"
