"""A runtime's list or tuple of output arrays, kept as their bytes until the drain.

ONNX Runtime's ``session.run`` returns a list of small numpy arrays per call (a label and
its probabilities, or several heads), as do TensorRT and other runtimes that may refill
the same buffers on every call; a model may return a tuple of arrays too. The call must
be recorded as it saw them, so the fast path keeps each array's bytes with an
:class:`OutputsLayout` of their container, dtypes and shapes, shared by every call of that
layout. The bytes cost a third of a copy; the look at each array's dtype and shape is made
by the layout's own reader (:attr:`OutputsLayout.raws_of`), without a loop for up to three
arrays, where a loop over the parts cost as much as copies did. In the drain, calls of one
layout join each output's bytes into one array (:class:`StackedOutputs`) instead of
checking and concatenating an array per call and output; any other drain reads each call's
container back as it was.

>>> import numpy as np
>>> label, score = np.array([1]), np.array([0.75])
>>> layout, raws = freeze_outputs([label, score], None)
>>> label[0] = 0  # the runtime refills its buffer: the call's own outputs were kept
>>> [part.tolist() for part in layout.thaw(raws)]
[[1], [0.75]]
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from inferwatch.core.call_input import COPY_LIMIT_BYTES

_ndarray = np.ndarray


class OutputsLayout:
    """The container class (tuple or list) and each array's dtype and shape of a call's
    outputs, kept in its pending call in place of the arrays while their bytes wait.

    It reads as no one array (``dtype`` None, ``shape`` empty): a fold that takes a call
    by its one array's shape passes such calls on.

    >>> layout = OutputsLayout(tuple, [np.dtype(np.float64)] * 2, [(1,), (1, 3)])
    >>> layout.nbytes
    32
    """

    __slots__ = ("container", "dtypes", "nbytes", "raws_of", "shapes", "stackable")
    dtype = None
    shape = ()

    def __init__(self, container: type, dtypes: list[np.dtype],
                 shapes: list[tuple[int, ...]]) -> None:
        self.container = container
        self.dtypes = dtypes
        self.shapes = shapes
        # value -> each part's bytes when `value` has this layout, else None (a function of
        # its own: the fast path calls it for each call's outputs).
        self.raws_of = _raws_reader(container, dtypes, shapes)
        self.nbytes = sum(dtype.itemsize * math.prod(shape)
                          for dtype, shape in zip(dtypes, shapes))
        # No axis of size 0, which a reshape to -1 rows cannot place (a 0-d array is one).
        self.stackable = all(all(shape) for shape in shapes)

    def thaw(self, raws: Sequence[bytes]) -> tuple | list:
        """The container of arrays a call returned, read from its bytes (each array new and
        writable, as a copy would be)."""
        return self.container([
            np.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)
            for raw, dtype, shape in zip(raws, self.dtypes, self.shapes)])


def freeze_outputs(value: tuple | list, last: OutputsLayout | None
                   ) -> tuple[OutputsLayout, list[bytes]] | None:
    """(the layout, each array's bytes) of a tuple or list of numpy arrays of numbers, at
    most ``COPY_LIMIT_BYTES`` in all; None for any other (a part that is no plain array,
    holds objects, or too many bytes), which the caller copies as before. `last`, the
    layout of the caller's last such call, is returned again for a call of the same one:
    the drain tells a run of calls of one layout by identity."""
    if last is not None:
        raws = last.raws_of(value)
        if raws is not None:
            return last, raws
    dtypes, shapes, raws = [], [], []
    total = 0
    for part in value:
        if part.__class__ is not _ndarray:
            return None
        dtype = part.dtype
        if dtype.hasobject:
            return None
        total += part.nbytes
        dtypes.append(dtype)
        shapes.append(part.shape)
        raws.append(part.tobytes())
    if not raws or total > COPY_LIMIT_BYTES:
        return None
    return OutputsLayout(value.__class__, dtypes, shapes), raws


def _raws_reader(container: type, dtypes: list[np.dtype], shapes: list[tuple[int, ...]]
                 ) -> Callable[[Any], list[bytes] | None]:
    """:attr:`OutputsLayout.raws_of` of a layout: the bytes of each part of a `container`
    whose parts are plain numpy arrays of these dtypes and shapes, else None. Each dtype by
    identity (numpy's own dtypes are shared), each shape by value: a layout is made only of
    parts that passed :func:`freeze_outputs`' checks, which these match.

    One, two and three parts (a runtime's usual outputs: a label, its probabilities, a
    score) are read without a loop, whose machinery cost as much as the bytes themselves.

    >>> reader = _raws_reader(list, [np.dtype(np.float64)], [(1,)])
    >>> reader([np.array([0.5])]) == [np.array([0.5]).tobytes()], reader((np.array([0.5]),))
    (True, None)
    """
    ndarray = _ndarray
    if len(dtypes) == 1:
        (d0,), (s0,) = dtypes, shapes

        def raws_of(value: Any) -> list[bytes] | None:
            if value.__class__ is container and len(value) == 1:
                (a,) = value
                if a.__class__ is ndarray and a.dtype is d0 and a.shape == s0:
                    return [a.tobytes()]
            return None
    elif len(dtypes) == 2:
        (d0, d1), (s0, s1) = dtypes, shapes

        def raws_of(value: Any) -> list[bytes] | None:
            if value.__class__ is container and len(value) == 2:
                a, b = value
                if a.__class__ is ndarray and b.__class__ is ndarray and a.dtype is d0 and \
                        b.dtype is d1 and a.shape == s0 and b.shape == s1:
                    return [a.tobytes(), b.tobytes()]
            return None
    elif len(dtypes) == 3:
        (d0, d1, d2), (s0, s1, s2) = dtypes, shapes

        def raws_of(value: Any) -> list[bytes] | None:
            if value.__class__ is container and len(value) == 3:
                a, b, c = value
                if a.__class__ is ndarray and b.__class__ is ndarray and \
                        c.__class__ is ndarray and a.dtype is d0 and b.dtype is d1 and \
                        c.dtype is d2 and a.shape == s0 and b.shape == s1 and c.shape == s2:
                    return [a.tobytes(), b.tobytes(), c.tobytes()]
            return None
    else:
        parts = len(dtypes)

        def raws_of(value: Any) -> list[bytes] | None:
            if value.__class__ is not container or len(value) != parts:
                return None
            raws = []
            for part, dtype, shape in zip(value, dtypes, shapes):
                if part.__class__ is not ndarray or part.dtype is not dtype or \
                        part.shape != shape:
                    return None
                raws.append(part.tobytes())
            return raws
    return raws_of


class StackedOutputs:
    """The outputs of many calls of one :class:`OutputsLayout`, each output's bytes joined
    into one array of every call's rows.

    >>> layout, first = freeze_outputs((np.array([1.0]), np.array([2.0, 3.0])), None)
    >>> _, second = freeze_outputs((np.array([4.0]), np.array([5.0, 6.0])), layout)
    >>> stacked = StackedOutputs(layout, [first, second])
    >>> [part.tolist() for part in stacked.thawed()[1]]
    [[4.0], [5.0, 6.0]]
    >>> stacked.float_columns() is None  # a call's outputs of different lengths
    True
    """

    __slots__ = ("calls", "layout", "outputs")

    def __init__(self, layout: OutputsLayout, raws: Sequence[Sequence[bytes]]) -> None:
        self.layout = layout
        self.calls = len(raws)
        # bytearray: writable arrays, as copies would be.
        self.outputs = [
            np.frombuffer(bytearray().join(map(operator.itemgetter(j), raws)), dtype=dtype)
            .reshape((-1, *shape[1:]) if shape else (-1,))
            for j, (dtype, shape) in enumerate(zip(layout.dtypes, layout.shapes))]

    @property
    def nbytes(self) -> int:
        """What the calls held while they waited."""
        return self.layout.nbytes * self.calls

    @property
    def rows_per_call(self) -> int:
        """The most rows of one call's output (a drain cuts a call of more than its slice
        into slices)."""
        return max(shape[0] if shape else 1 for shape in self.layout.shapes)

    def float_columns(self) -> tuple[dict[str, np.ndarray], list[int]] | None:
        """Outputs ``0``, ``1``, ... as columns, and each call's rows, as the drain reads
        many calls' tuples of 1-D float arrays of one length a call
        (``stacked_results.array_tuple_columns``); None for any other layout."""
        layout = self.layout
        lengths = {shape[0] if len(shape) == 1 else -1 for shape in layout.shapes}
        if len(lengths) != 1 or -1 in lengths or \
                any(dtype.kind != "f" for dtype in layout.dtypes):
            return None
        (rows,) = lengths
        return ({str(j): output for j, output in enumerate(self.outputs)},
                [rows] * self.calls)

    def thawed(self) -> list:
        """Each call's container of arrays, as it returned them (views of the joined
        outputs, one array per call and output)."""
        layout = self.layout
        container = layout.container
        sizes = [math.prod(shape[:1]) if shape else 1 for shape in layout.shapes]
        calls = []
        for i in range(self.calls):
            parts = []
            for output, shape, size in zip(self.outputs, layout.shapes, sizes):
                part = output[i * size:(i + 1) * size]
                parts.append(part.reshape(shape) if not shape else part)
            calls.append(container(parts))
        return calls
