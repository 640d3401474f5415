"""`python -m benchmarks [--quick] [NAME ...]`: run every benchmark module and print its table."""

from __future__ import annotations

import argparse
import importlib
import sys

from .common import print_table, print_unmet

# module -> table title; each module exposes run(quick) -> list[Row]
MODULES = {
    "bench_hot_path": "Hot path: instrument() vs a naive prometheus_client wrapper",
    "bench_shapes": "Per call shape: instrument() vs a naive prometheus_client wrapper",
    "bench_result_kinds": "Drain per call, every kind of result a model may return",
    "bench_drain_memory": "Drains of many-row calls: glibc's heap and page faults",
    "bench_quantiles": "Rolling quantiles: accuracy and memory",
    "bench_drift": "Drift: PSI + JS + KS",
    "bench_encoding": "Encoding: inferwatch's encoder vs prometheus_client's generate_latest",
    "bench_exposition": "Exposition: scrape of a realistic deployment",
    "bench_middleware": "ASGI middleware vs prometheus-fastapi-instrumentator",
    "bench_multiproc": "Multi-worker: merge and render",
    "bench_growth": "How cost grows",
    "bench_events": "Prediction event log",
    "bench_gpu": "GPU collector: NVML calls per scrape",
    "bench_rules": "Rule evaluation: 100 models with their own objectives, on Prometheus",
    "bench_outcome_cache": "Outcome cache: memory per entry and the byte bound",
    "bench_streams": "Streams: per item, time to first item, memory",
    "bench_baselines": "Adaptive baselines: detection delay (promtool) and rule evaluation "
                       "(Prometheus, 100 models x 50 features)",
    "bench_shadow": "Shadow models: the champion's cost, background throughput, memory",
    "bench_report": "Drift report and status page: inferwatch vs Evidently 0.7",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    parser.add_argument("names", nargs="*", help="modules to run (default: all present)")
    args = parser.parse_args(argv)
    names = args.names or list(MODULES)
    tables = []
    for name in names:
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"benchmarks.{name}":
                raise
            if args.names:  # asked for by name: a typo must not pass for an empty run
                parser.error(f"no benchmark module {name!r}; known: {', '.join(MODULES)}")
            continue
        title = MODULES.get(name, name)
        rows = module.run(quick=args.quick)
        print_table(title, rows)
        tables.append((title, rows))
    print_unmet(tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
