"""A challenger scored next to its champion on outcomes that judge nothing yet (every label
not known yet, or a shape mismatch), and on outcomes whose time is not known: the shadow
comparison's outcome series read as the challenger's own join does."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.shadow_compare import Comparison
from inferwatch.core.state import ModelState

NOT_KNOWN_YET = [None, float("nan"), pd.NA]


def _shadowed(registry, predict, challenger_predict, **options):
    """Champion "m" v1 answering `predict`, and its thread-mode challenger v2."""
    champion = inferwatch.instrument(predict, name="m", version="1", registry=registry,
                                     **options)
    handle = inferwatch.shadow(champion, challenger_predict, version="2", registry=registry,
                               timeout=60.0)
    return champion, handle


def _challenger(scraper, name: str) -> dict[tuple, float]:
    """The challenger's samples of `name`, by their labels other than model and version."""
    return {tuple(sorted((k, v) for k, v in s.labels.items()
                         if k not in ("model", "model_version", "champion_version"))): s.value
            for s in scraper.samples()
            if s.name == name and s.labels.get("model_version") == "2" and s.value}


def _shadow_outcomes(scraper) -> dict[tuple[str, str], float]:
    return {(dict(k)["champion_result"], dict(k)["shadow_result"]): v
            for k, v in _challenger(scraper, "inferwatch_shadow_outcomes_total").items()}


def _classifier(scraper, *request_ids: str, **options):
    """A champion that answers "a" and a challenger that answers "b", each id called once,
    both predictions waiting for their outcome."""
    champion, handle = _shadowed(scraper.registry, lambda x: np.array(["a"] * len(x)),
                                 lambda x: np.array(["b"] * len(x)), classes=["a", "b"],
                                 **options)
    for request_id in request_ids:
        champion([[1.0]], request_id=request_id)
    assert handle.flush(60)
    scraper.registry.drain()
    return inferwatch.monitor("m", "1", registry=scraper.registry), handle


# --- an outcome that judges nothing leaves the pair waiting ------------------------------------

@pytest.mark.parametrize("not_yet", [*NOT_KNOWN_YET, ["a", "a", "a"]],
                         ids=["None", "nan", "pd.NA", "shape_mismatch"])
def test_an_outcome_that_judges_nothing_leaves_the_challenger_waiting_for_the_real_label(
        scraper, not_yet):
    """The first outcome took the pair out of the comparison: the real label sent later
    scored the challenger's own join but never the champion/challenger table."""
    mon, handle = _classifier(scraper, "r-1")
    mon.record_outcome("r-1", not_yet)
    scraper.registry.drain()
    assert _shadow_outcomes(scraper) == {}
    mon.record_outcome("r-1", "a")
    scraper.registry.drain()
    assert _shadow_outcomes(scraper) == {("correct", "incorrect"): 1}
    # The challenger's own join says the same of the same outcomes.
    assert _challenger(scraper, "inferwatch_outcomes_total") == {(("result", "incorrect"),): 1}
    handle.close()


def test_the_first_outcome_that_judges_a_row_is_final_for_the_comparison(scraper):
    mon, handle = _classifier(scraper, "r-1")
    mon.record_outcome("r-1", None)
    mon.record_outcome("r-1", "b")  # judged: final
    mon.record_outcome("r-1", "a")  # a duplicate, for the comparison too
    scraper.registry.drain()
    assert _shadow_outcomes(scraper) == {("incorrect", "correct"): 1}
    assert _challenger(scraper, "inferwatch_outcomes_total") == {(("result", "correct"),): 1}
    handle.close()


def test_a_batch_whose_labels_are_all_not_known_yet_waits_for_its_labels(scraper):
    champion, handle = _shadowed(scraper.registry, lambda x: np.array(["a"] * len(x)),
                                 lambda x: np.array(["a", "b", "a", "b"][:len(x)]),
                                 classes=["a", "b"])
    champion(np.zeros((4, 2)), request_id="batch")
    assert handle.flush(60)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    mon.record_outcome("batch", [None, float("nan"), pd.NA, None])
    mon.record_outcome("batch", ["a", "a", None, "b"])  # judges three rows, final
    mon.record_outcome("batch", ["a", "a", "a", "a"])  # a duplicate
    scraper.registry.drain()
    assert _shadow_outcomes(scraper) == {("correct", "correct"): 1,
                                         ("correct", "incorrect"): 1,
                                         ("incorrect", "correct"): 1}
    handle.close()


@pytest.mark.parametrize("not_yet", [*NOT_KNOWN_YET, [1.0, 2.0]],
                         ids=["None", "nan", "pd.NA", "shape_mismatch"])
def test_a_regressor_challenger_is_scored_by_the_target_that_comes_later(scraper, not_yet):
    champion, handle = _shadowed(scraper.registry, lambda x: np.full(len(x), 1.0),
                                 lambda x: np.full(len(x), 4.0))
    champion([[1.0]], request_id="e-1")
    assert handle.flush(60)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    mon.record_outcome("e-1", not_yet)
    mon.record_outcome("e-1", 2.0)
    scraper.registry.drain()
    errors = _challenger(scraper, "inferwatch_shadow_outcome_error_sum")
    assert errors == {(("side", "champion"),): 1.0, (("side", "shadow"),): 2.0}
    handle.close()


def test_a_regressor_of_two_outputs_waits_for_targets_that_are_not_known_yet(scraper):
    champion, handle = _shadowed(scraper.registry, lambda x: np.ones((len(x), 2)),
                                 lambda x: np.full((len(x), 2), 3.0))
    champion([[1.0]], request_id="e-1")
    assert handle.flush(60)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    mon.record_outcome("e-1", [[None, float("nan")]])
    mon.record_outcome("e-1", [[2.0, 5.0]])
    scraper.registry.drain()
    assert _challenger(scraper, "inferwatch_shadow_outcome_error_count") == {
        (("side", "champion"),): 2, (("side", "shadow"),): 2}
    handle.close()


# --- an outcome whose time is not known ---------------------------------------------------------

@pytest.mark.parametrize("at", [pd.NaT, float("nan"), "2026-01-01T10:00:00"],
                         ids=["NaT", "nan", "no_offset"])
def test_an_outcome_of_unknown_time_for_a_pair_past_the_ttl_is_not_scored(scraper, at):
    """NaN was past no ttl: however old, the pair was scored, while the champion's and the
    challenger's own joins counted the same outcome expired."""
    ttl = 0.2
    mon, handle = _classifier(scraper, "old", outcome_ttl_seconds=ttl)
    time.sleep(ttl * 1.5)  # the pair is now older than the ttl, however the threads ran
    mon.record_outcome("old", "a", at=at)
    scraper.registry.drain()
    assert _shadow_outcomes(scraper) == {}
    assert _challenger(scraper, "inferwatch_outcomes_unmatched_total") == {
        (("reason", "expired"),): 1}
    handle.close()


@pytest.mark.parametrize("at", [pd.NaT, float("nan")], ids=["NaT", "nan"])
def test_an_outcome_of_unknown_time_for_a_pair_within_the_ttl_is_scored(scraper, at):
    mon, handle = _classifier(scraper, "fresh")
    mon.record_outcome("fresh", "a", at=at)
    scraper.registry.drain()
    assert _shadow_outcomes(scraper) == {("correct", "incorrect"): 1}
    handle.close()


# --- the comparison alone, on any sequence of labels ------------------------------------------

_UNJUDGED = st.one_of(st.sampled_from(NOT_KNOWN_YET),
                      st.lists(st.sampled_from(["a", "b"]), min_size=2, max_size=4))


@settings(max_examples=60)
@given(waiting=st.lists(_UNJUDGED, max_size=4), label=st.sampled_from(["a", "b"]),
       repeats=st.lists(st.sampled_from(["a", "b", None]), max_size=3))
def test_only_the_first_outcome_that_judges_the_row_scores_it(waiting, label, repeats):
    comparison = Comparison("1", declared_classes=["a", "b"])
    comparison.add("predict", ["a"], ["b"], "r-1", at=0.0)
    state = ModelState("m", "2")
    comparison.fold_into(state, now=0.0)
    for y_true in waiting:
        assert comparison.score("r-1", y_true, at=1.0) is None
        assert comparison.knows("r-1")
    assert comparison.score("r-1", label, at=2.0) == (1, int(label == "a"))
    for y_true in repeats:
        assert comparison.score("r-1", y_true, at=3.0) is None
    comparison.fold_into(state, now=3.0)
    expected = ("correct", "incorrect") if label == "a" else ("incorrect", "correct")
    assert state.counters["inferwatch_shadow_outcomes_total"] == {("1", *expected): 1.0}


def test_a_nan_time_expires_by_the_pairs_age_now():
    comparison = Comparison("1", declared_classes=["a", "b"], ttl_seconds=60.0)
    comparison.add("predict", ["a"], ["b"], "old", at=time.time() - 120.0)
    comparison.add("predict", ["a"], ["b"], "fresh", at=time.time())
    comparison.fold_into(ModelState("m", "2"), now=time.time())
    assert comparison.score("old", "a", at=float("nan")) is None
    assert not comparison.knows("old")  # expired: gone, as with a known time
    assert comparison.score("fresh", "a", at=float("nan")) == (1, 1)


def test_a_target_read_as_nan_waits_and_one_past_the_float_range_is_final():
    """As the champion's join reads targets: text "nan" (a CSV's) is not known yet, and an
    int past the float range an infinite error, judged and never observed."""
    comparison = Comparison("1", task="regression")
    comparison.add("predict", np.array([1.0]), np.array([4.0]), "e-1", at=0.0)
    comparison.add("predict", np.array([1.0]), np.array([4.0]), "e-2", at=0.0)
    state = ModelState("m", "2")
    comparison.fold_into(state, now=0.0)
    assert comparison.score("e-1", "nan", at=1.0) is None
    assert comparison.score("e-1", "high", at=1.0) is None  # not a number: a mismatch
    assert comparison.score("e-1", "2.0", at=1.0) == (1, 0)
    assert comparison.score("e-2", 10 ** 400, at=1.0) == (1, 0)
    assert not comparison.knows("e-2") and comparison.score("e-2", 2.0, at=1.0) is None
    comparison.fold_into(state, now=1.0)
    errors = state.histograms["inferwatch_shadow_outcome_error"]
    assert (errors[("1", "champion")].count, errors[("1", "shadow")].sum) == (1, 2.0)
