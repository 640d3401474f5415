"""The limits a DDSketch holds its input to, and the checks of its two settings.

A module of its own because two read the count bound: the sketch, wherever it takes bins
or counts, and its bin store's dict form (:mod:`inferwatch.core.sketch_store`), which reads
a snapshot's counts field by field. One place says what malformed or hostile input may not
exceed.
"""

from __future__ import annotations

import numpy as np

# Upper bounds keep keys, counts and arrays from malformed or hostile input within int64.
MAX_MAX_BINS = 1 << 20
MIN_RELATIVE_ACCURACY = 1e-6
MAX_TOTAL_COUNT = 1 << 61


def check_relative_accuracy(value: object) -> float:
    """`value` as a relative accuracy (a float), or ValueError naming the setting.

    >>> check_relative_accuracy(0.01)
    0.01
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"relative_accuracy must be a number in (0, 1), got {value!r}")
    # Compared as it is: float() of an integer past the float range (a crafted snapshot)
    # would raise OverflowError rather than name the field.
    if not MIN_RELATIVE_ACCURACY <= value < 1.0:
        raise ValueError(
            f"relative_accuracy must be in [{MIN_RELATIVE_ACCURACY}, 1), got {value!r}"
        )
    return float(value)


def check_max_bins(value: object) -> int:
    """`value` as a bin budget (an int), or ValueError naming the setting.

    >>> check_max_bins(np.int64(2048))
    2048
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"max_bins must be an integer, got {value!r}")
    if not 1 <= int(value) <= MAX_MAX_BINS:
        raise ValueError(f"max_bins must be in [1, {MAX_MAX_BINS}], got {value!r}")
    return int(value)

