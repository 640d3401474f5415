"""Drift of binned counts against reference fractions: PSI, Jensen-Shannon and KS distances.

All features are scored at once: their bins sit end to end in one flat array described by
a :class:`~inferwatch.quality.bin_layout.BinLayout`, so every statistic is a handful of
numpy operations whatever the number of features. The rolling window those counts come
from is :class:`~inferwatch.quality.drift_window.DriftWindow` (importable from here too).

>>> ref = np.array([0.25, 0.25, 0.25, 0.25])
>>> round(psi(ref, np.array([25, 25, 25, 25])), 6)
0.0
>>> round(js_distance(ref, np.array([50, 50, 0, 0])), 4)
0.5579
>>> ks_distance(ref, np.array([50, 50, 0, 0]))
0.5
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from inferwatch.quality.bin_layout import BinLayout
from inferwatch.quality.drift_window import DriftWindow  # imported from here in docs/drift.md

METHODS = ("psi", "js", "ks")
# PSI divides by bin shares; an empty bin (in the reference or the window) counts as this
# share instead of zero, the usual convention (and Evidently's value).
EPSILON = 1e-4


# --- statistics on flat arrays ---------------------------------------------------------------

def _shares(flat: np.ndarray, layout: BinLayout) -> tuple[np.ndarray, np.ndarray]:
    """Each bin's share of its feature's total, and the totals (NaN shares when empty)."""
    flat = flat.astype(np.float64, copy=False)
    with np.errstate(over="ignore"):
        totals = np.add.reduceat(flat, layout.starts) if layout.total else np.zeros(0)
    if not np.isfinite(totals).all():
        # Finite counts whose sum overflows (1e308 twice) gave every bin a share of 0, and
        # a KS of 1: shares do not change when a feature's counts are scaled down first.
        scale = np.maximum.reduceat(flat, layout.starts)
        flat = flat / np.repeat(np.where(scale > 0, scale, 1.0), layout.sizes)
        totals = np.add.reduceat(flat, layout.starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = flat / np.repeat(totals, layout.sizes)
    return shares, totals


def _psi(p: np.ndarray, q: np.ndarray, layout: BinLayout, epsilon: float) -> np.ndarray:
    p = np.maximum(p, epsilon)
    q = np.maximum(q, epsilon)
    return np.add.reduceat((q - p) * np.log(q / p), layout.starts)


def _js(p: np.ndarray, q: np.ndarray, layout: BinLayout) -> np.ndarray:
    # p / m as 2p / (p + q): half of the smallest subnormal share is 0, so a mixture
    # m = (p + q) / 2 can underflow to 0 where p > 0, and one such bin read as the whole
    # distance (1.0). The sum does not underflow, and each ratio stays within 0..2.
    both = p + q
    with np.errstate(invalid="ignore", divide="ignore"):
        # 0 * log(0 / m) is 0; p + q > 0 wherever p > 0 or q > 0.
        terms = np.where(p > 0, p * np.log2(2 * p / both), 0.0) + \
            np.where(q > 0, q * np.log2(2 * q / both), 0.0)
    divergence = 0.5 * np.add.reduceat(terms, layout.starts)
    return np.sqrt(np.clip(divergence, 0.0, 1.0))


def _ks(p: np.ndarray, q: np.ndarray, layout: BinLayout, ordered: np.ndarray) -> np.ndarray:
    diff = p - q
    running = np.cumsum(diff)
    before = np.concatenate(([0.0], running))[layout.starts]
    cdf_gap = np.maximum.reduceat(np.abs(running - np.repeat(before, layout.sizes)), layout.starts)
    total_variation = 0.5 * np.add.reduceat(np.abs(diff), layout.starts)
    return np.where(ordered, cdf_gap, total_variation)


def _scores(ref_shares: np.ndarray, ref_totals: np.ndarray, counts: np.ndarray,
            layout: BinLayout, ordered: np.ndarray, methods: Sequence[str],
            epsilon: float) -> dict[str, np.ndarray]:
    q, totals = _shares(counts, layout)
    empty = (totals <= 0) | (ref_totals <= 0)
    # The shares of an empty feature (0 / 0) count as 0, in place: q is a new array, and
    # np.nan_to_num took a fifth of a scrape's drift scoring. No share is infinite: the
    # counts are finite, and each is at most its feature's total.
    np.copyto(q, 0.0, where=np.isnan(q))
    out: dict[str, np.ndarray] = {}
    for method in methods:
        if method == "psi":
            values = _psi(ref_shares, q, layout, epsilon)
        elif method == "js":
            values = _js(ref_shares, q, layout)
        elif method == "ks":
            values = _ks(ref_shares, q, layout, ordered)
        else:
            raise ValueError(f"unknown drift method {method!r}; choose from {METHODS}")
        values[empty] = np.nan
        out[method] = values
    return out


def _checked(flat: np.ndarray, what: str) -> np.ndarray:
    """`flat` when every value is a finite number >= 0, else a ValueError naming `what`.

    A NaN, infinite or negative count or fraction has no share of a distribution: scored
    as it is, it gives a finite number that looks like real drift (a NaN count made a
    feature's total NaN and its other bins a PSI of 8.5).
    """
    if flat.dtype.kind not in "iub":
        try:
            bad = not bool(np.isfinite(flat).all())
        except TypeError:
            raise ValueError(f"{what} must be numbers, got dtype {flat.dtype}") from None
        if bad:
            raise ValueError(f"{what} must be finite numbers >= 0, got"
                             f" {flat[~np.isfinite(flat)][0]!r}")
    if flat.size and flat.min() < 0:
        raise ValueError(f"{what} must be finite numbers >= 0, got {flat.min()!r}")
    return flat


def _checked_epsilon(epsilon: Any) -> float:
    """A PSI floor in (0, 1): at 0 an empty bin is log(0) (NaN or infinite PSI), and at 1 or
    more every share is floored to the same value, so nothing ever drifts."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating)) \
            or not 0.0 < float(epsilon) < 1.0:
        raise ValueError(f"epsilon must be a number between 0 and 1 (exclusive), got"
                         f" {epsilon!r}")
    return float(epsilon)


def _pairs(ref_fractions: Any, counts: Any) -> tuple[bool, BinLayout, np.ndarray, np.ndarray]:
    single = len(ref_fractions) > 0 and np.ndim(ref_fractions[0]) == 0
    refs = [ref_fractions] if single else list(ref_fractions)
    cnts = [counts] if single else list(counts)
    if len(refs) != len(cnts):
        raise ValueError(f"{len(refs)} reference distributions but {len(cnts)} count arrays")
    layout = BinLayout([len(r) for r in refs])
    ref_flat = layout.join([np.asarray(r, dtype=np.float64) for r in refs])
    count_flat = np.asarray(layout.join(cnts))
    return single, layout, _checked(ref_flat, "reference fractions"), \
        _checked(count_flat, "counts")


def _one_method(method: str, ref_fractions: Any, counts: Any, ordered: Any = True,
                epsilon: float = EPSILON) -> Any:
    epsilon = _checked_epsilon(epsilon)
    single, layout, ref_flat, count_flat = _pairs(ref_fractions, counts)
    ref_shares, ref_totals = _shares(ref_flat, layout)
    ordered_mask = np.broadcast_to(np.asarray(ordered, dtype=bool), (len(layout),))
    values = _scores(np.nan_to_num(ref_shares), ref_totals, count_flat, layout, ordered_mask,
                     (method,), epsilon)[method]
    return float(values[0]) if single else values


def psi(ref_fractions: Any, counts: Any, *, epsilon: float = EPSILON) -> Any:
    """Population stability index: sum over bins of (q - p) * ln(q / p).

    `p` are the reference fractions, `q` the window's counts as shares; shares below
    `epsilon` count as `epsilon`. One feature (1-D arrays) gives a float; a sequence of
    per-feature arrays gives an array with one value per feature (NaN when empty).

    >>> round(psi([0.5, 0.5], [90, 10]), 4)
    0.8789
    >>> psi([[0.5, 0.5], [1.0]], [[50, 50], [7]]).tolist()
    [0.0, 0.0]
    """
    return _one_method("psi", ref_fractions, counts, epsilon=epsilon)


def js_distance(ref_fractions: Any, counts: Any) -> Any:
    """Jensen-Shannon distance, base 2 (in [0, 1]), between the reference and the window.

    Equal to ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.

    >>> js_distance([1.0, 0.0], [0, 10])
    1.0
    """
    return _one_method("js", ref_fractions, counts)


def ks_distance(ref_fractions: Any, counts: Any, *, ordered: Any = True) -> Any:
    """Largest gap between the cumulative distributions over the ordered bins.

    For unordered (categorical) bins, pass ``ordered=False`` (or one flag per feature): the
    result is then the total variation distance, half the sum of absolute differences,
    which is the largest gap over every set of categories.

    >>> ks_distance([0.5, 0.5, 0.0], [0, 5, 5])
    0.5
    >>> ks_distance([0.5, 0.5, 0.0], [0, 5, 5], ordered=False)
    0.5
    """
    return _one_method("ks", ref_fractions, counts, ordered=ordered)


# --- scoring against a reference -------------------------------------------------------------

class DriftScorer:
    """Drift of window counts against a set of profiles, compiled once for scrape time.

    `profiles` is ``reference.features``, ``reference.outputs`` or a Reference (its features).

    >>> from inferwatch.quality.reference import Reference
    >>> ref = Reference.from_data({"a": np.arange(100.0)}, bins=4)
    >>> scorer = DriftScorer(ref)
    >>> scorer.scores([np.array([0, 0, 0, 10])])[("a", "ks")]
    0.75
    """

    def __init__(self, profiles: Any, *, methods: Sequence[str] = METHODS,
                 epsilon: float = EPSILON) -> None:
        profiles = getattr(profiles, "features", profiles)
        if isinstance(methods, str):
            # One method by name (what the config's drift.method holds), not its letters.
            methods = (methods,)
        for method in methods:
            if method not in METHODS:
                raise ValueError(f"unknown drift method {method!r}; choose from {METHODS}")
        self.names = list(profiles)
        self.methods = tuple(methods)
        self.epsilon = _checked_epsilon(epsilon)
        self.layout = BinLayout.of(profiles)
        ref_flat = np.concatenate([np.asarray(p.fractions, dtype=np.float64)
                                   for p in profiles.values()]) if self.names else np.zeros(0)
        shares, self._ref_totals = _shares(ref_flat, self.layout)
        self._ref_shares = np.nan_to_num(shares)
        self.ordered = np.array([p.is_numeric for p in profiles.values()], dtype=bool)

    def arrays(self, counts: Any) -> dict[str, np.ndarray]:
        """method -> one value per profile, in profile order (NaN where nothing was counted)."""
        if not self.names:
            return {m: np.zeros(0) for m in self.methods}
        flat = self._flat(counts)
        return _scores(self._ref_shares, self._ref_totals, flat, self.layout, self.ordered,
                       self.methods, self.epsilon)

    def scores(self, counts: Any) -> dict[tuple[str, str], float]:
        """(name, method) -> drift, for counts given flat, per profile, or by name."""
        arrays = self.arrays(counts)
        out: dict[tuple[str, str], float] = {}
        for method, values in arrays.items():
            for name, value in zip(self.names, values.tolist()):
                out[(name, method)] = value
        return out

    def _flat(self, counts: Any) -> np.ndarray:
        if isinstance(counts, Mapping):
            # A misspelled name was scored as a profile without rows (NaN, "no data"),
            # hiding the drift of the feature it meant.
            known = set(self.names)
            unknown = [name for name in counts if name not in known]
            if unknown:
                more = ", ..." if len(unknown) > 10 else ""
                raise ValueError(f"counts name no profile: {', '.join(map(repr, unknown[:10]))}"
                                 f"{more} (profiles: {', '.join(map(repr, self.names[:10]))}"
                                 f"{', ...' if len(self.names) > 10 else ''})")
            counts = [counts.get(name, np.zeros(size)) for name, size in
                      zip(self.names, self.layout.sizes.tolist())]
        return _checked(np.asarray(self.layout.join(counts)), "counts")


def drift_scores(reference: Any, window_counts: Any, *, methods: Sequence[str] = METHODS,
                 epsilon: float = EPSILON) -> dict[tuple[str, str], float]:
    """(name, method) -> drift of `window_counts` against a reference.

    `reference` is a Reference (scores its features) or a mapping of profiles such as
    ``reference.outputs`` (scores predictions). `window_counts` is what
    :meth:`DriftWindow.counts` returns first: per-profile bin counts (or a flat array, or a
    dict by name). Compile a :class:`DriftScorer` once instead when scoring repeatedly.

    >>> from inferwatch.quality.reference import Reference
    >>> ref = Reference.from_data({"a": np.arange(100.0)}, bins=4)
    >>> drift_scores(ref, [np.array([25, 25, 25, 25])])
    {('a', 'psi'): 0.0, ('a', 'js'): 0.0, ('a', 'ks'): 0.0}
    """
    return DriftScorer(reference, methods=methods, epsilon=epsilon).scores(window_counts)


__all__ = ["EPSILON", "METHODS", "DriftScorer", "DriftWindow", "drift_scores", "js_distance",
           "ks_distance", "psi"]
