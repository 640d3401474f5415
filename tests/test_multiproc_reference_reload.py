"""Multi-worker drift after a reference is re-profiled and loaded again.

A redeploy (workers restarted on a re-profiled reference file) or a reload
(``configure(reference=...)``) leaves snapshots of two references in the directory: the
archive of exited workers, an idle preloaded master, workers not yet reloaded. Their drift
windows bin rows by other edges and never add. The merged view must score the reference
the live workers hold (most live rows first: neither the archive nor an idle master ever
outranks live workers with rows), leave the other reference's rows out and count them as
``inferwatch_multiproc_files_skipped_total{reason="other_reference"}``, never as an
internal error, and still sum every counter over all workers.

Workers are real processes publishing into a real directory; the merged view is rendered
as the exporter serves it and read with prometheus_client's parser, and its drift is
compared with one process fed the same rows.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from inferwatch import faults
from inferwatch.core.registry import Registry
from inferwatch.core.state import ModelState
from inferwatch.multiproc.merge import merge_view
from inferwatch.multiproc.snapshot_format import Snapshot, decode, encode, exact_models, model_dict
from inferwatch.multiproc.store import ARCHIVE, SnapshotDirectory, skipped_counts
from inferwatch.multiproc.worker_id import WorkerId
from inferwatch.quality.reference import Reference
from inferwatch.quality.tracker import FeatureTracker
from inferwatch.serving.bridge import InferwatchCollector

ANSWER_TIMEOUT_SECONDS = 120.0
MODEL = "rd"

# A worker: instruments the model with the reference at argv[2] and publishes into the
# directory at argv[1]; each line on stdin is a command ({"reload": path} and/or
# {"serve": .npy path}), answered once published; at EOF it closes, folding itself.
_WORKER = """
import json, sys
import numpy as np
import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.multiproc import attach

directory, reference = sys.argv[1], sys.argv[2]
registry = Registry(drain_interval=3600)
publisher = attach(registry, directory)
model = inferwatch.instrument(lambda X: np.full(len(X["x"]), 0.5), name="rd", version="1",
                              registry=registry, reference=reference)

def publish():
    registry.drain()
    assert publisher.publish(force=True)

publish()
print("ready", flush=True)
for line in sys.stdin:
    command = json.loads(line)
    if "reload" in command:
        registry.monitor("rd", "1").configure(reference=command["reload"])
    if "serve" in command:
        model({"x": np.load(command["serve"])})
    publish()
    print("done", flush=True)
publisher.close()
"""


class Worker:
    """One worker process of the deployment."""

    def __init__(self, directory: Path, reference: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(directory), str(reference)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._answer() == "ready"

    def serve(self, rows_file: Path) -> None:
        self._command({"serve": str(rows_file)})

    def reload(self, reference: Path) -> None:
        self._command({"reload": str(reference)})

    def exit(self) -> None:
        """Close its publisher (its final snapshot folded into the archive) and exit."""
        self.process.stdin.close()  # type: ignore[union-attr]
        assert self.process.wait(timeout=ANSWER_TIMEOUT_SECONDS) == 0

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _command(self, command: dict) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]
        assert self._answer() == "done"

    def _answer(self) -> str:
        stdout = self.process.stdout
        ready, _, _ = select.select([stdout], [], [], ANSWER_TIMEOUT_SECONDS)
        assert ready, "the worker did not answer"
        return stdout.readline().strip()  # type: ignore[union-attr]


@pytest.fixture
def workers():
    started: list[Worker] = []

    def start(directory: Path, reference: Path) -> Worker:
        started.append(Worker(directory, reference))
        return started[-1]

    yield start
    for worker in started:
        worker.kill()


Samples = dict[tuple[str, frozenset], float]


def parsed(text: str) -> Samples:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(directory: Path) -> Samples:
    """What a fresh exporter serves for `directory`, parsed (its own skips added, as the
    standalone exporter adds them: those of this scrape)."""
    now = time.time()

    class Source:
        def collect(self) -> list:
            before = skipped_counts()
            view = SnapshotDirectory(str(directory)).read_view(now)
            mine = {reason: count - before[reason]
                    for reason, count in skipped_counts().items()}
            return view.families(now, extra_files_skipped=mine)

    return parsed(generate_latest(Source()).decode())  # type: ignore[arg-type]


def single_process(batches: list[tuple[Path, list[np.ndarray]]]) -> Samples:
    """One process's own view of `batches` ((reference, rows of each call) in turn, the
    reference loaded again at each change as a reload does)."""
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda X: np.full(len(X["x"]), 0.5), name=MODEL,
                                      version="1", registry=registry,
                                      reference=str(batches[0][0]))
        for reference, calls in batches:
            registry.monitor(MODEL, "1").configure(reference=str(reference))
            for rows in calls:
                model({"x": rows})
        registry.drain()
        prometheus = CollectorRegistry()
        prometheus.register(InferwatchCollector(registry))
        return parsed(generate_latest(prometheus).decode())
    finally:
        registry.close()


def drift(samples: Samples) -> dict[str, float]:
    return {dict(labels)["method"]: value for (name, labels), value in samples.items()
            if name == "inferwatch_feature_drift"}


def value(samples: Samples, name: str, **labels: str) -> float:
    return sum(found for (sample, sample_labels), found in samples.items()
               if sample == name and all(dict(sample_labels).get(k) == v
                                         for k, v in labels.items()))


def assert_drift_of(merged: Samples, expected: Samples) -> None:
    assert drift(expected)  # the comparison is about something
    assert drift(merged) == pytest.approx(drift(expected), rel=1e-12, abs=0)
    for name in ("inferwatch_drift_window_observations",
                 "inferwatch_feature_drift_observations"):
        assert value(merged, name) == value(expected, name), name


def internal_errors(samples: Samples) -> float:
    return value(samples, "inferwatch_internal_errors_total")


def other_reference(samples: Samples) -> float:
    return value(samples, "inferwatch_multiproc_files_skipped_total", reason="other_reference")


@pytest.fixture
def deployment(tmp_path: Path):
    """A directory, a reference file and its re-profiled successor, and rows to save."""
    directory = tmp_path / "multiproc"
    directory.mkdir()
    rng = np.random.default_rng(14)
    training = rng.normal(0, 1, 10_000)
    first = tmp_path / "v1.json"
    second = tmp_path / "v2.json"
    Reference.from_data({"x": training}, bins=10).save(first)
    Reference.from_data({"x": training * 3 + 10}, bins=5).save(second)

    def rows(name: str, values: np.ndarray) -> tuple[Path, np.ndarray]:
        path = tmp_path / f"{name}.npy"
        np.save(path, values)
        return path, values

    return directory, first, second, rng, rows


# --- real processes -----------------------------------------------------------------------

def test_a_redeploy_on_a_reprofiled_reference_scores_the_new_workers_rows(deployment,
                                                                          workers):
    directory, first, second, rng, rows = deployment
    reference = directory.parent / "reference.json"
    reference.write_bytes(first.read_bytes())
    old_file, old_rows = rows("old", rng.normal(0, 1, 3000))
    old = workers(directory, reference)
    old.serve(old_file)
    old.exit()  # folded into the archive, its drift on the first profile
    reference.write_bytes(second.read_bytes())  # re-profiled on new data
    new_file, new_rows = rows("new", rng.normal(0, 1, 2000) * 3 + 10)
    new = workers(directory, reference)
    new.serve(new_file)
    faults_before = faults.internal_error_counts()

    merged = scrape(directory)

    assert_drift_of(merged, single_process([(second, [new_rows])]))
    assert value(merged, "inferwatch_drift_window_observations") == 2000
    assert value(merged, "inferwatch_requests_total", outcome="ok") == 2  # both calls
    assert other_reference(merged) == 1  # the archive's 3,000 rows of the first profile
    assert internal_errors(merged) == 0
    assert faults.internal_error_counts() == faults_before
    assert len(old_rows) == 3000


def test_workers_recycled_after_a_redeploy_keep_their_rows_in_the_drift(deployment, workers):
    # The archive holds the first profile's rows; a recycled worker of the new profile is
    # folded in, and must replace them there, not be thrown away.
    directory, first, second, rng, rows = deployment
    old_file, _ = rows("old", rng.normal(0, 1, 3000))
    old = workers(directory, first)
    old.serve(old_file)
    old.exit()
    recycled_file, recycled_rows = rows("recycled", rng.normal(0, 1, 1200) * 3 + 10)
    recycled = workers(directory, second)
    recycled.serve(recycled_file)
    recycled.exit()
    live_file, live_rows = rows("live", rng.normal(0, 1, 800) * 3 + 11)
    live = workers(directory, second)
    live.serve(live_file)

    merged = scrape(directory)

    assert_drift_of(merged, single_process([(second, [recycled_rows, live_rows])]))
    assert value(merged, "inferwatch_drift_window_observations") == 2000
    assert value(merged, "inferwatch_requests_total", outcome="ok") == 3
    assert other_reference(merged) == 0  # the first profile's rows left the archive
    assert internal_errors(merged) == 0


def test_a_rolling_reload_scores_the_reference_of_most_live_rows_and_sums_the_counters(
        deployment, workers):
    directory, first, second, rng, rows = deployment
    kept_file, kept_rows = rows("kept", np.append(rng.normal(0, 1, 2000), [np.nan] * 7))
    reloaded_file, reloaded_rows = rows(
        "reloaded", np.append(rng.normal(0, 1, 3000) * 3 + 10, [np.nan] * 5 + [99.0] * 4))
    kept = workers(directory, first)
    reloaded = workers(directory, first)
    reloaded.reload(second)
    kept.serve(kept_file)
    reloaded.serve(reloaded_file)
    faults_before = faults.internal_error_counts()

    merged = scrape(directory)

    assert_drift_of(merged, single_process([(second, [reloaded_rows])]))
    assert other_reference(merged) == 1  # the 2,007 rows still on the first profile
    # Counters sum over every worker, whichever reference each one checks against.
    first_alone = single_process([(first, [kept_rows])])
    second_alone = single_process([(second, [reloaded_rows])])
    for name in ("inferwatch_feature_missing_total", "inferwatch_feature_out_of_range_total",
                 "inferwatch_requests_total"):
        assert value(merged, name) == value(first_alone, name) + value(second_alone, name)
    assert value(merged, "inferwatch_feature_missing_total") == 12
    assert internal_errors(merged) == 0
    assert faults.internal_error_counts() == faults_before


def test_an_idle_master_on_the_old_reference_does_not_outrank_reloaded_workers(deployment,
                                                                                workers):
    directory, first, second, rng, rows = deployment
    workers(directory, first)  # a preloaded master: it never serves
    batches = []
    for index, size in enumerate((1000, 1500)):
        worker = workers(directory, first)
        worker.reload(second)
        path, values = rows(f"worker{index}", rng.normal(0, 1, size) * 3 + 10)
        worker.serve(path)
        batches.append(values)

    merged = scrape(directory)

    assert_drift_of(merged, single_process([(second, batches)]))
    assert value(merged, "inferwatch_drift_window_observations") == 2500
    assert other_reference(merged) == 0  # the master's window is empty: nothing left out
    assert internal_errors(merged) == 0


# --- snapshots of explicit times, in a real directory -------------------------------------------

NOW = 1_700_000_000.0
WINDOW_SECONDS = 600.0
ME = WorkerId.current()


def dead(n: int) -> WorkerId:
    """A worker name whose process is gone: this pid with another start time."""
    return WorkerId(ME.pid, ME.start + 10_000 + n)


def _references() -> list[Reference]:
    rng = np.random.default_rng(3)
    training = rng.normal(0, 1, 4000)
    return [Reference.from_data({"x": training}, bins=10),
            Reference.from_data({"x": training * 3 + 10}, bins=5),
            # As many bins as the first, other edges: profiled on other data.
            Reference.from_data({"x": training + 0.5}, bins=10)]


REFERENCES = _references()


def drifting_state(reference: Reference, batches: list[tuple[list[float], float]]) -> ModelState:
    """A model state whose drift window got each batch of values at its time."""
    tracker = FeatureTracker(reference, window_seconds=WINDOW_SECONDS)
    state = ModelState(MODEL, "1")
    for values, at in batches:
        tracker.check_inputs([{"x": v} for v in values], at)
        state.inc("inferwatch_requests_total", ("ok",))
    state.extras["drift"] = tracker.drift
    return state


def snapshot(state: ModelState, written_at: float = NOW) -> bytes:
    return encode(Snapshot(models=[model_dict(state)], written_at=written_at))


def merged_drift(view) -> tuple[dict, int]:
    features, _, rows = view.states[0].extras["drift"].scores(NOW)
    return features, rows


def expected_drift(reference: Reference, batches: list[tuple[list[float], float]]
                   ) -> tuple[dict, int]:
    features, _, rows = drifting_state(reference, batches).extras["drift"].scores(NOW)
    return features, rows


@pytest.mark.parametrize("archive_age", [0.0, 2 * WINDOW_SECONDS])
def test_the_archive_of_an_old_reference_never_outranks_a_live_worker(tmp_path, archive_age):
    # The archive's rows in the window or aged out of it: either way the live worker's
    # reference is scored, and its drift series never vanish.
    directory = SnapshotDirectory(str(tmp_path))
    old = drifting_state(REFERENCES[0], [([0.1] * 300, NOW - 10 - archive_age)])
    (tmp_path / dead(0).name).write_bytes(snapshot(old, NOW - 10 - archive_age))
    assert directory.fold(ME, now=NOW - archive_age) == [dead(0).name]
    live_batches = [([10.0, 11.0, 12.5] * 40, NOW - 5)]
    directory.write(ME.name, snapshot(drifting_state(REFERENCES[1], live_batches)), ME)
    skipped_before, faults_before = skipped_counts(), faults.internal_error_counts()

    view = directory.read_view(NOW)

    assert merged_drift(view) == expected_drift(REFERENCES[1], live_batches)
    assert view.states[0].counters["inferwatch_requests_total"][("ok",)] == 2
    assert skipped_counts()["other_reference"] - skipped_before["other_reference"] == (
        0 if archive_age else 1)
    assert faults.internal_error_counts() == faults_before


@pytest.mark.parametrize("dead_rows_in_window", [True, False])
def test_a_fold_keeps_the_newer_reference_unless_it_served_nothing(tmp_path,
                                                                   dead_rows_in_window):
    directory = SnapshotDirectory(str(tmp_path))
    archived = [([0.2, 0.3] * 100, NOW - 30)]
    (tmp_path / dead(0).name).write_bytes(snapshot(drifting_state(REFERENCES[0], archived)))
    directory.fold(ME, now=NOW)
    newer = [([10.0, 10.5] * 50, NOW - (20 if dead_rows_in_window else 2 * WINDOW_SECONDS))]
    (tmp_path / dead(1).name).write_bytes(snapshot(drifting_state(REFERENCES[2], newer)))
    faults_before = faults.internal_error_counts()

    assert directory.fold(ME, now=NOW) == [dead(1).name]

    (state,) = exact_models(decode((tmp_path / ARCHIVE).read_bytes()))
    kept, batches = (REFERENCES[2], newer) if dead_rows_in_window else (REFERENCES[0], archived)
    assert state.extras["drift"].reference == kept
    assert state.extras["drift"].scores(NOW)[::2] == expected_drift(kept, batches)
    assert state.counters["inferwatch_requests_total"][("ok",)] == 2
    assert faults.internal_error_counts() == faults_before


# --- any mix of snapshots ------------------------------------------------------------------------

def _rank(entries: list[dict]) -> int:
    """The reference merged, by the documented order: most live rows, most live holders,
    most exited rows, first met."""
    ranks: dict[int, list[int]] = {}
    for entry in entries:
        rank = ranks.setdefault(entry["reference"], [0, 0, 0, len(ranks)])
        rows = len(entry["values"]) if entry["in_window"] else 0
        if entry["live"]:
            rank[0] -= rows
            rank[1] -= 1
        else:
            rank[2] -= rows
    return min(ranks, key=lambda reference: ranks[reference])


snapshot_strategy = st.fixed_dictionaries({
    "reference": st.integers(0, len(REFERENCES) - 1),
    "values": st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=25),
    "in_window": st.booleans(),
    "live": st.booleans(),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(snapshot_strategy, min_size=1, max_size=6))
def test_any_mix_of_references_merges_one_and_counts_the_others_rows_without_errors(entries):
    for entry in entries:
        entry["batches"] = [(entry["values"], NOW - (5 if entry["in_window"]
                                                     else 2 * WINDOW_SECONDS))]
    raws = [decode(snapshot(drifting_state(REFERENCES[entry["reference"]], entry["batches"])))
            for entry in entries]
    exited = {id(raw) for raw, entry in zip(raws, entries) if not entry["live"]}
    errors: list[Exception] = []

    view = merge_view(raws, NOW, on_error=errors.append, without_gauges=exited)

    winner = _rank(entries)
    kept = [batch for entry in entries if entry["reference"] == winner
            for batch in entry["batches"]]
    assert errors == []
    assert view.states[0].extras["drift"].reference == REFERENCES[winner]
    assert merged_drift(view) == expected_drift(REFERENCES[winner], kept)
    assert view.other_reference == sum(1 for entry in entries if entry["reference"] != winner
                                       and entry["in_window"] and entry["values"])
    assert view.states[0].counters["inferwatch_requests_total"][("ok",)] == len(entries)
