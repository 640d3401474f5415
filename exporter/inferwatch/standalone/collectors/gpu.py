"""GPU metrics from NVML (the ``nvidia-ml-py`` binding, imported as ``pynvml``).

Failures stay as small as they can: no library or driver costs this collector's
success (and init is retried with backoff); a lost or unreadable device costs that
device (``inferwatch_gpu_up 0``); a field the device does not support is left out.

Units follow the catalogue: NVML's percentages become ratios, milliwatts watts,
millijoules joules and megahertz hertz.

>>> GpuCollector().name
'gpu'
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from prometheus_client.metrics_core import Metric

from inferwatch.catalogue import OTHER
from inferwatch.standalone.scrape import Collector, CollectorError, MetricSet, register

log = logging.getLogger("inferwatch.standalone.gpu")

# What a device may answer for a field it does not have; anything else means the device is in
# trouble. FunctionNotFound: a driver older than the binding.
_SKIPPED_ERRORS = ("NVMLError_NotSupported", "NVMLError_NoPermission",
                   "NVMLError_FunctionNotFound")
# NVML's "not a MIG process" marker in process records.
_NO_GPU_INSTANCE = 0xFFFFFFFF
# An Xid storm must not keep the scrape busy; the rest are read on the next scrape.
MAX_EVENTS_PER_SCRAPE = 1000
# Xid codes are small driver-defined numbers; the cap is a safety net for a bad driver.
MAX_XID_SERIES = 512

Sample = tuple[str, dict[str, str], float]


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _address(handle: object) -> int | None:
    """The pointer value of an NVML handle: how an event names its device."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return None


@register
class GpuCollector(Collector):
    """Per device (labels ``gpu`` = index, ``uuid``; MIG instances add ``gpu_instance``).

    >>> sorted(GpuCollector().describe(), key=lambda f: f.name)[0].name
    'inferwatch_gpu_clock_hertz'
    """

    name = "gpu"
    help = "NVIDIA GPUs through NVML: utilization, memory, power, energy, clocks, Xid errors"
    metric_names = (
        "inferwatch_gpu_up",
        "inferwatch_gpu_info",
        "inferwatch_gpu_utilization_ratio",
        "inferwatch_gpu_memory_utilization_ratio",
        "inferwatch_gpu_memory_used_bytes",
        "inferwatch_gpu_memory_total_bytes",
        "inferwatch_gpu_temperature_celsius",
        "inferwatch_gpu_power_watts",
        "inferwatch_gpu_power_limit_watts",
        "inferwatch_gpu_energy_joules_total",
        "inferwatch_gpu_clock_hertz",
        "inferwatch_gpu_xid_errors_total",
        "inferwatch_gpu_process_memory_bytes",
    )

    def __init__(
        self,
        *,
        process_memory: bool = False,
        retry_initial: float = 5.0,
        retry_max: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.process_memory = process_memory
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._retry_delay = retry_initial
        self._clock = clock
        self._lock = threading.Lock()
        self._nvml: ModuleType | None = None
        self._next_init = float("-inf")
        self._init_error = ""
        self._driver_version = ""
        self._events: Any = None
        self._xid_registered: set[int] = set()
        self._index_by_address: dict[int, int] = {}
        self._xid_counts: dict[tuple[str, str, str], int] = {}
        # Last uuid seen per index: a lost device keeps the labels of its series.
        self._uuids: dict[int, str] = {}
        self._down: set[int] = set()

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--collector.gpu.process-memory", dest="gpu_process_memory", action="store_true",
            help="also expose GPU memory per process (inferwatch_gpu_process_memory_bytes, "
                 "label pid); off by default because pids churn",
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> GpuCollector:
        return cls(process_memory=bool(getattr(args, "gpu_process_memory", False)))

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            nvml = self._ensure_init()
            try:
                count = nvml.nvmlDeviceGetCount()
            except nvml.NVMLError as exc:
                # The driver went away under us: start over on the next scrape.
                self._shutdown(nvml)
                raise CollectorError(f"nvmlDeviceGetCount failed: {exc}") from exc
            metrics = MetricSet()
            for index in range(count):
                self._collect_device(nvml, index, metrics)
            self._drain_xid_events(nvml)
            for (gpu, uuid, xid), total in sorted(self._xid_counts.items()):
                metrics.add("inferwatch_gpu_xid_errors_total",
                            {"gpu": gpu, "uuid": uuid, "xid": xid}, total)
            return metrics.families()

    # --- library lifecycle ----------------------------------------------------------------

    def _ensure_init(self) -> ModuleType:
        if self._nvml is not None:
            return self._nvml
        now = self._clock()
        if now < self._next_init:
            raise CollectorError(
                f"NVML unavailable ({self._init_error}); next attempt in "
                f"{self._next_init - now:.0f}s"
            )
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError as exc:
            raise self._init_failed(now, f"cannot import pynvml: {exc}") from exc
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise self._init_failed(now, f"nvmlInit: {exc}") from exc
        self._retry_delay = self._retry_initial
        self._driver_version = _text(self._optional(nvml, nvml.nvmlSystemGetDriverVersion) or "")
        self._events = self._optional(nvml, nvml.nvmlEventSetCreate)
        self._nvml = nvml
        log.info("NVML initialized (driver %s)", self._driver_version or "unknown")
        return nvml

    def _init_failed(self, now: float, reason: str) -> CollectorError:
        self._init_error = reason
        self._next_init = now + self._retry_delay
        delay, self._retry_delay = self._retry_delay, min(self._retry_delay * 2, self._retry_max)
        return CollectorError(f"NVML unavailable ({reason}); next attempt in {delay:.0f}s")

    def _shutdown(self, nvml: ModuleType) -> None:
        # Release what we hold; a driver that already went away has nothing to release.
        if self._events is not None:
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlEventSetFree(self._events)
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
        self._nvml = None
        self._events = None
        self._xid_registered.clear()
        self._index_by_address.clear()

    @staticmethod
    def _optional(nvml: ModuleType, call: Callable[..., Any], *args: object) -> Any:
        """The call's answer, or None when the device does not offer this field."""
        try:
            return call(*args)
        except nvml.NVMLError as exc:
            if type(exc).__name__ in _SKIPPED_ERRORS:
                return None
            raise

    # --- one device -----------------------------------------------------------------------

    def _collect_device(self, nvml: ModuleType, index: int, metrics: MetricSet) -> None:
        gpu = str(index)
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            self._uuids[index] = uuid
            labels = {"gpu": gpu, "uuid": uuid}
            # Staged so that a device failing half-way leaves only its gpu_up 0.
            samples = self._read_device(nvml, handle, labels)
            self._register_xid(nvml, index, handle)
        except nvml.NVMLError as exc:
            metrics.add("inferwatch_gpu_up", {"gpu": gpu, "uuid": self._uuids.get(index, "")}, 0)
            if index not in self._down:
                self._down.add(index)
                log.warning("GPU %s unreadable, reported as down: %s", gpu, exc)
            return
        if index in self._down:
            self._down.discard(index)
            log.info("GPU %s readable again", gpu)
        metrics.add("inferwatch_gpu_up", labels, 1)
        for name, sample_labels, value in samples:
            metrics.add(name, sample_labels, value)

    def _read_device(self, nvml: ModuleType, handle: object,
                     labels: dict[str, str]) -> list[Sample]:
        def optional(call: Callable[..., Any], *args: object) -> Any:
            return self._optional(nvml, call, handle, *args)

        name = optional(nvml.nvmlDeviceGetName)
        samples: list[Sample] = [("inferwatch_gpu_info", {
            **labels, "name": _text(name or ""), "driver_version": self._driver_version}, 1)]
        samples += self._usage(nvml, handle, labels)
        temperature = optional(nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU)
        if temperature is not None:
            samples.append(("inferwatch_gpu_temperature_celsius", labels, temperature))
        for metric, call, scale in (
            ("inferwatch_gpu_power_watts", nvml.nvmlDeviceGetPowerUsage, 1e-3),
            ("inferwatch_gpu_power_limit_watts", nvml.nvmlDeviceGetEnforcedPowerLimit, 1e-3),
            ("inferwatch_gpu_energy_joules_total", nvml.nvmlDeviceGetTotalEnergyConsumption, 1e-3),
        ):
            value = optional(call)
            if value is not None:
                samples.append((metric, labels, value * scale))
        for clock, clock_type in (("sm", nvml.NVML_CLOCK_SM), ("memory", nvml.NVML_CLOCK_MEM)):
            megahertz = optional(nvml.nvmlDeviceGetClockInfo, clock_type)
            if megahertz is not None:
                samples.append(("inferwatch_gpu_clock_hertz", {**labels, "clock": clock},
                                megahertz * 1e6))
        mig_mode = optional(nvml.nvmlDeviceGetMigMode)
        mig_enabled = bool(mig_mode) and mig_mode[0] == nvml.NVML_DEVICE_MIG_ENABLE
        if mig_enabled:
            samples += self._mig_instances(nvml, handle, labels)
        if self.process_memory:
            samples += self._process_memory(nvml, handle, labels, mig_enabled)
        return samples

    def _usage(self, nvml: ModuleType, handle: object, labels: dict[str, str]) -> list[Sample]:
        """Utilization and memory: what both whole GPUs and MIG instances report."""
        samples: list[Sample] = []
        utilization = self._optional(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
        if utilization is not None:
            samples.append(("inferwatch_gpu_utilization_ratio", labels, utilization.gpu / 100))
            samples.append(
                ("inferwatch_gpu_memory_utilization_ratio", labels, utilization.memory / 100))
        memory = self._optional(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
        if memory is not None:
            samples.append(("inferwatch_gpu_memory_used_bytes", labels, memory.used))
            samples.append(("inferwatch_gpu_memory_total_bytes", labels, memory.total))
        return samples

    def _mig_instances(self, nvml: ModuleType, handle: object,
                       labels: dict[str, str]) -> list[Sample]:
        samples: list[Sample] = []
        for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                instance = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except nvml.NVMLError_NotFound:
                continue  # an empty slot: fewer instances than the maximum
            gpu_instance = str(nvml.nvmlDeviceGetGpuInstanceId(instance))
            samples += self._usage(nvml, instance, {**labels, "gpu_instance": gpu_instance})
        return samples

    def _process_memory(self, nvml: ModuleType, handle: object, labels: dict[str, str],
                        mig_enabled: bool) -> list[Sample]:
        processes = self._optional(nvml, nvml.nvmlDeviceGetComputeRunningProcesses, handle)
        used_by: dict[tuple[str, str], int] = {}
        for process in processes or ():
            used = getattr(process, "usedGpuMemory", None)
            if used is None:
                continue  # NVML cannot tell (e.g. under WDDM)
            instance = getattr(process, "gpuInstanceId", _NO_GPU_INSTANCE)
            gpu_instance = str(instance) if mig_enabled and instance != _NO_GPU_INSTANCE else ""
            key = (str(process.pid), gpu_instance)
            used_by[key] = used_by.get(key, 0) + used
        samples: list[Sample] = []
        for (pid, gpu_instance), used in sorted(used_by.items()):
            sample_labels = {**labels, "pid": pid}
            if gpu_instance:
                sample_labels["gpu_instance"] = gpu_instance
            samples.append(("inferwatch_gpu_process_memory_bytes", sample_labels, used))
        return samples

    # --- Xid errors -----------------------------------------------------------------------

    def _register_xid(self, nvml: ModuleType, index: int, handle: object) -> None:
        if self._events is None or index in self._xid_registered:
            return
        self._optional(nvml, nvml.nvmlDeviceRegisterEvents, handle,
                       nvml.nvmlEventTypeXidCriticalError, self._events)
        self._xid_registered.add(index)
        address = _address(handle)
        if address is not None:
            self._index_by_address[address] = index

    def _drain_xid_events(self, nvml: ModuleType) -> None:
        if self._events is None:
            return
        for _ in range(MAX_EVENTS_PER_SCRAPE):
            try:
                event = nvml.nvmlEventSetWait(self._events, 0)
            except nvml.NVMLError_Timeout:
                return  # no more pending events
            except nvml.NVMLError as exc:
                # A lost GPU in the set makes the wait fail; its device is already reported down.
                log.debug("nvmlEventSetWait: %s", exc)
                return
            if not event.eventType & nvml.nvmlEventTypeXidCriticalError:
                continue
            index = self._index_by_address.get(_address(event.device) or -1)
            gpu = str(index) if index is not None else "unknown"
            uuid = self._uuids.get(index, "") if index is not None else ""
            key = (gpu, uuid, str(event.eventData))
            if key not in self._xid_counts and len(self._xid_counts) >= MAX_XID_SERIES:
                key = (gpu, uuid, OTHER)
            self._xid_counts[key] = self._xid_counts.get(key, 0) + 1
