"""Pushgateway edges (replies cut short, async callable jobs, bytes in grouping keys, bad
keys) and the status page's link to metrics at a path that needs encoding."""

from __future__ import annotations

import asyncio
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from html import unescape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.serving.pushgateway import PushError
from loopback_http import LoopbackServer, QuietHandler, forward_put
from test_pushgateway import Gateway, gateway  # noqa: F401 (the fixture)


class CuttingFront:
    """A proxy before the real gateway that cuts its reply to the first `cuts` PUTs after
    `cut` bytes (a status line never finished), then forwards every request."""

    def __init__(self, target: str, cut: bytes, cuts: int) -> None:
        self.puts = 0
        self.lock = threading.Lock()
        front = self

        class Handler(QuietHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with front.lock:
                    front.puts += 1
                    cutting = front.puts <= cuts
                if cutting:
                    self.wfile.write(cut)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                forward_put(self, target, body)

        self.http = LoopbackServer(Handler)
        self.address = self.http.address

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def registry() -> Iterator[Registry]:
    registry = Registry()
    yield registry
    registry.close()


# --- a reply cut short is a blip, tried again -----------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("cut", [b"HTTP/1.1", b"HTTP/1.1 50"])
def test_a_reply_cut_short_by_a_proxy_is_pushed_again(gateway, registry, cut):  # noqa: F811
    score = inferwatch.instrument(lambda x: 0.5, name="churn", version="3", registry=registry)
    score([1.0])
    front = CuttingFront(gateway.address, cut, cuts=1)
    try:
        pushed = inferwatch.push(front.address, "nightly", registry=registry, retries=2,
                                 retry_delay=0, timeout=5)
    finally:
        front.close()
    assert pushed == [{"job": "nightly", "model": "churn"}]
    assert front.puts == 2
    assert gateway.value("inferwatch_requests_total", job="nightly", model="churn",
                         outcome="ok") == 1


def test_a_reply_always_cut_short_names_the_gateway_after_every_attempt(registry):
    inferwatch.instrument(lambda x: 0.5, name="churn", version="3", registry=registry)([1.0])
    front = CuttingFront("127.0.0.1:1", b"HTTP/1.1", cuts=10)
    try:
        with pytest.raises(PushError, match=rf"{front.address}.*BadStatusLine.*\(3 attempts\)"):
            inferwatch.push(front.address, "nightly", registry=registry, retries=2,
                            retry_delay=0, timeout=5)
    finally:
        front.close()
    assert front.puts == 3


# --- async callables decorated with push.on_exit --------------------------------------------


def recording_handler(urls: list[str], bodies: list[bytes] | None = None):
    """A push handler (prometheus_client's signature) that records each push's URL."""
    def handler(url, method, timeout, headers, data):
        def send() -> None:
            urls.append(url)
            if bodies is not None:
                bodies.append(data)
        return send
    return handler


def ok_calls(body: bytes) -> float:
    """The pushed count of successful calls in one push's body."""
    found = re.search(rb'inferwatch_requests_total\{[^}]*outcome="ok"[^}]*\} (\S+)', body)
    assert found, body.decode()
    return float(found.group(1))


def test_an_object_with_an_async_call_pushes_after_its_coroutine_ran(registry):
    score = inferwatch.instrument(lambda x: 0.5, name="churn", version="3", registry=registry)
    urls: list[str] = []
    bodies: list[bytes] = []

    class Job:
        async def __call__(self, rows: int) -> str:
            await asyncio.sleep(0)
            for _ in range(rows):
                score([1.0])
            return "scored"

    job = inferwatch.push.on_exit("127.0.0.1:9091", "nightly", registry=registry,
                                  handler=recording_handler(urls, bodies))(Job())
    assert asyncio.run(job(4)) == "scored"
    assert len(urls) == 1
    assert ok_calls(bodies[0]) == 4


def test_a_coroutine_from_a_plain_callable_is_pushed_after_it_is_awaited(registry):
    score = inferwatch.instrument(lambda x: 0.5, name="churn", version="3", registry=registry)
    urls: list[str] = []
    bodies: list[bytes] = []

    async def work() -> str:
        score([1.0])
        return "scored"

    # A decorator without functools.wraps hides that the job is async.
    job = inferwatch.push.on_exit("127.0.0.1:9091", "nightly", registry=registry,
                                  handler=recording_handler(urls, bodies))(lambda: work())
    assert asyncio.run(job()) == "scored"
    assert len(urls) == 1
    assert ok_calls(bodies[0]) == 1


def test_an_object_with_an_async_generator_call_pushes_when_it_ends(registry):
    score = inferwatch.instrument(lambda x: 0.5, name="churn", version="3", registry=registry)
    urls: list[str] = []
    bodies: list[bytes] = []

    class Batches:
        async def __call__(self, n: int):
            for i in range(n):
                score([1.0])
                yield i

    async def consume() -> list[int]:
        job = inferwatch.push.on_exit("127.0.0.1:9091", "nightly", registry=registry,
                                      handler=recording_handler(urls, bodies))(Batches())
        return [item async for item in job(3)]

    assert asyncio.run(consume()) == [0, 1, 2]
    assert len(urls) == 1
    assert ok_calls(bodies[0]) == 3


def test_a_plain_callable_object_still_pushes_and_reraises(registry):
    urls: list[str] = []
    inferwatch.instrument(lambda x: 0.5, name="churn", version="3", registry=registry)

    class Job:
        def __call__(self) -> str:
            raise KeyError("missing")

    job = inferwatch.push.on_exit("127.0.0.1:9091", "nightly", registry=registry,
                                  handler=recording_handler(urls))(Job())
    with pytest.raises(KeyError):
        job()
    assert len(urls) == 1


# --- grouping keys: bytes, numbers, bad values ----------------------------------------------


@pytest.mark.integration
def test_bytes_in_the_grouping_key_are_pushed_as_their_text(gateway, registry):  # noqa: F811
    inferwatch.instrument(lambda x: 0.5, name="churn", version="3", registry=registry)([1.0])
    pushed = inferwatch.push(gateway.address, "nightly", registry=registry,
                             grouping_key={"instance": b"host-1", "shard": 3})
    assert pushed == [{"job": "nightly", "model": "churn", "instance": "host-1", "shard": "3"}]
    assert gateway.value("inferwatch_requests_total", job="nightly", model="churn",
                         instance="host-1", shard="3", outcome="ok") == 1


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(min_size=0, max_size=20))
def test_a_utf8_bytes_value_groups_as_its_string(registry, value):
    inferwatch.instrument(lambda x: 0.5, name="churn", version="3", registry=registry)
    as_text: list[str] = []
    as_bytes: list[str] = []
    inferwatch.push("127.0.0.1:9091", "nightly", registry=registry,
                    grouping_key={"instance": value}, handler=recording_handler(as_text))
    inferwatch.push("127.0.0.1:9091", "nightly", registry=registry,
                    grouping_key={"instance": value.encode()},
                    handler=recording_handler(as_bytes))
    assert as_bytes == as_text


def test_undecodable_bytes_are_refused_naming_the_label():
    with pytest.raises(ValueError, match=r"grouping_key label 'instance'.*not UTF-8"):
        inferwatch.push.on_exit("127.0.0.1:9091", "nightly",
                                grouping_key={"instance": b"\xffhost"})


@pytest.mark.parametrize("grouping_key", [[("instance", "host-1")], "instance=host-1"])
def test_a_grouping_key_that_is_no_mapping_is_refused_clearly(grouping_key):
    with pytest.raises(ValueError, match="grouping_key must be a mapping"):
        inferwatch.push.on_exit("127.0.0.1:9091", "nightly", grouping_key=grouping_key)


@pytest.mark.parametrize("options", [
    {"job": "nightly-\udcff"},
    {"job": "nightly", "grouping_key": {"instance": "host-\udcff"}},
])
def test_text_that_cannot_be_sent_is_refused_before_the_job_runs(options):
    with pytest.raises(ValueError, match="lone surrogate"):
        inferwatch.push.on_exit("127.0.0.1:9091", **options)


# --- the status page's link to the metrics ---------------------------------------------------


@pytest.mark.parametrize("path", ["/métriques", "/a#b", "/a?b", "/m:v2", "/x/y z"])
def test_the_status_pages_metrics_link_reaches_the_metrics(path):
    registry = Registry()
    prometheus = CollectorRegistry()
    prometheus.register(InferwatchCollector(registry))
    inferwatch.instrument(lambda x: 0.5, name="churn", version="3", registry=registry)([1.0])
    if "?" in path or " " in path:
        # Not legal telemetry paths: their encoded form is.
        path = urllib.parse.quote(path)
    try:
        with inferwatch.serve(port=0, addr="127.0.0.1", registry=prometheus,
                              status_page=registry, telemetry_path=path) as server:
            base = server.url[:server.url.index("/", len("http://"))] + "/"
            index = urllib.request.urlopen(base, timeout=10).read().decode()
            found = re.search(r'Metrics: <a href="([^"]*)">', index)
            assert found, index
            target = urllib.parse.urljoin(base, unescape(found.group(1)))
            assert urllib.parse.urlsplit(target).netloc == urllib.parse.urlsplit(base).netloc
            assert target == server.url
            with urllib.request.urlopen(target, timeout=10) as response:
                assert response.status == 200
                assert b"inferwatch_requests_total" in response.read()
    finally:
        registry.close()
