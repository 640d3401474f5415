"""Building a config from parsed YAML data: each value's type coerced and checked, every
section merged with its own defaults, and the per-alert and per-model overrides built.

Every refusal names the value's dotted key. Apart from the schema (config_schema), which only
declares what a config holds, and from the checks between settings (config_consistency),
which judge the config once it is built.

>>> build(Config, {"latency": {"p99_seconds": 1}}, "").latency
Latency(p99_seconds=1.0, first_item_p99_seconds=1.0)
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from inferwatch.generate import config_checks as check
from inferwatch.generate.alert_names import ALERT_NAMES, MODEL_ALERT_NAMES
from inferwatch.generate.config_consistency import check_cross_fields
from inferwatch.generate.config_schema import (
    OBJECTIVE_KEYS,
    RULE_KEYS,
    AlertOverride,
    Config,
    ConfigError,
    ModelOverride,
    frozen,
    is_name,
    leaves,
    with_values,
    yaml_key,
)
from inferwatch.generate.re2 import Unsupported, matches, python_regex


def _type_name(kind: Any) -> str:
    names = {str: "a string", float: "a number", int: "an integer", Mapping: "a mapping",
             tuple: "a list", bool: "true or false"}
    if dataclasses.is_dataclass(kind):
        return "a mapping"
    return names.get(kind, str(kind))


def _coerce(value: Any, kind: Any, key: str) -> Any:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if value is None:
            return None
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    ok = {
        str: isinstance(value, str),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        Mapping: isinstance(value, Mapping),
        tuple: isinstance(value, list),
    }.get(kind, isinstance(value, Mapping))
    if not ok:
        got = (_not_text(value) if kind is str
               else f"{type(value).__name__} {value!r}{_number_hint(value, kind)}")
        raise ConfigError(key, f"must be {_type_name(kind)}, got {got}")
    if kind in (float, int):
        _check_finite(value, key)
    if kind is float:
        return float(value)
    if kind is tuple:
        return tuple(value)
    return value


def _number_hint(value: Any, kind: Any) -> str:
    """How to write a number YAML 1.1 read as text: PyYAML takes 1e-3, 2e3 and 2.0e3 for
    strings, and a number with an exponent only with a decimal point and a signed exponent
    (1.0e-3, 2.0e+3)."""
    if kind is float and isinstance(value, str):
        exponent = re.fullmatch(r"([-+]?)([0-9]*)(?:\.([0-9]*))?([eE])([-+]?)([0-9]+)",
                                value.strip())
        if exponent and (exponent[2] or exponent[3]):
            sign, whole, fraction, e, exp_sign, digits = exponent.groups()
            dotted = f"{sign}{whole or '0'}.{fraction or '0'}"
            unsigned = f"{dotted}{e}{digits}"
            written = f"{dotted}{e}{exp_sign or '+'}{digits}"
            if exp_sign:
                return (f" (YAML reads an exponent without a decimal point as text: write "
                        f"{written})")
            # Adding the point alone is not enough: 2.0e3 is text to YAML 1.1 as well.
            return (f" (YAML reads an exponent without a sign as text, even {unsigned}: "
                    f"write {written})")
    leading_zero = (re.fullmatch(r"([-+]?)0[0-9_]*[89][0-9_]*", value)
                    if kind in (int, float) and isinstance(value, str) else None)
    if leading_zero:
        # A leading 0 makes YAML 1.1 read octal, and 8 or 9 is no octal digit: 017 is
        # refused as octal 15 when parsed, and 08 arrives here as the text '08'.
        number = int(value.replace("_", ""))
        return (f" (YAML 1.1 reads a leading 0 as octal, and {value} holds a digit 8 or 9, so "
                f"it is text: write {number})")
    return ""


def _check_finite(value: float, key: str) -> None:
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        raise ConfigError(key, "must be a finite number, got an integer too large for "
                          "one") from None
    if not finite:
        raise ConfigError(key, f"must be a finite number, got {value!r}")


def build(cls: type, data: Any, prefix: str) -> Any:
    """An instance of the config dataclass `cls` from the mapping `data`, each key checked;
    `prefix` is the dotted key of `data` (empty at the top level)."""
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip(".") or "(top level)", f"must be a mapping, got "
                          f"{type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {yaml_key(f.name): f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for raw_key, raw in data.items():
        key = f"{prefix}{raw_key}"
        if raw_key not in fields:
            raise ConfigError(key, f"unknown key (expected one of: {', '.join(fields)})")
        spec = fields[raw_key]
        kind = hints[spec.name]
        if raw is None and _is_section(spec, kind):
            # `slo:` whose keys were all deleted or commented out, as the example config
            # invites: YAML reads it as null, and it keeps every default.
            continue
        if dataclasses.is_dataclass(kind):
            default = getattr(cls(), spec.name)
            values[spec.name] = _merge(default, raw, f"{key}.")
            continue
        _refuse_bare_duration(spec, raw, key)
        value = _coerce(raw, kind, key)
        values[spec.name] = _check_leaf(cls, spec, value, key)
    return cls(**values)


# The checks of one duration; check.durations and check.duration_map hold several.
DURATION_CHECKS = (check.duration, check.duration_or_zero, check.grafana_refresh)


def _refuse_bare_duration(spec: dataclasses.Field, raw: Any, key: str) -> None:
    """Refuse a duration written as a bare number (`rate: 10`) saying it needs a unit: the
    type check would first ask to quote it, and the quoted "10" is no duration either."""
    checker = spec.metadata.get("check")
    if checker in DURATION_CHECKS:
        items: list[tuple[str, str, Any]] = [(key, "", raw)]
    elif checker is check.durations and isinstance(raw, list):
        items = [(key, f" at [{index}]", item) for index, item in enumerate(raw)]
    elif checker is check.duration_map and isinstance(raw, Mapping):
        items = [(f"{key}.{name}", "", item) for name, item in raw.items()]
    else:
        return
    for where, at, value in items:
        if isinstance(value, (int, float)):  # text is left to the check, which says the same
            problem = check.bare_number(value)
            if problem:
                # Written with its unit, `10m` is a string unquoted: no quoting hint.
                raise ConfigError(where, f"must be a string, and {problem}{at}")


def _is_section(spec: dataclasses.Field, kind: Any) -> bool:
    """Whether a key holds a section of keys (or a mapping empty by default), which an empty
    value leaves as it is."""
    if dataclasses.is_dataclass(kind):
        return True
    return (kind is Mapping and spec.default_factory is not dataclasses.MISSING
            and not spec.default_factory())


def _merge(default: Any, data: Any, prefix: str) -> Any:
    # A nested section starts from its own default (slow_burn differs from fast_burn).
    built = build(type(default), data, prefix)
    given = {yaml_key(name) for name in data}
    kept = {f.name: getattr(default, f.name) for f in dataclasses.fields(default)
            if yaml_key(f.name) not in given}
    return dataclasses.replace(built, **kept)


def _check_leaf(cls: type, spec: dataclasses.Field, value: Any, key: str) -> Any:
    if cls is Config and spec.name == "alerts":
        return _build_alert_overrides(value, key)
    if isinstance(value, Mapping):
        for item_key, item in value.items():
            for text in (item_key, item):
                if not isinstance(text, str):
                    raise ConfigError(f"{key}.{item_key}", f"keys and values must be strings, "
                                      f"got {_not_text(text)}")
        value = frozen(value)
    if isinstance(value, tuple):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(key, f"must be a list of strings, got {_not_text(item)} at "
                                  f"[{index}]")
    checker = spec.metadata.get("check")
    problem = checker(value) if checker and value is not None else None
    if problem:
        raise ConfigError(key, problem)
    if checker is check.selector:
        value = check.selector_text(value)
    return value


def _not_text(value: Any) -> str:
    """What YAML made of a value that should have been text, and how to keep it text: the
    version 1.10 reads as the number 1.1, and yes, no, on and off as booleans."""
    shown = f"{type(value).__name__} {value!r}"
    if isinstance(value, (bool, int, float)):
        return f"{shown} (YAML reads it unquoted as {_type_name(type(value))}: quote it)"
    if isinstance(value, datetime.date):
        # YAML 1.1 reads 2026-01-31 (a Grafana time_from, a tag) as a date: the message
        # shows it as the user wrote it, not as datetime.date(2026, 1, 31).
        return f"the date {value} (YAML reads it unquoted as a date: quote it)"
    return shown


def _build_alert_overrides(data: Mapping, key: str) -> Mapping[str, AlertOverride]:
    overrides = {}
    for name, raw in data.items():
        if name not in ALERT_NAMES:
            raise ConfigError(f"{key}.{name}", "unknown alert (see docs/runbooks.md for the list)")
        if raw is None:
            # `InferwatchLatencyHigh:` with its severity and for commented out: an empty
            # section keeps its defaults, as `slo:` does.
            continue
        overrides[name] = build(AlertOverride, raw, f"{key}.{name}.")
    return frozen(dict(sorted(overrides.items())))


def _model_pattern(pattern: Any) -> str | None:
    if not isinstance(pattern, str):
        return f"a model name or regex must be a non-empty string, got {_not_text(pattern)}"
    if not pattern.strip():
        return "a model name or regex must be a non-empty string"
    try:
        python_regex(pattern)
    except Unsupported as exc:
        return str(exc)
    return None


def _schema_field(dotted: str) -> tuple[type, dataclasses.Field, Any]:
    """The dataclass, field and type hint behind a dotted key of the config."""
    cls: type = Config
    *parents, leaf = dotted.split(".")
    for part in parents:
        cls = typing.get_type_hints(cls)[part]
    spec = next(f for f in dataclasses.fields(cls) if f.name == leaf)
    return cls, spec, typing.get_type_hints(cls)[leaf]


def _flatten(data: Any, prefix: str, key: str) -> Iterator[tuple[str, Any]]:
    """(dotted key below the model, raw value) for every leaf of one model's overrides."""
    if data is None and prefix:
        return  # a section left empty, as at the top level
    if not isinstance(data, Mapping):
        raise ConfigError(key, f"must be a mapping, got {type(data).__name__}")
    for name, value in data.items():
        dotted = f"{prefix}{name}"
        here = f"{key}.{name}"
        if dotted in OBJECTIVE_KEYS or dotted in RULE_KEYS:
            yield dotted, value
        elif any(k.startswith(f"{dotted}.") for k in (*OBJECTIVE_KEYS, *RULE_KEYS)):
            yield from _flatten(value, f"{dotted}.", here)
        elif any(k == dotted or k.startswith(f"{dotted}.") for k, _, _ in leaves()):
            raise ConfigError(here, "is not a per-model setting; set it at the top level")
        else:
            choices = sorted({k[len(prefix):].split(".")[0]
                              for k in (*OBJECTIVE_KEYS, *RULE_KEYS) if k.startswith(prefix)}
                             | ({"alerts"} if not prefix else set()))
            raise ConfigError(here, f"unknown key (per-model keys here: {', '.join(choices)})")


def _build_model_override(pattern: str, raw: Any, earlier: tuple[str, ...],
                          base: Config) -> ModelOverride:
    key = f"models.{pattern}"
    raw = {} if raw is None else raw  # an entry left empty still claims its models
    if not isinstance(raw, Mapping):
        raise ConfigError(key, f"must be a mapping, got {type(raw).__name__}")
    # Only an empty `alerts:` means none: `[]` or `false` is a mistake, refused at the top
    # level too.
    raw_alerts = {} if raw.get("alerts") is None else raw["alerts"]
    if not isinstance(raw_alerts, Mapping):
        raise ConfigError(f"{key}.alerts", f"must be a mapping, got {type(raw_alerts).__name__}")
    alerts = _build_alert_overrides(raw_alerts, f"{key}.alerts")
    for name in alerts:
        if name not in MODEL_ALERT_NAMES:
            raise ConfigError(f"{key}.alerts.{name}", "is not judged per model; override it under "
                              "the top-level alerts instead")
    values: dict[str, Any] = {}
    settings = {name: value for name, value in raw.items() if name != "alerts"}
    for dotted, value in _flatten(settings, "", key):
        cls, spec, hint = _schema_field(dotted)
        _refuse_bare_duration(spec, value, f"{key}.{dotted}")
        coerced = _coerce(value, hint, f"{key}.{dotted}")
        if coerced is None:
            # An optional bound (accuracy.max_error) is a number where a model sets it: the
            # rules hold a model without one to the default, so null would change nothing.
            raise ConfigError(f"{key}.{dotted}", "must be a number here (leave the key out to "
                              "keep the default)")
        values[dotted] = _check_leaf(cls, spec, coerced, f"{key}.{dotted}")
    try:
        check_cross_fields(with_values(base, values))
    except ConfigError as exc:
        raise ConfigError(f"{key}.{exc.key}", exc.problem) from None
    return ModelOverride(pattern, earlier, frozen(values), alerts)


def build_model_overrides(data: Any, base: Config) -> Mapping[str, ModelOverride]:
    """The `models:` section `data` as {pattern: override}, each checked against `base`, the
    config it overrides."""
    if not isinstance(data, Mapping):
        raise ConfigError("models", f"must be a mapping, got {type(data).__name__}")
    overrides: dict[str, ModelOverride] = {}
    for pattern, raw in data.items():
        problem = _model_pattern(pattern)
        if problem:
            raise ConfigError(f"models.{pattern}", problem)
        if is_name(pattern):
            for earlier in overrides:
                if matches(earlier, pattern):
                    raise ConfigError(f"models.{pattern}", f"never applies: models.{earlier} "
                                      f"matches it first (list the name before the regex)")
            overlapping: tuple[str, ...] = ()
        else:
            overlapping = tuple(earlier for earlier in overrides
                                if not is_name(earlier) or matches(pattern, earlier))
        overrides[pattern] = _build_model_override(pattern, raw, overlapping, base)
    return frozen(overrides)
