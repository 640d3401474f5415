"""A drain's request-path results (``request_id=``) recorded as the batch records them, and
each call's rows handed back for its outcome to join by: many calls joined and read once
where every call reads as it would alone, the rest call by call.

:class:`OutcomeRows` is the base of :class:`~inferwatch.core.prediction_batch.
PredictionBatch` and records through the batch's own steps (``_normalized``, ``_add``,
``add_one``, ``_calls_read_apart``). Apart from the batch because the request path has one
rule more than the plain one: a read that drops a row (a NaN, a label no class was
declared for) loses whose row it was, so such a drain is read again call by call, where
each call keeps its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from inferwatch.core.call_rows import split_rows
from inferwatch.core.categorical_calls import categorical_rows
from inferwatch.core.classifier_batches import ClassifierResults
from inferwatch.core.library_columns import (
    is_pandas_frame,
    is_pandas_series,
    is_polars_frame,
    is_polars_series,
    row_list_results,
)
from inferwatch.core.predictions import scalar_output_row
from inferwatch.core.result_arrays import plain_result_arrays
from inferwatch.core.stacked_results import (
    SEQUENCE_CLASSES,
    array_dict_columns,
    array_tuple_columns,
    one_dict_rows,
    scalar_column,
    scalar_dict_columns,
)

_LIST_ONLY = {list}
_DICT_ONLY = {dict}
_TUPLE_ONLY = {tuple}
_LIST_OR_TUPLE = ({list}, {tuple})
_DICT_OR_LIST = frozenset({dict, list})
_NONE_ONLY = {type(None)}


class OutcomeRows(ClassifierResults):
    """The request-path readers of :class:`~inferwatch.core.prediction_batch.
    PredictionBatch`: each records a drain's results and returns each call's (classes,
    values) for its outcome, or None where it takes no such results."""

    def add_records(self, results: Sequence[object], probabilities: bool | None,
                    split: bool = True) -> list[tuple[tuple | None, tuple | None] | None]:
        """Record many results, returning each one's classes or values (for outcome joins;
        with `split` False, calls that no outcome joins, nothing).

        Many small 2-D float arrays of one width (one probability matrix per call) are
        normalised as one stacked matrix and split again by rows.
        """
        if len(results) > 1 and results[0].__class__ is not np.ndarray:
            # scipy.sparse rows (a multi-label classifier's), np.matrix, masked arrays: read
            # as the plain arrays each call reads as (and joins by: call_rows.split_rows).
            arrays = plain_result_arrays(results)
            if arrays is not None:
                results = arrays
        if len(results) > 1:
            # A Series (or object array) of a row per cell per call: read, and joined, as
            # the lists of those rows (each call's rows split as a list of lists is).
            rows = row_list_results(results)
            if rows is not None:
                results = rows
        if len(results) > 1 and not probabilities and self.features is None and \
                self.settings.task != "regression":
            # Many calls' categoricals (each call's rows, for its outcome, are its labels:
            # every one of them a class its categories declare).
            found = categorical_rows(results)
            if found is not None and self._add_categorical_rows(found):
                return found.call_rows() if split else []
            rows = self._joined_records(results)
            if rows is not None:
                return rows if split else []
        if len(results) > 1 and not probabilities and self.settings.task != "regression":
            rows = self._label_matrix_records(results)
            if rows is None and set(map(type, results)) in _LIST_OR_TUPLE:
                rows = self._add_classifier_outputs(results, split=True)
            if rows is not None:
                return rows if split else []
        if len(results) > 1 and probabilities:
            rows = self._probability_vector_records(results)
            kinds = set(map(type, results))
            if rows is None and kinds <= _DICT_OR_LIST:
                rows = self._add_probability_maps(results, split=True)
            if rows is None and kinds in _LIST_OR_TUPLE:
                rows = self._add_output_matrices(results, split=True)
            elif rows is None and len(kinds) == 1 and (
                    is_pandas_frame(next(iter(kinds))) or is_polars_frame(next(iter(kinds)))):
                rows = self._add_probability_frames(results, split=True)
            if rows is not None:
                return rows if split else []
        if len(results) > 1 and set(map(type, results)) == _NONE_ONLY and \
                self._add_nones(len(results), probabilities):
            # No row: each joins as its result, as when read alone.
            return [None] * len(results) if split else []
        if len(results) > 1 and results[0].__class__ in SEQUENCE_CLASSES:
            # Rows of floats as lists (proba.tolist()): read as their arrays, below.
            arrays = self.float_row_arrays(results, probabilities)
            if arrays is not None:
                results = arrays
        if len(results) > 1 and all(r.__class__ is np.ndarray and r.ndim == 2 and
                                    r.dtype.kind == "f" for r in results) and \
                len({r.shape[1] for r in results}) == 1:
            stacked = np.concatenate(results)
            alike = self._calls_read_apart([r.shape[0] for r in results], stacked,
                                           probabilities)
            if alike is not None:
                return self._add_apart(results, probabilities, split, alike)
            if not np.isfinite(stacked).all():
                return self._add_apart(results, probabilities, split)
            sizes = [r.shape[0] for r in results]
            prediction = self._normalized(stacked, probabilities)
            if prediction is None:
                return [None] * len(results)
            self._add(prediction, sizes)
            if not split:
                return []
            rows = split_rows(prediction, sizes)
            if sum(sizes) and all(row is None for row in rows):
                # The stacked read dropped a row (a float no class may be), and which call
                # it came from is lost: each call's rows as it reads them alone, not none.
                rows = [self.joinable_rows(result, probabilities) for result in results]
            return rows
        return [self._add_call(result, probabilities) for result in results]

    def _joined_records(self, results: Sequence[object]
                        ) -> list[tuple[tuple | None, tuple | None] | None] | None:
        """Many calls' pandas nullable Series or typed frames, or polars Series or frames
        (what the plain path joins: :meth:`_add_masked_series`, :meth:`_add_typed_frames`,
        :meth:`_add_polars_series`, :meth:`_add_polars_frames`) recorded as one joined
        result, and each call's rows for its outcome split from it again, a missing row
        (``pd.NA``) or a non-finite float None or NaN in its place, as a call read alone
        keeps it. None, recording nothing, for any other results, and for a drain with a
        row the joined result drops whose place it cannot tell (a label no class was
        declared for)."""
        kinds = set(map(type, results))
        if len(kinds) != 1:
            return None
        kind = next(iter(kinds))
        found = self._masked_series_join(results) if is_pandas_series(kind) else \
            self._typed_frames_join(results) if is_pandas_frame(kind) else \
            self._polars_series_join(results) if is_polars_series(kind) else \
            self._polars_frames_join(results) if is_polars_frame(kind) else None
        return None if found is None else self._add_joined_rows(found, len(results), False)

    def _add_joined_rows(self, found: tuple[Callable[[], object], list[int]], calls: int,
                         probabilities: bool, split: bool = True
                         ) -> list[tuple[tuple | None, tuple | None] | None] | None:
        """Record the one result ``join()`` makes of `calls` calls (`found`: the join and
        each call's rows), read once; with `split`, each call's rows for its outcome split
        from it, a missing row (``pd.NA``, a null, NaN) put back in its place, None or
        NaN, by the joined result, as each call's own result puts it back. None,
        recording nothing, when the library will not join them, or (`split`) when the
        read dropped a row whose place the joined result cannot tell."""
        join, sizes = found
        try:
            joined = join()
        except Exception:  # results the library will not join: each call read alone
            return None
        prediction = self._normalized(joined, probabilities)
        if prediction is None:
            return [None] * calls  # as one call at a time: each fails alike
        rows = split_rows(prediction, sizes, joined if prediction.invalid else None) \
            if split else []
        if any(row is None for row in rows):
            return None
        self._add(prediction, sizes)
        return rows

    def add_dict_records(self, results: Sequence[object]) -> list | None:
        """Record many one-row dicts of named outputs (or a pipeline's lists of one such
        dict), all of the shape :func:`scalar_dict_columns` reads, many tuples of one row's
        outputs (``return label, score``: :func:`scalar_row_columns`), or many dicts,
        tuples or lists of 1-D float arrays (:func:`array_dict_columns`,
        :func:`array_tuple_columns`),
        their float outputs finite, as one dict of columns; returns each one's classes or
        values, as :meth:`add_records` returns them reading each alone. None, recording nothing, for
        any other results, and for any whose rows the column loses (a NaN, a label no class
        was declared for: a split of the column could not tell whose row it was), which are
        read one by one.

        >>> from inferwatch.core.options import Settings
        >>> from inferwatch.core.prediction_batch import PredictionBatch
        >>> batch = PredictionBatch(Settings(), {}, None, lambda: None)
        >>> batch.add_dict_records([{"price": 10.0, "eta": 3.0}, {"price": 12.0, "eta": 4.0}])
        [(None, ((10.0, 3.0),)), (None, ((12.0, 4.0),))]
        >>> batch.add_dict_records([{"score": 0.9}, {"score": float("nan")}]) is None
        True
        """
        kinds = set(map(type, results))
        columns = None
        sizes = [1] * len(results)
        task = self.settings.task
        if kinds == _DICT_ONLY:
            columns = scalar_dict_columns(results, True, task)  # type: ignore[arg-type]
            if columns is None:  # dicts of 1-D float arrays (``{"price": prices}``)
                columns, sizes = array_dict_columns(results) or (None, sizes)  # type: ignore[arg-type]
        elif kinds in _LIST_OR_TUPLE and results[0] and \
                results[0][0].__class__ is np.ndarray:  # type: ignore[index]
            # Tuples of 1-D float arrays, or a runtime's list of them (ONNX Runtime's
            # ``session.run``): outputs 0, 1, ... as a call's tuple is read.
            columns, sizes = array_tuple_columns(results) or (None, sizes)  # type: ignore[arg-type]
        elif kinds == _LIST_ONLY:
            rows = one_dict_rows(results)  # type: ignore[arg-type]
            columns = None if rows is None else scalar_dict_columns(rows, False, task)
        elif kinds == _TUPLE_ONLY:  # ``return label, score``: as _add_scalar_rows reads them
            columns = scalar_row_columns(results)  # type: ignore[arg-type]
        # (A column of probability maps is finite: stackable_maps takes no other.)
        if columns is None or not all(np.isfinite(column).all() for column in columns.values()
                                      if column.__class__ is np.ndarray
                                      and column.dtype.kind == "f"):
            return None
        prediction = self._normalized(columns, False)
        if prediction is None:
            return [None] * len(results)
        if prediction.classes is not None and len(prediction.classes) != sum(sizes):
            # Some labels were refused (no class declared for them): whose they were is
            # known only call by call, where each call keeps its own row.
            return None
        self._add(prediction, sizes)
        return split_rows(prediction, sizes)

    def _add_call(self, result: object, probabilities: bool | None
                  ) -> tuple[tuple | None, tuple | None] | None:
        prediction = self.add_one(result, probabilities)
        return None if prediction is None else \
            split_rows(prediction, [prediction.rows], result)[0]

    def _add_apart(self, results: Sequence[np.ndarray], probabilities: bool | None,
                   split: bool, together: list[bool] | None = None
                   ) -> list[tuple[tuple | None, tuple | None] | None]:
        """Stacked calls of which some hold NaN or inf (or, by `together`, some are read
        otherwise than the rest): those are added one by one, the rest stacked. A
        non-finite row is dropped when normalised, and which call it belonged to is then
        lost: the rest of the drain's calls must stay joinable. Their batch sizes are left
        in call order, which a drain that cut a huge call into slices corrects them by."""
        stacks = together if together is not None else \
            [bool(np.isfinite(r).all()) for r in results]
        first = len(self.batch_sizes)
        clean = iter(self.add_records([r for r, ok in zip(results, stacks) if ok],
                                      probabilities))
        found = [next(clean) if ok else self._add_call(result, probabilities)
                 for result, ok in zip(results, stacks)]
        added = self.batch_sizes[first:]
        if len(added) == len(results):  # the stacked ones first, then the others in turn
            stacked, apart = iter(added[:sum(stacks)]), iter(added[sum(stacks):])
            self.batch_sizes[first:] = [next(stacked) if ok else next(apart) for ok in stacks]
        return found if split else []


def scalar_row_columns(results: Sequence[tuple]) -> dict[str, np.ndarray] | None:
    """Many tuples of one row's outputs (``return label, score`` per call), each position
    of one kind in every call (:func:`scalar_column`), at most one of them labels (text,
    whole numbers or bools), as the dict of columns ``0``, ``1``, ... a call's tuple is
    read as; None for any other tuples. (Two label outputs would admit their classes to a
    capped class label output by output, where the calls read one at a time admit them
    call by call.)

    >>> {k: v.tolist() for k, v in scalar_row_columns([("a", 0.5), ("b", 0.25)]).items()}
    {'0': ['a', 'b'], '1': [0.5, 0.25]}
    >>> scalar_row_columns([("a", "b", 0.5)]) is None
    True
    """
    first = results[0]
    if not scalar_output_row(first) or set(map(len, results)) != {len(first)}:
        return None
    columns: dict[str, np.ndarray] = {}
    labels = 0
    for j, column in enumerate(zip(*results)):
        array = scalar_column(column)
        if array is None:
            return None
        labels += array.dtype.kind != "f"
        if labels > 1:
            return None
        columns[str(j)] = array
    return columns
