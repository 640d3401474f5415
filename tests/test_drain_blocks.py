"""A chunk of calls of many rows is folded a block of calls at a time (so that no temporary
array of the fold grows past what malloc keeps): what the blocks record is what one fold of
the whole chunk records, every call counted once, failures and request records included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from inferwatch.core import monitor_drain
from inferwatch.core.pending_calls import SLICE_ROWS
from inferwatch.core.registry import Registry
from inferwatch.serving.bridge import InferwatchCollector


class _Classifier:
    """A binary classifier whose probabilities come from its input's first column; it
    raises on a row whose first value is negative."""

    classes_ = np.array([0, 1])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if (x[:, 0] < 0).any():
            raise ValueError("negative")
        return np.column_stack([1.0 - x[:, 0], x[:, 0]])


def _scrape(registry: Registry) -> dict[tuple[str, tuple], float]:
    page = CollectorRegistry()
    page.register(InferwatchCollector(registry))
    samples = {}
    for family in text_string_to_metric_families(generate_latest(page).decode()):
        for sample in family.samples:
            if sample.name.startswith("inferwatch_request_duration_seconds") or \
                    sample.name.endswith("_timestamp_seconds"):
                continue  # times differ from run to run; the latencies' count is checked
            labels = tuple(sorted((k, v) for k, v in sample.labels.items()
                                  if k not in ("model", "model_version")))
            samples[(sample.name, labels)] = sample.value
    return samples


def _run(block_rows: int) -> tuple[dict, list[tuple[int, int]], int]:
    """Calls of 100 rows (and failures and request-id calls among them) drained twice,
    the second drain read with blocks of `block_rows` rows: what /metrics says, the calls
    per block of that drain, and the latencies counted."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(monitor_drain, "DRAIN_BLOCK_ROWS", block_rows)
        return _calls_drained(patch)


def _calls_drained(patch: pytest.MonkeyPatch) -> tuple[dict, list[tuple[int, int]], int]:
    registry = Registry(drain_interval=3600)
    model = inferwatch.instrument(_Classifier(), name="m", version="1", registry=registry)
    mon = registry.monitor("m", "1")
    rng = np.random.default_rng(7)
    batches = [rng.random((100, 2)) for _ in range(40)]
    for x in batches[:4]:  # a first drain measures the rows per call
        model.predict_proba(x)
    mon.drain()
    blocks: list[tuple[int, int]] = []
    original = monitor_drain.MonitorDrain._fold

    def counted(self, now, rest, settings, calls, proba_calls, *others):
        blocks.append((len(calls), len(proba_calls)))
        return original(self, now, rest, settings, calls, proba_calls, *others)

    patch.setattr(monitor_drain.MonitorDrain, "_fold", counted)
    for index, x in enumerate(batches[4:]):
        if index % 9 == 4:
            with pytest.raises(ValueError):
                model.predict_proba(-x)
        if index % 7 == 3:
            model.predict_proba(x, request_id=f"r-{index}")
        model.predict_proba(x)
    mon.drain()
    samples = _scrape(registry)
    latencies = mon.state.histograms["inferwatch_request_duration_seconds"][()].counts.sum()
    return samples, blocks, int(latencies)


def test_blocks_record_what_one_fold_of_the_chunk_records() -> None:
    whole, whole_blocks, whole_latencies = _run(10**9)
    blocked, blocks, latencies = _run(250)  # two calls of 100 rows a block
    assert whole_blocks == [(0, 36)]
    assert len(blocks) == 18 and all(proba <= 2 for _, proba in blocks)
    assert sum(proba for _, proba in blocks) == 36
    assert latencies == whole_latencies == 4 + 36 + 4 + 5  # calls, failures, request ids
    assert whole[("inferwatch_requests_total", (("outcome", "ok"),))] == 4 + 36 + 5
    assert whole[("inferwatch_errors_total", (("error_type", "ValueError"),))] == 4
    assert set(blocked) == set(whole)
    for key, value in whole.items():
        if key[0].endswith("_sum"):
            # Sums add block by block: a float sum may round apart in its last bits. Counts,
            # bins (and so quantiles) and classes are the same.
            assert math.isclose(blocked[key], value, rel_tol=1e-12), key
        else:
            assert blocked[key] == value, key


def test_rows_per_call_follow_the_calls_after_a_huge_one() -> None:
    """A sliced batch's later slices are folded apart: the rows per call that size the next
    chunk's blocks count its first slice only, and a chunk of small calls after it sizes
    them back to one row a call; every call is counted once, with all its rows."""
    registry = Registry(drain_interval=3600)
    fn = inferwatch.instrument(lambda x: x, name="m", version="1", registry=registry)
    mon = registry.monitor("m", "1")
    fn(np.zeros(4 * SLICE_ROWS))
    for _ in range(3):
        fn(np.zeros(1))
    mon.drain()
    assert mon._fold_rows_per_call == (SLICE_ROWS + 3) / 4
    for _ in range(100):
        fn(np.zeros(1))
    mon.drain()
    assert mon._fold_rows_per_call == 1.0
    sizes = mon.state.histograms["inferwatch_batch_size"][()]
    assert sizes.counts.sum() == 104 and sizes.sum == 4 * SLICE_ROWS + 103
