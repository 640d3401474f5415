"""A failed job's exception is counted once: by the instrumented call, stream or request block
it came out of, else once for each model. Pushed to a real Pushgateway."""

from __future__ import annotations

import asyncio

import pytest

import inferwatch
from inferwatch.core import request as request_module
from inferwatch.serving import job_failures
from test_pushgateway import Classifier, gateway  # noqa: F401 (the fixture)


@pytest.fixture
def job_models(scraper):
    registry = scraper.registry

    def tokens(prompt):
        yield "first"
        raise ConnectionError("the upstream model hung up")

    async def async_tokens(prompt):
        yield "first"
        raise ConnectionError("the upstream model hung up")

    stream = inferwatch.instrument(tokens, name="llm", version="1", registry=registry)
    async_stream = inferwatch.instrument(async_tokens, name="llm-async", version="1",
                                         registry=registry)
    fraud = inferwatch.instrument(Classifier(), name="fraud", version="1", registry=registry)
    return registry, stream, async_stream, fraud


def errors(pushed, model: str, error_type: str) -> float | None:
    return pushed.value("inferwatch_errors_total", job="nightly", model=model,
                         error_type=error_type)


@pytest.mark.integration
def test_an_exception_out_of_an_instrumented_stream_is_counted_once(gateway, job_models):  # noqa: F811
    registry, stream, _, fraud = job_models
    with pytest.raises(ConnectionError), \
            inferwatch.push.on_exit(gateway.address, "nightly", registry=registry):
        fraud.predict_proba([[1.0]])
        for _ in stream("hello"):
            pass
    # The stream counted its failure; the job's failure is that same exception.
    assert errors(gateway, "llm", "ConnectionError") == 1
    assert errors(gateway, "fraud", "ConnectionError") is None


@pytest.mark.integration
def test_an_exception_out_of_an_instrumented_async_stream_is_counted_once(
        gateway, job_models):  # noqa: F811
    registry, _, async_stream, fraud = job_models

    async def job():
        async with inferwatch.push.on_exit(gateway.address, "nightly", registry=registry):
            fraud.predict_proba([[1.0]])
            async for _ in async_stream("hello"):
                pass

    with pytest.raises(ConnectionError):
        asyncio.run(job())
    assert errors(gateway, "llm-async", "ConnectionError") == 1
    assert errors(gateway, "fraud", "ConnectionError") is None


@pytest.mark.integration
def test_a_job_failing_in_instrument_itself_counts_for_every_model(gateway, job_models):  # noqa: F811
    # instrument() refusing its arguments is the job's failure, outside any model's call:
    # no call counted it.
    registry, _, _, fraud = job_models
    with pytest.raises(ValueError) as raised, \
            inferwatch.push.on_exit(gateway.address, "nightly", registry=registry):
        fraud.predict_proba([[1.0]])
        inferwatch.instrument(lambda rows: 0.5, name="", version="1", registry=registry)
    error_type = type(raised.value).__name__
    assert errors(gateway, "fraud", error_type) == 1
    assert errors(gateway, "llm", error_type) == 1


def test_what_an_instrumented_call_counted_is_told_from_what_it_did_not(scraper):
    registry = scraper.registry

    def fails(rows):
        raise KeyError("price")

    model = inferwatch.instrument(fails, name="m", version="1", registry=registry)
    with pytest.raises(KeyError) as through_the_call:
        model([1.0])
    with pytest.raises(ValueError) as from_instrument:
        inferwatch.instrument(fails, name="", version="1", registry=registry)
    assert job_failures.counted_already(through_the_call.value)
    assert not job_failures.counted_already(from_instrument.value)
    assert not job_failures.counted_already(RuntimeError("raised by the job"))


@pytest.mark.integration
def test_an_exception_out_of_a_request_block_is_counted_once(gateway, job_models):  # noqa: F811
    registry, _, _, fraud = job_models
    monitor = registry.monitor("ranker", "2")
    with pytest.raises(TimeoutError), \
            inferwatch.push.on_exit(gateway.address, "nightly", registry=registry):
        fraud.predict_proba([[1.0]])
        with monitor.request():
            raise TimeoutError("the feature store timed out")
    assert errors(gateway, "ranker", "TimeoutError") == 1
    assert errors(gateway, "fraud", "TimeoutError") is None
    assert request_module.failures_counted is None  # nothing kept once the job ended


def test_a_decorated_job_keeps_the_failures_of_its_requests_only_while_it_runs(scraper):
    registry = scraper.registry
    monitor = registry.monitor("ranker", "2")
    seen = []

    @inferwatch.push.on_exit("127.0.0.1:1", "nightly", registry=registry, timeout=0.2,
                             retries=0)
    def job():
        for attempt in range(job_failures.FAILURES_KEPT + 5):
            try:
                with monitor.request():
                    raise KeyError(attempt)
            except KeyError:
                pass
        seen.append(len(request_module.failures_counted))

    job()
    assert seen == [job_failures.FAILURES_KEPT]  # bounded: a job catching many keeps few
    assert request_module.failures_counted is None
    # Outside any job, a failing request block keeps nothing.
    with pytest.raises(KeyError), monitor.request():
        raise KeyError("outside")
    assert request_module.failures_counted is None
