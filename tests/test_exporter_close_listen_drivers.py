"""The standalone exporter, fourth pass: NVML inits that outlive a failed start, closing
every collector, listen addresses that mean nothing, and old drivers' process lists."""

from __future__ import annotations

import argparse

import pynvml
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fake_nvml import NOT_MIG, FakeGpu, FakeNVML
from inferwatch.standalone import cli, scrape
from inferwatch.standalone.collectors.gpu import GpuCollector
from test_gpu_edges import ERRORS, series, success
from test_gpu_edges import scrape as scrape_gpu

GIB = 2**30
MEMORY = "inferwatch_gpu_process_memory_bytes"


def process_memory(result: dict) -> dict[tuple[str, str], float]:
    return {(dict(labels)["gpu"], dict(labels)["pid"]): value
            for labels, value in series(result, MEMORY).items()}


# --- NVML's init after a start that failed twice over --------------------------------------

def test_close_gives_back_an_init_whose_shutdown_failed_after_a_failed_version_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNVML([FakeGpu(uuid="GPU-a")]).install(monkeypatch)
    fake.fail["nvmlSystemGetDriverVersion"] = pynvml.NVMLError_Unknown
    fake.fail["nvmlShutdown"] = pynvml.NVMLError_Unknown
    collector = GpuCollector()
    result = scrape_gpu(collector)
    assert success(result) == 0
    assert fake.refcount == 1  # the shutdown failed: the init is still held
    # The driver answers again by the time the exporter stops.
    fake.fail.clear()
    collector.close()
    assert fake.refcount == 0
    assert fake.calls["nvmlInitWithFlags"] == 1


def test_close_gives_back_an_init_whose_shutdown_failed_after_a_failed_count(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNVML([FakeGpu(uuid="GPU-a")]).install(monkeypatch)
    fake.fail["nvmlDeviceGetCount_v2"] = pynvml.NVMLError_Unknown
    fake.fail["nvmlShutdown"] = pynvml.NVMLError_Unknown
    collector = GpuCollector()
    assert success(scrape_gpu(collector)) == 0
    assert fake.refcount == 1
    fake.fail.clear()
    collector.close()
    assert fake.refcount == 0


# --- Collector.close on the base class ---------------------------------------------------

class Plain(scrape.Collector):
    name = "plain"

    def collect(self):
        return []


def test_every_collector_has_a_close_that_the_exporter_calls(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert Plain().close() is None
    closed: list[str] = []
    original = scrape.Collector.close

    def spy(self: scrape.Collector) -> None:
        closed.append(self.name)
        original(self)

    monkeypatch.setattr(scrape.Collector, "close", spy)
    cli.close_collectors([Plain()], timeout=5.0)
    assert closed == ["plain"]


# --- listen addresses ------------------------------------------------------------------------

@settings(max_examples=50)
@given(port=st.integers(0, 65535))
def test_empty_brackets_are_refused_not_taken_for_every_interface(port: int) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="inside the brackets"):
        cli.listen_address(f"[]:{port}")


def test_empty_brackets_stop_the_exporter_naming_the_flag(run_main) -> None:
    status, err = run_main(["--web.listen-address=[]:9400"])
    assert status == 2
    assert "argument --web.listen-address" in err and "[]:9400" in err


@settings(max_examples=50)
@given(port=st.integers(0, 65535))
def test_bracketed_ipv6_addresses_are_still_taken(port: int) -> None:
    assert cli.listen_address(f"[::1]:{port}") == ("::1", port)
    assert cli.listen_address(f"[::]:{port}") == ("::", port)


# --- the fake driver's optional process lists ----------------------------------------------

processes = st.lists(st.tuples(st.integers(1, 4_194_304), st.integers(0, 40 * GIB)),
                     max_size=8, unique_by=lambda p: p[0])


@settings(max_examples=25, deadline=None)
@given(compute=processes, mps=processes, graphics=processes)
def test_a_driver_with_only_v2_process_lists_still_gets_every_process(
        compute, mps, graphics) -> None:
    pids = [pid for pid, _ in compute + mps + graphics]
    assume(len(set(pids)) == len(pids))  # a pid in two lists is summed: covered elsewhere
    gpu = FakeGpu(uuid="GPU-a",
                  processes=[(pid, used, NOT_MIG, NOT_MIG) for pid, used in compute],
                  mps_processes=[(pid, used, NOT_MIG, NOT_MIG) for pid, used in mps],
                  graphics_processes=[(pid, used, NOT_MIG, NOT_MIG) for pid, used in graphics])
    with pytest.MonkeyPatch.context() as patch:
        fake = FakeNVML([gpu], v2_processes=True, process_lists=True).install(patch)
        fake.missing = {"nvmlDeviceGetComputeRunningProcesses_v3",
                        "nvmlDeviceGetMPSComputeRunningProcesses_v3",
                        "nvmlDeviceGetGraphicsRunningProcesses_v3"}
        result = scrape_gpu(GpuCollector(process_memory=True))
        for symbol in ("nvmlDeviceGetComputeRunningProcesses_v2",
                       "nvmlDeviceGetMPSComputeRunningProcesses_v2",
                       "nvmlDeviceGetGraphicsRunningProcesses_v2"):
            assert fake.calls[symbol] >= 1, symbol
    assert series(result, ERRORS) == {}
    assert process_memory(result) == {("0", str(pid)): float(used)
                                      for pid, used in compute + mps + graphics}


def test_the_optional_process_lists_stay_missing_unless_asked_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = FakeGpu(uuid="GPU-a", mps_processes=[(7, GIB, NOT_MIG, NOT_MIG)])
    FakeNVML([gpu]).install(monkeypatch)
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        for function in (pynvml.nvmlDeviceGetMPSComputeRunningProcesses_v3,
                         pynvml.nvmlDeviceGetComputeRunningProcesses_v2,
                         pynvml.nvmlDeviceGetGraphicsRunningProcesses_v3):
            with pytest.raises(pynvml.NVMLError_FunctionNotFound):
                function(handle)
    finally:
        pynvml.nvmlShutdown()
    result = scrape_gpu(GpuCollector(process_memory=True))
    assert process_memory(result) == {}  # the MPS client is not seen without the list


@pytest.mark.parametrize("address", ["http://0.0.0.0:9400", "https://localhost:9400",
                                     "http://[::1]:9400"])
def test_a_pasted_url_is_refused_as_a_url_not_as_an_unbracketed_ipv6(run_main,
                                                                      address: str) -> None:
    status, err = run_main([f"--web.listen-address={address}"])
    assert status == 2
    assert "argument --web.listen-address" in err and "not a URL" in err
    assert "IPv6" not in err


@settings(max_examples=50)
@given(host=st.sampled_from(["[localhost", "[::1", "[::1]]", "[[::1]]", "localhost]",
                             "[127.0.0.1"]),
       port=st.integers(0, 65535))
def test_unbalanced_brackets_are_a_usage_error_not_a_failed_lookup_at_bind(
        host: str, port: int) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="brackets go around"):
        cli.listen_address(f"{host}:{port}")


# --- a collector's sample values the exposition cannot write ---------------------------------

class BadNumbers(scrape.Collector):
    name = "bad_numbers"

    def __init__(self, value: object, timestamp: object = None) -> None:
        self.value, self.timestamp = value, timestamp

    def collect(self):
        family = scrape.describe_families(["inferwatch_process_threads"])[0]
        family.add_sample(family.name, {"pid": "1", "process": "x"}, self.value,
                          timestamp=self.timestamp)
        return [family]


class Good(scrape.Collector):
    name = "good"

    def collect(self):
        metrics = scrape.MetricSet()
        metrics.add("inferwatch_process_open_fds", {"pid": "2", "process": "y"}, 7)
        return metrics.families()


@pytest.mark.parametrize(("value", "timestamp"), [
    (None, None), ("many", None), (object(), None), ([1], None),
    (1.0, float("nan")), (1.0, float("inf")), (1.0, "soon")])
def test_a_value_that_is_not_a_number_costs_only_its_collector(value, timestamp) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry()
    registry.register(scrape.Scraper([BadNumbers(value, timestamp), Good()], timeout=5.0))
    text = generate_latest(registry).decode()
    result = {(s.name, frozenset(s.labels.items())): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}
    ok = "inferwatch_exporter_collector_success"
    assert result[(ok, frozenset({("collector", "bad_numbers")}))] == 0
    assert result[(ok, frozenset({("collector", "good")}))] == 1
    assert result[("inferwatch_process_open_fds",
                   frozenset({"pid": "2", "process": "y"}.items()))] == 7
    assert not any(name == "inferwatch_process_threads" for name, _ in result)


@settings(max_examples=50)
@given(value=st.one_of(st.integers(-2**53, 2**53), st.floats(allow_nan=True)),
       timestamp=st.one_of(st.none(), st.floats(0, 4e9)))
def test_numbers_of_any_kind_still_pass(value, timestamp) -> None:
    family = scrape.describe_families(["inferwatch_process_threads"])[0]
    family.add_sample(family.name, {"pid": "1", "process": "x"}, value, timestamp=timestamp)
    assert scrape._renderable([family]) == [family]
