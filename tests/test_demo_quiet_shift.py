"""The demo's model without a reference: its unit change moves the rolling prediction
quantiles by about half, and nothing else inferwatch exports moves."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from inferwatch.demo.quiet_shift import (
    MAX_WEIGHT,
    STORY,
    ShiftPhase,
    estimate,
    instrument_estimate,
    phases,
    play,
    sample_rows,
)


def test_the_unit_change_raises_the_estimates_by_about_half() -> None:
    rng = np.random.default_rng(1)
    before = estimate(sample_rows(rng, 20_000))
    after = estimate(sample_rows(rng, 20_000, grams=True))
    for q in (50, 90):
        ratio = np.percentile(after, q) / np.percentile(before, q)
        assert 1.35 < ratio < 1.8, (q, ratio)
    # Every input stays valid: the weight is clipped to its largest valid value.
    assert sample_rows(rng, 1000, grams=True)[:, 0].max() <= MAX_WEIGHT


def test_the_shift_moves_only_the_prediction_quantiles(scraper) -> None:
    predict = instrument_estimate(speed=1.0, registry=scraper.registry)
    rng = np.random.default_rng(2)
    for _ in range(200):
        predict(sample_rows(rng, 4))
    scraper.registry.drain()
    p50_before = scraper.value("inferwatch_prediction", quantile="0.5")
    for _ in range(2000):  # enough shifted calls to outnumber the clean ones in the window
        predict(sample_rows(rng, 4, grams=True))
    scraper.registry.drain()
    p50_after = scraper.value("inferwatch_prediction", quantile="0.5")
    assert p50_after > 1.4 * p50_before
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 2200
    names = {s.name for s in scraper.samples()}
    # No reference: no drift, missing-value or out-of-range series exist to catch it.
    assert not {n for n in names if "drift" in n or "missing" in n or "out_of_range" in n}


def test_play_holds_the_baseline_until_released() -> None:
    calls: list[float] = []
    hold = threading.Event()
    seen: list[str] = []
    story = [ShiftPhase("baseline", 0.0, ""), ShiftPhase("unit-change", 0.0, "", grams=True)]
    releaser = threading.Timer(0.3, hold.set)
    started = time.monotonic()
    releaser.start()
    played = play(lambda rows: calls.append(float(rows[:, 0].max())), story,
                  calls_per_second=200.0, hold=hold, on_phase=lambda p: seen.append(p.name))
    releaser.join()
    assert seen == ["baseline", "unit-change"]
    assert time.monotonic() - started >= 0.3
    assert played == len(calls) >= 10  # the baseline kept calling while held


def test_phases_scale_and_a_bad_speed_is_a_clear_error() -> None:
    assert [p.name for p in phases(2)] == [p.name for p in STORY]
    assert sum(p.seconds for p in phases(2)) == pytest.approx(sum(p.seconds for p in STORY) / 2)
    with pytest.raises(ValueError, match="speed"):
        phases(0.0)


def test_loop_and_shift_on_signal_exclude_each_other() -> None:
    finished = subprocess.run([sys.executable, "-m", "inferwatch.demo.quiet_shift", "--loop",
                               "--shift-on-signal"], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert "--loop and --shift-on-signal exclude each other" in finished.stderr
