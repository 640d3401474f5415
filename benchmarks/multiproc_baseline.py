"""prometheus_client's multiprocess mode holding series comparable to inferwatch's.

``python -m benchmarks.multiproc_baseline SPEC`` runs as one worker process: with
``PROMETHEUS_MULTIPROC_DIR`` set, it creates the metrics described in the JSON file SPEC
(what :func:`spec_of` makes from inferwatch's families) and records one value per series,
so its ``.db`` files hold the same series a worker's snapshot does. Summaries have no
quantiles in that mode: their quantile samples become a ``max`` gauge beside the summary.
"""

from __future__ import annotations

import json
import sys


def spec_of(families) -> list[dict]:
    """Metric definitions with the series of `families` (prometheus_client families)."""
    specs: dict[tuple[str, str, tuple[str, ...]], dict] = {}
    for family in families:
        kind = family.type
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k not in ("le", "quantile")}
            names = tuple(sorted(labels))
            if kind == "summary" and "quantile" in sample.labels:
                key = ("gauge", family.name + "_quantile", (*names, "quantile"))
                values = (*(labels[n] for n in names), sample.labels["quantile"])
            elif kind == "histogram" and sample.name.endswith("_bucket"):
                key = ("histogram", family.name, names)
                values = tuple(labels[n] for n in names)
                spec = specs.setdefault(key, {"buckets": []})
                if not spec.get("series") and sample.labels["le"] != "+Inf":
                    spec["buckets"].append(float(sample.labels["le"]))
            elif kind in ("histogram", "summary"):
                continue  # _count and _sum come with the series
            else:
                key = (kind, family.name, names)
                values = tuple(labels[n] for n in names)
            spec = specs.setdefault(key, {})
            series = spec.setdefault("series", {})
            series[json.dumps(values)] = sample.value
    return [{"kind": kind, "name": name, "labels": list(labels), "buckets": spec.get("buckets"),
             "series": [[json.loads(v), value] for v, value in spec["series"].items()]}
            for (kind, name, labels), spec in specs.items()]


def main(path: str) -> None:
    from prometheus_client import Counter, Gauge, Histogram, Summary

    with open(path) as handle:
        specs = json.load(handle)
    for spec in specs:
        kind, name, labels = spec["kind"], spec["name"], spec["labels"]
        if kind == "counter":
            metric = Counter(name, "help", labels, registry=None)
            for values, value in spec["series"]:
                metric.labels(*values).inc(value)
        elif kind == "gauge":
            metric = Gauge(name, "help", labels, registry=None, multiprocess_mode="max")
            for values, value in spec["series"]:
                metric.labels(*values).set(value)
        elif kind == "histogram":
            metric = Histogram(name, "help", labels, registry=None, buckets=spec["buckets"])
            for values, _ in spec["series"]:
                metric.labels(*values).observe(0.0)
        if kind == "gauge" and name.endswith("_quantile"):
            summary = Summary(name[:-len("_quantile")], "help", labels[:-1], registry=None)
            for values, _ in spec["series"]:
                if values[-1] == "0.5":
                    summary.labels(*values[:-1]).observe(1.0)


if __name__ == "__main__":
    main(sys.argv[1])
