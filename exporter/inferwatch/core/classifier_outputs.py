"""Many calls' ``[labels, probabilities]`` (an ONNX classifier's ``session.run``) joined
into one, for a drain to read once.

An ONNX classifier exported by skl2onnx answers each call with its labels and either a
probability matrix or a ``ZipMap`` (a dict of class probabilities per row). Read one call
at a time, each costs 30 to 45 us of drain. Every rule that reads such a call holds for a
joined one exactly when it holds for each call (each row a probability row, the same
classes in the same order, no more distinct labels than classes where the labels name
them), so the joined result reads as its calls do. Apart from ``prediction_batch``
because it is a job of its own: judging whether the calls may be joined.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from inferwatch.core.class_probabilities import looks_like_probabilities
from inferwatch.core.records import probability_map_rows


def joined_classifier_outputs(results: Sequence[object], task: str,
                              class_names: Sequence[object] | None
                              ) -> tuple[object, list[int]] | None:
    """(The calls' outputs joined, as one call's list or tuple of labels and
    probabilities; each call's rows) when reading the joined one records what reading
    each call does; None otherwise (nothing judged, the calls read one by one).

    >>> calls = [[np.array([1]), np.array([[0.3, 0.7]])], [np.array([0]), np.array([[0.9, 0.1]])]]
    >>> joined, sizes = joined_classifier_outputs(calls, "auto", None)
    >>> joined[0].tolist(), joined[1].tolist(), sizes
    ([1, 0], [[0.3, 0.7], [0.9, 0.1]], [1, 1])
    """
    if task == "regression" or len(results) < 2:
        return None
    container = results[0].__class__
    if container not in (list, tuple) or not all(
            result.__class__ is container and len(result) == 2 for result in results):
        return None
    labels = [result[0] for result in results]  # type: ignore[index]
    parts = [result[1] for result in results]  # type: ignore[index]
    if not all(label.__class__ is np.ndarray and label.ndim == 1 and label.shape[0]
               for label in labels):
        return None
    kinds = {label.dtype.kind for label in labels}
    if len(kinds) != 1 or not kinds <= set("iubUSO"):
        return None
    sizes = [label.shape[0] for label in labels]
    stacked_labels = np.concatenate(labels)
    if kinds == {"O"} and set(map(type, stacked_labels.tolist())) != {str}:
        return None  # numbers among objects are read as values, call by call
    joined_part, width = _joined_probabilities(parts, sizes, task)
    if joined_part is None:
        return None
    if joined_part.__class__ is np.ndarray and not (
            class_names is not None and len(class_names) == width):
        # The labels then name the classes when no more distinct than the columns: that
        # holds for each call when it holds for all of them, not the other way round.
        try:
            if np.unique(stacked_labels).size > width:
                return None
        except TypeError:  # labels that do not compare: read call by call
            return None
    return container([stacked_labels, joined_part]), sizes


def _joined_probabilities(parts: Sequence[object], sizes: Sequence[int], task: str
                          ) -> tuple[object, int]:
    """The calls' probability parts joined (a matrix, or one list of ZipMap rows) and
    their width, when every row of every call is read as class probabilities; (None, 0)
    otherwise."""
    first = parts[0]
    if first.__class__ is np.ndarray:
        if not all(part.__class__ is np.ndarray and part.ndim == 2 and
                   part.shape == (size, first.shape[1]) and part.dtype.kind == "f"
                   for part, size in zip(parts, sizes)):
            return None, 0
        matrix = np.concatenate(parts)
        # Every row a probability row: so is every call's (one call's odd row sends that
        # call to another reading, which a joined matrix would send them all to).
        if not looks_like_probabilities(matrix, task, None, by_shape=True):
            return None, 0
        return matrix, matrix.shape[1]
    if not all(part.__class__ is list and len(part) == size
               for part, size in zip(parts, sizes)):
        return None, 0
    # ZipMap rows: every row a dict of the same classes, in the joined rows as in each
    # call's (another order of the keys names the same columns).
    rows = list(itertools.chain.from_iterable(parts))
    found = probability_map_rows(rows)
    if found is None:
        return None, 0
    return rows, len(found[1])


def output_matrix_rows(answers: Sequence[object]) -> list[int] | None:
    """The rows of each of many calls' ``predict_proba`` answers that are each a list (or
    tuple, one class for all) of float matrices, one per output (scikit-learn's
    ``MultiOutputClassifier``), of the first answer's widths, every output of a call of
    the same rows: what joins per output and reads as the calls do. None for any other
    answers.

    >>> one, two = np.zeros((1, 2)), np.zeros((2, 2))
    >>> output_matrix_rows([[one, one], [two, two]]), output_matrix_rows([[one, two]])
    ([1, 2], None)
    """
    first = answers[0]
    container = first.__class__
    if container not in _OUTPUT_LISTS or not first:
        return None
    widths = [part.shape[1] if part.__class__ is np.ndarray and part.ndim == 2 else 0
              for part in first]  # type: ignore[attr-defined]
    if 0 in widths:
        return None
    sizes = []
    for answer in answers:
        if answer.__class__ is not container or len(answer) != len(widths):  # type: ignore[arg-type]
            return None
        rows = answer[0].shape[0] if answer[0].__class__ is np.ndarray else -1  # type: ignore[index]
        if not all(part.__class__ is np.ndarray and part.shape == (rows, width) and
                   part.dtype.kind == "f" for part, width in zip(answer, widths)):  # type: ignore[call-overload]
            return None
        sizes.append(rows)
    return sizes


_OUTPUT_LISTS = frozenset((list, tuple))
