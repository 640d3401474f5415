"""Small PromQL builders shared by the rules and the dashboards.

>>> selector('job="m"', 'outcome="error"')
'{job="m", outcome="error"}'
>>> number(0.5), number(2592000.0)
('0.5', '2592000')
"""

from __future__ import annotations

from decimal import Decimal

from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_schema import Config

MODEL_LABELS = "model, model_version"


def selector(*matchers: str) -> str:
    """Join label matcher strings into one ``{...}`` selector, skipping empty ones."""
    return "{" + ", ".join(m.strip() for m in matchers if m and m.strip()) + "}"


# A PromQL string may not hold a raw newline, so control characters travel as Go escapes.
_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\a": "\\a", "\b": "\\b", "\f": "\\f",
                   "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def quoted(text: str) -> str:
    r"""`text` as a double-quoted PromQL string.

    >>> print(quoted('say "hi"\n\x00'))
    "say \"hi\"\n\x00"
    """
    return '"' + "".join(_STRING_ESCAPES.get(c) or (f"\\x{ord(c):02x}" if _is_control(c) else c)
                         for c in text) + '"'


def shown(text: str) -> str:
    """`text` standing for itself in an alert's labels or annotations.

    Prometheus expands both as Go templates, so a ``{{`` written in a selector, a job name or
    a model pattern would open an action and make Prometheus refuse the whole rule file.

    >>> shown('job="a{{b"')
    'job="a{{ "{{" }}b"'
    """
    return text.replace("{{", '{{ "{{" }}')


def block(expr: str) -> str:
    """`expr` in parentheses, indented, to combine with a set operator."""
    return "(\n" + "\n".join(f"  {line}" for line in expr.splitlines()) + "\n)"


def _is_control(c: str) -> bool:
    return ord(c) < 0x20 or c == "\x7f"


def number(value: float) -> str:
    """A PromQL number literal without a trailing ``.0``."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def offset(duration: str) -> str:
    """`` offset <duration>``, or nothing for a zero duration, which Prometheus 2 refuses.

    >>> offset("3h"), offset("0s")
    (' offset 3h', '')
    """
    return f" offset {duration}" if duration_seconds(duration) else ""


def percent(ratio: float) -> str:
    """A ratio as a percentage with every digit it was written with (no rounding to 100).

    >>> percent(0.999), percent(0.999999999999), percent(0.5)
    ('99.9', '99.9999999999', '50')
    """
    return format((Decimal(repr(float(ratio))) * 100).normalize(), "f")


def share(by: str, part: str, whole: str) -> str:
    """`part` over `whole`, both summed `by`; 0 where `whole` counts but `part` has no series.

    A counter's label value is exported once first counted: a model never right has no
    `result="correct"` series, and a plain ratio would be missing, not 0, so the alerts and
    panels for the worst case of all could never fire or draw.

    >>> print(share("sum by (model)", "rate(a[1h])", "rate(b[1h])"))
    (
      sum by (model) (rate(a[1h]))
      or
      0 * sum by (model) (rate(b[1h]))
    )
    /
    sum by (model) (rate(b[1h]))
    """
    return (f"(\n  {by} ({part})\n  or\n  0 * {by} ({whole})\n)\n"
            f"/\n{by} ({whole})")


def model_sel(cfg: Config, *extra: str) -> str:
    """Selector of model-service series."""
    return selector(cfg.selectors.model, *extra)


def shadow_versions(cfg: Config) -> str:
    """The model versions that run as shadows: one series per (model, model_version).

    >>> from inferwatch.generate.config import Config
    >>> shadow_versions(Config())
    'max by (model, model_version) (inferwatch_model_info{job="inferwatch-model", role="shadow"})'
    """
    shadows = model_sel(cfg, 'role="shadow"')
    return f"max by ({MODEL_LABELS}) (inferwatch_model_info{shadows})"


def recent_shadow_versions(cfg: Config, window: str) -> str:
    """The model versions that ran as shadows within `window`, less those that now run only
    in another role: one series per (model, model_version).

    For the alerts that must never page for a challenger: the windowed series they read
    outlive a removed (or dead) shadow by their window, its info series not at all. A
    promoted version is judged at once, unless some replica still runs it as a shadow.

    In parentheses: `or` binds less tightly than the `unless` or `and` it is combined with.

    >>> from inferwatch.generate.config import from_dict
    >>> print(recent_shadow_versions(from_dict({"selectors": {"model": 'job="m"'}}), "1h"))
    (
      max by (model, model_version) (inferwatch_model_info{job="m", role="shadow"})
      or
      (
        max by (model, model_version) (
          max_over_time(inferwatch_model_info{job="m", role="shadow"}[1h])
        )
        unless on (model, model_version)
        inferwatch_model_info{job="m", role!="shadow"}
      )
    )
    """
    shadows, others = model_sel(cfg, 'role="shadow"'), model_sel(cfg, 'role!="shadow"')
    return (f"(\n"
            f"  {shadow_versions(cfg)}\n"
            f"  or\n"
            f"  (\n"
            f"    max by ({MODEL_LABELS}) (\n"
            f"      max_over_time(inferwatch_model_info{shadows}[{window}])\n"
            f"    )\n"
            f"    unless on ({MODEL_LABELS})\n"
            f"    inferwatch_model_info{others}\n"
            f"  )\n"
            f")")


def exporter_sel(cfg: Config, *extra: str) -> str:
    """Selector of standalone-exporter series."""
    return selector(cfg.selectors.exporter, *extra)


def record_name(level: str, metric: str, operation: str) -> str:
    """A recording rule name in the level:metric:operation convention.

    >>> record_name("model", "inferwatch_requests", "rate5m")
    'model:inferwatch_requests:rate5m'
    """
    return f"{level}:{metric}:{operation}"


# Recording rule names, one function each so rules and dashboards agree on them.


def requests_rate(cfg: Config) -> str:
    return record_name("model", "inferwatch_requests", f"rate{cfg.windows.rate}")


def error_ratio(window: str) -> str:
    return record_name("model", "inferwatch_requests", f"error_ratio_rate{window}")


def latency_quantile(cfg: Config, quantile: int) -> str:
    return record_name("model", "inferwatch_request_duration_seconds",
                       f"p{quantile}_{cfg.windows.rate}")


def first_item_quantile(cfg: Config, quantile: int) -> str:
    return record_name("model", "inferwatch_stream_first_item_seconds",
                       f"p{quantile}_{cfg.windows.rate}")


def stage_latency_quantile(cfg: Config, quantile: int) -> str:
    return record_name("model_stage", "inferwatch_stage_duration_seconds",
                       f"p{quantile}_{cfg.windows.rate}")


def rows_rate(cfg: Config) -> str:
    return record_name("model", "inferwatch_batch_size_sum", f"rate{cfg.windows.rate}")


def invalid_ratio(cfg: Config) -> str:
    return record_name("model", "inferwatch_invalid_predictions", f"ratio_rate{cfg.windows.rate}")


def feature_ratio(cfg: Config, counter: str) -> str:
    return record_name("model_feature", counter, f"ratio_rate{cfg.windows.rate}")


def accuracy(cfg: Config) -> str:
    return record_name("model", "inferwatch_outcomes", f"accuracy_rate{cfg.accuracy.window}")


def validation_accuracy() -> str:
    """Each model version's accuracy on its validation data, from its reference profile."""
    return record_name("model", "inferwatch_reference_validation", "accuracy")


def outcomes_increase(cfg: Config) -> str:
    return record_name("model", "inferwatch_outcomes", f"increase{cfg.accuracy.window}")


def outcome_error_mean(cfg: Config) -> str:
    """A regression model's mean absolute error over the outcomes of the accuracy window."""
    return record_name("model", "inferwatch_outcome_error", f"mean_rate{cfg.accuracy.window}")


def outcome_error_count(cfg: Config) -> str:
    """The regression outcomes joined over the accuracy window."""
    return record_name("model", "inferwatch_outcome_error_count",
                       f"increase{cfg.accuracy.window}")


def validation_error() -> str:
    """Each regression model version's mean absolute error on its validation data, from its
    reference profile."""
    return record_name("model", "inferwatch_reference_validation", "mean_absolute_error")


SHADOW_PAIR = "model, model_version, champion_version"


def shadow_agreement(cfg: Config) -> str:
    return record_name("model", "inferwatch_shadow_agreement", f"ratio_rate{cfg.shadow.window}")


def shadow_compared(cfg: Config) -> str:
    return record_name("model", "inferwatch_shadow_agreement", f"increase{cfg.shadow.window}")


def shadow_drop_ratio(cfg: Config) -> str:
    return record_name("model_reason", "inferwatch_shadow_dropped",
                       f"ratio_rate{cfg.windows.rate}")


def shadow_outcomes(cfg: Config) -> str:
    return record_name("model", "inferwatch_shadow_outcomes",
                       f"increase{cfg.shadow.outcome_window}")


def shadow_accuracy(cfg: Config, side: str) -> str:
    """Accuracy of one side ("champion" or "shadow") on the outcomes both models saw."""
    return record_name("model", "inferwatch_shadow_outcomes",
                       f"{side}_accuracy_rate{cfg.shadow.outcome_window}")


def gpu_memory_ratio() -> str:
    return record_name("instance_gpu", "inferwatch_gpu_memory_used", "ratio")


def objective(key: str) -> str:
    """The recording rule holding every model's own value of an objective.

    >>> objective("latency.p99_seconds")
    'model:inferwatch_objective:latency_p99_seconds'
    """
    return record_name("model", "inferwatch_objective", key.replace(".", "_"))
