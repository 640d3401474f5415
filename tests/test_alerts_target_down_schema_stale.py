"""Three alerts judged through real promtool and a real Prometheus scraping real monitors.

InferwatchTargetDown keeps naming the models of a dead target for as long as it stays down
(it used to drop them after windows.no_traffic_lookback, resolve, and page again unnamed);
InferwatchInputSchemaErrors fires on a feature column dropped upstream (nothing did);
InferwatchModelStale fires only for a version that serves calls (a version swapped out in the
same process, or never called, kept it firing for as long as the process ran).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import free_port, require_binary
from inferwatch.generate.config import DEFAULT, from_dict
from inferwatch.generate.config_schema import ConfigError
from processes import Prometheus, stop, wait_ready
from promtool_cases import assert_promtool_passes, write_generated_rules

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
RULE_FILES = ("recording-rules.yml", "alerting-rules.yml")
SERIES = '{job="inferwatch-model", instance="m1:8000"'


def _series(metric: str, values: str, **labels: str) -> dict[str, str]:
    extra = "".join(f', {name}="{value}"' for name, value in labels.items())
    return {"series": f"{metric}{SERIES}{extra}}}", "values": values}


def _expr(expr: str, at: str, samples: list[tuple[str, float]]) -> dict:
    return {"expr": expr, "eval_time": at,
            "exp_samples": [{"labels": labels, "value": value} for labels, value in samples]}


# --- InferwatchTargetDown ---------------------------------------------------------------------


def test_target_down_names_its_model_without_a_gap_for_five_hours(tmp_path: Path) -> None:
    """Down from 1m to 5h, far past the 1h lookback: the alert fires from 6m (its 5m `for`)
    at every evaluation, always as model fraud, and never without a model; fraud has no
    other target, so the model-wide alert (no instance) fires all along too."""
    firing = 'ALERTS{alertname="InferwatchTargetDown", alertstate="firing", model="fraud"}'
    named = ('{alertname="InferwatchTargetDown", alertstate="firing", instance="m1:8000", '
             'job="inferwatch-model", model="fraud", severity="critical"}')
    model_wide = ('{alertname="InferwatchTargetDown", alertstate="firing", model="fraud", '
                  'severity="critical"}')
    case = {
        "interval": "1m",
        "input_series": [
            _series("up", "1 0x300"),
            _series("inferwatch_model_info", "1 stale", model="fraud", model_version="1"),
        ],
        "promql_expr_test": [
            # One sample per evaluation from 6m to 300m: no evaluation without it.
            _expr(f"count_over_time({firing}[5h])", "300m",
                  [(named, 295), (model_wide, 295)]),
            _expr('absent_over_time(ALERTS{alertname="InferwatchTargetDown", model=""}[5h])',
                  "300m", [('{alertname="InferwatchTargetDown"}', 1)]),
            _expr('ALERTS{alertname="InferwatchTargetDown"}', "300m",
                  [("ALERTS" + named, 1), ("ALERTS" + model_wide, 1)]),
        ],
    }
    assert_promtool_passes(tmp_path, cases=[case], timeout=300,
                           rule_files=write_generated_rules(DEFAULT, tmp_path, RULE_FILES))


def test_target_down_of_a_target_that_never_served_a_model_stays_unnamed(
        tmp_path: Path) -> None:
    case = {
        "interval": "1m",
        "input_series": [_series("up", "1 0x200")],
        "promql_expr_test": [_expr(
            'ALERTS{alertname="InferwatchTargetDown"}', "200m",
            [('ALERTS{alertname="InferwatchTargetDown", alertstate="firing", '
              'instance="m1:8000", job="inferwatch-model", severity="critical"}', 1)])],
    }
    assert_promtool_passes(tmp_path, cases=[case], timeout=300,
                           rule_files=write_generated_rules(DEFAULT, tmp_path, RULE_FILES))


@settings(max_examples=8)
@given(up_minutes=st.integers(1, 30), down_minutes=st.integers(6, 240),
       lookback_minutes=st.integers(5, 90))
def test_target_down_keeps_its_model_for_any_downtime_and_lookback(
        tmp_path_factory: pytest.TempPathFactory, up_minutes: int, down_minutes: int,
        lookback_minutes: int) -> None:
    """Whatever the lookback and however long the target stays down, the last evaluation
    names the model the target served when it went down."""
    tmp_path = tmp_path_factory.mktemp("downtime")
    cfg = from_dict({"windows": {"rate": "5m", "no_traffic_lookback": f"{lookback_minutes}m"}})
    end = up_minutes + down_minutes
    case = {
        "interval": "1m",
        "input_series": [
            _series("up", f"1x{up_minutes - 1} 0x{down_minutes}"),
            _series("inferwatch_model_info", f"1x{up_minutes - 1} stale", model="churn",
                    model_version="2"),
        ],
        "promql_expr_test": [_expr(
            'ALERTS{alertname="InferwatchTargetDown"}', f"{end}m",
            [('ALERTS{alertname="InferwatchTargetDown", alertstate="firing", '
              'instance="m1:8000", job="inferwatch-model", model="churn", '
              'severity="critical"}', 1),
             ('ALERTS{alertname="InferwatchTargetDown", alertstate="firing", '
              'model="churn", severity="critical"}', 1)])],
    }
    assert_promtool_passes(tmp_path, cases=[case], timeout=300,
                           rule_files=write_generated_rules(cfg, tmp_path, RULE_FILES))


# --- the threshold of InferwatchInputSchemaErrors ---------------------------------------------


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-10, max_value=10))
def test_schema_error_ratio_is_a_ratio_like_the_other_quality_thresholds(value: float) -> None:
    data = {"data_quality": {"schema_error_ratio": value}}
    if 0 <= value <= 1:
        cfg = from_dict(data)
        assert cfg.data_quality.schema_error_ratio == value
    else:
        with pytest.raises(ConfigError, match=r"data_quality\.schema_error_ratio"):
            from_dict(data)


def test_schema_error_ratio_reaches_the_rule(tmp_path: Path) -> None:
    """0.5 missing columns per call: fires above a threshold of 0.4, quiet at 0.6."""
    case = {
        "interval": "1m",
        "input_series": [
            _series("inferwatch_requests_total", "0+600x30", model="fraud", model_version="1",
                    outcome="ok"),
            _series("inferwatch_input_errors_total", "0+300x30", model="fraud",
                    model_version="1", reason="missing_column"),
        ],
        "promql_expr_test": [_expr(
            'ALERTS{alertname="InferwatchInputSchemaErrors", alertstate="firing"}', "25m",
            [('ALERTS{alertname="InferwatchInputSchemaErrors", alertstate="firing", '
              'model="fraud", model_version="1", reason="missing_column", '
              'severity="warning"}', 1)])],
    }
    low = from_dict({"data_quality": {"schema_error_ratio": 0.4}})
    assert_promtool_passes(tmp_path, cases=[case], timeout=300,
                           rule_files=write_generated_rules(low, tmp_path, RULE_FILES))
    case["promql_expr_test"][0]["exp_samples"] = []
    high = from_dict({"data_quality": {"schema_error_ratio": 0.6}})
    assert_promtool_passes(tmp_path, cases=[case], timeout=300,
                           rule_files=write_generated_rules(high, tmp_path, RULE_FILES))


# --- a real Prometheus scraping real monitors -------------------------------------------------

# Windows of seconds, so the real Prometheus gets there in seconds; the expressions are the
# same as with the defaults.
FAST = {
    "windows": {"rate": "3s", "no_traffic_lookback": "4s", "versions_serving": "3s"},
    "alerts": {"InferwatchTargetDown": {"for": "1s"}, "InferwatchModelStale": {"for": "1s"},
               "InferwatchInputSchemaErrors": {"for": "1s"}},
}

TARGET = textwrap.dedent('''
    import datetime as dt, gc, sys, time
    import numpy as np, pandas as pd
    import inferwatch

    port, role = int(sys.argv[1]), sys.argv[2]
    now = dt.datetime.now(dt.timezone.utc)
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(500, 3)), columns=["f0", "f1", "f2"])
    reference = inferwatch.Reference.from_data(X)

    def predict(df):
        return np.zeros(len(df))

    def days_ago(days):
        return now - dt.timedelta(days=days)

    calls = []
    if role == "dies":
        churn = inferwatch.instrument(predict, name="churn", version="3")
        calls.append(lambda: churn(X.iloc[[0]]))
    else:
        # f1 dropped upstream: every call misses it. risk gets every column.
        fraud = inferwatch.instrument(predict, name="fraud", version="1", reference=reference)
        risk = inferwatch.instrument(predict, name="risk", version="1", reference=reference)
        calls += [lambda: fraud(X.iloc[[0]][["f0", "f2"]]), lambda: risk(X.iloc[[0]])]
        # ranker 0.9 (120 days old) is swapped out in the same process for 1.0 (2 days old);
        # cold 1 (120 days old) is loaded and never called; legacy 1 (120 days old) serves.
        retired = inferwatch.instrument(predict, name="ranker", version="0.9",
                                        trained_at=days_ago(120))
        retired(X.iloc[[0]])
        del retired
        gc.collect()
        ranker = inferwatch.instrument(predict, name="ranker", version="1.0",
                                       trained_at=days_ago(2))
        cold = inferwatch.instrument(predict, name="cold", version="1", trained_at=days_ago(120))
        legacy = inferwatch.instrument(predict, name="legacy", version="1",
                                       trained_at=days_ago(120))
        calls += [lambda: ranker(X.iloc[[0]]), lambda: legacy(X.iloc[[0]])]
    inferwatch.serve(port=port, addr="127.0.0.1")
    print("serving", flush=True)
    while True:
        for call in calls:
            call()
        time.sleep(0.05)
''')


def _start_target(tmp_path: Path, role: str) -> tuple[subprocess.Popen, str]:
    script = tmp_path / "target.py"
    script.write_text(TARGET)
    port = free_port()
    log = (tmp_path / f"target-{role}.log").open("w")
    process = subprocess.Popen([sys.executable, str(script), str(port), role],
                               stdout=log, stderr=subprocess.STDOUT)
    log.close()
    address = f"127.0.0.1:{port}"
    try:
        wait_ready(f"http://{address}/metrics", timeout=120, process=process)
    except BaseException:
        stop(process)
        raise
    return process, address


@contextmanager
def _prometheus(tmp_path: Path, targets: list[str]) -> Iterator[Prometheus]:
    rules = tmp_path / "rules"
    rules.mkdir()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                   "scrape_timeout": "1s"},
        "rule_files": [str(rules / name)
                       for name in write_generated_rules(from_dict(FAST), rules, RULE_FILES)],
        "scrape_configs": [{"job_name": "inferwatch-model",
                            "static_configs": [{"targets": targets}]}],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [require_binary("prometheus"), f"--config.file={path}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", process=process)
        yield Prometheus(f"http://127.0.0.1:{port}")
    finally:
        stop(process)
        log.close()


def _alerts(prometheus: Prometheus, name: str) -> list[dict[str, str]]:
    return [series["metric"] for series in
            prometheus.query(f'ALERTS{{alertname="{name}", alertstate="firing"}}')]


def _wait_firing(prometheus: Prometheus, name: str, timeout: float = 90.0,
                 **labels: str) -> None:
    matchers = "".join(f', {key}="{value}"' for key, value in labels.items())
    prometheus.wait_for(f'ALERTS{{alertname="{name}", alertstate="firing"{matchers}}}',
                        timeout=timeout)


@pytest.fixture
def dying_target(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    process, address = _start_target(tmp_path, "dies")
    yield process, address
    if process.poll() is None:
        stop(process)


def test_target_down_in_prometheus_keeps_its_model_past_the_lookback(
        tmp_path: Path, dying_target: tuple[subprocess.Popen, str]) -> None:
    process, address = dying_target
    with _prometheus(tmp_path, [address]) as prometheus:
        prometheus.wait_for('count_over_time(inferwatch_model_info{model="churn"}[10s]) >= 3',
                            timeout=60)
        process.kill()
        process.wait()
        _wait_firing(prometheus, "InferwatchTargetDown", model="churn")
        # Watch for four lookbacks (4s each): every TargetDown seen, pending or firing, names
        # churn, and it still fires at the end.
        seen = set()
        deadline = time.monotonic() + 16
        while time.monotonic() < deadline:
            for series in prometheus.query('ALERTS{alertname="InferwatchTargetDown"}'):
                seen.add((series["metric"].get("model"), series["metric"]["alertstate"]))
            time.sleep(0.25)
        assert seen == {("churn", "firing")}
        # Once for the target and once for churn, which no other target serves.
        firing = _alerts(prometheus, "InferwatchTargetDown")
        assert sorted((a.get("model"), a.get("instance", "")) for a in firing) == [
            ("churn", ""), ("churn", address)]


@pytest.fixture
def serving_target(tmp_path: Path) -> Iterator[str]:
    process, address = _start_target(tmp_path, "serves")
    yield address
    stop(process)


def test_schema_errors_and_stale_versions_in_prometheus(tmp_path: Path,
                                                        serving_target: str) -> None:
    with _prometheus(tmp_path, [serving_target]) as prometheus:
        _wait_firing(prometheus, "InferwatchInputSchemaErrors", model="fraud")
        _wait_firing(prometheus, "InferwatchModelStale", model="legacy")
        # Past versions_serving and `for` since the first scrape, for a few evaluations: only
        # the version that serves is stale, and only the model missing a column errs.
        prometheus.wait_for("count_over_time(up[10s]) >= 8", timeout=60)
        for _ in range(8):
            schema = _alerts(prometheus, "InferwatchInputSchemaErrors")
            assert [(a["model"], a["reason"]) for a in schema] == [("fraud", "missing_column")]
            stale = _alerts(prometheus, "InferwatchModelStale")
            assert [(a["model"], a["model_version"]) for a in stale] == [("legacy", "1")]
            time.sleep(0.5)
