"""A huge batch is drained in slices, each under the monitor lock on its own, with exact counts."""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper
from inferwatch.core import pending_calls
from inferwatch.core.array_rows import ArrayRows


class CountingLock:
    """The monitor's lock, counting how often it was taken and what the state held then."""

    def __init__(self, on_enter=None) -> None:
        self._lock = threading.Lock()
        self.entered = 0
        self.on_enter = on_enter

    def __enter__(self):
        self._lock.acquire()
        self.entered += 1
        if self.on_enter is not None:
            self.on_enter()
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()

    def acquire(self, *args, **kwargs) -> bool:
        return self._lock.acquire(*args, **kwargs)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


@pytest.fixture
def scraper():
    """No background drain: the tests below swap in a counting lock, then drain, and a
    background pass between the call and the swap (a busy machine) would fold the call
    first, under the real lock."""
    scraper = Scraper(drain_interval=3600)
    yield scraper
    scraper.registry.close()


@pytest.fixture
def small_slices(monkeypatch):
    monkeypatch.setattr(pending_calls, "SLICE_ROWS", 100)
    return 100


def _drained_in_slices_as_one_call(scraper: Scraper, mon, labels: np.ndarray,
                                   holds: int = 13) -> None:
    """Drain `mon`, which holds one call of the 1234 `labels` (slices of 100 rows): the
    first slice with the call, then 12 more, each under the lock on its own (and as many
    for an input checked against a reference); one call counted, its batch size whole,
    every label once."""
    mon._lock = lock = CountingLock()
    mon.drain()
    assert lock.entered == holds
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1
    assert scraper.value("inferwatch_batch_size_count") == 1
    assert scraper.value("inferwatch_batch_size_sum") == 1234
    for label in (0, 1, 2):
        assert scraper.value("inferwatch_predicted_class_total", **{"class": str(label)}) == \
            int((labels == label).sum())


def test_a_huge_batch_of_class_labels_is_drained_slice_by_slice(scraper, small_slices):
    model = inferwatch.instrument(lambda x: x, name="m", version="1", registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    labels = np.arange(1234) % 3
    model(labels)
    _drained_in_slices_as_one_call(scraper, mon, labels)


@pytest.mark.parametrize("with_reference", [False, True])
def test_a_huge_batch_called_with_request_id_is_drained_slice_by_slice(
        scraper, small_slices, with_reference):
    """The request path (request_id=, a reference, an event log) folded a huge batch in
    one hold of the lock: 0.4 s for ten million labels, a scrape waiting all along."""
    from inferwatch.quality.reference import Reference

    labels = np.arange(1234) % 3
    reference = Reference.from_data(np.arange(60.0).reshape(-1, 1), np.arange(60) % 3) \
        if with_reference else None
    model = inferwatch.instrument(lambda x: x[:, 0].astype(np.int64), name="m", version="1",
                                  reference=reference, registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    model(labels.reshape(-1, 1).astype(np.float64), request_id="batch-1")
    _drained_in_slices_as_one_call(scraper, mon, labels, 25 if with_reference else 13)
    if with_reference:  # every row in the drift windows, each once
        drift, now = mon.features.drift, mon.window_time(None)
        assert drift.features.flat_counts(now)[1] == drift.outputs.flat_counts(now)[1] == 1234
        assert scraper.value("inferwatch_drift_window_observations") == 1234
    assert mon.outcomes.kept_rows("batch-1") == (1234, 1234)  # the join keeps every row
    mon.record_outcome("batch-1", labels.tolist())
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 1234


def test_a_scrape_between_slices_sees_the_call_counted_once(scraper, small_slices):
    model = inferwatch.instrument(lambda x: x, name="m", version="1", registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    values = np.linspace(0.0, 1.0, 450)
    model(values)
    seen = []

    def look() -> None:  # what a scrape taking the lock between two slices would read
        requests = mon.state.counters.get("inferwatch_requests_total", {}).get(("ok",), 0)
        summary = mon.state.summaries.get("inferwatch_prediction", {}).get(("value",))
        seen.append((requests, 0 if summary is None else summary.count))

    mon._lock = CountingLock(on_enter=look)
    mon.drain()
    assert seen == [(0, 0), (1, 100), (1, 200), (1, 300), (1, 400)]
    assert scraper.value("inferwatch_prediction_count", output="value") == 450
    assert scraper.value("inferwatch_prediction_sum", output="value") == pytest.approx(225.0)


def test_huge_probability_matrices_and_a_reference_are_sliced_exactly(scraper, small_slices):
    from inferwatch.quality.reference import Reference

    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 2))
    proba = rng.dirichlet([1.0, 1.0], size=250)

    class Model:
        classes_ = np.array(["a", "b"])

        def predict(self, rows):
            return rows[:, 0]

        def predict_proba(self, rows):
            return proba

    reference = Reference.from_data(x, x[:, 0])
    model = inferwatch.instrument(Model(), name="m", version="1", reference=reference,
                                  registry=scraper.registry)
    model.predict(x)
    model.predict_proba(x[:250])
    inferwatch.monitor("m", "1", registry=scraper.registry).drain()
    assert scraper.value("inferwatch_batch_size_count") == 2
    assert scraper.value("inferwatch_batch_size_sum") == 750
    top = np.where(proba[:, 0] >= proba[:, 1], "a", "b")
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "a"}) == \
        int((top == "a").sum())
    assert scraper.value("inferwatch_prediction_confidence_count") == 250
    assert scraper.value("inferwatch_prediction_sum", output="value") == \
        pytest.approx(x[:, 0].sum())


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, 350), min_size=1, max_size=6),
       integers=st.booleans(), named=st.booleans())
def test_sliced_counts_equal_the_rows_of_every_call(small_slices, sizes, integers, named):
    scraper = Scraper(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda x: x, name="m", version="1",
                                      registry=scraper.registry)
        rows = [np.arange(n) % 5 if integers else np.full(n, 0.5) for n in sizes]
        for number, array in enumerate(rows):
            if named:  # the request path, which keeps each row for its outcome
                model(array, request_id=f"r-{number}")
            else:
                model(array)
        assert scraper.value("inferwatch_requests_total", outcome="ok") == len(sizes)
        assert scraper.value("inferwatch_batch_size_sum") == sum(sizes)
        recorded = scraper.total("inferwatch_predicted_class_total") if integers else \
            (scraper.value("inferwatch_prediction_count", output="value") or 0)
        assert recorded == sum(sizes)
        if named:
            outcomes = inferwatch.monitor("m", "1", registry=scraper.registry).outcomes
            for number, n in enumerate(sizes):
                if n:
                    assert outcomes.kept_rows(f"r-{number}") == (n, n)
    finally:
        scraper.registry.close()


_SERIES_OF_A_CALL = ("inferwatch_requests_total", "inferwatch_batch_size",
                     "inferwatch_predicted_class_total", "inferwatch_prediction_confidence",
                     "inferwatch_invalid_predictions_total", "inferwatch_class_probability",
                     "inferwatch_outcomes_total")


def _recorded(scraper: Scraper) -> dict:
    """What a call left in the exposition, of the series a probability matrix feeds."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in scraper.samples()
            if s.name.startswith(_SERIES_OF_A_CALL)}


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(101, 450), width=st.integers(2, 4), seed=st.integers(0, 2**16),
       missing=st.sampled_from([0.0, 0.1]), text_classes=st.booleans(),
       off_scale=st.booleans())
def test_a_huge_probability_matrix_with_request_id_is_sliced_as_recorded_whole(
        monkeypatch, rows, width, seed, missing, text_classes, off_scale):
    """predict_proba(X, request_id=...) on a huge batch: folded in slices (it took 1.4 s for
    two million rows in one hold of the lock), with the very counts, confidences and join
    of the same matrix folded whole."""
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(width), size=rows)
    if off_scale:  # some rows that are no probabilities (scores, margins)
        proba[rng.random(rows) < 0.05] *= -3.0
    proba[rng.random(rows) < missing] = np.nan
    truth = rng.integers(0, width, size=rows)
    names = np.array([f"c{i}" for i in range(width)]) if text_classes else np.arange(width)

    class Classifier:
        classes_ = names

        def predict_proba(self, x):
            return proba

    recorded = []
    for slice_rows in (100, 10**6):  # sliced, then whole
        monkeypatch.setattr(pending_calls, "SLICE_ROWS", slice_rows)
        scraper = Scraper(drain_interval=3600)
        try:
            model = inferwatch.instrument(Classifier(), name="m", version="1",
                                          registry=scraper.registry)
            mon = inferwatch.monitor("m", "1", registry=scraper.registry)
            model.predict_proba(None, request_id="batch-1")
            mon._lock = lock = CountingLock()
            mon.drain()
            assert lock.entered == (-(-rows // slice_rows) if slice_rows < rows else 1)
            kept = mon.outcomes.kept_rows("batch-1")
            mon.record_outcome("batch-1", names[truth].tolist())
            recorded.append((_recorded(scraper), kept))
        finally:
            scraper.registry.close()
    (samples, kept), (whole_samples, whole_kept) = recorded
    assert kept == whole_kept
    # The same samples; a sum of slices' sums may differ from the whole's in its last bit.
    assert samples == pytest.approx(whole_samples, rel=1e-12)
    assert kept == (rows, rows)
    assert sum(v for (name, _), v in samples.items()
               if name == "inferwatch_predicted_class_total") == \
        int(np.isfinite(proba).all(axis=1).sum())


_INPUT_SERIES = ("inferwatch_feature_missing_total", "inferwatch_feature_out_of_range_total",
                 "inferwatch_input_errors_total", "inferwatch_requests_total",
                 "inferwatch_batch_size", "inferwatch_drift_window_observations")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(101, 450), seed=st.integers(0, 2**16), integers=st.booleans(),
       named=st.booleans(), raises=st.booleans(),
       container=st.sampled_from(["array", "pandas", "pandas, a name twice", "arrow"]))
def test_a_huge_input_is_checked_in_slices_as_it_is_whole(
        monkeypatch, rows, seed, integers, named, raises, container):
    """A model with a reference profile checked a huge input's every row in one hold of the
    lock (229 ms for two million rows of ten features): its rows after the first slice are
    now checked one slice per hold, counting what the whole input counts, the drift window
    included; a call that raised still keeps its rows out of the window. A frame naming a
    column twice (one wrong_shape per batch) is checked whole."""
    import pandas as pd
    import pyarrow as pa

    from inferwatch.quality.reference import Reference

    rng = np.random.default_rng(seed)
    names = ["a", "b", "c"]
    reference = Reference.from_data(pd.DataFrame(rng.normal(size=(500, 3)), columns=names))
    x = rng.normal(scale=2.0, size=(rows, 3))  # some rows past the profiled range
    if integers:
        x = np.rint(x).astype(np.int64)
    else:
        x[rng.random(x.shape) < 0.05] = np.nan
    given_input = x if container == "array" else \
        pa.table(pd.DataFrame(x, columns=names)) if container == "arrow" else \
        pd.DataFrame(x, columns=["a", "b", "a"] if "twice" in container else names)

    def model(batch):
        if raises:
            raise ValueError("refused")
        return np.asarray(batch)[:, 0].astype(np.float64)

    recorded = []
    for slice_rows in (100, 10**6):  # sliced, then whole
        monkeypatch.setattr(pending_calls, "SLICE_ROWS", slice_rows)
        scraper = Scraper(drain_interval=3600)
        try:
            wrapped = inferwatch.instrument(model, name="m", version="1", reference=reference,
                                            registry=scraper.registry)
            mon = inferwatch.monitor("m", "1", registry=scraper.registry)
            with contextlib.suppress(ValueError):
                wrapped(given_input, request_id="r-1") if named else wrapped(given_input)
            mon._lock = lock = CountingLock()
            mon.drain()
            if slice_rows < rows and "twice" not in container:  # a hold per slice
                slices = -(-rows // slice_rows)
                # (The result's own slices, where it has any, take holds of their own.)
                assert lock.entered == slices if raises else lock.entered >= slices
            drift, now = mon.features.drift, mon.window_time(None)
            recorded.append(({(s.name, tuple(sorted(s.labels.items()))): s.value
                              for s in scraper.samples() if s.name.startswith(_INPUT_SERIES)},
                             drift.features.flat_counts(now)[0].tolist()))
        finally:
            scraper.registry.close()
    (samples, window), (whole_samples, whole_window) = recorded
    assert window == whole_window
    assert samples == pytest.approx(whole_samples, rel=1e-12)
    if "twice" in container:  # "a" unreadable: the batch's one wrong_shape
        assert samples[("inferwatch_input_errors_total", (
            ("model", "m"), ("model_version", "1"), ("reason", "wrong_shape")))] == 1
        return
    checked = sum(v for (name, _), v in samples.items()
                  if name == "inferwatch_feature_missing_total")
    assert checked == (0 if integers else int(np.isnan(x).sum()))
    assert sum(window) == (0 if raises else rows * 3 - checked)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(101, 450), seed=st.integers(0, 2**16),
       kind=st.sampled_from(["floats", "floats with NaN", "integers", "bools", "int32"]),
       named=st.booleans())
def test_a_huge_pandas_series_is_sliced_as_recorded_whole(monkeypatch, rows, seed, kind, named):
    """A pandas Series result was folded in one hold of the lock, row by row through the
    general path (131 ms for two million floats): a plain numeric one is now read as its
    array and folded in slices, with the very counts, values and join of the Series whole."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    values = rng.normal(size=rows)
    if kind == "floats with NaN":
        values[rng.random(rows) < 0.1] = np.nan
    elif kind in ("integers", "int32"):
        values = rng.integers(0, 4, size=rows).astype(np.int64 if kind == "integers"
                                                      else np.int32)
    elif kind == "bools":
        values = rng.random(rows) < 0.3
    series = pd.Series(values, name="prediction")
    recorded = []
    for slice_rows in (100, 10**6):  # sliced, then whole
        monkeypatch.setattr(pending_calls, "SLICE_ROWS", slice_rows)
        scraper = Scraper(drain_interval=3600)
        try:
            model = inferwatch.instrument(lambda x: series, name="m", version="1",
                                          registry=scraper.registry)
            mon = inferwatch.monitor("m", "1", registry=scraper.registry)
            model(None, request_id="batch-1") if named else model(None)
            mon._lock = lock = CountingLock()
            mon.drain()
            holds = lock.entered
            kept = mon.outcomes.kept_rows("batch-1")
            if named:
                mon.record_outcome("batch-1", series.tolist())
            recorded.append(({(s.name, tuple(sorted(s.labels.items()))): s.value
                              for s in scraper.samples()
                              if s.name.startswith(("inferwatch_pred", "inferwatch_batch",
                                                    "inferwatch_requests", "inferwatch_outcomes",
                                                    "inferwatch_outcome_error",
                                                    "inferwatch_invalid"))},
                             kept, holds))
        finally:
            scraper.registry.close()
    (samples, kept, holds), (whole_samples, whole_kept, whole_holds) = recorded
    assert kept == whole_kept
    assert samples == pytest.approx(whole_samples, rel=1e-12, nan_ok=True)
    assert whole_holds == 1
    # On the request path a NaN row or a bool takes the general path, whole.
    if not (named and kind in ("floats with NaN", "bools")):
        assert holds == -(-rows // 100)  # the first slice with the call, a hold per slice


def _frame_of(names: list[str], parts: list[np.ndarray]) -> object:
    import pandas as pd

    frame = pd.DataFrame({str(i): part for i, part in enumerate(parts)})
    frame.columns = names
    return frame


def _result_samples(scraper: Scraper) -> dict:
    """What a call's result and its outcome left in the exposition; of how long the outcome
    took (the clock's, not the fold's), the count."""
    delay = "inferwatch_outcome_delay_seconds"
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in scraper.samples()
            if s.name.startswith(("inferwatch_pred", "inferwatch_batch", "inferwatch_requests",
                                  "inferwatch_invalid", "inferwatch_internal",
                                  "inferwatch_outcome"))
            and (not s.name.startswith(delay) or s.name == f"{delay}_count")}


def _as_tuple(rows):
    """The rows an outcome cache entry keeps, as a tuple (ArrayRows made objects)."""
    return tuple(rows) if isinstance(rows, ArrayRows) else rows


def _outputs(rng: np.random.Generator, rows: int, kinds: list[str]) -> list[np.ndarray]:
    parts = []
    for kind in kinds:
        if kind == "floats":
            parts.append(rng.normal(size=rows))
        elif kind == "floats with NaN":  # and an infinity or two
            values = rng.normal(size=rows)
            values[rng.random(rows) < 0.1] = np.nan
            values[rng.random(rows) < 0.02] = -np.inf
            parts.append(values)
        elif kind == "whole floats":
            parts.append(rng.integers(0, 3, size=rows).astype(np.float64))
        elif kind == "bools":
            parts.append(rng.random(rows) < 0.3)
        elif kind == "int64 past the label limit":  # such a row is dropped, the join changes
            parts.append(rng.integers(0, 4, size=rows) * (1 << 60))
        else:  # int64 / int32 labels
            parts.append(rng.integers(0, 4, size=rows).astype(kind))
    return parts


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(101, 450), seed=st.integers(0, 2**16),
       kinds=st.lists(st.sampled_from(["floats", "floats with NaN", "whole floats", "bools",
                                       "int64", "int32", "int64 past the label limit"]),
                      min_size=1, max_size=3),
       container=st.sampled_from(["dict", "tuple", "list", "DataFrame"]),
       task=st.sampled_from(["auto", "classification", "regression"]),
       named=st.booleans(), cache_bytes=st.sampled_from([2048, 8192, 1 << 20]),
       naming=st.sampled_from(["plain", "a pipeline's", "a name twice"]))
def test_a_huge_result_of_several_outputs_is_sliced_as_recorded_whole(
        monkeypatch, rows, seed, kinds, container, task, named, cache_bytes, naming):
    """A dict, tuple or list of arrays, or a DataFrame (``{"price": prices, "eta": etas}``,
    a pyfunc's frame) was folded in one hold of the lock whatever its size (250 ms for two
    million rows of two floats): it is now folded in slices, with the very counts and
    values of the result whole, on the request path too, where its outcome join keeps the
    very rows it kept whole."""

    rng = np.random.default_rng(seed)
    parts = _outputs(rng, rows, kinds)
    # A pipeline's {"label", "score"} joins by its labels alone; a frame may name a
    # column twice (outputs a.1, a.2).
    names = ["label", "score", "margin"][:len(parts)] if naming == "a pipeline's" else \
        ["a"] * len(parts) if naming == "a name twice" else \
        [f"out{i}" for i in range(len(parts))]
    result = dict(zip(names, parts)) if container == "dict" else \
        tuple(parts) if container == "tuple" else list(parts) if container == "list" else \
        _frame_of(names, parts)
    recorded = []
    for slice_rows in (100, 10**6):  # sliced, then whole
        monkeypatch.setattr(pending_calls, "SLICE_ROWS", slice_rows)
        scraper = Scraper(drain_interval=3600)
        try:
            # A small outcome cache: the join keeps the first rows that fit, here as whole.
            model = inferwatch.instrument(lambda x: result, name="m", version="1", task=task,
                                          outcome_cache_bytes=cache_bytes,
                                          registry=scraper.registry)
            mon = inferwatch.monitor("m", "1", registry=scraper.registry)
            model(None, request_id="batch-1") if named else model(None)
            mon._lock = lock = CountingLock()
            mon.drain()
            holds = lock.entered  # before the scrape below takes it too
            kept = mon.outcomes.kept_rows("batch-1")
            entry = mon.outcomes._pending.get("batch-1")
            if named:
                mon.record_outcome("batch-1", parts[0].tolist())
            # The entry's classes, values, bytes and whole rows (not its time).
            recorded.append((_result_samples(scraper), holds, kept,
                             entry and (*map(_as_tuple, entry[:2]), *entry[3:])))
        finally:
            scraper.registry.close()
    (samples, holds, kept, entry), (whole_samples, whole_holds, whole_kept, whole_entry) = \
        recorded
    assert kept == whole_kept and repr(entry) == repr(whole_entry)  # repr: NaN rows equal
    assert samples == pytest.approx(whole_samples, rel=1e-12, nan_ok=True)
    assert [value for (name, _), value in whole_samples.items()
            if name == "inferwatch_batch_size_sum"] == [rows]
    assert whole_holds == 1
    assert holds == -(-rows // 100)


def test_a_huge_series_and_a_huge_dict_in_one_drain_are_both_sliced(scraper, small_slices):
    """A drain holding a result of several outputs and a pandas Series (a model returning
    one or the other) slices each, counting each call once with all its rows."""
    import pandas as pd

    labels = np.arange(1234) % 3
    results = iter([pd.Series(labels), {"price": np.linspace(0.0, 1.0, 250),
                                        "eta": np.linspace(5.0, 9.0, 250)}])
    model = inferwatch.instrument(lambda x: next(results), name="m", version="1",
                                  registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    model(None)
    model(None)
    mon._lock = lock = CountingLock()
    mon.drain()
    assert lock.entered == 1 + 12 + 2  # both first slices with the calls, then the rest
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 2
    assert scraper.value("inferwatch_batch_size_sum") == 1234 + 250
    assert scraper.value("inferwatch_prediction_count", output="price") == 250
    for label in (0, 1, 2):
        assert scraper.value("inferwatch_predicted_class_total", **{"class": str(label)}) == \
            int((labels == label).sum())


@pytest.mark.parametrize("dtype", ["category", "string[pyarrow]"])
def test_a_huge_series_is_cut_into_its_later_slices_with_the_lock_let_go(
        scraper, small_slices, monkeypatch, dtype):
    """Each later slice of a pandas Series the fast path cuts (categories, pyarrow's text)
    is cut as its turn comes, outside any hold: cut all at once in the first hold, they held
    the lock half as long again as a slice's fold for a 2,000,000-row text Series, and
    longer the larger the batch."""
    import pandas as pd

    from inferwatch.core import column_arrays

    labels = np.arange(1234) % 3
    model = inferwatch.instrument(lambda x: x, name="m", version="1",
                                  classes=["cat", "dog", "bird"], registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    model(pd.Series(np.array(["cat", "dog", "bird"])[labels], dtype=dtype))
    mon._lock = lock = CountingLock()
    cuts_held = []
    real = column_arrays.column_rows

    def cut(column, start, stop):
        cuts_held.append((start, lock.locked()))
        return real(column, start, stop)

    monkeypatch.setattr(pending_calls, "column_rows", cut)
    mon.drain()
    assert cuts_held[0] == (0, True)  # the first slice, with the call, in the first hold
    later = [held for start, held in cuts_held[1:]]
    assert len(later) == 12 and not any(later)
    assert lock.entered == 13
    assert scraper.value("inferwatch_batch_size_sum") == 1234
    for code, label in enumerate(["cat", "dog", "bird"]):
        assert scraper.value("inferwatch_predicted_class_total", **{"class": label}) == \
            int((labels == code).sum())
