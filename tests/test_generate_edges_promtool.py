"""Any config the loader accepts renders rule files promtool loads and dashboards that are
JSON: a value that passes the checks must never make Prometheus refuse the rules."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from inferwatch.generate import config_checks as check
from inferwatch.generate import render, rule_files
from inferwatch.generate.config import ConfigError, from_dict
from inferwatch.generate.config_schema import OBJECTIVE_KEYS, RULE_KEYS, leaves
from test_generate_outputs import _nested

pytestmark = pytest.mark.integration

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
UNITS = ("y", "w", "d", "h", "m", "s", "ms")


def _durations(zero: bool = False) -> st.SearchStrategy[str]:
    """Prometheus durations: units largest first, each once (``1h30m``, ``90s``, ``0s``)."""
    parts = st.lists(st.tuples(st.sampled_from(UNITS), st.integers(0 if zero else 1, 90)),
                     min_size=1, max_size=3, unique_by=lambda part: part[0])
    text = parts.map(lambda ps: "".join(f"{n}{unit}" for unit, n in
                                        sorted(ps, key=lambda part: UNITS.index(part[0]))))
    return st.one_of(text, st.just("0s")) if zero else text


# Text an SRE may well write: quotes, backslashes, line breaks, unicode, template and
# Grafana delimiters, regex syntax.
_TEXT = st.one_of(
    st.text(st.sampled_from(list('ab"\\\n\t\'`{}$é模 %|.*-_')), min_size=1, max_size=8),
    st.sampled_from(["{{", "{{ $labels.model }}", "a}}b", "${model}", "100%", "`x`"]),
).filter(str.strip)
_POSITIVE = st.one_of(st.floats(1e-12, 1e12), st.sampled_from([1e-9, 1e15, 0.1 + 0.2]))
_SELECTORS = st.sampled_from([
    'job="a\\"b"', "job=~'x|y'", "job=`raw\\n`", 'namespace!="", job="x"', 'a="ü{}"',
    'job=~".+"', 'job="x\\\\y"', ' job = "m" ', 'job="a{{b"', 'job=~"a{2}}}"', 'job="%s"'])
_BY_CHECK: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (check.duration, _durations()),
    (check.duration_or_zero, _durations(zero=True)),
    (check.positive, _POSITIVE),
    (check.ratio, st.one_of(st.floats(0, 1), st.sampled_from([0, 1]))),
    (check.open_ratio, st.floats(1e-12, 1 - 1e-12)),
    (check.non_negative, st.one_of(st.just(0), st.floats(0, 1e9))),
    (check.selector, _SELECTORS),
    (check.quantiles, st.lists(st.sampled_from(["0.5", "0.9", "0.99", "0.999", "0.25", "0.01"]),
                               min_size=1, max_size=3, unique=True)),
    (check.label_values, st.lists(_TEXT, max_size=3)),
    (check.durations, st.lists(_durations(), max_size=3)),
    (check.duration_map, st.dictionaries(_TEXT, _durations(), max_size=3)),
    (check.url, st.sampled_from(["https://g.example.com/x?a=b&c='d'", "http://h:3000/"])),
    (check.runbook_pattern, st.sampled_from(["https://x.example/{anchor}?q='\"",
                                             "http://r/#{anchor}"])),
    (check.not_empty, _TEXT),
    # Job names keep every character but space at either end, which the loader refuses.
    (check.job_name, _TEXT.filter(lambda text: text == text.strip())),
]


def _leaf(key: str, spec: Any, default: Any) -> st.SearchStrategy[Any]:
    """Values the loader accepts for one leaf (cross-field rules aside)."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(1, 10**6)
    if key == "drift.method":
        return st.sampled_from(["psi", "js", "ks"])
    if key == "dashboards.title_prefix":
        return _TEXT
    if key == "dashboards.tags":
        return st.lists(_TEXT, max_size=3)
    for known, strategy in _BY_CHECK:
        if spec.metadata.get("check") is known:
            return strategy
    return st.just(list(default) if isinstance(default, tuple) else default)


_LEAVES = {key: _leaf(key, spec, default) for key, spec, default in leaves()
           if key not in ("alerts", "models")}
_PER_MODEL = sorted(key for key in (*OBJECTIVE_KEYS, *RULE_KEYS) if key in _LEAVES)


@st.composite
def _configs(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(sorted(_LEAVES)), max_size=8, unique=True))
    data = _nested({key: draw(_LEAVES[key]) for key in keys})
    patterns = draw(st.lists(st.one_of(_TEXT, st.sampled_from(["rec-[0-9]+", "a|b", "fr.*"])),
                             max_size=3, unique=True))
    models = {}
    for pattern in patterns:
        own = draw(st.lists(st.sampled_from(_PER_MODEL), max_size=3, unique=True))
        models[pattern] = _nested({key: draw(_LEAVES[key]) for key in own})
    if models:
        data["models"] = models
    return data


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much,
                                                                  HealthCheck.too_slow])
@given(_configs())
def test_every_accepted_config_renders_rules_promtool_loads(data: dict[str, Any]) -> None:
    try:
        cfg = from_dict(data)
    except ConfigError:
        assume(False)
        return
    files = render(cfg)
    with tempfile.TemporaryDirectory() as directory:
        paths = []
        for relative, content in rule_files(files).items():
            path = Path(directory) / Path(relative).name
            path.write_text(content, encoding="utf-8")
            paths.append(str(path))
        result = subprocess.run([PROMTOOL, "check", "rules", "--lint-fatal", *paths],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for relative, content in files.items():
        if relative.endswith(".json"):
            json.loads(content)
