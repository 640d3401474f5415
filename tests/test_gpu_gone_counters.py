"""The counters of a GPU that went away go with it once the Xid window has passed, and
NVML's integer milliwatts and millijoules are exposed as the exact decimal divided by 1000.

NVML enumerates devices only at init, as the fake does (``FakeNVML.plug``); the collector's
clock is injected, so the restarts that find devices anew are driven without sleeping.
"""

from __future__ import annotations

import pynvml
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import test_gpu_edges
from fake_nvml import FakeGpu, FakeNVML
from inferwatch.standalone.collectors.gpu import GONE_HOLD_SECONDS, GpuCollector
from test_gpu_edges import ERRORS, XID, Clock, Samples, scrape, series, success

# The fixtures of test_gpu_edges: a clock the test moves, a collector reading it.
clock, collector = test_gpu_edges.clock, test_gpu_edges.collector

U64 = 2**64 - 1  # nvmlDeviceGetTotalEnergyConsumption: unsigned long long
U32 = 2**32 - 1  # power readings: unsigned int


def counters(result: Samples) -> dict[tuple[str, frozenset], float]:
    """The Xid and NVML-error counter series that name a GPU (host-wide ones left out)."""
    return {(name, labels): v for (name, labels), v in result.items()
            if name in (XID, ERRORS) and dict(labels)["gpu"]}


def worn(result: Samples) -> set[tuple[str, str]]:
    """The (gpu, uuid) pairs the counter series wear."""
    return {(dict(labels)["gpu"], dict(labels)["uuid"]) for _, labels in counters(result)}


def failing_gpu(uuid: str) -> FakeGpu:
    """A GPU whose clock reads fail: one NVML-error count per clock per scrape."""
    return FakeGpu(uuid=uuid, fail={"nvmlDeviceGetClockInfo": pynvml.NVMLError_Unknown})


@pytest.mark.parametrize("how", ["lost", "uncounted"])
def test_a_gone_gpu_keeps_its_counters_for_the_xid_window_then_they_go(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, collector: GpuCollector,
        how: str) -> None:
    fake = FakeNVML([failing_gpu("GPU-old")]).install(monkeypatch)
    scrape(collector)  # registers the device for Xid events
    fake.emit_xid(0, 79)
    before = scrape(collector)
    assert series(before, XID) == {
        frozenset({"gpu": "0", "uuid": "GPU-old", "xid": "79"}.items()): 1}
    assert worn(before) == {("0", "GPU-old")}
    if how == "lost":
        fake.plug([])  # off the bus: NVML still counts it until it enumerates again
        going = scrape(collector)
        # Reported down under its labels: its counters stay beside its gpu_up 0.
        assert worn(going) == {("0", "GPU-old")}
        clock.now += 10  # the restart finds no device
    else:
        fake.gpus = []  # the count drops to 0 under a running NVML
    gone = scrape(collector)
    assert success(gone) == 1
    # The Xid 79 that took it away is what InferwatchGpuXidErrors must still see.
    assert series(gone, XID) == series(before, XID)
    assert worn(gone) == {("0", "GPU-old")}
    clock.now += GONE_HOLD_SECONDS - 20
    assert worn(scrape(collector)) == {("0", "GPU-old")}
    clock.now += 20
    assert counters(scrape(collector)) == {}
    fake.plug([FakeGpu(uuid="GPU-new")])
    clock.now += 40
    back = scrape(collector)
    assert series(back, "inferwatch_gpu_up") == {
        frozenset({"gpu": "0", "uuid": "GPU-new"}.items()): 1}
    assert counters(back) == {}


def test_a_gpu_back_within_the_hold_counts_on_and_after_it_starts_again(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, collector: GpuCollector) -> None:
    gpu = failing_gpu("GPU-aaaa")
    fake = FakeNVML([gpu]).install(monkeypatch)
    scrape(collector)
    fake.emit_xid(0, 48)
    assert series(scrape(collector), XID) != {}  # two scrapes: 4 failed clock reads
    labels = frozenset({"gpu": "0", "uuid": "GPU-aaaa", "field": "clocks",
                        "reason": "unknown"}.items())
    fake.gpus = []
    scrape(collector)
    fake.gpus = [gpu]
    back = scrape(collector)
    assert series(back, XID) == {
        frozenset({"gpu": "0", "uuid": "GPU-aaaa", "xid": "48"}.items()): 1}
    assert series(back, ERRORS) == {labels: 6}  # no counter reset
    fake.gpus = []
    scrape(collector)
    clock.now += GONE_HOLD_SECONDS
    assert counters(scrape(collector)) == {}
    fake.gpus = [gpu]
    again = scrape(collector)
    assert series(again, XID) == {}  # no Xid since it came back
    # One failed read per clock on this scrape: counted from 0 again, not from before.
    assert series(again, ERRORS) == {labels: 2}


def test_the_gpus_that_stay_keep_their_counters_and_a_renumbered_one_drops_its_old_index(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, collector: GpuCollector) -> None:
    a, b, c = failing_gpu("GPU-a"), failing_gpu("GPU-b"), FakeGpu(uuid="GPU-c")
    fake = FakeNVML([a, b, c]).install(monkeypatch)
    scrape(collector)
    for index in range(3):
        fake.emit_xid(index, 13)
    first = scrape(collector)
    assert worn(first) == {("0", "GPU-a"), ("1", "GPU-b"), ("2", "GPU-c")}
    fake.plug([a, c])  # b falls off the bus: c is numbered 1 after the restart
    scrape(collector)
    clock.now += 10
    held = scrape(collector)
    assert worn(held) == {("0", "GPU-a"), ("1", "GPU-b"), ("2", "GPU-c")}
    clock.now += GONE_HOLD_SECONDS
    after = scrape(collector)
    assert success(after) == 1
    assert worn(after) == {("0", "GPU-a")}
    # a kept its Xid and its errors (two per scrape, five scrapes), and counts on.
    assert series(after, XID) == {frozenset({"gpu": "0", "uuid": "GPU-a", "xid": "13"}.items()): 1}
    assert series(after, ERRORS)[frozenset(
        {"gpu": "0", "uuid": "GPU-a", "field": "clocks", "reason": "unknown"}.items())] == 10
    fake.emit_xid(1, 31)
    assert worn(scrape(collector)) == {("0", "GPU-a"), ("1", "GPU-c")}


def test_churning_uuids_leave_only_the_gpus_of_the_last_hour(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, collector: GpuCollector) -> None:
    fake = FakeNVML([]).install(monkeypatch)
    scrape(collector)
    for i in range(8):
        fake.plug([FakeGpu(uuid=f"GPU-{i}")])
        scrape(collector)
        clock.now += GONE_HOLD_SECONDS / 4
        scrape(collector)  # restarted: the new GPU is read and registered
        fake.emit_xid(0, 79)
        result = scrape(collector)
    # GPU-i is read from (i + 1) quarters on, and gone from (i + 2): those gone for an
    # hour or more (GPU-0 to GPU-2, at 8 quarters) took their series along.
    assert {uuid for _, uuid in worn(result)} == {f"GPU-{i}" for i in range(3, 8)}


def test_host_wide_errors_stay_when_every_gpu_goes(
        monkeypatch: pytest.MonkeyPatch, clock: Clock, collector: GpuCollector) -> None:
    fake = FakeNVML([failing_gpu("GPU-aaaa")]).install(monkeypatch)
    fake.fail = {"nvmlEventSetCreate": pynvml.NVMLError_Unknown}
    scrape(collector)
    fake.gpus = []
    scrape(collector)
    clock.now += GONE_HOLD_SECONDS
    result = scrape(collector)
    assert counters(result) == {}
    host_wide = {dict(labels)["field"]: v for labels, v in series(result, ERRORS).items()}
    assert host_wide == {"xid_events": 3}


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(energy=st.one_of(st.integers(0, U64), st.integers(0, 10**13)),
       power=st.integers(0, U32), limit=st.integers(0, U32))
def test_power_and_energy_are_the_exact_nvml_integer_over_1000(
        monkeypatch: pytest.MonkeyPatch, energy: int, power: int, limit: int) -> None:
    with monkeypatch.context() as patch:
        FakeNVML([FakeGpu(uuid="GPU-aaaa", energy_mj=energy, power_mw=power,
                          power_limit_mw=limit)]).install(patch)
        gpu = GpuCollector()
        try:
            result = scrape(gpu)
        finally:
            gpu.close()
    labels = frozenset({"gpu": "0", "uuid": "GPU-aaaa"}.items())
    # x / 1000 is the float nearest the decimal NVML meant; `x * 1e-3` is off for ~13%.
    assert result[("inferwatch_gpu_energy_joules_total", labels)] == energy / 1000
    assert result[("inferwatch_gpu_power_watts", labels)] == power / 1000
    assert result[("inferwatch_gpu_power_limit_watts", labels)] == limit / 1000
