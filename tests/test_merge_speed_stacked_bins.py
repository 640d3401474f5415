"""The multi-worker merge, fourth pass: bins added down a grid, windows built from settings
checked once.

A series' bins (each worker's run of a sketch, or each file's drift block) are now stacked
in the files' own narrow type and added in one numpy call, in a type just wide enough for
their sum, and a merged model's drift windows are built without repeating the checks the
constructor made of the same settings before. The sums, the windows, the merged
``/metrics`` text, the errors and the refusals must be those of the modules before this
pass (``ORIGINAL``, in a process of their own, as tests/test_merge_speed_cached_decoding.py
compares).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.multiproc import merge, snapshot_format, snapshot_layout
from inferwatch.multiproc.snapshot_layout import dense_bins
from inferwatch.quality import drift_window
from inferwatch.quality.drift_window import DriftWindow, layout_of
from test_merge_speed_cached_decoding import (
    MODELS,
    NOW,
    ROOT,
    assert_alike,
    blobs_of,
    deployment,
    original_modules,
    worker_strategy,
)

# The commit before this pass, and the files it changed.
ORIGINAL = "5b9c8b1e50f4f1a58215888535fa19e056ebce23"
CHANGED = ("multiproc/merge.py", "multiproc/snapshot_layout.py", "quality/drift.py",
           "core/ddsketch.py")


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory):
    """This tree with the changed files as they were at ORIGINAL."""
    yield from original_modules(tmp_path_factory.mktemp("original15"), ORIGINAL, CHANGED)


@pytest.fixture(scope="module")
def original_layout(tmp_path_factory: pytest.TempPathFactory):
    """snapshot_layout as it was at ORIGINAL, imported on its own (for dense_bins)."""
    shown = subprocess.run(["git", "-C", str(ROOT), "show",
                            f"{ORIGINAL}:exporter/inferwatch/multiproc/snapshot_layout.py"],
                           capture_output=True, check=False)
    if shown.returncode:
        pytest.skip(f"commit {ORIGINAL} is not in this checkout")
    path = tmp_path_factory.mktemp("layout15") / "original_snapshot_layout.py"
    path.write_bytes(shown.stdout)
    spec = importlib.util.spec_from_file_location("original_snapshot_layout", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    yield module
    del sys.modules[spec.name]  # type: ignore[union-attr]


# --- the merged text --------------------------------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workers=st.lists(worker_strategy, min_size=1, max_size=5),
       repeat=st.lists(st.integers(0, 4), max_size=4),
       now_offset=st.sampled_from([0.0, 5.0, -700.0, 7200.0]),
       exited=st.frozensets(st.integers(0, 7), max_size=2),
       grid_cells=st.sampled_from([1 << 18, 0]),
       by_layout=st.booleans())
def test_the_merged_text_is_what_the_modules_before_this_pass_give(
        original, workers, repeat, now_offset, exited, grid_cells, by_layout):
    blobs = blobs_of(workers)
    blobs += [blobs[i] for i in repeat if i < len(blobs)]  # workers of one deployment alike
    with pytest.MonkeyPatch.context() as patch:
        # No grid: every series and drift block added run by run, as before.
        patch.setattr(snapshot_layout, "MAX_GRID_CELLS", grid_cells)
        patch.setattr(merge, "MAX_GRID_CELLS", grid_cells)
        if by_layout:  # as a scrape of more files than add safely as one block
            patch.setattr(merge, "MAX_SUMMED_FILES", 0)
        assert_alike(original, blobs, NOW + now_offset, exited)


def test_a_deployment_like_the_benchmark_merges_alike(original):
    assert_alike(original, deployment(layouts=4, workers=8), NOW, frozenset({7}))
    assert_alike(original, deployment(layouts=1, workers=33), NOW, frozenset())


# --- bins added down a grid -------------------------------------------------------------------

# The types files hold bins in, and others a caller might pass.
TYPES = ["<u1", "<u2", "<u4", "<i8", "i1", "i4"]
RUN = st.tuples(
    st.one_of(st.integers(-40, 40), st.sampled_from([-1500, 1400, -3000, 2**40])),
    st.sampled_from(TYPES),
    st.lists(st.one_of(st.integers(0, 9), st.sampled_from([255, 65535, 2**32 - 1, 2**53 - 1])),
             max_size=12))


def _runs(drawn: list[tuple[int, str, list[int]]]) -> list[tuple[int, np.ndarray]]:
    runs = []
    for offset, kind, counts in drawn:
        limit = np.iinfo(np.dtype(kind)).max
        runs.append((offset, np.array([min(count, limit) for count in counts], dtype=kind)))
    return runs


def _same(found, expected) -> None:
    if expected is None:
        assert found is None
        return
    assert found[0] == expected[0]
    assert found[1].dtype == expected[1].dtype == np.int64
    assert found[1].tolist() == expected[1].tolist()


@settings(max_examples=400, deadline=None)
@given(drawn=st.lists(RUN, max_size=8), max_bins=st.sampled_from([1, 4, 16, 2048]),
       grid_cells=st.sampled_from([1 << 18, 0]))
def test_dense_bins_sums_as_run_by_run_adding_did(original_layout, drawn, max_bins,
                                                  grid_cells):
    runs = _runs(drawn)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(snapshot_layout, "MAX_GRID_CELLS", grid_cells)
        _same(dense_bins(runs, max_bins), original_layout.dense_bins(runs, max_bins))


@pytest.mark.parametrize("kind", ["<u1", "<u2", "<u4", "<i8"])
@pytest.mark.parametrize("rows", [1, 2, 257, 258, 65537, 65538])
def test_rows_add_in_a_type_wide_enough_for_their_largest_sum(kind, rows):
    largest = np.iinfo(np.dtype(kind)).max if kind != "<i8" else 2**53 - 1
    grid = np.full((rows, 3), largest, dtype=kind)
    grid[:, 1] = 0
    grid[0, 2] = 1
    summed_rows = snapshot_layout.summed_rows
    assert summed_rows(grid).dtype == np.int64
    # int64 sums past its range wrap, as adding row by row into int64 did.
    wrapped = [(total + 2**63) % 2**64 - 2**63
               for total in (rows * largest, 0, (rows - 1) * largest + 1)]
    assert summed_rows(grid).tolist() == wrapped


def test_a_series_of_many_workers_is_added_in_one_call():
    # Before, each worker's run was one numpy add into the merged run.
    run = (np.arange(399) % 250 + 1).astype(np.uint8)
    runs = [(offset, run) for offset in range(-320, -300, 2)]
    adds = []
    real = snapshot_layout.summed_rows

    def counted(grid):
        adds.append(grid.shape)
        return real(grid)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(snapshot_layout, "summed_rows", counted)
        first, counts = dense_bins(runs, 2048)
    assert adds == [(10, 417)]
    assert first == -320 and int(counts.sum()) == 10 * int(run.sum(dtype=np.int64))


@settings(max_examples=200, deadline=None)
@given(members=st.lists(st.tuples(st.sampled_from(["<u1", "<u2", "<u4", "<i8"]),
                                  st.lists(st.sampled_from([0, 1, 7, 255, 65535, 2**32 - 1,
                                                            2**53 - 1]),
                                           min_size=6, max_size=6)), min_size=1, max_size=6),
       grid_cells=st.sampled_from([1 << 18, 0]))
def test_drift_blocks_sum_as_file_by_file_adding_did(members, grid_cells):
    files = []
    for kind, counts in members:
        limit = np.iinfo(np.dtype(kind)).max
        bins = np.array([9] + [min(c, limit) for c in counts] + [9], dtype=kind)
        files.append(snapshot_format.RawSnapshot({}, None, np.zeros(0), bins,
                                                 drift_rows=[3, 4], drift_span=(1, 7)))
    expected = files[0].bins[1:7].astype(np.int64)
    for raw in files[1:]:
        expected += raw.bins[1:7]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(merge, "MAX_GRID_CELLS", grid_cells)
        block, rows = merge._summed_drift(files)
    assert block.dtype == np.int64 and block.tolist() == expected.tolist()
    assert rows == [3 * len(files), 4 * len(files)]


# --- drift windows from settings checked once -------------------------------------------------

def _held(window: DriftWindow) -> dict:
    """Everything a window holds but its lock (a new one each)."""
    held = {name: value for name, value in vars(window).items() if name != "_lock"}
    for name in ("_ids", "_counts", "_rows"):
        held[name] = (held[name].dtype, held[name].shape, held[name].tolist())
    held["layout"] = held["layout"].sizes.tolist()
    return held


def _built(make, *args) -> tuple:
    try:
        return ("window", _held(make(*args)))
    except (ValueError, TypeError) as exc:
        return ("refused", type(exc).__name__, str(exc))


SETTINGS = [((2, 3), 60.0, 6), ((10,) * 50, 3600.0, 6), ((1,), 1e-12, 6), ((4,), 60.0, 0),
            ((4,), 60.0, 1001), ((4,), float("nan"), 6), ((4,), float("inf"), 6),
            ((2**20,), 3600.0, 100), ((4,), 60, 6), ((4,), 60.0, True), ((4,), 60.0, 6.0),
            ((0,), 60.0, 6), ((4,), -1.0, 6), ((4,), 2**1100, 6)]


@pytest.mark.parametrize("bins, max_age, age_buckets", SETTINGS)
def test_an_empty_window_is_the_constructors_and_refused_alike(bins, max_age, age_buckets):
    expected = _built(lambda *a: DriftWindow(layout_of(bins), max_age_seconds=max_age,
                                             age_buckets=age_buckets))
    assert _built(DriftWindow.empty, bins, max_age, age_buckets) == expected
    # Again, from the settings remembered by the first call.
    window = _built(DriftWindow.empty, bins, max_age, age_buckets)
    assert window == expected
    if expected[0] == "window":
        made = DriftWindow.empty(bins, max_age, age_buckets)
        made.add(np.ones(sum(bins), dtype=np.int64), rows=2, now=1000.0)
        again = DriftWindow.empty(bins, max_age, age_buckets)  # holds nothing of the first
        assert again.counts(now=1000.0)[1] == 0 and made.counts(now=1000.0)[1] == 2


def test_remembered_window_settings_stay_bounded():
    for age_buckets in range(1, 200):
        DriftWindow.empty((3,), 600.0, age_buckets)
        assert len(drift_window._ACCEPTED_WINDOWS) <= drift_window.MAX_ACCEPTED_WINDOWS


def test_a_scrape_builds_its_windows_without_the_checked_constructor(monkeypatch):
    # Before, every merged window was made by DriftWindow(...), its checks included.
    # A cache of its own: other tests (the bound's) may have filled the shared one.
    monkeypatch.setattr(drift_window, "_ACCEPTED_WINDOWS", {})
    raws = [snapshot_format.decode(blob) for blob in deployment(layouts=2, workers=4)]
    first = merge.merge_view(raws, NOW)
    made = []
    init = DriftWindow.__init__

    def counted(self, *args, **kwargs):
        made.append(args)
        init(self, *args, **kwargs)

    monkeypatch.setattr(DriftWindow, "__init__", counted)
    view = merge.merge_view(raws, NOW)
    assert made == []
    for state, before in zip(view.states, first.states):
        for window, alike in ((state.extras["drift"].features, before.extras["drift"].features),
                              (state.extras["drift"].outputs, before.extras["drift"].outputs)):
            assert _held(window) == _held(alike)
            assert window._lock is not alike._lock
    assert len(view.states) == len(MODELS)
