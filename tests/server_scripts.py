"""Serving processes of the shadow tests: a script written to a test's tmp dir and run as a
server of its own, with the package on its path, to see what happens at its exit or its
death (exit handlers, a challenger's child left behind)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from processes import process_gone
from waiting import wait_until

EXPORTER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "exporter")


def _start(tmp_path: Path, source: str, args: tuple[str, ...]) -> tuple[list[str], dict]:
    script = tmp_path / "server.py"
    script.write_text(source)
    return [sys.executable, str(script), *args], dict(os.environ, PYTHONPATH=EXPORTER)


def run_server(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess:
    """Run `source` as ``server.py`` in `tmp_path` with `args`, to its end (120 s at most),
    and assert it exited 0 (its stderr the message); its output is text."""
    command, env = _start(tmp_path, source, args)
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def printed(stdout: str) -> dict[str, str]:
    """The ``KEY value`` lines a server printed, value by key."""
    return dict(line.split(" ", 1) for line in stdout.splitlines() if " " in line)


# A server whose champion's first call goes to a process challenger `CHALLENGER(marker)`,
# then idles: its module has ctypes, os, sys and time for the challenger's source.
_SHADOWED_SERVER = textwrap.dedent("""
    import ctypes, os, sys, time
    import inferwatch
    from inferwatch.core.registry import Registry

    {challenger}

    class Model:
        def predict(self, rows):
            return [r for r in rows]

    if __name__ == "__main__":
        registry = Registry()
        champion = inferwatch.instrument(Model(), name="m", version="1", registry=registry)
        inferwatch.shadow(champion, {name}(sys.argv[1]), version="2", mode="process",
                          timeout=3600.0, registry=registry)
        champion.predict([1.0])
        while True:
            time.sleep(0.05)
""")


def kill_server_and_await_its_child(tmp_path: Path, challenger: str, name: str,
                                    timeout: float) -> None:
    """Start a server in `tmp_path` whose process challenger is class `name` of the source
    `challenger`, made with the path of a marker file; once that challenger has written its
    child's pid there (from its call), SIGKILL the server (the OOM killer: no exit handler
    runs, no pipe is closed in time) and wait up to `timeout` s for the child to be gone.
    Whatever happens, neither process outlives the call."""
    marker = tmp_path / "child.pid"
    source = _SHADOWED_SERVER.format(challenger=challenger.strip(), name=name)
    command, env = _start(tmp_path, source, (str(marker),))
    server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    child = 0
    try:
        wait_until(lambda: marker.exists() and marker.read_text().strip())
        child = int(marker.read_text())
        server.kill()
        server.wait(30)
        wait_until(lambda: process_gone(child), timeout=timeout)
    finally:
        server.kill()
        server.wait(30)
        if child and not process_gone(child):
            os.kill(child, signal.SIGKILL)
