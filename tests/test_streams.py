"""Streams, text and tokens: generators and async generators recorded whole, text as length."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.follower import Follower
from inferwatch.core.monitor import Monitor
from inferwatch.core.stream_records import usage_tokens


def monitor_of(scraper, name: str = "gen", version: str = "1") -> Monitor:
    return inferwatch.monitor(name, version, registry=scraper.registry)


def outcomes(scraper, model: str = "gen") -> dict[str, float]:
    return {s.labels["outcome"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_requests_total" and s.labels["model"] == model}


def tokens_gen(n: int, fail_at: int | None = None, error: BaseException | None = None):
    for i in range(n):
        if i == fail_at:
            raise error
        yield f"tok{i} "


def test_sync_generator_yields_the_same_items_and_records_the_whole_stream(scraper):
    items = [object() for _ in range(5)]
    stream = inferwatch.instrument(lambda: (i for i in items), name="gen", version="1",
                                   registry=scraper.registry)
    received = list(stream())
    assert all(a is b for a, b in zip(received, items, strict=True))  # no copy
    assert outcomes(scraper) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0}
    assert scraper.value("inferwatch_stream_items_count") == 1
    assert scraper.value("inferwatch_stream_items_sum") == 5
    assert scraper.value("inferwatch_stream_first_item_seconds_count") == 1
    # Five items, four gaps between them.
    assert scraper.value("inferwatch_stream_item_interval_seconds_count") == 4
    assert scraper.value("inferwatch_request_duration_seconds_count") == 1
    assert scraper.value("inferwatch_requests_in_flight") == 0


def test_duration_covers_the_stream_not_the_call_that_created_it(scraper):
    def slow_items():
        start = time.perf_counter()
        yield 1
        while time.perf_counter() - start < 0.02:  # at least 20 ms between the two items
            pass
        yield 2

    stream = inferwatch.instrument(slow_items, name="gen", version="1",
                                   registry=scraper.registry)
    assert list(stream()) == [1, 2]
    assert scraper.value("inferwatch_request_duration_seconds_sum") >= 0.02
    assert scraper.value("inferwatch_stream_item_interval_seconds_sum") >= 0.02
    assert scraper.value("inferwatch_stream_first_item_seconds_sum") < \
        scraper.value("inferwatch_request_duration_seconds_sum")


def test_generator_function_and_iterator_results_and_return_value(scraper):
    def counting(n):
        yield from range(n)
        return "done"

    gen_fn = inferwatch.instrument(counting, name="gen", version="1", registry=scraper.registry)

    def outer():
        result = yield from gen_fn(3)
        assert result == "done"  # StopIteration.value passes through

    assert list(outer()) == [0, 1, 2]
    as_iter = inferwatch.instrument(lambda: iter([4, 5]), name="gen", version="1",
                                    registry=scraper.registry)
    assert list(as_iter()) == [4, 5]
    assert outcomes(scraper)["ok"] == 2
    assert scraper.value("inferwatch_stream_items_sum") == 5


@pytest.mark.parametrize("fail_at", [0, 2, 4])
def test_an_error_mid_stream_is_counted_and_reraised_untouched(scraper, fail_at):
    error = KeyError("boom")
    stream = inferwatch.instrument(tokens_gen, name="gen", version="1", registry=scraper.registry)
    received = []
    with pytest.raises(KeyError) as caught:
        for item in stream(5, fail_at, error):
            received.append(item)
    assert caught.value is error
    assert len(received) == fail_at
    assert outcomes(scraper) == {"ok": 0.0, "error": 1.0, "cancelled": 0.0}
    assert scraper.value("inferwatch_errors_total", error_type="KeyError") == 1
    assert scraper.value("inferwatch_stream_items_sum") == fail_at
    assert (scraper.value("inferwatch_stream_first_item_seconds_count") or 0) == min(fail_at, 1)


def test_an_error_after_the_last_item_is_an_error(scraper):
    def last_then_fail():
        yield "only"
        raise ValueError("after the last item")

    stream = inferwatch.instrument(last_then_fail, name="gen", version="1",
                                   registry=scraper.registry)
    with pytest.raises(ValueError):
        list(stream())
    assert outcomes(scraper) == {"ok": 0.0, "error": 1.0, "cancelled": 0.0}
    assert scraper.value("inferwatch_stream_items_sum") == 1


def test_early_break_close_and_collection_are_cancelled_not_errors(scraper):
    closed = []

    def watched(n):
        try:
            yield from range(n)
        finally:
            closed.append(n)

    stream = inferwatch.instrument(watched, name="gen", version="1", registry=scraper.registry)
    for _ in stream(10):
        break
    gen = stream(11)
    next(gen)
    gen.close()
    started = stream(12)
    next(started)
    del started
    never_started = stream(13)
    del never_started
    gc.collect()
    assert sorted(closed) == [10, 11, 12]  # the wrapped generators were closed too
    assert outcomes(scraper) == {"ok": 0.0, "error": 0.0, "cancelled": 4.0}
    assert scraper.value("inferwatch_errors_total") is None
    assert scraper.value("inferwatch_requests_in_flight") == 0


def test_send_and_throw_pass_through(scraper):
    def echo():
        received = None
        while True:
            try:
                received = yield received
            except ValueError as exc:
                received = f"caught {exc}"

    stream = inferwatch.instrument(echo, name="gen", version="1", registry=scraper.registry)
    gen = stream()
    assert next(gen) is None
    assert gen.send("a") == "a"
    assert gen.send(2) == 2
    assert gen.throw(ValueError("x")) == "caught x"
    gen.close()
    assert outcomes(scraper)["cancelled"] == 1
    assert scraper.value("inferwatch_stream_items_sum") == 4


def echo():
    received = None
    while True:
        received = yield received


def words(text: str) -> int:
    return len(text.split())


@pytest.mark.parametrize("options", [{}, {"count_tokens": words}], ids=["counts", "tokens"])
def test_a_send_before_the_first_item_fails_as_unwrapped_and_leaves_the_stream_usable(
        scraper, options):
    stream = inferwatch.instrument(lambda: echo(), name="gen", version="1",
                                   registry=scraper.registry, **options)
    gen = stream()
    with pytest.raises(TypeError) as caught:
        gen.send(5)
    with pytest.raises(TypeError) as bare:
        echo().send(5)
    assert str(caught.value) == str(bare.value)
    assert next(gen) is None
    assert gen.send("a b") == "a b"
    gen.close()
    assert outcomes(scraper) == {"ok": 0.0, "error": 0.0, "cancelled": 1.0}
    assert scraper.value("inferwatch_errors_total") is None  # the caller's misuse, not the model's
    assert scraper.value("inferwatch_stream_items_sum") == 2
    assert scraper.value("inferwatch_requests_in_flight") == 0


def test_count_tokens_reads_the_prompt_from_the_first_keyword_without_a_positional(scraper):
    # A call's input, as the request path reads it: its positional argument, else its first
    # keyword argument (the follower is handed both, as the wrappers call it).
    inferwatch.instrument(tokens_gen, name="gen", version="1", count_tokens=words,
                          registry=scraper.registry)
    mon = monitor_of(scraper)
    follow = Follower(mon)
    for args, kwargs in (((), {"prompt": "one two three"}), (("a b",), {"prompt": "c d e"})):
        mon.call_started()  # as the wrapper does before the call
        assert len(list(follow(tokens_gen(2), time.perf_counter(), args, kwargs=kwargs))) == 2
    assert scraper.value("inferwatch_tokens_total", kind="input") == 3 + 2
    assert scraper.value("inferwatch_tokens_total", kind="output") == 4
    assert scraper.value("inferwatch_requests_in_flight") == 0


def test_count_tokens_counts_a_prompt_passed_by_keyword(scraper):
    def generate(prompt, max_tokens=2):
        for _ in range(max_tokens):
            yield "a b"

    stream = inferwatch.instrument(generate, name="gen", version="1", count_tokens=words,
                                   registry=scraper.registry)
    assert len(list(stream(prompt="one two three"))) == 2
    assert scraper.value("inferwatch_tokens_total", kind="input") == 3


def test_async_generators_ok_error_break_aclose_and_task_cancellation(scraper):
    error = RuntimeError("mid-stream")

    @inferwatch.instrument(name="gen", version="1", registry=scraper.registry)
    async def agen(n, fail_at=None, wait: asyncio.Event | None = None):
        for i in range(n):
            if i == fail_at:
                raise error
            if wait is not None and i == 1:
                await wait.wait()
            yield i

    async def scenario():
        assert [x async for x in agen(4)] == [0, 1, 2, 3]
        with pytest.raises(RuntimeError) as caught:
            async for _ in agen(4, fail_at=2):
                pass
        assert caught.value is error
        stream = agen(5)
        assert await stream.__anext__() == 0
        await stream.aclose()
        blocked = asyncio.Event()
        stream = agen(5, wait=blocked)

        first = asyncio.Event()

        async def consume():
            async for _ in stream:
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()  # the consumer has its first item and waits for the second
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert outcomes(scraper) == {"ok": 1.0, "error": 1.0, "cancelled": 2.0}
    assert scraper.value("inferwatch_errors_total", error_type="RuntimeError") == 1
    assert scraper.value("inferwatch_requests_in_flight") == 0


def test_async_function_returning_an_async_generator(scraper):
    async def items():
        yield "a"
        yield "b"

    @inferwatch.instrument(name="gen", version="1", registry=scraper.registry)
    async def respond():
        return items()

    async def scenario():
        return [x async for x in await respond()]

    assert asyncio.run(scenario()) == ["a", "b"]
    assert outcomes(scraper)["ok"] == 1
    assert scraper.value("inferwatch_output_characters_sum") == 2


def test_a_generator_function_called_wrongly_is_an_error_raised_untouched(scraper):
    stream = inferwatch.instrument(tokens_gen, name="gen", version="1", registry=scraper.registry)
    with pytest.raises(TypeError) as caught:
        stream()  # n is missing: the call itself fails, before any stream exists
    with pytest.raises(TypeError) as bare:
        tokens_gen()
    assert str(caught.value) == str(bare.value)
    assert outcomes(scraper) == {"ok": 0.0, "error": 1.0, "cancelled": 0.0}
    assert scraper.value("inferwatch_errors_total", error_type="TypeError") == 1
    assert scraper.value("inferwatch_requests_in_flight") == 0


def test_throw_before_the_first_item_and_a_one_item_stream(scraper):
    stream = inferwatch.instrument(tokens_gen, name="gen", version="1", registry=scraper.registry)
    gen = stream(3)
    error = ValueError("thrown before any item")
    with pytest.raises(ValueError) as caught:
        gen.throw(error)  # as into a bare generator not yet started: it comes straight back
    assert caught.value is error
    assert list(stream(1)) == ["tok0 "]
    # The consumer aborted the stream before its first item: cancelled, as for a generator a
    # plain function returns, never an error of the model's.
    assert outcomes(scraper) == {"ok": 1.0, "error": 0.0, "cancelled": 1.0}
    # One item has no gap between items: the interval series is there, at zero.
    assert scraper.value("inferwatch_stream_item_interval_seconds_count") == 0
    assert scraper.value("inferwatch_stream_first_item_seconds_count") == 1


def test_settings_changed_after_instrumenting_reach_a_generator_function(scraper):
    stream = inferwatch.instrument(tokens_gen, name="gen", version="1", registry=scraper.registry)
    assert len(list(stream(2))) == 2
    monitor_of(scraper).configure(count_tokens=lambda text: len(text.split()))
    assert len(list(stream(3))) == 3
    assert scraper.value("inferwatch_tokens_total", kind="output") == 3
    assert outcomes(scraper)["ok"] == 2


def test_a_generator_function_follows_every_later_reconfiguration(scraper, tmp_path):
    stream = inferwatch.instrument(tokens_gen, name="gen", version="1", registry=scraper.registry)
    # An empty stream first: configure() folds it with the old settings, and a stream with
    # items would make the interval series there, in the old buckets, for good.
    assert list(stream(0)) == []
    mon = monitor_of(scraper)
    mon.configure(stream_interval_buckets=(1e-9,))  # new settings, still the fast path
    assert len(list(stream(3))) == 3
    assert scraper.value("inferwatch_stream_item_interval_seconds_bucket", le="1e-09") == 0
    assert scraper.value("inferwatch_stream_item_interval_seconds_bucket", le="+Inf") == 2
    mon.configure(events=str(tmp_path / "events.jsonl"))  # same settings, the slow path
    assert len(list(stream(4))) == 4
    mon.drain()
    assert mon.events.flush(10.0)
    events = [json.loads(line)
              for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["stream"]["items"] for e in events] == [4]
    assert outcomes(scraper)["ok"] == 3


def test_nested_instrumented_streams_are_each_recorded(scraper):
    inner = inferwatch.instrument(lambda n: (f"w{i}" for i in range(n)), name="inner",
                                  version="1", registry=scraper.registry)

    @inferwatch.instrument(name="outer", version="1", registry=scraper.registry)
    def outer(n):
        for word in inner(n):
            yield word.upper()
        yield from inner(2)

    assert list(outer(3)) == ["W0", "W1", "W2", "w0", "w1"]
    assert outcomes(scraper, "outer")["ok"] == 1
    assert outcomes(scraper, "inner")["ok"] == 2
    assert scraper.value("inferwatch_stream_items_sum", model="outer") == 5
    assert scraper.value("inferwatch_stream_items_sum", model="inner") == 5


def test_a_stream_inside_a_request_is_counted_once(scraper):
    stream = inferwatch.instrument(tokens_gen, name="gen", version="1", registry=scraper.registry)
    mon = monitor_of(scraper)
    with mon.request(request_id="r-1"):
        assert len(list(stream(3))) == 3
    assert outcomes(scraper)["ok"] == 1
    assert scraper.value("inferwatch_stream_items_sum") == 3
    assert scraper.value("inferwatch_stage_duration_seconds_count", stage="inference") == 1
    assert scraper.value("inferwatch_requests_in_flight") == 0


def test_slow_path_events_carry_item_and_token_counts_and_bounded_text(scraper, tmp_path):
    path = tmp_path / "events.jsonl"
    stream = inferwatch.instrument(tokens_gen, name="gen", version="1", events=str(path),
                                   count_tokens=lambda text: len(text.split()),
                                   event_text_chars=10, registry=scraper.registry)
    assert len(list(stream(6))) == 6
    with pytest.raises(KeyError):
        list(stream(6, 1, KeyError("k")))
    mon = monitor_of(scraper)
    mon.drain()
    assert mon.events.flush(10.0)
    events = [json.loads(line) for f in sorted(tmp_path.glob("events*.jsonl"))
              for line in f.read_text().splitlines()]
    ok = next(e for e in events if e["stream"]["outcome"] == "ok")
    assert ok["stream"]["items"] == 6 and ok["stream"]["output_tokens"] == 6
    assert ok["output_text"] == "tok0 tok1 "  # 10 characters, no more
    assert "prediction" not in ok
    failed = next(e for e in events if e["stream"]["outcome"] == "error")
    assert failed["error"] == {"type": "KeyError"} and failed["stream"]["items"] == 1
    assert outcomes(scraper) == {"ok": 1.0, "error": 1.0, "cancelled": 0.0}
    assert scraper.value("inferwatch_tokens_total", kind="output") == 7


@pytest.mark.parametrize("answer", ["stream", "text"])
def test_a_call_inside_a_request_keeps_its_output_text_for_the_requests_event(
        scraper, tmp_path, answer):
    """Every model route behind the web middleware runs inside a request: its event had no
    output_text at all, though event_text_chars asked for one."""
    path = tmp_path / "events.jsonl"
    answers = {"stream": lambda prompt: iter(["Hello", " world", "!"]),
               "text": lambda prompt: "Hello world!"}
    model = inferwatch.instrument(answers[answer], name="gen", version="1", events=str(path),
                                  event_text_chars=8, registry=scraper.registry)
    mon = monitor_of(scraper)
    with mon.request(request_id="r-1"):
        assert "".join(model("hi")) == "Hello world!"
    "".join(model("hi"))  # outside a request, as before
    mon.drain()
    assert mon.events.flush(10.0)
    # events.jsonl links to the file written: the files themselves, once each.
    events = [json.loads(line) for f in sorted(tmp_path.glob("events.*.jsonl"))
              for line in f.read_text().splitlines()]
    assert [e.get("output_text") for e in events] == ["Hello wo", "Hello wo"]
    assert events[0].get("request_id") == "r-1"


def _text_run(texts: list[str]) -> tuple[set[str], float, float, float]:
    """Label values, class count, text-length sum and count after recording `texts` as a
    text function's results, a stream's items, and a text call inside a request."""
    from conftest import Scraper

    scraper = Scraper()
    try:
        echo = inferwatch.instrument(lambda x: x, name="m", version="1",
                                     registry=scraper.registry)
        stream = inferwatch.instrument(lambda xs: iter(xs), name="m", version="1",
                                       registry=scraper.registry)
        for text in texts:
            assert echo(text) is text
        assert list(stream(texts)) == texts
        with monitor_of(scraper, "m").request():
            assert echo(texts[0]) is texts[0]
        samples = scraper.samples()
        return ({v for s in samples for k, v in s.labels.items()
                 if k not in ("model", "model_version")},
                scraper.total("inferwatch_predicted_class_total"),
                scraper.value("inferwatch_output_characters_sum"),
                scraper.value("inferwatch_output_characters_count"))
    finally:
        scraper.registry.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.text(min_size=1, max_size=60), min_size=1, max_size=5))
def test_text_outputs_never_become_labels(texts):
    labels, classes, chars, outputs = _text_run(texts)
    # The same calls with other texts give the very same label values: none comes from text.
    assert labels == _text_run(["-" * len(t) for t in texts])[0]
    assert classes == 0
    assert chars == sum(map(len, texts)) * 2 + len(texts[0])
    assert outputs == len(texts) + 2


def test_usage_reads_the_common_llm_response_shape(scraper):
    def completion(prompt):
        usage = SimpleNamespace(prompt_tokens=len(prompt), completion_tokens=7)
        return SimpleNamespace(choices=["..."], usage=usage)

    client = inferwatch.instrument(completion, name="llm", version="1", usage=True,
                                   registry=scraper.registry)
    response = client("hello")
    assert response.usage.completion_tokens == 7
    assert scraper.value("inferwatch_tokens_total", kind="input") == 5
    assert scraper.value("inferwatch_tokens_total", kind="output") == 7
    assert scraper.value("inferwatch_output_tokens_per_second_count") == 1
    assert scraper.total("inferwatch_predicted_class_total") == 0  # a response is no class
    assert not [s for s in scraper.samples() if "namespace" in json.dumps(s.labels)]


def test_usage_from_a_streams_final_chunk(scraper):
    def chunks():
        yield {"choices": [{"delta": "Hel"}], "usage": None}
        yield {"choices": [{"delta": "lo"}], "usage": None}
        yield {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}

    stream = inferwatch.instrument(chunks, name="llm", version="1", usage=True,
                                   registry=scraper.registry)
    assert len(list(stream())) == 3
    assert scraper.value("inferwatch_tokens_total", kind="input") == 3
    assert scraper.value("inferwatch_tokens_total", kind="output") == 2


def test_usage_shapes():
    assert usage_tokens(SimpleNamespace(usage=SimpleNamespace(input_tokens=4,
                                                              output_tokens=9))) == (4, 9)
    assert usage_tokens({"usage": {"prompt_tokens": 1}}) == (1, None)
    assert usage_tokens({"usage": {"prompt_tokens": "x", "completion_tokens": -1}}) is None
    assert usage_tokens(SimpleNamespace(usage=None)) is None


def test_faulty_token_hooks_are_counted_never_raised(scraper):
    def broken(text):
        raise ZeroDivisionError

    stream = inferwatch.instrument(tokens_gen, name="gen", version="1", count_tokens=broken,
                                   usage=lambda result: 1 / 0, registry=scraper.registry)
    assert len(list(stream(3))) == 3
    assert outcomes(scraper)["ok"] == 1
    assert scraper.value("inferwatch_internal_errors_total", component="tokens") >= 3
    assert scraper.value("inferwatch_tokens_total") is None


def test_bad_token_options_are_clear_errors():
    with pytest.raises(ValueError, match="count_tokens must be a function"):
        inferwatch.instrument(lambda x: x, name="m", count_tokens=3)
    with pytest.raises(ValueError, match="usage must be True"):
        inferwatch.instrument(lambda x: x, name="m", usage="yes")
    with pytest.raises(ValueError, match="event_text_chars"):
        inferwatch.instrument(lambda x: x, name="m", event_text_chars=-1)


# Run in a fresh interpreter: tracemalloc's peak counts every thread's allocations, and
# threads other tests left in a shared process (a drain, an event writer) once spent 23 KB
# during the long stream.
_CONSTANT_MEMORY = """
import tracemalloc

import inferwatch
from inferwatch.core.registry import Registry

registry = Registry(drain_interval=3600)
stream = inferwatch.instrument(lambda n: (f"t{i % 10}" for i in range(n)), name="gen",
                               version="1", registry=registry)


def peak_bytes(n):
    tracemalloc.start()
    try:
        for _ in stream(n):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


peak_bytes(1_000)  # warm: first-use allocations
short = peak_bytes(1_000)
long = peak_bytes(100_000)
registry.drain()
items = registry.monitor("gen", "1").state.histograms["inferwatch_stream_items"][()].sum
print(long - short, items)
"""


def test_a_long_stream_holds_constant_memory():
    done = subprocess.run([sys.executable, "-c", _CONSTANT_MEMORY], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    growth, items = done.stdout.split()
    # Any per-item growth would be at least 8 bytes x 99,000 items.
    assert int(growth) < 16 * 1024
    assert float(items) == 102_000
