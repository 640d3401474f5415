"""The status page of a running process: its numbers are the /metrics numbers, it sits behind
the same TLS, basic auth and concurrency cap, it can be switched off, and it mounts as a
WSGI or ASGI app (the merged view in multi-worker mode).
"""

from __future__ import annotations

import threading
import time
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import bcrypt
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from conftest import free_port
from inferwatch.core.registry import Registry
from inferwatch.report.live import histogram_quantile
from inferwatch.report.page import CSP_HEADER, model_link
from test_report import assert_inert, parsed
from test_server import basic, certs, client_context, request, write_web_config  # noqa: F401

pytestmark = pytest.mark.integration


def busy_model(registry: Registry, name: str = "fraud", version: str = "1.4.2"):
    """A classifier with a reference, drifted and partly broken inputs, errors and outcomes."""
    rng = np.random.default_rng(5)
    train = {"amount": rng.lognormal(3, 1, 3000), "age": rng.normal(40, 10, 3000),
             "channel": np.array(["web", "app", "shop"] * 1000, dtype=object)}
    reference = inferwatch.Reference.from_data(
        train, predictions=rng.dirichlet([2, 2], 3000), prediction_names=["0", "1"],
        categorical=["channel"])
    monitor = registry.monitor(name, version).configure(reference=reference)
    for i in range(1500):
        with monitor.request(request_id=f"r{i}") as r:
            r.features({"amount": float(rng.lognormal(4, 1)) if i % 10 else None,
                        "age": float(rng.normal(40, 10)) if i % 17 else 999.0,
                        "channel": ["web", "app", "kiosk"][i % 3]})
            r.prediction(np.array([[0.2, 0.8]]) if i % 4 else np.array([[0.9, 0.1]]))
    registry.drain()  # outcomes join predictions already drained
    for i in range(0, 600, 2):
        monitor.record_outcome(f"r{i}", int(i % 3 != 0))
    for _ in range(7):
        monitor.record_error(0.002, TimeoutError)
    registry.drain()
    return monitor


def metric_samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_page_shows_the_numbers_of_metrics():
    registry = Registry()
    prometheus = CollectorRegistry()
    from inferwatch.serving.bridge import InferwatchCollector

    prometheus.register(InferwatchCollector(registry))
    busy_model(registry)
    with inferwatch.serve(port=0, addr="127.0.0.1", registry=prometheus,
                          status_page=registry) as server:
        base = server.url.rsplit("/", 1)[0]
        metrics = urllib.request.urlopen(server.url).read().decode()
        with urllib.request.urlopen(base + "/" + model_link("fraud", "1.4.2")) as response:
            assert response.headers["Content-Security-Policy"] == CSP_HEADER
            page = parsed(response.read().decode())
    registry.close()
    samples = metric_samples(metrics)
    values = {key: float(value) for key, value in page.data_values.items()}
    base_labels = {("model", "fraud"), ("model_version", "1.4.2")}

    def metric(name: str, **labels: str) -> float:
        return samples[(name, frozenset(base_labels | set(labels.items())))]

    compared = 0
    for key, value in values.items():
        kind, _, rest = key.partition("|")
        parts = rest.split("|")
        if kind == "requests":
            expected = metric("inferwatch_requests_total", outcome=parts[0])
        elif kind == "feature_drift":
            expected = metric("inferwatch_feature_drift", feature=parts[0], method=parts[1])
        elif kind == "prediction_drift":
            expected = metric("inferwatch_prediction_drift", output=parts[0], method=parts[1])
        elif kind in ("missing", "out_of_range", "unseen_category"):
            name = f"inferwatch_feature_{kind}_total"
            expected = samples.get((name, frozenset(base_labels | {("feature", parts[0])})), 0.0)
        elif kind == "quantile":
            expected = metric("inferwatch_prediction", output=parts[0], quantile=parts[1])
        elif kind == "class":
            expected = metric("inferwatch_predicted_class_total", **{"class": parts[0]})
        elif kind == "confidence":
            expected = metric("inferwatch_prediction_confidence", quantile=parts[0])
        elif kind == "invalid":
            expected = metric("inferwatch_invalid_predictions_total", reason=parts[0])
        elif kind == "outcomes":
            expected = metric("inferwatch_outcomes_total", result=parts[0])
        elif kind == "drift_rows":
            expected = metric("inferwatch_drift_window_observations")
        elif kind == "accuracy":
            expected = (metric("inferwatch_outcomes_total", result="correct")
                        / sum(metric("inferwatch_outcomes_total", result=r)
                              for r in ("correct", "incorrect")))
        elif kind in ("p50 latency", "p99 latency"):
            buckets = sorted((float(dict(labels)["le"]), v) for (name, labels), v in
                             samples.items() if name ==
                             "inferwatch_request_duration_seconds_bucket")
            cumulative = [v for _, v in buckets]
            counts = np.diff([0.0, *cumulative]).tolist()
            q = 0.5 if kind.startswith("p50") else 0.99
            expected = histogram_quantile(q, [b for b, _ in buckets[:-1]], counts)
        else:
            continue
        assert value == pytest.approx(expected, rel=1e-12, abs=1e-12), key
        compared += 1
    kinds = {key.partition("|")[0] for key in values}
    assert {"requests", "feature_drift", "prediction_drift", "missing", "out_of_range",
            "unseen_category", "quantile", "class", "confidence", "invalid", "outcomes",
            "drift_rows", "accuracy", "p99 latency"} <= kinds
    assert compared >= 40


def test_the_index_links_every_model_version_and_404s_the_unknown():
    registry = Registry()
    busy_model(registry, "fraud", "1")
    registry.monitor("churn", "2").record_call(0.01, 0.3)
    with inferwatch.serve(port=0, addr="127.0.0.1", registry=CollectorRegistry(),
                          status_page=registry) as server:
        index = request(server, "/")
        links = [v for name, v in parsed(index[2].decode()).attributes if name == "href"]
        pages = [request(server, "/" + link) for link in links if link.startswith("?model")]
        missing = request(server, "/?model=nobody")
    registry.close()
    assert sorted(links)[:2] == [model_link("churn", "2"), model_link("fraud", "1")]
    assert [p[0] for p in pages] == [200, 200]
    assert missing[0] == 404
    assert_inert(index[2].decode())


def test_the_page_is_behind_basic_auth_and_tls(tmp_path, certs):  # noqa: F811
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    config = write_web_config(tmp_path, certs, f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    registry = Registry()
    registry.monitor("fraud", "1").record_call(0.01, 0.5)
    context = client_context(certs)
    with inferwatch.serve(port=0, addr="127.0.0.1", registry=CollectorRegistry(),
                          status_page=registry, web_config_file=str(config)) as server:
        anonymous = request(server, "/", context=context)
        page = request(server, "/", context=context, headers=basic("prometheus", "s3cret"))
    registry.close()
    assert anonymous[0] == 401 and b"fraud" not in anonymous[2]
    assert page[0] == 200 and b"fraud" in page[2]
    assert page[1]["content-security-policy"] == CSP_HEADER


def test_the_page_can_be_switched_off_and_is_off_for_a_foreign_registry():
    for options in ({"status_page": False}, {"registry": CollectorRegistry()}):
        with inferwatch.serve(port=0, addr="127.0.0.1", **options) as server:
            status, headers, body = request(server, "/")
        assert status == 200 and "content-security-policy" not in headers
        assert b'href="/metrics"' in body


class _Blocking:
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def collect(self):
        self.entered.set()
        self.release.wait(30)
        return []


def test_pages_and_scrapes_share_one_concurrency_cap():
    blocking = _Blocking()
    prometheus = CollectorRegistry()
    prometheus.register(blocking)
    registry = Registry()
    with inferwatch.serve(port=0, addr="127.0.0.1", registry=prometheus, status_page=registry,
                          max_concurrency=1) as server:
        scrape = threading.Thread(target=request, args=(server, "/metrics"))
        scrape.start()
        assert blocking.entered.wait(10)
        busy = request(server, "/")
        blocking.release.set()
        scrape.join(10)
        after = request(server, "/")
    registry.close()
    assert busy[0] == 503 and busy[1]["retry-after"] == "1"
    assert after[0] == 200


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_the_wsgi_app_serves_the_page_under_a_real_server():
    registry = Registry()
    busy_model(registry)
    app = inferwatch.make_status_wsgi_app(registry)
    httpd = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/status"
        with urllib.request.urlopen(url + model_link("fraud", "1.4.2")) as response:
            assert response.headers["Content-Security-Policy"] == CSP_HEADER
            page = parsed(response.read().decode())
    finally:
        httpd.shutdown()
        registry.close()
    assert float(page.data_values["requests|error"]) == 7.0


def test_the_asgi_app_mounted_in_fastapi_under_uvicorn():
    import uvicorn
    from fastapi import FastAPI

    registry = Registry()
    busy_model(registry)
    app = FastAPI()
    app.mount("/status", inferwatch.make_status_asgi_app(registry))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120  # a safety net: the start ends the wait
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status/") as response:
            index = parsed(response.read().decode())
    finally:
        server.should_exit = True
        thread.join(10)
        registry.close()
    assert model_link("fraud", "1.4.2") in [v for n, v in index.attributes if n == "href"]


def test_multi_worker_mode_shows_the_merged_view(tmp_path):
    import os

    from inferwatch.core.state import ModelState
    from inferwatch.multiproc.worker import attach
    from inferwatch.multiproc.worker_id import WorkerId
    from inferwatch.report.status import StatusPages
    from test_multiproc import publish

    registry = Registry()
    publisher = attach(registry, str(tmp_path))
    try:
        for _ in range(3):
            registry.monitor("fraud", "1").record_call(0.01, 0.5)
        other = ModelState("fraud", "1")  # another worker's published state
        other.inc("inferwatch_requests_total", ("ok",), 4)
        publish(publisher.directory, WorkerId(os.getpid(), 99), [other])
        status, body, _ = StatusPages(registry).respond(model_link("fraud", "1")[1:])
    finally:
        publisher.close()
        registry.close()
    assert status == 200
    assert float(parsed(body.decode()).data_values["requests|ok"]) == 7.0


def test_inferwatch_report_from_a_running_process(tmp_path, capsys):
    from inferwatch.cli import main

    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    registry = Registry()
    busy_model(registry)
    registry.monitor("churn-model", "2").record_call(0.01, 0.5)
    out = tmp_path / "report.html"
    with inferwatch.serve(port=0, addr="127.0.0.1", registry=CollectorRegistry(),
                          status_page=registry, web_config_file=str(config)) as server:
        plain = f"http://127.0.0.1:{server.port}/"
        with_password = f"http://prometheus:s3cret@127.0.0.1:{server.port}/"
        refused = main(["report", "--metrics", plain, "-o", str(out)])
        written = main(["report", "--metrics", with_password, "--model", "fraud",
                        "-o", str(out)])
        live = parsed(authorised_page(server, "fraud", "1.4.2"))
    registry.close()
    assert refused == 2 and "401" in capsys.readouterr().err
    assert written == 0
    report = assert_inert(out.read_text(encoding="utf-8"))
    assert "churn-model" not in "".join(report.text)
    for key in ("requests|ok", "requests|error", "feature_drift|amount|psi", "class|1",
                "missing|amount", "outcomes|correct"):
        assert report.data_values[key] == live.data_values[key], key


def authorised_page(server, model: str, version: str) -> str:
    status, _, body = request(server, "/" + model_link(model, version),
                              headers=basic("prometheus", "s3cret"))
    assert status == 200
    return body.decode()
