"""Many calls' pandas categoricals counted as one batch of labels.

A function that answers each request with a ``category`` Series (``pd.Series(labels,
dtype=classes_dtype)``, a label column cut from a frame) or a ``Categorical`` costs about
75 us a call to read alone: its codes, its categories made an array, its labels taken by
the codes, each through pandas' own Python. Read together, a call costs its codes and the
identity of its categories (under a microsecond when the calls share one dtype, as a
module-level ``CategoricalDtype`` gives them), and the rows are counted in numpy: each
distinct set of categories is read once, each call's codes are moved into the categories
of the whole drain, and the labels are counted per code.

What is counted is what reading each call alone counts: the same labels, the same classes
declared by the categories, a missing row under ``nan``, and the labels in the order the
rows first name them (past ``max_classes``, the classes seen first keep series of their
own).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np

from inferwatch.core.prediction_classes import MAX_DECLARED_CATEGORIES

_DTYPE = operator.attrgetter("dtype")
_ARRAY = operator.attrgetter("array")
_CODES = operator.attrgetter("codes")
_CATEGORIES = operator.attrgetter("categories")
_NDIM = operator.attrgetter("ndim")
_NDARRAYS = {np.ndarray}
_TEXT = {str}
_CATEGORICAL_DTYPES = frozenset({"CategoricalDtype"})


def categorical_label_counts(results: Sequence[object]
                             ) -> tuple[dict[str | None, int], frozenset[str], list[int]] | None:
    """For many calls' pandas categoricals (``category`` Series or ``Categorical``, one a
    call) of text categories: ({label: rows} in the order the rows first name them, and
    None last for the missing rows; the categories they declare as classes; each call's
    rows). None for anything else: another kind of result, an empty one, a category that
    is not text, or more categories than may be declared classes (each call is then read
    alone).

    >>> import pandas as pd
    >>> kind = pd.CategoricalDtype(["legit", "fraud"])
    >>> counts, declared, sizes = categorical_label_counts(
    ...     [pd.Series(["fraud", None], dtype=kind), pd.Series(["review"], dtype="category"),
    ...      pd.Series(["legit"], dtype=kind)])
    >>> counts, sorted(declared), sizes
    ({'fraud': 1, 'review': 1, 'legit': 1, None: 1}, ['fraud', 'legit', 'review'], [2, 1, 1])
    >>> categorical_label_counts([pd.Series(["a"])]) is None
    True
    """
    # The first call's kind first: a drain of other pandas results (float Series) pays
    # no dtype of each.
    kind = type(results[0])
    if not kind.__module__.startswith("pandas") or \
            type(getattr(results[0], "dtype", None)).__name__ not in _CATEGORICAL_DTYPES:
        return None
    try:
        dtypes = list(map(_DTYPE, results))
        if set(map(type, dtypes)) != {type(dtypes[0])}:
            return None
        # A Series' Categorical, or the Categorical itself: its codes (-1 for a missing row).
        codes_of_calls = list(map(_CODES, map(_ARRAY, results) if kind.__name__ == "Series"
                                  else results))
        categories = list(map(_CATEGORIES, dtypes))
    except AttributeError:
        return None
    if set(map(type, codes_of_calls)) != _NDARRAYS or set(map(_NDIM, codes_of_calls)) != {1}:
        return None
    sizes = list(map(len, codes_of_calls))
    if not all(sizes):
        return None  # an empty answer: read as the general path reads it
    ids = list(map(id, categories))
    labels, places, starts = _categories_of_calls(dict(zip(ids, categories)))
    if labels is None:
        return None
    # Each call's codes moved into the drain's categories: one table of every distinct set
    # of categories' places, each call's codes shifted to its own set's part of it (a
    # missing row's -1 to the table's last entry, -1 too, or the set before's last place,
    # which the missing rows' mask below replaces).
    codes = np.concatenate(codes_of_calls).astype(np.int64)
    shift_of_call = np.fromiter(map(starts.__getitem__, ids), dtype=np.int64, count=len(ids))
    rows = np.where(codes >= 0, places[codes + np.repeat(shift_of_call, sizes)], -1)
    present = rows[rows >= 0]
    counts: dict[str | None, int] = {}
    if present.size:
        found, first_rows = np.unique(present, return_index=True)
        per_code = np.bincount(present, minlength=len(labels))
        for code in found[np.argsort(first_rows, kind="stable")].tolist():
            counts[labels[code]] = int(per_code[code])
    missing = int(rows.size - present.size)
    if missing:
        counts[None] = missing
    return counts, frozenset(labels), sizes


def _categories_of_calls(categories_by_id: dict[int, object]
                         ) -> tuple[list[str] | None, np.ndarray, dict[int, int]]:
    """(every category of the calls, each once, in the order first met; the place in that
    list of each category of each distinct set, the sets one after the other, and a last
    -1; where each set's places start, by the id of its categories). None for the list
    when a category is not text or a set is too long to declare classes."""
    labels: list[str] = []
    place: dict[str, int] = {}
    places: list[int] = []
    starts: dict[int, int] = {}
    for key, categories in categories_by_id.items():
        names = tuple(categories)
        if not names or len(names) > MAX_DECLARED_CATEGORIES or \
                set(map(type, names)) != _TEXT:
            return None, np.empty(0, dtype=np.int64), {}
        starts[key] = len(places)
        for name in names:
            if name not in place:
                place[name] = len(labels)
                labels.append(name)
        places.extend(map(place.__getitem__, names))
    places.append(-1)
    return labels, np.array(places, dtype=np.int64), starts
