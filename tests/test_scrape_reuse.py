"""A scrape writes a model with nothing new from the lines the last scrape made of it.

Whatever changes a model's series must make the next scrape write them afresh: calls,
errors, open requests, ground truth joined, a new configuration, the clock moving its
rolling windows (quantiles and drift) on. Each case is checked against a scrape by a
collector that never saw the model before, in both formats, byte for byte; and a scrape
with nothing new is checked to reuse the lines (or this file would pass with no reuse)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from inferwatch.core import encode
from inferwatch.core.instrument import instrument
from inferwatch.core.registry import Registry
from inferwatch.quality.reference import Reference
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.serving.exposition import render

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
START = 1_800_000_000.0


class Classifier:
    classes_ = np.array([0, 1])

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(rows, dtype=float)[:, :1], 0.0, 1.0)
        return np.hstack([1.0 - p, p])


def failing_or_score(x: float) -> float:
    if x < 0:
        raise ValueError("negative")
    return x * 2.0


class World:
    """Two models (a scoring function; a classifier with a reference), a collector that
    keeps its lines across scrapes, and a clock the test moves."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = START
        monkeypatch.setattr(time, "time", lambda: self.now)
        self.registry = Registry(drain_interval=3600)
        self.served = CollectorRegistry()
        self.collector = InferwatchCollector(self.registry)
        self.served.register(self.collector)
        reference = Reference.from_data(np.random.default_rng(0).random((500, 2)))
        self.score = instrument(failing_or_score, name="score", version="1",
                                registry=self.registry)
        # A drift window of 60 s (buckets of 10 s), which moves on within one bucket of the
        # quantiles' window (120 s): the one window does not stand for the other.
        self.classify = instrument(Classifier(), name="classify", version="2",
                                   reference=reference, registry=self.registry,
                                   drift_window_seconds=60.0)
        self.open_requests: list = []

    def scrape(self, accept: str | None = None) -> bytes:
        return render(self.served, accept, None)[0]

    def fresh_scrape(self, accept: str | None = None) -> bytes:
        fresh = CollectorRegistry()
        fresh.register(InferwatchCollector(self.registry))
        return render(fresh, accept, None)[0]

    def apply(self, step: tuple) -> None:
        kind, value = step
        if kind == "score":
            self.score(value)
        elif kind == "fail":
            with pytest.raises(ValueError):
                self.score(-1.0 - value)
        elif kind == "classify":
            self.classify.predict_proba(np.array([[value, 1.0 - value]]),
                                        request_id=f"r-{int(value * 10)}")
        elif kind == "outcome":
            self.registry.monitor("classify", "2").record_outcome(f"r-{value}", value % 2)
        elif kind == "open":
            request = self.registry.monitor("score", "1").request(f"open-{value}")
            request.__enter__()
            self.open_requests.append(request)
        elif kind == "close" and self.open_requests:
            self.open_requests.pop().__exit__(None, None, None)
        elif kind == "advance":
            self.now += value
        elif kind == "configure":
            self.registry.monitor("score", "1").configure(
                quantiles=(0.5, 0.75) if value % 2 else (0.5, 0.9, 0.99))


steps = st.lists(st.one_of(
    st.tuples(st.just("score"), st.floats(0.0, 1e7, allow_nan=False)),
    st.tuples(st.just("fail"), st.floats(0.0, 10.0)),
    st.tuples(st.just("classify"), st.floats(0.0, 1.0)),
    st.tuples(st.just("outcome"), st.integers(0, 10)),
    st.tuples(st.just("open"), st.integers(0, 3)),
    st.tuples(st.just("close"), st.just(0)),
    # Within a bucket, across one, past a whole window (quantiles 600 s, drift's own).
    st.tuples(st.just("advance"), st.sampled_from([0.5, 30.0, 119.0, 121.0, 700.0, 4000.0])),
    st.tuples(st.just("configure"), st.integers(0, 1)),
), max_size=25)


@settings(max_examples=60, deadline=None)
@given(steps)
def test_every_scrape_writes_what_a_fresh_collector_writes(steps) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        world = World(monkeypatch)
        try:
            for step in [("score", 1.0), *steps]:
                world.apply(step)
                for accept in (None, OPENMETRICS):
                    kept = world.scrape(accept)
                    assert kept == world.fresh_scrape(accept), step
                    assert world.scrape(accept) == kept  # nothing new: the same lines again
        finally:
            for request in world.open_requests:
                request.__exit__(None, None, None)
            world.registry.close()


def test_a_model_with_nothing_new_is_written_from_the_last_scrape_lines(monkeypatch) -> None:
    world = World(monkeypatch)
    written: list[str] = []
    state_lines = encode.Page._state_lines

    def counting(page, state, now):
        written.append(state.model)
        return state_lines(page, state, now)

    monkeypatch.setattr(encode.Page, "_state_lines", counting)
    try:
        world.score(0.5)
        world.classify.predict_proba(np.array([[0.2, 0.8]]))
        world.scrape()
        world.scrape()  # as the last scrape left them: written once more, and kept
        assert sorted(written) == ["classify", "classify", "score", "score"]
        world.scrape()
        assert len(written) == 4  # both idle: neither read again
        world.score(0.7)
        world.scrape()
        assert written[4:] == ["score"]  # the one called, and no lines kept of it
        world.scrape()
        world.scrape()
        assert written[4:] == ["score", "score"]  # kept again once it was idle
        world.now += 121.0  # the quantiles' window moved on a bucket: both afresh
        world.scrape()
        assert sorted(written[6:]) == ["classify", "score"]
        world.scrape(OPENMETRICS)  # another format has lines of its own
        assert len(written) == 10
    finally:
        world.registry.close()


def test_lines_are_kept_only_of_models_idle_between_two_scrapes(monkeypatch) -> None:
    world = World(monkeypatch)
    try:
        for _ in range(3):
            world.score(1.0)
            world.scrape()
        kept = {key[1]: value[3] is not None
                for key, value in world.collector._encoder._states.items()}
        assert kept == {"score": False, "classify": True}
    finally:
        world.registry.close()


def test_rows_leaving_the_drift_window_are_written_within_a_quantile_bucket(monkeypatch):
    world = World(monkeypatch)  # START begins a bucket of the quantiles' window
    try:
        world.classify.predict_proba(np.array([[0.2, 0.8]]))
        before = world.scrape()
        world.now += 70.0  # past the drift window, in the same quantile bucket
        after = world.scrape()
        assert after == world.fresh_scrape()
        rows = [line for line in after.decode().splitlines()
                if line.startswith("inferwatch_drift_window_observations{")]
        assert rows and all(line.endswith(" 0.0") for line in rows)
        assert after != before
    finally:
        world.registry.close()


def test_a_worker_forked_after_scrapes_serves_its_own_zeroed_counts(monkeypatch) -> None:
    """A forked worker zeroes what its master counted (``reset_after_fork``) and carries
    a copy of the master's collector: the lines that collector kept are the master's."""
    world = World(monkeypatch)
    try:
        for _ in range(3):
            world.score(1.0)
        world.scrape()
        master = world.scrape()  # kept: nothing new since the last scrape
        for monitor in world.registry.monitors():
            monitor.reset_after_fork()
        worker = world.scrape()
        assert worker == world.fresh_scrape()
        assert worker != master
        assert b'inferwatch_requests_total{model="score",model_version="1",outcome="ok"} 0.0' \
            in worker
    finally:
        world.registry.close()


def test_a_shadow_comparison_is_written_at_the_scrape_after_it_lands(monkeypatch) -> None:
    """A shadow writes its comparisons into the challenger's state from the drain
    (``Monitor.update_state``): the challenger's kept lines must give way to them."""
    from inferwatch.core.shadow import shadow

    world = World(monkeypatch)
    handle = shadow(world.score, lambda x: x * 2.5, version="1-shadow",
                    registry=world.registry)
    try:
        world.score(1.0)
        handle.flush()
        world.scrape()
        idle = world.scrape()  # nothing new: the lines are kept
        assert idle == world.scrape()
        world.score(2.0)
        handle.flush()
        after = world.scrape()
        assert after == world.fresh_scrape()
        compared = [line for line in after.decode().splitlines()
                    if line.startswith("inferwatch_shadow_compared_total{")]
        assert compared and compared[0].endswith(" 2.0")
    finally:
        handle.close()
        world.registry.close()


def test_a_model_no_longer_written_keeps_no_lines_nor_its_state() -> None:
    """What a page keeps of a state goes once a page of that format no longer writes it (a
    version retired, a registry closed): the lines, and the state and settings they hold."""
    import gc
    import weakref

    from inferwatch.core.state import ModelState

    encoder = encode.Encoder()
    state = ModelState("retired", "1")
    state.inc("inferwatch_requests_total", ("ok",), 1)
    for openmetrics in (False, True, False):
        page = encoder.page(openmetrics=openmetrics)
        page.add(state, START, changes=((1, 0, 0, 0, 0), (state,)))
        page.text()
    assert len(encoder._states) == 2  # one per format
    page = encoder.page()  # a text page without it
    page.text()
    assert [key[0][0] for key in encoder._states] == [True]  # OpenMetrics' stays for now
    page = encoder.page(openmetrics=True)
    page.text()
    assert not encoder._states
    held = weakref.ref(state)
    del state
    gc.collect()
    assert held() is None
