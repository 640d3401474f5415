"""The config each model override's own rules are rendered from, computed once per config.

The alerts render a copy per override that reshapes them, the recording rules record the
windows those copies read, and the dashboards draw them: all three ask for the same shaped
configs, so they sit below all three, with the per-config cache they and the scrape notes use.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable
from typing import Any

from inferwatch.generate.config_schema import (
    RULE_KEYS,
    AlertOverride,
    Config,
    ModelOverride,
    with_values,
)


def per_config(function: Callable[[Config], Any]) -> Callable[[Config], Any]:
    """`function`, computed once per config object.

    Configs are frozen, and rendering asks the same of one config once per alert and per
    model override: without this, a hundred overrides took tens of seconds. Entries hold
    their config, so an id is never reused while cached; a few configs are kept at most.
    """
    cache: dict[int, tuple[Config, Any]] = {}

    @functools.wraps(function)
    def cached(cfg: Config) -> Any:
        hit = cache.get(id(cfg))
        if hit is not None and hit[0] is cfg:
            return hit[1]
        result = function(cfg)
        if len(cache) >= 16:
            cache.clear()
        cache[id(cfg)] = (cfg, result)
        return result

    return cached


def _own_alert(base: AlertOverride | None, own: AlertOverride) -> AlertOverride:
    # A model's severity or `for` wins; what it leaves unset comes from the top-level override.
    base = base or AlertOverride()
    return AlertOverride(severity=own.severity or base.severity, for_=own.for_ or base.for_)


@per_config
def shaped_configs(cfg: Config) -> tuple[tuple[ModelOverride, Config], ...]:
    """Each model override with the config its own alert copies are rendered from.

    Only rule settings and alert overrides are applied: objectives stay joined from their
    series, so they never make a copy.
    """
    shaped = []
    for override in cfg.models.values():
        own = with_values(cfg, {key: value for key, value in override.values.items()
                                if key in RULE_KEYS})
        alerts = dict(cfg.alerts)
        for name, alert in override.alerts.items():
            alerts[name] = _own_alert(cfg.alerts.get(name), alert)
        shaped.append((override, dataclasses.replace(own, alerts=types.MappingProxyType(alerts))))
    return tuple(shaped)
