"""`inferwatch generate`: a `--check` of an --out that cannot be read is status 2 and one line
naming it (docs/configuration.md), not a list of every file as stale; and a number tagged
`!!int` / `!!float` in quotes is held to the YAML 1.1 checks of the same number untagged."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.cli import main
from inferwatch.generate.config_yaml import Refused, parse_yaml


@pytest.mark.parametrize("make_out", [
    lambda root: root / "no-such-dir",
    lambda root: root / "missing" / "deeper",
])
def test_check_of_an_out_that_does_not_exist_is_status_2_naming_it(tmp_path: Path, capsys,
                                                                  make_out) -> None:
    out = make_out(tmp_path)
    assert main(["generate", "--check", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stale:" not in err and "Traceback" not in err
    assert err.startswith(f"inferwatch generate: cannot read {out}: ")
    assert "No such file or directory" in err
    assert not out.exists()


def test_check_of_an_out_under_a_file_is_status_2_naming_it(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = blocker / "sub"
    assert main(["generate", "--check", "--out", str(out), "--rules-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stale:" not in err
    assert err.startswith(f"inferwatch generate: cannot read {out}: ")


def test_check_of_an_empty_out_still_lists_the_stale_files(tmp_path: Path, capsys) -> None:
    # The directory is there and readable: its files are missing, which is what --check tells.
    assert main(["generate", "--check", "--out", str(tmp_path), "--rules-only"]) == 1
    err = capsys.readouterr().err
    assert err.count("stale: ") == err.count("\n") > 0


def test_check_of_a_generated_out_still_passes(tmp_path: Path, capsys) -> None:
    assert main(["generate", "--out", str(tmp_path), "--rules-only"]) == 0
    assert main(["generate", "--check", "--out", str(tmp_path), "--rules-only"]) == 0


# --- explicitly tagged numbers ------------------------------------------------------------------


def refusal(text: str) -> Refused | None:
    try:
        parse_yaml(text)
    except Refused as exc:
        return exc
    return None


@given(digits=st.text(alphabet="01234567_", min_size=1, max_size=6),
       sign=st.sampled_from(["", "-", "+"]), quote=st.sampled_from(['"', "'"]))
@settings(max_examples=200, deadline=None)
def test_a_tagged_int_is_refused_exactly_where_the_untagged_one_is(digits: str, sign: str,
                                                                    quote: str) -> None:
    written = f"{sign}0{digits}"
    plain = refusal(f"slo:\n  fast_burn: {{min_requests: {written}}}\n")
    tagged = refusal(f"slo:\n  fast_burn: {{min_requests: !!int {quote}{written}{quote}}}\n")
    assert (plain is None) == (tagged is None), (written, plain, tagged)
    if tagged is not None:
        assert tagged.key == "slo.fast_burn.min_requests"
        assert "octal" in tagged.problem and "line 2" in tagged.problem


@pytest.mark.parametrize("tag", ["!!int", "!!float"])
def test_a_tagged_base_60_number_is_refused(tag: str) -> None:
    error = refusal(f'latency:\n  p99_seconds: {tag} "1:30"\n')
    assert error is not None and error.key == "latency.p99_seconds"
    assert "base-60" in error.problem


@pytest.mark.parametrize("written", ['!!int "10"', '!!int "0"', '!!float "0.5"', '!!int "0x10"',
                                     '"010"', "'1:30'"])
def test_tagged_numbers_read_as_written_and_quoted_text_pass(written: str) -> None:
    assert refusal(f"accuracy:\n  threshold: {written}\n") is None


def test_the_cli_refuses_a_tagged_octal_count(tmp_path: Path, capsys) -> None:
    config = tmp_path / "inferwatch.yaml"
    config.write_text('slo:\n  fast_burn: {min_requests: !!int "010"}\n', encoding="utf-8")
    out = tmp_path / "out"
    assert main(["generate", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "slo.fast_burn.min_requests" in err
    assert "octal number 8" in err
    assert not out.exists()
