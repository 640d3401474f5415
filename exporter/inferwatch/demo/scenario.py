"""Demo scenarios: timed phases of traffic and faults, and the rule config scaled to them.

A scenario is a list of :class:`Phase`. The traffic generator plays them in order; the
demo renders the rules with :func:`rule_config` so that windows and ``for:`` durations fit
phases of minutes rather than hours. ``speed`` divides both, so a test can play the whole
story in a minute or two.

>>> [p.name for p in scenario("short")]
['baseline', 'feature-drift', 'error-burst', 'latency-regression', 'recovery']
>>> scenario("short", speed=2)[0].seconds
20.0
>>> rule_config(speed=1)["windows"]["rate"]
'1m'
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    """One stretch of the scenario: how the inputs and the model service misbehave.

    `drift` shifts a few input features by that many standard deviations and sends an
    unseen request channel; `error_ratio` of the calls fail inside the service (a feature
    store timing out) and `malformed_ratio` of the requests miss a feature or send null;
    `slow_ratio` of the calls wait `slow_seconds` on the feature store.
    """

    name: str
    seconds: float
    description: str
    drift: float = 0.0
    error_ratio: float = 0.0
    malformed_ratio: float = 0.0
    slow_ratio: float = 0.0
    slow_seconds: float = 0.0

    @property
    def faults(self) -> dict[str, float]:
        """What the model service is told to inject during this phase."""
        return {"error_ratio": self.error_ratio, "slow_ratio": self.slow_ratio,
                "slow_seconds": self.slow_seconds}


# How far the new client's inputs are shifted, in standard deviations of each feature.
DRIFT_SIGMAS = 3.0

_STORY = (
    Phase("baseline", 1.0, "inputs look like the training data; no faults"),
    Phase("feature-drift", 1.0, "a new client sends shifted inputs and an unseen channel",
          drift=DRIFT_SIGMAS),
    Phase("error-burst", 0.75, "the feature store times out for a third of the calls",
          error_ratio=0.3, malformed_ratio=0.05),
    Phase("latency-regression", 1.0, "one call in ten waits 0.6 s on the feature store",
          slow_ratio=0.1, slow_seconds=0.6),
    Phase("recovery", 1.0, "everything is back to normal"),
)
# Seconds per unit of _STORY's `seconds`, per scenario.
SCENARIOS = {"default": 120.0, "short": 40.0}
# Scrape and rule evaluation interval of the demo's Prometheus.
SCRAPE_INTERVAL_SECONDS = 1.0
# Rows a drift window needs before the drift alerts may fire. The maximum PSI over ~30
# features of rows drawn from the training data itself stays under 0.2 from about 300 rows.
MIN_DRIFT_OBSERVATIONS = 300
# The drift window at speed 1: one phase of the default scenario.
DRIFT_WINDOW_SECONDS = 120.0


# The speeds a command takes: past 100 times faster no window can follow (see max_speed);
# slower than a hundredth, the story outlasts any demo (the default one then takes 16 hours)
# and a speed such as 1e-300 made windows of 1e302 seconds, or overflowed.
MIN_SPEED, MAX_SPEED = 0.01, 100.0


def speed_problem(speed: float) -> str | None:
    """Why a command refuses `speed` as its ``--speed``, or None when it takes it.

    >>> speed_problem(2.0), speed_problem(1e-300)
    (None, '1e-300 is too small: give a number from 0.01 to 100')
    """
    span = f"give a number from {MIN_SPEED:g} to {MAX_SPEED:g}"
    if math.isnan(speed):
        return f"nan is not a number: {span}"
    if speed < MIN_SPEED:
        return f"{speed:g} is too small: {span}"
    if speed > MAX_SPEED:
        return f"{speed:g} is too large: {span}"
    return None


def speed_argument(text: str) -> float:
    """`--speed` as argparse reads it (it names the flag): a number :func:`speed_problem`
    takes."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number from {MIN_SPEED:g} to {MAX_SPEED:g}, got {text!r}") from None
    problem = speed_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def drift_window_seconds(speed: float = 1.0, rate: float = 10.0) -> float:
    """The model's drift window: minutes scaled by `speed`, but long enough to hold
    twice the rows the drift alerts need at `rate` requests per second.

    >>> drift_window_seconds(1.0), drift_window_seconds(20.0)
    (120.0, 60.0)
    """
    return max(DRIFT_WINDOW_SECONDS / speed, 2 * MIN_DRIFT_OBSERVATIONS / rate)


def scenario(name: str = "default", speed: float = 1.0) -> list[Phase]:
    """The phases of scenario `name`, each `speed` times shorter.

    >>> sum(p.seconds for p in scenario("default"))
    570.0
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    # inf passes `> 0` but makes every phase last no time.
    if not (speed > 0 and math.isfinite(speed)):
        raise ValueError(f"speed must be a number above zero, got {speed!r}")
    unit = SCENARIOS[name] / speed
    # A speed so small (1e-320) that the phases last inf seconds: the demo went on to start
    # a model with an infinite drift window, which refused it, or to render its rules, which
    # raised OverflowError.
    if not math.isfinite(unit * max(p.seconds for p in _STORY)):
        raise ValueError(f"speed {speed!r} is too small: a phase would never end")
    return [dataclasses.replace(p, seconds=p.seconds * unit) for p in _STORY]


def duration(seconds: float, floor: float = 1.0) -> str:
    """A Prometheus duration of at least `floor` seconds, in whole minutes when exact.

    >>> duration(300), duration(45.4), duration(0.2, floor=2)
    ('5m', '45s', '2s')
    """
    whole = max(round(seconds), int(floor))
    return f"{whole // 60}m" if whole % 60 == 0 else f"{whole}s"


# Rule windows as (production seconds, floor seconds). Each is divided by the speed, but no
# window may drop under its floor (ten scrapes for a rate, more for the long burn windows).
_RATE_FLOOR = 10 * SCRAPE_INTERVAL_SECONDS
_WINDOWS = {
    "rate": (60.0, _RATE_FLOOR),
    "no_traffic_lookback": (600.0, 3 * _RATE_FLOOR),
    "fast_burn.long": (300.0, 3 * _RATE_FLOOR),
    "fast_burn.short": (60.0, _RATE_FLOOR),
    "slow_burn.long": (1800.0, 6 * _RATE_FLOOR),
    "slow_burn.short": (300.0, 2 * _RATE_FLOOR),
    "accuracy": (300.0, _RATE_FLOOR),
    "for": (30.0, 2.0),
    # Half the for: a version counts as serving this long after its last call.
    "versions_serving": (15.0, 2 * SCRAPE_INTERVAL_SECONDS),
    # The prediction baseline of price-estimate (demo/quiet_shift.py): its short value, and
    # its trailing history, which ends as long before now (its offset) and must exist as long
    # before the alert may fire.
    "baseline.window": (30.0, 3 * SCRAPE_INTERVAL_SECONDS),
    "baseline.history": (60.0, 6 * SCRAPE_INTERVAL_SECONDS),
    "baseline.min_history": (120.0, 12 * SCRAPE_INTERVAL_SECONDS),
}


def max_speed(rate: float = 10.0) -> float:
    """The fastest speed at which every window and ``for:`` still shrinks with the phases.

    Past it a floor holds a window at its minimum, so an alert outlives the phase that
    caused it (drift still firing during recovery). The drift window must also hold twice
    the rows the drift alerts need, which takes longer at a lower `rate`.

    >>> max_speed(10.0), max_speed(15.0), max_speed(100.0)
    (2.0, 3.0, 6.0)
    """
    return min(_window_floor_speed(), DRIFT_WINDOW_SECONDS * rate / (2 * MIN_DRIFT_OBSERVATIONS))


def _window_floor_speed() -> float:
    """The fastest speed before a rule window or ``for:`` meets its floor, at any rate."""
    return min(seconds / floor for seconds, floor in _WINDOWS.values())


def check_speed(speed: float, rate: float) -> None:
    """Raise ValueError, saying what to change, when `speed` is past :func:`max_speed`.

    >>> check_speed(4, rate=10)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: at 10 requests/s the story can be told at speed 2 at most (...
    """
    if speed <= max_speed(rate) + 1e-9:
        return
    # Shown rounded down: rounded to the nearest, the speed advised (1.0694 for a limit
    # of 1.069397) was itself refused.
    fastest = _rounded_down(max_speed(rate))
    cap = _window_floor_speed()
    if fastest >= cap - 1e-9:
        # No --rate helps: the rule windows' floors set the limit, not the drift window.
        raise ValueError(
            f"the story can be told at speed {cap:g} at most, at any rate (faster, the rule "
            f"windows would shrink past their floors, the rate window under ten scrapes); "
            f"use --speed {cap:g} or less")
    advice = f"use --speed {fastest:g} or less"
    if speed <= cap + 1e-9:
        # The drift window holds enough rows at this speed once the rate is high enough.
        needed = math.ceil(speed * 2 * MIN_DRIFT_OBSERVATIONS / DRIFT_WINDOW_SECONDS - 1e-9)
        advice += f", or raise --rate to {needed:g}"
    else:
        advice += f"; past speed {cap:g} no rate helps (the rule windows have floors)"
    raise ValueError(
        f"at {rate:g} requests/s the story can be told at speed {fastest:g} at most (the "
        f"drift window needs {2 * MIN_DRIFT_OBSERVATIONS / rate:g} s to hold "
        f"{2 * MIN_DRIFT_OBSERVATIONS} rows); {advice}")


def _rounded_down(value: float, digits: int = 4) -> float:
    """`value` (above 0) cut to `digits` significant digits, never rounded up.

    >>> _rounded_down(1.0693972815), _rounded_down(2.0), _rounded_down(0.0123456)
    (1.069, 2.0, 0.01234)
    """
    scale = 10.0 ** (digits - 1 - math.floor(math.log10(value)))
    # The nudge keeps a value such as 2.0, stored a hair under, from losing a digit.
    return math.floor(value * scale * (1 + 1e-12)) / scale


def rule_config(speed: float = 1.0, *, grafana_url: str = "http://localhost:3000") -> dict:
    """The `inferwatch generate` config the demo renders its rules and dashboards with.

    Windows and ``for:`` durations are the production defaults scaled from hours to
    minutes, then divided by `speed`; each keeps a floor (the rate window at least ten
    scrapes), reached only past :func:`max_speed`, which the demo refuses.

    >>> cfg = rule_config(speed=6)
    >>> cfg["windows"]["rate"], cfg["slo"]["fast_burn"], cfg["alerts"]["InferwatchFeatureDrift"]
    ('10s', {'long_window': '50s', 'short_window': '10s'}, {'for': '5s'})
    """
    from inferwatch.generate.rules_alerts import ALERTS

    def window(name: str) -> str:
        seconds, floor = _WINDOWS[name]
        return duration(seconds / speed, floor=floor)

    from inferwatch.generate.config_checks import duration_seconds

    versions_for = window("for")
    if duration_seconds(window("versions_serving")) >= duration_seconds(versions_for):
        versions_for = duration(2 * duration_seconds(window("versions_serving")))

    return {
        "windows": {"rate": window("rate"), "no_traffic_lookback": window("no_traffic_lookback"),
                    "versions_serving": window("versions_serving")},
        "slo": {"fast_burn": {"long_window": window("fast_burn.long"),
                              "short_window": window("fast_burn.short")},
                "slow_burn": {"long_window": window("slow_burn.long"),
                              "short_window": window("slow_burn.short")}},
        "latency": {"p99_seconds": 0.25, "first_item_p99_seconds": 0.25},
        # A whole stream of toy-llm takes longer than one prediction; its first token is
        # what its regression moves.
        "models": {"toy-llm": {"latency": {"p99_seconds": 2}},
                   # Its drift alerts judge the classifier against its reference; the demo's
                   # prediction band, learned from a minute of history, is for price-estimate,
                   # which has no reference. The feature drift moves the classifier's median
                   # probability from about 0.015 to 0.99, a real shift that pages
                   # InferwatchPredictionDrift; a per-model k keeps it from paging twice. The
                   # sigma floor is 5% of the output's largest quantile, about 1 for a
                   # probability: 50 sigma is +-2.5, wider than a probability can move.
                   "breast-cancer": {"baselines": {"predictions": {"k": 50}}}},
        "drift": {"min_observations": MIN_DRIFT_OBSERVATIONS},
        "accuracy": {"window": window("accuracy"), "min_outcomes": 50},
        # The challenger equals the champion on clean traffic: only the shift sets it apart.
        "shadow": {"window": window("accuracy"), "outcome_window": window("accuracy"),
                   "min_compared": 50, "min_outcomes": 50, "min_accuracy_gain": 0.05},
        "links": {"grafana_url": grafana_url},
        "alerts": {**{alert.name: {"for": window("for")} for alert in ALERTS},
                   # Past max_speed both sit on their floors: the window must stay shorter.
                   "InferwatchTooManyVersionsServing": {"for": versions_for}},
        # The baseline groups run at 5m in production, 5s here, so the signals of the
        # expected-band panels show from the start. Most bands and alerts still need the
        # default day of history, which no demo run reaches: they never fire here. The
        # prediction signal learns from a minute (no season in a demo), so price-estimate's
        # quiet shift pages as InferwatchPredictionShift. (The interval is at most the
        # production 5m, the longest the baseline alerts allow.)
        "baselines": {"evaluation_interval": duration(min(5.0 / speed, 300.0),
                                                      floor=2 * SCRAPE_INTERVAL_SECONDS),
                      "seasonal_offsets": [],
                      "predictions": {"window": window("baseline.window"),
                                      "baseline_window": window("baseline.history"),
                                      "baseline_offset": window("baseline.history"),
                                      "min_history": window("baseline.min_history")}},
    }
