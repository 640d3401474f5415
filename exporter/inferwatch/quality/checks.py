"""Data-quality checks of input batches against a reference, vectorised with numpy.

A :class:`BatchChecker` is compiled once from a :class:`~inferwatch.quality.reference.Reference`
and then checks batches in any common container. For every feature it counts missing
values, values outside the reference range and categories the reference never saw, and
it bins the values on the reference bins for drift. It never raises on bad input: each
problem is counted under one of the bounded :data:`REASONS`.

>>> import numpy as np
>>> from inferwatch.quality.reference import Reference
>>> ref = Reference.from_data({"age": np.arange(100.0), "colour": ["red", "blue"] * 50}, bins=4)
>>> checker = BatchChecker(ref)
>>> result = checker.check([{"age": 30.0, "colour": "green"}, {"age": None, "colour": "red"},
...                         {"age": "old", "colour": "red", "zip": 1}])
>>> result.rows, result.missing.tolist(), result.unseen_category.tolist()
(3, [1, 0], [0, 1])
>>> result.input_errors
{'wrong_type': 1, 'extra_column': 1}
>>> [c.tolist() for c in result.bin_counts]
[[0, 1, 0, 0], [0, 2, 1]]
"""

from __future__ import annotations

import numbers
import operator
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferwatch import faults
from inferwatch.frame_names import default_frame_names
from inferwatch.quality.batch_values import (
    as_column,
    is_narrow,
    is_row,
    length,
    named_series_row,
    one_value,
)
from inferwatch.quality.bin_layout import BinLayout
from inferwatch.quality.column_checks import ColumnCounts, CompiledColumn, at_precision
from inferwatch.quality.input_columns import (
    LABEL_OUTPUT,
    as_live_outputs,
    frame_column,
    frame_names,
    frame_rows,
    is_dataframe,
    is_matrix_list,
    probability_list_columns,
)
from inferwatch.quality.plain_arrays import (
    UnreadableTensor,
    is_sparse_tensor,
    is_tensor,
    plain_array,
    sparse_tensor_rows,
    tensor_array,
)
from inferwatch.quality.profile import ReferenceError
from inferwatch.quality.reference import Reference
from inferwatch.quality.sparse_rows import (
    UnreadableRows,
    column_order,
    dense_blocks,
    is_catboost_pool,
    is_dmatrix,
    is_sparse,
    row_shape,
)

# Every reason an input can be rejected or partly rejected; the label set of
# inferwatch_input_errors_total, so it must stay closed.
REASONS = ("missing_column", "extra_column", "wrong_type", "wrong_width", "wrong_shape",
           "empty_batch", "non_finite")

DEFAULT_MAX_PENDING_ROWS = 65_536
# Rows per block of a numeric matrix: 2,048 rows of 50 float64 features is 800 KB.
_BLOCK_ROWS = 2048
_ABSENT = object()


@dataclass
class BatchResult:
    """Counts from one or more checked batches; arrays align with ``reference.feature_names``.

    ``input_errors`` counts cells for cell problems (wrong_type, non_finite), rows times
    columns for column problems (missing_column, extra_column) and batches for batch
    problems (wrong_width, wrong_shape, empty_batch, a container that is not a batch).
    """

    layout: BinLayout
    rows: int = 0
    missing: np.ndarray = field(default=None)  # type: ignore[assignment]
    out_of_range: np.ndarray = field(default=None)  # type: ignore[assignment]
    unseen_category: np.ndarray = field(default=None)  # type: ignore[assignment]
    flat_bin_counts: np.ndarray = field(default=None)  # type: ignore[assignment]
    input_errors: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.layout)
        for name in ("missing", "out_of_range", "unseen_category"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(n, dtype=np.int64))
        if self.flat_bin_counts is None:
            self.flat_bin_counts = np.zeros(self.layout.total, dtype=np.int64)

    @property
    def bin_counts(self) -> list[np.ndarray]:
        """Bin counts per feature (views into ``flat_bin_counts``)."""
        return self.layout.split(self.flat_bin_counts)

    def error(self, reason: str, count: int = 1) -> None:
        if count:
            self.input_errors[reason] = self.input_errors.get(reason, 0) + int(count)

    def add(self, other: BatchResult) -> BatchResult:
        """Accumulate `other` into this result (same reference); returns self."""
        self.rows += other.rows
        self.missing += other.missing
        self.out_of_range += other.out_of_range
        self.unseen_category += other.unseen_category
        self.flat_bin_counts += other.flat_bin_counts
        for reason, count in other.input_errors.items():
            self.error(reason, count)
        return self


@dataclass
class PredictionResult:
    """What :meth:`BatchChecker.check_prediction_quality` counts for one batch of predictions.

    ``bin_counts`` has every reference output (zeros when absent); the other counts have
    the outputs that were read, by name: their missing values (None, NaN), values out of
    the reference range, categories the reference never saw and values of a wrong type
    (text in a numeric output). ``rows`` is the longest output read: a prediction without
    a value is still a row, counted missing.
    """

    bin_counts: dict[str, np.ndarray]
    rows: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    out_of_range: dict[str, int] = field(default_factory=dict)
    unseen_category: dict[str, int] = field(default_factory=dict)
    wrong_type: dict[str, int] = field(default_factory=dict)


class BatchChecker:
    """Checks input batches against a reference; build once, call :meth:`check` per batch.

    `range_tolerance` widens the reference range by that fraction of its span on each side
    before a value counts as out of range. Batches longer than `max_pending_rows` are
    checked in slices of that many rows, which bounds the temporary memory of one call.

    >>> from inferwatch.quality.reference import Reference
    >>> checker = BatchChecker(Reference.from_data(np.arange(10.0)), range_tolerance=0.1)
    >>> checker.check(np.array([[-0.5], [9.5], [11.0], [np.inf]])).out_of_range.tolist()
    [2]
    """

    def __init__(self, reference: Reference, *, range_tolerance: float = 0.0,
                 max_pending_rows: int = DEFAULT_MAX_PENDING_ROWS) -> None:
        # Checked by type first: a comparison with text or None was a bare TypeError that
        # named neither the option nor what it takes.
        if not (isinstance(range_tolerance, numbers.Real) and not isinstance(range_tolerance, bool)
                and range_tolerance >= 0):
            raise ValueError(f"range_tolerance must be a number >= 0, got {range_tolerance!r}")
        if not (isinstance(max_pending_rows, numbers.Integral)
                and not isinstance(max_pending_rows, bool) and max_pending_rows >= 1):
            raise ValueError(f"max_pending_rows must be an integer >= 1, got"
                             f" {max_pending_rows!r}")
        self.reference = reference
        self.range_tolerance = float(range_tolerance)
        self.max_pending_rows = int(max_pending_rows)
        self.feature_names = reference.feature_names
        self._index = {name: j for j, name in enumerate(self.feature_names)}
        self.feature_layout = BinLayout.of(reference.features)
        self.output_layout = BinLayout.of(reference.outputs)
        self._columns = [CompiledColumn(p, self.range_tolerance)
                         for p in reference.features.values()]
        self._outputs = {name: CompiledColumn(p, self.range_tolerance)
                         for name, p in reference.outputs.items()}
        numeric = [c for c in self._columns if c.numeric]
        self._all_numeric = len(numeric) == len(self._columns) and bool(numeric)
        self._narrow: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if self._all_numeric:
            self._lo = np.array([c.lo for c in numeric])
            self._hi = np.array([c.hi for c in numeric])
            width = max(len(c.edges) for c in numeric)
            self._edge_matrix = np.full((len(numeric), width), np.nan)
            for j, c in enumerate(numeric):
                self._edge_matrix[j, : len(c.edges)] = c.edges
            # The smallest index type that holds every bin plus the spare missing slot.
            self._index_dtype = np.min_scalar_type(self.feature_layout.total + 1)
            self._starts = self.feature_layout.starts.astype(self._index_dtype)

    # --- public -------------------------------------------------------------------------

    def empty_result(self) -> BatchResult:
        """A result with every count at zero, to accumulate into."""
        return BatchResult(self.feature_layout)

    def check(self, batch: Any) -> BatchResult:
        """Check one batch: a row dict, a list of row dicts, a 1-D array (one row), a 2-D
        array (columns in reference order), a pandas DataFrame or a dict of columns.

        >>> from inferwatch.quality.reference import Reference
        >>> checker = BatchChecker(Reference.from_data({"a": [1.0, 2.0], "b": [3.0, 4.0]}))
        >>> checker.check(np.ones((5, 3))).input_errors
        {'wrong_width': 1}
        >>> checker.check({"a": [1.0, np.nan], "b": [3.0, 9.0]}).out_of_range.tolist()
        [0, 1]
        """
        result = self.empty_result()
        try:
            self._dispatch(batch, result)
        except Exception as exc:
            # A fault of ours on some input nobody foresaw: the caller still gets counts.
            faults.record("quality", exc)
            result = self.empty_result()
        return result

    def check_predictions(self, values_by_output: Any) -> dict[str, np.ndarray]:
        """Bin counts per reference output for a dict of output name -> values.

        An array also works: 1-D (or a pandas, polars or Arrow series) for a reference with
        one output, 2-D with one column per output in reference order (a probability
        matrix), a list of one probability matrix per output whose columns are the
        reference's outputs in order, or a multi-output classifier's 2-D labels for a
        reference that profiled them (as ``<output>:<label>`` of one ``value`` output);
        so does a DataFrame or Arrow table, its columns by output name (by position
        when there are as many and no name is an output's, or some name is not one of a
        profile's column numbers ``"0"`` to ``"k-1"``). One prediction works as one
        input row does: a dict of scalars, a scalar for a reference with one output, or a
        1-D array with one value per output. Every reference output gets an
        array (zeros when absent); unknown names, missing and wrongly typed values, and
        arrays of another shape are skipped. :meth:`check_prediction_quality` counts those
        values too.

        >>> from inferwatch.quality.reference import Reference
        >>> ref = Reference.from_data(np.zeros(11), predictions=np.linspace(0, 1, 11), bins=2)
        >>> BatchChecker(ref).check_predictions({"value": [0.1, 0.9, 0.95]})["value"].tolist()
        [1, 2]
        """
        return self.check_prediction_quality(values_by_output).bin_counts

    def check_prediction_quality(self, values_by_output: Any) -> PredictionResult:
        """:meth:`check_predictions` with the quality counts of each output it read:
        missing, out-of-range, unseen and wrong-type values, and the rows. Never raises.

        >>> from inferwatch.quality.reference import Reference
        >>> ref = Reference.from_data(np.zeros(11), predictions=np.linspace(0, 1, 11), bins=2)
        >>> result = BatchChecker(ref).check_prediction_quality({"value": [0.1, None, 7.0]})
        >>> result.rows, result.missing, result.out_of_range, result.bin_counts["value"].tolist()
        (3, {'value': 1}, {'value': 1}, [1, 1])
        """
        out = {name: np.zeros(c.n_bins, dtype=np.int64) for name, c in self._outputs.items()}
        result = PredictionResult(out)
        array_rows = 0
        try:
            if is_dataframe(values_by_output):
                values_by_output = self._outputs_of_frame(values_by_output)
            elif is_row(values_by_output):
                # One prediction, by the rule that makes a dict of scalars one input row.
                values_by_output = {name: one_value(v) for name, v in values_by_output.items()}
            elif not isinstance(values_by_output, Mapping):
                values_by_output, array_rows = self._outputs_of_array(values_by_output)
            # Names are matched as text, as input columns are: a dict keyed by a model's
            # integer ``classes_`` names the columns "0", "1" the reference profiled. Two
            # keys of one text (0 and "0") give that output twice: neither is read.
            texts = Counter(str(name) for name in values_by_output)
            for name, values in values_by_output.items():
                if texts[str(name)] > 1:
                    continue
                column = self._outputs.get(str(name))
                arr = as_column(values)
                if column is None or arr is None:
                    continue
                scratch = ColumnCounts()
                column.count(arr, scratch)
                out[str(name)] += scratch.bins
                result.rows = max(result.rows, len(arr))
                result.missing[str(name)] = scratch.missing
                result.out_of_range[str(name)] = scratch.out_of_range
                result.unseen_category[str(name)] = scratch.unseen
                result.wrong_type[str(name)] = scratch.wrong_type
            if array_rows and result.rows:
                result.rows = array_rows
        except Exception as exc:
            faults.record("quality", exc)
        return result

    def _outputs_of_frame(self, frame: Any) -> dict[str, Any]:
        keys = frame_names(frame)
        names = [str(k) for k in keys]
        if len(set(names)) != len(names):
            return {}
        outputs = list(self._outputs)
        if len(names) == 2 and outputs == [self.reference.score_output] and \
                outputs[0] not in names:
            return {outputs[0]: frame_column(frame, keys[1])}  # the column [:, 1] takes
        if len(names) == len(outputs) and not set(names) <= set(outputs) and (
                not set(names) & set(outputs) or outputs == [str(j) for j in range(len(names))]):
            # The order both were made in: where no name is an output's, and against the
            # profile of an unnamed matrix (outputs "0", "1", "2"), whose columns named by
            # classes 1, 2 and 3 share two names that are other columns' there.
            names = outputs
        return {name: frame_column(frame, key) for name, key in zip(names, keys)}

    def _outputs_of_array(self, values: Any) -> tuple[dict[str, Any], int]:
        """The outputs of an array, and its rows where they are not the length of every
        output (a multi-output classifier's labels, all in one ``value`` output); else 0."""
        names = list(self._outputs)
        if length(values) is None:
            # One prediction of a one-output model (a float, a label, a 0-d array).
            return ({names[0]: one_value(values)} if len(names) == 1 else {}), 0
        if not isinstance(values, (np.ndarray, list, tuple)):
            # A pandas, polars or Arrow series keeps its own missing values (pd.NA, null).
            if len(names) == 1 and hasattr(values, "to_numpy"):
                column = as_column(values)
                return ({} if column is None else {names[0]: column}), 0
            return {}, 0
        if is_matrix_list(values):
            # One probability matrix per output, its columns in the order profiled.
            try:
                columns = probability_list_columns(values, None)
            except ReferenceError:
                return {}, 0
            return (dict(zip(names, columns.values())) if len(columns) == len(names)
                    else {}), 0
        try:
            arr = np.asarray(values)
        except (ValueError, TypeError):  # ragged
            return {}, 0
        if arr.ndim == 1 and len(names) == 1:
            return {names[0]: arr}, 0
        if arr.ndim == 1 and len(arr) == len(names):
            # One row of a probability matrix, as a 1-D input array is one row of features.
            arr = arr.reshape(1, -1)
        if arr.ndim == 2 and arr.shape[1] == len(names):
            return {name: arr[:, i] for i, name in enumerate(names)}, 0
        if arr.ndim == 2 and arr.shape[1] == 2 and names == [self.reference.score_output]:
            return {names[0]: arr[:, 1]}, 0  # a two-class matrix: the column [:, 1] takes
        if arr.ndim == 2 and arr.shape[1] > 1 and names == [LABEL_OUTPUT] and \
                not self._outputs[LABEL_OUTPUT].numeric:
            # A multi-output classifier's labels, profiled as their ``<output>:<label>``.
            outputs = as_live_outputs({str(j): arr[:, j] for j in range(arr.shape[1])}, "auto")
            if list(outputs) == [LABEL_OUTPUT]:
                return outputs, arr.shape[0]
        return {}, 0

    # --- containers ---------------------------------------------------------------------

    def _dispatch(self, batch: Any, result: BatchResult) -> None:
        row = named_series_row(batch, self._index)
        if row is not None:  # a Series labelled by features: a row dict, by its labels
            batch = row
        if is_dataframe(batch):
            self._frame(batch, result)
        elif is_sparse(batch) or is_dmatrix(batch) or is_catboost_pool(batch):
            self._sparse_rows(batch, result)
        elif isinstance(batch, Mapping):
            self._mapping(batch, result)
        elif isinstance(batch, (list, tuple)):
            self._sequence(batch, result)
        elif is_sparse_tensor(batch):
            self._sparse_tensor(batch, result)
        elif is_tensor(batch):
            # np.asarray refuses a tensor on a GPU and one of bfloat16.
            self._array(tensor_array(batch), result)
        elif isinstance(batch, (np.ndarray, np.void)) and batch.dtype.names is not None:
            self._records(batch, result)
        elif (isinstance(batch, np.ndarray) or hasattr(batch, "__array__")
              or isinstance(batch, numbers.Number)):
            # A bare number is one row of one value, as a numpy scalar is: `model(5.0)` and
            # `model(np.float64(5.0))` counted differently (a wrong_type against a row).
            # A masked array's masked entries are missing values; np.asarray would drop
            # the mask and check the placeholder values beneath it.
            self._array(plain_array(batch) if isinstance(batch, np.ndarray)
                        else np.asarray(batch), result)
        else:
            result.error("wrong_type")

    def _sliced(self, batch: Any, n: int, cut: Any, check: Any, result: BatchResult) -> None:
        if n == 0:
            result.error("empty_batch")
            return
        step = self.max_pending_rows
        for start in range(0, n, step):
            check(batch if n <= step else cut(start, start + step), result)

    def _sparse_rows(self, batch: Any, result: BatchResult) -> None:
        """A scipy.sparse matrix, an xgboost DMatrix or a CatBoost Pool: checked as the
        dense rows it stands for (``sparse_rows``), a bounded block at a time."""
        rows, width = row_shape(batch)
        if rows == 0:
            result.error("empty_batch")
            return
        if width != len(self._columns):
            result.error("wrong_width")
            return
        try:
            for block in dense_blocks(batch, column_order(batch, self.feature_names)):
                self._matrix(block, result)
        except UnreadableRows as exc:
            # Raised before any row is read. The model takes this input: what cannot be
            # checked is inferwatch's shortfall, counted (and logged, with what to do) as
            # its own fault, never as the caller's schema error.
            faults.record("quality", exc)

    def _sparse_tensor(self, batch: Any, result: BatchResult) -> None:
        """A torch sparse tensor: judged by its shape before any of it is made dense, as a
        scipy.sparse matrix is (too wide for the reference is ``wrong_width``, whatever
        its width), then read as dense rows a bounded block at a time, as many cells as a
        sparse result may hold dense, however many rows it has."""
        from inferwatch.core.result_arrays import MAX_SPARSE_RESULT_CELLS

        shape = tuple(int(n) for n in batch.shape)
        n_features = len(self._columns)
        # Read as _array reads a dense one: 1-D is one row, or the column of one feature.
        as_column = len(shape) == 1 and n_features == 1
        if len(shape) == 1:
            rows, width = (shape[0], 1) if as_column else (1, shape[0])
        elif len(shape) == 2:
            rows, width = shape
        else:
            result.error("wrong_shape")
            return
        if rows == 0:
            result.error("empty_batch")
            return
        if width != n_features:
            result.error("wrong_width")
            return
        block_rows = max(1, min(self.max_pending_rows, MAX_SPARSE_RESULT_CELLS // max(width, 1)))
        try:
            for block in sparse_tensor_rows(batch, rows, width, block_rows, as_column):
                self._matrix(block, result)
        except UnreadableTensor as exc:
            faults.record("quality", exc)

    def _mapping(self, batch: Mapping[Any, Any], result: BatchResult) -> None:
        values = list(batch.values())
        if not values:
            result.error("empty_batch")
            return
        if is_row(batch):
            self._rows([batch], result)
            return
        lengths = [length(v) for v in values]
        if any(n is None for n in lengths) or len(set(lengths)) != 1:
            result.error("wrong_shape")
            return
        n = lengths[0]
        names = [str(k) for k in batch]
        ambiguous = self._ambiguous(names, n, result)
        # Keys with one text (0 and "0") name one column twice, as a frame's repeated name
        # does: neither is kept, and the batch counts it, rather than one silently winning.
        columns = {name: v for name, v in zip(names, values) if name not in ambiguous}
        self._sliced((columns, n), n,
                     lambda i, j: ({k: v[i:j] for k, v in columns.items()}, min(j, n) - i),
                     lambda part, res: self._column_dict(part[0], res, rows=part[1],
                                                         unreadable=ambiguous),
                     result)

    def _records(self, batch: np.ndarray | np.void, result: BatchResult) -> None:
        """A numpy structured array (or one record): its fields are columns by name, as a
        DataFrame's are, in any order; without this every record would be one value of a
        single column, and a wrong_width."""
        names = batch.dtype.names or ()
        if batch.ndim == 0:
            self._rows([{name: batch[name] for name in names}], result)
        elif batch.ndim == 1 and names:
            self._mapping({name: batch[name] for name in names}, result)
        else:
            result.error("wrong_shape")

    def _sequence(self, batch: list[Any] | tuple[Any, ...], result: BatchResult) -> None:
        if len(batch) == 0:
            result.error("empty_batch")
            return
        if any(isinstance(row, Mapping) for row in batch):
            rows = [row for row in batch if isinstance(row, Mapping)]
            result.error("wrong_type", len(batch) - len(rows))
            # A feature named twice is the batch's one wrong_shape, however many slices.
            named_twice = False

            def read(part: list[Mapping[Any, Any]], res: BatchResult) -> None:
                nonlocal named_twice
                named_twice = self._rows(part, res, count_shape=False) or named_twice

            self._sliced(rows, len(rows), lambda i, j: rows[i:j], read, result)
            if named_twice:
                result.error("wrong_shape")
            return
        try:
            arr = np.asarray(batch)
            if arr.dtype.kind in "US":
                # numpy makes text of every cell of rows that mix numbers and text: as
                # objects, 10115.0 stays the category "10115", True a number and "1.5" a
                # wrong type, as they are in row dicts or beside a None (the profile reads
                # such lists the same way).
                arr = np.array(batch, dtype=object)
        except (ValueError, TypeError):  # ragged rows
            result.error("wrong_shape")
            return
        self._array(arr, result)

    def _array(self, arr: np.ndarray, result: BatchResult) -> None:
        n_features = len(self._columns)
        if arr.ndim == 0:
            arr = arr.reshape(1, 1)
        elif arr.ndim == 1:
            # One row; with a single feature, a 1-D array is that feature's column.
            arr = arr.reshape(-1, 1) if n_features == 1 else arr.reshape(1, -1)
        if arr.ndim != 2:
            result.error("wrong_shape")
            return
        if arr.shape[0] == 0:
            result.error("empty_batch")
            return
        if arr.shape[1] != n_features:
            result.error("wrong_width")
            return
        self._sliced(arr, arr.shape[0], lambda i, j: arr[i:j], self._matrix, result)

    # --- checking -----------------------------------------------------------------------

    def _matrix(self, arr: np.ndarray, result: BatchResult) -> None:
        result.rows += arr.shape[0]
        if self._all_numeric and arr.dtype.kind in "fiub":
            self._numeric_matrix(arr, result)
            return
        for j, column in enumerate(self._columns):
            self._count_column(j, column, arr[:, j], result)

    def _numeric_matrix(self, arr: np.ndarray, result: BatchResult) -> None:
        # Blocks of rows keep every temporary in cache, which more than pays for the loop.
        for start in range(0, arr.shape[0], _BLOCK_ROWS):
            self._numeric_block(arr[start:start + _BLOCK_ROWS], result)

    def _numeric_block(self, block: np.ndarray, result: BatchResult) -> None:
        # Column-major: comparing against one edge per feature then runs down contiguous
        # columns, and the loop is over edge positions (about `bins`), never over values.
        lo, hi, edge_matrix = self._lo, self._hi, self._edge_matrix
        if is_narrow(block.dtype):
            key = block.dtype.str
            if key not in self._narrow:
                self._narrow[key] = (at_precision(lo, block.dtype), at_precision(hi, block.dtype),
                                     at_precision(edge_matrix, block.dtype, edges=True))
            lo, hi, edge_matrix = self._narrow[key]
        values = np.asarray(block, dtype=np.float64, order="F")
        nan = np.isnan(values)
        result.missing += nan.sum(axis=0)
        result.error("non_finite", np.count_nonzero(np.isinf(values)))
        result.out_of_range += ((values < lo) | (values > hi)).sum(axis=0)
        # bin = number of edges <= value, what searchsorted(side="right") gives; the edge
        # matrix is padded with NaN, which compares False. Counted in bytes while a
        # feature's edges fit one (adding a bool mask to wider integers casts every value).
        edges = edge_matrix.shape[1]
        at_or_above = np.empty(values.shape, dtype=bool, order="F")
        if edges < 256:
            edges_passed = np.zeros(values.shape, dtype=np.uint8, order="F")
            step = at_or_above.view(np.uint8)
        else:
            edges_passed = np.zeros(values.shape, dtype=self._index_dtype, order="F")
            step = at_or_above
        for k in range(edges):
            np.greater_equal(values, edge_matrix[:, k], out=at_or_above)
            edges_passed += step
        index = np.add(edges_passed, self._starts, dtype=self._index_dtype)
        total = self.feature_layout.total
        if nan.any():
            index[nan] = total  # one spare slot collects missing values
        counts = np.bincount(index.ravel(order="K"), minlength=total + 1)
        result.flat_bin_counts += counts[:total]

    def _frame(self, frame: Any, result: BatchResult) -> None:
        n = len(frame)
        if n == 0:
            result.error("empty_batch")
            return
        keys = frame_names(frame)
        names = [str(c) for c in keys]
        if default_frame_names(keys):
            # pd.DataFrame(array) or pl.from_numpy(array): a frame that names nothing is
            # read by position, as the array it was made from is, not counted as every
            # feature missing beside as many unknown ones.
            if len(names) != len(self.feature_names):
                result.error("wrong_width")
                return
            names = list(self.feature_names)
        # Decided for the whole frame, before it is sliced: a feature named twice is one
        # wrong_shape per batch, not one per slice.
        ambiguous = self._ambiguous(names, n, result)
        unique = {name: key for name, key in zip(names, keys) if name not in ambiguous}

        def check(part: Any, res: BatchResult) -> None:
            # The part's own length: a frame without columns still has rows, each missing all.
            self._column_dict({name: frame_column(part, c) for name, c in unique.items()},
                              res, rows=len(part), unreadable=ambiguous)

        self._sliced(frame, n, lambda i, j: frame_rows(frame, i, j), check, result)

    def _ambiguous(self, names: list[str], n: int, result: BatchResult) -> set[str]:
        """Names given more than once, counted: none of their columns can be read."""
        if len(set(names)) == len(names):
            return set()
        ambiguous = {name for name, times in Counter(names).items() if times > 1}
        # Only a feature named twice (pd.concat(axis=1) of overlapping frames) cannot be
        # read: the rest of the batch is checked and its rows reach the drift window.
        if any(name in self._index for name in ambiguous):
            result.error("wrong_shape")
        result.error("extra_column", n * sum(1 for name in names
                                             if name in ambiguous and name not in self._index))
        return ambiguous

    def _column_dict(self, columns: Mapping[str, Any], result: BatchResult,
                     rows: int | None = None, unreadable: set[str] | None = None) -> None:
        n = rows if rows is not None else length(next(iter(columns.values())))
        result.rows += n
        result.error("extra_column", n * sum(1 for k in columns if k not in self._index))
        for j, column in enumerate(self._columns):
            if unreadable and column.name in unreadable:
                continue  # counted as the batch's wrong_shape
            values = columns.get(column.name, _ABSENT)
            if values is _ABSENT:
                result.error("missing_column", n)
                continue
            try:
                arr = as_column(values, numeric=column.numeric)
            except Exception as exc:
                # A column its own library cannot hand over: that feature goes uncounted,
                # the others are still checked.
                faults.record("quality", exc)
                continue
            if arr is None:
                arr = _lone_column(values, column.numeric)
            if arr is None:
                result.error("wrong_shape")
                continue
            self._count_column(j, column, arr, result)

    def _rows(self, rows: list[Mapping[Any, Any]], result: BatchResult, *,
              count_shape: bool = True) -> bool:
        """Count `rows`; True when some row names a feature twice, which is counted as the
        batch's wrong_shape unless `count_shape` is False (a slice of a longer batch)."""
        if self._all_numeric and self._numeric_rows(rows, result):
            return False
        result.rows += len(rows)
        given = sum(len(row) for row in rows)
        # Keys are matched as text, as DataFrame columns are. Two keys with one text (0 and
        # "0") name one column twice, as in a frame or a dict of columns: neither is read,
        # a feature named so makes the batch's wrong_shape (not a missing column), and any
        # other name so given counts as extra columns, rather than one silently winning.
        rows = [row if all(type(k) is str for k in row) else _text_keys(row) for row in rows]
        present_total = unreadable = 0
        for j, column in enumerate(self._columns):
            cells = [row.get(column.name, _ABSENT) for row in rows]
            present = [v for v in cells if v is not _ABSENT and v is not _TWICE]
            twice = sum(1 for v in cells if v is _TWICE)
            present_total += len(present)
            if twice:
                unreadable += sum(len(row.twice[column.name]) for row in rows
                                  if isinstance(row, _TextKeyed) and column.name in row.twice)
            result.error("missing_column", len(cells) - len(present) - twice)
            if present:
                arr = np.fromiter(present, dtype=object, count=len(present))
                self._count_column(j, column, arr, result)
        if unreadable and count_shape:
            result.error("wrong_shape")
        result.error("extra_column", given - present_total - unreadable)
        return bool(unreadable)

    def _numeric_rows(self, rows: list[Mapping[Any, Any]], result: BatchResult) -> bool:
        """The common case, rows holding exactly the features as numbers, as one matrix."""
        width = len(self.feature_names)
        try:
            # An item getter per row, in C: a tuple of the row's features in order.
            cells = operator.itemgetter(*self.feature_names)
            matrix = np.array(list(map(cells, rows)) if width > 1 else
                              [[cells(row)] for row in rows])
        except (KeyError, ValueError, TypeError):
            return False
        # Any None, text or odd object makes another dtype: those take the careful path.
        if matrix.dtype.kind not in "fiub" or matrix.shape != (len(rows), width) \
                or any(len(row) != width for row in rows):
            return False
        self._matrix(matrix, result)
        return True

    def _count_column(self, j: int, column: CompiledColumn, values: np.ndarray,
                      result: BatchResult) -> None:
        counts = ColumnCounts()
        try:
            column.count(values, counts)
        except Exception as exc:
            # A fault of ours in one feature leaves the batch's other features counted.
            faults.record("quality", exc)
            return
        result.missing[j] += counts.missing
        result.out_of_range[j] += counts.out_of_range
        result.unseen_category[j] += counts.unseen
        result.error("wrong_type", counts.wrong_type)
        result.error("non_finite", counts.non_finite)
        start = self.feature_layout.starts[j]
        result.flat_bin_counts[start:start + column.n_bins] += counts.bins


def _lone_column(values: Any, numeric: bool) -> np.ndarray | None:
    """An (n, 1) array as the column it holds, else None. An ONNX model converted with one
    input per column (skl2onnx's way for a ColumnTransformer pipeline, each input of shape
    [None, 1]) is fed a dict of such arrays, which is a dict of columns all the same.

    >>> _lone_column(np.array([[1.0], [2.0]]), True).tolist(), _lone_column(np.ones((2, 2)), True)
    ([1.0, 2.0], None)
    """
    if not isinstance(values, np.ndarray) or values.ndim != 2 or values.shape[1] != 1:
        return None
    return as_column(values[:, 0], numeric=numeric)  # a view: nothing copied


# A feature's cell in a row that names it by two keys of one text: not read.
_TWICE = object()


class _TextKeyed(dict):
    """A row keyed by text; ``twice`` maps a text given by several keys to those keys."""

    twice: dict[str, list[Any]]


def _text_keys(row: Mapping[Any, Any]) -> dict[str, Any]:
    """`row` keyed by ``str()`` of its keys; a text two keys share holds :data:`_TWICE`."""
    out = _TextKeyed()
    out.twice = {}
    seen: dict[str, Any] = {}
    for k, v in row.items():
        name = str(k)
        if name in seen:
            out.twice.setdefault(name, [seen[name]]).append(k)
            out[name] = _TWICE
        else:
            seen[name] = k
            out[name] = v
    return out
