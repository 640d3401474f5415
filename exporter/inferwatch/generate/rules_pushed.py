"""What batch jobs push to a Pushgateway, as the alerts and the overview read it: how often
each pushed group is expected to push again, its model's availability objective, and the
error ratio of its latest run.

A pushed group holds its last run's counts until the next run replaces them, and the model
selectors, which name the services Prometheus scrapes, do not reach pushed jobs: so these
series are judged by their own totals, selected by ``pushgateway.selector`` and joined with
``push_time_seconds``.

>>> from inferwatch.generate.config import from_dict
>>> print(pushgateway_expr(from_dict({})))
time() - push_time_seconds{job!=""} > 86400
"""

from __future__ import annotations

from inferwatch.generate import promql as q
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_schema import Config, ModelOverride
from inferwatch.generate.objectives import (
    accepted,
    is_overridden,
    is_per_version,
    scope_matchers,
    strictest,
)
from inferwatch.generate.promql import MODEL_LABELS, number

# The overview's panel of the pushed groups, which both batch alerts link to.
BATCH_RUNS_PANEL = "Batch jobs: last push and last run"


def push_periods(cfg: Config) -> list[tuple[tuple[str, ...], float]]:
    """The `job` matchers of the pushed groups and the seconds within which each is expected
    to push again: each job of pushgateway.jobs its own period, every other job max_age.

    >>> from inferwatch.generate.config import from_dict
    >>> push_periods(from_dict({"pushgateway": {"jobs": {"nightly": "26h"}}}))
    [(('job="nightly"',), 93600.0), (('job!="nightly"',), 86400.0)]
    """
    p = cfg.pushgateway
    periods = [((f"job={q.quoted(job)}",), duration_seconds(period))
               for job, period in p.jobs.items()]
    others = tuple(f"job!={q.quoted(job)}" for job in p.jobs)
    return [*periods, (others, duration_seconds(p.max_age))]


def pushgateway_expr(cfg: Config) -> str:
    selector = cfg.pushgateway.selector
    return "\nor\n".join(f"time() - push_time_seconds{q.selector(selector, *jobs)}"
                          f" > {number(seconds)}" for jobs, seconds in push_periods(cfg))


# The objective a failed batch run is judged by: each pushed model's own, where it has one.
_AVAILABILITY = "slo.availability"


def pushed_series(cfg: Config, metric: str, *matchers: str) -> str:
    """`metric` of the pushed groups: its series of the jobs that push (push_time_seconds)."""
    p = cfg.pushgateway
    return (f"{metric}{q.selector(p.selector, *matchers)}\n"
            f"and on (job) push_time_seconds{q.selector(p.selector)}")


def _availability_entries(cfg: Config) -> list[ModelOverride]:
    """The models: entries up to the last that sets its own availability: each one claims
    the models it matches first, with its own value or the default."""
    entries = list(cfg.models.values())
    setting_own = [i for i, entry in enumerate(entries) if _AVAILABILITY in entry.values]
    return entries[:setting_own[-1] + 1] if setting_own else []


def _configured_pushed_availability(cfg: Config) -> str:
    """Each pushed model's availability objective in the config: the first matching
    models: entry's, else the default."""
    def pushed_models(*matchers: str) -> str:
        series = pushed_series(cfg, "inferwatch_requests_total", *matchers)
        return f"group by (model) {q.block(series)}"

    terms = []
    for entry in _availability_entries(cfg):
        if _AVAILABILITY not in entry.values:
            continue  # its models fall to the default: a later regex leaves them out
        value = number(entry.values[_AVAILABILITY])
        if entry.is_name:
            # A constant series: no index lookup or aggregation, so many names stay cheap.
            terms.append(f"label_replace(vector({value}), \"model\", "
                         f"{q.quoted(entry.pattern)}, \"\", \"\")")
        else:
            terms.append(f"{pushed_models(*scope_matchers(entry))} * 0 + {value}")
    terms.append(f"{pushed_models()} * 0 + {number(cfg.slo.availability)}")
    return "\nor\n".join(terms)


def _declared_pushed_availability(cfg: Config, configured: str) -> str:
    """Each pushed model's availability objective under objectives.from_code: every version
    its groups' last runs served takes part with what it declares in code
    (`inferwatch_model_objective`, pushed with its calls), else with `configured`, and the
    strictest wins, as the model-wide objective takes its serving versions' strictest: a
    version's laxer declaration never loosens what one declaring nothing is held to.

    A shadow's declaration is left out (a challenger's laxer objective is not its
    model's), and so is a value instrument() would refuse."""
    p = cfg.pushgateway
    version = f"job, {MODEL_LABELS}"
    pushed = f"and on (job) push_time_seconds{q.selector(p.selector)}"
    shadows = f"inferwatch_model_info{q.selector(p.selector, 'role=' + q.quoted('shadow'))}"
    served = (f"group by ({version}) (\n"
              f"  inferwatch_requests_total{q.selector(p.selector)} > 0\n"
              f"  {pushed}\n"
              f"  unless on ({version}) {shadows}\n"
              f")")
    objective = f"objective={q.quoted(_AVAILABILITY)}"
    series = f"inferwatch_model_objective{q.selector(p.selector, objective)}"
    declared = f"{strictest(_AVAILABILITY)} by ({version}) ({accepted(series, _AVAILABILITY)})"
    by_version = (f"{declared}\nand on ({version})\n{served}\n"
                  f"or on ({version})\n"
                  f"{served} * 0\n+ on (model) group_left ()\n{q.block(configured)}")
    # A model none of whose versions served in its last runs: the config.
    return f"{strictest(_AVAILABILITY)} by (model) {q.block(by_version)}\nor\n{configured}"


def pushed_availability(cfg: Config) -> str:
    """Each pushed model's availability objective: the first matching models: entry's,
    else the default; with objectives.from_code, what the model declares in code first.

    Not model:inferwatch_objective:slo_availability: that holds a regex's models and the
    default's only where inferwatch_model_info under selectors.model names them, the
    services Prometheus scrapes, and a batch job's model need not be one of those."""
    configured = _configured_pushed_availability(cfg)
    if is_per_version(cfg, _AVAILABILITY):
        return _declared_pushed_availability(cfg, configured)
    return configured


def batch_run_failed_expr(cfg: Config) -> str:
    """The error ratio of each pushed group's latest run above its model's error budget.

    A pushed group holds its last run's counts until the next run replaces them: the
    rate-based alerts see a counter move only when two runs differ, and the model
    selectors, which name the services Prometheus scrapes, do not reach pushed jobs at all.
    So a batch run is judged by its own totals, for as long as they are the latest."""
    p = cfg.pushgateway
    failed = 'outcome="error"'
    pushed = f"and on (job) push_time_seconds{q.selector(p.selector)}"
    errors = (f"sum by (job, model) (\n    inferwatch_requests_total"
              f"{q.selector(p.selector, failed)}\n    {pushed}\n  )")
    calls = (f"sum by (job, model) (\n    inferwatch_requests_total{q.selector(p.selector)}"
             f"\n    {pushed}\n  )")
    ratio = f"(\n  {errors}\n/\n  {calls}\n)"
    if not is_overridden(cfg, _AVAILABILITY):
        return f"{ratio} > (1 - {number(cfg.slo.availability)})"
    budget = q.block(f"1 - {q.block(pushed_availability(cfg))}")
    return f"{ratio}\n> on (model) group_left ()\n{budget}"


def pushed_availability_text(cfg: Config) -> str:
    """The availability objective the alert judged `$labels.model` by, as a percentage.

    Chosen in the template as the rule chose it: with objectives.from_code, what the model
    declares in its pushed groups; else the first models: entry that matches, its regex
    anchored as `=~` anchors it."""
    configured = _configured_availability_text(cfg)
    if not is_per_version(cfg, _AVAILABILITY):
        return configured
    # The objective as the rule found it. A `%` of the pushgateway selector stands for
    # itself, not for one of printf's verbs.
    objective = q.block(pushed_availability(cfg)).replace("%", "%%")
    query = f'{objective} and on (model) label_replace(vector(1), "model", %q, "", "")'
    return (f"{{{{ with printf {q.quoted(query)} $labels.model | query }}}}"
            f"{{{{ . | first | value | humanizePercentage }}}}"
            f"{{{{ else }}}}{configured}{{{{ end }}}}")


def _configured_availability_text(cfg: Config) -> str:
    """The availability objective the config gives `$labels.model`, as a percentage."""
    default = f"{q.percent(cfg.slo.availability)}%"
    entries = _availability_entries(cfg)
    if not entries:
        return default
    branches = []
    for entry in entries:
        # A PromQL string's escapes are a Go string literal's, as the template reads it.
        if entry.is_name:
            test = f"eq $labels.model {q.quoted(entry.pattern)}"
        else:
            test = f"match {q.quoted(f'^(?:{entry.pattern})$')} $labels.model"
        value = entry.values.get(_AVAILABILITY, cfg.slo.availability)
        branches.append(f"if {test} }}}}{q.percent(value)}%")
    return "{{ " + "{{ else ".join(branches) + f"{{{{ else }}}}{default}{{{{ end }}}}"


def push_periods_text(cfg: Config) -> str:
    jobs = [f"{q.shown(job)} {period}" for job, period in cfg.pushgateway.jobs.items()]
    return ", ".join([*jobs, f"default {cfg.pushgateway.max_age}"])
