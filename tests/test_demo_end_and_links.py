"""What the demo tells its user at the start and at the end: an alerts link that answers on
the Prometheus it runs, a calls/s figure that reads the real rate from the first summary, and
an end line that names the alerts still firing, with why, instead of a bare "finished"."""

from __future__ import annotations

import queue
import random
import re
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from conftest import require_binary
from inferwatch.demo import runner
from inferwatch.demo.stack import Stack, prometheus_config, write_yaml

HOST = "127.0.0.1"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _port_in_test_range() -> int:
    """A free loopback port from 20000 to 29999."""
    for port in random.sample(range(20000, 30000), 200):
        with socket.socket() as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port from 20000 to 29999")


@pytest.mark.integration
def test_the_banner_links_an_alerts_page_the_prometheus_it_runs_serves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Debian's Prometheus 2.42 serves only the classic UI: its /alerts is a 404, and the
    # banner's link led there.
    require_binary("prometheus")
    # This Prometheus scrapes nothing: waiting for its first scrapes would take the whole
    # 30 s bound (the first-summary run in test_demo.py waits for real ones).
    monkeypatch.setattr(runner, "wait_scraped", lambda *args, **kwargs: True)
    lines: list[str] = []
    demo = runner.Demo(scenario="short", workdir=tmp_path, with_stack=True, out=lines.append,
                       preferred_ports={"prometheus": _port_in_test_range()})
    config = write_yaml(tmp_path / "prometheus.yml", prometheus_config(
        model_targets=[], exporter_targets=[], alertmanager=None, rule_files=[]))
    with Stack(tmp_path) as stack:
        stack.start_prometheus("prometheus", config, HOST, demo.ports["prometheus"])
        demo._await_prometheus()
        demo._banner()
        [link] = [line.split()[-1] for line in lines if line.startswith("  Prometheus ")]
        assert link.startswith(f"http://{HOST}:{demo.ports['prometheus']}/"), link
        with _DIRECT.open(link, timeout=10) as response:
            assert response.status == 200
            assert b"Alerts" in response.read()


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


def _firing(*alerts: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"metric": {"__name__": "ALERTS", "alertname": name, "alertstate": "firing",
                        "model": model}, "value": [0, "1"]} for name, model in alerts]


def _demo_answering(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                    answer: list[dict[str, Any]]) -> runner.Demo:
    def fake_query(url: str, promql: str, at: float | None = None,
                   timeout: float = 5.0) -> list[dict[str, Any]]:
        assert promql == 'ALERTS{alertstate="firing"}'
        return answer

    monkeypatch.setattr(runner, "query", fake_query)
    return runner.Demo(scenario="default", workdir=tmp_path, with_stack=True,
                       out=lambda line: None)


def test_the_end_line_names_each_alert_still_firing_and_why(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The default scenario ended with the slow burn still firing (its 5m short window holds
    # the last minute of error-burst) under a bare "scenario finished".
    demo = _demo_answering(monkeypatch, tmp_path, _firing(
        ("InferwatchErrorBudgetBurnSlow", "breast-cancer"),
        ("InferwatchErrorBudgetBurnSlow", "breast-cancer"),
        ("InferwatchStreamFirstItemSlow", "toy-llm")))
    line = demo._finished_line(going_on=False)
    assert re.fullmatch(
        r"\[\d\d:\d\d\] scenario finished; still firing: InferwatchErrorBudgetBurnSlow \(its 5m "
        r"short window holds errors of error-burst for 5m, and it keeps firing for 5m after "
        r"that \(keep_firing_for\)\), InferwatchStreamFirstItemSlow "
        r"\(toy-llm loops its first-token regression\)\. Exiting \(--once\) with them still "
        r"firing", line), line
    assert demo._finished_line(going_on=True).endswith(
        "The traffic goes on in recovery (Ctrl-C stops): watch them resolve")


def test_the_end_line_of_one_alert_still_firing_says_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    demo = _demo_answering(monkeypatch, tmp_path, _firing(
        ("InferwatchAccuracyDrop", "breast-cancer")))
    assert demo._finished_line(going_on=False).endswith(
        "still firing: InferwatchAccuracyDrop (its 5m window still holds outcomes of "
        "feature-drift). Exiting (--once) with it still firing")


def test_the_end_line_says_nothing_fires_only_when_nothing_does(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    demo = _demo_answering(monkeypatch, tmp_path, [])
    assert demo._finished_line(going_on=False).endswith("scenario finished; nothing is firing")


def test_the_scenario_end_is_told_when_the_traffic_goes_on_in_recovery(tmp_path: Path) -> None:
    # Without --once the traffic plays the last phase again, without end: that is the end
    # of the scenario, not a new phase, and the run loop says what still fires.
    lines: list[str] = []
    demo = runner.Demo(scenario="short", workdir=tmp_path, with_stack=False, out=lines.append)
    for phase in demo.phases:
        demo._announce(phase)
        assert not demo._finished.is_set()
    demo._announce(demo.phases[-1])
    assert demo._finished.is_set()
    assert len([line for line in lines if " phase " in line]) == len(demo.phases)
