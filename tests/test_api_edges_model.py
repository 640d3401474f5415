"""An instrumented model behaves as the model does when its code changes it at runtime."""

from __future__ import annotations

import copy
import pickle

import inferwatch


class Scorer:
    """A model whose method a serving process may patch at runtime (a hot fix, a mock)."""

    def predict(self, x: float) -> float:
        return 1.0

    def predict_proba(self, x: float) -> list[list[float]]:
        return [[0.5, 0.5]]


def _recorded(scraper) -> float:
    return scraper.total("inferwatch_requests_total")


def test_a_predict_assigned_after_instrumenting_is_the_one_called_and_recorded(scraper):
    model = inferwatch.instrument(Scorer(), name="m", registry=scraper.registry)
    model.predict = lambda x: 2.0
    assert model.predict(0.0) == 2.0
    assert _recorded(scraper) == 1
    assert scraper.value("inferwatch_prediction_count", output="value") == 1
    assert scraper.value("inferwatch_prediction_sum", output="value") == 2.0


def test_a_predict_deleted_from_the_instance_falls_back_to_the_class_method(scraper):
    plain = Scorer()
    plain.predict = lambda x: 3.0
    model = inferwatch.instrument(plain, name="m", registry=scraper.registry)
    assert model.predict(0.0) == 3.0
    del model.predict
    assert model.predict(0.0) == 1.0
    assert _recorded(scraper) == 2


def test_a_method_set_to_a_non_callable_reads_through(scraper):
    model = inferwatch.instrument(Scorer(), name="m", registry=scraper.registry)
    model.predict_proba = None
    assert model.predict_proba is None
    model.predict_proba = lambda x: [[0.1, 0.9]]
    assert model.predict_proba(0.0) == [[0.1, 0.9]]
    assert _recorded(scraper) == 1


def test_a_wrapper_given_back_to_its_own_model_records_each_call_once(scraper):
    model = inferwatch.instrument(Scorer(), name="m", registry=scraper.registry)
    model.predict = model.predict
    assert model.predict(0.0) == 1.0
    assert _recorded(scraper) == 1


def test_a_patched_model_copies_and_pickles_with_its_patch(scraper):
    model = inferwatch.instrument(Scorer(), name="m", registry=scraper.registry)
    model.predict = _two
    assert copy.deepcopy(model).predict(0.0) == 2.0
    assert copy.copy(model).predict(0.0) == 2.0
    assert pickle.loads(pickle.dumps(model)).predict(0.0) == 2.0
    # The copies, and the pickle loaded in this process, record here.
    assert scraper.total("inferwatch_requests_total") == 3


def _two(x: float) -> float:
    return 2.0
