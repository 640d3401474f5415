"""A failed batch run pages: real jobs push through `inferwatch.push.on_exit` to a real
Pushgateway, which a real Prometheus scrapes with `honor_labels` (as docs/integrations.md
sets it up) and judges with the generated rules.

A pushed group keeps its last run's counts until the next run replaces them, so the
rate-based error alerts see nothing of a run: InferwatchBatchRunFailed judges the latest run
by its own totals."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.generate import render
from inferwatch.generate.config import from_dict
from processes import Prometheus, prometheus
from test_pushgateway import Gateway, gateway  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

ALERT = "InferwatchBatchRunFailed"
FIRING = f'ALERTS{{alertname="{ALERT}", alertstate="firing", job="nightly", model="fraud"}}'


class BatchFailed(Exception):
    """The job's own failure: its input file was empty."""


def _run(address: str, calls: int, failing: int, *, job_fails: bool = False) -> None:
    """One nightly run in a fresh registry (a fresh process's counts): `calls` scored,
    `failing` of them raising, and the job itself raising at the end when `job_fails`."""
    registry = Registry(drain_interval=3600)
    try:
        def score(row: float) -> float:
            if row < 0:
                raise ValueError("negative amount")
            return 0.5

        model = inferwatch.instrument(score, name="fraud", version="3", registry=registry)
        with pytest.raises(BatchFailed) if job_fails else contextlib.nullcontext(), \
                inferwatch.push.on_exit(address, job="nightly", registry=registry):
            for i in range(calls):
                try:
                    model(-1.0 if i < failing else 1.0)
                except ValueError:
                    pass  # a row the job skips, as batch jobs do
            if job_fails:
                raise BatchFailed("empty input")
    finally:
        registry.close()


def _rules(tmp_path: Path) -> list[str]:
    files = render(from_dict({"alerts": {ALERT: {"for": "0s"}}}))
    paths = []
    for name in ("alerts/recording-rules.yml", "alerts/alerting-rules.yml"):
        path = tmp_path / Path(name).name
        path.write_text(files[name])
        paths.append(str(path))
    return paths


def _gone(server: Prometheus, expr: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while server.query(expr):
        assert time.monotonic() < deadline, f"{expr} still holds after {timeout}s"
        time.sleep(0.5)


def test_a_failed_run_pages_until_a_clean_run_replaces_it(tmp_path: Path,
                                                          gateway: Gateway) -> None:  # noqa: F811
    with prometheus(tmp_path, [gateway.address], job_name="pushgateway", honor_labels=True,
                    rule_files=_rules(tmp_path)) as server:
        _run(gateway.address, calls=1000, failing=0)  # a clean night
        server.wait_for('inferwatch_requests_total{job="nightly", outcome="ok"} == 1000')
        assert not server.query(f'ALERTS{{alertname="{ALERT}"}}')
        _run(gateway.address, calls=1000, failing=5)  # 0.5% of its calls: past the 0.1% budget
        firing = server.wait_for(FIRING, timeout=60)
        assert firing[0]["metric"]["severity"] == "critical"
        _run(gateway.address, calls=1000, failing=0)  # fixed: the clean run replaces it
        _gone(server, f'ALERTS{{alertname="{ALERT}"}}')
        _run(gateway.address, calls=10, failing=0, job_fails=True)  # the job itself failed
        server.wait_for(FIRING, timeout=60)
        errors = server.query('inferwatch_errors_total{job="nightly", error_type="BatchFailed"}')
        assert [float(e["value"][1]) for e in errors] == [1.0]
