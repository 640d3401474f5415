"""Delayed ground truth as label pipelines really send it: plain lists of labels of mixed
types, generators of rows for models of several outputs, targets no error can be measured
against, labels that are not known yet."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch


def _results(scraper) -> tuple[float, float]:
    return (scraper.total("inferwatch_outcomes_total", result="correct"),
            scraper.total("inferwatch_outcomes_total", result="incorrect"))


def _unmatched(scraper) -> dict[str, float]:
    return {s.labels["reason"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_outcomes_unmatched_total"}


def _model(scraper, predicted, **options):
    wrapped = inferwatch.instrument(lambda x: predicted, name="m", version="1",
                                    registry=scraper.registry, **options)
    return wrapped, inferwatch.monitor("m", "1", registry=scraper.registry)


# --- a plain list of labels of mixed types ------------------------------------------------------

# Class index k as each source writes it; None stands for a label no class has (text).
_WRITERS = {"int": int, "float": float, "np.int64": np.int64, "np.float64": np.float64,
            "str": str, "bytes": lambda k: str(k).encode(), "unknown": None}


def _label(kind: str, k: int) -> object:
    writer = _WRITERS[kind]
    return "unknown" if writer is None else writer(k)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2),
                               st.sampled_from(sorted(_WRITERS))), min_size=1, max_size=10))
def test_a_plain_list_of_mixed_labels_is_judged_label_by_label(rows):
    """A list mixing numbers and text (``[1.0, "unknown"]``: a JSON column of class ids
    with a placeholder) was turned into text by numpy as a whole, so ``1.0`` read ``"1.0"``
    and never matched class 1: such rows were counted incorrect."""
    from conftest import Scraper

    rows = [*rows, (0, 0, "unknown")]  # at least one text label among the numbers
    scraper = Scraper(drain_interval=3600)
    try:
        predicted = np.array([k for k, _, _ in rows])
        labels = [_label(kind, truth) for _, truth, kind in rows]
        correct = sum(1 for k, truth, kind in rows if kind != "unknown" and truth == k)
        wrapped, mon = _model(scraper, predicted)
        wrapped(0, request_id="r-1")
        mon.record_outcome("r-1", labels)
        assert _results(scraper) == (correct, len(rows) - correct), labels
        assert _unmatched(scraper) == {}
    finally:
        scraper.registry.close()


def test_a_float_label_next_to_text_matches_its_class(scraper):
    wrapped, mon = _model(scraper, np.array([1, 0]))
    wrapped(0, request_id="r-1")
    mon.record_outcome("r-1", [1.0, "not-reviewed"])
    assert _results(scraper) == (1, 1)


def test_a_multi_output_classifier_row_of_a_float_and_text_matches(scraper):
    """The row ``[1.0, "spam"]`` of a (flag, category) classifier read ``"1.0"``."""
    wrapped, mon = _model(scraper, np.array([[1, "spam"], [0, "ham"]], dtype=object))
    wrapped(0, request_id="r-1")
    mon.record_outcome("r-1", [[1.0, "spam"], [0.0, "eggs"]])
    assert _results(scraper) == (3, 1)


# --- a generator of rows for a model of several outputs -------------------------------------------

def test_a_generator_of_rows_joins_a_multi_output_regressor(scraper):
    """README: a generator is one label per row. For a regressor of several outputs it was a
    ``shape_mismatch``: the rows were never judged."""
    wrapped, mon = _model(scraper, np.array([[1.0, 10.0], [2.0, 20.0]]))
    wrapped(0, request_id="r-1")
    table = [{"id": "r-1", "y": [1.5, 10.0]}, {"id": "r-1", "y": [2.0, 18.0]}]
    mon.record_outcome("r-1", (row["y"] for row in table))
    assert _unmatched(scraper) == {}
    assert scraper.value("inferwatch_outcome_error_count") == 4
    assert scraper.value("inferwatch_outcome_error_sum") == pytest.approx(2.5)


def test_a_generator_of_rows_joins_a_multi_output_classifier(scraper):
    wrapped, mon = _model(scraper, np.array([[1, 0], [0, 2]]))
    wrapped(0, request_id="r-1")
    mon.record_outcome("r-1", (row for row in [[1, 0], [0, 1]]))
    assert _unmatched(scraper) == {}
    assert _results(scraper) == (3, 1)


# --- a target no error can be measured against --------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(pairs=st.lists(st.tuples(st.floats(-1e6, 1e6),
                                st.one_of(st.floats(-1e6, 1e6),
                                          st.sampled_from([math.inf, -math.inf, "inf"]))),
                      min_size=1, max_size=12))
def test_every_row_of_a_regression_outcome_is_judged_or_counted(pairs):
    """An infinite target ("inf" in a CSV) was dropped without a trace: neither an error
    observed nor an unmatched row, so rows silently went missing from the counts."""
    from conftest import Scraper

    scraper = Scraper(drain_interval=3600)
    try:
        predicted = np.array([p for p, _ in pairs])
        wrapped, mon = _model(scraper, predicted, task="regression")
        wrapped(0, request_id="r-1")
        mon.record_outcome("r-1", [t for _, t in pairs])
        finite = [abs(p - t) for p, t in pairs if isinstance(t, float) and math.isfinite(t)]
        count = scraper.value("inferwatch_outcome_error_count") or 0
        assert count == len(finite)
        assert (scraper.value("inferwatch_outcome_error_sum") or 0) == pytest.approx(sum(finite))
        assert count + _unmatched(scraper).get("missing_label", 0) == len(pairs)
    finally:
        scraper.registry.close()


# --- a classifier fit on a float column ----------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2),
                               st.sampled_from(["int", "float", "np.int64", "np.float64",
                                                "str"])), min_size=1, max_size=10))
def test_a_classifier_with_float_classes_is_scored_on_its_labels(rows):
    """scikit-learn keeps ``classes_ == [0.0, 1.0, 2.0]`` for a model fit on a float column
    (a pandas column with a gap reads as float). Its classes were kept as "1.0" and every
    label, 1 and 1.0 alike (read as "1"), was counted incorrect."""
    from conftest import Scraper

    class Classifier:
        classes_ = np.array([0.0, 1.0, 2.0])

        def predict_proba(self, x):
            proba = np.full((len(rows), 3), 0.1)
            proba[np.arange(len(rows)), [k for k, _, _ in rows]] = 0.8
            return proba

    scraper = Scraper(drain_interval=3600)
    try:
        model = inferwatch.instrument(Classifier(), name="m", version="1",
                                      registry=scraper.registry)
        model.predict_proba(0, request_id="r-1")
        labels = [_label(kind, truth) for _, truth, kind in rows]
        inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1", labels)
        correct = sum(1 for k, truth, _ in rows if truth == k)
        assert _results(scraper) == (correct, len(rows) - correct), labels
    finally:
        scraper.registry.close()


def test_float_classes_keep_bools_and_other_numbers_apart(scraper):
    class Classifier:
        classes_ = np.array([0.0, 1.0, 10.0])

        def predict_proba(self, x):
            return np.array([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])

    model = inferwatch.instrument(Classifier(), name="m", version="1",
                                  registry=scraper.registry)
    model.predict_proba(0, request_id="r-1")
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome(
        "r-1", [True, False, 1])
    assert _results(scraper) == (2, 1)


# --- a smaller bound set while a drain remembers predictions --------------------------------------

def test_a_byte_bound_lowered_during_a_drain_is_kept_when_it_ends():
    """``mon.configure(outcome_cache_bytes=...)`` from another thread while a drain
    remembers its predictions: the drain compared with the bound it had started with, and
    the cache stayed many times over the new bound until the next prediction came."""
    from inferwatch.core.outcomes import OutcomeJoiner

    joiner = OutcomeJoiner(max_bytes=1_000_000)

    def drained():
        for i in range(50):
            yield f"r-{i}", ("approved",) * 20, None, 0.0
        # The drain's records are read before its lock is taken: a configure lands here.
        joiner.resize(joiner.max_entries, joiner.ttl_seconds, 5000)

    joiner.remember_many(drained())
    assert joiner.estimated_bytes <= 5000
    assert joiner.join("r-49", "approved", at=1.0).correct == 20
