"""/metrics edges: the `?name[]=` filter, the bridge collector beside the user's own
prometheus_client metrics, and what the scrape serves for them."""

from __future__ import annotations

import sys
import types
from importlib import metadata

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families as parse_text

import inferwatch
import inferwatch.events.log  # as in a process with an event log: its drops are reported
from inferwatch import faults
from inferwatch.core import render
from inferwatch.core.registry import Registry
from inferwatch.serving import bridge
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.serving.exposition import metrics_response


@pytest.fixture
def monitors():
    registry = Registry(drain_interval=3600)
    yield registry
    registry.close()


def _families(body: bytes) -> dict[str, list]:
    """Samples by sample name (the text parser names a counter's family without _total)."""
    found: dict[str, list] = {}
    for family in parse_text(body.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


@pytest.mark.parametrize("name", ["inferwatch_event_values_dropped_total",
                                  "inferwatch_requests_total"])
def test_name_filter_selects_every_family_the_scrape_serves(monitors, name):
    registry = CollectorRegistry()
    Counter("app_logins", "Logins.", registry=registry).inc()
    registry.register(InferwatchCollector(monitors, events_dropped=dict))
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=monitors)
    model(1)
    monitors.drain()

    status, full, _ = metrics_response(registry, None, None)
    assert status == 200 and name in _families(full)

    status, body, _ = metrics_response(registry, None, None, f"name[]={name}")

    assert status == 200
    assert list(_families(body)) == [name]
    assert _families(body)[name] == _families(full)[name]


class _LazyModule(types.ModuleType):
    """A module that imports on attribute access, and whose import fails (no CUDA here)."""

    def __getattr__(self, name: str) -> object:
        raise RuntimeError("lazy import failed: libcudart.so.12 not found")


@pytest.mark.parametrize("package", ["jax", "torch"])
def test_a_lazy_module_that_fails_to_load_costs_no_other_dependency_series(
        monitors, monkeypatch, package):
    import numpy

    monkeypatch.setattr(render, "_version_cache", {})
    monkeypatch.setitem(sys.modules, package, _LazyModule(package))
    registry = CollectorRegistry()
    registry.register(InferwatchCollector(monitors, events_dropped=dict))
    faults_before = faults.internal_error_counts().get("collect", 0)

    for accept in (None, "application/openmetrics-text; version=1.0.0"):
        status, body, _ = metrics_response(registry, accept, None)
        assert status == 200
        assert (f'inferwatch_dependency_info{{package="numpy",package_version='
                f'"{numpy.__version__}"}} 1.0').encode() in body

    assert faults.internal_error_counts().get("collect", 0) == faults_before
    try:  # an installed distribution still names the version
        expected = f'package="{package}",package_version="{metadata.version(package)}"'
    except metadata.PackageNotFoundError:
        expected = None
    if expected is None:
        assert f'package="{package}"'.encode() not in body
    else:
        assert expected.encode() in body


def test_name_filter_applies_to_a_collector_served_without_a_registry(monitors):
    # serve(registry=...) takes any prometheus_client collector, not only a registry.
    collector = InferwatchCollector(monitors, events_dropped=dict)
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=monitors)
    model(1)
    monitors.drain()

    for accept in (None, "application/openmetrics-text; version=1.0.0"):
        status, body, _ = metrics_response(
            collector, accept, None, "name[]=inferwatch_requests_total&name[]=nothing_here")

        assert status == 200
        lines = [line for line in body.decode().splitlines() if not line.startswith("#")]
        assert lines and all(line.startswith("inferwatch_requests_total{") for line in lines)
        assert b'outcome="ok"} 1.0' in body


@pytest.fixture
def fresh_default_registry(monkeypatch):
    """prometheus_client's global REGISTRY, empty, and inferwatch not yet registered in it."""
    import prometheus_client

    registry = CollectorRegistry(auto_describe=True)
    monkeypatch.setattr(prometheus_client, "REGISTRY", registry)
    monkeypatch.setattr(bridge, "_prometheus_registry", None)
    return registry


def _wsgi_get(app) -> tuple[str, bytes]:
    from wsgiref.util import setup_testing_defaults

    environ: dict = {}
    setup_testing_defaults(environ)
    seen: list[str] = []
    body = b"".join(app(environ, lambda status, headers: seen.append(status)))
    return seen[0], body


def test_an_application_that_registered_inferwatch_itself_can_still_mount_it(
        fresh_default_registry):
    # As the bridge's docstring shows, but into prometheus_client's default registry.
    fresh_default_registry.register(InferwatchCollector())
    Counter("app_logins", "Logins.", registry=fresh_default_registry).inc()

    status, body = _wsgi_get(inferwatch.make_wsgi_app())

    assert status == "200 OK"
    assert body.count(b"# TYPE inferwatch_internal_errors_total counter") == 1
    assert b"app_logins_total 1.0" in body


def test_an_application_metric_named_like_inferwatchs_gets_a_clear_error(
        fresh_default_registry):
    from prometheus_client import Gauge

    Gauge("inferwatch_model_info", "The application's own.", registry=fresh_default_registry)

    with pytest.raises(ValueError, match=r"application registered metrics .*inferwatch_model_info"
                                         r".*rename them"):
        inferwatch.make_wsgi_app()
