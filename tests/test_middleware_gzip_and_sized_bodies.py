"""Which ASGI response bodies are streams: a plain answer that GZip compresses in streaming
mode (its gzip framing sent as chunks of its own) and a file of declared size sent in 64 KiB
chunks are none; a stream compressed by GZip keeps its item count. Through a real uvicorn
with FastAPI, an ``@app.middleware("http")`` and Starlette's GZipMiddleware, and as a
property of any chunks an app streams through GZip."""

from __future__ import annotations

import asyncio
import gzip
import random
import sys
import textwrap
import urllib.request
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from starlette.middleware.gzip import GZipMiddleware

from conftest import free_port
from inferwatch.serving.middleware import InstrumentMiddleware
from processes import serving_app
from stream_totals import STREAM_EXAMPLES
from waiting import wait_until

APP = '''
import inferwatch
from fastapi import FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, StreamingResponse

def score(x):  # a plain function: task="auto", a regressor by its answers
    return 0.7

def render(x):
    return 0.5

fraud = inferwatch.instrument(score, name="fraud", version="1")
renderer = inferwatch.instrument(render, name="render", version="1")
app = FastAPI()

@app.get("/health")
def health():
    return "ok"

@app.get("/score/{x}")
def score_endpoint(x: str):
    return {"fraud": fraud(x), "pad": "p" * 20}

@app.get("/lines/{x}")
def lines(x: str):
    value = fraud(x)
    def chunks():
        for i in range(3):
            yield f'{{"i": {i}, "p": {value}}}\\n'
    return StreamingResponse(chunks(), media_type="application/x-ndjson")

@app.get("/render/{x}")
def render_endpoint(x: str):
    renderer(x)
    return FileResponse(FILE)

@app.middleware("http")
async def served_by(request: Request, call_next):
    response = await call_next(request)
    response.headers["X-Served-By"] = "a"
    return response

app.add_middleware(GZipMiddleware)
app.add_middleware(inferwatch.InstrumentMiddleware,
                   routes={"/score/{x}": "fraud", "/lines/{x}": "fraud", "/render/{x}": "render"})
app.mount("/metrics", inferwatch.make_asgi_app())
'''


def get(url: str, *, gzipped: bool) -> tuple[dict, bytes]:
    headers = {"Accept-Encoding": "gzip"} if gzipped else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                timeout=60) as response:
        return {k.lower(): v for k, v in response.headers.items()}, response.read()


def samples(url: str) -> list:
    text = get(url + "/metrics/", gzipped=False)[1].decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(url: str, name: str, **labels: str) -> float:
    return sum(s.value for s in samples(url)
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def task_of(url: str, model: str) -> str | None:
    found = [s.labels["task"] for s in samples(url)
             if s.name == "inferwatch_model_info" and s.labels.get("model") == model]
    return found[0] if found else None


def requests_done(url: str, model: str, count: int) -> bool:
    # A request ends once its app returned, which may be just after the client got the body.
    return value(url, "inferwatch_requests_total", model=model) >= count


@pytest.mark.integration
def test_uvicorn_gzip_plain_answers_and_files_are_no_streams_and_a_gzip_stream_keeps_its_items(
        tmp_path: Path) -> None:
    big = tmp_path / "report.bin"
    big.write_bytes(random.Random(7).randbytes(300_000))  # five 64 KiB chunks
    (tmp_path / "gzip_app.py").write_text(f"FILE = {str(big)!r}\n" + textwrap.dedent(APP))
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "gzip_app:app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]
    with serving_app(args, port, app_dir=tmp_path, log_dir=tmp_path,
                     ready_path="/health") as url:
        for i in range(4):
            headers, body = get(f"{url}/score/{i}", gzipped=True)
            assert headers.get("content-encoding") == "gzip"  # compressed in streaming mode
            assert b'"fraud":0.7' in gzip.decompress(body)
        assert get(f"{url}/score/9", gzipped=False)[1].startswith(b'{"fraud":0.7')
        wait_until(lambda: requests_done(url, "fraud", 5), what="the plain answers")
        assert value(url, "inferwatch_stream_items_count", model="fraud") == 0
        assert value(url, "inferwatch_stream_first_item_seconds_count", model="fraud") == 0
        assert task_of(url, "fraud") == "regression"

        headers, body = get(f"{url}/lines/1", gzipped=True)
        assert headers.get("content-encoding") == "gzip"
        assert gzip.decompress(body).count(b"\n") == 3
        wait_until(lambda: requests_done(url, "fraud", 6), what="the stream")
        assert value(url, "inferwatch_stream_items_count", model="fraud") == 1
        assert value(url, "inferwatch_stream_items_sum", model="fraud") == 3  # no framing
        assert task_of(url, "fraud") == "regression"  # the body's chunks are no model stream

        for i in range(3):
            headers, body = get(f"{url}/render/{i}", gzipped=False)
            assert body == big.read_bytes() and headers["content-length"] == "300000"
        wait_until(lambda: requests_done(url, "render", 3), what="the files")
        assert value(url, "inferwatch_requests_total", model="render", outcome="ok") == 3
        assert value(url, "inferwatch_stream_items_count", model="render") == 0
        assert value(url, "inferwatch_stream_first_item_seconds_count", model="render") == 0
        assert task_of(url, "render") == "regression"


@pytest.fixture
def registry(registry):
    registry.monitor("gen", "1")  # the model the middleware records to
    return registry


def drive(app, accept_gzip: bool = True) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"accept-encoding", b"gzip")] if accept_gzip else []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": "/stream", "raw_path": b"/stream",
             "root_path": "", "query_string": b"", "headers": headers,
             "server": ("test", 80), "client": ("client", 1)}
    asyncio.run(app(scope, receive, send))
    return sent


def stream_figures(registry, model: str) -> tuple[int, float]:
    """(streams, items) the model recorded, once drained."""
    registry.drain()
    histogram = registry.monitor(model, "1").state.histograms.get("inferwatch_stream_items")
    if not histogram:
        return 0, 0.0
    series = histogram[()]
    return int(series.counts.sum()), series.sum


@STREAM_EXAMPLES
@given(chunks=st.lists(st.one_of(st.just(b""), st.binary(min_size=1, max_size=2000)),
                       max_size=8),
       last=st.binary(max_size=50), minimum_size=st.sampled_from([0, 500]))
def test_a_body_streamed_through_gzip_counts_the_chunks_with_bytes_as_items(
        registry, chunks: list[bytes], last: bytes, minimum_size: int) -> None:
    """Whatever an app streams through GZip: as many items as chunks with bytes in them,
    and a stream only with more than one; the client still gets the bytes unchanged."""
    model = registry.monitor("gen", "1")
    before = stream_figures(registry, "gen")

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": last})

    wrapped = InstrumentMiddleware(
        GZipMiddleware(app, minimum_size=minimum_size, exclude_content_types=()),
        model="gen", registry=registry)
    sent = drive(wrapped)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    encoded = any(name == b"content-encoding" for name, _ in sent[0]["headers"])
    assert (gzip.decompress(body) if encoded else body) == b"".join(chunks) + last
    with_bytes = sum(1 for chunk in [*chunks, last] if chunk)
    streams, items = stream_figures(registry, "gen")
    expected = (1, with_bytes) if with_bytes > 1 else (0, 0)
    assert (streams - before[0], items - before[1]) == expected
    assert model.state.info["task"] == "auto"  # body chunks make no model a generator


def test_a_gzip_member_header_sent_alone_is_no_item(registry) -> None:
    """A compressor that sends the member's header before any data (as ``gzip.GzipFile``
    writing to a buffer does) and then the whole rest: one answer, no stream."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    header = compressor.compress(b'{"p": 0.7}')
    assert header[:3] == b"\x1f\x8b\x08" and len(header) == 10
    rest = compressor.flush()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-encoding", b"gzip")]})
        await send({"type": "http.response.body", "body": header, "more_body": True})
        await send({"type": "http.response.body", "body": rest})

    sent = drive(InstrumentMiddleware(app, model="gen", registry=registry))
    assert gzip.decompress(sent[1]["body"] + sent[2]["body"]) == b'{"p": 0.7}'
    assert stream_figures(registry, "gen") == (0, 0.0)


def test_a_body_of_declared_length_in_several_chunks_is_no_stream(registry) -> None:
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"6")]})
        for part, more in ((b"ab", True), (b"cd", True), (b"ef", False)):
            await send({"type": "http.response.body", "body": part, "more_body": more})

    drive(InstrumentMiddleware(app, model="gen", registry=registry), accept_gzip=False)
    assert stream_figures(registry, "gen") == (0, 0.0)
    assert registry.monitor("gen", "1").state.counters["inferwatch_requests_total"][
        ("ok",)] == 1


def test_gzip_framing_is_no_item_only_where_it_is_framing(registry) -> None:
    """The same bytes in a body that is not gzip, or an empty block's bytes carrying data
    mid-stream under gzip, are items: only a chunk of gzip framing alone is left out."""
    framing = (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03", b"\x00\x00\x00\xff\xff",
               b"\x03\x00" + bytes(8))

    async def plain(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in framing[:-1]:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": framing[-1]})

    drive(InstrumentMiddleware(plain, model="gen", registry=registry))
    assert stream_figures(registry, "gen") == (1, 3.0)
