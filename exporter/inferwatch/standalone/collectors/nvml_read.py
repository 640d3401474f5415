"""Reading one GPU through the ``pynvml`` binding, with every NVML answer sorted.

An NVML call can answer in four ways, and each goes its own way:

- a value: converted to the catalogue's base units;
- the field does not exist here (``NotSupported``, ``NoPermission``, or a driver or
  binding without the function): the field is left out and marked unavailable;
- the device is gone (``GpuIsLost``, ``ResetRequired``): :class:`DeviceLost`, and the
  device is reported down;
- anything else (``Unknown``, ``Timeout``, a binding/driver mismatch, ...): that field is
  left out and the failure is counted by field and reason; the device stays up.

Binding functions are looked up by name, so a binding that dropped one (deprecated
calls go away) costs that field, never the collector.

>>> reason(ValueError("x"))
'other'
"""

from __future__ import annotations

import ctypes
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from inferwatch.standalone.collectors.process_start import PID_MAX, process_started

# What a device answers for a field it does not offer, named for the log and the docs.
UNAVAILABLE = {"NVMLError_NotSupported": "not supported",
               "NVMLError_NoPermission": "no permission",
               "NVMLError_FunctionNotFound": "not in this driver"}
# The only answers that mean the device itself is gone.
GONE = ("NVMLError_GpuIsLost", "NVMLError_ResetRequired")
# NVML's "not a MIG process" marker in process records.
NOT_MIG = 0xFFFFFFFF
# MIG has at most 8 GPU instances and 8 compute instances per GPU.
MAX_MIG_ID = 64
# The reason counted for a read skipped because its device used up its time this scrape.
OVER_BUDGET = "deadline_exceeded"
# Fields whose availability is exported (inferwatch_gpu_field_available).
FIELDS = ("utilization", "memory", "temperature", "power", "power_limit", "energy",
          "clocks", "processes", "xid_events")

Sample = tuple[str, dict[str, str], float]
# pid -> (the process's start time, None when it cannot be seen; its name): a pid is
# reused, so the start time tells the process the name was read for from its successor.
ProcessNames = dict[int, tuple[float | None, str]]


class DeviceLost(Exception):
    """The device answered GPU_IS_LOST or RESET_REQUIRED: it is down until it answers again."""


class Missing(Exception):
    """The binding or the driver lacks this function: the caller has an older one to try."""


def reason(exc: BaseException) -> str:
    """A short, bounded label value for a failure: the NVML error name in snake case.

    >>> import pynvml
    >>> reason(pynvml.NVMLError_Unknown()), reason(pynvml.NVMLLibraryMismatchError("x"))
    ('unknown', 'library_mismatch')
    """
    name = type(exc).__name__
    if name == "NVMLLibraryMismatchError":
        return "library_mismatch"
    if not name.startswith("NVMLError_"):
        return "other"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name.removeprefix("NVMLError_")).lower()


def text(value: str | bytes) -> str:
    """NVML strings as text (older bindings return bytes).

    >>> text(b"NVIDIA L4"), text("550.54.15")
    ('NVIDIA L4', '550.54.15')
    """
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def undecoded(exc: UnicodeDecodeError) -> str:
    """The string the binding failed to decode, undecodable bytes replaced.

    >>> try:
    ...     b"GPU-\\xff".decode()
    ... except UnicodeDecodeError as exc:
    ...     undecoded(exc) == "GPU-\\ufffd"
    True
    """
    return text(bytes(exc.object))


def raw_text(structure: ctypes.Structure, name: str) -> str:
    """A string field of a binding structure, undecodable bytes replaced.

    The binding's structures decode their byte fields strictly on every attribute read,
    so one garbled byte would raise wherever the field is read.

    >>> import pynvml
    >>> info = pynvml.nvmlPciInfo_t()
    >>> ctypes.Structure.__setattr__(info, "busId", b"0000:AF:00.\\xff")
    >>> raw_text(info, "busId") == "0000:AF:00.\\ufffd"
    True
    """
    return text(ctypes.Structure.__getattribute__(structure, name))


def address(handle: object) -> int | None:
    """The pointer value of an NVML handle: how an event names its device.

    >>> address(None) is None
    True
    """
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return None


@dataclass
class Reading:
    """What one scrape learned about one device: samples, unavailable fields, failures.

    >>> import pynvml
    >>> reading = Reading(pynvml, {"gpu": "0"})  # no nvmlInit: every call is refused
    >>> reading.call("power", "nvmlDeviceGetPowerUsage", None), reading.errors
    (None, [('power', 'uninitialized')])
    >>> reading.call("fans", "nvmlDeviceGetNoSuchThing", None), reading.available
    (None, {'fans': 'not in this nvidia-ml-py'})
    """

    nvml: ModuleType
    labels: dict[str, str]
    samples: list[Sample] = field(default_factory=list)
    available: dict[str, str] = field(default_factory=dict)  # field -> "" or why not
    errors: list[tuple[str, str]] = field(default_factory=list)  # (field, reason)
    # One slow GPU must not cost the others their series: past this clock() reading, the
    # device's remaining reads are skipped and counted instead of made.
    deadline: float = math.inf
    clock: Callable[[], float] | None = None

    def aside(self, labels: dict[str, str]) -> Reading:
        """An empty reading of the same device under the same deadline."""
        return Reading(self.nvml, labels, deadline=self.deadline, clock=self.clock)

    def over_budget(self, name: str) -> bool:
        """True, and the skipped read counted, when the device's time is used up."""
        if self.clock is None or self.clock() < self.deadline:
            return False
        self.errors.append((name, OVER_BUDGET))
        return True

    def call(self, name: str, function: str, *args: object, fallback: bool = False) -> Any:
        """``pynvml.<function>(*args)``, or None when the field cannot be read this time.

        With ``fallback``, a function the binding or driver lacks raises :class:`Missing`
        instead, so that the caller can try the older call.
        """
        if self.over_budget(name):
            return None
        call: Callable[..., Any] | None = getattr(self.nvml, function, None)
        if call is None:
            if fallback:
                raise Missing(function)
            self.unavailable(name, "not in this nvidia-ml-py")
            return None
        try:
            value = call(*args)
        except self.nvml.NVMLError as exc:
            kind = type(exc).__name__
            if kind in GONE:
                raise DeviceLost(f"{function}: {exc}") from exc
            if fallback and kind == "NVMLError_FunctionNotFound":
                raise Missing(function) from exc
            if kind in UNAVAILABLE:
                self.unavailable(name, UNAVAILABLE[kind])
            else:
                self.errors.append((name, reason(exc)))
            return None
        except getattr(self.nvml, "NVMLLibraryMismatchError", ()) as exc:
            self.errors.append((name, reason(exc)))
            return None
        except (TypeError, AttributeError, ctypes.ArgumentError) as exc:
            # A binding whose Python wrapper does not match what it calls (a changed
            # signature, a helper or constant it lacks): that field is lost, never the
            # whole collector and every other GPU's series with it.
            self.errors.append((name, reason(exc)))
            return None
        except UnicodeDecodeError as exc:
            # The binding decodes C strings strictly. A garbled byte in a name or a driver
            # version is no failed read: the string, that byte replaced, is still the value.
            value = undecoded(exc)
        self.available[name] = ""  # one answer is enough (the sm clock but not memory's)
        return value

    def unavailable(self, name: str, why: str) -> None:
        if self.available.get(name) != "":
            self.available[name] = why

    def add(self, metric: str, value: float, **extra: str) -> None:
        self.samples.append((metric, {**self.labels, **extra} if extra else self.labels, value))


def read_device(nvml: ModuleType, handle: object, labels: dict[str, str], *,
                process_memory: bool, process_names: ProcessNames,
                deadline: float = math.inf, clock: Callable[[], float] | None = None
                ) -> Reading:
    """Every field of one device; raises :class:`DeviceLost` when it is gone. Reads due
    once ``clock()`` has reached ``deadline`` are skipped and counted as errors.

    >>> import pynvml
    >>> reading = read_device(pynvml, None, {"gpu": "0"}, process_memory=False,
    ...                       process_names={})  # no nvmlInit: each field fails alone
    >>> sorted({field for field, _ in reading.errors})[:3], reading.samples
    (['clocks', 'energy', 'memory'], [])
    """
    reading = Reading(nvml, labels, deadline=deadline, clock=clock)
    mig_mode = reading.call("mig_mode", "nvmlDeviceGetMigMode", handle)
    mig_enabled = bool(mig_mode) and mig_mode[0] == nvml.NVML_DEVICE_MIG_ENABLE
    utilization = reading.call("utilization", "nvmlDeviceGetUtilizationRates", handle)
    if utilization is not None:
        if 0 <= utilization.gpu <= 100 and 0 <= utilization.memory <= 100:
            reading.add("inferwatch_gpu_utilization_ratio", utilization.gpu / 100)
            reading.add("inferwatch_gpu_memory_utilization_ratio", utilization.memory / 100)
        else:  # a percentage past 100: a driver's misreport, not a ratio to alert on
            reading.errors.append(("utilization", "implausible_value"))
    total = _read_memory(reading, handle, reading.labels)
    temperature = _read_temperature(reading, handle)
    if temperature is not None:
        reading.add("inferwatch_gpu_temperature_celsius", temperature)
    for name, metric, function in (
        ("power", "inferwatch_gpu_power_watts", "nvmlDeviceGetPowerUsage"),
        ("power_limit", "inferwatch_gpu_power_limit_watts", "nvmlDeviceGetEnforcedPowerLimit"),
        ("energy", "inferwatch_gpu_energy_joules_total", "nvmlDeviceGetTotalEnergyConsumption"),
    ):
        value = reading.call(name, function, handle)
        if value is not None:
            # Milliwatts, millijoules: a division rounds once, to the float nearest the
            # exact decimal; `* 1e-3` rounds 1e-3 first and is one ulp off for ~13%.
            reading.add(metric, value / 1000)
    for clock, clock_type in (("sm", "NVML_CLOCK_SM"), ("memory", "NVML_CLOCK_MEM")):
        megahertz = reading.call("clocks", "nvmlDeviceGetClockInfo", handle,
                                 getattr(nvml, clock_type))
        if megahertz is not None:
            reading.add("inferwatch_gpu_clock_hertz", megahertz * 1e6, clock=clock)
    if mig_enabled:
        _read_mig_devices(reading, handle)
    if process_memory:
        _read_processes(reading, handle, mig_enabled, total, process_names)
    return reading


# What drivers answer for a v2 memory struct they cannot fill (WSL answers Unknown), while
# the v1 call still works there.
V2_REFUSALS = ("argument_version_mismatch", "unknown")


def _read_memory(reading: Reading, handle: object, labels: dict[str, str]) -> int | None:
    """Used (allocated, as nvidia-smi shows it), reserved and total; returns the total.

    The v2 call splits out what the driver reserves; the v1 call counts it as used, so
    it is the fallback only where v2 is missing (drivers before 510, older bindings).
    """
    version = getattr(reading.nvml, "nvmlMemory_v2", None)
    memory = None
    if version is not None:
        # Asked aside: a driver that refuses only the v2 struct (not supported, or another
        # struct version) still answers v1, and its refusal is no verdict on "memory".
        v2 = reading.aside(reading.labels)
        try:
            memory = v2.call("memory", "nvmlDeviceGetMemoryInfo", handle, version,
                             fallback=True)
        except Missing:
            pass
        else:
            refused = (v2.available.get("memory") == UNAVAILABLE["NVMLError_NotSupported"]
                       or (len(v2.errors) == 1 and v2.errors[0][1] in V2_REFUSALS))
            if memory is not None or not refused:
                reading.available.update(v2.available)
                reading.errors += v2.errors
                if memory is None:
                    return None
    if memory is None:
        memory = reading.call("memory", "nvmlDeviceGetMemoryInfo", handle)
    if memory is None:
        return None
    if not 0 <= memory.used <= memory.total or not 0 <= getattr(memory, "reserved", 0) \
            <= memory.total:
        # More used than installed: a misreading driver (or an underflowed v1 "used"),
        # not headroom below zero to alert on.
        reading.errors.append(("memory", "implausible_value"))
        return None
    reading.samples.append(("inferwatch_gpu_memory_used_bytes", labels, memory.used))
    reading.samples.append(("inferwatch_gpu_memory_total_bytes", labels, memory.total))
    if hasattr(memory, "reserved"):
        reading.samples.append(("inferwatch_gpu_memory_reserved_bytes", labels, memory.reserved))
    return int(memory.total)


def _read_temperature(reading: Reading, handle: object) -> int | None:
    """``nvmlDeviceGetTemperatureV`` where the binding and driver have it, else the old call.

    ``nvmlDeviceGetTemperature`` is deprecated in NVML 13 and will leave the binding.
    """
    sensor = reading.nvml.NVML_TEMPERATURE_GPU
    try:
        celsius = reading.call("temperature", "nvmlDeviceGetTemperatureV", handle, sensor,
                               fallback=True)
    except Missing:
        celsius = reading.call("temperature", "nvmlDeviceGetTemperature", handle, sensor)
    if celsius is not None and celsius >= 2**31:
        # The old call's value is read as unsigned: -5 C arrives as 2**32 - 5.
        celsius -= 2**32
    return celsius


def _read_mig_devices(reading: Reading, handle: object) -> None:
    """Memory of each MIG device, labelled by GPU instance and compute instance.

    A MIG device handle is a compute instance: two in one GPU instance would share the
    ``gpu_instance`` label, so ``compute_instance`` tells them apart. Empty slots answer
    NotFound, InvalidArgument or NotSupported depending on the driver (as go-nvlib skips).
    """
    nvml = reading.nvml
    slots = reading.call("mig_devices", "nvmlDeviceGetMaxMigDeviceCount", handle) or 0
    if not 0 <= slots <= MAX_MIG_ID:
        # A misread count (an unsigned -1, say) would spend the device's whole budget on
        # calls for slots no GPU has.
        reading.errors.append(("mig_devices", "implausible_value"))
        slots = MAX_MIG_ID if slots > 0 else 0
    by_index: Callable[..., Any] | None = getattr(
        nvml, "nvmlDeviceGetMigDeviceHandleByIndex", None)
    if by_index is None:
        # A binding without the call costs the MIG devices' series, not the collector.
        reading.unavailable("mig_devices", "not in this nvidia-ml-py")
        return
    empty = tuple(getattr(nvml, name) for name in (
        "NVMLError_NotFound", "NVMLError_InvalidArgument", "NVMLError_NotSupported"))
    for slot in range(slots):
        if reading.over_budget("mig_devices"):
            break
        try:
            instance = by_index(handle, slot)
        except empty:
            continue
        except nvml.NVMLError as exc:
            if type(exc).__name__ in GONE:
                raise DeviceLost(f"nvmlDeviceGetMigDeviceHandleByIndex: {exc}") from exc
            reading.errors.append(("mig_devices", reason(exc)))
            if type(exc).__name__ == "NVMLError_FunctionNotFound":
                break  # a driver without the call: every slot would answer the same
            continue
        except (TypeError, AttributeError, ctypes.ArgumentError) as exc:
            # A binding whose wrapper does not match the library, as in Reading.call.
            reading.errors.append(("mig_devices", reason(exc)))
            break
        probe = reading.aside({})
        gpu_instance = probe.call("mig_devices", "nvmlDeviceGetGpuInstanceId", instance)
        compute_instance = probe.call("mig_devices", "nvmlDeviceGetComputeInstanceId", instance)
        uuid = probe.call("mig_devices", "nvmlDeviceGetUUID", instance)
        name = probe.call("mig_devices", "nvmlDeviceGetName", instance)
        reading.errors += probe.errors
        if gpu_instance is None or compute_instance is None:
            continue  # without its ids the instance cannot have series of its own
        name = text(name or "")
        labels = {**reading.labels, "gpu_instance": str(gpu_instance),
                  "compute_instance": str(compute_instance), "mig_uuid": text(uuid or ""),
                  "mig_profile": name.rpartition(" MIG ")[2] if " MIG " in name else ""}
        instance_reading = reading.aside(labels)
        _read_memory(instance_reading, instance, labels)
        reading.samples += instance_reading.samples
        reading.errors += [("mig_memory", why) for _, why in instance_reading.errors]


# Where NVML lists the processes holding memory on a device: CUDA contexts, MPS clients
# (absent from the compute list under MPS) and graphics contexts. The first decides the
# field's availability; the others are optional, and a driver or binding without them
# costs nothing.
PROCESS_LISTS = ("nvmlDeviceGetComputeRunningProcesses",
                 "nvmlDeviceGetMPSComputeRunningProcesses",
                 "nvmlDeviceGetGraphicsRunningProcesses")


def _process_list(reading: Reading, function: str, handle: object) -> tuple[Any, Reading]:
    """One process list, and the reading its answer went to. A driver before 510.39 lacks
    the ``_v3`` symbol the binding calls first, but has ``_v2`` with the same records: an
    old driver must not lose per-process memory for being older than the binding."""
    newest = reading.aside(reading.labels)
    records = newest.call("processes", function, handle)
    # The unversioned wrapper says a missing ``_v3`` as a library mismatch, or as
    # FunctionNotFound where the binding does not wrap it.
    missing = records is None and (
        [why for _, why in newest.errors] == ["library_mismatch"]
        or (not newest.errors and newest.available.get("processes")
            == UNAVAILABLE["NVMLError_FunctionNotFound"]))
    if not missing:
        return records, newest
    older = reading.aside(reading.labels)
    try:
        records = older.call("processes", f"{function}_v2", handle, fallback=True)
    except Missing:
        return None, newest  # no variant works: the mismatch is what is counted
    return records, older


def _process_records(reading: Reading, handle: object) -> list[list[Any]] | None:
    """The records of every list NVML answered; None when none did, or when one failed
    (a list with a process missing would read as that process having exited)."""
    lists: list[list[Any]] = []
    failed = False
    for position, function in enumerate(PROCESS_LISTS):
        records, answer = _process_list(reading, function, handle)
        if position == 0:
            reading.available.update(answer.available)  # the first to speak of "processes"
            reading.errors += answer.errors
            failed = bool(answer.errors)
        else:
            # The unversioned wrapper turns a driver without the symbol into a library
            # mismatch: for an optional list that only means the list is not there.
            errors = [(name, why) for name, why in answer.errors
                      if why != "library_mismatch"]
            reading.errors += errors
            failed = failed or bool(errors)
            if records is not None:
                reading.available["processes"] = ""
        if records is not None:
            lists.append(records)
    return lists if lists and not failed else None


def _read_processes(reading: Reading, handle: object, mig_enabled: bool, total: int | None,
                   process_names: ProcessNames) -> None:
    """GPU memory per process, only when every record is plausible.

    A binding and driver that disagree on the record layout (nvidia-ml-py 12.535.77's 32
    bytes against the driver's 24, or the 535.43-535.86 drivers' 32 against 24) misread
    every record after the first, so one implausible record discards the whole list.
    A process in more than one list (CUDA and graphics contexts) holds one amount of
    memory, which each list reports whole: it is counted once.
    """
    lists = _process_records(reading, handle)
    if lists is None:
        return
    ceiling = total if total else 2**50
    used_by: dict[tuple[int, str, str], int] = {}
    for records in lists:
        in_list: dict[tuple[int, str, str], int] = {}
        for record in records:
            pid = int(record.pid)
            used = record.usedGpuMemory
            gpu_instance = int(getattr(record, "gpuInstanceId", NOT_MIG))
            compute_instance = int(getattr(record, "computeInstanceId", NOT_MIG))
            if not (0 < pid <= PID_MAX and (used is None or 0 <= used <= ceiling)
                    and all(i == NOT_MIG or i < MAX_MIG_ID
                            for i in (gpu_instance, compute_instance))):
                reading.errors.append(("processes", "implausible_record"))
                return
            if used is None:
                continue  # NVML cannot tell (e.g. under WDDM): left out rather than 0
            if mig_enabled and gpu_instance != NOT_MIG:
                key = (pid, str(gpu_instance), str(compute_instance))
            else:
                key = (pid, "", "")
            in_list[key] = in_list.get(key, 0) + int(used)
        for key, used in in_list.items():
            used_by[key] = max(used_by.get(key, 0), used)
    for (pid, gpu_instance, compute_instance), used in sorted(used_by.items()):
        # Past the deadline only names already known are used: the series still count.
        expired = reading.clock is not None and reading.clock() >= reading.deadline
        name = _process_name(reading.nvml, pid, process_names, ask=not expired)
        extra = {"pid": str(pid), "process": name}
        if gpu_instance:
            extra |= {"gpu_instance": gpu_instance, "compute_instance": compute_instance}
        reading.add("inferwatch_gpu_process_memory_bytes", used, **extra)


# A process name is a label value: capped like every other label.
MAX_PROCESS_NAME = 64
# Names kept between scrapes. The collector keeps only the pids of its last scrape; this
# caps what one scrape of very many processes can add.
MAX_PROCESS_NAMES = 4096


def _process_name(nvml: ModuleType, pid: int, cache: ProcessNames, *, ask: bool = True) -> str:
    """The name NVML gives a host pid ("" outside the host's pid namespace), cached by pid
    for as long as the same process holds it. Without ``ask``, only a cached name."""
    started = process_started(pid)
    cached = cache.get(pid)
    if cached is not None and cached[0] == started:
        return cached[1]
    if not ask:
        return ""
    try:
        name = text(nvml.nvmlSystemGetProcessName(pid))
    except UnicodeDecodeError as exc:  # Linux process names are bytes, not UTF-8
        name = undecoded(exc)
    except getattr(nvml, "NVMLError", OSError) as exc:
        if type(exc).__name__ not in ("NVMLError_NotFound", *UNAVAILABLE):
            # A passing failure: caching "" would blank the name for the pid's life.
            return ""
        name = ""  # outside this pid namespace, or already exited: for good
    except AttributeError:
        name = ""
    name = name[:MAX_PROCESS_NAME]
    if pid in cache or len(cache) < MAX_PROCESS_NAMES:
        cache[pid] = (started, name)
    return name
