"""The Grafana dashboards, each a short function of the config.

Every panel follows every variable: the job, instance, model and version selections. Panels
that show what a recording rule computes run the rule's own expression on the raw series,
narrowed by the variables (the rules aggregate job and instance away), so they agree with
the rules and alerts when every variable is All.

Each dashboard is a module of its own (dashboards_overview, dashboards_quality,
dashboards_resources, dashboards_slo, dashboards_champion_challenger), built on the shared
queries (dashboards_queries) and frame (dashboards_frame); this one names their files.

>>> from inferwatch.generate.config import DEFAULT
>>> sorted(render(DEFAULT))  # doctest: +NORMALIZE_WHITESPACE
['champion-challenger.json', 'model-overview.json', 'model-quality.json',
 'resources.json', 'slo.json']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inferwatch.generate.config_schema import Config
from inferwatch.generate.dashboards_champion_challenger import champion_challenger
from inferwatch.generate.dashboards_overview import model_overview
from inferwatch.generate.dashboards_quality import model_quality
from inferwatch.generate.dashboards_resources import resources
from inferwatch.generate.dashboards_slo import slo

DASHBOARDS: dict[str, Callable[[Config], dict[str, Any]]] = {
    "champion-challenger.json": champion_challenger,
    "model-overview.json": model_overview,
    "model-quality.json": model_quality,
    "resources.json": resources,
    "slo.json": slo,
}

# The same builders by the key of their uid (rules_links.DASHBOARD_SUFFIXES), for the alert
# links that open one panel.
BY_KEY: dict[str, Callable[[Config], dict[str, Any]]] = {
    "overview": model_overview,
    "quality": model_quality,
    "resources": resources,
    "slo": slo,
    "shadow": champion_challenger,
}


def render(cfg: Config) -> dict[str, dict[str, Any]]:
    """Every dashboard as JSON data, by file name."""
    return {name: build(cfg) for name, build in DASHBOARDS.items()}
