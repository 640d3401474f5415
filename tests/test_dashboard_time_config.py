"""`dashboards.time_from` is checked as Grafana reads it: a dashboard whose default range
Grafana cannot parse opens on "Invalid date" with every panel empty."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.generate.config import ConfigError, from_dict
from inferwatch.generate.dashboards import render


@pytest.mark.parametrize("value", ["banana", "6h", "-6h", "now+1h", "now-", "now-6", "now-6x",
                                   "2026-13-01", " now-6h", "now-6h "])
def test_a_time_grafana_cannot_parse_is_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"dashboards\.time_from: must be a Grafana time"):
        from_dict({"dashboards": {"time_from": value}})


@pytest.mark.parametrize("value", ["now", "now-6h", "now-1h-30m", "now/d", "now-1d/d",
                                   "now-2w/w", "2026-01-31", "2026-01-31T08:00:00Z",
                                   "2026-01-31 08:00:00"])
def test_the_times_grafana_reads_are_accepted_and_reach_every_dashboard(value: str) -> None:
    cfg = from_dict({"dashboards": {"time_from": value}})
    dashboards = render(cfg)
    assert dashboards and all(d["time"]["from"] == value for d in dashboards.values())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 999), st.sampled_from("yMwdhms")), max_size=3),
       st.sampled_from(["", *("/" + u for u in "yMwdhms")]))
def test_any_relative_time_is_accepted(offsets: list, rounding: str) -> None:
    value = "now" + "".join(f"-{n}{unit}" for n, unit in offsets) + rounding
    assert from_dict({"dashboards": {"time_from": value}}).dashboards.time_from == value
