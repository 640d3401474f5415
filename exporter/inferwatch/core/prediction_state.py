"""What one drain's predictions write into the model state.

:class:`~inferwatch.core.prediction_batch.PredictionBatch` gathers a drain's results;
:func:`write_batch` records them: each output's rolling quantiles and histogram, class
counts under the class cap, confidence, invalid counts, and the task ``auto`` turns out to
be. The float and probability folds (``float_fold``, ``probability_fold``) write through
the same helpers.

>>> count_classes([np.array([1, 0, 1]), np.array(["cat"], dtype=object)])
{'0': 1, '1': 2, 'cat': 1}
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from inferwatch.catalogue import OTHER
from inferwatch.core.ddsketch import quiet_sum
from inferwatch.core.prediction_classes import SMALL_INTEGER_LIMIT, class_labels
from inferwatch.core.result_arrays import MAX_SPARSE_RESULT_CELLS, MAX_SPARSE_RESULT_COLUMNS
from inferwatch.core.state import ModelState

if TYPE_CHECKING:
    from inferwatch.core.label_caps import LabelCap
    from inferwatch.core.options import Settings
    from inferwatch.core.prediction_batch import PredictionBatch

log = logging.getLogger("inferwatch")
# The (model, version) keys told of a sparse result too large to read: each is logged once
# (its rows are counted at every drain). Bounded: past this many, the memory starts over.
_TOLD_SPARSE_TOO_LARGE: set[tuple[str, str]] = set()
_TOLD_LIMIT = 1024
# Up to this many values are checked for nan and inf by their Python sum: numpy's
# isfinite and all (about 1.7 us) cost more than summing the values a drain of a few
# dozen calls brings (about 1.5 us at 64).
_FEW_VALUES = 64


def write_batch(batch: PredictionBatch, state: ModelState, now: float) -> None:
    """Write one drain's gathered predictions into `state`: the task ``auto`` resolves to,
    batch sizes, each output's values (folded under the output cap), class counts (under
    the class cap), confidence and invalid counts."""
    settings = batch.settings
    caps = batch.caps
    has_classes = bool(batch.classes or batch.counted_classes)
    if state.info.get("task") == "auto" and (has_classes or batch.values or
                                             batch.class_like):
        # inferwatch_model_info shows what the first predictions turned out to be: a
        # model whose labels were all withheld (not plausible classes) still classifies,
        # as does a multi-label one whose per-label probabilities name no one class.
        detected = "classification" if has_classes or batch.probability_outputs or (
            batch.class_like and not batch.values) else "regression"
        state.info = {**state.info, "task": detected}
    if batch.batch_sizes or batch.repeated_sizes:
        sizes = state.histogram("inferwatch_batch_size", (), settings.batch_buckets)
        if batch.batch_sizes:
            sizes.observe(np.asarray(batch.batch_sizes, dtype=np.float64))
        for rows, calls in batch.repeated_sizes.items():
            sizes.observe_repeated(float(rows), calls)
    output_cap = caps["inferwatch_prediction"]
    folds = dict(zip(batch.values, output_cap.fold_many(list(batch.values))))
    summed = _summed_per_row(batch, folds)
    merged: dict[str, list[np.ndarray]] = {}
    probabilities: set[str] = set()  # outputs of class probabilities, as folded
    for name, chunks in batch.values.items():
        folded = folds[name]
        if summed and folded == OTHER and name in batch.distribution_chunks:
            continue  # in its matrix's sum of folded columns, below
        merged.setdefault(folded, []).extend(chunks)
        if name in batch.probability_outputs:
            probabilities.add(folded)
    if summed:
        merged.setdefault(OTHER, []).extend(_folded_mass(batch, folds))
        probabilities.add(OTHER)
    for output, chunks in merged.items():
        values = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        record_output(state, settings, output, values, output in probabilities,
                      batch.value_bounds(output), now, batch.invalid,
                      _sketched(batch, chunks))
    if has_classes:
        class_counts = count_classes(batch.classes)
        for label, count in batch.counted_classes.items():
            class_counts[label] = class_counts.get(label, 0) + count
        count_folded_classes(state, caps["inferwatch_predicted_class_total"],
                             class_counts)
    if batch.confidence:
        confidence = batch.confidence
        state.summary("inferwatch_prediction_confidence", (), probabilities=True).observe(
            confidence[0] if len(confidence) == 1 else np.concatenate(confidence), now,
            sketched=_sketched(batch, confidence))
    for reason, count in batch.invalid.items():
        state.inc("inferwatch_invalid_predictions_total", (reason,), count)
    if batch.refused_sparse_shape is not None:
        _tell_sparse_too_large(state, batch.refused_sparse_shape)


def _sketched(batch: PredictionBatch, chunks: list[np.ndarray]) -> np.ndarray | None:
    """The sketch's values of an output gathered as one chunk of a probability matrix,
    where reading the matrix made them (``Prediction.sketched``); None otherwise."""
    if not batch.sketched or len(chunks) != 1:
        return None
    twin = batch.sketched.get(id(chunks[0]))
    # By identity, and checked: an id is only unique while its array lives.
    return twin[1] if twin is not None and twin[0] is chunks[0] else None


def _summed_per_row(batch: PredictionBatch, folds: dict[str, str]) -> bool:
    """Whether the folded class-probability columns go to ``__other__`` as each row's
    sum of them (its probability of a class past the cap): when some were folded and
    every chunk of each came from a matrix kept whole (else all are kept as values,
    one per column and row, as for outputs of other kinds)."""
    if not batch.distributions:
        return False
    chunks = batch.distribution_chunks
    summed = False
    for name, folded in folds.items():
        if folded == OTHER and name in chunks:
            if chunks[name] != len(batch.values[name]):
                return False
            summed = True
    return summed

def _folded_mass(batch: PredictionBatch, folds: dict[str, str]) -> list[np.ndarray]:
    """Each row's sum of its matrix's folded columns (of matrices with some folded:
    each output of a multi-output classifier is a matrix of its own)."""
    masses = []
    for names, matrix in batch.distributions:
        folded = np.fromiter((folds[name] == OTHER for name in names), dtype=bool,
                             count=len(names))
        where = np.flatnonzero(folded)
        if not where.size:
            continue
        start, stop = int(where[0]), int(where[-1]) + 1
        # Usually the last columns (classes fold in the order they come): a view, no
        # copy of the matrix. Rows of huge values may overflow to inf, never a warning.
        part = matrix[:, start:stop] if stop - start == where.size else matrix[:, where]
        with np.errstate(over="ignore", invalid="ignore"):
            masses.append(part.sum(axis=1))
    return masses



def count_folded_classes(state: ModelState, cap: LabelCap, class_counts: dict[str, int]
                         ) -> None:
    """Count predicted classes (label text: rows) under the class cap, those it folds
    together into ``__other__``; labels are admitted in the order of `class_counts`."""
    folded: dict[str, int] = {}
    for label, fold in zip(class_counts, cap.fold_many(list(class_counts))):
        folded[fold] = folded.get(fold, 0) + class_counts[label]
    state.inc_many("inferwatch_predicted_class_total",
                   {(label,): count for label, count in folded.items()})


def finite_values(values: np.ndarray, invalid: dict[str, int]) -> np.ndarray:
    """`values` without NaN and infinities, each counted by kind into `invalid`.

    >>> invalid = {}
    >>> finite_values(np.array([0.5, np.nan, np.inf, np.nan]), invalid).tolist(), invalid
    ([0.5], {'nan': 2, 'inf': 1})
    """
    if values.size <= _FEW_VALUES:
        total = sum(values.tolist())
        if total - total == 0.0:  # every value finite (nan or inf would make it nan)
            return values
    finite = np.isfinite(values)
    if not finite.all():
        add_invalid("nan", int(np.isnan(values).sum()), invalid)
        add_invalid("inf", int(np.isinf(values).sum()), invalid)
        values = values[finite]
    return values


def add_invalid(reason: str, count: int, invalid: dict[str, int]) -> None:
    """Add `count` invalid predictions of `reason` (if any) into `invalid`."""
    if count:
        invalid[reason] = invalid.get(reason, 0) + count


def record_output(state: ModelState, settings: Settings, output: str, values: np.ndarray,
                  probabilities: bool, bounds: Sequence[float], now: float,
                  invalid: dict[str, int], sketched: np.ndarray | None = None) -> None:
    """One output's values (finite, folded under its cap) into its rolling quantiles and
    its histogram, those outside ``output_range`` counted into `invalid`; `sketched` as
    :meth:`~inferwatch.core.state.SummaryState.observe` takes it."""
    total = quiet_sum(values)  # the summary's sum and the histogram's: summed once
    state.summary("inferwatch_prediction", (output,),
                  probabilities=probabilities).observe(values, now, total, sketched)
    state.histogram("inferwatch_prediction_value", (output,), bounds).observe(values, total)
    if settings.output_range is not None:
        low, high = settings.output_range or (-math.inf, math.inf)
        add_invalid("out_of_range", int(((values < low) | (values > high)).sum()), invalid)


def _tell_sparse_too_large(state: ModelState, shape: tuple[int, ...]) -> None:
    """Log, once per model version, that its scipy.sparse results are too large to read."""
    key = (state.model, state.version)
    if key in _TOLD_SPARSE_TOO_LARGE:
        return
    if len(_TOLD_SPARSE_TOO_LARGE) >= _TOLD_LIMIT:
        _TOLD_SPARSE_TOO_LARGE.clear()
    _TOLD_SPARSE_TOO_LARGE.add(key)
    log.warning("inferwatch: model %s %s returned a scipy.sparse result of shape %s, too "
                "large to read as dense rows (at most %s columns and %s values); its rows "
                "are not recorded but counted in "
                "inferwatch_invalid_predictions_total{reason=\"bad_shape\"}. Return (or "
                "record with r.prediction()) fewer columns, such as each row's top labels",
                state.model, state.version, shape, f"{MAX_SPARSE_RESULT_COLUMNS:,}",
                f"{MAX_SPARSE_RESULT_CELLS:,}")


_ONLY_TEXT = {str}
# Up to this many text labels in a chunk, a look at each row's type costs less than a
# Counter of its own (a drain's one-row calls each give a chunk).
_FEW_LABELS = 64


def count_classes(chunks: list[np.ndarray]) -> dict[str, int]:
    """Counts by label text. Integer and bool labels are counted as numbers and only the
    distinct values become text, so they cost about what floats cost per row."""
    counts: Counter[str] = Counter()
    for kind in ("i", "b"):
        numeric = [c for c in chunks if c.dtype.kind == kind]
        if numeric:
            merged = np.concatenate(numeric) if len(numeric) > 1 else numeric[0]
            if kind == "i" and merged.size:
                low = int(merged.min())
                if int(merged.max()) - low < SMALL_INTEGER_LIMIT:
                    # Labels in a small range (all that admit_classes lets in): counted in
                    # one pass, without np.unique's sort.
                    per_label = np.bincount(merged - low)
                    present = np.flatnonzero(per_label)
                    counts.update(dict(zip(class_labels(present + low),
                                           per_label[present].tolist())))
                    continue
            unique, n = np.unique(merged, return_counts=True)
            counts.update(dict(zip(class_labels(unique), n.tolist())))
    for chunk in chunks:
        if chunk.dtype.kind not in "ib":
            # Python strings: numpy's fixed-width str dtype would drop trailing NULs.
            labels = chunk.tolist()
            if len(labels) <= _FEW_LABELS:
                counts.update(labels if set(map(type, labels)) == _ONLY_TEXT else
                              map(str, labels))
                continue
            # Counted in C first: the types of the few distinct labels tell whether each row
            # is plain text, where a look at every row's type cost a third of the count.
            try:
                counted = Counter(labels)
                plain = set(map(type, counted)) == _ONLY_TEXT
            except TypeError:  # unhashable labels: each made text
                plain = False
            counts.update(counted if plain else map(str, labels))
    return dict(counts)
