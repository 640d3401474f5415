"""Status flags against the rules they stand for: the features the drift alert can see (the
label cap, sparse features), the fast burn's minimum of calls, `models:` patterns read as
Prometheus reads them, and the state's totals read once per page."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.core import history as history_module
from inferwatch.core.render import model_families
from inferwatch.core.state import ModelState
from inferwatch.generate import config as generator_config
from inferwatch.quality.reference import Reference
from inferwatch.quality.tracker import FeatureTracker, folded_names, gauge_labels
from inferwatch.report.flags import FIRING, NO_DATA, OK, Thresholds, evaluate
from inferwatch.report.live import from_state

NOW = 10_000.0
REQUESTS = "inferwatch_requests_total"


def _drifted_state(names: list[str], drifted: str, *, max_labels: int,
                   present: dict[str, int] | None = None) -> ModelState:
    """A model whose window holds 2,000 rows, `drifted` far off its training range and the
    rest as in training; a feature in `present` has a value in that many rows only."""
    rng = np.random.default_rng(7)
    reference = Reference.from_data({name: rng.normal(size=2000) for name in names}, bins=10)
    tracker = FeatureTracker(reference, max_labels=max_labels)
    rows = 2000
    data = np.column_stack([rng.normal(size=rows) + (8.0 if name == drifted else 0.0)
                            for name in names])
    for name, count in (present or {}).items():
        data[count:, names.index(name)] = np.nan
    tracker.check_inputs([data], now=NOW)
    state = ModelState("fraud", "1", loaded_at=0.0)
    state.extras["drift"] = tracker.drift
    return state


def _drift_flag(state: ModelState) -> tuple[str, float, str]:
    report = from_state(state, None, NOW, thresholds=Thresholds.for_model("fraud"))
    flag, = [f for f in report.flags if f.alert == "InferwatchFeatureDrift"]
    return flag.state, flag.value, flag.detail


def _gauged_features(state: ModelState) -> set[str]:
    """The features with an inferwatch_feature_drift series, as a scrape renders them."""
    return {sample.labels["feature"] for family in model_families([state], NOW)
            if family.name == "inferwatch_feature_drift" for sample in family.samples}


def test_a_feature_past_the_label_cap_fires_no_flag_as_it_has_no_gauge() -> None:
    names = [f"f{i}" for i in range(5)]
    state = _drifted_state(names, "f4", max_labels=3)
    assert "f4" in folded_names(state.extras["drift"].reference, 3)[0]
    # The exported gauges carry f0..f2 only: InferwatchFeatureDrift cannot fire on f4.
    assert _gauged_features(state) == {"f0", "f1", "f2"}
    flag_state, _, detail = _drift_flag(state)
    assert flag_state == OK, detail
    assert "f4" not in detail
    # The same drift on a labelled feature does fire.
    assert _drift_flag(_drifted_state(names, "f1", max_labels=3))[0] == FIRING


def test_gauge_labels_are_the_drift_states_labels() -> None:
    names = ["a", "a ", "b", "__other__", "c"]
    state = _drifted_state(names, "c", max_labels=2)
    drift = state.extras["drift"]
    assert gauge_labels(drift.reference, 2) == drift.labels()
    assert folded_names(drift.reference, 2)[0] == {
        name for name, label in drift.labels()[0].items() if label is None}


def test_an_index_row_without_its_window_judges_the_default_cap() -> None:
    # An index row's copy has no drift window: the features past the default cap (200) are
    # left out by the order the row lists them in, the reference's.
    from inferwatch.report.model import Distribution, Live, ModelReport

    state = ModelState("fraud", "1", loaded_at=0.0)
    features = [Distribution(f"f{i}", "numeric", (), (), (), {"psi": 0.0}) for i in range(201)]
    features[-1] = Distribution("f200", "numeric", (), (), (), {"psi": 9.0})
    live = Live(window_seconds=300.0, requests={}, calls_per_second=0.0,
                error_ratio=math.nan, latency_p50=math.nan, latency_p99=math.nan,
                sparklines={}, prediction_quantiles={}, classes={}, confidence={}, invalid={},
                input_errors={}, outcomes={}, accuracy=math.nan, label_delay_p50=math.nan,
                info={}, loaded_at=0.0, trained_at=math.nan, drift_window_rows=5000)
    report = ModelReport(title="t", model="fraud", version="1", generated_at=NOW, rows=5000,
                         features=features, outputs=[], quality={}, live=live)
    flags = {f.alert: f for f in evaluate(report, Thresholds.for_model("fraud"), state=state,
                                          now=NOW, delta={"invalid": 0.0, "rows": 0.0})}
    assert flags["InferwatchFeatureDrift"].state == OK


def test_a_sparse_feature_is_not_judged_as_the_rule_leaves_it_out() -> None:
    # "b" has a value in 50 of the window's 2,000 rows: the rule's
    # inferwatch_feature_drift_observations < drift.min_observations leaves it out.
    state = _drifted_state(["a", "b"], "b", max_labels=200, present={"b": 50})
    assert state.extras["drift"].observations(NOW)["b"] == 50.0
    flag_state, _, detail = _drift_flag(state)
    assert flag_state == OK, detail
    # With as many values as rows it fires.
    assert _drift_flag(_drifted_state(["a", "b"], "b", max_labels=200))[0] == FIRING


def _one_failed_call(errors: float, ok: float) -> ModelState:
    state = ModelState("fraud", "1", loaded_at=0.0)
    state.inc(REQUESTS, ("ok",), ok)
    state.inc(REQUESTS, ("error",), errors)
    return state


@settings(max_examples=40, deadline=None)
@given(errors=st.integers(1, 9), ok=st.integers(0, 9))
def test_the_fast_burn_needs_the_rules_minimum_of_calls(errors: int, ok: int) -> None:
    state = _one_failed_call(errors, ok)
    report = from_state(state, None, 200.0, thresholds=Thresholds.for_model("fraud"))
    flag, = [f for f in report.flags if f.alert == "InferwatchErrorBudgetBurnFast"]
    expected = NO_DATA if errors + ok < 10 else FIRING
    assert flag.state == expected, flag.detail


def test_the_fast_burn_minimum_follows_the_config() -> None:
    cfg = generator_config.from_dict({"slo": {"fast_burn": {"min_requests": 0}}})
    assert Thresholds.for_model("fraud", cfg).fast_burn_min_requests == 0
    report = from_state(_one_failed_call(1, 0), None, 200.0,
                        thresholds=Thresholds.for_model("fraud", cfg))
    flag, = [f for f in report.flags if f.alert == "InferwatchErrorBudgetBurnFast"]
    assert flag.state == FIRING


def test_a_models_pattern_with_an_inline_flag_is_read_as_prometheus_reads_it() -> None:
    # The generator accepts RE2's `(?i)` anywhere; Python's re raised on it, which took the
    # status page down for every model.
    cfg = generator_config.from_dict({"models": {"fr(?i)aud": {"latency": {"p99_seconds": 2}}}})
    assert Thresholds.for_model("frAUD", cfg).latency_p99_seconds == 2.0
    assert Thresholds.for_model("churn", cfg).latency_p99_seconds == 0.5


def test_a_models_digit_class_is_ascii_as_in_re2() -> None:
    cfg = generator_config.from_dict({"models": {r"m\d": {"latency": {"p99_seconds": 3}}}})
    assert Thresholds.for_model("m7", cfg).latency_p99_seconds == 3.0
    # An Arabic-Indic digit is no \d for RE2: the rules judge this model by the default.
    assert Thresholds.for_model("m\u0663", cfg).latency_p99_seconds == 0.5


def test_the_states_totals_are_read_once_per_page(monkeypatch: pytest.MonkeyPatch) -> None:
    state = _one_failed_call(5, 95)
    history = history_module.History(interval_seconds=10, span_seconds=4200)
    history.record([state], now=100.0)
    state.inc(REQUESTS, ("ok",), 10)
    report = from_state(state, history, 500.0, thresholds=Thresholds.for_model("fraud"))
    expected = [(f.alert, f.state, f.value) for f in report.flags]
    calls = []
    original = history_module.totals_of

    def counting(s: ModelState) -> dict[str, float]:
        calls.append(s)
        return original(s)

    monkeypatch.setattr(history_module, "totals_of", counting)
    flags = evaluate(report, Thresholds.for_model("fraud"), state=state, history=history,
                     now=500.0, delta={"invalid": 0.0, "rows": 0.0})
    assert len(calls) == 1
    got = [(f.alert, f.state, f.value) for f in flags]
    assert [(a, s) for a, s, _ in got] == [(a, s) for a, s, _ in expected]
    for (_, _, v1), (_, _, v2) in zip(got, expected):
        assert (math.isnan(v1) and math.isnan(v2)) or v1 == pytest.approx(v2)
