"""OpenMetrics scrapes of models that predict negative values parse.

OpenMetrics has no negative quantile and no negative (or NaN) summary ``_sum``. The
prediction summary of a regression holds negative values, so in OpenMetrics it is written as
three gauge families (``inferwatch_prediction``, ``_count``, ``_sum``: the same sample names
and labels, so queries work with either format), always, whatever the values: its type never
changes from one scrape to the next. The text format keeps the summary. Checked on the real
paths: ``serve()``, the ASGI app, a worker's merged multi-worker view and the exporter's.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import httpx2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

import inferwatch
from conftest import require_binary
from inferwatch.core.encode import Encoder
from inferwatch.core.options import Settings
from inferwatch.core.registry import Registry
from inferwatch.core.render import combine, model_families, process_families
from inferwatch.core.state import ModelState
from inferwatch.multiproc.snapshot_format import Snapshot, encode, model_dict
from inferwatch.multiproc.store import SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.serving.exposition import make_asgi_app, render
from test_encode import model_states, process_counts

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
TEXT = "text/plain; version=0.0.4"
NOW = 1_700_000_000.0
QUANTILES = ("0.5", "0.9", "0.99")
# Ports of this file's servers (the exporter's).
EXPORTER_PORT = 25011


class _Families:
    def __init__(self, families):
        self._families = families

    def collect(self):
        return self._families


def _regression(registry: Registry, values, *, name: str = "price") -> None:
    monitor = registry.monitor(name, "1", Settings(task="regression"))
    for value in values:
        with monitor.request() as request:
            request.prediction(np.array([value], dtype=np.float64))
    registry.drain()


def _prediction_samples(body: str, parse) -> dict[str, list]:
    """The samples named inferwatch_prediction, _count and _sum, by name, in any family."""
    found: dict[str, list] = {}
    for family in parse(body):
        for sample in family.samples:
            if sample.name in ("inferwatch_prediction", "inferwatch_prediction_count",
                               "inferwatch_prediction_sum"):
                found.setdefault(sample.name, []).append(sample)
    return found


def _types(body: str, parse) -> dict[str, str]:
    return {family.name: family.type for family in parse(body)}


def _assert_openmetrics_keeps_the_samples(body: str, *, count: float, total: float) -> None:
    """`body` parses as OpenMetrics and holds the prediction series under the names and
    labels the text format gives them, negative values included."""
    families = {family.name: family for family in parse_openmetrics(body)}
    samples = _prediction_samples(body, parse_openmetrics)
    assert sorted(s.labels["quantile"] for s in samples["inferwatch_prediction"]) == \
        sorted(QUANTILES)
    assert [s.value for s in samples["inferwatch_prediction_count"]] == [count]
    assert [s.value for s in samples["inferwatch_prediction_sum"]] == [pytest.approx(total)]
    for name in ("inferwatch_prediction", "inferwatch_prediction_count",
                 "inferwatch_prediction_sum"):
        assert families[name].type == "gauge"


# --- the in-process /metrics -------------------------------------------------------------------

def test_serve_writes_valid_openmetrics_and_an_unchanged_text_format(registry):
    _regression(registry, [-3.5] * 20)
    collector_registry = _collector_registry(registry)
    server = inferwatch.serve(port=25001, addr="127.0.0.1", registry=collector_registry)
    try:
        om = _get(server.url, OPENMETRICS)
        text = _get(server.url, TEXT)
    finally:
        server.shutdown()

    _assert_openmetrics_keeps_the_samples(om, count=20.0, total=-70.0)
    assert min(s.value for s in _prediction_samples(om, parse_openmetrics)[
        "inferwatch_prediction"]) < 0
    # The text format keeps the summary, samples and all.
    assert _types(text, parse_text)["inferwatch_prediction"] == "summary"
    text_samples = _prediction_samples(text, parse_text)
    assert {name: len(found) for name, found in text_samples.items()} == {
        "inferwatch_prediction": 3, "inferwatch_prediction_count": 1,
        "inferwatch_prediction_sum": 1}
    assert text_samples["inferwatch_prediction_sum"][0].value == -70.0
    assert "# TYPE inferwatch_prediction summary\n" in text
    # The same series (names, labels, values) in both formats: queries see no difference.
    assert _series(om, parse_openmetrics) == _series(text, parse_text)


def test_the_asgi_app_writes_valid_openmetrics(registry):
    _regression(registry, [-1e9, 2.5, -0.25])
    app = make_asgi_app(_collector_registry(registry))

    async def get(accept):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return (await client.get("/metrics", headers={"Accept": accept})).text

    om = asyncio.run(get(OPENMETRICS))
    text = asyncio.run(get(TEXT))

    _assert_openmetrics_keeps_the_samples(om, count=3.0, total=-1e9 + 2.25)
    assert _types(text, parse_text)["inferwatch_prediction"] == "summary"


def test_the_type_does_not_change_when_negative_values_appear(registry):
    collector_registry = _collector_registry(registry)
    _regression(registry, [0.5, 0.7])
    before = render(collector_registry, OPENMETRICS, None)[0].decode()
    _regression(registry, [-4.0])
    after = render(collector_registry, OPENMETRICS, None)[0].decode()

    for body in (before, after):
        types = _types(body, parse_openmetrics)
        assert types["inferwatch_prediction"] == "gauge"
        assert types["inferwatch_prediction_count"] == "gauge"
        assert types["inferwatch_prediction_sum"] == "gauge"


def test_confidence_of_out_of_range_probabilities_parses_and_stays_a_summary(registry):
    # Scores that are no probabilities (logits): the top one is negative. Its quantiles are
    # clipped to 0, but the summary's _sum adds the values as given.
    monitor = registry.monitor("clf", "1", Settings(task="classification"))
    with monitor.request() as request:
        request.prediction(np.array([[-5.0, -3.0], [-2.0, -7.0]]), probabilities=True)
    registry.drain()
    collector_registry = _collector_registry(registry)

    om = render(collector_registry, OPENMETRICS, None)[0].decode()
    text = render(collector_registry, TEXT, None)[0].decode()

    families = {f.name: f for f in parse_openmetrics(om)}
    confidence = families["inferwatch_prediction_confidence"]
    assert confidence.type == "summary"
    assert {s.name for s in confidence.samples} == {"inferwatch_prediction_confidence",
                                                    "inferwatch_prediction_confidence_count"}
    # The text format keeps the _sum as it is.
    assert "inferwatch_prediction_confidence_sum{" in text
    assert [s.value for f in parse_text(text) for s in f.samples
            if s.name == "inferwatch_prediction_confidence_sum"] == [-5.0]


def test_promtool_parses_both_formats_and_lints_the_text_format_clean(registry):
    # promtool 2.42's `check metrics` reads the classic text format only: an OpenMetrics body
    # is read as one (no parse error), and lints what the text format would name otherwise
    # (the counters' HELP, the gauges' quantile label); the text body lints clean.
    promtool = require_binary("promtool")
    _regression(registry, [-3.5, -1.0, 4.0])
    collector_registry = _collector_registry(registry)

    for accept in (OPENMETRICS, TEXT):
        body = render(collector_registry, accept, None)[0]
        checked = subprocess.run([promtool, "check", "metrics"], input=body,
                                 capture_output=True, timeout=60)
        output = (checked.stdout + checked.stderr).decode()
        assert "parsing error" not in output and checked.returncode != 1, output
        if accept == TEXT:
            assert checked.returncode == 0, output


# --- property: any prediction values ----------------------------------------------------------

predicted = st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                               st.sampled_from([-1e308, 1e308, -0.0, -1.0, -1e-300])),
                     min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(predicted, min_size=1, max_size=4), probabilities=st.lists(
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=2, max_size=2), max_size=4))
def test_any_predictions_give_an_openmetrics_scrape_that_parses(batches, probabilities):
    registry = Registry()
    try:
        regression = registry.monitor("reg", "1", Settings(task="regression"))
        for batch in batches:
            with regression.request() as request:
                request.prediction(np.array(batch, dtype=np.float64))
        if probabilities:
            classifier = registry.monitor("clf", "1", Settings(task="classification"))
            with classifier.request() as request:
                request.prediction(np.array(probabilities), probabilities=True)
        registry.drain()
        collector_registry = _collector_registry(registry)

        om = render(collector_registry, OPENMETRICS, None)[0].decode()
        text = render(collector_registry, TEXT, None)[0].decode()

        families = {f.name: f for f in parse_openmetrics(om)}
        if "inferwatch_prediction" in families:  # not when no value was finite
            assert families["inferwatch_prediction"].type == "gauge"
        assert _series(om, parse_openmetrics) >= _series(text, parse_text) - _sums(text)
        assert _types(text, parse_text)["inferwatch_prediction"] == "summary"
    finally:
        registry.close()


@settings(max_examples=150, deadline=None)
@given(st.lists(model_states(), max_size=4, unique_by=lambda s: (s.model, s.version)),
       process_counts)
def test_openmetrics_bytes_are_prometheus_clients_for_the_openmetrics_families(states, process):
    encoder = Encoder()
    page = encoder.page(openmetrics=True)
    for state in states:
        page.add(state, NOW)
    page.add_process(*process)
    body = page.text().encode() + b"# EOF\n"

    families = [*combine(model_families([state], NOW, openmetrics=True) for state in states),
                *process_families(*process)]

    assert body == openmetrics_latest(_Families(families))
    assert "# TYPE inferwatch_prediction summary" not in body.decode()


# --- the multi-worker view --------------------------------------------------------------------

def _negative_worker_state(seed: int) -> ModelState:
    state = ModelState("price", "2")
    now = time.time()  # in the window the view is read at: negative quantiles
    state.summary("inferwatch_prediction", ("value",)).observe(
        np.array([-5.0 - seed, -1.0, 3.0]), now)
    state.summary("inferwatch_prediction_confidence", (), probabilities=True).observe(
        np.array([-0.5]), now)
    return state


def _publish(directory: SnapshotDirectory, seed: int) -> None:
    snapshot = Snapshot(models=[model_dict(_negative_worker_state(seed))], written_at=time.time())
    directory.write(WorkerId(os.getpid(), seed).name, encode(snapshot), WorkerId(os.getpid(), seed))


def test_a_workers_merged_view_writes_valid_openmetrics(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    for seed in range(2):
        _publish(directory, seed)
    view = directory.read_view(time.time())
    encoder = Encoder()

    page = encoder.page(openmetrics=True)
    view.encode_into(page, time.time())
    om = page.text() + "# EOF\n"
    text_page = encoder.page()
    view.encode_into(text_page, time.time())

    _assert_openmetrics_keeps_the_samples(om, count=6.0, total=-7.0)
    assert min(s.value for s in _prediction_samples(om, parse_openmetrics)[
        "inferwatch_prediction"]) < 0
    assert _types(text_page.text(), parse_text)["inferwatch_prediction"] == "summary"


def test_the_exporters_merged_view_writes_valid_openmetrics(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    for seed in range(2):
        _publish(directory, seed)
    exporter = subprocess.Popen(
        [sys.executable, "-m", "inferwatch.standalone.cli",
         f"--web.listen-address=127.0.0.1:{EXPORTER_PORT}", f"--multiproc.dir={tmp_path}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{EXPORTER_PORT}/metrics"
        om = _get_when_up(url, OPENMETRICS, exporter)
        text = _get(url, TEXT)
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)

    assert _types(text, parse_text)["inferwatch_prediction"] == "summary"
    _assert_openmetrics_keeps_the_samples(om, count=6.0, total=-7.0)


# --- helpers -----------------------------------------------------------------------------------

def _collector_registry(registry: Registry):
    from prometheus_client import CollectorRegistry

    collector_registry = CollectorRegistry()
    collector_registry.register(InferwatchCollector(registry))
    return collector_registry


def _get(url: str, accept: str) -> str:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def _get_when_up(url: str, accept: str, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            return _get(url, accept)
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None:
                raise AssertionError(process.stderr.read().decode()) from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _series(body: str, parse) -> set[tuple]:
    """(name, labels) of every inferwatch prediction sample: what a query selects."""
    return {(s.name, tuple(sorted(s.labels.items())))
            for f in parse(body) for s in f.samples
            if s.name.startswith("inferwatch_prediction")}


def _sums(body: str) -> set[tuple]:
    """The summary _sum series OpenMetrics may leave off (a negative confidence sum)."""
    return {series for series in _series(body, parse_text)
            if series[0] == "inferwatch_prediction_confidence_sum"}
