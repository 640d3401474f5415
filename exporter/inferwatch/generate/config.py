"""The generator config: defaults in code, overrides from one YAML file.

Every leaf is typed and checked when loaded, and a bad value is reported with its
dotted key (``slo.availability``) and the file it came from, so a typo fails loudly
instead of silently keeping a default.

This module holds the entry points, from_dict and load; the schema is config_schema, building
a config from parsed data config_build, the checks between its settings config_consistency.

>>> cfg = from_dict({"latency": {"p99_seconds": 0.25}})
>>> cfg.latency.p99_seconds, cfg.slo.availability
(0.25, 0.999)
>>> from_dict({"latency": {"p99": 1}})
Traceback (most recent call last):
...
inferwatch.generate.config_schema.ConfigError: latency.p99: unknown key (expected one of: ...)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inferwatch.generate import config_checks as check
from inferwatch.generate.config_build import DURATION_CHECKS, build, build_model_overrides
from inferwatch.generate.config_consistency import (
    SCRAPED_WINDOW_KEYS,
    check_cross_fields,
    check_given_together,
    check_model_alerts,
    check_scraped_windows,
    check_window_lengths,
    given,
    with_job_selectors,
)
from inferwatch.generate.config_schema import (
    DEFAULT,
    OBJECTIVE_KEYS,
    RULE_KEYS,
    Config,
    ConfigError,
    leaves,
    with_values,
)
from inferwatch.generate.config_yaml import Refused, parse_yaml

# Python writes no integer of more digits as text (sys.get_int_max_str_digits' default).
_UNWRITABLE = 10 ** 4299


def _refuse_surrogates(data: Any, key: str) -> None:
    """Refuse text that is not Unicode: YAML's ``"\\ud800"`` escape makes a lone surrogate,
    which no UTF-8 file can hold and which promtool refuses to read back from a rule file.
    Refuse an integer too long for Python to write as text (a dict built in code): every
    message naming it would fail with a ValueError that names no key."""
    if isinstance(data, str):
        bad = next((c for c in data if 0xD800 <= ord(c) <= 0xDFFF), None)
        if bad is not None:
            raise ConfigError(key or "(top level)", f"holds the lone surrogate "
                              f"{repr(bad)[1:-1]}, which is not a Unicode character")
    elif isinstance(data, int) and not isinstance(data, bool) and abs(data) >= _UNWRITABLE:
        raise ConfigError(key or "(top level)", f"is a number of {data.bit_length()} bits, "
                          "longer than any setting takes (and than Python writes as text)")
    elif isinstance(data, Mapping):
        for name, value in data.items():
            if isinstance(name, int):
                _refuse_surrogates(name, key)  # before naming it: too long to write, it raises
            dotted = f"{key}.{name}" if key else str(name)
            _refuse_surrogates(name, dotted)
            _refuse_surrogates(value, dotted)
    elif isinstance(data, list):
        for item in data:
            _refuse_surrogates(item, key)


def from_dict(data: Mapping | None, source: str | None = None) -> Config:
    """Build a config from parsed YAML, checking every key; missing keys keep their defaults.

    >>> from_dict({"drift": {"method": "js"}}).drift.method
    'js'
    """
    # Only an empty document means "all defaults": `[]`, `false` or `0` is a mistake.
    data = {} if data is None else data
    try:
        _refuse_surrogates(data, "")
        models = None
        if isinstance(data, Mapping) and "models" in data:
            # Each model's values are checked together with the top-level ones they replace.
            # Only an empty `models:` means no overrides: `[]` or `false` is a mistake.
            models = {} if data["models"] is None else data["models"]
            data = {key: value for key, value in data.items() if key != "models"}
        cfg = with_job_selectors(build(Config, data, ""), data)
        check_cross_fields(cfg)
        check_given_together(cfg, data)
        check_window_lengths(cfg)
        if models is not None:
            cfg = dataclasses.replace(cfg, models=build_model_overrides(models, cfg))
            for pattern, override in cfg.models.items():
                if given(data, "kubernetes.scrape_interval"):
                    check_scraped_windows(cfg, {key: value for key, value in
                                                 override.values.items()
                                                 if key in SCRAPED_WINDOW_KEYS},
                                           f"models.{pattern}.")
                try:
                    check_window_lengths(with_values(cfg, override.values))
                    check_model_alerts(cfg, override)
                except ConfigError as exc:
                    raise ConfigError(f"models.{pattern}.{exc.key}", exc.problem) from None
    except ConfigError as exc:
        if source and not exc.source:
            raise ConfigError(exc.key, exc.problem, source) from None
        raise
    return cfg


def load(path: str | Path | None) -> Config:
    """Load a YAML config file (``None``: the defaults).

    >>> load(None) == DEFAULT
    True
    """
    if path is None:
        return DEFAULT
    import yaml  # only the CLI pays for the YAML parser

    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("(file)", f"cannot be read: {exc.strerror}", source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("(file)", f"is not UTF-8 text (byte {exc.start}: {exc.reason})",
                          source) from None
    try:
        data = parse_yaml(text)
    except Refused as exc:
        raise ConfigError(exc.key, _duration_misread(exc.key, exc.problem), source) from None
    except (yaml.YAMLError, ValueError) as exc:
        # ValueError: PyYAML lets Python's own limits through (an integer of 5000 digits).
        raise ConfigError("(file)", f"is not valid YAML: {_yaml_problem(exc)}", source) from None
    except RecursionError:
        raise ConfigError("(file)", _TOO_DEEP, source) from None
    try:
        return from_dict(data, source)
    except RecursionError:
        raise ConfigError("(file)", _TOO_DEEP, source) from None


# The problem parse_yaml names for a plain number YAML 1.1 reads as octal or base 60.
_MISREAD_NUMBER = re.compile(r"is (?P<text>\S+), which YAML 1.1 reads as the "
                             r"(?P<base>octal|base-60) number \S+ \(line [0-9]+\)")


def _duration_misread(key: str, problem: str) -> str:
    """`problem` of the value at `key`, saying at once that a duration needs a unit where YAML
    1.1 read one written as `010` or `1:30` as a number: its hint (drop the 0, or quote it)
    leads only to the next error, a bare number being no duration either."""
    found = _MISREAD_NUMBER.match(problem)
    if not found or not _is_duration_key(key):
        return problem
    text = found["text"].replace("_", "").lstrip("+")
    if not re.fullmatch(r"[0-9:]+", text):
        return problem  # a sign or a fraction: no duration the number could have meant
    parts = [int(part) for part in text.split(":")]
    # 1:30 was meant as an hour and a half or a minute and a half, 1:30:00 as h:m:s.
    written = {1: "{0}m or {0}s", 2: "{0}h{1}m or {0}m{1}s", 3: "{0}h{1}m{2}s"}.get(
        len(parts), "1h30m").format(*parts)
    return (f"{found[0]}; a duration needs a unit: write a Prometheus duration such as "
            f"{written} (units y w d h m s ms)")


def _is_duration_key(dotted: str) -> bool:
    """Whether the dotted key parse_yaml names holds a duration, or an item of a list or a
    mapping of them (`baselines.seasonal_offsets[0]`, `pushgateway.jobs.nightly`)."""
    dotted = re.sub(r"\[[0-9]+\]$", "", dotted)
    if re.fullmatch(r"(?:models\..+\.)?alerts\.[^.]+\.for", dotted):
        return True
    checks = {key: spec.metadata.get("check") for key, spec, _ in leaves()}
    if checks.get(dotted) in (*DURATION_CHECKS, check.durations):
        return True
    if any(dotted.startswith(f"{key}.") for key, found in checks.items()
           if found is check.duration_map):
        return True
    # A models: pattern may hold dots itself, so its settings are matched from the end.
    return dotted.startswith("models.") and any(
        dotted.endswith(f".{key}") and checks.get(key) in DURATION_CHECKS
        for key in (*OBJECTIVE_KEYS, *RULE_KEYS))


# PyYAML's parser and the checks recurse once per level of nesting.
_TOO_DEEP = "is nested too deeply (hundreds of levels) to be a config"


def _yaml_problem(exc: Exception) -> str:
    """One line saying where the YAML breaks and why: PyYAML's own message spans several lines
    and quotes the text, which buries the line number."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError) and (exc.problem_mark or exc.context_mark):
        mark = exc.problem_mark or exc.context_mark
        why = "; ".join(part for part in (exc.context, exc.problem) if part)
        return f"line {mark.line + 1}, column {mark.column + 1}: {why}"
    return " ".join(str(exc).split())
