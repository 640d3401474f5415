"""Small edges of the demo: why an alert still fires at the end (keep_firing_for), /faults
bodies with unknown keys, the banner of a run without the stack, and the speed limit's
advice."""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from inferwatch.demo import cli
from inferwatch.demo import model as demo_model
from inferwatch.demo.runner import Demo, still_firing_reason
from inferwatch.demo.scenario import MAX_SPEED, check_speed, max_speed, rule_config
from inferwatch.generate import write
from inferwatch.generate.config import from_dict

HOST = "127.0.0.1"
BURN_ALERTS = ("InferwatchErrorBudgetBurnFast", "InferwatchErrorBudgetBurnSlow")


def _held_ports(count: int) -> list[socket.socket]:
    """`count` listening sockets on loopback ports the system picked (another program's)."""
    held: list[socket.socket] = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((HOST, 0))
        sock.listen()
        held.append(sock)
    return held


# --- why an alert still fires when the scenario ends ----------------------------------------


def _rendered_rules(tmp_path: Path, speed: float) -> dict[str, dict[str, Any]]:
    """The alerting rules the demo renders at `speed`, by alert name."""
    config = rule_config(speed)
    write(tmp_path, from_dict(config, source=str(tmp_path / "inferwatch.yaml")))
    rules: dict[str, dict[str, Any]] = {}
    for group in yaml.safe_load((tmp_path / "alerts" / "alerting-rules.yml").read_text())[
            "groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rules.setdefault(rule["alert"], rule)
    return rules


@pytest.mark.parametrize("speed", [1.0, 2.0])
def test_the_burn_alerts_reason_names_their_keep_firing_for(tmp_path: Path,
                                                              speed: float) -> None:
    # The closing line said the short window "still holds errors of error-burst", though
    # the rule keeps firing one more short window after it empties: the slow burn resolved
    # six minutes after the scenario, not the one the line implied.
    rules = _rendered_rules(tmp_path, speed)
    for alert in BURN_ALERTS:
        keep = rules[alert]["keep_firing_for"]
        reason = still_firing_reason(alert, "breast-cancer", speed)
        assert f"it keeps firing for {keep} after that (keep_firing_for)" in reason, reason


def test_alerts_without_keep_firing_for_do_not_claim_one(tmp_path: Path) -> None:
    rules = _rendered_rules(tmp_path, 1.0)
    for alert in ("InferwatchAccuracyDrop", "InferwatchShadowAgreementLow",
                  "InferwatchFeatureDrift", "InferwatchLatencyHigh"):
        assert "keep_firing_for" not in rules[alert]
        assert "keep_firing_for" not in still_firing_reason(alert, "breast-cancer", 1.0)


def test_the_slow_burn_reason_at_speed_1_reads_as_the_docs_tell_it() -> None:
    assert still_firing_reason("InferwatchErrorBudgetBurnSlow", "breast-cancer", 1.0) == (
        "its 5m short window holds errors of error-burst for 5m, and it keeps firing for 5m "
        "after that (keep_firing_for)")


# --- /faults --------------------------------------------------------------------------------


class _FaultsOnly(demo_model.ModelService):
    """The service as /faults uses it: no model is trained."""

    def __init__(self) -> None:
        self.faults = demo_model.Faults()


@pytest.fixture(scope="module")
def faults_service() -> Iterator[tuple[_FaultsOnly, int]]:
    service = _FaultsOnly()
    [held] = _held_ports(1)
    port = held.getsockname()[1]
    held.close()
    httpd = ThreadingHTTPServer((HOST, port), demo_model.make_handler(service))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield service, port
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def _post_faults(port: int, body: Any) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("POST", "/faults", body=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _now(service: _FaultsOnly) -> tuple[float, float, float]:
    faults = service.faults
    return faults.error_ratio, faults.slow_ratio, faults.slow_seconds


def test_a_misspelt_fault_is_a_400_naming_it(faults_service: tuple[_FaultsOnly, int]) -> None:
    # {"error_rate": 0.5} answered 200 and set every fault to 0: the scenario's error burst
    # silently stopped.
    service, port = faults_service
    assert _post_faults(port, {"error_ratio": 1.0, "slow_ratio": 0.5, "slow_seconds": 0.2})[0] \
        == 200
    status, body = _post_faults(port, {"error_rate": 0.5})
    assert status == 400
    assert "error_rate" in body["message"] and "error_ratio" in body["message"]
    assert _now(service) == (1.0, 0.5, 0.2)


_KNOWN = ("error_ratio", "slow_ratio", "slow_seconds")
_valid_faults = st.fixed_dictionaries({}, optional={
    "error_ratio": st.floats(0, 1), "slow_ratio": st.floats(0, 1),
    "slow_seconds": st.floats(0, 60)})


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(valid=_valid_faults,
       unknown=st.dictionaries(st.text(max_size=4).filter(lambda key: key not in _KNOWN),
                               st.floats(0, 1), min_size=1, max_size=3))
@example(valid={"error_ratio": 0.5}, unknown={"Error_Ratio": 0.5})
def test_a_body_with_any_unknown_key_changes_nothing(
        faults_service: tuple[_FaultsOnly, int], valid: dict[str, float],
        unknown: dict[str, float]) -> None:
    service, port = faults_service
    service.faults.update({"error_ratio": 0.1, "slow_ratio": 0.2, "slow_seconds": 0.3})
    status, body = _post_faults(port, {**valid, **unknown})
    assert status == 400
    assert all(repr(key) in body["message"] for key in unknown), body
    assert _now(service) == (0.1, 0.2, 0.3)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(valid=_valid_faults)
def test_a_body_of_known_keys_states_every_fault(faults_service: tuple[_FaultsOnly, int],
                                                 valid: dict[str, float]) -> None:
    # Each phase posts the whole set; a key left out is no such fault (0), as before.
    service, port = faults_service
    service.faults.update({"error_ratio": 0.1, "slow_ratio": 0.2, "slow_seconds": 0.3})
    assert _post_faults(port, valid)[0] == 200
    assert _now(service) == tuple(valid.get(key, 0.0) for key in _KNOWN)


# --- the banner of a run without the stack --------------------------------------------------


@pytest.mark.parametrize("with_stack", [False, True])
def test_the_banner_names_moved_ports_of_running_components_only(
        tmp_path: Path, with_stack: bool) -> None:
    # Without the stack the banner said Prometheus and Alertmanager had moved, though
    # neither runs.
    names = ("prometheus", "alertmanager", "receiver", "exporter")
    with ExitStack() as stack:
        held = _held_ports(len(names))
        for sock in held:
            stack.callback(sock.close)
        preferred = {name: sock.getsockname()[1] for name, sock in zip(names, held)}
        lines: list[str] = []
        demo = Demo(scenario="short", speed=2, host=HOST, workdir=tmp_path,
                    with_stack=with_stack, preferred_ports=preferred, out=lines.append)
        demo._banner()
    [taken] = [line for line in lines if "ports taken" in line]
    assert f"exporter {preferred['exporter']} -> " in taken
    for name in ("prometheus", "alertmanager", "receiver"):
        assert (f"{name} {preferred[name]} -> " in taken) == with_stack, taken


# --- the speed limit's advice ---------------------------------------------------------------


def _refusal(speed: float, rate: float) -> str:
    with pytest.raises(ValueError) as refused:
        check_speed(speed, rate)
    return str(refused.value)


def test_at_the_cap_raising_the_rate_is_not_offered() -> None:
    # At --rate 1000 (the most it takes) the demo told to raise --rate.
    message = _refusal(50, 1000)
    assert "--rate" not in message and "--speed 6 or less" in message


def test_below_the_cap_the_rate_that_allows_the_speed_is_named() -> None:
    message = _refusal(4, 10)
    assert "use --speed 2 or less, or raise --rate to 20" in message
    check_speed(4, 20)


@given(rate=st.floats(1.0, cli.MAX_RATE), speed=st.floats(0.01, MAX_SPEED))
@example(rate=10.0, speed=6.0)
@example(rate=10.0, speed=6.01)
@example(rate=29.0, speed=5.9)
def test_the_advice_of_every_refusal_works(rate: float, speed: float) -> None:
    if speed <= max_speed(rate):
        check_speed(speed, rate)
        return
    message = _refusal(speed, rate)
    fastest = float(message.split("use --speed ")[1].split(" ")[0])
    check_speed(fastest, rate)
    if ", or raise --rate to " in message:
        needed = float(message.split(", or raise --rate to ")[1].split()[0].rstrip(",;."))
        assert needed <= cli.MAX_RATE
        check_speed(speed, needed)
    else:
        assert "--rate" not in message.split("use --speed")[1]
        # No rate the demo takes would allow it.
        _refusal(speed, cli.MAX_RATE)


def test_the_cli_at_the_maximum_rate_says_only_what_works(
        capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--rate", "1000", "--speed", "50", "--no-stack"])
    assert cli.run(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--speed 6 or less" in err and "raise --rate" not in err
