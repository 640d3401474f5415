"""Shadow comparisons that lose a row on one side, and classifiers whose classes are floats.

A row either side holds with a NaN (or that no class may be) is left out of its call's
comparison alone, however many calls share the drain, however large they are, and whatever
the result's shape (arrays, dicts of outputs, DataFrames, rows of dicts). A classifier fit
on a float target (``classes_ == [0., 1.]``) predicts 0.0 / 1.0: those are its classes in
the comparison as in its own series. Counts are checked against a hand count of the rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.core.shadow_compare import Comparison
from inferwatch.core.state import ModelState


def _counts(state, metric):
    return {k: v for k, v in state.counters.get(metric, {}).items() if v}


def _compared(state):
    return state.counters.get("inferwatch_shadow_compared_total", {}).get(("1",), 0)


def _incomparable(state):
    return state.counters.get("inferwatch_shadow_dropped_total", {}).get(
        ("1", "incomparable"), 0)


def _difference_rows(state, output="value"):
    hist = state.histograms.get("inferwatch_shadow_difference", {}).get(("1", output))
    return 0 if hist is None else hist.count


def _agreement(state):
    agreement = state.counters.get("inferwatch_shadow_agreement_total", {})
    return agreement.get(("1", "agree"), 0), agreement.get(("1", "disagree"), 0)


def _fold(pairs, method="predict", **kwargs):
    """Every pair waiting for one drain, folded at once."""
    comparison = Comparison("1", **kwargs)
    for i, (champion, shadow) in enumerate(pairs):
        comparison.add(method, champion, shadow, f"r-{i}", at=0.0)
    state = ModelState("m", "2")
    comparison.fold_into(state, now=0.0)
    return comparison, state


# --- a lost row among many rows ----------------------------------------------------------------

def test_one_nan_row_among_more_rows_than_were_ever_checked_leaves_out_only_its_row():
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(150):
        ours = rng.normal(size=100)
        theirs = ours + 0.5
        if i == 5:
            theirs[0] = np.nan
        pairs.append((ours, theirs))
    comparison, state = _fold(pairs)
    assert (_compared(state), _incomparable(state)) == (150, 0)
    assert _difference_rows(state) == 150 * 100 - 1
    # The call that lost a row is still scored on its other rows, the NaN row left out.
    assert comparison.score("r-5", pairs[5][0], at=1.0) == (99, 0)
    assert comparison.score("r-6", pairs[6][0], at=1.0) == (100, 0)


def _proba(rng, rows):
    p = rng.uniform(size=rows)
    return np.stack([p, 1 - p], axis=1)


@pytest.mark.parametrize("calls,rows", [(3, 5_000), (1, 20_000)])
def test_a_probability_row_lost_in_a_large_drain_leaves_the_other_rows_compared(calls, rows):
    rng = np.random.default_rng(1)
    pairs = []
    for i in range(calls):
        ours = _proba(rng, rows)
        theirs = ours.copy()
        theirs[:10] = theirs[:10, ::-1]  # ten rows the challenger answers the other class
        if i == calls - 1:
            theirs[rows // 2] = np.nan
            ours[rows // 3] = [0.7, 0.7]  # no distribution: the champion's row is lost
        pairs.append((ours, theirs))
    _, state = _fold(pairs, method="predict_proba", champion_classes=lambda: [0, 1],
                     shadow_classes=lambda: [0, 1])
    assert (_compared(state), _incomparable(state)) == (calls, 0)
    flipped = int(sum(((ours[:10, 1] > ours[:10, 0]) != (ours[:10, 0] > ours[:10, 1])).sum()
                      for ours, _ in pairs))
    assert _agreement(state) == (calls * rows - 2 - flipped, flipped)


_ROW = st.sampled_from(["ok", "nan", "inf", "out_of_range", "sum"])


def _spoiled(row: np.ndarray, how: str) -> np.ndarray:
    return {"ok": row, "nan": np.array([np.nan, 0.5]), "inf": np.array([np.inf, 0.0]),
            "out_of_range": np.array([1.5, -0.5]), "sum": np.array([0.6, 0.6])}[how]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_ROW, _ROW), min_size=1, max_size=60), st.integers(1, 4))
def test_only_rows_both_sides_hold_whole_are_compared(rows, calls):
    """Whichever rows either side loses, and however the drain's calls split them, every
    row both sides hold whole is compared and no other."""
    rng = np.random.default_rng(len(rows))
    ours_all, theirs_all = _proba(rng, len(rows)), _proba(rng, len(rows))
    for i, (our_how, their_how) in enumerate(rows):
        ours_all[i] = _spoiled(ours_all[i], our_how)
        theirs_all[i] = _spoiled(theirs_all[i], their_how)
    cuts = np.linspace(0, len(rows), calls + 1).astype(int)
    pairs = [(ours_all[a:b], theirs_all[a:b]) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    _, state = _fold(pairs, method="predict_proba", champion_classes=lambda: [0, 1],
                     shadow_classes=lambda: [0, 1])
    whole = [i for i, (a, b) in enumerate(rows) if a == b == "ok"]
    agree = sum(int((ours_all[i, 1] > ours_all[i, 0]) == (theirs_all[i, 1] > theirs_all[i, 0]))
                for i in whole)
    assert _agreement(state) == (agree, len(whole) - agree)
    holding = sum(1 for a, b in zip(cuts[:-1], cuts[1:])
                  if any(rows[i] == ("ok", "ok") for i in range(a, b)))
    assert _compared(state) == holding
    assert _incomparable(state) == len(pairs) - holding


# --- named outputs ---------------------------------------------------------------------------

def _with_nan(values, row=1):
    values = np.array(values, dtype=float)
    values[row] = np.nan
    return values


_X = np.arange(4.0)
NAMED = {
    "dict": (lambda x: {"price": x, "eta": x * 2},
             lambda x: {"price": _with_nan(x), "eta": x * 2}),
    "dataframe": (lambda x: pd.DataFrame({"price": x, "eta": x * 2}),
                  lambda x: pd.DataFrame({"price": _with_nan(x), "eta": x * 2})),
    "records": (lambda x: [{"price": v, "eta": 2 * v} for v in x],
                lambda x: [{"price": np.nan if i == 1 else v, "eta": 2 * v}
                           for i, v in enumerate(x)]),
    "dict, the challenger's outputs in another order": (
        lambda x: {"price": x, "eta": x * 2},
        lambda x: {"eta": x * 2, "price": _with_nan(x)}),
}


@pytest.mark.parametrize("shape", list(NAMED))
@pytest.mark.parametrize("side", ["champion", "challenger"])
def test_a_nan_in_one_row_of_named_outputs_leaves_out_that_row_alone(shape, side):
    ours, theirs = NAMED[shape]
    if side == "champion":
        ours, theirs = theirs, ours
    _, state = _fold([(ours(_X), theirs(_X))])
    assert (_compared(state), _incomparable(state)) == (1, 0)
    assert _difference_rows(state, "price") == 3
    assert _difference_rows(state, "eta") == 3


def test_named_outputs_that_lost_a_row_are_scored_on_their_other_rows():
    comparison, _ = _fold([({"price": _X, "eta": _X * 2},
                            {"price": _with_nan(_X), "eta": _X * 2 + 1})])
    assert comparison.score("r-0", [[v, 2 * v] for v in _X], at=1.0) is not None
    state = ModelState("m", "2")
    comparison.fold_into(state, now=1.0)
    errors = state.histograms["inferwatch_shadow_outcome_error"]
    # Three rows of two outputs a side; the challenger's eta is 1 off in each.
    assert (errors[("1", "champion")].count, errors[("1", "shadow")].count) == (6, 6)
    assert errors[("1", "shadow")].sum == 3


def test_labels_beside_a_lost_value_of_another_output_are_still_counted():
    ours = {"label": np.array(["fraud", "ok", "ok", "fraud"]), "score": _X}
    theirs = {"label": np.array(["fraud", "fraud", "ok", "ok"]), "score": _with_nan(_X, 2)}
    _, state = _fold([(ours, theirs)], declared_classes=["fraud", "ok"])
    assert (_compared(state), _incomparable(state)) == (1, 0)
    assert _agreement(state) == (1, 2)  # rows 0, 1 and 3; row 2 left out
    assert _difference_rows(state, "score") == 3


@pytest.mark.parametrize("shape", ["dict", "dataframe", "records"])
def test_named_outputs_end_to_end_through_a_shadow(shape):
    registry = Registry()
    ours, theirs = NAMED[shape]

    class Champion:
        def predict(self, x):
            return ours(x)

    class Challenger:
        def predict(self, x):
            return theirs(x)

    champion = inferwatch.instrument(Champion(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Challenger(), version="2", registry=registry)
    try:
        champion.predict(_X)
        assert handle.flush(10)
        registry.drain()
        state = handle.monitor.state
        assert (_compared(state), _incomparable(state)) == (1, 0)
        assert _difference_rows(state, "price") == 3
    finally:
        handle.close()
        registry.close()


# --- classes that are floats -----------------------------------------------------------------

def test_a_classifier_fit_on_a_float_target_is_compared_by_its_classes():
    ours = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    theirs = np.array([0.0, 1.0, 0.0, 0.0, 0.0])
    _, state = _fold([(ours, theirs)], champion_classes=lambda: [0.0, 1.0],
                     shadow_classes=lambda: [0.0, 1.0])
    assert _agreement(state) == (3, 2)
    assert _counts(state, "inferwatch_shadow_confusion_total") == {
        ("1", "0", "0"): 2, ("1", "1", "1"): 1, ("1", "1", "0"): 2}
    assert _difference_rows(state) == 0


def test_float_classes_against_integer_classes_of_the_same_values_agree():
    ours = np.array([0.0, 1.0, 1.0, 0.0])
    theirs = np.array([0, 1, 0, 0])
    _, state = _fold([(ours, theirs)], champion_classes=lambda: [0.0, 1.0],
                     shadow_classes=lambda: [0, 1])
    assert (_compared(state), _incomparable(state)) == (1, 0)
    assert _agreement(state) == (3, 1)


def test_float_predictions_of_a_model_without_classes_read_by_the_other_side_s_classes():
    """A challenger wrapper that names no classes, predicting the same 0.0 / 1.0 as its
    champion: compared as the champion's classes, not dropped for lack of a common output."""
    _, state = _fold([(np.array([0.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0]))],
                     champion_classes=lambda: [0.0, 1.0])
    assert (_compared(state), _incomparable(state)) == (1, 0)
    assert _agreement(state) == (2, 1)


def test_float_scores_of_a_classifier_stay_values():
    _, state = _fold([(np.array([0.2, 1.0]), np.array([0.4, 1.0]))],
                     champion_classes=lambda: [0.0, 1.0], shadow_classes=lambda: [0.0, 1.0])
    assert _agreement(state) == (0, 0)
    assert _difference_rows(state) == 2


def test_calls_a_drain_could_not_compare_together_are_compared_one_by_one():
    """One champion call answering a score among calls answering classes: that call alone
    is incomparable (values against classes), the others are compared."""
    ours = [np.array([0.0, 1.0]), np.array([0.5, 1.0]), np.array([1.0, 1.0])]
    theirs = [np.array([0, 1]), np.array([1, 1]), np.array([1, 0])]
    _, state = _fold(list(zip(ours, theirs)), champion_classes=lambda: [0.0, 1.0],
                     shadow_classes=lambda: [0, 1])
    assert (_compared(state), _incomparable(state)) == (2, 1)
    assert _agreement(state) == (3, 1)


@pytest.mark.parametrize("challenger_target", ["float", "int"])
def test_scikit_learn_classifiers_fit_on_a_float_target_agree_row_by_row(challenger_target):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 3))
    y = (X[:, 0] > 0).astype(float)
    champion_model = LogisticRegression().fit(X, y)
    noisy = X + rng.normal(scale=1.0, size=X.shape)
    challenger = LogisticRegression().fit(noisy, y if challenger_target == "float"
                                          else y.astype(int))
    registry = Registry()
    champion = inferwatch.instrument(champion_model, name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, challenger, version="2", registry=registry)
    try:
        ours = champion.predict(X[:50])
        assert handle.flush(10)
        registry.drain()
        theirs = challenger.predict(X[:50])
        state = handle.monitor.state
        assert (_compared(state), _incomparable(state)) == (1, 0)
        same = int((ours == theirs).sum())
        assert 0 < same < 50
        assert _agreement(state) == (same, 50 - same)
        assert _difference_rows(state) == 0
    finally:
        handle.close()
        registry.close()


# --- positive-class columns of single rows -----------------------------------------------------

def test_single_row_positive_class_columns_sharing_a_drain_are_compared_each():
    """[0.668] and [0.332] of two calls are two rows, not one row [p0, p1]."""
    p = 1 / (1 + np.exp(-0.7))
    pairs = [(np.array([p]), np.array([p + 0.02])), (np.array([1 - p]), np.array([0.6]))]
    comparison, state = _fold(pairs, method="predict_proba", champion_classes=lambda: [0, 1],
                              shadow_classes=lambda: [0, 1])
    assert (_compared(state), _incomparable(state)) == (2, 0)
    assert _agreement(state) == (1, 1)
    assert _difference_rows(state, "1") == 2
    assert comparison.score("r-0", [1], at=1.0) == (1, 1)
    assert comparison.score("r-1", [1], at=1.0) == (1, 0)


def test_positive_class_columns_of_several_rows_still_share_a_drain():
    rng = np.random.default_rng(2)
    pairs = [(rng.uniform(size=3), rng.uniform(size=3)) for _ in range(4)]
    _, state = _fold(pairs, method="predict_proba", champion_classes=lambda: [0, 1],
                     shadow_classes=lambda: [0, 1])
    assert (_compared(state), _incomparable(state)) == (4, 0)
    assert sum(_agreement(state)) == 12


def test_one_row_of_class_probabilities_per_call_is_not_joined_into_one_long_row():
    """A model naming no classes answers each call's single row as a 1-D array: two calls
    are two rows of three classes, not one row of six."""
    pairs = [(np.array([0.2, 0.3, 0.5]), np.array([0.5, 0.3, 0.2])),
             (np.array([0.1, 0.8, 0.1]), np.array([0.2, 0.7, 0.1]))]
    _, state = _fold(pairs, method="predict_proba")
    assert (_compared(state), _incomparable(state)) == (2, 0)
    assert _agreement(state) == (1, 1)
    assert _difference_rows(state, "2") == 2


def test_a_binary_row_given_whole_beside_positive_class_columns_keeps_its_reading():
    """[0.3, 0.7] is one row [p0, p1]; [0.9] and [0.2, 0.1, 0.6] are positive-class
    columns of one and three rows: four rows in all, whatever shares the drain."""
    pairs = [(np.array([0.3, 0.7]), np.array([0.6, 0.4])),
             (np.array([0.9]), np.array([0.8])),
             (np.array([0.2, 0.1, 0.6]), np.array([0.2, 0.9, 0.4]))]
    _, state = _fold(pairs, method="predict_proba", champion_classes=lambda: [0, 1],
                     shadow_classes=lambda: [0, 1])
    assert (_compared(state), _incomparable(state)) == (3, 0)
    assert _agreement(state) == (2, 3)
    assert _difference_rows(state, "1") == 5
