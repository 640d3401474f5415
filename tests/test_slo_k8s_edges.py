"""`inferwatch generate` as it is used from a shell, and the objective rules judged by promtool:
piped listings, odd output directories, shadows declaring objectives, burn-rate thresholds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cli_pages import INFERWATCH
from inferwatch.generate import render, rule_files, write
from inferwatch.generate.config import from_dict
from promtool_cases import assert_promtool_passes


def tree(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


# --- the listing on stdout ------------------------------------------------------------------


def test_a_listing_whose_reader_left_is_no_failure(tmp_path: Path) -> None:
    """`inferwatch generate --out DIR | head -0`: the files are written, the reader left."""
    out = tmp_path / "out"
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first path is printed
    try:
        result = subprocess.run([*INFERWATCH, "generate", "--out", str(out)], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 0, result.stderr
    assert "Broken pipe" not in result.stderr and "Traceback" not in result.stderr
    assert tree(out) == {path: text.encode("utf-8") for path, text in render().items()}


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_listing_that_cannot_be_printed_does_not_blame_the_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with open("/dev/full", "w") as full:
        result = subprocess.run([*INFERWATCH, "generate", "--out", str(out), "--rules-only"],
                                stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "stdout" in result.stderr and "No space left on device" in result.stderr
    assert f"cannot write {out}:" not in result.stderr  # the files are fine
    rules = rule_files(render())
    assert tree(out) == {path: text.encode("utf-8") for path, text in rules.items()}


# --- the output directory -------------------------------------------------------------------


def test_a_dangling_symlink_as_out_is_named_as_such(tmp_path: Path) -> None:
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "missing" / "dir")
    result = subprocess.run([*INFERWATCH, "generate", "--out", str(link)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "symbolic link" in result.stderr and str(tmp_path / "missing" / "dir") in result.stderr
    assert not (tmp_path / "missing").exists()


def test_a_symlink_to_a_directory_and_a_relative_out_are_written_through(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    result = subprocess.run([*INFERWATCH, "generate", "--out", "link", "--rules-only"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"link/{path}" for path in rule_files(render())]
    assert (tmp_path / "link").is_symlink()
    assert tree(real) == {path: text.encode("utf-8") for path, text in rule_files(render()).items()}


# --- objectives and burn rates, judged by promtool -------------------------------------------


def _rules(tmp_path: Path, cfg_data: dict) -> list[Path]:
    """The rule files `inferwatch generate --rules-only` writes for `cfg_data`."""
    return write(tmp_path, from_dict(cfg_data), rules_only=True)


INFO = 'inferwatch_model_info{job="inferwatch-model", model="fraud", model_version="%s"%s}'


def test_a_shadow_declaring_a_laxer_objective_does_not_relax_the_primary(tmp_path: Path) -> None:
    """fraud v1 serves and declares a 50 ms p99; its shadow v2 declares 2 s while it is tried
    out. The serving version stays judged by its own 50 ms."""
    objective = ('inferwatch_model_objective{job="inferwatch-model", model="fraud", '
                 'model_version="%s", objective="%s"}')
    series = [
        {"series": INFO % ("v1", ', role="primary"'), "values": "1x30"},
        {"series": INFO % ("v2", ', role="shadow"'), "values": "1x30"},
        {"series": objective % ("v1", "latency.p99_seconds"), "values": "0.05x30"},
        {"series": objective % ("v2", "latency.p99_seconds"), "values": "2x30"},
        {"series": objective % ("v1", "slo.availability"), "values": "0.99x30"},
        {"series": objective % ("v2", "slo.availability"), "values": "0.9999x30"},
    ]
    checks = [
        {"expr": "model:inferwatch_objective:latency_p99_seconds", "eval_time": "10m",
         "exp_samples": [{"labels": 'model:inferwatch_objective:latency_p99_seconds'
                                    '{model="fraud"}', "value": 0.05}]},
        {"expr": "model:inferwatch_objective:slo_availability", "eval_time": "10m",
         "exp_samples": [{"labels": 'model:inferwatch_objective:slo_availability'
                                    '{model="fraud"}', "value": 0.99}]},
    ]
    assert_promtool_passes(tmp_path, series, exprs=checks,
                           rule_files=_rules(tmp_path, {"objectives": {"from_code": True}}))


def _requests(errors_per_minute: int) -> list[dict]:
    requests = 'inferwatch_requests_total{job="inferwatch-model", model="fraud", ' \
               'model_version="v1", outcome="%s"}'
    return [{"series": INFO % ("v1", ""), "values": "1x120"},
            {"series": requests % "ok", "values": f"0+{1000 - errors_per_minute}x120"},
            {"series": requests % "error", "values": f"0+{errors_per_minute}x120"}]


FAST = {"alertname": "InferwatchErrorBudgetBurnFast", "severity": "critical",
        "model": "fraud", "model_version": "v1"}


@pytest.mark.parametrize(("errors", "fires"), [(15, True), (13, False)])
def test_a_99_9_slo_pages_fast_at_14_4x_its_budget_and_not_below(tmp_path: Path, errors: int,
                                                                 fires: bool) -> None:
    """1.5% errors burn a 99.9% SLO's budget 15 times over: paged within the hour; 1.3% (13x)
    is left to the slow-burn alert."""
    assert_promtool_passes(tmp_path, _requests(errors), exprs=_firing_at_60m(fires),
                           rule_files=_rules(tmp_path, {}))


def _firing_at_60m(fires: bool) -> list[dict]:
    firing = f'ALERTS{{alertname="{FAST["alertname"]}", alertstate="firing"}}'
    labels = ", ".join(f'{key}="{value}"' for key, value in
                       {**FAST, "alertstate": "firing"}.items())
    return [{"expr": firing, "eval_time": "60m", "exp_samples": (
        [{"labels": f"ALERTS{{{labels}}}", "value": 1}] if fires else [])}]


def test_an_availability_declared_in_code_sets_the_burn_threshold(tmp_path: Path) -> None:
    """fraud declares 99% in code: 15x the config's 0.1% budget is far within its own 1%."""
    series = [*_requests(15),
              {"series": 'inferwatch_model_objective{job="inferwatch-model", model="fraud", '
                         'model_version="v1", objective="slo.availability"}',
               "values": "0.99x120"}]
    assert_promtool_passes(tmp_path, series, exprs=_firing_at_60m(False),
                           rule_files=_rules(tmp_path, {"objectives": {"from_code": True}}))
