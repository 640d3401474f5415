"""A shadow past the registry's version cap, and a shadow dropped without close().

Past ``max_versions_per_model`` a version folds into ``model_version="__other__"``: a
challenger there would share one monitor with a champion folded there too (its calls
counted as the champion's, and the serving champion marked ``role="shadow"``), so
``shadow()`` refuses it. A shadow whose handle and champion are dropped is freed: its
worker threads end, its child process exits, its challenger and champion are let go, and
the registry's monitors keep no listener of it.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import inferwatch
from inferwatch.core import shadow_lifetime
from inferwatch.core.registry import Registry

ROWS = np.zeros((2, 3))


class Model:
    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, rows):
        return np.full(len(rows), self.value)


def test_challenger_folding_onto_the_champion_is_refused():
    registry = Registry(drain_interval=3600, max_versions_per_model=2)
    inferwatch.instrument(Model(0.1), name="fraud", version="1", registry=registry)
    inferwatch.instrument(Model(0.1), name="fraud", version="2", registry=registry)
    champion = inferwatch.instrument(Model(0.5), name="fraud", version="3", registry=registry)
    champion_monitor = registry.monitor("fraud")
    assert champion_monitor.version == "__other__"

    with pytest.raises(ValueError, match="max_versions_per_model") as refused:
        inferwatch.shadow(champion, Model(0.4), version="3-rc", registry=registry)
    assert "'3-rc'" in str(refused.value) and "cap of 2" in str(refused.value)

    for _ in range(5):
        assert champion.predict(ROWS).tolist() == [0.5, 0.5]
    registry.drain()
    # Nothing of the challenger reached the serving champion's monitor.
    assert champion_monitor.state.counters["inferwatch_requests_total"][("ok",)] == 5
    assert champion_monitor.state.info.get("role") != "shadow"
    assert not any("shadow" in name for name in champion_monitor.state.counters)
    assert champion_monitor.drain_listeners == champion_monitor.outcome_listeners == ()


def test_challenger_alone_past_the_cap_is_refused_and_makes_no_monitor():
    registry = Registry(drain_interval=3600, max_versions_per_model=2)
    inferwatch.instrument(Model(0.1), name="fraud", version="1", registry=registry)
    champion = inferwatch.instrument(Model(0.5), name="fraud", version="2", registry=registry)

    with pytest.raises(ValueError, match="max_versions_per_model"):
        inferwatch.shadow(champion, Model(0.4), version="2-rc", registry=registry)
    # Refused before the registry was asked for the challenger's monitor: no __other__
    # monitor is made, and no fold is counted.
    assert [m.version for m in registry.monitors()] == ["1", "2"]
    assert registry.overflow_counts() == {}
    assert registry.monitor("fraud").state.info.get("role") != "primary"


def test_version_recorded_before_the_cap_filled_may_shadow_again():
    registry = Registry(drain_interval=3600, max_versions_per_model=2)
    first = inferwatch.instrument(Model(0.5), name="fraud", version="1", registry=registry)
    inferwatch.shadow(first, Model(0.4), version="rc", registry=registry).close()
    champion = inferwatch.instrument(Model(0.5), name="fraud", version="2", registry=registry)
    assert registry.monitor("fraud").version == "__other__"

    handle = inferwatch.shadow(champion, Model(0.4), version="rc", registry=registry)
    try:
        assert handle.monitor.version == "rc"
        assert handle.monitor is not registry.monitor("fraud")
        champion.predict(ROWS)
        assert handle.flush(10)
        registry.drain()
        compared = handle.monitor.state.counters["inferwatch_shadow_compared_total"]
        assert compared[("__other__",)] == 1.0
    finally:
        handle.close()


def _dropped_shadow(registry: Registry, mode: str, challenger: object, champion: object):
    """Shadow `champion` by `challenger`, answer one call, and hand back what outlives the
    caller's references: weak references to the models and the handle, the workers, and
    the two monitors."""
    wrapped = inferwatch.instrument(champion, name="fraud", version="1", registry=registry)
    handle = inferwatch.shadow(wrapped, challenger, version="2", mode=mode,
                               registry=registry)
    wrapped.predict(ROWS)
    assert handle.flush(60)
    threads = list(handle._threads)
    processes = [runner._process for runner in handle._runners]
    refs = [weakref.ref(handle), weakref.ref(champion), weakref.ref(challenger)]
    return refs, threads, processes, handle.champion_monitor, handle.monitor


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_shadow_dropped_without_close_is_freed(mode):
    registry = Registry(drain_interval=3600)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    refs, threads, processes, champion_monitor, monitor = _dropped_shadow(
        registry, mode, LogisticRegression().fit(X, y), LogisticRegression().fit(X, y))
    assert threads and all(t.is_alive() for t in threads)
    assert len(processes) == (1 if mode == "process" else 0)

    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()
    for process in processes:
        process.join(timeout=10)  # the pipe's end closed with its runner: the child returns
        assert process.exitcode is not None
    # Neither monitor (kept by the registry) keeps a listener of the freed shadow, and
    # both still drain and join outcomes.
    assert champion_monitor.outcome_listeners == () and monitor.drain_listeners == ()
    champion_monitor.record_outcome("unknown", 1)
    registry.drain()
    assert not any(live.monitor is monitor for live in shadow_lifetime.live_shadows)


def test_shadow_of_a_live_champion_runs_on_without_its_handle():
    registry = Registry(drain_interval=3600)
    champion = inferwatch.instrument(Model(0.5), name="fraud", version="1", registry=registry)
    inferwatch.shadow(champion, Model(0.4), version="2", registry=registry)
    gc.collect()  # the handle dropped: the champion's wrappers keep the shadow

    (handle,) = [s for s in shadow_lifetime.live_shadows if s.champion_monitor is
                 registry.monitor("fraud")]
    try:
        champion.predict(ROWS)
        assert handle.flush(10)
        registry.drain()
        assert handle.monitor.state.counters["inferwatch_shadow_compared_total"] == \
            {("1",): 1.0}
        # Its listeners are the very ones shadow() gave the monitors, still alive.
        assert handle.on_outcome in handle.champion_monitor.outcome_listeners
        assert handle.monitor.drain_listeners == (handle.before_drain,)
    finally:
        handle.close()
