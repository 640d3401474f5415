"""Counts on the status page and in `inferwatch report` tables are whole numbers, exact:
12,345 calls read '1.234e+04' (four significant digits, as quantiles are shown)."""

from __future__ import annotations

import html
import re
import urllib.request
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.cli import main
from inferwatch.core.registry import Registry
from inferwatch.core.state import ModelState
from inferwatch.report.live import from_state
from inferwatch.report.page import model_link, report_page
from inferwatch.report.status import snapshot_json
from loopback_http import serving_bytes

HANG_GUARD = 30.0
# A cell with its exact value: (data-key, data-value, the text shown).
CELL = re.compile(r'data-key="([^"]*)" data-value="([^"]*)">([^<]*)<')
# The tables of counts, by the first part of their cells' keys.
COUNT_TABLES = ("requests", "class", "invalid", "input_errors", "outcomes")


def _cells(page: str) -> dict[str, tuple[str, str]]:
    return {html.unescape(key): (html.unescape(value), html.unescape(text))
            for key, value, text in CELL.findall(page)}


def _state(count: int) -> ModelState:
    state = ModelState("fraud", "1", loaded_at=0.0)
    state.inc("inferwatch_requests_total", ("ok",), count)
    state.inc("inferwatch_predicted_class_total", ("1",), count)
    state.inc("inferwatch_invalid_predictions_total", ("nan",), count)
    state.inc("inferwatch_input_errors_total", ("wrong_type",), count)
    state.inc("inferwatch_outcomes_total", ("correct",), count)
    return state


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2**53))
def test_every_count_is_shown_whole(count: int) -> None:
    cells = _cells(report_page(from_state(_state(count), None, now=100.0)))
    for key in ("requests|ok", "class|1", "invalid|nan", "input_errors|wrong_type",
                "outcomes|correct"):
        assert cells[key][1] == str(count), (key, cells[key])


def test_quantiles_keep_four_significant_digits() -> None:
    registry = Registry()
    try:
        monitor = registry.monitor("fraud", "1")
        for p in np.linspace(0.1234567, 0.9876543, 200):
            with monitor.request() as r:
                r.prediction(np.array([[1 - p, p]]))
        registry.drain()
        state, = registry.states()
        cells = _cells(report_page(from_state(state, None, now=state.loaded_at + 60)))
    finally:
        registry.close()
    shown = {key: text for key, (_, text) in cells.items()
             if key.startswith(("confidence|", "quantile|"))}
    assert shown
    for key, text in shown.items():
        digits = text.replace(".", "").lstrip("0")
        assert len(digits) <= 4, (key, text)


def _served(registry: Registry) -> str:
    with inferwatch.serve(port=0, addr="127.0.0.1", registry=registry) as server:
        url = f"http://127.0.0.1:{server.port}/{model_link('m', '1')}"
        with urllib.request.urlopen(url, timeout=HANG_GUARD) as response:
            return response.read().decode()


def _counted(registry: Registry, calls: int) -> None:
    monitor = registry.monitor("m", "1")
    for _ in range(calls):
        with monitor.request() as r:
            r.prediction(np.array([[0.3, 0.7]]))
    registry.drain()


def test_the_status_page_shows_counts_as_metrics_hold_them() -> None:
    registry = Registry()
    try:
        _counted(registry, 12345)
        cells = _cells(_served(registry))
    finally:
        registry.close()
    counted = {key: value for key, value in cells.items()
               if key.split("|", 1)[0] in COUNT_TABLES}
    assert counted["requests|ok"] == ("12345.0", "12345")
    assert counted["class|1"] == ("12345.0", "12345")
    for key, (value, text) in counted.items():
        assert text == f"{float(value):.0f}", key


def test_the_reports_tables_show_counts_whole(tmp_path: Path, capsys) -> None:
    registry = Registry()
    try:
        _counted(registry, 12345)
        body = snapshot_json(registry.states())
    finally:
        registry.close()
    out = tmp_path / "r.html"
    with serving_bytes(body, {"Content-Type": "application/json"}) as url:
        assert main(["report", "--metrics", url, "-o", str(out)]) == 0, \
            capsys.readouterr().err
    cells = _cells(out.read_text())
    assert cells["requests|ok"][1] == "12345"
    assert cells["class|1"][1] == "12345"
