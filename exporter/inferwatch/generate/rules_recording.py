"""The recording rules: every expression the alerts and dashboards reuse, by name.

The error ratios are recorded over every window a burn-rate alert reads (a model override's
own included), and the accuracy and the regression error over every accuracy window in use.
Apart from the alerts, which only read what is recorded here by name.

>>> from inferwatch.generate.config import DEFAULT
>>> recording_rules(DEFAULT)[0][0]
'model:inferwatch_requests:rate5m'
"""

from __future__ import annotations

from inferwatch.generate import promql as q
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_schema import Config
from inferwatch.generate.promql import MODEL_LABELS, exporter_sel, model_sel
from inferwatch.generate.rules_alerts import (
    block,
    input_error_ratio,
    target_models,
    target_models_expr,
)
from inferwatch.generate.rules_overrides import shaped_configs


def _sorted_windows(windows: set[str]) -> list[str]:
    return sorted(windows, key=lambda w: (duration_seconds(w), w))


def _windows(cfg: Config) -> list[str]:
    """Error-ratio windows: the rate window and every burn window, a model's own included."""
    windows = {cfg.windows.rate}
    for c in (cfg, *(shaped for _, shaped in shaped_configs(cfg))):
        windows |= {c.slo.fast_burn.short_window, c.slo.fast_burn.long_window,
                    c.slo.slow_burn.short_window, c.slo.slow_burn.long_window}
    return _sorted_windows(windows)


def recording_rules(cfg: Config) -> list[tuple[str, str]]:
    """The recorded expressions as (name, expression), the objectives and the adaptive
    baselines apart: what the alerts and the dashboards read by name."""
    m, w = model_sel(cfg), cfg.windows.rate
    by_model = f"sum by ({MODEL_LABELS})"
    rules = [(q.requests_rate(cfg), f"{by_model} (rate(inferwatch_requests_total{m}[{w}]))")]
    for window in _windows(cfg):
        errors = model_sel(cfg, 'outcome="error"')
        rules.append((q.error_ratio(window),
                      f"{by_model} (rate(inferwatch_requests_total{errors}[{window}]))\n"
                      f"/\n"
                      f"{by_model} (rate(inferwatch_requests_total{m}[{window}]))"))
    for quantile in (50, 90, 99):
        rules.append((q.latency_quantile(cfg, quantile),
                      f"histogram_quantile({quantile / 100}, sum by ({MODEL_LABELS}, le) "
                      f"(rate(inferwatch_request_duration_seconds_bucket{m}[{w}])))"))
    for quantile in (50, 99):
        rules.append((q.first_item_quantile(cfg, quantile),
                      f"histogram_quantile({quantile / 100}, sum by ({MODEL_LABELS}, le) "
                      f"(rate(inferwatch_stream_first_item_seconds_bucket{m}[{w}])))"))
    for quantile in (50, 99):
        rules.append((q.stage_latency_quantile(cfg, quantile),
                      f"histogram_quantile({quantile / 100}, sum by ({MODEL_LABELS}, stage, le) "
                      f"(rate(inferwatch_stage_duration_seconds_bucket{m}[{w}])))"))
    # The per-row ratios divide by the rows' own expression, not by the recorded rows: a panel
    # runs a rule's text with the dashboard's variables added to each selector, and a recorded
    # denominator would keep every job and instance while the numerator is narrowed.
    rows = f"{by_model} (rate(inferwatch_batch_size_sum{m}[{w}]))"
    rules.append((q.rows_rate(cfg), rows))
    rules.append((q.invalid_ratio(cfg),
                  f"{by_model} (rate(inferwatch_invalid_predictions_total{m}[{w}]))\n/\n{rows}"))
    for counter in ("inferwatch_feature_missing", "inferwatch_feature_out_of_range"):
        rules.append((q.feature_ratio(cfg, counter),
                      f"sum by ({MODEL_LABELS}, feature) (rate({counter}_total{m}[{w}]))\n"
                      f"/ on ({MODEL_LABELS}) group_left\n{rows}"))
    # Per call, not per row: a wrong_width counts once per batch, so per row a batch of a
    # thousand rows would hide it; and a call whose model raised on its inputs has no rows.
    rules.append((input_error_ratio(cfg),
                  f"sum by ({MODEL_LABELS}, reason) "
                  f"(rate(inferwatch_input_errors_total{m}[{w}]))\n"
                  f"/ on ({MODEL_LABELS}) group_left\n"
                  f"{by_model} (rate(inferwatch_requests_total{m}[{w}]))"))
    scored = model_sel(cfg, 'metric="accuracy"')
    rules.append((q.validation_accuracy(),
                  f"max by ({MODEL_LABELS}) (inferwatch_reference_validation{scored})"))
    mae = model_sel(cfg, 'metric="mean_absolute_error"')
    rules.append((q.validation_error(),
                  f"max by ({MODEL_LABELS}) (inferwatch_reference_validation{mae})"))
    correct = model_sel(cfg, 'result="correct"')
    for own in accuracy_configs(cfg):
        a = own.accuracy.window
        rules.append((q.accuracy(own),
                      q.share(by_model, f"rate(inferwatch_outcomes_total{correct}[{a}])",
                              f"rate(inferwatch_outcomes_total{m}[{a}])")))
        rules.append((q.outcomes_increase(own),
                      f"{by_model} (increase(inferwatch_outcomes_total{m}[{a}]))"))
        # The mean of every absolute error the window joined: each replica's sum and count
        # added up first, as an average of replicas' averages would weigh a quiet one alike.
        rules.append((q.outcome_error_mean(own),
                      f"{by_model} (rate(inferwatch_outcome_error_sum{m}[{a}]))\n/\n"
                      f"{by_model} (rate(inferwatch_outcome_error_count{m}[{a}]))"))
        rules.append((q.outcome_error_count(own),
                      f"{by_model} (increase(inferwatch_outcome_error_count{m}[{a}]))"))
    rules.extend(_shadow_rules(cfg))
    rules.append((target_models(cfg), target_models_expr(cfg)))
    e = exporter_sel(cfg)
    # NVML's v2 "used" leaves out what the driver reserves, exported on its own: a GPU with
    # nothing left to allocate would read 1 - reserved/total and never cross a high threshold.
    # Without the reserved series (the v1 answer), "used" already counts it.
    used = (f"inferwatch_gpu_memory_used_bytes{e}\n"
            f"+ inferwatch_gpu_memory_reserved_bytes{e}\n"
            f"or\n"
            f"inferwatch_gpu_memory_used_bytes{e}")
    rules.append((q.gpu_memory_ratio(),
                  f"{block(used)}\n/\ninferwatch_gpu_memory_total_bytes{e}"))
    return rules


def _shadow_rules(cfg: Config) -> list[tuple[str, str]]:
    """Agreement, drops and shared-outcome accuracy of each (champion, shadow) pair."""
    m, w, s = model_sel(cfg), cfg.shadow.window, cfg.shadow
    by_pair = f"sum by ({q.SHADOW_PAIR})"
    agree = model_sel(cfg, 'result="agree"')
    rules = [
        (q.shadow_agreement(cfg),
         f"{by_pair} (rate(inferwatch_shadow_agreement_total{agree}[{w}]))\n/\n"
         f"{by_pair} (rate(inferwatch_shadow_agreement_total{m}[{w}]))"),
        (q.shadow_compared(cfg),
         f"{by_pair} (increase(inferwatch_shadow_agreement_total{m}[{w}]))"),
        (q.shadow_drop_ratio(cfg),
         f"sum by ({q.SHADOW_PAIR}, reason) (rate(inferwatch_shadow_dropped_total{m}"
         f"[{cfg.windows.rate}]))\n/ on ({q.SHADOW_PAIR}) group_left\n"
         f"{by_pair} (rate(inferwatch_shadow_sampled_total{m}[{cfg.windows.rate}]))"),
        (q.shadow_outcomes(cfg),
         f"{by_pair} (increase(inferwatch_shadow_outcomes_total{m}[{s.outcome_window}]))"),
    ]
    for side in ("champion", "shadow"):
        right = model_sel(cfg, f'{side}_result="correct"')
        rules.append((q.shadow_accuracy(cfg, side),
                      q.share(by_pair,
                              f"rate(inferwatch_shadow_outcomes_total{right}[{s.outcome_window}])",
                              f"rate(inferwatch_shadow_outcomes_total{m}[{s.outcome_window}])")))
    return rules


def accuracy_configs(cfg: Config) -> list[Config]:
    """One config per accuracy window in use: the default's, then each model's own.

    >>> from inferwatch.generate.config import from_dict
    >>> cfg = from_dict({"models": {"ads-.*": {"accuracy": {"window": "6h"}}}})
    >>> [own.accuracy.window for own in accuracy_configs(cfg)]
    ['1h', '6h']
    """
    by_window = {cfg.accuracy.window: cfg}
    for _, shaped in shaped_configs(cfg):
        by_window.setdefault(shaped.accuracy.window, shaped)
    return [by_window[w] for w in [cfg.accuracy.window,
                                   *_sorted_windows(set(by_window) - {cfg.accuracy.window})]]
