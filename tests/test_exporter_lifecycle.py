"""The standalone exporter's lifecycle (start, Ctrl-C, stop, what it gives back on the way
out), its number flags, and the GPU collector on a driver older than its binding."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pynvml
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter_process import ExporterProcess
from fake_nvml import NOT_MIG, FakeGpu, FakeNVML
from inferwatch.standalone import cli, scrape
from inferwatch.standalone.collectors.gpu import GpuCollector
from inferwatch.standalone.scrape import Scraper

TESTS = Path(__file__).resolve().parent
GIB = 2**30


def samples(*collectors: scrape.Collector) -> dict[tuple[str, frozenset], float]:
    registry = CollectorRegistry()
    registry.register(Scraper(list(collectors), timeout=5.0))
    text = generate_latest(registry).decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def process_memory(result: dict) -> dict[tuple[str, str], float]:
    return {(dict(labels)["gpu"], dict(labels)["pid"]): value
            for (name, labels), value in result.items()
            if name == "inferwatch_gpu_process_memory_bytes"}


def nvml_errors(result: dict) -> dict[tuple[str, str, str], float]:
    return {(dict(labels)["gpu"], dict(labels)["field"], dict(labels)["reason"]): value
            for (name, labels), value in result.items()
            if name == "inferwatch_gpu_nvml_errors_total"}


# --- a real exporter process, with NVML faked below the binding ------------------------------

# The exporter's own entry point, with Python's own Ctrl-C handler whatever the test
# runner's is, behind a fake libnvidia-ml.so.1 that writes what NVML still holds at exit.
EXPORTER = textwrap.dedent("""
    import atexit, json, signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, {tests!r})
    from fake_nvml import FakeGpu, FakeNVML

    class Patch:
        def setattr(self, target, name, value):
            setattr(target, name, value)

    fake = FakeNVML([FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b")]).install(Patch())

    def held():
        with open({marker!r}, "w") as out:
            json.dump({{"inits": fake.refcount, "event_sets": len(fake.live_sets),
                       "shutdowns": fake.calls["nvmlShutdown"]}}, out)

    atexit.register(held)
    from inferwatch.standalone import cli, scrape
    if {broken!r}:
        @scrape.register
        class Broken(scrape.Collector):
            name = "broken"
            def collect(self):
                return []
            def close(self):
                raise RuntimeError("the close of this collector fails")
    sys.exit(cli.main(sys.argv[1:]))
""")


class Exporter(ExporterProcess):
    """The exporter over fake GPUs, leaving in `marker` what NVML it still held at exit."""

    def __init__(self, tmp_path: Path, *argv: str, broken: bool = False) -> None:
        self.marker = tmp_path / "held.json"
        script = EXPORTER.format(tests=str(TESTS), marker=str(self.marker), broken=broken)
        super().__init__(tmp_path, "--no-collector.process", *argv,
                         command=(sys.executable, "-c", script))


@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_stopping_the_exporter_gives_nvml_back(tmp_path: Path, exporters: list,
                                               signum: int) -> None:
    exporter = Exporter(tmp_path)
    exporters.append(exporter)
    text = exporter.get()[1]
    assert "inferwatch_gpu_devices 2.0" in text
    assert 'inferwatch_exporter_collector_success{collector="gpu"} 1.0' in text
    assert exporter.stop(signum) == 0
    # The init reference and the Xid event set the collector took are both given back.
    held = json.loads(exporter.marker.read_text())
    assert held == {"inits": 0, "event_sets": 0, "shutdowns": 1}, \
        exporter.log_path.read_text()


@pytest.mark.integration
def test_a_collector_whose_close_fails_costs_neither_the_others_nor_the_status(
        tmp_path: Path, exporters: list) -> None:
    exporter = Exporter(tmp_path, "--log.format=json", broken=True)
    exporters.append(exporter)
    assert 'collector_success{collector="broken"} 1.0' in exporter.get()[1]
    assert exporter.stop(signal.SIGTERM) == 0
    assert json.loads(exporter.marker.read_text())["inits"] == 0
    lines = [json.loads(line) for line in exporter.log_path.read_text().splitlines()]
    failed = [line for line in lines if line["msg"] == "collector broken could not be closed"]
    assert len(failed) == 1 and "the close of this collector fails" in failed[0]["err"]


class Closing(scrape.Collector):
    name = "closing"

    def __init__(self, release: threading.Event | None = None) -> None:
        self.release = release
        self.closed = threading.Event()

    def collect(self):
        return []

    def close(self) -> None:
        if self.release is not None:
            self.release.wait(timeout=60)  # a driver call that does not return
        self.closed.set()


def test_a_close_that_hangs_does_not_hold_the_exit_nor_the_others() -> None:
    release = threading.Event()
    hung, fine = Closing(release), Closing()
    started = time.monotonic()
    try:
        cli.close_collectors([hung, fine], timeout=0.5)
        assert time.monotonic() - started < 10
        assert fine.closed.is_set() and not hung.closed.is_set()
    finally:
        release.set()
    assert hung.closed.wait(timeout=10)


def test_a_stop_before_the_start_up_probe_ran_leaves_no_nvml_init_behind(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # SIGTERM right after start: close() can get the collector before its probe thread
    # does, and the probe must then not take an init that nothing would give back.
    fake = FakeNVML([FakeGpu(uuid="GPU-a")]).install(monkeypatch)
    collector = GpuCollector()
    collector.close()
    collector.start()
    for probe in [t for t in threading.enumerate() if t.name == "inferwatch-gpu-probe"]:
        probe.join(timeout=10)  # gone already where it had nothing to do
        assert not probe.is_alive()
    assert fake.refcount == 0 and fake.calls["nvmlInitWithFlags"] == 0


# --- Ctrl-C before the stop signals are handled -----------------------------------------------

SLOW_START = textwrap.dedent("""
    import signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from inferwatch.standalone import cli
    load = cli.registered_collectors
    def slow():
        print("loading", flush=True)
        sys.stdin.readline()  # collectors that take their time to load
        return load()
    cli.registered_collectors = slow
    sys.exit(cli.main(["--web.listen-address=127.0.0.1:0"]))
""")


def test_ctrl_c_while_the_collectors_load_is_one_line_and_status_130() -> None:
    process = subprocess.Popen([sys.executable, "-c", SLOW_START], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "loading\n"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in err
    assert err == "inferwatch-exporter: interrupted\n"
    assert process.returncode == 130


def test_main_called_as_a_function_gives_the_signals_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import inferwatch.serving.server

    class Server:
        url = "http://127.0.0.1:1/metrics"

        def shutdown(self) -> None:
            pass

    def serve(*args: object, **kwargs: object) -> Server:
        os.kill(os.getpid(), signal.SIGTERM)  # stopped as soon as it serves
        return Server()

    monkeypatch.setattr(inferwatch.serving.server, "serve", serve)
    monkeypatch.setattr(cli, "configure_logging", lambda level, fmt: None)
    before = {signum: signal.getsignal(signum) for signum in cli.STOP_SIGNALS}
    try:
        assert cli.main(["--web.listen-address=127.0.0.1:0",
                         "--collector.disable-defaults"]) == 0
        after = {signum: signal.getsignal(signum) for signum in cli.STOP_SIGNALS}
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    # Ctrl-C in the caller must work again, not set an event nobody waits on.
    assert after == before


# --- --scrape.timeout takes what the other number flags take ---------------------------------

def parse_error(*argv: str) -> str:
    """The usage error for a command line (empty when it is accepted)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
        cli.build_parser().parse_args(list(argv))
    return err.getvalue()


ARABIC_INDIC = str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666"
                                           "\u0667\u0668\u0669")
FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + i) for i in range(10)))
seconds_text = st.builds(lambda whole, part: f"{whole}.{part}" if part else str(whole),
                         st.integers(1, 86399), st.sampled_from(["", "5", "25", "125"]))


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(number=seconds_text, unit=st.sampled_from(["", "s"]),
       slip=st.sampled_from(["underscore", "arabic", "fullwidth", "lead", "trail", "tab"]))
def test_a_scrape_timeout_that_is_not_plain_digits_is_refused_naming_the_flag(
        number: str, unit: str, slip: str) -> None:
    assert parse_error(f"--scrape.timeout={number}{unit}") == ""
    text = {"underscore": f"1_{number}",
            "arabic": number.translate(ARABIC_INDIC),
            "fullwidth": number.translate(FULLWIDTH),
            "lead": f" {number}", "trail": f"{number} ", "tab": f"\t{number}"}[slip] + unit
    assert "argument --scrape.timeout:" in parse_error(f"--scrape.timeout={text}")


@pytest.mark.parametrize("text, seconds", [("5", 5.0), ("5s", 5.0), ("2.5s", 2.5),
                                           (".5", 0.5), ("86400", 86400.0)])
def test_plain_scrape_timeouts_are_still_taken(text: str, seconds: float) -> None:
    assert cli.build_parser().parse_args([f"--scrape.timeout={text}"]).scrape_timeout \
        == seconds


def test_the_number_flags_agree_on_what_a_number_is() -> None:
    for flag in ("--web.max-requests", "--scrape.timeout"):
        for text in ("1_0", "\u0665", " 5", "5 "):
            assert f"argument {flag}:" in parse_error(f"{flag}={text}"), (flag, text)


# --- per-process memory on a driver older than the binding ------------------------------------

class OldDriver(FakeNVML):
    """A driver before 510.39: the ``_v2`` process lists and not the ``_v3`` ones the
    binding's unversioned functions call."""

    def __init__(self, gpus: list[FakeGpu]) -> None:
        super().__init__(gpus, process_record_size=24)
        self.missing = {"nvmlDeviceGetComputeRunningProcesses_v3"}

    def c_nvmlDeviceGetComputeRunningProcesses_v2(self, handle: object, count: object,
                                                  records: object) -> None:
        # The same records in the same 24-byte layout as the v3 call writes on new drivers.
        self.c_nvmlDeviceGetComputeRunningProcesses_v3(handle, count, records)


processes = st.lists(st.tuples(st.integers(1, 4_194_304), st.integers(0, 40 * GIB)),
                     max_size=20, unique_by=lambda p: p[0])


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(first=processes, second=processes)
def test_an_old_driver_still_gets_per_process_memory(first, second) -> None:
    gpus = [FakeGpu(uuid="GPU-a", processes=[(pid, used, NOT_MIG, NOT_MIG)
                                             for pid, used in first]),
            FakeGpu(uuid="GPU-b", processes=[(pid, used, NOT_MIG, NOT_MIG)
                                             for pid, used in second])]
    with pytest.MonkeyPatch.context() as patch:
        fake = OldDriver(gpus).install(patch)
        result = samples(GpuCollector(process_memory=True))
        assert fake.calls["nvmlDeviceGetComputeRunningProcesses_v2"] >= 1
    assert nvml_errors(result) == {}
    assert process_memory(result) == {
        **{("0", str(pid)): float(used) for pid, used in first},
        **{("1", str(pid)): float(used) for pid, used in second}}
    for gpu, uuid in (("0", "GPU-a"), ("1", "GPU-b")):
        assert result[("inferwatch_gpu_field_available", frozenset(
            {"gpu": gpu, "uuid": uuid, "field": "processes"}.items()))] == 1


def test_a_binding_without_the_v2_wrapper_still_counts_the_mismatch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    OldDriver([FakeGpu(uuid="GPU-a", processes=[(4242, GIB, NOT_MIG, NOT_MIG)])]).install(
        monkeypatch)
    monkeypatch.delattr(pynvml, "nvmlDeviceGetComputeRunningProcesses_v2")
    result = samples(GpuCollector(process_memory=True))
    assert process_memory(result) == {}
    assert nvml_errors(result) == {("0", "processes", "library_mismatch"): 1}
    assert result[("inferwatch_gpu_up", frozenset({"gpu": "0", "uuid": "GPU-a"}.items()))] == 1


def test_an_old_driver_whose_v2_list_fails_counts_that_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = FakeGpu(uuid="GPU-a", processes=[(4242, GIB, NOT_MIG, NOT_MIG)])
    fake = OldDriver([gpu]).install(monkeypatch)
    fake.fail["nvmlDeviceGetComputeRunningProcesses_v2"] = pynvml.NVMLError_Unknown
    result = samples(GpuCollector(process_memory=True))
    assert process_memory(result) == {}
    assert nvml_errors(result) == {("0", "processes", "unknown"): 1}
