"""The Streams row of the overview dashboard and the stream recording rules, run against a
real Prometheus scraping a streaming model (the demo's model does not stream)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

import inferwatch
from conftest import require_binary
from e2e_dashboards import panel_queries, resolve_variables, substitute
from inferwatch.core.registry import Registry
from inferwatch.demo.scenario import rule_config
from inferwatch.demo.stack import Stack, free_port, prometheus_config, query, write_yaml
from inferwatch.demo.streaming import ToyGenerator, instrument_generator
from inferwatch.generate import write
from inferwatch.generate.config import from_dict
from inferwatch.serving.bridge import InferwatchCollector

STREAM_PANELS = ("Time to first item", "Items and tokens per second", "Cancelled streams",
                 "Output tokens per second of a call")
HOST = "127.0.0.1"
SPEED = 6  # rule windows of 10 s
GRAFANA_BUILTINS = {"__rate_interval": "10s", "__interval": "2s", "__range": "1m"}


def _traffic(generate, stop: threading.Event) -> None:
    """Streams read to the end, and one in five dropped after its first token."""
    n = 0
    while not stop.is_set():
        stream = generate("hello", max_tokens=6)
        for i, _ in enumerate(stream):
            if n % 5 == 4 and i == 0:
                stream.close()
                break
        n += 1
        stop.wait(0.02)


@pytest.fixture(scope="module")
def streaming_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:
    require_binary("prometheus")
    workdir = tmp_path_factory.mktemp("streams")
    write(workdir, from_dict(rule_config(SPEED)))
    overview = json.loads((workdir / "dashboards" / "model-overview.json").read_text())
    registry = Registry()
    generate = instrument_generator(ToyGenerator(first_item_seconds=0.002,
                                                 token_seconds=0.001), registry=registry)
    metrics_port = free_port(HOST)
    exposed = CollectorRegistry()
    exposed.register(InferwatchCollector(registry))
    server = inferwatch.serve(port=metrics_port, addr=HOST, registry=exposed)
    stop = threading.Event()
    thread = threading.Thread(target=_traffic, args=(generate, stop), daemon=True)
    thread.start()
    stack = Stack(workdir)
    try:
        port = free_port(HOST)
        stack.start_prometheus("prometheus", write_yaml(workdir / "prometheus.yml",
            prometheus_config(model_targets=[f"{HOST}:{metrics_port}"], exporter_targets=[],
                              alertmanager=None,
                              rule_files=[str(workdir / "alerts" / "*.yml")])), HOST, port)
        url = f"http://{HOST}:{port}"
        ready = ('model:inferwatch_stream_first_item_seconds:p99_10s > 0 and on () '
                 'sum(rate(inferwatch_requests_total{outcome="cancelled"}[10s])) > 0')
        deadline = time.monotonic() + 90
        while not query(url, ready):
            assert time.monotonic() < deadline, f"no stream data in Prometheus: {ready}"
            time.sleep(0.5)
        yield url, overview
    finally:
        stop.set()
        thread.join(10)
        stack.close()
        server.shutdown()
        registry.close()


@pytest.mark.integration
def test_stream_panels_parse_and_return_data(streaming_prometheus):
    url, overview = streaming_prometheus
    _, values = resolve_variables(overview, GRAFANA_BUILTINS, lambda q: query(url, q))
    queries = [p for p in panel_queries("model-overview", overview) if p.panel in STREAM_PANELS]
    assert {p.panel for p in queries} == set(STREAM_PANELS)
    for panel in queries:
        assert query(url, substitute(panel.expr, values)), f"{panel.panel}: {panel.expr}"
    # The cancellation ratio is a ratio: one stream in five was dropped early.
    ratio = next(p for p in queries if p.panel == "Cancelled streams")
    value = float(query(url, substitute(ratio.expr, values))[0]["value"][1])
    assert 0.0 < value < 1.0
