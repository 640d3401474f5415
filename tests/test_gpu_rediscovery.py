"""GPUs that arrive or go while the exporter runs.

NVML enumerates devices when it is initialized, and so does the fake (``FakeNVML.plug``):
a GPU that arrives later is seen only after NVML is shut down and initialized again. The
collector's clock is injected, so the retry schedule is driven without sleeping.
"""

from __future__ import annotations

import logging

import pynvml
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fake_nvml import FakeGpu, FakeNVML
from inferwatch.standalone.collectors.gpu import GpuCollector
from inferwatch.standalone.scrape import Scraper

INIT = "nvmlInitWithFlags"
SHUTDOWN = "nvmlShutdown"

Samples = dict[tuple[str, frozenset], float]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scrape(collector: GpuCollector) -> Samples:
    """One scrape, parsed with prometheus_client's own parser; no sample twice."""
    registry = CollectorRegistry()
    registry.register(Scraper([collector], timeout=5.0))
    text = generate_latest(registry).decode()
    every = [(sample.name, frozenset(sample.labels.items()), sample.value)
             for family in text_string_to_metric_families(text) for sample in family.samples]
    keys = [(name, labels) for name, labels, _ in every]
    assert len(keys) == len(set(keys)), "duplicate samples"
    return {(name, labels): v for name, labels, v in every}


def success(result: Samples) -> float:
    return result[("inferwatch_exporter_collector_success", frozenset({("collector", "gpu")}))]


def devices(result: Samples) -> float:
    return result[("inferwatch_gpu_devices", frozenset())]


def per_gpu(result: Samples) -> Samples:
    """Every GPU series but the device count."""
    return {key: v for key, v in result.items()
            if key[0].startswith("inferwatch_gpu_") and key[0] != "inferwatch_gpu_devices"}


def ups(result: Samples) -> dict[str, float]:
    """inferwatch_gpu_up by uuid."""
    return {dict(labels)["uuid"]: v for (name, labels), v in result.items()
            if name == "inferwatch_gpu_up"}


def wears(result: Samples, uuid: str) -> bool:
    return any(("uuid", uuid) in labels for _, labels in result)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def collector(clock: Clock, monkeypatch: pytest.MonkeyPatch):
    gpu = GpuCollector(retry_initial=10, retry_max=40, clock=clock)
    yield gpu
    gpu.close()


def test_the_fake_enumerates_the_bus_only_at_a_first_init(
        monkeypatch: pytest.MonkeyPatch) -> None:
    old = FakeGpu(uuid="GPU-old")
    fake = FakeNVML([old]).install(monkeypatch)
    pynvml.nvmlInit()
    fake.plug([FakeGpu(uuid="GPU-new")])
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(0))
    pynvml.nvmlInit()  # a second reference enumerates nothing
    assert pynvml.nvmlDeviceGetCount() == 1 and fake.gpus == [old]
    pynvml.nvmlShutdown()
    pynvml.nvmlShutdown()
    pynvml.nvmlInit()
    assert pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(0)) == "GPU-new"
    pynvml.nvmlShutdown()


def test_a_gpu_that_appears_later_is_exported_after_the_next_retry_not_before(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, collector: GpuCollector) -> None:
    fake = FakeNVML([]).install(monkeypatch)
    first = scrape(collector)
    assert success(first) == 1 and devices(first) == 0 and per_gpu(first) == {}
    fake.plug([FakeGpu(uuid="GPU-aaaa", name="NVIDIA L4")])
    clock.now += 9  # within the backoff: NVML is not restarted, so it cannot see the GPU
    before = scrape(collector)
    assert success(before) == 1 and devices(before) == 0 and per_gpu(before) == {}
    assert (fake.calls[INIT], fake.calls[SHUTDOWN]) == (1, 0)
    clock.now += 1
    after = scrape(collector)
    assert success(after) == 1 and devices(after) == 1
    assert ups(after) == {"GPU-aaaa": 1}
    assert after[("inferwatch_gpu_info", frozenset({
        "gpu": "0", "uuid": "GPU-aaaa", "name": "NVIDIA L4", "driver_version": "550.54.15",
        "pci_bus_id": "00000000:3B:00.0"}.items()))] == 1
    # NVML was shut down and initialized again, and holds one init now.
    assert (fake.calls[INIT], fake.calls[SHUTDOWN]) == (2, 1) and fake.refcount == 1


def test_while_no_gpu_is_seen_nvml_is_restarted_on_the_backoff_not_on_every_scrape(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, clock: Clock,
        collector: GpuCollector) -> None:
    fake = FakeNVML([]).install(monkeypatch)
    restarted_at = []
    with caplog.at_level(logging.INFO, logger="inferwatch.standalone.gpu"):
        for second in range(200):  # a scrape every second
            clock.now = 1000.0 + second
            inits = fake.calls[INIT]
            result = scrape(collector)
            assert success(result) == 1 and devices(result) == 0 and per_gpu(result) == {}
            if fake.calls[INIT] > inits:
                restarted_at.append(second)
    # After 10 s, 20 s, then every 40 s (retry_max).
    assert restarted_at == [0, 10, 30, 70, 110, 150, 190]
    assert fake.refcount == 1 and fake.calls[INIT] == fake.calls[SHUTDOWN] + 1
    # Each restart is quiet: what is said at INFO is said once.
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(said) == len(set(said)) and any("does not apply" in line for line in said)


@pytest.mark.parametrize("how", ["lost", "uncounted"])
def test_gpus_that_go_take_their_series_along_and_new_ones_come_back(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, collector: GpuCollector,
        how: str) -> None:
    fake = FakeNVML([FakeGpu(uuid="GPU-old")]).install(monkeypatch)
    assert ups(scrape(collector)) == {"GPU-old": 1}
    if how == "lost":
        fake.plug([])  # off the bus: GPU_IS_LOST until NVML enumerates again
    else:
        fake.gpus = []  # the count drops to 0 under a running NVML
    going = scrape(collector)
    assert success(going) == 1
    if how == "lost":  # NVML still counts it, and it reads as down, with its labels
        assert devices(going) == 1
        assert per_gpu(going) == {
            ("inferwatch_gpu_up", frozenset({"gpu": "0", "uuid": "GPU-old"}.items())): 0}
    else:
        assert devices(going) == 0 and per_gpu(going) == {}
    clock.now += 10  # the restart after the first backoff finds no device
    gone = scrape(collector)
    assert success(gone) == 1 and devices(gone) == 0 and per_gpu(gone) == {}
    fake.plug([FakeGpu(uuid="GPU-new")])
    clock.now += 19  # the backoff has doubled: not yet
    assert devices(scrape(collector)) == 0
    clock.now += 1
    back = scrape(collector)
    assert success(back) == 1 and devices(back) == 1
    assert ups(back) == {"GPU-new": 1}
    assert not wears(back, "GPU-old")
    assert fake.refcount == 1 and (fake.calls[INIT], fake.calls[SHUTDOWN]) == (3, 2)


def test_a_gpu_found_by_a_restart_never_wears_the_uuid_of_the_one_it_replaced(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, collector: GpuCollector) -> None:
    fake = FakeNVML([FakeGpu(uuid="GPU-old")]).install(monkeypatch)
    scrape(collector)
    fake.plug([FakeGpu(uuid="GPU-new", fail={"nvmlDeviceGetUUID": pynvml.NVMLError_Unknown})])
    assert ups(scrape(collector)) == {"GPU-old": 0}  # the lost one keeps its labels
    clock.now += 10
    result = scrape(collector)
    assert success(result) == 1 and devices(result) == 1
    assert ups(result) == {"": 0}  # unreadable uuid: the caches were cleared on release
    assert not wears(result, "GPU-old")


def test_a_failing_nvml_shutdown_never_raises_and_is_given_back_before_the_next_init(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, clock: Clock,
        collector: GpuCollector) -> None:
    fake = FakeNVML([]).install(monkeypatch)
    scrape(collector)
    fake.plug([FakeGpu(uuid="GPU-aaaa")])
    fake.fail = {SHUTDOWN: pynvml.NVMLError_Unknown}
    with caplog.at_level(logging.WARNING, logger="inferwatch.standalone.gpu"):
        for backoff in (10, 20):
            clock.now += backoff
            result = scrape(collector)
            # NVML could not be restarted, so it still sees the bus it enumerated: no GPU.
            assert success(result) == 1 and devices(result) == 0 and per_gpu(result) == {}
            # No init piled on the one that could not be given back.
            assert fake.refcount == 1 and fake.calls[INIT] == 1
    fake.fail = {}
    clock.now += 40
    result = scrape(collector)
    assert success(result) == 1 and ups(result) == {"GPU-aaaa": 1}
    assert fake.refcount == 1 and fake.calls[INIT] == 2
    collector.close()
    assert fake.refcount == 0
    assert any("nvmlShutdown failed" in r.getMessage() for r in caplog.records)


def test_repeated_arrivals_and_departures_leak_no_init_and_no_event_set(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, collector: GpuCollector) -> None:
    fake = FakeNVML([]).install(monkeypatch)
    scrape(collector)
    for cycle in range(5):
        uuid = f"GPU-{cycle}"
        fake.plug([FakeGpu(uuid=uuid)])
        clock.now += 40
        assert ups(scrape(collector)) == {uuid: 1}
        fake.plug([])
        assert ups(scrape(collector)) == {uuid: 0}
        clock.now += 40
        assert devices(scrape(collector)) == 0
        # Every init but the one held now was given back, and at most one event set lives.
        assert fake.refcount == 1 and fake.calls[INIT] == fake.calls[SHUTDOWN] + 1
        assert len(fake.live_sets) <= 1
    assert fake.calls[INIT] == 11
    collector.close()
    assert fake.refcount == 0 and fake.live_sets == set()


def test_a_gpu_found_by_a_restart_registers_for_xid_events_at_once(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, collector: GpuCollector) -> None:
    """The Xid registration backoff of a device is not inherited by the GPU a restart
    finds at its index."""
    broken = FakeGpu(uuid="GPU-old", fail={"nvmlDeviceRegisterEvents": pynvml.NVMLError_Unknown})
    fake = FakeNVML([broken]).install(monkeypatch)
    for _ in range(4):  # each failed registration doubles its wait, in scrapes
        scrape(collector)
    fake.plug([FakeGpu(uuid="GPU-new")])
    scrape(collector)  # every GPU lost: a restart is scheduled
    clock.now += 10
    result = scrape(collector)
    assert ups(result) == {"GPU-new": 1}
    assert fake.registered() == {0}
    fake.emit_xid(0, 79)
    assert scrape(collector)[("inferwatch_gpu_xid_errors_total", frozenset(
        {"gpu": "0", "uuid": "GPU-new", "xid": "79"}.items()))] == 1


def test_a_gpu_reset_among_healthy_ones_comes_back_after_the_backoff(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, collector: GpuCollector) -> None:
    """A reset GPU (``nvidia-smi -r``) leaves the handles of this NVML invalid: only a
    restarted NVML reads it again, even while the other GPUs answer."""
    healthy = FakeGpu(uuid="GPU-a", memory_used=2**30, pci_bus_id="00000000:3B:00.0")
    fake = FakeNVML([healthy, FakeGpu(uuid="GPU-b", pci_bus_id="00000000:86:00.0")]
                    ).install(monkeypatch)
    before = scrape(collector)
    assert ups(before) == {"GPU-a": 1, "GPU-b": 1}
    fake.plug([healthy, FakeGpu(uuid="GPU-b", pci_bus_id="00000000:86:00.0")])
    for _ in range(2):
        during = scrape(collector)
        assert ups(during) == {"GPU-a": 1, "GPU-b": 0}
        # The healthy GPU is read as before while the other is down.
        assert {k: v for k, v in per_gpu(during).items() if ("uuid", "GPU-a") in k[1]} == {
            k: v for k, v in per_gpu(before).items() if ("uuid", "GPU-a") in k[1]}
        assert fake.calls[INIT] == 1
        clock.now += 9
    clock.now -= 8  # 10 s after the loss was first seen: the first backoff
    after = scrape(collector)
    assert success(after) == 1 and ups(after) == {"GPU-a": 1, "GPU-b": 1}
    assert fake.refcount == 1 and (fake.calls[INIT], fake.calls[SHUTDOWN]) == (2, 1)
    assert fake.registered() == {0, 1}  # both registered for Xid events again
    fake.emit_xid(1, 79)
    assert scrape(collector)[("inferwatch_gpu_xid_errors_total", frozenset(
        {"gpu": "1", "uuid": "GPU-b", "xid": "79"}.items()))] == 1


def test_a_gpu_that_stays_lost_restarts_nvml_on_the_backoff_only(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, collector: GpuCollector) -> None:
    healthy = FakeGpu(uuid="GPU-a")
    lost = FakeGpu(uuid="GPU-b", pci_bus_id="00000000:86:00.0")
    fake = FakeNVML([healthy, lost]).install(monkeypatch)
    scrape(collector)
    lost.lost = True  # off the bus for good: every NVML answers GPU_IS_LOST for it
    restarted_at = []
    for second in range(200):
        clock.now = 2000.0 + second
        inits = fake.calls[INIT]
        result = scrape(collector)
        # Until the first restart the lost GPU keeps its uuid; a restarted NVML cannot
        # tell it from a device that replaced it, so it shows uuid="" from then on.
        lost_uuid = "GPU-b" if not restarted_at and fake.calls[INIT] == inits else ""
        assert success(result) == 1 and ups(result) == {"GPU-a": 1, lost_uuid: 0}
        if fake.calls[INIT] > inits:
            restarted_at.append(second)
    # 10 s after the loss was seen, then 20 s, then every 40 s (retry_max).
    assert restarted_at == [10, 30, 70, 110, 150, 190]
    assert fake.refcount == 1 and fake.calls[INIT] == fake.calls[SHUTDOWN] + 1
    # Once every GPU answers again, the backoff starts over from its first step.
    lost.lost = False
    clock.now += 40
    assert ups(scrape(collector)) == {"GPU-a": 1, "GPU-b": 1}
    lost.lost = True
    inits = fake.calls[INIT]
    scrape(collector)
    clock.now += 10
    scrape(collector)
    assert fake.calls[INIT] == inits + 1
