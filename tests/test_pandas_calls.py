"""Calls that each return a pandas categorical (a ``category`` Series, a ``Categorical``),
pandas' Arrow-backed text array (pandas 3's ``Series.values``), a Series of a nullable
dtype (``Int64``, ``Float64``, ``boolean``) or a DataFrame of typed columns (``{"label":
str, "score": float}``, as an MLflow pyfunc answers) are drained as one batch: read one
call at a time they cost about 48, 12, 40 and 80 us of drain each. What is recorded must be
exactly what reading each call alone records."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core import outcome_rows, prediction_batch
from inferwatch.core.prediction_classes import MAX_DECLARED_CATEGORIES, SMALL_INTEGER_LIMIT
from inferwatch.core.registry import Registry
from inferwatch.core.stacked_results import StackedResults

POOL = ["legit", "fraud", "review", "c:1", "", "ça"]
SHARED = pd.CategoricalDtype(POOL[:3])


class _Model:
    def __init__(self, outputs, classes=None):
        self.outputs = outputs
        if classes is not None:  # a scikit-learn classifier's: per output, a list of arrays
            self.classes_ = classes if isinstance(classes[0], np.ndarray) else \
                np.array(classes)

    def predict(self, index, request_id=None):
        return self.outputs[index]


def _figures(outputs, order, model_classes=None, request_ids=False, **options):
    """What one drain of these calls records: values, class counts (in the order the series
    were made), invalid counts, batch sizes, the task; with `request_ids`, of the same calls
    on the request path (each under a request id of its own), which must be the same."""
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(_Model(outputs, model_classes), name="m", version="1",
                                      registry=registry, **options)
        for call, index in enumerate(order):
            if request_ids:  # the request path: each call's rows kept for its outcome
                assert model.predict(index, request_id=f"r{call}") is outputs[index]
            else:
                assert model.predict(index) is outputs[index]
        mon = registry.monitor("m", "1")
        mon.drain()
        state = mon.state
        sizes = state.histograms["inferwatch_batch_size"][()]
        values = {key: (h.count, h.sum, list(h.counts)) for key, h in
                  state.histograms.get("inferwatch_prediction_value", {}).items()}
        return {
            "values": values,
            "classes": [(key[0], value) for key, value in
                        state.counters.get("inferwatch_predicted_class_total", {}).items()],
            "invalid": {key: value for key, value in state.counters.get(
                "inferwatch_invalid_predictions_total", {}).items() if value},
            "sizes": (sizes.count, sizes.sum, list(sizes.counts)),
            "task": state.info.get("task"),
        }
    finally:
        registry.close()


def _assert_same_records(plain, requested):
    """The plain path's and the request path's records of the same calls: the same counts,
    values and sizes. Not the order the class series were made in, nor (past max_classes)
    which classes kept their own: the request path folds a call that took long apart
    (it may hold a huge batch), after the others. Float sums to their rounding."""
    for key in ("invalid", "sizes", "task"):
        assert plain[key] == requested[key], key
    if not any(label == "__other__" for label, _ in plain["classes"] + requested["classes"]):
        assert dict(plain["classes"]) == dict(requested["classes"])
    assert sum(count for _, count in plain["classes"]) == \
        sum(count for _, count in requested["classes"])
    assert plain["values"].keys() == requested["values"].keys()
    for key, (count, total, buckets) in plain["values"].items():
        other_count, other_total, other_buckets = requested["values"][key]
        assert (count, buckets) == (other_count, other_buckets)
        assert total == pytest.approx(other_total, rel=1e-9, nan_ok=True)


def drained_every_way(outputs, order, call_by_call, model_classes=None, **options):
    """One drain's records of these calls (options left None are not passed), checked
    against `call_by_call` (every call read alone) and against the request path; returned
    for the test's own checks."""
    options = {key: value for key, value in options.items() if value is not None}
    together = _figures(outputs, order, model_classes, **options)
    assert together == call_by_call(outputs, order, model_classes, **options)
    _assert_same_records(together, _figures(outputs, order, model_classes, request_ids=True,
                                            **options))
    return together


def _call_by_call(outputs, order, model_classes=None, **options):
    """The same drain with every call read alone (the general path)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prediction_batch, "categorical_rows", lambda results: None)
        patch.setattr(StackedResults, "_add_masked_series", lambda self, results: False)
        patch.setattr(StackedResults, "_add_typed_frames", lambda self, results: False)
        patch.setattr(StackedResults, "_add_plain_frames", lambda self, results: False)
        return _figures(outputs, order, model_classes, **options)


@st.composite
def _categoricals(draw, integers=False):
    """A call's categorical: labels from its categories and missing rows; the categories
    shared by every call (one dtype object), or the call's own (pandas' inferred ones, or a
    list in any order, unused categories included); with `integers`, class ids."""
    how = "integers" if integers else draw(st.sampled_from(["shared", "inferred", "listed"]))
    if how == "shared":
        categories = list(SHARED.categories)
    elif how == "integers":  # class ids, a large one (an id no cap admits) among them
        categories = draw(st.lists(st.sampled_from([0, 1, 7, -2, 2**40]), min_size=1,
                                   max_size=4, unique=True))
    else:
        categories = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=5, unique=True))
    labels = draw(st.lists(st.one_of(st.sampled_from(categories), st.none()),
                           min_size=1, max_size=4))
    if how == "shared":
        return pd.Categorical(labels, dtype=SHARED)
    if how == "inferred":
        return pd.Categorical(labels)
    return pd.Categorical(labels, categories=categories)  # integers too: their own set


@settings(max_examples=80, deadline=None)
@given(st.booleans().flatmap(lambda integers: st.lists(_categoricals(integers), min_size=1,
                                                      max_size=6)),
       st.lists(st.integers(0, 5), min_size=2, max_size=40), st.booleans(),
       st.sampled_from([None, ["legit"], ["fraud", "review"]]), st.sampled_from([None, 1, 2]))
@example([pd.Categorical(["fraud"]), pd.Categorical(["legit", None])], [0, 1, 0], True,
         None, None)
@example([pd.Categorical([None]), pd.Categorical([None], categories=["c:1"])], [1, 0], False,
         ["legit"], None)
def test_categoricals_of_many_calls_record_what_each_call_read_alone_records(
        outputs, order, as_series, classes, max_classes):
    if as_series:
        outputs = [pd.Series(output) for output in outputs]
    order = [i % len(outputs) for i in order]
    together = drained_every_way(outputs, order, _call_by_call, classes=classes,
                                 max_classes=max_classes)
    rows = [label for i in order for label in outputs[i].tolist()]
    counted = dict(together["classes"])
    if max_classes is None:  # every label declared by its categories: an integer too
        assert counted == dict(Counter(str(label) for label in rows
                                       if label is not None and label == label))
    assert sum(counted.values()) + together["invalid"].get(("nan",), 0) == len(rows)


def test_a_shared_dtype_counts_each_label_and_each_missing_row():
    outputs = [pd.Series(["fraud", None], dtype=SHARED), pd.Series(["legit"], dtype=SHARED)]
    figures = _figures(outputs, [0, 1, 0, 0])
    assert dict(figures["classes"]) == {"fraud": 3, "legit": 1}
    assert figures["invalid"] == {("nan",): 3}
    assert figures["sizes"][:2] == (4, 7)
    assert figures["task"] == "classification"
    assert figures == _call_by_call(outputs, [0, 1, 0, 0])


@pytest.mark.parametrize("categories", [
    pytest.param([0.5, 1.5, 2.5], id="float categories"),
    pytest.param([True, False], id="bool categories"),
    pytest.param([2**63 + 1, 1, 2], id="integer categories past int64"),
    pytest.param([f"id-{i}" for i in range(MAX_DECLARED_CATEGORIES + 1)],
                 id="more categories than may be classes"),
])
def test_categoricals_the_batch_does_not_read_are_read_call_by_call(categories):
    outputs = [pd.Series(categories[:2], dtype=pd.CategoricalDtype(categories)),
               pd.Series(categories[1:3], dtype=pd.CategoricalDtype(categories))]
    assert prediction_batch.categorical_rows(outputs) is None
    assert _figures(outputs, [0, 1, 1]) == _call_by_call(outputs, [0, 1, 1])


def test_with_a_reference_each_rows_label_still_reaches_prediction_drift(scraper):
    """Prediction drift bins each row's label: with a reference, the calls are read one
    by one, as before."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    reference = inferwatch.Reference.from_data(
        x, predictions=np.where(x[:, 0] > 0, "fraud", "legit"))
    outputs = [pd.Series(["legit"], dtype=SHARED), pd.Series(["fraud"], dtype=SHARED)]
    model = inferwatch.instrument(_Model(outputs), name="m", version="1", reference=reference,
                                  registry=scraper.registry)
    for i in range(200):
        model.predict(0 if i % 4 else 1)  # mostly "legit": the class mix moved
    assert scraper.value("inferwatch_prediction_drift", model="m", output="value",
                         method="psi") > 0.1
    assert scraper.value("inferwatch_predicted_class_total", model="m",
                         **{"class": "legit"}) == 150


@pytest.mark.parametrize("storage", ["pyarrow", "arrow dtype"])
def test_arrow_text_arrays_of_many_calls_are_counted_as_their_series(storage, monkeypatch):
    """pandas 3's ``Series.values`` of text is an Arrow-backed array: counted by pyarrow
    over every call, as the Series themselves are."""
    pytest.importorskip("pyarrow")
    import pyarrow as pa

    dtype = "string[pyarrow]" if storage == "pyarrow" else pd.ArrowDtype(pa.string())
    series = [pd.Series(["fraud", None], dtype=dtype), pd.Series(["legit"], dtype=dtype),
              pd.Series(["bird"], dtype=dtype)]
    arrays = [one.array for one in series]
    assert all(type(array).__name__ != "Series" for array in arrays)
    order = [0, 1, 2, 0]
    options = {"classes": ["legit", "fraud"]}
    figures = _figures(arrays, order, **options)
    assert dict(figures["classes"]) == {"fraud": 2, "legit": 1}
    assert figures["invalid"] == {("nan",): 2, ("unsupported_type",): 1}
    assert figures == _figures(series, order, **options)
    with monkeypatch.context() as patch:  # each array read alone: the general path
        patch.setattr(prediction_batch, "arrow_text_counts", lambda columns: None)
        assert figures == _figures(arrays, order, **options)


_MASKED = {
    "Int64": st.one_of(st.none(), st.integers(-3, 3), st.integers(2**40, 2**40 + 2)),
    "UInt8": st.one_of(st.none(), st.integers(0, 3)),
    "Float64": st.one_of(st.none(), st.floats(-2, 2), st.sampled_from([0.0, 1.0])),
    "boolean": st.one_of(st.none(), st.booleans()),
}


@st.composite
def _masked_calls(draw):
    """Calls of one nullable dtype, or (small integers) of two."""
    dtype = draw(st.sampled_from([*sorted(_MASKED), "Int64 or UInt8"]))
    if dtype == "Int64 or UInt8":
        calls = draw(st.lists(st.tuples(st.sampled_from(["Int64", "UInt8"]), st.lists(
            _MASKED["UInt8"], min_size=1, max_size=3)), min_size=1, max_size=5))
    else:
        calls = [(dtype, rows) for rows in draw(st.lists(
            st.lists(_MASKED[dtype], min_size=1, max_size=3), min_size=1, max_size=5))]
    return [pd.Series(rows, dtype=dtype) for dtype, rows in calls]


@settings(max_examples=80, deadline=None)
@given(_masked_calls(), st.lists(st.integers(0, 4), min_size=2, max_size=30),
       st.sampled_from(["auto", "classification", "regression"]),
       st.sampled_from([None, [0, 1], [0.0, 1.0], ["a", "b"]]))
@example([pd.Series([1.0, None], dtype="Float64"), pd.Series([0.5], dtype="Float64")],
         [0, 1], "auto", [0.0, 1.0])
@example([pd.Series([None], dtype="Int64"), pd.Series([2**40], dtype="Int64")], [0, 1],
         "auto", None)
@example([pd.Series([3], dtype="UInt8"), pd.Series([None, 1], dtype="Int64")], [0, 1],
         "auto", None)
def test_nullable_series_of_many_calls_record_what_each_call_read_alone_records(
        outputs, order, task, classes):
    """A model whose classes are whole numbers decides call by call whether a call's
    floats are its classes: those calls keep being read one by one."""
    order = [i % len(outputs) for i in order]
    together = drained_every_way(outputs, order, _call_by_call, classes, task=task)
    rows = [value for i in order for value in outputs[i].tolist()]
    present = [value for value in rows if value is not pd.NA]
    assert together["sizes"][:2] == (len(order), len(rows))
    assert together["invalid"].get(("nan",), 0) == len(rows) - len(present)
    kind = outputs[0].dtype.kind
    if (kind in "iu" and task == "regression") or (kind == "f" and (
            task == "regression" or (task == "auto" and classes is None))):
        assert sum(count for count, _, _ in together["values"].values()) == len(present)
    elif kind in "iu" and classes is None:
        # An integer past SMALL_INTEGER_LIMIT is an id, not a class, unless declared one.
        small = [v for v in present if abs(v) < SMALL_INTEGER_LIMIT]
        assert dict(together["classes"]) == dict(Counter(str(v) for v in small))
        assert together["invalid"].get(("unsupported_type",), 0) == len(present) - len(small)
    rows = sum(len(outputs[i]) for i in order)
    assert together["sizes"][:2] == (len(order), rows)
    assert together["invalid"].get(("nan",), 0) == sum(
        int(outputs[i].isna().sum()) for i in order)


_COLUMNS = {
    "label": (st.one_of(st.none(), st.sampled_from(POOL)), "str"),
    "score": (st.floats(allow_nan=True, allow_infinity=True, width=64), "float64"),
    "count": (st.one_of(st.none(), st.integers(0, 5)), "Int64"),
    "flag": (st.booleans(), "bool"),
    "class_id": (st.integers(0, 2), "int64"),
    # A prediction interval beside the score: frames of one plain dtype, several columns.
    "low": (st.floats(-10, 0), "float64"),
    "high": (st.floats(0, 10), "float64"),
}


@st.composite
def _frames(draw):
    """Frames of the same columns, each made as a model may make it: from a dict of
    columns (pandas holds each dtype's columns in one block), column by column (a block
    per column), or with its columns picked out of a frame of them in another order."""
    names = draw(st.lists(st.sampled_from(sorted(_COLUMNS)), min_size=1, max_size=4,
                          unique=True))
    frames = []
    for _ in range(draw(st.integers(1, 4))):
        rows = draw(st.integers(1, 3))
        columns = {name: pd.Series(draw(st.lists(_COLUMNS[name][0], min_size=rows,
                                                 max_size=rows)), dtype=_COLUMNS[name][1])
                   for name in names}
        made = draw(st.sampled_from(["dict", "assigned", "picked"]))
        if made == "assigned":
            frame = pd.DataFrame(index=range(rows))
            for name in names:
                frame[name] = columns[name]
        elif made == "picked":
            frame = pd.DataFrame({name: columns[name] for name in reversed(names)})[names]
        else:
            frame = pd.DataFrame(columns)
        frames.append(frame)
    return frames


@settings(max_examples=80, deadline=None)
@given(_frames(), st.lists(st.integers(0, 3), min_size=2, max_size=30),
       st.sampled_from([None, ["legit", "fraud"]]), st.sampled_from([None, 1, 2]))
@example([pd.DataFrame({"label": pd.Series(["fraud"], dtype="str"), "score": [0.9]}),
          pd.DataFrame({"label": pd.Series([None], dtype="str"), "score": [float("nan")]})],
         [0, 1, 0], ["legit", "fraud"], None)
@example([pd.DataFrame({"a": [0], "b": [5]}), pd.DataFrame({"a": [1], "b": [5]})], [0, 1],
         None, 2)  # two label columns: admitted call by call, past max_classes too
def test_frames_of_many_calls_record_what_each_call_read_alone_records(
        frames, order, classes, max_classes):
    """Frames of one plain dtype were already stacked: they are held to the same rule
    (two columns of labels, admitted as classes call by call, are read call by call)."""
    order = [i % len(frames) for i in order]
    together = drained_every_way(frames, order, _call_by_call, classes=classes,
                                 max_classes=max_classes)
    assert together["sizes"][:2] == (len(order), sum(len(frames[i]) for i in order))
    rows = pd.concat([frames[i] for i in order], ignore_index=True)
    missing = sum(int(rows[name].isna().sum()) for name in rows.columns)
    assert together["invalid"].get(("nan",), 0) == missing
    if "score" in rows.columns:
        finite = int(np.isfinite(rows["score"].to_numpy(dtype=float)).sum())
        assert together["values"][("score",)][0] == finite


def test_frames_whose_columns_differ_in_dtype_or_hold_objects_are_read_call_by_call():
    """A column of Python objects may hold numbers in one call and text in another; a
    column that is ints in one call and floats in another is labels, then values."""
    for frames in (
        [pd.DataFrame({"out": np.array([1.5], dtype=object)}),
         pd.DataFrame({"out": np.array(["fraud"], dtype=object)})],
        [pd.DataFrame({"out": [1]}), pd.DataFrame({"out": [0.5]})],
    ):
        registry = Registry(drain_interval=3600)
        try:
            batch = prediction_batch.PredictionBatch.__new__(prediction_batch.PredictionBatch)
            assert not StackedResults._add_typed_frames(batch, frames)
        finally:
            registry.close()
        assert _figures(frames, [0, 1]) == _call_by_call(frames, [0, 1])


class _IdModel:
    def __init__(self, outputs):
        self.outputs = outputs

    def predict(self, index, request_id=None):
        return self.outputs[index]


@pytest.mark.parametrize("categories", [pd.CategoricalDtype(["legit", "fraud"]), None])
def test_categoricals_under_a_request_id_record_and_join_their_labels(categories, scraper):
    """On the request path each call is read alone (its outcome joins its own rows): its
    codes off its Categorical, its labels declared by its categories."""
    outputs = [pd.Series(["fraud"], dtype=categories or "category"),
               pd.Series(["legit", None], dtype=categories or "category")]
    model = inferwatch.instrument(_IdModel(outputs), name="m", version="1",
                                  registry=scraper.registry)
    for i in range(6):
        assert model.predict(i % 2, request_id=f"r{i}") is outputs[i % 2]
    mon = inferwatch.monitor("m", registry=scraper.registry)
    mon.record_outcome("r0", "fraud")
    mon.record_outcome("r1", "fraud")
    assert scraper.value("inferwatch_predicted_class_total", model="m",
                         **{"class": "fraud"}) == 3
    assert scraper.value("inferwatch_predicted_class_total", model="m",
                         **{"class": "legit"}) == 3
    assert scraper.value("inferwatch_invalid_predictions_total", model="m",
                         reason="nan") == 3
    assert scraper.value("inferwatch_outcomes_total", model="m", result="correct") == 1
    assert scraper.value("inferwatch_outcomes_total", model="m", result="incorrect") == 1


@settings(max_examples=60, deadline=None)
@given(st.booleans().flatmap(lambda integers: st.lists(_categoricals(integers), min_size=2,
                                                      max_size=6)),
       st.booleans(), st.sampled_from([None, ["legit"]]))
def test_categoricals_under_request_ids_join_by_the_rows_each_call_gives_alone(
        outputs, as_series, classes):
    """On the request path a drain's categoricals are read as one batch too: each call's
    rows (what its outcome joins by) are those the call read alone gives, a missing row
    None."""
    from inferwatch.core.options import Settings
    from inferwatch.core.prediction_batch import PredictionBatch

    if as_series:
        outputs = [pd.Series(output) for output in outputs]
    settings = Settings() if classes is None else Settings(classes=tuple(classes))
    together = PredictionBatch(settings, {}, None, lambda: None)
    rows = together.add_records(outputs, False)
    with pytest.MonkeyPatch.context() as patch:
        # The request path's own look (add_records) and the plain path's it may fall to.
        patch.setattr(outcome_rows, "categorical_rows", lambda results: None)
        patch.setattr(prediction_batch, "categorical_rows", lambda results: None)
        alone = PredictionBatch(settings, {}, None, lambda: None)
        assert repr(rows) == repr(alone.add_records(outputs, False))  # NaN rows alike
    assert together.batch_sizes == alone.batch_sizes == [len(output) for output in outputs]
    if prediction_batch.categorical_rows(outputs) is not None:  # else read call by call
        assert rows == [(tuple(None if label is None or label != label else str(label)
                               for label in output.tolist()), None) for output in outputs]


def test_outcomes_join_a_drain_of_categoricals_as_each_call_alone(scraper):
    outputs = [pd.Series(["fraud", None], dtype=SHARED), pd.Series(["legit"], dtype=SHARED),
               pd.Series(["review"], dtype=SHARED)]
    model = inferwatch.instrument(_IdModel(outputs), name="m", version="1",
                                  registry=scraper.registry)
    for i in range(30):
        model.predict(i % 3, request_id=f"r{i}")
    mon = inferwatch.monitor("m", registry=scraper.registry)
    for i in range(30):
        mon.record_outcome(f"r{i}", "legit" if i % 2 else "review")
    outcomes = {result: scraper.value("inferwatch_outcomes_total", model="m", result=result)
                for result in ("correct", "incorrect")}
    # r1, r4, ... predicted legit; r2, r5, ... review; r0, r3, ... fraud beside a missing row
    expected = Counter()
    for i in range(30):
        label = ("fraud", "legit", "review")[i % 3]
        expected["correct" if label == ("legit" if i % 2 else "review") else "incorrect"] += 1
    assert outcomes == {"correct": expected["correct"], "incorrect": expected["incorrect"]}


def _records_both_ways(outputs, settings):
    """Each call's join rows and the batch sizes of `outputs` drained on the request path:
    read as one batch where it may be, and every call read alone."""
    from inferwatch.core.prediction_batch import PredictionBatch

    together = PredictionBatch(settings, {}, None, lambda: None)
    rows = together.add_records(outputs, False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prediction_batch.PredictionBatch, "_joined_records",
                      lambda self, results: None)
        alone = PredictionBatch(settings, {}, None, lambda: None)
        alone_rows = alone.add_records(outputs, False)
    return (repr(rows), together.batch_sizes), (repr(alone_rows), alone.batch_sizes)


@settings(max_examples=60, deadline=None)
@given(_masked_calls(), st.sampled_from(["auto", "classification", "regression"]),
       st.sampled_from([None, ("0", "1")]))
def test_nullable_series_under_request_ids_join_by_the_rows_each_call_gives_alone(
        outputs, task, classes):
    """Joined where no row is dropped (a missing value, a non-finite float): each call's
    rows as the call read alone gives them."""
    from inferwatch.core.options import Settings

    together, alone = _records_both_ways(outputs, Settings(task=task, classes=classes))
    assert together == alone


@settings(max_examples=60, deadline=None)
@given(_frames(), st.sampled_from([None, ("legit", "fraud", "review", "c:1", "", "ça")]))
def test_frames_under_request_ids_join_by_the_rows_each_call_gives_alone(frames, classes):
    from inferwatch.core.options import Settings

    together, alone = _records_both_ways(frames, Settings(classes=classes))
    assert together == alone
