"""The status page's flags at the edges where they must agree with the generated rules:
shadow models, windows from the config, and ratios over no rows."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from inferwatch.core.history import History
from inferwatch.core.state import ModelState
from inferwatch.generate import config as generator_config
from inferwatch.report.flags import FIRING, OK, Thresholds
from inferwatch.report.live import from_state
from promtool_cases import assert_promtool_passes

ROOT = Path(__file__).resolve().parent.parent
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
REQUESTS = "inferwatch_requests_total"


def _flags(state: ModelState, history: History | None = None, now: float = 100.0,
           config: object = None) -> dict[str, tuple[str, float]]:
    thresholds = Thresholds.for_model(state.model, config)
    report = from_state(state, history, now, thresholds=thresholds)
    return {flag.alert: (flag.state, flag.value) for flag in report.flags}


def _calls(state: ModelState, ok: float, error: float) -> None:
    state.inc(REQUESTS, ("ok",), ok)
    state.inc(REQUESTS, ("error",), error)


def test_a_shadow_model_is_judged_by_shadow_failing_not_by_the_primary_alerts() -> None:
    # Every primary alert's rule ends in `unless ... role="shadow"`; a shadow's error ratio
    # pages through InferwatchShadowFailing (> shadow.max_error_ratio over windows.rate).
    state = ModelState("fraud", "2", loaded_at=0.0)
    state.info["role"] = "shadow"
    _calls(state, 90, 10)
    flags = _flags(state)
    assert "InferwatchErrorBudgetBurnFast" not in flags
    assert "InferwatchLatencyHigh" not in flags
    assert flags["InferwatchShadowFailing"] == (FIRING, pytest.approx(0.1))


def test_shadow_failing_is_strictly_above_its_threshold() -> None:
    state = ModelState("fraud", "2", loaded_at=0.0)
    state.info["role"] = "shadow"
    _calls(state, 95, 5)  # exactly 0.05: the rule's `>` does not hold
    assert _flags(state)["InferwatchShadowFailing"][0] == OK


def _two_windows(state: ModelState, history: History) -> None:
    """100 ok calls before t=1000, 50 errors in 1000..1300 and 50 ok calls after."""
    _calls(state, 100, 0)
    history.record([state], now=1000.0)
    _calls(state, 0, 50)
    history.record([state], now=1300.0)
    _calls(state, 50, 0)


def test_the_live_window_is_the_configs_rate_window() -> None:
    config = generator_config.from_dict({"windows": {"rate": "10m"}})
    state = ModelState("fraud", "1", loaded_at=0.0)
    history = History(interval_seconds=10, span_seconds=4200)
    _two_windows(state, history)
    report = from_state(state, history, 1600.0,
                        thresholds=Thresholds.for_model("fraud", config))
    # model:inferwatch_requests:error_ratio_rate10m reads 1000..1600: 50 errors of 100;
    # the last 5 minutes alone hold none.
    assert report.live.window_seconds == 600.0
    assert report.live.error_ratio == pytest.approx(0.5)
    assert report.live.calls_per_second == pytest.approx(100 / 600)


def test_the_fast_burn_short_window_is_its_own_setting() -> None:
    # Short window 10m: 50 errors of 200 calls (25%); over the rate window's last 5m there
    # were none, which would hide the burn.
    config = generator_config.from_dict({"slo": {"fast_burn": {"short_window": "10m"}}})
    state = ModelState("fraud", "1", loaded_at=0.0)
    history = History(interval_seconds=10, span_seconds=4200)
    _calls(state, 0, 0)
    history.record([state], now=0.0)
    _calls(state, 100, 0)
    history.record([state], now=1000.0)
    _calls(state, 0, 50)
    history.record([state], now=1300.0)
    _calls(state, 50, 0)
    flag_state, value = _flags(state, history, now=1600.0, config=config)[
        "InferwatchErrorBudgetBurnFast"]
    assert flag_state == FIRING
    assert value == pytest.approx(0.25)


def test_invalid_predictions_over_no_rows_fire_as_the_rules_plus_inf() -> None:
    state = ModelState("fraud", "1", loaded_at=0.0)
    _calls(state, 1, 0)
    state.inc("inferwatch_invalid_predictions_total", ("nan",), 1)
    assert _flags(state)["InferwatchInvalidPredictions"] == (FIRING, math.inf)


def test_missing_values_over_no_rows_fire_as_the_rules_plus_inf() -> None:
    state = ModelState("fraud", "1", loaded_at=0.0)
    _calls(state, 1, 0)
    state.inc("inferwatch_feature_missing_total", ("amount",), 3)
    assert _flags(state)["InferwatchMissingValuesSpike"] == (FIRING, math.inf)
    assert _flags(state)["InferwatchOutOfRangeSpike"][0] == "no data"


@pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="needs promtool")
def test_the_rule_fires_on_invalid_predictions_over_no_rows(tmp_path: Path) -> None:
    """The claim above, checked on the committed rules with promtool."""
    sel = 'job="inferwatch-model", instance="a", model="fraud", model_version="1"'
    ratio = "model:inferwatch_invalid_predictions:ratio_rate5m"
    series = [
        {"series": f"inferwatch_model_info{{{sel}}}", "values": "1x20"},
        {"series": f'inferwatch_invalid_predictions_total{{{sel}, reason="nan"}}',
         "values": "0+1x20"},
        {"series": f"inferwatch_batch_size_sum{{{sel}}}", "values": "0x20"},
    ]
    check = {"expr": f"{ratio} > 0.001", "eval_time": "15m",
             "exp_samples": [{"labels": f'{ratio}{{model="fraud", model_version="1"}}',
                              "value": math.inf}]}
    assert_promtool_passes(tmp_path, series, exprs=[check],
                           rule_files=[ROOT / "alerts" / "recording-rules.yml",
                                       ROOT / "alerts" / "alerting-rules.yml"])
