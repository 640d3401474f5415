"""Call shapes that real models have: what reaches the model, and what becomes a label."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.predictions import SMALL_INTEGER_LIMIT, class_labels, normalize


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    return x, y


# --- request_id reaches a model only when its signature names it ------------------------

def test_pipeline_predict_proba_with_request_id(scraper):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _data()
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    model = inferwatch.instrument(pipe, name="pipe", version="1", registry=scraper.registry)
    out = model.predict_proba(x[:1], request_id="r-17")
    np.testing.assert_array_equal(out, pipe.predict_proba(x[:1]))
    inferwatch.monitor("pipe", registry=scraper.registry).record_outcome("r-17", int(out.argmax()))
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 1


def test_statsmodels_results_predict_with_request_id(scraper):
    sm = pytest.importorskip("statsmodels.api")
    x, y = _data()
    results = sm.OLS(y.astype(float), sm.add_constant(x)).fit()
    model = inferwatch.instrument(results, name="ols", version="1", registry=scraper.registry)
    exog = sm.add_constant(x)[:4]
    np.testing.assert_array_equal(model.predict(exog, request_id="r-1"), results.predict(exog))
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1


def test_keyword_catch_all_does_not_receive_request_id(scraper):
    seen = []

    def predict(x, **params):
        seen.append(params)
        return 0.5

    def named(x, request_id=None):
        seen.append({"request_id": request_id})
        return 0.5

    inferwatch.instrument(predict, name="a", registry=scraper.registry)(1, request_id="r-1")
    inferwatch.instrument(named, name="b", registry=scraper.registry)(1, request_id="r-2")
    assert seen == [{}, {"request_id": "r-2"}]


class _Forward:
    """A module-like object whose __call__ hands everything to forward()."""

    def __init__(self, takes_id: bool) -> None:
        self.seen = []
        self.forward = self._with_id if takes_id else self._plain

    def _plain(self, x):
        self.seen.append(None)
        return 0.5

    def _with_id(self, x, request_id=None):
        self.seen.append(request_id)
        return 0.5

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)


@pytest.mark.parametrize("takes_id", [False, True])
def test_forward_signature_decides_for_callable_modules(scraper, takes_id):
    net = _Forward(takes_id)
    model = inferwatch.instrument(net, name="net", registry=scraper.registry)
    model(1.0, request_id="r-9")
    assert net.seen == ["r-9" if takes_id else None]


# --- only plausible classes become labels (issue 11, item 2) -----------------------------

def test_user_data_in_outputs_is_not_a_label(scraper):
    wrapped = inferwatch.instrument(
        lambda x: {"request_id": "r-1", "user": "alice@example.com", "score": 0.7},
        name="m", version="1", registry=scraper.registry)
    wrapped(1)
    generator = inferwatch.instrument(lambda x: (i for i in range(3)), name="g", version="1",
                                      registry=scraper.registry)
    generator(1)
    assert scraper.series("inferwatch_predicted_class_total") == []
    assert scraper.value("inferwatch_invalid_predictions_total", model="m",
                         reason="unsupported_type") == 2
    assert scraper.value("inferwatch_invalid_predictions_total", model="g",
                         reason="unsupported_type") == 1
    assert scraper.value("inferwatch_prediction_sum", output="score") == pytest.approx(0.7)
    assert "alice" not in scraper.text()


def test_classes_from_classes_attribute_and_declared_list(scraper):
    class Model:
        classes_ = np.array(["fraud", "legit"])

        def predict(self, x):
            return np.array(["fraud", "legit", "alice@example.com"])

    model = inferwatch.instrument(Model(), name="m", version="1", registry=scraper.registry)
    model.predict(None)
    declared = inferwatch.instrument(lambda x: x, name="d", version="1", classes=["cat"],
                                     registry=scraper.registry)
    declared("cat")
    declared("dog")
    labels = {(s["model"], s["class"]) for s in scraper.series("inferwatch_predicted_class_total")}
    assert labels == {("m", "fraud"), ("m", "legit"), ("d", "cat")}
    assert scraper.value("inferwatch_invalid_predictions_total", model="m",
                         reason="unsupported_type") == 1
    assert scraper.value("inferwatch_invalid_predictions_total", model="d",
                         reason="unsupported_type") == 1


def test_small_integers_and_bools_are_classes_large_ones_are_not(scraper):
    wrapped = inferwatch.instrument(lambda x: x, name="m", version="1", registry=scraper.registry)
    wrapped(np.array([1, 0, -1, SMALL_INTEGER_LIMIT, 4_111_111_111_111]))
    wrapped(True)
    wrapped(7)
    wrapped(10**30)
    assert {s["class"] for s in scraper.series("inferwatch_predicted_class_total")} == {
        "1", "0", "-1", "True", "7"}
    assert scraper.value("inferwatch_invalid_predictions_total",
                         reason="unsupported_type") == 3


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.one_of(st.text(), st.integers(), st.booleans(), st.floats(), st.binary(),
                       st.lists(st.integers(), max_size=5),
                       st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)))
def test_a_label_is_always_a_plausible_class(value):
    known = {"cat", "dog"}
    prediction = normalize(value, known_classes=known)
    if prediction.classes is None:
        return
    for label in class_labels(prediction.classes):
        plausible = label in known or label in ("True", "False") or (
            label.lstrip("-").isdigit() and abs(int(label)) < SMALL_INTEGER_LIMIT)
        assert plausible, label
