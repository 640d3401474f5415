"""One column's profile: the :class:`Profile` record of a feature's or a prediction output's
reference distribution, its two kinds, and its saved dict read back with every key checked.

:class:`ReferenceError` is here too: profiling, reading the data and reading files all raise
it, and each of them builds on this module rather than on another.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferwatch.catalogue import OTHER
from inferwatch.quality.category_keys import category_key

NUMERIC = "numeric"
CATEGORICAL = "categorical"
# Fractions must sum to one; JSON round-trips floats exactly, so this only absorbs
# hand-edited files and the rounding of the sum itself.
_SUM_TOLERANCE = 1e-6


class ReferenceError(ValueError):
    """A reference that cannot be used: wrong file, wrong version, or mismatched features."""


@dataclass(frozen=True)
class Profile:
    """The reference distribution of one feature or prediction output.

    Numeric: ``edges`` are the inner cut points; bin ``i`` holds values ``v`` with
    ``edges[i-1] <= v < edges[i]`` and the outer bins are open-ended, so ``len(edges) + 1``
    bins cover every value. Categorical: ``categories`` name the bins, the last one always
    ``__other__``. ``fractions`` are shares of the non-missing values, one per bin.

    >>> p = Profile("x", NUMERIC, fractions=(0.5, 0.5), edges=(1.0,), min=0.0, max=2.0)
    >>> p.n_bins, p.bin_index(1.0)
    (2, 1)
    """

    name: str
    kind: str
    fractions: tuple[float, ...]
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    missing_rate: float = 0.0
    count: int = 0

    @property
    def n_bins(self) -> int:
        return len(self.fractions)

    @property
    def is_numeric(self) -> bool:
        return self.kind == NUMERIC

    def bin_index(self, value: Any) -> int:
        """The bin a single value falls in (for reading profiles; batches use checks.py)."""
        if self.is_numeric:
            return int(np.searchsorted(np.asarray(self.edges), float(value), side="right"))
        key = category_key(value)
        return self.categories.index(key) if key in self.categories[:-1] else self.n_bins - 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.is_numeric:
            out["edges"] = list(self.edges)
            out["min"] = self.min
            out["max"] = self.max
        else:
            out["categories"] = list(self.categories)
        out["fractions"] = list(self.fractions)
        out["missing_rate"] = self.missing_rate
        out["count"] = self.count
        return out


# --- reading files --------------------------------------------------------------------------

def profile_from_dict(item: Any, where: str) -> Profile:
    """The profile a saved dict describes (as :meth:`Profile.to_dict` writes it), every key
    checked: `where` names the entry in the :class:`ReferenceError` any problem raises."""
    if not isinstance(item, dict):
        raise ReferenceError(f"{where}: expected an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ReferenceError(f"{where}: key 'name' must be a non-empty string")
    where = f"{where} ({name!r})"
    kind = item.get("kind")
    if kind not in (NUMERIC, CATEGORICAL):
        raise ReferenceError(f"{where}: key 'kind' is {kind!r}, expected 'numeric' or"
                             " 'categorical'")
    fractions = _number_list(item, "fractions", where)
    if any(f < 0 for f in fractions) or not fractions:
        raise ReferenceError(f"{where}: key 'fractions' must be non-negative and non-empty")
    total = sum(fractions)
    if total != 0 and abs(total - 1.0) > _SUM_TOLERANCE:
        raise ReferenceError(f"{where}: key 'fractions' sums to {total}, expected 1")
    missing_rate = item.get("missing_rate", 0.0)
    if not _is_number(missing_rate) or not 0.0 <= missing_rate <= 1.0:
        raise ReferenceError(f"{where}: key 'missing_rate' must be a number in [0, 1]")
    count = item.get("count", 0)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ReferenceError(f"{where}: key 'count' must be a non-negative integer")
    if kind == NUMERIC:
        edges = _number_list(item, "edges", where)
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise ReferenceError(f"{where}: key 'edges' must be strictly increasing")
        if len(fractions) != len(edges) + 1:
            raise ReferenceError(f"{where}: key 'fractions' has {len(fractions)} entries,"
                                 f" expected {len(edges) + 1} (one more than 'edges')")
        lo, hi = item.get("min"), item.get("max")
        for key, v in (("min", lo), ("max", hi)):
            if v is not None and not _is_number(v):
                raise ReferenceError(f"{where}: key {key!r} must be a number or null")
        # Live values are out of range below 'min' or above 'max': an inverted or half-open
        # range would count every one of them, and page on a typo.
        if (lo is None) != (hi is None):
            raise ReferenceError(f"{where}: keys 'min' and 'max' must both be numbers, or"
                                 " both null (a feature with no value in training)")
        if lo is not None and float(lo) > float(hi):
            raise ReferenceError(f"{where}: key 'min' ({lo}) is greater than 'max' ({hi})")
        return Profile(name, NUMERIC, fractions=tuple(fractions), edges=tuple(edges),
                       min=None if lo is None else float(lo), max=None if hi is None else float(hi),
                       missing_rate=float(missing_rate), count=count)
    categories = item.get("categories")
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise ReferenceError(f"{where}: key 'categories' must be a list of strings")
    if not categories or categories[-1] != OTHER or len(set(categories)) != len(categories):
        raise ReferenceError(f"{where}: key 'categories' must be distinct and end with {OTHER!r}")
    if len(fractions) != len(categories):
        raise ReferenceError(f"{where}: key 'fractions' has {len(fractions)} entries,"
                             f" expected {len(categories)} (one per category)")
    return Profile(name, CATEGORICAL, fractions=tuple(fractions), categories=tuple(categories),
                   missing_rate=float(missing_rate), count=count)


def _is_number(v: Any) -> bool:
    """A finite JSON number that a float64 holds (an integer like 10**400 is refused, not
    an OverflowError)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _number_list(item: dict[str, Any], key: str, where: str) -> list[float]:
    values = item.get(key)
    if not isinstance(values, list) or not all(_is_number(v) for v in values):
        raise ReferenceError(f"{where}: key {key!r} must be a list of finite numbers")
    return [float(v) for v in values]
