"""More edges of the demo: malformed requests to the demo model, its faults endpoint, and
the demo's command line and processes."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from inferwatch.demo import model as demo_model
from inferwatch.demo.receiver import PageReceiver
from inferwatch.demo.receiver import main as receiver_main

pytest.importorskip("sklearn")

FEATURE = "mean radius"


@pytest.fixture(scope="module")
def service() -> demo_model.ModelService:
    instrumented, data = demo_model.build_model(shadow=False)
    return demo_model.ModelService(instrumented, data)


def _serve(service: demo_model.ModelService) -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), demo_model.make_handler(service))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def api(service: demo_model.ModelService) -> Iterator[int]:
    yield from _serve(service)


def post(port: int, path: str, body: bytes,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """(status, JSON body); a dropped connection raises, and so fails the test."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body=body,
                           headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def good_instance(service: demo_model.ModelService) -> dict[str, Any]:
    return service.data.instances([0])[0]


def with_feature(service: demo_model.ModelService, literal: str) -> bytes:
    """A /predict body whose FEATURE is the JSON text `literal`, as a client may send it."""
    instance = good_instance(service)
    instance[FEATURE] = "@@"
    return json.dumps({"request_id": "r-1", "instances": [instance]}).replace(
        '"@@"', literal).encode()


# --- the model API ----------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["1" + "0" * 400, "-" + "9" * 330, "1e400", "-1e400",
                                     "Infinity", "-Infinity"])
def test_a_number_past_the_float_range_is_a_400_that_names_the_feature(
        api: int, service: demo_model.ModelService, literal: str) -> None:
    status, body = post(api, "/predict", with_feature(service, literal))
    assert status == 400
    assert FEATURE in body["message"] and "float" in body["message"]


@pytest.mark.parametrize("raw", [
    b"[" * 50_000 + b"]" * 50_000,
    b'{"instances": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    b'{"instances": [' + b'{"a": ' * 30_000 + b"1" + b"}" * 30_000 + b"]}",
])
def test_a_deeply_nested_body_is_a_400_not_a_dropped_connection(api: int, raw: bytes) -> None:
    status, body = post(api, "/predict", raw)
    assert status == 400 and "nests too deeply" in body["message"]


@pytest.mark.parametrize("raw, words", [
    (b"", "Content-Length"),
    (b'{"instances": [\xff\xfe]}', "UTF-8"),
    (b"not json", "not JSON"),
    (b"[]", "JSON object"),
    (b'{"instances": [[1, 2]]}', "list of objects"),
    (b'{"instances": {}}', "list of objects"),
])
def test_a_malformed_body_is_a_400_that_says_what_is_wrong(api: int, raw: bytes,
                                                           words: str) -> None:
    status, body = post(api, "/predict", raw)
    assert status == 400 and words in body["message"]


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=8)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_json_values)
@example(value=10 ** 400)
@example(value=-(10 ** 309))
def test_any_json_value_as_a_feature_is_answered_never_dropped(
        api: int, service: demo_model.ModelService, value: Any) -> None:
    status, body = post(api, "/predict", with_feature(service, json.dumps(value)))
    assert status in (200, 400), body
    if status == 400:
        assert body["message"]


def test_an_oversized_body_is_a_413_and_its_bytes_are_never_read_as_a_request(
        api: int) -> None:
    # The body of a refused request, left unread on a kept-alive connection, was parsed as
    # the next request: here, one the client never made.
    hidden = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    length = demo_model.MAX_BODY_BYTES + 1
    with socket.create_connection(("127.0.0.1", api), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: "
                     + str(length).encode() + b"\r\n\r\n" + hidden)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 413")
    assert received.count(b"HTTP/1.1 ") == 1 and b'"status": "ok"' not in received


def test_a_body_shorter_than_its_content_length_does_not_hold_a_thread_forever(
        service: demo_model.ModelService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_model, "REQUEST_TIMEOUT_SECONDS", 0.5, raising=False)
    for port in _serve(service):
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            # The server gives up on the stalled body and closes the connection.
            while sock.recv(65536):
                pass


# --- /faults ----------------------------------------------------------------------------


@pytest.fixture
def faults_api(service: demo_model.ModelService) -> Iterator[int]:
    service.faults.update({})
    yield from _serve(service)
    service.faults.update({})


@pytest.mark.parametrize("raw", [b'{"error_ratio": 1' + b"0" * 400 + b"}",
                                 b'{"slow_seconds": -1' + b"0" * 400 + b"}"])
def test_faults_past_the_float_range_are_a_400(faults_api: int, raw: bytes) -> None:
    status, body = post(faults_api, "/faults", raw)
    assert status == 400 and "out of range" in body["message"]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(error=_json_values, slow=_json_values, seconds=_json_values)
@example(error=0.5, slow=5, seconds=0.1)
@example(error=0.3, slow="0.1", seconds=0.6)
def test_refused_faults_leave_the_faults_as_they_were(
        faults_api: int, service: demo_model.ModelService, error: Any, slow: Any,
        seconds: Any) -> None:
    service.faults.update({"error_ratio": 0.1, "slow_ratio": 0.2, "slow_seconds": 0.3})
    status, _ = post(faults_api, "/faults", json.dumps(
        {"error_ratio": error, "slow_ratio": slow, "slow_seconds": seconds}).encode())
    faults = service.faults
    now = (faults.error_ratio, faults.slow_ratio, faults.slow_seconds)
    if status == 200:
        assert now == (error, slow, seconds)
    else:
        assert status == 400 and now == (0.1, 0.2, 0.3)


# --- the page receiver ------------------------------------------------------------------


def _post_status(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("body", [b"[" * 50_000 + b"]" * 50_000,
                                  b'{"alerts": [' + b'{"a": ' * 30_000 + b"1"
                                  + b"}" * 30_000 + b"]}"])
def test_the_receiver_answers_a_deeply_nested_body_with_a_400(body: bytes) -> None:
    lines: list[str] = []
    with PageReceiver(port=0, out=lines.append) as receiver:
        assert _post_status(receiver.url, body) == 400
        ok = {"alerts": [{"status": "firing", "labels": {"alertname": "A"}}]}
        assert _post_status(receiver.url, json.dumps(ok).encode()) == 200
    assert len(lines) == 1


@pytest.fixture(scope="module")
def receiver() -> Iterator[PageReceiver]:
    with PageReceiver(port=0, out=lambda line: None) as receiver:
        yield receiver


@given(labels=_json_values)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(labels=None)
@example(labels=["alertname", "X"])
def test_the_receiver_names_any_alert_it_accepted(receiver: PageReceiver, labels: Any) -> None:
    receiver.alerts.clear()
    receiver._accept({"alerts": [{"status": "firing", "labels": labels}]})
    names = receiver.names()
    expected = labels.get("alertname", "") if isinstance(labels, dict) else ""
    assert names == {str(expected)}


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_the_receiver_command_refuses_a_port_that_is_not_one(
        port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        receiver_main(["--port", port])
    assert exc.value.code == 2 and "--port" in capsys.readouterr().err


def test_the_receiver_command_names_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert receiver_main(["--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "in use" in err and "Traceback" not in err
