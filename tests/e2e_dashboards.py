"""Dashboard queries as Grafana would send them: variables resolved, then plain PromQL.

Grafana is not installed here, so the end-to-end test does its part: it runs each
variable's ``label_values()`` query, substitutes the values (and Grafana's own
``$__rate_interval`` and friends) into every panel query, and sends them to Prometheus.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
ANY_SERIES = '{__name__=~".+"}'
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),\s*)?(\w+)\)\s*$", re.S)


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str
    legend: str = ""

    @property
    def is_objective(self) -> bool:
        """A line each model's objective draws (a threshold), not a measurement: it has data
        whenever the model exists, so it says nothing of whether the panel has any."""
        return self.legend.startswith("objective ")


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    stack = list(dashboard.get("panels", []))
    while stack:
        panel = stack.pop(0)
        yield panel
        stack[:0] = panel.get("panels", [])


def panel_queries(name: str, dashboard: dict[str, Any]) -> list[PanelQuery]:
    return [PanelQuery(name, panel.get("title", ""), target["expr"],
                       target.get("legendFormat", ""))
            for panel in panels(dashboard) for target in panel.get("targets", [])
            if target.get("expr")]


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace $var, ${var} and [[var]] by `values`; an unknown variable is an error.

    >>> substitute('rate(x{m=~"$model"}[$__rate_interval])', {"model": "a|b",
    ...            "__rate_interval": "10s"})
    'rate(x{m=~"a|b"}[10s])'
    """
    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise KeyError(f"unknown variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def regex_of(values: list[str]) -> str:
    """A multi-value variable as Grafana formats it for =~ : (a|b), regex-escaped."""
    escaped = [re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\\\1", v) for v in sorted(values)]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def resolve_variables(dashboard: dict[str, Any], builtins: dict[str, str],
                      run: Callable[[str], list[dict[str, Any]]]
                      ) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Run each query variable in order; returns ({name: values found}, substitutions).

    `run(promql)` is an instant query returning Prometheus' result vector.
    """
    found: dict[str, list[str]] = {}
    values = dict(builtins)
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(text)
        if match is None:
            raise AssertionError(f"variable {variable['name']}: not label_values(): {text!r}")
        selector, label = match.group(1) or "", match.group(2)
        selector = substitute(selector, values) or ANY_SERIES
        promql = f"count by ({label}) ({selector})"
        result = sorted({r["metric"].get(label, "") for r in run(promql)} - {""})
        found[variable["name"]] = result
        # A variable without All (one value at a time) starts, in Grafana, at its first value.
        chosen = result if variable.get("includeAll", True) else result[:1]
        values[variable["name"]] = regex_of(chosen) if chosen else ".*"
    return found, values
