"""Objectives declared in code are held to the checks of the same keys in the generator config:
a value the config refuses (an availability written as a percentage) is refused by
instrument(), naming the key and the allowed range, rather than paging from the rules."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

import inferwatch
from inferwatch.catalogue import OBJECTIVE_ALIASES, OBJECTIVE_KEYS
from inferwatch.core.options import Settings
from inferwatch.generate import config_checks
from inferwatch.generate.config_schema import Config


def _config_field(key: str) -> tuple[typing.Any, dataclasses.Field]:
    """The type and field of a dotted key of the generator config."""
    cls: typing.Any = Config
    *parents, leaf = key.split(".")
    for part in parents:
        cls = typing.get_type_hints(cls)[part]
    spec = next(f for f in dataclasses.fields(cls) if f.name == leaf)
    return typing.get_type_hints(cls)[leaf], spec


def _config_accepts(key: str, value: float) -> bool:
    """Whether the config takes `value` for `key` (a duration as that many seconds)."""
    kind, spec = _config_field(key)
    if kind is int and not isinstance(value, int):  # YAML's 100.0 is refused too
        return False
    if kind is str:  # a duration: the rules read it in seconds, as a declared value is
        return value > 0
    return spec.metadata["check"](value) is None


# --- the examples that used to be accepted ----------------------------------------------------

@pytest.mark.parametrize(("objectives", "message"), [
    ({"availability": 99.95}, "objectives: availability (slo.availability) must be between 0 "
                              "and 1 (both excluded), got 99.95 (a percentage? write it as a "
                              "ratio: 0.9995)"),
    ({"accuracy": 2.0}, "objectives: accuracy (accuracy.min_ratio) must be between 0 and 1, "
                        "got 2.0 (a percentage? write it as a ratio: 0.02)"),
    ({"slo.availability": 1.0}, "objectives: slo.availability must be between 0 and 1 (both "
                                "excluded), got 1.0"),
    ({"data_quality.missing_ratio": 7}, "objectives: data_quality.missing_ratio must be "
                                        "between 0 and 1, got 7 (a percentage? write it as a "
                                        "ratio: 0.07)"),
    ({"drift.min_observations": 0.5}, "objectives: drift.min_observations must be a whole "
                                      "number, got 0.5"),
    ({"accuracy.min_outcomes": 2.5}, "objectives: accuracy.min_outcomes must be a whole "
                                     "number, got 2.5"),
    ({"predictions.max_versions": 0}, "objectives: predictions.max_versions must be more than "
                                      "zero, got 0"),
])
def test_a_value_out_of_its_keys_range_is_refused_by_instrument(registry, objectives, message):
    with pytest.raises(ValueError) as refused:
        inferwatch.instrument(lambda x: 0.1, name="fraud", version="1", registry=registry,
                              objectives=objectives)
    assert str(refused.value) == f"inferwatch: invalid settings: {message}"


def test_objectives_in_range_are_still_exported(scraper):
    declared = {"availability": 0.9995, "latency_p99": 0.05, "accuracy": 0.97,
                "drift.min_observations": 500, "predictions.max_model_age": 86400 * 7,
                "accuracy.max_drop": 0.0}
    model = inferwatch.instrument(lambda x: 0.1, name="fraud", version="1",
                                  registry=scraper.registry, objectives=declared)
    model(1)
    found = {s.labels["objective"]: s.value for s in scraper.samples()
             if s.name == "inferwatch_model_objective"}
    assert found == {OBJECTIVE_ALIASES.get(k, k): float(v) for k, v in declared.items()}


# --- every key, every value: the config's rule --------------------------------------------

NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-2, 200), st.integers(-3, 10**6), st.sampled_from([0, 0.0, 1, 1.0, 100, 99.95]))


@given(key=st.sampled_from(OBJECTIVE_KEYS), value=NUMBERS)
def test_a_declared_value_is_accepted_exactly_when_the_config_accepts_it(key, value):
    if _config_accepts(key, value):
        assert Settings(objectives={key: value}).objectives[key] == float(value)
    else:
        with pytest.raises(ValueError, match=f"objectives: {key} must be"):
            Settings(objectives={key: value})


@given(key=st.sampled_from(OBJECTIVE_KEYS),
       value=st.one_of(st.just(math.nan), st.just(math.inf), st.just(-math.inf),
                       st.booleans(), st.text(max_size=4), st.none(), st.just(10**400)))
def test_a_declared_value_that_is_no_finite_number_is_refused_by_name(key, value):
    with pytest.raises(ValueError, match=f"objectives: {key} must be"):
        Settings(objectives={key: value})


@given(alias=st.sampled_from(sorted(OBJECTIVE_ALIASES)), value=NUMBERS)
def test_the_short_names_are_held_to_their_keys_rule(alias, value):
    key = OBJECTIVE_ALIASES[alias]
    if _config_accepts(key, value):
        assert Settings(objectives={alias: value}).objectives[key] == float(value)
    else:
        with pytest.raises(ValueError, match=rf"objectives: {alias} \({key}\) must be"):
            Settings(objectives={alias: value})


def test_the_config_and_the_code_share_each_keys_check():
    from inferwatch.catalogue import OBJECTIVE_CHECKS, WHOLE_NUMBER_OBJECTIVES

    for key in OBJECTIVE_KEYS:
        kind, spec = _config_field(key)
        if kind is str:
            assert spec.metadata["check"] is config_checks.duration
            assert OBJECTIVE_CHECKS[key] is config_checks.positive  # seconds in code
        else:
            assert spec.metadata["check"] is OBJECTIVE_CHECKS[key], key
        assert (key in WHOLE_NUMBER_OBJECTIVES) == (kind is int), key
