"""One drain's predictions, gathered and then recorded in one vectorised pass.

Results of many calls are grouped by kind: plain floats become one array, class labels
one count, same-width probability matrices one stacked matrix; anything else is
normalised call by call.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from inferwatch import faults
from inferwatch.core.predictions import Prediction, normalize
from inferwatch.core.state import ModelState

if TYPE_CHECKING:
    from inferwatch.core.label_caps import LabelCap
    from inferwatch.core.options import Settings
    from inferwatch.quality.tracker import FeatureTracker

_FLOAT_SCALARS = frozenset({float, np.float64, np.float32, np.float16})
_CLASS_SCALARS = frozenset({int, bool, str, np.int64, np.int32, np.int16, np.int8,
                            np.uint64, np.uint32, np.uint16, np.uint8, np.bool_, np.str_})

_UNSET = object()


def _split_rows(prediction: Prediction, sizes: Sequence[int]) -> list[
        tuple[tuple | None, tuple | None] | None]:
    """Per-call (classes, values) of a prediction made of several calls' rows."""
    classes = prediction.classes
    values = None if classes is not None else next(iter(prediction.values.values()), None)
    column = classes if classes is not None else values
    if column is None or len(column) != sum(sizes):
        return [None] * len(sizes)  # rows were dropped as invalid: no safe per-call split
    rows, offset = [], 0
    for size in sizes:
        part = tuple(column[offset:offset + size][:64].tolist())
        rows.append((part, None) if classes is not None else (None, part))
        offset += size
    return rows


class PredictionBatch:
    """Gathers the predictions of one drain, then records them in one vectorised pass."""

    def __init__(self, settings: Settings, caps: Mapping[str, LabelCap],
                 features: FeatureTracker | None,
                 class_names: Callable[[], Sequence[object] | None]) -> None:
        self.settings = settings
        self.caps = caps
        self.features = features
        self.read_class_names = class_names
        self.batch_sizes: list[int] = []
        self.values: dict[str, list[np.ndarray]] = {}
        self.classes: list[np.ndarray] = []
        self.confidence: list[np.ndarray] = []
        self.invalid: dict[str, int] = {}
        self._class_names: object = _UNSET

    def add_results(self, results: Sequence[object], probabilities: bool) -> None:
        task = self.settings.task
        kinds = set(map(type, results))
        if len(kinds) == 1 and len(results) > 1 and not probabilities and \
                issubclass(next(iter(kinds)), np.ndarray):
            self._add_arrays(results, task)
            return
        if not probabilities and kinds <= _FLOAT_SCALARS and task != "classification":
            self._add_float_scalars(results)
            return
        if not probabilities and kinds <= _CLASS_SCALARS and task != "regression":
            self.batch_sizes.extend(itertools.repeat(1, len(results)))
            self.classes.append(np.asarray([str(r) for r in results], dtype=object))
            return
        for result in results:
            self.add_one(result, probabilities)

    def _add_arrays(self, results: Sequence[np.ndarray], task: str) -> None:
        """Many calls that each returned a 1-D array: one concatenation, not one pass each."""
        dtypes = {r.dtype.kind for r in results}
        if all(r.ndim == 1 for r in results) and (dtypes <= {"f"} and task != "classification"):
            self.batch_sizes.extend(r.shape[0] for r in results)
            self._add_values(np.concatenate(results).astype(np.float64, copy=False))
            return
        for result in results:
            self.add_one(result, False)

    def add_records(self, results: Sequence[object], probabilities: bool) -> list[
            tuple[tuple | None, tuple | None] | None]:
        """Record many results, returning each one's classes or values (for outcome joins).

        Many small 2-D float arrays of one width (one probability matrix per request) are
        normalised as one matrix and split again by rows.
        """
        if len(results) > 1 and all(isinstance(r, np.ndarray) and r.ndim == 2 and
                                    r.dtype.kind == "f" for r in results) and \
                len({r.shape[1] for r in results}) == 1:
            sizes = [r.shape[0] for r in results]
            try:
                prediction = normalize(
                    np.concatenate(results), probabilities=probabilities,
                    task=self.settings.task,
                    class_names=self._class_names_once() if probabilities else None)
            except Exception as exc:
                faults.record("prediction", exc)
                return [None] * len(results)
            self._add(prediction, sizes)
            return _split_rows(prediction, sizes)
        return [None if p is None else _split_rows(p, [p.rows])[0]
                for p in (self.add_one(result, probabilities) for result in results)]

    def _class_names_once(self) -> Sequence[object] | None:
        if self._class_names is _UNSET:
            self._class_names = self.read_class_names()
        return self._class_names

    def add_one(self, result: object, probabilities: bool) -> Prediction | None:
        """Record one call's result; returns its normalised form (None if it could not be)."""
        try:
            prediction = normalize(
                result, probabilities=probabilities, task=self.settings.task,
                class_names=self._class_names_once() if probabilities else None)
        except Exception as exc:
            faults.record("prediction", exc)
            return None
        self._add(prediction)
        return prediction

    def _add_float_scalars(self, results: Sequence[object]) -> None:
        self.batch_sizes.extend(itertools.repeat(1, len(results)))
        self._add_values(np.asarray(results, dtype=np.float64))

    def _add_values(self, values: np.ndarray) -> None:
        """Values of the default output; nan and inf are counted, never recorded."""
        finite = np.isfinite(values)
        if not finite.all():
            self._invalid("nan", int(np.isnan(values).sum()))
            self._invalid("inf", int(np.isinf(values).sum()))
            values = values[finite]
        self.values.setdefault("value", []).append(values)

    def _add(self, prediction: Prediction, sizes: Sequence[int] | None = None) -> None:
        if sizes is None:
            self.batch_sizes.append(prediction.rows)
        else:
            self.batch_sizes.extend(sizes)
        for name, values in prediction.values.items():
            self.values.setdefault(name, []).append(values)
        if prediction.classes is not None:
            self.classes.append(prediction.classes)
        if prediction.confidence is not None:
            self.confidence.append(prediction.confidence)
        for reason, count in prediction.invalid.items():
            self._invalid(reason, count)

    def _invalid(self, reason: str, count: int) -> None:
        if count:
            self.invalid[reason] = self.invalid.get(reason, 0) + count

    def flush(self, state: ModelState, now: float) -> None:
        settings = self.settings
        caps = self.caps
        if state.info.get("task") == "auto" and (self.classes or self.values):
            # inferwatch_model_info shows what the first predictions turned out to be.
            detected = "classification" if self.classes else "regression"
            state.info = {**state.info, "task": detected}
        if self.batch_sizes:
            state.histogram("inferwatch_batch_size", (), settings.batch_buckets).observe(
                np.asarray(self.batch_sizes, dtype=np.float64))
        output_cap = caps["inferwatch_prediction"]
        merged: dict[str, list[np.ndarray]] = {}
        for name, chunks in self.values.items():
            merged.setdefault(output_cap.fold(name), []).extend(chunks)
        low, high = settings.output_range or (-math.inf, math.inf)
        for output, chunks in merged.items():
            values = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
            state.summary("inferwatch_prediction", (output,)).observe(values, now)
            tracker = self.features
            bounds = (tracker.value_buckets(output) if tracker is not None else None) or \
                settings.value_buckets
            state.histogram("inferwatch_prediction_value", (output,), bounds).observe(values)
            if settings.output_range is not None:
                self._invalid("out_of_range", int(((values < low) | (values > high)).sum()))
        if self.classes:
            labels = np.concatenate(self.classes) if len(self.classes) > 1 else self.classes[0]
            if labels.dtype == object:
                # Python strings: numpy's fixed-width str dtype would drop trailing NULs.
                class_counts = dict(Counter(map(str, labels.tolist())))
            else:
                unique, counts = np.unique(labels.astype(str), return_counts=True)
                class_counts = dict(zip(unique.tolist(), counts.tolist()))
            class_cap = caps["inferwatch_predicted_class_total"]
            folded = class_cap.fold_counts(class_counts)
            state.inc_many("inferwatch_predicted_class_total",
                           {(label,): count for label, count in folded.items()})
        if self.confidence:
            state.summary("inferwatch_prediction_confidence", ()).observe(
                np.concatenate(self.confidence), now)
        for reason, count in self.invalid.items():
            state.inc("inferwatch_invalid_predictions_total", (reason,), count)
