"""Reference profiles decoded for copies of one process's state, folds of dead workers'
drift windows, and reference documents and data as hostile users hand them over."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch import faults
from inferwatch.core.registry import Registry
from inferwatch.core.state import ModelState
from inferwatch.multiproc.safe_read import read_entry
from inferwatch.multiproc.snapshot_format import Snapshot, decode, encode, exact_models, model_dict
from inferwatch.multiproc.store import ARCHIVE, SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId
from inferwatch.quality import tracker as tracker_module
from inferwatch.quality.reference import Reference
from inferwatch.quality.tracker import FeatureTracker


def _reference(seed: int, features: int = 12) -> Reference:
    rng = np.random.default_rng(seed)
    columns: dict = {f"f{i}": rng.normal(size=400) for i in range(features)}
    columns["colour"] = rng.choice(["red", "green", "blue"], size=400)
    return Reference.from_data(columns, predictions=rng.random(400))


@pytest.fixture
def compiles(monkeypatch) -> list[int]:
    """One entry per reference document parsed (and so compiled to scorers) for a state."""
    calls: list[int] = []
    from_dict = Reference.from_dict.__func__  # type: ignore[attr-defined]

    def counted(cls, data, *, source: str = "reference"):
        if source == "worker snapshot":
            calls.append(1)
        return from_dict(cls, data, source=source)

    monkeypatch.setattr(Reference, "from_dict", classmethod(counted))
    return calls


# --- copies of one process's state compile the reference once ----------------------------

def test_copies_of_one_monitor_compile_its_reference_once(compiles):
    registry = Registry(drain_interval=3600)
    try:
        monitor = registry.monitor("fraud", "1").configure(reference=_reference(11))
        first = monitor.copy_state()
        second = monitor.copy_state()
        third = monitor.copy_state()
    finally:
        registry.close()
    assert len(compiles) == 1
    drifts = [state.extras["drift"] for state in (first, second, third)]
    assert drifts[0].reference is drifts[1].reference is drifts[2].reference
    assert drifts[0].reference == _reference(11)


def test_a_changed_reference_is_compiled_anew(compiles):
    registry = Registry(drain_interval=3600)
    try:
        monitor = registry.monitor("fraud", "1").configure(reference=_reference(21))
        before = monitor.copy_state().extras["drift"].reference
        monitor.configure(reference=_reference(22))
        after = monitor.copy_state().extras["drift"].reference
        again = monitor.copy_state().extras["drift"].reference
    finally:
        registry.close()
    assert len(compiles) == 2
    assert before == _reference(21) and after == _reference(22) and after is again


def test_documents_alike_but_for_types_python_calls_equal_compile_apart(compiles):
    """1 == 1.0 == True in Python, but a reference reads only an integer as a count: a
    document that differs in that alone is not the one compiled before."""
    document = _reference(31, features=2).to_dict()
    copy = _reference(31, features=2).to_dict()
    copy["features"][0]["count"] = True
    assert tracker_module._decoded_reference(document)[0] == _reference(31, features=2)
    with pytest.raises(ValueError, match="'count' must be a non-negative integer"):
        tracker_module._decoded_reference(copy)
    assert len(compiles) == 2


def test_the_compiled_references_stay_bounded(compiles):
    for seed in range(tracker_module.MAX_DECODED_REFERENCES + 5):
        tracker_module._decoded_reference(_reference(1000 + seed, features=1).to_dict())
    assert len(tracker_module._compiled) <= tracker_module.MAX_DECODED_REFERENCES
    assert len(tracker_module._decoded) <= tracker_module.MAX_DECODED_REFERENCES


# --- a fold keeps the archive's drift rows against a dead worker's clock far ahead ----------

def _drift_state(reference: Reference, rows: int, at: float) -> ModelState:
    state = ModelState("fraud", "1")
    tracker = FeatureTracker(reference)
    tracker.check_inputs([{name: 0.5 for name in reference.feature_names}] * rows, now=at)
    state.extras["drift"] = tracker.drift
    return state


def _write_dead(directory: SnapshotDirectory, pid: int, state: ModelState,
                written_at: float) -> str:
    dead = WorkerId(pid, 1, WorkerId.current().boot)  # no such pid
    directory.write(dead.name, encode(Snapshot(models=[model_dict(state)],
                                               written_at=written_at)), dead)
    return dead.name


def test_a_fold_keeps_the_archives_drift_rows_against_a_bucket_a_window_ahead(tmp_path):
    reference = _reference(41, features=3)
    now = time.time()
    window = FeatureTracker(reference).drift.features.max_age_seconds
    directory = SnapshotDirectory(str(tmp_path))
    first = _write_dead(directory, 2 ** 22 + 7, _drift_state(reference, 30, now), now)
    assert directory.fold(WorkerId.current(), also=[first]) == [first]

    # A worker whose clock ran a whole window ahead: its bucket shares the slot of the
    # archive's, and would replace rows still in the window here.
    ahead = _write_dead(directory, 2 ** 22 + 9, _drift_state(reference, 5, now + window),
                        now)
    dropped = faults.internal_error_counts().get("drift", 0)
    assert directory.fold(WorkerId.current(), also=[ahead]) == [ahead]

    data, _ = read_entry(str(tmp_path / ARCHIVE), directory.trusted_uids)
    archived, = exact_models(decode(data))  # type: ignore[arg-type]
    assert archived.extras["drift"].rows(now) == 30
    assert faults.internal_error_counts().get("drift", 0) == dropped + 1


# --- categorical names read as text, as every other column name -------------------------

@given(st.integers(min_value=2, max_value=5), st.data())
@settings(max_examples=25, deadline=None)
def test_a_dataframes_integer_columns_are_named_categorical_by_their_keys(width, data):
    """A DataFrame built from an array has columns 0, 1, ...: naming one of them in
    `categorical` by that key profiles it as categories (its feature is named "3")."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(width)
    frame = pd.DataFrame(rng.integers(0, 4, size=(60, width)))
    chosen = data.draw(st.lists(st.integers(0, width - 1), min_size=1, unique=True))
    reference = Reference.from_data(frame, categorical=chosen)
    assert reference.feature_names == [str(i) for i in range(width)]
    for i in range(width):
        kind = reference.features[str(i)].kind
        assert kind == ("categorical" if i in chosen else "numeric")


@given(st.lists(st.one_of(st.integers(100, 200), st.text(min_size=1, max_size=3),
                          st.tuples(st.integers()), st.binary(min_size=1, max_size=2)),
                min_size=1, max_size=4))
@settings(max_examples=50, deadline=None)
def test_categorical_names_of_no_column_are_a_clear_error_whatever_their_type(names):
    names = [n for n in names if str(n) not in ("a", "b")] or [101]
    with pytest.raises(ValueError, match="categorical names unknown columns") as raised:
        Reference.from_data({"a": [1.0, 2.0], "b": ["x", "y"]}, categorical=names)
    assert repr(str(names[0])) in str(raised.value)
