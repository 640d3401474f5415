"""Signals reaching the demo and its scripted models at awkward moments: right after a model
answers /metrics, during the demo's own cleanup, and when a child will not stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port
from waiting import wait_until

HOST = "127.0.0.1"
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]

# Runs a demo model as `python -m` would, with serve() slowed down after it returns: a
# loaded host that deschedules the model's main thread just as /metrics starts answering.
_SLOW_AFTER_SERVE = textwrap.dedent("""
    import runpy, sys, time
    import inferwatch
    real_serve = inferwatch.serve

    def serve(*args, **kwargs):
        server = real_serve(*args, **kwargs)
        time.sleep(1.5)
        return server

    inferwatch.serve = serve
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
""")


def _metrics_answer(port: int, process: subprocess.Popen[str]) -> bool:
    if process.poll() is not None:
        pytest.fail(f"the model exited with {process.returncode} before /metrics answered: "
                    f"{process.communicate()[1][-800:]}")
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def model_process() -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(module: str, *args: str) -> tuple[subprocess.Popen[str], int]:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-c", _SLOW_AFTER_SERVE, module,
             f"--metrics-listen={HOST}:{port}", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parent.parent)
        started.append(process)
        return process, port

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


# --- the scripted models: their handlers are in place before /metrics answers ------------------


def test_sigusr1_sent_as_soon_as_metrics_answer_shifts_the_quiet_model(
        model_process: Any) -> None:
    # The end-to-end test and anyone scripting the shift wait for /metrics, then signal:
    # before the handler was in place, SIGUSR1's default action killed the model.
    process, port = model_process("inferwatch.demo.quiet_shift", "--speed=100",
                                  "--shift-on-signal")
    wait_until(lambda: _metrics_answer(port, process), what="/metrics")
    process.send_signal(signal.SIGUSR1)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, f"killed by signal {-process.returncode}: {err[-800:]}"
    assert "phase unit-change" in out and "phase recovery" in out, out


@pytest.mark.parametrize("module,args", [
    ("inferwatch.demo.quiet_shift", ("--speed=1", "--shift-on-signal")),
    ("inferwatch.demo.streaming", ("--speed=1", "--loop")),
])
def test_sigterm_sent_as_soon_as_metrics_answer_is_a_clean_stop(
        model_process: Any, module: str, args: tuple[str, ...]) -> None:
    # The demo stops a child it has just seen ready with SIGTERM (Ctrl-C while it starts).
    process, port = model_process(module, *args)
    wait_until(lambda: _metrics_answer(port, process), what="/metrics")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, f"ended by signal {-process.returncode}: {err[-800:]}"


# --- the runner: its exit status and its cleanup --------------------------------------------


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_a_child_the_demo_could_not_stop_makes_it_exit_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inferwatch.demo import runner

    pids: list[int] = []

    def start_processes(self: Any, stack: Any, receiver: Any) -> None:
        stuck = stack.start("model", SLEEPER)
        pids.append(stuck.pid)

        def never(timeout: float | None = None) -> int:
            # A child in uninterruptible sleep: even SIGKILL's wait runs out.
            raise subprocess.TimeoutExpired(stuck.argv, timeout or 0)

        stuck.popen.wait = never
        os.kill(os.getpid(), signal.SIGTERM)  # Ctrl-C as the demo starts

    monkeypatch.setattr(runner.Demo, "_start_processes", start_processes)
    lines: list[str] = []
    try:
        demo = runner.Demo(scenario="short", workdir=tmp_path, with_stack=False,
                           out=lines.append)
        status = demo.run()
    finally:
        _kill_all(pids)
    assert lines[-1].startswith("stopped, but could not stop model"), lines
    assert status == 1, "a child was left running, yet the demo said all went well"


def test_a_demo_whose_children_all_stopped_exits_0(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inferwatch.demo import runner

    pids: list[int] = []

    def start_processes(self: Any, stack: Any, receiver: Any) -> None:
        pids.append(stack.start("model", SLEEPER).pid)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(runner.Demo, "_start_processes", start_processes)
    lines: list[str] = []
    try:
        status = runner.Demo(scenario="short", workdir=tmp_path, with_stack=False,
                             out=lines.append).run()
    finally:
        _kill_all(pids)
    assert status == 0
    assert lines[-1] == "stopped: every demo process has exited"


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
@pytest.mark.parametrize("first", [signal.SIGTERM, signal.SIGINT])
def test_a_second_stop_signal_while_stopping_does_not_cut_the_cleanup_short(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: int, second: int) -> None:
    from inferwatch.demo import runner

    pids: list[int] = []
    made: list[Path] = []

    def mkdtemp(prefix: str = "") -> str:
        path = tmp_path / f"{prefix}made"
        path.mkdir()
        made.append(path)
        return str(path)

    def start_processes(self: Any, stack: Any, receiver: Any) -> None:
        pids.append(stack.start("model", SLEEPER).pid)
        os.kill(os.getpid(), first)

    def out(line: str) -> None:
        lines.append(line)
        if line.endswith("stopping"):
            # The impatient user presses Ctrl-C again (or systemd repeats its SIGTERM).
            os.kill(os.getpid(), second)
            # Delivered by now, whatever the handler in place does with it.
            for _ in range(1000):
                pass

    monkeypatch.setattr(runner, "tempfile", type("T", (), {"mkdtemp": staticmethod(mkdtemp)}))
    monkeypatch.setattr(runner.Demo, "_start_processes", start_processes)
    lines: list[str] = []
    # Ctrl-C at a terminal reaches Python's own SIGINT handler; an earlier test of this
    # process may have left another one (a test runner's worker ignores SIGINT), under
    # which the first signal would not stop the demo at all.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT,
                                                      signal.SIGHUP)}
    try:
        status = runner.Demo(scenario="short", with_stack=False, out=out).run()
    except BaseException as exc:  # whatever escaped is the failure
        pytest.fail(f"the second signal raised out of run(): {exc!r}; lines: {lines}")
    finally:
        _kill_all(pids)
        after = {sig: signal.getsignal(sig) for sig in before}
        signal.signal(signal.SIGINT, inherited)
    assert status == 0
    assert lines[-1] == "stopped: every demo process has exited", lines
    assert made and not made[0].exists(), "the temporary directory was left behind"
    assert after == before


def test_sigint_the_caller_ignores_stays_ignored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Started in the background of a script, the demo inherits SIGINT ignored; a Ctrl-C
    # meant for the foreground job must not stop it.
    from inferwatch.demo import runner

    seen: list[Any] = []

    def start_processes(self: Any, stack: Any, receiver: Any) -> None:
        seen.append(signal.getsignal(signal.SIGINT))
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(runner.Demo, "_start_processes", start_processes)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert runner.Demo(scenario="short", workdir=tmp_path, with_stack=False,
                           out=lambda line: None).run() == 0
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == [signal.SIG_IGN]


# --- a speed so small that a phase never ends --------------------------------------------------


@pytest.mark.parametrize("module", ["quiet_shift", "streaming"])
@pytest.mark.parametrize("speed", ["1e-320", "5e-324"])
def test_a_scripted_model_refuses_a_speed_too_small_in_one_line(
        module: str, speed: str, capsys: pytest.CaptureFixture[str]) -> None:
    # 1e-320 is above 0 and finite, but 180 s / 1e-320 is inf: the story never moved on and
    # the rolling window of the same length ended the model in a traceback.
    import importlib

    main = importlib.import_module(f"inferwatch.demo.{module}").main
    with pytest.raises(SystemExit) as exited:
        main(["--speed", speed, f"--metrics-listen={HOST}:0"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "too small" in err and "Traceback" not in err


@pytest.mark.parametrize("speed", [1e-320, 5e-324])
def test_the_demo_refuses_a_speed_too_small_before_starting_anything(
        speed: float, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from inferwatch.demo import cli, runner

    def never(self: Any, *args: Any) -> None:
        raise AssertionError("the demo started its processes")

    monkeypatch.setattr(runner.Demo, "_start_processes", never)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    # Bad CLI use: argparse names the flag and exits 2, before anything starts.
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--speed", repr(speed), "--no-stack", "--once"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--speed" in err and "too small" in err
    # A Namespace made by other code is refused the same way, with the same status.
    args = parser.parse_args(["--no-stack", "--once"])
    args.speed = speed
    assert cli.run(args) == 2
    assert "speed" in capsys.readouterr().err


def test_a_small_but_finite_speed_still_plays() -> None:
    from inferwatch.demo.quiet_shift import phases
    from inferwatch.demo.scenario import scenario

    assert all(p.seconds > 0 for p in phases(1e-6))
    assert all(p.seconds > 0 for p in scenario("short", 1e-6))


def test_ctrl_c_while_the_traffic_plays_waits_for_the_traffic_before_the_cleanup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C lands while the main thread waits on the traffic thread. Through
    # Thread.join(timeout) that marked the still running thread stopped (Python 3.11), so the
    # cleanup's join returned at once and the stack was torn down under the traffic.
    from inferwatch.demo import runner, traffic

    ended: list[float] = []

    class SlowToStop(traffic.TrafficGenerator):
        def run(self) -> None:
            time.sleep(0.5)  # the main thread is waiting by now
            os.kill(os.getpid(), signal.SIGINT)
            self._stop.wait(60)
            time.sleep(1.0)  # requests in flight finish after the stop
            ended.append(time.monotonic())

    monkeypatch.setattr(runner.Demo, "_start_processes", lambda self, stack, receiver: None)
    monkeypatch.setattr(traffic, "TrafficGenerator", SlowToStop)
    # One long wait per loop: the signal certainly finds the main thread inside it.
    monkeypatch.setattr(runner, "CHILD_CHECK_SECONDS", 30.0)
    lines: list[str] = []
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        status = runner.Demo(scenario="short", speed=0.5, workdir=tmp_path, with_stack=False,
                             out=lines.append).run()
        returned = time.monotonic()
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert status == 0
    assert any(line.endswith("stopping") for line in lines), lines
    assert ended and ended[0] <= returned, "run() returned while the traffic still played"
