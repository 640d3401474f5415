"""Reports and status pages under odd inputs: snapshots from proxies and wrong URLs, times
that are not times, numbers at the float limits, and names carrying bidi controls."""

from __future__ import annotations

import gzip
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import inferwatch
from inferwatch.cli import main
from inferwatch.core.registry import Registry
from inferwatch.quality.reference import Reference
from inferwatch.report import svg
from inferwatch.report.live import from_state
from inferwatch.report.model import ModelReport, from_data
from inferwatch.report.page import report_page
from inferwatch.report.status import StatusPages, read_snapshot, snapshot_json
from loopback_http import serving_bytes

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def _registry_with_one_call() -> Registry:
    registry = Registry()
    registry.monitor("fraud", "1").record_call(0.01, 0.5)
    registry.drain()
    return registry


# --- snapshots a user points the report at ------------------------------------------------

def test_a_report_of_the_metrics_url_names_the_status_page_to_give(tmp_path, capsys):
    # `--metrics` reads like the /metrics address: the error must say what to give instead.
    from inferwatch.serving.bridge import InferwatchCollector

    registry = _registry_with_one_call()
    out = tmp_path / "report.html"
    try:
        prometheus = CollectorRegistry()
        prometheus.register(InferwatchCollector(registry))
        with inferwatch.serve(port=0, addr="127.0.0.1", registry=prometheus,
                              status_page=registry) as server:
            assert server.url.endswith("/metrics")
            assert main(["report", "--metrics", server.url, "-o", str(out)]) == 2
            err = capsys.readouterr().err
    finally:
        registry.close()
    assert err.startswith("inferwatch report: error: ") and err.count("\n") == 1
    assert "Prometheus metrics" in err and "not /metrics" in err
    assert not out.exists()


@pytest.mark.parametrize("text", [
    b"# HELP inferwatch_requests_total Calls.\n# TYPE inferwatch_requests_total counter\n",
    b'inferwatch_requests_total{model="fraud"} 3.0\n',
    b"# TYPE x counter\nx_total 1\n# EOF\n",
])
def test_metrics_text_is_told_apart_from_other_non_json(text: bytes) -> None:
    with pytest.raises(ValueError, match="answers Prometheus metrics"):
        read_snapshot(text)
    with pytest.raises(ValueError, match="not JSON"):
        read_snapshot(b"<html>login</html>")


def test_a_snapshot_gzipped_by_a_proxy_is_read(tmp_path, capsys):
    registry = _registry_with_one_call()
    try:
        body = snapshot_json(registry.states())
    finally:
        registry.close()
    assert read_snapshot(gzip.compress(body))[1][0].model == "fraud"
    with pytest.raises(ValueError, match="broken gzip"):
        read_snapshot(gzip.compress(body)[:20])
    out = tmp_path / "report.html"
    with serving_bytes(gzip.compress(body), {"Content-Type": "application/json",
                                        "Content-Encoding": "gzip"}) as url:
        assert main(["report", "--metrics", url, "-o", str(out)]) == 0
    assert capsys.readouterr().err.endswith(": 1 model versions\n")
    assert "fraud" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("generated_at", ["NaN", "Infinity", "-Infinity", 1e300, -1e300,
                                          1.7e15, "12"])
def test_a_snapshot_time_that_is_no_time_is_a_clear_error(tmp_path, capsys, generated_at):
    registry = _registry_with_one_call()
    try:
        document = json.loads(snapshot_json(registry.states()))
    finally:
        registry.close()
    document["generated_at"] = generated_at
    body = json.dumps(document).encode()
    if generated_at == "12":  # a number as a string is still a time
        assert read_snapshot(body)[0] == 12.0
        return
    with pytest.raises(ValueError, match="generated_at is not a time"):
        read_snapshot(body)
    out = tmp_path / "report.html"
    with serving_bytes(body, {"Content-Type": "application/json"}) as url:
        assert main(["report", "--metrics", url, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inferwatch report: error: cannot read the status snapshot")
    assert "generated_at" in err and err.count("\n") == 1
    assert not out.exists()


@given(at=st.one_of(st.floats(), st.sampled_from([1.7e12, 1.7e15, -1e12, -5e10, 2.6e11])))
@settings(max_examples=40, deadline=None)
def test_a_report_of_any_generation_time_renders(at: float) -> None:
    page = report_page(ModelReport("t", "", "", at, 0, [], [], {}))
    stamp = re.search(r"Generated ([^;]*);", page)
    assert stamp is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC|at an unknown time",
                        stamp.group(1))


# --- charts at the float limits -------------------------------------------------------------

FINITE = st.floats(allow_nan=False, allow_infinity=False)
ANY = st.floats()


def _coordinates(chart: str) -> list[str]:
    root = ET.fromstring(chart)
    values = []
    for element in root.iter():
        for name in ("x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "width", "height"):
            if name in element.attrib:
                values.append(element.attrib[name])
        if "points" in element.attrib:
            for point in element.attrib["points"].split():
                values.extend(point.split(","))
    return values


def _assert_drawable(chart: str) -> None:
    root = ET.fromstring(chart)
    for value in _coordinates(chart):
        assert NUMBER.match(value), value
    for element in root.iter():
        for name in ("width", "height"):
            if name in element.attrib:
                assert float(element.attrib[name]) >= 0, (element.tag, element.attrib)


@given(values=st.lists(ANY, max_size=30))
@settings(max_examples=200, deadline=None)
def test_a_sparkline_of_any_numbers_has_numeric_coordinates(values: list[float]) -> None:
    _assert_drawable(svg.sparkline(values, title="calls per second"))


def test_a_sparkline_spanning_the_float_range_draws_every_point() -> None:
    top = np.finfo(np.float64).max
    chart = svg.sparkline([float(top), -float(top), 1.0], title="t")
    _assert_drawable(chart)
    points = ET.fromstring(chart).find("{http://www.w3.org/2000/svg}polyline")
    assert points is not None and len(points.attrib["points"].split()) == 3


@given(values=st.lists(ANY, min_size=1, max_size=12))
@settings(max_examples=200, deadline=None)
def test_bars_of_any_numbers_have_no_negative_width(values: list[float]) -> None:
    labels = [f"class {i}" for i in range(len(values))]
    _assert_drawable(svg.bars(labels, values, title="predicted classes"))


@given(shares=st.lists(st.tuples(ANY, ANY), min_size=1, max_size=12))
@settings(max_examples=200, deadline=None)
def test_histograms_of_any_shares_have_no_negative_height(
        shares: list[tuple[float, float]]) -> None:
    labels = [f"bin {i}" for i in range(len(shares))]
    chart = svg.overlaid_histogram(labels, [r for r, _ in shares], [n for _, n in shares],
                                   title="x")
    _assert_drawable(chart)


# --- names carrying bidi controls -------------------------------------------------------------

@given(name=st.text(min_size=1, max_size=6).map(lambda s: s + "\u202e"))
@settings(max_examples=25, deadline=None)
def test_escape_leaves_no_bidi_control_to_reverse_what_follows(name: str) -> None:
    text = svg.escape(name + ": live 5.0%")
    assert not set(text) & set(BIDI)
    assert text.endswith(": live 5.0%")


def test_a_model_version_and_feature_with_bidi_controls_cannot_reverse_the_page() -> None:
    # "fraud<RLO>" would show the version and every number after the name mirrored.
    registry = Registry()
    rng = np.random.default_rng(1)
    reference = Reference.from_data({"amount\u202e": rng.normal(size=500)})
    monitor = registry.monitor("fraud\u202e", "1.4.2").configure(reference=reference)
    for value in rng.normal(size=50):
        with monitor.request() as r:
            r.features({"amount\u202e": float(value)})
            r.prediction(0.5)
    registry.drain()
    try:
        pages = StatusPages(registry)
        status, index, _ = pages.respond("")
        assert status == 200
        state = registry.states()[0]
        page = report_page(from_state(state, None, 1e9 + 1.0), index_link="?")
    finally:
        registry.close()
    for text in (index.decode(), page):
        assert not set(text) & set(BIDI)
    assert "fraud\ufffd 1.4.2" in page
    report = from_data(reference, {"amount\u202e": rng.normal(size=100)})
    assert not set(report.html()) & set(BIDI)
    assert "amount\ufffd" in report.html()


def test_ordinary_right_to_left_names_are_kept() -> None:
    assert svg.escape("\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627") == (
        "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627")


# --- the flags of a model version with no traffic yet -----------------------------------------

def test_flags_of_a_model_without_traffic_say_no_data_in_words() -> None:
    registry = Registry()
    reference = Reference.from_data({"x": np.arange(100.0)}, predictions=np.arange(100.0))
    registry.monitor("fraud", "1").configure(reference=reference)
    registry.drain()
    try:
        state = registry.states()[0]
        report = from_state(state, None, state.loaded_at + 100.0)
        page = report_page(report)
    finally:
        registry.close()
    flags = {flag.alert: flag for flag in report.flags}
    for name in ("InferwatchLatencyHigh", "InferwatchFeatureDrift",
                 "InferwatchPredictionDrift"):
        assert flags[name].state == "no data"
        assert not re.search(r"\bnan|\(''\)", flags[name].detail, re.IGNORECASE), (
            flags[name].detail)
    assert "p99 latency n/a, threshold 0.5s" in page
    assert "no psi scored on 0 rows" in page


def test_flags_of_a_drifted_model_name_the_worst_feature() -> None:
    rng = np.random.default_rng(3)
    reference = Reference.from_data({"a": rng.normal(size=2000), "b": rng.normal(size=2000)})
    report = from_data(reference, {"a": rng.normal(size=2000) + 3, "b": rng.normal(size=2000)})
    drift = next(f for f in report.flags if f.alert == "InferwatchFeatureDrift")
    assert drift.state == "firing" and drift.detail.startswith("largest psi ")
    assert "('a') on 2000 rows" in drift.detail


# --- the cut points under a numeric chart -----------------------------------------------------

def _ticks(chart: str) -> list[str]:
    return re.findall(r'text-anchor="middle" fill="#6b7280">([^<]*)</text>', chart)


def test_charts_of_unix_times_and_narrow_prices_label_their_cut_points_apart() -> None:
    # A feature between 1000 and 1005, or a Unix time, labelled every tick "1e+03".
    rng = np.random.default_rng(0)
    stamps = 1.7e9 + rng.uniform(0, 86_400, 2000)
    prices = 1000 + rng.uniform(0, 5, 2000)
    reference = Reference.from_data({"event_time": stamps, "price": prices})
    page = from_data(reference, {"event_time": stamps, "price": prices}).html()
    for name in ("event_time", "price"):
        section = page.split(f"<h3>{name}</h3>", 1)[1].split("</svg>", 1)[0]
        ticks = _ticks(section)
        assert len(ticks) >= 2 and len(set(ticks)) == len(ticks), (name, ticks)
        assert [float(t) for t in ticks] == sorted(float(t) for t in ticks)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=30,
                unique=True))
@settings(max_examples=200, deadline=None)
def test_distinct_cut_points_get_distinct_ticks(edges: list[float]) -> None:
    edges = sorted(edges)
    if any(a == b for a, b in zip(edges, edges[1:])):  # -0.0 and 0.0
        return
    labels = [f"bin {i}" for i in range(len(edges) + 1)]
    shares = [1 / len(labels)] * len(labels)
    ticks = _ticks(svg.overlaid_histogram(labels, shares, shares, title="x", edges=edges))
    assert 1 <= len(ticks) <= 6 + 1
    assert all(a != b for a, b in zip(ticks, ticks[1:])), (edges, ticks)
