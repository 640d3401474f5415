"""The standalone exporter and the Pushgateway path as SREs and batch jobs meet them."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from test_pushgateway import Classifier, Gateway, gateway  # noqa: F401 (the fixture)


@pytest.fixture
def fraud(scraper):
    registry = scraper.registry
    return registry, inferwatch.instrument(Classifier(), name="fraud", version="2",
                                           registry=registry)


# --- push.on_exit on generator jobs ---------------------------------------------------------

@pytest.mark.integration
def test_a_generator_job_is_pushed_when_it_ends_not_when_it_is_called(
        gateway: Gateway, fraud) -> None:  # noqa: F811
    registry, model = fraud

    @inferwatch.push.on_exit(gateway.address, "stream-job", registry=registry)
    def score_batches(batches):
        for batch in batches:
            yield model.predict_proba(batch)

    results = score_batches([[[1.0]] * 3, [[1.0]] * 4])
    assert gateway.value("inferwatch_batch_size_sum", job="stream-job", model="fraud") is None
    assert len(list(results)) == 2
    assert gateway.value("inferwatch_batch_size_sum", job="stream-job", model="fraud") == 7


@pytest.mark.integration
def test_a_generator_job_stopped_early_is_pushed_without_an_error(
        gateway: Gateway, fraud) -> None:  # noqa: F811
    registry, model = fraud

    @inferwatch.push.on_exit(gateway.address, "first-only", registry=registry)
    def score_batches():
        while True:
            yield model.predict_proba([[1.0]] * 2)

    for _ in score_batches():
        break  # the consumer had enough: not a failure of the job
    assert gateway.value("inferwatch_batch_size_sum", job="first-only", model="fraud") == 2
    assert not any(s.value for s in gateway.samples("inferwatch_errors_total",
                                                    job="first-only", model="fraud"))


@pytest.mark.integration
def test_an_async_generator_job_is_pushed_when_it_ends(gateway: Gateway, fraud) -> None:  # noqa: F811
    registry, model = fraud

    @inferwatch.push.on_exit(gateway.address, "async-stream", registry=registry)
    async def score_batches(batches):
        for batch in batches:
            yield model.predict_proba(batch)

    async def consume() -> list:
        stream = score_batches([[[1.0]] * 5])
        assert gateway.value("inferwatch_batch_size_sum", job="async-stream",
                             model="fraud") is None
        return [item async for item in stream]

    assert len(asyncio.run(consume())) == 1
    assert gateway.value("inferwatch_batch_size_sum", job="async-stream", model="fraud") == 5


@pytest.mark.integration
def test_a_failing_generator_job_is_pushed_with_its_error(gateway: Gateway, fraud) -> None:  # noqa: F811
    registry, model = fraud

    @inferwatch.push.on_exit(gateway.address, "broken-stream", registry=registry)
    def score_batches():
        yield model.predict_proba([[1.0]])
        raise OSError("input bucket went away")

    with pytest.raises(OSError, match="bucket"):
        list(score_batches())
    assert gateway.value("inferwatch_errors_total", job="broken-stream", model="fraud",
                         error_type="OSError") == 1


# --- grouping keys --------------------------------------------------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label=st.sampled_from(["instance", "host", "shard"]))
def test_a_grouping_value_of_none_is_refused_before_the_job_runs(label: str) -> None:
    ran = []
    with pytest.raises(ValueError, match=f"grouping_key label '{label}' has no value"):
        @inferwatch.push.on_exit("127.0.0.1:9091", "nightly", grouping_key={label: None})
        def job() -> None:
            ran.append(1)
    with pytest.raises(ValueError, match="has no value"):
        inferwatch.push("127.0.0.1:9091", "nightly", grouping_key={label: None})
    assert ran == []
