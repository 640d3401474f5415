"""The status page's alert conditions against the generated rules they stand for: the
conditions the rules gate on calls (InferwatchModelStale), the model alerts the page adds
(InferwatchInputSchemaErrors, InferwatchStreamFirstItemSlow,
InferwatchTooManyVersionsServing), windows longer than the ring reaches ("no data", not the
totals since the process started) and the index's rate window. Each page is fetched over
HTTP from ``inferwatch.serve`` of real instrumented models.

A process hours old is a monitor whose ``loaded_at`` lies hours back and a ring holding the
samples it would have taken then: the page reads both as it reads a long-running process.
"""

from __future__ import annotations

import html
import math
import re
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.core.state import ModelState
from inferwatch.generate import config as generator_config
from inferwatch.generate.rules_alerts import SCHEMA_ERRORS
from inferwatch.report.flags import FIRING, NO_DATA, OK, Thresholds
from inferwatch.report.live import from_state
from inferwatch.report.page import model_link
from inferwatch.serving.bridge import InferwatchCollector

pytestmark = pytest.mark.integration

HANG_GUARD = 30.0
FLAG = re.compile(r'>(Inferwatch\w+)</a></td><td><span class="[^"]*">([^<]*)</span></td>'
                  r"<td>([^<]*)</td>")


def _serve(registry: Registry, config: Path | None = None):
    prometheus = CollectorRegistry()
    prometheus.register(InferwatchCollector(registry))
    return inferwatch.serve(port=0, addr="127.0.0.1", registry=prometheus,
                            status_page=registry, status_config=config)


def _get(server, query: str) -> str:
    url = f"http://127.0.0.1:{server.port}/{query}"
    with urllib.request.urlopen(url, timeout=HANG_GUARD) as response:
        assert response.status == 200
        return response.read().decode()


def _flags(server, model: str, version: str) -> dict[str, tuple[str, str]]:
    page = _get(server, model_link(model, version))
    return {alert: (state, html.unescape(detail)) for alert, state, detail in FLAG.findall(page)}


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inferwatch.yaml"
    path.write_text(text)
    return path


def _score(rows):
    return np.zeros(len(rows))


class Classifier:
    classes_ = ["no", "yes"]

    def predict(self, rows):
        return ["no"] * len(rows)


def _aged(registry: Registry, model: str, version: str, seconds: float):
    """The monitor of `model` `version`, counting since `seconds` ago."""
    monitor = registry.monitor(model, version)
    monitor.state.loaded_at = time.time() - seconds
    return monitor


def _sample_at(registry: Registry, monitor, at: float) -> None:
    """One ring sample of `monitor`'s totals now, stamped `at`, as the drain takes them."""
    registry.drain()
    registry.enable_history().record([monitor.copy_state()], now=at)


# --- InferwatchModelStale: gated on calls, as the rule -----------------------------------

def test_a_stale_version_that_serves_no_calls_is_not_stale_on_the_page() -> None:
    # The rule: `... and on (model, model_version) sum(increase(requests[15m])) > 0`.
    registry = Registry()
    try:
        standby = inferwatch.instrument(Classifier(), name="fraud", version="2",
                                        trained_at="2020-01-01", registry=registry)
        with _serve(registry) as server:
            state, detail = _flags(server, "fraud", "2")["InferwatchModelStale"]
            assert (state, "no call in the last 15m" in detail) == (OK, True), detail
            assert "InferwatchModelStale" not in _get(server, "").split("<table>")[1]
            standby.predict([[1.0]])  # now it serves: the rule's condition holds
            assert _flags(server, "fraud", "2")["InferwatchModelStale"][0] == FIRING
    finally:
        registry.close()


def test_a_stale_version_whose_last_call_is_older_than_versions_serving_is_ok() -> None:
    registry = Registry()
    try:
        model = inferwatch.instrument(Classifier(), name="fraud", version="1",
                                      trained_at="2020-01-01", registry=registry)
        monitor = _aged(registry, "fraud", "1", 3600)
        model.predict([[1.0]])
        now = time.time()
        _sample_at(registry, monitor, now - 40 * 60)
        _sample_at(registry, monitor, now - 20 * 60)  # no call since
        with _serve(registry) as server:
            state, detail = _flags(server, "fraud", "1")["InferwatchModelStale"]
        assert state == OK, detail
    finally:
        registry.close()


# --- the model alerts the page adds ---------------------------------------------------------

def test_input_schema_errors_per_call_fire_as_the_rule(tmp_path: Path) -> None:
    registry = Registry()
    reference = inferwatch.Reference.from_data({"a": np.arange(100.0), "b": np.arange(100.0)})
    try:
        model = inferwatch.instrument(_score, name="fraud", version="1", reference=reference,
                                      task="regression", registry=registry)
        for _ in range(30):
            model(np.ones((4, 2)))
        for _ in range(2):
            model(np.ones((4, 1)))  # a column short: wrong_width, once per call
        with _serve(registry) as server:
            # 2 of 32 calls: 6.25% > data_quality.schema_error_ratio (5%).
            state, detail = _flags(server, "fraud", "1")["InferwatchInputSchemaErrors"]
            assert state == FIRING, detail
            assert "'wrong_width': 6.25% per call" in detail
            assert "InferwatchInputSchemaErrors" in _get(server, "")
        with _serve(registry, _config(tmp_path, "data_quality:\n  schema_error_ratio: 0.1\n")
                    ) as server:
            assert _flags(server, "fraud", "1")["InferwatchInputSchemaErrors"][0] == OK
    finally:
        registry.close()


@given(counts=st.lists(st.integers(0, 50), min_size=len(SCHEMA_ERRORS),
                       max_size=len(SCHEMA_ERRORS)),
       extra=st.integers(0, 50), calls=st.integers(0, 400),
       threshold=st.sampled_from([0.0, 0.01, 0.05, 0.5, 1.0]))
def test_input_schema_errors_read_the_rules_ratio_of_each_reason(
        counts: list[int], extra: int, calls: int, threshold: float) -> None:
    # rate(input_errors{reason=~schema}[w]) / rate(requests[w]) > threshold, per reason;
    # extra_column is no schema error. A young process: the window holds every count.
    state = ModelState("fraud", "1", loaded_at=0.0)
    state.inc("inferwatch_requests_total", ("ok",), calls)
    for reason, count in zip(SCHEMA_ERRORS, counts):
        if count:
            state.inc("inferwatch_input_errors_total", (reason,), count)
    if extra:
        state.inc("inferwatch_input_errors_total", ("extra_column",), extra)
    config = generator_config.from_dict({"data_quality": {"schema_error_ratio": threshold}})
    report = from_state(state, None, 100.0, thresholds=Thresholds.for_model("fraud", config))
    flag = {f.alert: f for f in report.flags}["InferwatchInputSchemaErrors"]
    ratios = [count / calls if calls else (math.inf if count else math.nan)
              for count in counts]
    judged = [r for r in ratios if not math.isnan(r)]
    expected = NO_DATA if not judged else FIRING if max(judged) > threshold else OK
    assert flag.state == expected, flag.detail


def test_a_stream_slow_to_its_first_item_fires_with_the_configs_objective(
        tmp_path: Path) -> None:
    registry = Registry()

    def slow_stream(prompt):
        time.sleep(0.3)
        yield "hello"

    try:
        chat = inferwatch.instrument(slow_stream, name="chat", version="1", registry=registry)
        scorer = inferwatch.instrument(_score, name="eta", version="1", task="regression",
                                       registry=registry)
        for _ in range(2):
            list(chat("hi"))
        scorer(np.ones((1, 1)))
        config = _config(tmp_path, "latency:\n  first_item_p99_seconds: 0.1\n")
        with _serve(registry, config) as server:
            state, detail = _flags(server, "chat", "1")["InferwatchStreamFirstItemSlow"]
            assert state == FIRING, detail
            assert "threshold 0.1s" in detail
            # A model that never streams has no first-item series for the rule to read.
            assert "InferwatchStreamFirstItemSlow" not in _flags(server, "eta", "1")
        with _serve(registry) as server:  # the default objective: 1s
            assert _flags(server, "chat", "1")["InferwatchStreamFirstItemSlow"][0] == OK
    finally:
        registry.close()


def test_two_versions_serving_fire_and_a_shadow_is_not_counted(tmp_path: Path) -> None:
    registry = Registry()
    try:
        stable = inferwatch.instrument(Classifier(), name="eta", version="1",
                                       registry=registry)
        stable.predict([[1.0]])
        handle = inferwatch.shadow(stable, Classifier(), version="3", registry=registry)
        stable.predict([[1.0]])
        handle.flush()
        with _serve(registry) as server:
            state, detail = _flags(server, "eta", "1")["InferwatchTooManyVersionsServing"]
            assert state == OK, detail  # the shadow served calls too, and is not counted
        canary = inferwatch.instrument(Classifier(), name="eta", version="2",
                                       registry=registry)
        canary.predict([[1.0]])
        with _serve(registry) as server:
            for version in ("1", "2"):
                state, detail = _flags(server, "eta", version)[
                    "InferwatchTooManyVersionsServing"]
                assert state == FIRING, detail
                assert detail.startswith("2 versions served calls in the last 15m")
            index = _get(server, "")
            assert index.count("InferwatchTooManyVersionsServing") == 2
        with _serve(registry, _config(tmp_path, "predictions:\n  max_versions: 2\n")) as server:
            assert _flags(server, "eta", "1")["InferwatchTooManyVersionsServing"][0] == OK
        handle.close()
    finally:
        registry.close()


# --- windows longer than the ring reaches ----------------------------------------------------

def test_a_missing_value_spike_older_than_the_ring_is_no_data_not_firing(
        tmp_path: Path) -> None:
    # windows.rate 15m; the ring keeps per-feature counts for 10 minutes. A 70-minute-old
    # process whose inputs lacked "a" in its first 50 minutes, none since.
    registry = Registry()
    reference = inferwatch.Reference.from_data({"a": np.arange(100.0), "b": np.arange(100.0)})
    try:
        model = inferwatch.instrument(_score, name="fraud", version="1", reference=reference,
                                      task="regression", registry=registry)
        monitor = _aged(registry, "fraud", "1", 70 * 60)
        now = time.time()
        broken = np.ones((10, 2))
        broken[:, 0] = np.nan
        for _ in range(20):
            model(broken)
        _sample_at(registry, monitor, now - 50 * 60)
        _sample_at(registry, monitor, now - 20 * 60)
        for _ in range(20):
            model(np.ones((10, 2)))
        _sample_at(registry, monitor, now - 5)
        config = _config(tmp_path, "windows:\n  rate: 15m\n")
        with _serve(registry, config) as server:
            flags = _flags(server, "fraud", "1")
            index = _get(server, "")
        state, detail = flags["InferwatchMissingValuesSpike"]
        assert state == NO_DATA, detail
        assert "needs the last 15m" in detail and "per-feature counts" in detail
        assert "InferwatchMissingValuesSpike" not in index
        assert "<th>calls/s (15m)</th>" in index
    finally:
        registry.close()


def test_an_accuracy_window_longer_than_the_ring_is_no_data(tmp_path: Path) -> None:
    # accuracy.window 2h, the ring 70 minutes, the process 3 hours old: every outcome of
    # its first hour wrong (a broken label feed), all right since.
    registry = Registry()
    try:
        monitor = _aged(registry, "fraud", "1", 3 * 3600)
        now = time.time()
        for i in range(400):
            with monitor.request(request_id=f"r{i}") as r:
                r.prediction(np.array([[0.2, 0.8]]))
        registry.drain()
        for i in range(200):
            monitor.record_outcome(f"r{i}", 0)
        _sample_at(registry, monitor, now - 69 * 60)
        for i in range(200, 400):
            monitor.record_outcome(f"r{i}", 1)
        registry.drain()
        with _serve(registry, _config(tmp_path, "accuracy:\n  window: 2h\n")) as server:
            flags = _flags(server, "fraud", "1")
        state, detail = flags["InferwatchAccuracyDrop"]
        assert state == NO_DATA, detail
        assert "needs the last 2h" in detail
    finally:
        registry.close()


def test_windows_the_ring_reaches_are_read_from_it() -> None:
    # The same old process with its ring reaching back: the fast burn reads its hour and
    # its 5 minutes from the ring, and an error burst 40 minutes ago shows over the hour only.
    registry = Registry()
    try:
        monitor = _aged(registry, "fraud", "1", 3 * 3600)
        now = time.time()
        _sample_at(registry, monitor, now - 65 * 60)
        for _ in range(50):
            monitor.record_error(0.01, TimeoutError)
        for _ in range(50):
            monitor.record_call(0.01, 0.5)
        _sample_at(registry, monitor, now - 6 * 60)
        for _ in range(20):
            monitor.record_call(0.01, 0.5)
        with _serve(registry) as server:
            state, detail = _flags(server, "fraud", "1")["InferwatchErrorBudgetBurnFast"]
        assert state == OK, detail
        assert detail.startswith("error ratio 41.7% over 1h and 0% over 5m"), detail
    finally:
        registry.close()


def test_the_index_names_the_configs_rate_window(tmp_path: Path) -> None:
    registry = Registry()
    try:
        inferwatch.instrument(_score, name="m", version="1", task="regression",
                              registry=registry)(np.ones((1, 1)))
        with _serve(registry) as server:
            assert "<th>calls/s (5m)</th>" in _get(server, "")
        with _serve(registry, _config(tmp_path, "windows:\n  rate: 2m\n")) as server:
            assert "<th>calls/s (2m)</th>" in _get(server, "")
    finally:
        registry.close()


# --- windows read from the ring: what ended before the window is not in it ------------------

HOUR = 3600.0
FIRST_ITEM_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _first_item(state: ModelState) -> object:
    return state.histogram("inferwatch_stream_first_item_seconds", (), FIRST_ITEM_BOUNDS)


def _report_flag(state: ModelState, history: object, now: float, alert: str) -> object:
    config = generator_config.from_dict({})
    report = from_state(state, history, now, thresholds=Thresholds.for_model("m", config))
    return {f.alert: f for f in report.flags}[alert]


@given(old_errors=st.integers(0, 40), new_errors=st.integers(0, 40),
       new_calls=st.integers(1, 400))
def test_input_schema_errors_before_the_window_are_not_counted_in_it(
        old_errors: int, new_errors: int, new_calls: int) -> None:
    """An hour-old process: the window runs from the ring's sample 5 minutes ago, so only
    the errors since then count, as rate() over the window reads them."""
    from inferwatch.core.history import History

    now = 10 * HOUR
    state = ModelState("m", "1", loaded_at=now - HOUR)
    state.inc("inferwatch_requests_total", ("ok",), 100)
    state.inc("inferwatch_input_errors_total", ("wrong_width",), old_errors)
    history = History(interval_seconds=10, span_seconds=2 * HOUR)
    history.record([state], now=now - 600)  # past the 5m window: its start's sample
    state.inc("inferwatch_requests_total", ("ok",), new_calls)
    state.inc("inferwatch_input_errors_total", ("wrong_width",), new_errors)
    flag = _report_flag(state, history, now, "InferwatchInputSchemaErrors")
    expected = FIRING if new_errors / new_calls > 0.05 else OK
    assert flag.state == expected, flag.detail
    assert flag.value == pytest.approx(new_errors / new_calls)


def test_a_stream_slow_before_the_window_and_fast_in_it_reads_ok() -> None:
    from inferwatch.core.history import History

    now = 10 * HOUR
    state = ModelState("chat", "1", loaded_at=now - HOUR)
    state.inc("inferwatch_requests_total", ("ok",), 20)
    _first_item(state).observe_repeated(2.0, 20)  # an hour of slow first items
    history = History(interval_seconds=10, span_seconds=2 * HOUR)
    history.record([state], now=now - 600)
    state.inc("inferwatch_requests_total", ("ok",), 50)
    _first_item(state).observe_repeated(0.07, 50)  # fast since the window began
    flag = _report_flag(state, history, now, "InferwatchStreamFirstItemSlow")
    assert flag.state == OK, flag.detail
    assert flag.value <= 0.1
    _first_item(state).observe_repeated(2.0, 5)  # slow again, inside the window
    flag = _report_flag(state, history, now, "InferwatchStreamFirstItemSlow")
    assert flag.state == FIRING, flag.detail


def test_a_model_that_began_streaming_within_the_window_counts_every_first_item() -> None:
    from inferwatch.core.history import History

    now = 10 * HOUR
    state = ModelState("chat", "1", loaded_at=now - HOUR)
    state.inc("inferwatch_requests_total", ("ok",), 20)
    history = History(interval_seconds=10, span_seconds=2 * HOUR)
    history.record([state], now=now - 600)  # no stream yet: no first-item buckets
    _first_item(state).observe_repeated(2.0, 3)
    flag = _report_flag(state, history, now, "InferwatchStreamFirstItemSlow")
    assert flag.state == FIRING, flag.detail


# --- InferwatchRegressionErrorRise: a regressor's mean absolute error ------------------------

def test_a_regressors_error_rise_fires_against_its_reference_as_the_rule(
        tmp_path: Path) -> None:
    # Validated at a mean absolute error of 0.4 (predicting 0 for truths of +-0.4); live, the
    # truths are 4.0 away: 10x, over accuracy.max_error_ratio 1.5 (the repro the promtool
    # case of alerts/tests/quality.yml fires on).
    reference = inferwatch.Reference.from_data({"a": np.arange(100.0)}, np.zeros(100),
                                               y_true=np.full(100, 0.4))
    assert reference.validation.metric == "mean_absolute_error"
    registry = Registry()
    try:
        model = inferwatch.instrument(_score, name="eta", version="2.0", reference=reference,
                                      task="regression", registry=registry)
        monitor = registry.monitor("eta", "2.0")
        for i in range(120):
            model(np.ones((1, 1)), request_id=f"r{i}")
        for i in range(120):
            monitor.record_outcome(f"r{i}", 4.0)
        classifier = inferwatch.instrument(Classifier(), name="fraud", version="1",
                                           registry=registry)
        classifier.predict([[1.0]])
        with _serve(registry) as server:
            state, detail = _flags(server, "eta", "2.0")["InferwatchRegressionErrorRise"]
            assert state == FIRING, detail
            assert detail.startswith("mean absolute error 4 on 120 outcomes over 1h"), detail
            assert "bound 0.6 (validation error 0.4 x 1.5)" in detail
            assert "InferwatchRegressionErrorRise" in _get(server, "")
            # A classifier joins no absolute error: the rule has no series of it.
            assert "InferwatchRegressionErrorRise" not in _flags(server, "fraud", "1")
        with _serve(registry, _config(tmp_path, "accuracy:\n  max_error_ratio: 20\n")
                    ) as server:
            state, detail = _flags(server, "eta", "2.0")["InferwatchRegressionErrorRise"]
            assert state == OK, detail
        with _serve(registry, _config(tmp_path, "accuracy:\n  min_outcomes: 500\n")
                    ) as server:
            state, detail = _flags(server, "eta", "2.0")["InferwatchRegressionErrorRise"]
            assert state == NO_DATA, detail
    finally:
        registry.close()
