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


# The top finite bound of the default latency buckets (core/options.py's LATENCY_BUCKETS, a
# test keeps the two equal). The latency and time-to-first-item histograms use them, and
# histogram_quantile reports no quantile above that bound: a slower call lands in +Inf, and
# the p99 it reads is the bound itself.
TOP_LATENCY_BUCKET_SECONDS = 30.0


def latency_threshold(value: float, top: float = TOP_LATENCY_BUCKET_SECONDS) -> str | None:
    """A p99 latency in seconds above which an alert fires: more than zero, and below the top
    finite latency bucket (`top`: the default buckets', or a model's own ``latency_buckets``),
    or the alert could never fire.

    >>> latency_threshold(45)
    'must be below 30, the top finite latency bucket in seconds (histogram_quantile never \
reports a p99 above it, so the alert could never fire), got 45'
    """
    problem = positive(value)
    if problem is None and value >= top:
        return (f"must be below {top:g}, the top finite latency bucket "
                f"in seconds (histogram_quantile never reports a p99 above it, so the alert "
                f"could never fire), got {value!r}")
    return problem
