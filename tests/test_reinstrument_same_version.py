"""A model instrumented again under the same name and version: the newest one names things.

A notebook cell re-run after retraining, or a server reloading a retrained model file
without bumping the version, calls ``instrument()`` a second time with a new model object.
Its classes (and its framework) are what the calls from then on are read with; the calls
the old model made before are folded with the old model's own classes. Two models live
under one name and version at once share one set of classes: the newest one's.
"""

from __future__ import annotations

import gc
import logging
import urllib.request
import warnings
import weakref
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.serving.bridge import InferwatchCollector

ROWS = 300
X = np.random.default_rng(0).normal(size=(ROWS, 3))
TWO_CLASSES = np.where(X[:, 0] > 0, "cat", "dog")
THREE_CLASSES = np.select([X[:, 0] > 0.5, X[:, 0] < -0.5], ["cat", "dog"], "bird")


def _fitted(estimator, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


def _served_samples(registry: Registry) -> list:
    """Every sample of a real /metrics scrape of `registry`, parsed by prometheus_client."""
    collectors = CollectorRegistry()
    collectors.register(InferwatchCollector(registry))
    with inferwatch.serve(port=0, addr="127.0.0.1", registry=collectors) as server:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as response:
            body = response.read().decode()
    return [sample for family in text_string_to_metric_families(body)
            for sample in family.samples]


def _by_label(samples: list, name: str, label: str, model: str) -> dict[str, float]:
    """The nonzero samples of `name` for `model`, by the value of `label`."""
    return {s.labels[label]: s.value for s in samples
            if s.name == name and s.labels["model"] == model and s.value}


def _predicted(*outputs: np.ndarray, classes: np.ndarray | None = None) -> Counter:
    """The classes predict() returned, or (with `classes`) each predict_proba row's top one."""
    counted: Counter = Counter()
    for output in outputs:
        labels = output if classes is None else classes[np.argmax(output, axis=1)]
        counted.update(str(label) for label in labels)
    return counted


@pytest.fixture
def own_registry():
    registry = Registry(drain_interval=3600)  # drained by the scrape alone
    yield registry
    registry.close()


def test_a_retrained_model_with_a_new_class_is_read_with_its_own_classes(own_registry):
    old = _fitted(LogisticRegression(), TWO_CLASSES)
    model = inferwatch.instrument(old, name="pets", version="1", registry=own_registry)
    # Calls of the old model still waiting for the drain when the cell is run again.
    before = [model.predict(X[:40]), model.predict_proba(X[40:100])]
    old_classes = old.classes_
    old_gone = weakref.ref(old)
    del old
    new = _fitted(LogisticRegression(), THREE_CLASSES)
    model = inferwatch.instrument(new, name="pets", version="1", registry=own_registry)
    gc.collect()
    assert old_gone() is None  # the old model is collected: its reader cannot read it
    after = [model.predict(X), model.predict_proba(X)]
    assert "bird" in set(after[0])

    samples = _served_samples(own_registry)
    expected = _predicted(before[0]) + _predicted(before[1], classes=old_classes) + \
        _predicted(after[0]) + _predicted(after[1], classes=new.classes_)
    assert _by_label(samples, "inferwatch_predicted_class_total", "class", "pets") == \
        dict(expected)
    # No class counted as unsupported, no probability column counted by its number.
    assert _by_label(samples, "inferwatch_invalid_predictions_total", "reason", "pets") == {}


def test_a_server_reloading_a_model_without_a_version_reads_the_new_classes(own_registry):
    """The default version ("unversioned") for both: the reload keeps the same series."""
    model = inferwatch.instrument(_fitted(LogisticRegression(), TWO_CLASSES), name="mail",
                                  registry=own_registry)
    model.predict(X[:5])
    own_registry.drain()  # a scrape between the two loads
    model = inferwatch.instrument(_fitted(LogisticRegression(), THREE_CLASSES), name="mail",
                                  registry=own_registry)
    gc.collect()
    predicted = model.predict(X)
    samples = _served_samples(own_registry)
    counts = _by_label(samples, "inferwatch_predicted_class_total", "class", "mail")
    assert counts["bird"] == _predicted(predicted)["bird"]
    assert sum(counts.values()) == 5 + ROWS
    assert _by_label(samples, "inferwatch_invalid_predictions_total", "reason", "mail") == {}
    versions = {s.labels["model_version"] for s in samples if s.labels.get("model") == "mail"}
    assert versions == {"unversioned"}


def test_the_old_models_waiting_probabilities_keep_the_old_column_names(own_registry):
    """Calls made before the reload are folded with the classes of the model that made them:
    read with the new model's three classes, two columns would be numbered 0 and 1."""
    old = _fitted(LogisticRegression(), TWO_CLASSES)
    model = inferwatch.instrument(old, name="pets", version="1", registry=own_registry)
    waiting = model.predict_proba(X)
    assert own_registry.monitor("pets", "1").pending() == 1
    inferwatch.instrument(_fitted(LogisticRegression(), THREE_CLASSES), name="pets",
                          version="1", registry=own_registry)
    samples = _served_samples(own_registry)
    assert _by_label(samples, "inferwatch_predicted_class_total", "class", "pets") == \
        dict(_predicted(waiting, classes=old.classes_))
    outputs = {s.labels["output"] for s in samples
               if s.name == "inferwatch_prediction_count" and s.labels["model"] == "pets"}
    assert not outputs & {"0", "1"}, outputs


def test_two_live_models_share_the_classes_of_the_one_instrumented_last(own_registry):
    old = _fitted(LogisticRegression(), TWO_CLASSES)
    first = inferwatch.instrument(old, name="pets", version="1", registry=own_registry)
    from_first_before = first.predict(X[:10])
    new = _fitted(LogisticRegression(), THREE_CLASSES)
    second = inferwatch.instrument(new, name="pets", version="1", registry=own_registry)
    # Both stay alive: the old one (still referenced) no longer names the classes.
    from_second = second.predict(X)
    from_first = first.predict(X[10:20])  # "cat" / "dog": classes of the newest one too
    samples = _served_samples(own_registry)
    counts = _by_label(samples, "inferwatch_predicted_class_total", "class", "pets")
    assert counts == dict(_predicted(from_first_before, from_second, from_first))
    assert _by_label(samples, "inferwatch_invalid_predictions_total", "reason", "pets") == {}


def test_a_function_instrumented_under_the_name_keeps_the_models_classes(own_registry):
    """A function has no classes: it does not take the model's away."""
    new = _fitted(LogisticRegression(), THREE_CLASSES)
    inferwatch.instrument(new, name="pets", version="1", registry=own_registry)
    predict = inferwatch.instrument(lambda rows: new.predict(rows), name="pets", version="1",
                                    registry=own_registry)
    predicted = predict(X)
    samples = _served_samples(own_registry)
    assert _by_label(samples, "inferwatch_predicted_class_total", "class", "pets") == \
        dict(_predicted(predicted))


def test_a_single_label_model_reloaded_as_a_multi_label_one_is_read_per_label(own_registry):
    levels = np.array(["low", "mid", "high"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0)]
    single = _fitted(LogisticRegression(), levels)
    model = inferwatch.instrument(single, name="tags", version="1", registry=own_registry)
    model.predict_proba(X[:10])
    own_registry.drain()
    indicator = np.stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 2] > 0.5], axis=1).astype(int)
    tagger = _fitted(OneVsRestClassifier(LogisticRegression()), indicator)
    model = inferwatch.instrument(tagger, name="tags", version="1", registry=own_registry)
    proba = model.predict_proba(X)
    assert np.abs(proba.sum(axis=1) - 1).max() > 0.01  # independent labels
    samples = _served_samples(own_registry)
    # Only the single-label model's ten rows have a top class; each label is an output.
    counts = _by_label(samples, "inferwatch_predicted_class_total", "class", "tags")
    assert sum(counts.values()) == 10
    assert _by_label(samples, "inferwatch_invalid_predictions_total", "reason", "tags") == {}
    for label in range(3):
        count = [s.value for s in samples if s.name == "inferwatch_prediction_count"
                 and s.labels["model"] == "tags" and s.labels["output"] == str(label)]
        assert count == [ROWS], label


class HandWritten:
    """A model of no known framework: it is named by its own package."""

    classes_ = np.array(["bird", "cat", "dog"])

    def predict(self, rows):
        return np.array(["bird"] * len(rows))


def test_the_framework_follows_the_model_instrumented_last(own_registry, caplog):
    model = inferwatch.instrument(_fitted(LogisticRegression(), TWO_CLASSES), name="pets",
                                  version="1", registry=own_registry, metadata={"team": "ml"})
    model.predict(X[:5])
    with caplog.at_level(logging.WARNING, logger="inferwatch"):
        model = inferwatch.instrument(HandWritten(), name="pets", version="1",
                                      registry=own_registry, metadata={"team": "ml"})
    model.predict(X[:7])
    # The framework is read off the model, never a setting refused for calls counted.
    assert not [r for r in caplog.records if "settings are not applied" in r.getMessage()]
    samples = _served_samples(own_registry)
    info = [s.labels for s in samples if s.name == "inferwatch_model_info"]
    assert [(i["framework"], i["team"]) for i in info] == [(HandWritten.__module__, "ml")]
    assert _by_label(samples, "inferwatch_predicted_class_total", "class", "pets")["bird"] == 7


def test_settings_changed_on_a_reload_are_still_refused_with_a_warning(own_registry, caplog):
    model = inferwatch.instrument(_fitted(LogisticRegression(), TWO_CLASSES), name="pets",
                                  version="1", registry=own_registry)
    model.predict(X[:5])
    with caplog.at_level(logging.WARNING, logger="inferwatch"):
        inferwatch.instrument(_fitted(LogisticRegression(), THREE_CLASSES), name="pets",
                              version="1", registry=own_registry, max_classes=2)
    assert [r for r in caplog.records if "settings are not applied" in r.getMessage()]
    assert own_registry.monitor("pets", "1").settings.max_classes == 50


LABEL = st.one_of(st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True),
                  st.integers(min_value=-5, max_value=99))


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(old_labels=st.lists(LABEL, min_size=2, max_size=5, unique_by=str),
       new_labels=st.lists(LABEL, min_size=2, max_size=5, unique_by=str),
       seed=st.integers(0, 2**16))
def test_each_models_calls_are_counted_by_that_models_classes(old_labels, new_labels, seed):
    """Any two class sets (text or whole numbers, overlapping or not): every call is
    counted under the class its model returned, and nothing as unsupported."""
    kinds = {type(label) for label in old_labels + new_labels}
    if len(kinds) > 1:  # a model's classes are of one kind; the two models may differ
        old_labels = [str(label) for label in old_labels] if \
            {type(label) for label in old_labels} != {int} else old_labels
        new_labels = [str(label) for label in new_labels] if \
            {type(label) for label in new_labels} != {int} else new_labels
    rng = np.random.default_rng(seed)
    registry = Registry(drain_interval=3600)
    try:
        old = DummyClassifier(strategy="stratified", random_state=seed).fit(
            X, np.array(old_labels, dtype=object)[rng.integers(0, len(old_labels), ROWS)])
        model = inferwatch.instrument(old, name="m", version="1", registry=registry)
        before = [model.predict(X[:20]), model.predict_proba(X[20:50])]
        old_classes = old.classes_
        del old, model
        new = DummyClassifier(strategy="stratified", random_state=seed + 1).fit(
            X, np.array(new_labels, dtype=object)[rng.integers(0, len(new_labels), ROWS)])
        model = inferwatch.instrument(new, name="m", version="1", registry=registry)
        gc.collect()
        after = [model.predict(X[:30]), model.predict_proba(X[:40])]
        samples = _served_samples(registry)
    finally:
        registry.close()
    expected = _predicted(before[0]) + _predicted(before[1], classes=old_classes) + \
        _predicted(after[0]) + _predicted(after[1], classes=new.classes_)
    assert _by_label(samples, "inferwatch_predicted_class_total", "class", "m") == \
        dict(expected)
    assert _by_label(samples, "inferwatch_invalid_predictions_total", "reason", "m") == {}
