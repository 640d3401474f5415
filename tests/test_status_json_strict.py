"""The status page's JSON snapshot is strict JSON, whatever the predictions summed to, and
reads back to the same states."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.core.registry import Registry
from inferwatch.report.status import read_snapshot, snapshot_json


def _refuse(constant: str) -> None:
    raise ValueError(f"not strict JSON: {constant}")


def _sums(state: object) -> dict[str, float]:
    data = state.to_dict()
    found = {}
    for kind in ("histograms", "summaries"):
        for metric, series in data.get(kind, {}).items():
            for labels, value in series:
                found[f"{metric}{labels}"] = value["sum"]
    return found


@settings(max_examples=25, deadline=None)
@given(values=st.lists(st.one_of(st.floats(-1.7e308, 1.7e308), st.sampled_from([1e308, -1e308])),
                       min_size=1, max_size=6))
def test_huge_predictions_give_strict_json_that_reads_back(values: list[float]) -> None:
    registry = Registry()
    try:
        monitor = registry.monitor("m", "1")
        monitor.record_call(0.01, np.array(values))
        monitor.record_call(0.01, np.array(values))  # twice: a sum past the float range
        registry.drain()
        states = registry.states()
        body = snapshot_json(states)
    finally:
        registry.close()
    json.loads(body, parse_constant=_refuse)
    (back,) = read_snapshot(body)[1]
    for key, expected in _sums(states[0]).items():
        got = _sums(back)[key]
        assert got == expected or (math.isnan(got) and math.isnan(expected)), key


def test_an_overflowed_sum_is_written_as_prometheus_writes_it() -> None:
    registry = Registry()
    try:
        registry.monitor("m", "1").record_call(0.01, np.array([1e308, 1e308, 1e308]))
        registry.drain()
        body = snapshot_json(registry.states())
    finally:
        registry.close()
    assert b'"+Inf"' in body and b"Infinity" not in body
    (back,) = read_snapshot(body)[1]
    assert math.inf in _sums(back).values()
