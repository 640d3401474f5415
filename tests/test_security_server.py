"""The /metrics server against hostile peers: eviction, descriptor budget, malformed heads.

serve() and the real `inferwatch-exporter` process are attacked on loopback with idle,
half-open, slow, never-handshaking and handshaken-then-idle TLS connections while a good
client scrapes once a second; every good scrape must succeed.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from inferwatch import faults
from inferwatch.serving.server import connection_budget, serve
from processes import stop
from test_server import certs, client_context, closed_by_server, still_open  # noqa: F401

# Upper bound on any wait: reached only when the server is broken (hung).
HANG_GUARD = 30.0
# The good client's timeout. On loopback an answer takes milliseconds; the issue asks for
# "under 1 s", but a timed assertion would fail on a loaded CI machine for no fault of the
# server, so this is a generous bound: a scrape stuck behind an attacker never answers.
GOOD_CLIENT_TIMEOUT = 5.0
GOOD_SCRAPES = 8


def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Counter("demo_scrapes", "Scrapes.", registry=reg).inc(5)
    return reg


# --- eviction ------------------------------------------------------------------------------

def test_a_new_client_evicts_the_oldest_idle_connection_instead_of_being_refused():
    with serve(port=0, addr="127.0.0.1", registry=registry(), max_connections=4,
               read_timeout=60) as server:
        held = []
        for _ in range(4):
            held.append(socket.create_connection(("127.0.0.1", server.port),
                                                 timeout=HANG_GUARD))
            count = len(held)
            _wait_for(lambda: server.open_connections == count)  # noqa: B023 - called at once
        try:
            status, body = _get(f"http://127.0.0.1:{server.port}/metrics")
            assert status == 200 and b"demo_scrapes_total 5.0" in body
            assert closed_by_server(held[0])  # the oldest went
            assert all(still_open(sock) for sock in held[1:])
            assert server.evicted_connections == 1
        finally:
            for sock in held:
                sock.close()


class _Transport:
    """A socket's transport as eviction sees it: no socket to ask, an abort to count."""

    def __init__(self) -> None:
        self.aborted = False

    def get_extra_info(self, name: str) -> None:
        return None

    def abort(self) -> None:
        self.aborted = True


class _Reader:
    def has_request(self) -> bool:
        return False


class _Task:
    def cancel(self) -> None:
        pass


def _evicted_by_a_newcomer(connections: list, budget: int) -> list[str]:
    """Which of `connections` ((name, seconds since accepted, fields)) a newcomer evicts at
    a budget of `budget`, by the server's own _make_room."""
    from types import SimpleNamespace

    from inferwatch.serving.connections import Connection
    from inferwatch.serving.server import MetricsServer

    now = time.monotonic()
    made = {name: Connection(task=_Task(), transport=_Transport(), reader=_Reader(),
                             last_active=now - age, **fields)
            for name, age, fields in connections}
    stub = SimpleNamespace(_connections={c.task: c for c in made.values()},
                           connection_budget=budget, _evicted=0,
                           _warn=lambda *args: None)
    assert MetricsServer._make_room(stub)
    return [name for name, c in made.items() if c.transport.aborted]


def test_a_refused_connection_goes_before_any_other_then_one_waiting_for_a_password():
    """A connection answered with an error lingers while it reads what is left of its
    request: with a guesser's pipelined requests unread, it was spared like a newcomer,
    and a good scraper's connection could go in its place. Refused connections now go
    first, then those waiting for a password check, whatever they hold unread."""
    pipelining = {"unhandled": True}  # request bytes read, not yet handled
    assert _evicted_by_a_newcomer([("old", 5.0, {}), ("refused", 0.5,
                                                     {"refused": True, **pipelining}),
                                   ("scrape", 0.01, pipelining)], budget=3) == ["refused"]
    assert _evicted_by_a_newcomer([("sender", 5.0, pipelining),
                                   ("guess", 0.2, {"checking_password": True, **pipelining}),
                                   ("scrape", 0.01, pipelining)], budget=3) == ["guess"]
    # Otherwise as before: the oldest that is neither a sender nor refused.
    assert _evicted_by_a_newcomer([("sender", 5.0, pipelining), ("silent", 2.0, {}),
                                   ("scrape", 0.01, pipelining)], budget=3) == ["silent"]


def test_a_connection_that_was_answered_outlives_idle_strangers():
    with serve(port=0, addr="127.0.0.1", registry=registry(), max_connections=3,
               read_timeout=60) as server:
        good = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HANG_GUARD)
        good.request("GET", "/metrics")
        assert good.getresponse().read()  # keep-alive: the connection stays
        strangers = []
        for _ in range(3):
            strangers.append(socket.create_connection(("127.0.0.1", server.port),
                                                      timeout=HANG_GUARD))
            _wait_for(lambda: server.open_connections == min(3, 1 + len(strangers)))
        try:
            assert closed_by_server(strangers[0])  # the oldest stranger, not the older client
            assert still_open(strangers[1]) and still_open(strangers[2])
            good.request("GET", "/metrics")
            assert good.getresponse().status == 200
        finally:
            good.close()
            for sock in strangers:
                sock.close()


def test_tls_clients_that_never_send_a_client_hello_count_against_the_budget(certs):  # noqa: F811
    with serve(port=0, addr="127.0.0.1", registry=registry(), certfile=str(certs["cert"]),
               keyfile=str(certs["key"]), max_connections=5, read_timeout=60) as server:
        silent = []
        for _ in range(20):
            silent.append(socket.create_connection(("127.0.0.1", server.port),
                                                   timeout=HANG_GUARD))
            # Each accepted before the next connects: with the accept queue full (a busy
            # machine), a socket's last ACK is dropped and it is accepted after later ones,
            # and the server would rightly keep that older socket as its newest.
            count = len(silent)
            _wait_for(lambda: count == server.open_connections  # noqa: B023 - called at once
                      + server.evicted_connections)
        try:
            # The first 15 are evicted by the 5 that came after them.
            assert all(closed_by_server(sock) for sock in silent[:15])
            assert server.open_connections == server.connection_budget == 5
            connection = http.client.HTTPSConnection("127.0.0.1", server.port,
                                                     timeout=HANG_GUARD,
                                                     context=client_context(certs))
            connection.request("GET", "/metrics")
            assert connection.getresponse().status == 200
            connection.close()
        finally:
            for sock in silent:
                sock.close()


def test_a_newcomer_whose_request_waits_unread_is_spared_over_older_idle_sockets():
    with serve(port=0, addr="127.0.0.1", registry=registry(), max_connections=2,
               read_timeout=60) as server:
        # Hold the server's loop so three connections are accepted in one round, the way
        # a burst of attackers arrives right behind a good client.
        blocked, release = threading.Event(), threading.Event()

        def hold() -> None:
            blocked.set()
            release.wait(HANG_GUARD)

        server._loop.call_soon_threadsafe(hold)
        assert blocked.wait(HANG_GUARD)
        good = socket.create_connection(("127.0.0.1", server.port), timeout=HANG_GUARD)
        good.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        silent = [socket.create_connection(("127.0.0.1", server.port), timeout=HANG_GUARD)
                  for _ in range(2)]
        release.set()
        try:
            # The good client is the oldest, but its request waits unread: a silent one goes.
            answer = b"".join(iter(lambda: good.recv(65536), b""))
            assert answer.startswith(b"HTTP/1.1 200 ") and b"demo_scrapes_total 5.0" in answer
            assert closed_by_server(silent[0])
            assert still_open(silent[1])
        finally:
            good.close()
            for sock in silent:
                sock.close()


def test_the_budget_is_a_quarter_of_the_open_file_limit_and_at_most_max_connections():
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_budget(10**9) == max(soft // 4, 8)
    assert connection_budget(3) == 3


SERVER_UNDER_LIMIT = textwrap.dedent("""
    import os, resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    from prometheus_client import CollectorRegistry
    from inferwatch.serving.server import serve
    server = serve(port=0, addr="127.0.0.1", registry=CollectorRegistry(),
                   certfile=sys.argv[1], keyfile=sys.argv[2], read_timeout=60)
    print(server.port, server.connection_budget, flush=True)
    for line in sys.stdin:  # each line: open 40 files, report how many failed, close them
        fds, failed = [], 0
        for _ in range(40):
            try:
                fds.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                failed += 1
        for fd in fds:
            os.close(fd)
        print(failed, server.open_connections, flush=True)
""")


def test_never_handshaking_tls_clients_cannot_exhaust_the_host_descriptors(certs):  # noqa: F811
    """At a 128-file limit, 200 silent TLS clients leave the host application its files."""
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_UNDER_LIMIT, str(certs["cert"]), str(certs["key"])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    silent: list[socket.socket] = []
    try:
        port, budget = map(int, process.stdout.readline().split())
        assert budget == 32  # a quarter of 128, read at start-up
        for _ in range(200):
            silent.append(socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD))
        # Every socket beyond the budget is closed by the server (evicted or refused).
        _wait_for(lambda: sum(not still_open(sock) for sock in silent) >= 200 - budget)
        process.stdin.write("probe\n")
        process.stdin.flush()
        failed, open_connections = map(int, process.stdout.readline().split())
        assert failed == 0
        assert open_connections <= budget
    finally:
        for sock in silent:
            sock.close()
        process.stdin.close()
        stop(process)


# --- malformed requests ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def plain_server():
    with serve(port=0, addr="127.0.0.1", registry=registry(), read_timeout=5) as running:
        yield running


def _exchange(port: int, head: bytes) -> bytes:
    """Send `head`, half-close, and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD) as sock:
        sock.sendall(head)
        sock.shutdown(socket.SHUT_WR)  # no body and no next request will come
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def _status(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert match, answer[:200]
    return int(match.group(1))


# Header bytes are read as latin-1, where "\xb2" is "²": str.isdigit() says yes, int() no.
@pytest.mark.parametrize("value", [b"\xb2", b"\xb9", b"1\xb3", b"\xd9\xa1", b"+5", b"-1",
                                   b" 1 2", b"1_0", b"0x10", b"99999999999999999999999",
                                   b"5, 5"])
def test_a_malformed_content_length_is_a_400_not_an_internal_fault(plain_server, value):
    before = faults.internal_error_counts().get("server", 0)
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\n"
    answer = _exchange(plain_server.port, head)
    assert _status(answer) in (400, 413)
    assert faults.internal_error_counts().get("server", 0) == before


header_bytes = st.one_of(
    st.binary(max_size=40).filter(lambda b: b"\r\n" not in b),
    # Digits of other scripts and superscripts: what a lax number parser trips on.
    st.lists(st.sampled_from([b"1", b"0", b"\xb2", b"\xb9", b"\xd9\xa1", b" ", b",", b"-",
                              b"\x00", b"=", b"\xff"]), max_size=6).map(b"".join))
request_lines = st.one_of(
    st.binary(max_size=60).filter(lambda b: b"\r\n" not in b),
    st.builds(lambda m, t, v: b" ".join([m, t, v]),
              st.sampled_from([b"GET", b"HEAD", b"POST", b"G\xc3\xa9T", b"GET\x00"]),
              st.sampled_from([b"/metrics", b"/", b"/-/healthy", b"/\xff", b"/metrics?x=\x7f"]),
              st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"http/1.1"])))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request_lines, st.lists(st.tuples(
    st.sampled_from([b"Content-Length", b"Connection", b"Accept", b"Accept-Encoding",
                     b"Authorization", b"Transfer-Encoding", b"Host", b"X\xffY", b" Host",
                     b"Content-Length "]), header_bytes), max_size=4))
def test_no_request_head_raises_an_internal_fault(plain_server, line, headers):
    before = faults.internal_error_counts().get("server", 0)
    head = line + b"\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n"
    answer = _exchange(plain_server.port, head)
    if answer:  # a valid head answers normally; a bad one gets a 4xx or 5xx, never a fault
        assert 200 <= _status(answer) < 600
    assert faults.internal_error_counts().get("server", 0) == before


# --- the load test -------------------------------------------------------------------------

class Attacker:
    """Holds `count` hostile connections of every kind, reopening any the server closes."""

    KINDS = ("idle", "half_open", "slow", "tls_silent", "tls_idle")

    def __init__(self, port: int, count: int, tls: ssl.SSLContext | None) -> None:
        self.port, self.tls = port, tls
        kinds = self.KINDS if tls is not None else self.KINDS[:3]
        self.slots: list[list] = [[kinds[i % len(kinds)], None] for i in range(count)]
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Attacker:
        self._fill()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(HANG_GUARD)
        for slot in self.slots:
            if slot[1] is not None:
                slot[1].close()

    def _open(self, kind: str) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            if kind == "tls_idle":
                sock = self.tls.wrap_socket(sock, server_hostname="127.0.0.1")  # type: ignore
            elif kind == "half_open":
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHo")
                sock.shutdown(socket.SHUT_WR)
            elif kind == "slow":
                sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            sock.setblocking(False)
            return sock
        except (OSError, ssl.SSLError):
            return None

    def _fill(self) -> None:
        for slot in self.slots:
            if slot[1] is None or not _alive(slot[1]):
                if slot[1] is not None:
                    slot[1].close()
                    self.reopened += 1
                slot[1] = self._open(slot[0])

    def _run(self) -> None:
        # The attacker's own pace: a byte for each slow connection every 0.2 s, and every
        # closed connection reopened every 2 s (the reported attack reopened every 8 s).
        # Oldest-first eviction defends against clients holding sockets; one opening
        # sockets faster than the server reads a newcomer's request is a flood, out of
        # scope (docs/security.md).
        rounds = 0
        while not self._stop.wait(0.2):
            rounds += 1
            if rounds % 10 == 0:
                self._fill()
            for kind, sock in self.slots:
                if kind == "slow" and sock is not None:
                    try:
                        sock.send(b"X")  # one byte of a header that never ends
                    except OSError:
                        pass


def _alive(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) != b""
    except (BlockingIOError, ssl.SSLWantReadError):
        return True
    except OSError:
        return False


def _get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=GOOD_CLIENT_TIMEOUT, context=context) as answer:
        return answer.status, answer.read()


def _wait_for(condition, timeout: float = HANG_GUARD) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the safety deadline"
        time.sleep(0.01)


def _scrape_every_second_under_attack(url: str, port: int, budget: int,
                                      tls: ssl.SSLContext | None, expect: bytes) -> Attacker:
    with Attacker(port, budget + budget // 2, tls) as attacker:
        results = []
        for _ in range(GOOD_SCRAPES):
            started = time.monotonic()
            try:
                status, body = _get(url, tls)
                results.append(status == 200 and expect in body)
            except OSError as exc:
                results.append(exc)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))  # the scrape cadence
        assert results == [True] * GOOD_SCRAPES
    return attacker


@pytest.mark.parametrize("use_tls", [False, True])
def test_every_good_scrape_succeeds_while_an_attacker_holds_connections_serve(certs, use_tls):  # noqa: F811
    tls = client_context(certs) if use_tls else None
    files = {"certfile": str(certs["cert"]), "keyfile": str(certs["key"])} if use_tls else {}
    with serve(port=0, addr="127.0.0.1", registry=registry(), max_connections=24,
               read_timeout=30, idle_timeout=60, **files) as server:
        attacker = _scrape_every_second_under_attack(server.url, server.port, 24, tls,
                                                     b"demo_scrapes_total 5.0")
        assert server.evicted_connections > 0  # the attacker did fill the budget
        assert attacker.reopened > 0


@pytest.mark.integration
def test_every_good_scrape_succeeds_while_an_attacker_holds_connections_exporter(
        tmp_path: Path, certs):  # noqa: F811
    import resource

    config = tmp_path / "web.yml"
    config.write_text(f"tls_server_config:\n  cert_file: {certs['cert']}\n"
                      f"  key_file: {certs['key']}\n")
    log_path = tmp_path / "exporter.log"
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inferwatch.standalone.cli", "--web.listen-address=127.0.0.1:0",
             f"--web.config.file={config}", "--no-collector.gpu"],
            stdout=log, stderr=subprocess.STDOUT,
            # 256 files: the exporter's budget is 64 connections, read at start-up.
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)))
    try:
        url = _exporter_url(log_path, process)
        port = int(url.split(":")[2].split("/")[0])
        assert "connection_budget=64" in log_path.read_text()
        attacker = _scrape_every_second_under_attack(url, port, 64, client_context(certs),
                                                     b"inferwatch_exporter_build_info")
        assert attacker.reopened > 0  # the exporter evicted attackers to serve the scrapes
        assert process.poll() is None
    finally:
        stop(process)


def _exporter_url(log_path: Path, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        match = re.search(r"serving (https?\S+)", log_path.read_text())
        if match:
            return match.group(1)
        assert process.poll() is None, log_path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"exporter did not start: {log_path.read_text()}")
