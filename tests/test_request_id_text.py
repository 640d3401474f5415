"""Request ids given as bytes (read from a Kafka message or a raw header) and as str
subclasses: the prediction and its outcome must join whichever form each side uses.

A bytes id was recorded as its repr (``"b'r-1'"``): an outcome reported under the text
``"r-1"`` never joined it, and the event log showed the repr. ``record_outcome`` read ids
with ``str()`` while predictions read them as text_of does, so a str Enum member named the
prediction by its value and the outcome by ``Class.MEMBER``.
"""

from __future__ import annotations

import enum

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults


class _Model:
    def predict(self, rows):
        return np.asarray(rows, dtype=float)[:, 0]


class _Rid(str, enum.Enum):
    FIRST = "r-1"


def _joined(mon) -> float:
    counters = mon.state.counters.get("inferwatch_outcomes_total", {})
    return sum(v for k, v in counters.items() if "joined" in k or k == ())


@pytest.mark.parametrize(("given_id", "reported"), [
    (b"r-1", "r-1"), ("r-1", b"r-1"), (bytearray(b"r-1"), "r-1"), (b"r-1", b"r-1"),
    (_Rid.FIRST, "r-1"), ("r-1", _Rid.FIRST), (np.str_("r-1"), "r-1"),
])
def test_an_outcome_joins_its_prediction_whichever_form_each_side_uses(registry, given_id,
                                                                        reported):
    model = inferwatch.instrument(_Model(), name="m", version="1", registry=registry)
    model.predict([[0.5]], request_id=given_id)
    mon = registry.monitor("m", "1")
    mon.record_outcome(reported, 0.5)
    mon.drain()
    unmatched = mon.state.counters.get("inferwatch_outcomes_unmatched_total", {})
    assert not any(unmatched.values()), unmatched
    assert sum(h.count for h in
               mon.state.histograms.get("inferwatch_outcome_error", {}).values()) == 1


def test_bytes_that_are_not_utf8_become_text_that_names_each_byte():
    assert faults.text_of(b"r-\xff", "request_id") == "r-\\xff"


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=40))
def test_bytes_read_as_their_utf8_text_and_always_encodable(data):
    text = faults.text_of(data, "request_id")
    text.encode("utf-8")  # never a lone surrogate: the event log writes UTF-8
    try:
        assert text == data.decode("utf-8")
    except UnicodeDecodeError:
        assert text == data.decode("utf-8", "backslashreplace")
