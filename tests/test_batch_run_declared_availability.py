"""InferwatchBatchRunFailed judges a pushed model by the availability it declares in code.

With `objectives.from_code: true` every other availability rule takes a model's declared
objective (`instrument(objectives={"availability": ...})`, exported as
`inferwatch_model_objective{objective="slo.availability"}`) before its models: entry and the
default. A batch job's push carries that series in the model's group, so the batch alert
must read it there too: a job whose model declares 90% may fail 5% of a run; one that
declares 99.99% pages at 0.05%. Without from_code, the declaration changes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import time
from pathlib import Path
from typing import Any

import pytest

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.generate.config import from_dict
from processes import Prometheus, prometheus
from promtool_cases import assert_promtool_passes, write_generated_rules
from test_batch_run_failed import _gone
from test_pushgateway import Gateway, gateway  # noqa: F401 (the fixture)

ALERT = "InferwatchBatchRunFailed"
CALLS = 10_000
# batch-.* has its own 99% in the config: what a model declares in code comes first.
MODELS = {"batch-.*": {"slo": {"availability": 0.99}}}


def _labels(**pairs: str) -> str:
    return ", ".join(f"{name}={json.dumps(value)}" for name, value in pairs.items())


@dataclasses.dataclass(frozen=True)
class Shadow:
    """A shadow version in the pushed group, declaring `declares` in code (or nothing)."""

    declares: float | None


def _pushed(job: str, model: str, errors: int, declared: float | None = None, *,
            version: str = "3", shadow: Shadow | None = None,
            push_time: bool = True) -> list[dict[str, str]]:
    """One pushed group as the Pushgateway serves it (one version of it, without its
    push_time_seconds where another version gave it already): the run's calls, its model's
    info and, when the model declares one in code, its availability objective."""
    group = {"job": job, "model": model}
    series = [] if not push_time else [
        {"series": f"push_time_seconds{{{_labels(**group)}}}", "values": "0x15"}]
    series += [
        {"series": f"inferwatch_model_info{{{_labels(**group, model_version=version)}}}",
         "values": "1x15"},
        {"series": "inferwatch_requests_total{"
                   f"{_labels(**group, model_version=version, outcome='ok')}}}",
         "values": f"{CALLS - errors}x15"},
        {"series": "inferwatch_requests_total{"
                   f"{_labels(**group, model_version=version, outcome='error')}}}",
         "values": f"{errors}x15"}]
    if declared is not None:
        objective = _labels(**group, model_version=version, objective="slo.availability")
        series.append({"series": f"inferwatch_model_objective{{{objective}}}",
                       "values": f"{declared}x15"})
    if shadow is not None:
        # A challenger tried out beside the serving version on the same calls, none failing.
        challenger = {**group, "model_version": "4-rc"}
        series += [
            {"series": f"inferwatch_model_info{{{_labels(**challenger, role='shadow')}}}",
             "values": "1x15"},
            {"series": "inferwatch_requests_total{"
                       f"{_labels(**challenger, outcome='ok')}}}",
             "values": f"{CALLS}x15"}]
        if shadow.declares is not None:
            objective = _labels(**challenger, objective="slo.availability")
            series.append({"series": f"inferwatch_model_objective{{{objective}}}",
                           "values": f"{shadow.declares}x15"})
    return series


def _description(job: str, model: str, errors: int, slo: str) -> str:
    return (f"The last run of batch job {job} pushed {errors / CALLS * 100:.4g}% of model "
            f"{model}'s calls as errors, more than the whole error budget of the {slo} "
            f"availability SLO (slo.availability): the job failed, or its model did. It holds "
            f"until a run pushes fewer errors. Reads series matching {{job!=\"\"}} "
            f"(pushgateway.selector in the inferwatch config; regenerate the rules after "
            f"changing it).")


# (model, errors in CALLS, declared in code, {from_code: the SLO the alert judges by, as its
# description words it, or None where the alert stays quiet}).
GROUPS: list[tuple[str, int, float | None, dict[bool, str | None]]] = [
    # Declares 90%: 5% of a run is within its budget, beyond the default's 0.1%.
    ("fraud", 500, 0.9, {True: None, False: "99.9%"}),
    # Declares 99.99%: 0.05% is beyond its budget, within the default's.
    ("ranker", 5, 0.9999, {True: "99.99%", False: None}),
    # Declares nothing: the default, either way.
    ("churn", 50, None, {True: "99.9%", False: "99.9%"}),
    # Its models: entry says 99%, its code 90%: the code wins under from_code.
    ("batch-eta", 500, 0.9, {True: None, False: "99%"}),
    # Declares what instrument() would refuse (a percentage written by an older client):
    # left out, so the config's 99% judges it rather than no budget at all.
    ("batch-ads", 500, 99.0, {True: "99%", False: "99%"}),
]


@pytest.mark.parametrize("from_code", [True, False], ids=["from_code", "config_only"])
def test_a_pushed_model_is_judged_by_the_availability_it_declares_in_code(
        tmp_path: Path, from_code: bool) -> None:
    cfg = from_dict({"objectives": {"from_code": from_code}, "models": MODELS})
    series, expected = [], []
    for model, errors, declared, judged in GROUPS:
        series += _pushed("nightly", model, errors, declared)
        slo = judged[from_code]
        if slo is not None:
            expected.append({"exp_labels": {"severity": "critical", "job": "nightly",
                                            "model": model},
                             "exp_annotations": {"description": _description(
                                 "nightly", model, errors, slo)}})
    rules = write_generated_rules(cfg, tmp_path)
    _assert_alerts(tmp_path, series, rules, expected)


@pytest.mark.parametrize("declares", [None, 0.9999], ids=["nothing", "stricter"])
def test_a_shadow_takes_no_part_in_its_models_objective(tmp_path: Path,
                                                        declares: float | None) -> None:
    """The serving version declares 90%, a shadow beside it nothing or 99.99%: the run is
    judged by the serving version's 90% alone, as the model-wide objective leaves shadows
    out (a challenger's objective is not its model's)."""
    cfg = from_dict({"objectives": {"from_code": True}})
    series = _pushed("nightly", "fraud", 500, 0.9, shadow=Shadow(declares))
    _assert_alerts(tmp_path, series, write_generated_rules(cfg, tmp_path), [])


def test_a_versions_laxer_declaration_does_not_loosen_one_that_declares_nothing(
        tmp_path: Path) -> None:
    """One run served two versions, 3 declaring 90% and 4 nothing; another job's run of the
    same model declares 99%: the model is held to the strictest, the default's 99.9%, as
    the model-wide objective holds a model to its serving versions' strictest."""
    cfg = from_dict({"objectives": {"from_code": True}})
    series = [*_pushed("nightly", "fraud", 250, 0.9),
              *_pushed("nightly", "fraud", 250, version="4", push_time=False),
              *_pushed("hourly", "fraud", 0, 0.99)]
    expected = [{"exp_labels": {"severity": "critical", "job": "nightly", "model": "fraud"},
                 "exp_annotations": {"description": _description("nightly", "fraud", 250,
                                                                 "99.9%")}}]
    _assert_alerts(tmp_path, series, write_generated_rules(cfg, tmp_path), expected)


def test_a_version_that_served_nothing_in_the_run_takes_no_part(tmp_path: Path) -> None:
    """Version 3 served the run and declares 90%; version 4, instrumented but never called,
    declares nothing, or 99.99%: the run is judged by version 3's objective alone."""
    cfg = from_dict({"objectives": {"from_code": True}})
    idle = [entry for declares in (None, 0.9999)
            for entry in _pushed("nightly", "fraud", 0, declares,
                                 version=f"4-{declares}", push_time=False)
            if "outcome=\"error\"" not in entry["series"]]
    for entry in idle:
        if "requests_total" in entry["series"]:
            entry["values"] = "0x15"
    series = [*_pushed("nightly", "fraud", 500, 0.9), *idle]
    _assert_alerts(tmp_path, series, write_generated_rules(cfg, tmp_path), [])


def test_only_pushed_groups_declare_for_the_batch_alert(tmp_path: Path) -> None:
    """A scraped service's declaration (no push_time_seconds for its job) is not a batch
    job's: the pushed run of the same model keeps the default."""
    cfg = from_dict({"objectives": {"from_code": True}})
    scraped = {"job": "inferwatch-model", "instance": "m1:8000", "model": "fraud",
               "model_version": "3"}
    series = [*_pushed("nightly", "fraud", 500),
              {"series": f"inferwatch_model_info{{{_labels(**scraped)}}}", "values": "1x15"},
              {"series": "inferwatch_model_objective{"
                         f"{_labels(**scraped, objective='slo.availability')}}}",
               "values": "0.9x15"}]
    expected = [{"exp_labels": {"severity": "critical", "job": "nightly", "model": "fraud"},
                 "exp_annotations": {"description": _description("nightly", "fraud", 500,
                                                                 "99.9%")}}]
    _assert_alerts(tmp_path, series, write_generated_rules(cfg, tmp_path), expected)


def _assert_alerts(directory: Path, series: list[dict[str, str]], rules: list[str],
                   expected: list[dict[str, Any]]) -> None:
    """The alert at 10m fires for exactly `expected`: their labels and descriptions, with
    the annotations every case shares filled in."""
    cfg_links = from_dict({})
    for alert in expected:
        alert["exp_annotations"] = {
            "summary": f"The last run of {alert['exp_labels']['job']} failed for model "
                       f"{alert['exp_labels']['model']}",
            **alert["exp_annotations"],
            "runbook_url": cfg_links.links.runbook_url.format(anchor=ALERT.lower()),
            "dashboard_url": _dashboard_url()}
    assert_promtool_passes(directory, series, rule_files=rules, alerts=[
        {"eval_time": "10m", "alertname": ALERT, "exp_alerts": expected}])


def _dashboard_url() -> str:
    from inferwatch.generate.dashboards_overview import model_overview
    from inferwatch.generate.rules_pushed import BATCH_RUNS_PANEL

    cfg = from_dict({})
    [panel_id] = [p["id"] for p in model_overview(cfg)["panels"]
                  if p["title"] == BATCH_RUNS_PANEL]
    return (f"{cfg.links.grafana_url.rstrip('/')}/d/{cfg.dashboards.uid_prefix}-overview"
            f"?viewPanel={panel_id}")


# --- a real batch job, Pushgateway and Prometheus ---------------------------------------------


def _run(address: str, failing: int, declared: float) -> None:
    """One nightly run of 1000 calls in a fresh registry, `failing` of them raising, its
    model declaring `declared` availability in code."""
    registry = Registry(drain_interval=3600)
    try:
        def score(row: float) -> float:
            if row < 0:
                raise ValueError("negative amount")
            return 0.5

        model = inferwatch.instrument(score, name="fraud", version="3", registry=registry,
                                      objectives={"availability": declared})
        with inferwatch.push.on_exit(address, job="nightly", registry=registry):
            for i in range(1000):
                with contextlib.suppress(ValueError):  # a row the job skips
                    model(-1.0 if i < failing else 1.0)
    finally:
        registry.close()


def _rule_files(directory: Path, from_code: bool) -> list[str]:
    cfg = from_dict({"objectives": {"from_code": from_code}, "alerts": {ALERT: {"for": "0s"}}})
    names = write_generated_rules(cfg, directory, ("recording-rules.yml", "alerting-rules.yml"))
    return [str(directory / name) for name in names]


def _evaluated_after(server: Prometheus, since: float, timeout: float = 60.0) -> None:
    """Waits until the rule group of the alert has been evaluated after `since` (unix time)."""
    deadline = time.monotonic() + timeout
    while True:
        evaluated = [group["lastEvaluation"] for group in server.api("rules")["groups"]
                     if any(rule.get("name") == ALERT for rule in group["rules"])]
        if evaluated and all(_unix(at) > since for at in evaluated):
            return
        assert time.monotonic() < deadline, f"no evaluation of {ALERT} after {since}"
        time.sleep(0.2)


def _unix(rfc3339: str) -> float:
    # Prometheus writes nanoseconds, which fromisoformat (3.11) does not read.
    seconds, _, fraction = rfc3339.rstrip("Z").partition(".")
    whole = datetime.datetime.fromisoformat(seconds).replace(tzinfo=datetime.timezone.utc)
    return whole.timestamp() + float(f"0.{fraction or 0}")


@pytest.mark.integration
@pytest.mark.parametrize("from_code", [True, False], ids=["from_code", "config_only"])
def test_a_real_batch_job_is_judged_by_its_declared_availability(
        tmp_path: Path, gateway: Gateway, from_code: bool) -> None:  # noqa: F811
    """A run failing 5% of its calls, its model declaring 90%: quiet under from_code, a
    page without it (the config's 99.9%). The next run fails 0.1%, its model declaring
    99.99%: a page under from_code, within the config's budget without it."""
    alerts = f'ALERTS{{alertname="{ALERT}", alertstate="firing", job="nightly", model="fraud"}}'
    with prometheus(tmp_path, [gateway.address], job_name="pushgateway", honor_labels=True,
                    rule_files=_rule_files(tmp_path, from_code)) as server:
        _run(gateway.address, failing=50, declared=0.9)
        server.wait_for('inferwatch_requests_total{job="nightly", outcome="error"} == 50 '
                        'and on (job, model) inferwatch_model_objective{job="nightly", '
                        'objective="slo.availability"} == 0.9')
        if from_code:
            _evaluated_after(server, time.time())  # the run scraped, then judged
            assert not server.query(alerts)
        else:
            server.wait_for(alerts, timeout=60)
        _run(gateway.address, failing=1, declared=0.9999)
        server.wait_for('inferwatch_requests_total{job="nightly", outcome="error"} == 1 '
                        'and on (job, model) inferwatch_model_objective{job="nightly", '
                        'objective="slo.availability"} == 0.9999')
        if from_code:
            [alert] = server.wait_for(alerts, timeout=60)
            assert alert["metric"]["severity"] == "critical"
        else:
            _gone(server, alerts)


def test_the_overviews_batch_panel_shows_the_declared_budget(tmp_path: Path) -> None:
    """The overview's panel of the pushed groups judges each run as the alert does: its
    error budget is the one the model declares in code, and its verdict the alert's."""
    from inferwatch.generate.dashboards_overview import model_overview
    from inferwatch.generate.rules_pushed import BATCH_RUNS_PANEL
    from test_generated_rules_and_panels import _selected

    cfg = from_dict({"objectives": {"from_code": True}})
    [panel] = [p for p in model_overview(cfg)["panels"] if p["title"] == BATCH_RUNS_PANEL]
    names = next(t["options"]["renameByName"] for t in panel["transformations"]
                 if t["id"] == "organize")
    column = {names[f"Value #{query['refId']}"]: _selected(query["expr"], model=".*")
              for query in panel["targets"]}
    series = [*_pushed("nightly", "fraud", 500, 0.9), *_pushed("nightly", "churn", 50)]

    def samples(**values: float) -> list[dict[str, Any]]:
        return [{"labels": f'{{job="nightly", model="{model}"}}', "value": value}
                for model, value in values.items()]

    assert_promtool_passes(tmp_path, series, rule_files=write_generated_rules(cfg, tmp_path),
                           exprs=[{"expr": column["error budget"], "eval_time": "10m",
                                   "exp_samples": samples(fraud=1 - 0.9, churn=1 - 0.999)},
                                  {"expr": column["failed"], "eval_time": "10m",
                                   "exp_samples": samples(fraud=0, churn=1)}])
