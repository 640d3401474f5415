"""InferwatchBatchRunFailed judges each pushed model by its own `slo.availability`.

A pushed group has no inferwatch_model_info under selectors.model, so the alert cannot read
the objective recording rule's regex and default terms: it must still give a lax model its
larger budget, a strict one its smaller, and every other model the default, the first
matching models: entry winning, and say in its description which objective it judged by.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.generate import rules
from inferwatch.generate.config import DEFAULT, from_dict
from inferwatch.generate.config_schema import ConfigError
from inferwatch.generate.dashboards_overview import model_overview
from inferwatch.generate.promql import percent
from inferwatch.generate.rules_alerts import ALERTS
from inferwatch.generate.rules_pushed import BATCH_RUNS_PANEL
from promtool_cases import assert_promtool_passes, write_generated_rules

ALERT = "InferwatchBatchRunFailed"
BATCH_RUN_FAILED = next(alert for alert in ALERTS if alert.name == ALERT)
CALLS = 1_000_000
# Budgets whose double and half are exact enough for humanizePercentage's four digits.
AVAILABILITIES = [0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999]
# A regex whose text and whose model both hold what a Go template or PromQL string must
# escape: a quote, a backslash, a template's own braces.
ODD_REGEX, ODD_MODEL = 'q"u\\\\o\\{\\{te-.*', 'q"u\\o{{te-a'

_names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                 max_size=12).filter(lambda n: n.strip() and not set(n) & set(".^$*+?{}[]\\|()"))


def _description(job: str, model: str, ratio: float, availability: float) -> str:
    return (f"The last run of batch job {job} pushed {ratio * 100:.4g}% of model {model}'s "
            f"calls as errors, more than the whole error budget of the "
            f"{percent(availability)}% availability SLO (slo.availability): the job failed, "
            f"or its model did. It holds until a run pushes fewer errors. Reads series "
            f'matching {{job!=""}} (pushgateway.selector in the inferwatch config; '
            f"regenerate the rules after changing it).")


def _pushed(job: str, model: str, errors: int) -> list[dict[str, str]]:
    def labels(**extra: str) -> str:
        pairs = {"job": job, "model": model, **extra}
        return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in pairs.items())

    return [
        {"series": f"push_time_seconds{{{labels()}}}", "values": "0x15"},
        {"series": f"inferwatch_requests_total{{{labels(model_version='1', outcome='ok')}}}",
         "values": f"{CALLS - errors}x15"},
        {"series": f"inferwatch_requests_total{{{labels(model_version='1', outcome='error')}}}",
         "values": f"{errors}x15"},
    ]


def _expected_alert(cfg: Any, job: str, model: str, errors: int, availability: float,
                    severity: str = "critical", override: str | None = None) -> dict[str, Any]:
    labels = {"severity": severity, "job": job, "model": model}
    if override is not None:
        labels["model_override"] = override
    # The overview's panel of the pushed groups, alone: the Model variable lists only the
    # scraped services' models, which a batch job's need not be.
    [panel_id] = [p["id"] for p in model_overview(cfg)["panels"]
                  if p["title"] == BATCH_RUNS_PANEL]
    dashboard = (f"{cfg.links.grafana_url.rstrip('/')}/d/{cfg.dashboards.uid_prefix}-overview"
                 f"?viewPanel={panel_id}")
    return {"exp_labels": labels,
            "exp_annotations": {
                "summary": f"The last run of {job} failed for model {model}",
                "description": _description(job, model, errors / CALLS, availability),
                "runbook_url": cfg.links.runbook_url.format(anchor=ALERT.lower()),
                "dashboard_url": dashboard}}


def _own_availability(models: dict[str, Any], model: str) -> float:
    for pattern, entry in models.items():  # the first matching entry, anchored as =~ is
        if re.fullmatch(pattern, model):
            return entry.get("slo", {}).get("availability", DEFAULT.slo.availability)
    return DEFAULT.slo.availability


@settings(max_examples=15, deadline=None)
@given(st.dictionaries(_names, st.sampled_from(AVAILABILITIES), min_size=1, max_size=4),
       st.sampled_from(["", "rest-.*", ODD_REGEX]), st.data())
def test_each_pushed_model_is_judged_by_its_own_availability(
        names: dict[str, float], regex: str, data: st.DataObject) -> None:
    """Any model names: each pushed model fires at twice its own budget, never at half."""
    models: dict[str, Any] = {name: {"slo": {"availability": value}}
                              for name, value in names.items()}
    if regex:
        models[regex] = {"slo": {"availability": 0.95}}
    cfg = from_dict({"models": models})
    pushed = list(dict.fromkeys([*names, "rest-a", ODD_MODEL, "other"]))
    series, expected = [], []
    for model in pushed:
        availability = _own_availability(models, model)
        fires = data.draw(st.booleans(), label=f"fires {model!r}")
        errors = round((1 - availability) * (2 if fires else 0.5) * CALLS)
        series += _pushed("nightly", model, errors)
        if fires:
            expected.append(_expected_alert(cfg, "nightly", model, errors, availability))
    with tempfile.TemporaryDirectory() as directory:
        files = write_generated_rules(cfg, Path(directory))
        assert_promtool_passes(Path(directory), series, rule_files=files, alerts=[
            {"eval_time": "10m", "alertname": ALERT, "exp_alerts": expected}])


def test_a_model_override_of_the_alert_is_its_own_copy(tmp_path: Path) -> None:
    """A models: entry may make a failed batch run of its models a ticket: only theirs."""
    cfg = from_dict({"models": {"batch-.*": {
        "slo": {"availability": 0.99}, "alerts": {ALERT: {"severity": "warning"}}}}})
    default, copy = rules.alert_rules(cfg, BATCH_RUN_FAILED)
    assert copy["labels"] == {"severity": "warning", "model_override": "batch-.*"}
    assert default["labels"] == {"severity": "critical"}
    series = [*_pushed("nightly", "batch-ranker", 20_000), *_pushed("nightly", "churn", 5_000)]
    expected = [
        _expected_alert(cfg, "nightly", "batch-ranker", 20_000, 0.99, "warning", "batch-.*"),
        _expected_alert(cfg, "nightly", "churn", 5_000, 0.999)]
    assert_promtool_passes(tmp_path, series, rule_files=write_generated_rules(cfg, tmp_path),
                           alerts=[{"eval_time": "10m", "alertname": ALERT,
                                    "exp_alerts": expected}])


@pytest.mark.parametrize("models", [{}, {"fraud": {"latency": {"p99_seconds": 0.05}}}])
def test_without_an_own_availability_the_budget_is_a_number(models: dict[str, Any]) -> None:
    """No model has its own availability: the rule compares with the default's budget."""
    cfg = from_dict({"models": models})
    (rule,) = rules.alert_rules(cfg, BATCH_RUN_FAILED)[:1]
    assert rule["expr"].endswith(") > (1 - 0.999)"), rule["expr"]
    assert "the 99.9% availability SLO" in rule["annotations"]["description"]


def test_an_alert_override_of_a_non_model_alert_is_still_refused() -> None:
    with pytest.raises(ConfigError, match="is not judged per model"):
        from_dict({"models": {"fraud": {"alerts": {"InferwatchGpuLost": {"for": "1m"}}}}})
