"""Multi-worker merges across layouts that legitimately change, and label caps across workers.

1. A reference re-profiled (or buckets reconfigured) and the server reloaded gives the
   new workers' ``inferwatch_prediction_value`` other buckets than the archive's. The
   merged view and the fold serve the buckets of the process started last; the other
   layout's counts move to the first new bound at or above their own (+Inf to +Inf), so
   ``_count`` and ``_sum`` count every call, no ``le`` overstates, and nothing is counted
   as an internal error.
2. Label caps (``max_actions``...) hold across workers: with recycled workers each
   bringing new free-text values, the merged view and the archive keep at most the cap's
   values plus ``__other__``, totals exact, the kept values the same at every read.

Snapshots are real files in a real directory, folded and read as workers and the
exporter do, rendered and parsed with prometheus_client; one test runs a real gunicorn
reloaded with SIGHUP on a re-profiled reference.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import numpy as np
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port
from inferwatch import faults
from inferwatch.catalogue import OTHER
from inferwatch.core.label_caps import LabelCap
from inferwatch.core.state import ModelState
from inferwatch.multiproc.merge import merge_view
from inferwatch.multiproc.snapshot_format import Snapshot, decode, encode, exact_models, model_dict
from inferwatch.multiproc.store import ARCHIVE, SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId
from inferwatch.quality.reference import Reference
from inferwatch.quality.tracker import FeatureTracker
from waiting import wait_until

NOW = 1_700_000_000.0
ME = WorkerId.current()
# The model extra a worker's snapshot describes itself in (multiproc.worker_meta), written
# as its JSON so that these snapshots are what a worker writes, whatever reads them.
META = "multiproc"
VALUE = "inferwatch_prediction_value"
ACTIONS = "inferwatch_actions_total"
OLD_BOUNDS = (0.0, 1.0, 2.5, 5.0, 10.0)
NEW_BOUNDS = (0.0, 10.0, 25.0, 50.0, 100.0, 250.0)


def dead(n: int) -> WorkerId:
    """A worker name whose process is gone: this pid with another start time."""
    return WorkerId(ME.pid, ME.start + 10_000 + n)


def blob(states: list[ModelState], since: float | None = None,
         caps: dict[str, int] | None = None, written_at: float = NOW) -> bytes:
    """A snapshot as a worker started at `since` (None: a release without the extra)."""
    models = []
    for state in states:
        data = model_dict(state)
        if since is not None:
            data["extras"][META] = {"since": since, "caps": dict(caps or {})}
        models.append(data)
    return encode(Snapshot(models=models, written_at=written_at))


def valued(values: list[float], bounds: tuple[float, ...]) -> ModelState:
    state = ModelState("m", "1")
    state.inc("inferwatch_requests_total", ("ok",), len(values))
    state.histogram(VALUE, ("value",), bounds).observe(np.asarray(values, dtype=np.float64))
    return state


def expected_cumulative(parts: list[tuple[list[float], tuple[float, ...]]],
                        served: tuple[float, ...]) -> list[int]:
    """Cumulative counts at `served` (+Inf last) of values each binned first by its own
    bounds, the bucket then counted at the first served bound at or above its bound."""
    buckets = [0] * (len(served) + 1)
    for values, bounds in parts:
        for value in values:
            upper = bisect.bisect_left(bounds, value)  # its bucket in its own layout
            bound = bounds[upper] if upper < len(bounds) else math.inf
            buckets[bisect.bisect_left(served, bound) if bound < math.inf else len(served)] += 1
    return list(np.cumsum(buckets))


def exposition(view) -> dict:
    """The view as /metrics serves it, parsed: {(name, labels): value}."""

    class Source:
        def collect(self) -> list:
            return view.families(NOW)

    text = generate_latest(Source()).decode()  # type: ignore[arg-type]
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def histogram_of(samples: dict, name: str = VALUE) -> tuple[list[str], list[float], float, float]:
    """(le bounds, cumulative counts, _count, _sum) of the one series of `name`."""
    bucket = sorted(((dict(labels)["le"], value) for (sample, labels), value in samples.items()
                     if sample == name + "_bucket"), key=lambda item: float(item[0]))
    count = next((v for (sample, _), v in samples.items() if sample == name + "_count"), 0.0)
    total = next((v for (sample, _), v in samples.items() if sample == name + "_sum"), 0.0)
    return [le for le, _ in bucket], [v for _, v in bucket], count, total


def internal_errors(samples: dict) -> float:
    return sum(v for (name, _), v in samples.items() if name == "inferwatch_internal_errors_total")


OLD_VALUES = [0.2, 0.7, 1.0, 2.0, 3.0, 7.5, 12.0, 40.0]
NEW_VALUES = [5.0, 30.0, 60.0, 120.0, 300.0]


# --- 1. histogram buckets that change -----------------------------------------------------

@pytest.mark.parametrize("archive_first", [True, False])
def test_the_view_serves_the_newest_buckets_and_carries_every_count_into_them(archive_first):
    archive = decode(blob([valued(OLD_VALUES, OLD_BOUNDS)], since=100.0))
    live = decode(blob([valued(NEW_VALUES, NEW_BOUNDS)], since=200.0))
    errors: list[Exception] = []

    view = merge_view([archive, live] if archive_first else [live, archive], NOW,
                      on_error=errors.append, without_gauges={id(archive)})
    samples = exposition(view)

    les, cumulative, count, total = histogram_of(samples)
    assert [float(le) for le in les] == [*NEW_BOUNDS, math.inf]
    assert cumulative == expected_cumulative([(OLD_VALUES, OLD_BOUNDS),
                                              (NEW_VALUES, NEW_BOUNDS)], NEW_BOUNDS)
    assert count == len(OLD_VALUES) + len(NEW_VALUES) == cumulative[-1]
    assert total == pytest.approx(sum(OLD_VALUES) + sum(NEW_VALUES))
    assert errors == []


def test_without_starts_the_choice_is_by_the_bounds_and_every_reader_agrees():
    # Snapshots of a release without the extra: no start known, so no newest; the same
    # layout is still served whatever the order, and nothing is lost or reported.
    a = decode(blob([valued(OLD_VALUES, OLD_BOUNDS)]))
    b = decode(blob([valued(NEW_VALUES, NEW_BOUNDS)]))
    errors: list[Exception] = []
    served = [merge_view(order, NOW, on_error=errors.append).states[0].histograms[VALUE][
        ("value",)] for order in ([a, b], [b, a])]
    assert served[0].bounds.tolist() == served[1].bounds.tolist()
    assert served[0].counts.tolist() == served[1].counts.tolist()
    assert served[0].count == len(OLD_VALUES) + len(NEW_VALUES) and errors == []


def test_the_fold_converts_the_archive_to_the_newest_buckets_and_never_back(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    faults_before = faults.internal_error_counts()
    (tmp_path / dead(0).name).write_bytes(blob([valued(OLD_VALUES, OLD_BOUNDS)], since=100.0))
    assert directory.fold(ME, now=NOW) == [dead(0).name]
    # The re-profiled worker, recycled: folded into the archive of the old buckets.
    (tmp_path / dead(1).name).write_bytes(blob([valued(NEW_VALUES, NEW_BOUNDS)], since=200.0))
    assert directory.fold(ME, now=NOW + 1) == [dead(1).name]
    # A worker of the old deployment that died last (its file written after the others):
    # started before the re-profiled one, so its counts move into the new buckets.
    late = [1.5, 9.0]
    (tmp_path / dead(2).name).write_bytes(blob([valued(late, OLD_BOUNDS)], since=150.0,
                                               written_at=NOW + 2))
    assert directory.fold(ME, now=NOW + 3) == [dead(2).name]

    (archived,) = exact_models(decode((tmp_path / ARCHIVE).read_bytes()))
    hist = archived.histograms[VALUE][("value",)]
    assert tuple(hist.bounds.tolist()) == NEW_BOUNDS
    assert np.cumsum(hist.counts).tolist() == expected_cumulative(
        [(OLD_VALUES + late, OLD_BOUNDS), (NEW_VALUES, NEW_BOUNDS)], NEW_BOUNDS)
    assert hist.sum == pytest.approx(sum(OLD_VALUES) + sum(NEW_VALUES) + sum(late))
    assert archived.counters["inferwatch_requests_total"][("ok",)] == 15
    # A live worker of the new buckets adds to the healed archive; no error anywhere.
    directory.write(ME.name, blob([valued([70.0], NEW_BOUNDS)], since=300.0), ME)
    samples = exposition(directory.read_view(NOW + 4))
    _, cumulative, count, _ = histogram_of(samples)
    assert count == 16 == cumulative[-1]
    assert faults.internal_error_counts() == faults_before


# --- 2. label caps across workers ----------------------------------------------------------

def worker_state(actions: list[str], limit: int) -> ModelState:
    """One worker's state after recording `actions` under its own cap, as the drain does."""
    counts: dict[str, float] = {}
    for action in actions:
        counts[action] = counts.get(action, 0) + 1
    state = ModelState("m", "1")
    state.inc("inferwatch_requests_total", ("ok",), len(actions))
    state.inc_many(ACTIONS, {(action,): count
                             for action, count in LabelCap(limit).fold_counts(counts).items()})
    return state


def actions_of(samples: dict) -> dict[str, float]:
    return {dict(labels)["action"]: value for (name, labels), value in samples.items()
            if name == ACTIONS}


LABELS = st.one_of(st.sampled_from(["shown", "hidden", "sent"]),
                   st.text("abcdefgh", min_size=1, max_size=3))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(limit=st.integers(1, 4),
       streams=st.lists(st.lists(LABELS, min_size=0, max_size=12), min_size=2, max_size=8))
def test_recycled_workers_keep_each_cap_in_the_view_and_the_archive(tmp_path_factory, limit,
                                                                    streams):
    path = tmp_path_factory.mktemp("caps")
    directory = SnapshotDirectory(str(path))
    caps = {ACTIONS: limit}
    faults_before = faults.internal_error_counts()
    *recycled, live = streams
    kept_before: set[str] = set()
    for n, stream in enumerate(recycled):
        (path / dead(n).name).write_bytes(blob([worker_state(stream, limit)], float(n), caps))
        assert directory.fold(ME, now=NOW) == [dead(n).name]
        (archived,) = exact_models(decode((path / ARCHIVE).read_bytes()))
        archive = {labels[0]: v for labels, v in archived.counters.get(ACTIONS, {}).items()}
        assert len(archive) <= limit + 1
        assert sum(archive.values()) == sum(map(len, recycled[:n + 1]))
        kept = set(archive) - {OTHER}
        assert kept_before <= kept  # what the archive keeps stays kept: no flapping
        kept_before = kept
    directory.write(ME.name, blob([worker_state(live, limit)], 99.0, caps), ME)

    views = [actions_of(exposition(SnapshotDirectory(str(path)).read_view(NOW)))
             for _ in range(2)]

    assert views[0] == views[1]  # every reader, every scrape: the same series
    assert len(views[0]) <= limit + 1
    assert sum(views[0].values()) == sum(map(len, streams))
    assert kept_before <= set(views[0])  # the archive's values are the view's first
    assert faults.internal_error_counts() == faults_before


def test_the_output_cap_bounds_the_summary_and_the_histogram_alike_and_stages_too():
    states = []
    for n in range(4):  # four workers, each with two outputs and two stages of its own
        state = ModelState("m", "1")
        for k in range(2):
            output, stage = f"out{n}{k}", f"stage{n}{k}"
            state.summary("inferwatch_prediction", (output,)).observe(np.ones(n + 1), NOW)
            state.histogram(VALUE, (output,), OLD_BOUNDS).observe(np.ones(n + 1))
            state.histogram("inferwatch_stage_duration_seconds", (stage,),
                            (0.1, 1.0)).observe(np.full(k + 1, 0.5))
        states.append(state)
    caps = {"inferwatch_prediction": 3, "inferwatch_stage_duration_seconds": 2}
    raws = [decode(blob([state], float(n), caps)) for n, state in enumerate(states)]

    (merged,) = merge_view(raws, NOW).states

    summaries = merged.summaries["inferwatch_prediction"]
    histograms = merged.histograms[VALUE]
    assert set(summaries) == set(histograms)  # one set of outputs kept for both
    # The most counted first (out3*: 4 each, then out2*: 3 each, ties by text).
    assert set(histograms) == {("out30",), ("out31",), ("out20",), (OTHER,)}
    assert sum(h.count for h in histograms.values()) == 2 * (1 + 2 + 3 + 4)
    assert sum(s.count for s in summaries.values()) == 2 * (1 + 2 + 3 + 4)
    stages = merged.histograms["inferwatch_stage_duration_seconds"]
    assert len(stages) == 3 and sum(h.count for h in stages.values()) == 4 * 3


def test_snapshots_without_caps_are_read_as_before():
    # A release that wrote no caps: nothing known to cap at, every series kept and summed.
    raws = [decode(blob([worker_state([f"a{n}", f"b{n}"], 5)])) for n in range(4)]
    errors: list[Exception] = []
    (merged,) = merge_view(raws, NOW, on_error=errors.append).states
    assert len(merged.counters[ACTIONS]) == 8 and errors == []


# --- 1, end to end: gunicorn reloaded on a re-profiled reference ------------------------

APP = """
import os
import numpy as np
import inferwatch

shift = float(open(os.environ["REF_FILE"]).read())
rng = np.random.default_rng(0)
reference = inferwatch.Reference.from_data(rng.normal(shift, 1, size=(2000, 1)),
                                           rng.normal(shift, 1, size=2000))
predict = inferwatch.instrument(lambda X: X[:, 0], name="m", version="1",
                                reference=reference)
metrics = inferwatch.make_wsgi_app()

def app(environ, start_response):
    if environ["PATH_INFO"].startswith("/metrics"):
        return metrics(environ, start_response)
    predict(np.array([[float(environ["QUERY_STRING"].split("=")[1])]]))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def value_bounds(shift: float) -> tuple[float, ...]:
    rng = np.random.default_rng(0)
    reference = Reference.from_data(rng.normal(shift, 1, size=(2000, 1)),
                                    rng.normal(shift, 1, size=2000))
    return FeatureTracker(reference).value_buckets("value")  # type: ignore[return-value]


@pytest.mark.integration
def test_gunicorn_reloaded_on_a_reprofiled_reference_counts_every_call_in_the_new_buckets(
        tmp_path):
    (tmp_path / "reprofiled_app.py").write_text(textwrap.dedent(APP))
    reference = tmp_path / "shift"
    reference.write_text("0")
    directory = tmp_path / "multiproc"
    directory.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "INFERWATCH_MULTIPROC_DIR": str(directory), "REF_FILE": str(reference),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    with open(log, "wb") as out:
        master = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
             "--chdir", str(tmp_path), "--graceful-timeout", "30", "--log-level", "warning",
             "reprofiled_app:app"], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)

    def get(path: str) -> str:
        with urllib.request.urlopen(url + path, timeout=30) as response:
            return response.read().decode()

    def scrape() -> dict:
        return {(s.name, frozenset(s.labels.items())): s.value
                for f in text_string_to_metric_families(get("/metrics")) for s in f.samples}

    def workers() -> set[int]:
        return {child.pid for child in psutil.Process(master.pid).children()}

    def serving() -> bool:
        with contextlib.suppress(OSError):
            get("/metrics")
            return len(workers()) == 2
        return False

    try:
        wait_until(serving, 120, "gunicorn serving with 2 workers")
        old_workers = workers()
        old_values = np.random.default_rng(1).normal(0, 1, 40).tolist()
        for value in old_values:
            get(f"/predict?v={value!r}")
        reference.write_text("50")  # re-profiled on data around 50
        # The old workers publish their last calls as they exit: a graceful timeout a busy
        # machine could outlast would kill them first (their last second of calls is then
        # lost by design), which is not what this test is about.
        master.send_signal(signal.SIGHUP)
        wait_until(lambda: not (workers() & old_workers) and serving(), 120,
                   "the workers restarted on the new reference")
        new_values = np.random.default_rng(2).normal(50, 1, 40).tolist()
        for value in new_values:
            get(f"/predict?v={value!r}")
        calls = len(old_values) + len(new_values)
        seen: list = []

        def every_call_merged() -> bool:
            seen[:] = [histogram_of(scrape())[2], sorted(os.listdir(directory)), workers()]
            return seen[0] == calls

        try:
            wait_until(every_call_merged, 60, "every call in the merged histogram")
        except AssertionError as timed_out:  # what a rare failure needs to be understood
            raise AssertionError(
                f"{timed_out}: count {seen[0]} of {calls}, files {seen[1]}, workers {seen[2]}"
                f" (old {old_workers}), gunicorn log:\n{log.read_text()}") from None
        first = scrape()
        time.sleep(1.2)  # a publish later: the next scrape must not go back
        second = scrape()
    finally:
        if master.poll() is None:
            master.send_signal(signal.SIGTERM)
            try:
                master.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(master.pid, signal.SIGKILL)
                master.wait(timeout=5)

    old_bounds, new_bounds = value_bounds(0.0), value_bounds(50.0)
    assert old_bounds != new_bounds
    for samples in (first, second):
        les, cumulative, count, total = histogram_of(samples)
        assert [float(le) for le in les] == [*new_bounds, math.inf]
        assert cumulative == expected_cumulative([(old_values, old_bounds),
                                                  (new_values, new_bounds)], new_bounds)
        assert count == calls
        assert total == pytest.approx(sum(old_values) + sum(new_values))
        assert internal_errors(samples) == 0, log.read_text()
