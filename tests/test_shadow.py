"""Shadow models: a challenger scored next to its champion, off the request path.

Real scikit-learn models throughout. Counts are compared with what numpy computes from the
two models' own predictions on the same rows, and a misbehaving challenger (raising,
sleeping past its timeout, segfaulting in its child process) must leave the champion's
results and counts exactly as a twin champion without a shadow has them.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression, LogisticRegression

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.core.shadow_compare import Comparison
from inferwatch.core.state import ModelState
from shadow_models import AsyncModel, Gated, Raising, Segfaulting, Sleeping
from test_pushgateway import gateway  # noqa: F401  (a fixture)

N_CALLS = 40


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    y_shifted = (X[:, 0] + 0.5 * X[:, 1] > 0.8).astype(int)  # trained on other labels
    champion = LogisticRegression().fit(X, y)
    shifted = LogisticRegression().fit(X, y_shifted)
    target = X @ np.array([2.0, -1.0, 0.5]) + rng.normal(scale=0.1, size=600)
    regressor = LinearRegression().fit(X, target)
    return X, y, champion, shifted, regressor, target


def _clone(model):
    return pickle.loads(pickle.dumps(model))


def _counter(monitor, metric):
    return dict(monitor.state.counters.get(metric, {}))


def _shadowed(registry, model, challenger, version="2", **options):
    """A copy of `model` as the champion "fraud" v1 in `registry`, and its shadow
    `challenger` (a 60 s timeout), with `options` of shadow()."""
    champion = inferwatch.instrument(_clone(model), name="fraud", version="1",
                                     registry=registry)
    handle = inferwatch.shadow(champion, challenger, version=version, registry=registry,
                               timeout=60.0, **options)
    return champion, handle


def _run(champion, rows, **kwargs):
    return [champion.predict(row, **kwargs) for row in rows]


def test_an_identical_challenger_agrees_everywhere_with_zero_difference(data, registry):
    X, _, model, _, _, _ = data
    champion, handle = _shadowed(registry, model, _clone(model))
    for row in X[:N_CALLS]:
        champion.predict(row.reshape(1, -1))
        champion.predict_proba(row.reshape(1, -1))
    assert handle.flush(60)
    registry.drain()
    state = handle.monitor.state

    assert state.counters["inferwatch_shadow_compared_total"] == {("1",): 2 * N_CALLS}
    assert state.counters["inferwatch_shadow_sampled_total"] == {("1",): 2 * N_CALLS}
    assert state.counters["inferwatch_shadow_agreement_total"] == {
        ("1", "agree"): 2 * N_CALLS, ("1", "disagree"): 0}
    for output in ("0", "1"):  # each probability column: every difference exactly zero
        hist = state.histograms["inferwatch_shadow_difference"][("1", output)]
        assert hist.count == N_CALLS and hist.sum == 0.0
        zero = hist.bounds.tolist().index(0.0)
        assert hist.counts[zero] == N_CALLS  # all in (-0.01, 0]
    assert all(v == 0 for v in state.counters["inferwatch_shadow_dropped_total"].values())
    assert state.info["role"] == "shadow"
    assert registry.monitor("fraud").version == "1"  # the champion is still the latest
    assert registry.monitor("fraud", "1").state.info["role"] == "primary"
    handle.close()


def test_a_challenger_trained_on_shifted_labels_disagrees_where_it_predicts_otherwise(
        data, registry):
    X, _, model, shifted, _, _ = data
    champion, handle = _shadowed(registry, model, _clone(shifted), version="2-shifted")
    rows = X[:200]
    for start in range(0, len(rows), 20):  # batch calls: agreement counts rows
        champion.predict(rows[start:start + 20])
    assert handle.flush(60)
    registry.drain()
    state = handle.monitor.state

    ours, theirs = model.predict(rows), shifted.predict(rows)
    disagree = int(np.sum(ours != theirs))
    assert disagree > 10  # the shift is real
    assert state.counters["inferwatch_shadow_agreement_total"] == {
        ("1", "agree"): len(rows) - disagree, ("1", "disagree"): disagree}
    expected = {}
    for a, b in zip(ours.tolist(), theirs.tolist()):
        expected[("1", str(a), str(b))] = expected.get(("1", str(a), str(b)), 0) + 1
    assert state.counters["inferwatch_shadow_confusion_total"] == expected
    assert state.counters["inferwatch_shadow_compared_total"] == {("1",): 10}
    handle.close()


def _twins(model, challenger, **shadow_options):
    """A champion alone and a twin with `challenger` in its shadow, each in a registry."""
    alone_registry, shadowed_registry = Registry(), Registry()
    alone = inferwatch.instrument(_clone(model), name="fraud", version="1",
                                  registry=alone_registry)
    twin = inferwatch.instrument(_clone(model), name="fraud", version="1",
                                 registry=shadowed_registry)
    handle = inferwatch.shadow(twin, challenger, version="2", registry=shadowed_registry,
                               **shadow_options)
    return (alone_registry, alone), (shadowed_registry, twin), handle


def _assert_champions_identical(data, alone, twin, handle, calls=N_CALLS):
    (alone_registry, alone_model), (twin_registry, twin_model) = alone, twin
    X = data[0]
    for row in X[:calls]:
        a, b = alone_model.predict(row.reshape(1, -1)), twin_model.predict(row.reshape(1, -1))
        assert np.array_equal(a, b)
    for model in (alone_model, twin_model):  # the champion's own failure, untouched
        with pytest.raises(ValueError) as caught:
            model.predict(np.ones((1, 7)))
        assert "features" in str(caught.value)
    assert handle.flush(120)
    alone_registry.drain()
    twin_registry.drain()
    a = alone_registry.monitor("fraud", "1").state
    b = twin_registry.monitor("fraud", "1").state
    assert a.counters == b.counters
    assert a.counters["inferwatch_requests_total"][("ok",)] == calls
    assert a.counters["inferwatch_errors_total"] == {("ValueError",): 1}
    assert {m: {k: h.count for k, h in s.items()} for m, s in a.histograms.items()} == \
        {m: {k: h.count for k, h in s.items()} for m, s in b.histograms.items()}
    alone_registry.close()
    twin_registry.close()
    return handle.monitor.state


def test_a_raising_challenger_leaves_the_champion_exactly_as_without_it(data):
    alone, twin, handle = _twins(data[2], Raising(), timeout=60.0)
    state = _assert_champions_identical(data, alone, twin, handle)
    assert state.counters["inferwatch_errors_total"] == {("RuntimeError",): N_CALLS}
    assert state.counters["inferwatch_shadow_dropped_total"][("1", "error")] == N_CALLS
    assert state.counters["inferwatch_shadow_compared_total"] == {("1",): 0}
    handle.close()


def test_a_challenger_sleeping_past_its_timeout_leaves_the_champion_untouched(data):
    alone, twin, handle = _twins(data[2], Sleeping(_clone(data[2]), 0.05), timeout=0.01)
    state = _assert_champions_identical(data, alone, twin, handle, calls=10)
    assert state.counters["inferwatch_errors_total"] == {("ShadowTimeout",): 10}
    assert state.counters["inferwatch_shadow_dropped_total"][("1", "timeout")] == 10
    handle.close()


@pytest.mark.integration
def test_a_segfaulting_challenger_in_a_child_process_leaves_the_champion_untouched(data):
    alone, twin, handle = _twins(data[2], Segfaulting(), mode="process", timeout=60.0)
    state = _assert_champions_identical(data, alone, twin, handle, calls=3)
    assert state.counters["inferwatch_errors_total"] == {("ShadowCrashed",): 3}
    assert state.counters["inferwatch_shadow_dropped_total"][("1", "crashed")] == 3
    handle.close()


@pytest.mark.integration
def test_process_mode_compares_and_kills_a_child_past_its_timeout(data, registry):
    X, _, model, shifted, _, _ = data
    champion = inferwatch.instrument(_clone(model), name="fraud", version="1",
                                     registry=registry)
    fast = inferwatch.shadow(champion, _clone(shifted), version="2", mode="process",
                             timeout=60.0, registry=registry)
    slow = inferwatch.shadow(champion, Sleeping(_clone(model), 30.0), version="3",
                             mode="process", timeout=0.5, registry=registry)
    champion.predict(X[:50])
    assert fast.flush(120) and slow.flush(120)
    registry.drain()
    disagree = int(np.sum(model.predict(X[:50]) != shifted.predict(X[:50])))
    assert fast.monitor.state.counters["inferwatch_shadow_agreement_total"][
        ("1", "disagree")] == disagree
    assert slow.monitor.state.counters["inferwatch_shadow_dropped_total"][
        ("1", "timeout")] == 1
    assert slow.monitor.state.counters["inferwatch_errors_total"] == {("ShadowTimeout",): 1}
    fast.close()
    slow.close()


def test_a_full_queue_drops_and_counts_every_call_it_cannot_take(data, registry):
    X, _, model, _, _, _ = data
    champion = inferwatch.instrument(_clone(model), name="fraud", version="1",
                                     registry=registry)
    gated = Gated(_clone(model))
    handle = inferwatch.shadow(champion, gated, version="2", queue_size=3, timeout=60.0,
                               registry=registry)
    champion.predict(X[:1])
    assert gated.entered.wait(30)  # the worker holds call 1: the queue is empty
    for row in X[1:10]:
        champion.predict(row.reshape(1, -1))  # 3 queued, 6 dropped
    gated.gate.set()
    assert handle.flush(60)
    registry.drain()
    counters = handle.monitor.state.counters
    assert counters["inferwatch_shadow_sampled_total"] == {("1",): 10}
    assert counters["inferwatch_shadow_compared_total"] == {("1",): 4}
    assert counters["inferwatch_shadow_dropped_total"][("1", "queue_full")] == 6
    assert registry.monitor("fraud", "1").state.counters["inferwatch_requests_total"][
        ("ok",)] == 10
    handle.close()


def test_sampling_hands_a_share_of_calls_to_the_challenger(data, registry):
    X, _, model, _, _, _ = data
    champion, handle = _shadowed(registry, model, _clone(model), sample=0.25)
    for _ in range(800):
        champion.predict(X[:1])
    assert handle.flush(60)
    registry.drain()
    counters = handle.monitor.state.counters
    sampled = counters["inferwatch_shadow_sampled_total"][("1",)]
    assert 100 < sampled < 300  # 200 expected; binomial sd 12
    assert counters["inferwatch_shadow_compared_total"][("1",)] == sampled
    handle.close()


def test_outcomes_give_exact_accuracy_of_both_models_on_shared_requests(data, registry):
    X, y, model, shifted, _, _ = data
    champion, handle = _shadowed(registry, model, _clone(shifted))
    rows, truth = X[:120], y[:120].copy()
    truth[::7] ^= 1  # labels the champion gets wrong too
    for i, row in enumerate(rows):
        champion.predict(row.reshape(1, -1), request_id=f"r-{i}")
    assert handle.flush(60)
    mon = registry.monitor("fraud", "1")
    for i, label in enumerate(truth):
        mon.record_outcome(f"r-{i}", int(label))
    registry.drain()

    ours, theirs = model.predict(rows) == truth, shifted.predict(rows) == truth
    assert mon.state.counters["inferwatch_outcomes_total"] == {
        ("correct",): int(ours.sum()), ("incorrect",): int((~ours).sum())}
    assert handle.monitor.state.counters["inferwatch_outcomes_total"] == {
        ("correct",): int(theirs.sum()), ("incorrect",): int((~theirs).sum())}
    table = handle.monitor.state.counters["inferwatch_shadow_outcomes_total"]
    for c, s in ((True, True), (True, False), (False, True), (False, False)):
        key = ("1", "correct" if c else "incorrect", "correct" if s else "incorrect")
        assert table.get(key, 0) == int(np.sum((ours == c) & (theirs == s)))
    assert sum(table.values()) == len(rows)
    assert "inferwatch_outcomes_unmatched_total" not in handle.monitor.state.counters
    handle.close()


def test_rows_whose_label_is_not_known_yet_are_judged_for_neither_model(data, registry):
    X, y, model, shifted, _, _ = data
    champion, handle = _shadowed(registry, model, _clone(shifted))
    rows = X[:30]
    champion.predict(rows, request_id="batch")
    assert handle.flush(60)
    labels = [None if i % 3 == 0 else int(label) for i, label in enumerate(y[:30])]
    registry.monitor("fraud", "1").record_outcome("batch", labels)
    registry.drain()
    known = np.array([label is not None for label in labels])
    theirs = shifted.predict(rows)[known] == y[:30][known]
    assert handle.monitor.state.counters["inferwatch_outcomes_total"] == {
        ("correct",): int(theirs.sum()), ("incorrect",): int((~theirs).sum())}
    table = handle.monitor.state.counters["inferwatch_shadow_outcomes_total"]
    assert sum(table.values()) == int(known.sum())
    handle.close()


def test_regression_outcomes_score_both_absolute_errors(data, registry):
    X, _, _, _, regressor, target = data
    worse = LinearRegression().fit(X[:, :1], target)  # one feature: a weaker challenger

    class FirstFeature:
        def predict(self, rows):
            return worse.predict(np.asarray(rows)[:, :1])

    champion = inferwatch.instrument(_clone(regressor), name="eta", version="1",
                                     registry=registry)
    handle = inferwatch.shadow(champion, FirstFeature(), version="2", registry=registry,
                               timeout=60.0)
    for i, row in enumerate(X[:50]):
        champion.predict(row.reshape(1, -1), request_id=f"e-{i}")
    assert handle.flush(60)
    mon = registry.monitor("eta", "1")
    for i, value in enumerate(target[:50]):
        mon.record_outcome(f"e-{i}", float(value))
    registry.drain()
    errors = handle.monitor.state.histograms["inferwatch_shadow_outcome_error"]
    ours = np.abs(regressor.predict(X[:50]) - target[:50])
    theirs = np.abs(worse.predict(X[:50, :1]) - target[:50])
    assert errors[("1", "champion")].count == 50
    assert errors[("1", "champion")].sum == pytest.approx(ours.sum())
    assert errors[("1", "shadow")].sum == pytest.approx(theirs.sum())
    difference = handle.monitor.state.histograms["inferwatch_shadow_difference"][("1", "value")]
    assert difference.count == 50
    handle.close()


def test_the_event_log_holds_the_challengers_prediction_next_to_the_champions(
        data, registry, tmp_path):
    from inferwatch.events import EventLog

    X, _, model, shifted, _, _ = data
    events = EventLog(tmp_path / "events.jsonl")
    champion = inferwatch.instrument(_clone(model), name="fraud", version="1",
                                     registry=registry, events=events)
    handle = inferwatch.shadow(champion, _clone(shifted), version="2", registry=registry,
                               timeout=60.0)
    champion.predict(X[:4], request_id="batch-1")
    assert handle.flush(60)
    registry.drain()
    assert events.flush(30)
    records = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    shadow_events = [r for r in records if r.get("role") == "shadow"]
    assert len(shadow_events) == 1
    event = shadow_events[0]
    assert event["request_id"] == "batch-1" and event["champion_version"] == "1"
    assert event["prediction"] == shifted.predict(X[:4]).tolist()
    assert event["champion_prediction"] == model.predict(X[:4]).tolist()
    events.close()
    handle.close()


def test_the_comparison_series_merge_across_workers(data):
    from inferwatch.multiproc.merge import merge_view
    from inferwatch.multiproc.snapshot_format import Snapshot, decode, encode, model_dict

    X, _, model, shifted, _, _ = data
    states = []
    for part in (X[:30], X[30:100]):
        registry = Registry()
        champion, handle = _shadowed(registry, model, _clone(shifted))
        for row in part:
            champion.predict_proba(row.reshape(1, -1))
        assert handle.flush(60)
        registry.drain()
        states.append(handle.monitor.state)
        handle.close()
        registry.close()
    raws = [decode(encode(Snapshot(models=[model_dict(s)], written_at=1.0))) for s in states]
    (merged,) = merge_view(raws, 1.0).states
    disagree = int(np.sum(model.predict(X[:100]) != shifted.predict(X[:100])))
    assert merged.counters["inferwatch_shadow_agreement_total"][("1", "disagree")] == disagree
    assert merged.counters["inferwatch_shadow_compared_total"] == {("1",): 100}
    assert merged.histograms["inferwatch_shadow_difference"][("1", "1")].count == 100
    assert merged.summaries["inferwatch_shadow_absolute_difference"][("1", "1")] is not None
    assert merged.info["role"] == "shadow"


def test_bad_options_name_the_problem(data, registry):
    champion = inferwatch.instrument(_clone(data[2]), name="fraud", version="1",
                                     registry=registry)
    with pytest.raises(ValueError, match="sample must be in"):
        inferwatch.shadow(champion, data[3], version="2", sample=0.0, registry=registry)
    with pytest.raises(ValueError, match="mode must be one of"):
        inferwatch.shadow(champion, data[3], version="2", mode="fiber", registry=registry)
    with pytest.raises(ValueError, match="champion's version"):
        inferwatch.shadow(champion, data[3], version="1", registry=registry)
    with pytest.raises(TypeError, match="returned by inferwatch"):
        inferwatch.shadow(data[2], data[3], version="2", registry=registry)
    with pytest.raises(TypeError, match="picklable"):
        inferwatch.shadow(champion, Gated(data[2]), version="2", mode="process",
                          registry=registry)


LABELS = ["a", "b", "c", "d", "e", "\n", 'q"uote']
labels = st.lists(st.sampled_from(LABELS), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(pairs=st.lists(st.tuples(labels, labels), min_size=1, max_size=8),
       cap=st.integers(1, 8))
def test_agreement_and_confusion_count_every_row_under_any_class_cap(pairs, cap):
    state = ModelState("m", "2")
    # Strings become classes only when declared or in classes_, as in a model's own series.
    comparison = Comparison("1", max_classes=cap, declared_classes=LABELS)
    expected_agree = rows = compared = 0
    for champion, challenger in pairs:
        n = min(len(champion), len(challenger))
        comparison.add("predict", np.array(champion[:n], dtype=object),
                       np.array(challenger[:n], dtype=object), None, at=0.0)
        expected_agree += sum(a == b for a, b in zip(champion[:n], challenger[:n]))
        rows += n
        compared += 1
    comparison.fold_into(state, now=0.0)
    agreement = state.counters["inferwatch_shadow_agreement_total"]
    assert agreement.get(("1", "agree"), 0) == expected_agree
    assert sum(agreement.values()) == rows
    confusion = state.counters["inferwatch_shadow_confusion_total"]
    assert sum(confusion.values()) == rows
    champion_classes = {k[1] for k in confusion} - {"__other__"}
    assert len(champion_classes) <= cap
    assert state.counters["inferwatch_shadow_compared_total"] == {("1",): compared}
    # Calls folded one at a time count exactly what calls folded together count.
    one_by_one = ModelState("m", "2")
    alone = Comparison("1", max_classes=cap, declared_classes=LABELS)
    for champion, challenger in pairs:
        n = min(len(champion), len(challenger))
        alone.add("predict", np.array(champion[:n], dtype=object),
                  np.array(challenger[:n], dtype=object), None, at=0.0)
        alone.fold_into(one_by_one, now=0.0)
    for metric in ("inferwatch_shadow_agreement_total", "inferwatch_shadow_compared_total"):
        assert {k: v for k, v in one_by_one.counters[metric].items() if v} == \
            {k: v for k, v in state.counters[metric].items() if v}


@pytest.mark.integration
def test_a_batch_job_pushes_both_models_and_the_comparison(data, gateway):  # noqa: F811
    X, _, model, shifted, _, _ = data
    registry = Registry()
    champion, handle = _shadowed(registry, model, _clone(shifted))
    for start in range(0, 100, 10):
        champion.predict(X[start:start + 10])
    assert handle.flush(60)  # what a batch job does before it pushes
    inferwatch.push(gateway.address, "nightly", registry=registry)
    disagree = int(np.sum(model.predict(X[:100]) != shifted.predict(X[:100])))
    assert gateway.value("inferwatch_shadow_agreement_total", model="fraud", model_version="2",
                         champion_version="1", result="disagree") == disagree
    assert gateway.value("inferwatch_shadow_compared_total", model="fraud",
                         model_version="2") == 10
    assert gateway.value("inferwatch_requests_total", model="fraud", model_version="1",
                         outcome="ok") == 10
    assert gateway.value("inferwatch_model_info", model="fraud", model_version="2",
                         role="shadow") == 1
    handle.close()
    registry.close()


def _forked_child_compares(champion, handle, rows, conn) -> None:
    champion.predict(rows)
    handle.flush(60)
    handle.monitor.drain()
    conn.send(dict(handle.monitor.state.counters["inferwatch_shadow_agreement_total"]))


def test_a_forked_worker_starts_its_own_shadow_workers_and_counts_only_its_calls(data,
                                                                                 registry):
    import multiprocessing

    X, _, model, shifted, _, _ = data
    champion, handle = _shadowed(registry, model, _clone(shifted))
    champion.predict(X[:30])  # the parent's own call, compared in the parent
    assert handle.flush(60)
    context = multiprocessing.get_context("fork")
    parent_end, child_end = context.Pipe()
    child = context.Process(target=_forked_child_compares,
                            args=(champion, handle, X[30:50], child_end))
    child.start()
    assert parent_end.poll(120), "the forked child never answered"
    counts = parent_end.recv()
    child.join(30)
    expected = int(np.sum(model.predict(X[30:50]) != shifted.predict(X[30:50])))
    assert counts == {("1", "agree"): 20 - expected, ("1", "disagree"): expected}
    handle.close()


def test_undeclared_strings_are_not_compared_as_classes():
    """A plain function's strings are not class labels (issue 11): nothing to agree on."""
    state = ModelState("m", "2")
    comparison = Comparison("1", max_classes=10)
    comparison.add("predict", np.array(["secret-1"], dtype=object),
                   np.array(["secret-2"], dtype=object), None, at=0.0)
    comparison.fold_into(state, now=0.0)
    assert not any(state.counters.get("inferwatch_shadow_confusion_total", {}).values())
    assert "secret" not in str(state.counters)


@pytest.mark.parametrize("mode", ["thread", pytest.param("process", marks=pytest.mark.integration)])
def test_an_async_champion_is_shadowed_by_sync_and_async_challengers(data, registry, mode):
    """An async server's model: the challenger sees the awaited result, never a coroutine,
    and an async challenger is awaited in the background (in its child, in process mode)."""
    import asyncio

    X, _, model, shifted, _, _ = data
    champion = inferwatch.instrument(AsyncModel(_clone(model)), name="fraud", version="1",
                                     registry=registry)
    plain = inferwatch.shadow(champion, _clone(shifted), version="2", mode=mode,
                              timeout=60.0, registry=registry)
    awaited = inferwatch.shadow(champion, AsyncModel(_clone(shifted)), version="3", mode=mode,
                                timeout=60.0, registry=registry)

    async def serve() -> list:
        return [await champion.predict(row.reshape(1, -1)) for row in X[:30]]

    answers = asyncio.run(serve())
    assert [int(a[0]) for a in answers] == model.predict(X[:30]).tolist()
    assert plain.flush(120) and awaited.flush(120)
    registry.drain()
    disagree = int(np.sum(model.predict(X[:30]) != shifted.predict(X[:30])))
    assert disagree > 0
    for handle in (plain, awaited):
        counters = handle.monitor.state.counters
        assert counters["inferwatch_shadow_compared_total"] == {("1",): 30}
        assert counters["inferwatch_shadow_agreement_total"][("1", "disagree")] == disagree
        assert counters["inferwatch_requests_total"][("ok",)] == 30
        assert not counters.get("inferwatch_errors_total")
    champion_calls = registry.monitor("fraud", "1").state.counters["inferwatch_requests_total"]
    assert {k: v for k, v in champion_calls.items() if v} == {("ok",): 30}
    plain.close()
    awaited.close()


def test_an_async_challenger_past_its_timeout_is_cancelled_and_counted(data, registry):
    import asyncio

    X, _, model, _, _, _ = data
    champion = inferwatch.instrument(AsyncModel(_clone(model)), name="fraud", version="1",
                                     registry=registry)
    handle = inferwatch.shadow(champion, AsyncModel(_clone(model), seconds=30.0), version="2",
                               timeout=0.05, registry=registry)
    for row in X[:3]:
        asyncio.run(champion.predict(row.reshape(1, -1)))
    assert handle.flush(30)  # three timeouts of 0.05 s, not three sleeps of 30 s
    registry.drain()
    counters = handle.monitor.state.counters
    assert counters["inferwatch_shadow_dropped_total"][("1", "timeout")] == 3
    assert counters["inferwatch_errors_total"] == {("ShadowTimeout",): 3}
    from inferwatch.core import shadow_async

    workers = {thread.ident for thread in handle._threads}
    loops = [loop for ident, loop in shadow_async.loops.items() if ident in workers]
    assert len(loops) == 1  # the worker awaited its challenger on a loop of its own
    handle.close()
    for thread in handle._threads:
        thread.join(10)
    # Closed by its thread on the way out, not left to the garbage collector.
    assert loops[0].is_closed() and not workers & set(shadow_async.loops)
