"""A classifier fit on labels read as bytes (``np.loadtxt(dtype="S")``, HDF5 string
columns): ``classes_`` holds ``b"cat"``. Its ``predict`` labels were all counted as
``unsupported_type`` (the known classes were written as ``"b'cat'"``), and its
``predict_proba`` columns named the classes by their repr. Both now name them by their text,
and an outcome given as bytes or as text scores them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry


class _BytesClassifier:
    def __init__(self, classes: list[bytes]) -> None:
        self.classes_ = np.array(classes)

    def predict(self, rows):
        index = np.asarray(rows, dtype=int)[:, 0] % len(self.classes_)
        return self.classes_[index]

    def predict_proba(self, rows):
        out = np.zeros((len(rows), len(self.classes_)))
        out[np.arange(len(rows)), np.asarray(rows, dtype=int)[:, 0] % len(self.classes_)] = 1
        return out


def _counters(mon, name):
    return {k: v for k, v in mon.state.counters.get(name, {}).items() if v}


def test_predict_and_predict_proba_count_bytes_classes_by_their_text(registry):
    model = inferwatch.instrument(_BytesClassifier([b"cat", b"dog"]), name="m", version="1",
                                  registry=registry)
    assert model.predict([[0], [1], [1]]).tolist() == [b"cat", b"dog", b"dog"]
    model.predict_proba([[0]])
    mon = registry.monitor("m", "1")
    mon.drain()
    assert _counters(mon, "inferwatch_predicted_class_total") == {("cat",): 2.0, ("dog",): 2.0}
    assert _counters(mon, "inferwatch_invalid_predictions_total") == {}


@pytest.mark.parametrize("truth", [b"dog", "dog"])
def test_an_outcome_as_bytes_or_text_scores_a_bytes_class(registry, truth):
    model = inferwatch.instrument(_BytesClassifier([b"cat", b"dog"]), name="m", version="1",
                                  registry=registry)
    model.predict([[1]], request_id="r-1")
    mon = registry.monitor("m", "1")
    mon.record_outcome("r-1", truth)
    mon.drain()
    assert _counters(mon, "inferwatch_outcomes_total") == {("correct",): 1.0}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=6).filter(lambda b: not b.endswith(b"\0")),
                min_size=2, max_size=5, unique=True),
       st.lists(st.integers(0, 20), min_size=1, max_size=30))
def test_every_row_of_any_bytes_classes_is_counted_once(classes, rows):
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(_BytesClassifier(classes), name="m", version="1",
                                      registry=registry)
        model.predict([[r] for r in rows])
        mon = registry.monitor("m", "1")
        mon.drain()
        counted = _counters(mon, "inferwatch_predicted_class_total")
        assert sum(counted.values()) == len(rows)
        assert _counters(mon, "inferwatch_invalid_predictions_total") == {}
    finally:
        registry.close()
