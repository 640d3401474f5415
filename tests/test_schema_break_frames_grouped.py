"""Frames of other columns than the reference's are checked together, counting what each
frame alone counts.

A renamed feature after a deploy sends every call's frame with columns the reference does
not know. Each such frame was rebuilt and checked alone in the drain: about 67 us a call,
on the drain's thread, holding the GIL, exactly while the schema alert fires. A drain now
joins the captured frames of the same columns and dtype and checks one frame a group
(about 12 us a call, `bench_shapes`' input rows). Every count, and the drift window, must
be what checking each frame alone gives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry

_NAMES = ["a", "b", "c"]
_TRAIN = pd.DataFrame(np.random.default_rng(1).uniform(0, 10, size=(300, 3)), columns=_NAMES)
# "c" a category of codes 0 to 9: a bool True is no code 1 there, so frames of bools and of
# integers must not be joined into one dtype.
_REFERENCE = inferwatch.Reference.from_data(_TRAIN.assign(c=_TRAIN["c"].astype(int)),
                                            categorical=["c"])
_COLUMN_SETS = [
    ["a", "b", "c"],          # the reference's
    ["a", "b", "renamed"],    # a renamed feature
    ["a", "b", "c", "extra"],  # an extra column
    ["a", "b"],               # a missing one
    ["a", "a", "c"],          # a name twice: a wrong_shape of its own per frame
    [0, 1],                   # names nothing, of another width: a wrong_width per frame
    ["c", "b", "a"],          # the reference's, in another order
]


def _figures(frames: list[pd.DataFrame], alone: bool) -> tuple:
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                      registry=registry, reference=_REFERENCE)
        monitor = registry.monitor("m", "1")
        for frame in frames:
            model(frame)
            if alone:
                monitor.drain()
        monitor.drain()
        counters = {name: {k: v for k, v in series.items() if v}
                    for name, series in monitor.state.counters.items()
                    if name.startswith(("inferwatch_feature", "inferwatch_input"))}
        window = monitor.state.extras["drift"]
        now = monitor.window_time()
        return counters, window.scores(now)[0], window.observations(now)
    finally:
        registry.close()


@st.composite
def _frames(draw) -> list[pd.DataFrame]:
    frames = []
    for _ in range(draw(st.integers(1, 8))):
        columns = draw(st.sampled_from(_COLUMN_SETS))
        rows = draw(st.integers(1, 3))
        dtype = draw(st.sampled_from(["float", "int", "bool"]))
        values = draw(st.lists(st.lists(st.integers(-2, 14), min_size=len(columns),
                                        max_size=len(columns)), min_size=rows, max_size=rows))
        frames.append(pd.DataFrame(np.array(values, dtype=dtype), columns=columns))
    return frames


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames())
def test_frames_checked_together_count_what_each_frame_alone_counts(frames):
    assert _figures(frames, alone=False) == _figures(frames, alone=True)


def test_a_renamed_feature_counts_per_row_in_a_joined_drain(scraper):
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry, reference=_REFERENCE)
    for _ in range(50):
        model(pd.DataFrame([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], columns=["a", "b", "renamed"]))
    assert scraper.value("inferwatch_input_errors_total", model="m",
                         reason="missing_column") == 100
    assert scraper.value("inferwatch_input_errors_total", model="m",
                         reason="extra_column") == 100
    assert scraper.value("inferwatch_feature_drift_observations", model="m", feature="a") == 100
