"""Data quality and drift for one model: inputs and predictions against a reference profile.

A :class:`DriftState` is the mergeable part (the rolling windows of bin counts plus the
reference they are scored against); it lives in ``ModelState.extras["drift"]`` so that
worker processes publish it and the merged view scores drift from summed counts, never
from averaged scores. :class:`FeatureTracker` runs the checks while pending calls are
drained, off the request path.

>>> import numpy as np
>>> from inferwatch.quality.reference import Reference
>>> ref = Reference.from_data({"amount": np.arange(100.0)}, predictions=np.linspace(0, 1, 100))
>>> tracker = FeatureTracker(ref)
>>> result = tracker.check_inputs([{"amount": 5.0}, {"amount": None}], now=1000.0)
>>> int(result.missing[0]), tracker.drift.rows(1000.0)
(1, 2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from inferwatch import faults
from inferwatch.catalogue import OTHER, distinct_labels
from inferwatch.frame_values import FrameValues
from inferwatch.quality.bin_layout import BinLayout
from inferwatch.quality.checks import BatchChecker, BatchResult
from inferwatch.quality.drift import DriftScorer
from inferwatch.quality.drift_window import DriftWindow
from inferwatch.quality.input_batches import batches
from inferwatch.quality.input_columns import frame_names, frame_rows, is_dataframe
from inferwatch.quality.reference import Reference

DEFAULT_DRIFT_WINDOW_SECONDS = 3600.0
DEFAULT_DRIFT_AGE_BUCKETS = 6
# Features (and outputs) with a series of their own; the rest fold into __other__.
DEFAULT_MAX_FEATURE_LABELS = 200
# Counters with a `feature` label, counted under the labels of the reference in force.
FEATURE_COUNTERS = ("inferwatch_feature_missing_total", "inferwatch_feature_out_of_range_total",
                    "inferwatch_feature_unseen_category_total")


class DriftState:
    """Rolling bin counts of inputs and predictions, scored against the reference on demand."""

    def __init__(self, reference: Reference, window_seconds: float = DEFAULT_DRIFT_WINDOW_SECONDS,
                 age_buckets: int = DEFAULT_DRIFT_AGE_BUCKETS,
                 checker: BatchChecker | None = None,
                 max_labels: int = DEFAULT_MAX_FEATURE_LABELS) -> None:
        self.reference = reference
        self.max_labels = max_labels
        checker = checker or BatchChecker(reference)
        self.features = DriftWindow(checker.feature_layout, max_age_seconds=window_seconds,
                                    age_buckets=age_buckets)
        self.outputs = DriftWindow(checker.output_layout, max_age_seconds=window_seconds,
                                   age_buckets=age_buckets)
        self._scorers: tuple[DriftScorer, DriftScorer] | None = None
        self._labels: tuple[dict, dict] | None = None
        self._scored: tuple[tuple, tuple[dict, dict, int], dict[str, float]] | None = None

    def labels(self) -> tuple[dict[str, str | None], dict[str, str | None]]:
        """Label values of the reference's features and outputs (None: folded, no gauge)."""
        if self._labels is None:
            self._labels = _labels_of(self.reference, self.max_labels)
        return self._labels

    def folded(self) -> int:
        """Features and outputs past the label cap (or colliding once cleaned)."""
        return sum(label is None for labels in self.labels() for label in labels.values())

    def feature_series(self) -> frozenset[str]:
        """The ``feature`` label values the reference counts under: each labelled feature,
        and ``__other__`` where some fold into it (at most ``max_labels`` + 1).

        >>> import numpy as np
        >>> ref = Reference.from_data({"a": np.arange(9.0), "b": np.arange(9.0)})
        >>> sorted(DriftState(ref, max_labels=1).feature_series())
        ['__other__', 'a']
        """
        labels = self.labels()[0].values()
        return frozenset(label if label is not None else OTHER for label in labels)

    def rows(self, now: float) -> int:
        """Rows in the window, as :meth:`scores` counts them."""
        return self.features.flat_counts(now)[1] or self.outputs.flat_counts(now)[1]

    def scores(self, now: float) -> tuple[dict, dict, int]:
        """(feature scores, prediction scores, rows in the window); NaN scores are left out.

        Scored once per window content: until a row arrives or the window moves on, every
        scrape gets the same (shared, read-only) result.
        """
        return self._scored_at(now)[1]

    def observations(self, now: float) -> dict[str, float]:
        """Each labelled feature's values in the window (its missing values left out).

        A feature missing from most rows is scored from the few it has: its drift alert
        needs this count, not only the window's rows, before it may fire.

        >>> import numpy as np
        >>> from inferwatch.quality.reference import Reference
        >>> ref = Reference.from_data({"a": np.arange(100.0), "b": np.arange(100.0)})
        >>> tracker = FeatureTracker(ref)
        >>> _ = tracker.check_inputs([{"a": 1.0, "b": None}, {"a": 2.0, "b": 3.0}], now=10.0)
        >>> tracker.drift.observations(10.0)
        {'a': 2.0, 'b': 1.0}
        """
        return self._scored_at(now)[2]

    def _scored_at(self, now: float) -> tuple[tuple, tuple[dict, dict, int], dict[str, float]]:
        version = (self.features.bucket_id(now), self.features, self.features.changes,
                   self.outputs, self.outputs.changes)
        scored = self._scored
        if scored is None or scored[0] != version:
            result, observations = self._score(now)
            scored = self._scored = (version, result, observations)
        return scored

    def _score(self, now: float) -> tuple[tuple[dict, dict, int], dict[str, float]]:
        if self._scorers is None:
            self._scorers = (DriftScorer(self.reference.features),
                             DriftScorer(self.reference.outputs))
        feature_scorer, output_scorer = self._scorers
        feature_counts, rows = self.features.flat_counts(now)
        output_counts, output_rows = self.outputs.flat_counts(now)
        if not rows:
            # Predictions recorded without their inputs (record_call): the window holds
            # only outputs, and no feature is scored, so the rows gauge that gates the
            # prediction drift alert counts those, or that alert could never fire.
            rows = output_rows
        feature_labels, output_labels = self.labels()
        layout = self.features.layout
        # Summed as floats: bin counts held at the int64 maximum must not wrap negative.
        present = (np.add.reduceat(feature_counts, layout.starts, dtype=np.float64).tolist()
                   if len(layout) else [])
        observations = {label: count for name, count
                        in zip(self.reference.feature_names, present)
                        if (label := feature_labels.get(name)) is not None}
        return ((_labelled_scores(feature_scorer, feature_counts, feature_labels),
                 _labelled_scores(output_scorer, output_counts, output_labels), rows),
                observations)

    def reset(self) -> None:
        """Empty both windows (a forked worker starts from zero)."""
        self.features = _empty_like(self.features)
        self.outputs = _empty_like(self.outputs)
        self._scored = None

    def check_mergeable(self, other: DriftState) -> None:
        """Raise ValueError when `other`'s windows cannot be added into these."""
        self.features.check_mergeable(other.features)
        self.outputs.check_mergeable(other.outputs)

    def merge(self, other: DriftState, now: float | None = None) -> None:
        """Add `other`'s windows into these; given `now`, a bucket of a clock far ahead
        does not replace one still in the window (:meth:`DriftWindow.merge_buckets`)."""
        # Both checked first: a refused outputs window after the features were added left
        # half of `other` counted, and a caller that skips the refused part kept that half.
        self.check_mergeable(other)
        self.features.merge(other.features, now=now)
        self.outputs.merge(other.outputs, now=now)

    def to_dict(self) -> dict:
        return {"reference": self.reference.to_dict(), "features": self.features.to_dict(),
                "outputs": self.outputs.to_dict(), "max_labels": self.max_labels}

    @classmethod
    def from_dict(cls, data: dict) -> DriftState:
        """Rebuild a state from :meth:`to_dict`; a malformed snapshot is a ValueError
        naming the key."""
        if not isinstance(data, dict):
            raise ValueError(f"drift state: expected an object, got {type(data).__name__}")
        for key in ("reference", "features", "outputs"):
            if key not in data:
                raise ValueError(f"drift state: key {key!r} is missing")
        max_labels = data.get("max_labels", DEFAULT_MAX_FEATURE_LABELS)
        # As the worker snapshot's layout reads it: int() took 2.5 as 2 and True as 1.
        if type(max_labels) is not int or max_labels < 0:
            raise ValueError(f"drift state: key 'max_labels' must be an integer >= 0,"
                             f" got {max_labels!r}")
        windows = []
        for key in ("features", "outputs"):
            try:
                windows.append(DriftWindow.from_dict(data[key]))
            except ValueError as exc:
                raise ValueError(f"drift state: key {key!r}: {exc}") from None
        try:
            state = cls.from_windows(data["reference"], *windows, max_labels=max_labels)
        except ValueError as exc:  # the reference's own errors name what in it is wrong
            raise ValueError(f"drift state: key 'reference': {exc}") from None
        for key, window, profiles in (("features", state.features, state.reference.features),
                                      ("outputs", state.outputs, state.reference.outputs)):
            # A window of other bins than its reference's loaded, and then every scrape's
            # drift scoring of it failed, far from the snapshot that caused it.
            if window.layout != BinLayout.of(profiles):
                raise ValueError(f"drift state: key {key!r}: bins {window.layout.sizes.tolist()}"
                                 f" do not match the reference's"
                                 f" {BinLayout.of(profiles).sizes.tolist()}")
        return state

    @classmethod
    def from_windows(cls, reference: dict, features: DriftWindow, outputs: DriftWindow,
                     max_labels: int = DEFAULT_MAX_FEATURE_LABELS) -> DriftState:
        """A state around windows already built, scored against the parsed `reference`
        document (``Reference.to_dict()``), which is treated as read-only: it is validated
        and compiled once per object, however many states share it."""
        state = cls.__new__(cls)
        state.reference, state._scorers, labels = _decoded_reference(reference)
        state.features, state.outputs = features, outputs
        state.max_labels = max_labels
        if max_labels not in labels:
            labels[max_labels] = _labels_of(state.reference, max_labels)
        state._labels = labels[max_labels]
        state._scored = None
        return state

    def __deepcopy__(self, memo: dict) -> DriftState:
        return DriftState.from_dict(self.to_dict())


def retire_feature_series(state: Any) -> int:
    """Drop the per-feature counter series of `state` (a ``ModelState``) whose feature its
    drift reference does not count under; the number dropped. Never raises.

    A reference loaded again with renamed or rotated features (or a lower label cap)
    would otherwise leave the old features' series in the exposition for good, past
    ``max_features``; the model's own counters are not touched. A state without a
    reference keeps its series.

    >>> import numpy as np
    >>> from inferwatch.core.state import ModelState
    >>> ref = Reference.from_data({"a": np.arange(9.0)})
    >>> state = ModelState("m", "1")
    >>> state.inc("inferwatch_feature_missing_total", ("a",))
    >>> state.inc("inferwatch_feature_missing_total", ("old",))
    >>> state.extras["drift"] = DriftState(ref)
    >>> retire_feature_series(state), list(state.counters["inferwatch_feature_missing_total"])
    (1, [('a',)])
    """
    try:
        drift = state.extras.get("drift")
        if not isinstance(drift, DriftState):
            return 0
        kept = drift.feature_series()
        retired = 0
        for metric in FEATURE_COUNTERS:
            series = state.counters.get(metric)
            if not series:
                continue
            gone = [labels for labels in series if not labels or labels[0] not in kept]
            for labels in gone:
                del series[labels]
            retired += len(gone)
        return retired
    except Exception as exc:  # a bug here must not cost the caller its scrape or configure()
        faults.record("quality", exc)
        return 0


def _labels_of(reference: Reference, max_labels: int) -> tuple[dict, dict]:
    return tuple(dict(zip(names, distinct_labels(names, max_labels)))  # type: ignore[return-value]
                 for names in (reference.feature_names, reference.output_names))


def gauge_labels(reference: Reference, max_labels: int = DEFAULT_MAX_FEATURE_LABELS
                 ) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """The ``feature`` and ``output`` label of each of `reference`'s features and outputs
    that gets a drift gauge of its own, None for those folded (past `max_labels`, or
    cleaning to a label already taken): the drift alerts can judge only the former, so
    whatever evaluates their conditions must leave the latter out as well.

    >>> import numpy as np
    >>> ref = Reference.from_data({"a": np.arange(10.0), "b": np.arange(10.0)})
    >>> gauge_labels(ref, max_labels=1)[0]
    {'a': 'a', 'b': None}
    """
    return _gauged_of(reference, max_labels)[1]


def folded_names(reference: Reference, max_labels: int = DEFAULT_MAX_FEATURE_LABELS
                 ) -> tuple[frozenset[str], frozenset[str]]:
    """The names of `reference`'s features and of its outputs that :func:`gauge_labels`
    folds (usually none).

    >>> import numpy as np
    >>> ref = Reference.from_data({"a": np.arange(10.0), "b": np.arange(10.0)})
    >>> folded_names(ref, max_labels=1)
    (frozenset({'b'}), frozenset())
    """
    return _gauged_of(reference, max_labels)[2]


def _gauged_of(reference: Reference, max_labels: int) -> _Gauged:
    key = (id(reference), max_labels)
    found = _gauged.get(key)
    if found is not None and found[0] is reference:
        return found
    labels = _labels_of(reference, max_labels)
    folded = tuple(frozenset(name for name, label in part.items() if label is None)
                   for part in labels)
    found = (reference, labels, folded)  # type: ignore[assignment]
    if len(_gauged) >= MAX_DECODED_REFERENCES:
        _gauged.clear()
    _gauged[key] = found  # holding `reference` keeps its id unique
    return found  # type: ignore[return-value]


# Label maps by (id(reference), max_labels): an index of many versions of a few references
# cleans each reference's names once, not once per version and load.
_Gauged = tuple[Reference, tuple[dict, dict], tuple[frozenset, frozenset]]
_gauged: dict[tuple[int, int], _Gauged] = {}


# Scorers, and label maps by max_labels, read-only and shared by every state of one reference.
_Compiled = tuple[Reference, tuple[DriftScorer, DriftScorer], dict[int, tuple[dict, dict]]]
# id(reference data) -> (that data, what it compiles to). Worker snapshots hand out one
# parsed object per distinct reference text (the snapshot layout's shared documents), so a
# merged scrape validates and compiles each reference once, not once per worker and model.
_decoded: dict[int, tuple[dict, _Compiled]] = {}
# The document's content -> what it compiles to. A one-process copy (Monitor.copy_state,
# behind every status page and JSON snapshot) encodes its reference into a new dict each
# time: by id alone each copy parsed and compiled the whole reference again.
_compiled: dict[tuple, _Compiled] = {}
MAX_DECODED_REFERENCES = 64


def _decoded_reference(data: dict) -> _Compiled:
    found = _decoded.get(id(data))
    if found is not None and found[0] is data:
        return found[1]
    key = _content_key(data)
    try:
        compiled = None if key is None else _compiled.get(key)
    except TypeError:  # a value in it is unhashable (a set, an array): not cached
        key = compiled = None
    if compiled is None:
        compiled = _compile(data)
        if key is not None:
            if len(_compiled) >= MAX_DECODED_REFERENCES:
                _compiled.clear()
            _compiled[key] = compiled
    if len(_decoded) >= MAX_DECODED_REFERENCES:
        _decoded.clear()
    _decoded[id(data)] = (data, compiled)  # holding `data` keeps its id unique
    return compiled


def _compile(data: dict) -> _Compiled:
    reference = Reference.from_dict(data, source="worker snapshot")
    return (reference, (DriftScorer(reference.features), DriftScorer(reference.outputs)), {})


def _content_key(data: Any) -> tuple | None:
    """`data` as a value equal only for documents that read alike (None where it nests
    too deeply: such a document is not cached).

    Every value but text and floats carries its type: ``1``, ``1.0`` and ``True`` are equal
    in Python, but the reference accepts only one of them in a key such as 'count'."""
    try:
        return _frozen(data)  # type: ignore[no-any-return]
    except RecursionError:
        return None


def _frozen(value: Any) -> Any:
    kind = type(value)
    if kind is float or kind is str:
        return value
    if kind is list:
        return (list, *map(_frozen, value))
    if kind is dict:
        return (dict, *[(_frozen(k), _frozen(v)) for k, v in value.items()])
    return (kind, value)


def _empty_like(window: DriftWindow) -> DriftWindow:
    return DriftWindow(window.layout, max_age_seconds=window.max_age_seconds,
                       age_buckets=window.age_buckets)


def _labelled_scores(scorer: DriftScorer, counts: np.ndarray,
                     labels: dict[str, str | None]) -> dict[tuple[str, str], float]:
    """``scorer.scores(counts)`` keyed by (label, method), in its order: NaN scores and
    folded names (label None) left out. Every scrape of a model with traffic and a
    reference scores it: each name's label is looked up once, not once per method, and
    no dict keyed by name is made on the way.

    >>> ref = Reference.from_data({"a": np.arange(100.0), "b": np.arange(100.0)}, bins=4)
    >>> _labelled_scores(DriftScorer(ref, methods="ks"),
    ...                  np.array([0, 0, 0, 10, 0, 0, 0, 0]), {"a": "a", "b": "b"})
    {('a', 'ks'): 0.75}
    """
    in_order = [labels.get(name) for name in scorer.names]
    out = {}
    for method, values in scorer.arrays(counts).items():
        for label, value in zip(in_order, values.tolist()):
            if label is not None and value == value:  # NaN is not equal to itself
                out[(label, method)] = value
    return out


class FeatureTracker:
    """Checks inputs and predictions of one model against its reference."""

    def __init__(self, reference: Reference, *, range_tolerance: float = 0.0,
                 window_seconds: float = DEFAULT_DRIFT_WINDOW_SECONDS,
                 age_buckets: int = DEFAULT_DRIFT_AGE_BUCKETS,
                 max_labels: int = DEFAULT_MAX_FEATURE_LABELS) -> None:
        self.reference = reference
        self.checker = BatchChecker(reference, range_tolerance=range_tolerance)
        self.drift = DriftState(reference, window_seconds, age_buckets, checker=self.checker,
                                max_labels=max_labels)
        labels = self.drift.labels()[0]
        # Per reference column: what the quality counters use as the `feature` label.
        self.feature_labels = [labels[name] or OTHER for name in reference.feature_names]
        self._value_buckets: dict[str, tuple[float, ...] | None] = {}

    def renew_locks(self) -> None:
        """New locks for the drift windows in a forked child."""
        self.drift.features.renew_lock()
        self.drift.outputs.renew_lock()

    def row_slices(self, value: Any, rows: int) -> list | None:
        """`value` as slices of at most `rows` rows, when it has more and each slice counts,
        checked alone, what its rows count in the whole: a plain numeric array of the
        reference's width, or a DataFrame or Arrow table whose column names are all
        distinct (a name given twice counts one ``wrong_shape`` per batch). None for
        anything else, which is checked whole. Never raises.

        >>> import numpy as np
        >>> tracker = FeatureTracker(Reference.from_data({"a": np.arange(9.0)}))
        >>> [len(part) for part in tracker.row_slices(np.zeros((5, 1)), 2)]
        [2, 2, 1]
        >>> tracker.row_slices(np.zeros((5, 2)), 2) is None  # another width: one wrong_width
        True
        """
        try:
            if value.__class__ is np.ndarray:
                if value.ndim != 2 or value.shape[0] <= rows or \
                        value.shape[1] != len(self.checker.feature_names) or \
                        value.dtype.kind not in "fiub":
                    return None
                total = value.shape[0]
                return [value[start:start + rows] for start in range(0, total, rows)]
            if value.__class__ is FrameValues:  # at most 64 KiB: past a slice only in tests
                if len(value) <= rows:
                    return None
                value = value.frame()
            if not is_dataframe(value):
                return None
            total = len(value)
            if total <= rows:  # a frame per call, each a few rows: one len() each
                return None
            names = [str(name) for name in frame_names(value)]
            if len(set(names)) != len(names):
                return None
            return [frame_rows(value, start, start + rows) for start in range(0, total, rows)]
        except Exception as exc:  # an odd frame: checked whole, as before
            faults.record("quality", exc)
            return None

    def check_inputs(self, inputs: Sequence[Any], now: float, window: bool = True) -> BatchResult:
        """Check the inputs of many calls, batched where their shapes allow; with `window`
        False (inputs of calls that raised) they are counted but kept out of the drift
        window."""
        total = self.checker.empty_result()
        for batch in batches(inputs, len(self.checker.feature_names),
                              self.checker.feature_names):
            try:
                result = self.checker.check(batch)
            except Exception as exc:  # the checker counts bad input itself; this is a bug
                faults.record("quality", exc)
                continue
            total.add(result)
        if total.rows and window:
            _count_refused(self.drift.features.add(total.flat_bin_counts, total.rows, now=now))
        return total

    def check_predictions(self, values: dict[str, np.ndarray], rows: int, now: float) -> None:
        if not values or not rows or not self.reference.output_names:
            return
        counts = self.checker.check_predictions(values)
        _count_refused(self.drift.outputs.add(
            [counts[name] for name in self.reference.output_names], rows, now=now))

    def value_buckets(self, output: str) -> tuple[float, ...] | None:
        """Default histogram bounds for a prediction output the reference profiles on a scale
        other than 0..1 (:func:`scale_buckets`), or None: the settings' default then fits
        (probabilities and scores), as it does an output the reference does not profile."""
        try:
            return self._value_buckets[output]
        except KeyError:
            pass
        profile = self.reference.outputs.get(output)
        bounds = None
        if profile is not None and profile.is_numeric:
            seen = [v for v in (profile.min, profile.max, *profile.edges)
                    if v is not None and math.isfinite(v)]
            if seen and not (min(seen) >= 0 and max(seen) <= 1):
                bounds = scale_buckets(min(seen), max(seen))
        if len(self._value_buckets) < len(self.reference.output_names) + 1:
            self._value_buckets[output] = bounds  # outputs the reference names, and one more
        return bounds


# Bounds per decade of scale_buckets: the 1-2.5-5 steps of the default latency buckets.
_SCALE_STEPS = ("1", "2.5", "5")


def scale_buckets(low: float, high: float) -> tuple[float, ...] | None:
    """Histogram bounds for values seen between `low` and `high`: three decades of 1-2.5-5
    steps up to the first power of ten at or above the largest magnitude, one power of ten
    beyond it (room for a shift), and mirrored below zero when `low` is negative.

    They depend only on that power of ten and on the sign of `low`, not on the reference's
    quantiles: a retrained version, or a worker whose reference was profiled on another
    sample, keeps the same bounds, so its series still merge and sum across replicas and
    versions (a quantile cut point of each reference would differ from version to version,
    and collapse to two or three bounds for a confident classifier's probabilities).

    >>> scale_buckets(37.1, 62.5)
    (0.0, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
    >>> scale_buckets(-3.0, 0.5)[:4]
    (-100.0, -50.0, -25.0, -10.0)
    """
    top = max(abs(low), abs(high))
    if not 0 < top < math.inf:
        return None
    power = math.ceil(math.log10(top))
    if -300 < power < 300 and float(f"1e{power}") < top:
        power += 1  # log10 rounds a value just past a power of ten down onto it
    if not -300 < power < 300:  # beyond what a float holds as a bound
        return None
    # Decimal text, so that bounds read back as written in the le label (0.025, not
    # 0.025000000000000001).
    positive = (*(float(f"{step}e{exponent}") for exponent in range(power - 2, power + 1)
                  for step in _SCALE_STEPS), float(f"1e{power + 1}"))
    if low >= 0:
        return (0.0, *positive)
    return (*(-bound for bound in reversed(positive)), 0.0, *positive)


def _count_refused(added: bool) -> None:
    """A window refuses rows for a bucket it has recycled already (a time behind the
    window): they are lost to drift, so the loss is counted rather than silent."""
    if not added:
        faults.record("drift")
