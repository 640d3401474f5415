"""Exposition bytes straight from model states: each series' label string is rendered once.

prometheus_client's encoders build a sample object per sample and sort, escape and format
its labels on every scrape, about 5 us a sample. Here the part of each line before the
value (name, labels, the space) is made once per series, by prometheus_client's own
encoder, and kept; a scrape formats only the values. The lines are those prometheus_client
writes for :func:`inferwatch.core.render.model_families` and ``process_families`` of the
same states, in the same order (a property test compares them byte for byte), so
render.py's OpenMetrics rules hold here too: a histogram with a negative bucket bound (or
sum) has no ``_sum`` and no ``_count``, in either format; its ``+Inf`` bucket holds the count.
In OpenMetrics only, a summary of values that can be negative (``render.SIGNED_SUMMARIES``)
is written as three gauge families, and another summary leaves out a negative or NaN
``_sum`` (``model_families(openmetrics=True)``).

>>> from inferwatch.core.state import ModelState
>>> state = ModelState("fraud", "1.4.2")
>>> state.inc("inferwatch_requests_total", ("ok",), 3)
>>> page = Encoder().page()
>>> page.add(state, now=0.0)
>>> print(next(line for line in page.text().splitlines()
...            if line.startswith("inferwatch_requests_total{")))
inferwatch_requests_total{model="fraud",model_version="1.4.2",outcome="ok"} 3.0
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping
from itertools import accumulate

import numpy as np
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest as text_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.utils import floatToGoString

from inferwatch.catalogue import CATALOGUE, empty_family
from inferwatch.core.render import (
    OPENMETRICS_SPLIT,
    PER_MODEL,
    SIGNED_SUMMARIES,
    openmetrics_family,
    openmetrics_sum_allowed,
)
from inferwatch.core.rolling_sketch import bucket_of, bucket_width
from inferwatch.core.state import ModelState

_INF = math.inf
# What can change a state's series, from its monitor (Page.add's `changes`): counts that
# move with every change to the state, and the objects its series are read through (the
# state, its settings, summary settings and drift state), compared by identity.
StateChanges = tuple[tuple[int, ...], tuple[object, ...]]
# What a page kept of a state it wrote: its changes' counts, its windows' buckets, the
# objects read, its lines (once a scrape found it unchanged, else None) and how many of
# the encoder's cached label strings they use.
_KeptState = tuple[tuple[int, ...], tuple, tuple[object, ...],
                   list[tuple[str, list[str]]] | None, int]
# The cache holds the series of recent scrapes, in each format asked for. Past four times
# what one page used (two formats, with room), plus this slack, most of what it holds is
# gone (old model versions, folded labels) and it starts again.
_CACHE_SLACK = 4096


def go_float(value: float) -> str:
    """A sample value as prometheus_client writes it (``floatToGoString``), quicker.

    >>> [go_float(v) for v in (1.0, 0.5, -2.0, 1234567.0, float("inf"), float("nan"))]
    ['1.0', '0.5', '-2.0', '1.234567e+06', '+Inf', 'NaN']
    """
    # repr() is Go's format below 1e6; infinities, NaN and exponents take the full path.
    if -_INF < value < 1e6:
        return repr(float(value))
    return floatToGoString(value)


class Encoder:
    """Keeps rendered label strings across scrapes; :meth:`page` starts one scrape.

    Safe to share between threads: pages only add to the cache, and a page that sees it
    reset renders the series again.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple, object] = {}
        self._entries = 0  # series rendered into the cache since it was last emptied
        # (format, model, version) -> what the last page of that format wrote of the state
        # (Page.add's `changes`); only states the last page wrote stay (Page.text).
        self._states: dict[tuple, _KeptState] = {}

    def page(self, *, openmetrics: bool = False,
             escaping: str = openmetrics.UNDERSCORES) -> Page:
        """A new scrape's output in the text format, or OpenMetrics (without ``# EOF``)."""
        return Page(self, openmetrics, escaping)

    def _finished(self, used: int) -> None:
        if self._entries > 4 * used + _CACHE_SLACK:
            self._cache = {}
            self._entries = 0


class Page:
    """The families of one scrape, filled by :meth:`add` and read by :meth:`text`."""

    def __init__(self, encoder: Encoder, openmetrics_format: bool, escaping: str) -> None:
        self._encoder = encoder
        self._cache = encoder._cache
        self._openmetrics = openmetrics_format
        self._escaping = escaping
        self._format = (openmetrics_format, escaping)
        # Families in the order they first get a sample, as render.combine() keeps them.
        self._families: dict[str, list[str]] = {}
        self._process: list[str] = []
        self._used = 0
        self._states = encoder._states
        self._written: set[tuple] = set()  # the keys of the states this page wrote

    # --- filling ---------------------------------------------------------------------------
    def add(self, state: ModelState, now: float, changes: StateChanges | None = None) -> None:
        """Every series of `state`, in the order ``model_families`` gives them.

        `changes`, from the state's monitor (``Monitor.encode_into``): (counts that move
        with every change to the state, the objects it is read through). When they and
        the buckets of its rolling windows at `now` are those of the last page that wrote
        this state in this format, its lines are that page's: an idle model's scrape reads
        no sketch and formats no value.
        """
        if changes is None:
            self._add_lines(self._state_lines(state, now))
            return
        key = (self._format, state.model, state.version)
        try:
            moments = _window_buckets(state, now)
        except (ValueError, OverflowError):  # no clock's time: written afresh, not kept
            self._add_lines(self._state_lines(state, now))
            return
        self._written.add(key)
        found = self._states.get(key)
        counts, readers = changes
        unchanged = found is not None and found[0] == counts and found[1] == moments and \
            all(map(operator.is_, found[2], readers))
        if unchanged and found[3] is not None:
            self._used += found[4]  # what it holds stays in use: see Encoder._finished
            self._add_lines(found[3])
            return
        used = self._used
        lines = self._state_lines(state, now)
        # Lines are kept once a scrape finds the state as the last one left it: a model
        # called between every two scrapes keeps none (holding a page's worth of lines
        # across scrapes made each later scrape slower than the lines it saved).
        self._states[key] = (counts, moments, readers, lines if unchanged else None,
                             self._used - used)
        self._add_lines(lines)

    def _state_lines(self, state: ModelState, now: float) -> list[tuple[str, list[str]]]:
        """(family, lines) of every series of `state`, in the order of the families."""
        lines: dict[str, list[str]] = {}
        base = {"model": state.model, "model_version": state.version}
        key = (state.model, state.version)
        self._identity(lines, state, base, key)
        drift = state.extras.get("drift")
        if drift is not None:
            self._drift(lines, drift, base, key, now)
        for part, add in ((state.counters, self._values), (state.gauges, self._values),
                          (state.histograms, self._histograms)):
            for metric, series in part.items():
                if metric in PER_MODEL_NAMES and series:
                    add(lines.setdefault(metric, []), metric, series, base, key)
        for metric, series in state.summaries.items():
            if metric in PER_MODEL_NAMES and series:
                quantile_lines = lines.setdefault(metric, [])
                if self._openmetrics and metric in SIGNED_SUMMARIES:
                    # Three gauge families in OpenMetrics: see render.SIGNED_SUMMARIES.
                    count_lines = lines.setdefault(metric + "_count", [])
                    sum_lines = lines.setdefault(metric + "_sum", [])
                else:
                    count_lines = sum_lines = quantile_lines
                self._summaries((quantile_lines, count_lines, sum_lines), metric, series,
                                base, key, state.summary_settings.quantiles, now)
        return [(name, lines[name]) for name in sorted(lines, key=_FAMILY_ORDER.__getitem__)
                if lines[name]]

    def _add_lines(self, ordered: list[tuple[str, list[str]]]) -> None:
        families = self._families
        for name, found in ordered:
            families.setdefault(name, []).extend(found)

    def add_process(self, internal_errors: Mapping[str, float], overflow: Mapping[str, float],
                    events_dropped: Mapping[str, float],
                    dependencies: Mapping[str, str]) -> None:
        """The process-wide families, as ``process_families`` gives them."""
        for name, label, values in (
            ("inferwatch_internal_errors_total", "component", internal_errors),
            ("inferwatch_series_overflow_total", "metric", overflow),
            ("inferwatch_events_dropped_total", "reason", events_dropped),
        ):
            self._process.append(self._header(name))
            for value_label, count in sorted(values.items()):
                prefix = self._prefixes(("process", name, value_label),
                                        [(name, {label: value_label})])[0]
                self._process.append(prefix + go_float(float(count)) + "\n")
        name = "inferwatch_dependency_info"
        self._process.append(self._header(name))
        for package, version in sorted(dependencies.items()):
            prefix = self._prefixes(("process", name, package, version),
                                    [(name, {"package": package, "package_version": version})])
            self._process.append(prefix[0] + "1.0\n")

    def add_families(self, families: Iterable[Metric]) -> None:
        """More process-wide families, written by prometheus_client as they are (these are
        few and small: the event values dropped, worker files skipped)."""
        families = [family for family in families if family is not None]
        if families:
            self._process.append(_encode(families, self._openmetrics, self._escaping))

    def clear(self) -> None:
        """Drop the model families added so far (a failed collection serves none of them)."""
        self._families = {}

    def clear_process(self) -> None:
        """Drop the process-wide families added so far."""
        self._process = []

    def text(self) -> str:
        """Every family added so far (headers included), in prometheus_client's layout."""
        out = []
        for name, lines in self._families.items():
            out.append(self._header(name))
            out.extend(lines)
        out.extend(self._process)
        self._encoder._finished(self._used)
        # A model this page did not write (its version retired, its registry closed) keeps
        # no lines, nor the state and settings they were read through.
        states, fmt, written = self._states, self._format, self._written
        for key in [key for key in states if key[0] == fmt and key not in written]:
            states.pop(key, None)
        return "".join(out)

    # --- the parts of a state --------------------------------------------------------------
    def _identity(self, lines: dict[str, list[str]], state: ModelState, base: dict[str, str],
                  key: tuple) -> None:
        name = "inferwatch_model_info"
        labels = {**base, **state.info}
        prefix = self._prefixes((name, *key, tuple(labels.items())), [(name, labels)])[0]
        lines[name] = [prefix + "1.0\n"]
        for name, value in (("inferwatch_model_loaded_timestamp_seconds", state.loaded_at),
                            ("inferwatch_model_trained_timestamp_seconds", state.trained_at)):
            if not math.isnan(value):
                prefix = self._prefixes((name, *key), [(name, base)])[0]
                lines[name] = [prefix + go_float(value) + "\n"]
        if state.objectives:
            name = "inferwatch_model_objective"
            lines[name] = [
                self._prefixes((name, *key, objective),
                               [(name, {**base, "objective": objective})])[0]
                + go_float(value) + "\n" for objective, value in state.objectives.items()]
        if state.validation:
            name = "inferwatch_reference_validation"
            lines[name] = [
                self._prefixes((name, *key, metric), [(name, {**base, "metric": metric})])[0]
                + go_float(value) + "\n" for metric, value in state.validation.items()]

    def _drift(self, lines: dict[str, list[str]], drift, base: dict[str, str], key: tuple,
               now: float) -> None:
        feature_scores, output_scores, rows = drift.scores(now)
        name = "inferwatch_drift_window_observations"
        prefix = self._prefixes((name, *key), [(name, base)])[0]
        lines[name] = [prefix + go_float(float(rows)) + "\n"]
        observations = drift.observations(now)
        if observations:
            name = "inferwatch_feature_drift_observations"
            lines[name] = self._lines(name, key, observations,
                                      lambda labels: {**base, "feature": labels})
        for name, label, scores in (("inferwatch_feature_drift", "feature", feature_scores),
                                    ("inferwatch_prediction_drift", "output", output_scores)):
            if scores:
                lines[name] = self._lines(name, key, scores, lambda labels, label=label: {
                    **base, label: labels[0], "method": labels[1]})

    def _values(self, out: list[str], metric: str, series: dict, base: dict[str, str],
                key: tuple) -> None:
        names = CATALOGUE[metric].labels
        out.extend(self._lines(metric, key, series,
                               lambda labels: {**base, **dict(zip(names, labels))}))

    def _lines(self, metric: str, key: tuple, values: dict, labels_of) -> list[str]:
        """One line per (labels, value) of `values`, a float each."""
        prefixes = self._series_cache(metric, key)
        order = tuple(values)
        # The series of one family and model rarely change between scrapes: their lines are
        # kept as one %-format, and a scrape formats only the values into it.
        block = prefixes.get(None)
        if block is None or block[0] != order:
            get = prefixes.get
            template = []
            for labels in order:
                prefix = get(labels)
                if prefix is None:
                    prefix = prefixes[labels] = _render_prefixes(
                        [(metric, labels_of(labels))], self._openmetrics, self._escaping)[0]
                    self._encoder._entries += 1
                template.append(prefix.replace("%", "%%") + "%s\n")
            block = prefixes[None] = (order, "".join(template))
        floats = list(map(float, values.values()))
        self._used += len(floats)
        # repr() is Go's format below 1e6; infinities, NaN and exponents take the full path.
        if all(-_INF < value < 1e6 for value in floats):
            return [block[1] % tuple(map(repr, floats))]
        return [block[1] % tuple(map(go_float, floats))]

    def _series_cache(self, metric: str, key: tuple) -> dict:
        cache_key = (self._format, metric, key)
        found = self._cache.get(cache_key)
        if found is None:
            found = self._cache[cache_key] = {}
        return found

    def _histograms(self, out: list[str], metric: str, series: dict, base: dict[str, str],
                    key: tuple) -> None:
        names = CATALOGUE[metric].labels
        openmetrics_format = self._openmetrics
        for labels, hist in series.items():
            bounds = hist.bounds
            rendered = self._histogram_prefixes(metric, key, labels, bounds, names, base)
            buckets, count_prefix, sum_prefix, negative, lines, with_count = rendered
            cumulative = list(accumulate(hist.counts.tolist()))
            # render.py's rule, in both formats: OpenMetrics forbids a _sum that is or could
            # be negative, and a _count without a _sum; +Inf still counts all.
            summed = not negative and hist.sum >= 0  # NaN is not
            exemplars = hist.exemplars if openmetrics_format else None
            if exemplars:
                for index, (prefix, total) in enumerate(zip(buckets, cumulative)):
                    exemplar = exemplars.get(index)
                    tail = "\n" if exemplar is None else _exemplar(exemplar) + "\n"
                    out.append(prefix + go_float(total) + tail)
            elif cumulative[-1] < 1e6:
                # Counts are integers, and below 1e6 Go writes an integral float as "%d.0":
                # one format call writes every bucket (and the count) at once.
                if summed:
                    out.append(with_count % (*cumulative, cumulative[-1]))
                    out.append(sum_prefix + go_float(hist.sum) + "\n")
                else:
                    out.append(lines % tuple(cumulative))
                continue
            else:
                out.extend([prefix + go_float(total) + "\n"
                            for prefix, total in zip(buckets, cumulative)])
            if summed:
                out.append(count_prefix + go_float(cumulative[-1]) + "\n")
                out.append(sum_prefix + go_float(hist.sum) + "\n")

    def _histogram_prefixes(self, metric: str, key: tuple, labels: tuple, bounds: np.ndarray,
                            names: tuple, base: dict[str, str]) -> tuple:
        # Reference profiles give each output its own bounds; a rollout can change them.
        cache_key = (self._format, metric, *key, labels, bounds.tobytes())
        found = self._cache.get(cache_key)
        if found is not None:
            self._used += 1
            return found
        series_labels = {**base, **dict(zip(names, labels))}
        les = [floatToGoString(b) for b in bounds.tolist()] + ["+Inf"]
        samples = [(metric + "_bucket", {**series_labels, "le": le}) for le in les]
        samples += [(metric + "_count", series_labels), (metric + "_sum", series_labels)]
        prefixes = _render_prefixes(samples, self._openmetrics, self._escaping)
        lines = "".join(_integral(prefix) for prefix in prefixes[:-2])
        found = (prefixes[:-2], prefixes[-2], prefixes[-1], bool(bounds.size and bounds[0] < 0),
                 lines, lines + _integral(prefixes[-2]))
        self._store(cache_key, found)
        return found

    def _summaries(self, out: tuple[list[str], list[str], list[str]], metric: str,
                   series: dict, base: dict[str, str], key: tuple,
                   quantiles: tuple[float, ...], now: float) -> None:
        """Each series' quantile lines into ``out[0]``, its _count into ``out[1]`` and its
        _sum into ``out[2]`` (one list but for a signed summary in OpenMetrics)."""
        names = CATALOGUE[metric].labels
        quantile_out, count_out, sum_out = out
        # OpenMetrics has no negative (nor NaN) summary _sum; a signed summary's _sum is a
        # gauge there, which may be anything.
        check_sum = self._openmetrics and metric not in SIGNED_SUMMARIES
        fmt = self._format
        cache = self._cache
        for labels, summary in series.items():
            cache_key = (fmt, metric, *key, labels, quantiles)
            prefixes = cache.get(cache_key)
            if prefixes is None:
                series_labels = {**base, **dict(zip(names, labels))}
                samples = [(metric, {**series_labels, "quantile": floatToGoString(q)})
                           for q in quantiles]
                samples += [(metric + "_count", series_labels), (metric + "_sum", series_labels)]
                rendered = _render_prefixes(samples, self._openmetrics, self._escaping)
                # The quantile lines as one %-format, written at once when every value
                # prints as repr() does (Go's format below 1e6).
                prefixes = (rendered, "".join(
                    prefix.replace("%", "%%") + "%r\n" for prefix in rendered[:-2]))
                self._store(cache_key, prefixes)
            else:
                self._used += 1
            rendered, quantile_lines = prefixes
            values = summary.quantiles(quantiles, now)
            if values.__class__ is not list:
                values = values.tolist() if isinstance(values, np.ndarray) else list(values)
            if all(-_INF < value < 1e6 for value in values):
                quantile_out.append(quantile_lines % tuple(map(float, values)))
            else:
                quantile_out.extend([prefix + go_float(value) + "\n"
                                     for prefix, value in zip(rendered, values)])
            count_out.append(rendered[-2] + go_float(float(summary.count)) + "\n")
            if not check_sum or openmetrics_sum_allowed(summary.sum):
                sum_out.append(rendered[-1] + go_float(summary.sum) + "\n")

    # --- rendering what is cached ------------------------------------------------------------
    def _prefixes(self, key: tuple, samples: list[tuple[str, dict[str, str]]]) -> list[str]:
        cache_key = (self._format, *key)
        found = self._cache.get(cache_key)
        if found is None:
            found = _render_prefixes(samples, self._openmetrics, self._escaping)
            if len(found) == 1:
                found = found[0]
            self._store(cache_key, found)
        else:
            self._used += 1
        return [found] if isinstance(found, str) else found

    def _store(self, key: tuple, value: object) -> None:
        self._cache[key] = value
        self._encoder._entries += 1
        self._used += 1

    def _header(self, name: str) -> str:
        cache_key = (self._format, "header", name)
        found = self._cache.get(cache_key)
        if found is None:
            family = openmetrics_family(name) if self._openmetrics else empty_family(name)
            found = _encode([family], self._openmetrics, self._escaping)
            self._store(cache_key, found)
        return found


def _window_buckets(state: ModelState, now: float) -> tuple:
    """The buckets its rolling windows are at, at `now`: what a state's lines depend on
    besides the state (its quantiles' window, as ``RollingSketch.bucket_id`` finds it, and
    its drift windows')."""
    settings = state.summary_settings
    drift = state.extras.get("drift")
    return (bucket_of(now, bucket_width(settings.max_age_seconds, settings.age_buckets)),
            None if drift is None else (drift.features.bucket_id(now),
                                        drift.outputs.bucket_id(now)))


PER_MODEL_NAMES = frozenset(spec.name for spec in PER_MODEL)
# A family's place in model_families' order: a page sorts the few families a state has
# rather than walk the whole catalogue for each state. A signed summary's OpenMetrics
# families follow one another where the summary is.
_FAMILY_ORDER = {spec.name: (index, 0) for index, spec in enumerate(PER_MODEL)}
_FAMILY_ORDER.update({name: (_FAMILY_ORDER[summary][0], ("", "_count", "_sum").index(suffix))
                      for name, (summary, suffix) in OPENMETRICS_SPLIT.items()})


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def _encode(families: list[Metric], openmetrics_format: bool, escaping: str) -> str:
    """prometheus_client's own output for `families` (OpenMetrics without ``# EOF``)."""
    if openmetrics_format:
        text = openmetrics.generate_latest(_Families(families), escaping=escaping).decode()
        return text[:-len("# EOF\n")]
    return text_latest(_Families(families), escaping=escaping).decode()


def _render_prefixes(samples: Iterable[tuple[str, dict[str, str]]], openmetrics_format: bool,
                     escaping: str) -> list[str]:
    """What prometheus_client writes before the value of each sample: name, labels, space."""
    family = Metric("prefix", "", "unknown")
    for name, labels in samples:
        family.add_sample(name, labels, 0.0)
    lines = _encode([family], openmetrics_format, escaping).split("\n")
    # Lines are split on "\n" only: label values may hold "\r" and other line breaks, which
    # prometheus_client leaves as they are.
    return [line[:-len("0.0")] for line in lines if line and not line.startswith("#")]


def _integral(prefix: str) -> str:
    """A %-format line writing an integer after `prefix` as Go writes it below 1e6."""
    return prefix.replace("%", "%%") + "%d.0\n"


def _exemplar(exemplar: tuple[str, float, float]) -> str:
    trace_id, value, at = exemplar
    escaped = trace_id.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return f' # {{trace_id="{escaped}"}} {floatToGoString(value)} {at}'


__all__ = ["Encoder", "Page", "go_float"]
