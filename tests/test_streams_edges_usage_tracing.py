"""Streams and tracing at their edges: token counts that are no counts, a generator function
reading an LLM's usage along the way, and OpenTelemetry setups that cannot give a trace id."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace as Event

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan

import inferwatch
from inferwatch import faults
from inferwatch.core.registry import Registry

_EXAMPLES = settings(max_examples=30, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


def _fault_count(component: str) -> int:
    return faults.internal_error_counts().get(component, 0)


# -- a generator function with usage=True ------------------------------------------------


def _anthropic_events(input_tokens: int, output_tokens: int) -> list:
    """Anthropic's raw message stream: the counts come along the way, none in the last event."""
    return [
        Event(type="message_start", message=Event(
            id="msg_1", usage=Event(input_tokens=input_tokens, output_tokens=1))),
        Event(type="content_block_delta", index=0, delta=Event(type="text_delta", text="Hi")),
        Event(type="message_delta", delta=Event(stop_reason="end_turn"),
              usage=Event(output_tokens=output_tokens)),
        Event(type="message_stop"),
    ]


@_EXAMPLES
@given(input_tokens=st.integers(0, 10**6), output_tokens=st.integers(0, 10**6))
def test_a_generator_function_reads_usage_along_the_way(input_tokens, output_tokens):
    events = _anthropic_events(input_tokens, output_tokens)

    def relay(prompt):  # a server's generator relaying the SDK's events, called positionally
        yield from events

    registry = Registry(drain_interval=3600)
    try:
        client = inferwatch.instrument(relay, name="chat", version="1", usage=True,
                                       registry=registry)
        assert list(client("hello")) == events
        registry.drain()
        tokens = registry.monitor("chat", "1").state.counters["inferwatch_tokens_total"]
        # A reply of 0 prompt tokens still shows the series (at 0): an absent one is no zero.
        assert tokens.get(("input",)) == float(input_tokens)
        assert tokens[("output",)] == output_tokens
    finally:
        registry.close()


# -- token counts that are no counts -----------------------------------------------------

_NOT_COUNTS = st.one_of(
    st.lists(st.integers(0, 50_000), min_size=1, max_size=5),  # tokenizer.encode: the ids
    st.integers(max_value=-1),
    st.floats(allow_nan=True).filter(lambda f: math.isnan(f) or math.isinf(f)
                                     or f < 0 or f != int(f)),
    st.text(max_size=5),
    st.just(True),
)


@_EXAMPLES
@given(answer=_NOT_COUNTS)
def test_count_tokens_answering_no_count_is_counted_as_a_fault(answer):
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda prompt: (w for w in prompt.split()), name="gen",
                                      version="1", count_tokens=lambda text: answer,
                                      registry=registry)
        before = _fault_count("tokens")
        assert list(model("a b c")) == ["a", "b", "c"]
        # The input and each of the three items: four answers, each lost, each counted.
        assert _fault_count("tokens") - before == 4
        monitor = registry.monitor("gen", "1")
        registry.drain()
        assert monitor.state.counters["inferwatch_requests_total"][("ok",)] == 1
        assert "inferwatch_tokens_total" not in monitor.state.counters
    finally:
        registry.close()


@pytest.mark.parametrize("kwargs", [
    {"model": "llama3.1", "prompt": "why is the sky blue", "stream": True},  # ollama
    {"model": "gpt-4o", "input": "why is the sky blue"},  # OpenAI's responses.create
    {"model_name": "m", "query": "why is the sky blue"},
])
def test_a_call_of_keywords_only_counts_its_prompt_not_the_model_name(kwargs):
    registry = Registry(drain_interval=3600)
    try:
        def generate(**given):
            yield from ["The", " sky"]

        model = inferwatch.instrument(generate, name="chat", version="1",
                                      count_tokens=lambda text: len(text.split()),
                                      registry=registry)
        assert list(model(**kwargs)) == ["The", " sky"]
        registry.drain()
        tokens = registry.monitor("chat", "1").state.counters["inferwatch_tokens_total"]
        assert tokens[("input",)] == 5
    finally:
        registry.close()


@_EXAMPLES
@given(chunks=st.lists(st.one_of(
    st.fixed_dictionaries({"delta": st.text(max_size=8)}),
    st.builds(Event, delta=st.text(max_size=8)), st.integers(), st.none(),
    st.text(max_size=8)), max_size=6))
def test_count_tokens_counts_the_text_items_of_a_stream_and_skips_the_others(chunks):
    """count_tokens is a function of a text: a stream of an SDK's dict or object chunks
    counted an internal fault per chunk (InferwatchInternalErrors firing for a healthy
    model). Chunks it cannot read count nothing; text items count as before."""
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda prompt: iter(chunks), name="chat", version="1",
                                      count_tokens=lambda text: len(text.split()),
                                      registry=registry)
        before = _fault_count("tokens")
        assert list(model("two words")) == chunks
        assert _fault_count("tokens") == before
        registry.drain()
        tokens = registry.monitor("chat", "1").state.counters.get("inferwatch_tokens_total", {})
        texts = [c for c in chunks if isinstance(c, str)]
        assert tokens.get(("output",), 0) == sum(len(t.split()) for t in texts)
        assert tokens[("input",)] == 2
    finally:
        registry.close()


@_EXAMPLES
@given(prompt=st.text(max_size=5).map(repr), completion=st.sampled_from(["12", -3, 2.5, None]))
def test_usage_fields_that_are_no_counts_are_counted_as_faults(prompt, completion):
    registry = Registry(drain_interval=3600)
    try:
        response = {"usage": {"prompt_tokens": prompt, "completion_tokens": completion}}
        client = inferwatch.instrument(lambda: response, name="llm", version="1", usage=True,
                                       registry=registry)
        before = _fault_count("tokens")
        assert client() is response
        assert _fault_count("tokens") - before == (1 if completion is None else 2)
        registry.drain()
        monitor = registry.monitor("llm", "1")
        assert monitor.state.counters["inferwatch_requests_total"][("ok",)] == 1
        assert "inferwatch_tokens_total" not in monitor.state.counters
    finally:
        registry.close()


# -- tracing that cannot give a trace id -------------------------------------------------


class _BrokenSpan(NonRecordingSpan):
    """A span of a third-party tracing shim whose context cannot be read."""

    def get_span_context(self):
        raise RuntimeError("span context unavailable")


class _NoContextSpan(NonRecordingSpan):
    def get_span_context(self):
        return None


@pytest.mark.parametrize("span_class", [_BrokenSpan, _NoContextSpan])
def test_a_span_without_a_usable_context_never_fails_the_call(scraper, span_class):
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", exemplars=True,
                                  registry=scraper.registry)
    monitor = scraper.registry.monitor("m", "1")
    before = _fault_count("tracing")
    with trace.use_span(span_class(trace.INVALID_SPAN_CONTEXT)):
        assert model(1) == 0.5
        with monitor.request() as request:
            request.action("allowed")
    assert _fault_count("tracing") - before == 2
    scraper.registry.drain()
    # Both are counted, the call and the request, without a trace id.
    assert scraper.value("inferwatch_requests_total", model="m", outcome="ok") == 2


def test_a_tracer_provider_naming_nothing_never_fails_instrument(tmp_path):
    # A stray OTEL_PYTHON_TRACER_PROVIDER (no such provider installed) in a process whose
    # web framework imported the OpenTelemetry API: a fresh process, as a server starts.
    script = textwrap.dedent("""
        import opentelemetry.trace
        import inferwatch
        from inferwatch import faults
        from inferwatch.core.registry import Registry

        registry = Registry(drain_interval=3600)
        model = inferwatch.instrument(lambda x: x * 2, name="m", version="1",
                                      registry=registry)
        assert model(2) == 4
        registry.follow_tracing()
        registry.drain()
        monitor = registry.monitor("m", "1")
        assert monitor.state.counters["inferwatch_requests_total"][("ok",)] == 1
        assert faults.internal_error_counts().get("tracing", 0) >= 1
        registry.close()
        print("served")
    """)
    env = {**os.environ, "OTEL_PYTHON_TRACER_PROVIDER": "no_such_provider"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "served"


def _responses_events(input_tokens: int, output_tokens: int) -> list:
    """OpenAI's Responses API stream (``responses.create(stream=True)``): the usage comes only
    in the last event, on the response it completes."""
    def response(status: str, usage: Event | None) -> Event:
        return Event(id="resp_1", object="response", status=status, usage=usage)

    return [
        Event(type="response.created", sequence_number=0, response=response("in_progress", None)),
        Event(type="response.output_text.delta", sequence_number=1, delta="Hi"),
        Event(type="response.output_text.delta", sequence_number=2, delta=" there"),
        Event(type="response.completed", sequence_number=3, response=response(
            "completed", Event(input_tokens=input_tokens, output_tokens=output_tokens,
                               total_tokens=input_tokens + output_tokens))),
    ]


@pytest.mark.parametrize("shape", ["stream object", "generator", "raw events"])
def test_usage_of_an_openai_responses_stream_is_read(shape):
    events = _responses_events(21, 34)

    class Stream:  # the SDK's Stream: an iterator object with the HTTP response attached
        def __init__(self) -> None:
            self._events = iter(events)
            self.response = Event(status_code=200)

        def __iter__(self):
            return self

        def __next__(self):
            return next(self._events)

    def as_dict(event: Event) -> dict:
        return {k: as_dict(v) if isinstance(v, Event) else v for k, v in vars(event).items()}

    def create(**kwargs):
        if shape == "stream object":
            return Stream()
        if shape == "generator":
            return (event for event in events)
        return iter([as_dict(event) for event in events])  # the SSE events' JSON, parsed

    registry = Registry(drain_interval=3600)
    try:
        client = inferwatch.instrument(create, name="resp", version="1", usage=True,
                                       registry=registry)
        got = list(client(model="gpt", input="hello", stream=True))
        assert len(got) == len(events)
        registry.drain()
        tokens = registry.monitor("resp", "1").state.counters["inferwatch_tokens_total"]
        assert tokens == {("input",): 21.0, ("output",): 34.0}
    finally:
        registry.close()
