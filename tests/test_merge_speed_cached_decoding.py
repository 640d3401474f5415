"""The multi-worker read and merge, made faster, serve the very text they served before.

Decoding now checks drift bucket ids once per distinct set (cached by layout and ids),
window rows as Python lists, and the merge adds drift bins of every layout at once, builds
windows from one block, and folds each model's identities once per change. Each of those
must leave the merged ``/metrics`` text, the errors reported, the folded states and the
refusal of damaged files exactly as they were: random workers (missing models, other
layouts, other and equal drift buckets, clocks behind and ahead, exited workers) and
damaged tables are merged here and by the modules as they were before (the changed files
at ``ORIGINAL``, over the rest of this tree, in a process of their own), and compared.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.core.state import ModelState
from inferwatch.multiproc import merge, snapshot_format
from inferwatch.multiproc.snapshot_format import Snapshot, encode, model_dict
from inferwatch.quality.reference import Reference
from inferwatch.quality.tracker import FeatureTracker
from snapshot_frames import REFERENCE, framed, sections

# The commit before the read and merge were made faster, and the files that changed.
ORIGINAL = "e3622726c4b412e651a24b26d6075d6f82771711"
CHANGED = ("multiproc/snapshot_format.py", "multiproc/merge.py", "multiproc/snapshot_layout.py",
           "multiproc/merge_plan.py")
ROOT = Path(__file__).resolve().parent.parent
NOW = 1_700_000_000.0
BUCKET = 600.0  # a drift window's bucket (an hour in six), and a summary's (600 s in five: 120)
OTHER_REFERENCE = Reference.from_data({"x": np.random.default_rng(5).normal(2.0, 1.0, 400),
                                       "color": ["red", "green", "blue", "red"] * 100},
                                      predictions=np.random.default_rng(6).random(400))

# Run in both processes: what a scrape of `blobs` gives, everything a reader can see.
SCRAPE = '''
import json
from inferwatch.core.encode import Encoder
from inferwatch.multiproc.merge import merge_view
from inferwatch.multiproc.snapshot_format import SnapshotError, decode, model_dicts


def scrape(blobs, now, exited):
    raws, decoded = [], []
    for blob in blobs:
        try:
            raw = decode(blob)
        except SnapshotError as exc:
            decoded.append(("refused", str(exc)))
            continue
        try:
            folded = json.dumps(model_dicts(raw), sort_keys=True, default=repr)
        except Exception as exc:  # what a fold of this file meets
            folded = f"{type(exc).__name__}: {exc}"
        decoded.append(("read", folded, raw.drift_ids, raw.drift_rows, raw.drift_span,
                        sorted((at, list(ids), rows, start)
                               for at, (ids, rows, start) in raw.drift.items()),
                        raw.windows, raw.window_starts, raw.window_sums))
        raws.append(raw)
    errors = []
    try:
        view = merge_view(raws, now, on_error=lambda exc: errors.append(
                              f"{type(exc).__name__}: {exc}"),
                          without_gauges={id(raw) for i, raw in enumerate(raws) if i in exited})
        page = Encoder().page()
        view.encode_into(page, now)
        text = page.text()
    except Exception as exc:
        text = f"raised {type(exc).__name__}: {exc}"
    return decoded, text, errors
'''

SERVER = SCRAPE + '''
import pickle, struct, sys
import inferwatch
assert inferwatch.__file__.startswith(sys.argv[1]), inferwatch.__file__
stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
while head := stdin.read(8):
    request = pickle.loads(stdin.read(struct.unpack(">Q", head)[0]))
    answer = pickle.dumps(scrape(*request))
    stdout.write(struct.pack(">Q", len(answer)) + answer)
    stdout.flush()
'''

namespace: dict = {}
exec(SCRAPE, namespace)  # the same code as the other process runs
scrape = namespace["scrape"]


class Original:
    """The modules as they were, in a process of their own, answering scrapes."""

    def __init__(self, tree: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, str(tree)], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def scrape(self, blobs: list[bytes], now: float, exited: frozenset[int]) -> tuple:
        request = pickle.dumps((blobs, now, exited))
        self.process.stdin.write(struct.pack(">Q", len(request)) + request)  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]
        head = self.process.stdout.read(8)  # type: ignore[union-attr]
        assert head, "the original modules' process died"
        return pickle.loads(self.process.stdout.read(struct.unpack(">Q", head)[0]))  # type: ignore[union-attr]


# Modules split since those commits: (the module they were in, the module that holds them
# now, the names that moved). The original files import those names from where they were.
SPLIT_SINCE = (
    ("quality/drift.py", "quality/drift_window.py",
     ("WINDOW_FORMAT", "WINDOW_VERSION", "MAX_AGE_BUCKETS", "MAX_WINDOW_CELLS",
      "MAX_ACCEPTED_WINDOWS", "DriftWindow", "layout_of")),
    ("quality/drift.py", "quality/bin_layout.py", ("BinLayout",)),
)

# Names added to a module since those commits that this tree's other modules import from
# it: (the module, the name, its definition for an original file that lacks it).
ADDED_SINCE = (
    ("multiproc/store.py", "DirectoryUnreadable",
     "class DirectoryUnreadable(OSError):\n    pass\n"),
    ("multiproc/snapshot_format.py", "OtherFormat",
     "class OtherFormat(SnapshotError):\n    pass\n"),
)


def _dotted(name: str) -> str:
    return "inferwatch." + name.removesuffix(".py").replace("/", ".")


def original_modules(tmp_path: Path, commit: str, changed: tuple[str, ...]):
    """A process answering scrapes with this tree's modules, the `changed` ones as they were
    at `commit`; skips where git or that commit is missing."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to read the original modules")
    shutil.copytree(ROOT / "exporter" / "inferwatch", tmp_path / "inferwatch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in changed:
        shown = subprocess.run(["git", "-C", str(ROOT), "show",
                                f"{commit}:exporter/inferwatch/{name}"],
                               capture_output=True, check=False)
        if shown.returncode:
            pytest.skip(f"commit {commit} is not in this checkout")
        (tmp_path / "inferwatch" / name).write_bytes(shown.stdout)
    for name, added, definition in ADDED_SINCE:
        module = tmp_path / "inferwatch" / name
        if name in changed and f"class {added}(" not in module.read_text():
            with module.open("a") as original_module:
                original_module.write(f"\n\n{definition}")
    for was_in, now_in, names in SPLIT_SINCE:
        if was_in in changed:
            # The original module holds them: this tree's modules take them from it, or two
            # classes of one name (a window and another's layout) would meet.
            (tmp_path / "inferwatch" / now_in).write_text(
                f"from {_dotted(was_in)} import *  # noqa: F403\n")
        else:
            with (tmp_path / "inferwatch" / was_in).open("a") as module:
                module.write(f"\nfrom {_dotted(now_in)} import {', '.join(names)}\n")
    server = Original(tmp_path)
    yield server
    server.process.stdin.close()  # type: ignore[union-attr]
    server.process.wait(timeout=30)


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory):
    """This tree with the changed files as they were at ORIGINAL."""
    yield from original_modules(tmp_path_factory.mktemp("original"), ORIGINAL, CHANGED)


# --- random workers ---------------------------------------------------------------------------

MODELS = ("fraud", "churn", "spam")
model_strategy = st.fixed_dictionaries({
    "requests": st.integers(0, 50),
    "errors": st.sampled_from(["", "ValueError", "KeyError"]),  # other layouts
    # One bucket layout: the original modules dropped a series laid out otherwise, which is
    # now converted to the newest worker's buckets (tests/test_multiproc_fold_caps_buckets.py).
    "bounds": st.sampled_from([(0.1, 1.0)]),
    "ages": st.lists(st.integers(-1, 6), max_size=3),  # summary buckets ago
    # Mixed references are chosen between since the original modules were kept: see
    # test_multiproc_reference_reload.
    "drift": st.sampled_from(["none", "same"]),
    # (buckets ago, rows): negative is a clock ahead; few distinct ages, so equal ids
    "batches": st.lists(st.tuples(st.integers(-2, 7), st.integers(1, 9)), max_size=3),
    "loaded_at": st.sampled_from([NOW - 100, NOW - 50]),
    "task": st.sampled_from(["auto", "classification"]),
    "in_flight": st.integers(0, 3),
})
worker_strategy = st.fixed_dictionaries({
    "models": st.dictionaries(st.sampled_from(MODELS), model_strategy, max_size=3),
    "written": st.sampled_from([0.0, -1.0, -130.0, -700.0, 30.0]),  # seconds from NOW
})


def model_state(name: str, spec: dict, seed: int) -> ModelState:
    rng = np.random.default_rng(seed)
    state = ModelState(name, "1", info={"framework": "sklearn", "task": spec["task"]},
                       loaded_at=spec["loaded_at"])
    state.inc("inferwatch_requests_total", ("ok",), spec["requests"])
    if spec["errors"]:
        state.inc("inferwatch_errors_total", (spec["errors"],), 2)
    hist = state.histogram("inferwatch_request_duration_seconds", (), spec["bounds"])
    hist.observe(rng.random(5))
    hist.exemplar(0.05, f"trace{seed}", NOW)
    for ago in spec["ages"]:
        state.summary("inferwatch_prediction", ("value",)).observe(
            rng.lognormal(size=7), NOW - ago * 120.0)
    state.set_gauge("inferwatch_requests_in_flight", (), spec["in_flight"])
    if spec["drift"] != "none":
        tracker = FeatureTracker(REFERENCE if spec["drift"] == "same" else OTHER_REFERENCE)
        for ago, rows in spec["batches"]:
            at = NOW - ago * BUCKET
            tracker.check_inputs([{"x": float(v), "color": c} for v, c in zip(
                rng.normal(size=rows), rng.choice(["red", "blue", "pink"], size=rows))], at)
            tracker.check_predictions({"value": rng.random(rows)}, rows, at)
        state.extras["drift"] = tracker.drift
    return state


def blobs_of(workers: list[dict]) -> list[bytes]:
    blobs = []
    for index, worker in enumerate(workers):
        states = [model_state(name, spec, 100 * index + position)
                  for position, (name, spec) in enumerate(sorted(worker["models"].items()))]
        blobs.append(encode(Snapshot(models=[model_dict(s) for s in states],
                                     written_at=NOW + worker["written"],
                                     internal_errors={"multiproc_read": float(index)})))
    return blobs


def assert_alike(original: Original, blobs: list[bytes], now: float,
                 exited: frozenset[int]) -> None:
    expected = original.scrape(blobs, now, exited)
    found = scrape(blobs, now, exited)
    assert found[0] == expected[0]  # decoded, refused, folded alike
    assert found[1] == expected[1]  # the /metrics text, byte for byte
    assert found[2] == expected[2]  # the errors reported, in order
    assert scrape(blobs, now, exited) == expected  # again, from what the first one cached


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workers=st.lists(worker_strategy, min_size=1, max_size=5),
       repeat=st.lists(st.integers(0, 4), max_size=3),
       now_offset=st.sampled_from([0.0, 5.0, -700.0]),
       exited=st.frozensets(st.integers(0, 7), max_size=2),
       by_layout=st.booleans())
def test_the_merged_text_is_what_the_original_modules_give(original, workers, repeat,
                                                           now_offset, exited, by_layout):
    blobs = blobs_of(workers)
    blobs += [blobs[i] for i in repeat if i < len(blobs)]  # workers of one deployment alike
    with pytest.MonkeyPatch.context() as patch:
        if by_layout:  # as a scrape of more files than add safely as one block
            patch.setattr(merge, "MAX_SUMMED_FILES", 0)
        assert_alike(original, blobs, NOW + now_offset, exited)


def test_a_deployment_like_the_benchmark_merges_alike(original):
    # Many workers of few layouts, every drift window holding the same buckets: the path
    # the benchmark times (one block across layouts, windows built from it).
    spec = {"requests": 5, "errors": "", "bounds": (0.1, 1.0), "ages": [0, 1, 3],
            "drift": "same", "batches": [(0, 4), (1, 3), (3, 2)], "loaded_at": NOW - 100,
            "task": "auto", "in_flight": 1}
    workers = [{"models": {name: {**spec, "errors": error, "requests": index}
                           for name in MODELS}, "written": 0.0}
               for index, error in enumerate(["", "KeyError", "", "ValueError"] * 2)]
    assert_alike(original, blobs_of(workers), NOW, frozenset({7}))


# --- damaged tables -------------------------------------------------------------------------

# A number, or one relative to the bins the file holds (a run just fitting, or one past).
ODD_NUMBERS = st.one_of(
    st.sampled_from([-2, -1, 0, 1, 5, 6, 7, 599, 2**31, 2**53 - 1, 2**53, 2**62, 2**63 - 1,
                     -2**63]).map(lambda value: (0, value)),
    st.integers(-1, 1).map(lambda value: (1, value)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.lists(st.tuples(st.integers(0, 10**6), ODD_NUMBERS), min_size=1,
                        max_size=4),
       batches=st.lists(st.tuples(st.integers(0, 7), st.integers(1, 9)), max_size=4))
def test_damaged_window_rows_and_drift_ids_are_refused_with_the_same_errors(
        original, changes, batches):
    spec = {"requests": 3, "errors": "", "bounds": (0.1, 1.0), "ages": [0, 2],
            "drift": "same", "batches": batches, "loaded_at": NOW - 100, "task": "auto",
            "in_flight": 0}
    (good,) = blobs_of([{"models": {"fraud": spec, "spam": spec}, "written": 0.0}])
    parts = sections(good)
    table = np.frombuffer(parts["table"], dtype="<i8").copy()
    bins = len(parts["bins"]) // np.dtype(json.loads(parts["state"])["dtype"]).itemsize
    for position, (relative, value) in changes:
        table[position % table.size] = value + relative * bins
    damaged = framed({**parts, "table": table.astype("<i8").tobytes()})
    # Twice, and after the good one: a set of ids checked (and cached) must not let a
    # damaged copy through, nor a refused one keep a good one out.
    assert_alike(original, [damaged, good, damaged], NOW, frozenset())


def test_ids_in_one_slot_are_refused_after_a_good_file_of_that_layout_was_read(original):
    spec = {"requests": 3, "errors": "", "bounds": (0.1, 1.0), "ages": [0], "drift": "same",
            "batches": [(0, 2), (1, 3)], "loaded_at": NOW - 100, "task": "auto",
            "in_flight": 0}
    (good,) = blobs_of([{"models": {"fraud": spec}, "written": 0.0}])
    parts = sections(good)
    table = np.frombuffer(parts["table"], dtype="<i8").copy()
    features = 6  # after the summary's window row: the features window's ids (6 slots)
    table[features:features + 2] = [7, 13]  # 7 % 6 == 13 % 6: two buckets in one slot
    damaged = framed({**parts, "table": table.tobytes()})
    expected = original.scrape([good, damaged], NOW, frozenset())
    assert expected[0][1][0] == "refused"
    assert scrape([good, damaged], NOW, frozenset()) == expected


def test_module_caches_stay_bounded(monkeypatch):
    monkeypatch.setattr(snapshot_format, "MAX_DRIFT_SHAPES", 4)
    spec = {"requests": 3, "errors": "", "bounds": (0.1, 1.0), "ages": [0], "drift": "same",
            "batches": [(0, 2)], "loaded_at": NOW - 100, "task": "auto", "in_flight": 0}
    (good,) = blobs_of([{"models": {"fraud": spec}, "written": 0.0}])
    parts = sections(good)
    table = np.frombuffer(parts["table"], dtype="<i8").copy()
    for bucket in range(20):  # each file's buckets another set of ids: each one cached
        table[6] = bucket
        snapshot_format.decode(framed({**parts, "table": table.tobytes()}))
        assert len(snapshot_format._drift_shapes) <= 4
    monkeypatch.setattr(snapshot_format, "MAX_CACHED_IDS", 5)  # fewer than a window holds
    snapshot_format._drift_shapes.clear()
    table[6] = 99
    snapshot_format.decode(framed({**parts, "table": table.tobytes()}))
    assert not snapshot_format._drift_shapes
    plain = {**spec, "drift": "none"}
    for index in range(20):  # a model version coming and going on every scrape
        scrape(blobs_of([{"models": {f"model-{index}": plain}, "written": 0.0}]), NOW,
               frozenset())
        assert list(merge._folds) == [(f"model-{index}", "1")]  # the latest scrape's only


# --- the work a scrape does -------------------------------------------------------------------

def deployment(layouts: int, workers: int, loaded_at: float = NOW - 100) -> list[bytes]:
    """`workers` files of one clock, in `layouts` layouts (each worker saw other errors)."""
    spec = {"requests": 5, "errors": "", "bounds": (0.1, 1.0), "ages": [0], "drift": "same",
            "batches": [(0, 4), (1, 3)], "loaded_at": loaded_at, "task": "auto",
            "in_flight": 1}
    errors = ["", "KeyError", "ValueError", "TypeError"][:layouts]
    return blobs_of([{"models": {name: {**spec, "errors": errors[index % layouts]}
                                 for name in MODELS}, "written": 0.0}
                     for index in range(workers)])


def counting(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    calls = [0]
    method = getattr(owner, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return method(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_drift_bins_of_one_clock_add_as_one_block_whatever_the_layouts(monkeypatch):
    # Before, each layout's files added into each window on their own: 4 layouts, 4 merges
    # of every window of every model on every scrape.
    from inferwatch.quality.drift_window import DriftWindow

    raws = [snapshot_format.decode(blob) for blob in deployment(layouts=4, workers=8)]
    merges = counting(monkeypatch, DriftWindow, "merge_buckets")
    view = merge.merge_view(raws, NOW)
    assert merges[0] == 2 * len(MODELS)  # features and outputs: one merge each
    expected = [snapshot_format.decode(blob) for blob in deployment(layouts=1, workers=8)]
    for state, alike in zip(view.states, merge.merge_view(expected, NOW).states):
        drift, other = state.extras["drift"], alike.extras["drift"]
        for mine, theirs in ((drift.features, other.features), (drift.outputs, other.outputs)):
            assert mine.to_dict() == theirs.to_dict()


def test_a_scrape_folds_only_the_identities_that_changed_since_the_last_one(monkeypatch):
    # Before, every scrape folded each distinct identity of every model again.
    blobs = deployment(layouts=2, workers=6)
    merge.merge_view([snapshot_format.decode(blob) for blob in blobs], NOW)
    folds = counting(monkeypatch, ModelState, "merge_identity_of")
    again = merge.merge_view([snapshot_format.decode(blob) for blob in blobs], NOW)
    assert folds[0] == 0
    assert [(s.info, s.loaded_at) for s in again.states] == [
        ({"framework": "sklearn", "task": "auto"}, NOW - 100)] * len(MODELS)
    reloaded = deployment(layouts=2, workers=1, loaded_at=NOW - 10)  # one worker reloaded
    merge.merge_view([snapshot_format.decode(blob) for blob in blobs + reloaded], NOW)
    assert folds[0] == len(MODELS)


def test_files_of_one_clock_have_their_drift_ids_checked_once(monkeypatch):
    # Before, every file's ids were checked window by window, in Python, on every read.
    blobs = deployment(layouts=1, workers=8)
    snapshot_format.decode(blobs[0])
    checks = counting(monkeypatch, snapshot_format, "_drift_shape")
    raws = [snapshot_format.decode(blob) for blob in blobs]
    assert checks[0] == 0
    assert len({raw.drift_ids for raw in raws}) == 1
