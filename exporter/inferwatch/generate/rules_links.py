"""What an alert's annotations link to and name: runbook and dashboard links, scrape notes.

Runbook and dashboard links are built here and only here; the scrape note tells the person
paged which scrape jobs an alert reads, following the recording rules it reads through.
Apart from the alert catalogue, whose rows these decorate, and from the rules module, which
adds them to every rendered alert.

>>> from inferwatch.generate.config import DEFAULT
>>> runbook_url(DEFAULT, "InferwatchGpuLost").endswith("#inferwatchgpulost")
True
"""

from __future__ import annotations

from inferwatch.generate import baselines
from inferwatch.generate.config_schema import Config
from inferwatch.generate.promql import shown
from inferwatch.generate.rules_alerts import AlertDef
from inferwatch.generate.rules_overrides import per_config
from inferwatch.generate.rules_recording import recording_rules

# Dashboards an alert can link to: key -> uid suffix (the dashboards module uses the same keys).
DASHBOARD_SUFFIXES = {"overview": "overview", "quality": "quality", "resources": "resources",
                      "slo": "slo", "shadow": "shadow"}


def anchor(alert_name: str) -> str:
    """The runbook section anchor of an alert.

    >>> anchor("InferwatchGpuLost")
    'inferwatchgpulost'
    """
    return alert_name.lower()


def runbook_url(cfg: Config, alert_name: str) -> str:
    """The runbook link of an alert: the one place runbook links are built."""
    return cfg.links.runbook_url.format(anchor=anchor(alert_name))


def dashboard_uid(cfg: Config, key: str) -> str:
    """The uid of a generated dashboard, shared by the dashboards and the alert links.

    >>> from inferwatch.generate.config import DEFAULT
    >>> dashboard_uid(DEFAULT, "overview")
    'inferwatch-overview'
    """
    return f"{cfg.dashboards.uid_prefix}-{DASHBOARD_SUFFIXES[key]}"


def dashboard_url(cfg: Config, alert: AlertDef) -> str:
    """The dashboard link of an alert: its one panel alone where it names one, else the
    dashboard, narrowed to the alert's model when it has one."""
    uid = dashboard_uid(cfg, alert.dashboard)
    url = f"{cfg.links.grafana_url.rstrip('/')}/d/{uid}"
    if alert.panel:
        # No var-model: the panel's series need not be of a model the Model variable lists,
        # and Grafana may replace a value it does not list by another selection.
        return f"{url}?viewPanel={_panel_ids(cfg, alert.dashboard)[alert.panel]}"
    if alert.per_model:
        url += "?var-model={{ $labels.model | urlquery }}"
    return url


def _panel_ids(cfg: Config, key: str) -> dict[str, int]:
    """Each panel's id on dashboard `key` by its title (the first panel of a title): ids
    follow the layout, which the config shapes (a switched-off baseline signal drops its
    panels). Only the dashboards some link opens a panel of are built."""
    built = _panel_ids_by_dashboard(cfg)
    if key not in built:
        # Imported here: the dashboards take their uids from this module.
        from inferwatch.generate.dashboards import BY_KEY

        ids: dict[str, int] = {}
        pending = list(BY_KEY[key](cfg)["panels"])
        while pending:
            panel = pending.pop(0)
            pending[:0] = panel.get("panels", [])
            ids.setdefault(panel["title"], panel["id"])
        built[key] = ids
    return built[key]


@per_config
def _panel_ids_by_dashboard(cfg: Config) -> dict[str, dict[str, int]]:
    # Filled by _panel_ids, a dashboard at a time.
    return {}


def scrape_note(cfg: Config, expr: str) -> str:
    """The sentence that tells the person paged which scrape jobs an alert reads, and where
    to change them: a renamed job otherwise silences an alert without a trace.

    >>> from inferwatch.generate.config import DEFAULT
    >>> print(scrape_note(DEFAULT, 'up{job="inferwatch-model"} == 0'))
     Reads series matching {job="inferwatch-model"} (selectors.model in the inferwatch config; ...
    """
    notes = _scrape_notes(cfg)
    if expr not in notes:
        notes[expr] = _scrape_note(cfg, expr)
    return notes[expr]


@per_config
def _scrape_notes(cfg: Config) -> dict[str, str]:
    # Most alerts render the same expression for every model override: noted once each.
    return {}


def _scrape_note(cfg: Config, expr: str) -> str:
    recorded = _recorded(cfg)
    read, pending = expr, [expr]
    while pending:  # an alert on a recording rule reads what that rule reads
        text = pending.pop()
        for name, body in recorded:
            if name in text and body not in read:
                read += "\n" + body
                pending.append(body)
    keys = [("selectors.model", cfg.selectors.model),
            ("selectors.exporter", cfg.selectors.exporter),
            ("pushgateway.selector", cfg.pushgateway.selector)]
    used = [(key, value) for key, value in keys if value in read]
    if not used:
        return ""
    matchers = " and ".join(f"{{{shown(value)}}}" for _, value in used)
    settings = " and ".join(key for key, _ in used)
    return (f" Reads series matching {matchers} ({settings} in the inferwatch config; "
            f"regenerate the rules after changing it).")


@per_config
def _recorded(cfg: Config) -> tuple[tuple[str, str], ...]:
    # A sequence, not a dict: a baseline series has one rule per quantile under one name.
    return (*recording_rules(cfg), *baselines.recording_rules(cfg))
