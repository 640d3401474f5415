"""The metric catalogue: every metric inferwatch exposes, in one place.

The instrumentation renders from it, the generators build dashboards and rules
from it, and the README's metric table is checked against it, so a name changes
in one place only.

>>> CATALOGUE["inferwatch_requests_total"].kind
'counter'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

from inferwatch.number_ranges import latency_threshold, non_negative, open_ratio, positive, ratio

MODEL_LABELS = ("model", "model_version")
OTHER = "__other__"
MAX_LABEL_VALUE_LENGTH = 128


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name as exposed, type, HELP text and labels beyond the model labels."""

    name: str
    kind: str  # counter | gauge | histogram | summary
    help: str
    labels: tuple[str, ...] = ()
    per_model: bool = True
    source: str = "instrumentation"  # instrumentation | exporter

    @property
    def family(self) -> str:
        """The family name prometheus_client uses (counters drop `_total`)."""
        if self.kind == "counter" and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        return self.name


def _specs(*specs: MetricSpec) -> dict[str, MetricSpec]:
    return {spec.name: spec for spec in specs}


_E = "exporter"

# The values of inferwatch_model_info's `task` label, and of instrument()'s and a reference
# profile's `task` option: how a model's outputs are read (values or class labels).
TASKS = ("auto", "classification", "regression")

# Objectives a model may declare in code (instrument(objectives=...)), by the config key the
# generated rules judge it with, and the check of that key in the config (the schema's field
# names the same function; predictions.max_model_age, a duration there, is seconds in code).
OBJECTIVE_CHECKS = {
    "slo.availability": open_ratio, "latency.p99_seconds": latency_threshold,
    "predictions.invalid_ratio": ratio, "predictions.max_versions": positive,
    "predictions.max_model_age": positive, "data_quality.missing_ratio": ratio,
    "data_quality.out_of_range_ratio": ratio, "drift.feature_threshold": non_negative,
    "drift.prediction_threshold": non_negative, "drift.min_observations": positive,
    "accuracy.min_ratio": ratio, "accuracy.min_outcomes": positive, "accuracy.max_drop": ratio,
}
OBJECTIVE_KEYS = tuple(OBJECTIVE_CHECKS)
# Counts, integers in the config: a fraction of a version or of an observation means nothing.
WHOLE_NUMBER_OBJECTIVES = frozenset({"predictions.max_versions", "drift.min_observations",
                                     "accuracy.min_outcomes"})
OBJECTIVE_ALIASES = {"availability": "slo.availability", "latency_p99": "latency.p99_seconds",
                     "accuracy": "accuracy.min_ratio"}

CATALOGUE: dict[str, MetricSpec] = _specs(
    # --- identity -------------------------------------------------------------------------
    MetricSpec("inferwatch_model_info", "gauge",
               "Always 1: which model version serves, with its static metadata (role: "
               "primary or shadow, when a shadow model is attached).",
               ("framework", "task", "role")),
    MetricSpec("inferwatch_model_loaded_timestamp_seconds", "gauge",
               "Unix time in seconds when this model version started serving."),
    MetricSpec("inferwatch_model_trained_timestamp_seconds", "gauge",
               "Unix time in seconds when this model version was trained."),
    MetricSpec("inferwatch_model_objective", "gauge",
               "An objective the model declares in code (instrument(objectives=...)), by the "
               "config key it stands for; with objectives.from_code the generated rules prefer it "
               "over the config.",
               ("objective",)),
    MetricSpec("inferwatch_reference_validation", "gauge",
               "The model's score on its validation data, from its reference profile: "
               "accuracy, or mean_absolute_error for a regressor.", ("metric",)),
    MetricSpec("inferwatch_dependency_info", "gauge",
               "Always 1: version of an ML package loaded in the serving process.",
               ("package", "package_version"), per_model=False),
    # --- operational ----------------------------------------------------------------------
    MetricSpec("inferwatch_requests_total", "counter",
               "Prediction calls, by outcome (ok, error, or cancelled: stopped before it "
               "finished).", ("outcome",)),
    MetricSpec("inferwatch_errors_total", "counter",
               "Failed prediction calls, by exception class.", ("error_type",)),
    MetricSpec("inferwatch_request_duration_seconds", "histogram",
               "End-to-end latency of a prediction call in seconds."),
    MetricSpec("inferwatch_stage_duration_seconds", "histogram",
               "Latency of one stage of a prediction request in seconds.", ("stage",)),
    MetricSpec("inferwatch_requests_in_flight", "gauge",
               "Prediction calls currently running."),
    MetricSpec("inferwatch_batch_size", "histogram",
               "Rows per prediction call."),
    MetricSpec("inferwatch_calls_dropped_total", "counter",
               "Calls not recorded because the drain fell max_pending calls (or "
               "max_pending_bytes) behind."),
    # --- streams and generative calls -----------------------------------------------------
    MetricSpec("inferwatch_stream_first_item_seconds", "histogram",
               "Time from a streaming call to its first item in seconds."),
    MetricSpec("inferwatch_stream_items", "histogram",
               "Items per streamed result (count); its _sum counts every item."),
    MetricSpec("inferwatch_stream_item_interval_seconds", "histogram",
               "Time between two consecutive items of a streamed result in seconds."),
    MetricSpec("inferwatch_output_characters", "histogram",
               "Length of text outputs in characters (a streamed text: all its items)."),
    MetricSpec("inferwatch_tokens_total", "counter",
               "Tokens of generative calls, by kind (input or output).", ("kind",)),
    MetricSpec("inferwatch_output_tokens_per_second", "histogram",
               "Output tokens per second of call duration (tokens/s), per generative call."),
    # --- predictions ----------------------------------------------------------------------
    MetricSpec("inferwatch_prediction", "summary",
               "Rolling-window quantiles of predicted values (unit of the model output).",
               ("output",)),
    MetricSpec("inferwatch_prediction_value", "histogram",
               "Predicted values (unit of the model output), aggregatable across replicas.",
               ("output",)),
    MetricSpec("inferwatch_predicted_class_total", "counter",
               "Predictions by predicted class.", ("class",)),
    MetricSpec("inferwatch_prediction_confidence", "summary",
               "Rolling-window quantiles of the top-class probability (ratio 0..1)."),
    MetricSpec("inferwatch_invalid_predictions_total", "counter",
               "Predicted values that cannot be right, by reason (nan, inf, out_of_range, "
               "probability_out_of_range, probability_sum, unsupported_type, bad_shape).",
               ("reason",)),
    MetricSpec("inferwatch_actions_total", "counter",
               "What the system did with a prediction, by action.", ("action",)),
    # --- data quality and drift -----------------------------------------------------------
    MetricSpec("inferwatch_feature_missing_total", "counter",
               "Feature values that were None or NaN.", ("feature",)),
    MetricSpec("inferwatch_feature_out_of_range_total", "counter",
               "Feature values outside the reference range.", ("feature",)),
    MetricSpec("inferwatch_feature_unseen_category_total", "counter",
               "Categorical feature values absent from the reference.", ("feature",)),
    MetricSpec("inferwatch_input_errors_total", "counter",
               "Inputs that violate the reference schema, by reason.", ("reason",)),
    MetricSpec("inferwatch_feature_drift", "gauge",
               "Drift of the rolling window of a feature against the reference (psi, js, ks).",
               ("feature", "method")),
    MetricSpec("inferwatch_prediction_drift", "gauge",
               "Drift of the rolling window of a prediction output against the reference.",
               ("output", "method")),
    MetricSpec("inferwatch_drift_window_observations", "gauge",
               "Rows in the drift window."),
    MetricSpec("inferwatch_feature_drift_observations", "gauge",
               "Values of a feature in the drift window (its missing values left out).",
               ("feature",)),
    # --- ground truth ---------------------------------------------------------------------
    MetricSpec("inferwatch_outcomes_total", "counter",
               "Classification outcomes joined with their prediction, by result.", ("result",)),
    MetricSpec("inferwatch_outcome_error", "histogram",
               "Absolute error of regression predictions once ground truth arrives (output unit)."),
    MetricSpec("inferwatch_outcome_delay_seconds", "histogram",
               "Label lag in seconds: outcome time minus prediction time."),
    MetricSpec("inferwatch_outcomes_unmatched_total", "counter",
               "Outcomes with no prediction to join, by reason.", ("reason",)),
    # --- shadow models: a challenger against its champion, on the challenger's series -----
    MetricSpec("inferwatch_shadow_sampled_total", "counter",
               "Champion calls sampled for this shadow model (calls).", ("champion_version",)),
    MetricSpec("inferwatch_shadow_compared_total", "counter",
               "Sampled calls whose champion and shadow predictions were compared (calls).",
               ("champion_version",)),
    MetricSpec("inferwatch_shadow_dropped_total", "counter",
               "Sampled calls not compared, by reason (queue_full, timeout, error, crashed, "
               "incomparable, shutdown, stream); unit: calls.", ("champion_version", "reason")),
    MetricSpec("inferwatch_shadow_agreement_total", "counter",
               "Compared rows where shadow and champion predicted the same class (agree) or "
               "not (disagree); unit: rows.", ("champion_version", "result")),
    MetricSpec("inferwatch_shadow_confusion_total", "counter",
               "Compared rows by champion class and shadow class (each capped); unit: rows.",
               ("champion_version", "champion_class", "shadow_class")),
    MetricSpec("inferwatch_shadow_absolute_difference", "summary",
               "Rolling-window quantiles of the absolute difference between shadow and "
               "champion prediction, per output (unit of the model output).",
               ("champion_version", "output")),
    MetricSpec("inferwatch_shadow_difference", "histogram",
               "Shadow minus champion prediction per output (unit of the model output; "
               "signed), aggregatable across replicas.", ("champion_version", "output")),
    MetricSpec("inferwatch_shadow_outcomes_total", "counter",
               "Classification outcomes of requests both models predicted, by each one's "
               "result (correct, incorrect); unit: rows.",
               ("champion_version", "champion_result", "shadow_result")),
    MetricSpec("inferwatch_shadow_outcome_error", "histogram",
               "Absolute error of regression predictions on requests both models predicted, "
               "by side (champion, shadow); unit of the model output.",
               ("champion_version", "side")),
    # --- inferwatch itself ----------------------------------------------------------------
    MetricSpec("inferwatch_internal_errors_total", "counter",
               "Faults inside inferwatch, swallowed so the caller never sees them.",
               ("component",), per_model=False),
    MetricSpec("inferwatch_series_overflow_total", "counter",
               "Distinct label values folded into __other__ by a cardinality cap, each "
               "counted once by the process that folds it.",
               ("metric",), per_model=False),
    MetricSpec("inferwatch_events_dropped_total", "counter",
               "Prediction events not written to the event log, by reason.",
               ("reason",), per_model=False),
    MetricSpec("inferwatch_event_values_dropped_total", "counter",
               "Values (inputs, outputs, fields) replaced by a marker in stored events "
               "because they have no named-field form, by reason; unit: values.",
               ("reason",), per_model=False),
    MetricSpec("inferwatch_multiproc_files_skipped_total", "counter",
               "Entries of the multi-worker directory skipped instead of read or removed, or "
               "whose drift window was left out for another reference (other_reference), "
               "each time one is met, by reason (symlink, not_regular, foreign_owner, "
               "too_large, unreadable, undeletable, other_reference); unit: directory "
               "entries.",
               ("reason",), per_model=False),
    # --- standalone exporter --------------------------------------------------------------
    MetricSpec("inferwatch_exporter_build_info", "gauge",
               "Always 1: the exporter's version.", ("version", "python_version"),
               per_model=False, source=_E),
    MetricSpec("inferwatch_exporter_collector_success", "gauge",
               "1 when the collector's last scrape succeeded, else 0.", ("collector",),
               per_model=False, source=_E),
    MetricSpec("inferwatch_exporter_collector_duration_seconds", "gauge",
               "Seconds the collector took in the last scrape.", ("collector",),
               per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_devices", "gauge",
               "GPUs that NVML reports; 0 on a host without an NVIDIA driver.", (),
               per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_info", "gauge",
               "Always 1: a GPU's name, driver version, uuid and PCI bus id.",
               ("gpu", "uuid", "name", "driver_version", "pci_bus_id"),
               per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_up", "gauge",
               "1 when the GPU answers NVML, 0 when it is lost (GPU_IS_LOST, RESET_REQUIRED) "
               "or cannot be reached.",
               ("gpu", "uuid"), per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_utilization_ratio", "gauge",
               "Fraction of time (0..1) a kernel ran on the GPU.",
               ("gpu", "uuid"), per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_memory_utilization_ratio", "gauge",
               "Fraction of time (0..1) device memory was read or written.",
               ("gpu", "uuid"), per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_memory_used_bytes", "gauge",
               "Framebuffer memory allocated, bytes (as nvidia-smi shows it; "
               "without reserved memory).", ("gpu", "uuid"), per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_memory_reserved_bytes", "gauge",
               "Framebuffer memory reserved by the driver and firmware, bytes.",
               ("gpu", "uuid"), per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_memory_total_bytes", "gauge",
               "Framebuffer memory installed, bytes.", ("gpu", "uuid"),
               per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_temperature_celsius", "gauge",
               "GPU core temperature, degrees celsius.", ("gpu", "uuid"),
               per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_power_watts", "gauge",
               "GPU power draw, watts.", ("gpu", "uuid"), per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_power_limit_watts", "gauge",
               "Power limit the driver enforces on the GPU, watts.", ("gpu", "uuid"),
               per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_energy_joules_total", "counter",
               "Energy used by the GPU since the driver loaded, joules.", ("gpu", "uuid"),
               per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_xid_errors_total", "counter",
               "Xid errors reported by the driver since the exporter started.",
               ("gpu", "uuid", "xid"), per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_clock_hertz", "gauge",
               "Current GPU clock, hertz.", ("gpu", "uuid", "clock"),
               per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_process_memory_bytes", "gauge",
               "GPU memory used by one process, bytes (opt-in).",
               ("gpu", "uuid", "pid", "process"),
               per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_field_available", "gauge",
               "1 when NVML answers this field on the GPU, 0 when it is not supported, not "
               "permitted or not in the driver.", ("gpu", "uuid", "field"),
               per_model=False, source=_E),
    MetricSpec("inferwatch_gpu_nvml_errors_total", "counter",
               "NVML reads that failed without the GPU being lost, by field and reason.",
               ("gpu", "uuid", "field", "reason"), per_model=False, source=_E),
    MetricSpec("inferwatch_process_cpu_seconds_total", "counter",
               "CPU time of the watched serving process, seconds.", ("pid", "process"),
               per_model=False, source=_E),
    MetricSpec("inferwatch_process_resident_memory_bytes", "gauge",
               "Resident memory of the watched serving process, bytes.", ("pid", "process"),
               per_model=False, source=_E),
    MetricSpec("inferwatch_process_threads", "gauge",
               "Threads of the watched serving process.", ("pid", "process"),
               per_model=False, source=_E),
    MetricSpec("inferwatch_process_open_fds", "gauge",
               "Open file descriptors of the watched serving process.", ("pid", "process"),
               per_model=False, source=_E),
)


def spec(name: str) -> MetricSpec:
    """Look a metric up by its exposed name.

    >>> spec("inferwatch_batch_size").kind
    'histogram'
    """
    return CATALOGUE[name]


def empty_family(name: str) -> Metric:
    """An empty prometheus_client family (name, HELP, type) for catalogue metric `name`.

    >>> empty_family("inferwatch_requests_total").name
    'inferwatch_requests'
    """
    spec = CATALOGUE[name]
    return Metric(spec.family, spec.help, spec.kind)


def clean_label_value(value: object) -> str:
    """A label value from arbitrary data: a string, shortened to a bounded length.

    A value whose ``__str__`` raises becomes ``__other__`` (and a counted fault).

    >>> clean_label_value("a" * 200)[-5:], clean_label_value("\\udcff")
    ('aa...', '?')
    """
    from inferwatch import faults

    text = faults.text_of(value, "label")
    if text is None:
        return OTHER
    if not text.isascii():
        # A lone surrogate cannot be encoded as UTF-8 and would break every scrape.
        text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) > MAX_LABEL_VALUE_LENGTH:
        text = text[: MAX_LABEL_VALUE_LENGTH - 3] + "..."
    return text


def distinct_labels(names: Sequence[object], limit: int) -> list[str | None]:
    """A label value per name, for names fixed in advance (a reference's features).

    Cleaned like every label value; the first `limit` distinct values keep their own
    series, the rest (and any name that cleans to a value already taken) get None: their
    counts fold into ``__other__`` and they get no gauge of their own.

    >>> labels = distinct_labels(["age", "age", "x" * 300, "y"], limit=2)
    >>> labels[:2], len(labels[2]), labels[3]
    (['age', None], 128, None)
    """
    seen: set[str] = set()
    labels: list[str | None] = []
    for name in names:
        label = clean_label_value(name)
        if label in seen or label == OTHER or len(seen) >= limit:
            labels.append(None)
        else:
            seen.add(label)
            labels.append(label)
    return labels
