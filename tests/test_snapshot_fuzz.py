"""Damaged and crafted snapshot files: decode refuses them or the merge serves a valid view.

Every input ends in SnapshotError at decode, or in a merged view that renders, parses with
prometheus_client's parser, and whose counters are the sums of the decoded inputs. The
crafted files keep valid checksums (they are recomputed), so they reach the semantic
checks.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.core.encode import Encoder
from inferwatch.core.state import ModelState
from inferwatch.multiproc.merge import merge_view
from inferwatch.multiproc.snapshot_format import (
    _CRC,
    _LENGTHS,
    MAGIC,
    SECTIONS,
    RawSnapshot,
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

def worker_state(seed: int, error_type: str = "ValueError", *, drift_rows: bool = True
                 ) -> ModelState:
    rng = np.random.default_rng(seed)
    tracker = FeatureTracker(REFERENCE)
    if drift_rows:
        for ago in (0, 2):
            at, rows = NOW - ago * 600.0, 5 + seed
            tracker.check_inputs([{"x": float(v), "color": c} for v, c in zip(
                rng.normal(size=rows), rng.choice(["red", "blue", "pink"], size=rows))], at)
            tracker.check_predictions({"value": rng.random(rows)}, rows, at)
    state = ModelState("fraud", "1", info={"framework": "sklearn"}, loaded_at=NOW - 100)
    state.inc("inferwatch_requests_total", ("ok",), 10 + seed)
    state.inc("inferwatch_errors_total", (error_type,), 2)
    hist = state.histogram("inferwatch_request_duration_seconds", (), (0.1, 1.0))
    hist.observe(rng.random(20))
    hist.exemplar(0.05, f"trace{seed}", NOW)
    for at in (NOW, NOW - 200):
        state.summary("inferwatch_prediction", ("value",)).observe(rng.normal(size=30), at)
    state.summary("inferwatch_prediction_confidence").observe(rng.random(10), NOW - 700)
    state.set_gauge("inferwatch_requests_in_flight", (), 1)
    state.extras["drift"] = tracker.drift
    return state


def snapshot(state: ModelState) -> bytes:
    return encode(Snapshot(models=[model_dict(state)], written_at=NOW,
                           internal_errors={"multiproc_read": 1.0}))


GOOD = (snapshot(worker_state(0)), snapshot(worker_state(1, "KeyError")))
EMPTY_DRIFT = snapshot(worker_state(2, drift_rows=False))


def rewritten(data: bytes, section: str, change: Callable[[Any], None]) -> bytes:
    parts = sections(data)
    document = json.loads(parts[section])
    change(document)
    return framed({**parts, section: json.dumps(document).encode()})


def counter_sums(raws: list[RawSnapshot]) -> dict[tuple, float]:
    sums: dict[tuple, float] = {}
    for raw in raws:
        for model in raw.layout.models:  # type: ignore[union-attr]
            for at, (metric, labels) in enumerate(model.counters, model.additive_at):
                key = (model.key, metric, labels)
                sums[key] = sums.get(key, -0.0) + float(raw.values[at])
    return sums


def merged_or_refused(blobs: list[bytes]) -> list[RawSnapshot]:
    """Decode each blob (SnapshotError skips it), merge, render, parse; check the sums."""
    raws = []
    for data in blobs:
        try:
            raws.append(decode(data))
        except SnapshotError:
            continue
    view = merge_view(raws, NOW, on_error=lambda exc: None)
    page = Encoder().page()
    view.encode_into(page, NOW)
    families = list(text_string_to_metric_families(page.text()))
    assert families
    merged = {(state.model, state.version): state for state in view.states}
    for (key, metric, labels), total in counter_sums(raws).items():
        found = merged[key].counters[metric][labels]
        assert found == total or (np.isnan(found) and np.isnan(total))
    for raw in raws:
        try:
            exact_models(raw)  # what a fold of this file does
        except SnapshotError:
            pass
        assert all(isinstance(name, str) for name in raw.folded)
    return raws


# --- found defects, each with the input that broke it --------------------------------------

def _process_counter(value: Any) -> Callable[[Any], None]:
    return lambda state: state.__setitem__("internal_errors", {"multiproc_read": value})


@pytest.mark.parametrize("value", ["abc", None, [1], 10 ** 400, float("nan")])
def test_a_process_counter_that_is_not_a_count_is_refused_at_decode(value):
    # Before: merge_view raised ValueError / TypeError / OverflowError from float().
    data = rewritten(GOOD[0], "state", _process_counter(value))
    with pytest.raises(SnapshotError):
        decode(data)
    merged_or_refused([GOOD[1], data])


def test_folded_names_that_are_not_a_list_are_refused_at_decode():
    # Before: RawSnapshot.folded raised TypeError in the fold.
    data = rewritten(GOOD[0], "state", lambda state: state.__setitem__("folded", 5))
    with pytest.raises(SnapshotError):
        decode(data)


@pytest.mark.parametrize("info", [{"__name__": "x"}, {"model": "other"}, {"a b": "x"},
                                  {"task": 5}])
def test_info_keys_that_are_not_label_names_or_relabel_the_model_are_refused(info):
    # Before: __name__ made rendering raise; "model" relabelled every series of the model.
    def change(state: Any) -> None:
        state["models"][0]["info"] = info

    with pytest.raises(SnapshotError):
        decode(rewritten(GOOD[0], "state", change))


@pytest.mark.parametrize("where", ["exemplar", "gauge", "validation"])
def test_a_json_integer_past_any_float_is_reported_not_raised(where):
    # Before: OverflowError escaped merge_view (exemplar, gauge) and exact_models.
    def change(state: Any) -> None:
        model = state["models"][0]
        if where == "exemplar":
            model["exemplars"] = [[0, [[0, "t", 10 ** 400, 1.0]]]]
        elif where == "gauge":
            model["gauges"] = {"inferwatch_requests_in_flight": [[[], 10 ** 400]]}
        else:
            model["validation"] = {"auc": 10 ** 400}

    merged_or_refused([GOOD[1], rewritten(GOOD[0], "state", change)])


def _drift_window(name: str, key: str, value: Any) -> Callable[[Any], None]:
    def change(layout: Any) -> None:
        layout["models"][0]["drift"][name][key] = value
    return change


@pytest.mark.parametrize("change", [
    _drift_window("features", "max_age_seconds", float("nan")),
    _drift_window("features", "max_age_seconds", 0),
    _drift_window("outputs", "max_age_seconds", -1.0),
    _drift_window("features", "bins", [1]),
    lambda layout: layout.__setitem__("shared", ["{}"]),
    lambda layout: layout.__setitem__("shared", ["[1]"]),
])
def test_a_drift_layout_the_merge_cannot_build_or_score_is_refused(change):
    # Before: DriftWindow, Reference or the scorer raised out of merge_view or rendering.
    for data in (GOOD[0], EMPTY_DRIFT):
        crafted = rewritten(data, "layout", change)
        with pytest.raises(SnapshotError):
            decode(crafted)
        merged_or_refused([crafted])


def test_huge_drift_bins_in_a_tiny_file_allocate_nothing():
    # Before: windows with no used bucket passed decode, and the merge allocated
    # age_buckets x 10**10 int64 bins (MemoryError, or the OOM killer).
    crafted = rewritten(EMPTY_DRIFT, "layout", _drift_window("features", "bins", [10 ** 10]))
    tracemalloc.start()
    try:
        with pytest.raises(SnapshotError):
            decode(crafted)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * len(crafted) + (16 << 20)


def _duplicated_counter(data: bytes) -> bytes:
    parts = sections(data)
    layout = json.loads(parts["layout"])
    counters = layout["models"][0]["counters"]
    counters.insert(1, counters[0])
    values = np.frombuffer(parts["values"], dtype="<f8").tolist()
    values.insert(1, values[0])
    return framed({**parts, "layout": json.dumps(layout).encode(),
                   "values": np.array(values, dtype="<f8").tobytes()})


def test_a_series_laid_out_twice_is_refused_not_added_once():
    # Before: both copies mapped to one merged slot and numpy's fancy += added only one.
    with pytest.raises(SnapshotError, match="twice"):
        decode(_duplicated_counter(GOOD[0]))
    merged_or_refused([GOOD[1], _duplicated_counter(GOOD[0])])


def test_a_model_laid_out_twice_is_refused():
    # Before: both copies' counters mapped to one merged slot: 3 + 3 merged as 3.
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), 3)
    parts = sections(encode(Snapshot(models=[model_dict(state)])))
    layout, header = json.loads(parts["layout"]), json.loads(parts["state"])
    layout["models"] *= 2
    header["models"] *= 2
    crafted = framed({**parts, "layout": json.dumps(layout).encode(),
                      "state": json.dumps(header).encode(), "values": parts["values"] * 2,
                      "exact": json.dumps(json.loads(parts["exact"]) * 2).encode()})
    merged_or_refused([crafted])
    with pytest.raises(SnapshotError, match="twice"):
        decode(crafted)


@pytest.mark.parametrize("summary_settings", [[[2.0], 600, 5, 0.01],
                                              [[float("nan")], 600, 5, 0.01],
                                              [[0.5], 600, 0, 0.01],
                                              [[0.5], float("nan"), 5, 0.01],
                                              [[0.5], 600, 5, 5.0]])
def test_quantile_settings_the_renderer_refuses_are_refused_at_decode(summary_settings):
    # Before: rendering raised "quantiles must be in [0, 1]"; the others were kept unchecked.
    def change(layout: Any) -> None:
        layout["models"][0]["summary_settings"] = summary_settings

    with pytest.raises(SnapshotError):
        decode(rewritten(GOOD[0], "layout", change))


@pytest.mark.parametrize("bounds", [[0.1, float("inf")], [float("-inf"), 1.0]])
def test_infinite_histogram_bounds_are_refused(bounds):
    # Before: accepted; an infinite bound renders a second le="+Inf" bucket.
    def change(layout: Any) -> None:
        layout["models"][0]["histograms"][0][2] = bounds

    with pytest.raises(SnapshotError):
        decode(rewritten(GOOD[0], "layout", change))


def test_json_nested_past_the_parser_stack_is_a_snapshot_error():
    # Before: RecursionError escaped decode.
    parts = sections(GOOD[0])
    with pytest.raises(SnapshotError):
        decode(framed({**parts, "state": b"[" * 200_000 + b"]" * 200_000}))


def test_window_runs_whose_int64_sum_wraps_are_refused():
    # Before: runs of about 2**62 bins summed past 2**64 back to the file's real total, so
    # the exact-bins check passed and every later run started at a wrong place.
    parts = sections(GOOD[0])
    table = np.frombuffer(parts["table"], dtype="<i8").copy()
    first, second = int(table[3] + table[5]), int(table[9] + table[11])  # POS_N + NEG_N
    table[3], table[5] = (1 << 62) + first, 1 << 62
    table[9], table[11] = 1 << 62, (1 << 62) + second
    with pytest.raises(SnapshotError):
        decode(framed({**parts, "table": table.tobytes()}))


# --- the fuzzers ---------------------------------------------------------------------------

json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats()
    | st.sampled_from([10 ** 400, -(1 << 63), 1 << 62, 2 ** 53]) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=3), inner, max_size=2), max_leaves=4)


def replaced(document: Any, path: list[int], value: Any) -> Any:
    """`document` with the slot that `path` walks to replaced by `value`."""
    node = document
    for step in path:
        if not isinstance(node, (dict, list)) or not node:
            break
        key = sorted(node)[step % len(node)] if isinstance(node, dict) else step % len(node)
        if not isinstance(node[key], (dict, list)) or step % 3 == 0:
            node[key] = value
            break
        node = node[key]
    return document


fuzz = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@fuzz
@given(st.integers(0, 1), st.sampled_from(["layout", "state", "exact"]),
       st.lists(st.integers(0, 60), min_size=1, max_size=8), json_value)
@example(0, "state", [8, 8], [])  # the process counters' values: float([]) raised
@example(0, "state", [6, 6], None)  # folded: None raised in RawSnapshot.folded
def test_json_sections_rewritten_with_valid_checksums(which, section, path, value):
    parts = sections(GOOD[which])
    document = replaced(json.loads(parts[section]), path, value)
    crafted = framed({**parts, section: json.dumps(document).encode()})
    merged_or_refused([GOOD[1 - which], crafted])


@fuzz
@given(st.integers(0, 1), st.sampled_from(["values", "table", "bins"]),
       st.dictionaries(st.integers(0, 10 ** 6), st.integers(0, 10 ** 6), max_size=3))
def test_numbers_rewritten_with_valid_checksums(which, section, changes):
    parts = sections(GOOD[which])
    dtype = {"values": "<f8", "table": "<i8", "bins": np.dtype(
        json.loads(parts["state"])["dtype"])}[section]
    array = np.frombuffer(parts[section], dtype=dtype).copy()
    floats = [float("nan"), float("inf"), -float("inf"), -1.0, 1e300, 2.0 ** 53, 0.5]
    ints = [-(1 << 63), -2, -1, 0, 1, 2, 7, 2048, 1 << 31, 1 << 62, (1 << 63) - 1]
    for index, pick in changes.items():
        if section == "values":
            array[index % array.size] = floats[pick % len(floats)]
        elif section == "table":
            array[index % array.size] = ints[pick % len(ints)] if pick % 2 else pick % 5000
        else:
            array[index % array.size] = pick % 256
    merged_or_refused([GOOD[1 - which], framed({**parts, section: array.tobytes()})])


@fuzz
@given(st.integers(0, 1), st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)),
                                   max_size=4),
       st.integers(-64, 64), st.booleans(), st.sampled_from([None, *SECTIONS]))
def test_bytes_flipped_cut_extended_or_sections_spliced(which, flips, cut, fix, splice):
    data = bytearray(GOOD[which])
    if splice is not None:  # one section from the other worker's file, checksums redone
        data = bytearray(framed({**sections(GOOD[which]),
                                 splice: sections(GOOD[1 - which])[splice]}))
    for index, byte in flips:
        data[index % len(data)] = byte
    data = data[:cut] if cut < 0 else data + bytes(cut)
    if fix and len(data) > len(MAGIC) + _LENGTHS.size + _CRC.size:
        try:
            parts = sections(bytes(data))
            if sum(map(len, parts.values())) + len(MAGIC) + _LENGTHS.size <= len(data):
                data = bytearray(framed(parts))
        except Exception:  # a header this cut cannot be re-framed
            pass
    merged_or_refused([GOOD[1 - which], bytes(data)])


def test_a_huge_length_in_the_frame_is_refused_without_allocating():
    data = bytearray(GOOD[0])
    for section in range(len(SECTIONS)):
        crafted = bytearray(data)
        at = len(MAGIC) + 1 + 8 * section
        crafted[at:at + 8] = (1 << 60).to_bytes(8, "big")
        tracemalloc.start()
        try:
            with pytest.raises(SnapshotError):
                decode(bytes(crafted))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4 * len(data) + (1 << 20)


def test_workers_with_other_layouts_merge_series_by_series():
    # Another bin layout of the drift reference and other quantile settings in one worker.
    other = worker_state(3)
    other.summary_settings = other.summary_settings.__class__((0.5,), 600.0, 5, 0.02)
    raws = merged_or_refused([GOOD[0], GOOD[1], snapshot(other)])
    assert len(raws) == 3


def test_the_reserved_info_labels_are_the_options_ones():
    from inferwatch.core.options import RESERVED_LABELS
    from inferwatch.multiproc import snapshot_format

    assert frozenset(RESERVED_LABELS) == snapshot_format.RESERVED_LABELS
