"""The GPU collector at the edges real NVML reaches: restarts, garbled strings, churn."""

from __future__ import annotations

import subprocess

import pynvml
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conftest import require_binary
from fake_nvml import FakeGpu, FakeNVML
from inferwatch.catalogue import OTHER
from inferwatch.standalone.collectors import gpu as gpu_module
from inferwatch.standalone.collectors import nvml_xid
from inferwatch.standalone.collectors.gpu import GpuCollector
from inferwatch.standalone.scrape import Scraper

Samples = dict[tuple[str, frozenset], float]
XID = "inferwatch_gpu_xid_errors_total"
ERRORS = "inferwatch_gpu_nvml_errors_total"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RawBytes(str):
    """A device string whose C bytes are not UTF-8, as a garbled VBIOS or driver gives."""

    def __new__(cls, raw: bytes) -> RawBytes:
        made = super().__new__(cls, raw.decode("latin-1"))
        made.raw = raw
        return made

    def encode(self, *args: object, **kwargs: object) -> bytes:  # type: ignore[override]
        return self.raw


def scrape_text(collector: GpuCollector) -> str:
    registry = CollectorRegistry()
    registry.register(Scraper([collector], timeout=5.0))
    return generate_latest(registry).decode()


def scrape(collector: GpuCollector) -> Samples:
    """One scrape, parsed with prometheus_client's own parser; no sample twice."""
    every = [(sample.name, frozenset(sample.labels.items()), sample.value)
             for family in text_string_to_metric_families(scrape_text(collector))
             for sample in family.samples]
    keys = [(name, labels) for name, labels, _ in every]
    assert len(keys) == len(set(keys)), "duplicate samples"
    return {(name, labels): v for name, labels, v in every}


def success(result: Samples) -> float:
    return result[("inferwatch_exporter_collector_success", frozenset({("collector", "gpu")}))]


def series(result: Samples, metric: str) -> dict[frozenset, float]:
    return {labels: v for (name, labels), v in result.items() if name == metric}


def xids(result: Samples) -> dict[tuple[str, str, str], float]:
    return {(d["gpu"], d["uuid"], d["xid"]): v
            for d, v in ((dict(labels), v) for labels, v in series(result, XID).items())}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def collector(clock: Clock):
    gpu = GpuCollector(retry_initial=10, retry_max=40, clock=clock)
    yield gpu
    gpu.close()


# --- Xid errors across an NVML restart --------------------------------------------------------

def test_xids_raised_before_an_nvml_restart_are_counted_not_dropped(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, collector: GpuCollector) -> None:
    fake = FakeNVML([FakeGpu(uuid="GPU-aaaa"), FakeGpu(uuid="GPU-bbbb")]).install(monkeypatch)
    scrape(collector)  # both registered for Xid events
    fake.gpus[1].lost = True  # falls off the bus: a restart of NVML is scheduled
    down = scrape(collector)
    assert down[("inferwatch_gpu_up", frozenset({"gpu": "1", "uuid": "GPU-bbbb"}.items()))] == 0
    # The healthy GPU raises Xids between this scrape and the one that restarts NVML.
    fake.emit_xid(0, 31)
    fake.emit_xid(0, 31)
    clock.now += 10
    restarted = scrape(collector)
    assert fake.calls["nvmlInitWithFlags"] == 2  # this scrape restarted NVML
    assert success(restarted) == 1
    assert xids(restarted) == {("0", "GPU-aaaa", "31"): 2}
    # And counting goes on with the set built after the restart.
    fake.emit_xid(0, 31)
    assert xids(scrape(collector)) == {("0", "GPU-aaaa", "31"): 3}
    assert len(fake.live_sets) == 1


# --- strings that are not UTF-8 -----------------------------------------------------------------

def test_a_garbled_pci_bus_id_costs_nothing_but_its_own_characters(
        monkeypatch: pytest.MonkeyPatch, collector: GpuCollector) -> None:
    garbled = FakeGpu(uuid="GPU-bbbb", pci_bus_id=RawBytes(b"00000000:AF:00.\xff"))
    FakeNVML([FakeGpu(uuid="GPU-aaaa"), garbled]).install(monkeypatch)
    for _ in range(2):
        result = scrape(collector)
        assert success(result) == 1
        ups = {dict(labels)["uuid"]: v for labels, v in series(result, "inferwatch_gpu_up").items()}
        assert ups == {"GPU-aaaa": 1, "GPU-bbbb": 1}
        info = {dict(labels)["uuid"]: dict(labels)["pci_bus_id"]
                for labels in series(result, "inferwatch_gpu_info")}
        assert info == {"GPU-aaaa": "00000000:3B:00.0", "GPU-bbbb": "00000000:AF:00.\ufffd"}


def test_a_garbled_uuid_costs_only_that_device_never_the_others(
        monkeypatch: pytest.MonkeyPatch, collector: GpuCollector) -> None:
    FakeNVML([FakeGpu(uuid="GPU-aaaa", temperature=55),
              FakeGpu(uuid=RawBytes(b"GPU-\xfe\xff"), temperature=66)]).install(monkeypatch)
    result = scrape(collector)
    assert success(result) == 1
    temperatures = {dict(labels)["uuid"]: v for labels, v in
                    series(result, "inferwatch_gpu_temperature_celsius").items()}
    # The uuid is a label value all the same: its bytes, undecodable ones replaced.
    assert temperatures == {"GPU-aaaa": 55, "GPU-\ufffd\ufffd": 66}


# --- bounded series when GPUs come and go ---------------------------------------------------------

def churn(fake: FakeNVML, collector: GpuCollector, clock: Clock, swaps: int,
          xid: int | None = None, fail: dict | None = None) -> Samples:
    """Swap the GPU on the bus `swaps` times (a new uuid each time) and scrape through it."""
    result = scrape(collector)  # NVML up with no GPU on the bus yet
    for i in range(swaps):
        fake.plug([FakeGpu(uuid=f"GPU-{i:04d}", fail=dict(fail or {}))])
        scrape(collector)  # the old GPU is lost: a restart is due after the backoff
        clock.now += 60
        result = scrape(collector)  # NVML restarted: the new GPU is read (and registered)
        assert success(result) == 1
        if xid is not None:
            fake.emit_xid(0, xid)
            result = scrape(collector)
    return result


def test_nvml_error_series_stay_under_the_cap_as_uuids_churn(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, collector: GpuCollector) -> None:
    monkeypatch.setattr(gpu_module, "MAX_ERROR_SERIES", 4)
    fake = FakeNVML([]).install(monkeypatch)
    result = churn(fake, collector, clock, 30,
                   fail={"nvmlDeviceGetPowerUsage": pynvml.NVMLError_Unknown})
    errors = series(result, ERRORS)
    # The cap, plus at most one folded series per device index and field.
    assert len(errors) <= 4 + 1
    # Folding loses the labels, never the count: one failed power read per read scrape.
    assert sum(v for labels, v in errors.items() if ("field", "power") in labels) == 30
    assert frozenset({"gpu": "0", "uuid": OTHER, "field": "power", "reason": OTHER}.items()) \
        in errors


def test_xid_series_stay_under_the_cap_as_uuids_churn(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, collector: GpuCollector) -> None:
    monkeypatch.setattr(nvml_xid, "MAX_XID_SERIES", 4)
    fake = FakeNVML([]).install(monkeypatch)
    result = churn(fake, collector, clock, 30, xid=79)
    counted = xids(result)
    assert len(counted) <= 4 + 1
    assert sum(counted.values()) == 30
    assert counted[("0", OTHER, OTHER)] == 26


def test_a_garbled_driver_version_never_takes_the_gpu_collector_down(
        monkeypatch: pytest.MonkeyPatch, collector: GpuCollector) -> None:
    FakeNVML([FakeGpu(uuid="GPU-aaaa")],
             driver_version=RawBytes(b"550.54.15\xa0beta")).install(monkeypatch)
    result = scrape(collector)
    assert success(result) == 1
    (info,) = series(result, "inferwatch_gpu_info")
    assert dict(info)["driver_version"] == "550.54.15\ufffdbeta"
    assert series(result, ERRORS) == {}


def test_a_garbled_gpu_name_is_its_label_not_an_error_on_every_scrape(
        monkeypatch: pytest.MonkeyPatch, collector: GpuCollector) -> None:
    # An OEM board name in a legacy code page: "(TM)" as the single byte 0x99.
    fake = FakeNVML([FakeGpu(uuid="GPU-aaaa", name=RawBytes(b"Quadro\x99 RTX 8000"))]
                    ).install(monkeypatch)
    for _ in range(3):
        result = scrape(collector)
        assert success(result) == 1
        (info,) = series(result, "inferwatch_gpu_info")
        assert dict(info)["name"] == "Quadro\ufffd RTX 8000"
        # Nothing failed: no error counted (InferwatchGpuReadErrors would fire for good).
        assert series(result, ERRORS) == {}
    assert fake.calls["nvmlDeviceGetName"] == 1  # identity cached as for any name


# --- per-process memory -----------------------------------------------------------------------

def process_names(result: Samples) -> dict[str, str]:
    return {dict(labels)["pid"]: dict(labels)["process"]
            for labels in series(result, "inferwatch_gpu_process_memory_bytes")}


def test_a_process_name_that_is_not_utf8_keeps_its_readable_part(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNVML([FakeGpu(uuid="GPU-aaaa", processes=[(4242, 2**30, 0xFFFFFFFF,
                                                           0xFFFFFFFF)])]).install(monkeypatch)
    fake.process_names = {4242: RawBytes(b"/opt/mod\xe8le/serve")}
    collector = GpuCollector(process_memory=True)
    try:
        assert process_names(scrape(collector)) == {"4242": "/opt/mod\ufffdle/serve"}
    finally:
        collector.close()


def test_a_passing_process_name_failure_is_not_kept_for_the_life_of_the_pid(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNVML([FakeGpu(uuid="GPU-aaaa", processes=[(4242, 2**30, 0xFFFFFFFF,
                                                           0xFFFFFFFF)])]).install(monkeypatch)
    fake.process_names = {4242: "python3"}
    collector = GpuCollector(process_memory=True)
    try:
        fake.fail = {"nvmlSystemGetProcessName": pynvml.NVMLError_Unknown}
        assert process_names(scrape(collector)) == {"4242": ""}
        fake.fail = {}
        assert process_names(scrape(collector)) == {"4242": "python3"}
        # A process outside this pid namespace is asked once, not on every scrape.
        fake.process_names = {}
        fake.gpus[0].processes.append((777, 2**20, 0xFFFFFFFF, 0xFFFFFFFF))
        asked = fake.calls["nvmlSystemGetProcessName"]
        for _ in range(3):
            assert process_names(scrape(collector)) == {"4242": "python3", "777": ""}
        assert fake.calls["nvmlSystemGetProcessName"] == asked + 1
    finally:
        collector.close()


def test_every_garbled_device_string_at_once_passes_promtool(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNVML([FakeGpu(uuid=RawBytes(b'GPU-\xff"\\\n'), name=RawBytes(b'Q\x99 "x"\n'),
                             pci_bus_id=RawBytes(b"00000000:AF:00.\xff"),
                             processes=[(5, 2**20, 0xFFFFFFFF, 0xFFFFFFFF)])],
                    driver_version=RawBytes(b"550\xa0")).install(monkeypatch)
    fake.process_names = {5: RawBytes(b'serve\xe8\n"')}
    collector = GpuCollector(process_memory=True)
    try:
        text = scrape_text(collector)
    finally:
        collector.close()
    (info,) = [dict(s.labels) for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == "inferwatch_gpu_info"]
    assert info["uuid"] == 'GPU-\ufffd"\\\n' and info["name"] == 'Q\ufffd "x"\n'
    checked = subprocess.run([require_binary("promtool"), "check", "metrics"], input=text,
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
