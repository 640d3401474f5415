"""The overview's Versions serving and Replicas per version count a version by its recent
calls, as InferwatchTooManyVersionsServing does: a retired version's inferwatch_model_info
can outlive it (a worker's files kept across a reload, a monitor still registered), its
counters then flat. Judged by real promtool on the committed dashboard's queries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e_dashboards import panels, substitute
from promtool_cases import assert_promtool_passes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
VALUES = {"job": ".*", "instance": ".*", "model": ".*", "model_version": ".*",
          "__rate_interval": "2m", "__interval": "1m", "__range": "1h"}
INFO = ('inferwatch_model_info{{job="inferwatch-model", instance="{i}", model="fraud", '
        'model_version="{v}", framework="sklearn", task="classification", role="{r}"}}')
CALLS = ('inferwatch_requests_total{{job="inferwatch-model", instance="{i}", model="fraud", '
         'model_version="{v}", outcome="ok"}}')


def _targets(title: str) -> list[dict]:
    overview = json.loads((ROOT / "dashboards" / "model-overview.json").read_text())
    return next(p for p in panels(overview) if p.get("title") == title)["targets"]


def test_a_retired_version_with_its_info_left_is_not_serving(tmp_path: Path) -> None:
    # On m1 and m2, 1.0 served until 10m and was replaced by 2.0; its info series stayed
    # (flat counters). 3.0-rc runs as a shadow on m1 and is called all along.
    series = []
    for instance in ("m1", "m2"):
        series += [
            {"series": INFO.format(i=instance, v="1.0", r="primary"), "values": "1x60"},
            {"series": CALLS.format(i=instance, v="1.0"), "values": "0+10x10 100x50"},
            {"series": INFO.format(i=instance, v="2.0", r="primary"), "values": "_x10 1x50"},
            {"series": CALLS.format(i=instance, v="2.0"), "values": "_x10 0+10x50"},
        ]
    series += [{"series": INFO.format(i="m1", v="3.0-rc", r="shadow"), "values": "1x60"},
               {"series": CALLS.format(i="m1", v="3.0-rc"), "values": "0+5x60"}]
    table = _targets("Versions serving")[0]["expr"]
    primary, shadow = (t["expr"] for t in _targets("Replicas per version"))
    row = ('{{framework="sklearn", model="fraud", model_version="{v}", role="{r}", '
           'task="classification"}}')
    assert_promtool_passes(tmp_path, series, exprs=[
        {"expr": substitute(table, VALUES), "eval_time": "50m", "exp_samples": [
            {"labels": row.format(v="2.0", r="primary"), "value": 2},
            {"labels": row.format(v="3.0-rc", r="shadow"), "value": 1}]},
        {"expr": substitute(primary, VALUES), "eval_time": "50m", "exp_samples": [
            {"labels": '{model="fraud", model_version="2.0"}', "value": 2}]},
        {"expr": substitute(shadow, VALUES), "eval_time": "50m", "exp_samples": [
            {"labels": '{model="fraud", model_version="3.0-rc"}', "value": 1}]},
        # Within windows.versions_serving (15m) of its last call, 1.0 still counts: the
        # rollout shows as a handover.
        {"expr": substitute(primary, VALUES), "eval_time": "20m", "exp_samples": [
            {"labels": '{model="fraud", model_version="1.0"}', "value": 2},
            {"labels": '{model="fraud", model_version="2.0"}', "value": 2}]},
    ])
