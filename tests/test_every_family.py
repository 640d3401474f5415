"""Every in-process metric family, rendered in both formats, checked by others' tools.

One registry is driven until it exports every family of the catalogue (the prediction value
histogram with its default buckets, which start below zero, and with a reference's buckets;
exemplars on the latency buckets). Its output is then read by prometheus_client's text and
OpenMetrics parsers and linted by ``promtool check metrics``, plain and gzipped.
"""

from __future__ import annotations

import gzip
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

import inferwatch
from conftest import require_binary
from inferwatch import faults
from inferwatch.catalogue import CATALOGUE
from inferwatch.core.options import Settings
from inferwatch.core.registry import Registry
from inferwatch.core.render import model_families
from inferwatch.core.state import ModelState
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.serving.exposition import render

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
# Worker files are skipped only in multi-worker mode (tests/test_security_multiproc.py).
IN_PROCESS = {spec.family for spec in CATALOGUE.values() if spec.source == "instrumentation"
              } - {"inferwatch_multiproc_files_skipped"}


def _span() -> NonRecordingSpan:
    # A span context made by hand: exemplars without installing a global tracer provider.
    return NonRecordingSpan(SpanContext(trace_id=TRACE_ID, span_id=0x00F067AA0BA902B7,
                                        is_remote=False, trace_flags=TraceFlags(1)))


def _classifier(registry: Registry) -> None:
    rng = np.random.default_rng(7)
    fraud = rng.uniform(size=300)
    reference = inferwatch.Reference.from_data(
        {"amount": rng.normal(size=300), "country": rng.choice(["fr", "de"], size=300)},
        predictions=np.column_stack([1 - fraud, fraud]), prediction_names=["0", "1"],
        y_true=(fraud > rng.uniform(size=300)).astype(int))
    mon = registry.monitor("fraud", "1.4.2", Settings(max_error_types=1, task="classification",
                                                      objectives={"latency_p99": 0.05}),
                           trained_at=1.7e9)
    mon.configure(reference=reference, traces=True)
    with trace.use_span(_span()):
        for i, (amount, country) in enumerate([(0.1, "fr"), (None, "de"), (99.0, "xx")]):
            with mon.request(request_id=f"r-{i}") as r:
                with r.stage("preprocess"):
                    r.features({"amount": amount, "country": country})
                r.prediction(np.array([[0.2, 0.8]]), probabilities=True)
                r.action("blocked")
    with mon.request() as r:
        r.features({"country": "fr"})  # a missing column: an input error
        r.prediction(np.array([[0.9, 0.1]]), probabilities=True)
    for error in (ValueError, KeyError):  # two error types over a cap of one: a fold
        try:
            with mon.request():
                raise error("boom")
        except error:
            pass
    mon.record_outcome("r-0", 1)
    mon.record_outcome("r-1", 0)
    mon.record_outcome("never-seen", 1)


def _regressor(registry: Registry) -> None:
    # Default value buckets start at -1: the layout OpenMetrics forbids a _sum for.
    mon = registry.monitor("price", "2", Settings(task="regression", output_range=(0.0, 10.0)))
    for value in (-0.5, 3.0, float("nan"), float("inf"), 12.0):
        mon.record_call(0.002, value)
    with mon.request(request_id="p-1") as r:
        r.prediction(4.0)
    mon.record_outcome("p-1", 4.5)


def _streamer(registry: Registry, tmp_path) -> None:
    from inferwatch.events import EventLog

    def chat(prompt):
        yield "Hello"
        yield ", world"
        yield {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}

    events = EventLog(tmp_path / "events.jsonl")
    stream = inferwatch.instrument(chat, name="chat", version="1", registry=registry,
                                   usage=True, events=events)
    assert list(stream(object())) == ["Hello", ", world",
                                      {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}]
    assert events.flush(30)  # an input with no plain form: a counted dropped value
    events.close()


class _Scorer:
    """Class probabilities and a score: a shadow compares both (classes and differences)."""

    def __init__(self, shift: float) -> None:
        self.shift = shift
        self.classes_ = np.array(["no", "yes"])

    def predict_proba(self, rows):
        p = np.clip(np.asarray(rows, dtype=np.float64)[:, :1] + self.shift, 0.0, 1.0)
        return np.hstack([1.0 - p, p])

    def predict(self, rows):
        return np.asarray(rows, dtype=np.float64)[:, 0] * 10.0 + self.shift


def _shadowed(registry: Registry) -> None:
    champion = inferwatch.instrument(_Scorer(0.0), name="scorer", version="1",
                                     registry=registry, task="classification")
    handle = inferwatch.shadow(champion, _Scorer(0.3), version="2", registry=registry,
                               timeout=60.0)
    champion.predict_proba(np.array([[0.1], [0.6]]), request_id="s-1")
    assert handle.flush(60)
    champion.__dict__["_inferwatch_monitor"].record_outcome("s-1", ["no", "yes"])
    price = inferwatch.instrument(_Scorer(0.0), name="price-shadowed", version="1",
                                  registry=registry, task="regression")
    price_handle = inferwatch.shadow(price, _Scorer(0.5), version="2", registry=registry,
                                     timeout=60.0)
    price.predict(np.array([[0.2]]), request_id="p-1")
    assert price_handle.flush(60)
    price.__dict__["_inferwatch_monitor"].record_outcome("p-1", 2.2)
    registry.drain()
    handle.close()
    price_handle.close()


@pytest.fixture(scope="module")
def collector_registry(tmp_path_factory):
    registry = Registry()
    _classifier(registry)
    _regressor(registry)
    _streamer(registry, tmp_path_factory.mktemp("events"))
    _shadowed(registry)
    faults.record("every_family_test")
    prom = CollectorRegistry()
    prom.register(InferwatchCollector(registry, events_dropped=lambda: {"queue_full": 2}))
    yield prom
    registry.close()


def _bodies(prom: CollectorRegistry, accept: str | None, gzipped: bool) -> str:
    body, headers = render(prom, accept, "gzip" if gzipped else None)
    assert ("Content-Encoding" in headers) is gzipped
    return (gzip.decompress(body) if gzipped else body).decode()


def test_the_registry_exports_every_in_process_family(collector_registry):
    text = _bodies(collector_registry, None, gzipped=False)
    names = {family.name for family in parse_text(text) if family.samples}
    assert IN_PROCESS - names == set()


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_openmetrics_output_parses_with_exemplars(collector_registry, gzipped):
    text = _bodies(collector_registry, OPENMETRICS, gzipped)

    families = {f.name: f for f in parse_openmetrics(text)}

    assert IN_PROCESS - {n for n, f in families.items() if f.samples} == set()
    exemplars = [s.exemplar for f in families.values() for s in f.samples if s.exemplar]
    assert exemplars and all(e.labels == {"trace_id": format(TRACE_ID, "032x")}
                             for e in exemplars)
    value = families["inferwatch_prediction_value"]
    price_les = [float(s.labels["le"]) for s in value.samples
                 if s.name.endswith("_bucket") and s.labels["model"] == "price"]
    assert min(price_les) < 0  # the layout that used to fail the parser is really here
    assert not [s for s in value.samples if s.name.endswith("_sum")
                and s.labels["model"] == "price"]


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_text_output_parses(collector_registry, gzipped):
    text = _bodies(collector_registry, None, gzipped)

    families = {f.name: f for f in parse_text(text)}

    assert IN_PROCESS - {n for n, f in families.items() if f.samples} == set()
    # The mean of the values stays available where the histogram has no _sum.
    prediction = families["inferwatch_prediction"]
    assert any(s.name == "inferwatch_prediction_sum" and s.labels["model"] == "price"
               for s in prediction.samples)


@pytest.mark.integration
@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_promtool_accepts_every_family(collector_registry, gzipped):
    # promtool 2.42's `check metrics` reads the classic text format only (an exemplar is a
    # syntax error to it); the OpenMetrics body is checked by the OpenMetrics parser above.
    promtool = require_binary("promtool")
    text = _bodies(collector_registry, None, gzipped)

    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                            capture_output=True, timeout=60)

    assert result.returncode == 0, (result.stdout + result.stderr).decode()


bounds = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=12,
                  unique=True).map(sorted)


@settings(max_examples=60, deadline=None)
@given(bounds=bounds, values=st.lists(st.floats(-2e6, 2e6, allow_nan=False), max_size=20))
def test_every_bucket_layout_parses_as_openmetrics(bounds, values):
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    state = ModelState("m", "1")
    state.histogram("inferwatch_prediction_value", ("value",), bounds).observe(
        np.asarray(values, dtype=np.float64))

    class Families:
        def collect(self):
            return model_families([state], now=0.0)

    text = openmetrics(Families()).decode()
    family = next(f for f in parse_openmetrics(text) if f.name == "inferwatch_prediction_value")
    has_sum = any(s.name.endswith("_sum") for s in family.samples)
    if bounds[0] < 0:
        assert not has_sum
    if bounds[0] >= 0 and min(values, default=0.0) >= 0:
        assert has_sum
    everything = next(s.value for s in family.samples if s.labels.get("le") == "+Inf")
    assert everything == len(values)
