"""Per-model options and default histogram buckets: one frozen object per model.

Every option ``instrument()`` takes (buckets, caps, the drift window, tracing) lives in
:class:`Settings`, so a model's configuration is one value that compares, hashes and
pickles as itself. Every label that users can grow has a cap here; a bad value is a clear
error naming it.

>>> Settings(task="regression").summary.quantiles
(0.5, 0.9, 0.99)
>>> Settings(metadata={"team": "risk"}).metadata["team"]
'risk'
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from inferwatch.catalogue import (
    CATALOGUE,
    OBJECTIVE_ALIASES,
    OBJECTIVE_CHECKS,
    OBJECTIVE_KEYS,
    TASKS,
    WHOLE_NUMBER_OBJECTIVES,
)
from inferwatch.core.outcomes import DEFAULT_MAX_BYTES as DEFAULT_OUTCOME_CACHE_BYTES
from inferwatch.core.rolling_sketch import MAX_AGE_BUCKETS, MIN_BUCKET_SECONDS
from inferwatch.core.state import SummarySettings
from inferwatch.number_ranges import latency_threshold, open_ratio, ratio

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)
# Twelve series per output: quantiles come from the summary, so this histogram only needs
# to be coarse enough to aggregate across replicas. Fine near 0 and 1, for probabilities and
# scores; an output its reference profiles on another scale gets bounds fitted to that scale
# (quality.tracker.scale_buckets) unless value_buckets is given.
VALUE_BUCKETS = (-1.0, 0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 10.0, 100.0, 1000.0)
OUTCOME_ERROR_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 100.0,
                         1000.0)
# Streams: items per stream, seconds between two items, characters of text, tokens per second.
STREAM_ITEM_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)
STREAM_INTERVAL_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                           0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TEXT_LENGTH_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
TOKENS_PER_SECOND_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
OUTCOME_DELAY_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0,
                         3 * 86400.0, 7 * 86400.0, 30 * 86400.0)
MAX_METADATA_LABELS = 8
# Labels that name a model's series: metadata naming one would relabel every series of the
# model. multiproc/snapshot_format.py refuses the same ones in a worker's info (a test keeps
# the two equal); that info holds the labels below, so they are not among these.
RESERVED_LABELS = ("model", "model_version", "job", "instance")
# inferwatch_model_info's own labels, the one family that carries the metadata: metadata
# naming one would replace what inferwatch sets there (the task) or be replaced by it (the
# role a shadow sets).
MODEL_INFO_LABELS = CATALOGUE["inferwatch_model_info"].labels
# The one of them instrument() itself keeps in the metadata: the framework it reads off the
# model (instrument refuses it in the metadata it is given).
FRAMEWORK_LABEL = "framework"
_NOT_IN_METADATA = (*RESERVED_LABELS,
                    *(label for label in MODEL_INFO_LABELS if label != FRAMEWORK_LABEL))
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# The drift window's defaults; quality/tracker.py has the same values for standalone use
# (the quality package does not import the hot path), and a test keeps them equal.
DRIFT_WINDOW_SECONDS = 3600.0
DRIFT_AGE_BUCKETS = 6
_BUCKET_FIELDS = ("latency_buckets", "batch_buckets", "value_buckets", "outcome_error_buckets",
                  "outcome_delay_buckets", "stream_item_buckets", "stream_interval_buckets",
                  "text_length_buckets", "tokens_per_second_buckets")
# Bucket options whose default (None) is chosen per series when it is first recorded.
_DEFAULTED_BUCKET_FIELDS = ("value_buckets",)
_TUPLE_FIELDS = ("quantiles", *_BUCKET_FIELDS, "classes")
# Whole-number options: a fraction (age_buckets=2.5, max_pending=10.5) would be accepted by
# the range checks and only fail later, in the drain, losing what it should have recorded.
_INT_FIELDS = ("age_buckets", "max_classes", "max_outputs", "max_error_types", "max_actions",
               "max_stages", "max_features", "outcome_cache_size", "outcome_cache_bytes",
               "max_pending", "max_pending_bytes", "drain_min_calls", "drift_age_buckets",
               "event_text_chars")
# Number options (seconds, ratios, tolerances): NaN passes every ``<`` check, so it is
# refused here rather than turning the rolling windows into NaN at drain time.
_REAL_FIELDS = ("window_seconds", "relative_accuracy", "outcome_ttl_seconds",
                "drain_max_wait_seconds", "drift_window_seconds", "range_tolerance")


class SettingsTypeError(TypeError, ValueError):
    """An option of the wrong type (a string for a count, a fraction for a whole number).

    A TypeError, as Python's own argument checks raise, and a ValueError, as every other
    invalid setting is, so that code catching either for a bad configuration catches it.
    """


class FrozenLabels(Mapping[str, str]):
    """A read-only mapping of label names to values: hashable, and it pickles as itself.

    >>> labels = FrozenLabels({"team": "risk"})
    >>> dict(labels), hash(labels) == hash(FrozenLabels({"team": "risk"}))
    ({'team': 'risk'}, True)
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items = dict(items or {})

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __repr__(self) -> str:
        return f"FrozenLabels({self._items!r})"

    def __reduce__(self) -> tuple:
        return (FrozenLabels, (self._items,))


@dataclass(frozen=True)
class Settings:
    """Per-model options; every label that users can grow has a cap here."""

    quantiles: tuple[float, ...] = (0.5, 0.9, 0.99)
    window_seconds: float = 600.0
    age_buckets: int = 5
    relative_accuracy: float = 0.01
    latency_buckets: tuple[float, ...] = LATENCY_BUCKETS
    batch_buckets: tuple[float, ...] = BATCH_BUCKETS
    # None: VALUE_BUCKETS, or bounds fitted to the scale of an output the reference profiles
    # outside 0..1. Given, they are used as they are, with a reference or without.
    value_buckets: tuple[float, ...] | None = None
    output_range: tuple[float, float] | None = None
    task: str = "auto"
    # The class labels a model may predict, besides its ``classes_``: only these strings
    # (and bools and small integers) become ``class`` label values.
    classes: tuple[str, ...] | None = None
    max_classes: int = 50
    max_outputs: int = 20
    max_error_types: int = 20
    max_actions: int = 20
    max_stages: int = 20
    # Reference features and outputs with series of their own (quality counters, drift).
    max_features: int = 200
    outcome_error_buckets: tuple[float, ...] = OUTCOME_ERROR_BUCKETS
    outcome_delay_buckets: tuple[float, ...] = OUTCOME_DELAY_BUCKETS
    # Predictions kept for joining delayed ground truth (about 350 bytes each for one row),
    # and their memory bound in bytes, every row of a batch call included (core/outcomes.py).
    outcome_cache_size: int = 50_000
    outcome_cache_bytes: int = DEFAULT_OUTCOME_CACHE_BYTES
    outcome_ttl_seconds: float = 7 * 86400.0
    # Calls waiting to be drained, in all: across every monitor of a registry (every model
    # and version), not per monitor. A request path that fills its current list
    # (max_pending / 8 calls, shared out among the registry's monitors) hands it to the
    # drain and starts a new one, so a fast caller never loses a count; only past
    # max_pending in all (a stalled drain) are calls dropped, counted per model in
    # inferwatch_calls_dropped_total, so memory stays bounded: about 100 bytes a call,
    # plus a numpy result or input kept for it (see max_pending_bytes).
    max_pending: int = 1_000_000
    # The same bound in bytes, for all the registry's monitors together. A pending call
    # holds about 100 bytes and any numpy result or input kept for it (up to
    # COPY_LIMIT_BYTES each), or kept by reference (a larger array, a DataFrame, a tensor:
    # call_input.held_bytes): after each drain, the bound in calls
    # shrinks so that as many calls as the last drain's held fit here.
    max_pending_bytes: int = 256 * 1024 * 1024
    # The background drain folds a monitor's pending calls once this many wait, or once
    # some have waited drain_max_wait_seconds; a scrape (and every other reader) drains
    # everything first, so what it sees is never late. A fold has a fixed cost (about 20 us
    # for a float model, 35 to 50 us for a classifier's predict_proba on a few rows, 100 us
    # before that had a fold of its own) besides its cost per call: at 10 calls a second, a
    # classifier folded every 5 s then spent 2.6 us a call on it, twice what a naive
    # prometheus_client wrapper costs in all. Waiting up to a 15 s scrape interval, a
    # lightly used model's calls are folded about once per scrape, and land in their
    # rolling window's bucket at most 15 s late (buckets are minutes wide).
    drain_min_calls: int = 256
    drain_max_wait_seconds: float = 15.0
    metadata: Mapping[str, str] = field(default_factory=FrozenLabels)
    # Objectives the model owner declares ({"latency_p99": 0.05, "availability": 0.9995,
    # "accuracy": 0.97} or any key of catalogue.OBJECTIVE_KEYS): exported as
    # inferwatch_model_objective, which the generated rules prefer over the config.
    objectives: Mapping[str, float] = field(default_factory=FrozenLabels)
    # Data quality and drift, when a reference is given.
    range_tolerance: float = 0.0
    drift_window_seconds: float = DRIFT_WINDOW_SECONDS
    drift_age_buckets: int = DRIFT_AGE_BUCKETS
    # Trace ids as exemplars: None follows whether OpenTelemetry tracing is configured.
    exemplars: bool | None = None
    trace_stages: bool = False
    # Streams and generative models (see core/streams.py). count_tokens(text) -> int counts
    # the tokens of a text input (the first argument) and of each text output or item;
    # usage(result) -> (input, output) reads them from a result or a stream's last item
    # (True: the ready-made reader of usage.prompt_tokens / usage.completion_tokens).
    count_tokens: Callable[[object], int] | None = None
    usage: Callable[[object], tuple[int | None, int | None] | None] | bool | None = None
    stream_item_buckets: tuple[float, ...] = STREAM_ITEM_BUCKETS
    stream_interval_buckets: tuple[float, ...] = STREAM_INTERVAL_BUCKETS
    text_length_buckets: tuple[float, ...] = TEXT_LENGTH_BUCKETS
    tokens_per_second_buckets: tuple[float, ...] = TOKENS_PER_SECOND_BUCKETS
    # Characters of a streamed or text output kept in its event (0: counts only); the event
    # log redacts and bounds them like any input ("output_text").
    event_text_chars: int = 0

    def __post_init__(self) -> None:
        # Frozen all the way down: a list or dict handed in is copied into an immutable one.
        for name in _TUPLE_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, (tuple, str)) and value is not None:
                try:
                    object.__setattr__(self, name, tuple(value))
                except TypeError:
                    pass  # not iterable: reported below
        if self.output_range is not None and not isinstance(self.output_range, tuple):
            try:
                object.__setattr__(self, "output_range", tuple(self.output_range))
            except TypeError:
                pass  # not a pair: reported below
        if isinstance(self.classes, tuple):
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        wrong = self._type_problems()
        if wrong:
            raise SettingsTypeError("inferwatch: invalid settings: " + "; ".join(wrong))
        problems = []
        objectives, problem = _objectives(self.objectives, _top_finite(self.latency_buckets))
        object.__setattr__(self, "objectives", objectives)
        if problem:
            problems.append(problem)
        if not self.quantiles or any(not 0.0 <= q <= 1.0 for q in self.quantiles):
            problems.append(f"quantiles must be in [0, 1], got {self.quantiles!r}")
        elif len(set(self.quantiles)) < len(self.quantiles):
            # Each quantile is a series of its own: twice would expose the same series twice.
            problems.append(f"quantiles must not list a quantile twice, got {self.quantiles!r}")
        problems += _window_problems("window_seconds", self.window_seconds, "age_buckets",
                                     self.age_buckets, MAX_AGE_BUCKETS)
        if not 0.0 < self.relative_accuracy < 1.0:
            problems.append(f"relative_accuracy must be in (0, 1), got {self.relative_accuracy!r}")
        if self.classes is not None and not isinstance(self.classes, tuple):
            problems.append(f"classes must be a list of class labels, got {self.classes!r}")
        if self.task not in TASKS:
            problems.append(f"task must be one of {TASKS}, got {self.task!r}")
        if not self.outcome_ttl_seconds > 0:
            problems.append(
                f"outcome_ttl_seconds must be positive, got {self.outcome_ttl_seconds!r}")
        for name in _BUCKET_FIELDS:
            bounds = getattr(self, name)
            if bounds is None and name in _DEFAULTED_BUCKET_FIELDS:
                continue
            if not bounds or list(bounds) != sorted(set(bounds)):
                problems.append(f"{name} must be a non-empty increasing sequence")
        if self.output_range is not None and not self.output_range[0] <= self.output_range[1]:
            problems.append(f"output_range must be (low, high), got {self.output_range!r}")
        for name in ("max_classes", "max_outputs", "max_error_types", "max_actions",
                     "max_stages", "outcome_cache_size", "max_features"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if not isinstance(self.outcome_cache_bytes, int) or self.outcome_cache_bytes < 1024:
            problems.append(
                f"outcome_cache_bytes must be an int >= 1024, got {self.outcome_cache_bytes!r}")
        if self.max_pending < 8:
            problems.append("max_pending must be at least 8")
        if isinstance(self.max_pending_bytes, bool) or not isinstance(
                self.max_pending_bytes, int) or self.max_pending_bytes < 1024 * 1024:
            problems.append("max_pending_bytes must be a whole number of at least 1 MiB "
                            f"(1048576), got {self.max_pending_bytes!r}")
        if isinstance(self.drain_min_calls, bool) or not isinstance(self.drain_min_calls, int) \
                or self.drain_min_calls < 1:
            problems.append(f"drain_min_calls must be a whole number of at least 1, "
                            f"got {self.drain_min_calls!r}")
        if not isinstance(self.drain_max_wait_seconds, (int, float)) or \
                not 0 <= self.drain_max_wait_seconds < math.inf:
            problems.append(f"drain_max_wait_seconds must be a finite number of seconds >= 0, "
                            f"got {self.drain_max_wait_seconds!r}")
        # The drift window takes as many buckets as the quantile windows (quality.drift_window's
        # cap is the same number): refused here, the error names the option.
        problems += _window_problems("drift_window_seconds", self.drift_window_seconds,
                                     "drift_age_buckets", self.drift_age_buckets,
                                     MAX_AGE_BUCKETS)
        if not self.range_tolerance >= 0:
            problems.append(f"range_tolerance must be >= 0, got {self.range_tolerance!r}")
        taken = sorted(str(k) for k in self.metadata if k in _NOT_IN_METADATA)
        if taken:
            problems.append(f"metadata must not name {', '.join(map(repr, taken))}: "
                            f"inferwatch_model_info and the scrape set "
                            f"{', '.join(_NOT_IN_METADATA)} themselves")
        elif len(self.metadata) > MAX_METADATA_LABELS or not all(
                _LABEL_NAME.fullmatch(str(k)) and not str(k).startswith("__")
                for k in self.metadata):
            problems.append(f"metadata must have at most {MAX_METADATA_LABELS} keys that are "
                            f"valid Prometheus label names other than {_NOT_IN_METADATA}")
        if self.count_tokens is not None and not callable(self.count_tokens):
            problems.append("count_tokens must be a function of a text returning its number "
                            f"of tokens, got {type(self.count_tokens).__name__}")
        if self.usage is not None and not isinstance(self.usage, bool) and \
                not callable(self.usage):
            problems.append("usage must be True (read usage.prompt_tokens / "
                            "usage.completion_tokens) or a function of a result returning "
                            f"(input_tokens, output_tokens), got {type(self.usage).__name__}")
        if not isinstance(self.event_text_chars, int) or self.event_text_chars < 0:
            problems.append(f"event_text_chars must be an int >= 0, got {self.event_text_chars!r}")
        if problems:
            raise ValueError("inferwatch: invalid settings: " + "; ".join(problems))

    def _type_problems(self) -> list[str]:
        """What is of the wrong type, each naming its option, with whole numbers, bools
        and bucket bounds normalised on the way. Checked before the ranges, so that a
        string or a fraction is a clear error at ``instrument()`` time instead of a bare
        comparison error here or a fault in the drain, on the request path's data."""
        problems = []
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                object.__setattr__(self, name, int(value))
            else:
                problems.append(f"{name} must be a whole number, got {value!r}")
        for name in _REAL_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                    math.isnan(value):
                problems.append(f"{name} must be a number, got {value!r}")
        for name in ("trace_stages", "exemplars"):
            value = getattr(self, name)
            if value is None and name == "exemplars":
                continue
            if isinstance(value, (bool, np.bool_)):
                object.__setattr__(self, name, bool(value))
            else:
                problems.append(f"{name} must be True or False, got {value!r}")
        if not _real_tuple(self.quantiles):
            problems.append(f"quantiles must be a list of numbers in [0, 1], "
                            f"got {self.quantiles!r}")
        for name in _BUCKET_FIELDS:
            bounds = getattr(self, name)
            if bounds is None and name in _DEFAULTED_BUCKET_FIELDS:
                continue
            if _real_tuple(bounds) and bounds and bounds[-1] == math.inf:
                # prometheus_client's bucket lists end in +Inf; the +Inf bucket is always
                # written, and a second one would make the exposition invalid.
                bounds = bounds[:-1]
                object.__setattr__(self, name, bounds)
            if not _real_tuple(bounds) or not all(math.isfinite(b) for b in bounds):
                problems.append(f"{name} must be a list of finite numbers, got {bounds!r}")
        output_range = self.output_range
        if output_range is not None and not (
                _real_tuple(output_range) and len(output_range) == 2
                and not any(math.isnan(v) for v in output_range)):
            problems.append("output_range must be a pair of numbers (low, high), "
                            f"got {output_range!r}")
        if not isinstance(self.metadata, FrozenLabels):
            try:
                object.__setattr__(self, "metadata", FrozenLabels(self.metadata))
            except (TypeError, ValueError):
                problems.append(f"metadata must be a mapping of label names to values, "
                                f"got {type(self.metadata).__name__}")
        return problems

    @property
    def summary(self) -> SummarySettings:
        return SummarySettings(tuple(self.quantiles), self.window_seconds, self.age_buckets,
                               self.relative_accuracy)


def _real_tuple(value: object) -> bool:
    """Whether `value` is a tuple of real numbers (bools are not numbers here).

    >>> _real_tuple((0.5, 1)), _real_tuple("abc"), _real_tuple((True,))
    (True, False, False)
    """
    return isinstance(value, tuple) and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)


def _window_problems(window: str, seconds: float, buckets: str, count: int,
                     max_buckets: int | None) -> list[str]:
    """A rolling window's settings, checked when given: a window the sketches cannot index
    (infinite, or buckets narrower than a microsecond) would fail every drain instead."""
    if not 0 < seconds < math.inf:
        return [f"{window} must be positive and finite (seconds), got {seconds!r}"]
    if count < 1:
        return [f"{buckets} must be at least 1, got {count!r}"]
    if max_buckets is not None and count > max_buckets:
        return [f"{buckets} must be at most {max_buckets}, got {count!r}"]
    if seconds / count < MIN_BUCKET_SECONDS:
        return [f"{window} / {buckets} must be at least {MIN_BUCKET_SECONDS} seconds, got "
                f"{seconds!r} / {count!r}"]
    return []


def _objectives(given: object, latency_top: float = LATENCY_BUCKETS[-1]
                ) -> tuple[FrozenLabels, str | None]:
    """Objectives under their config keys, and what is wrong with them (None if nothing).

    Each value is held to its key's check in the generator config (catalogue.OBJECTIVE_CHECKS),
    so that a value the config refuses, which the generated rules would compare with as it
    is (an availability of 99.95 pages every model), is refused here too. A latency objective
    is held to the model's own top finite latency bucket (`latency_top`): no p99 the rules
    read goes past it, while a model with buckets past the default 30 s may declare more.

    >>> _objectives({"latency_p99": 0.05, "accuracy.min_outcomes": 50})[0]
    FrozenLabels({'latency.p99_seconds': 0.05, 'accuracy.min_outcomes': 50.0})
    >>> _objectives({"p99": 1})[1]
    "objectives: unknown key 'p99' (expected availability, latency_p99, accuracy or one of ..."
    >>> _objectives({"availability": 99.95})[1]
    'objectives: availability (slo.availability) must be between 0 and 1 (both excluded), \
got 99.95 (a percentage? write it as a ratio: 0.9995)'
    """
    if not isinstance(given, Mapping):
        return FrozenLabels(), f"objectives must be a mapping, got {type(given).__name__}"
    found: dict[str, float] = {}
    for key, value in given.items():
        name = OBJECTIVE_ALIASES.get(key, key)
        if name not in OBJECTIVE_CHECKS:
            return FrozenLabels(), (
                f"objectives: unknown key {key!r} (expected {', '.join(OBJECTIVE_ALIASES)} "
                f"or one of {', '.join(OBJECTIVE_KEYS)})")
        problem = _objective_problem(name, value, latency_top)
        if problem:
            shown = key if key == name else f"{key} ({name})"
            return FrozenLabels(), f"objectives: {shown} {problem}"
        if name in found:
            return FrozenLabels(), f"objectives: {name} is given twice"
        found[name] = float(value)  # type: ignore[arg-type]
    return FrozenLabels(found), None


def _top_finite(buckets: object) -> float:
    """The largest finite bound of `buckets`; the default buckets' top when it has none (the
    buckets' own problems are reported apart).

    >>> _top_finite((0.1, 60.0, float("inf"))), _top_finite(())
    (60.0, 30.0)
    """
    try:
        finite = [float(b) for b in buckets if math.isfinite(float(b))]  # type: ignore[union-attr]
    except (TypeError, ValueError, OverflowError):
        finite = []
    return max(finite) if finite else LATENCY_BUCKETS[-1]


def _objective_problem(name: str, value: object,
                       latency_top: float = LATENCY_BUCKETS[-1]) -> str | None:
    """What is wrong with `value` for the objective `name`, as the config would say it."""
    whole = name in WHOLE_NUMBER_OBJECTIVES
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, numbers.Integral if whole else numbers.Real):
        return f"must be {'a whole number' if whole else 'a number'}, got {value!r}"
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return "must be a finite number, got an integer too large for one"
    if not math.isfinite(number):
        return f"must be a finite number, got {value!r}"
    check = OBJECTIVE_CHECKS[name]
    problem = check(value, latency_top) if check is latency_threshold else check(value)
    if problem and OBJECTIVE_CHECKS[name] in (ratio, open_ratio) and 1 < number <= 100:
        problem += f" (a percentage? write it as a ratio: {number / 100:g})"
    return problem
