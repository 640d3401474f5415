"""Arguments of the public API as a model-serving engineer gets them wrong.

A bad option must be a clear TypeError or ValueError naming it, raised by
``instrument()`` itself: never a bare comparison error, and never a value that is
accepted and then breaks the drain, losing what it should have recorded.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults
from inferwatch.core.options import Settings
from inferwatch.core.registry import Registry

# Whole-number options, number options and bucket options, as Settings names them.
WHOLE = ("age_buckets", "max_classes", "max_outputs", "max_error_types", "max_actions",
         "max_stages", "max_features", "outcome_cache_size", "max_pending", "drain_min_calls",
         "drift_age_buckets", "event_text_chars")
NUMBERS = ("window_seconds", "relative_accuracy", "outcome_ttl_seconds",
           "drain_max_wait_seconds", "drift_window_seconds", "range_tolerance")
BUCKETS = ("latency_buckets", "batch_buckets", "value_buckets", "outcome_error_buckets",
           "outcome_delay_buckets", "stream_item_buckets", "stream_interval_buckets",
           "text_length_buckets", "tokens_per_second_buckets")

# Values of the wrong type (or NaN) that users pass: strings from an environment variable,
# None from a missing config key, fractions for counts.
NOT_WHOLE = st.one_of(st.text(max_size=4), st.none(), st.booleans(),
                      st.floats(allow_nan=True).filter(lambda v: not float(v).is_integer()),
                      st.just([1]))
NOT_NUMBER = st.one_of(st.text(max_size=4), st.none(), st.booleans(), st.just(math.nan),
                       st.just([1.0]))
NOT_BUCKETS = st.one_of(st.text(min_size=1, max_size=4), st.just([0.1, "1"]),
                        st.just([math.nan, 1.0]), st.just([-math.inf, 0.0]), st.just(5),
                        st.just([True, 2]))


def _instrument(**options: object) -> object:
    registry = Registry()
    try:
        return inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry,
                                     **options)
    finally:
        registry.close()


@settings(max_examples=60)
@given(st.sampled_from(WHOLE), NOT_WHOLE)
def test_a_count_option_of_the_wrong_type_is_refused_by_name(option, value):
    with pytest.raises((TypeError, ValueError), match=option):
        _instrument(**{option: value})


@settings(max_examples=60)
@given(st.sampled_from(NUMBERS), NOT_NUMBER)
def test_a_number_option_of_the_wrong_type_is_refused_by_name(option, value):
    with pytest.raises((TypeError, ValueError), match=option):
        _instrument(**{option: value})


@settings(max_examples=60)
@given(st.sampled_from(BUCKETS), NOT_BUCKETS)
def test_bucket_bounds_that_are_not_finite_numbers_are_refused_by_name(option, value):
    with pytest.raises((TypeError, ValueError), match=option):
        _instrument(**{option: value})


@pytest.mark.parametrize("value", [0.5, ["a"], None])
def test_quantiles_that_are_not_numbers_are_refused_by_name(value):
    with pytest.raises((TypeError, ValueError), match="quantiles"):
        _instrument(quantiles=value)


@pytest.mark.parametrize("value", [5, (1.0,), ("a", "b"), (math.nan, 1.0), (0, 1, 2)])
def test_an_output_range_that_is_not_a_pair_of_numbers_is_refused_by_name(value):
    with pytest.raises((TypeError, ValueError), match="output_range"):
        _instrument(output_range=value)


@pytest.mark.parametrize(("option", "value"), [("trace_stages", "no"), ("exemplars", "yes"),
                                               ("metadata", 5)])
def test_switches_and_metadata_of_the_wrong_type_are_refused_by_name(option, value):
    with pytest.raises((TypeError, ValueError), match=option):
        _instrument(**{option: value})


@pytest.mark.parametrize(("option", "value"), [("reference", 5), ("registry", 5)])
def test_a_reference_or_registry_of_the_wrong_type_is_refused_by_name(option, value):
    with pytest.raises(TypeError, match=option):
        inferwatch.instrument(lambda x: 0.5, name="m", **{option: value})


@pytest.mark.parametrize(("option", "value"), [("age_buckets", 2.5), ("task", "regresion"),
                                               ("request_id", 5), ("trained_at", "yesterday")])
def test_a_bad_option_is_refused_when_the_decorator_is_made(option, value):
    """A decorator made once and applied later (a plugin registry) fails where it is made."""
    with pytest.raises((TypeError, ValueError), match=option):
        inferwatch.instrument(name="m", registry=Registry(), **{option: value})


def test_good_values_of_other_numeric_types_are_accepted_and_normalised():
    settings_ = Settings(max_classes=np.int64(7), window_seconds=np.float64(30.0),
                         trace_stages=np.bool_(True), quantiles=np.array([0.5, 0.9]))
    assert settings_.max_classes == 7 and type(settings_.max_classes) is int
    assert settings_.trace_stages is True
    assert settings_.quantiles == (0.5, 0.9)
    assert Settings(outcome_ttl_seconds=math.inf).outcome_ttl_seconds == math.inf
    assert Settings(output_range=(0, math.inf)).output_range == (0, math.inf)


def test_prometheus_client_bucket_lists_ending_in_inf_give_one_inf_bucket(scraper):
    from prometheus_client import Histogram

    predict = inferwatch.instrument(lambda x: 0.5, name="m", registry=scraper.registry,
                                    latency_buckets=Histogram.DEFAULT_BUCKETS)
    predict(1.0)
    bounds = [s.labels["le"] for s in scraper.samples()
              if s.name == "inferwatch_request_duration_seconds_bucket"]
    assert bounds.count("+Inf") == 1
    assert len(bounds) == len(Histogram.DEFAULT_BUCKETS)


@pytest.mark.parametrize(("option", "value"), [("age_buckets", 2.5), ("max_pending", 10.5),
                                               ("window_seconds", math.nan),
                                               ("latency_buckets", "abc"),
                                               ("output_range", ("a", "b"))])
def test_no_accepted_option_breaks_the_drain_or_loses_calls(scraper, option, value):
    """Before, these were accepted and the drain failed on them (every call's latency and
    prediction lost) or the backlog dropped half the calls."""
    before = faults.internal_error_counts()
    try:
        predict = inferwatch.instrument(lambda x: 0.5, name="m", registry=scraper.registry,
                                        **{option: value})
    except (TypeError, ValueError) as exc:
        assert option in str(exc)
        return
    for _ in range(40):
        predict(1.0)
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 40
    assert scraper.value("inferwatch_request_duration_seconds_count") == 40
    assert faults.internal_error_counts() == before


# --- name and version ------------------------------------------------------------------------

def test_an_unset_environment_variable_as_version_is_unversioned(scraper, monkeypatch):
    monkeypatch.delenv("INFERWATCH_TEST_MODEL_VERSION", raising=False)
    predict = inferwatch.instrument(lambda x: 0.5, name="m", registry=scraper.registry,
                                    version=os.environ.get("INFERWATCH_TEST_MODEL_VERSION"))
    predict(1.0)
    assert scraper.series("inferwatch_model_info")[0]["model_version"] == "unversioned"


@pytest.mark.parametrize("version", [object(), b"1.0", ["1"], True])
def test_a_version_of_the_wrong_type_is_refused_by_name(version):
    with pytest.raises(TypeError, match="version"):
        inferwatch.instrument(lambda x: 0.5, name="m", version=version, registry=Registry())


@pytest.mark.parametrize(("version", "label"), [(3, "3"), (1.5, "1.5"), ("2.0", "2.0"),
                                                (np.int64(4), "4")])
def test_numbers_and_strings_are_versions(scraper, version, label):
    inferwatch.instrument(lambda x: 0.5, name="m", version=version,
                          registry=scraper.registry)(1.0)
    assert scraper.series("inferwatch_model_info")[0]["model_version"] == label


@pytest.mark.parametrize("name", ["", None, 5])
def test_a_blank_or_missing_model_name_is_refused(name):
    with pytest.raises(ValueError, match="name"):
        inferwatch.instrument(lambda x: 0.5, name=name, registry=Registry())
    with pytest.raises(ValueError, match="name"):
        inferwatch.monitor(name, registry=Registry())


def test_monitor_refuses_a_version_of_the_wrong_type():
    with pytest.raises(TypeError, match="version"):
        inferwatch.monitor("m", object(), registry=Registry())
    assert inferwatch.monitor("m", 2, registry=Registry()).version == "2"
