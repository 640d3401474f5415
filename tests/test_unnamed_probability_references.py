"""A profile of an unnamed probability matrix is compared column by column, by position.

``Reference.from_data(X, predictions=clf.predict_proba(X))`` names its outputs by column
number: ``"0"``, ``"1"``, ``"2"``. Live, the columns are named by ``classes_``. For classes
1, 2 and 3, two of those names were the profile's too, so they were matched by name: class
1's probabilities against the profile of class 2's column, class 2's against class 3's
(PSI 0.56 on the model's own training rows: a drift alert), and class 3's never scored. A
profile whose outputs are its column numbers is now matched by position, the order it was
profiled in, whatever the classes are called and whatever order a result names them in.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

import inferwatch


def _psi(scraper, model: str) -> dict[str, float]:
    return {s.labels["output"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_prediction_drift" and s.labels["model"] == model
            and s.labels["method"] == "psi"}


def _unnamed_and_named(scraper, clf, x: np.ndarray, rows: int
                       ) -> tuple[dict[str, float], dict[str, float]]:
    """The PSI per output of `clf` serving its first `rows` training rows, against a
    profile of its probabilities unnamed and one named by its ``classes_``."""
    proba = clf.predict_proba(x)
    for name, names in (("unnamed", None), ("named", clf.classes_)):
        model = inferwatch.instrument(
            clf, name=name, version="1", registry=scraper.registry,
            reference=inferwatch.Reference.from_data(x, predictions=proba,
                                                     prediction_names=names))
        for start in range(0, rows, 25):
            model.predict_proba(x[start:start + 25])
    return _psi(scraper, "unnamed"), _psi(scraper, "named")


def test_classes_one_to_three_are_scored_against_their_own_columns(scraper):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 2))
    clf = LogisticRegression().fit(x, np.select([x[:, 0] > 0.5, x[:, 1] > 0], [3, 2], 1))
    unnamed, named = _unnamed_and_named(scraper, clf, x, rows=300)
    assert named.keys() == {"1", "2", "3"}
    assert unnamed == {"0": named["1"], "1": named["2"], "2": named["3"]}
    assert max(unnamed.values()) < 0.2  # half its training rows: no drift


class _Classifier:
    def __init__(self, results: list, classes: list) -> None:
        self._results = iter(results)
        self.classes_ = np.array(classes)

    def predict_proba(self, x: object) -> object:
        return next(self._results)


def _scores(classes, profiled, results, names) -> dict[str, float]:
    from conftest import Scraper

    scraper = Scraper()
    try:
        reference = inferwatch.Reference.from_data(np.zeros((len(profiled), 1)),
                                                   predictions=profiled,
                                                   prediction_names=names)
        model = inferwatch.instrument(_Classifier(results, classes), name="m", version="1",
                                      registry=scraper.registry, reference=reference)
        for i in range(len(results)):
            model.predict_proba(i)
        return _psi(scraper, "m")
    finally:
        scraper.registry.close()


def _rows(draw, width: int, count: int) -> np.ndarray:
    cells = draw(st.lists(st.lists(st.floats(0.01, 1.0), min_size=width, max_size=width),
                          min_size=count, max_size=count))
    matrix = np.array(cells)
    return matrix / matrix.sum(axis=1, keepdims=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), width=st.integers(2, 4))
def test_an_unnamed_profile_scores_each_column_as_a_profile_named_by_classes_does(data,
                                                                                  width):
    classes = sorted(data.draw(st.one_of(
        st.lists(st.integers(0, 5), min_size=width, max_size=width, unique=True),
        st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=width, max_size=width,
                 unique=True))))
    profiled = _rows(data.draw, width, data.draw(st.integers(2, 30)))
    results = []
    for _ in range(data.draw(st.integers(1, 5))):
        matrix = _rows(data.draw, width, data.draw(st.integers(1, 4)))
        # A map per class names the columns; its keys the other way round name the same.
        results.append(matrix if data.draw(st.booleans()) else
                       [{str(c): p for c, p in reversed(list(zip(classes, row)))}
                        for row in matrix.tolist()])
    unnamed = _scores(classes, profiled, results, None)
    named = _scores(classes, profiled, results, [str(c) for c in classes])
    assert unnamed == {str(j): named[str(c)] for j, c in enumerate(classes)
                       if str(c) in named}


def test_a_report_reads_a_frame_named_by_classes_by_position_against_an_unnamed_profile():
    import pandas as pd

    rng = np.random.default_rng(0)
    proba, x = rng.dirichlet([1, 2, 3], size=500), rng.normal(size=(500, 1))
    reference = inferwatch.Reference.from_data(x, predictions=proba)

    def psi(predictions) -> dict[str, float]:
        report = reference.compare(x[:250], predictions=predictions)
        return {output.name: output.psi for output in report.outputs}

    expected = psi(proba[:250])  # an array: by position
    assert max(expected.values()) < 0.1
    for columns in (["1", "2", "3"], [1, 2, 3], ["a", "b", "c"]):
        assert psi(pd.DataFrame(proba[:250], columns=columns)) == expected, columns
    # Named by the profile's own names, in another order: by name.
    assert psi(pd.DataFrame(proba[:250][:, [2, 0, 1]], columns=["2", "0", "1"])) == expected


def test_each_matrix_of_a_multi_output_classifier_is_matched_by_position(scraper):
    from sklearn.multioutput import MultiOutputClassifier

    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 2))
    targets = np.column_stack([np.where(x[:, 0] > 0, 2, 1),
                               np.select([x[:, 1] > 0.5, x[:, 1] > -0.5], [3, 2], 1)])
    clf = MultiOutputClassifier(LogisticRegression()).fit(x, targets)
    unnamed, named = _unnamed_and_named(scraper, clf, x, rows=200)
    assert named.keys() == {"0:1", "0:2", "1:1", "1:2", "1:3"}
    assert unnamed == {"0:0": named["0:1"], "0:1": named["0:2"], "1:0": named["1:1"],
                       "1:1": named["1:2"], "1:2": named["1:3"]}
