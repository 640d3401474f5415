"""Xid critical errors through one NVML event set, rebuilt whenever it may be broken.

Each scrape drains what is pending with a zero wait, then registers devices not yet in
the set. Registration is separate from a device's readings: a failed registration costs
Xid counting (counted as a failure, the set rebuilt), never the device's ``gpu_up``.
After a registration that answers anything but NotSupported / NoPermission /
FunctionNotFound, or a wait that fails with anything but Timeout (a lost GPU in the set
makes every wait fail), the set is in an undefined state: it is freed and built again on
the next scrape, as nvidia_gpu_exporter does.

>>> XidWatcher().counts
{}
"""

from __future__ import annotations

import contextlib
import logging
from types import ModuleType
from typing import Any

from inferwatch.catalogue import OTHER
from inferwatch.standalone.collectors.nvml_read import UNAVAILABLE, Reading, address, reason

log = logging.getLogger("inferwatch.standalone.gpu")

# An Xid storm must not keep the scrape busy; the rest are read on the next scrape.
MAX_EVENTS_PER_SCRAPE = 1000
# Xid codes are small driver-defined numbers; the cap is a safety net for a bad driver.
MAX_XID_SERIES = 512
# A device whose registration keeps breaking the set is tried again after 1, 2, 4, ...
# scrapes, so that the other devices' Xids are still counted in between.
MAX_RETRY_SCRAPES = 64


class XidWatcher:
    """The event set, the devices registered in it, and the Xid counts so far."""

    def __init__(self) -> None:
        self._set: Any = None
        self._broken = False
        self._unavailable = ""  # why the event set itself cannot exist here
        self._registered: dict[int, int | None] = {}  # index -> handle address
        self._skipped: dict[int, str] = {}  # index -> why it cannot deliver events
        self._scrape = 0
        self._retry: dict[int, tuple[int, int]] = {}  # index -> (next scrape, wait)
        self._logged: set[tuple[str, str, str]] = set()
        self.counts: dict[tuple[str, str, str], int] = {}
        self.failures: list[tuple[str, str]] = []  # (field, reason) since the last take

    def reset(self, nvml: ModuleType | None) -> None:
        """Free the set (if the library still answers) and forget the registrations."""
        if self._set is not None and nvml is not None:
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlEventSetFree(self._set)
        self._set = None
        self._broken = False
        self._unavailable = ""
        self._registered.clear()
        self._skipped.clear()

    def forget_devices(self, nvml: ModuleType | None) -> None:
        """reset(), for an NVML that is released: a restarted NVML may number another GPU
        at an index, which starts without the registration backoff of the device that held
        that index before (a rebuilt set keeps it, or a failing device would starve the
        others)."""
        self.reset(nvml)
        self._retry.clear()

    def forget(self, gone: set[tuple[str, str]]) -> None:
        """Drop the counts of the GPUs whose (gpu, uuid) is in `gone`."""
        self.counts = {key: total for key, total in self.counts.items()
                       if key[:2] not in gone}

    def drain(self, nvml: ModuleType, uuids: dict[int, str]) -> None:
        """Count pending events; a failed wait marks the set for rebuilding."""
        if self._set is None or self._broken:
            return
        by_address = {where: index for index, where in self._registered.items()
                      if where is not None}
        for _ in range(MAX_EVENTS_PER_SCRAPE):
            try:
                event = nvml.nvmlEventSetWait(self._set, 0)
            except nvml.NVMLError_Timeout:
                return  # nothing more pending
            except nvml.NVMLError as exc:
                self._break("xid_wait", exc)
                return
            if not event.eventType & nvml.nvmlEventTypeXidCriticalError:
                continue
            index = by_address.get(address(event.device) or -1)
            gpu = str(index) if index is not None else "unknown"
            uuid = uuids.get(index, "") if index is not None else ""
            key = (gpu, uuid, str(event.eventData))
            if key not in self.counts and len(self.counts) >= MAX_XID_SERIES:
                # The uuid is what churns: a fold that kept it would grow with every GPU.
                key = (gpu, OTHER, OTHER)
            self.counts[key] = self.counts.get(key, 0) + 1

    def prepare(self, nvml: ModuleType) -> None:
        """Rebuild a broken set, or create the first one."""
        self._scrape += 1
        if self._broken:
            self.reset(nvml)
            log.info("NVML event set rebuilt for Xid errors")
        if self._set is not None or self._unavailable:
            return
        create = getattr(nvml, "nvmlEventSetCreate", None)
        try:
            if create is None:
                raise nvml.NVMLError_FunctionNotFound()
            self._set = create()
        except nvml.NVMLError as exc:
            why = UNAVAILABLE.get(type(exc).__name__)
            if why is not None:
                self._unavailable = why
                log.info("Xid errors cannot be counted on this host: event sets are %s", why)
            else:
                self.failures.append(("xid_events", reason(exc)))

    def register(self, nvml: ModuleType, index: int, handle: object, reading: Reading) -> None:
        """Put a device in the set once; its availability goes into `reading`."""
        if self._unavailable:
            reading.unavailable("xid_events", self._unavailable)
            return
        if index in self._skipped:
            reading.unavailable("xid_events", self._skipped[index])
            return
        if self._set is None or self._broken:
            return
        if index not in self._registered:
            next_try, wait = self._retry.get(index, (0, 0))
            if self._scrape < next_try:
                return  # its last registration broke the set: the others go first
            try:
                nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError,
                                              self._set)
            except nvml.NVMLError as exc:
                why = UNAVAILABLE.get(type(exc).__name__)
                if why is None:
                    wait = min(max(1, wait * 2), MAX_RETRY_SCRAPES)
                    self._retry[index] = (self._scrape + wait, wait)
                    self._break("xid_events", exc, gpu=str(index))
                    reading.errors.append(("xid_events", reason(exc)))
                    return
                self._skipped[index] = why
                reading.unavailable("xid_events", why)
                return
            self._registered[index] = address(handle)
            self._retry.pop(index, None)
        reading.available["xid_events"] = ""

    def take_failures(self) -> list[tuple[str, str]]:
        failures, self.failures = self.failures, []
        return failures

    def _break(self, field: str, exc: BaseException, gpu: str = "") -> None:
        self._broken = True
        if not gpu:
            self.failures.append((field, reason(exc)))
        key = (field, gpu, reason(exc))
        level = logging.DEBUG if key in self._logged else logging.WARNING
        self._logged.add(key)
        log.log(level, "NVML event set failed (%s%s: %s); rebuilding it on the next scrape",
                field, f" on GPU {gpu}" if gpu else "", exc)
