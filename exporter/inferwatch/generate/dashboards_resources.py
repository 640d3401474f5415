"""The resources dashboard: GPU devices, serving processes, exporter health and cost.

The one dashboard on the exporter's own series, with the exporter instance variable.
"""

from __future__ import annotations

from typing import Any

from inferwatch.generate import promql as q
from inferwatch.generate.config_schema import Config
from inferwatch.generate.dashboards_frame import dashboard
from inferwatch.generate.dashboards_queries import (
    INSTANCE,
    JOB,
    RATE,
    raw_sel,
    without_shadows,
)
from inferwatch.generate.panels import (
    Cell,
    state_timeline,
    table,
    target,
    timeseries,
    up_down_mappings,
)
from inferwatch.generate.promql import exporter_sel, model_sel


def _exp(cfg: Config) -> str:
    return exporter_sel(cfg, 'instance=~"$exporter_instance"')


_MIG_NOTE = "A MIG device shows as gpu/gpu instance/compute instance."
_COST_NOTE = ("Stacked, one line per exporter instance: the top is the whole cost per 1,000 "
              "calls. An exporter sees processes, not models: for one model's cost, select "
              "that model and the exporters beside its serving processes.")


def _mig(cfg: Config, metric: str) -> str:
    """GPU memory series with a `device` label naming the GPU, or its MIG device.

    A MIG-enabled GPU has memory series of its own and one per MIG device, told apart only by
    gpu_instance and compute_instance: a legend of the GPU index alone draws them all under
    one name, and a legend naming those labels prints their names for a whole GPU (Grafana
    writes a missing label's name). So each kind gets a `device` label of its own.

    >>> from inferwatch.generate.config import DEFAULT
    >>> print(_mig(DEFAULT, "m"))  # doctest: +NORMALIZE_WHITESPACE
    label_join(m{job="inferwatch-exporter", instance=~"$exporter_instance", gpu_instance=""},
               "device", "", "gpu")
    or label_join(m{job="inferwatch-exporter", instance=~"$exporter_instance",
                    gpu_instance!=""}, "device", "/", "gpu", "gpu_instance", "compute_instance")
    """
    def of(kind: str) -> str:
        return metric + exporter_sel(cfg, 'instance=~"$exporter_instance"', kind)
    whole, mig = of('gpu_instance=""'), of('gpu_instance!=""')
    return (f'label_join({whole}, "device", "", "gpu")\n'
            f'or label_join({mig}, "device", "/", "gpu", "gpu_instance", "compute_instance")')


def resources(cfg: Config) -> dict[str, Any]:
    """GPU devices, serving processes, exporter health and cost per prediction."""
    e, raw = _exp(cfg), raw_sel(cfg)
    gpu = "{{instance}} gpu {{gpu}}"
    memory = "{{instance}} gpu {{device}}"
    # Predictions someone asked for: a shadow's calls are the cost of its champion's.
    calls = without_shadows(cfg, f"rate(inferwatch_requests_total{raw}[{RATE}])")
    # Per exporter instance, over all the selected models' calls: the exporter measures
    # processes, not models, and a share of the CPU by each model's calls gives every model
    # the same figure, while one figure per model charged every model all of it.
    per_call = f"on () group_left sum({calls})"
    devices = [
        Cell(state_timeline("GPU up", [target(f"inferwatch_gpu_up{e}", gpu)],
                            "Red: the device is lost or unreadable.", up_down_mappings()), 12, 6),
        Cell(table("GPUs", [target(f"inferwatch_gpu_info{e}", instant=True, fmt="table")],
                   "Name, driver and uuid of each device.", hide=("Time", "Value", "__name__")),
             12, 6),
        Cell(timeseries("GPU utilization", [target(f"inferwatch_gpu_utilization_ratio{e}", gpu)],
                        "percentunit", "Share of time a kernel ran. NVML reports none for a "
                        "MIG-enabled GPU, so such a GPU has no line here.", max_value=1)),
        Cell(timeseries("GPU memory used", [target(_mig(cfg, q.gpu_memory_ratio()), memory)],
                        "percentunit", "Dashed line: InferwatchGpuMemoryNearFull threshold. "
                        f"{_MIG_NOTE}", limit=cfg.gpu.memory_used_ratio, max_value=1)),
        Cell(timeseries("GPU memory", [
            target(_mig(cfg, "inferwatch_gpu_memory_used_bytes"), "used " + memory),
            target(_mig(cfg, "inferwatch_gpu_memory_total_bytes"), "total " + memory)], "bytes",
            _MIG_NOTE)),
        Cell(timeseries("GPU temperature", [target(f"inferwatch_gpu_temperature_celsius{e}",
                                                   gpu)], "celsius",
                        limit=cfg.gpu.temperature_celsius)),
        Cell(timeseries("GPU power", [
            target(f"inferwatch_gpu_power_watts{e}", "draw " + gpu),
            target(f"inferwatch_gpu_power_limit_watts{e}", "limit " + gpu)], "watt")),
        Cell(timeseries("GPU memory busy time", [target(
            f"inferwatch_gpu_memory_utilization_ratio{e}", gpu)], "percentunit",
            "Share of time device memory was being read or written: busy time, not "
            "bandwidth. None for a MIG-enabled GPU.", max_value=1)),
    ]
    process = [
        Cell(timeseries("Process CPU", [target(
            f"rate(inferwatch_process_cpu_seconds_total{e}[{RATE}])",
            "{{instance}} {{process}} {{pid}}")], "short", "CPU cores used.")),
        Cell(timeseries("Process memory", [target(
            f"inferwatch_process_resident_memory_bytes{e}",
            "{{instance}} {{process}} {{pid}}")], "bytes", "Resident set size.")),
    ]
    exporter = [
        Cell(state_timeline("Collector health", [target(
            f"inferwatch_exporter_collector_success{e}", "{{instance}} {{collector}}")],
            "Red: the collector failed its last scrape.", up_down_mappings("ok", "failed"))),
        Cell(timeseries("Collector duration", [target(
            f"inferwatch_exporter_collector_duration_seconds{e}", "{{instance}} {{collector}}")],
            "s")),
        Cell(timeseries("inferwatch internal errors", [target(
            f"sum by (instance, component) (rate(inferwatch_internal_errors_total"
            f"{model_sel(cfg, JOB, INSTANCE)}[{RATE}]))",
            "{{instance}} {{component}}")], "short", "Faults swallowed inside inferwatch, "
            "per second.", limit=cfg.internal.errors_per_second)),
        Cell(timeseries("Label values folded by caps", [target(
            f"sum by (metric) (rate(inferwatch_series_overflow_total"
            f"{model_sel(cfg, JOB, INSTANCE)}[{RATE}]))",
            "{{metric}}")], "short", "Values folded into __other__ by cardinality caps.")),
    ]
    cost = [
        Cell(timeseries("CPU seconds per 1,000 predictions", [target(
            f"1000 * sum by (instance) (rate(inferwatch_process_cpu_seconds_total{e}[{RATE}]))"
            f" / {per_call}", "{{instance}}")], "s",
            f"CPU time of the processes each selected exporter instance watches, per 1,000 "
            f"calls of all the selected models together (a shadow version's calls left out: "
            f"its work is a cost of its champion's). {_COST_NOTE}", stack=True)),
        Cell(timeseries("GPU energy per 1,000 predictions", [target(
            f"1000 * sum by (instance) (rate(inferwatch_gpu_energy_joules_total{e}[{RATE}]))"
            f" / {per_call}", "{{instance}}")], "joule",
            f"Energy of the GPUs of each selected exporter instance, per 1,000 calls of all "
            f"the selected models together (a shadow version's calls left out). {_COST_NOTE}",
            stack=True)),
    ]
    return dashboard(cfg, "resources", "Resources",
                     "GPUs, serving processes, exporter health and the cost of predictions.",
                     [("GPU devices", devices), ("Serving processes", process),
                       ("Exporter and inferwatch health", exporter),
                       ("Cost per prediction", cost)], exporter=True)
