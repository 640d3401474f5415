"""A tiny Alertmanager webhook receiver that prints each alert as it fires and resolves.

Alertmanager repeats an alert in every notification of its group (on each group change and
each repeat interval); those repeats are counted, not printed, so every printed line is news.

The demo runs it in-process; the compose stack runs it as the default receiver, so pages
show up in ``docker compose logs pager`` until a real Slack, PagerDuty, email or webhook
receiver is configured.

>>> import json, urllib.request
>>> lines = []
>>> with PageReceiver(port=0, out=lines.append) as receiver:
...     body = json.dumps({"alerts": [{"status": "firing", "labels": {
...         "alertname": "InferwatchFeatureDrift", "severity": "warning", "model": "fraud"},
...         "annotations": {"summary": "Feature amount of fraud 1.4.2 drifts"}}]}).encode()
...     _ = urllib.request.urlopen(urllib.request.Request(receiver.url, data=body)).read()
>>> print(lines[0])
PAGE FIRING   warning  InferwatchFeatureDrift {model="fraud"}: Feature amount of fraud 1.4.2 drifts
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from inferwatch.demo.console import say

MAX_BODY_BYTES = 1 << 20
# An oversized body is read and thrown away up to this much, so its sender reads the 413
# rather than a reset; past it the connection is closed with the rest unread.
MAX_DISCARD_BYTES = 16 << 20
# Seconds a sender may take to send its request: one that stalled mid-body held a handler
# thread forever, and every such connection added one.
REQUEST_TIMEOUT_SECONDS = 30.0
# Labels shown after the alert name; the rest stay in the stored alert.
SHOWN_LABELS = ("model", "model_version", "feature", "output", "instance", "gpu", "collector")


def format_alert(alert: dict[str, Any]) -> str:
    """One line per alert: status, severity, name, the identifying labels and the summary.

    >>> format_alert({"status": "resolved", "labels": {"alertname": "X", "severity": "info"}})
    'PAGE RESOLVED info     X'
    """
    labels = alert.get("labels")
    labels = labels if isinstance(labels, dict) else {}
    annotations = alert.get("annotations")
    annotations = annotations if isinstance(annotations, dict) else {}
    shown = ", ".join(f'{k}="{_one_line(labels[k])}"' for k in SHOWN_LABELS if k in labels)
    summary = _one_line(annotations.get("summary", ""))
    line = (f"PAGE {_one_line(alert.get('status', '?')).upper():<8} "
            f"{_one_line(labels.get('severity', '?')):<8} "
            f"{_one_line(labels.get('alertname', '?'))}")
    if shown:
        line += f" {{{shown}}}"
    if summary:
        line += f": {summary}"
    return line


def _one_line(value: Any) -> str:
    """`value` as text on one line: a summary templated over several lines, or a label
    value carrying a newline or an escape sequence, must neither split a page into lines
    that read as others nor drive the terminal.

    >>> _one_line("drifts\\nPAGE RESOLVED x\\x1b[2J")
    'drifts PAGE RESOLVED x [2J'
    """
    text = str(value)
    if text.isprintable():
        return text
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def _printable(text: str) -> str:
    """`text` with every character that is not printable (a line break, a control
    character) shown as `?`: a posted alert name stays on its line of the summary.

    >>> _printable("Drift\\nNow")
    'Drift?Now'
    """
    return "".join(c if c.isprintable() else "?" for c in text)


class _QuietServer(ThreadingHTTPServer):
    """A sender that hangs up before its answer (reset, timed out, gone) printed a
    traceback among the pages; it gets no answer, as it asked, and nothing is printed."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class PageReceiver:
    """Receives Alertmanager webhooks on `host:port` (port 0 picks a free one).

    Each alert is printed through `out` and kept (the last `keep` of them) in `alerts`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 out: Callable[[str], None] | None = None, keep: int = 1000) -> None:
        self.out = out or say
        self.alerts: deque[dict[str, Any]] = deque(maxlen=keep)
        self.repeats = 0
        # Pages received but not shown because `out` failed (stdout closed or piped to a
        # reader that has gone).
        self.output_failures = 0
        self._keep = keep
        self._status: OrderedDict[str, str] = OrderedDict()  # alert identity -> last status
        self._lock = threading.Lock()
        self._server = _QuietServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="inferwatch-demo-receiver")
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def names(self, status: str = "firing") -> set[str]:
        """Alert names received with `status`."""
        with self._lock:
            # Labels are whatever the sender posted: a null or a list must not raise here.
            return {str(labels.get("alertname", "")) for a in self.alerts
                    if a.get("status") == status
                    for labels in [a.get("labels") if isinstance(a.get("labels"), dict)
                                   else {}]}

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.alerts)

    def digest(self) -> str:
        """One line: what is firing now, what resolved, and how many repeats were not shown.

        >>> with PageReceiver(port=0, out=lambda line: None) as receiver:
        ...     for status in ("firing", "firing", "resolved"):
        ...         receiver._accept({"alerts": [{"status": status, "labels": {"alertname": "X"}}]})
        ...     receiver.digest()
        'pages: none firing, 1 resolved, 1 repeat not shown'
        """
        with self._lock:
            # str(): the labels are whatever was posted, and a name that is a number or
            # null next to a string raised TypeError from sorted(), out of the live summary;
            # a line break or control character in a name would break the one line.
            firing = sorted({_printable(str(json.loads(key).get("alertname", "?")))
                             for key, status in self._status.items() if status == "firing"})
            resolved = sum(1 for status in self._status.values() if status == "resolved")
            repeats = self.repeats
        now = ", ".join(firing) if firing else "none"
        return (f"pages: {now} firing, {resolved} resolved, {repeats} repeat"
                f"{'' if repeats == 1 else 's'} not shown")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> PageReceiver:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _accept(self, payload: Any) -> None:
        alerts = payload.get("alerts") if isinstance(payload, dict) else None
        if not isinstance(alerts, list):
            raise ValueError("not an Alertmanager webhook payload")
        for alert in alerts:
            if isinstance(alert, dict) and self._is_news(alert):
                self._show(format_alert(alert))

    def _show(self, line: str) -> None:
        """Print one page. A failing `out` escaped the handler, so Alertmanager got no
        answer and sent the page again and again; the page was received all the same."""
        try:
            self.out(line)
        except Exception as exc:  # whatever the output raises
            with self._lock:
                self.output_failures += 1
                first = self.output_failures == 1
            if first:
                try:
                    print(f"inferwatch demo: cannot print pages ({exc!r}); they are still "
                          f"received and counted", file=sys.stderr, flush=True)
                except Exception:  # stderr may be gone as well
                    pass

    def _is_news(self, alert: dict[str, Any]) -> bool:
        """Keep the alert; True when its status changed since it was last received."""
        labels = alert.get("labels")
        key = json.dumps(labels if isinstance(labels, dict) else {}, sort_keys=True)
        status = str(alert.get("status", "?"))
        with self._lock:
            self.alerts.append(alert)
            if self._status.get(key) == status:
                self.repeats += 1
                return False
            self._status[key] = status
            self._status.move_to_end(key)
            if len(self._status) > self._keep:
                self._status.popitem(last=False)
            return True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT_SECONDS

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                try:
                    # A Content-Length that is not a number is a bad request like any
                    # other, not a traceback on the demo's terminal.
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = 0
                if length > MAX_BODY_BYTES:
                    # Closed with the body unread, the socket reset the connection and
                    # the sender saw a broken pipe instead of this answer.
                    self._discard(length)
                    self.close_connection = True
                    self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                    return
                try:
                    if length <= 0:
                        raise ValueError("missing body")
                    receiver._accept(json.loads(self.rfile.read(length)))
                    status = HTTPStatus.OK
                except (ValueError, RecursionError):
                    # RecursionError: a body of deeply nested brackets, which dropped the
                    # connection with a traceback on the demo's terminal.
                    status = HTTPStatus.BAD_REQUEST
                self._answer(status)

            def _discard(self, length: int) -> None:
                left = min(length, MAX_DISCARD_BYTES)
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 16))
                    if not chunk:
                        return
                    left -= len(chunk)

            def _answer(self, status: HTTPStatus) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


def _port(text: str) -> int:
    """A TCP port: 70000 or -1 raised OverflowError from the bind, as a traceback."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """Print pages until SIGTERM or SIGINT (the compose stack's default receiver)."""
    parser = argparse.ArgumentParser(prog="python -m inferwatch.demo.receiver",
                                     description="Print every Alertmanager page received.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=9095)
    args = parser.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        receiver = PageReceiver(args.host, args.port)
    except (OSError, UnicodeError) as exc:
        # A port in use or an unknown host ended in a traceback.
        print(f"{parser.prog}: cannot listen on {args.host}:{args.port}: "
              f"{getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1
    with receiver:
        say(f"printing pages sent to {receiver.url}")
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
