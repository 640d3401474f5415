"""Readers of classifiers' answers that join many calls and read them once: label matrices
(a multi-output or multi-label classifier's ``predict``), an ONNX classifier's ``[labels,
probabilities]``, ``predict_proba`` as a 1-D array, a list of matrices
(``MultiOutputClassifier``), a DataFrame of a column per class or dicts of a probability
per class.

:class:`ClassifierResults` sits between :class:`~inferwatch.core.stacked_results.
StackedResults` and :class:`~inferwatch.core.prediction_batch.PredictionBatch`, and records
through the batch's own steps (``_normalized``, ``_add``, ``add_one``, ``add_stacked``,
``_class_names_once``). Apart from the batch because each of these answers has its own rule
for when a stack of calls reads as its calls do: the class cap admits labels in call order,
a binary ``[p0, p1]`` is one row where other pairs are two, labels held as objects must all
be text. With the request path each also splits each call's rows back out of the one read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inferwatch.core.call_rows import split_rows
from inferwatch.core.class_probabilities import binary_rows, two_classes
from inferwatch.core.classifier_outputs import joined_classifier_outputs, output_matrix_rows
from inferwatch.core.library_columns import is_polars_frame
from inferwatch.core.outcome_labels import kept_label
from inferwatch.core.predictions import MAX_LABEL_COLUMNS
from inferwatch.core.result_arrays import number_map_rows
from inferwatch.core.stacked_results import StackedResults


class ClassifierResults(StackedResults):
    """The readers of :class:`~inferwatch.core.prediction_batch.PredictionBatch` that join
    many calls' classifier answers: each returns None or False, recording nothing, for
    results it does not take."""

    def _add_output_matrices(self, results: Sequence[object], split: bool = False
                             ) -> list[tuple[tuple | None, tuple | None] | None] | None:
        """Many calls' ``predict_proba`` answers that are a list (or tuple) of probability
        matrices, one per output (scikit-learn's ``MultiOutputClassifier``), each output's
        matrices joined and read once: each matrix's rows are read on their own, as one
        call's are. With `split`, each call's rows for its outcome. None, recording
        nothing, for any other results."""
        sizes = output_matrix_rows(results)
        if sizes is None or 0 in sizes:
            return None
        joined = results[0].__class__([np.concatenate([r[j] for r in results])  # type: ignore[index]
                                       for j in range(len(results[0]))])  # type: ignore[arg-type]
        prediction = self._normalized(joined, True)
        if prediction is None:
            return [None] * len(results)  # as one call at a time: each fails alike
        self._add(prediction, sizes)
        # None where a row was dropped or several outputs hold classes: that call's outcome
        # then joins its own result, as when read alone.
        return split_rows(prediction, sizes) if split else []

    def _add_probability_frames(self, results: Sequence[object], split: bool = False
                                ) -> list[tuple[tuple | None, tuple | None] | None] | None:
        """Many calls' ``predict_proba`` answers as pandas DataFrames of the same columns,
        one per class, of the same dtypes (AutoGluon, H2O, a wrapper's
        ``pd.DataFrame(proba, columns=classes)``), or polars DataFrames of one schema,
        joined and read once: the columns name the classes for every call alike (or,
        named by their library alone, ``pd.DataFrame(proba)``, the model's classes name
        them), and each row is read on its own (:meth:`_add_joined_rows`). None, recording
        nothing, for any other frames."""
        found = self._polars_frames_join(results) if is_polars_frame(results[0].__class__) \
            else self._typed_frames_join(results)
        return None if found is None else self._add_joined_rows(found, len(results), True,
                                                                split)

    def _add_probability_maps(self, results: Sequence[object], split: bool = False
                              ) -> list[tuple[tuple | None, tuple | None] | None] | None:
        """Many calls' ``predict_proba`` answers as dicts of a probability per class, their
        columns, or rows of such dicts (``[dict(zip(classes_, p)) for p in proba]``), of the
        same keys in the same order (:func:`number_map_rows`): joined into one dict of
        columns and read once, as :meth:`_add_probability_frames` reads frames. None,
        recording nothing, for any other results."""
        found = number_map_rows(results)
        if found is None:
            return None
        keys, matrix, sizes = found
        return self._add_joined_rows((lambda: dict(zip(keys, matrix.T)), sizes), len(results),
                                     True, split)

    def _add_probability_vectors(self, stacked: np.ndarray, width: int, calls: int) -> bool:
        """Calls whose ``predict_proba`` returned a 1-D float array of `width` values each
        (one after another in `stacked`), read as each call alone reads its array: a binary
        classifier's positive-class probabilities, one a row, or else one row of class
        probabilities (one sample's ``softmax``). False, recording nothing, where calls
        read otherwise than one another (a binary classifier's ``[p0, p1]`` summing to 1,
        one row, beside pairs that do not, two rows)."""
        found = self._probability_vectors_matrix(stacked, width, calls)
        if found is None:
            return False
        matrix, shape = found
        self.add_stacked(matrix, shape, calls, True)
        return True

    def _probability_vectors_matrix(self, stacked: np.ndarray, width: int, calls: int
                                    ) -> tuple[np.ndarray, tuple[int, int]] | None:
        """(The matrix of :meth:`_add_probability_vectors`' calls' rows, each call's shape
        in it), or None."""
        one_row_each = not two_classes(self._class_names_once())
        if not one_row_each and width == 2:
            pairs = binary_rows(stacked.reshape(calls, 2))
            if pairs.all():
                one_row_each = True
            elif pairs.any():
                return None
        if one_row_each:
            return stacked.reshape(calls, width), (1, width)
        return stacked.reshape(-1, 1), (width, 1)

    def _probability_vector_records(self, results: Sequence[object]
                                    ) -> list[tuple[tuple | None, tuple | None] | None] | None:
        """:meth:`_add_probability_vectors` under ``request_id=``: each call's rows split
        from the one read. None, recording nothing, for any other results, and where the
        read dropped a row (NaN: whose it was is known only call by call)."""
        first = results[0]
        if first.__class__ is not np.ndarray or first.ndim != 1 or not first.shape[0] or \
                first.dtype.kind != "f" or not all(
                    r.__class__ is np.ndarray and r.shape == first.shape and
                    r.dtype.kind == "f" for r in results):
            return None
        found = self._probability_vectors_matrix(np.concatenate(results), first.shape[0],
                                                 len(results))
        if found is None:
            return None
        matrix, (rows_each, _) = found
        prediction = self._normalized(matrix, True)
        if prediction is None:
            return [None] * len(results)  # as one call at a time: each fails alike
        sizes = [rows_each] * len(results)
        rows = split_rows(prediction, sizes)
        if any(row is None for row in rows):
            return None
        self._add(prediction, sizes)
        return rows

    def _add_label_matrices(self, stacked: np.ndarray, sizes: list[int]) -> None:
        """Calls that each returned a matrix of labels (`sizes` rows each, one after another
        in `stacked`), read as one: each value is a class or not on its own. A stack is read
        column by column, a call's matrix too; the classes are put back in the order the
        calls give them (call after call, each column by column), since the class cap
        admits labels as they first come. Where the read dropped a value (a label no class
        may be), which call it came from is lost: each call is then read alone."""
        prediction = self._normalized(stacked, False)
        if prediction is None:
            return  # as one call at a time: each would have failed the same way
        classes, width = prediction.classes, stacked.shape[1]
        if classes is not None and width > 1 and len(sizes) > 1:
            if classes.size != stacked.shape[0] * width:
                for start, end in zip(np.cumsum([0, *sizes[:-1]]).tolist(),
                                      np.cumsum(sizes).tolist()):
                    self.add_one(stacked[start:end], False)
                return
            prediction.classes = classes[_call_order(sizes, width)]
        self._add(prediction, sizes)

    def _add_classifier_outputs(self, results: Sequence[object], split: bool = False
                                ) -> list[tuple[tuple | None, tuple | None] | None] | None:
        """Many calls' ``[labels, probabilities]`` (an ONNX classifier's answers) recorded as
        one joined answer (:func:`~inferwatch.core.classifier_outputs.
        joined_classifier_outputs`), and with `split` each call's rows for its outcome
        split from it; None, recording nothing, when they cannot be joined, or (`split`)
        when the read dropped a label no class may be, whose call is then lost."""
        found = joined_classifier_outputs(results, self.settings.task,
                                          self._class_names_once())
        if found is None:
            return None
        joined, sizes = found
        prediction = self._normalized(joined, False)
        if prediction is None:
            return [None] * len(results)  # as one call at a time: each fails alike
        rows = split_rows(prediction, sizes) if split else []
        if any(row is None for row in rows):
            return None
        self._add(prediction, sizes)
        return rows

    def _label_matrix_records(self, results: Sequence[object]
                              ) -> list[tuple[tuple, None]] | None:
        """Many calls' label matrices of one width and kind (a multi-output classifier's
        ``predict`` under ``request_id=``) recorded as one stack
        (:meth:`_add_label_matrices`), and each call's rows for its outcome: its labels
        lie in several outputs, so it is joined by the labels of its own result, a tuple
        of its outputs' labels a row (what ``joinable_labels`` reads off one matrix), read
        here off the stack at once. None, recording nothing, for any other results."""
        first = results[0]
        if first.__class__ is not np.ndarray or first.ndim != 2 or \
                not 2 <= first.shape[1] <= MAX_LABEL_COLUMNS or first.dtype.kind not in "iubUSO":
            return None
        width, kind = first.shape[1], first.dtype.kind
        if not all(r.__class__ is np.ndarray and r.ndim == 2 and r.shape[1] == width and
                   r.dtype.kind == kind for r in results):
            return None
        stacked = np.concatenate(results)
        if not text_cells(stacked):
            return None
        sizes = [r.shape[0] for r in results]
        self._add_label_matrices(stacked, sizes)
        rows = label_matrix_rows(stacked)
        ends = np.cumsum(sizes).tolist()
        return [(tuple(rows[end - size:end]), None) for size, end in zip(sizes, ends)]


_STR_ONLY = {str}


def text_cells(stacked: np.ndarray) -> bool:
    """Whether a label matrix of Python objects holds text in every cell (a column of
    numbers among objects is read as values, call by call); True for numpy's own dtypes.

    >>> text, mixed = np.array([["a", "b"]], dtype=object), np.array([["a", 1]], dtype=object)
    >>> text_cells(text), text_cells(mixed)
    (True, False)
    """
    return stacked.dtype.kind != "O" or set(map(type, stacked.ravel().tolist())) <= _STR_ONLY


def _call_order(sizes: Sequence[int], width: int) -> np.ndarray:
    """Where each cell of a stack of calls' matrices (`sizes` rows each, `width` columns),
    read column by column, lies in the read of each call's matrix after the other.

    >>> _call_order([1, 2], 2).tolist()  # the 1-row call's two cells, then the other's
    [0, 3, 1, 2, 4, 5]
    """
    rows = np.asarray(sizes, dtype=np.int64)
    total = int(rows.sum())
    cells = rows * width
    call = np.repeat(np.arange(rows.size), cells)
    within = np.arange(total * width) - np.repeat(np.cumsum(cells) - cells, cells)
    column, row = np.divmod(within, rows[call])
    return column * total + (np.cumsum(rows) - rows)[call] + row


def label_matrix_rows(stacked: np.ndarray) -> list[tuple[str, ...]]:
    """Each row of a label matrix as the tuple of its labels' text an outcome joins it by
    (``kept_label`` of each cell, as ``joinable_labels`` reads one matrix), each distinct
    label's text made once.

    >>> label_matrix_rows(np.array([[0, 1], [1, 1]]))
    [('0', '1'), ('1', '1')]
    """
    if not stacked.size:
        return [()] * stacked.shape[0]
    distinct, inverse = np.unique(stacked.reshape(-1), return_inverse=True)
    texts = np.empty(distinct.size, dtype=object)
    texts[:] = list(map(kept_label, distinct.tolist()))
    return list(map(tuple, texts[inverse.reshape(-1)].reshape(stacked.shape).tolist()))
