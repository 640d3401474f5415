"""What the event logs of this process lost, by reason, and the Prometheus families that
expose it.

Every event log adds to these process-wide counts under the lock of
:mod:`inferwatch.events.log`, whose fork hook renews that lock and zeroes the counts in a
child. Apart from the log because they are read without it: by the exporter's bridge, the
multi-worker snapshot and a prometheus_client registry, none of which need the log's queue
or its writer thread.
"""

from __future__ import annotations

from collections.abc import Iterable

from inferwatch.catalogue import CATALOGUE

# Why an event never reached the sink. Sampling is a choice, not a loss, so it is not here.
REASONS = ("queue_full", "write_error", "too_large", "serialize_error", "closed")
# Why a value inside a stored event was replaced by a marker (see events.fields): no JSON
# form (unsupported_type), bytes that are not text (binary), a failing conversion, or text
# where a redacted path names a field (unstructured); or a key that, turned into text, is
# one the same mapping already holds (key_collision: `1` and `"1"`), the later value left out.
VALUE_REASONS = ("unsupported_type", "binary", "conversion_error", "unstructured",
                 "key_collision")
METRIC = CATALOGUE["inferwatch_events_dropped_total"]
VALUES_METRIC = CATALOGUE["inferwatch_event_values_dropped_total"]

process_totals = dict.fromkeys(REASONS, 0)
process_value_totals = dict.fromkeys(VALUE_REASONS, 0)


def dropped_totals() -> dict[str, int]:
    """Events lost by every event log of this process since it started, by reason.

    >>> set(dropped_totals()) == set(REASONS)
    True
    """
    # No lock: copying a dict is one step under the GIL, and a forked child's hooks (which
    # may run before events.log renews the lock these are counted under) can call this safely.
    return dict(process_totals)


def values_dropped_totals() -> dict[str, int]:
    """Values left out of stored events by every event log of this process, by reason.

    >>> set(values_dropped_totals()) == set(VALUE_REASONS)
    True
    """
    # No lock, as dropped_totals(): a forked child's hooks may call this before events.log
    # renews its lock.
    return dict(process_value_totals)


class DroppedEventsCollector:
    """A prometheus_client collector for ``inferwatch_events_dropped_total{reason}`` and
    ``inferwatch_event_values_dropped_total{reason}``.

    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> registry = CollectorRegistry(); registry.register(DroppedEventsCollector())
    >>> b'inferwatch_events_dropped_total{reason="queue_full"}' in generate_latest(registry)
    True
    """

    def collect(self) -> Iterable[object]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(METRIC.family, METRIC.help, labels=list(METRIC.labels))
        for reason, count in dropped_totals().items():
            family.add_metric([reason], float(count))
        yield family
        yield values_dropped_family(values_dropped_totals())

    def describe(self) -> Iterable[object]:
        return self.collect()


def values_dropped_family(counts: dict[str, int]) -> object:
    """The ``inferwatch_event_values_dropped_total`` family holding `counts`.

    >>> values_dropped_family({"binary": 2}).samples[0].value
    2.0
    """
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(VALUES_METRIC.family, VALUES_METRIC.help,
                                 labels=list(VALUES_METRIC.labels))
    for reason, count in sorted(counts.items()):
        family.add_metric([reason], float(count))
    return family
