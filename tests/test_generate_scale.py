"""Rendering rules for many model overrides costs work in proportion to the overrides.

Each alert copy used to rebuild every recording rule of its config, and with it the configs
of every override again, so a hundred models reshaping one alert took tens of seconds and a
thousand took hours. Counted in config copies made, never timed.
"""

from __future__ import annotations

from collections import Counter

import pytest
import yaml

from inferwatch.generate import config_schema, render, rule_files, rules
from inferwatch.generate.config import from_dict


def _copies_to_render(models: int, monkeypatch: pytest.MonkeyPatch) -> int:
    cfg = from_dict({"models": {
        f"model-{i}": {"alerts": {"InferwatchLatencyHigh": {"for": f"{i + 11}m"}},
                       "slo": {"fast_burn": {"short_window": f"{300 + i}s"}}}
        for i in range(models)}})
    made = []
    real = config_schema.dataclasses.replace

    def counting(obj, **changes):
        made.append(1)
        return real(obj, **changes)

    monkeypatch.setattr(config_schema.dataclasses, "replace", counting)
    try:
        rules.alerting_groups(cfg)
        rules.recording_groups(cfg)
        rules.baseline_alerting_groups(cfg)
    finally:
        monkeypatch.undo()
    return len(made)


def test_config_copies_grow_in_proportion_to_the_model_overrides(monkeypatch) -> None:
    small, large = (_copies_to_render(n, monkeypatch) for n in (20, 80))
    assert large <= 4.5 * small, (small, large)


def test_a_shaped_copy_keeps_the_scrape_note_of_the_rules_it_reads() -> None:
    cfg = from_dict({"selectors": {"model": 'job="serving"'},
                     "models": {"fraud": {"alerts": {"InferwatchErrorBudgetBurnFast":
                                                     {"for": "9m"}},
                                          "slo": {"fast_burn": {"short_window": "7m"}}}}})
    burn = [r for g in rules.alerting_groups(cfg) for r in g["rules"]
            if r["alert"] == "InferwatchErrorBudgetBurnFast"]
    assert len(burn) == 2
    for rule in burn:
        # the alert reads recorded error ratios; the note follows them to the model selector
        assert 'Reads series matching {job="serving"}' in rule["annotations"]["description"]
    # the copy reads the model's own window, which the recording rules record
    recorded = {r["record"] for g in rules.recording_groups(cfg) for r in g["rules"]}
    assert any("7m" in name for name in recorded)
    assert "7m" in burn[1]["expr"]


def _alert_copies(models: int, groups: int) -> Counter:
    """Alert rules by name in the rendered rule files of ``bench_rules``' config: `models`
    models with objectives of their own, and `groups` regex entries that change the
    accuracy window, the fast burn factor and ``InferwatchLatencyHigh``'s ``for``."""
    from benchmarks.bench_rules import override_config

    files = rule_files(render(override_config(models, groups)))
    return Counter(rule["alert"] for text in files.values()
                   for group in yaml.safe_load(text)["groups"]
                   for rule in group["rules"] if "alert" in rule)


def test_alert_copies_grow_with_the_reshaping_entries_never_with_the_models() -> None:
    """Objectives of a model's own are series the rules join; only an entry that reshapes
    an alert copies it, once per entry and alert that reads what it changes, however many
    models it matches (``bench_rules`` measures the same config on Prometheus)."""
    defaults = _alert_copies(0, 0)
    assert _alert_copies(100, 0) == defaults
    reshaped = _alert_copies(100, 10)
    assert reshaped == _alert_copies(1, 10)
    assert {name: reshaped[name] - defaults[name] for name in reshaped
            if reshaped[name] != defaults[name]} == {
        "InferwatchAccuracyDrop": 10, "InferwatchRegressionErrorRise": 10,
        "InferwatchErrorBudgetBurnFast": 10, "InferwatchLatencyHigh": 10}
