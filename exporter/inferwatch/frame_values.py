"""A small pandas DataFrame captured as its values, for the drain to read later.

A model's input is captured as the call sees it, since a caller may write into its request
frame once the model has answered. A DataFrame whose columns all share one numeric numpy
dtype is held by pandas as one 2-D block, and copying that block with the frame's row and
column labels (both immutable) costs about 0.4 us, against 9 to 11 us for ``frame.copy()``.
The drain checks the values as they are (quality/tracker.py) and rebuilds the frame only for
what needs a frame: an event log, or a frame whose columns are not the reference's.

>>> import pandas as pd
>>> frame = pd.DataFrame({"amount": [10.0], "age": [31.0]})
>>> seen = captured_frame(frame)
>>> frame.loc[0, "amount"] = 99.0  # the caller writes into its frame afterwards
>>> seen.frame().to_dict("records")
[{'amount': 10.0, 'age': 31.0}]
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

# The captured frame's values stay at most this large (the size below which inputs are
# copied at call time: core/call_input.COPY_LIMIT_BYTES); a larger frame is captured as
# before, by a shallow copy of the frame.
MAX_CAPTURED_BYTES = 64 * 1024
# Where DataFrame says it is defined: "pandas" from pandas 3, its module before.
PANDAS_FRAME_MODULES = frozenset({"pandas", "pandas.core.frame"})


class FrameValues:
    """A pandas DataFrame of one numeric block as a call saw it: a copy of the block
    (``values``, one row per column, as pandas holds it) and the frame's ``columns`` and
    ``index``.

    >>> import pandas as pd
    >>> seen = captured_frame(pd.DataFrame({"a": [1, 2], "b": [3, 4]}))
    >>> seen.rows().tolist(), list(seen.columns), seen.nbytes
    ([[1, 3], [2, 4]], ['a', 'b'], 32)
    """

    __slots__ = ("columns", "index", "values")

    def __init__(self, values: np.ndarray, columns: Any, index: Any) -> None:
        self.values = values
        self.columns = columns
        self.index = index

    @property
    def nbytes(self) -> int:
        """What the capture holds, for the bounds on what waits for the drain."""
        return int(self.values.nbytes)

    def __len__(self) -> int:
        return int(self.values.shape[1])

    def rows(self) -> np.ndarray:
        """The values one row per row of the frame, as ``frame.to_numpy()`` gives them."""
        return self.values.T

    def frame(self) -> Any:
        """The DataFrame again: the same values, dtype, columns and index."""
        pandas = sys.modules["pandas"]  # loaded: the captured frame came from it
        return pandas.DataFrame(self.values.T, index=self.index, columns=self.columns,
                                copy=False)


def captured_frame(frame: Any) -> FrameValues | None:
    """`frame` as :class:`FrameValues` when it is a plain pandas DataFrame held as one
    numeric (bool, integer or float) numpy block, in column order, of at most
    ``MAX_CAPTURED_BYTES``; None for any other object, which is captured as a frame. Reads
    pandas' block manager, so any pandas whose internals differ gets None. Never raises.

    >>> import pandas as pd
    >>> captured_frame(pd.DataFrame({"a": [1.0], "b": ["x"]})) is None  # two blocks
    True
    """
    cls = frame.__class__
    if cls.__module__ not in PANDAS_FRAME_MODULES or cls.__name__ != "DataFrame":
        return None  # a subclass (GeoDataFrame) keeps its class, copied as a frame
    return captured_block(frame)


def captured_block(frame: Any) -> FrameValues | None:
    """:func:`captured_frame` of an object already known to be pandas' own DataFrame.

    >>> import pandas as pd
    >>> captured_block(pd.DataFrame({"a": [1.0]})).rows().tolist()
    [[1.0]]
    """
    try:
        manager = frame._mgr
        blocks = manager.blocks
        if len(blocks) != 1:
            return None
        block = blocks[0]
        values = block.values
        if values.__class__ is not np.ndarray or values.ndim != 2 or \
                values.dtype.kind not in "biuf" or values.nbytes > MAX_CAPTURED_BYTES:
            return None
        # The block's rows in the columns' order: one block after a consolidation or a
        # selection of columns always is, but nothing else promises it.
        placement = block._mgr_locs.indexer
        if placement.__class__ is not slice or placement.start != 0 or placement.step != 1:
            return None
        columns, index = manager.axes  # what frame.columns and frame.index read, at a third
        return FrameValues(values.copy(), columns, index)
    except Exception:  # a pandas of other internals: captured as a frame
        return None


def as_logged(value: Any) -> Any:
    """What an event log writes for a captured input: the frame again for
    :class:`FrameValues`, else `value` itself.

    >>> as_logged([1.0, 2.0])
    [1.0, 2.0]
    """
    return value.frame() if value.__class__ is FrameValues else value
