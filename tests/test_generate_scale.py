"""Rendering rules for many model overrides costs work in proportion to the overrides.

Each alert copy used to rebuild every recording rule of its config, and with it the configs
of every override again, so a hundred models reshaping one alert took tens of seconds and a
thousand took hours. Counted in config copies made, never timed.
"""

from __future__ import annotations

import pytest

from inferwatch.generate import config_schema, rules
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
