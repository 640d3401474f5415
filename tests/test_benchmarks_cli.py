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
