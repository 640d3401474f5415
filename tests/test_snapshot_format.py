"""The worker snapshot format: layouts shared across files, arrays checked before merging.

What the merged view adds from arrays must be what merging the workers' states gives,
whatever series, drift buckets and layouts the workers hold; what a crafted file (with a
valid checksum) puts in the arrays is refused at decode or merged within the usual bounds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.core.render import model_families
from inferwatch.core.state import ModelState
from inferwatch.multiproc import merge_plan as plan_module
from inferwatch.multiproc import snapshot_format
from inferwatch.multiproc.merge import merge_view
from inferwatch.multiproc.snapshot_format import (
    _LENGTHS,
    MAGIC,
    Snapshot,
    SnapshotError,
    decode,
    encode,
    exact_models,
    model_dict,
)
from inferwatch.quality.tracker import FeatureTracker
from snapshot_frames import REFERENCE, framed, sections

NOW = 1_700_000_000.0
BUCKET_SECONDS = 600.0  # the drift window's default: an hour in six buckets

def drifting_state(batches: list[tuple[int, int, int]], seed: int) -> ModelState:
    """A worker whose drift windows got `batches` of (buckets ago, rows, outputs) rows."""
    rng = np.random.default_rng(seed)
    tracker = FeatureTracker(REFERENCE)
    for ago, rows, outputs in batches:
        at = NOW - ago * BUCKET_SECONDS
        tracker.check_inputs([{"x": float(v), "color": c} for v, c in
                              zip(rng.normal(size=rows), rng.choice(["red", "blue", "pink"],
                                                                    size=rows))], at)
        tracker.check_predictions({"value": rng.random(outputs)}, outputs, at)
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), sum(rows for _, rows, _ in batches))
    state.extras["drift"] = tracker.drift
    return state


def buckets(window) -> list:
    return sorted((b["id"], b["rows"], b["counts"]) for b in window.to_dict()["buckets"])


batch = st.tuples(st.integers(0, 7), st.integers(1, 30), st.integers(0, 30))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(batch, min_size=0, max_size=4), min_size=1, max_size=5))
def test_drift_windows_merge_bucket_by_bucket_as_merging_the_states_does(workers):
    # Workers whose windows hold other buckets (one fell behind, one is new) take the
    # bucket-by-bucket path; alike ones add as one block. Both must equal DriftWindow.merge.
    states = [drifting_state(batches, seed) for seed, batches in enumerate(workers)]
    raws = [decode(encode(Snapshot(models=[model_dict(s)], written_at=NOW))) for s in states]
    exact = ModelState.from_dict(states[0].to_dict())
    for other in states[1:]:
        exact.merge(ModelState.from_dict(other.to_dict()))
    (view,) = merge_view(raws, NOW).states
    merged, expected = view.extras["drift"], exact.extras["drift"]
    assert buckets(merged.features) == buckets(expected.features)
    assert buckets(merged.outputs) == buckets(expected.outputs)
    assert merged.scores(NOW) == expected.scores(NOW)
    assert text_of(view) == text_of(exact)


def text_of(state: ModelState) -> str:
    from prometheus_client import generate_latest

    class Source:
        def collect(self):
            return model_families([state], NOW)

    return generate_latest(Source()).decode()


def test_a_histogram_laid_out_otherwise_is_carried_into_the_newest_buckets():
    # Neither snapshot says when its worker started: the layouts are ordered by their bounds,
    # so every reader serves the same one.
    a, b = ModelState("fraud", "1"), ModelState("fraud", "1")
    for state, bounds in ((a, (0.1, 1.0)), (b, (0.5, 5.0))):  # a rollout changed the buckets
        state.inc("inferwatch_requests_total", ("ok",), 2)
        state.histogram("inferwatch_request_duration_seconds", (), bounds).observe(
            np.array([0.3]))
    b.inc("inferwatch_errors_total", ("KeyError",))  # a series only one worker has
    raws = [decode(encode(Snapshot(models=[model_dict(s)], written_at=NOW))) for s in (a, b)]
    errors: list[Exception] = []
    (view,) = merge_view(raws, NOW, on_error=errors.append).states
    assert view.counters["inferwatch_requests_total"][("ok",)] == 4.0
    assert view.counters["inferwatch_errors_total"][("KeyError",)] == 1.0
    histogram = view.histograms["inferwatch_request_duration_seconds"][()]
    assert histogram.bounds.tolist() == [0.5, 5.0] and histogram.count == 2
    assert histogram.sum == pytest.approx(0.6)
    assert errors == []


def test_a_damaged_layout_is_refused_whether_or_not_it_was_parsed_before():
    data = encode(Snapshot(models=[model_dict(drifting_state([(0, 5, 5)], 0))], written_at=NOW))
    parts = sections(data)
    damaged = bytearray(data)
    damaged[len(MAGIC) + _LENGTHS.size + len(parts["layout"]) // 2] ^= 0x20
    for clear in (False, True):
        if clear:
            snapshot_format._by_crc.clear()
        else:
            decode(data)  # parsed and kept
        with pytest.raises(SnapshotError, match="checksum"):
            decode(bytes(damaged))


def test_a_snapshot_of_another_format_version_is_refused_by_name():
    data = bytearray(encode(Snapshot(models=[model_dict(ModelState("fraud", "1"))])))
    data[len(MAGIC)] = 1
    with pytest.raises(SnapshotError, match="snapshot format 1 is not 2"):
        decode(bytes(data))


def test_parsed_layouts_and_merge_plans_stay_bounded_through_many_rollouts():
    for version in range(3 * snapshot_format.MAX_LAYOUTS):
        state = ModelState("fraud", str(version))
        state.inc("inferwatch_requests_total", ("ok",))
        raw = decode(encode(Snapshot(models=[model_dict(state)], written_at=NOW)))
        assert merge_view([raw], NOW).states[0].version == str(version)
    assert len(snapshot_format._by_crc) <= snapshot_format.MAX_LAYOUTS
    assert len(snapshot_format._templates) <= 64
    assert len(plan_module._plans) <= plan_module.MAX_PLANS


def crafted(table_changes: dict[int, int], value_changes: dict[int, float]) -> bytes:
    state = drifting_state([(0, 10, 10), (2, 5, 5)], 1)
    state.summary("inferwatch_prediction", ("value",)).observe(np.array([0.5, 2.0]), NOW)
    parts = sections(encode(Snapshot(models=[model_dict(state)], written_at=NOW)))
    table = np.frombuffer(parts["table"], dtype="<i8").copy()
    values = np.frombuffer(parts["values"], dtype="<f8").copy()
    for index, value in table_changes.items():
        table[index % table.size] = value
    for index, value in value_changes.items():
        values[index % values.size] = value
    return framed({**parts, "table": table.tobytes(), "values": values.tobytes()})


hostile_int = st.sampled_from([-(1 << 62), -5, -1, 0, 1, 7, 2048, 1 << 40, 1 << 62])
hostile_float = st.sampled_from([float("nan"), float("inf"), -1.0, 1e300, 0.5, -0.0])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.integers(0, 1000), hostile_int, max_size=3),
       st.dictionaries(st.integers(0, 1000), hostile_float, max_size=3))
def test_crafted_numbers_are_refused_at_decode_or_merged_without_harm(table, values):
    data = crafted(table, values)
    try:
        raw = decode(data)
    except SnapshotError:
        return
    errors: list[Exception] = []
    view = merge_view([raw, raw], NOW, on_error=errors.append)
    families = model_families(view.states, NOW)  # renders: nothing raises, nothing explodes
    assert families
    for state in view.states:
        for series in state.summaries.values():
            for summary in series.values():
                assert summary.sketch.nbytes <= 16 * 2 * 2048 + 1024
        try:
            exact_models(raw)
        except SnapshotError:
            pass


def test_the_layout_is_written_once_and_holds_no_numbers_that_change():
    one, two = (drifting_state([(0, n, n)], n) for n in (3, 9))
    layouts = [sections(encode(Snapshot(models=[model_dict(s)], written_at=NOW)))["layout"]
               for s in (one, two)]
    assert layouts[0] == layouts[1]  # other counts, the same layout: parsed once
    assert json.loads(layouts[0])["models"][0]["drift"]["reference"] == 0


json_value = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats()
                          | st.text(max_size=3),
                          lambda inner: st.lists(inner, max_size=2)
                          | st.dictionaries(st.text(max_size=3), inner, max_size=2),
                          max_leaves=4)
state_key = st.sampled_from(["info", "loaded_at", "trained_at", "validation", "objectives",
                             "gauges", "extras", "exemplars"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(state_key, json_value, min_size=1, max_size=3))
def test_a_crafted_state_section_is_refused_or_reported_never_raised(changes):
    state = drifting_state([(0, 4, 4)], 2)
    state.set_gauge("inferwatch_requests_in_flight", (), 1)
    parts = sections(encode(Snapshot(models=[model_dict(state)], written_at=NOW)))
    header = json.loads(parts["state"])
    header["models"][0].update(changes)
    try:
        raw = decode(framed({**parts, "state": json.dumps(header).encode()}))
    except SnapshotError:
        return
    good = decode(encode(Snapshot(models=[model_dict(state)], written_at=NOW)))
    (view,) = merge_view([good, raw], NOW, on_error=lambda exc: None).states
    assert view.counters["inferwatch_requests_total"][("ok",)] == 8.0  # the rest still adds
    assert model_families([view], NOW)


def test_exemplars_of_every_worker_reach_the_merged_view_the_newest_per_bucket():
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    states = []
    for worker, (trace, at) in enumerate((("aaaa", 10.0), ("bbbb", 20.0), ("cccc", 5.0))):
        state = ModelState("fraud", "1")
        hist = state.histogram("inferwatch_request_duration_seconds", (), (0.1, 1.0))
        hist.observe(np.array([0.05, 0.5]))
        hist.exemplar(0.05, trace, at)  # the same bucket in every worker
        if worker == 2:
            hist.exemplar(0.5, "dddd", 1.0)  # a bucket only this worker has one for
        states.append(state)
    raws = [decode(encode(Snapshot(models=[model_dict(s)], written_at=NOW))) for s in states]
    (view,) = merge_view(raws, NOW).states
    exact = ModelState.from_dict(states[0].to_dict())
    for other in states[1:]:
        exact.merge(ModelState.from_dict(other.to_dict()))
    merged = view.histograms["inferwatch_request_duration_seconds"][()]
    assert merged.exemplars == exact.histograms["inferwatch_request_duration_seconds"][()].exemplars
    assert merged.exemplars == {0: ("bbbb", 0.05, 20.0), 1: ("dddd", 0.5, 1.0)}

    class Source:
        def collect(self):
            return model_families([view], NOW)

    text = openmetrics(Source()).decode()
    traces = {s.exemplar.labels["trace_id"] for f in text_string_to_metric_families(text)
              for s in f.samples if s.exemplar}
    assert traces == {"bbbb", "dddd"}
    (back,) = exact_models(raws[2])  # folding a dead worker keeps its exemplars
    assert back.histograms["inferwatch_request_duration_seconds"][()].exemplars[1][0] == "dddd"


def test_a_layout_pointing_at_a_missing_shared_reference_is_refused():
    data = encode(Snapshot(models=[model_dict(drifting_state([(0, 5, 5)], 3))], written_at=NOW))
    parts = sections(data)
    layout = json.loads(parts["layout"])
    layout["shared"] = []
    layout["models"][0]["drift"]["reference"] = 3
    with pytest.raises(SnapshotError, match="points at no shared document"):
        decode(framed({**parts, "layout": json.dumps(layout).encode()}))
