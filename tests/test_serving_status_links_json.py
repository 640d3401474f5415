"""The /metrics server and its status page at their last edges: odd telemetry paths, links
to them, unknown models asked for as JSON."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from html import unescape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.report.page import index_page
from inferwatch.report.status import StatusPages
from inferwatch.serving.bridge import InferwatchCollector

HANG_GUARD = 30.0


@pytest.fixture
def registry():
    registry = Registry()
    inferwatch.instrument(lambda x: 0.5, name="churn", version="3", registry=registry)([1.0])
    yield registry
    registry.close()


def _serve(registry: Registry, **kwargs):
    prometheus = CollectorRegistry()
    prometheus.register(InferwatchCollector(registry))
    return inferwatch.serve(port=0, addr="127.0.0.1", registry=prometheus,
                            status_page=registry, **kwargs)


def _root(server) -> str:
    return f"http://127.0.0.1:{server.port}/"


def _metrics_anchor(index: str) -> tuple[str, str]:
    found = re.search(r'Metrics: <a href="([^"]*)">([^<]*)</a>', index)
    assert found, index
    return unescape(found.group(1)), unescape(found.group(2))


def _resolve(base: str, href: str) -> str:
    """`href` resolved against `base` (a server's root) as RFC 3986 5.2 and browsers do;
    urllib.parse.urljoin drops the empty segments of ".//metrics"."""
    assert base.endswith("/") and not href.startswith(("/", "?", "#"))
    assert ":" not in href.split("/", 1)[0], "would be read as a scheme"
    return base + href.removeprefix("./")


# --- the index's link to the metrics ---------------------------------------------------------

@pytest.mark.parametrize("path", ["//metrics", "///metrics", "//m:v2"])
def test_a_telemetry_path_with_leading_slashes_is_linked_to_itself(registry, path):
    with _serve(registry, telemetry_path=path) as server:
        index = urllib.request.urlopen(_root(server), timeout=HANG_GUARD).read().decode()
        href, _ = _metrics_anchor(index)
        target = _resolve(_root(server), href)
        assert target == server.url
        with urllib.request.urlopen(target, timeout=HANG_GUARD) as response:
            assert response.status == 200
            assert b"inferwatch_requests_total" in response.read()


def test_the_metrics_link_text_is_the_path_a_reader_knows(registry):
    with _serve(registry, telemetry_path="/métriques") as server:
        index = urllib.request.urlopen(_root(server), timeout=HANG_GUARD).read().decode()
    href, text = _metrics_anchor(index)
    assert href == "m%C3%A9triques"
    assert text == "métriques"


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(whitelist_categories=("L", "N", "P", "S")), min_size=1,
               max_size=20))
def test_the_link_text_decodes_the_href_it_stands_for(name):
    pages = StatusPages(Registry(), metrics_link=name)
    try:
        page = index_page([], lambda r: "", metrics_link=pages.metrics_link)
    finally:
        pages.registry.close()
    href, text = _metrics_anchor(page)
    assert href == pages.metrics_link
    assert "%" not in text or "%" in name
    assert text == urllib.parse.unquote(href)


# --- bad telemetry paths named ---------------------------------------------------------------

@pytest.mark.parametrize("path", ["/metrics\udcff", "/\ud800"])
def test_a_telemetry_path_with_a_lone_surrogate_is_named(path):
    with pytest.raises(ValueError, match="telemetry_path"):
        inferwatch.serve(port=0, addr="127.0.0.1", registry=CollectorRegistry(),
                         telemetry_path=path)


# --- unknown models as JSON ------------------------------------------------------------------

@pytest.mark.parametrize("query", ["model=typo&format=json", "model=churn&version=9&format=json",
                                   "model=typo&version=3&format=JSON", "version=9&format=json"])
def test_an_unknown_model_version_as_json_is_404_as_the_page_is(registry, query):
    pages = StatusPages(registry)
    status, body, headers = pages.respond(query)
    assert status == 404, body
    assert headers["Content-Type"].startswith("text/plain")
    html_query = query.rsplit("&format=", 1)[0]
    if "model=" in html_query:
        assert pages.respond(html_query)[0] == 404


@pytest.mark.parametrize("query", ["format=json", "model=churn&format=json",
                                   "model=churn&version=3&format=json"])
def test_a_known_model_or_the_whole_snapshot_is_still_served(registry, query):
    status, body, _ = StatusPages(registry).respond(query)
    assert status == 200 and b'"churn"' in body


def test_an_empty_process_still_gives_an_empty_snapshot():
    registry = Registry()
    try:
        status, body, _ = StatusPages(registry).respond("format=json")
    finally:
        registry.close()
    assert status == 200 and b'"states": []' in body


def test_the_report_cli_fails_on_a_model_the_server_does_not_know(registry, tmp_path, capsys):
    from inferwatch.cli import main

    out = tmp_path / "report.html"
    with _serve(registry) as server:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(_root(server) + "?model=typo&format=json",
                                   timeout=HANG_GUARD)
        assert caught.value.code == 404
        code = main(["report", "--metrics", _root(server) + "?model=typo", "-o", str(out)])
    assert code == 2 and not out.exists()
    assert "holds no model version with model='typo'" in capsys.readouterr().err
