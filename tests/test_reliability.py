"""Reliability requirements 2, 3, 4 and 8: faults swallowed, caps hold, output safe."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from conftest import Scraper, require_binary
from inferwatch import faults
from inferwatch.catalogue import OTHER
from inferwatch.core.label_caps import clean_label_value
from inferwatch.core.registry import Registry
from inferwatch.core.state import HistogramState
from inferwatch.serving.bridge import InferwatchCollector


class Unconvertible:
    """A prediction object that numpy cannot turn into an array."""

    def __array__(self, *args, **kwargs):
        raise RuntimeError("no array for you")

    def __len__(self):
        raise RuntimeError("no len either")


def _internal(component: str) -> int:
    return faults.internal_error_counts().get(component, 0)


# --- requirement 2: a fault inside inferwatch never reaches the caller --------------------

def test_strange_prediction_is_counted_not_raised(scraper):
    weird = Unconvertible()
    wrapped = inferwatch.instrument(lambda x: weird, name="m", version="1",
                                    registry=scraper.registry)
    before = _internal("prediction")
    assert wrapped(1) is weird
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1
    assert _internal("prediction") == before + 1
    assert scraper.value("inferwatch_internal_errors_total", component="prediction") == before + 1


def test_bug_of_ours_is_swallowed_and_logged_at_most_once_a_minute(scraper, monkeypatch,
                                                                   caplog):
    wrapped = inferwatch.instrument(lambda x: x * 2.0, name="m", version="1",
                                    registry=scraper.registry)

    def broken_observe(self, values):
        raise ZeroDivisionError("bug in bucketing")

    monkeypatch.setattr(HistogramState, "observe", broken_observe)
    monkeypatch.setattr(faults, "_last_logged", {})
    before = _internal("drain")
    with caplog.at_level(logging.WARNING, logger="inferwatch"):
        results = []
        for i in range(5):
            results.append(wrapped(float(i)))
            scraper.registry.drain()
    assert results == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert _internal("drain") == before + 5
    drain_logs = [r for r in caplog.records if "internal fault in drain" in r.getMessage()]
    assert len(drain_logs) == 1
    # The scrape itself still answers, with the fault visible.
    assert scraper.value("inferwatch_internal_errors_total", component="drain") == before + 5


def test_collect_fault_still_serves_process_metrics(scraper, monkeypatch):
    import inferwatch.serving.bridge as collector

    def broken(family_lists):
        raise RuntimeError("render bug")

    inferwatch.instrument(lambda x: 1.0, name="m", registry=scraper.registry)(0)
    monkeypatch.setattr(collector, "combine", broken)
    before = _internal("collect")
    text = scraper.text()
    assert "inferwatch_internal_errors_total" in text
    assert _internal("collect") == before + 1


def test_scrapes_racing_the_background_drain_never_fault():
    import threading

    scraper = Scraper(drain_interval=0.0005)  # the background drain races every scrape
    wrapped = inferwatch.instrument(lambda i: float(i), name="m", version="1",
                                    registry=scraper.registry)
    # Every background pass folds what it finds, however little.
    inferwatch.monitor("m", "1", registry=scraper.registry).configure(drain_min_calls=1)
    before = _internal("collect")
    stop = threading.Event()
    scrapes, mismatches = [0], []

    def scrape_forever():
        # Rendered under the monitor's lock, one scrape is one consistent state: every call
        # in the request counter is in the latency histogram too.
        collector = InferwatchCollector(scraper.registry)
        while not stop.is_set():
            samples = [s for family in collector.collect() for s in family.samples]
            scrapes[0] += 1
            requests = sum(s.value for s in samples if s.name == "inferwatch_requests_total")
            latency = sum(s.value for s in samples
                          if s.name == "inferwatch_request_duration_seconds_count")
            if requests != latency:
                mismatches.append((requests, latency))

    scraping = threading.Thread(target=scrape_forever)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often enough to land inside a render
    calls = 0
    scraping.start()
    try:
        deadline = time.monotonic() + 120  # a safety net: 300 scrapes take about a second
        while scrapes[0] < 300 and time.monotonic() < deadline:
            wrapped(calls)
            calls += 1
    finally:
        stop.set()
        scraping.join()
        sys.setswitchinterval(interval)
    assert scrapes[0] >= 300
    assert _internal("collect") == before
    assert mismatches == []
    assert scraper.value("inferwatch_requests_total", outcome="ok") == calls
    scraper.registry.close()


# --- requirement 3: caps on growable labels, no count lost ------------------------------

def _assert_capped(scraper, metric, label, cap, observations):
    series = [s for s in scraper.samples() if s.name == metric]
    values = {s.labels[label] for s in series}
    assert len(values) <= cap + 1, f"{metric}: {len(values)} series for a cap of {cap}"
    assert OTHER in values
    assert sum(s.value for s in series) == observations
    family = metric.removesuffix("_count").removesuffix("_total")
    overflow = {s.labels["metric"]: s.value for s in scraper.samples()
                if s.name == "inferwatch_series_overflow_total"}
    assert any(family in name for name in overflow), overflow


def test_ten_thousand_error_types_are_capped(scraper):
    classes = [type(f"Error{i}", (Exception,), {}) for i in range(10_000)]

    def predict(i):
        raise classes[i]()

    wrapped = inferwatch.instrument(predict, name="m", version="1", max_error_types=20,
                                    registry=scraper.registry)
    for i in range(10_000):
        with pytest.raises(Exception):  # noqa: B017 - every class is distinct on purpose
            wrapped(i)
    _assert_capped(scraper, "inferwatch_errors_total", "error_type", 20, 10_000)
    assert scraper.value("inferwatch_requests_total", outcome="error") == 10_000


def test_ten_thousand_classes_actions_stages_and_outputs_are_capped(scraper):
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    mon.configure(classes=[f"class-{i}" for i in range(10_000)])  # each one a declared class
    for i in range(10_000):
        with mon.request() as r:
            with r.stage(f"stage-{i}"):
                pass
            r.action(f"action-{i}")
            r.prediction(np.array([f"class-{i}"]))  # a lone str is text
    wrapped = inferwatch.instrument(lambda i: {f"out-{i}": 1.0}, name="m", version="1",
                                    registry=scraper.registry)
    for i in range(10_000):
        wrapped(i)
    _assert_capped(scraper, "inferwatch_predicted_class_total", "class", 50, 10_000)
    _assert_capped(scraper, "inferwatch_actions_total", "action", 20, 10_000)
    _assert_capped(scraper, "inferwatch_stage_duration_seconds_count", "stage", 20, 10_000)
    _assert_capped(scraper, "inferwatch_prediction_count", "output", 20, 10_000)


def test_ten_thousand_versions_and_models_are_capped(scraper):
    for i in range(10_000):
        inferwatch.instrument(lambda x: 1.0, name="m", version=f"v{i}",
                              registry=scraper.registry)(0)
    requests = [s for s in scraper.samples() if s.name == "inferwatch_requests_total"]
    assert len({s.labels["model_version"] for s in requests}) <= 11
    assert sum(s.value for s in requests) == 10_000
    assert any(s.labels["model_version"] == OTHER for s in requests)


def test_pending_calls_are_bounded_when_draining_stalls(scraper):
    wrapped = inferwatch.instrument(lambda x: 1.0, name="m", version="1", max_pending=1000,
                                    registry=scraper.registry)
    scraper.registry.close()  # no background drain
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    with mon._lock:  # a stalled drain: scrapes cannot take the lock either
        for i in range(5000):
            assert wrapped(i) == 1.0
        assert mon.pending() == 1000
    before = _internal("backlog")
    mon.drain()
    assert _internal("backlog") == before + 4000
    assert mon.in_flight() == 0


def test_pending_calls_holding_wide_inputs_are_bounded_in_bytes(scraper):
    """Calls of a model with a reference keep their input (64,000 bytes of 8,000 float
    features here) until the drain. Once a drain has seen what a call holds, the bound in
    calls shrinks to fit max_pending_bytes; calls past it are dropped and counted, and a
    drain of lighter calls gives the whole max_pending back."""
    width = 8000
    reference = inferwatch.Reference.from_data(np.random.default_rng(0).normal(size=(50, width)))
    model = inferwatch.instrument(lambda x: 1.0, name="m", version="1", reference=reference,
                                  max_pending_bytes=2 * 1024 * 1024, registry=scraper.registry)
    scraper.registry.close()  # no background drain
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    row = np.zeros((1, width))
    for _ in range(10):
        model(row)
    mon.drain()  # learns what a call holds: 64,000 bytes and its record
    fits = 2 * 1024 * 1024 // (64_000 + 100)
    with mon._lock:  # a stalled drain
        for _ in range(1000):
            assert model(row) == 1.0
        assert fits - fits // 8 <= mon.pending() <= fits
    mon.drain()
    recorded = scraper.value("inferwatch_requests_total", outcome="ok")
    dropped = scraper.value("inferwatch_calls_dropped_total")
    assert recorded + dropped == 1010 and dropped >= 1000 - fits
    # Light calls again (an input that is no array): the whole max_pending comes back
    # after one drain of them.
    model(1)
    mon.drain()
    with mon._lock:
        for i in range(5000):
            model(i)
        assert mon.pending() == 5000


@pytest.mark.parametrize("held", ["dataframe input", "large array result", "list input"])
def test_pending_calls_holding_objects_kept_by_reference_are_bounded_in_bytes(scraper, held):
    """What a waiting call keeps by reference (a DataFrame input with a reference profile,
    an array result past the copy limit, a list of rows) counts toward max_pending_bytes
    as an array copied for it does: the bound in calls shrinks to fit."""
    pd = pytest.importorskip("pandas")
    columns = [f"f{i}" for i in range(40)]
    reference = inferwatch.Reference.from_data(
        pd.DataFrame(np.random.default_rng(0).normal(size=(50, 40)), columns=columns))
    if held == "dataframe input":
        frame = pd.DataFrame(np.zeros((200, 40)), columns=columns)  # 64,000 bytes of values
        model = inferwatch.instrument(lambda x: 1.0, name="m", version="1",
                                      reference=reference, max_pending_bytes=2 * 1024 * 1024,
                                      registry=scraper.registry)
        call, each = (lambda: model(frame)), 64_000
    elif held == "list input":
        rows = [[0.0] * 40 for _ in range(200)]  # about 64,000 bytes of Python floats and lists
        model = inferwatch.instrument(lambda x: 1.0, name="m", version="1",
                                      reference=reference, max_pending_bytes=2 * 1024 * 1024,
                                      registry=scraper.registry)
        call, each = (lambda: model(rows)), 200 * 40 * 8
    else:
        model = inferwatch.instrument(lambda x: np.zeros(10_000), name="m", version="1",
                                      max_pending_bytes=2 * 1024 * 1024,
                                      registry=scraper.registry)
        call, each = (lambda: model(0)), 80_000
    scraper.registry.close()  # no background drain
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    for _ in range(10):
        call()
    mon.drain()  # learns what a call holds
    at_most = 2 * 1024 * 1024 // each
    with mon._lock:  # a stalled drain
        for _ in range(1000):
            call()
        assert 8 <= mon.pending() <= at_most
    mon.drain()
    dropped = scraper.value("inferwatch_calls_dropped_total")
    assert scraper.value("inferwatch_requests_total", outcome="ok") + dropped == 1010
    assert dropped >= 1000 - at_most


@pytest.mark.parametrize("later_max_pending", [800, 4000])
def test_a_max_pending_configured_after_instrument_bounds_the_calls_already_wrapped(
        scraper, later_max_pending):
    # The wrappers keep their pending limit as a local; configure() pushes the new one to
    # every live wrapper, sync and async, whichever way it moves.
    import asyncio

    wrapped = inferwatch.instrument(lambda x: 1.0, name="m", version="1", max_pending=1000,
                                    registry=scraper.registry)

    async def predict(x):
        return 1.0

    wrapped_async = inferwatch.instrument(predict, name="m", version="1",
                                          registry=scraper.registry)
    scraper.registry.close()  # no background drain
    mon = inferwatch.monitor("m", "1", registry=scraper.registry).configure(
        max_pending=later_max_pending)

    async def calls(n):
        for i in range(n):
            await wrapped_async(i)

    with mon._lock:  # a stalled drain
        for i in range(3000):
            wrapped(i)
        asyncio.run(calls(3000))
        assert mon.pending() == min(later_max_pending, 6000)
    mon.drain()
    assert mon.pending() == 0


# --- requirement 4: no raw input ever reaches /metrics -----------------------------------

MARK = "Qx7"  # keeps generated strings from matching ordinary exposition text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=5))
def test_raw_inputs_never_appear_in_metrics(texts):
    scraper = Scraper()
    secrets = [MARK + t for t in texts]

    def predict(text, request_id=None):
        if len(text) % 3 == 0:
            raise ValueError(f"cannot score {text}")
        return float(len(text))

    wrapped = inferwatch.instrument(predict, name="m", version="1", registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    for secret in secrets:
        try:
            wrapped(secret, request_id=secret)
        except ValueError:
            pass
        with mon.request(request_id=secret) as r:
            r.features({"comment": secret, "amount": 3.0})
            r.prediction(0.5)
    body = scraper.text()
    scraper.registry.close()
    for secret in secrets:
        assert secret not in body
        assert clean_label_value(secret)[:20] not in body or len(secret) < 4


# --- requirement 8: hostile label values round-trip and pass promtool ----------------------

hostile = st.text(min_size=1, max_size=40) | st.sampled_from(
    ['"', "\\", "\n", 'a"b\\c\nd', "ünïcödé ✓", "\\n", "} x{", "le", "\ud800 lone surrogate"])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=hostile.filter(str.strip), version=hostile,
       label=hostile)
@example(model="0", version="0\x85", label="0")  # NEL: whitespace to str.strip()
def test_hostile_label_values_round_trip(model, version, label):
    # A blank name is refused (test_registry_edges): it would label nothing.
    scraper = Scraper()
    mon = inferwatch.monitor(model, version, registry=scraper.registry)
    with mon.request() as r:
        with r.stage(label):
            pass
        r.action(label)
        r.prediction({label: np.array([0.5])})
    mon.configure(classes=[label])  # a declared class: the only strings that become labels
    wrapped = inferwatch.instrument(lambda x: x, name=model, version=version,
                                    registry=scraper.registry)
    wrapped(np.array([label], dtype=object))  # a lone str would be text, never a label
    families = list(text_string_to_metric_families(scraper.text()))
    scraper.registry.close()
    samples = [s for f in families for s in f.samples]
    expected = clean_label_value(label)
    actions = [s for s in samples if s.name == "inferwatch_actions_total"]
    assert [s.labels["action"] for s in actions] == [expected]
    assert actions[0].labels["model"] == clean_label_value(model)
    # A blank version is the default one, like no version at all; outer whitespace (a
    # newline read from a file) is no part of a version.
    assert actions[0].labels["model_version"] == (clean_label_value(version.strip())
                                                  if version.strip() else "unversioned")
    classes = {s.labels["class"] for s in samples if s.name == "inferwatch_predicted_class_total"}
    assert classes == {expected}


def test_exposition_passes_promtool_check_metrics(scraper):
    promtool = require_binary("promtool")
    for name in ['we"ird\\model\nname', "ünïcödé", "plain"]:
        mon = inferwatch.monitor(name, 'v"1\n', registry=scraper.registry)
        with mon.request() as r:
            with r.stage("pre\\process"):
                pass
            r.action('bl"ock\n')
            r.prediction(np.array([[0.2, 0.8], [0.6, 0.4]]))
        wrapped = inferwatch.instrument(lambda x: x, name=name, version="2",
                                        registry=scraper.registry)
        wrapped(np.array([1.0, np.nan, 2.0]))
        wrapped({"a\nb": [0.1]})
        with pytest.raises(KeyError):
            inferwatch.instrument(lambda x: {}[x], name=name, registry=scraper.registry)("k")
    text = scraper.text()
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_pending_requests_are_bounded_when_draining_stalls(scraper):
    from inferwatch.core.options import Settings

    mon = scraper.registry.monitor("m", "1", Settings(max_pending=100))
    scraper.registry.close()
    with mon._lock:
        for i in range(1000):
            with mon.request(request_id=str(i)) as r:
                r.prediction(0.5)
        held = mon.pending()
        assert 0 < held <= 100
    mon.drain()
    assert scraper.value("inferwatch_requests_total", outcome="ok") == held
    assert scraper.value("inferwatch_calls_dropped_total") == 1000 - held
    assert mon.in_flight() == 0


def test_counts_stay_exact_far_past_one_pending_list_between_drains():
    """A caller faster than the once-a-second drain fills its pending list many times over:
    each full list goes to the drain whole, and no call is lost.

    780,000 calls stay within max_pending (800,000: lists of 100,000) however slowly the
    drain runs, so no call can be dropped whatever the scheduling; the lists still fill
    seven times over."""
    registry = Registry(drain_interval=1.0)
    try:
        predict = inferwatch.instrument(lambda x: x, name="fast", registry=registry,
                                        max_pending=800_000)
        for _ in range(700_000):
            predict(0.5)
        threads = [threading.Thread(target=lambda: [predict(0.25) for _ in range(5_000)])
                   for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        monitor = inferwatch.monitor("fast", registry=registry)
        monitor.drain()
        # Read under the monitor's lock, as a scrape does: the background drain may have
        # taken the last lists just before, and still be folding them.
        counters = monitor.read_state(lambda state: copy.deepcopy(state.counters))
        assert counters["inferwatch_requests_total"][("ok",)] == 780_000
        assert counters["inferwatch_calls_dropped_total"][()] == 0
        assert monitor.pending() == 0 and monitor.in_flight() == 0
    finally:
        registry.close()


long_or_odd = hostile | st.text(min_size=120, max_size=300) | st.integers() | st.floats()


@settings(max_examples=200, deadline=None)
@given(values=st.lists(long_or_odd, min_size=1, max_size=12), limit=st.integers(1, 6))
def test_a_cap_folds_a_value_it_admitted_as_it_folds_the_value_it_came_from(values, limit):
    """The cap answers an admitted (clean) string at once; so folding the clean text of any
    value gives what folding the value gave, and a raw value is never passed through."""
    from inferwatch.catalogue import OTHER
    from inferwatch.core.label_caps import LabelCap

    cap = LabelCap(limit)
    folded = [cap.fold(value) for value in values]
    for value, label in zip(values, folded):
        assert label in (clean_label_value(value), OTHER)
        assert cap.fold(clean_label_value(value)) == label
        assert cap.fold(label) == label
    assert len({label for label in folded if label != OTHER}) <= limit
