"""One runner for promtool unit tests (`promtool test rules`), shared by the tests that judge
the generated rules and the dashboards' queries as Prometheus evaluates them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from conftest import require_binary
from inferwatch.generate import render, rule_files
from inferwatch.generate.config import Config

# Names no generated rule file takes, so a test's own files never overwrite one.
TEST_FILE = "promtool-test.yml"
GROUPS_FILE = "rule-groups.yml"


def assert_promtool_passes(directory: Path, series: Sequence[Mapping[str, str]] = (), *,
                           exprs: Sequence[Mapping[str, Any]] = (),
                           alerts: Sequence[Mapping[str, Any]] = (),
                           interval: str = "1m",
                           cases: Sequence[Mapping[str, Any]] | None = None,
                           rule_files: Iterable[str | Path] = (),
                           rule_groups: Sequence[Mapping[str, Any]] | None = None,
                           evaluation_interval: str = "1m", timeout: float = 120) -> str:
    """Writes a promtool unit test into `directory`, runs it there and returns promtool's
    output, asserting that every check passed (the output is the failure's message).

    The test is one case of `series` (promtool's `input_series` entries) sampled every
    `interval`, with the `exprs` (`promql_expr_test`) and `alerts` (`alert_rule_test`)
    checks; or `cases`, complete test cases, instead. `rule_files` are loaded as given:
    relative ones from `directory`. `rule_groups`, when given (even empty), are written
    into a rule file of their own and loaded too.
    """
    if cases is None:
        case: dict[str, Any] = {"interval": interval, "input_series": list(series)}
        if exprs:
            case["promql_expr_test"] = list(exprs)
        if alerts:
            case["alert_rule_test"] = list(alerts)
        cases = [case]
    files = [str(path) for path in rule_files]
    if rule_groups is not None:
        (directory / GROUPS_FILE).write_text(yaml.safe_dump({"groups": list(rule_groups)},
                                                            allow_unicode=True))
        files.append(GROUPS_FILE)
    test = {"rule_files": files, "evaluation_interval": evaluation_interval,
            "tests": list(cases)}
    path = directory / TEST_FILE
    path.write_text(yaml.safe_dump(test, allow_unicode=True, sort_keys=False))
    # The full path, so a failure names the directory of its case.
    result = subprocess.run([require_binary("promtool"), "test", "rules", str(path)],
                            capture_output=True, text=True, timeout=timeout, cwd=directory)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def write_generated_rules(cfg: Config, directory: Path, only: Iterable[str] = ()) -> list[str]:
    """Writes the rule files generated from `cfg` into `directory` by file name (only those
    named in `only`, when given) and returns their names, for `rule_files`."""
    wanted = set(only)
    names = []
    for relative, text in rule_files(render(cfg)).items():
        name = Path(relative).name
        if not wanted or name in wanted:
            (directory / name).write_text(text)
            names.append(name)
    return names
