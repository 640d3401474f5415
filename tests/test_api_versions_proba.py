"""The public API's call shapes: versions as users pass them, probabilities with float
error, async builder methods, and the odd but legal ways models are called."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.predictions import normalize
from inferwatch.core.registry import Registry

# --- probabilities a hair outside [0, 1] ------------------------------------------------

_FLOAT_ERROR = st.floats(min_value=0.0, max_value=1e-7, allow_subnormal=False)


@settings(max_examples=150, deadline=None)
@given(p=st.floats(min_value=0.0, max_value=1.0), over=_FLOAT_ERROR, under=_FLOAT_ERROR,
       width=st.integers(2, 6))
def test_float_error_at_the_bounds_is_no_out_of_range_probability(p, over, under, width):
    # A softmax row whose top class rounds to 1.0000000002 and whose others to -1e-12.
    row = np.full(width, -under)
    row[0] = 1.0 + over
    other = np.array([[p, 1.0 - p] + [0.0] * (width - 2)])
    matrix = np.vstack([row, other])
    prediction = normalize(matrix, probabilities=True)
    assert "probability_out_of_range" not in prediction.invalid
    assert prediction.rows == 2
    # Read as the bound it missed: no value outside [0, 1] reaches the sketches.
    for column in prediction.values.values():
        assert ((column >= 0.0) & (column <= 1.0)).all()
    assert prediction.confidence.max() <= 1.0
    assert matrix[0, 0] == 1.0 + over  # the caller's array is untouched


@settings(max_examples=150, deadline=None)
@given(bad=st.one_of(st.floats(min_value=1.0 + 1e-5, max_value=50.0),
                     st.floats(min_value=-50.0, max_value=-1e-5)),
       width=st.integers(2, 5))
def test_real_out_of_range_probabilities_are_still_counted(bad, width):
    row = np.full(width, 0.0)
    row[0] = bad
    matrix = np.vstack([row, np.full(width, 1.0 / width)])
    prediction = normalize(matrix, probabilities=True)
    assert prediction.invalid.get("probability_out_of_range") == 1
    assert prediction.values["0"][0] == bad  # its value stays as it was, for _sum


def test_softmax_float_error_through_predict_proba_counts_nothing_invalid(scraper):
    class Softmax:
        classes_ = np.array([0, 1, 2])

        def predict_proba(self, rows):
            return np.array([[1.0000000002, -1e-12, 0.0], [-2e-10, 0.3, 0.7000000001],
                             [1.01, -0.01, 0.0], [-0.2, 0.6, 0.6]])

    model = inferwatch.instrument(Softmax(), name="clf", version="1",
                                  registry=scraper.registry)
    model.predict_proba([[0.0]])
    assert scraper.value("inferwatch_invalid_predictions_total", model="clf",
                         reason="probability_out_of_range") == 2
    assert scraper.value("inferwatch_prediction_confidence_count", model="clf") == 4


def test_softmax_with_float_error_is_read_as_probabilities_by_shape():
    matrix = np.array([[1.0000000002, -1e-12], [0.25, 0.75]])
    prediction = normalize(matrix, task="auto", class_names=["no", "yes"])
    assert prediction.probability_outputs == {"no", "yes"}
    assert not prediction.invalid


# --- versions -----------------------------------------------------------------------------

@pytest.mark.parametrize("padded", [" 1.2", "1.2\n", "\t1.2 \r\n"])
def test_version_with_outer_whitespace_is_the_same_series(scraper, padded):
    plain = inferwatch.instrument(lambda x: 0.5, name="m", version="1.2",
                                  registry=scraper.registry)
    read = inferwatch.instrument(lambda x: 0.5, name="m", version=padded,
                                 registry=scraper.registry)
    plain(1)
    read(1)
    assert [s["model_version"] for s in scraper.series("inferwatch_model_info")] == ["1.2"]
    assert scraper.value("inferwatch_requests_total", model="m", model_version="1.2",
                         outcome="ok") == 2
    assert inferwatch.monitor("m", padded, registry=scraper.registry).version == "1.2"


@pytest.mark.parametrize("padded", [" 1", "1\n"])
def test_a_challenger_with_the_champions_version_padded_is_refused(padded):
    registry = Registry()
    try:
        champion = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                         registry=registry)
        with pytest.raises(ValueError, match="champion's version"):
            inferwatch.shadow(champion, lambda x: 0.4, version=padded)
    finally:
        registry.close()


def test_blank_version_is_unversioned():
    registry = Registry()
    try:
        inferwatch.instrument(lambda x: 0.5, name="m", version=" \n", registry=registry)
        assert [m.version for m in registry.monitors()] == ["unversioned"]
    finally:
        registry.close()


@pytest.mark.parametrize("version", [float("nan"), float("inf"), np.float64("nan"),
                                     float("-inf")])
def test_nan_or_infinite_version_is_refused_naming_version(version):
    registry = Registry()
    try:
        with pytest.raises(ValueError, match="version"):
            inferwatch.instrument(lambda x: 0.5, name="m", version=version, registry=registry)
        with pytest.raises(ValueError, match="version"):
            inferwatch.instrument(name="m", version=version, registry=registry)
        with pytest.raises(ValueError, match="version"):
            inferwatch.monitor("m", version, registry=registry)
        assert registry.monitors() == []
    finally:
        registry.close()


def test_huge_integer_version_is_not_an_overflow():
    registry = Registry()
    try:
        inferwatch.instrument(lambda x: 0.5, name="m", version=10**400, registry=registry)
        assert len(registry.monitors()) == 1
    finally:
        registry.close()


# --- async methods returning the model ------------------------------------------------------

class AsyncBuilder:
    def __init__(self):
        self.fitted = False

    async def fit_async(self, rows):
        await asyncio.sleep(0)
        self.fitted = True
        return self

    async def score_async(self):
        return 0.5

    def fit(self, rows):
        self.fitted = True
        return self

    def predict(self, rows):
        return np.asarray(rows, dtype=float).sum(axis=1)


def test_async_method_returning_the_model_returns_the_wrapper(scraper):
    model = inferwatch.instrument(AsyncBuilder(), name="b", version="1",
                                  registry=scraper.registry)

    async def main():
        fitted = await model.fit_async([[1.0]])
        return fitted, await model.score_async()

    fitted, score = asyncio.run(main())
    assert score == 0.5
    assert fitted is model  # as the sync path: model.fit(...) is model
    assert model.fit([[1.0]]) is model
    fitted.predict([[1.0, 2.0]])
    assert scraper.value("inferwatch_requests_total", model="b", outcome="ok") == 1


# --- a Hugging Face pipeline called with one input and top_k=None -------------------------

class _Config:
    id2label = {0: "NEGATIVE", 1: "POSITIVE"}


class _Model:
    config = _Config()


class TextClassifier:
    """A text-classification pipeline: one string in, every label's score out."""

    model = _Model()

    def __call__(self, text, top_k=1):
        scores = [{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.1}]
        if isinstance(text, list):
            return [scores if top_k is None else scores[:1] for _ in text]
        return scores if top_k is None else scores[:1]


def test_pipeline_single_input_with_every_label_is_one_row(scraper):
    pipe = inferwatch.instrument(TextClassifier(), name="sent", version="1",
                                 registry=scraper.registry)
    pipe("great film", top_k=None)  # keywords: the slow path
    pipe("great film", top_k=None)
    pipe(["a", "b"], top_k=None)  # a batch: a list per input
    assert scraper.value("inferwatch_batch_size_sum", model="sent") == 4
    assert scraper.value("inferwatch_predicted_class_total", model="sent",
                         **{"class": "POSITIVE"}) == 4
    assert not scraper.value("inferwatch_predicted_class_total", model="sent",
                             **{"class": "NEGATIVE"})


def test_batch_of_top_one_answers_naming_each_class_once_stays_rows(scraper):
    class Batch:
        model = _Model()

        def __call__(self, texts):
            return [{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.8}]

    pipe = inferwatch.instrument(Batch(), name="b", version="1", registry=scraper.registry)
    pipe(["good", "bad"])
    assert scraper.value("inferwatch_batch_size_sum", model="b") == 2
    for label in ("POSITIVE", "NEGATIVE"):
        assert scraper.value("inferwatch_predicted_class_total", model="b",
                             **{"class": label}) == 1


# --- keyword-only calls: the request id is no input ----------------------------------------

class KeywordModel:
    def predict(self, request_id=None, X=None):
        return np.zeros(len(X))


def _reference():
    rng = np.random.default_rng(0)
    return inferwatch.Reference.from_data(rng.normal(size=(200, 2)), feature_names=["a", "b"])


def test_keyword_only_call_with_request_id_checks_its_rows(scraper):
    model = inferwatch.instrument(KeywordModel(), name="kw", version="1",
                                  reference=_reference(), registry=scraper.registry)
    rows = np.array([[np.nan, 0.0], [0.1, 0.2]])
    model.predict(request_id="r-1", X=rows)
    assert scraper.total("inferwatch_input_errors_total", model="kw") == 0
    assert scraper.value("inferwatch_feature_missing_total", model="kw", feature="a") == 1


def test_keyword_only_call_inside_a_request_gives_its_features(scraper):
    model = inferwatch.instrument(KeywordModel(), name="kr", version="1",
                                  reference=_reference(), registry=scraper.registry)
    mon = inferwatch.monitor("kr", "1", registry=scraper.registry)
    with mon.request():
        model.predict(X=np.array([[0.0, np.nan]]))
    assert scraper.value("inferwatch_feature_missing_total", model="kr", feature="b") == 1
