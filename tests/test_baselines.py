"""Adaptive baselines: the config section, the generated rules, and promtool runs on a
simulated noisy two days with faults that fixed thresholds miss."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import baseline_simulator as sim
from inferwatch.catalogue import CATALOGUE
from inferwatch.generate import render, rule_files
from inferwatch.generate.baselines import (
    CHECKED_FEATURES,
    SIGNALS,
    calls_name,
    helper_rules,
    recording_rules,
    shadows_name,
    timed_calls_name,
)
from inferwatch.generate.config import DEFAULT, ConfigError, from_dict
from inferwatch.generate.promql import recent_shadow_versions
from inferwatch.generate.rules import baseline_alerting_groups, baseline_recording_groups

ROOT = Path(__file__).resolve().parents[1]
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
HAND_WRITTEN = ROOT / "alerts" / "tests" / "baselines.yml"


def _write_rules(cfg_data: dict, directory: Path) -> list[str]:
    names = []
    for relative, text in rule_files(render(from_dict(cfg_data))).items():
        (directory / Path(relative).name).write_text(text)
        names.append(Path(relative).name)
    return names


def _group_order(directory: Path, names: list[str]) -> list[str]:
    # Recording groups first, so each alert reads what the same evaluation recorded.
    ordered = sorted(names, key=lambda n: ("alerting" in n, n))
    return [g["name"] for name in ordered
            for g in yaml.safe_load((directory / name).read_text())["groups"]]


# --- config ---------------------------------------------------------------------------------


def test_every_signal_has_a_section_with_its_own_floors() -> None:
    sections = {name for name in SIGNALS}
    assert {name for name in vars(DEFAULT.baselines) if not name.startswith("_")} >= sections
    floors = {(getattr(DEFAULT.baselines, name).sigma_floor,
               getattr(DEFAULT.baselines, name).sigma_floor_ratio) for name in sections}
    assert len(floors) > 3, "each unit has its own floor"


@pytest.mark.parametrize(("data", "key"), [
    ({"baselines": {"traffic": {"kk": 3}}}, "baselines.traffic.kk"),
    ({"baselines": {"classes": {"k": -1}}}, "baselines.classes.k"),
    ({"baselines": {"errors": {"enabled": "yes"}}}, "baselines.errors.enabled"),
    ({"baselines": {"latency": {"window": "2d"}}}, "baselines.latency.window"),
    ({"baselines": {"missing": {"min_history": "a day"}}}, "baselines.missing.min_history"),
    ({"baselines": {"evaluation_interval": "10m"}}, "baselines.evaluation_interval"),
    ({"baselines": {"seasonal_offsets": ["20m"]}}, "baselines.seasonal_offsets"),
    ({"baselines": {"prediction_quantiles": ["median"]}}, "baselines.prediction_quantiles"),
    ({"baselines": {"features": [""]}}, "baselines.features"),
    ({"baselines": {"signals": {}}}, "baselines.signals"),
])
def test_bad_baseline_settings_name_their_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        from_dict(data)
    assert error.value.key == key


_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**5), st.floats(),
                    st.text(max_size=6), st.sampled_from(["5m", "1d", "0.5", "3h"]),
                    st.lists(st.sampled_from(["1w", "0.9", "x", ""]), max_size=3))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([*SIGNALS, "evaluation_interval", "seasonal_offsets",
                                        "seasonal_window", "features", "latency_quantiles",
                                        "prediction_quantiles", "k"]),
                       st.one_of(_values, st.dictionaries(
                           st.sampled_from(["enabled", "k", "window", "baseline_window",
                                            "baseline_offset", "min_history", "min_traffic",
                                            "sigma_floor", "sigma_floor_ratio", "for"]),
                           _values, max_size=3)), max_size=3))
def test_any_baselines_section_loads_or_names_a_key(section: dict) -> None:
    try:
        cfg = from_dict({"baselines": section})
    except ConfigError as exc:
        assert exc.key.startswith("baselines")
        return
    assert baseline_recording_groups(cfg) or not any(
        getattr(cfg.baselines, name).enabled for name in SIGNALS)


def test_a_switched_off_signal_has_no_rules_and_no_alert() -> None:
    cfg = from_dict({"baselines": {"classes": {"enabled": False}}})
    records = {name for name, _ in recording_rules(cfg)}
    alerts = {r["alert"] for g in baseline_alerting_groups(cfg) for r in g["rules"]}
    assert not any("inferwatch_baseline_classes" in name for name in records)
    assert "InferwatchClassMixShift" not in alerts
    assert any("inferwatch_baseline_traffic" in name for name in records)
    assert len(alerts) == len(SIGNALS) - 1
    everything_off = from_dict({"baselines": {name: {"enabled": False} for name in SIGNALS}})
    assert baseline_recording_groups(everything_off) == []
    assert baseline_alerting_groups(everything_off) == []


def test_the_feature_allow_list_restricts_per_feature_baselines() -> None:
    cfg = from_dict({"baselines": {"features": ["amount", 'odd "name".*']}})
    exprs = [expr for name, expr in recording_rules(cfg) if name == CHECKED_FEATURES
             or (name.startswith("model_feature:") and name.endswith(":value_10m"))]
    assert len(exprs) == 3
    for expr in exprs:
        assert 'feature=~"amount|odd \\"name\\"\\\\.\\\\*"' in expr
    assert all("feature=~" not in expr for _, expr in recording_rules(DEFAULT))


def test_the_checked_features_are_selected_once_for_both_per_feature_values() -> None:
    # 10,000 gauge series at 100 models x 50 features: recorded first in the group, and
    # read by each per-feature value for its zero-fill, not selected by each again.
    records = dict(recording_rules(DEFAULT))
    assert list(records).index(CHECKED_FEATURES) < min(
        list(records).index(name) for name in records if ":inferwatch_baseline_missing:" in name)
    assert "inferwatch_feature_drift_observations" in records[CHECKED_FEATURES]
    readers = [name for name, expr in records.items() if CHECKED_FEATURES in expr]
    assert readers == ["model_feature:inferwatch_baseline_missing:value_10m",
                       "model_feature:inferwatch_baseline_out_of_range:value_10m"]
    assert [name for name, expr in records.items()
            if "inferwatch_feature_drift" in expr] == [CHECKED_FEATURES]
    for kept in ("missing", "out_of_range"):
        one = from_dict({"baselines": {name: {"enabled": name == kept} for name in SIGNALS}})
        assert CHECKED_FEATURES in dict(recording_rules(one))
    model_level = from_dict({"baselines": {"missing": {"enabled": False},
                                           "out_of_range": {"enabled": False}}})
    assert CHECKED_FEATURES not in dict(recording_rules(model_level))


def test_a_signal_without_its_seasonal_model_records_three_series() -> None:
    cfg = from_dict({"baselines": {"missing": {"seasonal": False}}})
    records = dict(recording_rules(cfg))
    missing = {name.rsplit(":", 1)[1]: expr for name, expr in records.items()
               if ":inferwatch_baseline_missing:" in name}
    assert set(missing) == {"value_10m", "expected", "sigma"}
    # The trailing mean, where the window holds min_coverage of the model's calls per
    # second (36 of 288 values).
    assert missing["expected"] == (
        "avg_over_time(model_feature:inferwatch_baseline_missing:value_10m[1d] offset 3h)\n"
        "and on (model)\ncount_over_time(model:inferwatch_baseline_traffic:value_10m[1d] "
        "offset 3h) >= 36  # min_coverage 0.125 of 1d")
    assert "residual" not in missing["sigma"] and "stddev_over_time(" in missing["sigma"]
    # The other signals keep theirs.
    assert "model_feature:inferwatch_baseline_out_of_range:seasonal" in records
    assert len(recording_rules(cfg)) == len(recording_rules(DEFAULT)) - 2


@pytest.mark.parametrize(("coverage", "needed"), [(0.3, 30), (0.07, 7), (0.001, 1), (1.0, 100)])
@pytest.mark.parametrize("traffic", [True, False])
def test_the_band_needs_min_coverage_of_its_windows_values(coverage: float, needed: int,
                                                           traffic: bool) -> None:
    # 100 values in a 100m window at 1m; 0.07 x 100 is 7.000000000000001 in floats, and
    # asks for 7 values, not 8.
    cfg = from_dict({"baselines": {"evaluation_interval": "1m", "traffic": {"enabled": traffic},
                                   **{key: {"baseline_window": "100m", "min_coverage": coverage}
                                      for key in ("missing", "classes")}}})
    rules = dict(recording_rules(cfg))
    tail = f"[100m] offset 3h) >= {needed}  # min_coverage {coverage:g} of 100m"
    # A model-level signal counts its own values.
    assert rules["model_class:inferwatch_baseline_classes:expected"].endswith(
        "\nand\ncount_over_time(model_class:inferwatch_baseline_classes:value_10m" + tail)
    # Per feature, the model's calls per second where they are recorded: one series per
    # model, not one per feature; its own values where they are not.
    counted = ("on (model)\ncount_over_time(model:inferwatch_baseline_traffic:value_10m"
               if traffic else "\ncount_over_time(model_feature:inferwatch_baseline_missing:"
               "value_10m")
    assert rules["model_feature:inferwatch_baseline_missing:expected"].endswith(
        f"\nand{' ' if traffic else ''}{counted}{tail}")


def test_a_coverage_of_zero_leaves_the_count_out() -> None:
    cfg = from_dict({"baselines": {name: {"min_coverage": 0} for name in SIGNALS}})
    # The seasonal model's look at the residual counts over 10m; no count reads the day.
    day_count = re.compile(r"count_over_time\([^()]*\[1d\]")
    assert not any(day_count.search(expr) for name, expr in recording_rules(cfg)
                   if name.endswith(":expected"))
    assert all("min_coverage" not in expr for _, expr in recording_rules(cfg))


@pytest.mark.parametrize("seasonal", [True, False])
def test_each_rule_reads_each_day_long_statistic_once(seasonal: bool) -> None:
    # PromQL computes an operand as often as it is written, and a statistic over a day reads
    # a day of samples of every series (in persisted blocks about half a second per 5,000
    # series, docs/baselines.md#cost): `mean + seasonal or mean` read the mean twice.
    cfg = from_dict({"baselines": {name: {"seasonal": seasonal} for name in SIGNALS}})
    day_long = re.compile(r"\w+_over_time\([^()\[\]]+\[1d\](?: offset \w+)?\)")
    for name, expr in recording_rules(cfg):
        reads = day_long.findall(expr)
        assert len(reads) == len(set(reads)), (name, reads)
        if name.endswith(":sigma"):
            spec = next(s for s in SIGNALS.values() if f"inferwatch_baseline_{s.key}:" in name)
            # The floor's share reads the expected value once, and twice (a join on the
            # largest) where it scales by the output.
            assert expr.count(":expected") == (2 if spec.scale_by else 1), name
    seasonal_expected = [expr for name, expr in recording_rules(cfg) if name.endswith(
        ":expected")]
    # The trailing mean and the count of the values it averages (min_coverage): two
    # statistics, each read once.
    assert all(sorted(read.split("(")[0] for read in day_long.findall(expr))
               == ["avg_over_time", "count_over_time"] for expr in seasonal_expected)
    # Per feature, one drift score of three beside the observations gauge: each series
    # selected is read at every evaluation, and the values read the selection recorded.
    records = dict(recording_rules(cfg))
    assert 'method=~"psi|"' in records[CHECKED_FEATURES]
    feature_values = [expr for name, expr in records.items()
                      if name.startswith("model_feature:") and ":value_" in name]
    assert len(feature_values) == 2
    assert all(f"0 * {CHECKED_FEATURES}\n" in expr for expr in feature_values)


@pytest.mark.integration
def test_the_hand_written_cases_hold_without_any_seasonal_model(tmp_path: Path) -> None:
    """Every firing and quiet case of alerts/tests/baselines.yml holds with the trailing
    mean alone: the seasonal model refines the band, it is not what catches these faults."""
    rules = tmp_path / "alerts"
    (rules / "tests").mkdir(parents=True)
    _write_rules({"baselines": {name: {"seasonal": False} for name in SIGNALS}}, rules)
    shutil.copy(HAND_WRITTEN, rules / "tests" / HAND_WRITTEN.name)
    result = _promtool(rules / "tests" / HAND_WRITTEN.name)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_baselines_aggregate_versions_away() -> None:
    # A rollout's new version joins the model's baseline; only shadows are left out (by
    # their versions, in `unless on (model, model_version)` of the recorded shadow
    # versions), and never kept as a label.
    windows = {getattr(DEFAULT.baselines, name).window for name in SIGNALS}
    shared = dict(helper_rules(DEFAULT))
    for window in windows:
        assert shared[shadows_name(window)] == recent_shadow_versions(DEFAULT, window)
        calls = " ".join(shared[calls_name(window)].split())
        assert calls.startswith("sum by (model) ( rate(inferwatch_requests_total{"), calls
    for name, expr in recording_rules(DEFAULT):
        if name in shared:
            continue
        flat = " ".join(expr.split())
        for window in windows:
            flat = flat.replace(f"unless on (model, model_version) {shadows_name(window)}", "")
        assert "inferwatch_model_info" not in flat, expr
        assert "inferwatch_baseline_shadows" not in flat, expr
        if name.startswith("model:inferwatch_baseline_latency:value_"):
            # Each version's quantile of its own buckets, weighted by its calls, summed by
            # model on both sides of the division: the versions go no further.
            weight = re.escape(timed_calls_name(DEFAULT.baselines.latency.window))
            assert re.fullmatch(r"\( sum by \(model\) \( histogram_quantile\(.*\)\) \* on "
                                rf"\(model, model_version\) {weight} \) / sum by \(model\) "
                                rf"\({weight}\) \) > -Inf < \+Inf", flat), expr
            assert flat.count("by (model, model_version") == 1, expr
            continue
        kept = re.findall(r"\b(?:by|on) \(([^)]*)\)", flat)
        assert all("model_version" not in labels for labels in kept), expr


# --- the simulator --------------------------------------------------------------------------


def test_the_simulator_writes_only_catalogue_metrics() -> None:
    series = sim.simulate(sim.Model("m"), 3600, 60, seed=1)
    known = {"up"}
    for spec in CATALOGUE.values():
        known |= {spec.name, f"{spec.name}_bucket", f"{spec.name}_sum", f"{spec.name}_count"}
    names = {re.match(r"[a-z_:]+", s).group(0) for s in series}
    assert names <= known
    assert len(names) >= 10
    for values in series.values():
        assert len(values.split()) == 61


def test_the_simulated_traffic_is_diurnal_and_noisy() -> None:
    series = sim.simulate(sim.Model("m"), sim.DAY, 60, seed=3)
    text = next(v for k, v in series.items() if 'outcome="ok"' in k)
    calls = [int(v) for v in text.split()]
    per_hour = [calls[i + 60] - calls[i] for i in range(0, len(calls) - 60, 60)]
    assert max(per_hour) > 3 * min(per_hour)  # a daily cycle
    assert len(set(per_hour)) == len(per_hour)  # Poisson noise


# --- promtool -------------------------------------------------------------------------------


def _promtool(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.integration
def test_a_clean_two_days_stay_quiet_and_each_fault_is_caught_in_time(tmp_path: Path) -> None:
    """Two clean models and two faulty ones over 2 days 6 hours, scraped every minute.

    promtool asserts that nothing fires before the faults start (warm-up included), that no
    alert at all, new or fixed-threshold, fires on the clean models, that no fixed-threshold
    alert fires on the faulty ones either, and that each fault's alert fires within its
    bound. The delays are printed (`pytest -s`; `make bench` prints the same table)."""
    names = _write_rules({}, tmp_path)
    outcome, table = run_simulated_week(tmp_path, names)
    print("\n" + table)
    assert outcome.failures == [], "\n".join(outcome.failures[:10])
    expected = sim.expected_delays(sim.faulty_models(FAULT_START))
    assert set(outcome.delays) == set(expected), outcome.output[-2000:]
    for key, fault in expected.items():
        assert 0 < outcome.delays[key] <= fault.bound, (key, outcome.delays[key])


FAULT_START = sim.DAY + 20 * sim.HOUR
# promtool's own evaluation is slow (about 1 ms a rule); every 10 minutes keeps the run short.
SIMULATED_EVALUATION = "10m"


def run_simulated_week(directory: Path, names: list[str]) -> tuple[sim.Outcome, str]:
    """The simulated run and its detection-delay table (markdown)."""
    models = [sim.Model("clean"), sim.Model("clean-busy", calls_per_second=40, peak_hour=9),
              *sim.faulty_models(FAULT_START)]
    test = sim.scenario(models, 2 * sim.DAY + 6 * sim.HOUR, 60, SIMULATED_EVALUATION, names,
                        _group_order(directory, names))
    outcome = sim.run(test, directory, PROMTOOL)
    rows = ["| fault | alert | detected after | stated bound |", "|---|---|---|---|"]
    for key, fault in sim.expected_delays(models).items():
        delay = outcome.delays.get(key)
        shown = "not caught" if delay is None or delay == float("inf") else f"{delay / 60:.0f} min"
        rows.append(f"| {fault.name} | {fault.alert} | {shown} | {fault.bound / 60:.0f} min |")
    return outcome, "\n".join(rows)


def _mutated_run(tmp_path: Path, data: dict) -> str:
    rules = tmp_path / "alerts"
    (rules / "tests").mkdir(parents=True)
    _write_rules(data, rules)
    shutil.copy(HAND_WRITTEN, rules / "tests" / HAND_WRITTEN.name)
    result = _promtool(rules / "tests" / HAND_WRITTEN.name)
    assert result.returncode != 0, "the baseline tests cannot tell the change apart"
    return result.stdout + result.stderr


@pytest.mark.integration
def test_changing_k_changes_what_promtool_sees(tmp_path: Path) -> None:
    """k 10 widens the traffic band past the drop to 4 calls/s: its firing case fails,
    and no other alert's does."""
    output = _mutated_run(tmp_path, {"baselines": {"traffic": {"k": 10}}})
    assert set(re.findall(r"alertname: (\w+)", output)) == {"InferwatchTrafficAnomaly"}


@pytest.mark.integration
def test_changing_a_window_changes_what_promtool_sees(tmp_path: Path) -> None:
    """A 2h short window averages the jump to 3% missing with the 0.5% before it: 50m after
    the shift the missing-rate alert is still pending, and only that case fails."""
    output = _mutated_run(tmp_path, {"baselines": {"missing": {"window": "2h"}}})
    assert set(re.findall(r"alertname: (\w+)", output)) == {"InferwatchMissingRateAnomaly"}
    assert re.search(r"alertname: InferwatchMissingRateAnomaly, time: 1d1h50m, \n\s+exp:\[\s*0:",
                     output)
    assert "got:[]" in output


# --- dashboards -----------------------------------------------------------------------------


def test_main_dashboards_shade_each_signals_expected_band() -> None:
    import json

    files = render(DEFAULT)
    shaded = {}
    for name in ("dashboards/model-overview.json", "dashboards/model-quality.json"):
        for panel in json.loads(files[name])["panels"]:
            fills = [p for o in panel.get("fieldConfig", {}).get("overrides", [])
                     for p in o["properties"] if p["id"] == "custom.fillBelowTo"]
            if fills:
                exprs = " ".join(t["expr"] for t in panel["targets"])
                shaded[panel["title"]] = exprs
                assert panel["repeat"] == "model"
                assert ":expected" in exprs and ":sigma" in exprs and ":value_10m" in exprs
                assert " - 3 * " in exprs and " + 3 * " in exprs  # both band edges
    signals = {re.search(r":inferwatch_baseline_(\w+):", e).group(1) for e in shaded.values()}
    assert signals == {"traffic", "errors", "latency", "batch_size", "confidence"}
    # Predictions are drawn per output with their own band edges, as classes and features
    # are: one shaded band per model would hide one output leaving its band.
    quality = json.loads(files["dashboards/model-quality.json"])["panels"]
    edged = [p for p in quality if any("inferwatch_baseline_predictions" in t["expr"]
                                       for t in p.get("targets", []))]
    assert len(edged) == 1 and edged[0]["repeat"] == "model"
    assert [t["legendFormat"] for t in edged[0]["targets"]] == [
        "{{output}}", "low {{output}}", "high {{output}}"]
    switched = render(from_dict({"baselines": {"traffic": {"enabled": False}}}))
    assert "inferwatch_baseline_traffic" not in switched["dashboards/model-overview.json"]


def test_a_models_own_for_and_severity_reach_its_baseline_alert_only() -> None:
    cfg = from_dict({"models": {"fraud": {"alerts": {"InferwatchTrafficAnomaly": {
        "for": "2h", "severity": "critical"}}}}})
    rules = [r for g in baseline_alerting_groups(cfg) for r in g["rules"]
             if r["alert"] == "InferwatchTrafficAnomaly"]
    assert [(r["for"], r["labels"]["severity"]) for r in rules] == [("30m", "warning"),
                                                                   ("2h", "critical")]
    # The copy keeps fraud and the default leaves it out, both by the alert's model label.
    assert '"model", "fraud"' in rules[1]["expr"] and '"model", "fraud"' in rules[0]["expr"]
    assert "unless on (model_override)" in rules[1]["expr"]
    assert "and on (model_override)" in rules[0]["expr"]


# --- per-model sensitivity ------------------------------------------------------------------

TOLERANT = "tolerant"


def _two_models_run(tmp_path: Path, ks: dict[str, float]) -> subprocess.CompletedProcess[str]:
    """The hand-written firing case with a second model, `tolerant`, seeing fraud's very
    series; `ks` are tolerant's own k per signal (models: tolerant: baselines: ...). The
    expected alerts stay fraud's alone."""
    data = {"models": {TOLERANT: {"baselines": {key: {"k": k} for key, k in ks.items()}}}}
    rules = tmp_path / "alerts"
    (rules / "tests").mkdir(parents=True)
    names = _write_rules(data, rules)
    test = yaml.safe_load(HAND_WRITTEN.read_text())
    firing = test["tests"][0]
    firing["input_series"] += [
        {**entry, "series": entry["series"].replace('model="fraud"', f'model="{TOLERANT}"')}
        for entry in firing["input_series"] if 'model="fraud"' in entry["series"]]
    test["tests"] = [firing]
    test["rule_files"] = [f"../{name}" for name in names]
    # The objectives first: at promtool's 10m steps the last cycle's would be past lookback.
    order = _group_order(rules, names)
    test["group_eval_order"] = sorted(order, key=lambda group: group != "inferwatch-objectives")
    path = rules / "tests" / "two-models.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    return _promtool(path)


@pytest.mark.integration
def test_each_model_is_judged_by_its_own_k(tmp_path: Path) -> None:
    """Two models, the same series: with a k of 1000 for every signal, tolerant's bands hold
    the shift that pages fraud on all nine signals, and it stays quiet on each."""
    result = _two_models_run(tmp_path, {key: 1000 for key in SIGNALS})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("left_alone", ["traffic", "classes", "missing"])
def test_changing_one_models_k_changes_only_that_model_and_signal(tmp_path: Path,
                                                                  left_alone: str) -> None:
    """Mutation: tolerant keeps the default k for one signal (model-level, per class, per
    feature); exactly that signal's alert now fires for tolerant, and nothing of fraud's
    changes."""
    from test_rules_promtool import _failing_alerts

    result = _two_models_run(tmp_path, {key: 1000 for key in SIGNALS if key != left_alone})
    assert result.returncode != 0, "the two-model case cannot tell tolerant's k apart"
    failing = _failing_alerts(result.stdout + result.stderr)
    assert failing == {(SIGNALS[left_alone].alert, TOLERANT)}, failing
