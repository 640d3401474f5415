"""Flags given a blank value (`--target "$LABEL"` with the variable unset) are refused naming
the flag, instead of being dropped: `inferwatch profile`'s column flags and `inferwatch
events query`'s filters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.cli import main
from inferwatch.quality.reference import Reference

FIXTURE_OK = settings(max_examples=40, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])
BLANKS = st.text(alphabet=" \t", max_size=3)


def write_training(folder: Path) -> Path:
    data = folder / "train.csv"
    rows = [f"{i / 10},{i % 4},{'xyz'[i % 3]},{i % 2},{(i // 2) % 2}" for i in range(60)]
    data.write_text("a,b,c,label,pred\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return data


def profile(folder: Path, *flags: str) -> int:
    return main(["profile", str(write_training(folder)), "-o", str(folder / "reference.json"),
                 *flags])


def assert_refused(folder: Path, capsys: pytest.CaptureFixture[str], flag: str,
                   status: int) -> str:
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("inferwatch profile: error: ") and flag in err
    assert not (folder / "reference.json").exists()
    return err


@pytest.mark.parametrize(("flags", "flag"), [
    (["--predictions-column", "pred", "--target", ""], "--target"),
    (["--predictions-column", "pred", "--target", "  "], "--target"),
    (["--predictions-column", ""], "--predictions-column"),
    (["--predictions-column", "pred", "--predictions-column", " "], "--predictions-column"),
    (["--ignore", ""], "--ignore"),
    (["--categorical", " "], "--categorical"),
])
def test_a_blank_column_flag_is_refused_naming_the_flag(tmp_path: Path, capsys, flags: list[str],
                                                       flag: str) -> None:
    err = assert_refused(tmp_path, capsys, flag, profile(tmp_path, *flags))
    assert "empty" in err


@pytest.mark.parametrize(("flags", "flag"), [
    (["--ignore", "a,,b"], "--ignore"),
    (["--ignore", "a,"], "--ignore"),
    (["--categorical", ",c"], "--categorical"),
    (["--predictions-column", "pred, ,label"], "--predictions-column"),
    (["--predictions-column", "pred", "--target", "label,"], "--target"),
])
def test_a_blank_name_between_commas_is_refused_naming_the_flag(tmp_path: Path, capsys,
                                                               flags: list[str],
                                                               flag: str) -> None:
    assert_refused(tmp_path, capsys, flag, profile(tmp_path, *flags))


@given(blank=BLANKS, flag=st.sampled_from(["--ignore", "--categorical", "--predictions-column"]),
       position=st.integers(0, 2))
@FIXTURE_OK
def test_any_blank_item_of_a_column_list_is_refused(tmp_path: Path, capsys, blank: str,
                                                    flag: str, position: int) -> None:
    names = ["a", "b"]
    names.insert(position, blank)
    status = profile(tmp_path, flag, ",".join(names))
    assert_refused(tmp_path, capsys, flag, status)


def test_the_flags_still_name_the_columns_they_meant(tmp_path: Path, capsys) -> None:
    assert profile(tmp_path, "--predictions-column", "pred", "--target", " label ",
                   "--ignore", "b, c", "--categorical", "a") == 0
    reference = Reference.load(tmp_path / "reference.json")
    assert set(reference.features) == {"a"} and set(reference.outputs) == {"pred"}
    assert reference.validation is not None


def test_a_column_whose_name_ends_in_a_comma_is_still_named_whole(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text('"a,",b\n' + "".join(f"{i},{i % 3}\n" for i in range(30)), encoding="utf-8")
    out = tmp_path / "reference.json"
    assert main(["profile", str(data), "-o", str(out), "--ignore", "a,"]) == 0
    assert set(Reference.load(out).features) == {"b"}


# --- events query ---------------------------------------------------------------------------


def write_events(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as log:
        for i in range(5):
            log.write(json.dumps({"ts": 1_700_000_000 + i, "request_id": f"r-{i}",
                                  "model": "fraud", "model_version": "1"}) + "\n")
    return path


@pytest.mark.parametrize("flag", ["--model", "--request-id"])
@pytest.mark.parametrize("value", ["", " ", "\t"])
def test_a_blank_events_filter_is_refused_naming_the_flag(tmp_path: Path, capsys, flag: str,
                                                         value: str) -> None:
    log = write_events(tmp_path / "events.jsonl")
    assert main(["events", "query", str(log), flag, value]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and flag in captured.err and "empty" in captured.err


def test_a_given_events_filter_still_matches(tmp_path: Path, capsys) -> None:
    log = write_events(tmp_path / "events.jsonl")
    assert main(["events", "query", str(log), "--model", "fraud", "--request-id", "r-3"]) == 0
    assert [json.loads(line)["request_id"] for line in capsys.readouterr().out.splitlines()] \
        == ["r-3"]
