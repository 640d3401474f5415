"""Event log edges: a failing disk, the byte bound at its smallest, MultiIndex columns.

- A disk that refuses every write (full, or a file size limit) costs the events, counted,
  and nothing else: retries must not leave one empty file each behind, and writing resumes
  once space returns.
- ``max_bytes`` bounds everything on disk, also when an event may be as large as the
  whole log.
- A pandas DataFrame with MultiIndex columns (after ``groupby().agg()`` or
  ``pd.concat(keys=...)``) names its fields by tuples: ``("user", "ssn")`` is the field
  ``inputs.user.ssn`` and must be redacted or hashed as such.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.events.jsonl import event_files
from inferwatch.events.log import EventLog
from inferwatch.events.redact import Redaction, hash_value
from inferwatch.events.sinks import Encoder, Query, query_events

SECRET = b"0123456789abcdef-secret"

# A child process whose files may not grow past 20 bytes: every record is refused (EFBIG,
# as a full disk refuses with ENOSPC), until the limit is lifted again.
_FULL_DISK_CHILD = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    import inferwatch.events.log as events_log
    events_log.BACKOFF_SECONDS = (0.0,)  # retry at once: each batch reopens the sink
    directory = Path(sys.argv[1])
    log = events_log.EventLog(directory / "events.jsonl")
    resource.setrlimit(resource.RLIMIT_FSIZE, (20, resource.RLIM_INFINITY))
    for i in range(25):
        log.emit({"ts": 1.0, "model": "m", "request_id": f"lost-{i}", "inputs": "x" * 50})
        assert log.flush(10.0)
    during = sorted(p.name for p in directory.iterdir() if p.name.startswith("events."))
    resource.setrlimit(resource.RLIMIT_FSIZE,
                      (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    log.emit({"ts": 2.0, "model": "m", "request_id": "back"})
    assert log.flush(10.0)
    print(json.dumps({"during": during, "dropped": log.dropped_counts()}))
    log.close()
""")


def test_a_full_disk_drops_counted_events_without_leaving_empty_files(tmp_path):
    result = subprocess.run([sys.executable, "-c", _FULL_DISK_CHILD, str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["dropped"]["write_error"] == 25
    # The configured link, and at most the one file the failing write was made in.
    files = [name for name in report["during"] if name != "events.jsonl"]
    assert len(files) <= 1, files
    stored = [json.loads(line) for file in event_files(tmp_path / "events.jsonl")
              for line in file.read_bytes().splitlines()]
    assert [e["request_id"] for e in stored] == ["back"]
    empty = [p.name for p in event_files(tmp_path / "events.jsonl") if p.stat().st_size == 0]
    assert empty == []


def test_max_bytes_holds_when_an_event_may_be_as_large_as_the_log(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, max_bytes=300, rotate_bytes=300, max_event_bytes=300)
    # Every line length up to and past the bound, the full-size one among them.
    for size in range(260, 300):
        event_log.emit({"ts": 1.0, "pad": "x" * size})
        assert event_log.flush(10.0)
        assert sum(p.stat().st_size for p in event_files(path)) <= 300
        for file in event_files(path):
            for line in file.read_bytes().splitlines():
                assert json.loads(line)["ts"] == 1.0


_secrets = st.text(st.characters(min_codepoint=0x30, max_codepoint=0x7A), min_size=12,
                   max_size=24).map(lambda s: "S3cr3t-" + s)


@settings(max_examples=40, deadline=None)
@given(ssn=_secrets, email=_secrets, rows=st.integers(min_value=1, max_value=4),
       as_series=st.booleans())
def test_multiindex_columns_are_redacted_and_hashed_by_their_path(ssn, email, rows,
                                                                    as_series):
    columns = pd.MultiIndex.from_tuples([("user", "ssn"), ("user", "email"),
                                         ("user", "age")])
    frame = pd.DataFrame([[ssn, email, 41]] * rows, columns=columns)
    inputs = frame.iloc[0] if as_series else frame
    encoder = Encoder(Redaction(["inputs.user.ssn"], ["inputs.user.email"], SECRET))
    line = encoder.encode({"ts": 1.0, "inputs": inputs}).line
    assert ssn.encode() not in line
    assert email.encode() not in line
    stored = json.loads(line)["inputs"]
    records = [stored] if as_series else stored
    assert len(records) == (1 if as_series else rows)
    for record in records:
        assert record == {"user.email": hash_value(SECRET, email), "user.age": 41}


def test_multiindex_columns_are_redacted_through_the_event_log(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, redact=["inputs.*.ssn"])
    frame = pd.DataFrame([["123-45-6789", 3]],
                         columns=pd.MultiIndex.from_tuples([("user", "ssn"), ("user", "n")]))
    event_log.emit({"ts": 1.0, "request_id": "mi", "inputs": frame})
    assert event_log.flush(10.0)
    data = b"".join(p.read_bytes() for p in event_files(path))
    assert b"123-45-6789" not in data
    (event,) = [json.loads(line) for line in data.splitlines()]
    assert event["inputs"] == [{"user.n": 3}]


# Values as a model server holds them: numpy scalars, datetimes, bytes, UUIDs, containers
# of those. hash_value() on the value as held must find the event.
_held_values = st.one_of(
    st.integers(min_value=-2**31, max_value=2**31 - 1).map(np.int32),
    st.floats(allow_nan=False, width=32).map(np.float32),
    st.datetimes(min_value=datetime.datetime(1990, 1, 1),
                 max_value=datetime.datetime(2090, 1, 1)),
    st.text(st.characters(min_codepoint=0x61, max_codepoint=0x7A), min_size=1,
            max_size=20).map(str.encode),
    st.uuids(),
    st.tuples(st.integers(0, 9).map(np.int64), st.text(max_size=5)),
    st.dictionaries(st.sampled_from(["lat", "lon"]), st.floats(-90, 90).map(np.float32),
                    min_size=1),
)


@settings(max_examples=60, deadline=None)
@given(value=_held_values)
def test_hash_value_of_a_held_value_finds_its_stored_hash(value):
    encoder = Encoder(Redaction([], ["inputs.customer"], SECRET))
    line = encoder.encode({"ts": 1.0, "inputs": {"customer": value}}).line
    assert json.loads(line)["inputs"]["customer"] == hash_value(SECRET, value)


_HASH_CHILD = textwrap.dedent("""
    import datetime, sys, numpy as np
    from inferwatch.events import hash_value
    print(hash_value(sys.argv[1], {"id": np.int32(17), "at": datetime.datetime(2024, 5, 1)}))
""")


def test_hashed_fields_match_hash_value_in_another_process(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, hash_fields=["inputs.customer"], secret=SECRET)
    customer = {"id": np.int32(17), "at": datetime.datetime(2024, 5, 1)}
    event_log.emit({"ts": 1.0, "request_id": "h", "inputs": {"customer": customer}})
    assert event_log.flush(10.0)
    (event,) = [json.loads(line) for p in event_files(path)
                for line in p.read_bytes().splitlines()]
    result = subprocess.run([sys.executable, "-c", _HASH_CHILD, SECRET.decode()],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert event["inputs"]["customer"] == result.stdout.strip()


@pytest.mark.parametrize("option", ["redact", "hash_fields"])
def test_redacting_the_time_is_a_configuration_error(tmp_path, option):
    with pytest.raises(ValueError, match=rf"{option}: 'ts' cannot be redacted"):
        EventLog(tmp_path / "events.jsonl", secret=SECRET, **{option: ["ts"]})


@pytest.mark.parametrize("suffix", ["jsonl", "db"])
@pytest.mark.parametrize("option", ["redact", "hash_fields"])
def test_a_top_level_wildcard_keeps_the_time_readers_filter_by(tmp_path, make_log, suffix,
                                                                 option):
    path = tmp_path / f"events.{suffix}"
    event_log = make_log(path, secret=SECRET, **{option: ["*"]})
    event_log.emit({"ts": 1_700_000_000.5, "model": "fraud", "inputs": {"ssn": "1"}})
    assert event_log.flush(10.0)
    (line,) = query_events(path, Query(since=1_700_000_000.0))
    event = json.loads(line)
    assert event["ts"] == 1_700_000_000.5
    assert b'"1"' not in line


@pytest.mark.parametrize("suffix", ["jsonl", "db"])
def test_a_numeric_request_id_is_found_by_its_text_in_either_format(tmp_path, make_log,
                                                                      suffix):
    path = tmp_path / f"events.{suffix}"
    event_log = make_log(path)
    for request_id in (17, "170", 4_000_000_017, "17x"):
        event_log.emit({"ts": 1.0, "model": "fraud", "request_id": request_id})
    assert event_log.flush(10.0)
    for wanted in ("17", "4000000017"):
        found = [json.loads(line)["request_id"]
                 for line in query_events(path, Query(request_id=wanted, model="fraud"))]
        assert [str(r) for r in found] == [wanted]
