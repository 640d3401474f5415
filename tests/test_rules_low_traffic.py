"""A model called less often than once per rate window, through the real promtool: as the
README says, the ratio and quantile alerts cannot fire with the default 5m window, and do
once `windows.rate` is longer than the gap between calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_rules_semantics_edges import promtool_test, quiet

pytestmark = pytest.mark.integration

MODEL = 'job="inferwatch-model", instance="m1:8000", model="fraud", model_version="1"'
MINUTES = 120
ALERTS = ("InferwatchInvalidPredictions", "InferwatchLatencyHigh")


def _every_call_nan_and_slow(gap_minutes: int) -> list[tuple[str, str]]:
    """One call every `gap_minutes` from minute 0, each taking 2 s and returning NaN."""
    calls = " ".join(str(minute // gap_minutes + 1) for minute in range(MINUTES))
    none = " ".join("0" for _ in range(MINUTES))
    series = [(f"inferwatch_model_info{{{MODEL}}}", f"1+0x{MINUTES - 1}"),
              ('up{job="inferwatch-model", instance="m1:8000"}', f"1+0x{MINUTES - 1}"),
              (f'inferwatch_requests_total{{{MODEL}, outcome="ok"}}', calls),
              (f"inferwatch_batch_size_sum{{{MODEL}}}", calls),
              (f'inferwatch_invalid_predictions_total{{{MODEL}, reason="nan"}}', calls)]
    for bound in ("0.5", "1.0", "2.5", "+Inf"):
        series.append((f'inferwatch_request_duration_seconds_bucket{{{MODEL}, le="{bound}"}}',
                       calls if bound in ("2.5", "+Inf") else none))
    return series


def test_a_call_every_ten_minutes_cannot_fire_with_the_default_window(tmp_path: Path) -> None:
    promtool_test(tmp_path, {}, _every_call_nan_and_slow(10),
                  alerts=[case for alert in ALERTS for case in quiet(alert, "60m", "119m")])


def _firing(severities: dict[str, str]) -> list[dict]:
    """An expression check: exactly these alerts fire for fraud at the end (annotations
    are checked elsewhere; here only whether the alert fires)."""
    firing = 'ALERTS{alertstate="firing", model="fraud"}'
    return [{"expr": firing, "eval_time": "119m", "exp_samples": [
        {"labels": f'ALERTS{{alertname="{alert}", alertstate="firing", model="fraud", '
                   f'model_version="1", severity="{severity}"}}', "value": 1}
        for alert, severity in severities.items()]}]


def test_a_window_longer_than_the_gap_fires_for_the_same_calls(tmp_path: Path) -> None:
    promtool_test(tmp_path, {"windows": {"rate": "15m"}}, _every_call_nan_and_slow(10),
                  exprs=_firing(dict(zip(ALERTS, ("critical", "warning")))))


def test_a_call_every_four_minutes_fires_with_the_default_window(tmp_path: Path) -> None:
    """The control: calls closer than the window keep the condition and its `for`."""
    promtool_test(tmp_path, {}, _every_call_nan_and_slow(4),
                  exprs=_firing(dict(zip(ALERTS, ("critical", "warning")))))
