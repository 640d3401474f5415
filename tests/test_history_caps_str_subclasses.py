"""The status page's ring of recent totals and the label caps, used as servers use them:
label values that are ``str`` subclasses (str-mixin Enums, ``numpy.str_``), hostile ones,
and sample or lookup times that are not finite."""

from __future__ import annotations

import enum
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferwatch.catalogue import OTHER
from inferwatch.core.history import History
from inferwatch.core.label_caps import LabelCap
from inferwatch.core.state import ModelState


class Model(str, enum.Enum):
    FRAUD = "fraud"


class Action(str, enum.Enum):
    SHOWN = "shown"
    BLOCKED = "blocked"


class Spelled(str):
    """A str subclass that spells itself differently from its characters."""

    def __str__(self) -> str:
        return "spelled-" + str.__str__(self)


class Hostile(str):
    """A str subclass whose hash and equality raise."""

    def __hash__(self) -> int:
        raise RuntimeError("no hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")


# --- label caps: str subclasses --------------------------------------------------------


def test_a_str_enum_model_and_action_read_the_same_on_the_status_page_as_on_metrics(scraper):
    registry = scraper.registry
    monitor = registry.monitor(Model.FRAUD, "1")
    assert registry.monitor("fraud", "1") is monitor
    # The monitor's name is the label's text, not the Enum member.
    assert type(monitor.name) is str and monitor.name == "fraud"
    with monitor.request() as r:
        r.action(Action.SHOWN)
    with monitor.request() as r:
        r.action("shown")
    with monitor.request() as r:
        r.action(Action.BLOCKED)
    assert scraper.value("inferwatch_actions_total", model="fraud", action="shown") == 2.0
    assert scraper.value("inferwatch_actions_total", model="fraud", action="blocked") == 1.0
    # What the status page (and a worker's snapshot) reads: copies of the state.
    states, _ = registry.states_at()
    (state,) = states
    assert state.key == ("fraud", "1")
    assert state.counters["inferwatch_actions_total"] == {("shown",): 2.0, ("blocked",): 1.0}


@given(st.text(max_size=40), st.sampled_from([Spelled, np.str_]))
def test_a_str_subclass_is_stored_as_its_characters_in_plain_str(text, kind):
    plain, wrapped = LabelCap(5), LabelCap(5)
    expected = plain.fold(text)
    assert wrapped.stored_as(kind(text)) == expected
    folded = wrapped.fold(kind(text))
    assert type(folded) is str and folded == expected
    # The plain spelling then finds the same series, in either order.
    assert wrapped.fold(text) == expected
    assert wrapped.overflowed == plain.overflowed


def test_fold_counts_of_an_enum_and_its_text_is_one_plain_series():
    cap = LabelCap(3)
    folded = cap.fold_counts({Action.SHOWN: 2.0, "blocked": 1.0})
    assert folded == {"shown": 2.0, "blocked": 1.0}
    assert all(type(key) is str for key in folded)


def test_a_str_subclass_whose_hash_raises_never_raises_from_monitor(scraper):
    registry = scraper.registry
    monitor = registry.monitor(Hostile("fraud"), "1")
    assert type(monitor.name) is str and monitor.name == "fraud"
    cap = LabelCap(1)
    assert cap.fold(Hostile("a")) == "a"
    assert cap.fold(Hostile("b")) == OTHER
    assert cap.stored_as(Hostile("a")) == "a"


# --- history: times that are not finite ------------------------------------------------


def _state(requests: float) -> ModelState:
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), requests)
    return state


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_sample_at_a_time_that_is_not_finite_neither_stops_nor_spoils_the_ring(bad):
    history = History(interval_seconds=10, span_seconds=60)
    history.record([_state(1)], now=1000.0)
    history.record([_state(2)], now=bad)
    history.record_one(_state(2), now=bad)
    assert not history.due(bad)
    assert [s.at for s in history.samples(("fraud", "1"))] == [1000.0]
    # The next rounds come at the usual pace.
    assert not history.due(1005.0)
    assert history.due(1010.0)
    history.record([_state(3)], now=1010.0)
    assert history.due(1020.0)
    history.record([_state(4)], now=1020.0)
    assert [s.at for s in history.samples(("fraud", "1"))] == [1000.0, 1010.0, 1020.0]


def test_a_window_looked_up_at_nan_finds_no_sample():
    history = History(interval_seconds=10, span_seconds=60)
    history.record([_state(1)], now=1000.0)
    history.record([_state(5)], now=1010.0)
    assert history.before(("fraud", "1"), math.nan) is None
    assert history.before(("fraud", "1"), math.nan, features=True) is None
    assert history.before(("fraud", "1"), 1010.0).totals["requests"] == 5.0


@given(st.lists(st.one_of(st.floats(min_value=0, max_value=1e4),
                          st.sampled_from([math.nan, math.inf, -math.inf])),
                max_size=40))
def test_the_ring_stays_in_time_order_and_bounded_at_any_times(times):
    history = History(interval_seconds=10, span_seconds=60)
    for i, at in enumerate(times):
        if history.due(at):
            history.record([_state(i)], now=at)
        samples = history.samples(("fraud", "1"))
        ats = [s.at for s in samples]
        assert all(math.isfinite(t) for t in ats)
        assert ats == sorted(ats)
        assert len(samples) <= 7
    # Whatever came before, a finite time far enough on is due again.
    assert history.due(1e6)
