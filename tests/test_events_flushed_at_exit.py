"""The events of calls already made reach the log when flush() returns True, when close()
returns and when the process exits, without waiting for the background drain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from event_log_helpers import THREADS_AT_EXIT, stored_events
from inferwatch.core.registry import Registry
from inferwatch.events import EventLog

CALLS = 10


def _request_ids(directory: Path) -> list[str]:
    ids = []
    for path in sorted(directory.glob("events.*.jsonl")):
        ids.extend(json.loads(line)["request_id"] for line in path.read_text().splitlines())
    return ids


# A job that instruments a model with an event log, calls it and leaves as `how` says. Its
# registry never drains in the background (an hour between passes): only flush(), close()
# or the exit can fold the calls, whatever the machine's speed.
_JOB = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path

    import inferwatch
    from inferwatch.core.registry import Registry
    from inferwatch.events import EventLog

    directory, how = Path(sys.argv[1]), sys.argv[2]

    def written():
        return sum(len(p.read_text().splitlines()) for p in directory.glob("events.*.jsonl"))

    log = EventLog(directory / "events.jsonl")
    registry = Registry(drain_interval=3600)
    model = inferwatch.instrument(lambda x: x * 2.0, name="fraud", version="1", events=log,
                                  registry=registry)

    def calls(prefix):
        for i in range(%(calls)d):
            model(float(i), request_id=f"{prefix}-{i}")

    if how == "fork":
        child = os.fork()
        if child == 0:
            calls("child")
            sys.exit(0)  # a normal exit of the child: its exit hooks run
        os.waitpid(child, 0)
    calls("r")
    if how == "flush":
        flushed = log.flush(60)
        print(json.dumps({"flushed": flushed, "written": written()}), flush=True)
    elif how == "close":
        log.close(60)
        print(json.dumps({"written": written(), "dropped": log.dropped_counts()}), flush=True)
    elif how == "sys_exit":
        sys.exit(3)
    elif how == "raise":
        raise RuntimeError("the job failed after its calls")
""") % {"calls": CALLS}


def _run(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, timeout=120, env=env)


@pytest.mark.parametrize(("how", "returncode"), [("end", 0), ("sys_exit", 3), ("raise", 1)])
def test_a_job_that_exits_without_flushing_writes_every_event(tmp_path, how, returncode):
    done = _run(_JOB, str(tmp_path), how)
    assert done.returncode == returncode, done.stderr
    assert sorted(_request_ids(tmp_path)) == sorted(f"r-{i}" for i in range(CALLS))


def test_flush_returns_true_once_the_events_of_every_call_are_written(tmp_path):
    done = _run(_JOB, str(tmp_path), "flush")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"flushed": True, "written": CALLS}
    assert len(_request_ids(tmp_path)) == CALLS  # and the exit writes none twice


def test_close_writes_the_events_of_every_call_instead_of_dropping_them(tmp_path):
    done = _run(_JOB, str(tmp_path), "close")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["written"] == CALLS
    assert report["dropped"]["closed"] == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_that_exits_writes_its_own_events(tmp_path):
    done = _run(_JOB, str(tmp_path), "fork")
    assert done.returncode == 0, done.stderr
    ids = _request_ids(tmp_path)
    assert sorted(ids) == sorted([f"child-{i}" for i in range(CALLS)] +
                                 [f"r-{i}" for i in range(CALLS)])
    assert len(list(tmp_path.glob("events.*.jsonl"))) == 2  # a file per process


def test_a_job_on_the_default_registry_writes_every_event_at_exit(tmp_path):
    script = textwrap.dedent("""
        import sys
        import inferwatch
        from inferwatch.events import EventLog

        log = EventLog(sys.argv[1] + "/events.jsonl")
        model = inferwatch.instrument(lambda x: x * 2.0, name="fraud", version="1",
                                      events=log)
        for i in range(10):
            model(float(i), request_id=f"r-{i}")
    """)
    env = {k: v for k, v in os.environ.items() if k != "INFERWATCH_MULTIPROC_DIR"}
    done = _run(script, str(tmp_path), env=env)
    assert done.returncode == 0, done.stderr
    assert sorted(_request_ids(tmp_path)) == sorted(f"r-{i}" for i in range(10))


def test_the_multi_worker_publish_at_exit_counts_the_calls_whose_events_it_wrote(tmp_path):
    from inferwatch.multiproc.store import SnapshotDirectory

    shared = tmp_path / "multiproc"
    shared.mkdir()
    events = tmp_path / "events"
    events.mkdir()
    # The registry (and its publisher's exit hook) before the event log: the log's exit
    # hook, registered last, runs first and drains before the last publish.
    script = textwrap.dedent("""
        import sys
        import inferwatch
        from inferwatch.core.registry import default_registry

        registry = default_registry()
        from inferwatch.events import EventLog

        log = EventLog(sys.argv[1] + "/events.jsonl")
        model = inferwatch.instrument(lambda x: x * 2.0, name="fraud", version="1",
                                      events=log)
        for i in range(10):
            model(float(i), request_id=f"r-{i}")
    """)
    done = _run(script, str(events), env={**os.environ, "INFERWATCH_MULTIPROC_DIR": str(shared)})
    assert done.returncode == 0, done.stderr
    assert len(_request_ids(events)) == 10
    view = SnapshotDirectory(str(shared)).read_view(now=0.0)
    [state] = view.states
    assert state.counters["inferwatch_requests_total"][("ok",)] == 10.0


@pytest.mark.parametrize("at_exit", THREADS_AT_EXIT)
def test_a_drain_stuck_on_a_lock_neither_hangs_flush_nor_the_exit(tmp_path, at_exit):
    # A thread that holds the monitor's lock for good: the drain cannot fold the calls, so
    # flush() says so (False) within its timeout, and the exit still comes.
    script = textwrap.dedent("""
        import json, sys, threading, time
        import inferwatch
        from inferwatch.core.registry import Registry
        from inferwatch.events import EventLog

        log = EventLog(sys.argv[1] + "/events.jsonl")
        registry = Registry(drain_interval=3600)
        model = inferwatch.instrument(lambda x: x * 2.0, name="fraud", version="1",
                                      events=log, registry=registry)
        for i in range(10):
            model(float(i), request_id=f"r-{i}")
        monitor = inferwatch.monitor("fraud", "1", registry=registry)
        held = threading.Event()

        def hold_for_good():
            monitor._lock.acquire()
            held.set()
            threading.Event().wait()

        threading.Thread(target=hold_for_good, daemon=True).start()
        assert held.wait(60)
        started = time.monotonic()
        flushed = log.flush(0.5)
        print(json.dumps({"flushed": flushed, "took": time.monotonic() - started}),
              flush=True)
    """) + THREADS_AT_EXIT[at_exit]
    done = _run(script, str(tmp_path))  # the run's timeout is the bound on the exit
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["flushed"] is False
    assert report["took"] < 60


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=st.lists(st.one_of(st.floats(), st.integers(), st.text(max_size=30),
                                 st.none(), st.lists(st.floats(), max_size=5)), max_size=40))
def test_flush_writes_one_event_per_call_whatever_the_inputs(inputs):
    directory = Path(tempfile.mkdtemp())
    log = EventLog(directory / "events.jsonl")
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda x: x, name="echo", version="1", events=log,
                                      registry=registry)
        for i, value in enumerate(inputs):
            model(value, request_id=f"r-{i}")
        assert log.flush(60)
        assert sorted(_request_ids(directory)) == sorted(f"r-{i}" for i in range(len(inputs)))
    finally:
        registry.close()
        log.close()


@pytest.mark.parametrize("at_exit", THREADS_AT_EXIT)
def test_a_model_first_used_in_an_exit_hook_never_raises_and_its_events_are_written(
        tmp_path, at_exit):
    """On Python 3.12 no thread can be started at exit: instrument() and monitor() raised
    RuntimeError into the application's exit hook, starting the drain thread."""
    script = textwrap.dedent("""
        import atexit, sys
        import inferwatch
        import inferwatch.events  # its exit flush is registered as it is imported

        def exit_hook():
            model = inferwatch.instrument(lambda x: x * 2.0, name="late", version="1",
                                          events=sys.argv[1] + "/events.jsonl")
            model(1.0, request_id="r-1")
            inferwatch.monitor("late", "1").record_outcome("r-1", 2.0)
            print("exit hook done", flush=True)

        atexit.register(exit_hook)
    """) + THREADS_AT_EXIT[at_exit]
    done = _run(script, str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "exit hook done\n"
    assert "Traceback" not in done.stderr, done.stderr
    events = stored_events(tmp_path / "events.jsonl")
    assert [(e["request_id"], "prediction" in e, e.get("outcome")) for e in events] == [
        ("r-1", True, None), ("r-1", False, 2.0)]


# Where the application's exit hook stands against inferwatch's own: atexit runs the hook
# registered last first, so a hook registered after `import inferwatch` runs before
# inferwatch's flush, and one registered before it runs after.
_EXIT_HOOK_ORDERS = {
    # The hook opens the event log: `inferwatch.events` is first imported during the exit,
    # too late for the exit to run the flush it registers.
    "after import inferwatch": "import inferwatch\natexit.register(exit_hook)\n",
    "before import inferwatch": "atexit.register(exit_hook)\nimport inferwatch\n",
    "before import inferwatch.events": (
        "atexit.register(exit_hook)\nimport inferwatch\nimport inferwatch.events\n"),
}


@pytest.mark.parametrize("at_exit", THREADS_AT_EXIT)
@pytest.mark.parametrize("order", _EXIT_HOOK_ORDERS)
def test_an_event_log_first_opened_in_an_exit_hook_is_written_wherever_the_hook_stands(
        tmp_path, order, at_exit):
    """An event log opened by its path inside an exit hook was never written: its module
    registered the exit flush as it was imported, during the exit, which no longer runs a
    hook registered then; and a call made after the exit flush waited for a drain that
    never came."""
    script = textwrap.dedent("""
        import atexit, sys

        def exit_hook():
            model = inferwatch.instrument(lambda x: x * 2.0, name="late", version="1",
                                          events=sys.argv[1] + "/events.jsonl")
            model(1.0, request_id="r-1")
            with inferwatch.monitor("late", "1").request(request_id="r-2"):
                model(2.0)
            inferwatch.monitor("late", "1").record_outcome("r-1", 2.0)
            print("exit hook done", flush=True)

    """) + _EXIT_HOOK_ORDERS[order] + THREADS_AT_EXIT[at_exit]
    done = _run(script, str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "exit hook done\n"
    assert "Traceback" not in done.stderr, done.stderr
    events = stored_events(tmp_path / "events.jsonl")
    assert sorted((e["request_id"], "prediction" in e, e.get("outcome")) for e in events) == [
        ("r-1", False, 2.0), ("r-1", True, None), ("r-2", True, None)]
