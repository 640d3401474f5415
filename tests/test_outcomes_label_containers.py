"""Delayed ground truth read the way labels really arrive: bytes from a queue, generators,
0-d arrays and tensors, database decimals, long labels, one label for a large batch, text
NaN; and the outputs made of rows of dicts that predictions are read from."""

from __future__ import annotations

import threading
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults
from inferwatch.core.outcome_sizes import entry_bytes
from inferwatch.core.outcomes import OutcomeJoiner
from inferwatch.core.records import label_score_matrix


def _model(scraper, predicted, **options):
    wrapped = inferwatch.instrument(lambda x: predicted, name="m", version="1",
                                    registry=scraper.registry, **options)
    return wrapped, inferwatch.monitor("m", "1", registry=scraper.registry)


def _results(scraper) -> tuple[float, float, float]:
    return (scraper.total("inferwatch_outcomes_total", result="correct"),
            scraper.total("inferwatch_outcomes_total", result="incorrect"),
            scraper.total("inferwatch_outcomes_unmatched_total"))


@pytest.mark.parametrize(("predicted", "label", "options"), [
    (np.array([1, 0]), [b"1", b"0"], {}),  # labels read back from Kafka or Redis
    (np.array([1, 0]), np.array([b"1", b"0"]), {}),
    (np.array(["spam", "ham"]), [b"spam", b"ham"], {"classes": ["spam", "ham"]}),
    (np.array(["spam", "ham"]), [b"spam", b"ham"], {"task": "classification"}),
    (np.array([b"spam", b"ham"]), [b"spam", b"ham"], {"task": "classification"}),
    (np.array([b"spam", b"ham"]), ["spam", "ham"], {"task": "classification"}),
])
def test_bytes_labels_are_joined_as_their_text(scraper, predicted, label, options):
    """A bytes label was judged by its repr (``b'1'``), so every one counted incorrect, and
    a model answering bytes classes was never remembered (``unsupported_prediction``)."""
    wrapped, mon = _model(scraper, predicted, **options)
    wrapped(0, request_id="r-1")
    mon.record_outcome("r-1", label)
    assert _results(scraper) == (2, 0, 0)


def test_a_generator_of_labels_is_one_label_per_row(scraper):
    """A generator was taken for one label, broadcast to every row and judged incorrect."""
    wrapped, mon = _model(scraper, np.array([1, 0, 1]))
    wrapped(0, request_id="r-1")
    batch = [{"id": "r-1", "label": v} for v in (1, 0, 0)]
    mon.record_outcome("r-1", (row["label"] for row in batch))
    assert _results(scraper) == (2, 1, 0)


@pytest.mark.parametrize("label", [{1, 0}, frozenset({1}), {"label": 1}, {0: 1, 1: 0}])
def test_labels_in_a_set_or_dict_are_a_shape_mismatch_not_a_wrong_class(scraper, label):
    """A set has no order to join rows by, and a dict of a single output's labels no rows:
    both were judged as one label (its text), counting every row incorrect."""
    wrapped, mon = _model(scraper, np.array([1, 0]))
    wrapped(0, request_id="r-1")
    mon.record_outcome("r-1", label)
    assert _results(scraper) == (0, 0, 1)
    assert scraper.value("inferwatch_outcomes_unmatched_total", reason="shape_mismatch") == 1


@pytest.mark.parametrize("label", [np.array(1), np.array(1.0), np.array(True),
                                   np.array(b"1"), Decimal("1"), Decimal("1.00")])
def test_a_label_in_a_0d_array_or_a_decimal_is_its_value(scraper, label):
    """``np.array(1.0)`` was judged by its text ``1.0`` and a NUMERIC column read from a
    database (``Decimal("1.00")``) by ``1.00``: never the class ``1``."""
    wrapped, mon = _model(scraper, np.array([1]))
    wrapped(0, request_id="r-1")
    mon.record_outcome("r-1", label)
    assert _results(scraper) == (1, 0, 0)


def test_a_label_in_a_0d_tensor_is_its_value(scraper):
    torch = pytest.importorskip("torch")
    wrapped, mon = _model(scraper, np.array([1]))
    for i, label in enumerate([torch.tensor(1), torch.tensor(1.0), torch.tensor(0),
                               torch.tensor(float("nan"))]):
        wrapped(0, request_id=f"r-{i}")
        mon.record_outcome(f"r-{i}", label)
    assert _results(scraper) == (2, 1, 1)  # tensor(nan) is a label not known yet
    assert scraper.value("inferwatch_outcomes_unmatched_total", reason="missing_label") == 1


@pytest.mark.parametrize("length", [257, 300, 5000])
def test_a_label_longer_than_the_cut_joins_its_prediction(scraper, length):
    """Undeclared labels are kept cut to 256 characters, but the outcome's label was read
    whole: a long label was never correct."""
    long_label = "category/" + "x" * (length - 9)
    other = "category/" + "y" * (length - 9)
    wrapped, mon = _model(scraper, np.array([long_label, long_label]),
                          task="classification")
    wrapped(0, request_id="r-1")
    mon.record_outcome("r-1", [long_label, other])
    assert _results(scraper) == (1, 1, 0)


def test_one_label_for_a_batch_over_the_bound_counts_the_rows_it_could_not_keep():
    """One label judges every row of a batch; the rows past the byte bound were neither
    judged nor counted, while a label per row counted them as ``rows_over_bound``."""
    joiner = OutcomeJoiner(max_bytes=entry_bytes("big", tuple("1" * 100), None))
    for truth in ("1", ["1"] * 150):
        joiner.remember("big", tuple("1" * 150), None, at=0.0)
        joined = joiner.join("big", truth, at=1.0)
        assert (joined.correct, joined.rows_over_bound) == (100, 50)


def test_one_label_for_a_batch_over_the_bound_through_a_model(scraper):
    wrapped, mon = _model(scraper, np.ones(2000, dtype=np.int64), outcome_cache_bytes=8192)
    wrapped(0, request_id="big")
    mon.drain()
    kept = len(mon.outcomes._pending["big"][0])
    assert 1 <= kept < 2000
    mon.record_outcome("big", 1)
    assert scraper.value("inferwatch_outcomes_total", result="correct") == kept
    assert scraper.value("inferwatch_outcomes_unmatched_total",
                         reason="rows_over_bound") == 2000 - kept


@pytest.mark.parametrize("label", ["nan", "NaN", b"nan", Decimal("NaN")])
def test_a_nan_read_as_text_is_a_missing_label_for_a_regressor(scraper, label):
    """A regressor's label ``"nan"`` (a CSV's empty value) gave a NaN error that was dropped
    with nothing counted: the outcome vanished."""
    wrapped, mon = _model(scraper, np.array([1.5, 2.5]))
    wrapped(0, request_id="r-1")
    mon.record_outcome("r-1", [label, "2.0"])
    assert scraper.value("inferwatch_outcome_error_count") == 1
    assert scraper.value("inferwatch_outcome_error_sum") == 0.5
    assert scraper.value("inferwatch_outcomes_unmatched_total", reason="missing_label") == 1


# --- exact metric values against hand-computed ones -------------------------------------

def _as_type(kind: str, k: int) -> object:
    """Class index `k` written as labels arrive from each kind of source."""
    return {"int": k, "np.int64": np.int64(k), "float": float(k), "np.float32": np.float32(k),
            "str": str(k), "bytes": str(k).encode(), "np.bytes_": np.bytes_(str(k).encode()),
            "0-d": np.array(k), "decimal": Decimal(k)}[kind]


_KINDS = ["int", "np.int64", "float", "np.float32", "str", "bytes", "np.bytes_", "0-d",
          "decimal"]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), classes=st.integers(2, 5), rows=st.integers(1, 12))
def test_accuracy_of_probabilities_matches_the_hand_computed_count(data, classes, rows):
    """Correct and incorrect counts equal argmax(proba) == label counted by hand, whichever
    type each label arrives as, one row missing at random."""
    from conftest import Scraper

    scraper = Scraper(drain_interval=3600)
    try:
        proba = np.asarray(data.draw(st.lists(
            st.lists(st.floats(0.01, 1.0), min_size=classes, max_size=classes),
            min_size=rows, max_size=rows)))
        proba = proba / proba.sum(axis=1, keepdims=True)
        # Ties make argmax depend on the order of equal floats: one clear winner per row.
        winners = proba.argmax(axis=1)
        proba[np.arange(rows), winners] += 1.0
        proba = proba / proba.sum(axis=1, keepdims=True)
        truth = data.draw(st.lists(st.integers(0, classes - 1), min_size=rows, max_size=rows))
        kinds = data.draw(st.lists(st.sampled_from(_KINDS), min_size=rows, max_size=rows))
        missing = data.draw(st.one_of(st.none(), st.integers(0, rows - 1)))
        labels = [None if i == missing else _as_type(kind, k)
                  for i, (kind, k) in enumerate(zip(kinds, truth))]
        class Classifier:
            classes_ = np.arange(classes)

            def predict_proba(self, x):
                return proba

        model = inferwatch.instrument(Classifier(), name="m", version="1",
                                      registry=scraper.registry)
        model.predict_proba(0, request_id="r-1")
        inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome(
            "r-1", np.array(labels, dtype=object))
        judged = [i for i in range(rows) if i != missing]
        correct = sum(1 for i in judged if winners[i] == truth[i])
        assert _results(scraper)[:2] == (correct, len(judged) - correct)
        assert scraper.total("inferwatch_outcomes_unmatched_total") == (missing is not None)
    finally:
        scraper.registry.close()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(pairs=st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=1,
                      max_size=20),
       container=st.sampled_from(["list", "array", "generator", "text"]))
def test_regression_errors_match_the_hand_computed_ones(pairs, container):
    from conftest import Scraper

    scraper = Scraper(drain_interval=3600)
    try:
        predicted = np.array([p for p, _ in pairs])
        truth = [t for _, t in pairs]
        given_truth = {"list": truth, "array": np.array(truth),
                       "generator": (t for t in truth),
                       "text": [repr(t) for t in truth]}[container]
        model = inferwatch.instrument(lambda x: predicted, name="m", version="1",
                                      task="regression", registry=scraper.registry)
        model(0, request_id="r-1")
        inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome(
            "r-1", given_truth)
        errors = [abs(p - t) for p, t in pairs]
        assert scraper.value("inferwatch_outcome_error_count") == len(errors)
        assert scraper.value("inferwatch_outcome_error_sum") == pytest.approx(sum(errors))
        assert scraper.total("inferwatch_outcomes_unmatched_total") == 0
    finally:
        scraper.registry.close()


def test_outcomes_from_many_threads_while_calls_happen(scraper):
    """Every outcome recorded from eight threads, while the same model is called from four
    more, is joined once: exact totals, no fault, the cache within its bounds."""
    wrapped, mon = _model(scraper, np.array([1]))
    ids = [f"r-{i}" for i in range(800)]
    for rid in ids[:400]:
        wrapped(0, request_id=rid)
    before = faults.internal_error_counts()
    start = threading.Barrier(12)

    def call(part: list[str]) -> None:
        start.wait(timeout=30)
        for rid in part:  # predicted while the first half's outcomes arrive
            wrapped(0, request_id=rid)
            wrapped(0)

    def label(part: list[str]) -> None:
        start.wait(timeout=30)
        for rid in part:
            mon.record_outcome(rid, int(rid[2:]) % 2)

    callers = [threading.Thread(target=call, args=(ids[400 + i::4],)) for i in range(4)]
    labellers = [threading.Thread(target=label, args=(ids[i:400:8],)) for i in range(8)]
    for t in callers + labellers:
        t.start()
    for t in callers + labellers:
        t.join(timeout=60)
    for rid in ids[400:]:
        mon.record_outcome(rid, int(rid[2:]) % 2)
    assert _results(scraper) == (400, 400, 0)
    assert faults.internal_error_counts() == before
    assert mon.outcomes.estimated_bytes <= mon.outcomes.max_bytes


# --- outputs made of rows of dicts -------------------------------------------------------

def test_class_names_given_twice_keep_one_column_per_label():
    """A model whose class names repeat one (``id2label`` mapping two ids to one name) gave
    the pipeline's two labels three columns, so each row's scores summed past 1."""
    answer = [[{"label": "a", "score": 0.2}, {"label": "b", "score": 0.8}]]
    matrix, labels = label_score_matrix(answer, ["a", "a", "b"])
    assert labels == ["a", "b"]
    assert matrix.tolist() == [[0.2, 0.8]]


def test_a_record_value_whose_conversion_raises_is_bad_output_not_a_fault(scraper):
    """A value in a row of dicts whose ``__array__`` raises escaped the check for scalars:
    an internal fault logged with its traceback, instead of an output counted as bad."""
    class Opaque:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("no array of this")

    wrapped, mon = _model(scraper, [{"label": "a", "score": Opaque()}])
    before = faults.internal_error_counts()
    assert wrapped(0)[0]["label"] == "a"  # the caller gets its answer untouched
    mon.drain()
    assert faults.internal_error_counts() == before
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1


def test_an_outcome_time_not_known_is_judged_with_no_label_delay(scraper):
    """``at=NaN`` (a labelled-at column with gaps) was observed as a delay of 0 seconds:
    labels that seemed to arrive at once. The outcome is judged; its delay is not known."""
    wrapped, mon = _model(scraper, np.array([1]))
    wrapped(0, request_id="r-1")
    wrapped(0, request_id="r-2")
    mon.drain()
    mon.record_outcome("r-1", 1, at=float("nan"))
    mon.record_outcome("r-2", 0, at=mon.outcomes._pending["r-2"][2] - 5.0)  # clock stepped
    assert _results(scraper) == (1, 1, 0)
    assert scraper.value("inferwatch_outcome_delay_seconds_count") == 1
    assert scraper.value("inferwatch_outcome_delay_seconds_sum") == 0.0


def test_an_outcome_time_given_as_a_date_is_its_unix_time(scraper):
    """``at=`` from a labels table is a datetime, a ``pd.Timestamp`` or an ``np.datetime64``:
    ``float(at)`` raised, and the outcome was lost as an internal fault."""
    import datetime

    import pandas as pd

    faults_before = scraper.total("inferwatch_internal_errors_total")  # process-wide
    wrapped, mon = _model(scraper, np.array([1]))
    ids = [f"r-{i}" for i in range(5)]
    for rid in ids:
        wrapped(0, request_id=rid)
    mon.drain()
    # Each a minute after its own prediction (the calls were made at their own times:
    # on a busy machine, milliseconds apart).
    later = {rid: mon.outcomes._pending[rid][2] + 60 for rid in ids[:3]}

    def as_datetime(seconds: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)

    mon.record_outcome("r-0", 1, at=as_datetime(later["r-0"]))
    mon.record_outcome("r-1", 1, at=pd.Timestamp(as_datetime(later["r-1"])))
    mon.record_outcome("r-2", 1, at=np.datetime64(int(later["r-2"] * 1e6), "us"))
    mon.record_outcome("r-3", 1, at=pd.NaT)  # not known: judged, with no delay
    mon.record_outcome("r-4", 1, at=np.datetime64("NaT"))
    assert _results(scraper) == (5, 0, 0)
    assert scraper.value("inferwatch_outcome_delay_seconds_count") == 3
    assert scraper.value("inferwatch_outcome_delay_seconds_sum") == pytest.approx(180, abs=0.01)
    assert scraper.total("inferwatch_internal_errors_total") == faults_before
