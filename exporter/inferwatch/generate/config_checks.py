"""The checks of config values: each returns a problem string, or None when the value is fine.

The config's fields name their check (``_setting(default, help, check.duration)``); a
problem is reported with the field's dotted key by the loader.

>>> duration("5m") is None, duration("0s")
(True, "must be more than zero, got '0s'")
"""

from __future__ import annotations

import datetime
import re
import string
from collections.abc import Callable
from typing import Any

from inferwatch.generate.re2 import Unsupported, python_regex

# The range checks of numbers are shared with the objectives declared in code, which are
# held to the same ones (re-exported: the schema names them from here).
from inferwatch.number_ranges import latency_threshold as latency_threshold
from inferwatch.number_ranges import non_negative as non_negative
from inferwatch.number_ranges import open_ratio as open_ratio
from inferwatch.number_ranges import positive as positive
from inferwatch.number_ranges import ratio as ratio


def above_one(value: Any) -> str | None:
    """A factor a value may grow by before an alert fires: at 1 or less it fires on the
    value the model was validated at, or below it.

    >>> above_one(1.5) is None, above_one(1)
    (True, 'must be more than 1 (a factor of the reference value), got 1')
    """
    if value > 1:
        return None
    return f"must be more than 1 (a factor of the reference value), got {value!r}"


# ASCII digits only: Python's \d also takes fullwidth or Arabic-Indic digits, which int()
# reads but PromQL refuses, so every rule file holding the window would fail to load.
_DURATION = re.compile(r"(?:[0-9]+(?:ms|s|m|h|d|w|y))+")
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# Prometheus takes the units largest first, each once, and counts in signed 64-bit nanoseconds.
_UNIT_ORDER = ("y", "w", "d", "h", "m", "s", "ms")
_UNIT_NANOSECONDS = {unit: round(seconds * 10**9) for unit, seconds in _UNIT_SECONDS.items()}
_MAX_NANOSECONDS = 2**63 - 1
# A PromQL string: double- or single-quoted with Go's escapes, or raw between backquotes.
_PROMQL_ESCAPE = r"\\(?:[abfnrtv\\]|[0-7]{3}|x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8})"
_PROMQL_STRING = (rf'"(?:[^"\\\n]|{_PROMQL_ESCAPE}|\\")*"'
                  rf"|'(?:[^'\\\n]|{_PROMQL_ESCAPE}|\\')*'|`[^`]*`")
# PromQL's lexer skips only these four as space; Python's \s would also let a no-break space
# (pasted from a web page) or a form feed through, and every rule would then fail to load.
_SPACE = "[ \t\n\r]*"
# One PromQL label matcher, e.g. job="x" or namespace=~"ml-.*"; Prometheus 3 also takes a
# quoted label name, {"service.name"="x"}, for names beyond [A-Za-z_][A-Za-z0-9_]*.
_MATCHER = re.compile(rf"{_SPACE}(?P<name>[A-Za-z_][A-Za-z0-9_]*|{_PROMQL_STRING}){_SPACE}"
                      rf"(?P<op>=~|!~|!=|=){_SPACE}(?P<value>{_PROMQL_STRING}){_SPACE}")
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_K8S_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_K8S_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration.

    >>> duration_seconds("1h30m")
    5400.0
    """
    return float(sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text)))


def duration(value: Any) -> str | None:
    """A duration something lasts or spans: a window, an age, an interval."""
    problem = duration_or_zero(value)
    if problem is None and duration_seconds(value) == 0:
        return f"must be more than zero, got {value!r}"
    return problem


def duration_or_zero(value: Any) -> str | None:
    """A wait or an offset, which may be zero: ``for: 0m`` fires at once, and the rules leave
    a zero offset out (Prometheus 2 refuses ``offset 0s``)."""
    unitless = bare_number(value)
    if unitless:
        return unitless
    if not _DURATION.fullmatch(value):
        return f"must be a Prometheus duration such as 5m, 1h or 30d, got {value!r}"
    units = [_UNIT_ORDER.index(unit) for _, unit in _DURATION_PART.findall(value)]
    if units != sorted(set(units)):
        return (f"must be a Prometheus duration, its units largest first and each once "
                f"(y w d h m s ms), got {value!r}")
    if _nanoseconds(value) > _MAX_NANOSECONDS:
        return f"must be at most Prometheus' longest duration (about 292y), got {value!r}"
    return None


# A number without a unit: what YAML makes of `rate: 10`, or the text of `rate: "10"` and of
# `rate: 08` (which YAML 1.1 leaves as text, 8 being no octal digit).
_BARE_NUMBER = re.compile(r"[0-9][0-9_]*(?:\.[0-9]*)?")


def bare_number(value: Any) -> str | None:
    """The problem of a duration written as a number without a unit, or None: Prometheus has
    no default unit, and saying so at once spares the round of quoting the number only to be
    told it is no duration.

    >>> bare_number("5m") is None
    True
    >>> bare_number(10)
    'needs a unit: write a Prometheus duration such as 10m or 10s (units y w d h m s ms), \
got the bare number 10'
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        text = value if isinstance(value, str) else repr(value)
    except ValueError:  # an integer past Python's digit limit for text
        return None
    if not _BARE_NUMBER.fullmatch(text):
        return None  # negative, inf, nan or anything else: the usual problem describes it
    # Digits as text, not int(): a quoted count of thousands of digits is past int()'s limit.
    whole, _, fraction = text.replace("_", "").partition(".")
    count = whole.lstrip("0") or "0"
    # Prometheus counts each unit in whole numbers: 1.5m is written 1m30s.
    examples, units = ((f"{count}m or {count}s", "units y w d h m s ms")
                       if not fraction.strip("0")
                       else ("1m30s or 90s", "units y w d h m s ms, each a whole number"))
    return (f"needs a unit: write a Prometheus duration such as {examples} ({units}), got the "
            f"bare number {value!r}")


def _nanoseconds(value: str) -> int:
    parts = _DURATION_PART.findall(value)
    if any(len(count.lstrip("0")) > 19 for count, _ in parts):
        return _MAX_NANOSECONDS + 1  # beyond any duration, and beyond what int() may parse
    return sum(int(count) * _UNIT_NANOSECONDS[unit] for count, unit in parts)


def one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"

    return check


def selector(value: Any) -> str | None:
    syntax = (f'must be PromQL label matchers such as job="model" (quoted values, Go string '
              f"escapes), got {value!r}")
    if value.strip(" \t\n\r").startswith("{"):  # a selector as written in a query
        syntax += "; write the matchers without the braces: the rules add them"
    position = 0
    while True:
        matcher = _MATCHER.match(value, position)
        if not matcher:
            return syntax
        problem = _matcher_problem(matcher)
        if problem:
            return problem
        position = matcher.end()
        if position == len(value):
            return None
        if value[position] != ",":
            return syntax
        position += 1
        # Prometheus takes one trailing comma, {job="a",}: selector_text() drops it, as the
        # rules append matchers after the configured ones.
        if not value[position:].strip(" \t\n\r"):
            return None


def selector_text(value: str) -> str:
    """A checked selector as the rules join it with other matchers: without a trailing comma.

    >>> selector_text('job="a", ')
    'job="a"'
    """
    text = value.strip(" \t\n\r")
    return text[:-1].rstrip(" \t\n\r") if text.endswith(",") else text


def label_matcher(value: str, position: int) -> tuple[str, str, str, str, int] | None:
    """The matcher of a checked selector at `position`: its label name and operator, the
    text its value stands for, the matcher as written, and where the next one starts (None
    past the last one).

    >>> label_matcher('job="a", "job"=~`b.*`', 8)[:4]
    ('job', '=~', 'b.*', '"job"=~`b.*`')
    """
    matcher = _MATCHER.match(value, position)
    if not matcher:
        return None
    name = matcher.group("name")
    if name[0] in "\"'`":
        name = _promql_string_value(name)
    end = matcher.end() + 1  # past the comma
    return (name, matcher.group("op"), _promql_string_value(matcher.group("value")),
            matcher.group(0).strip(), end)


def _matcher_problem(matcher: re.Match) -> str | None:
    text = matcher.group(0).strip()
    name = matcher.group("name")
    try:
        string = _promql_string_value(matcher.group("value"))
        if name[0] in "\"'`" and not _promql_string_value(name):
            return f"has the matcher {text}, whose quoted label name is empty"
    except ValueError as exc:
        return f"has the matcher {text}, whose escape {exc} is not a valid character"
    if (_promql_string_value(name) if name[0] in "\"'`" else name) == "__name__":
        # Every rule writes the metric name before the braces, and PromQL refuses a metric
        # name set twice: each rule file holding the selector would fail to load.
        return (f"has the matcher {text} on the metric name, which the rules set "
                f"themselves (PromQL refuses it twice); select series by their other labels")
    if matcher.group("op") not in ("=~", "!~"):
        return None
    try:
        python_regex(string)
    except Unsupported as exc:
        return f"has the matcher {text}, whose value {exc}"
    return None


def _promql_string_value(literal: str) -> str:
    """The text a PromQL string literal stands for (its escapes already checked)."""
    if literal.startswith("`"):
        return literal[1:-1]
    return re.sub(r"\\(?:[0-7]{3}|x..|u....|U........|.)", _unescape, literal[1:-1])


def _unescape(escape: re.Match) -> str:
    text = escape.group(0)
    if text[1] in "01234567xuU":
        code = int(text[2:], 16) if text[1] in "xuU" else int(text[1:], 8)
        if code > (0x10FFFF if text[1] in "uU" else 0xFF) or 0xD800 <= code < 0xE000:
            raise ValueError(text)
        return chr(code)
    return {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
            "v": "\v"}.get(text[1], text[1])


def url(value: Any) -> str | None:
    if re.fullmatch(r"https?://[^\s{}]+", value):
        return None
    return f"must be an http(s) URL without spaces or braces, got {value!r}"


def base_url(value: Any) -> str | None:
    """A URL that paths are appended to: a query or fragment would swallow them."""
    problem = url(value)
    if problem is None and re.search(r"[?#]", value):
        return (f"must be a base URL without a query or fragment (the alerts append "
                f"/d/<uid>?var-model=... to it), got {value!r}")
    return problem


def port_name(value: Any) -> str | None:
    """A named port, which Kubernetes restricts to an IANA service name: a monitor naming any
    other port matches none and silently scrapes nothing."""
    if (len(value) <= 15 and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", value)
            and re.search("[a-z]", value)):
        return None
    return (f"must be the name of a container / Service port (up to 15 lower-case letters, "
            f"digits and single inner '-', at least one letter), got {value!r}")


_RUNBOOK_FIELD = "{anchor} (the lower-case alert name)"


def runbook_pattern(value: Any) -> str | None:
    """A runbook link pattern, filled in by str.format with the alert's anchor: only a bare
    ``{anchor}`` is checked as Python fills it in (a format spec or a conversion would pad,
    quote or refuse the anchor, and an unknown field fails when the rules are written).

    >>> runbook_pattern("https://x/#{anchor}") is None
    True
    >>> runbook_pattern("https://x/#{anchor!r}")
    "writes {anchor!r}, with a conversion (!) or format spec (:); write the only field \
allowed, {anchor} (the lower-case alert name), on its own, got 'https://x/#{anchor!r}'"
    """
    try:
        fields = list(string.Formatter().parse(value))
    except ValueError as exc:
        return (f"is not a valid pattern ({exc}); the only field allowed is {_RUNBOOK_FIELD}, "
                f"got {value!r}")
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        written = f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
        if name != "anchor":
            return (f"has the field {written}; the only field allowed is {_RUNBOOK_FIELD}, got "
                    f"{value!r}")
        if spec or conversion:
            return (f"writes {written}, with a conversion (!) or format spec (:); write the only "
                    f"field allowed, {_RUNBOOK_FIELD}, on its own, got {value!r}")
    if not any(name == "anchor" for _, name, _, _ in fields):
        return f"must contain {_RUNBOOK_FIELD}, the only field allowed, got {value!r}"
    if url(value.format(anchor="x")) is not None:
        return (f"must be an http(s) URL without spaces or braces once {{anchor}} is filled "
                f"in, got {value!r}")
    return None


def k8s_name(value: Any) -> str | None:
    if _K8S_NAME.fullmatch(value) and len(value) <= 63:
        return None
    return f"must be a Kubernetes name (lower-case letters, digits, '-'), got {value!r}"


def path(value: Any) -> str | None:
    """A URL path Prometheus scrapes: it escapes a ? or # in metrics_path, so a query there
    asks for a path that does not exist and every target is down."""
    if not value.startswith("/"):
        return f"must start with '/', got {value!r}"
    if re.search(r"[?#]", value):
        return (f"must be a path without a query or fragment (Prometheus escapes ? and #, "
                f"so the scrape asks for a path that does not exist), got {value!r}")
    if re.search(r"[\s\x00-\x1f\x7f]", value):
        return f"must be a path without spaces or control characters, got {value!r}"
    return None


def uid_prefix(value: Any) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9_-]{1,30}", value):
        return None
    return f"must be 1 to 30 letters, digits, '-' or '_', got {value!r}"


_GRAFANA_RELATIVE = re.compile(r"now(?:-[0-9]+[yMwdhms])*(?:/[yMwdhms])?")


def grafana_time_from(value: Any) -> str | None:
    """A start of a Grafana time range: relative to now (``now-6h``, ``now-1d/d``,
    ``now/w``) or an ISO 8601 date or time; Grafana shows anything else as an invalid date.

    >>> grafana_time_from("now-7d/d") is None, grafana_time_from("2026-01-31") is None
    (True, True)
    >>> grafana_time_from("6h")
    "must be a Grafana time such as now-6h, now-1d/d or 2026-01-31, got '6h'"
    """
    text = value
    if _GRAFANA_RELATIVE.fullmatch(text):
        return None
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ].*)?", text):
        try:
            datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
            return None
        except ValueError:
            pass
    return f"must be a Grafana time such as now-6h, now-1d/d or 2026-01-31, got {value!r}"


def not_empty(value: Any) -> str | None:
    return None if value.strip() else "must not be empty"


def label_map(value: Any) -> str | None:
    for key, text in value.items():
        if not _is_k8s_label_key(key):
            return (f"has an invalid Kubernetes label name {key!r} (an optional DNS prefix "
                    f"and '/', then up to 63 letters, digits, '-', '_' or '.')")
        if len(text) > 63 or not _K8S_LABEL_VALUE.fullmatch(text):
            return (f"has an invalid Kubernetes label value {text!r} for {key} (up to 63 "
                    f"letters, digits, '-', '_' or '.', starting and ending with a letter or "
                    f"digit)")
    return None


def match_labels(value: Any) -> str | None:
    """Labels a monitor selects its targets by: the monitors look in every namespace, so no
    labels at all would scrape every Service or Pod of the cluster."""
    if not value:
        return ("must name at least one label: the monitors look in every namespace, so an "
                "empty selector would scrape every Service or Pod in the cluster")
    return label_map(value)


def _is_k8s_label_key(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and not (len(prefix) <= 253 and _K8S_DNS_SUBDOMAIN.fullmatch(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_K8S_LABEL_VALUE.fullmatch(name))


def job_name(value: Any) -> str | None:
    """A job label value the rules select exactly: neither empty nor padded with space.

    >>> job_name(" ml ")
    "has the job name ' ml ', with space at its start or end, which the rules would match \
exactly; write the job name without it, 'ml'"
    """
    if not value.strip():
        return f"has an empty job name {value!r}"
    if value != value.strip():
        # Only quotes keep the space (YAML strips a plain scalar), and a selector matches the
        # job exactly: a selector written job="ml" would read no series of the job " ml ".
        return (f"has the job name {value!r}, with space at its start or end, which the rules "
                f"would match exactly; write the job name without it, {value.strip()!r}")
    return None


def duration_map(value: Any) -> str | None:
    for name, text in value.items():
        if not name.strip():
            # job="" selects groups pushed without a job, which the Pushgateway refuses: the
            # period would silently apply to nothing.
            return f"has an empty job name {name!r}"
        if name != name.strip():
            # Only quotes keep the space (YAML strips a plain key), and the rules select the
            # job exactly: the period would apply to no group, and the job pushed as
            # "nightly" would be judged by max_age instead.
            return (f"has the job name {name!r}, with space at its start or end, which the "
                    f"rules would match exactly; write the job name as it is pushed, "
                    f"{name.strip()!r}")
        problem = duration(text)
        if problem:
            return f"{name} {problem}"
    return None


def durations(value: Any) -> str | None:
    for text in value:
        problem = duration(text)
        if problem:
            return problem
    return None


def quantiles(value: Any) -> str | None:
    seen: dict[float, str] = {}
    for text in value:
        try:
            number = float(text)
        except ValueError:
            number = -1.0
        if not 0 < number < 1:
            return (f"must be quantiles between 0 and 1 as written in the quantile label, "
                    f"got {text!r}")
        if number in seen:
            # Each quantile gets its own recording rules: twice would record one series twice.
            return f"lists one quantile twice ({seen[number]!r} and {text!r})"
        seen[number] = text
        # The rules select the quantile label by its text, and the exposition writes a
        # quantile in (0, 1) as Python's repr does (Go's shortest form): ".9" matches nothing.
        if text != repr(number):
            return (f"writes the quantile {text!r} unlike its quantile label, which the rules "
                    f"match exactly; write {repr(number)!r}")
    return None


# Grafana's refresh picker reads one number and unit (its describeInterval takes the first
# unit of 1h30m and drops the rest), and refuses a refresh below min_refresh_interval, 5s by
# default, replacing it with that minimum.
_GRAFANA_REFRESH = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_GRAFANA_MIN_REFRESH_SECONDS = 5


def grafana_refresh(value: Any) -> str | None:
    """A dashboard's auto-refresh interval as Grafana reads it.

    >>> grafana_refresh("30s") is None, grafana_refresh("1s")
    (True, "must be at least 5s, Grafana's default min_refresh_interval, got '1s'")
    """
    unitless = bare_number(value)
    if unitless:
        return unitless
    if not _GRAFANA_REFRESH.fullmatch(value):
        return (f"must be a Grafana refresh interval: one number and one unit such as 30s, "
                f"1m or 1h, got {value!r}")
    if duration_seconds(value) < _GRAFANA_MIN_REFRESH_SECONDS:
        return (f"must be at least {_GRAFANA_MIN_REFRESH_SECONDS}s, Grafana's default "
                f"min_refresh_interval, got {value!r}")
    return duration_or_zero(value)


def tags(value: Any) -> str | None:
    """Dashboard tags: Grafana shows an empty tag as a blank chip that filters nothing."""
    for index, text in enumerate(value):
        if not text.strip():
            return f"must be a list of non-empty strings, got {text!r} at [{index}]"
    return None


def label_values(value: Any) -> str | None:
    return None if all(text.strip() for text in value) else "must not hold an empty name"
