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

import dataclasses
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


_STORY = (
    Phase("baseline", 1.0, "inputs look like the training data; no faults"),
    Phase("feature-drift", 1.0, "a new client sends shifted inputs and an unseen channel",
          drift=3.0),
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


def drift_window_seconds(speed: float = 1.0, rate: float = 10.0) -> float:
    """The model's drift window: minutes scaled by `speed`, but long enough to hold
    twice the rows the drift alerts need at `rate` requests per second.

    >>> drift_window_seconds(1.0), drift_window_seconds(20.0)
    (120.0, 60.0)
    """
    return max(120.0 / speed, 2 * MIN_DRIFT_OBSERVATIONS / rate)


def scenario(name: str = "default", speed: float = 1.0) -> list[Phase]:
    """The phases of scenario `name`, each `speed` times shorter.

    >>> sum(p.seconds for p in scenario("default"))
    570.0
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    if not speed > 0:
        raise ValueError(f"speed must be more than zero, got {speed!r}")
    unit = SCENARIOS[name] / speed
    return [dataclasses.replace(p, seconds=p.seconds * unit) for p in _STORY]


def duration(seconds: float, floor: float = 1.0) -> str:
    """A Prometheus duration of at least `floor` seconds, in whole minutes when exact.

    >>> duration(300), duration(45.4), duration(0.2, floor=2)
    ('5m', '45s', '2s')
    """
    whole = max(round(seconds), int(floor))
    return f"{whole // 60}m" if whole % 60 == 0 else f"{whole}s"


def rule_config(speed: float = 1.0, *, grafana_url: str = "http://localhost:3000") -> dict:
    """The `inferwatch generate` config the demo renders its rules and dashboards with.

    Windows and ``for:`` durations are the production defaults scaled from hours to
    minutes, then divided by `speed`; the rate window stays at least ten scrapes.

    >>> cfg = rule_config(speed=6)
    >>> cfg["windows"]["rate"], cfg["slo"]["fast_burn"], cfg["alerts"]["InferwatchFeatureDrift"]
    ('10s', {'long_window': '50s', 'short_window': '10s'}, {'for': '5s'})
    """
    from inferwatch.generate.rules import ALERTS

    rate_floor = 10 * SCRAPE_INTERVAL_SECONDS

    def window(seconds: float, floor: float = rate_floor) -> str:
        return duration(seconds / speed, floor=floor)

    # Long burn windows keep a floor above the short ones so the config stays valid.
    return {
        "windows": {"rate": window(60), "no_traffic_lookback": window(600, 3 * rate_floor)},
        "slo": {"fast_burn": {"long_window": window(300, 3 * rate_floor),
                              "short_window": window(60)},
                "slow_burn": {"long_window": window(1800, 6 * rate_floor),
                              "short_window": window(300, 2 * rate_floor)}},
        "latency": {"p99_seconds": 0.25},
        "drift": {"min_observations": MIN_DRIFT_OBSERVATIONS},
        "accuracy": {"window": window(300), "min_outcomes": 50},
        "links": {"grafana_url": grafana_url},
        "alerts": {alert.name: {"for": duration(30 / speed, floor=2)} for alert in ALERTS},
    }
