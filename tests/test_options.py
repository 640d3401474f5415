"""One frozen configuration object per model: every option, immutable, pickles as itself."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.options import FrozenLabels, Settings
from inferwatch.core.registry import Registry
from inferwatch.quality import tracker


def test_every_instrument_option_lands_in_the_one_settings_object():
    registry = Registry()
    predict = inferwatch.instrument(lambda x: 0.5, name="m", registry=registry,
                                    range_tolerance=0.1, drift_window_seconds=60,
                                    drift_age_buckets=3, trace_stages=True, exemplars=False,
                                    max_classes=7, metadata={"team": "risk"})
    predict(1.0)
    settings = inferwatch.monitor("m", registry=registry).settings
    assert (settings.range_tolerance, settings.drift_window_seconds,
            settings.drift_age_buckets) == (0.1, 60, 3)
    assert (settings.trace_stages, settings.exemplars, settings.max_classes) == (True, False, 7)
    assert dict(settings.metadata) == {"framework": "python", "team": "risk"}
    registry.close()


def test_settings_are_frozen_all_the_way_down():
    quantiles, metadata = [0.5, 0.99], {"team": "risk"}
    settings = Settings(quantiles=quantiles, metadata=metadata, latency_buckets=[0.1, 1.0])
    quantiles.append(0.1)
    metadata["team"] = "changed"
    assert settings.quantiles == (0.5, 0.99)
    assert settings.latency_buckets == (0.1, 1.0)
    assert settings.metadata["team"] == "risk"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.max_classes = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.metadata["team"] = "x"  # type: ignore[index]
    for field in dataclasses.fields(Settings):
        value = getattr(Settings(), field.name)
        assert not isinstance(value, (list, dict, set)), field.name
    assert hash(settings) == hash(Settings(quantiles=(0.5, 0.99), metadata={"team": "risk"},
                                           latency_buckets=(0.1, 1.0)))


def test_settings_pickle_as_themselves():
    settings = Settings(task="regression", metadata={"team": "risk"}, drift_window_seconds=30)
    restored = pickle.loads(pickle.dumps(settings))
    assert restored == settings and type(restored.metadata) is FrozenLabels


def test_a_pickled_model_keeps_every_option(tmp_path):
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(50, 2))
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    wrapped = inferwatch.instrument(model, name="clf", version="3", max_classes=5,
                                    drift_window_seconds=90, metadata={"team": "risk"})
    restored = pickle.loads(pickle.dumps(wrapped))
    settings = restored._inferwatch_monitor.settings
    assert (settings.max_classes, settings.drift_window_seconds) == (5, 90)
    assert settings.metadata["team"] == "risk"
    assert restored._inferwatch_monitor.version == "3"
    assert restored.predict(X[:1]).tolist() == model.predict(X[:1]).tolist()


@pytest.mark.parametrize(("option", "value", "message"), [
    ("drift_window_seconds", 0, "drift_window_seconds must be positive"),
    ("drift_age_buckets", 0, "drift_age_buckets must be at least 1"),
    ("range_tolerance", -1, "range_tolerance must be >= 0"),
    ("max_pending", 4, "max_pending must be at least 8"),
    ("max_pending_bytes", 1000, "max_pending_bytes must be a whole number of at least 1 MiB"),
])
def test_bad_drift_and_backlog_options_are_named(option, value, message):
    with pytest.raises(ValueError, match=message):
        inferwatch.instrument(lambda x: x, name="m", registry=Registry(), **{option: value})


def test_the_drift_defaults_agree_with_the_quality_package():
    settings = Settings()
    assert settings.drift_window_seconds == tracker.DEFAULT_DRIFT_WINDOW_SECONDS
    assert settings.drift_age_buckets == tracker.DEFAULT_DRIFT_AGE_BUCKETS


# --- objectives declared in code ------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.one_of(st.sampled_from(["availability", "latency_p99", "accuracy",
                                                  "slo.availability", "accuracy.max_drop"]),
                                 st.text(max_size=12)),
                       st.one_of(st.floats(allow_nan=True), st.integers(-5, 5), st.booleans(),
                                 st.text(max_size=3)), max_size=4))
def test_objectives_are_accepted_under_their_config_keys_or_refused_by_name(given_objectives):
    from inferwatch.catalogue import OBJECTIVE_ALIASES, OBJECTIVE_CHECKS, OBJECTIVE_KEYS

    names = [OBJECTIVE_ALIASES.get(k, k) for k in given_objectives]
    # Each value held to its key's check in the generator config (the keys sampled here take
    # any real number, whole or not).
    valid = all(name in OBJECTIVE_KEYS for name in names) and len(set(names)) == len(names) \
        and all(not isinstance(v, (bool, str)) and v == v and abs(v) != float("inf")
                and OBJECTIVE_CHECKS[name](v) is None
                for name, v in zip(names, given_objectives.values(), strict=True))
    if valid:
        objectives = Settings(objectives=given_objectives).objectives
        assert dict(objectives) == {OBJECTIVE_ALIASES.get(k, k): float(v)
                                    for k, v in given_objectives.items()}
    else:
        with pytest.raises(ValueError, match="objectives"):
            Settings(objectives=given_objectives)


def test_declared_objectives_are_exported_and_survive_a_snapshot(scraper):
    import json

    import inferwatch
    from inferwatch.core.state import ModelState

    model = inferwatch.instrument(lambda x: 1, name="fraud", version="3",
                                  registry=scraper.registry,
                                  objectives={"latency_p99": 0.05, "availability": 0.9995})
    model(1)
    found = {s.labels["objective"]: s.value for s in scraper.samples()
             if s.name == "inferwatch_model_objective"}
    assert found == {"latency.p99_seconds": 0.05, "slo.availability": 0.9995}
    state = scraper.registry.monitor("fraud", "3").state
    copy = ModelState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert copy.objectives == found
