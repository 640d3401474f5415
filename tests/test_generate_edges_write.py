"""Writing the generated files: all of them or none, so a failed run never leaves Prometheus a
mix of old and new rule files (or a truncated one) to load."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from inferwatch.generate import cli, render, rule_files, write
from inferwatch.generate.config import from_dict


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes."""
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("rules_only", [False, True])
def test_a_blocked_directory_writes_nothing(tmp_path: Path, capsys, rules_only: bool) -> None:
    out = tmp_path / "out"
    out.mkdir()
    blocked = "alerts" if rules_only else "dashboards"
    (out / blocked).write_text("not a directory\n")
    status = run_cli("--out", str(out), *(["--rules-only"] if rules_only else []))
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out / blocked) in err, err
    assert tree(out) == {blocked: b"not a directory\n"}


def test_a_failed_regeneration_keeps_every_earlier_file(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    write(out)
    before = tree(out)
    # A directory where a rule file belongs: found only after other files would be written.
    blocked = out / "alerts" / "recording-rules.yml"
    blocked.unlink()
    blocked.mkdir()
    before = {path: content for path, content in before.items()
              if path != "alerts/recording-rules.yml"}
    changed = from_dict({"latency": {"p99_seconds": 0.25}})
    assert run_cli("--out", str(out), "--config", str(_config(tmp_path))) == 2
    assert str(blocked) in capsys.readouterr().err
    assert tree(out) == before  # nothing new, nothing left half-way, no temporary files
    assert render(changed) != render()


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "inferwatch.yaml"
    path.write_text("latency:\n  p99_seconds: 0.25\n")
    return path


@pytest.mark.parametrize("rules_only", [False, True])
def test_a_successful_run_leaves_exactly_the_generated_files(tmp_path: Path,
                                                             rules_only: bool) -> None:
    out = tmp_path / "out"
    written = write(out, rules_only=rules_only)
    files = rule_files(render()) if rules_only else render()
    assert sorted(str(path.relative_to(out)) for path in written) == sorted(files)
    assert tree(out) == {path: text.encode("utf-8") for path, text in files.items()}
    # Twice gives the same bytes, and still nothing else.
    write(out, rules_only=rules_only)
    assert tree(out) == {path: text.encode("utf-8") for path, text in files.items()}
