"""Batch jobs push to a real Pushgateway: grouped by job and model, on success and failure."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from conftest import free_port, require_binary
from inferwatch.serving.pushgateway import PushError
from processes import stop


class Classifier:
    classes_ = ("legit", "fraud")

    def predict_proba(self, rows):
        if rows == "bad":
            raise ValueError("bad input")
        return [[0.4, 0.6] for _ in rows]


class Gateway:
    def __init__(self, address: str) -> None:
        self.address = address

    def samples(self, name: str, **labels: str) -> list:
        with urllib.request.urlopen(f"http://{self.address}/metrics", timeout=10) as response:
            text = response.read().decode()
        return [s for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name: str, **labels: str) -> float | None:
        found = self.samples(name, **labels)
        assert len(found) <= 1, found
        return found[0].value if found else None


@pytest.fixture
def gateway(tmp_path) -> Iterator[Gateway]:
    binary = require_binary("prometheus-pushgateway")
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [binary, f"--web.listen-address={address}",
         f"--persistence.file={tmp_path / 'pushgateway.data'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60  # a safety net: readiness ends the wait
        while True:
            try:
                urllib.request.urlopen(f"http://{address}/-/ready", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the Pushgateway did not start")
                time.sleep(0.05)
        yield Gateway(address)
    finally:
        stop(process)


def refuse_counters(address: str) -> None:
    """Push `inferwatch_requests_total` as a gauge under another job: the gateway then
    refuses (HTTP 400) any push holding the counter of that name."""
    request = urllib.request.Request(
        f"http://{address}/metrics/job/conflicting", method="PUT",
        data=b"# TYPE inferwatch_requests_total gauge\ninferwatch_requests_total 1\n")
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture
def models(scraper):
    registry = scraper.registry
    fraud = inferwatch.instrument(Classifier(), name="fraud", version="1.4.2", registry=registry)
    eta = inferwatch.instrument(lambda x: 120.0, name="eta", version="7", registry=registry)
    return registry, fraud, eta


@pytest.mark.integration
def test_plain_push_groups_by_job_and_model(gateway, models):
    registry, fraud, eta = models
    fraud.predict_proba([[1.0]] * 10)
    for _ in range(3):
        eta([1.0])
    groups = inferwatch.push(gateway.address, "nightly", registry=registry,
                             grouping_key={"instance": "batch-1"})
    assert sorted(g["model"] for g in groups) == ["eta", "fraud"]
    group = {"job": "nightly", "instance": "batch-1"}
    assert gateway.value("inferwatch_requests_total", model="fraud", outcome="ok",
                         **group) == 1
    assert gateway.value("inferwatch_batch_size_sum", model="fraud", **group) == 10
    assert gateway.value("inferwatch_predicted_class_total", model="fraud",
                         **{"class": "fraud"}, **group) == 10
    assert gateway.value("inferwatch_requests_total", model="eta", outcome="ok", **group) == 3
    assert gateway.value("inferwatch_prediction", model="eta", quantile="0.5",
                         **group) == pytest.approx(120.0, rel=0.01)
    # One group per model: the gateway's own push timestamp exists for each.
    assert {s.labels["model"] for s in gateway.samples("push_time_seconds", job="nightly")} == {
        "eta", "fraud"}


@pytest.mark.integration
def test_each_push_replaces_the_models_group(gateway, models):
    registry, fraud, _ = models
    fraud.predict_proba([[1.0]])
    inferwatch.push(gateway.address, "nightly", registry=registry)
    fraud.predict_proba([[1.0]])
    inferwatch.push(gateway.address, "nightly", registry=registry)
    assert gateway.value("inferwatch_requests_total", model="fraud", outcome="ok",
                         job="nightly") == 2


@pytest.mark.integration
def test_on_exit_pushes_after_a_successful_block(gateway, models):
    registry, fraud, _ = models
    with inferwatch.push.on_exit(gateway.address, "hourly", registry=registry):
        fraud.predict_proba([[1.0]] * 4)
        assert gateway.value("inferwatch_requests_total", job="hourly", model="fraud",
                             outcome="ok") is None  # nothing pushed before the block ends
    assert gateway.value("inferwatch_batch_size_sum", job="hourly", model="fraud") == 4


@pytest.mark.integration
def test_failed_job_is_pushed_with_its_error_and_reraised(gateway, models):
    registry, fraud, eta = models
    failure = RuntimeError("database went away")
    with pytest.raises(RuntimeError) as raised, \
            inferwatch.push.on_exit(gateway.address, "nightly", registry=registry):
        fraud.predict_proba([[1.0]])
        eta([1.0])
        raise failure
    assert raised.value is failure
    for model in ("fraud", "eta"):
        assert gateway.value("inferwatch_errors_total", job="nightly", model=model,
                             error_type="RuntimeError") == 1
        assert gateway.value("inferwatch_requests_total", job="nightly", model=model,
                             outcome="ok") == 1


@pytest.mark.integration
def test_a_model_exception_is_counted_once(gateway, models):
    registry, fraud, _ = models
    with pytest.raises(ValueError, match="bad input"), \
            inferwatch.push.on_exit(gateway.address, "nightly", registry=registry):
        fraud.predict_proba("bad")
    assert gateway.value("inferwatch_errors_total", job="nightly", model="fraud",
                         error_type="ValueError") == 1
    assert gateway.value("inferwatch_errors_total", job="nightly", model="eta",
                         error_type="ValueError") is None


@pytest.mark.integration
def test_decorated_sync_and_async_jobs_push(gateway, models):
    registry, fraud, eta = models

    @inferwatch.push.on_exit(gateway.address, "sync-job", registry=registry)
    def sync_job() -> str:
        fraud.predict_proba([[1.0]])
        return "done"

    @inferwatch.push.on_exit(gateway.address, "async-job", registry=registry)
    async def async_job() -> str:
        eta([1.0])
        return "done async"

    assert sync_job() == "done"
    assert asyncio.run(async_job()) == "done async"
    assert gateway.value("inferwatch_requests_total", job="sync-job", model="fraud",
                         outcome="ok") == 1
    assert gateway.value("inferwatch_requests_total", job="async-job", model="eta",
                         outcome="ok") == 1


def test_plain_push_to_a_gateway_that_is_down_names_it(models):
    registry, fraud, _ = models
    fraud.predict_proba([[1.0]])
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(PushError, match=f"Pushgateway at {address}"):
        inferwatch.push(address, "nightly", registry=registry, timeout=2, retry_delay=0.01)


def test_on_exit_never_loses_the_jobs_result_to_a_gateway_that_is_down(models, caplog):
    registry, fraud, _ = models
    address = f"127.0.0.1:{free_port()}"
    caplog.set_level(logging.WARNING, logger="inferwatch.serving.pushgateway")
    with inferwatch.push.on_exit(address, "nightly", registry=registry, timeout=2,
                                 retry_delay=0.01):
        result = fraud.predict_proba([[1.0]])
    assert result == [[0.4, 0.6]]
    assert f"Pushgateway at {address}" in caplog.text
    failure = KeyError("row 17")
    with pytest.raises(KeyError) as raised, \
            inferwatch.push.on_exit(address, "nightly", registry=registry, timeout=2,
                                    retry_delay=0.01):
        raise failure
    assert raised.value is failure  # the job's exception, not a push error


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="grouping_key cannot set 'model'"):
        inferwatch.push("127.0.0.1:9091", "nightly", grouping_key={"model": "x"})
    with pytest.raises(ValueError, match="'bad-label'"):
        inferwatch.push.on_exit("127.0.0.1:9091", "nightly", grouping_key={"bad-label": "x"})
    # A label the pushed series carry: the gateway would refuse every push, hours later.
    with pytest.raises(ValueError, match="grouping_key cannot set 'outcome': the pushed series"):
        inferwatch.push.on_exit("127.0.0.1:9091", "nightly", grouping_key={"outcome": "x"})
    with pytest.raises(ValueError, match="grouping_key cannot set 'le'"):
        inferwatch.push("127.0.0.1:9091", "nightly", grouping_key={"le": "x"})
    with pytest.raises(ValueError, match="job must be"):
        inferwatch.push("127.0.0.1:9091", "")
