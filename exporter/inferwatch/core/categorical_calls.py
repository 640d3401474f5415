"""Many calls' pandas categoricals counted as one batch of labels.

A function that answers each request with a ``category`` Series (``pd.Series(labels,
dtype=classes_dtype)``, a label column cut from a frame) or a ``Categorical``, of text or
of integer categories (class ids), costs about 50 us a call to read alone: its codes, its
categories made an array, its labels taken by the codes, each through pandas' own Python.
Read together, a call costs its codes and the identity of its categories (under a
microsecond when the calls share one dtype, as a module-level ``CategoricalDtype`` gives
them): each distinct set of categories is read once, each call's codes are moved into the
categories of the whole drain, and the rows are counted in numpy (text) or admitted as one
array (class ids).

What is counted is what reading each call alone counts: the same labels, the same classes
declared by the categories, a missing row under ``nan``, and the labels in the order the
rows first name them (past ``max_classes``, the classes seen first keep series of their
own).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from inferwatch.core.library_columns import ARRAY_OF, DTYPE_OF, NDARRAY_ONLY
from inferwatch.core.prediction_classes import MAX_DECLARED_CATEGORIES
from inferwatch.core.stacked_results import NDIM_OF

_CODES = operator.attrgetter("codes")
_CATEGORIES = operator.attrgetter("categories")
_TEXT = {str}
_INTEGERS = {int}  # pandas gives integer categories as Python ints; bools stay apart
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_CATEGORICAL_DTYPES = frozenset({"CategoricalDtype"})


class CategoricalRows(NamedTuple):
    """Many calls' categoricals as one batch: the drain's categories (each once, in the
    order first met), each row's place among them (-1 for a missing row), the classes the
    categories declare (their text), each call's rows, and whether the categories are
    integers (class ids) rather than text."""

    categories: list
    rows: np.ndarray
    declared: frozenset[str]
    sizes: list[int]
    integers: bool

    def label_counts(self) -> dict[str | None, int]:
        """{label: rows} of text categories, in the order the rows first name them, and
        None last for the missing rows.

        >>> import pandas as pd
        >>> kind = pd.CategoricalDtype(["legit", "fraud"])
        >>> categorical_rows([pd.Series(["fraud", None], dtype=kind),
        ...                   pd.Series(["review"], dtype="category"),
        ...                   pd.Series(["legit"], dtype=kind)]).label_counts()
        {'fraud': 1, 'review': 1, 'legit': 1, None: 1}
        """
        present = self.rows[self.rows >= 0]
        counts: dict[str | None, int] = {}
        if present.size:
            found, first_rows = np.unique(present, return_index=True)
            per_place = np.bincount(present, minlength=len(self.categories))
            for place in found[np.argsort(first_rows, kind="stable")].tolist():
                counts[self.categories[place]] = int(per_place[place])
        missing = int(self.rows.size - present.size)
        if missing:
            counts[None] = missing
        return counts

    def labels(self) -> tuple[np.ndarray, int]:
        """(every row's label, in call order, without the missing rows; how many were
        missing): integer categories as int64, as each call's labels read alone are.

        >>> import pandas as pd
        >>> categorical_rows([pd.Series([3, None, 1], dtype="category")]).labels()[0].tolist()
        [3, 1]
        """
        present = self.rows[self.rows >= 0]
        values = np.array(self.categories, dtype=np.int64 if self.integers else object)
        return values[present], int(self.rows.size - present.size)


    def call_rows(self) -> list[tuple[tuple, None]]:
        """Each call's rows as an outcome joins them, as each call read alone gives them:
        (its labels as text, a missing row None; no values).

        >>> import pandas as pd
        >>> categorical_rows([pd.Categorical(["b", None]), pd.Categorical(["a"])]).call_rows()
        [(('b', None), None), (('a',), None)]
        """
        table = np.array([*map(str, self.categories), None], dtype=object)
        cells = table[self.rows].tolist()  # a missing row's -1: the table's last, None
        rows, offset = [], 0
        for size in self.sizes:
            rows.append((tuple(cells[offset:offset + size]), None))
            offset += size
        return rows


def categorical_rows(results: Sequence[object]) -> CategoricalRows | None:
    """Many calls' pandas categoricals (``category`` Series or ``Categorical``, one a
    call) of text or integer categories as one :class:`CategoricalRows`. None for anything
    else: another kind of result, an empty one, categories of another kind (floats, bools,
    text beside integers), or more categories than may be declared classes (each call is
    then read alone).

    >>> import pandas as pd
    >>> found = categorical_rows([pd.Series(["b", None], dtype="category"),
    ...                           pd.Series(["a"], dtype=pd.CategoricalDtype(["a", "b"]))])
    >>> found.categories, found.rows.tolist(), sorted(found.declared), found.sizes
    (['b', 'a'], [0, -1, 1], ['a', 'b'], [2, 1])
    >>> categorical_rows([pd.Series(["a"])]) is None
    True
    """
    # The first call's kind first: a drain of other pandas results (float Series) pays
    # no dtype of each.
    kind = type(results[0])
    if not kind.__module__.startswith("pandas") or \
            type(getattr(results[0], "dtype", None)).__name__ not in _CATEGORICAL_DTYPES:
        return None
    try:
        dtypes = list(map(DTYPE_OF, results))
        if set(map(type, dtypes)) != {type(dtypes[0])}:
            return None
        # A Series' Categorical, or the Categorical itself: its codes (-1 for a missing row).
        codes_of_calls = list(map(_CODES, map(ARRAY_OF, results) if kind.__name__ == "Series"
                                  else results))
        categories = list(map(_CATEGORIES, dtypes))
    except AttributeError:
        return None
    if set(map(type, codes_of_calls)) != NDARRAY_ONLY or \
            set(map(NDIM_OF, codes_of_calls)) != {1}:
        return None
    sizes = list(map(len, codes_of_calls))
    if not all(sizes):
        return None  # an empty answer: read as the general path reads it
    ids = list(map(id, categories))
    found = _categories_of_calls(dict(zip(ids, categories)))
    if found is None:
        return None
    labels, places, starts, integers = found
    # Each call's codes moved into the drain's categories: one table of every distinct set
    # of categories' places, each call's codes shifted to its own set's part of it (a
    # missing row's -1 to the table's last entry, -1 too, or the set before's last place,
    # which the missing rows' mask below replaces).
    codes = np.concatenate(codes_of_calls).astype(np.int64)
    shift_of_call = np.fromiter(map(starts.__getitem__, ids), dtype=np.int64, count=len(ids))
    rows = np.where(codes >= 0, places[codes + np.repeat(shift_of_call, sizes)], -1)
    return CategoricalRows(labels, rows, frozenset(map(str, labels)), sizes, integers)


def _categories_of_calls(categories_by_id: dict[int, object]
                         ) -> tuple[list, np.ndarray, dict[int, int], bool] | None:
    """(every category of the calls, each once, in the order first met; the place in that
    list of each category of each distinct set, the sets one after the other, and a last
    -1; where each set's places start, by the id of its categories; whether they are
    integers). None when a set is of other than text or integers (all of one kind), or too
    long to declare classes."""
    labels: list = []
    place: dict = {}
    places: list[int] = []
    starts: dict[int, int] = {}
    kinds: set[type] = set()
    for key, categories in categories_by_id.items():
        names = tuple(categories)
        if not names or len(names) > MAX_DECLARED_CATEGORIES:
            return None
        kinds.update(map(type, names))
        if kinds != _TEXT and (kinds != _INTEGERS or not _INT64_MIN <= min(names) <= max(
                names) <= _INT64_MAX):  # an id past int64 is read as each call reads it
            return None
        starts[key] = len(places)
        for name in names:
            if name not in place:
                place[name] = len(labels)
                labels.append(name)
        places.extend(map(place.__getitem__, names))
    places.append(-1)
    return labels, np.array(places, dtype=np.int64), starts, kinds == _INTEGERS
