"""A report written from a status snapshot (`inferwatch report --metrics`) has no ring of
recent totals: InferwatchErrorBudgetBurnSlow's "no data" said the process "keeps 0s" of
history, when the process keeps 70 minutes and only the snapshot holds none."""

from __future__ import annotations

import html
import urllib.request
from pathlib import Path

import numpy as np

import inferwatch
from inferwatch.cli import main
from inferwatch.core.registry import Registry
from inferwatch.report.page import model_link
from inferwatch.report.status import snapshot_json
from loopback_http import serving_bytes

HANG_GUARD = 30.0


def _registry_with_calls() -> Registry:
    registry = Registry()
    monitor = registry.monitor("m", "1")
    for _ in range(20):
        with monitor.request() as r:
            r.prediction(np.array([[0.3, 0.7]]))
    registry.drain()
    return registry


def test_a_report_from_a_snapshot_says_the_snapshot_holds_no_history(tmp_path: Path,
                                                                       capsys) -> None:
    registry = _registry_with_calls()
    try:
        body = snapshot_json(registry.states())
    finally:
        registry.close()
    out = tmp_path / "r.html"
    with serving_bytes(body, {"Content-Type": "application/json"}) as url:
        assert main(["report", "--metrics", url, "-o", str(out)]) == 0, \
            capsys.readouterr().err
    page = html.unescape(out.read_text())
    assert "the snapshot holds no history: see Prometheus" in page
    assert "keeps 0s" not in page


def test_the_status_page_says_how_long_its_process_keeps() -> None:
    registry = _registry_with_calls()
    try:
        with inferwatch.serve(port=0, addr="127.0.0.1", registry=registry) as server:
            url = f"http://127.0.0.1:{server.port}/{model_link('m', '1')}"
            with urllib.request.urlopen(url, timeout=HANG_GUARD) as response:
                page = html.unescape(response.read().decode())
    finally:
        registry.close()
    assert "this process keeps" in page
    assert "the snapshot holds no history" not in page
