"""How a drain reads the calls the request path left: the columns of their tuples, results
and inputs kept as their bytes read back (stacked into one array where they share a shape),
and huge batches cut into slices drained one lock hold at a time.

What a call's tuple holds is written by the wrappers in :mod:`inferwatch.core.call_wrappers`;
:meth:`inferwatch.core.monitor.Monitor.fast_path` hands them the lists.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from inferwatch.core.column_arrays import (
    column_rows,
    is_column,
    numeric_column_array,
    rows_as_array,
)
from inferwatch.core.library_columns import (
    DTYPE_OF,
    SERIES_VALUES,
    frame_dtypes,
    is_pandas_frame,
    is_pandas_series,
    plain_series_arrays,
)
from inferwatch.core.output_bytes import OutputsLayout, StackedOutputs
from inferwatch.core.stacked_results import SHAPE_OF
from inferwatch.frame_values import FrameValues

# A numpy result with more rows than this is drained in slices of this many rows, each under
# the monitor lock on its own, so a scrape or a record_outcome caller waits for one slice
# (a few milliseconds), never for the whole batch (seconds for 10 million rows). The call
# and its batch size are counted with its first slice.
SLICE_ROWS = 1 << 17
_ndarray = np.ndarray
# A drain of more results than this looks for huge results other than numpy arrays (pandas
# Series, lists, dicts of outputs, frames) only among the calls that took at least
# LOOKED_AT_SECONDS: a look costs a Python call or more (a Series' length, about 0.2 us),
# which a drain of thousands of one-row results of a fast function would pay per call,
# while a call that makes more than SLICE_ROWS rows of them takes far longer than that.
SERIES_LOOKED_AT = 16
LOOKED_AT_SECONDS = 2e-6


class LaterSlices(NamedTuple):
    """The slices after the first of a huge batch, drained after the lock was let go.

    >>> LaterSlices(probabilities=False, slices=[np.zeros(3)]).probabilities
    False
    """

    probabilities: bool
    slices: Iterable[Any]


class ColumnSlices:
    """The slices of a huge column after its first, each cut as it is taken, with the lock
    let go: cutting a pandas Series costs tens of microseconds a slice, and cutting them all
    in the drain's first hold kept the lock half as long again as a slice's fold (a
    2,000,000-row text Series: 16 slices) and longer the larger the batch.

    >>> import pandas as pd
    >>> [len(piece) for piece in ColumnSlices(pd.Series(range(SLICE_ROWS + 5)))]
    [5]
    """

    __slots__ = ("column", "rows")

    def __init__(self, column: Any) -> None:
        self.column = column
        self.rows = len(column)

    def __iter__(self) -> Iterator[Any]:
        column, rows = self.column, self.rows
        for start in range(SLICE_ROWS, rows, SLICE_ROWS):
            yield column_rows(column, start, min(rows, start + SLICE_ROWS))


class LaterWhole(NamedTuple):
    """A huge result that no slice reads as the whole reads it (rows of dicts, text labels
    beside scores, a DataFrame of text): taken out of the drain's first hold of the lock,
    read with the lock let go, and folded in a hold of its own.

    >>> LaterWhole(probabilities=False, result=[{"label": "cat"}]).probabilities
    False
    """

    probabilities: bool
    result: object


class LaterRecord(NamedTuple):
    """A request-path call (``request_id=``, an event log, ``mon.request()``) whose huge
    result no slice reads as the whole reads it: counted in the drain's first hold, its
    result read and its outcome join made with the monitor's lock let go, then folded in a
    hold of its own.

    >>> LaterRecord(probabilities=False, record=None).probabilities
    False
    """

    probabilities: bool | None
    record: Any


class LaterLabelColumn(NamedTuple):
    """A request-path call whose result is a huge column that may hold class labels (an
    array of Python objects or bytes, a pandas, polars or pyarrow column: as
    ``record_joins.may_hold_labels`` looks at it first): counted in the drain's first hold,
    its rows read with the lock let go (whether they are text labels takes a pass over every
    row, 20 ms for two million objects), then folded a slice per hold of the lock as the
    fast path folds such a column, or read whole as a :class:`LaterRecord` is when its
    rows are anything but text labels.

    >>> LaterLabelColumn(None, np.array(["cat"], dtype=object), read=None).result.size
    1
    """

    record: Any
    result: object
    read: Any  # record_joins.label_column_reader's reader of its join rows


class LaterJoin(NamedTuple):
    """A request-path call's outcome entry that the drain's first hold left to make with the
    lock let go (the top column of each of a huge ``predict_proba`` matrix's first rows:
    580,000 of them take 10 ms), before the later slices are folded: `entry`, given the
    outcome cache, makes it.

    >>> LaterJoin(record=None, entry=lambda outcomes: ("r-1", None, None, 0.0)).entry(None)
    ('r-1', None, None, 0.0)
    """

    record: Any
    entry: Any


def first_slices(results: Sequence[object], probabilities: bool, rest: list[LaterSlices],
                  kinds: set[type], defer: bool = False,
                  durations: Sequence[float] | None = None
                  ) -> tuple[Sequence[object], dict[int, int]]:
    """`results` (of the classes `kinds`) with each huge numpy array cut to its first slice
    (the others go to `rest`), and {index: rows of the whole array} for the ones cut. With
    `defer`, a huge result of several outputs or rows that cannot be cut alike
    (:func:`unsliced_rows`) is left out and appended to `rest` whole (:class:`LaterWhole`).

    >>> rest, results = [], [np.zeros(SLICE_ROWS * 2 + 1), 1.0]
    >>> cut, rows = first_slices(results, False, rest, set(map(type, results)))
    >>> [len(c) if isinstance(c, np.ndarray) else c for c in cut], rows == {0: 2 * SLICE_ROWS + 1}
    ([131072, 1.0], True)
    >>> [len(s) for s in rest[0].slices] == [SLICE_ROWS, 1]
    True

    A drain of more than :data:`SERIES_LOOKED_AT` results looks into the others than
    numpy arrays only where `durations` (each call's, in the order of `results`) says the
    call took :data:`LOOKED_AT_SECONDS` or more and :func:`may_be_huge` does not rule the
    result out (:func:`_picked_looked_into`).
    """
    if durations is not None and len(results) > SERIES_LOOKED_AT and \
            not kinds <= _CUT_IN_ANY_DRAIN and max(durations) >= LOOKED_AT_SECONDS:
        slow = [index for index, (duration, result) in enumerate(zip(durations, results))
                if duration >= LOOKED_AT_SECONDS and result.__class__ not in _CUT_IN_ANY_DRAIN
                and may_be_huge(result)]
        if slow:
            return _picked_looked_into(results, probabilities, rest, defer, slow)
    if _ndarray in kinds and len(kinds) > 1 and len(results) <= SERIES_LOOKED_AT:
        # Arrays beside other results (a batch job's rows of dicts amid array answers):
        # the others are looked into as a drain of them alone is, not passed over with
        # the arrays.
        others = [index for index, result in enumerate(results)
                  if result.__class__ is not _ndarray]
        return _picked_looked_into(results, probabilities, rest, defer, others)
    whole: dict[int, int] = {}
    if _ndarray not in kinds:  # most drains hold no array at all
        # predict_proba's results of several outputs: a matrix per output is sliced, any
        # other is read apart.
        if (not probabilities or defer) and len(results) <= SERIES_LOOKED_AT and (
                not kinds.isdisjoint(_OUTPUT_CONTAINERS) or any(map(is_pandas_frame, kinds))
                or (defer and any(map(_is_polars_frame, kinds)))):
            results = _first_output_slices(results, probabilities, rest, whole, defer)
        # A drain of many calls was looked into at its slow calls alone (above): a
        # thousand one-row lists of a fast function pay no pass over them here.
        if len(results) > SERIES_LOOKED_AT or (
                kinds.isdisjoint(_ROW_CONTAINERS) and not any(map(is_column, kinds))):
            return results, whole
        results = _first_column_slices(huge_rows_as_arrays(results), probabilities, rest,
                                       whole)
        kinds = set(map(type, results))
        if _ndarray not in kinds:
            return results, whole
    arrays = results if len(kinds) == 1 else [r for r in results if r.__class__ is _ndarray]
    if all(not shape or shape[0] <= SLICE_ROWS for shape in set(map(SHAPE_OF, arrays))):
        return results, whole  # one look per distinct shape, not per array
    huge = {index: result.shape[0] for index, result in enumerate(results)
            if result.__class__ is _ndarray and result.ndim and result.shape[0] > SLICE_ROWS}
    if not huge:
        return results, whole
    cut = list(results)
    for index, rows in huge.items():
        array = cut[index]
        cut[index] = array[:SLICE_ROWS]
        rest.append(LaterSlices(probabilities, [array[start:start + SLICE_ROWS]
                                          for start in range(SLICE_ROWS, rows, SLICE_ROWS)]))
    whole.update(huge)
    return cut, whole


_OUTPUT_CONTAINERS = frozenset({dict, tuple, list})
_ROW_CONTAINERS = frozenset({tuple, list})
# Results with no rows to cut.
_ROWLESS = frozenset({float, int, str, bool, type(None), bytes, np.float64, np.float32,
                     np.int64, np.int32, np.bool_})
# ... and numpy arrays, which the fast path cuts however many results its drain holds.
_CUT_IN_ANY_DRAIN = _ROWLESS | {_ndarray}


def may_be_huge(result: object, rows: int | None = None) -> bool:
    """Whether `result` may hold more than `rows` rows (:data:`SLICE_ROWS` by default),
    told at a look: an array, list or tuple by its length, a dict, list or tuple of outputs
    by its outputs' lengths, a dataframe library's column or frame (whose length is a
    Python call) always.

    >>> may_be_huge([{"label": "cat", "score": 0.9}]), may_be_huge(np.zeros(SLICE_ROWS + 1))
    (False, True)
    >>> may_be_huge({"label": ["cat"] * 5}, rows=4), may_be_huge(0.5)
    (True, False)
    """
    cls = result.__class__
    if cls in _ROWLESS:
        return False
    rows = SLICE_ROWS if rows is None else rows  # read now: a test sets smaller slices
    if cls is dict:
        return any(_many_rows(part, rows) for part in result.values())  # type: ignore[attr-defined]
    if cls is list or cls is tuple:
        return len(result) > rows or (  # type: ignore[arg-type]
            len(result) <= SERIES_LOOKED_AT  # type: ignore[arg-type]
            and any(_many_rows(part, rows) for part in result))  # type: ignore[attr-defined]
    return _many_rows(result, rows) if cls is _ndarray else True


def _many_rows(part: object, rows: int) -> bool:
    """Whether one output holds more than `rows` rows (an array, a list or a tuple by its
    length, a dataframe library's column always); a scalar holds one."""
    cls = part.__class__
    if cls is _ndarray:
        return bool(part.ndim) and part.shape[0] > rows  # type: ignore[attr-defined]
    if cls is list or cls is tuple:
        return len(part) > rows  # type: ignore[arg-type]
    return cls not in _ROWLESS and (is_column(cls) or is_pandas_frame(cls))


def _picked_looked_into(results: Sequence[object], probabilities: bool,
                        rest: list[LaterSlices | LaterWhole], defer: bool,
                        picked: list[int]) -> tuple[Sequence[object], dict[int, int]]:
    """:func:`first_slices` of `results` with the ones at `picked` (a large drain's slow
    calls that may hold many rows, or the results beside a drain's arrays) looked into
    :data:`SERIES_LOOKED_AT` at a time as a drain of few results of their own is, and the
    others as a drain of them alone is. The results come back as they were when none was
    cut or left out; else those not at `picked` first, in their order, then the others', in
    theirs (a drain folds its calls' results as one batch: their order tells nothing)."""
    chosen = set(picked)
    others = [result for index, result in enumerate(results) if index not in chosen]
    kept, whole = first_slices(others, probabilities, rest, set(map(type, others)), defer)
    kept = list(kept)
    changed = bool(whole) or len(kept) != len(others)
    for start in range(0, len(picked), SERIES_LOOKED_AT):
        part = [results[index] for index in picked[start:start + SERIES_LOOKED_AT]]
        cut, part_whole = first_slices(part, probabilities, rest, set(map(type, part)), defer)
        whole.update((len(kept) + index, rows) for index, rows in part_whole.items())
        changed = changed or bool(part_whole) or len(cut) != len(part)
        kept.extend(cut)
    return (kept, whole) if changed else (results, {})


def _first_output_slices(results: Sequence[object], probabilities: bool,
                         rest: list[LaterSlices | LaterWhole], whole: dict[int, int],
                         defer: bool) -> Sequence[object]:
    """`results` with each huge result of several outputs (:func:`output_rows`) cut to its
    first slice, the others appended to `rest`, and `whole` filled as by
    :func:`first_slices`; with `defer`, each huge result :func:`unsliced_rows` tells left
    out, appended to `rest` whole."""
    cut = None
    for index, result in enumerate(results):
        rows = matrix_rows(result) if probabilities else output_rows(result)
        if rows <= SLICE_ROWS:
            if rows or not defer or unsliced_rows(result) <= SLICE_ROWS:
                if cut is not None:
                    cut.append(result)
                continue
            if cut is None:
                cut = list(results[:index])
            rest.append(LaterWhole(probabilities, result))
            continue
        if cut is None:
            cut = list(results[:index])
        whole[len(cut)] = rows
        cut.append(output_slice(result, 0, SLICE_ROWS))
        rest.append(LaterSlices(probabilities, [
            output_slice(result, start, start + SLICE_ROWS)
            for start in range(SLICE_ROWS, rows, SLICE_ROWS)]))
    return results if cut is None else cut


def matrix_rows(result: object) -> int:
    """The rows of a ``predict_proba`` result of one float matrix per output (scikit-learn's
    ``MultiOutputClassifier``), a list or tuple of 2-D float numpy arrays of one row count,
    which each row's probabilities are read by alone; 0 for anything else.

    >>> matrix_rows([np.zeros((3, 2)), np.ones((3, 4))]), matrix_rows([np.zeros((3, 2))] * 0)
    (3, 0)
    >>> matrix_rows([np.zeros((3, 2)), np.zeros(3)]), matrix_rows(np.zeros((3, 2)))
    (0, 0)
    """
    cls = result.__class__
    if (cls is not list and cls is not tuple) or not result:  # type: ignore[truthy-bool]
        return 0
    rows = -1
    for part in result:  # type: ignore[attr-defined]
        if part.__class__ is not _ndarray or part.ndim != 2 or part.dtype.kind != "f":
            return 0
        if rows == -1:
            rows = part.shape[0]
        elif part.shape[0] != rows:
            return 0
    return rows


def unsliced_rows(result: object) -> int:
    """The rows of a result that :func:`first_slices` cannot cut into slices read as the
    whole is read: a list or tuple of dicts, lists, tuples or arrays, one a row (a
    pipeline's ``[{"label", "score"}]``, ``to_dict("records")``); a dict, tuple or list of
    1-D outputs of one length that are not all numeric numpy arrays (text labels beside
    their scores), or of 2-D ones (a probability matrix per output); a pandas or polars
    DataFrame; a table of Python objects or bytes (labels a whole-column rule reads; the
    fast path cuts any numpy array into slices before it looks here). 0 for any other
    result (another numpy array, a column, numeric outputs, a list of scalars: each sliced
    or read as an array), told at a look.

    >>> unsliced_rows([{"label": "cat", "score": 0.9}] * 3)
    3
    >>> unsliced_rows({"label": np.array(["cat", "dog"]), "score": np.zeros(2)})
    2
    >>> unsliced_rows([0.5, 0.7]), unsliced_rows({"label": "cat", "score": 0.9})
    (0, 0)
    >>> unsliced_rows([np.array(0.5)]), unsliced_rows([np.zeros(2), np.array(1.0)])
    (0, 0)
    """
    cls = result.__class__
    if cls is _ndarray:
        return result.shape[0] if result.ndim == 2 and result.shape[1] > 1 and \
            result.dtype.kind in "OS" else 0  # type: ignore[attr-defined]
    if cls is list or cls is tuple:
        if not result:  # type: ignore[truthy-bool]
            return 0
        first = result[0].__class__  # type: ignore[index]
        if first in _ROWS_OF_ONE or (first is _ndarray and len(result) > SLICE_ROWS):  # type: ignore[arg-type]
            return len(result)  # type: ignore[arg-type]
        parts: Any = result
    elif cls is dict:
        parts = list(result.values())  # type: ignore[attr-defined]
    elif is_pandas_frame(cls) or _is_polars_frame(cls):
        try:
            return len(result)  # type: ignore[arg-type]
        except Exception:  # an odd frame: read whole, in the first hold
            return 0
    else:
        return 0
    if not parts:
        return 0
    if parts[0].__class__ is _ndarray:
        # 1-D outputs, or one (n, k) matrix per output (a MultiOutputClassifier's
        # predict_proba); not a mix, which no reader takes as rows of one length.
        width = parts[0].ndim
        if width not in (1, 2):  # a 0-d array (one scalar output) has no rows
            return 0
        rows = parts[0].shape[0]
    elif is_column(parts[0].__class__):
        width, rows = 1, len(parts[0])
    else:
        return 0
    for part in parts:
        if part.__class__ is _ndarray:
            if part.ndim != width or part.shape[0] != rows:
                return 0
        elif not is_column(part.__class__) or len(part) != rows:
            return 0
    return rows


# One row each: a list of these is a list of rows (of arrays: a list longer than a slice).
_ROWS_OF_ONE = frozenset({dict, list, tuple})


def _is_polars_frame(kind: type) -> bool:
    return kind.__name__ == "DataFrame" and kind.__module__.startswith("polars")


def _first_column_slices(results: Sequence[object], probabilities: bool,
                         rest: list[LaterSlices], whole: dict[int, int]) -> Sequence[object]:
    """`results` with each column of more than :data:`SLICE_ROWS` rows that is no numpy
    array yet (a pandas Series of categories, of nullable integers or of pandas 3's text; a
    polars Series or pyarrow array of text) cut to its first slice, its others appended to
    `rest`, and `whole` filled as by :func:`first_slices`. Each slice is a column of the same
    type (the same categories), read as the whole reads those rows, and made Python objects
    (where it is) in its own hold of the lock."""
    if len(results) > SERIES_LOOKED_AT:
        return results
    cut = None
    for index, result in enumerate(results):
        if not is_column(result.__class__) or len(result) <= SLICE_ROWS:  # type: ignore[arg-type]
            continue
        if cut is None:
            cut = list(results)
        rows = len(result)  # type: ignore[arg-type]
        whole[index] = rows
        cut[index] = column_rows(result, 0, SLICE_ROWS)
        rest.append(LaterSlices(probabilities, ColumnSlices(result)))
    return results if cut is None else cut


def output_rows(result: object) -> int:
    """The rows of a result of several outputs that a slice at a time records as the whole
    does: a dict, tuple or list of 1-D numeric numpy arrays of one length, or a pandas
    DataFrame of plain numeric numpy columns; 0 for anything else (read whole). Each output
    is then read row by row, by its dtype (a 2-D part, text or objects may be read by what
    the whole call holds: an ONNX classifier's labels beside its probabilities).

    >>> output_rows({"price": np.zeros(5), "eta": np.ones(5)}), output_rows((np.zeros(3),))
    (5, 3)
    >>> output_rows({"price": np.zeros(5), "eta": np.ones(4)}), output_rows([1.0, 2.0])
    (0, 0)
    """
    cls = result.__class__
    if cls is dict:
        parts = list(result.values())  # type: ignore[attr-defined]
    elif cls is tuple or cls is list:
        parts = result  # type: ignore[assignment]
    elif is_pandas_frame(cls):
        try:
            rows = len(result)  # type: ignore[arg-type]
            dtypes = frame_dtypes(result)
        except Exception:  # an odd frame: read whole
            return 0
        plain = all(isinstance(dtype, np.dtype) and dtype.kind in "fiub" for dtype in dtypes)
        return rows if plain and dtypes else 0
    else:
        return 0
    rows = -1
    for part in parts:  # type: ignore[union-attr]
        if part.__class__ is not _ndarray or part.ndim != 1 or part.dtype.kind not in "fiub":
            return 0
        if rows == -1:
            rows = part.shape[0]
        elif part.shape[0] != rows:
            return 0
    return max(rows, 0)


def output_columns(result: Any) -> list:
    """The outputs of a result :func:`output_rows` measured, each as its 1-D array, in
    order (a DataFrame's by position: a name may be given twice).

    >>> [part.tolist() for part in output_columns((np.arange(2), np.ones(2)))]
    [[0, 1], [1.0, 1.0]]
    """
    cls = result.__class__
    if cls is dict:
        return list(result.values())
    if cls is tuple or cls is list:
        return list(result)
    return [result.iloc[:, column].to_numpy() for column in range(result.shape[1])]


def output_slice(result: Any, start: int, stop: int) -> Any:
    """Rows `start` to `stop` of a result :func:`output_rows` measured, in its own class.

    >>> output_slice({"a": np.arange(5)}, 1, 3)["a"].tolist()
    [1, 2]
    """
    cls = result.__class__
    if cls is dict:
        return {name: part[start:stop] for name, part in result.items()}
    if cls is tuple or cls is list:
        return cls(part[start:stop] for part in result)
    return result.iloc[start:stop]


def huge_rows_as_arrays(results: Sequence[object], rows: int | None = None
                        ) -> Sequence[object]:
    """`results` with each result of more than `rows` rows (by default
    :data:`SLICE_ROWS`) that an array reads alike as that array, which can be cut into
    slices (and, under ``request_id=``, joined without a Python call per row); any other
    result as it is:

    - a pandas Series that numpy holds (numbers, objects), as its array (its name and index
      name are no output);
    - a numeric column that pandas' masks, polars or pyarrow hold, as the numpy array it
      reads as (:func:`~inferwatch.core.column_arrays.numeric_column_array`);
    - a list or tuple of plain ints, floats, or ``str`` (and None), as the array
      ``to_array`` reads it as (:func:`~inferwatch.core.column_arrays.rows_as_array`).

    Only a drain of at most :data:`SERIES_LOOKED_AT` results is looked into: a Series'
    length is a Python call (about half a microsecond), which a drain of thousands of
    one-row Series would pay per call, and a huge batch comes with few calls beside it.

    >>> import pandas as pd
    >>> huge = SLICE_ROWS + 1
    >>> [type(r).__name__ for r in huge_rows_as_arrays([pd.Series(np.zeros(huge)),
    ...                                                 pd.Series([1.0]), ["a"] * huge])]
    ['ndarray', 'Series', 'ndarray']
    """
    if len(results) > SERIES_LOOKED_AT:
        return results
    rows = SLICE_ROWS if rows is None else rows  # read now: a test sets smaller slices
    arrays = None
    for index, result in enumerate(results):
        cls = result.__class__
        if cls is list or cls is tuple:
            if len(result) <= rows:  # type: ignore[arg-type]
                continue
            held = rows_as_array(result)  # type: ignore[arg-type]
        elif is_pandas_series(cls) and len(result) > rows:  # type: ignore[arg-type]
            # Only a Series whose array numpy holds already: pandas 3's text, held by
            # pyarrow, costs a Python string a row to convert (100 ms a million rows), made
            # a slice per hold instead (_first_column_slices).
            if SERIES_VALUES(result).__class__ is not _ndarray:
                held = numeric_column_array(result)
            else:
                plain = plain_series_arrays([result])
                held = None if plain is None or plain[0].dtype.kind not in "fiubO" else \
                    plain[0]
        elif is_column(cls) and len(result) > rows:  # type: ignore[arg-type]
            held = numeric_column_array(result)
        else:
            continue
        if held is None:
            continue
        if arrays is None:
            arrays = list(results)
        arrays[index] = held
    return results if arrays is None else arrays


class LaterInputs(NamedTuple):
    """The slices after the first of a huge input, checked against the reference after the
    lock was let go; `window`: whether they enter the drift window (not for a call that
    raised); `checked_by`: the monitor's feature tracker when the input was cut (a slice is
    checked by that reference only, never by one a configure() set since).

    >>> LaterInputs(window=True, slices=[np.zeros((3, 2))], checked_by=None).window
    True
    """

    window: bool
    slices: list
    checked_by: object


def first_input_slices(inputs: list, window: bool, rest: list[LaterInputs | LaterSlices],
                       checked_by: Any) -> list:
    """`inputs` with each huge input that `checked_by` (the monitor's feature tracker) can
    check in slices (``row_slices``: a numeric array of its width, a frame) cut to its first
    slice, the others appended to `rest`; any other input as it is.

    >>> class Tracker:
    ...     def row_slices(self, value, rows):
    ...         return [value[i:i + rows] for i in range(0, len(value), rows)]
    >>> rest = []
    >>> cut = first_input_slices([np.zeros((SLICE_ROWS + 5, 2)), {"a": 1}], True, rest,
    ...                          Tracker())
    >>> [getattr(x, "shape", x) for x in cut], [s.shape for s in rest[0].slices]
    ([(131072, 2), {'a': 1}], [(5, 2)])
    """
    kinds = set(map(type, inputs))  # in C: most drains hold dicts, lists or small arrays
    if kinds <= _NEVER_SLICED:
        return inputs
    if _ndarray in kinds and kinds <= {_ndarray, *_NEVER_SLICED} and all(
            len(shape) != 2 or shape[0] <= SLICE_ROWS
            for shape in set(map(SHAPE_OF, [x for x in inputs if x.__class__ is _ndarray]))):
        return inputs  # one look per distinct shape, not per array
    if kinds == _CAPTURED_ONLY and all(
            shape[1] <= SLICE_ROWS for shape in set(map(SHAPE_OF, map(_VALUES_OF, inputs)))):
        return inputs  # frames captured as their values: rows are the block's second axis
    cut = None
    for index, value in enumerate(inputs):
        if value.__class__ in _NEVER_SLICED:
            continue
        try:  # rows, for an array and a frame alike: a frame per call costs one len() here
            if len(value) <= SLICE_ROWS:
                continue
        except Exception:  # no length (a scalar), or one that raises: checked whole
            continue
        slices = checked_by.row_slices(value, SLICE_ROWS)
        if not slices:
            continue
        if cut is None:
            cut = list(inputs)
        cut[index] = slices[0]
        rest.append(LaterInputs(window, slices[1:], checked_by))
    return inputs if cut is None else cut


# Inputs no check reads in slices: one row, or rows of Python objects.
_NEVER_SLICED = frozenset({dict, list, tuple, str, bytes, float, int, bool, type(None)})


_CAPTURED_ONLY = {FrameValues}
_VALUES_OF = operator.attrgetter("values")


_COLUMN_GETTERS = tuple(operator.itemgetter(i) for i in range(5))


def call_columns(pending: list[tuple], feature_count: int | None = None
                  ) -> tuple[Sequence[float], Sequence[object], Sequence,
                             tuple[np.ndarray | StackedOutputs, tuple | None] | None]:
    """Durations, results and kept inputs of fast-path calls, and (stacked, one call's
    shape) when every call returned an array of one shape and dtype, or (StackedOutputs,
    None) when every call returned a list or tuple of arrays of one layout.
    `feature_count`: the reference's, the width of inputs that may be joined.

    A call is (duration, result), (duration, result, input), or, for a small array,
    (duration, the array, input or None, its bytes when the call returned): the result is
    read from those bytes, as the call saw it (a runtime may have refilled the array since).
    A list or tuple of small arrays is kept the same way, as its
    :class:`~inferwatch.core.output_bytes.OutputsLayout` and a list of its arrays' bytes.
    A call whose input was a small numeric array keeps that array and its bytes:
    (duration, result, input array, its bytes, the result's bytes or None).

    >>> a = np.array([1.0]); calls = [(0.1, a, None, a.tobytes())]; a[0] = 9.0
    >>> _, results, _, (stacked, shape) = call_columns(calls * 2)
    >>> stacked.tolist(), shape
    ([1.0, 1.0], (1,))
    >>> x = np.zeros((1, 2)); calls = [(0.1, 0.5, x, x.tobytes(), None)]; x[0] = 7.0
    >>> _, results, kept, _ = call_columns(calls * 3)
    >>> results, kept[0].tolist()
    ([0.5, 0.5, 0.5], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    """
    lengths = set(map(len, pending))
    if len(lengths) == 1:
        width = lengths.pop()
        # A map per column: zip(*pending) would make an iterator per call, and those
        # thousand tracked objects set off a garbage collection in every drain.
        columns = [list(map(getter, pending)) for getter in _COLUMN_GETTERS[:width]]
        if width == 2:
            return columns[0], columns[1], (), None
        if width == 3:
            return columns[0], columns[1], columns[2], None
        if width == 4:
            kept = [i for i in columns[2] if i is not None]  # `is`: inputs may be DataFrames
            return (columns[0], *_arrays_from_bytes(columns[1], columns[3], kept))
        kept = _inputs_from_bytes(columns[2], columns[3], feature_count)
        raws = columns[4]
        if raws.count(None) == len(raws):
            return columns[0], columns[1], kept, None
        if None not in raws:
            return (columns[0], *_arrays_from_bytes(columns[1], raws, kept))
        return columns[0], [r if raw is None else array_from_bytes(r, raw)
                            for r, raw in zip(columns[1], raws)], kept, None
    durations, results, kept = [], [], []
    for call in pending:  # calls of several kinds in one drain: one at a time
        durations.append(call[0])
        width = len(call)
        if width == 5:
            results.append(call[1] if call[4] is None else array_from_bytes(call[1], call[4]))
            kept.append(array_from_bytes(call[2], call[3]))
        elif width == 4:
            results.append(array_from_bytes(call[1], call[3]))
            if call[2] is not None:
                kept.append(call[2])
        else:
            results.append(call[1])
            if width == 3:
                kept.append(call[2])
    return durations, results, kept, None


def _arrays_from_bytes(arrays: Sequence[np.ndarray], raws: Sequence[bytes], kept: list
                       ) -> tuple[Sequence[object], list,
                                  tuple[np.ndarray | StackedOutputs, tuple | None] | None]:
    """Results, kept inputs and (stacked, shape) for arrays kept as their bytes: one array
    read from the joined bytes when they share a shape and dtype."""
    # One wrapper's layout (call_input.ArrayLayout) in every call: told by identity in C,
    # without a set of a thousand ids.
    first = arrays[0]
    if first.__class__ is OutputsLayout:
        if first.stackable and all(map(operator.is_, arrays, itertools.repeat(first))):
            # Containers of outputs of one layout: each output's bytes joined at once.
            return (), kept, (StackedOutputs(first, raws), None)
        return list(map(array_from_bytes, arrays, raws)), kept, None
    if all(map(operator.is_, arrays, itertools.repeat(first))):
        dtypes, shapes = {arrays[0].dtype}, {arrays[0].shape}
    else:
        dtypes, shapes = set(map(DTYPE_OF, arrays)), set(map(SHAPE_OF, arrays))
    if len(dtypes) == 1 and len(shapes) == 1:
        (dtype,), (shape,) = dtypes, shapes
        # all(shape): no axis of size 0, which a reshape to -1 rows cannot place.
        if shape and all(shape):
            # bytearray: a writable array, as a copy would be.
            stacked = np.frombuffer(bytearray().join(raws), dtype=dtype)
            return (), kept, (stacked.reshape((-1, *shape[1:])), shape)
    return list(map(array_from_bytes, arrays, raws)), kept, None


def _inputs_from_bytes(arrays: Sequence[np.ndarray], raws: Sequence[bytes],
                       width: int | None = None) -> list:
    """Inputs kept as their bytes: one 2-D array read from the joined bytes when every input
    is a 2-D array with rows, of one dtype and of the reference's `width` (None: of one
    width), which is the usual drain with a reference profile, told by one look per distinct
    shape and dtype; so are 1-D numeric rows of that width, one a call. Else each input as
    it was, so that an empty or wrongly wide call counts as a call of its own
    (``empty_batch``, ``wrong_width``)."""
    dtypes, shapes = set(map(DTYPE_OF, arrays)), set(map(SHAPE_OF, arrays))
    widths = {shape[1] if len(shape) == 2 and shape[0] else -1 for shape in shapes}
    if len(dtypes) == 1 and len(widths) == 1 and widths != {-1} and (
            width is None or widths == {width}):
        (dtype,) = dtypes
        (width,) = widths
        if width:
            joined = np.frombuffer(bytearray().join(raws), dtype=dtype)
            return [joined.reshape((-1, width))]
    if width and len(dtypes) == 1 and next(iter(dtypes)).kind in "fiub" and all(
            len(shape) == 1 and shape[0] and (width == 1 or shape[0] == width)
            for shape in shapes):
        # A 1-D row of features per call (with one feature, its column): the rows the
        # checker reads them as (quality.input_batches.batches), read from the joined bytes.
        joined = np.frombuffer(bytearray().join(raws), dtype=next(iter(dtypes)))
        return [joined.reshape((-1, width))]
    return list(map(array_from_bytes, arrays, raws))


def array_from_bytes(template: np.ndarray, raw: bytes) -> np.ndarray:
    """The array `template` was when its bytes `raw` were taken (or, for an
    :class:`~inferwatch.core.output_bytes.OutputsLayout` and its arrays' bytes, the
    container of arrays)."""
    if template.__class__ is OutputsLayout:
        return template.thaw(raw)  # type: ignore[attr-defined]
    return np.frombuffer(bytearray(raw), dtype=template.dtype).reshape(template.shape)


def take(pending: list) -> list:
    """Every item of `pending`, taken out of it: a slice and one ``del``, each one
    operation under the GIL, so an append racing with it lands in the next take.

    >>> calls = [1, 2]; take(calls), calls
    ([1, 2], [])
    """
    n = len(pending)
    if not n:
        return []
    taken = pending[:n]
    del pending[:n]
    return taken
