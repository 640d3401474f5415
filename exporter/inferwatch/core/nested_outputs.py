"""Dict outputs whose values are dicts: a classifier's map of class probabilities beside
its label (``{"label": "fraud", "probability": {"legit": 0.07, "fraud": 0.93}}``, or a
batch's list of such maps), and other dicts of floats (feature attributions, per-class
logits), which are flattened as ``pandas.json_normalize`` names them.

Apart from :mod:`inferwatch.core.predictions` because which nested dict is what is a rule
of its own: read as a column of objects, a nested dict was one more label output, which
wrote the dict's real label ``label:fraud`` and counted every call
``unsupported_type``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from inferwatch.core.class_probabilities import looks_like_probabilities
from inferwatch.core.records import probability_map_rows

# The scalars a dict of floats holds: flattened, each is one value of its output. Whole
# numbers are not among them: in a dict they are ids and counts more often than values.
_FLOATS = frozenset({float, np.float64, np.float32, np.float16})
_DICT_ONLY = {dict}


class NestedOutputs:
    """What :func:`split_nested` made of a dict's outputs."""

    __slots__ = ("columns", "maps", "unreadable")

    def __init__(self) -> None:
        self.columns: list[tuple[str, object]] = []  # the dict's outputs, dicts flattened
        self.maps: list[tuple[np.ndarray, list]] = []  # class probabilities, with classes
        self.unreadable = 0  # nested dicts of neither kind (each of a list counts)


def has_nested(columns: list[tuple[object, object]]) -> bool:
    """Whether any of a dict's outputs is a dict, or a list that starts with one.

    >>> has_nested([("label", "a"), ("p", {"a": 1.0})]), has_nested([("label", ["a"])])
    (True, False)
    """
    for _, column in columns:
        if isinstance(column, Mapping) or (
                column.__class__ is list and column and isinstance(column[0], Mapping)):
            return True
    return False


def split_nested(columns: list[tuple[object, object]], task: str) -> NestedOutputs:
    """A dict's outputs with each value that is a dict (or a list of dicts, a batch's)
    read by what it holds:

    - a map of two or more classes to their probabilities (every value a number, the rows
      in [0, 1] and summing to 1, or any numbers under ``task="classification"``; never
      under ``task="regression"``): class probabilities, named by its keys, as ONNX's
      ``ZipMap`` is read;
    - a dict of floats: one output of values per key, named ``<output>.<key>``;
    - anything else: each dict counted, and no output (a label output would otherwise be one more
      among the dict's, and its labels written ``<name>:<label>``).

    >>> nested = split_nested([("label", "fraud"), ("p", {"legit": 0.1, "fraud": 0.9}),
    ...                        ("why", {"age": -0.2}), ("meta", {"v": "2"})], "auto")
    >>> nested.columns, [(m.tolist(), c) for m, c in nested.maps], nested.unreadable
    ([('label', 'fraud'), ('why.age', -0.2)], [([[0.1, 0.9]], ['legit', 'fraud'])], 1)
    """
    nested = NestedOutputs()
    for name, column in columns:
        rows = [column] if isinstance(column, Mapping) else column
        if not (rows.__class__ is list and rows and isinstance(rows[0], Mapping)):
            nested.columns.append((name, column))
            continue
        mapped = probability_map_rows(rows) if task != "regression" else None
        if mapped is not None and looks_like_probabilities(mapped[0], task, None,
                                                           by_shape=True):
            nested.maps.append(mapped)
        elif isinstance(column, Mapping) and column and \
                set(map(type, column.values())) <= _FLOATS:
            nested.columns.extend((f"{name}.{key}", value) for key, value in column.items())
        elif _float_rows(rows):
            # Rows of dicts each holding one (a batch's attributions): a column per key.
            nested.columns.extend((f"{name}.{key}", [row[key] for row in rows])
                                  for key in rows[0])
        else:
            nested.unreadable += len(rows)
    return nested


def _float_rows(rows: list) -> bool:
    """Whether `rows` are dicts of the same keys (in one order), each value a float.

    >>> _float_rows([{"a": 0.1, "b": 0.2}, {"a": 0.3, "b": 0.4}]), _float_rows([{"a": 1}])
    (True, False)
    """
    keys = tuple(rows[0]) if isinstance(rows[0], Mapping) else ()
    return bool(keys) and all(
        isinstance(row, Mapping) and tuple(row) == keys
        and set(map(type, row.values())) <= _FLOATS for row in rows)


def stackable_maps(column: list, task: str) -> bool:
    """Whether many calls' values of one output (`column`, one per call) are each a map of
    the same classes, in one key order, to finite probabilities by :func:`split_nested`'s
    rule: the list of them then reads as one matrix of those rows, as each reads alone.

    >>> stackable_maps([{"a": 0.2, "b": 0.8}, {"a": 0.5, "b": 0.5}], "auto")
    True
    >>> stackable_maps([{"a": 0.2, "b": 0.8}, {"a": 0.5, "b": 0.6}], "auto")  # one is not
    False
    """
    if set(map(type, column)) != _DICT_ONLY or len(set(map(tuple, column))) != 1:
        return False  # (a tie goes to the first key of each map's own order)
    mapped = probability_map_rows(column)
    # Every row is a probability row exactly when all of them are. A NaN or an infinity
    # (a row that task="classification" reads, and drops) is read call by call: which
    # call's row was dropped is then known.
    return mapped is not None and bool(np.isfinite(mapped[0]).all()) and \
        looks_like_probabilities(mapped[0], task, None, by_shape=True)
