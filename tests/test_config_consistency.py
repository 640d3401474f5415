"""Settings of the generator config that must agree with each other: the rate window with the
scrape interval the monitors set, the rule selectors with the job names the monitors give
their targets, and the seasonal offsets with one another."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config_errors import error_for
from inferwatch.generate import cli
from inferwatch.generate.config import ConfigError, from_dict, load

SECONDS = {"s": 1, "m": 60, "h": 3600}



def generate(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    config = tmp_path / "inferwatch.yaml"
    config.write_text(text)
    args = argparse.Namespace(config=str(config), out=str(tmp_path / "out"), rules_only=True,
                              check=False)
    status = cli.run(args)
    return status, capsys.readouterr().err


# --- windows.rate against kubernetes.scrape_interval -------------------------------------------


def test_a_rate_window_of_one_scrape_is_refused_from_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = generate(tmp_path, "kubernetes:\n  scrape_interval: 5m\n"
                           "windows:\n  rate: 5m\n", capsys)
    assert status == 2
    assert "windows.rate" in err and "kubernetes.scrape_interval" in err
    assert not (tmp_path / "out").exists()


def test_a_slow_scrape_refuses_the_default_rate_window() -> None:
    error = error_for({"kubernetes": {"scrape_interval": "2m"}})
    assert error.key == "windows.rate"
    assert "kubernetes.scrape_interval" in error.problem and "2m" in error.problem


def test_a_short_rate_window_without_the_kubernetes_interval_still_loads() -> None:
    # Prometheus scrapes faster than the monitors' default in the end-to-end tests.
    assert from_dict({"windows": {"rate": "10s"}}).windows.rate == "10s"
    assert from_dict({"windows": {"rate": "10s"}, "kubernetes": {"namespace": "ml"}})


# Up to 150s: the default fast burn's 5m short window needs two scrapes of its own
# (a longer interval is refused on that key, whatever windows.rate says).
@settings(max_examples=60, deadline=None)
@given(scrape=st.integers(1, 150), rate=st.integers(1, 4000),
       unit=st.sampled_from(["s", "m"]))
def test_the_rate_window_must_cover_four_scrapes(scrape: int, rate: int, unit: str) -> None:
    # The no-traffic lookback reaches back past the rate window, whatever its length.
    data = {"kubernetes": {"scrape_interval": f"{scrape}s"},
            "windows": {"rate": f"{rate}{unit}", "no_traffic_lookback": "3d"}}
    if rate * SECONDS[unit] >= 4 * scrape:
        assert from_dict(data).windows.rate == f"{rate}{unit}"
    else:
        assert error_for(data).key == "windows.rate"


# --- selectors against the monitors' job names -------------------------------------------------


@pytest.mark.parametrize(("section", "selector", "job"), [
    ("model", 'job="ml-serving"', "ml-model"),
    ("model", 'namespace="ml", job="ml-serving"', "ml-model"),
    ("model", "'job' = `ml-serving`", "ml-model"),
    ("model", 'job=~"ml-(a|b)"', "ml-c"),
    ("model", 'job!="ml-model"', "ml-model"),
    ("exporter", 'job="gpu-exporter"', "inferwatch-exporter"),
    ("exporter", 'job!~"inferwatch-.*"', "inferwatch-exporter"),
])
def test_a_selector_the_monitor_job_fails_is_refused(section: str, selector: str,
                                                     job: str) -> None:
    error = error_for({"selectors": {section: selector},
                       "kubernetes": {f"{section}_job": job}})
    assert error.key == f"selectors.{section}"
    assert f"kubernetes.{section}_job" in error.problem and repr(job) in error.problem


@pytest.mark.parametrize(("selector", "job"), [
    ('job="ml-model"', "ml-model"),
    ('job=~"ml-.*", cluster="a"', "ml-model"),
    ('cluster="a"', "ml-model"),
    ('job!="other"', "ml-model"),
    ('job="a$b"', "a$b"),
])
def test_a_selector_the_monitor_job_passes_loads(selector: str, job: str) -> None:
    cfg = from_dict({"selectors": {"model": selector}, "kubernetes": {"model_job": job}})
    assert cfg.kubernetes.model_job == job


def test_a_job_renamed_in_only_one_place_is_left_to_the_user() -> None:
    # A file without the Kubernetes output names its own job; only both together can clash.
    assert from_dict({"kubernetes": {"model_job": "ml"}}).kubernetes.model_job == "ml"
    assert from_dict({"selectors": {"model": 'job="ml"'}}).selectors.model == 'job="ml"'


def test_a_job_mismatch_is_reported_by_generate(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    status, err = generate(tmp_path, 'selectors:\n  exporter: job="exporter"\n'
                           "kubernetes:\n  exporter_job: gpu\n", capsys)
    assert status == 2
    assert "selectors.exporter" in err and "kubernetes.exporter_job" in err


# --- baselines.seasonal_offsets ----------------------------------------------------------------


@pytest.mark.parametrize("offsets", [["1d", "24h"], ["1d", "1d"], ["1w", "2d", "7d"],
                                     ["90m", "1h30m"]])
def test_one_seasonal_offset_twice_is_refused(offsets: list[str], tmp_path: Path) -> None:
    path = tmp_path / "inferwatch.yaml"
    path.write_text(f"baselines:\n  seasonal_offsets: {offsets}\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.key == "baselines.seasonal_offsets"
    assert "twice" in caught.value.problem


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(2, 500), min_size=1, max_size=4))
def test_distinct_seasonal_offsets_load_in_their_order(hours: list[int]) -> None:
    offsets = [f"{h}h" for h in hours]
    if len(set(hours)) == len(hours):
        assert from_dict({"baselines": {"seasonal_offsets": offsets}}).baselines \
            .seasonal_offsets == tuple(offsets)
    else:
        assert error_for({"baselines": {"seasonal_offsets": offsets}}).key \
            == "baselines.seasonal_offsets"
