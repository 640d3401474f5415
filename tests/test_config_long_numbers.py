"""A config dict built in code holding an integer too long for Python to write as text.

Every message that named the value failed with ``ValueError: Exceeds the limit (4300
digits) for integer string conversion``, which names no key. (A YAML file with such a
number is refused by the loader already, with its line.)
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.generate.config import ConfigError, from_dict

HUGE = 10 ** 5000


@pytest.mark.parametrize(("data", "key"), [
    ({"alerts": HUGE}, "alerts"),
    ({"drift": {"method": HUGE}}, "drift.method"),
    ({"kubernetes": {"scrape_interval": -HUGE}}, "kubernetes.scrape_interval"),
    ({"models": {"fraud": {"drift": {"method": HUGE}}}}, "models.fraud.drift.method"),
    ({HUGE: 1}, "(top level)"),
    ({"drift": {HUGE: "js"}}, "drift"),
])
def test_a_number_too_long_to_write_is_refused_naming_its_key(data, key):
    with pytest.raises(ConfigError) as caught:
        from_dict(data)
    assert str(caught.value).startswith(f"{key}: is a number of ")


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["alerts", "drift", "baselines", "kubernetes", "events"]),
       st.integers(min_value=4299, max_value=6000), st.booleans())
def test_any_too_long_number_gives_a_config_error(section, digits, negative):
    value = (-1 if negative else 1) * 10 ** digits
    with pytest.raises(ConfigError):
        from_dict({section: value})


def test_a_long_number_python_can_still_write_is_judged_as_before():
    with pytest.raises(ConfigError) as caught:
        from_dict({"drift": {"method": 10 ** 4298}})
    assert "is a number of" not in str(caught.value)
    assert str(caught.value).startswith("drift.method: ")
