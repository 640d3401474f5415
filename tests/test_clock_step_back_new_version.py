"""A model version instrumented after the wall clock stepped back starts where the other
models' windows are: its quantiles are read, and its status-page rate is not divided by
the step."""

from __future__ import annotations

import math
import time

import pytest

import inferwatch

STEP = 3600.0


@pytest.fixture
def stepped_back(monkeypatch):
    real = time.time

    def step() -> None:
        monkeypatch.setattr(time, "time", lambda: real() - STEP)

    return step


def test_a_version_made_after_a_step_back_keeps_its_quantiles_and_load_time(stepped_back):
    registry = inferwatch.Registry(drain_interval=3600)
    try:
        first = inferwatch.instrument(lambda x: 0.5, name="a", version="1", registry=registry)
        first(1.0)
        registry.states_at()  # the windows are read at the real time
        stepped_back()
        late = inferwatch.instrument(lambda x: 0.25, name="b", version="1",
                                     registry=registry)
        for _ in range(100):
            late(1.0)
        registry.drain()
        states, at = registry.states_at(model="b")
        (state,) = states
        # Loaded where the windows are, not an hour before them.
        assert at - state.loaded_at < 60
        (median,) = state.summaries["inferwatch_prediction"][("value",)].quantiles((0.5,), at)
        assert not math.isnan(median)
        assert abs(median - 0.25) < 0.01
    finally:
        registry.close()
