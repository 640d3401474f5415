"""The status index's calls per second and error ratio say the span they were read over
when it is not the config's windows.rate the column heading names: before the ring of
recent totals reaches back that far they are averages since the process started (a model
whose traffic stopped long ago still shows its old rate), as the model page already says.
Pages fetched over HTTP from ``inferwatch.serve`` of real monitors."""

from __future__ import annotations

import html
import re
import time
import urllib.request
from pathlib import Path

import pytest

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.report.page import model_link

pytestmark = pytest.mark.integration

HANG_GUARD = 30.0
ROW = re.compile(r"<tr><td><a [^>]*>fraud</a></td><td>1</td>(.*?)</tr>")
CELL = re.compile(r'<td class="n">(.*?)</td>')
PAGE_SPAN = re.compile(r"calls per second \(last ([^)]*)\)")
SPAN = re.compile(r"\(last ([^)]*)\)")


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def _get(server, query: str) -> str:
    url = f"http://127.0.0.1:{server.port}/{query}"
    with urllib.request.urlopen(url, timeout=HANG_GUARD) as response:
        return response.read().decode()


def _serve(registry: Registry, tmp_path: Path):
    config = tmp_path / "inferwatch.yaml"
    config.write_text("windows:\n  rate: 30s\n  no_traffic_lookback: 1m\n")
    return inferwatch.serve(port=0, addr="127.0.0.1", registry=registry,
                            status_config=str(config))


def _aged(registry: Registry, seconds: float):
    """The monitor of fraud 1, counting since `seconds` ago, with 100 calls, half failed."""
    monitor = registry.monitor("fraud", "1")
    monitor.state.loaded_at = time.time() - seconds
    for i in range(100):
        if i % 2:
            monitor.record_error(0.01, ValueError)
        else:
            monitor.record_call(0.01, 0.5)
    registry.drain()
    return monitor


def _index_row(server) -> tuple[str, list[str]]:
    index = _get(server, "")
    row = ROW.search(index)
    assert row is not None, index
    return index, [_text(cell) for cell in CELL.findall(row.group(1))]


def _seconds(span: str) -> float:
    number, unit = span.split()
    return float(number) * (60 if unit == "min" else 1)


def test_a_window_since_the_start_is_labelled_as_on_the_model_page(tmp_path: Path) -> None:
    # Traffic ended 40 s ago; the page is served for the first time now: the ring holds
    # nothing from 30 s back, so both columns are the averages of the last 40 s.
    registry = Registry()
    try:
        _aged(registry, 40)
        with _serve(registry, tmp_path) as server:
            index, (rate, ratio) = _index_row(server)
            page = _get(server, model_link("fraud", "1"))
    finally:
        registry.close()
    assert "<th>calls/s (30s)</th>" in index
    rate_span, ratio_span = SPAN.search(rate), SPAN.search(ratio)
    assert rate_span is not None and ratio_span is not None, (rate, ratio)
    assert rate_span.group(1) == ratio_span.group(1)
    on_page = PAGE_SPAN.search(_text(page))
    assert on_page is not None
    # Read a moment apart: the same span to the second.
    assert abs(_seconds(rate_span.group(1)) - _seconds(on_page.group(1))) <= 1
    assert 40 <= _seconds(rate_span.group(1)) <= 40 + HANG_GUARD
    assert ratio.startswith("50%")


def test_a_process_younger_than_the_window_says_how_young(tmp_path: Path) -> None:
    registry = Registry()
    try:
        _aged(registry, 10)
        with _serve(registry, tmp_path) as server:
            _, (rate, _) = _index_row(server)
    finally:
        registry.close()
    span = SPAN.search(rate)
    assert span is not None, rate
    assert 10 <= _seconds(span.group(1)) < 30


def test_a_window_the_ring_reaches_is_the_heading_s(tmp_path: Path) -> None:
    # A sample from 35 s ago: the window read is the rate window (to a sampling interval).
    registry = Registry()
    try:
        monitor = _aged(registry, 3600)
        registry.enable_history().record([monitor.copy_state()], now=time.time() - 35)
        for _ in range(30):
            monitor.record_call(0.01, 0.5)
        registry.drain()
        with _serve(registry, tmp_path) as server:
            _, (rate, ratio) = _index_row(server)
    finally:
        registry.close()
    assert "last" not in rate and "last" not in ratio, (rate, ratio)
    assert ratio == "0%"
    assert 0.5 < float(rate) < 1.0  # 30 calls over 35 s


def test_a_gap_in_the_ring_is_labelled(tmp_path: Path) -> None:
    # The newest sample from before the window is 200 s old (the process was suspended):
    # the rate is over those 200 s, not the heading's 30.
    registry = Registry()
    try:
        monitor = _aged(registry, 3600)
        registry.enable_history().record([monitor.copy_state()], now=time.time() - 200)
        registry.drain()
        with _serve(registry, tmp_path) as server:
            _, (rate, _) = _index_row(server)
    finally:
        registry.close()
    span = SPAN.search(rate)
    assert span is not None, rate
    assert 199 <= _seconds(span.group(1)) < 200 + HANG_GUARD  # "3.33 min"
