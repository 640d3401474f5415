"""The encoder writes what prometheus_client writes for the same states, byte for byte."""

from __future__ import annotations

import math
import shutil
import subprocess
import time

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from inferwatch.catalogue import CATALOGUE
from inferwatch.core.encode import Encoder, go_float
from inferwatch.core.instrument import instrument
from inferwatch.core.registry import Registry
from inferwatch.core.render import (
    combine,
    model_families,
    openmetrics_families,
    process_families,
)
from inferwatch.core.state import ModelState
from inferwatch.quality.reference import Reference
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.serving.exposition import render

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
HOSTILE = ['quote " inside', "back\\slash", "new\nline", "carriage\rreturn", "ünïcödé ✓",
           "emoji 🚀", "", "{braces}=", "# not a comment", "tab\there", "\\", '"', "\n\n",
           "line\u2028separator", "le", "+Inf", "100%", "%d %s %(x)s %%"]
label_text = st.one_of(st.sampled_from(HOSTILE),
                       st.text(st.characters(blacklist_categories=("Cs",)), max_size=20))
label_name = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: name not in ("model", "model_version", "le", "quantile"))
any_float = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                      st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e6, 999999.5,
                                       1e16, 1234567.0, 5e-324]))
NOW = 1_700_000_000.0

COUNTERS = [s.name for s in CATALOGUE.values()
            if s.per_model and s.kind == "counter" and s.source == "instrumentation"]
GAUGES = [s.name for s in CATALOGUE.values()
          if s.per_model and s.kind == "gauge" and s.source == "instrumentation"
          and s.name not in ("inferwatch_model_info", "inferwatch_model_loaded_timestamp_seconds",
                             "inferwatch_model_trained_timestamp_seconds")]
HISTOGRAMS = [s.name for s in CATALOGUE.values()
              if s.per_model and s.kind == "histogram" and s.source == "instrumentation"]
SUMMARIES = [s.name for s in CATALOGUE.values()
             if s.per_model and s.kind == "summary" and s.source == "instrumentation"]


class _Families:
    def __init__(self, families):
        self._families = families

    def collect(self):
        return self._families


def without_sum_on_negative_buckets(families):
    """OpenMetrics' rule: a histogram with a negative bucket has no _sum (and so no _count)."""
    for family in families:
        if family.type != "histogram":
            continue
        negative = {_series(s) for s in family.samples
                    if s.name.endswith("_bucket") and float(s.labels["le"]) < 0}
        family.samples = [s for s in family.samples
                          if not (s.name.endswith(("_sum", "_count")) and _series(s) in negative)]
    return families


def _series(sample):
    return tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))


def prometheus_client_bytes(states, process, openmetrics):
    families = [*combine(model_families([state], NOW, openmetrics=openmetrics)
                         for state in states),
                *process_families(*process)]
    if openmetrics:
        return openmetrics_latest(_Families(without_sum_on_negative_buckets(families)))
    return generate_latest(_Families(families))


def encoder_bytes(encoder, states, process, openmetrics):
    page = encoder.page(openmetrics=openmetrics)
    for state in states:
        page.add(state, NOW)
    page.add_process(*process)
    return page.text().encode() + (b"# EOF\n" if openmetrics else b"")


@st.composite
def model_states(draw):
    state = ModelState(draw(label_text), draw(label_text),
                       info=draw(st.dictionaries(label_name, label_text, max_size=3)),
                       loaded_at=draw(any_float), trained_at=draw(any_float))
    for metric in draw(st.lists(st.sampled_from(COUNTERS), max_size=4, unique=True)):
        arity = len(CATALOGUE[metric].labels)
        for labels in draw(st.lists(st.tuples(*[label_text] * arity), max_size=3, unique=True)):
            state.inc(metric, labels, draw(any_float))
    for metric in draw(st.lists(st.sampled_from(GAUGES), max_size=3, unique=True)):
        arity = len(CATALOGUE[metric].labels)
        for labels in draw(st.lists(st.tuples(*[label_text] * arity), max_size=3, unique=True)):
            state.set_gauge(metric, labels, draw(any_float))
    for metric in draw(st.lists(st.sampled_from(HISTOGRAMS), max_size=2, unique=True)):
        arity = len(CATALOGUE[metric].labels)
        for labels in draw(st.lists(st.tuples(*[label_text] * arity), max_size=2, unique=True)):
            bounds = sorted(set(draw(st.lists(
                st.floats(-1e7, 1e7, allow_nan=False), min_size=1, max_size=6))))
            hist = state.histogram(metric, labels, bounds)
            hist.counts[:] = draw(st.lists(st.integers(0, 3_000_000), min_size=len(bounds) + 1,
                                           max_size=len(bounds) + 1))
            hist.sum = draw(any_float)
            for _ in range(draw(st.integers(0, 3))):
                hist.exemplar(draw(st.floats(-1e7, 1e7, allow_nan=False)), draw(label_text),
                              draw(st.floats(0, 2e9)))
    for metric in draw(st.lists(st.sampled_from(SUMMARIES), max_size=2, unique=True)):
        arity = len(CATALOGUE[metric].labels)
        for labels in draw(st.lists(st.tuples(*[label_text] * arity), max_size=2, unique=True)):
            summary = state.summary(metric, labels)
            values = draw(st.lists(st.floats(-1e9, 1e9, allow_nan=False), max_size=20))
            summary.observe(np.asarray(values, dtype=float), NOW)
            summary.sum = draw(st.one_of(st.just(summary.sum), any_float))
    return state


process_counts = st.tuples(*[st.dictionaries(label_text, any_float, max_size=3)] * 3,
                           st.dictionaries(label_text, label_text, max_size=3))


@settings(max_examples=150, deadline=None)
# One state per (model, version), as a registry and the merged view hold them: two states of
# one key would write every series twice, which no exposition format allows.
@given(st.lists(model_states(), max_size=4, unique_by=lambda s: (s.model, s.version)),
       process_counts, st.booleans())
@example(states=[], process=({}, {}, {}, {}), openmetrics=True)
def test_the_same_bytes_as_prometheus_client_for_any_states(states, process, openmetrics):
    encoder = Encoder()

    first = encoder_bytes(encoder, states, process, openmetrics)
    cached = encoder_bytes(encoder, states, process, openmetrics)

    assert first == prometheus_client_bytes(states, process, openmetrics)
    assert cached == first


def hostile_state() -> ModelState:
    # "%" in a label: the encoder writes integral bucket counts through %-format strings.
    state = ModelState('fr"aud\\', "1\n4 %d%%", info={"framework": "sk\"learn\n"}, loaded_at=NOW)
    for value in HOSTILE:
        state.inc("inferwatch_errors_total", (value,), 1)
        state.set_gauge("inferwatch_requests_in_flight", (), math.nan)
    state.inc("inferwatch_actions_total", ("nan",), math.nan)
    state.inc("inferwatch_actions_total", ("inf",), math.inf)
    state.set_gauge("inferwatch_requests_in_flight", (), -math.inf)
    hist = state.histogram("inferwatch_prediction_value", ("score",), [-1.0, 0.0, 1.0])
    hist.observe(np.array([-2.0, -0.5, 0.5, 3.0, math.inf]))
    latency = state.histogram("inferwatch_request_duration_seconds", (), [0.1, 1.0])
    latency.observe(np.array([0.05, 0.5, 2.0]))
    state.histogram("inferwatch_batch_size", (), [1.0, 8.0]).observe(np.array([1.0, 4.0, 9.0]))
    large = state.histogram("inferwatch_prediction_value", ("large %s",), [0.0, 1.0])
    large.counts[:] = [999_999, 1, 5]  # the +Inf bucket passes 1e6: Go writes an exponent
    latency.exemplar(0.5, 'trace "quoted"\n\\', NOW)
    latency.exemplar(2.0, "abc123", NOW + 0.25)
    state.summary("inferwatch_prediction", ("score",)).observe(np.array([0.1, 0.9]), NOW)
    return state


@pytest.mark.parametrize("openmetrics", [False, True])
def test_hostile_labels_nan_infinities_and_exemplars(openmetrics):
    states, process = [hostile_state()], ({"render": 2.0}, {}, {}, {"numpy": "2.0"})

    body = encoder_bytes(Encoder(), states, process, openmetrics)

    assert body == prometheus_client_bytes(states, process, openmetrics)
    text = body.decode()
    assert r'error_type="new\nline"' in text and r'model="fr\"aud\\"' in text
    assert 'inferwatch_actions_total{action="nan",model=' in text and "} NaN\n" in text
    assert "} +Inf\n" in text and "} -Inf\n" in text
    exemplar = r' # {trace_id="trace \"quoted\"\n\\"} 0.5 ' + repr(NOW)
    assert (exemplar in text) == openmetrics


def test_openmetrics_histograms_with_negative_buckets_have_no_sum_and_parse():
    state = ModelState("fraud", "1")
    hist = state.histogram("inferwatch_prediction_value", ("score",), [-1.0, 0.0, 1.0])
    hist.observe(np.array([-2.0, -0.5, 0.5, 3.0, math.inf]))
    state.histogram("inferwatch_request_duration_seconds", (), [0.1, 1.0]).observe(
        np.array([0.05, 0.5, 2.0]))
    states = [state]

    om = encoder_bytes(Encoder(), states, ({}, {}, {}, {}), openmetrics=True).decode()
    text = encoder_bytes(Encoder(), states, ({}, {}, {}, {}), openmetrics=False).decode()

    assert "inferwatch_prediction_value_sum" not in om
    assert "inferwatch_prediction_value_count" not in om
    assert "inferwatch_request_duration_seconds_sum" in om  # non-negative buckets keep it
    # The same families in both formats (render.py's rule), so the two cannot disagree.
    assert "inferwatch_prediction_value_sum" not in text
    families = {f.name: f for f in parse_openmetrics(om)}
    inf_bucket = [s for s in families["inferwatch_prediction_value"].samples
                  if s.labels.get("le") == "+Inf"]
    assert [s.value for s in inf_bucket] == [5.0]


def test_go_float_matches_floatToGoString():
    from prometheus_client.utils import floatToGoString

    for value in [0.0, -0.0, 1.0, 0.1, 999999.0, 999999.9999, 1e6, 1234567.891, 1e15, 1e16,
                  1.5e16, 1e300, -1e300, 1e-5, 5e-324, -1234567.0, math.inf, -math.inf,
                  math.nan, 3, 10**7, np.float64(2.5), np.int64(12)]:
        assert go_float(value) == floatToGoString(value), value


# --- a whole scrape: inferwatch's collector next to the user's own metrics ------------------

def deployment(models: int = 2, features: int = 5):
    """A CollectorRegistry holding the user's metrics and instrumented models with references."""
    rng = np.random.default_rng(3)
    monitors = Registry(drain_interval=3600)
    registry = CollectorRegistry()
    Counter("app_logins", "Logins.", ["method"], registry=registry).labels('pass"word').inc(2)
    Gauge("app_queue_depth", "Queue depth in items.", unit="items", registry=registry).set(4)
    Histogram("app_payload_bytes", "Payload size in bytes.", buckets=(10, 100),
              registry=registry).observe(50)
    registry.register(InferwatchCollector(monitors, events_dropped=dict))
    train = rng.normal(size=(500, features))
    reference = Reference.from_data(
        {f"feature_{i}": train[:, i] for i in range(features)}, predictions=train[:, 0])
    for m in range(models):
        # Non-negative predictions: OpenMetrics forbids negative quantile values in a summary.
        model = instrument(lambda rows: np.abs(rows[:, 0]), name=f'model "{m}"', version="1\n2",
                           reference=reference, registry=monitors)
        for _ in range(20):
            model(rng.normal(size=(8, features)))
        monitors.drain()
        monitor = monitors.monitor(f'model "{m}"', "1\n2")
        monitor.state.histograms["inferwatch_request_duration_seconds"][()].exemplar(
            0.001, f"trace-{m}", time.time())
    return registry, monitors


@pytest.fixture
def scrape_registry():
    registry, monitors = deployment()
    yield registry
    monitors.close()


@pytest.mark.parametrize("accept", [None, OPENMETRICS,
                                    "application/openmetrics-text; version=1.0.0; escaping=dots",
                                    "text/plain; version=1.0.0; escaping=allow-utf-8"])
def test_a_scrape_is_what_prometheus_client_writes_for_the_same_registry(scrape_registry,
                                                                         accept):
    from prometheus_client.exposition import choose_encoder

    encoder, _ = choose_encoder(accept or "")

    fast, _ = render(scrape_registry, accept, None)

    families = list(scrape_registry.collect())
    if "openmetrics" in (accept or ""):
        families = without_sum_on_negative_buckets(openmetrics_families(families))
    assert fast == encoder(_Families(families))
    drift = b"feature__drift" if "dots" in (accept or "") else b"feature_drift"
    assert b"logins" in fast and drift in fast  # the user's metrics and inferwatch's


def test_a_full_scrape_parses_in_both_formats_with_the_user_metrics(scrape_registry):
    text, _ = render(scrape_registry, None, "identity")
    om, _ = render(scrape_registry, OPENMETRICS, None)

    text_families = {f.name: f for f in parse_text(text.decode())}
    om_families = {f.name: f for f in parse_openmetrics(om.decode())}

    for families in (text_families, om_families):
        assert {"app_logins", "app_queue_depth_items", "app_payload_bytes",
                "inferwatch_feature_drift", "inferwatch_prediction_value",
                "inferwatch_internal_errors"} <= set(families)
    assert om.endswith(b"# EOF\n") and om.count(b"# EOF") == 1
    assert b"# UNIT app_queue_depth_items items\n" in om
    exemplars = [s.exemplar for s in om_families["inferwatch_request_duration_seconds"].samples
                 if s.exemplar is not None]
    assert {e.labels["trace_id"] for e in exemplars} == {"trace-0", "trace-1"}


@pytest.mark.integration
def test_promtool_accepts_a_full_scrape(scrape_registry):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed; `make test` installs it (apt-get install)")
    # promtool 2.x reads the text format only (exemplars stop it); OpenMetrics is read by
    # prometheus_client's parser above and by the real Prometheus in test_e2e.py.
    body, _ = render(scrape_registry, None, None)

    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                            timeout=60)

    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_the_cache_does_not_grow_past_the_series_served():
    encoder = Encoder()
    for version in range(30):
        state = ModelState("fraud", str(version))
        for feature in range(200):
            state.inc("inferwatch_feature_missing_total", (f"f{feature}",))
        page = encoder.page()
        page.add(state, NOW)
        page.text()

    assert 200 <= encoder._entries < 30 * 200  # the live version's series, not all thirty


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_a_lone_surrogate_in_inferwatch_labels_does_not_break_the_scrape(accept):
    monitors = Registry(drain_interval=3600)
    registry = CollectorRegistry()
    registry.register(InferwatchCollector(monitors, events_dropped=dict))
    try:
        for name, calls in (("bad \ud800 model", 2), ("good", 3)):
            model = instrument(lambda x: x, name=name, version="1", registry=monitors)
            for _ in range(calls):
                model(0.5)

        body, _ = render(registry, accept, None)
    finally:
        monitors.close()

    parse = parse_openmetrics if accept else parse_text
    values = {s.labels["model"]: s.value for f in parse(body.decode()) for s in f.samples
              if s.name == "inferwatch_requests_total" and s.labels["outcome"] == "ok"}
    assert values == {"bad ? model": 2.0, "good": 3.0}
