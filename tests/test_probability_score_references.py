"""A reference that profiled one class's probability is compared with that column.

The common reference of a binary classifier profiles ``predict_proba(X)[:, 1]`` (or a
file's score column, ``inferwatch profile --predictions-column score``): one output of
numbers in [0, 1]. Live, ``predict_proba`` answers both columns, named by ``classes_``, so
no live name was the reference's; the predicted labels were binned against the profile of
probabilities instead, a label 1 in its top bin and a label 0 in its bottom one, and the
prediction drift read about 7 on a model serving its training data (the drift alert fires
at 0.2). The second column, the one ``[:, 1]`` takes, is now what the reference is compared
with, and predicted labels never are.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

import inferwatch


def _data(classes: tuple[object, object]) -> tuple[np.ndarray, LogisticRegression]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, 3))
    y = np.where(x[:, 0] + x[:, 1] > 0, classes[1], classes[0])
    return x, LogisticRegression().fit(x, y)


def _drift(scraper, model: str) -> dict[str, float]:
    return {s.labels["output"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_prediction_drift" and s.labels["model"] == model
            and s.labels["method"] == "psi"}


def _serve(scraper, clf, reference, x, method: str, name: str, batches=(7, 1, 40, 1, 51)):
    model = inferwatch.instrument(clf, name=name, version="1", registry=scraper.registry,
                                  reference=reference)
    start = 0
    for size in batches:
        getattr(model, method)(x[start:start + size])
        start += size
    return model


def test_a_profile_of_the_positive_column_scores_what_the_two_column_profile_scores(scraper):
    x, clf = _data((0, 1))
    proba = clf.predict_proba(x)
    live = x[:100]
    _serve(scraper, clf, inferwatch.Reference.from_data(x, predictions=proba[:, 1]), live,
           "predict_proba", "one")
    _serve(scraper, clf, inferwatch.Reference.from_data(x, predictions=proba), live,
           "predict_proba", "both")
    one, both = _drift(scraper, "one"), _drift(scraper, "both")
    assert set(one) == {"value"} and set(both) == {"0", "1"}
    assert one["value"] == both["1"]
    assert one["value"] < 0.2  # the training rows again: no drift


def test_a_score_column_of_text_classes_is_compared_with_the_second_class(scraper):
    # classes_ sorts them: ["fraud", "legit"], and [:, 1] is "legit"'s column.
    x, clf = _data(("fraud", "legit"))
    proba = clf.predict_proba(x)
    live = x[:100]
    _serve(scraper, clf, inferwatch.Reference.from_data(x, predictions={"score": proba[:, 1]}),
           live, "predict_proba", "score")
    _serve(scraper, clf, inferwatch.Reference.from_data(
        x, predictions=proba, prediction_names=list(clf.classes_)), live, "predict_proba",
        "named")
    assert _drift(scraper, "score") == {"score": _drift(scraper, "named")["legit"]}


def test_predicted_labels_are_never_binned_against_probabilities(scraper):
    x, clf = _data((0, 1))
    reference = inferwatch.Reference.from_data(x, predictions=clf.predict_proba(x)[:, 1])
    _serve(scraper, clf, reference, x[:100], "predict", "labels")
    assert _drift(scraper, "labels") == {}  # was 6.8: labels 0 and 1 in the outer bins
    assert scraper.value("inferwatch_feature_drift", model="labels", feature="x0",
                         method="psi") < 0.2  # the inputs are still compared


def test_a_profile_of_labels_is_still_compared_with_the_predicted_labels(scraper):
    x, clf = _data((0, 1))
    reference = inferwatch.Reference.from_data(x, predictions=clf.predict(x))  # whole numbers
    live = x[:100]
    _serve(scraper, clf, reference, live, "predict_proba", "from-proba")
    _serve(scraper, clf, reference, live, "predict", "from-labels")
    from_proba = _drift(scraper, "from-proba")
    assert set(from_proba) == {"value"} and from_proba == _drift(scraper, "from-labels")


def test_three_classes_against_one_probability_profile_score_nothing(scraper):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 2))
    clf = LogisticRegression().fit(x, np.digitize(x[:, 0], [-0.5, 0.5]))
    reference = inferwatch.Reference.from_data(x, predictions=clf.predict_proba(x)[:, 1])
    _serve(scraper, clf, reference, x[:100], "predict_proba", "three")
    assert _drift(scraper, "three") == {}  # which of three columns was profiled is unknown


class _Binary:
    def __init__(self, results: list[np.ndarray], classes: list[object] | None) -> None:
        self._results = iter(results)
        if classes is not None:
            self.classes_ = np.array(classes)

    def predict_proba(self, x: object) -> np.ndarray:
        return next(self._results)


def _scores(reference, results, classes) -> dict[str, float]:
    from conftest import Scraper

    scraper = Scraper()
    try:
        model = inferwatch.instrument(_Binary(results, classes), name="m", version="1",
                                      registry=scraper.registry, reference=reference)
        for i in range(len(results)):
            model.predict_proba(i)
        return _drift(scraper, "m")
    finally:
        scraper.registry.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profiled=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=40).filter(
           lambda v: any(p % 1 for p in v)),
       calls=st.lists(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5), min_size=1,
                      max_size=6),
       classes=st.sampled_from([None, [0, 1], ["no", "yes"], [True, False]]))
def test_the_positive_column_is_scored_as_a_two_column_profile_scores_it(profiled, calls,
                                                                         classes):
    x = np.zeros((len(profiled), 1))
    p = np.array(profiled)
    results = [np.column_stack([1 - np.array(c), np.array(c)]) for c in calls]
    one = _scores(inferwatch.Reference.from_data(x, predictions=p), results, classes)
    names = None if classes is None else [str(c) for c in classes]
    both = _scores(inferwatch.Reference.from_data(x, predictions=np.column_stack([1 - p, p]),
                                                  prediction_names=names), results, classes)
    positive = "1" if classes is None else names[1]
    assert one.keys() <= {"value"}
    assert one.get("value") == both.get(positive)


def test_a_report_compares_the_second_column_of_a_two_class_matrix_with_such_a_profile():
    import pandas as pd

    x, clf = _data((0, 1))
    proba = clf.predict_proba(x)
    reference = inferwatch.Reference.from_data(x, predictions=proba[:, 1])
    assert reference.score_output == "value"

    def psi(predictions) -> dict[str, float]:
        report = reference.compare(x[:150], predictions=predictions)
        return {output.name: output.psi for output in report.outputs}

    expected = psi(proba[:150, 1])
    assert set(expected) == {"value"} and expected["value"] < 0.2
    assert psi(proba[:150]) == expected
    assert psi(pd.DataFrame(proba[:150], columns=clf.classes_)) == expected
    # A profile of labels is no profile of a score: a matrix has no column to compare.
    labels = inferwatch.Reference.from_data(x, predictions=clf.predict(x))
    assert labels.score_output is None
