"""Drift report: inferwatch vs Evidently 0.7's drift report with charts, same data, same run.

50 numeric features x 10,000 rows of reference and of current data (10 of them shifted).
inferwatch: profile the reference from the raw rows, compare the current rows, write the HTML
(``Reference.from_data(ref).compare(cur).save_html``). Evidently: ``Report([DataDriftPreset()])
.run(cur, ref).save_html`` in a venv of its own (Evidently 0.7.23 with pandas<3, made here on
first use in ``.bench-venvs/evidently``; without network or package index the row says why and
is skipped). Rounds alternate between the two; medians are compared.

Also: the report file's size (target under 1 MB), and the status page of a model with the
same 50 features rendered on request (target under 2 s).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import Row, fmt_seconds

FEATURES = 50
ROWS = 10_000
DRIFTED = 10
EVIDENTLY = "evidently==0.7.23"
VENV = Path(__file__).resolve().parents[1] / ".bench-venvs" / "evidently"
TARGET_RATIO = 0.2
MAX_BYTES = 1_000_000
PAGE_TARGET_SECONDS = 2.0


def data(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    reference = {f"feature_{i:02d}": rng.normal(i, 1 + i % 5, ROWS) for i in range(FEATURES)}
    current = {name: rng.normal(i, 1 + i % 5, ROWS) for i, name in enumerate(reference)}
    for i, name in enumerate(list(current)[:DRIFTED]):
        current[name] = current[name] + 0.5 * (1 + i % 5)
    return reference, current


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    matrix = np.column_stack(list(columns.values()))
    np.savetxt(path, matrix, delimiter=",", header=",".join(columns), comments="", fmt="%.6g")


def evidently_python() -> tuple[Path | None, str]:
    """The Evidently venv's python, made on first use; None and the reason when it cannot be."""
    python = VENV / "bin" / "python"
    if python.exists():
        return python, ""
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", EVIDENTLY, "pandas<3"],
                       check=True, capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        last = detail.decode(errors="replace").strip().splitlines()[-1:] or [str(exc)]
        return None, f"cannot make the Evidently venv ({EVIDENTLY}, pandas<3): {last[0]}"
    return python, ""


def ours(reference: dict, current: dict, path: Path) -> float:
    from inferwatch.quality.reference import Reference

    start = time.perf_counter()
    Reference.from_data(reference).compare(current).save_html(path)
    return time.perf_counter() - start


def status_page_seconds(reference: dict, current: dict) -> float:
    from inferwatch.core.registry import Registry
    from inferwatch.quality.reference import Reference
    from inferwatch.report.status import StatusPages

    registry = Registry()
    try:
        monitor = registry.monitor("bench", "1").configure(
            reference=Reference.from_data(reference))
        matrix = np.column_stack(list(current.values()))
        for start in range(0, ROWS, 100):
            with monitor.request() as r:
                r.features(matrix[start:start + 100])
                r.prediction(np.full(100, 0.5))
        pages = StatusPages(registry)
        pages.respond("model=bench&version=1")  # first render compiles the scorers
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            status, body, _ = pages.respond("model=bench&version=1")
            runs.append(time.perf_counter() - start)
            assert status == 200 and b"feature_49" in body
        return statistics.median(runs)
    finally:
        registry.close()


def run(quick: bool = False) -> list[Row]:
    rounds = 1 if quick else 3  # an Evidently round takes tens of seconds here
    reference, current = data()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "inferwatch.html"
        python, why = evidently_python()
        worker = None
        if python is not None:
            write_csv(Path(tmp) / "reference.csv", reference)
            write_csv(Path(tmp) / "current.csv", current)
            worker = subprocess.Popen(
                [str(python), str(Path(__file__).with_name("evidently_worker.py")),
                 str(Path(tmp) / "reference.csv"), str(Path(tmp) / "current.csv")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if not json.loads(worker.stdout.readline() or "{}").get("ready"):
                why, worker = "the Evidently worker did not start", None
        ours_runs, theirs_runs = [], []
        evidently_html = Path(tmp) / "evidently.html"
        for i in range(rounds):
            order = ("ours", "theirs") if i % 2 == 0 else ("theirs", "ours")
            for who in order:
                if who == "ours":
                    ours_runs.append(ours(reference, current, out))
                elif worker is not None:
                    worker.stdin.write(f"run {evidently_html}\n")
                    worker.stdin.flush()
                    theirs_runs.append(json.loads(worker.stdout.readline())["seconds"])
        if worker is not None:
            worker.stdin.close()
            worker.wait(60)
        mine = statistics.median(ours_runs)
        size = out.stat().st_size
        if theirs_runs:
            theirs = statistics.median(theirs_runs)
            ratio = mine / theirs
            rows.append(Row(f"report, {FEATURES} features x {ROWS:,} rows", fmt_seconds(mine),
                            f"Evidently 0.7.23: {fmt_seconds(theirs)}", ratio,
                            f"<= {TARGET_RATIO}x Evidently", ratio <= TARGET_RATIO))
            rows.append(Row("report file size", f"{size / 1e3:.0f} KB",
                            f"Evidently: {evidently_html.stat().st_size / 1e6:.1f} MB",
                            size / evidently_html.stat().st_size, "< 1 MB", size < MAX_BYTES))
        else:
            print(f"bench_report: Evidently skipped: {why}", file=sys.stderr)
            rows.append(Row(f"report, {FEATURES} features x {ROWS:,} rows", fmt_seconds(mine),
                            f"skipped: {why}", float("nan"), f"<= {TARGET_RATIO}x Evidently",
                            False))
            rows.append(Row("report file size", f"{size / 1e3:.0f} KB", "-", float("nan"),
                            "< 1 MB", size < MAX_BYTES))
    page = status_page_seconds(reference, current)
    rows.append(Row(f"status page, {FEATURES} features, on request", fmt_seconds(page),
                    f"target {PAGE_TARGET_SECONDS:g} s", page / PAGE_TARGET_SECONDS,
                    f"< {PAGE_TARGET_SECONDS:g} s", page < PAGE_TARGET_SECONDS))
    return rows


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    from .common import print_table

    print_table("Drift report vs Evidently", run())
