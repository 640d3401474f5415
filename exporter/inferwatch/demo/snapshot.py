"""Pictures of the committed dashboards, filled from a live demo, for the README.

``python -m inferwatch.demo.snapshot --out docs/images`` (or ``make pictures``) starts two
demo model replicas, the exporter and Prometheus with the generated rules, plays clean
traffic and then an incident (errors, drift, malformed requests), runs every panel query as
Grafana would with every variable at All, and writes one SVG per dashboard
(:mod:`inferwatch.demo.picture`). Needs the ``prometheus`` binary; takes about five minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from inferwatch.demo.picture import Series, svg

HOST = "127.0.0.1"
RATE_INTERVAL = "30s"  # what Grafana's $__rate_interval is at a 1 s scrape and this range
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_EXACT_VARIABLE = re.compile(r'(\w+)="\$(\w+)"')
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def grafana_expr(expr: str, range_seconds: int, step: int) -> str:
    """A panel query with Grafana's variables resolved: every selection at All. A
    single-value variable matched exactly (``output="$output"``) reads every value too, so
    that a picture shows every output rather than one picked at random.

    >>> grafana_expr('rate(x{job=~"$job"}[$__rate_interval])', 60, 2)
    'rate(x{job=~".*"}[30s])'
    >>> grafana_expr('x{output="$output"}', 60, 2)
    'x{output=~".*"}'
    """
    builtins = {"__rate_interval": RATE_INTERVAL, "__interval": f"{step}s",
                "__range": f"{range_seconds}s"}
    expr = _EXACT_VARIABLE.sub(r'\1=~"$\2"', expr)
    return _VARIABLE.sub(lambda m: builtins.get(m.group(1) or m.group(2), ".*"), expr)


def legend(template: str, labels: dict[str, str]) -> str:
    """A series' legend from its panel's legendFormat (all labels when there is none).

    >>> legend("{{model}} p99", {"model": "fraud"}), legend("", {"a": "1", "b": "2"})
    ('fraud p99', '1 2')
    """
    if not template:
        return " ".join(v for k, v in sorted(labels.items()) if k != "__name__")
    return _LEGEND.sub(lambda m: labels.get(m.group(1), ""), template)


def _api(prometheus: str, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.loads(response.read())
    result = body["data"]["result"]
    return [{"metric": {}, "value": result}] if body["data"]["resultType"] == "scalar" else result


def collect(prometheus: str, dashboard: dict[str, Any], end: float, range_seconds: int,
            step: int = 2) -> dict[int, list[Series]]:
    """Every panel's series: range queries, or one instant query where the panel asks."""
    data: dict[int, list[Series]] = {}
    for panel in _all_panels(dashboard):
        series: list[Series] = []
        for target in panel.get("targets", []):
            expr = grafana_expr(target["expr"], range_seconds, step)
            template = target.get("legendFormat", "")
            if target.get("instant"):
                for r in _api(prometheus, "query", {"query": expr, "time": f"{end:.3f}"}):
                    series.append(Series(legend(template, r["metric"]),
                                         [(end, float(r["value"][1]))]))
                continue
            for r in _api(prometheus, "query_range", {
                    "query": expr, "start": f"{end - range_seconds:.3f}", "end": f"{end:.3f}",
                    "step": str(step)}):
                points = [(float(t), float(v)) for t, v in r["values"]]
                series.append(Series(legend(template, r["metric"]),
                                     [p for p in points if math.isfinite(p[1])]))
        data[panel["id"]] = series
    return data


def _all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def run(dashboards_dir: Path, out: Path, baseline: float = 90.0, incident: float = 180.0
        ) -> list[Path]:
    """Run the demo, then write a picture of each dashboard in `dashboards_dir` to `out`."""
    from inferwatch.demo.scenario import Phase
    from inferwatch.demo.stack import Stack, free_port, prometheus_config, write_yaml
    from inferwatch.demo.traffic import TrafficGenerator
    from inferwatch.generate import write
    from inferwatch.generate.config import from_dict

    workdir = Path(tempfile.mkdtemp(prefix="inferwatch-snapshot-"))
    generators: list[TrafficGenerator] = []
    # The Stack is given the directory, so it is not the Stack's to remove: without this
    # every run left its configs, logs and TSDB behind in the temporary directory.
    try:
        # The default rules, as committed, but for the baseline groups' interval (5m): at 15s
        # the expected-band panels show their signals within the run.
        write(workdir, from_dict({"baselines": {"evaluation_interval": "15s"}}))
        with Stack(workdir) as stack:
            replicas, metrics, pids = [], [], []
            for name in ("replica-a", "replica-b"):
                api, port = free_port(HOST), free_port(HOST)
                # 150 s of traffic at 8 to 12 calls a second: the windows hold more rows than
                # the default drift.min_observations (1000) the committed dashboards judge
                # features by, so the drift panels show what the alerts would judge.
                pids.append(stack.start_model(name, HOST, api, port, drift_window=150).pid)
                replicas.append(f"http://{HOST}:{api}")
                metrics.append(f"{HOST}:{port}")
            exporter = free_port(HOST)
            stack.start_exporter(HOST, exporter, pids)
            prom = free_port(HOST)
            stack.start_prometheus("prometheus", write_yaml(workdir / "prometheus.yml",
                prometheus_config(model_targets=metrics, exporter_targets=[f"{HOST}:{exporter}"],
                                  alertmanager=None,
                                  rule_files=[str(workdir / "alerts" / "*.yml")])), HOST, prom)
            phases = [Phase("baseline", baseline, "clean traffic"),
                      Phase("incident", incident, "errors and drift", drift=3.0, error_ratio=0.2,
                            malformed_ratio=0.1, slow_ratio=0.1, slow_seconds=0.3)]
            threads = []
            for i, url in enumerate(replicas):
                generator = TrafficGenerator(url, phases, rate=12.0 - 4 * i, seed=i)
                generators.append(generator)
                threads.append(threading.Thread(target=generator.run, daemon=True))
                threads[-1].start()
            for thread in threads:
                thread.join(baseline + incident + 60)
            end = time.time()
            written = []
            out.mkdir(parents=True, exist_ok=True)
            for path in sorted(dashboards_dir.glob("*.json")):
                dashboard = json.loads(path.read_text())
                picture = svg(dashboard, collect(f"http://{HOST}:{prom}", dashboard, end,
                                                 int(baseline + incident)))
                target = out / f"{path.stem}.svg"
                target.write_text(picture, encoding="utf-8")
                written.append(target)
            for generator in generators:
                generator.stop()
    finally:
        for generator in generators:  # a failed query must not leave the traffic running
            generator.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return written


# Not read from the module docstring, which `python -OO` strips.
DESCRIPTION = "Pictures of the committed dashboards, filled from a live demo, for the README."


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--dashboards DIR --out DIR``."""
    parser = argparse.ArgumentParser(prog="python -m inferwatch.demo.snapshot",
                                     description=DESCRIPTION)
    parser.add_argument("--dashboards", type=Path, default=Path("dashboards"))
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args(argv)
    for path in run(args.dashboards, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
