"""Drift reports and status pages as HTML: content, order, escaping, the policy, the CLI.

The property tests feed hostile names (quotes, <script>, </svg>, unicode) as features,
categories, models and versions, and check that the page parses into exactly the elements
the renderer wrote: no script, no event handler, each name back as text.
"""

from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import inferwatch
from inferwatch.catalogue import OTHER
from inferwatch.cli import main
from inferwatch.core.history import History
from inferwatch.core.registry import Registry
from inferwatch.quality.reference import Reference
from inferwatch.report import page as page_module
from inferwatch.report.flags import FIRING, NO_DATA, OK, Thresholds
from inferwatch.report.live import from_state, histogram_quantile
from inferwatch.report.status import StatusPages
from inferwatch.report.svg import clean

HOSTILE = st.one_of(
    st.sampled_from(['"', "'", "<script>alert(1)</script>", "</svg><script>x</script>",
                     "a&b", "<!--", "]]>", "\u202e\u0301é中文", "onload=alert(1)", "</style>"]),
    st.text(min_size=1, max_size=12),
)


class _Page(HTMLParser):
    """Elements, attributes and text of a page, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.data_values: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)
        found = dict(attrs)
        if "data-key" in found:
            self.data_values[found["data-key"] or ""] = found.get("data-value") or ""

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(html: str) -> _Page:
    parser = _Page()
    parser.feed(html)
    parser.close()
    return parser


ALLOWED_TAGS = {"html", "head", "meta", "link", "title", "style", "body", "div", "h1", "h2",
                "h3", "p", "a", "span", "b", "code", "section", "table", "tr", "th", "td",
                "ul", "li", "svg", "line", "polyline", "circle", "rect", "text"}


def assert_inert(html: str) -> _Page:
    page = parsed(html)
    assert set(page.tags) <= ALLOWED_TAGS, set(page.tags) - ALLOWED_TAGS
    assert not [name for name, _ in page.attributes if name.startswith("on")]
    assert page.tags.count("style") == 1 and page.tags.count("script") == 0
    for name, value in page.attributes:
        if name == "href":
            assert value is not None and not value.lower().startswith(("javascript:", "//",
                                                                       "http://"))
            assert value.startswith(("?", "#", "https://github.com/inferwatch/", "data:",
                                     "metrics")), value
    return page


def _svgs(html: str) -> list[ET.Element]:
    """Every inline chart, parsed as XML: a name must not be able to end one early."""
    charts = []
    start = 0
    while (begin := html.find("<svg", start)) != -1:
        end = html.index("</svg>", begin) + len("</svg>")
        charts.append(ET.fromstring(html[begin:end]))
        start = end
    return charts


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# `__other__` is the overflow bin's name, a category value the profile refuses (tested apart).
@given(names=st.lists(HOSTILE, min_size=1, max_size=4, unique=True),
       category=HOSTILE.filter(lambda value: value != OTHER), title=HOSTILE)
def test_a_report_of_hostile_names_is_inert_and_shows_each_name(names, category, title):
    rng = np.random.default_rng(0)
    columns = {name: rng.normal(size=200) for name in names}
    columns["__cat__" + category] = np.array([category, "x"] * 100, dtype=object)
    reference = Reference.from_data(columns, categorical=["__cat__" + category])
    html = reference.compare(columns, title=title).html()
    page = assert_inert(html)
    text = "".join(page.text)
    for name in [*names, title, "__cat__" + category]:
        assert clean(name).strip() in text
    assert len(_svgs(html)) == len(columns)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A blank model name (white space only) is refused by the registry: hostile, not blank.
@given(model=HOSTILE.filter(str.strip), version=HOSTILE, feature=HOSTILE, error=HOSTILE)
def test_a_status_page_of_hostile_names_is_inert(model, version, feature, error):
    registry = Registry()
    try:
        reference = Reference.from_data({feature: np.arange(100.0)})
        monitor = registry.monitor(model, version).configure(reference=reference)
        monitor.record_call(0.01, 0.5)
        monitor.record_error(0.02, type(error.replace("\x00", "").strip() or "E", (Exception,), {}))
        pages = StatusPages(registry)
        status, index, _headers = pages.respond("")
        assert status == 200
        assert_inert(index.decode())
        state = registry.states()[0]
        status, body, _ = pages.respond(page_module.model_link(state.model, state.version)[1:])
        assert status == 200
        page = assert_inert(body.decode())
        assert clean(state.model) in "".join(page.text)
        _svgs(body.decode())
    finally:
        registry.close()


def test_the_policy_allows_only_the_inline_style_sheet():
    policy = page_module.CSP_HEADER
    assert "default-src 'none'" in policy
    assert "script-src" not in policy  # falls back to default-src 'none'
    assert "http" not in policy and "*" not in policy and "unsafe" not in policy
    html = page_module.document("t", "<p>x</p>")
    assert f'content="{page_module.CONTENT_SECURITY_POLICY}"' in html


def test_drifted_features_come_first_with_their_scores():
    rng = np.random.default_rng(1)
    train = {f"f{i}": rng.normal(size=5000) for i in range(6)}
    live = {name: values.copy() for name, values in train.items()}
    live["f4"] = live["f4"] + 2.0  # strongly drifted
    live["f1"] = live["f1"] * 1.5  # drifted a little
    report = Reference.from_data(train).compare(live)
    names = [d.name for d in report.features]
    assert names[:2] == ["f4", "f1"]
    psis = [d.psi for d in report.features]
    assert psis == sorted(psis, reverse=True)
    drift_flag = next(f for f in report.flags if f.alert == "InferwatchFeatureDrift")
    assert drift_flag.state == FIRING and "'f4'" in drift_flag.detail
    page = parsed(report.html())
    order = [k.split("|")[1] for k in page.data_values if k.startswith("feature_drift|")
             and k.endswith("|psi")]
    assert order[:2] == ["f4", "f1"]


def test_report_scores_equal_the_drift_module_on_the_same_counts():
    from inferwatch.quality.checks import BatchChecker
    from inferwatch.quality.drift import drift_scores

    rng = np.random.default_rng(2)
    reference = Reference.from_data({"a": rng.normal(size=1000), "b": rng.random(1000)})
    live = {"a": rng.normal(0.3, 1, 700), "b": rng.random(700) ** 2}
    report = reference.compare(live)
    counts = BatchChecker(reference).check(live).bin_counts
    expected = drift_scores(reference, counts)
    for item in report.features:
        for method in ("psi", "js", "ks"):
            assert item.scores[method] == expected[(item.name, method)]


def test_quality_counts_and_prediction_drift_in_a_report():
    reference = Reference.from_data({"x": np.arange(100.0)}, predictions=np.linspace(0, 1, 100))
    report = reference.compare({"x": [1.0, None, 500.0, 2.0]},
                               predictions=[0.9, 0.95, 0.99, 0.97])
    assert report.quality["x"] == {"missing": 1.0, "out_of_range": 1.0, "unseen_category": 0.0}
    assert report.outputs[0].rows == 4
    assert report.outputs[0].scores["ks"] > 0.5
    assert "<svg" in report._repr_html_() and "<html" not in report._repr_html_()


def test_save_html_writes_the_whole_page(tmp_path):
    reference = Reference.from_data({"x": np.arange(100.0)})
    path = tmp_path / "report.html"
    reference.compare({"x": np.arange(100.0) + 50}).save_html(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in text


def test_histogram_quantile_matches_prometheus_interpolation():
    bounds = [0.1, 0.5, 1.0]
    assert histogram_quantile(0.5, bounds, [10, 10, 0, 0]) == 0.1
    assert histogram_quantile(0.75, bounds, [10, 10, 0, 0]) == pytest.approx(0.3)
    assert histogram_quantile(0.99, bounds, [0, 0, 0, 10]) == 1.0
    assert math.isnan(histogram_quantile(0.5, bounds, [0, 0, 0, 0]))


def test_flags_use_the_generator_config_thresholds(tmp_path):
    from inferwatch.core.state import ModelState

    config = tmp_path / "inferwatch.yaml"
    config.write_text("latency:\n  p99_seconds: 0.001\nmodels:\n  lenient:\n"
                      "    latency:\n      p99_seconds: 10\n")
    for model, expected in (("strict", FIRING), ("lenient", OK)):
        state = ModelState(model, "1", loaded_at=0.0)
        state.inc("inferwatch_requests_total", ("ok",), 10)
        state.histogram("inferwatch_request_duration_seconds", (), [0.01, 0.1]).observe(
            np.full(10, 0.05))
        report = from_state(state, None, 100.0,
                            thresholds=Thresholds.for_model(model, str(config)))
        latency = next(f for f in report.flags if f.alert == "InferwatchLatencyHigh")
        assert latency.state == expected, latency
        accuracy = next(f for f in report.flags if f.alert == "InferwatchAccuracyDrop")
        assert accuracy.state == NO_DATA


def test_windowed_numbers_come_from_the_ring_of_samples():
    from inferwatch.core.state import ModelState

    state = ModelState("m", "1", loaded_at=0.0)
    history = History(interval_seconds=10, span_seconds=3600)
    state.inc("inferwatch_requests_total", ("ok",), 1000)
    history.record([state], now=600.0)
    state.inc("inferwatch_requests_total", ("ok",), 270)
    state.inc("inferwatch_requests_total", ("error",), 30)
    report = from_state(state, history, now=900.0)
    assert report.live.window_seconds == 300.0
    assert report.live.calls_per_second == 1.0
    assert report.live.error_ratio == 0.1
    assert report.live.sparklines["calls per second"] == [1.0]


def test_the_ring_stays_bounded():
    from inferwatch.core.state import ModelState

    history = History(interval_seconds=1, span_seconds=10)
    state = ModelState("m", "1")
    state.inc("inferwatch_feature_missing_total", ("a",), 1)
    for t in range(1000):
        history.record([state], now=float(t))
    samples = history.samples(("m", "1"))
    assert len(samples) == 11
    assert sum(s.features is not None for s in samples) <= 11


def test_inferwatch_report_cli_writes_a_report(tmp_path, capsys):
    rng = np.random.default_rng(3)
    reference = Reference.from_data({"age": rng.normal(40, 5, 2000),
                                     "city": np.array(["a", "b"] * 1000, dtype=object)},
                                    predictions=rng.random(2000), categorical=["city"])
    reference.save(tmp_path / "reference.json")
    data = tmp_path / "live.csv"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["age", "city", "value"])
        for i in range(1200):
            writer.writerow([f"{rng.normal(60, 5):.3f}", "c" if i % 2 else "a",
                             f"{rng.random():.3f}"])
    out = tmp_path / "report.html"
    assert main(["report", "--reference", str(tmp_path / "reference.json"), str(data),
                 "-o", str(out)]) == 0
    page = assert_inert(out.read_text(encoding="utf-8"))
    assert page.data_values["unseen_category|city"] == "600.0"
    assert float(page.data_values["feature_drift|age|psi"]) > 1
    assert "prediction_drift|value|psi" in page.data_values
    assert "InferwatchFeatureDrift" in capsys.readouterr().err
    assert main(["report", "--reference", str(tmp_path / "missing.json"), str(data),
                 "-o", str(out)]) == 2


def test_the_readme_pictures_show_the_current_layout():
    """docs/images/status-page.png and drift-report.png are screenshots taken by
    tests/test_browser.py (``make pictures``); they carry the layout's fingerprint."""
    from pathlib import Path

    from inferwatch.report.page import layout_fingerprint

    images = Path(__file__).resolve().parents[1] / "docs" / "images"
    assert (images / "status-pages.fingerprint").read_text().strip() == layout_fingerprint(), (
        "the status page or report layout changed: run `make pictures`")
    readme = (images.parents[1] / "README.md").read_text()
    for name in ("status-page.png", "drift-report.png"):
        assert (images / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"docs/images/{name}" in readme


def test_flags_judge_accuracy_by_the_validation_score_and_declared_objectives_first(tmp_path):
    """The page agrees with the rules: a model's validation accuracy less max_drop replaces
    the floor, and with objectives.from_code a declared objective wins over the config."""
    from inferwatch.core.state import ModelState

    config = tmp_path / "inferwatch.yaml"
    config.write_text("objectives:\n  from_code: true\nlatency:\n  p99_seconds: 0.001\n")

    def flags(validation: dict, objectives: dict) -> dict[str, str]:
        state = ModelState("m", "1", loaded_at=0.0, validation=validation,
                           objectives=objectives)
        state.inc("inferwatch_requests_total", ("ok",), 10)
        state.histogram("inferwatch_request_duration_seconds", (), [0.01, 0.1]).observe(
            np.full(10, 0.05))
        state.inc("inferwatch_outcomes_total", ("correct",), 910)
        state.inc("inferwatch_outcomes_total", ("incorrect",), 90)
        report = from_state(state, None, 100.0,
                            thresholds=Thresholds.for_model("m", str(config)))
        return {f.alert: f.state for f in report.flags}

    # 91% accurate: above the 0.9 floor, but more than 0.05 under a 97% validation score.
    assert flags({}, {})["InferwatchAccuracyDrop"] == OK
    assert flags({"accuracy": 0.97}, {})["InferwatchAccuracyDrop"] == FIRING
    assert flags({"accuracy": 0.93}, {})["InferwatchAccuracyDrop"] == OK
    assert flags({"accuracy": 0.97}, {"accuracy.max_drop": 0.1})["InferwatchAccuracyDrop"] == OK
    # p99 of about 0.1 s: over the config's 1 ms, under a declared 0.5 s.
    assert flags({}, {})["InferwatchLatencyHigh"] == FIRING
    assert flags({}, {"latency.p99_seconds": 0.5})["InferwatchLatencyHigh"] == OK


def test_the_no_traffic_flag_is_the_rule_summed_over_the_models_versions():
    """As InferwatchNoTraffic: no call over the last 5m (every version of the model) where
    there were calls over the 5m an hour before; no data while the ring is shorter."""
    from inferwatch.core.state import ModelState

    def flag(calls: dict[str, list[tuple[float, float]]], now: float) -> str:
        """`calls`: per version, (time, calls so far) samples; the first version's state is
        the page's, holding its last count."""
        history = History(interval_seconds=10, span_seconds=4200)
        states = {}
        for version, points in calls.items():
            states[version] = state = ModelState("m", version, loaded_at=0.0)
            for at, total in points:
                state.counters["inferwatch_requests_total"] = {("ok",): total}
                history.record([state], now=at)
        page = states[next(iter(calls))]
        report = from_state(page, history, now)
        return next(f for f in report.flags if f.alert == "InferwatchNoTraffic").state

    quiet_now = [(0.0, 0.0), (600.0, 50.0), (900.0, 100.0), (3600.0, 100.0), (4300.0, 100.0)]
    assert flag({"1": quiet_now}, 4300.0) == FIRING
    busy_now = [*quiet_now[:-1], (4300.0, 130.0)]
    assert flag({"1": busy_now}, 4300.0) == OK
    never = [(at, 0.0) for at, _ in quiet_now]
    assert flag({"1": never}, 4300.0) == OK  # no traffic an hour ago either
    assert flag({"1": quiet_now, "2": [(3600.0, 0.0), (4300.0, 40.0)]}, 4300.0) == OK
    assert flag({"1": quiet_now[2:]}, 4300.0) == NO_DATA  # the ring starts 57m ago


@pytest.mark.parametrize("case", ["missing_directory", "directory", "deep_reference"])
def test_report_cli_misuse_is_one_line_and_exit_2(tmp_path, capsys, case):
    Reference.from_data({"age": np.arange(50.0)}).save(tmp_path / "reference.json")
    data = tmp_path / "live.csv"
    data.write_text("age\n1\n2\n", encoding="utf-8")
    reference, out = tmp_path / "reference.json", tmp_path / "report.html"
    expected = {"missing_directory": f"cannot write {tmp_path}/no/such/report.html",
                "directory": f"cannot write {tmp_path}",
                "deep_reference": "deep.json: not a reference file"}[case]
    if case == "missing_directory":
        out = tmp_path / "no" / "such" / "report.html"
    elif case == "directory":
        out = tmp_path
    else:
        reference = tmp_path / "deep.json"
        reference.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    assert main(["report", "--reference", str(reference), str(data), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inferwatch report: error: ") and expected in err
    assert err.count("\n") == 1


def test_report_cli_from_metrics_names_an_unwritable_output(tmp_path, capsys):
    registry = Registry()
    registry.monitor("m", "1").record_call(0.01, 0.5)
    out = tmp_path / "no" / "report.html"
    try:
        with inferwatch.serve(port=0, addr="127.0.0.1", registry=CollectorRegistry(),
                              status_page=registry) as server:
            code = main(["report", "--metrics", f"http://127.0.0.1:{server.port}/", "-o",
                         str(out)])
    finally:
        registry.close()
    err = capsys.readouterr().err
    assert code == 2 and err == f"inferwatch report: error: cannot write {out}: No such file" \
                                " or directory\n"


@pytest.mark.parametrize("extra, expected", [
    (["--metrics", "http://127.0.0.1:9/", "--predictions-column", "score"],
     "--predictions-column reads DATA; with --metrics there is none"),
    (["--metrics", "http://127.0.0.1:9/", "--format", "csv"],
     "--format reads DATA; with --metrics there is none"),
    (["--reference", "{reference}", "{data}", "--model", "fraud"],
     "--model picks a model of --metrics URL, or the model whose thresholds --config gives "
     "a DATA file; with DATA alone give --config too, or leave --model out"),
])
def test_report_options_of_the_other_mode_are_refused_not_ignored(tmp_path, capsys, extra,
                                                                   expected):
    # An option that the chosen mode does not read was silently dropped: a user asking for
    # `--model fraud` of a file got a report that was not what they asked for.
    Reference.from_data({"age": np.arange(50.0)}).save(tmp_path / "reference.json")
    (tmp_path / "live.csv").write_text("age\n1\n2\n", encoding="utf-8")
    argv = [a.format(reference=tmp_path / "reference.json", data=tmp_path / "live.csv")
            for a in extra]
    out = tmp_path / "report.html"

    assert main(["report", *argv, "-o", str(out)]) == 2

    assert capsys.readouterr().err == f"inferwatch report: error: {expected}\n"
    assert not out.exists()
