"""Reference profiles and Pushgateway helpers as users meet them: shapes of columns, nested
cells deep in a file, and a batch job stopped by its operator while the gateway is down."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import free_port
from inferwatch.core.registry import Registry
from inferwatch.quality.category_keys import is_missing
from inferwatch.quality.profile_cli import ProfileError, _refuse_nested
from inferwatch.quality.profiling import profile_column
from inferwatch.quality.reference import Reference, ReferenceError
from test_pushgateway import gateway  # noqa: F401  (the real Pushgateway fixture)

# --- a job stopped by its operator pushes once, promptly -------------------------------------

# A scoring job under push.on_exit with a retry budget of minutes: retries=5 waits 10+20+30+
# 30+30 s between attempts, and each attempt may take `timeout` (30 s) on a silent gateway.
JOB = textwrap.dedent("""
    import faulthandler, signal, sys, threading
    signal.signal(signal.SIGINT, signal.default_int_handler)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # where a stuck stop is
    if sys.argv[2] == "sigterm-handler":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import inferwatch
    score = inferwatch.instrument(lambda rows: [0.5 for _ in rows], name="churn", version="3")
    with inferwatch.push.on_exit(sys.argv[1], "nightly", timeout=30, retries=5,
                                 retry_delay=10):
        score([[1.0]])
        print("scoring", flush=True)
        threading.Event().wait()
""")
FULL_BUDGET_S = 60  # the retries alone, on a gateway that refuses at once, take 120 s
# The stop takes about 2 s (the one attempt's timeout). The bound is the budget's half, not
# a few seconds: the test is about the retries skipped, and the messages say how many
# attempts were made; a loaded machine (the suite's other workers starting servers) must
# not fail it.
PROMPT_S = FULL_BUDGET_S / 2


def run_job_and_stop(address: str, how: str = "ctrl-c") -> tuple[float, int, str]:
    """Start the job, stop it as its operator would; (seconds to exit, status, stderr)."""
    process = subprocess.Popen([sys.executable, "-c", JOB, address, how],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "scoring\n"
        process.send_signal(signal.SIGTERM if how == "sigterm-handler" else signal.SIGINT)
        start = time.monotonic()
        try:
            _, err = process.communicate(timeout=PROMPT_S)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGUSR1)  # its threads' stacks, to stderr
            time.sleep(1)
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"the stopped job was still running after {PROMPT_S:g} s (its retry"
                        f" budget is over {FULL_BUDGET_S} s); its stderr:\n{err}")
        return time.monotonic() - start, process.returncode, err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def silent_gateway() -> Iterator[str]:
    """A gateway that takes connections and never answers (a hung host, a blackholing
    proxy): each attempt lasts its whole timeout."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("down", ["refusing", "silent"])
def test_ctrl_c_exits_promptly_when_the_gateway_is_down(down, silent_gateway):
    address = silent_gateway if down == "silent" else f"127.0.0.1:{free_port()}"
    took, status, err = run_job_and_stop(address)
    assert took < PROMPT_S
    assert "KeyboardInterrupt" in err  # the job's own exception, unchanged
    assert status != 0
    assert "tried once, as the job was stopped" in err  # the lost push is still logged
    assert "attempts)" not in err  # one attempt, no retries


def test_a_sigterm_handler_exiting_143_is_a_stop_too(silent_gateway):
    took, status, _ = run_job_and_stop(silent_gateway, "sigterm-handler")
    assert took < PROMPT_S
    assert status == 143


@pytest.mark.integration
def test_ctrl_c_still_pushes_the_run_once_to_a_gateway_that_is_up(gateway):  # noqa: F811
    took, _, err = run_job_and_stop(gateway.address)
    assert took < PROMPT_S
    assert "could not push" not in err
    assert gateway.value("inferwatch_requests_total", job="nightly", model="churn",
                         outcome="ok") == 1
    # The call Ctrl-C stopped was cancelled, not failed by the model.
    assert gateway.value("inferwatch_requests_total", job="nightly", model="churn",
                         outcome="cancelled") == 1
    assert gateway.value("inferwatch_errors_total", job="nightly", model="churn",
                         error_type="KeyboardInterrupt") is None


def test_a_cancelled_async_job_pushes_once(caplog):
    # Ctrl-C under asyncio.run cancels the main task: the job sees CancelledError.
    registry = Registry()
    score = inferwatch.instrument(lambda rows: 0.5, name="churn", version="3",
                                  registry=registry)
    started = asyncio.Event()

    @inferwatch.push.on_exit(f"127.0.0.1:{free_port()}", "nightly", registry=registry,
                             timeout=30, retries=3, retry_delay=10)  # 10+20+30 s of retries
    async def job() -> None:
        score([1.0])
        started.set()
        await asyncio.Event().wait()

    async def main() -> float:
        task = asyncio.create_task(job())
        await started.wait()
        start = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - start

    assert asyncio.run(main()) < PROMPT_S
    assert "tried once, as the job was stopped" in caplog.text
    assert "attempts)" not in caplog.text


# --- nested cells anywhere in a column ------------------------------------------------------

cells = st.one_of(st.none(), st.text(max_size=5), st.floats(allow_nan=True))
nested_cells = st.one_of(st.lists(st.floats(), max_size=3), st.dictionaries(
    st.text(max_size=3), st.integers(), max_size=2), st.just(np.zeros(2)))


@settings(max_examples=60, deadline=None)
@given(before=st.lists(cells, min_size=1, max_size=30), nested=nested_cells,
       after=st.lists(st.one_of(cells, nested_cells), max_size=10))
def test_profile_refuses_a_column_whose_later_rows_are_nested(before, nested, after):
    column = np.empty(len(before) + 1 + len(after), dtype=object)
    for i, value in enumerate([*before, nested, *after]):
        column[i] = value
    with pytest.raises(ProfileError) as raised:
        _refuse_nested("train.parquet", "tags", column)
    message = str(raised.value)
    assert "column 'tags' holds" in message and "--ignore tags" in message
    if any(not is_missing(v) for v in before):
        assert f"(data row {len(before) + 1} holds one)" in message
    with pytest.raises(ReferenceError, match=rf"column 'tags' holds .* \(row {len(before)} is"):
        Reference.from_data({"tags": column})


def test_profile_keeps_a_column_of_plain_values():
    _refuse_nested("train.parquet", "city", np.array(["Oslo", None, 1.5], dtype=object))
    _refuse_nested("train.parquet", "city", np.array([], dtype=object))


# --- from_data's arguments and shapes -------------------------------------------------------

def test_a_2d_array_passed_as_one_column_is_refused_naming_it():
    with pytest.raises(ReferenceError, match=r"feature 'emb': .*shape \(10, 2\)"):
        profile_column("emb", np.arange(20.0).reshape(10, 2))
    assert profile_column("x", np.arange(10.0).reshape(10, 1)).count == 10


@given(bins=st.integers(1, 50), max_categories=st.integers(1, 50),
       kind=st.sampled_from([np.int64, np.int32, np.uint16]))
@settings(max_examples=30, deadline=None)
def test_numpy_integers_are_whole_numbers_of_bins(bins, max_categories, kind):
    data = {"amount": np.arange(200.0), "city": [f"c{i % 60}" for i in range(200)]}
    ref = Reference.from_data(data, bins=kind(bins), max_categories=kind(max_categories))
    assert ref == Reference.from_data(data, bins=bins, max_categories=max_categories)
    assert ref.to_json() == Reference.from_data(data, bins=bins,
                                                max_categories=max_categories).to_json()


@pytest.mark.parametrize("bad", [True, 2.5, np.float64(3.0), 0, np.int64(-1), "10"])
def test_bins_that_are_not_whole_numbers_are_still_refused(bad):
    with pytest.raises(ReferenceError, match="bins must be a positive integer"):
        Reference.from_data({"a": [1.0, 2.0]}, bins=bad)


@pytest.mark.parametrize("empty", [[], np.empty((0, 3)), {"a": [], "b": []},
                                   pd.DataFrame({"a": pd.Series([], dtype=float)})])
def test_data_with_no_rows_is_refused_not_profiled_empty(empty):
    # A filter that kept nothing: the reference would check nothing, silently.
    with pytest.raises(ReferenceError, match="no rows"):
        Reference.from_data(empty)


def test_a_predictions_only_reference_counts_its_rows():
    ref = Reference.from_data({}, predictions=np.linspace(0, 1, 50))
    assert ref.rows == 50 and ref.outputs["value"].count == 50


def test_saves_of_one_path_at_once_never_fail_and_leave_one_whole_file(tmp_path):
    path = tmp_path / "reference.json"
    refs = [Reference.from_data({"a": np.arange(float(n), 300.0)}) for n in range(8)]
    errors: list[BaseException] = []
    for _ in range(15):
        barrier = threading.Barrier(len(refs))

        def save(ref: Reference, barrier: threading.Barrier) -> None:
            barrier.wait(timeout=30)
            try:
                ref.save(path)
            except BaseException as exc:  # collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=save, args=(ref, barrier)) for ref in refs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        assert Reference.load(path) in refs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reference.json"]


def test_save_leaves_a_users_file_named_like_the_old_temporary_alone(tmp_path):
    notes = tmp_path / "reference.json.tmp"
    notes.write_text("my notes\n")
    Reference.from_data({"a": [1.0, 2.0]}).save(tmp_path / "reference.json")
    assert notes.read_text() == "my notes\n"
