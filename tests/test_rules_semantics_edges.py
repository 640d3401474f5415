"""What the generated rules mean on the series users really produce, through the real promtool:
restarts, scrape gaps, quiet nights, rollouts and shadows, and which alert fires or stays
quiet as its runbook says."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferwatch.generate import render, rule_files
from inferwatch.generate.config import from_dict
from promtool_cases import assert_promtool_passes, write_generated_rules

pytestmark = pytest.mark.integration

# The other rule tests check rule files with it.
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
MODEL = 'job="inferwatch-model"'
EXPORTER = 'job="inferwatch-exporter"'
RUNBOOK = "https://github.com/inferwatch/inferwatch/blob/main/docs/runbooks.md"


def promtool_test(directory: Path, config: dict[str, Any], series: list[tuple[str, str]],
                  alerts: list[dict[str, Any]] = (), exprs: list[dict[str, Any]] = (),
                  interval: str = "1m", files: tuple[str, ...] = ()) -> str:
    """Renders the rules of `config` into `directory` and runs one promtool test case on
    `series` with the rule files named in `files` (all by default); returns promtool's
    output, asserting it passed."""
    return assert_promtool_passes(
        directory, [{"series": s, "values": v} for s, v in series], alerts=alerts, exprs=exprs,
        interval=interval, rule_files=write_generated_rules(from_dict(config), directory, files))


def alert_expr(config: dict[str, Any], alert: str) -> str:
    """The expression of the (first) rule of `alert` rendered from `config`."""
    for text in rule_files(render(from_dict(config))).values():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alert:
                    return rule["expr"]
    raise AssertionError(f"no rule {alert}")


def quiet(alert: str, *times: str) -> list[dict[str, Any]]:
    return [{"eval_time": t, "alertname": alert, "exp_alerts": []} for t in times]


def cumulative(rates: list[float]) -> str:
    """promtool values of a counter that grows by `rates[i]` in minute i."""
    total, values = 0.0, []
    for rate in rates:
        values.append(total)
        total += rate
    return " ".join(f"{v:g}" for v in values)


# --- counters born with a count: Xid errors and folded label values ---------------------------


def test_a_scrape_gap_an_hour_ago_does_not_refire_old_xid_errors_or_overflows(
        tmp_path: Path) -> None:
    """The counters hold old counts (3 Xid errors, 40 folded values) and never move; the
    targets were unreachable for 10 minutes at 1h. One window later the alerts must stay
    quiet: nothing new happened. A counter that appears with a count (its first Xid) still
    fires for one window, as the runbook says."""
    overflow = (f'inferwatch_series_overflow_total{{{MODEL}, instance="a", '
                f'metric="inferwatch_feature_missing_total"}}')
    xid = (f'inferwatch_gpu_xid_errors_total{{{EXPORTER}, instance="n1", gpu="0", '
           f'uuid="GPU-1", xid="79"}}')
    new_xid = (f'inferwatch_gpu_xid_errors_total{{{EXPORTER}, instance="n1", gpu="0", '
               f'uuid="GPU-1", xid="48"}}')
    series = [(overflow, "40x60 _x10 40x80"), (xid, "3x60 _x10 3x80"),
              (new_xid, "_x139 1x10")]
    alerts = [*quiet("InferwatchSeriesOverflow", "100m", "125m", "128m", "135m"),
              *quiet("InferwatchGpuXidErrors", "100m", "125m", "128m", "135m"),
              {"eval_time": "145m", "alertname": "InferwatchGpuXidErrors", "exp_alerts": [
                  {"exp_labels": {"severity": "warning", "job": "inferwatch-exporter",
                                  "instance": "n1", "gpu": "0", "uuid": "GPU-1",
                                  "xid": "48"},
                   "exp_annotations": {
                       "summary": "GPU 0 (GPU-1) on n1 reports Xid 48 errors",
                       "description": (
                           "GPU 0 (GPU-1) on n1 reported 1 Xid 48 errors in the last 1h: the "
                           "driver saw a GPU fault (memory, bus or a stuck kernel). Reads "
                           'series matching {job="inferwatch-exporter"} (selectors.exporter '
                           "in the inferwatch config; regenerate the rules after changing it)."),
                       "runbook_url": RUNBOOK + "#inferwatchgpuxiderrors",
                       "dashboard_url": "http://localhost:3000/d/inferwatch-resources"}}]}]
    promtool_test(tmp_path, {}, series, alerts)


# --- adaptive baselines on a model with quiet minutes ----------------------------------------


def test_a_quiet_half_hour_does_not_blind_the_baselines_for_a_day(tmp_path: Path) -> None:
    """10 calls a second with 1% errors, except half an hour without any call at 2h: its
    error ratio and latency are 0/0 then. The bands must still be there afterwards (the
    windows are shortened here, a day at the defaults), and the error ratio anomaly must
    fire when errors jump to 30% at 6h."""
    short = {"baseline_window": "2h", "baseline_offset": "30m", "min_history": "1h",
             "seasonal": False}
    config = {"baselines": {"errors": short, "latency": short}}
    minutes = 60 * 7
    idle = range(120, 150)
    ok = [0.0 if i in idle else 600.0 for i in range(minutes)]
    errors = [0.0 if i in idle else (6.0 if i < 360 else 260.0) for i in range(minutes)]
    labels = f'{MODEL}, instance="a", model="m", model_version="1"'
    series = [(f'inferwatch_requests_total{{{labels}, outcome="ok"}}', cumulative(ok)),
              (f'inferwatch_requests_total{{{labels}, outcome="error"}}', cumulative(errors))]
    for le, share in (("0.05", 0.1), ("0.1", 0.6), ("0.25", 0.95), ("+Inf", 1.0)):
        series.append((f'inferwatch_request_duration_seconds_bucket{{{labels}, le="{le}"}}',
                       cumulative([o * share for o in ok])))
    band = [{"expr": "count(model:inferwatch_baseline_errors:expected > 0.009 < 0.011)",
             "eval_time": at, "exp_samples": [{"labels": "{}", "value": 1}]}
            for at in ("3h30m", "5h")]
    band += [{"expr": 'count(model:inferwatch_baseline_latency:expected{quantile="0.99"}'
                      ' == 0.25)',
              "eval_time": at, "exp_samples": [{"labels": "{}", "value": 1}]}
             for at in ("3h30m", "5h")]
    anomaly = f"count(\n{alert_expr(config, 'InferwatchErrorRatioAnomaly')}\n)"
    fired = [{"expr": anomaly, "eval_time": "5h50m", "exp_samples": []},
             {"expr": anomaly, "eval_time": "6h20m",
              "exp_samples": [{"labels": "{}", "value": 1}]}]
    promtool_test(tmp_path, config, series, exprs=band + fired,
                  files=("baseline-recording-rules.yml", "baseline-alerting-rules.yml"))


# --- a model that stops serving entirely ------------------------------------------------------


def test_a_model_whose_replicas_all_vanish_fires_no_traffic_unless_its_target_is_down(
        tmp_path: Path) -> None:
    """fraud's two replicas serve until 60m, then are gone (scaled to zero): no series and
    no target is left, so InferwatchTargetDown cannot see it and InferwatchNoTraffic must.
    risk's only target goes down at 60m: InferwatchTargetDown pages for it, and
    InferwatchNoTraffic, which would blame the callers, stays quiet. churn serves on."""
    series = []
    for model, instance, minutes, up in (("fraud", "a", 60, "1x59"), ("fraud", "b", 60, "1x59"),
                                         ("risk", "c", 60, "1x59 0x60"),
                                         ("churn", "d", 120, "1x119")):
        labels = f'{MODEL}, instance="{instance}", model="{model}", model_version="1"'
        series += [(f'inferwatch_requests_total{{{labels}, outcome="ok"}}',
                    f"0+60x{minutes - 1}"),
                   (f'inferwatch_requests_total{{{labels}, outcome="error"}}',
                    f"0x{minutes - 1}"),
                   (f'inferwatch_model_info{{{labels}, role="primary"}}', f"1x{minutes - 1}"),
                   (f'up{{{MODEL}, instance="{instance}"}}', up)]
    no_traffic = {
        "exp_labels": {"severity": "warning", "model": "fraud"},
        "exp_annotations": {
            "summary": "Model fraud receives no traffic",
            "description": (
                "Model fraud served no calls in the last 5m but did 1h ago. Reads series "
                'matching {job="inferwatch-model"} (selectors.model in the inferwatch config; '
                "regenerate the rules after changing it)."),
            "runbook_url": RUNBOOK + "#inferwatchnotraffic",
            "dashboard_url": "http://localhost:3000/d/inferwatch-overview?var-model=fraud"}}
    alerts = [*quiet("InferwatchNoTraffic", "70m"),
              {"eval_time": "90m", "alertname": "InferwatchNoTraffic",
               "exp_alerts": [no_traffic]},
              {"eval_time": "90m", "alertname": "InferwatchTargetDown", "exp_alerts": [
                  {"exp_labels": {"severity": "critical", "job": "inferwatch-model",
                                  "instance": "c", "model": "risk"},
                   "exp_annotations": {
                       "summary": "Model target inferwatch-model/c is down",
                       "description": (
                           "Prometheus cannot scrape inferwatch-model/c (selector "
                           'job="inferwatch-model"): the model service is down or its /metrics'
                           " endpoint fails. It served model risk when it went down. "
                           'Reads series matching {job="inferwatch-model"} '
                           "(selectors.model in the inferwatch config; regenerate the rules "
                           "after changing it)."),
                       "runbook_url": RUNBOOK + "#inferwatchtargetdown",
                       "dashboard_url": "http://localhost:3000/d/inferwatch-overview"}},
                  # risk has no other target: it fires for the model too, no instance.
                  {"exp_labels": {"severity": "critical", "model": "risk"},
                   "exp_annotations": {
                       "summary": "Every target of model risk is down",
                       "description": (
                           'Prometheus can scrape none of the targets (selector '
                           'job="inferwatch-model") that served model risk: Alertmanager '
                           "holds back the model's warnings while this fires. "
                           'Reads series matching {job="inferwatch-model"} '
                           "(selectors.model in the inferwatch config; regenerate the rules "
                           "after changing it)."),
                       "runbook_url": RUNBOOK + "#inferwatchtargetdown",
                       "dashboard_url": "http://localhost:3000/d/inferwatch-overview"}}]}]
    promtool_test(tmp_path, {}, series, alerts)


# --- the selector named by InferwatchTargetMissing --------------------------------------------


@pytest.mark.parametrize("selector", ['job=~"serving-$env|serving"', 'job="ml$1"',
                                      'job=~"a${x}b", env!="$$"'])
def test_target_missing_names_a_selector_with_a_dollar_as_written(tmp_path: Path,
                                                                  selector: str) -> None:
    """A selector left with a template's `$env` (or any `$` followed by a name) is named in
    the alert's `selector` label as written, not with the `$...` cut out."""
    series = [('up{job="other", instance="o:1"}', "1x20")]
    expr = alert_expr({"selectors": {"model": selector}}, "InferwatchTargetMissing")
    exprs = [{"expr": f"count by (selector) (\n{expr}\n)", "eval_time": "5m",
              "exp_samples": [{"labels": "{selector=" + quoted(label) + "}", "value": 1}
                              for label in (selector, 'job="inferwatch-exporter"')]}]
    promtool_test(tmp_path, {"selectors": {"model": selector}}, series, exprs=exprs,
                  files=("recording-rules.yml", "alerting-rules.yml"))


def quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
