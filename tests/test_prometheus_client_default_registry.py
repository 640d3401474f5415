"""README: an app that serves prometheus_client's default registry itself
(``prometheus_client.start_http_server``) adds inferwatch with
``REGISTRY.register(InferwatchCollector())``; serving ``/metrics`` through inferwatch
registers it there by itself, with the app's own metrics served alongside."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

EXPORTER = str(Path(__file__).resolve().parent.parent / "exporter")


def _run(body: str) -> subprocess.CompletedProcess:
    # A process of its own: prometheus_client's default registry is the process's.
    script = textwrap.dedent("""
        import socket, urllib.request
        import prometheus_client
        import inferwatch

        def scrape(port):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
                return r.read().decode()

        def free_port():
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                return sock.getsockname()[1]
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": EXPORTER, "PATH": "/usr/bin:/bin"})


def _samples(text: str, name: str) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name}


def test_start_http_server_serves_inferwatch_once_registered_as_the_readme_shows():
    done = _run("""
        from prometheus_client import REGISTRY
        from inferwatch.serving.bridge import InferwatchCollector

        served = prometheus_client.Counter("app_logins", "Logins.")
        REGISTRY.register(InferwatchCollector())
        port = free_port()
        server, thread = prometheus_client.start_http_server(port, addr="127.0.0.1")
        model = inferwatch.instrument(lambda x: 0.5, name="fraud", version="1.4.2")
        for _ in range(5):
            model([1.0])
        served.inc()
        print(scrape(port))
        server.shutdown()
    """)
    assert done.returncode == 0, done.stderr
    ok = (("model", "fraud"), ("model_version", "1.4.2"), ("outcome", "ok"))
    assert _samples(done.stdout, "inferwatch_requests_total")[ok] == 5.0
    assert _samples(done.stdout, "app_logins_total") == {(): 1.0}
    assert done.stdout.count("# TYPE inferwatch_requests_total counter") == 1


def test_serving_through_inferwatch_registers_it_in_the_default_registry():
    done = _run("""
        prometheus_client.Counter("app_logins", "Logins.").inc()
        model = inferwatch.instrument(lambda x: 0.5, name="fraud", version="1")
        model([1.0])
        inferwatch.make_wsgi_app()
        print(prometheus_client.generate_latest().decode())
    """)
    assert done.returncode == 0, done.stderr
    ok = (("model", "fraud"), ("model_version", "1"), ("outcome", "ok"))
    assert _samples(done.stdout, "inferwatch_requests_total")[ok] == 1.0
    assert _samples(done.stdout, "app_logins_total") == {(): 1.0}
