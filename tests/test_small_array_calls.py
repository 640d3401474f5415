"""Calls that return small numpy arrays: recorded exactly as each call returned them.

A wrapper keeps a small numeric result's bytes, and for a shape and dtype it has seen
before a layout of them in place of the array (call_input.ArrayLayout). Each property
compares a model that refills (or views) one buffer per call with one that returns a
fresh copy: both must record the same class counts, batch sizes and values, and the
caller must get the model's own object back.
"""

from __future__ import annotations

import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import inferwatch
from inferwatch.core.call_input import ArrayLayout, held_bytes
from inferwatch.core.registry import Registry

DTYPES = ["<f8", ">f8", "<f4", "<f2", "<i8", "<i4", "<i2", "<u1", "<u8", "?", "O"]
# What a call records, and nothing that depends on when it ran.
RECORDED = ("inferwatch_prediction", "inferwatch_batch_size", "inferwatch_predicted_class",
            "inferwatch_invalid_predictions", "inferwatch_requests_total")


@st.composite
def calls(draw):
    """A run of results: mostly of one shape and dtype (a model's usual output), now and
    then another."""
    dtype = draw(st.sampled_from(DTYPES))
    usual = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4))
    other = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    shapes = draw(st.lists(st.sampled_from([usual, usual, usual, other]), min_size=1,
                           max_size=40))
    source = np.dtype(np.float64) if dtype == "O" else np.dtype(dtype)
    results = []
    for shape in shapes:
        if source.kind == "f":
            elements = st.floats(0.0, 1.0, width=min(64, source.itemsize * 8))
        elif source.kind == "b":
            elements = st.booleans()
        else:
            elements = st.integers(0, 5)
        value = draw(hnp.arrays(source, shape, elements=elements))
        results.append(value.astype(object) if dtype == "O" else value)
    return results


def _recorded(registry: Registry, name: str) -> dict:
    """{(sample, labels other than the model and version): value} of model `name`."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from inferwatch.serving.bridge import InferwatchCollector

    registry.drain()
    prom = CollectorRegistry()
    prom.register(InferwatchCollector(registry))
    found = {}
    for family in text_string_to_metric_families(generate_latest(prom).decode()):
        for sample in family.samples:
            if sample.labels.get("model") != name or not sample.name.startswith(RECORDED):
                continue
            labels = tuple(sorted((k, v) for k, v in sample.labels.items()
                           if k not in ("model", "model_version")))
            # nan (a quantile of no values yet) as text: equal to itself
            found[(sample.name, labels)] = "nan" if sample.value != sample.value else \
                sample.value
    return found


def _run(results: list[np.ndarray], kind: str, method: str) -> tuple[dict, dict]:
    """Record `results` through a model refilling one buffer per shape (`kind` "buffer"),
    or returning a strided view of one ("view"), and through one returning fresh copies:
    what each recorded."""
    registry = Registry(drain_interval=3600)
    buffers: dict = {}

    def reused(i):
        value = results[i]
        key = (value.shape, value.dtype.str)
        if kind == "view":  # a non-contiguous view of a buffer the model keeps
            backing = buffers.setdefault(key, np.zeros((*value.shape, 2), dtype=value.dtype))
            backing[..., 0] = value
            out = backing[..., 0]
        else:
            out = buffers.setdefault(key, np.zeros(value.shape, dtype=value.dtype))
            out[...] = value
        return out

    def fresh(i):
        return results[i].copy()

    class Model:
        def __init__(self, fn):
            self.fn = fn

        def predict(self, i):
            return self.fn(i)

        def predict_proba(self, i):
            return self.fn(i)

    wrapped = {name: getattr(inferwatch.instrument(Model(fn), name=name, version="1",
                                                   registry=registry), method)
               for name, fn in (("reused", reused), ("fresh", fresh))}
    for i in range(len(results)):
        out = wrapped["reused"](i)
        assert out is buffers[(results[i].shape, results[i].dtype.str)] or kind == "view"
        np.testing.assert_array_equal(out, results[i])
        assert out.dtype == results[i].dtype and out.shape == results[i].shape
        assert wrapped["fresh"](i).shape == results[i].shape
    for buffer in buffers.values():  # what a later call would have left there
        buffer[...] = 1 if buffer.dtype.kind in "iub" else 7.5
    try:
        return _recorded(registry, "reused"), _recorded(registry, "fresh")
    finally:
        registry.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(results=calls(), kind=st.sampled_from(["buffer", "view"]),
       method=st.sampled_from(["predict", "predict_proba"]))
def test_reused_buffers_record_what_fresh_results_record(results, kind, method):
    reused, fresh = _run(results, kind, method)
    assert reused == fresh
    assert any(name == "inferwatch_requests_total" for name, _ in reused)


def test_one_shape_of_many_calls_is_recorded_exactly():
    """A thousand one-row calls across several drains' worth of hand-offs: every row is
    counted and summed, the refilled values each as the call saw them."""
    rows = [np.array([i / 1000.0]) for i in range(1000)]
    reused, fresh = _run(rows, "buffer", "predict")
    assert reused == fresh
    assert reused[("inferwatch_prediction_sum", (("output", "value"),))] == pytest.approx(499.5)
    assert reused[("inferwatch_batch_size_sum", ())] == 1000


def test_class_labels_of_a_refilled_buffer_are_counted_per_call():
    labels = [np.array([i % 3], dtype=np.int64) for i in range(300)]
    reused, fresh = _run(labels, "buffer", "predict")
    counts = {dict(k[1])["class"]: v for k, v in reused.items()
              if k[0] == "inferwatch_predicted_class_total"}
    assert counts == {"0": 100.0, "1": 100.0, "2": 100.0}
    assert reused == fresh


def test_a_fresh_small_result_is_not_kept_alive_until_the_drain():
    """Calls of a shape the wrapper has seen keep its bytes and a layout, not the array:
    a model's fresh outputs (and the buffers their views hold) are freed with the caller's
    reference, not a drain later."""
    registry = Registry(drain_interval=3600)
    alive = []

    def model(x):
        out = np.full(2, float(x))
        alive.append(weakref.ref(out))
        return out

    wrapped = inferwatch.instrument(model, name="m", version="1", registry=registry)
    try:
        for i in range(6):
            wrapped(i)
        assert sum(ref() is not None for ref in alive) <= 1  # the first of its shape
        recorded = _recorded(registry, "m")
        assert recorded[("inferwatch_prediction_sum", (("output", "value"),))] == 30.0
        assert recorded[("inferwatch_batch_size_sum", ())] == 12
    finally:
        registry.close()


def test_a_layout_is_sized_as_the_bytes_it_stands_for():
    """Pending calls are bounded by the bytes they hold (max_pending_bytes): a call with a
    layout holds its result's bytes."""
    layout = ArrayLayout(np.dtype(np.float32), (10, 3))
    assert (layout.dtype, layout.shape, layout.nbytes) == (np.dtype(np.float32), (10, 3), 120)
    assert held_bytes([layout, layout]) == 240
    assert ArrayLayout(np.dtype(np.int64), ()).nbytes == 8
