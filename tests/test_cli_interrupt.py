"""Ctrl-C in any `inferwatch` subcommand: one line and exit status 130, never a traceback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

# The real command line, with Python's own Ctrl-C handler whatever the test runner's is (a
# shell that starts a job in the background leaves SIGINT ignored in its children).
COMMAND = [sys.executable, "-c",
           "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
           " from inferwatch.cli import main; sys.exit(main(sys.argv[1:]))"]


def test_ctrl_c_while_waiting_for_a_server_is_one_line_and_status_130(tmp_path):
    out = tmp_path / "report.html"
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(60)
        port = server.getsockname()[1]
        process = subprocess.Popen(
            [*COMMAND, "report", "--metrics", f"http://127.0.0.1:{port}/", "-o", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # The command has connected and waits for an answer that never comes: the user
            # gives up and presses Ctrl-C.
            connection, _ = server.accept()
            with connection:
                process.send_signal(signal.SIGINT)
                _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert "Traceback" not in err
    assert err == "inferwatch report: interrupted\n"
    assert process.returncode == 130
    assert not out.exists()
