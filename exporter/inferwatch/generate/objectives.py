"""Each model judged by its own values: objective series, joined thresholds, rule scopes.

A ``models:`` entry's objectives (thresholds, the SLO) become data, not rules: one recording
rule per objective gives every model its own value (the first matching entry's, or the
default when that entry leaves it out), and the alert compares on ``model`` against it.
With ``objectives.from_code``, a value the model declares in code
(``inferwatch_model_objective``) comes first: code, then the config's entry, then the
default. A
thousand overrides add no alert rule, and the dashboards draw each model's line from the same
series. Only an entry that changes an alert's shape (a window, a burn factor, ``for`` or
severity) gets its own copy of that alert, scoped to its models, while the default rule
leaves them out.

>>> from inferwatch.generate.config import DEFAULT, from_dict
>>> compare(DEFAULT, "p99", ">", "latency.p99_seconds")
'p99 > 0.5'
>>> cfg = from_dict({"models": {"fraud": {"latency": {"p99_seconds": 0.05}}}})
>>> compare(cfg, "p99", ">", "latency.p99_seconds")
'p99 > on (model) group_left () model:inferwatch_objective:latency_p99_seconds'
"""

from __future__ import annotations

from collections.abc import Callable

from inferwatch.catalogue import OBJECTIVE_CHECKS, WHOLE_NUMBER_OBJECTIVES
from inferwatch.catalogue import OBJECTIVE_KEYS as DECLARABLE_IN_CODE
from inferwatch.generate import promql as q
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_schema import (
    BASELINE_OBJECTIVE_KEYS,
    OBJECTIVE_KEYS,
    Config,
    ModelOverride,
    setting,
)
from inferwatch.generate.promql import MODEL_LABELS, model_sel, number
from inferwatch.number_ranges import (
    latency_threshold,
    non_negative,
    open_ratio,
    positive,
    ratio,
)


def _value(value: object) -> float:
    """An objective as the number the rules compare with (durations in seconds)."""
    return duration_seconds(value) if isinstance(value, str) else float(value)  # type: ignore[arg-type]


def scope(cfg: Config, override: ModelOverride) -> str:
    """Selector of the models an override applies to: its pattern, no earlier one's.

    >>> from inferwatch.generate.config import from_dict
    >>> cfg = from_dict({"models": {"fraud": {}, "fr.*": {}, "ranker": {}}})
    >>> scope(cfg, cfg.models["fr.*"])
    '{job="inferwatch-model", model=~"fr.*", model!~"(?:fraud)"}'
    >>> scope(cfg, cfg.models["ranker"])
    '{job="inferwatch-model", model="ranker"}'
    """
    return model_sel(cfg, *scope_matchers(override))


def scope_matchers(override: ModelOverride) -> tuple[str, ...]:
    """The `model` matchers of :func:`scope`, for series of any selector (pushed groups').

    >>> from inferwatch.generate.config import from_dict
    >>> scope_matchers(from_dict({"models": {"fraud": {}}}).models["fraud"])
    ('model="fraud"',)
    """
    if override.is_name:
        # An equality matcher is an index lookup; a plain name never overlaps another.
        return (f"model={q.quoted(override.pattern)}",)
    matchers = [f"model=~{q.quoted(override.pattern)}"]
    if override.earlier:
        earlier = "|".join(f"(?:{pattern})" for pattern in override.earlier)
        matchers.append(f"model!~{q.quoted(earlier)}")
    return tuple(matchers)


def models_in(cfg: Config, override: ModelOverride) -> str:
    """One series per model the override applies to, labelled only by model."""
    return f"group by (model) (inferwatch_model_info{scope(cfg, override)})"


def is_overridden(cfg: Config, key: str) -> bool:
    """Whether some model has (or, with objectives declared in code, may have) its own value
    for an objective."""
    from_code = cfg.objectives.from_code and key in DECLARABLE_IN_CODE
    return from_code or any(key in override.values for override in cfg.models.values())


# An objective's stricter side: a higher availability or accuracy floor is stricter, every
# other objective is a ceiling (or a minimum count before an alert may fire), stricter lower.
_HIGHER_IS_STRICTER = frozenset({"slo.availability", "accuracy.min_ratio"})


def strictest(key: str) -> str:
    """The aggregation that keeps the stricter of two values of an objective.

    >>> strictest("slo.availability"), strictest("latency.p99_seconds")
    ('max', 'min')
    """
    return "max" if key in _HIGHER_IS_STRICTER else "min"


def is_per_version(cfg: Config, key: str) -> bool:
    """Whether the versions of one model may hold different values of an objective: only
    what a version declares in code differs between versions, the config names models."""
    return cfg.objectives.from_code and key in DECLARABLE_IN_CODE


def version_objective(key: str) -> str:
    """The recording rule holding every serving version's own value of an objective.

    >>> version_objective("latency.p99_seconds")
    'model_version:inferwatch_objective:latency_p99_seconds'
    """
    return q.record_name("model_version", "inferwatch_objective", key.replace(".", "_"))


# The PromQL filter keeping a declared value its key's check accepts (NaN fails each).
_IN_RANGE = {open_ratio: "> 0 < 1", ratio: ">= 0 <= 1", positive: "> 0 < +Inf",
             non_negative: ">= 0 < +Inf",
             # Checked in code against the model's own latency buckets, which may reach
             # past the default top (the config's values are held to that).
             latency_threshold: "> 0 < +Inf"}


def accepted(series: str, key: str) -> str:
    """`series`, declared values of objective `key`, kept where instrument() accepts them:
    a number in the key's range (a whole one where the key counts).

    >>> accepted("declared", "slo.availability")
    'declared > 0 < 1'
    """
    kept = f"{series} {_IN_RANGE[OBJECTIVE_CHECKS[key]]}"
    if key in WHOLE_NUMBER_OBJECTIVES:
        kept += f" == floor({series})"
    return kept


def _declared(cfg: Config, key: str, by: str) -> str:
    # A shadow shares its model's name: the challenger's own objective (a laxer latency while
    # it is tried out) must not become the serving version's.
    # Only what instrument() accepts, a number in its key's range: a NaN (from a corrupt
    # snapshot or another client) would otherwise win over the config and make every
    # comparison false, silencing the model's alert, and an availability of 99.95 written by
    # an older client would page a model with no errors.
    series = f"inferwatch_model_objective{model_sel(cfg, f'objective={q.quoted(key)}')}"
    declared = f"{accepted(series, key)} unless on ({MODEL_LABELS}) {q.shadow_versions(cfg)}"
    # Replicas of one version, or versions of one model, that declare different values: the
    # stricter one, so a canary's laxer objective never loosens what the others are held to.
    return f"{strictest(key)} by ({by}) ({declared})"


def objective_rules(cfg: Config) -> list[tuple[str, str]]:
    """One recording rule per objective: every serving model's own value; with objectives
    declared in code, one more per declarable objective: every serving version's own value.

    >>> from inferwatch.generate.config import DEFAULT
    >>> name, expr = objective_rules(DEFAULT)[1]
    >>> name
    'model:inferwatch_objective:latency_p99_seconds'
    >>> expr
    'group by (model) (inferwatch_model_info{job="inferwatch-model"}) * 0 + 0.5'
    """
    rules, versions = [], []
    for key in OBJECTIVE_KEYS:
        if key in BASELINE_OBJECTIVE_KEYS and not is_overridden(cfg, key):
            continue  # the baseline rules then hold the one k as a number
        terms = [_objective_term(cfg, override, number(_value(override.values[key])))
                 for override in cfg.models.values() if key in override.values]
        if setting(cfg, key) is not None:
            terms.append(f"group by (model) (inferwatch_model_info{model_sel(cfg)}) * 0 + "
                         f"{number(_value(setting(cfg, key)))}")
        elif not terms:
            continue  # an optional bound no model sets: no model has one
        configured = "\nor\n".join(terms)
        if is_per_version(cfg, key):
            # `or` keeps the left side's series: what the version declares wins, else the
            # config. An alert on one version judges it by that value.
            versions.append((version_objective(key),
                             f"{_declared(cfg, key, MODEL_LABELS)}\n"
                             f"or on ({MODEL_LABELS})\n"
                             f"group by ({MODEL_LABELS}) (inferwatch_model_info{model_sel(cfg)})"
                             f" * 0\n+ on (model) group_left ()\n(\n{configured}\n)"))
            rules.append((q.objective(key), _strictest_version(cfg, key, configured)))
        else:
            rules.append((q.objective(key), configured))
    # The versions' rules first: rules of one group run in order at one timestamp, so the
    # model-wide rule reads the versions' values of this evaluation, not the last one's.
    return [*versions, *rules]


def _strictest_version(cfg: Config, key: str, configured: str) -> str:
    """A model-wide alert (and the dashboards) see the strictest serving version's value.

    Every version takes part with its own value, the config's where it declares nothing:
    `declared or configured` per model let one version's laxer declaration replace the
    config's value that the versions declaring nothing are held to.
    """
    values, primary = version_objective(key), f"unless on ({MODEL_LABELS}) {q.shadow_versions(cfg)}"
    # A version serves while its calls rise: its info (and value) can outlive it in a process
    # that swapped it out, and would pin the model to a retired version's objective.
    calls = f"inferwatch_requests_total{model_sel(cfg)}"
    serving = (f"sum by ({MODEL_LABELS}) (increase({calls}[{cfg.windows.versions_serving}]))"
               " > 0")
    by = f"{strictest(key)} by (model)"
    # A model no version of which served lately: every version it still exports; one with
    # only shadows (or none yet recorded): the config.
    return (f"{by} (\n{values}\nand on ({MODEL_LABELS})\n{serving}\n{primary}\n)\n"
            f"or\n{by} ({values} {primary})\n"
            f"or\n{configured}")


def _objective_term(cfg: Config, override: ModelOverride, value: str) -> str:
    if override.is_name:
        # A constant series: no index lookup or aggregation, so a hundred names stay cheap.
        return f'label_replace(vector({value}), "model", {q.quoted(override.pattern)}, "", "")'
    return f"{models_in(cfg, override)} * 0 + {value}"


def compare(cfg: Config, lhs: str, op: str, key: str,
            limit: Callable[[str], str] = lambda threshold: threshold,
            per_version: bool = False) -> str:
    """``lhs op threshold``, the threshold being each model's own where some model has one.

    `limit` turns the objective into what `lhs` is compared with (an error budget from an SLO).
    `per_version`: `lhs` carries model_version, so each version is judged by the objective it
    declares itself (a canary's laxer latency must not loosen the stable version's alert, nor
    its stricter availability page the stable version); else by its model's strictest.
    Every instrumented model exports ``inferwatch_model_info``, so every model has an
    objective series. There is deliberately no fallback to the default for a model without
    one: before the objectives' first evaluation it would judge every model by the default,
    and page for the ones whose own objective is laxer.
    """
    if not is_overridden(cfg, key):
        return f"{lhs} {op} {limit(number(_value(setting(cfg, key))))}"
    side = f"({lhs})" if "\n" in lhs or " " in lhs.strip() else lhs
    threshold = limit(objective_of(cfg, key, per_version))
    return f"{side} {op} {join_objective(cfg, key, per_version)} {threshold}"


def objective_of(cfg: Config, key: str, per_version: bool = False) -> str:
    """The recording rule an alert reads an objective from."""
    return version_objective(key) if per_version and is_per_version(cfg, key) else q.objective(key)


def join_objective(cfg: Config, key: str, per_version: bool = False) -> str:
    """The vector matching that joins an alert's series with its objective."""
    on = MODEL_LABELS if per_version and is_per_version(cfg, key) else "model"
    return f"on ({on}) group_left ()"


def threshold_text(cfg: Config, key: str, literal: str | None = None,
                   pipe: str = 'printf "%g"', per_version: bool = False) -> str:
    """An objective in alert text: the number, or a query of the model's own where it has one.

    `literal` is the text when no model has its own value; `pipe` formats the queried one;
    `per_version` queries the alert's version's own, as :func:`compare` judged it.

    >>> from inferwatch.generate.config import DEFAULT
    >>> threshold_text(DEFAULT, "latency.p99_seconds")
    '0.5'
    """
    default = literal if literal is not None else number(_value(setting(cfg, key)))
    if not is_overridden(cfg, key):
        return default
    if per_version and is_per_version(cfg, key):
        query = version_objective(key) + "{model=%q,model_version=%q}"
        args = "$labels.model $labels.model_version"
    else:
        query, args = q.objective(key) + "{model=%q}", "$labels.model"
    return (f"{{{{ with printf `{query}` {args} | query }}}}"
            f"{{{{ . | first | value | {pipe} }}}}{{{{ else }}}}{default}{{{{ end }}}}")
