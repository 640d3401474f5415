"""Dashboard panels that must count what they say, judged by real promtool on the committed
dashboards' queries: a heatmap of one model's one output without its shadow, confusion
counts and differences kept apart by challenger pair, a cost per 1,000 calls that adds up to
the CPU used, a batch size never drawn below its mean; and descriptions that say what the
panels draw."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from e2e_dashboards import panels, substitute
from promtool_cases import assert_promtool_passes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
BUILTINS = {"__rate_interval": "2m", "__interval": "1m", "__range": "10m", "job": ".*",
            "instance": ".*", "model": ".*", "model_version": ".*", "exporter_instance": ".*",
            "output": ".*"}
MODEL_JOB = 'job="inferwatch-model", instance="m:9"'
EXPORTER_JOB = 'job="inferwatch-exporter"'


def _panel(dashboard: str, title: str) -> dict[str, Any]:
    data = json.loads((ROOT / "dashboards" / f"{dashboard}.json").read_text())
    return next(p for p in panels(data) if p.get("title", "").startswith(title))


def _expr(dashboard: str, title: str, index: int = 0, **values: str) -> str:
    return substitute(_panel(dashboard, title)["targets"][index]["expr"],
                      {**BUILTINS, **values})


def _series(metric: str, values: str, **labels: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{MODEL_JOB}, {inner}}}", "values": values}


def _info(model: str, version: str, role: str) -> dict[str, str]:
    return _series("inferwatch_model_info", "1x20", model=model, model_version=version,
                   role=role, framework="sklearn", task="classification")


def _check(expr: str, expected: list[tuple[dict[str, str], float]]) -> dict[str, Any]:
    """`expr` at 10m, expected to give each set of labels its value."""
    return {"expr": expr, "eval_time": "10m", "exp_samples": [
        {"labels": "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}",
         "value": value} for labels, value in expected]}


BOUNDS = ("0.25", "0.5", "0.75", "1.0", "+Inf")


def _histogram(metric: str, per_minute: int, low_from: str, **labels: str
               ) -> list[dict[str, str]]:
    """`per_minute` observations a minute, all in the bucket whose upper bound is
    `low_from` (so every bucket from it up counts them all)."""
    first = BOUNDS.index(low_from)
    return [_series(f"{metric}_bucket", f"0+{per_minute if i >= first else 0}x20", le=le,
                    **labels) for i, le in enumerate(BOUNDS)]


def _buckets(counts: dict[str, float]) -> list[tuple[dict[str, str], float]]:
    return [({"le": le}, value) for le, value in counts.items()]


def test_prediction_distribution_is_one_models_one_output_without_its_shadow(
        tmp_path: Path) -> None:
    """fraud 1.0 answers 60 rows a minute, p(fraud) low and p(legit) high; its shadow 1.1-rc
    predicts as many, and churn answers 30 of its own. The heatmap of fraud's p(fraud) holds
    fraud 1.0's 120 rows over 2m in the 0.25 bucket, nothing of p(legit), the shadow or churn
    (the sum of every series drew 390 rows, symmetric about 0.5)."""
    metric = "inferwatch_prediction_value"
    series = [_info("fraud", "1.0", "primary"), _info("fraud", "1.1-rc", "shadow"),
              _info("churn", "1", "primary")]
    for version in ("1.0", "1.1-rc"):
        series += _histogram(metric, 60, "0.25", model="fraud", model_version=version,
                             output="fraud")
        series += _histogram(metric, 60, "1.0", model="fraud", model_version=version,
                             output="legit")
    series += _histogram(metric, 30, "0.5", model="churn", model_version="1", output="fraud")
    panel = _panel("model-quality", "Prediction distribution")
    expr = substitute(panel["targets"][0]["expr"], {**BUILTINS, "model": "fraud",
                                                    "output": "fraud"})
    churn = substitute(panel["targets"][0]["expr"], {**BUILTINS, "model": "churn",
                                                     "output": "fraud"})
    assert_promtool_passes(tmp_path, series, exprs=[
        _check(expr, _buckets({le: 120 for le in BOUNDS})),
        _check(churn, _buckets({"0.25": 0, "0.5": 60, "0.75": 60, "1.0": 60, "+Inf": 60}))])
    # One heatmap per selected model: Model at All draws each apart.
    assert panel.get("repeat") == "model"


def _pair(model: str, version: str = "2-rc", champion: str = "1") -> dict[str, str]:
    return {"model": model, "model_version": version, "champion_version": champion}


def test_confusion_and_differences_never_add_two_challenger_pairs(tmp_path: Path) -> None:
    """Two models' challengers name their classes alike: their confusion counts share no
    cell, and the difference heatmap draws one pair's one output or nothing."""
    confusion = "inferwatch_shadow_confusion_total"
    series = [
        _series(confusion, "0+6x20", **_pair("fraud"), champion_class="legit",
                shadow_class="legit"),
        _series(confusion, "0+1x20", **_pair("churn"), champion_class="legit",
                shadow_class="legit"),
        _series(confusion, "0+2x20", **_pair("churn"), champion_class="fraud",
                shadow_class="legit"),
    ]
    metric = "inferwatch_shadow_difference"
    series += _histogram(metric, 60, "0.25", **_pair("fraud"), output="fraud")
    series += _histogram(metric, 60, "1.0", **_pair("fraud"), output="legit")
    series += _histogram(metric, 30, "0.5", **_pair("churn"), output="fraud")
    matrix = _expr("champion-challenger", "Confusion")
    everything = _expr("champion-challenger", "Difference distribution", output="fraud")
    fraud = _expr("champion-challenger", "Difference distribution", model="fraud",
                  output="fraud")

    def row(text: str, shadow: str) -> dict[str, str]:
        return {"champion_class": text, "shadow_class": shadow}

    assert_promtool_passes(tmp_path, series, exprs=[
        _check(matrix, [(row("fraud 2-rc vs 1: legit", "legit"), 60),
                        (row("churn 2-rc vs 1: legit", "legit"), 10),
                        (row("churn 2-rc vs 1: fraud", "legit"), 20)]),
        _check(everything, []),
        _check(fraud, _buckets({le: 120 for le in BOUNDS}))])


def test_cost_per_1000_calls_adds_up_to_the_cpu_used(tmp_path: Path) -> None:
    """Two exporter instances use 1 and 0.5 CPU seconds a second; fraud serves 10 calls a
    second (its shadow 10 more, nobody's), churn 30. The lines, times the 40 calls a
    second, give back the 1.5 CPU seconds (one line per model charged each all of it)."""
    series = [_info("fraud", "1.0", "primary"), _info("fraud", "1.1-rc", "shadow"),
              _info("churn", "1", "primary")]
    for version, per_minute in (("1.0", 600), ("1.1-rc", 600)):
        series.append(_series("inferwatch_requests_total", f"0+{per_minute}x20", model="fraud",
                              model_version=version, outcome="ok"))
    series.append(_series("inferwatch_requests_total", "0+1800x20", model="churn",
                          model_version="1", outcome="ok"))
    for instance, per_minute in (("e1:9", 60), ("e2:9", 30)):
        series.append({"series": f'inferwatch_process_cpu_seconds_total{{{EXPORTER_JOB}, '
                                 f'instance="{instance}", process="app", pid="1"}}',
                       "values": f"0+{per_minute}x20"})
    assert_promtool_passes(tmp_path, series, exprs=[
        _check(_expr("resources", "CPU seconds per 1,000 predictions"),
               [({"instance": "e1:9"}, 25), ({"instance": "e2:9"}, 12.5)])])
    # Stacked, so the top of the stack is the whole cost.
    cpu = _panel("resources", "CPU seconds per 1,000 predictions")
    assert cpu["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"


def test_batch_size_is_never_drawn_below_its_mean(tmp_path: Path) -> None:
    """Every call of eta 1 has one row, every call of eta 2 three: the second line is the
    bound of the bucket holding the largest call, 1 and 4 (a p99 drew 0.99 under a mean
    of 1)."""
    series = [_info("eta", "1", "primary"), _info("eta", "2", "primary")]
    for version, rows, bounds in (("1", 1, ("1", "2", "4", "+Inf")),
                                  ("2", 3, ("4", "+Inf"))):
        labels = {"model": "eta", "model_version": version}
        series += [_series("inferwatch_batch_size_bucket", "0+60x20", le=le, **labels)
                   for le in bounds]
        series += [_series("inferwatch_batch_size_sum", f"0+{60 * rows}x20", **labels),
                   _series("inferwatch_batch_size_count", "0+60x20", **labels)]
    series += [_series("inferwatch_batch_size_bucket", "0x20", le=le, model="eta",
                       model_version="2") for le in ("1", "2")]
    v1, v2 = {"model": "eta", "model_version": "1"}, {"model": "eta", "model_version": "2"}
    assert_promtool_passes(tmp_path, series, exprs=[
        _check(_expr("model-overview", "Batch size", 0), [(v1, 1), (v2, 3)]),
        _check(_expr("model-overview", "Batch size", 1), [(v1, 1), (v2, 4)])])


def _families(expr: str) -> set[str]:
    return {re.sub(r"_(bucket|sum|count)$", "", m)
            for m in re.findall(r"\b(inferwatch_\w+)\{", expr)} - {"inferwatch_model_info"}


def test_overview_sends_the_reader_only_where_the_shadow_is_drawn() -> None:
    """An overview panel that says the Champion vs challenger dashboard draws the shadow's
    signal reads only metric families that dashboard draws too."""
    data = json.loads((ROOT / "dashboards" / "champion-challenger.json").read_text())
    drawn = set().union(*(_families(t["expr"]) for p in panels(data)
                          for t in p.get("targets", [])))
    overview = json.loads((ROOT / "dashboards" / "model-overview.json").read_text())
    claiming = [p for p in panels(overview)
                if "Champion vs challenger dashboard draws" in p.get("description", "")]
    assert claiming
    for panel in claiming:
        used = set().union(*(_families(t["expr"]) for t in panel["targets"]))
        assert used <= drawn, f"{panel['title']}: {sorted(used - drawn)}"


@pytest.mark.parametrize(("dashboard", "title"), [
    ("model-quality", "Invalid predictions by reason"),
    ("champion-challenger", "Shared outcomes by result")])
def test_rates_are_drawn_per_second(dashboard: str, title: str) -> None:
    panel = _panel(dashboard, title)
    assert panel["fieldConfig"]["defaults"]["unit"] == "cps"
    assert "per second" in panel["description"]
    assert "Where the two differ: right / wrong" not in panel["description"]
