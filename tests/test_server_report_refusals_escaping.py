"""More edges of the /metrics server (refused requests, HEAD) and of the drift report."""

from __future__ import annotations

import argparse
import csv
import socket
import threading
from html.parser import HTMLParser

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from inferwatch.quality.reference import Reference
from inferwatch.report import cli as report_cli
from inferwatch.report.model import Live, ModelReport
from inferwatch.report.page import report_page
from inferwatch.serving.server import serve
from loopback_http import serving_bytes

# Upper bound on any wait: reached only when the server is broken (hung).
HANG_GUARD = 30.0


@pytest.fixture(scope="module")
def server():
    registry = CollectorRegistry()
    Counter("demo_scrapes", "Scrapes.", registry=registry).inc(5)
    with serve(port=0, addr="127.0.0.1", registry=registry) as running:
        yield running


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD) as sock:
        sock.sendall(data)
        return read_all(sock)


# --- the server --------------------------------------------------------------------------

def test_a_client_sending_megabytes_of_headers_reads_its_431(server):
    # The server stops reading after 16 KiB; closing with the rest unread sent a reset,
    # and the client saw "connection reset" instead of the answer.
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (2 * 1024 * 1024) \
        + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=HANG_GUARD) as sock:
        def send() -> None:
            try:
                sock.sendall(head)
            except OSError:
                pass  # the answer below is what is asserted

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        sender.join(HANG_GUARD)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert answer.endswith(b"request head too large\n")


@pytest.mark.parametrize("raw, status", [
    (b"HEAD /metrics HTTP/1.1\r\nContent-Length: nope\r\n\r\n", b"400"),
    (b"HEAD /metrics HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
    (b"HEAD /metrics HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", b"413"),
    (b"HEAD /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"501"),
    (b"HEAD /metrics HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", b"431"),
    (b"HEAD /metrics HTTP/1.1\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", b"431"),
])
def test_an_error_answer_to_head_has_no_body(server, raw, status):
    answer = raw_exchange(server.port, raw)
    assert answer.split(b" ")[1] == status
    head, _, body = answer.partition(b"\r\n\r\n")
    assert body == b"", body
    assert b"Content-Length: " in head  # what a GET would have received


def test_a_get_error_answer_still_has_its_body(server):
    answer = raw_exchange(server.port, b"GET /metrics HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b"\r\n\r\ninvalid Content-Length\n")


# --- the page ----------------------------------------------------------------------------

class _Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.keyed_attribute_names: set[str] = set()

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if "data-key" in found:
            self.keyed_attribute_names.update(found)
            self.values[found["data-key"] or ""] = found.get("data-value") or ""


def page_with_requests(requests: dict) -> str:
    live = Live(300.0, requests, 2.0, 0.1, 0.01, 0.2, {}, {}, {}, {}, {}, {}, {}, 0.75, 12.0,
                {}, 0.0, 0.0, 40)
    return report_page(ModelReport("m", "m", "1", 0.0, 40, [], [], {}, {}, live, []))


@settings(max_examples=60)
@given(st.one_of(st.text(st.sampled_from("\"'<>&= a")), st.text(), st.integers(), st.floats()))
def test_a_data_value_of_any_type_is_one_escaped_attribute(value):
    # A count read from a snapshot is whatever its JSON held: a string with a quote in it
    # ended the attribute and wrote markup of its own into the page.
    page = page_with_requests({"ok": value})
    parser = _Attributes()
    parser.feed(page)
    parser.close()
    assert parser.values["requests|ok"] == repr(value)
    # The value ended no attribute: the cells carry only their own attributes.
    assert parser.keyed_attribute_names <= {"class", "data-key", "data-value"}


def test_a_hostile_string_value_writes_no_markup():
    page = page_with_requests({"ok": '"><img src=x onerror=alert(1)>'})
    assert "<img" not in page
    assert "onerror=alert(1)&gt;" in page


# --- the report command ------------------------------------------------------------------

def run_report(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="inferwatch report")
    report_cli.add_arguments(parser)
    return report_cli.run(parser.parse_args(list(argv)))


def write_csv(path, header, rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def reference(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "reference.json"
    Reference.from_data({"age": rng.normal(40, 5, 300), "income": rng.normal(5, 1, 300)},
                        predictions={"score": rng.random(300)}).save(path)
    return path


def test_a_csv_sharing_no_column_with_the_reference_is_an_error(tmp_path, reference, capsys):
    # The wrong file (or the wrong reference): a page of nothing but missing columns and
    # exit 0 looked like a clean report.
    data = tmp_path / "orders.csv"
    write_csv(data, ["order_id", "sku"], [[i, f"s{i}"] for i in range(20)])
    out = tmp_path / "report.html"

    status = run_report("--reference", str(reference), str(data), "-o", str(out))

    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1
    assert err.startswith("inferwatch report: error: ")
    assert str(data) in err and "shares no column with the reference" in err
    assert not out.exists()


def test_a_csv_of_predictions_only_is_still_reported(tmp_path, reference, capsys):
    data = tmp_path / "scores.csv"
    write_csv(data, ["score"], [[f"{v:.3f}"] for v in np.random.default_rng(4).random(50)])
    out = tmp_path / "report.html"

    status = run_report("--reference", str(reference), str(data), "-o", str(out))

    assert status == 0, capsys.readouterr().err
    assert out.read_text(encoding="utf-8").endswith("</html>\n")


def test_a_csv_sharing_one_feature_is_still_reported(tmp_path, reference, capsys):
    data = tmp_path / "live.csv"
    write_csv(data, ["age", "other"], [[40 + i % 7, i] for i in range(50)])
    out = tmp_path / "report.html"

    status = run_report("--reference", str(reference), str(data), "-o", str(out))

    assert status == 0, capsys.readouterr().err


HUGE = b"1" + b"0" * 400  # a JSON integer float() cannot hold


@pytest.mark.parametrize("body", [
    b'{"format":"inferwatch.status_snapshot/1","generated_at":' + HUGE + b',"states":[]}',
    b'{"format":"inferwatch.status_snapshot/1","generated_at":1,"states":'
    + b"[" * 100000 + b"]" * 100000 + b"}",
    b"[" * 100000 + b"]" * 100000,
])
def test_a_hostile_snapshot_is_a_one_line_error_not_a_traceback(tmp_path, capsys, body):
    out = tmp_path / "report.html"
    with serving_bytes(body, {"Content-Type": "application/json"}) as url:
        status = run_report("--metrics", url, "-o", str(out))
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("inferwatch report: error: cannot read the status snapshot"), err
    assert err.count("\n") == 1
    assert "not a status snapshot" in err or "malformed status snapshot" in err
    assert not out.exists()


def test_a_counter_too_large_for_a_float_is_a_malformed_snapshot(tmp_path, capsys):
    from inferwatch.core.registry import Registry
    from inferwatch.report.status import snapshot_json

    registry = Registry()
    try:
        registry.monitor("fraud", "1").record_call(0.01, 0.9)
        body = snapshot_json(registry.states())
    finally:
        registry.close()
    body = body.replace(b'[["ok"], 1.0]', b'[["ok"], ' + HUGE + b"]", 1)
    assert HUGE in body
    out = tmp_path / "report.html"
    with serving_bytes(body, {"Content-Type": "application/json"}) as url:
        status = run_report("--metrics", url, "-o", str(out))
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("inferwatch report: error: cannot read the status snapshot")
    assert "malformed status snapshot" in err and err.count("\n") == 1
