"""pandas runs without pyarrow (its text is then Python objects): a drain of pandas results
must record them as it does with pyarrow installed, never fail for want of it. The readers
of Arrow-held text once imported pyarrow for every drain of Series: without it, each such
drain's predictions were lost and counted as internal errors."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

import inferwatch
from inferwatch import faults
from inferwatch.core.object_labels import pyarrow_module
from inferwatch.core.registry import Registry

_RESULTS = {
    "float Series": lambda: pd.Series([0.5, 1.5]),
    "text Series of objects": lambda: pd.Series(["fraud", "legit"], dtype=object),
    "text Series, Python storage": lambda: pd.Series(["fraud", "legit"], dtype="string[python]"),
    "Int64 Series": lambda: pd.Series([1, 0], dtype="Int64"),
    "category Series": lambda: pd.Series(["fraud", "legit"], dtype="category"),
    "DataFrame of a label and a score": lambda: pd.DataFrame(
        {"label": pd.Series(["fraud", "legit"], dtype=object), "score": [0.9, 0.2]}),
}


def _figures(make, request_ids: bool) -> tuple[dict, dict]:
    """The state's counters and each summary's count after five calls returning `make()`,
    and the outcome cache's entries."""
    registry = Registry(drain_interval=3600)
    try:
        result = make()
        model = inferwatch.instrument(lambda x: result, name="m", version="1",
                                      registry=registry, classes=["legit", "fraud"])
        for i in range(5):
            if request_ids:
                model(i, request_id=f"r{i}")
            else:
                model(i)
        monitor = registry.monitor("m", "1")
        monitor.drain()
        state = monitor.state
        figures = {metric: dict(series) for metric, series in state.counters.items()}
        figures.update({metric: {labels: one.count for labels, one in series.items()}
                        for metric, series in state.summaries.items()})
        entries = {request_id: entry[:2] for request_id, entry in
                   monitor.outcomes._pending.items()}
        return figures, entries
    finally:
        registry.close()


@pytest.fixture
def without_pyarrow(monkeypatch):
    """pyarrow as if not installed, for inferwatch's readers (pandas keeps what it loaded)."""
    pyarrow_module.cache_clear()
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.compute", None)
    assert pyarrow_module() is None
    yield
    monkeypatch.undo()
    pyarrow_module.cache_clear()


@pytest.mark.parametrize("request_ids", [False, True], ids=["plain", "request_id"])
@pytest.mark.parametrize("kind", sorted(_RESULTS))
def test_pandas_results_drain_alike_without_pyarrow(kind, request_ids, monkeypatch):
    with_pyarrow = _figures(_RESULTS[kind], request_ids)
    pyarrow_module.cache_clear()
    with monkeypatch.context() as blocked:
        blocked.setitem(sys.modules, "pyarrow", None)
        blocked.setitem(sys.modules, "pyarrow.compute", None)
        assert pyarrow_module() is None
        before = faults.internal_error_counts()
        without = _figures(_RESULTS[kind], request_ids)
        assert faults.internal_error_counts() == before
    pyarrow_module.cache_clear()
    assert without == with_pyarrow
    assert with_pyarrow[0]["inferwatch_requests_total"][("ok",)] == 5


def test_a_drain_without_pyarrow_records_its_text_labels(without_pyarrow):
    """The readers that need pyarrow step aside: the labels are still counted."""
    figures, _ = _figures(lambda: pd.Series(["fraud"], dtype=object), False)
    assert figures["inferwatch_predicted_class_total"][("fraud",)] == 5
    assert np.isclose(sum(figures["inferwatch_requests_total"].values()), 5)
