"""Runs inside the separate Evidently venv (bench_report.py makes it): reads the two CSV
files once, then answers each "run PATH" line on stdin with the seconds one Evidently drift
report with charts took (built and saved as HTML to PATH), as one JSON line on stdout.

Not imported by the benchmarks themselves: Evidently 0.7 needs pandas<3, which the project's
environment does not pin, so it lives in a venv of its own.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference = pd.read_csv(sys.argv[1])
    current = pd.read_csv(sys.argv[2])
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command, _, path = line.strip().partition(" ")
        if command != "run":
            break
        start = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(current, reference)
        snapshot.save_html(path)
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
