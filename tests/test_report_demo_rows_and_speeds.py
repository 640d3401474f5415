"""The report's counts, the profile command's docstrings, and the demo's console, traffic and
speeds, used the way people use them: prediction files with gaps, a million rows, a closed
terminal, a slow model service, `kill`, and speeds typed by hand."""

from __future__ import annotations

import argparse
import doctest
import http.server
import math
import os
import pty
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.quality.reference import Reference
from waiting import wait_until

HOST = "127.0.0.1"


# --- the report: predictions without a value ---------------------------------------------------

_PREDICTIONS_ONLY = Reference.from_data({}, predictions=np.arange(100.0))
_PREDICTION = st.one_of(st.floats(0, 99, allow_nan=False), st.just(math.nan), st.none())


@settings(max_examples=60, deadline=None)
@given(st.lists(_PREDICTION, min_size=1, max_size=60))
def test_an_outputs_only_report_counts_every_prediction_row(values: list[float | None]) -> None:
    # NaN and None predictions were in no count: the page said 2 rows compared for 4 rows,
    # with nothing missing, and an "empty_batch" input error nobody had made.
    from inferwatch.report.model import from_data

    report = from_data(_PREDICTIONS_ONLY, {}, predictions=values)
    absent = sum(1 for v in values if v is None or math.isnan(v))
    assert report.rows == len(values)
    assert report.quality["value"]["missing"] == absent
    assert report.outputs[0].rows + report.quality["value"]["missing"] == len(values)
    assert "empty_batch" not in report.input_errors


def test_the_report_command_counts_prediction_rows_with_empty_cells(tmp_path: Path) -> None:
    from inferwatch.report import cli

    reference = tmp_path / "reference.json"
    _PREDICTIONS_ONLY.save(str(reference))
    data = tmp_path / "live.csv"
    data.write_text('score\n1.5\n""\nnan\n7\n4\n', encoding="utf-8")
    out = tmp_path / "report.html"
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--reference", str(reference), str(data), "-o", str(out),
                              "--predictions-column", "score"])
    assert cli.run(args) == 0
    page = out.read_text(encoding="utf-8")
    assert 'data-key="drift_rows" data-value="5"' in page
    assert 'data-key="missing|value" data-value="2.0"' in page


def test_a_million_rows_read_as_whole_numbers_on_the_page() -> None:
    # `:g` wrote 1e+06 rows, 1.23457e+06 missing values and a class of 2e+06 predictions.
    from inferwatch.report.model import Distribution, ModelReport
    from inferwatch.report.page import report_page
    from inferwatch.report.svg import bars

    feature = Distribution("amount", "numeric", ("< 1", ">= 1"), (0.5, 0.5),
                           (400_000.0, 600_000.0), {"psi": 0.1, "js": 0.1, "ks": 0.1}, (1.0,))
    report = ModelReport("big", "", "", 0.0, 1_000_000, [feature], [],
                         {"amount": {"missing": 1_234_567.0, "out_of_range": 0.0}},
                         {"wrong_type": 3_000_000.0})
    page = report_page(report)
    assert "e+0" not in page, [line for line in page.split("<") if "e+0" in line][:5]
    assert "1000000 rows" in page and ">1234567<" in page and "wrong_type: 3000000" in page
    chart = bars(["benign"], [2_000_000.0], title="classes")
    assert "2000000" in chart and "e+06" not in chart


# --- the profile command's docstrings --------------------------------------------------------


def test_the_profile_command_examples_compile_with_warnings_as_errors() -> None:
    # `a\,b` in a plain docstring's example: an invalid escape sequence, a SyntaxWarning
    # (an error under -W error) when doctest or a docs build compiled it.
    from inferwatch.quality import data_files, profile_cli

    for module in (profile_cli, data_files):
        source = Path(module.__file__).read_text(encoding="utf-8")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            compile(source, module.__file__, "exec")
            for test in doctest.DocTestFinder().find(module):
                for example in test.examples:
                    compile(example.source, test.name, "single")


def test_the_split_example_means_what_the_flag_help_says() -> None:
    from inferwatch.quality.column_flags import split_columns

    assert split_columns(["x\\,y,z"]) == ["x,y", "z"]


# --- the console: a terminal that was closed -------------------------------------------------


def test_a_closed_terminal_stops_the_output_without_tracebacks() -> None:
    # A hung-up terminal answers EIO, not EPIPE: the webhook thread died with a traceback and
    # the demo's main thread ended in one.
    script = textwrap.dedent("""
        import sys, threading
        from inferwatch.demo.console import say
        sys.stdin.readline()  # the terminal is closed by now
        worker = threading.Thread(target=say, args=("PAGE from a webhook thread",))
        worker.start(); worker.join()
        try:
            say("summary line")
        except BrokenPipeError:
            print("main thread told", file=sys.stderr)
        say("stopped: every demo process has exited")
    """)
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                               stdout=slave, stderr=subprocess.PIPE, text=True)
    os.close(slave)
    os.close(master)
    try:
        _, err = process.communicate("go\n", timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.strip() == "main thread told"


def test_a_failing_write_of_another_kind_still_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import io

    from inferwatch.demo import console

    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sys, "stdout", Full())
    with pytest.raises(OSError) as raised:
        console.say("line")
    assert raised.value.errno == errno.ENOSPC
    assert not console._reader_gone


# --- the traffic: a slow service, and `kill` ------------------------------------------------


class _Service(http.server.BaseHTTPRequestHandler):
    """The demo model's routes; /outcome answers only once `release` is set."""

    release = threading.Event()
    paths: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).paths.append(self.path)
        if self.path == "/outcome":
            self.release.wait(30)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def service() -> Iterator[str]:
    _Service.release = threading.Event()
    _Service.paths = []
    server = http.server.ThreadingHTTPServer((HOST, 0), _Service)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        _Service.release.set()
        server.shutdown()
        server.server_close()


def _small_dataset() -> Any:
    """Rows with the columns the traffic shifts (the bundled data needs scikit-learn, which
    takes seconds to import)."""
    from inferwatch.demo.model import Dataset
    from inferwatch.demo.traffic import DRIFTED_FEATURES

    rng = np.random.default_rng(0)
    return Dataset(list(DRIFTED_FEATURES), rng.normal(size=(20, len(DRIFTED_FEATURES))),
                   np.array(["web"] * 20), np.array(["benign", "malignant"] * 10))


def test_outcomes_for_a_slow_service_are_capped_like_predictions(service: str) -> None:
    # Every due label went into the pool's queue: with the service slow to take outcomes,
    # the queue (and the memory behind it) grew without bound.
    from inferwatch.demo.scenario import scenario
    from inferwatch.demo.traffic import TrafficGenerator

    generator = TrafficGenerator(service, scenario("short"), data=_small_dataset())
    try:
        due = time.monotonic() - 1
        generator._labels = [(due, f"demo-{i}", "benign") for i in range(2000)]
        generator._send_outcomes()
        queued = generator._pool._work_queue.qsize()
        assert queued <= 64, f"{queued} outcome posts queued"
        assert generator.stats.outcomes <= 64
        assert generator.stats.outcomes + generator.stats.outcomes_dropped == 2000
    finally:
        _Service.release.set()
        generator.stop()
        generator._pool.shutdown(wait=True, cancel_futures=True)
    # The cap is freed as the posts end: the next due outcomes are sent again.
    wait_until(lambda: generator._pending_outcomes.acquire(blocking=False), 30,
              "the outcome posts to end")


class _Killed(Exception):
    pass


def test_the_traffic_command_stops_cleanly_on_sigterm(
        service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # `kill` (and `docker stop`) ended it by the default action, status 143 (-15), in the
    # middle of its requests and without its cleanup.
    from inferwatch.demo import traffic

    def killed(signum: int, frame: Any) -> None:
        raise _Killed()  # what the default action would have done: end main() at once

    monkeypatch.setattr(traffic, "load_dataset", _small_dataset)
    previous = signal.signal(signal.SIGTERM, killed)
    try:
        def kill_once_sending() -> None:
            wait_until(lambda: "/predict" in _Service.paths, 60, "the first prediction")
            os.kill(os.getpid(), signal.SIGTERM)

        killer = threading.Thread(target=kill_once_sending, daemon=True)
        killer.start()
        code = traffic.main([f"--model-url={service}", "--scenario", "short",
                             "--rate", "50"])
        killer.join(60)
        assert code == 0
        # The handler it had is back: main() is a function a host may call.
        assert signal.getsignal(signal.SIGTERM) is killed
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- speeds --------------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_speed_flag_takes_exactly_the_sane_range(value: float) -> None:
    from inferwatch.demo.scenario import MAX_SPEED, MIN_SPEED, speed_argument

    if MIN_SPEED <= value <= MAX_SPEED:
        assert speed_argument(repr(value)) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            speed_argument(repr(value))


@pytest.mark.parametrize("module", ["traffic", "streaming", "quiet_shift"])
@pytest.mark.parametrize("speed", ["1e-300", "0.0001", "1000"])
def test_the_demo_commands_refuse_an_absurd_speed_naming_the_flag(module: str,
                                                                   speed: str) -> None:
    # 1e-300 passed: phases of 1e302 seconds, printed as 300-digit numbers, and windows no
    # Prometheus or rolling window takes.
    argv = [sys.executable, "-m", f"inferwatch.demo.{module}", "--speed", speed]
    argv += ["--model-url", f"http://{HOST}:9"] if module == "traffic" else \
        ["--metrics-listen", f"{HOST}:0"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"--speed {speed} was accepted and the {module} ran on")
    assert result.returncode == 2, result.stdout[-300:] + result.stderr[-500:]
    assert "--speed" in result.stderr and "Traceback" not in result.stderr


def test_the_demo_refuses_a_tiny_speed_before_starting_anything(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from inferwatch.demo import cli, runner

    def never(self: Any, *args: Any) -> None:
        raise AssertionError("the demo started its processes")

    monkeypatch.setattr(runner.Demo, "_start_processes", never)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    # Bad CLI use: argparse names the flag and exits 2 before anything starts.
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--speed", "1e-300", "--no-stack", "--once"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--speed" in err and "too small" in err
