"""GPU metrics from NVML (the ``nvidia-ml-py`` binding, imported as ``pynvml``).

Failures stay as small as they can:

- no NVML library, or NVML sees no device: the collector does not apply. It says so once
  in the log, reports success with ``inferwatch_gpu_devices 0``, and looks again now and
  then (with backoff) in case a driver or a GPU arrives;
- NVML up but a device that does not answer (none counted, or one lost): NVML enumerates
  devices and hands out handles only at init, so it is shut down and initialized anew on
  the same backoff; a GPU that arrived or was reset meanwhile is exported from the first
  scrape after that;
- NVML present and failing (init or the device count fails): the collector fails, shuts
  NVML down and retries with backoff;
- a lost device (GPU_IS_LOST, RESET_REQUIRED, or no handle / uuid at all): that device's
  ``inferwatch_gpu_up 0``, the others unchanged until the restart above;
- any other failed read: that field is left out and counted in
  ``inferwatch_gpu_nvml_errors_total{field, reason}``; the device stays up;
- a field the device does not offer: left out, with ``inferwatch_gpu_field_available 0``.

Handles, uuids, names and PCI bus ids are cached per device and dropped on re-init or a
lost device. The Xid and error counters of a GPU no longer read under its (gpu, uuid)
labels (gone after a restart of NVML, or no longer counted) are dropped an hour after its
other series, so the Xid alert still sees the event that took it away. Reading a device
lives in :mod:`.nvml_read`, Xid events in :mod:`.nvml_xid`.

>>> GpuCollector().name
'gpu'
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType

from prometheus_client.metrics_core import Metric

from inferwatch.catalogue import OTHER
from inferwatch.standalone.collectors.nvml_read import (
    FIELDS,
    DeviceLost,
    ProcessNames,
    Reading,
    raw_text,
    read_device,
    text,
    undecoded,
)
from inferwatch.standalone.collectors.nvml_xid import XidWatcher
from inferwatch.standalone.scrape import Collector, CollectorError, MetricSet, register

log = logging.getLogger("inferwatch.standalone.gpu")

# (gpu, uuid, field, reason) is bounded by devices x fields x NVML's error codes; the cap
# is a safety net should uuids churn.
MAX_ERROR_SERIES = 1024
# How long the Xid and error counters of a GPU that went away stay exposed: the default
# `gpu.xid_window` of the generated rules, for which InferwatchGpuXidErrors holds.
GONE_HOLD_SECONDS = 3600.0
# Per-process series fold into pid="__other__" past this many in one scrape.
MAX_PROCESS_SERIES = 512
# What nvmlShutdown answers when NVML holds no init of ours: a driver that went away, or
# an init count already back at 0.
NOTHING_HELD = ("NVMLError_Uninitialized", "NVMLError_DriverNotLoaded")
# The share of the scrape timeout the devices' readings may take, split among the devices,
# so that one slow GPU leaves the others their series and the scrape its deadline.
BUDGET_SHARE = 0.8
DEFAULT_BUDGET = BUDGET_SHARE * 5.0  # of the default --scrape.timeout
# More devices than any one host has (a DGX holds 8 or 16): a larger count is a misread one
# (an unsigned -1), and looped over it would never end.
MAX_DEVICES = 64
# What NVML answers for a device index past the devices it counted.
NO_SUCH_INDEX = ("NVMLError_InvalidArgument", "NVMLError_NotFound")


@dataclass(frozen=True)
class _Device:
    """What does not change while NVML stays initialized and the device stays on the bus."""

    handle: object
    uuid: str
    name: str
    pci_bus_id: str


@register
class GpuCollector(Collector):
    """Per device (labels ``gpu`` = index, ``uuid``; MIG devices add ``gpu_instance``,
    ``compute_instance``, ``mig_uuid`` and ``mig_profile``).

    >>> sorted(GpuCollector().describe(), key=lambda f: f.name)[0].name
    'inferwatch_gpu_clock_hertz'
    """

    name = "gpu"
    help = "NVIDIA GPUs through NVML: utilization, memory, power, energy, clocks, Xid errors"
    metric_names = (
        "inferwatch_gpu_devices",
        "inferwatch_gpu_up",
        "inferwatch_gpu_info",
        "inferwatch_gpu_utilization_ratio",
        "inferwatch_gpu_memory_utilization_ratio",
        "inferwatch_gpu_memory_used_bytes",
        "inferwatch_gpu_memory_reserved_bytes",
        "inferwatch_gpu_memory_total_bytes",
        "inferwatch_gpu_temperature_celsius",
        "inferwatch_gpu_power_watts",
        "inferwatch_gpu_power_limit_watts",
        "inferwatch_gpu_energy_joules_total",
        "inferwatch_gpu_clock_hertz",
        "inferwatch_gpu_xid_errors_total",
        "inferwatch_gpu_process_memory_bytes",
        "inferwatch_gpu_field_available",
        "inferwatch_gpu_nvml_errors_total",
    )

    def __init__(
        self,
        *,
        process_memory: bool = False,
        retry_initial: float = 5.0,
        retry_max: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        budget: float = DEFAULT_BUDGET,
    ) -> None:
        if not 0 < budget < float("inf"):
            raise ValueError(f"GPU read budget must be a positive number of seconds, "
                             f"got {budget}")
        self.process_memory = process_memory
        self._budget = budget
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._retry_delay = retry_initial
        self._clock = clock
        # (gpu, uuid) of counters whose GPU is not read now -> since when (clock time).
        self._gone_since: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._nvml: ModuleType | None = None
        self._next_init = float("-inf")
        self._init_error = ""
        self._applies = True
        self._said_no_devices = False
        self._said_misread_count = False  # warned of an implausible device count
        self._inits_held = 0  # nvmlInit calls not yet given back: 0 or 1
        # The binding that holds that init: an init whose driver-version read and then
        # shutdown both failed leaves _nvml None, yet close() must still give it back.
        self._held_by: ModuleType | None = None
        # NVML is held but some GPU does not answer (or none is counted): it is restarted
        # at _next_init.
        self._looking = False
        self._driver_version = ""
        self._devices: dict[int, _Device] = {}
        # Last uuid seen per index: a lost device keeps the labels of its series.
        self._uuids: dict[int, str] = {}
        self._down: set[int] = set()
        # Devices the container may not open (its device cgroup): not lost, just not ours.
        self._denied: set[int] = set()
        self._errors: dict[tuple[str, str, str, str], int] = {}
        self._said: set[tuple[int, str, str]] = set()  # unavailable fields already logged
        self._process_names: ProcessNames = {}
        self._xid = XidWatcher()
        self._closed = False  # close() was called: the start-up probe must not init NVML

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--collector.gpu.process-memory", dest="gpu_process_memory", action="store_true",
            help="also expose GPU memory per process (inferwatch_gpu_process_memory_bytes, "
                 "labels pid and process); off by default because pids churn",
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> GpuCollector:
        timeout = getattr(args, "scrape_timeout", None)
        budget = BUDGET_SHARE * timeout if isinstance(timeout, (int, float)) and timeout > 0 \
            else DEFAULT_BUDGET
        return cls(process_memory=bool(getattr(args, "gpu_process_memory", False)),
                   budget=budget)

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            if self._closed:
                # A run that waited on the lock while close() released NVML: an init now
                # would never be given back.
                raise CollectorError("closed: NVML is released and not initialized again")
            metrics = MetricSet()
            nvml = self._ensure_init()
            if nvml is None:
                self._forget_gone(set())
                metrics.add("inferwatch_gpu_devices", {}, 0)
                return metrics.families()
            count, exact = self._device_count(nvml)
            self._xid.drain(nvml, self._uuids)
            self._xid.prepare(nvml)
            for failed_field, why in self._xid.take_failures():
                self._count_error("", "", failed_field, why)
            process_series: list[tuple[dict[str, str], float]] = []
            count, present = self._collect_devices(nvml, count, exact, metrics,
                                                   process_series)
            self._forget_gone(present)
            metrics.add("inferwatch_gpu_devices", {}, count)
            self._add_process_series(metrics, process_series)
            for (gpu, uuid, xid), total in sorted(self._xid.counts.items()):
                metrics.add("inferwatch_gpu_xid_errors_total",
                            {"gpu": gpu, "uuid": uuid, "xid": xid}, total)
            for (gpu, uuid, failed_field, why), total in sorted(self._errors.items()):
                metrics.add("inferwatch_gpu_nvml_errors_total",
                            {"gpu": gpu, "uuid": uuid, "field": failed_field, "reason": why},
                            total)
            self._restart_while_any_is_down(
                count, sum(index not in self._down for index in range(count)))
            return metrics.families()

    def start(self) -> None:
        """Look for NVML once, in the background, so that the log says at start-up what
        this collector will report (a host without GPUs, say). A hung driver parks only
        this thread; the first scrape then waits on it under the scrape deadline.

        >>> GpuCollector().start()  # returns at once; the probe runs in its own thread
        """
        threading.Thread(target=self._probe, name="inferwatch-gpu-probe", daemon=True).start()

    def _probe(self) -> None:
        with self._lock, contextlib.suppress(CollectorError):
            if self._closed:
                # Stopped before the probe got the lock: an init now would never be
                # given back.
                return
            nvml = self._ensure_init()
            if nvml is not None:
                self._device_count(nvml)  # says so when NVML sees no GPU

    def close(self) -> None:
        """Release NVML (the event set and the init reference) if it is held.

        >>> GpuCollector().close()  # nothing held yet: nothing to release
        """
        with self._lock:
            self._closed = True
            if self._nvml is not None:
                self._release(self._nvml)
            elif self._held_by is not None:
                self._shutdown(self._held_by)

    # --- library lifecycle ----------------------------------------------------------------

    def _ensure_init(self) -> ModuleType | None:
        """The initialized binding; None when this host has no NVML library."""
        if self._nvml is not None:
            if not self._restart_due():
                return self._nvml
            # NVML enumerates devices only at init: a GPU that arrived since, or one that
            # was reset (its old handle stays invalid), is seen only by a new one.
            log.debug("a GPU does not answer NVML: restarting it to enumerate devices anew")
            # Freeing the event set drops what it still holds: the Xids the healthy GPUs
            # raised since the last scrape would never be counted.
            self._xid.drain(self._nvml, self._uuids)
            self._release(self._nvml)
        now = self._clock()
        if now < self._next_init:
            if not self._applies:
                return None
            raise CollectorError(
                f"NVML unavailable ({self._init_error}); next attempt in "
                f"{self._next_init - now:.0f}s"
            )
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError as exc:
            raise self._init_failed(now, f"cannot import pynvml: {exc}") from exc
        try:
            self._init(nvml)
        except nvml.NVMLError as exc:
            if type(exc).__name__ == "NVMLError_LibraryNotFound":
                self._not_applicable(now)
                return None
            raise self._init_failed(now, f"nvmlInit: {_explain(exc)}") from exc
        reading = Reading(nvml, {})
        try:
            version = reading.call("driver", "nvmlSystemGetDriverVersion")
        except DeviceLost as exc:
            reading.errors.append(("driver", str(exc)))
            version = None
        if reading.errors:
            # A failure after a successful init must release it, or NVML's init count grows
            # on every scrape.
            self._shutdown(nvml)
            raise self._init_failed(now, f"nvmlSystemGetDriverVersion: {reading.errors[0][1]}")
        self._driver_version = text(version or "")
        self._applies = True
        self._nvml = nvml
        # A restart that looks for GPUs recurs for as long as there are none: said quietly.
        log.log(logging.DEBUG if self._looking else logging.INFO, "NVML initialized (driver %s)",
                self._driver_version or "unknown")
        return nvml

    def _collect_devices(self, nvml: ModuleType, count: int, exact: bool, metrics: MetricSet,
                         process_series: list[tuple[dict[str, str], float]],
                         ) -> tuple[int, set[tuple[str, str]]]:
        """Read devices 0 to `count` - 1 within the budget; the number of devices there
        are (`count` itself when NVML's count is `exact`, else those found), and the
        (gpu, uuid) labels the devices read wear."""
        end = self._clock() + self._budget
        found = 0
        present: set[tuple[str, str]] = set()
        for index in range(count):
            now = self._clock()
            # Each device has at least its equal share, and what earlier ones left
            # unspent: a slow device (or its calls that cannot be cut short) spends
            # its own share, never the later ones'.
            deadline = now + max(self._budget / count, (end - now) / (count - index))
            if self._collect_device(nvml, index, metrics, process_series, deadline,
                                    probing=not exact):
                found = index + 1
                present.add((str(index), self._uuids.get(index, "")))
        return (count if exact else found), present

    def _device_count(self, nvml: ModuleType) -> tuple[int, bool]:
        """The number of device indices to try, and whether that is NVML's own count (an
        implausible one is replaced by MAX_DEVICES, whose empty indices are then skipped)."""
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            # The driver went away or fails: release NVML and start over after a backoff.
            self._release(nvml)
            raise self._init_failed(self._clock(), f"nvmlDeviceGetCount: {_explain(exc)}") \
                from exc
        if not 0 <= count <= MAX_DEVICES:
            self._count_error("", "", "devices", "implausible_value")
            if not self._said_misread_count:
                self._said_misread_count = True
                log.warning("NVML counts %d GPUs, more than any host has: the devices among "
                            "the first %d indices are read instead (counted in "
                            "inferwatch_gpu_nvml_errors_total{field=\"devices\"}; said once "
                            "until the count is plausible again)", count, MAX_DEVICES)
            return MAX_DEVICES, False
        if self._said_misread_count:
            self._said_misread_count = False
            log.info("NVML counts %d GPU(s) again", count)
        if count == 0 and not self._said_no_devices:
            self._said_no_devices = True
            log.info("NVML sees no GPU: the gpu collector does not apply on this host and "
                     "reports inferwatch_gpu_devices 0")
        return count, True

    def _init(self, nvml: ModuleType) -> None:
        """nvmlInit, unless an init whose shutdown failed is still held: NVML counts inits,
        and one more on every retry would never all be given back."""
        self._shutdown(nvml)
        if self._inits_held == 0:
            nvml.nvmlInit()
            self._inits_held = 1
            self._held_by = nvml

    def _shutdown(self, nvml: ModuleType) -> None:
        """Give back the init this collector holds. A failed shutdown leaves it held, to be
        tried again before the next init; NVML enumerates devices anew only once every
        init is given back."""
        if self._inits_held == 0:
            return
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError as exc:
            if type(exc).__name__ not in NOTHING_HELD:
                log.warning("nvmlShutdown failed (%s); tried again before the next nvmlInit",
                            exc)
                return
        self._inits_held = 0
        self._held_by = None

    def _restart_due(self) -> bool:
        return self._looking and self._clock() >= self._next_init

    def _restart_while_any_is_down(self, count: int, answering: int) -> None:
        """Schedule a restart of NVML, with backoff, while no GPU is counted or one does not
        answer; call it off once every counted GPU answers.

        A GPU reset (``nvidia-smi -r``, or the driver's recovery after an Xid 79) leaves
        the handles of this NVML invalid, so the device would read as lost until the
        exporter restarts. Restarting NVML costs the others their cached handles and Xid
        registration (both taken again on that scrape), hence the backoff: a GPU that stays
        lost costs a restart every ``retry_max`` seconds at most."""
        if count and answering == count:
            if self._looking:
                log.info("NVML sees %d GPU(s) that answer", answering)
            self._looking = False
            self._said_no_devices = False  # should they all go, it is said again
            self._retry_delay = self._retry_initial
            return
        now = self._clock()
        if self._looking and now < self._next_init:
            return  # a restart is already scheduled
        delay = self._schedule_retry(now)
        if count and not self._looking:
            log.info("%d of the %d GPU(s) NVML counts do not answer: NVML is restarted in "
                     "%.0fs, and then with backoff, to enumerate devices anew",
                     count - answering, count, delay)
        self._looking = True

    def _not_applicable(self, now: float) -> None:
        if self._applies or not self._init_error:
            log.info("no NVML library (libnvidia-ml.so.1), so no NVIDIA driver on this host: "
                     "the gpu collector does not apply and reports inferwatch_gpu_devices 0")
        self._applies = False
        self._init_error = "no NVML library"
        self._looking = False  # see _init_failed
        self._schedule_retry(now)

    def _init_failed(self, now: float, why: str) -> CollectorError:
        self._applies = True
        self._init_error = why
        # NVML is no longer held: the next init is a recovery from a failure, to be said
        # at INFO, not one more quiet restart of a search for GPUs.
        self._looking = False
        delay = self._schedule_retry(now)
        return CollectorError(f"NVML unavailable ({why}); next attempt in {delay:.0f}s")

    def _schedule_retry(self, now: float) -> float:
        delay = self._retry_delay
        self._next_init = now + delay
        self._retry_delay = min(delay * 2, self._retry_max)
        return delay

    def _release(self, nvml: ModuleType) -> None:
        # Release what we hold; a driver that already went away has nothing to release.
        self._xid.forget_devices(nvml)
        self._shutdown(nvml)
        self._nvml = None
        self._devices.clear()
        # A restarted NVML may number the devices anew: index 1 may be another GPU.
        self._uuids.clear()
        self._down.clear()
        self._denied.clear()
        self._said.clear()

    # --- one device -----------------------------------------------------------------------

    def _device(self, nvml: ModuleType, index: int) -> _Device:
        """The cached identity of device `index`; NVMLError when it cannot be reached."""
        device = self._devices.get(index)
        if device is not None:
            return device
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        try:
            uuid = text(nvml.nvmlDeviceGetUUID(handle))
        except UnicodeDecodeError as exc:
            # The binding decodes strictly: a garbled byte must not fail every GPU's
            # scrape. The bytes, with the garbled ones replaced, still name this device.
            uuid = undecoded(exc)
        identity = Reading(nvml, {})
        name = identity.call("name", "nvmlDeviceGetName", handle)
        pci = identity.call("pci", "nvmlDeviceGetPciInfo", handle)
        device = _Device(handle, uuid, text(name or ""),
                         raw_text(pci, "busId") if pci is not None else "")
        for failed_field, why in identity.errors:
            self._count_error(str(index), uuid, failed_field, why)
        if not identity.errors:  # a read that failed is tried again on the next scrape
            self._devices[index] = device
        return device

    def _collect_device(self, nvml: ModuleType, index: int, metrics: MetricSet,
                        process_series: list[tuple[dict[str, str], float]],
                        deadline: float = float("inf"), *, probing: bool = False) -> bool:
        """Read device `index` into `metrics`; False when `probing` (NVML's count is not
        to be trusted) and NVML says there is no device at that index."""
        gpu = str(index)
        try:
            device = self._device(nvml, index)
            self._uuids[index] = device.uuid
            labels = {"gpu": gpu, "uuid": device.uuid}
            reading = read_device(nvml, device.handle, labels,
                                  process_memory=self.process_memory,
                                  process_names=self._process_names,
                                  deadline=deadline, clock=self._clock)
            self._xid.register(nvml, index, device.handle, reading)
        except (nvml.NVMLError, DeviceLost) as exc:
            if probing and type(exc).__name__ in NO_SUCH_INDEX and index not in self._devices:
                return False  # past the devices there are: nothing lost, nothing to say
            if type(exc).__name__ == "NVMLError_NoPermission" and index not in self._devices:
                self._denied_device(index, exc, metrics)
                return True
            self._devices.pop(index, None)
            metrics.add("inferwatch_gpu_up", {"gpu": gpu, "uuid": self._uuids.get(index, "")}, 0)
            if index not in self._down:
                self._down.add(index)
                log.warning("GPU %s is lost or cannot be reached, reported as down: %s",
                            gpu, exc)
            return True
        if index in self._denied:
            self._denied.discard(index)
            log.info("GPU %s is accessible again", gpu)
        if index in self._down:
            self._down.discard(index)
            log.info("GPU %s readable again", gpu)
        metrics.add("inferwatch_gpu_up", labels, 1)
        metrics.add("inferwatch_gpu_info", {**labels, "name": device.name,
                                            "driver_version": self._driver_version,
                                            "pci_bus_id": device.pci_bus_id}, 1)
        for name, sample_labels, value in reading.samples:
            if name == "inferwatch_gpu_process_memory_bytes":
                process_series.append((sample_labels, value))
            else:
                metrics.add(name, sample_labels, value)
        for failed_field, why in reading.errors:
            self._count_error(gpu, device.uuid, failed_field, why)
        for field in FIELDS:
            if field == "processes" and not self.process_memory:
                continue
            why = reading.available.get(field)
            if why is None:
                continue  # failed this time: counted above, no verdict on availability
            metrics.add("inferwatch_gpu_field_available", {**labels, "field": field},
                        0 if why else 1)
            if why and (index, field, why) not in self._said:
                self._said.add((index, field, why))
                log.info("GPU %s: %s is not available (%s)", gpu, field.replace("_", " "), why)
        return True

    def _denied_device(self, index: int, exc: BaseException, metrics: MetricSet) -> None:
        """A GPU this container may not open (NoPermission on its handle, the device
        cgroup denies it): no ``gpu_up 0``, which pages as a lost GPU, and no NVML restart,
        which would not change it; ``field_available{field="device"} 0`` says it."""
        self._devices.pop(index, None)
        self._down.discard(index)
        metrics.add("inferwatch_gpu_field_available",
                    {"gpu": str(index), "uuid": self._uuids.get(index, ""), "field": "device"},
                    0)
        if index not in self._denied:
            self._denied.add(index)
            log.info("GPU %s cannot be opened by this exporter (%s): its device is not "
                     "allowed in this container, so it is not reported", index, exc)

    def _add_process_series(self, metrics: MetricSet,
                            series: list[tuple[dict[str, str], float]]) -> None:
        """At most MAX_PROCESS_SERIES per-process series; the rest summed into __other__."""
        overflow: dict[tuple[str, str], float] = {}
        for position, (labels, value) in enumerate(series):
            if position < MAX_PROCESS_SERIES:
                metrics.add("inferwatch_gpu_process_memory_bytes", labels, value)
            else:
                key = (labels["gpu"], labels["uuid"])
                overflow[key] = overflow.get(key, 0) + value
        for (gpu, uuid), value in sorted(overflow.items()):
            metrics.add("inferwatch_gpu_process_memory_bytes",
                        {"gpu": gpu, "uuid": uuid, "pid": OTHER, "process": OTHER}, value)
        seen = {int(labels["pid"]) for labels, _ in series if labels["pid"].isdigit()}
        for pid in list(self._process_names):
            if pid not in seen:
                del self._process_names[pid]

    def _forget_gone(self, present: set[tuple[str, str]]) -> None:
        """Drop the Xid and error counters of a GPU not read under its (gpu, uuid) labels
        for GONE_HOLD_SECONDS: one that went away (off the bus, renumbered or uncounted
        after a restart of NVML) must not leave its counters exposed for good, yet an Xid
        79 is the very event that takes a GPU away, and InferwatchGpuXidErrors must still
        see it for its window. A GPU back after that starts its counters again from 0, a
        counter reset that rate() and increase() take. The host-wide errors (gpu "" or
        "unknown") stay, and so do the overflow folds of the device indices still read."""
        now = self._clock()
        present = present | {(gpu, OTHER) for gpu, _ in present}
        worn = {key[:2] for key in (*self._errors, *self._xid.counts)
                if key[0] not in ("", "unknown")}
        since = {pair: self._gone_since.get(pair, now) for pair in worn - present}
        gone = {pair for pair, at in since.items() if now - at >= GONE_HOLD_SECONDS}
        self._gone_since = {pair: at for pair, at in since.items() if pair not in gone}
        if gone:
            self._xid.forget(gone)
            self._errors = {key: total for key, total in self._errors.items()
                            if key[:2] not in gone}

    def _count_error(self, gpu: str, uuid: str, failed_field: str, why: str) -> None:
        key = (gpu, uuid, failed_field, why)
        if key not in self._errors and len(self._errors) >= MAX_ERROR_SERIES:
            # The uuid is what churns: a fold that kept it would grow with every new GPU.
            key = (gpu, OTHER, failed_field, OTHER)
        self._errors[key] = self._errors.get(key, 0) + 1


def _explain(exc: BaseException) -> str:
    if type(exc).__name__ == "NVMLError_LibRmVersionMismatch":
        return (f"{exc}: the driver was upgraded while this exporter ran; load the new "
                f"kernel module and restart the exporter")
    return str(exc)
