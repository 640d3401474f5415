"""`inferwatch events` flags whose value starts with "-": a request id or model name such as
``-V1StGXR8_Z5jdHi6B`` (nanoid and base64url ids start with "-" about 1 in 32) is the
flag's value, given as a separate word as with ``=``; so is a count such as ``-1e3``, which
is then refused by name rather than as "expected one argument"."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.cli import main
from inferwatch.events import EventLog

T0 = 1_700_000_000.0
# The alphabet of nanoid and base64url ids.
ID_ALPHABET = string.ascii_letters + string.digits + "-_"
# Words that stay what they are after a flag: the query's own flags (a missing value, as
# after --since) and "--", which ends the flags.
QUERY_WORDS = {"-h", "--help", "--request-id", "--model", "--since", "--until", "--errors",
               "--limit", "--format", "--"}


def run_query(capsys: pytest.CaptureFixture[str], path: Path, *flags: str
              ) -> tuple[int, list[str], str]:
    code = main(["events", "query", str(path), *flags])
    out, err = capsys.readouterr()
    return code, [json.loads(line)["request_id"] for line in out.splitlines()], err


@pytest.fixture(params=["events.jsonl", "events.db"])
def dashed_log(request, tmp_path: Path) -> Path:
    path = tmp_path / request.param
    event_log = EventLog(path)
    event_log.emit({"ts": T0, "model": "-fraud", "request_id": "-V1StGXR8_Z5jdHi6B"})
    event_log.emit({"ts": T0 + 1, "model": "fraud", "request_id": "V1StGXR8_Z5jdHi6B"})
    event_log.emit({"ts": T0 + 2, "model": "--churn", "request_id": "--r=2"})
    assert event_log.flush(30)
    event_log.close()
    return path


@pytest.mark.parametrize(("flags", "ids"), [
    (["--request-id", "-V1StGXR8_Z5jdHi6B"], ["-V1StGXR8_Z5jdHi6B"]),
    (["--model", "-fraud"], ["-V1StGXR8_Z5jdHi6B"]),
    (["--model", "--churn"], ["--r=2"]),
    (["--request-id", "--r=2", "--model", "--churn"], ["--r=2"]),
    (["--model", "-fraud", "--since", "-1e3", "--limit", "5"], ["-V1StGXR8_Z5jdHi6B"]),
])
def test_a_value_starting_with_a_dash_is_the_flags_value(dashed_log, capsys, flags, ids):
    code, found, err = run_query(capsys, dashed_log, *flags)
    assert (code, err) == (0, "")
    assert found == ids


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request_id=st.text(alphabet=ID_ALPHABET, min_size=1, max_size=21).map(
    lambda text: "-" + text).filter(lambda word: word not in QUERY_WORDS))
def test_a_dashed_id_as_a_word_means_what_it_means_with_equals(tmp_path, capsys, request_id):
    path = tmp_path / "events.jsonl"
    path.unlink(missing_ok=True)
    path.write_text(json.dumps({"ts": T0, "model": "m", "request_id": request_id}) + "\n")
    separate = run_query(capsys, path, "--request-id", request_id)
    joined = run_query(capsys, path, f"--request-id={request_id}")
    assert separate == joined == (0, [request_id], "")


@pytest.mark.parametrize(("argv", "message"), [
    (["query", "--request-id", "--errors"], "--request-id: expected one argument"),
    (["query", "--model", "-h"], "--model: expected one argument"),
    (["query", "--limit", "-1e3"], "'-1e3' is not a whole number"),
    (["query", "--limit", "-5"], "-5 is negative"),
    (["query", "--format", "-x"], "invalid choice: '-x'"),
    (["tail", "--lines", "-1e3"], "'-1e3' is not a whole number"),
    (["tail", "-n", "-1e3"], "'-1e3' is not a whole number"),
    (["tail", "--format", "-x"], "invalid choice: '-x'"),
])
def test_a_dashed_value_that_is_no_value_is_refused_by_name(tmp_path, capsys, argv, message):
    path = tmp_path / "events.jsonl"
    path.write_text("")
    action, *flags = argv
    with pytest.raises(SystemExit) as exit_info:
        main(["events", action, str(path), *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
