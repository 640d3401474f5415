"""Delayed ground truth: joins by request id, bounded memory, bad and late outcomes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.outcomes import OutcomeJoiner
from strategies import ANY_OUTPUT


def test_classification_outcomes_from_the_request_api(scraper):
    mon = inferwatch.monitor("fraud", "1", registry=scraper.registry)
    for i, proba in enumerate([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]):
        with mon.request(request_id=f"r-{i}") as r:
            r.prediction(np.array([proba]))
    mon.drain()
    mon.record_outcome("r-0", 0, at=mon.outcomes._pending["r-0"][2] + 30.0)
    mon.record_outcome("r-1", 0)
    mon.record_outcome("r-2", "0")
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 2
    assert scraper.value("inferwatch_outcomes_total", result="incorrect") == 1
    assert scraper.value("inferwatch_outcome_delay_seconds_count") == 3
    assert scraper.value("inferwatch_outcome_delay_seconds_bucket", le="60.0") == 3


def test_regression_outcomes_from_request_id_keyword(scraper):
    def predict(x):
        return np.array([2.0 * x])

    wrapped = inferwatch.instrument(predict, name="eta", version="1", registry=scraper.registry)
    assert wrapped(3.0, request_id="a").tolist() == [6.0]  # the model never sees request_id
    wrapped(5.0, request_id="b")
    mon = inferwatch.monitor("eta", "1", registry=scraper.registry)
    mon.record_outcome("a", 7.0)
    mon.record_outcome("b", [10.0])
    assert scraper.value("inferwatch_outcome_error_count") == 2
    assert scraper.value("inferwatch_outcome_error_sum") == pytest.approx(1.0)


def test_request_id_passes_through_when_the_model_takes_it(scraper):
    seen = []

    def predict(x, request_id=None):
        seen.append(request_id)
        return 1.0

    wrapped = inferwatch.instrument(predict, name="m", version="1", registry=scraper.registry)
    wrapped(1, request_id="keep-me")
    assert seen == ["keep-me"]
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("keep-me", 1.0)
    assert scraper.value("inferwatch_outcome_error_sum") == 0.0


def test_request_id_function(scraper):
    wrapped = inferwatch.instrument(lambda payload: payload["score"], name="m", version="1",
                                    registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    mon.configure(request_id=lambda payload: payload["id"])
    wrapped({"id": "x-1", "score": 0.25})
    mon.record_outcome("x-1", 0.5)
    assert scraper.value("inferwatch_outcome_error_sum") == 0.25


def test_unmatched_outcomes_by_reason(scraper):
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    mon.configure(classes=["cat", "a", "b", "c"])  # strings become labels only when declared
    with mon.request(request_id="once") as r:
        r.prediction("cat")
    mon.record_outcome("never-seen", "cat")
    mon.record_outcome("once", "cat")
    mon.record_outcome("once", "cat")  # twice
    with mon.request(request_id="old") as r:
        r.prediction("cat")
    mon.drain()
    mon.record_outcome("old", "cat", at=mon.outcomes._pending["old"][2] + 30 * 86400)
    with mon.request(request_id="batch") as r:
        r.prediction(np.array(["a", "b", "c"]))
    mon.record_outcome("batch", ["a", "b"])  # two labels for three rows
    for reason in ("unknown_id", "duplicate", "expired", "shape_mismatch"):
        assert scraper.value("inferwatch_outcomes_unmatched_total", reason=reason) == 1, reason
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 1


def test_cache_memory_is_bounded():
    joiner = OutcomeJoiner(max_entries=1000)
    for i in range(100_000):
        joiner.remember(f"id-{i}", ("a",), None, at=float(i))
    assert len(joiner) == 1000
    assert joiner.join("id-0", "a", at=1e5).unmatched == "unknown_id"  # evicted
    assert joiner.join("id-99999", "a", at=1e5).correct == 1
    for i in range(5000):
        joiner.join(f"gone-{i}", "a", at=1e5)
    assert len(joiner._joined) <= 1000


@settings(max_examples=200, deadline=None)
@given(y_true=st.one_of(st.none(), st.text(), st.floats(), st.integers(),
                        st.lists(st.floats(), max_size=5), st.dictionaries(st.text(), st.text())),
       classes=st.booleans())
def test_any_outcome_value_is_counted_never_raised(y_true, classes):
    joiner = OutcomeJoiner()
    joiner.remember("r", ("a",) if classes else None, None if classes else (1.0,), at=0.0)
    joined = joiner.join("r", y_true, at=1.0)
    assert joined.unmatched in (None, "shape_mismatch")


def test_record_outcome_never_raises(scraper):
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)

    class Hostile:
        def __str__(self):
            raise RuntimeError("no string")

    mon.record_outcome(Hostile(), object())
    mon.record_outcome(None, None, at="not a time")
    assert scraper.total("inferwatch_internal_errors_total") >= 1


def test_every_row_of_a_batch_joins(scraper):
    wrapped = inferwatch.instrument(lambda x: np.arange(150) % 2, name="m", version="1",
                                    registry=scraper.registry)
    wrapped(1, request_id="batch")
    truth = np.arange(150) % 2
    truth[:10] = 1 - truth[:10]
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("batch", truth)
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 140
    assert scraper.value("inferwatch_outcomes_total", result="incorrect") == 10
    assert scraper.total("inferwatch_outcomes_unmatched_total") == 0


def test_rows_past_the_memory_bound_are_counted_unmatched():
    from inferwatch.core.outcome_sizes import entry_bytes

    hundred_rows = entry_bytes("big", tuple("1" * 100), None)
    joiner = OutcomeJoiner(max_bytes=hundred_rows)
    joiner.remember("big", tuple("1" * 150), None, at=0.0)
    assert joiner.estimated_bytes <= joiner.max_bytes
    joined = joiner.join("big", ["1"] * 150, at=1.0)
    assert (joined.correct, joined.rows_over_bound) == (100, 50)
    for i in range(50):
        joiner.remember(f"r-{i}", ("1",) * 10, None, at=0.0)
    assert joiner.estimated_bytes <= joiner.max_bytes
    assert joiner.join("r-49", ["1"] * 10, at=1.0).correct == 10
    assert joiner.join("r-0", ["1"] * 10, at=1.0).unmatched == "unknown_id"  # evicted


@pytest.mark.parametrize("kind, rows", [("class", 1), ("value", 1), ("class", 64),
                                        ("value", 64)])
def test_cache_memory_measured_by_tracemalloc_stays_under_max_bytes(kind, rows):
    from benchmarks.bench_outcome_cache import measure

    bound = 1 << 20
    measured, estimated, kept = measure(kind, rows, 5000, max_bytes=bound)
    assert measured <= estimated  # the estimate never falls short of the real memory
    assert measured * kept <= bound
    if rows == 64:
        assert kept < 5000  # the bytes, not the entry count, stopped the cache


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.tuples(st.booleans(), st.integers(0, 30), st.integers(1, 70)),
                      max_size=200),
       max_bytes=st.integers(1, 20_000))
def test_estimated_bytes_stay_within_max_bytes(steps, max_bytes):
    from inferwatch.core.outcome_sizes import entry_bytes

    joiner = OutcomeJoiner(max_entries=25, max_bytes=max_bytes)
    for remember, key, rows in steps:
        rid = f"r-{key}"
        if remember:
            joiner.remember(rid, tuple("a" * rows), None, at=0.0)
        else:
            joiner.join(rid, "a", at=1.0)
        pending = sum(entry[3] for entry in joiner._pending.values())
        assert joiner.estimated_bytes == pending + sum(joiner._joined.values())
        largest = max((entry[3] for entry in joiner._pending.values()), default=0)
        assert joiner.estimated_bytes <= max(max_bytes, largest)  # one entry is always kept
        assert len(joiner) <= 25 and len(joiner._joined) <= 25
    assert entry_bytes("r", ("a",), None) > 0


_ROWS = st.one_of(st.none(), st.lists(st.sampled_from(["a", "fraud", "é", "legit"]), max_size=40)
                  .map(tuple), st.lists(st.floats(allow_nan=False), max_size=40).map(tuple))


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.one_of(
           st.tuples(st.just("join"), st.integers(0, 30)),
           st.tuples(st.just("batch"), st.lists(st.tuples(st.integers(0, 30), _ROWS),
                                                max_size=40))), max_size=12),
       max_entries=st.integers(1, 30), max_bytes=st.integers(1, 20_000))
def test_remembering_many_at_once_ends_as_remembering_each_in_turn(steps, max_entries,
                                                                    max_bytes):
    """The drain remembers a drain's predictions in one call: the same entries, sizes,
    evictions and byte estimate as one remember() per prediction."""
    one_by_one = OutcomeJoiner(max_entries=max_entries, max_bytes=max_bytes)
    at_once = OutcomeJoiner(max_entries=max_entries, max_bytes=max_bytes)
    clock = 0.0
    for kind, arg in steps:
        clock += 1.0
        if kind == "join":
            assert one_by_one.join(f"r-{arg}", "a", clock) == at_once.join(f"r-{arg}", "a",
                                                                          clock)
            continue
        entries = []
        for key, rows in arg:
            classes = rows if rows and isinstance(rows[0], str) else None
            values = rows if rows and not isinstance(rows[0], str) else None
            entries.append((f"r-{key}", classes, values, clock))
        for entry in entries:
            one_by_one.remember(*entry)
        at_once.remember_many(iter(entries))
        assert list(at_once._pending.items()) == list(one_by_one._pending.items())
        assert list(at_once._joined.items()) == list(one_by_one._joined.items())
        # What a later outcome for a gone id is told: evicted (and when it was predicted)
        # or expired.
        assert list(at_once._evicted.items()) == list(one_by_one._evicted.items())
        assert at_once._expired == one_by_one._expired
        assert at_once.estimated_bytes == one_by_one.estimated_bytes


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(0, 4), min_size=1, max_size=30),
       kind=st.sampled_from(["int", "text", "float"]))
def test_a_drains_rows_split_back_into_each_calls_rows(sizes, kind):
    """What each request remembers for its outcome: its own rows, whether every call had
    one row (the one-pass split) or some had none or several."""
    from inferwatch.core.call_rows import split_rows
    from inferwatch.core.predictions import Prediction

    total = sum(sizes)
    if kind == "float":
        prediction = Prediction(rows=total, values={"score": np.arange(total) / 7.0})
        cells = [float(v) for v in np.arange(total) / 7.0]
    else:
        labels = np.arange(total) % 3
        prediction = Prediction(rows=total, classes=labels if kind == "int"
                                else np.array([f"c{v}" for v in labels], dtype=object))
        cells = [str(v) if kind == "int" else f"c{v}" for v in labels.tolist()]
    expected, offset = [], 0
    for size in sizes:
        part = tuple(cells[offset:offset + size])
        expected.append((None, part) if kind == "float" else (part, None))
        offset += size
    assert split_rows(prediction, sizes) == expected


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(ANY_OUTPUT, ANY_OUTPUT), min_size=1, max_size=5),
       st.sampled_from(["auto", "classification", "regression"]))
def test_any_outcome_of_any_prediction_is_joined_or_counted_never_a_fault(pairs, task):
    """Outcomes are user data: ragged lists, dicts, text against numbers. Each is joined or
    counted unmatched by reason, never an internal error or a warning."""
    import warnings

    from inferwatch import faults
    from inferwatch.core.registry import Registry

    registry = Registry(drain_interval=3600)
    answers = iter([prediction for prediction, _ in pairs])
    model = inferwatch.instrument(lambda x: next(answers), name="m", version="1", task=task,
                                  registry=registry)
    monitor = registry.monitor("m", "1")
    before = faults.internal_error_counts()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(len(pairs)):
            model(0, request_id=f"r{i}")
        for i, (_, truth) in enumerate(pairs):
            monitor.record_outcome(f"r{i}", truth)
        registry.drain()
    registry.close()
    assert faults.internal_error_counts() == before


def test_labels_not_known_yet_are_counted_apart_never_judged(scraper):
    """A batch's labels arrive with gaps (None, NaN, pd.NA): those rows were counted
    incorrect for a classifier and silently dropped for a regressor."""
    import pandas as pd

    class Classifier:
        classes_ = np.array([0, 1])

        def predict(self, x):
            return np.array([1, 1, 1, 1])

    classifier = inferwatch.instrument(Classifier(), name="churn", version="1",
                                       registry=scraper.registry)
    regressor = inferwatch.instrument(lambda x: np.array([1.5, 2.5]), name="price",
                                      version="1", registry=scraper.registry)
    churn = inferwatch.monitor("churn", "1", registry=scraper.registry)
    price = inferwatch.monitor("price", "1", registry=scraper.registry)
    for i, labels in enumerate([np.array([1.0, 1.0, np.nan, np.nan]),
                                pd.Series([1, pd.NA, 0, pd.NA], dtype="Int64"),
                                [1, None, 1, None]]):
        classifier.predict(np.zeros((4, 2)), request_id=f"b-{i}")
        churn.record_outcome(f"b-{i}", labels)
    regressor(0, request_id="r-1")
    price.record_outcome("r-1", [1.0, float("nan")])
    assert scraper.value("inferwatch_outcomes_total", model="churn", result="correct") == 5
    assert scraper.value("inferwatch_outcomes_total", model="churn", result="incorrect") == 1
    assert scraper.value("inferwatch_outcomes_unmatched_total", model="churn",
                         reason="missing_label") == 6
    assert scraper.value("inferwatch_outcome_error_count", model="price") == 1
    assert scraper.value("inferwatch_outcome_error_sum", model="price") == 0.5
    assert scraper.value("inferwatch_outcomes_unmatched_total", model="price",
                         reason="missing_label") == 1


@pytest.mark.parametrize(("predicted", "label", "options"), [
    (np.array(["spam"]), "spam", {"task": "classification"}),  # a string not declared
    (np.array([70001]), 70001, {"task": "classification"}),  # an id past the label bound
    (np.array([True]), 1, {}),  # scikit-learn counts True against 1 as correct
    (np.array([0]), False, {}),
])
def test_labels_no_prometheus_label_may_hold_are_still_joined(scraper, predicted, label,
                                                               options):
    """Such a prediction was never remembered: its outcome counted unknown_id."""
    model = inferwatch.instrument(lambda x: predicted, name="m", version="1",
                                  registry=scraper.registry, **options)
    model(0, request_id="r-1")
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1", label)
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 1
    assert scraper.total("inferwatch_outcomes_unmatched_total") == 0


def test_a_prediction_with_nothing_to_compare_is_unmatched_by_that_reason(scraper):
    model = inferwatch.instrument(lambda x: {"user": {"id": 3}}, name="m", version="1",
                                  registry=scraper.registry)
    model(0, request_id="r-1")
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1", 1)
    assert scraper.value("inferwatch_outcomes_unmatched_total",
                         reason="unsupported_prediction") == 1


@settings(max_examples=40, deadline=None)
@given(calls=st.lists(st.tuples(st.integers(1, 3), st.sampled_from([None, "nan", "inf"])),
                      min_size=2, max_size=12),
       task=st.sampled_from(["classification", "regression"]))
def test_one_call_with_nan_leaves_the_rest_of_its_drain_joinable(calls, task):
    """The drain stacks the 2-D results of its calls; one NaN among them made every call of
    that drain unjoinable (`unsupported_prediction`), not just its own. A regressor's call
    is judged per row: only the non-finite value goes unjudged."""
    from conftest import Scraper

    scraper = Scraper(drain_interval=3600)  # every call below waits for the same drain
    try:
        if task == "classification":
            class Model:
                classes_ = np.array(["a", "b"])

                def predict_proba(self, rows, request_id=None):
                    return rows
            method = "predict_proba"
        else:
            class Model:  # a regressor of two outputs
                def predict(self, rows, request_id=None):
                    return rows
            method = "predict"
        wrapped = inferwatch.instrument(Model(), name="m", version="1",
                                        registry=scraper.registry)
        results = []
        for i, (rows, bad) in enumerate(calls):
            out = np.tile([[0.2, 0.8]], (rows, 1))
            if bad is not None:
                out[rows - 1, 0] = float(bad)
            results.append(getattr(wrapped, method)(out, request_id=f"r{i}"))
        monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
        scraper.registry.drain()
        for i, result in enumerate(results):
            monitor.record_outcome(f"r{i}", ["b"] * len(result) if task == "classification"
                                   else np.tile([0.2, 0.8], (len(result), 1)))

        clean_rows = sum(rows for rows, bad in calls if bad is None)
        bad_calls = sum(1 for _, bad in calls if bad is not None)
        if task == "classification":
            # Per row too: a bad call's other rows are judged, its bad row (no top class)
            # counts one unsupported_prediction.
            judged = clean_rows + sum(rows - 1 for rows, bad in calls if bad)
            assert (scraper.value("inferwatch_outcomes_total", result="correct") or 0) == judged
            assert scraper.total("inferwatch_outcomes_unmatched_total",
                                 reason="unsupported_prediction") == bad_calls
            assert scraper.total("inferwatch_outcomes_unmatched_total") == bad_calls
        else:
            # Per row: a bad call's other rows, and its bad row's other output, are judged;
            # the bad value's target is counted unjudged, as one no error is measured for.
            judged = 2 * clean_rows + sum(2 * rows - 1 for rows, bad in calls if bad)
            assert (scraper.value("inferwatch_outcome_error_count") or 0) == judged
            assert (scraper.value("inferwatch_outcome_error_sum") or 0) == 0
            assert scraper.total("inferwatch_outcomes_unmatched_total",
                                 reason="missing_label") == bad_calls
        assert scraper.value("inferwatch_batch_size_count") == len(calls)
    finally:
        scraper.registry.close()
