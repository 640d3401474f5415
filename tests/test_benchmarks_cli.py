"""`python -m benchmarks NAME`: a name that is not a benchmark is an error, not an empty run."""

from __future__ import annotations

import pytest
from benchmarks.__main__ import main


def test_an_unknown_benchmark_name_is_an_error_naming_it(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["baselines"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no benchmark module 'baselines'" in err and "bench_baselines" in err


def test_a_run_ends_with_every_row_whose_target_was_not_met(
        capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from benchmarks.common import Row

    def table(slow: bool) -> types.ModuleType:
        module = types.ModuleType("bench")
        module.run = lambda quick: [  # type: ignore[attr-defined]
            Row("  of which encode", "2 us", "4 us", 0.5, "(decomposition)", True),
            Row("scrape", "9 ms" if slow else "1 ms", "10 ms", 0.9 if slow else 0.1,
                "<= 0.3x", not slow)]
        return module

    monkeypatch.setitem(sys.modules, "benchmarks.bench_slow", table(slow=True))
    monkeypatch.setitem(sys.modules, "benchmarks.bench_fast", table(slow=False))
    assert main(["bench_fast", "bench_slow"]) == 0
    out = capsys.readouterr().out
    summary = out[out.rindex("\n## "):]
    assert summary.splitlines()[1:] == ["## Targets not met: 1 of 4 rows", "",
                                        "- bench_slow: scrape (0.9; target <= 0.3x)"]
    assert main(["bench_fast"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("## Every target met (2 rows)")
