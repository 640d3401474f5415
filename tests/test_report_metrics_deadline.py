"""`inferwatch report --metrics URL` gives the whole download one deadline: a host that
answers a byte at a time (a stuck proxy, a slowloris) never lets a socket read time out,
and held the command forever."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from inferwatch.cli import main
from inferwatch.core.registry import Registry
from inferwatch.report import cli as report_cli
from inferwatch.report.status import snapshot_json
from loopback_http import LoopbackServer, QuietHandler

# How long a test waits for the command before calling it hung.
HANG_GUARD = 30.0
# Between two bytes of a trickling answer: far below any socket read timeout.
TRICKLE_SECONDS = 0.05


def _trickling(stop: threading.Event, *, in_headers: bool = False) -> LoopbackServer:
    """A host answering every GET one byte at a time until `stop` is set: in its body, or
    (`in_headers`) in a header that never ends."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            try:
                if in_headers:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                self.wfile.flush()
                while not stop.wait(TRICKLE_SECONDS):
                    self.wfile.write(b" ")
                    self.wfile.flush()
            except OSError:
                pass  # the reader gave up and closed the connection

    return LoopbackServer(Handler)


def _report(argv: list[str]) -> tuple[int | None, float]:
    """The command's exit status (None if it was still running after HANG_GUARD) and the
    seconds it took."""
    result: list[int] = []
    started = time.monotonic()
    runner = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    runner.start()
    runner.join(HANG_GUARD)
    return (result[0] if result else None), time.monotonic() - started


@pytest.mark.parametrize("in_headers", [False, True], ids=["body", "headers"])
def test_a_trickling_answer_ends_at_the_deadline(tmp_path: Path, capsys, monkeypatch,
                                                 in_headers: bool) -> None:
    monkeypatch.setattr(report_cli, "METRICS_TIMEOUT_SECONDS", 0.5, raising=False)
    stop = threading.Event()
    with _trickling(stop, in_headers=in_headers) as host:
        try:
            status, took = _report(["report", "--metrics", host.url,
                                    "-o", str(tmp_path / "r.html")])
        finally:
            stop.set()
    assert status == 2, f"still running after {HANG_GUARD} s" if status is None else status
    assert took < HANG_GUARD / 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "no complete status snapshot" in err and "within 0.5 s" in err, err
    assert "--timeout" in err, err
    assert not (tmp_path / "r.html").exists()


def test_the_timeout_flag_sets_the_deadline(tmp_path: Path, capsys) -> None:
    stop = threading.Event()
    with _trickling(stop) as host:
        try:
            status, took = _report(["report", "--metrics", host.url, "--timeout", "0.3",
                                    "-o", str(tmp_path / "r.html")])
        finally:
            stop.set()
    assert status == 2
    assert took < HANG_GUARD / 2
    assert "within 0.3 s" in capsys.readouterr().err


def test_a_snapshot_sent_in_time_is_read(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(report_cli, "METRICS_TIMEOUT_SECONDS", 5.0, raising=False)
    registry = Registry()
    try:
        registry.monitor("fraud", "1").record_call(0.01, 0.5)
        registry.drain()
        body = snapshot_json(registry.states())
    finally:
        registry.close()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            # Chunked and in pieces: read to its end, not to the first piece.
            self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            for start in range(0, len(body), 100):
                piece = body[start:start + 100]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

    with LoopbackServer(Handler) as host:
        status, _ = _report(["report", "--metrics", host.url, "-o", str(tmp_path / "r.html")])
    assert status == 0, capsys.readouterr().err
    assert "fraud" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("given", ["0", "-1", "nan", "inf", "soon", ""])
def test_a_timeout_that_is_no_duration_is_refused(tmp_path: Path, capsys, given: str) -> None:
    status = main(["report", "--metrics", "http://127.0.0.1:9/", "--timeout", given,
                   "-o", str(tmp_path / "r.html")])
    assert status == 2
    err = capsys.readouterr().err
    assert "--timeout" in err and "positive number of seconds" in err, err


def test_the_timeout_is_for_metrics_only(tmp_path: Path, capsys) -> None:
    data = tmp_path / "live.csv"
    data.write_text("a\n1\n")
    status = main(["report", "--reference", str(tmp_path / "ref.json"), str(data),
                   "--timeout", "5", "-o", str(tmp_path / "r.html")])
    assert status == 2
    assert "--timeout" in capsys.readouterr().err


def test_a_host_that_never_answers_is_named_by_the_deadline(tmp_path: Path, capsys) -> None:
    # Silent after the request: the socket's own timeout and the deadline end together,
    # and the message names the option that sets them.
    stop = threading.Event()

    class Silent(QuietHandler):
        def do_GET(self) -> None:
            stop.wait(HANG_GUARD)

    with LoopbackServer(Silent) as host:
        try:
            status, took = _report(["report", "--metrics", host.url, "--timeout", "0.5",
                                    "-o", str(tmp_path / "r.html")])
        finally:
            stop.set()
    assert status == 2
    assert took < HANG_GUARD / 2
    err = capsys.readouterr().err
    assert "within 0.5 s" in err and "--timeout" in err, err
