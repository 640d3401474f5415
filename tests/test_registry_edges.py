"""The registry of monitors and the label caps over a long-running server's life: rollouts
past the version cap, close() and later calls, concurrent creation, and label values that
churn past a cap or carry hostile text."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from inferwatch.catalogue import OTHER
from inferwatch.core.registry import Registry
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.serving.exposition import render


def _expositions(registry: Registry) -> list[list]:
    """The samples of both encoders a scrape may use: prometheus_client's and inferwatch's."""
    prometheus = CollectorRegistry()
    prometheus.register(InferwatchCollector(registry))
    body, _ = render(prometheus, None, None)
    return [[s for family in text_string_to_metric_families(text) for s in family.samples]
            for text in (generate_latest(prometheus).decode(), body.decode())]


def _drain_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "inferwatch-drain"}


def test_monitor_without_version_is_the_version_rolled_out_past_the_cap():
    """`monitor(name)` is the version most recently instrumented, also once the version cap
    folds new versions into __other__: its requests and outcomes land where its calls do."""
    registry = Registry(max_versions_per_model=2)
    try:
        for i in range(4):
            predict = inferwatch.instrument(lambda x: x, name="m", version=f"v{i}",
                                            registry=registry)
        predict(0.5)
        latest = inferwatch.monitor("m", registry=registry)
        assert latest.version == OTHER
        with latest.request() as r:
            r.action("shown")
        latest.drain()
        counters = latest.read_state(lambda state: dict(state.counters))
        assert counters["inferwatch_requests_total"][("ok",)] == 2  # the call and the request
        assert counters["inferwatch_actions_total"] == {("shown",): 1.0}
    finally:
        registry.close()


def test_a_closed_registry_answers_every_call_and_never_starts_a_drain_thread():
    registry = Registry(drain_interval=3600)
    registry.close()
    before = _drain_threads()
    predict = inferwatch.instrument(lambda x: x, name="m", version="1", registry=registry)
    predict(0.5)
    registry.monitor("other", "2")
    registry.enable_history()
    registry.close()
    assert _drain_threads() <= before
    for samples in _expositions(registry):  # a scrape still drains what was recorded
        assert [s.value for s in samples if s.name == "inferwatch_requests_total"
                and s.labels["model"] == "m" and s.labels["outcome"] == "ok"] == [1.0]


def test_monitors_made_from_many_threads_at_once_are_one_per_name_and_version():
    registry = Registry()
    barrier = threading.Barrier(24)
    made: list[list] = [[] for _ in range(24)]

    def make(i: int) -> None:
        barrier.wait()
        for version in ("1", "2", "3"):
            made[i].append(registry.monitor("m", version))

    threads = [threading.Thread(target=make, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert all([id(m) for m in row] == [id(m) for m in made[0]] for row in made)
        assert sorted(m.version for m in registry.monitors()) == ["1", "2", "3"]
    finally:
        registry.close()


_hostile = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", " ", OTHER, "a\nb", 'q"\\', "\x00", "\udcff", "x" * 400, "\x1b[0m"]),
)


@settings(max_examples=40, deadline=None)
@given(rounds=st.lists(st.lists(_hostile, min_size=1, max_size=12), min_size=1, max_size=4),
       cap=st.integers(1, 4))
def test_churning_label_values_fold_exactly_and_counters_never_go_back(rounds, cap):
    """Across several drains, every exposition parses, each capped label keeps at most
    `cap` values of its own plus __other__, the totals equal the calls made, and no
    series ever decreases."""
    registry = Registry(drain_interval=3600)
    try:
        mon = registry.monitor("m", "1", inferwatch.core.options.Settings(
            max_actions=cap, max_stages=cap))
        seen: dict[tuple, float] = {}
        calls = 0
        for values in rounds:
            for value in values:
                with mon.request() as r:
                    with r.stage(value):
                        pass
                    r.action(value)
                calls += 1
            for samples in _expositions(registry):
                for name, label in (("inferwatch_actions_total", "action"),
                                    ("inferwatch_stage_duration_seconds_count", "stage")):
                    series = {s.labels[label]: s.value for s in samples if s.name == name}
                    assert len(set(series) - {OTHER}) <= cap
                    assert sum(series.values()) == calls
                    for key, value in series.items():
                        assert value >= seen.get((name, key), 0.0)
                        seen[(name, key)] = value
    finally:
        registry.close()


def test_a_dropped_model_is_freed_and_its_last_calls_keep_its_class_names():
    """A server that loads each new version and drops the old one gets the old model's
    memory back (the registry keeps every monitor for good, and a monitor held the model
    through its class-name reader); calls made just before the drop still drain under the
    model's class names."""
    import gc
    import weakref

    import numpy as np

    import inferwatch

    class Model:
        classes_ = np.array(["legit", "fraud"])

        def __init__(self) -> None:
            self.weights = bytearray(1 << 20)

        def predict_proba(self, x):
            return np.tile([0.2, 0.8], (len(x), 1))

    registry = Registry(drain_interval=3600)
    try:
        dropped = []
        for version in ("1", "2", "3"):
            model = Model()
            dropped.append(weakref.ref(model))
            wrapped = inferwatch.instrument(model, name="fraud", version=version,
                                            registry=registry)
            wrapped.predict_proba(np.zeros((4, 2)))
            del model, wrapped
        gc.collect()
        assert [ref() for ref in dropped] == [None, None, None]
        registry.drain()
        for version in ("1", "2", "3"):
            classes = registry.monitor("fraud", version).state.counters[
                "inferwatch_predicted_class_total"]
            assert {k: v for k, v in classes.items() if v} == {("fraud",): 4.0}
    finally:
        registry.close()


def test_settings_of_an_instrument_after_monitor_apply_until_a_call_is_recorded(caplog):
    """``inferwatch.monitor("fraud", "1")`` at import (for ``mon.request()``), then
    ``instrument(model, name="fraud", version="1", ...)``: its settings and the model's
    class names were silently ignored. Once calls were recorded under the first settings,
    a later instrument() says so in the log instead."""
    import logging

    import numpy as np

    import inferwatch

    class Model:
        classes_ = np.array(["legit", "fraud"])

        def predict(self, x):
            return np.full(len(x), 5.0)

        def predict_proba(self, x):
            return np.tile([0.3, 0.7], (len(x), 1))

    registry = Registry(drain_interval=3600)
    try:
        early = inferwatch.monitor("fraud", "1", registry=registry)
        model = inferwatch.instrument(Model(), name="fraud", version="1", registry=registry,
                                      output_range=(0.0, 1.0), max_classes=3)
        assert registry.monitor("fraud", "1") is early
        model.predict(np.zeros((2, 2)))
        model.predict_proba(np.zeros((1, 2)))
        registry.drain()
        counters = early.state.counters
        assert counters["inferwatch_invalid_predictions_total"][("out_of_range",)] == 2
        assert {k: v for k, v in counters["inferwatch_predicted_class_total"].items()
                if v} == {("fraud",): 1.0}
        assert early.settings.max_classes == 3

        with caplog.at_level(logging.WARNING, logger="inferwatch"):
            for _ in range(2):
                inferwatch.instrument(Model(), name="fraud", version="1", registry=registry,
                                      output_range=(0.0, 10.0))
        assert early.settings.output_range == (0.0, 1.0)
        said = [r.getMessage() for r in caplog.records if "fraud version 1" in r.getMessage()]
        assert len(said) == 1 and "not applied" in said[0]
    finally:
        registry.close()


def test_configure_resizes_the_label_caps():
    """``mon.configure(max_classes=...)`` changed the settings and left the cap as it was."""
    registry = Registry(drain_interval=3600)
    try:
        monitor = registry.monitor("ranker", "1")
        monitor.configure(classes=[f"c{i}" for i in range(6)])
        for label in ("c0", "c1", "c2"):
            monitor.record_call(0.01, label)
        registry.drain()  # admitted as they are drained
        monitor.configure(max_classes=2)  # lowered: what is admitted stays, no more are
        monitor.record_call(0.01, "c3")
        registry.drain()
        classes = monitor.state.counters["inferwatch_predicted_class_total"]
        assert {k: v for k, v in classes.items() if v} == {
            ("c0",): 1.0, ("c1",): 1.0, ("c2",): 1.0, ("__other__",): 1.0}
        monitor.configure(max_classes=5)  # raised: two more are admitted
        for label in ("c3", "c4", "c5"):
            monitor.record_call(0.01, label)
        registry.drain()
        assert {k: v for k, v in classes.items() if v} == {
            ("c0",): 1.0, ("c1",): 1.0, ("c2",): 1.0, ("c3",): 1.0, ("c4",): 1.0,
            ("__other__",): 2.0}
    finally:
        registry.close()


@pytest.mark.parametrize("name", ["", " ", "\t\n", "\u3000", "\r"])
def test_a_blank_model_name_is_refused_naming_it(name):
    import inferwatch

    registry = Registry(drain_interval=3600)
    try:
        with pytest.raises(ValueError, match="name must be a non-empty string"):
            inferwatch.instrument(lambda x: 0.5, name=name, version="1", registry=registry)
        with pytest.raises(ValueError, match="name must be a non-empty string"):
            inferwatch.monitor(name, registry=registry)
        assert registry.monitors() == []
    finally:
        registry.close()


def test_options_configured_before_instrument_stay_unless_instrument_names_them():
    import inferwatch

    registry = Registry(drain_interval=3600)
    try:
        monitor = inferwatch.monitor("m", "1", registry=registry).configure(
            max_pending=16, drain_min_calls=7)
        inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry,
                              drain_min_calls=9, output_range=(0.0, 1.0))
        assert monitor.settings.max_pending == 16  # configured, not named again
        assert monitor.settings.drain_min_calls == 9  # named again: the later call wins
        assert monitor.settings.output_range == (0.0, 1.0)
    finally:
        registry.close()


def test_an_instrument_during_a_configure_in_another_thread_keeps_both_and_never_hangs():
    """instrument() adopted its settings while a configure() of the same monitor ran in
    another thread: that configure put back the settings it had read at its start, and the
    instrument's options were lost. Adopting under the registry's lock instead would hang
    both threads once the configure's drain looks up the model's versions there."""
    import inferwatch

    registry = Registry(drain_interval=3600)
    monitor = inferwatch.monitor("m", "1", registry=registry)
    in_drain, release = threading.Event(), threading.Event()
    drain = monitor.drain

    def slow_drain(*args, **kwargs):
        in_drain.set()
        release.wait(10)
        registry.monitors()  # as the join of an outcome with sibling versions does
        return drain(*args, **kwargs)

    monitor.drain = slow_drain
    configuring = threading.Thread(
        target=monitor.configure, kwargs={"output_range": (0.0, 1.0)}, daemon=True)
    instrumenting = threading.Thread(
        target=inferwatch.instrument, args=(lambda x: 0.5,),
        kwargs={"name": "m", "version": "1", "registry": registry,
                "metadata": {"team": "risk"}}, daemon=True)
    try:
        configuring.start()
        assert in_drain.wait(10)
        instrumenting.start()
        instrumenting.join(0.5)  # unfixed, it finished here, under the configure
        release.set()
        configuring.join(10)
        instrumenting.join(10)
        assert not configuring.is_alive() and not instrumenting.is_alive()
        assert monitor.settings.output_range == (0.0, 1.0)
        assert monitor.settings.metadata["team"] == "risk"
        assert monitor.state.info["team"] == "risk"
    finally:
        release.set()
        registry.close()
