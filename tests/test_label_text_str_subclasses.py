"""Label values given as `str` subclasses (a `str` Enum member, `numpy.str_`, a subclass with
methods of its own) are kept as their plain characters wherever a request writes them."""

from __future__ import annotations

import enum

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.faults import text_of


class Action(str, enum.Enum):
    SHOWN = "shown"
    BLOCKED = "blocked"


class Hostile(str):
    def __hash__(self) -> int:
        raise RuntimeError("no hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_actions_given_as_enum_members_are_counted_under_their_text(registry) -> None:
    mon = registry.monitor("fraud", "1")
    for action in (Action.SHOWN, "shown", Action.BLOCKED):
        with mon.request() as r:
            r.action(action)
    mon.drain()
    actions = mon.state.counters["inferwatch_actions_total"]
    assert actions == {("shown",): 2.0, ("blocked",): 1.0}
    assert all(type(label) is str for labels in actions for label in labels)


def test_a_hostile_str_subclass_as_an_action_or_stage_never_raises(registry) -> None:
    mon = registry.monitor("fraud", "1")
    with mon.request() as r:
        r.action(Hostile("shown"))
        with r.stage(Hostile("prep")):
            pass
    mon.drain()
    assert mon.state.counters["inferwatch_actions_total"] == {("shown",): 1.0}
    stages = mon.state.histograms["inferwatch_stage_duration_seconds"]
    assert [type(labels[0]) for labels in stages] == [str] and ("prep",) in stages


@settings(max_examples=50, deadline=None)
@given(text=st.text(max_size=20))
def test_text_of_any_str_subclass_is_its_plain_characters(text: str) -> None:
    for value in (np.str_(text), Hostile(text)):
        out = text_of(value, "label")
        assert type(out) is str and out == str.__str__(value)
