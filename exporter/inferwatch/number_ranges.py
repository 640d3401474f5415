"""Range checks of numbers, shared by the generator config (generate/config_checks.py) and
the objectives a model declares in code (core/options.py), which must not import the
generators: each returns the problem, or None when the value is in range.

>>> open_ratio(99.95)
'must be between 0 and 1 (both excluded), got 99.95'
>>> positive(3) is None
True
"""

from __future__ import annotations


def ratio(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be between 0 and 1, got {value!r}"


def open_ratio(value: float) -> str | None:
    return None if 0 < value < 1 else f"must be between 0 and 1 (both excluded), got {value!r}"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be zero or more, got {value!r}"


def positive(value: float) -> str | None:
    return None if value > 0 else f"must be more than zero, got {value!r}"
