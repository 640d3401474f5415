"""The expected-band panels of the adaptive baselines, one per enabled signal.

Apart because two dashboards draw them (the model overview its traffic, errors, latency and
batch size; the model quality its predictions, confidence, classes and data quality), each
from the same baseline series its alert reads.
"""

from __future__ import annotations

import attr

from inferwatch.generate import baselines
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_consistency import SIGNAL_QUANTILES
from inferwatch.generate.config_schema import Config, Signal
from inferwatch.generate.dashboards_queries import MODEL
from inferwatch.generate.objectives import is_overridden
from inferwatch.generate.panels import BAND_HIGH, BAND_LOW, Cell, band, target, timeseries
from inferwatch.generate.promql import number, percent, selector


def _baseline(cfg: Config, key: str, operation: str, *matchers: str) -> str:
    """A baseline series of the selected models (recorded per model, versions aggregated):
    its value, or an edge of its band (`lower`, `upper`: computed from expected and sigma)."""
    spec = baselines.SIGNALS[key]
    if operation in ("lower", "upper"):
        return baselines.band_edge(cfg, spec, operation, selector(MODEL, *matchers))
    name = (baselines.value_name(cfg, spec) if operation == "value"
            else baselines.record(spec, operation))
    return name + selector(MODEL, *matchers)


_BAND_TITLES = {"traffic": "Calls per second", "errors": "Error ratio", "latency": "Latency",
                "batch_size": "Mean batch size", "predictions": "Prediction",
                "confidence": "Confidence", "classes": "Class shares",
                "missing": "Missing values per row", "out_of_range": "Out-of-range values per row"}


# Which of its signal's quantiles a band panel draws: the last latency one, the first other.
_BAND_QUANTILE_INDEX = {"latency": -1, "predictions": 0, "confidence": 0}


def _band_quantile(cfg: Config, key: str) -> tuple[tuple[str, ...], str]:
    """The matchers and title of a band panel: its quantile's, where the signal has them."""
    title = _BAND_TITLES[key]
    if key not in SIGNAL_QUANTILES:
        return (), title
    quantile = getattr(cfg.baselines, SIGNAL_QUANTILES[key])[_BAND_QUANTILE_INDEX[key]]
    # A regex that takes either spelling of the bound (Prometheus 3 may write 0.50).
    escaped = quantile.replace(".", "\\\\.")
    return (f'quantile=~"{escaped}0*"',), f"{title} p{percent(float(quantile))}"


def _k_text(cfg: Config, spec: baselines.SignalSpec) -> str:
    """A band's k as its description says it: the number, or each model's own where a
    `models:` entry sets one (the edges drawn already use each model's own)."""
    k = number(baselines.settings(cfg, spec).k)
    if not is_overridden(cfg, baselines.k_key(spec)):
        return k
    return f"k (each model's own, from its models: entry; by default {k})"


def _history_text(spec: baselines.SignalSpec, own: Signal) -> str:
    """When a band panel starts to draw and its alert to judge: the band's trailing
    statistics end baseline_offset ago, and the window they read must hold min_coverage
    of its values, so the band needs both of the value's history; the alert waits for
    min_history of it.

    >>> print(_history_text(baselines.SIGNALS["traffic"], Signal()))
     The band is drawn once the value has 6h of history (baselines.traffic.baseline_offset \
3h, then min_coverage 0.125 of its 1d baseline_window); InferwatchTrafficAnomaly may fire \
once it has 1d (baselines.traffic.min_history).
    """
    key = f"baselines.{spec.key}"
    lag = duration_seconds(own.baseline_offset)
    covered = own.min_coverage * duration_seconds(own.baseline_window)
    parts = [f"{key}.baseline_offset {own.baseline_offset}" if lag else "",
             f"min_coverage {number(own.min_coverage)} of its {own.baseline_window} "
             "baseline_window" if covered else ""]
    if lag or covered:
        drawn = (f"The band is drawn once the value has "
                 f"{baselines.duration_text(lag + covered)} of history "
                 f"({', then '.join(part for part in parts if part)})")
    else:
        drawn = (f"The band is drawn from the value's first sample ({key}.baseline_offset 0, "
                 "min_coverage 0)")
    if duration_seconds(own.min_history):
        fires = f"{spec.alert} may fire once it has {own.min_history} ({key}.min_history)"
    else:
        fires = f"{spec.alert} may fire from the start ({key}.min_history 0)"
    return f" {drawn}; {fires}."


def band_cells(cfg: Config, keys: tuple[str, ...]) -> list[Cell]:
    """One shaded band per enabled signal, repeated per selected model: what its alert saw."""
    cells = []
    for key in keys:
        spec = baselines.SIGNALS[key]
        own = baselines.settings(cfg, spec)
        if not own.enabled:
            continue
        matchers, title = _band_quantile(cfg, key)
        if spec.labels and key in ("predictions", "classes", "missing", "out_of_range"):
            # Several bands per model (one per output, class or feature): dashed edges, no
            # fill. One shaded band per model would take the max of the outputs' values and
            # the envelope of their bands, so a shift of one output would never leave it.
            # Like a shaded band, no floor: an edge (expected - k sigma) or a prediction may
            # lie below zero.
            label = spec.labels[0]
            # Repeated per model like the shaded bands: the legends name only the class or
            # feature, so two models' lines and edges would otherwise be indistinguishable.
            cells.append(Cell(attr.evolve(timeseries(
                f"{title} and expected bands: $model", [
                    target(_baseline(cfg, key, "value", *matchers), f"{{{{{label}}}}}"),
                    target(_baseline(cfg, key, "lower", *matchers), f"low {{{{{label}}}}}"),
                    target(_baseline(cfg, key, "upper", *matchers), f"high {{{{{label}}}}}")],
                spec.unit, f"{spec.alert} fires when a value leaves its band: expected "
                f"+- {_k_text(cfg, spec)} sigma of its own {own.baseline_window} history."
                + _history_text(spec, own),
                signed=True), repeat_over="model")))
            continue
        cells.append(Cell(band(
            f"{title} and expected band: $model",
            target(f"max by (model) ({_baseline(cfg, key, 'value', *matchers)})",
                   "{{model}}"),
            target(f"min by (model) ({_baseline(cfg, key, 'lower', *matchers)})", BAND_LOW),
            target(f"max by (model) ({_baseline(cfg, key, 'upper', *matchers)})", BAND_HIGH),
            spec.unit, f"Shaded: the expected band of {spec.alert}, expected +- "
            f"{_k_text(cfg, spec)} sigma of the model's own {own.baseline_window} history"
            f"{' and the same time a week (or a day) ago' if own.seasonal else ''}."
            + _history_text(spec, own))))
    return cells
