"""A list or tuple of small output arrays kept as its bytes (core/output_bytes.py): each call
recorded as it saw its arrays though the runtime refills them, and a drain leaves the state
it leaves when every call's container is copied, for any mix of layouts, dtypes, shapes,
parts that are no arrays, ``predict`` and ``predict_proba``."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.core import call_wrappers
from inferwatch.core.instrument import instrument
from inferwatch.core.output_bytes import OutputsLayout, StackedOutputs, freeze_outputs
from inferwatch.core.registry import Registry
from test_float_fold import _same
from tick_clock import thread_ticks

NOW = 1_700_000_000.0

_shapes = st.sampled_from([(), (1,), (3,), (1, 2), (2, 3), (0,), (1, 0)])
_dtypes = st.sampled_from([np.float64, np.float64, np.float32, np.int64, np.bool_])
_values = st.one_of(st.floats(0, 1), st.floats(-1e3, 1e3), st.just(float("nan")))


@st.composite
def _part(draw: st.DrawFn) -> object:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from([0.5, "fraud", None, [0.25]]))
    if kind == 1:
        return np.array(["a", None], dtype=object)
    shape, dtype = draw(_shapes), draw(_dtypes)
    size = int(np.prod(shape))
    values = np.array(draw(st.lists(_values, min_size=size, max_size=size)),
                      dtype=np.float64).reshape(shape)
    return values.astype(dtype) if dtype in (np.float64, np.float32) else \
        np.nan_to_num(values).astype(dtype)


@st.composite
def _results(draw: st.DrawFn) -> list:
    """A drain's results: the same layout again and again (a runtime's outputs), with
    others among them now and then."""
    container = draw(st.sampled_from([tuple, list]))
    rows, kind = draw(st.integers(1, 3)), draw(st.integers(0, 3))
    if kind == 0:  # a regressor's heads: 1-D floats, one length
        usual = container(np.array(draw(st.lists(_values, min_size=rows, max_size=rows)))
                          for _ in range(draw(st.integers(1, 3))))
    elif kind == 1:  # ONNX Runtime's classifier: labels beside a probability matrix
        p = np.array(draw(st.lists(st.floats(0, 1), min_size=rows, max_size=rows)))
        usual = container([(p > 0.5).astype(np.int64), np.column_stack([1 - p, p])])
    else:
        usual = container(draw(st.lists(_part(), min_size=1, max_size=3)))
    results = []
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.integers(0, 4)):
            # The same layout, other values: the runtime refills its buffers.
            results.append(container(
                (part * draw(st.floats(0, 1))).astype(part.dtype)
                if isinstance(part, np.ndarray) and part.dtype.kind in "fi" else part
                for part in usual))
        else:
            results.append(draw(st.sampled_from([tuple, list]))(
                draw(st.lists(_part(), min_size=0, max_size=3))))
    return results


class _Runtime:
    """A model whose methods hand back the containers it is given in turn, each array in
    one buffer it refills (and scribbles over after the call), as a runtime does."""

    def __init__(self) -> None:
        self.answers: list = []
        self.buffers: dict[tuple, np.ndarray] = {}

    def _next(self) -> object:
        answer = self.answers.pop(0)
        out = []
        for j, part in enumerate(answer):
            if isinstance(part, np.ndarray):
                key = (j, part.shape, part.dtype.str)
                buffer = self.buffers.setdefault(key, np.empty_like(part))
                buffer[...] = part
                out.append(buffer)
            else:
                out.append(part)
        return answer.__class__(out)

    def predict(self, x: object) -> object:
        return self._next()

    def predict_proba(self, x: object) -> object:
        return self._next()


def _state(drains: list[list], method: str, frozen: bool) -> tuple:
    registry = Registry(drain_interval=3600)
    try:
        runtime = _Runtime()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(time, "perf_counter", thread_ticks())
            if not frozen:
                patch.setattr(call_wrappers, "freeze_outputs", lambda *args: None)
            model = instrument(runtime, name="m", version="1", registry=registry)
            monitor = registry.monitors()[0]
            for step, results in enumerate(drains):
                for result in results:
                    runtime.answers.append(result)
                    getattr(model, method)([[0.0]])
                    for buffer in runtime.buffers.values():  # refilled before the drain
                        buffer[...] = 7
                monitor.drain(now=NOW + step)
        data = monitor.state.to_dict()
        data.pop("loaded_at")
        return data, sorted((name, sorted(cap._seen)) for name, cap in monitor._caps.items())
    finally:
        registry.close()


@settings(max_examples=150, deadline=None)
@given(drains=st.lists(_results(), min_size=1, max_size=3),
       method=st.sampled_from(["predict", "predict_proba"]))
def test_outputs_kept_as_bytes_leave_the_state_their_copies_leave(drains, method):
    frozen = _state(drains, method, True)
    copied = _state(drains, method, False)
    assert _same(frozen, copied), (frozen, copied)


def test_a_run_of_one_layout_is_joined_per_output():
    label, scores = np.array([1]), np.array([[0.2, 0.8]])
    layout, first = freeze_outputs([label, scores], None)
    label[0], scores[0] = 0, [0.9, 0.1]
    again, second = freeze_outputs([label, scores], layout)
    assert again is layout  # the drain tells a run by identity
    stacked = StackedOutputs(layout, [first, second])
    assert [output.tolist() for output in stacked.outputs] == [
        [1, 0], [[0.2, 0.8], [0.9, 0.1]]]
    assert [[part.tolist() for part in call] for call in stacked.thawed()] == [
        [[1], [[0.2, 0.8]]], [[0], [[0.9, 0.1]]]]
    assert stacked.nbytes == 2 * (8 + 16)
    assert stacked.float_columns() is None  # an integer label among them


@pytest.mark.parametrize("value", [
    (), [0.5, np.array([1.0])], (np.array(["a"], dtype=object),),
    [np.zeros(20_000)], (np.zeros(3), "label")])
def test_what_is_not_small_arrays_alone_is_left_to_the_copy(value):
    assert freeze_outputs(value, None) is None


def test_a_layout_reads_as_no_one_array():
    layout, _ = freeze_outputs((np.zeros(2), np.zeros((2, 2))), None)
    assert isinstance(layout, OutputsLayout)
    assert layout.shape == () and layout.dtype is None and layout.stackable
    assert not freeze_outputs((np.zeros((2, 0)),), None)[0].stackable


def _reference_raws(layout: OutputsLayout, value: object) -> list[bytes] | None:
    """What a layout's reader must give: every part's bytes when `value` has its container,
    length, and plain arrays of its dtypes and shapes, else None."""
    if value.__class__ is not layout.container or len(value) != len(layout.shapes):
        return None
    for part, dtype, shape in zip(value, layout.dtypes, layout.shapes):
        if type(part) is not np.ndarray or part.dtype != dtype or part.shape != shape:
            return None
    return [part.tobytes() for part in value]


def _changed(part: np.ndarray, how: str) -> object:
    if how == "dtype":
        return part.astype(np.float32 if part.dtype != np.float32 else np.float64)
    if how == "shape":
        return part.reshape(1, *part.shape) if part.size else np.zeros((*part.shape, 1))
    if how == "subclass":  # a masked array's bytes are not all it holds
        return np.ma.masked_array(part)
    return part.tolist()  # no array at all


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(st.tuples(_shapes, _dtypes), min_size=1, max_size=5),
       container=st.sampled_from([tuple, list]))
def test_a_layouts_reader_takes_exactly_the_containers_of_its_layout(parts, container):
    # One, two and three parts are read by code of their own, more by a loop: each gives
    # the bytes of a call of its layout, refilled with other values, and None for a call
    # that differs in any one part, in its container or in its length.
    first = container(np.zeros(shape, dtype=dtype) for shape, dtype in parts)
    layout, raws = freeze_outputs(first, None)
    assert layout.raws_of(first) == raws
    refilled = [np.full(shape, 3, dtype=dtype) for shape, dtype in parts]
    calls = [container(refilled), (list if container is tuple else tuple)(refilled),
             container(refilled[:-1]), container([*refilled, np.zeros(1)])]
    for j in range(len(refilled)):
        for change in ("dtype", "shape", "subclass", "no array"):
            changed = list(refilled)
            changed[j] = _changed(changed[j], change)
            calls.append(container(changed))
    for index, value in enumerate(calls):
        expected = _reference_raws(layout, value)
        assert (expected is not None) == (index == 0)
        assert layout.raws_of(value) == expected
        frozen = freeze_outputs(value, layout)
        if expected is not None:
            assert frozen == (layout, expected)  # the same layout object: a run stays one
        else:
            assert frozen is None or frozen[0] is not layout
