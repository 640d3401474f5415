"""`inferwatch-exporter` run as the operator runs it: a subprocess on a loopback port the
kernel picks, its log in a file, found serving by the log line that gives its URL."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

EXPORTER_MODULE = (sys.executable, "-m", "inferwatch.standalone.cli")


class ExporterProcess:
    """The exporter started with `argv` (by `command`: the installed module, or a script that
    sets up fakes first), serving at ``url`` once this returns."""

    def __init__(self, tmp_path: Path, *argv: str,
                 command: tuple[str, ...] = EXPORTER_MODULE) -> None:
        self.log_path = tmp_path / f"exporter-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*command, "--web.listen-address=127.0.0.1:0", *argv],
            stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self.url = self._wait_for_url()
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + 60  # a safety net: the log line ends the wait
        while time.monotonic() < deadline:
            match = re.search(r"serving (http[^\s\"]+)", self.log_path.read_text())
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                raise AssertionError(f"exporter exited: {self.log_path.read_text()}")
            time.sleep(0.02)
        raise AssertionError(f"exporter did not start: {self.log_path.read_text()}")

    def get(self, headers: dict[str, str] | None = None) -> tuple[int, str]:
        """(status, body) of a scrape of its telemetry path."""
        request = urllib.request.Request(self.url, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Its exit status after `signum` (killed past 30 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._log.close()
