"""Adaptive baselines: rule evaluation cost on a real Prometheus, and detection delays.

Cost. One synthetic target exposes live series of 100 models x 50 features (calls by
outcome, latency histograms, batch sizes, prediction and confidence quantiles, class
counters, missing and out-of-range counters, each feature's drift scores and observations).
Prometheus scrapes it and evaluates the two baseline groups, and the table reports
``prometheus_rule_group_last_duration_seconds`` of those groups together once the trailing
windows are full, measured at a production-like pace (below); the slowest rules and the
time at the warm-up's cadence go to stderr.

A day of history cannot be waited for, so time is scaled: what a trailing statistic costs
is the number of samples it reads, so the run evaluates every second with windows holding
as many samples as the defaults do at their 5m interval (a 1d window: 288 samples; the 10m
short window at a 15s scrape: 40 samples). The seasonal offsets are scaled the same way;
the week-ago term finds no history in the run (as in a deployment's first week), the
day-ago term does. The 1s cadence also writes every baseline series every second, 300 times
the production write rate, so the measured evaluations come after a config reload to a 15s
interval: the same windows, read between quiet gaps.

An instant selector reads the samples of its lookback window (Prometheus' default: 5m), which
holds one sample of a series recorded at the default 5m interval; the run's lookback is
scaled with the rest (LOOKBACK: one measured interval), or every instant selector of a
recorded series would decode 300 of the warm-up's 1s samples, which no deployment does.

Detection. The simulated two days of tests/test_baselines.py, run through promtool: how
long after each fault its alert fired, against the time stated for it.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from benchmarks.bench_rules import _free_port, _prometheus
from benchmarks.common import Row, fmt_seconds
from inferwatch.generate import render, rule_files
from inferwatch.generate.baselines import SIGNALS
from inferwatch.generate.config import from_dict

MODELS = 100
FEATURES = 50
TARGET_SECONDS = 1.0
# Samples a window holds at the default 5m baseline interval, and at a 15s scrape.
DAY_SAMPLES, OFFSET_SAMPLES, SEASON_SAMPLES, SHORT_SAMPLES = 288, 36, 12, 40


PER_FEATURE = ("missing", "out_of_range")


def scaled_config(quick: bool, features: int | None = None,
                  seasonal_features: bool = True) -> dict:
    """The default baselines with every window as many 1s samples as it holds by default;
    `features`: per-feature baselines for that many features only (`baselines.features`);
    `seasonal_features` False: the per-feature signals without their seasonal model."""
    day = 60 if quick else DAY_SAMPLES
    signal = {"window": f"{SHORT_SAMPLES}s", "baseline_window": f"{day}s",
              "baseline_offset": f"{OFFSET_SAMPLES}s", "min_history": f"{day}s"}
    allowed = {"features": [f"f{f:02d}" for f in range(features)]} if features else {}
    return {"baselines": {**allowed, "evaluation_interval": "1s",
                          "seasonal_window": f"{SEASON_SAMPLES}s",
                          "seasonal_offsets": [f"{7 * day}s", f"{day}s"],
                          **{name: {**signal, "seasonal": seasonal_features
                                    or name not in PER_FEATURE} for name in SIGNALS}}}


class Target:
    """Live series of many models, rendered once a second into one exposition body.

    prometheus_client would render 13,000 series on every scrape in the scraping thread;
    on a busy machine that falls behind a 1s scrape. Here a ticker advances the counters
    and renders the text once, and every scrape returns the latest text.
    """

    def __init__(self, models: int, features: int) -> None:
        self.names = [f"model-{i:03d}" for i in range(models)]
        self.features = [f"f{f:02d}" for f in range(features)]
        self.step = 0
        self.body = b""
        self.tick()

    def tick(self) -> None:
        self.step += 1
        n = self.step
        wobble = 1 + 0.02 * ((n * 7919) % 13 - 6) / 6
        lines = []
        for i, name in enumerate(self.names):
            m = f'model="{name}",model_version="1"'
            lines.append(f"inferwatch_model_info{{{m}}} 1")
            lines.append(f'inferwatch_requests_total{{{m},outcome="ok"}} {50 * n}')
            lines.append(f'inferwatch_requests_total{{{m},outcome="error"}} {(i % 2) * n}')
            seconds = 0.01 * (1 + i % 50) * wobble
            for le in (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0):
                count = 50 * n if seconds <= le else 0
                lines.append(f'inferwatch_request_duration_seconds_bucket{{{m},le="{le}"}} '
                             f"{count}")
            lines.append(f'inferwatch_request_duration_seconds_bucket{{{m},le="+Inf"}} '
                         f"{50 * n}")
            lines.append(f"inferwatch_request_duration_seconds_count{{{m}}} {50 * n}")
            lines.append(f"inferwatch_batch_size_sum{{{m}}} {200 * n}")
            lines.append(f"inferwatch_batch_size_count{{{m}}} {50 * n}")
            for quantile, value in (("0.5", 0.3), ("0.9", 0.7), ("0.99", 0.9)):
                lines.append(f'inferwatch_prediction{{{m},output="score",quantile="{quantile}"}} '
                             f"{value * wobble:.4f}")
                lines.append(f'inferwatch_prediction_confidence{{{m},quantile="{quantile}"}} '
                             f"{min(1.0, value + 0.1) * wobble:.4f}")
            lines.append(f'inferwatch_predicted_class_total{{{m},class="1"}} {40 * n}')
            lines.append(f'inferwatch_predicted_class_total{{{m},class="0"}} {160 * n}')
            for f, feature in enumerate(self.features):
                lines.append(f'inferwatch_feature_missing_total{{{m},feature="{feature}"}} '
                             f"{n + (n + f) // 3}")
                lines.append(f'inferwatch_feature_out_of_range_total{{{m},feature="{feature}"}} '
                             f"{(n + f) // 2}")
                # Every feature of a reference has its drift gauges, which the per-feature
                # rules read to give a feature never missing a ratio of 0.
                lines.append(f'inferwatch_feature_drift_observations{{{m},feature="{feature}"}} '
                             "5000")
                for method in ("psi", "js", "ks"):
                    lines.append(f'inferwatch_feature_drift{{{m},feature="{feature}",'
                                 f'method="{method}"}} {0.01 * wobble:.4f}')
        self.body = ("\n".join(lines) + "\n").encode()

    def serve(self, port: int) -> object:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = target.body
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def _by_group(url: str, metric: str) -> dict[str, float]:
    """A per-rule-group metric of Prometheus' own /metrics, by group name."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            labels, value = line.rsplit(" ", 1)
            group = labels.split('rule_group="', 1)[1].split('"', 1)[0].rsplit(";", 1)[-1]
            found[group] = float(value)
    return found


def _durations(url: str) -> dict[str, float]:
    """prometheus_rule_group_last_duration_seconds of every group, by group name."""
    return _by_group(url, "prometheus_rule_group_last_duration_seconds")


def _rule_groups(url: str) -> list[dict]:
    import json

    with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=30) as response:
        return json.load(response)["data"]["groups"]


def _count(url: str, selector: str) -> float:
    """How many series a selector matches now."""
    import json
    import urllib.parse

    query = urllib.parse.quote(f"count({selector})")
    with urllib.request.urlopen(f"{url}/api/v1/query?query={query}", timeout=30) as response:
        result = json.load(response)["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


# Seconds between baseline evaluations once the windows are full: long enough for the head
# to settle, short enough that the windows (ending OFFSET_SAMPLES seconds ago) still hold the
# warm-up's 1s samples when each measured evaluation reads them.
MEASURED_INTERVAL = 15
# Prometheus' lookback at the scaled pace: as the default 5m lookback holds one sample of a
# baseline series recorded every 5m, this holds the last sample of the measured 15s interval
# (and a second of the warm-up's, the first measured evaluation).
LOOKBACK = f"{MEASURED_INTERVAL + 1}s"


def _at_production_pace(url: str, directory: Path, files: dict[str, str]) -> list[float]:
    """The baseline groups' evaluation times once they run at a production-like pace.

    The warm-up evaluates every second to fill a day's worth of samples quickly, so it also
    writes every baseline series every second: 300 times the write rate of the default 5m
    interval, with the head's garbage collection to match. Switched to a 15s interval by a
    config reload, each evaluation reads the same windows as before but runs between quiet
    gaps, as it does in production; two evaluations per group are measured.
    """
    import os
    import signal

    import psutil

    for path, text in files.items():
        data = yaml.safe_load(text)
        for group in data["groups"]:
            group["interval"] = f"{MEASURED_INTERVAL}s"
        (directory / Path(path).name).write_text(yaml.safe_dump(data, sort_keys=False))
    before = _evaluations(url)
    tsdb = f"--storage.tsdb.path={directory / 'data'}"
    pid = next(p.pid for p in psutil.process_iter(["cmdline"])
               if tsdb in (p.info["cmdline"] or []))
    os.kill(pid, signal.SIGHUP)
    measured: list[float] = []
    deadline = time.monotonic() + 3 * MEASURED_INTERVAL
    seen = dict(before)
    while time.monotonic() < deadline and len(measured) < 2:
        time.sleep(1)
        now = _evaluations(url)
        durations = _durations(url)
        if all(now.get(group, 0) > seen.get(group, 0) for group in now):
            measured.append(sum(durations.values()))
            seen = now
    return measured


def _evaluations(url: str) -> dict[str, float]:
    """When each baseline group last evaluated, by group name."""
    return {group: at for group, at in
            _by_group(url, "prometheus_rule_group_last_evaluation_timestamp_seconds").items()
            if "baseline" in group}


def measure_cost(quick: bool, features: int | None = None,
                 seasonal_features: bool = True) -> list[Row]:
    target = Target(MODELS, FEATURES)
    port = _free_port()
    server = target.serve(port)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.wait(1.0):
            target.tick()

    threading.Thread(target=traffic, daemon=True).start()
    # Only the baseline files: the time-scaled run evaluates every second, and the other
    # groups at that pace would only add their own contention to what is measured.
    rendered = rule_files(render(from_dict(scaled_config(quick, features,
                                                         seasonal_features))))
    files = {path: text for path, text in rendered.items() if "baseline" in path}
    day = 60 if quick else DAY_SAMPLES
    baseline: list[float] = []
    warm_cadence: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as directory, \
                _prometheus(Path(directory), f"127.0.0.1:{port}", files,
                            (f"--query.lookback-delta={LOOKBACK}",)) as url:
            # Full windows: a day of samples, the offset and the short window before it.
            warm = day + OFFSET_SAMPLES + SHORT_SAMPLES + 5
            deadline = time.monotonic() + warm
            while time.monotonic() < deadline:
                time.sleep(5)
                print(f"  warming up: {deadline - time.monotonic():.0f}s left", file=sys.stderr)
            for _ in range(10 if quick else 20):
                groups = _durations(url)
                warm_cadence.append(sum(v for k, v in groups.items() if "baseline" in k))
                time.sleep(1.5)
            baseline = _at_production_pace(url, Path(directory), files)
            series = _count(url, '{__name__=~".+:inferwatch_baseline_.+"}')
            slowest = sorted(((r["evaluationTime"], r["name"]) for g in _rule_groups(url)
                              for r in g["rules"]), reverse=True)[:8]
            print("  slowest rules: " + ", ".join(f"{name} {fmt_seconds(t)}"
                                                  for t, name in slowest), file=sys.stderr)
    finally:
        stop.set()
        server.shutdown()
    rows = []
    allowed = f" (baselines for {features})" if features else ""
    if not seasonal_features:
        allowed += " (per-feature: seasonal off)"
    print(f"  at the warm-up's 1s cadence: median {fmt_seconds(statistics.median(warm_cadence))}"
          f" per evaluation", file=sys.stderr)
    for what, values in ((f"baseline groups ({series:.0f} series)", baseline),):
        median = statistics.median(values)
        rows.append(Row(f"{what}, {MODELS} models x {FEATURES} features{allowed}, one "
                        f"evaluation (median of {len(values)})", fmt_seconds(median),
                        fmt_seconds(TARGET_SECONDS) + " (target)", median / TARGET_SECONDS,
                        f"< {fmt_seconds(TARGET_SECONDS)}", median < TARGET_SECONDS))
    return rows


def detection_rows() -> list[Row]:
    """The simulated two days through promtool; one row per fault."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "tests"))
    import baseline_simulator as sim
    from test_baselines import _write_rules, run_simulated_week

    with tempfile.TemporaryDirectory() as directory:
        names = _write_rules({}, Path(directory))
        outcome, _ = run_simulated_week(Path(directory), names)
    from test_baselines import FAULT_START

    rows = []
    for key, fault in sim.expected_delays(sim.faulty_models(FAULT_START)).items():
        delay = outcome.delays.get(key, float("inf"))
        rows.append(Row(f"{fault.name}: {fault.alert}", fmt_seconds(delay),
                        fmt_seconds(fault.bound) + " (stated)", delay / fault.bound,
                        f"<= {fmt_seconds(fault.bound)}", delay <= fault.bound))
    quiet = not outcome.failures
    rows.append(Row("clean models and fixed-threshold alerts over 2d6h: alerts fired",
                    "0" if quiet else str(len(outcome.failures)), "0", 0.0 if quiet else 1.0,
                    "none", quiet))
    return rows


def run(quick: bool = False) -> list[Row]:
    return (detection_rows() + measure_cost(quick)
            + measure_cost(quick, seasonal_features=False) + measure_cost(quick, features=5))
