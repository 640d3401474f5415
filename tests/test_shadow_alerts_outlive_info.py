"""A shadow version never pages, even after its inferwatch_model_info is gone, while a shadow
promoted to serve is judged at once: through the generated rules on the real promtool.

The series the alerts read are windowed (burn rates over an hour and more), so they outlive
a failing challenger whose experiment was removed, or whose process died, by as long as the
window; its info series ends at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_rules_semantics_edges import promtool_test

pytestmark = pytest.mark.integration

BURN = "InferwatchErrorBudgetBurn.*"
MODEL = 'job="inferwatch-model"'


def _version(instance: str, model: str, version: str, role: str, info: str, ok: str,
             errors: str | None) -> list[tuple[str, str]]:
    """One version's info (with `role`) and call counters, as promtool values."""
    labels = f'{MODEL}, instance="{instance}", model="{model}", model_version="{version}"'
    series = [(f'inferwatch_model_info{{{labels}, role="{role}"}}', info),
              (f'inferwatch_requests_total{{{labels}, outcome="ok"}}', ok)]
    if errors is not None:
        series.append((f'inferwatch_requests_total{{{labels}, outcome="error"}}', errors))
    return series


def _never(selector: str, end: str) -> dict:
    """No burn alert matching `selector`, pending or firing, at any evaluation up to `end`."""
    return {"expr": f'count_over_time(ALERTS{{alertname=~"{BURN}", {selector}}}[{end}])',
            "eval_time": end, "exp_samples": []}


def _burning(eval_time: str, firing: list[tuple[str, str, str]]) -> dict:
    """The burn alerts firing at `eval_time`: (alert, model, version) each."""
    samples = [{"labels": (f'ALERTS{{alertname="{alert}", alertstate="firing", '
                           f'model="{model}", model_version="{version}", '
                           f'severity="critical"}}'),
                "value": 1} for alert, model, version in firing]
    return {"expr": f'ALERTS{{alertname=~"{BURN}", alertstate="firing"}}',
            "eval_time": eval_time, "exp_samples": samples}


def _outlives(window: str, eval_time: str) -> dict:
    """The shadow's recorded error ratio over `window` still exists at `eval_time`, after its
    info is gone: the case this file is about does reach the alerts."""
    ratio = f'model:inferwatch_requests:error_ratio_rate{window}{{model="fraud"}}'
    return {"expr": f"{ratio} > 0.4", "eval_time": eval_time,
            "exp_samples": [{"labels": (f'{ratio[:ratio.index("{")]}{{model="fraud", '
                                        f'model_version="2.0"}}'),
                             "value": 0.5}]}


def _removed_failing_shadow(until: int, end: int) -> list[tuple[str, str]]:
    """fraud: champion 1.0 healthy for `end` minutes; shadow 2.0 on the same replica fails
    half its calls, then its experiment is removed at `until` (its series go stale, the
    target stays up). ranker: a champion failing half its calls all along."""
    return [
        (f'up{{{MODEL}, instance="a"}}', f"1x{end}"),
        (f'up{{{MODEL}, instance="b"}}', f"1x{end}"),
        *_version("a", "fraud", "1.0", "primary", f"1x{end}", f"0+100x{end}", None),
        *_version("a", "fraud", "2.0", "shadow", f"1x{until} stale", f"0+50x{until} stale",
                  f"0+50x{until} stale"),
        *_version("b", "ranker", "1.0", "primary", f"1x{end}", f"0+50x{end}",
                  f"0+50x{end}"),
    ]


def test_a_removed_failing_shadow_never_pages_while_a_failing_champion_does(
        tmp_path: Path) -> None:
    """The shadow's 1h and 6h error ratios stay at 50% for up to an hour after its info is
    gone at 60m; the shadow exclusion read only the current info, so both burn alerts paged
    for fraud 2.0 (fast from about 62m, slow from about 75m to 90m). Now fraud has no burn
    alert, pending or firing, over two hours, while ranker's failing champion pages
    throughout."""
    series = _removed_failing_shadow(60, 120)
    ranker = [("InferwatchErrorBudgetBurnFast", "ranker", "1.0"),
              ("InferwatchErrorBudgetBurnSlow", "ranker", "1.0")]
    exprs = [_outlives("1h", "100m"), _outlives("6h", "100m"),
             _never('model="fraud"', "120m"),
             *(_burning(t, ranker) for t in ("30m", "62m", "75m", "90m", "120m"))]
    promtool_test(tmp_path, {}, series, exprs=exprs)


def test_an_override_copy_remembers_a_shadow_over_its_own_windows(tmp_path: Path) -> None:
    """fraud's entry reads its fast burn over 3h and 2h windows: its copy of the alert keeps
    the removed shadow out for as long as those windows hold its errors (to 180m), not the
    default's hour."""
    config = {"models": {"fraud": {"slo": {"fast_burn": {
        "long_window": "3h", "short_window": "2h"}}}}}
    exprs = [_outlives("2h", "170m"), _never('model="fraud"', "200m")]
    promtool_test(tmp_path, config, _removed_failing_shadow(60, 200), exprs=exprs)


def test_a_promoted_shadow_that_fails_pages_at_the_usual_time(tmp_path: Path) -> None:
    """fraud 2.0 runs as a healthy shadow for an hour, then is promoted at 60m (its info's
    role becomes primary, 1.0 is retired) and fails half its calls from then on; ranker 2.0,
    a canary that serves the same calls with the same outcomes but was never a shadow, is the
    usual time. Both page at the same evaluations: having been a shadow within the windows
    does not hold a serving version's page back."""
    end = 120
    series = [
        (f'up{{{MODEL}, instance="a"}}', f"1x{end}"),
        (f'up{{{MODEL}, instance="b"}}', f"1x{end}"),
        *_version("a", "fraud", "1.0", "primary", "1x60 stale", "0+100x60 stale", None),
        ('inferwatch_model_info{job="inferwatch-model", instance="a", model="fraud", '
         'model_version="2.0", role="shadow"}', "1x60 stale"),
        ('inferwatch_model_info{job="inferwatch-model", instance="a", model="fraud", '
         'model_version="2.0", role="primary"}', "_x60 1x60"),
        *_version("b", "ranker", "1.0", "primary", "1x60 stale", "0+100x60 stale", None),
        ('inferwatch_model_info{job="inferwatch-model", instance="b", model="ranker", '
         'model_version="2.0", role="primary"}', f"1x{end}"),
    ]
    # The second versions' calls: healthy for an hour, then failing half.
    for instance, model in (("a", "fraud"), ("b", "ranker")):
        labels = f'{MODEL}, instance="{instance}", model="{model}", model_version="2.0"'
        series += [(f'inferwatch_requests_total{{{labels}, outcome="ok"}}',
                    "0+100x60 6050+50x59"),
                   (f'inferwatch_requests_total{{{labels}, outcome="error"}}',
                    "_x60 0+50x60")]
    fast = [("InferwatchErrorBudgetBurnFast", model, "2.0") for model in ("fraud", "ranker")]
    slow = [("InferwatchErrorBudgetBurnSlow", model, "2.0") for model in ("fraud", "ranker")]
    # promtool runs the recording and the alerting groups in no fixed order, so an alert
    # may read the ratios of the evaluation before: its first firing minute moves by one from
    # run to run, the same for both models within a run. Fast fires from about 65m, slow from
    # about 77m; each model's minutes in each state are compared with the other's.
    def minutes(model: str) -> str:
        return f'count_over_time(ALERTS{{alertname=~"{BURN}", model="{model}"}}[{end}m])'

    same = {"expr": f"{minutes('fraud')}\n- ignoring (model)\n{minutes('ranker')}",
            "eval_time": f"{end}m",
            "exp_samples": [{"labels": (f'{{alertname="InferwatchErrorBudgetBurn{speed}", '
                                        f'alertstate="{state}", model_version="2.0", '
                                        f'severity="critical"}}'),
                             "value": 0}
                            for speed in ("Fast", "Slow") for state in ("pending", "firing")]}
    exprs = [_burning("62m", []), _burning("67m", fast), _burning("74m", fast),
             _burning("80m", [*fast, *slow]), _burning("120m", [*fast, *slow]), same]
    promtool_test(tmp_path, {}, series, exprs=exprs)
