"""Generator config checks a user meets through `inferwatch generate`: windows too short for
the interval their values are recorded at, thresholds an alert can never cross, and a
no-traffic lookback that overlaps the window it is compared with."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from config_errors import error_for, nested
from inferwatch.cli import main
from inferwatch.generate.config import from_dict, load

REPO = Path(__file__).resolve().parents[1]


def generate(tmp_path: Path, data: dict, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`inferwatch generate --config F --out D --rules-only` on `data`: status and stderr."""
    config = tmp_path / "inferwatch.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    capsys.readouterr()
    status = main(["generate", "--config", str(config), "--out", str(tmp_path / "out"),
                   "--rules-only"])
    return status, capsys.readouterr().err




# --- baseline windows against the evaluation interval ------------------------------------------


def test_signal_window_shorter_than_evaluation_interval_is_refused_naming_both(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The default interval records the short value every 5m: a 2m window over it holds a
    # sample only now and then, so the history guard of the alert mostly finds nothing.
    status, err = generate(tmp_path, {"baselines": {"latency": {"window": "2m"}}}, capsys)
    assert status == 2
    assert "baselines.latency.window" in err
    assert "baselines.evaluation_interval" in err
    assert not (tmp_path / "out" / "alerts").exists()


def test_seasonal_window_shorter_than_evaluation_interval_is_refused_naming_both() -> None:
    exc = error_for({"baselines": {"evaluation_interval": "2m", "seasonal_window": "1m"}})
    assert exc.key == "baselines.seasonal_window"
    assert "baselines.evaluation_interval" in exc.problem


@settings(max_examples=40, deadline=None)
@given(interval=st.integers(1, 300), window=st.integers(1, 3600))
def test_signal_window_is_refused_exactly_when_shorter_than_the_interval(
        interval: int, window: int) -> None:
    data = {"baselines": {"evaluation_interval": f"{interval}s",
                          "errors": {"window": f"{window}s"}}}
    if window < interval:
        assert error_for(data).key == "baselines.errors.window"
    else:
        assert from_dict(data).baselines.errors.window == f"{window}s"


def test_windows_are_not_judged_where_nothing_reads_them() -> None:
    # A disabled signal renders no rules; without seasonal signals or offsets no rule reads
    # the seasonal window.
    assert from_dict({"baselines": {"errors": {"enabled": False, "window": "1m"}}})
    unseasonal = {name: {"seasonal": False} for name in (
        "traffic", "errors", "latency", "predictions", "classes", "confidence", "missing",
        "out_of_range", "batch_size")}
    assert from_dict({"baselines": {"seasonal_window": "1m", **unseasonal}})
    assert from_dict({"baselines": {"seasonal_window": "1m", "seasonal_offsets": []}})


def test_windows_equal_to_the_interval_are_accepted() -> None:
    cfg = from_dict({"baselines": {"evaluation_interval": "1m", "seasonal_window": "1m",
                                   "traffic": {"window": "1m"}}})
    assert cfg.baselines.traffic.window == "1m"


# --- thresholds an alert can never cross ---------------------------------------------------------


NEVER_FIRING = [
    ("data_quality.missing_ratio", 1),
    ("data_quality.out_of_range_ratio", 1),
    ("shadow.min_agreement", 0),
    ("shadow.max_error_ratio", 1),
    ("shadow.min_accuracy_gain", 1),
    ("gpu.memory_used_ratio", 1),
]


@pytest.mark.parametrize(("key", "value"), NEVER_FIRING)
def test_ratio_threshold_that_never_fires_is_refused_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: int) -> None:
    status, err = generate(tmp_path, nested(key, value), capsys)
    assert status == 2
    assert f": {key}: " in err
    assert "never" in err


@pytest.mark.parametrize(("key", "value"), NEVER_FIRING)
def test_ratio_threshold_next_to_the_end_is_accepted(key: str, value: int) -> None:
    near = 0.999 if value == 1 else 0.001
    cfg = from_dict(nested(key, near))
    section, name = key.split(".")
    assert getattr(getattr(cfg, section), name) == near


@pytest.mark.parametrize("key", ["data_quality.missing_ratio", "data_quality.out_of_range_ratio"])
def test_model_threshold_that_never_fires_is_refused_naming_the_model(key: str) -> None:
    exc = error_for({"models": {"fraud": nested(key, 1)}})
    assert exc.key == f"models.fraud.{key}"


def test_invalid_ratio_of_one_is_kept_for_models_of_several_outputs() -> None:
    # Every output of a row counts its own invalid values: two outputs out of range make a
    # ratio of 2 per row, which a threshold of 1 catches.
    assert from_dict({"predictions": {"invalid_ratio": 1}}).predictions.invalid_ratio == 1.0


# --- the no-traffic lookback against the rate window ---------------------------------------


def test_no_traffic_lookback_shorter_than_rate_is_refused_naming_both(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = generate(tmp_path, {"windows": {"rate": "10m", "no_traffic_lookback": "5m"}},
                           capsys)
    assert status == 2
    assert "windows.no_traffic_lookback" in err and "windows.rate" in err


def test_model_no_traffic_lookback_shorter_than_rate_is_refused() -> None:
    exc = error_for({"models": {"batch-.*": {"windows": {"no_traffic_lookback": "1m"}}}})
    assert exc.key == "models.batch-.*.windows.no_traffic_lookback"


@settings(max_examples=40, deadline=None)
@given(rate=st.integers(1, 120), lookback=st.integers(1, 240))
def test_no_traffic_lookback_is_refused_exactly_when_shorter_than_rate(
        rate: int, lookback: int) -> None:
    data = {"windows": {"rate": f"{rate}m", "no_traffic_lookback": f"{lookback}m"}}
    if lookback < rate:
        assert error_for(data).key == "windows.no_traffic_lookback"
    else:
        assert from_dict(data).windows.no_traffic_lookback == f"{lookback}m"


def test_example_config_and_defaults_pass_the_new_checks() -> None:
    assert load(REPO / "inferwatch.example.yaml") == from_dict({})
