"""The GPU collector where real fleets differ from a plain CUDA box: MPS clients and
graphics contexts, a slow GPU among fast ones, GPUs a container may not open, and the
WSL driver's v2 memory refusal."""

from __future__ import annotations

import ctypes

import pynvml
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fake_nvml import NOT_AVAILABLE, NOT_MIG, PROCESS_RECORD, FakeGpu, FakeNVML, _error, _target
from inferwatch.standalone.collectors.gpu import GpuCollector
from test_gpu_edges import ERRORS, Clock, scrape, series, success

GIB = 2**30
MEMORY = "inferwatch_gpu_process_memory_bytes"
Process = tuple[int, int | None, int, int]


class ListsNVML(FakeNVML):
    """The fake driver, with MPS client and graphics process lists per device index."""

    def __init__(self, gpus: list[FakeGpu], **kwargs: object) -> None:
        super().__init__(gpus, **kwargs)  # type: ignore[arg-type]
        self.mps: dict[int, list[Process]] = {}
        self.graphics: dict[int, list[Process]] = {}

    def _write(self, symbol: str, processes: list[Process], count: object,
               records: object) -> None:
        wanted, room = len(processes), _target(count).value
        _target(count).value = wanted
        if wanted == 0:
            return
        if records is None or room < wanted:
            raise _error(pynvml.NVMLError_InsufficientSize)
        layout = PROCESS_RECORD[self.process_record_size]
        base = ctypes.addressof(records)  # type: ignore[arg-type]
        for i, (pid, used, gpu_instance, compute_instance) in enumerate(processes):
            record = layout(pid=pid, usedGpuMemory=NOT_AVAILABLE if used is None else used,
                            gpuInstanceId=gpu_instance, computeInstanceId=compute_instance)
            ctypes.memmove(base + i * ctypes.sizeof(layout), ctypes.addressof(record),
                           ctypes.sizeof(layout))

    def c_nvmlDeviceGetMPSComputeRunningProcesses_v3(self, handle: object, count: object,
                                                     records: object) -> None:
        index, _ = self._device("nvmlDeviceGetMPSComputeRunningProcesses_v3", handle)
        self._write("mps", self.mps.get(index, []), count, records)

    def c_nvmlDeviceGetGraphicsRunningProcesses_v3(self, handle: object, count: object,
                                                   records: object) -> None:
        index, _ = self._device("nvmlDeviceGetGraphicsRunningProcesses_v3", handle)
        self._write("graphics", self.graphics.get(index, []), count, records)


def process_memory(result: dict) -> dict[tuple[str, str], float]:
    return {(d["gpu"], d["pid"]): v
            for d, v in ((dict(k), v) for k, v in series(result, MEMORY).items())}


def errors(result: dict) -> dict[tuple[str, str, str], float]:
    return {(d["gpu"], d["field"], d["reason"]): v
            for d, v in ((dict(k), v) for k, v in series(result, ERRORS).items())}


@pytest.fixture
def collector():
    gpu = GpuCollector(process_memory=True)
    yield gpu
    gpu.close()


# --- per-process memory from every list NVML keeps ------------------------------------------

def test_mps_clients_and_graphics_processes_have_their_memory_reported(
        monkeypatch: pytest.MonkeyPatch, collector: GpuCollector) -> None:
    # Under MPS the clients do not show in the compute list: only the MPS server does.
    fake = ListsNVML([FakeGpu(uuid="GPU-aaaa", processes=[(100, GIB, NOT_MIG, NOT_MIG)])])
    fake.mps[0] = [(201, 2 * GIB, NOT_MIG, NOT_MIG), (202, 3 * GIB, NOT_MIG, NOT_MIG)]
    fake.graphics[0] = [(300, GIB // 2, NOT_MIG, NOT_MIG)]
    fake.install(monkeypatch)
    result = scrape(collector)
    assert success(result) == 1
    assert process_memory(result) == {("0", "100"): GIB, ("0", "201"): 2 * GIB,
                                      ("0", "202"): 3 * GIB, ("0", "300"): GIB // 2}
    assert errors(result) == {}


# pids drawn so that the same pid often sits in more than one list
_PROCESSES = st.lists(st.tuples(st.integers(1, 6), st.integers(0, 4 * GIB)), max_size=4,
                      unique_by=lambda p: p[0])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(compute=_PROCESSES, mps=_PROCESSES, graphics=_PROCESSES)
def test_a_pid_in_several_lists_is_counted_once(
        monkeypatch: pytest.MonkeyPatch, compute: list, mps: list, graphics: list) -> None:
    with monkeypatch.context() as patch:
        fake = ListsNVML([FakeGpu(uuid="GPU-aaaa",
                                  processes=[(p, u, NOT_MIG, NOT_MIG) for p, u in compute])])
        # NVML reports a process's whole memory in each list it is in.
        whole = {pid: used for pid, used in compute + mps + graphics}
        fake.mps[0] = [(p, whole[p], NOT_MIG, NOT_MIG) for p, _ in mps]
        fake.graphics[0] = [(p, whole[p], NOT_MIG, NOT_MIG) for p, _ in graphics]
        fake.gpus[0].processes = [(p, whole[p], NOT_MIG, NOT_MIG) for p, _ in compute]
        fake.install(patch)
        collector = GpuCollector(process_memory=True)
        try:
            result = scrape(collector)
        finally:
            collector.close()
    expected = {("0", str(pid)): used for pid, used in whole.items()}
    assert process_memory(result) == expected
    assert sum(process_memory(result).values()) == sum(whole.values())


@pytest.mark.parametrize("how", ["driver", "binding"])
def test_a_driver_or_binding_without_the_extra_lists_still_reports_compute_processes(
        monkeypatch: pytest.MonkeyPatch, collector: GpuCollector, how: str) -> None:
    fake = ListsNVML([FakeGpu(uuid="GPU-aaaa", processes=[(100, GIB, NOT_MIG, NOT_MIG)])])
    fake.install(monkeypatch)
    if how == "driver":
        fake.missing |= {"nvmlDeviceGetMPSComputeRunningProcesses_v3",
                         "nvmlDeviceGetGraphicsRunningProcesses_v3"}
    else:
        monkeypatch.delattr(pynvml, "nvmlDeviceGetMPSComputeRunningProcesses")
        monkeypatch.delattr(pynvml, "nvmlDeviceGetGraphicsRunningProcesses")
    result = scrape(collector)
    assert success(result) == 1
    assert process_memory(result) == {("0", "100"): GIB}
    assert errors(result) == {}
    labels = frozenset({"gpu": "0", "uuid": "GPU-aaaa", "field": "processes"}.items())
    assert result[("inferwatch_gpu_field_available", labels)] == 1


# --- a slow GPU among fast ones -------------------------------------------------------------

class SlowNVML(FakeNVML):
    """Every call on one device advances the collector's clock, as a sick GPU takes."""

    def __init__(self, gpus: list[FakeGpu], clock: Clock, slow: int, seconds: float) -> None:
        super().__init__(gpus)
        self.clock, self.slow, self.seconds = clock, slow, seconds

    def _check(self, symbol: str, gpu: FakeGpu) -> None:  # type: ignore[override]
        if gpu is self.gpus[self.slow]:
            self.clock.now += self.seconds
        FakeNVML._check(symbol, gpu)


def test_a_slow_gpu_spends_only_its_share_and_the_others_keep_their_series(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    gpus = [FakeGpu(uuid="GPU-slow", temperature=70), FakeGpu(uuid="GPU-fast", temperature=40),
            FakeGpu(uuid="GPU-fast2", temperature=41)]
    SlowNVML(gpus, clock, slow=0, seconds=1.0).install(monkeypatch)
    collector = GpuCollector(clock=clock, budget=3.0)
    try:
        scrape(collector)  # identity is read and cached once, whatever it costs
        started = clock.now
        result = scrape(collector)
    finally:
        collector.close()
    # One second of budget for the slow GPU, and at most the one call under way past it.
    assert clock.now - started <= 1.0 + 1.0
    assert success(result) == 1
    temperatures = {dict(k)["uuid"]: v for k, v in
                    series(result, "inferwatch_gpu_temperature_celsius").items()}
    assert temperatures["GPU-fast"] == 40 and temperatures["GPU-fast2"] == 41
    for uuid in ("GPU-fast", "GPU-fast2"):
        up = frozenset({"gpu": str(["GPU-slow", "GPU-fast", "GPU-fast2"].index(uuid)),
                        "uuid": uuid}.items())
        assert result[("inferwatch_gpu_up", up)] == 1
    skipped = {field for (gpu, field, why) in errors(result)
               if gpu == "0" and why == "deadline_exceeded"}
    assert {"temperature", "power", "clocks"} <= skipped
    assert result[("inferwatch_gpu_up", frozenset({"gpu": "0", "uuid": "GPU-slow"}.items()))] == 1
    assert not any(gpu != "0" for gpu, _, _ in errors(result))


def test_a_budget_that_is_not_a_positive_number_is_refused_by_name() -> None:
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="GPU read budget"):
            GpuCollector(budget=bad)


# --- a GPU the container may not open ---------------------------------------------------------

def test_a_gpu_denied_by_the_device_cgroup_is_not_reported_lost(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    gpus = [FakeGpu(uuid="GPU-aaaa"), FakeGpu(uuid="GPU-bbbb")]
    gpus[1].fail["nvmlDeviceGetHandleByIndex_v2"] = pynvml.NVMLError_NoPermission
    fake = FakeNVML(gpus).install(monkeypatch)
    collector = GpuCollector(clock=clock, retry_initial=10, retry_max=40)
    try:
        for _ in range(3):
            result = scrape(collector)
            clock.now += 60
    finally:
        collector.close()
    assert success(result) == 1
    ups = {dict(k)["gpu"]: v for k, v in series(result, "inferwatch_gpu_up").items()}
    assert ups == {"0": 1}  # no gpu_up 0: that pages as a GPU fallen off the bus
    denied = frozenset({"gpu": "1", "uuid": "", "field": "device"}.items())
    assert result[("inferwatch_gpu_field_available", denied)] == 0
    # Restarting NVML cannot open the device: the healthy GPU keeps its handle.
    assert fake.calls["nvmlInitWithFlags"] == 1


# --- the v2 memory struct under WSL -------------------------------------------------------------

@pytest.mark.parametrize("error", [pynvml.NVMLError_Unknown, pynvml.NVMLError_NotSupported,
                                   pynvml.NVMLError_ArgumentVersionMismatch])
def test_a_v2_memory_refusal_falls_back_to_v1(
        monkeypatch: pytest.MonkeyPatch, collector: GpuCollector, error: type) -> None:
    gpu = FakeGpu(uuid="GPU-aaaa", memory_used=3 * GIB, memory_total=16 * GIB)
    gpu.fail["nvmlDeviceGetMemoryInfo_v2"] = error
    FakeNVML([gpu]).install(monkeypatch)
    result = scrape(collector)
    labels = frozenset({"gpu": "0", "uuid": "GPU-aaaa"}.items())
    assert result[("inferwatch_gpu_memory_used_bytes", labels)] == 3 * GIB
    assert result[("inferwatch_gpu_memory_total_bytes", labels)] == 16 * GIB
    assert errors(result) == {}
