"""The index's rows and the model pages judge the same version alike: the drift window's own
label cap, features with too few values in the window, and thresholds declared in code."""

from __future__ import annotations

import html
import re
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.core.state import ModelState
from inferwatch.quality.reference import Reference
from inferwatch.quality.tracker import FeatureTracker
from inferwatch.report.flags import FIRING, NO_DATA, OK, Thresholds
from inferwatch.report.live import from_state, summary_state
from inferwatch.serving.bridge import InferwatchCollector

HANG_GUARD = 30.0
NOW = 10_000.0
ROWS = 2000


def _serve(registry: Registry, **kwargs):
    prometheus = CollectorRegistry()
    prometheus.register(InferwatchCollector(registry))
    return inferwatch.serve(port=0, addr="127.0.0.1", registry=prometheus,
                            status_page=registry, **kwargs)


def _get(server, query: str) -> str:
    url = f"http://127.0.0.1:{server.port}/?{query}"
    with urllib.request.urlopen(url, timeout=HANG_GUARD) as response:
        assert response.status == 200
        return response.read().decode()


def _index_firing(index: str, model: str, version: str) -> set[str]:
    """The alerts in the "conditions holding" cell of one index row."""
    link = "?" + urllib.parse.urlencode({"model": model, "version": version})
    row = index[index.index(f'href="{html.escape(link)}"'):]
    cell = row[:row.index("</tr>")].rsplit("<td", 1)[1]
    text = html.unescape(re.sub(r"<[^>]*>", "", cell.split(">", 1)[1]))
    return set() if text == "none" else {name.strip() for name in text.split(",")}


def _page_firing(page: str) -> set[str]:
    """The alerts a model page shows firing."""
    return set(re.findall(r'>(Inferwatch\w+)</a></td><td><span class="firing">', page))


def _page_flag(page: str, alert: str) -> str:
    found = re.search(rf'>{alert}</a></td><td><span class="(\w+)">', page)
    assert found, alert
    return found.group(1)


def _columns(names: list[str], drifted: str | None, present: dict[str, int],
             rng: np.random.Generator) -> dict[str, list[float]]:
    columns = {}
    for name in names:
        values = rng.normal(size=ROWS) + (8.0 if name == drifted else 0.0)
        values[present.get(name, ROWS):] = np.nan
        columns[name] = values.tolist()
    return columns


def _both_pages(names: list[str], drifted: str | None, *, max_features: int = 200,
                present: dict[str, int] | None = None, config: str | None = None
                ) -> tuple[set[str], set[str], str]:
    """(the index row's firing alerts, the model page's, the model page) of one version
    whose window holds 2,000 rows, served over HTTP."""
    rng = np.random.default_rng(11)
    reference = Reference.from_data({name: rng.normal(size=2000) for name in names}, bins=10)
    registry = Registry()
    try:
        monitor = registry.monitor("fraud", "1").configure(reference=reference,
                                                           max_features=max_features)
        with monitor.request() as request:
            request.features(_columns(names, drifted, present or {}, rng))
        registry.drain()
        with _serve(registry, status_config=config) as server:
            index = _get(server, "")
            page = _get(server, "model=fraud&version=1")
        return _index_firing(index, "fraud", "1"), _page_firing(page), page
    finally:
        registry.close()


def test_the_index_judges_feature_drift_by_the_monitors_own_label_cap():
    # max_features=3: f4 has no gauge, so InferwatchFeatureDrift cannot fire on it.
    names = [f"f{i}" for i in range(5)]
    index, page, text = _both_pages(names, "f4", max_features=3)
    assert _page_flag(text, "InferwatchFeatureDrift") == "ok"
    assert "InferwatchFeatureDrift" not in index
    assert index == page
    # The same drift on a feature with a gauge fires on both.
    index, page, _ = _both_pages(names, "f1", max_features=3)
    assert "InferwatchFeatureDrift" in index and index == page


def test_the_index_judges_features_past_the_default_cap_when_the_monitor_allows_them():
    # max_features=300 of 210 features: f209 has a gauge, and its drift fires the alert.
    names = [f"f{i}" for i in range(210)]
    index, page, text = _both_pages(names, "f209", max_features=300)
    assert _page_flag(text, "InferwatchFeatureDrift") == "firing"
    assert "InferwatchFeatureDrift" in index
    assert index == page


def test_the_index_leaves_out_a_sparse_feature_as_the_model_page_does():
    # "b" has a value in 50 of the window's 2,000 rows: fewer than drift.min_observations.
    index, page, text = _both_pages(["a", "b"], "b", present={"b": 50})
    assert _page_flag(text, "InferwatchFeatureDrift") == "ok"
    assert "InferwatchFeatureDrift" not in index
    assert index == page
    # With a value in every row it fires on both.
    index, page, _ = _both_pages(["a", "b"], "b")
    assert "InferwatchFeatureDrift" in index and index == page


def test_the_index_reads_a_min_observations_declared_in_code(tmp_path):
    # objectives.from_code: the model declares drift.min_observations 100, below the
    # config's 5,000; with 1,000 rows in the window the rule judges the drift.
    state = _tracked_state(["a"], "a", max_labels=200, rows=1000)
    state.objectives["drift.min_observations"] = 100.0
    thresholds = Thresholds.for_model("fraud", _config(tmp_path, 5000))
    page, row = _drift_flags(state, thresholds)
    assert page.state == FIRING
    assert row == page
    # Declared above the rows in the window: "no data" on both.
    state.objectives["drift.min_observations"] = 1500.0
    page, row = _drift_flags(state, Thresholds.for_model("fraud", _config(tmp_path, 500)))
    # (Under the minimum a summary is not scored: only the state is compared.)
    assert page.state == row.state == NO_DATA


def _config(tmp_path, least: int) -> str:
    path = tmp_path / f"least{least}.yaml"
    path.write_text(f"objectives:\n  from_code: true\ndrift:\n  min_observations: {least}\n")
    return str(path)


# --- the same state, read for the index and for the model page ---------------------------------

def _tracked_state(names: list[str], drifted: str | None, *, max_labels: int,
                   present: dict[str, int] | None = None, rows: int = ROWS) -> ModelState:
    rng = np.random.default_rng(5)
    reference = Reference.from_data({name: rng.normal(size=2000) for name in names}, bins=10)
    tracker = FeatureTracker(reference, max_labels=max_labels)
    data = np.column_stack([rng.normal(size=rows) + (8.0 if name == drifted else 0.0)
                            for name in names])
    for name, count in (present or {}).items():
        data[count:, names.index(name)] = np.nan
    tracker.check_inputs([data], now=NOW)
    state = ModelState("fraud", "1", loaded_at=0.0)
    state.extras["drift"] = tracker.drift
    return state


def _drift_flags(state: ModelState, thresholds: Thresholds):
    """(the model page's InferwatchFeatureDrift flag, the index row's) of `state`."""
    page = from_state(state, None, NOW, thresholds=thresholds)
    light, drift = summary_state(state, NOW)
    row = from_state(light, None, NOW, thresholds=thresholds, summary=True, drift=drift)
    pick = [next(f for f in report.flags if f.alert == "InferwatchFeatureDrift")
            for report in (page, row)]
    return pick[0], pick[1]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(features=st.integers(1, 8), max_labels=st.integers(0, 9),
       drifted=st.integers(0, 7), sparse=st.dictionaries(st.integers(0, 7),
                                                          st.integers(0, ROWS), max_size=3))
def test_an_index_row_and_its_model_page_agree_on_feature_drift(features, max_labels,
                                                                drifted, sparse):
    names = [f"f{i}" for i in range(features)]
    present = {names[i]: count for i, count in sparse.items() if i < features}
    state = _tracked_state(names, names[drifted] if drifted < features else None,
                           max_labels=max_labels, present=present)
    page, row = _drift_flags(state, Thresholds.for_model("fraud"))
    assert row.state == page.state
    assert row.detail == page.detail
    assert (row.value == page.value) or (row.value != row.value and page.value != page.value)


@pytest.mark.parametrize("max_labels", [1, 3])
def test_a_folded_drifted_feature_fires_on_neither(max_labels):
    state = _tracked_state(["a", "b", "c", "d"], "d", max_labels=max_labels)
    page, row = _drift_flags(state, Thresholds.for_model("fraud"))
    assert page.state == OK and row == page


# --- predictions recorded without their inputs -------------------------------------------------

def test_prediction_drift_of_calls_without_inputs_is_judged_on_both_pages():
    # record_call() fills only the outputs' window: the rows gauge the alert is gated by
    # counts those 1,500 predictions, all far above the reference's.
    rng = np.random.default_rng(2)
    reference = Reference.from_data(rng.normal(size=2000), rng.uniform(size=2000))
    registry = Registry()
    try:
        monitor = registry.monitor("fraud", "1").configure(reference=reference)
        for value in rng.uniform(0.9, 1.0, 1500):
            monitor.record_call(0.01, float(value))
        registry.drain()
        with _serve(registry) as server:
            index = _get(server, "")
            page = _get(server, "model=fraud&version=1")
    finally:
        registry.close()
    assert _page_flag(page, "InferwatchPredictionDrift") == "firing"
    assert "on 1500 rows" in html.unescape(page)
    assert "InferwatchPredictionDrift" in _index_firing(index, "fraud", "1")
