"""Per-model options and default histogram buckets.

Every label that users can grow has a cap here; a bad value is a clear error naming it.

>>> Settings(task="regression").summary.quantiles
(0.5, 0.9, 0.99)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from inferwatch.core.state import SummarySettings

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)
# Twelve series per output: quantiles come from the summary, so this histogram only needs
# to be coarse enough to aggregate across replicas (a reference profile sets its own edges).
VALUE_BUCKETS = (-1.0, 0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 10.0, 100.0, 1000.0)
OUTCOME_ERROR_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 100.0,
                         1000.0)
OUTCOME_DELAY_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0,
                         3 * 86400.0, 7 * 86400.0, 30 * 86400.0)
TASKS = ("auto", "classification", "regression")
MAX_METADATA_LABELS = 8
RESERVED_LABELS = ("model", "model_version", "job", "instance")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class Settings:
    """Per-model options; every label that users can grow has a cap here."""

    quantiles: tuple[float, ...] = (0.5, 0.9, 0.99)
    window_seconds: float = 600.0
    age_buckets: int = 5
    relative_accuracy: float = 0.01
    latency_buckets: tuple[float, ...] = LATENCY_BUCKETS
    batch_buckets: tuple[float, ...] = BATCH_BUCKETS
    value_buckets: tuple[float, ...] = VALUE_BUCKETS
    output_range: tuple[float, float] | None = None
    task: str = "auto"
    max_classes: int = 50
    max_outputs: int = 20
    max_error_types: int = 20
    max_actions: int = 20
    max_stages: int = 20
    outcome_error_buckets: tuple[float, ...] = OUTCOME_ERROR_BUCKETS
    outcome_delay_buckets: tuple[float, ...] = OUTCOME_DELAY_BUCKETS
    # Predictions kept for joining delayed ground truth (about 200 bytes each).
    outcome_cache_size: int = 50_000
    outcome_ttl_seconds: float = 7 * 86400.0
    # Calls waiting to be drained; past this the oldest work is still safe, new calls are
    # dropped and counted, so a stalled drain can never grow memory without bound.
    max_pending: int = 200_000
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if not self.quantiles or any(not 0.0 <= q <= 1.0 for q in self.quantiles):
            problems.append(f"quantiles must be in [0, 1], got {self.quantiles!r}")
        if self.window_seconds <= 0:
            problems.append(f"window_seconds must be positive, got {self.window_seconds!r}")
        if self.age_buckets < 1:
            problems.append(f"age_buckets must be at least 1, got {self.age_buckets!r}")
        if not 0.0 < self.relative_accuracy < 1.0:
            problems.append(f"relative_accuracy must be in (0, 1), got {self.relative_accuracy!r}")
        if self.task not in TASKS:
            problems.append(f"task must be one of {TASKS}, got {self.task!r}")
        if not self.outcome_ttl_seconds > 0:
            problems.append(
                f"outcome_ttl_seconds must be positive, got {self.outcome_ttl_seconds!r}")
        for name in ("latency_buckets", "batch_buckets", "value_buckets", "outcome_error_buckets",
                     "outcome_delay_buckets"):
            bounds = getattr(self, name)
            if not bounds or list(bounds) != sorted(set(bounds)):
                problems.append(f"{name} must be a non-empty increasing sequence")
        if self.output_range is not None and not self.output_range[0] <= self.output_range[1]:
            problems.append(f"output_range must be (low, high), got {self.output_range!r}")
        for name in ("max_classes", "max_outputs", "max_error_types", "max_actions",
                     "max_stages", "max_pending", "outcome_cache_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if len(self.metadata) > MAX_METADATA_LABELS or not all(
                _LABEL_NAME.fullmatch(str(k)) and not str(k).startswith("__")
                and k not in RESERVED_LABELS for k in self.metadata):
            problems.append(f"metadata must have at most {MAX_METADATA_LABELS} keys that are "
                            f"valid Prometheus label names other than {RESERVED_LABELS}")
        if problems:
            raise ValueError("inferwatch: invalid settings: " + "; ".join(problems))

    @property
    def summary(self) -> SummarySettings:
        return SummarySettings(tuple(self.quantiles), self.window_seconds, self.age_buckets,
                               self.relative_accuracy)
