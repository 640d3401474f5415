"""A single-value dashboard variable is matched exactly, never as a regex.

Grafana's Prometheus data source regex-escapes a variable's value only when the variable is
multi-value or has an All option; a single-value one (the Output variable) goes into the query
as it is. Written into `output=~"$output"`, an output named by a class or a dict key holding
regex characters broke the panel: `C++` was refused as a regex, `p(fraud)` matched nothing and
`a.b` matched `axb` too. Checked on the rendered and the committed dashboards, on output names
drawn by Hypothesis, and against a real Prometheus scraping a classifier with such classes.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import inferwatch
from conftest import free_port, require_binary
from e2e_dashboards import panels
from inferwatch.core.registry import Registry
from inferwatch.generate import config_checks as check
from inferwatch.generate import dashboards
from inferwatch.generate.config import DEFAULT, from_dict, load
from inferwatch.serving.bridge import InferwatchCollector
from processes import Prometheus, stop, wait_ready

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"

# A label matcher whose value is one double-quoted PromQL string.
_MATCHER = re.compile(r'(?P<label>[a-zA-Z_]\w*)\s*(?P<op>=~|!~|!=|=)\s*'
                      r'"(?P<value>(?:[^"\\]|\\.)*)"')
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def _committed() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text())
            for path in sorted((ROOT / "dashboards").glob("*.json"))}


def _rendered_sets() -> dict[str, dict[str, dict[str, Any]]]:
    """Dashboards to check: the committed ones, the default's, and those of configs that
    add panels (models with their own objectives, per-version objectives, other selectors)."""
    overrides = load(ROOT / "alerts" / "tests" / "overrides" / "inferwatch.yaml")
    return {
        "committed": _committed(),
        "default": dashboards.render(DEFAULT),
        "overrides": dashboards.render(overrides),
        "per-version": dashboards.render(from_dict({"objectives": {"from_code": True}})),
        "selectors": dashboards.render(from_dict({"selectors": {
            "model": 'job="ml", cluster=~"eu-.*"', "exporter": 'job="gpu"'}})),
    }


def _single_value_variables(dashboard: dict[str, Any]) -> set[str]:
    """The query variables Grafana interpolates without regex-escaping."""
    return {v["name"] for v in dashboard["templating"]["list"]
            if v.get("type") != "datasource" and not v.get("multi")
            and not v.get("includeAll")}


def _expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target, annotation and variable query."""
    found = [(f"panel {panel.get('title')!r}", target["expr"])
             for panel in panels(dashboard) for target in panel.get("targets", [])
             if target.get("expr")]
    for annotation in dashboard.get("annotations", {}).get("list", []):
        expr = annotation.get("target", {}).get("expr") or annotation.get("expr")
        if expr:
            found.append((f"annotation {annotation.get('name')!r}", expr))
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        if variable.get("type") == "query" and text:
            found.append((f"variable {variable['name']!r}", text))
    return found


def _regex_uses(dashboard: dict[str, Any]) -> list[str]:
    single = _single_value_variables(dashboard)
    misused = []
    for where, expr in _expressions(dashboard):
        for matcher in _MATCHER.finditer(expr):
            named = {next(g for g in ref.groups() if g)
                     for ref in _VARIABLE.finditer(matcher.group("value"))}
            if matcher.group("op") in ("=~", "!~") and named & single:
                misused.append(f"{where}: {matcher.group(0)}")
    return misused


def test_the_output_variable_is_single_value_without_all() -> None:
    # What the rest of this file relies on: were it multi-value, Grafana would escape it.
    for name in ("model-quality.json", "champion-challenger.json"):
        assert _single_value_variables(_committed()[name]) == {"output"}


@pytest.mark.parametrize("rendered", ["committed", "default", "overrides", "per-version",
                                      "selectors"])
def test_no_single_value_variable_is_matched_as_a_regex(rendered: str) -> None:
    sets = _rendered_sets()[rendered]
    misused = [f"{name}: {use}" for name, dashboard in sets.items()
               for use in _regex_uses(dashboard)]
    assert misused == []
    uses = [matcher.group(0) for dashboard in sets.values()
            for _, expr in _expressions(dashboard) for matcher in _MATCHER.finditer(expr)
            if "$output" in matcher.group("value")]
    assert uses and set(uses) == {'output="$output"'}


def grafana_single_value(value: str) -> str:
    """A single-value, non-All variable's value as Grafana's Prometheus data source writes it
    into a query (prometheusRegularEscape, without the special-characters feature toggle)."""
    return value.replace("\\", "\\\\").replace("'", "\\\\'")


def _output_queries() -> list[str]:
    return [expr for dashboard in _committed().values()
            for _, expr in _expressions(dashboard) if "$output" in expr]


# Output names as users give them (class names, dict keys): any text but the quotes and line
# breaks, which Grafana does not escape for a single-value variable in any matcher.
_OUTPUT_NAMES = st.text(st.characters(blacklist_categories=("Cs",),
                                      blacklist_characters="\"'\n\r"), min_size=1)


@settings(max_examples=200, deadline=None)
@given(name=_OUTPUT_NAMES)
def test_any_output_name_is_selected_exactly(name: str) -> None:
    queries = _output_queries()
    assert len(queries) >= 2
    for expr in queries:
        sent = expr.replace("$output", grafana_single_value(name))
        start = sent.index("output=")
        label, op, value, _, _ = check.label_matcher(sent, start)
        assert (label, op, value) == ("output", "=", name)


# --- live: a real Prometheus scraping a classifier whose class names hold regex characters ------

CLASSES = ["C++", "p(fraud)", "a.b", "axb", "back\\slash", "(", "é|x"]


class _Classifier:
    classes_ = np.array(CLASSES)

    def __init__(self, shift: float) -> None:
        self.shift = shift

    def predict_proba(self, x: Any) -> np.ndarray:
        rows = len(np.asarray(x))
        weights = np.arange(1, len(CLASSES) + 1, dtype=float) + self.shift
        return np.tile(weights / weights.sum(), (rows, 1))



@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A Prometheus scraping a classifier with a shadow challenger, once both have outputs."""
    binary = require_binary("prometheus")
    workdir = tmp_path_factory.mktemp("output-variable")
    registry = Registry()
    model = inferwatch.instrument(_Classifier(0.0), name="clf", version="1", registry=registry)
    inferwatch.shadow(model, _Classifier(1.0), version="2-rc", sample=1.0, registry=registry)
    exposed = CollectorRegistry()
    exposed.register(InferwatchCollector(registry))
    metrics_port = free_port()
    server = inferwatch.serve(port=metrics_port, addr=HOST, registry=exposed)
    done = threading.Event()

    def traffic() -> None:
        while not done.is_set():
            model.predict_proba(np.ones((2, 3)))
            done.wait(0.02)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "inferwatch-model",
                            "static_configs": [{"targets": [f"{HOST}:{metrics_port}"]}]}]}))
    port = free_port()
    log = (workdir / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address={HOST}:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://{HOST}:{port}/-/ready", process=process)
        prometheus = Prometheus(f"http://{HOST}:{port}")
        # Two scrapes of each histogram, so increase() over the window has data.
        prometheus.wait_for("count(count_over_time(inferwatch_shadow_difference_bucket[1m]) "
                            ">= 3) > 0", timeout=60)
        prometheus.wait_for("count(count_over_time(inferwatch_prediction_value_bucket[1m]) "
                            ">= 3) > 0", timeout=60)
        yield prometheus
    finally:
        done.set()
        thread.join(5)
        stop(process)
        log.close()
        server.shutdown()


# Grafana's values for the other variables: each multi-value one at All, its allValue.
_ALL = {"job": ".*", "instance": ".*", "model": ".*", "model_version": ".*",
        "__rate_interval": "1m"}


def _sent(expr: str, output: str) -> str:
    for name in sorted(_ALL, key=len, reverse=True):
        expr = expr.replace("$" + name, _ALL[name])
    return expr.replace("$output", grafana_single_value(output))


@pytest.mark.integration
@pytest.mark.parametrize("output", CLASSES)
def test_each_output_panel_reads_exactly_the_picked_output(live: Prometheus,
                                                           output: str) -> None:
    queries = _output_queries()
    assert len(queries) >= 2
    for expr in queries:
        sent = _sent(expr, output)
        # The panel's query as sent returns data (a regex error would fail the request) ...
        assert live.query(sent), sent
        # ... and the series it reads are those of the picked output alone.
        for selector in re.findall(r"inferwatch_\w+_bucket\{[^{}]*output=[^{}]*\}", sent):
            outputs = {s["metric"].get("output") for s in
                       live.query(f"count by (output) ({selector})")}
            assert outputs == {output}, selector
