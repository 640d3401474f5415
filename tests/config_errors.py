"""Helpers of the generator's config tests: the error a config is refused with, and a config
holding one dotted setting."""

from __future__ import annotations

import pytest

from inferwatch.generate.config import ConfigError, from_dict


def error_for(data: object) -> ConfigError:
    """The ConfigError `data` is refused with (fails the test when it is accepted)."""
    with pytest.raises(ConfigError) as caught:
        from_dict(data)  # type: ignore[arg-type]
    return caught.value


def nested(dotted: str, value: object) -> dict:
    """The config ``{"a": {"b": value}}`` for ``nested("a.b", value)``."""
    data: dict = {}
    here = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        here = here.setdefault(part, {})
    here[leaf] = value
    return data
