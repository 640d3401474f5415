"""Generator config checks a user meets through `inferwatch generate`: windows against the
scrape interval the monitors set, and settings that together make an alert that can never
fire."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from config_errors import error_for, nested
from inferwatch.cli import main
from inferwatch.generate.config import from_dict

SECONDS = {"s": 1, "m": 60, "h": 3600}


def generate(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`inferwatch generate --config F --out D --rules-only`: its status and stderr."""
    config = tmp_path / "inferwatch.yaml"
    config.write_text(text, encoding="utf-8")
    capsys.readouterr()
    status = main(["generate", "--config", str(config), "--out", str(tmp_path / "out"),
                   "--rules-only"])
    return status, capsys.readouterr().err




def config_with(key: str, window: str, scrape: str) -> dict:
    """The file setting `key` to `window`, the scrape interval and a rate window of four
    scrapes."""
    # Baselines record once per evaluation_interval: their windows must hold one record.
    data = {"kubernetes": {"scrape_interval": scrape},
            "windows": {"rate": f"{4 * int(scrape[:-1])}{scrape[-1]}"},
            "baselines": {"evaluation_interval": scrape}}
    head, _, rest = key.partition(".")
    data.setdefault(head, {}).update(nested(rest, window) if "." in rest else {rest: window})
    return data


# --- every scraped window against kubernetes.scrape_interval ---------------------------------

# A long burn window is longer than its short one, which is checked first.
SCRAPED_WINDOWS = [
    "slo.fast_burn.short_window", "slo.slow_burn.short_window",
    "windows.no_traffic_lookback", "accuracy.window",
    "shadow.window", "shadow.outcome_window", "gpu.xid_window", "internal.overflow_window",
    "baselines.traffic.window", "baselines.errors.window", "baselines.latency.window",
]


def test_a_fast_burn_short_window_of_one_scrape_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The defaults everywhere but a 5m scrape, a 20m rate window: the fast burn's 5m short
    # window holds one sample, and InferwatchErrorBudgetBurnFast could never fire.
    status, err = generate(tmp_path, "kubernetes:\n  scrape_interval: 5m\n"
                           "windows:\n  rate: 20m\n", capsys)
    assert status == 2
    assert "slo.fast_burn.short_window" in err
    assert "5m" in err and "kubernetes.scrape_interval" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key", SCRAPED_WINDOWS)
def test_each_scraped_window_needs_two_scrapes(key: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    status, err = generate(tmp_path, yaml.safe_dump(config_with(key, "90s", scrape="1m")),
                           capsys)
    assert status == 2
    assert f"{key}: 90s must be at least 2x kubernetes.scrape_interval (1m)" in err
    # The no-traffic lookback must also reach back past the rate window (4 scrapes).
    enough = "4m" if key == "windows.no_traffic_lookback" else "2m"
    status, err = generate(tmp_path, yaml.safe_dump(config_with(key, enough, scrape="1m")),
                           capsys)
    assert status == 0, err


@pytest.mark.parametrize("key", ["slo.fast_burn.short_window", "slo.slow_burn.short_window",
                                 "windows.no_traffic_lookback", "accuracy.window"])
def test_a_model_window_of_one_scrape_is_refused(key: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = {"kubernetes": {"scrape_interval": "1m"}, "models": {"fraud": nested(key, "1m")}}
    status, err = generate(tmp_path, yaml.safe_dump(data), capsys)
    assert status == 2
    assert f"models.fraud.{key}: 1m must be at least 2x kubernetes.scrape_interval" in err


def test_windows_without_the_kubernetes_interval_still_load() -> None:
    # Prometheus may scrape every few seconds, as in the end-to-end tests.
    cfg = from_dict({"slo": {"fast_burn": {"short_window": "10s"}},
                     "models": {"fraud": {"accuracy": {"window": "10s"}}}})
    assert cfg.slo.fast_burn.short_window == "10s"


def test_a_disabled_signal_keeps_its_short_window() -> None:
    cfg = from_dict({"kubernetes": {"scrape_interval": "5m"}, "windows": {"rate": "20m"},
                     "slo": {"fast_burn": {"short_window": "10m"}},
                     "baselines": {"traffic": {"enabled": False, "window": "5m"},
                                   **{name: {"window": "10m"} for name in (
                                       "errors", "latency", "predictions", "classes",
                                       "confidence", "missing", "out_of_range",
                                       "batch_size")}}})
    assert cfg.baselines.traffic.window == "5m"


# Up to 150s, the default 5m short window of the fast burn still covers two scrapes.
@settings(max_examples=60, deadline=None)
@given(scrape=st.integers(1, 150), window=st.integers(1, 3000), unit=st.just("s"),
       key=st.sampled_from(SCRAPED_WINDOWS))
def test_a_scraped_window_must_cover_two_scrapes(scrape: int, window: int, unit: str,
                                                 key: str) -> None:
    data = config_with(key, f"{window}{unit}", scrape=f"{scrape}s")
    scrapes = 4 if key == "windows.no_traffic_lookback" else 2  # the lookback covers the rate
    if window * SECONDS[unit] >= scrapes * scrape:
        from_dict(data)
    else:
        assert error_for(data).key == key


# --- settings that together make an alert that can never fire --------------------------------


@pytest.mark.parametrize(("availability", "factor", "which"), [
    (0.5, 2.0, "fast_burn"), (0.75, 4.0, "slow_burn"), (0.875, 8.0, "fast_burn")])
def test_a_burn_limit_of_exactly_every_call_failing_is_refused(
        availability: float, factor: float, which: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The alert fires on an error ratio above factor x (1 - availability): above 1 is
    # impossible, so the page never comes.
    other = "slow_burn" if which == "fast_burn" else "fast_burn"
    text = yaml.safe_dump({"slo": {"availability": availability, which: {"factor": factor},
                                   other: {"factor": 1.0}}})
    status, err = generate(tmp_path, text, capsys)
    assert status == 2
    assert f"slo.{which}.factor" in err and "never" in err


def test_a_model_availability_making_the_burn_limit_one_is_refused() -> None:
    error = error_for({"slo": {"fast_burn": {"factor": 2.0}, "slow_burn": {"factor": 1.5}},
                       "models": {"batch": {"slo": {"availability": 0.5}}}})
    assert error.key == "models.batch.slo.fast_burn.factor"


@settings(max_examples=60, deadline=None)
@given(budget_eighths=st.integers(1, 7), factor=st.integers(1, 16))
def test_a_burn_limit_below_one_loads(budget_eighths: int, factor: int) -> None:
    availability = 1 - budget_eighths / 8
    data = {"slo": {"availability": availability, "fast_burn": {"factor": float(factor)},
                    "slow_burn": {"factor": 1.0}}}
    if factor * (1 - availability) < 1:
        assert from_dict(data).slo.fast_burn.factor == factor
    else:
        assert error_for(data).key == "slo.fast_burn.factor"


@pytest.mark.parametrize("method", ["js", "ks"])
@pytest.mark.parametrize("key", ["feature_threshold", "prediction_threshold"])
def test_a_bounded_drift_distance_threshold_of_one_or_more_is_refused(
        method: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # JS and KS distances lie in [0, 1] (docs/drift.md): the alerts fire above the threshold.
    status, err = generate(tmp_path, yaml.safe_dump({"drift": {"method": method, key: 1}}),
                           capsys)
    assert status == 2
    assert f"drift.{key}" in err and method in err
    status, err = generate(tmp_path, yaml.safe_dump({"drift": {"method": method, key: 0.3}}),
                           capsys)
    assert status == 0, err


def test_psi_keeps_thresholds_above_one() -> None:
    # PSI is unbounded: 1.5 is a large but possible shift.
    assert from_dict({"drift": {"feature_threshold": 1.5}}).drift.feature_threshold == 1.5


def test_a_model_drift_threshold_the_method_never_reaches_is_refused() -> None:
    error = error_for({"drift": {"method": "ks"},
                       "models": {"fraud": {"drift": {"feature_threshold": 2.0}}}})
    assert error.key == "models.fraud.drift.feature_threshold"
