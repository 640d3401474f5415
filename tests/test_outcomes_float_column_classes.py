"""A classifier's ``predict`` returning a column of floats per call (``(n, 1)``, Keras'
shape), called with ``request_id=``: a drain reads such calls as one stacked matrix, and a
float that no class may be (1.5 from a model of whole-number classes) is dropped from it.
Which call that row came from is then lost; each call's rows for its outcome must still be
what that call gives when it is drained alone, not nothing for every call of the drain."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from test_outcomes_array_rows import judged_after_drain

_CELLS = st.sampled_from([0.0, 1.0, 2.0, 1.5, -0.25]) | st.floats(-3, 3)


@st.composite
def _calls(draw) -> list[tuple[np.ndarray, str | None]]:
    """A drain's calls, each an (n, width) float array of one width, most under an id."""
    width = draw(st.integers(1, 2))
    return [(np.array(draw(st.lists(st.lists(_CELLS, min_size=width, max_size=width),
                                    min_size=1, max_size=3))),
             f"r-{number}" if draw(st.integers(0, 4)) else None)
            for number in range(draw(st.integers(2, 8)))]


def _outcome(result: np.ndarray) -> object:
    return "1" if result[0, 0] == 1.0 else float(result[0, 0]) + 0.25


def _judged(calls, task: str, classes) -> tuple[dict, dict]:
    return judged_after_drain(calls, None, task, 2**20, _outcome,
                              {} if classes is None else {"classes": classes})


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=_calls(), task=st.sampled_from(["auto", "classification", "regression"]),
       classes=st.sampled_from([None, [0, 1, 2], ["0", "1"]]))
@example(calls=[(np.array([[1.0]]), "r-0"), (np.array([[1.5]]), "r-1")],
         task="classification", classes=None)
def test_each_call_joins_its_rows_as_when_drained_alone(calls, task, classes):
    _, together = _judged(calls, task, classes)
    for call in calls:
        if call[1] is not None:
            _, alone = _judged([call], task, classes)
            assert together[call[1]] == alone[call[1]], call
