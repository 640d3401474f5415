"""The status page mounted in a host web app: misconfiguration named at start-up, and
windows read across a restart of the counts."""

from __future__ import annotations

import math
from wsgiref.util import setup_testing_defaults

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from inferwatch.core.history import History
from inferwatch.core.registry import Registry
from inferwatch.core.state import ModelState
from inferwatch.report.live import from_state
from inferwatch.report.status import StatusPages
from inferwatch.serving.status_apps import make_status_asgi_app, make_status_wsgi_app


@pytest.fixture
def registry():
    registry = Registry()
    yield registry
    registry.close()


def wsgi_get(app, raw_query: bytes) -> tuple[str, bytes]:
    """One GET as a PEP 3333 server hands it over: the query's bytes as latin-1 text."""
    environ: dict = {}
    setup_testing_defaults(environ)
    environ["QUERY_STRING"] = raw_query.decode("latin-1")
    seen: list[str] = []
    body = b"".join(app(environ, lambda status, headers: seen.append(status)))
    return seen[0], body


# --- misconfiguration named at start-up ---------------------------------------------------------

@pytest.mark.parametrize("make", [make_status_wsgi_app, make_status_asgi_app, StatusPages])
def test_a_prometheus_registry_given_to_the_status_page_is_named(make):
    # make_asgi_app takes a prometheus_client registry; the status app wants inferwatch's.
    with pytest.raises(TypeError, match=r"registry must be an inferwatch Registry.*"
                                         r"got CollectorRegistry"):
        make(CollectorRegistry())


@pytest.mark.parametrize("make", [make_status_wsgi_app, make_status_asgi_app])
@pytest.mark.parametrize("config", [{"slo": {"availability": 0.99}}, 42, ["inferwatch.yaml"]])
def test_a_config_neither_a_config_nor_a_path_is_refused_at_start_up(registry, make, config):
    with pytest.raises(TypeError, match="config must be a generator Config or the path"):
        make(registry, config=config)


def test_an_object_with_a_models_attribute_is_not_taken_for_a_config(registry):
    # Taken at start-up, it answered 500 on every page instead.
    class Settings:
        models = {"fraud": {}}

    with pytest.raises(TypeError, match="config must be a generator Config"):
        make_status_wsgi_app(registry, config=Settings())


def test_a_yaml_path_still_configures_the_thresholds(registry, tmp_path):
    path = tmp_path / "inferwatch.yaml"
    path.write_text("latency:\n  p99_seconds: 7\n", encoding="utf-8")
    registry.monitor("fraud", "1").record_call(0.01, 0.5)
    status, body = wsgi_get(make_status_wsgi_app(registry, config=str(path)),
                            b"model=fraud&version=1")
    assert status == "200 OK" and b"threshold 7s" in body


# --- windows read across a restart of the counts ----------------------------------------------

@settings(max_examples=30)
@given(before=st.integers(2, 10**6), after=st.integers(0, 10**6),
       errors=st.integers(0, 10**6))
def test_a_window_never_reads_negative_across_a_restart(before, after, errors):
    # A worker forked from a process that had served calls keeps the parent's ring and
    # zeroes its counts: until the ring's next sample the page read against the parent's.
    after = min(after, before - 1)
    errors = min(errors, after)
    history = History(interval_seconds=10, span_seconds=4200)
    parent = ModelState("fraud", "1", loaded_at=0.0)
    parent.inc("inferwatch_requests_total", ("ok",), before)
    history.record([parent], now=100.0)
    history.record([parent], now=110.0)
    child = ModelState("fraud", "1", loaded_at=0.0)
    child.inc("inferwatch_requests_total", ("ok",), after - errors)
    child.inc("inferwatch_requests_total", ("error",), errors)
    report = from_state(child, history, now=400.0)
    live = report.live
    assert live.calls_per_second >= 0
    assert math.isnan(live.error_ratio) or 0 <= live.error_ratio <= 1
    for line in live.sparklines.values():
        assert all(math.isnan(v) or v >= 0 for v in line)
    burn = next(f for f in report.flags if f.alert == "InferwatchErrorBudgetBurnFast")
    assert math.isnan(burn.value) or burn.value >= 0

