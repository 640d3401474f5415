"""Generated alerting and recording rules on series users really produce, through the real
promtool: GPUs whose driver reserves memory of its own, shadow versions next to the serving
one, and Pushgateway groups whose every push failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from inferwatch.generate.config import DEFAULT
from inferwatch.generate.dashboards_overview import model_overview
from inferwatch.generate.rules_alerts import BATCH_RUNS_PANEL
from test_rules_semantics_edges import promtool_test, quiet

pytestmark = pytest.mark.integration

MODEL = 'job="inferwatch-model", instance="m1:8000"'
EXPORTER = 'job="inferwatch-exporter", instance="n1:9400"'
RUNBOOK = "https://github.com/inferwatch/inferwatch/blob/main/docs/runbooks.md"
GRAFANA = "http://localhost:3000/d/inferwatch-"
READS_MODEL = (' Reads series matching {job="inferwatch-model"} (selectors.model in the '
               "inferwatch config; regenerate the rules after changing it).")
READS_EXPORTER = (' Reads series matching {job="inferwatch-exporter"} (selectors.exporter in '
                  "the inferwatch config; regenerate the rules after changing it).")
READS_PUSHED = (' Reads series matching {job!=""} (pushgateway.selector in the inferwatch '
                "config; regenerate the rules after changing it).")


def annotations(alert: str, dashboard: str, summary: str, description: str) -> dict[str, str]:
    return {"summary": summary, "description": description,
            "runbook_url": f"{RUNBOOK}#{alert.lower()}", "dashboard_url": GRAFANA + dashboard}


def firing(alert: str, eval_time: str, labels: dict[str, str],
           annotation: dict[str, str]) -> list[dict[str, Any]]:
    return [{"eval_time": eval_time, "alertname": alert,
             "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotation}]}]


# --- GPU memory: the driver's reserved memory is not free ----------------------------------

GPU_LABELS = f'{EXPORTER}, gpu="0", uuid="GPU-1"'
# A 16 GB card: 15 GiB installed, 252 MiB of it reserved by the driver and firmware.
TOTAL, RESERVED = 16106127360, 264241152


def _gpu(used: int, reserved: int | None) -> list[tuple[str, str]]:
    series = [(f"inferwatch_gpu_memory_used_bytes{{{GPU_LABELS}}}", f"{used}x20"),
              (f"inferwatch_gpu_memory_total_bytes{{{GPU_LABELS}}}", f"{TOTAL}x20")]
    if reserved is not None:
        series.append((f"inferwatch_gpu_memory_reserved_bytes{{{GPU_LABELS}}}",
                       f"{reserved}x20"))
    return series


def _memory_ratio(value: float) -> list[dict[str, Any]]:
    name = "instance_gpu:inferwatch_gpu_memory_used:ratio"
    return [{"expr": name, "eval_time": "15m",
             "exp_samples": [{"labels": f"{name}{{{GPU_LABELS}}}", "value": value}]}]


def _near_full(threshold: str) -> list[dict[str, Any]]:
    return firing("InferwatchGpuMemoryNearFull", "15m",
                  {"severity": "warning", "job": "inferwatch-exporter", "instance": "n1:9400",
                   "gpu": "0", "uuid": "GPU-1"},
                  annotations("InferwatchGpuMemoryNearFull", "resources",
                              "GPU 0 (GPU-1) on n1:9400 memory is nearly full",
                              f"GPU 0 (GPU-1) on n1:9400 uses 100% of its memory, above "
                              f"{threshold}; the next batch may fail with out of memory."
                              + READS_EXPORTER))


def test_a_gpu_with_nothing_left_to_allocate_reads_full(tmp_path: Path) -> None:
    """NVML v2: everything not reserved is allocated. The GPU is full, and an alert at 0.99
    must fire although `used` alone is 98.4% of the total."""
    promtool_test(tmp_path, {"gpu": {"memory_used_ratio": 0.99}},
                  _gpu(TOTAL - RESERVED, RESERVED), alerts=_near_full("0.99"),
                  exprs=_memory_ratio(1))


def test_gpu_memory_ratio_counts_reserved_memory_as_taken(tmp_path: Path) -> None:
    used = TOTAL // 2
    promtool_test(tmp_path, {}, _gpu(used, RESERVED),
                  alerts=quiet("InferwatchGpuMemoryNearFull", "15m"),
                  exprs=_memory_ratio((used + RESERVED) / TOTAL))


def test_a_v1_driver_without_reserved_series_reads_used_over_total(tmp_path: Path) -> None:
    """Before driver 510 only the v1 answer exists: its `used` already holds the reserved
    memory, and there is no reserved series to add."""
    promtool_test(tmp_path, {"gpu": {"memory_used_ratio": 0.99}}, _gpu(TOTAL, None),
                  alerts=_near_full("0.99"), exprs=_memory_ratio(1))
    promtool_test(tmp_path, {}, _gpu(TOTAL // 2, None),
                  alerts=quiet("InferwatchGpuMemoryNearFull", "15m"), exprs=_memory_ratio(0.5))


# --- shadow versions page through their own alerts only ----------------------------------


def _info(version: str, role: str | None, points: int) -> tuple[str, str]:
    extra = f', role="{role}"' if role else ""
    return (f'inferwatch_model_info{{{MODEL}, model="fraud", model_version="{version}"{extra}}}',
            f"1x{points}")


def test_a_stale_shadow_version_does_not_fire_model_stale(tmp_path: Path) -> None:
    """The shadow is an old version kept for comparison: only the serving version's age
    matters (docs/runbooks.md: "The serving version was trained more than 30d ago")."""
    trained = "inferwatch_model_trained_timestamp_seconds"
    series = [_info("1", "shadow", 70), _info("2", None, 70),
              (f'{trained}{{{MODEL}, model="fraud", model_version="1"}}', "-3000000x70"),
              (f'{trained}{{{MODEL}, model="fraud", model_version="2"}}', "-86400x70"),
              *((f'inferwatch_requests_total{{{MODEL}, model="fraud", model_version="{v}", '
                 f'outcome="ok"}}', "0+10x70") for v in ("1", "2"))]
    promtool_test(tmp_path, {}, series, alerts=quiet("InferwatchModelStale", "65m"))
    # The same old version serving still fires.
    series[0] = _info("1", None, 70)
    promtool_test(tmp_path, {}, series, alerts=firing(
        "InferwatchModelStale", "65m",
        {"severity": "warning", "model": "fraud", "model_version": "1"},
        annotations("InferwatchModelStale", "overview?var-model=fraud", "Model fraud 1 is stale",
                    "fraud 1 was trained 34d 18h 25m 0s ago, longer than the 30d allowed, "
                    "and served calls within the last 15m."
                    + READS_MODEL)))


def _first_item(version: str, slow: bool) -> list[tuple[str, str]]:
    name = "inferwatch_stream_first_item_seconds_bucket"
    labels = f'{MODEL}, model="chat", model_version="{version}"'
    counts = {"0.5": "0x20" if slow else "0+10x20", "1": "0x20" if slow else "0+10x20",
              "2.5": "0+10x20", "+Inf": "0+10x20"}
    return [(f'{name}{{{labels}, le="{le}"}}', values) for le, values in counts.items()]


def test_a_slow_shadow_stream_does_not_fire_first_item_slow(tmp_path: Path) -> None:
    info = [(f'inferwatch_model_info{{{MODEL}, model="chat", model_version="{v}"{role}}}',
             "1x20") for v, role in (("2", ""), ("3", ', role="shadow"'))]
    series = [*info, *_first_item("2", slow=False), *_first_item("3", slow=True)]
    promtool_test(tmp_path, {}, series, alerts=quiet("InferwatchStreamFirstItemSlow", "15m"))
    # The serving version slow as well: it alone fires.
    series = [*info, *_first_item("2", slow=True), *_first_item("3", slow=True)]
    promtool_test(tmp_path, {}, series, alerts=firing(
        "InferwatchStreamFirstItemSlow", "15m",
        {"severity": "warning", "model": "chat", "model_version": "2"},
        annotations("InferwatchStreamFirstItemSlow", "overview?var-model=chat",
                    "Model chat 2 is slow to start its streams",
                    "p99 time to first item of chat 2 streams is 2.485s over 5m, above the "
                    "objective of 1s." + READS_MODEL)))


# --- Pushgateway groups -------------------------------------------------------------------


def _stale_group(description: str) -> list[dict[str, Any]]:
    # The link opens the overview's panel of the pushed groups alone.
    [panel_id] = [p["id"] for p in model_overview(DEFAULT)["panels"]
                  if p["title"] == BATCH_RUNS_PANEL]
    return firing("InferwatchPushgatewayGroupStale", "10m",
                  {"severity": "warning", "job": "scoring", "model": "fraud"},
                  annotations("InferwatchPushgatewayGroupStale",
                              f"overview?viewPanel={panel_id}",
                              "Pushed group scoring fraud is stale", description + READS_PUSHED))


def test_a_group_never_pushed_successfully_says_so(tmp_path: Path) -> None:
    """The Pushgateway keeps a group whose every push failed with push_time_seconds 0: its
    age is the whole epoch, not a last push ~56 years ago."""
    series = [('push_time_seconds{job="scoring", model="fraud"}', "0x20"),
              ('push_failure_time_seconds{job="scoring", model="fraud"}', "60x20")]
    # promtool's clock starts at 0, so a short max_age makes the group stale within the test.
    promtool_test(tmp_path, {"pushgateway": {"max_age": "1m"}}, series, alerts=_stale_group(
        "The group scoring fraud was never pushed to the Pushgateway successfully (default "
        "1m): the batch job stopped running or cannot push."))


def test_a_group_pushed_long_ago_still_says_when(tmp_path: Path) -> None:
    series = [('push_time_seconds{job="scoring", model="fraud"}', "-172800x20")]
    promtool_test(tmp_path, {}, series, alerts=_stale_group(
        "The group scoring fraud was last pushed to the Pushgateway 2d 0h 10m 0s ago, longer "
        "than its job's expected period (default 1d): the batch job stopped running or cannot "
        "push."))
