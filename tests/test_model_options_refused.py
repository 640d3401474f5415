"""Options of instrument() that used to be accepted and broke what a scrape shows: metadata
naming one of inferwatch_model_info's own labels, and a quantile listed twice."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from inferwatch.catalogue import CATALOGUE, MODEL_LABELS
from inferwatch.core.options import RESERVED_LABELS, Settings
from inferwatch.core.registry import Registry
from inferwatch.serving.bridge import InferwatchCollector

MODEL_INFO_LABELS = CATALOGUE["inferwatch_model_info"].labels
# Every label inferwatch_model_info already has, besides the scrape's own.
INFO_SERIES_LABELS = (*MODEL_LABELS, *MODEL_INFO_LABELS, "job", "instance")


def samples(registry: Registry, family: str) -> list:
    """The samples of `family` in the text exposition of `registry`, parsed by
    prometheus_client."""
    collector = CollectorRegistry()
    collector.register(InferwatchCollector(registry))
    text = generate_latest(collector).decode()
    return [sample for parsed in text_string_to_metric_families(text)
            for sample in parsed.samples if parsed.name == family]


# --- metadata ---------------------------------------------------------------------------------

def test_the_metadata_check_covers_every_label_of_the_info_series() -> None:
    assert set(MODEL_INFO_LABELS) >= {"framework", "task", "role"}
    assert set(MODEL_LABELS) <= set(RESERVED_LABELS)


@pytest.mark.parametrize("label", sorted(set(INFO_SERIES_LABELS)))
def test_instrument_refuses_metadata_naming_a_label_of_the_info_series(label: str) -> None:
    registry = Registry()
    with pytest.raises(ValueError, match="metadata") as caught:
        inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry,
                              metadata={label: "x"})
    assert repr(label) in str(caught.value) or label in str(caught.value)
    assert registry.existing_monitor("m", "1") is None
    registry.close()


@pytest.mark.parametrize("label", [label for label in INFO_SERIES_LABELS
                                   if label != "framework"])
def test_settings_and_configure_refuse_metadata_naming_a_label_of_the_info_series(
        label: str) -> None:
    with pytest.raises(ValueError, match=f"metadata.*{label}"):
        Settings(metadata={label: "x"})
    registry = Registry()
    monitor = registry.monitor("m", "1")
    with pytest.raises(ValueError, match=f"metadata.*{label}"):
        monitor.configure(metadata={"team": "risk", label: "x"})
    assert "team" not in monitor.settings.metadata
    registry.close()


def test_a_shadow_keeps_the_role_label_and_the_champion_its_metadata() -> None:
    registry = Registry()
    champion = inferwatch.instrument(lambda x: 1, name="fraud", version="1", registry=registry,
                                     metadata={"team": "risk"})
    inferwatch.shadow(champion, lambda x: 1, version="2", sample=1.0)
    champion([1.0])
    info = {sample.labels["model_version"]: sample.labels
            for sample in samples(registry, "inferwatch_model_info")}
    assert info["1"]["role"] == "primary" and info["1"]["team"] == "risk"
    assert info["1"]["framework"] == "python"
    assert info["2"]["role"] == "shadow"
    registry.close()


LABEL_NAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,12}", fullmatch=True).filter(
    lambda name: not name.startswith("__"))


@settings(max_examples=60, deadline=None)
@given(key=st.one_of(LABEL_NAMES, st.sampled_from(INFO_SERIES_LABELS)),
       value=st.text(st.characters(codec="utf-8"), max_size=20))
def test_metadata_is_shown_as_given_or_refused(key: str, value: str) -> None:
    registry = Registry()
    try:
        predict = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                        registry=registry, metadata={key: value})
    except ValueError:
        assert key in INFO_SERIES_LABELS
        return
    finally:
        registry.close()
    assert key not in INFO_SERIES_LABELS
    predict([1.0])
    (info,) = samples(registry, "inferwatch_model_info")
    # Every label inferwatch sets keeps its own value, and the metadata its own.
    assert info.labels["framework"] == "python"
    assert info.labels["task"] == "regression"
    assert (info.labels["model"], info.labels["model_version"]) == ("m", "1")
    assert key in info.labels


# --- quantiles --------------------------------------------------------------------------------

@pytest.mark.parametrize("quantiles", [(0.5, 0.5), (0.5, 0.9, 0.5), (1, 1.0), (0.0, -0.0)])
def test_a_quantile_listed_twice_is_refused_as_other_bad_quantiles_are(quantiles) -> None:
    with pytest.raises(ValueError, match=r"invalid settings: quantiles .*twice"):
        Settings(quantiles=quantiles)
    with pytest.raises(ValueError, match=r"invalid settings: quantiles"):
        inferwatch.instrument(lambda x: 0.5, name="m", registry=Registry(),
                              quantiles=quantiles)


@settings(max_examples=40, deadline=None)
@given(quantiles=st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.9, 0.99, 1.0]), min_size=1,
                          max_size=5))
def test_every_quantile_accepted_is_one_series(quantiles: list[float]) -> None:
    registry = Registry()
    try:
        predict = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                        registry=registry, quantiles=quantiles)
    except ValueError:
        assert len(set(quantiles)) < len(quantiles)
        return
    finally:
        registry.close()
    predict([1.0])
    shown = Counter(sample.labels["quantile"]
                    for sample in samples(registry, "inferwatch_prediction")
                    if "quantile" in sample.labels)
    assert sorted(float(q) for q in shown) == sorted(quantiles)
    assert set(shown.values()) == {1}
