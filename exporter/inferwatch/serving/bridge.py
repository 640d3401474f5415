"""The prometheus_client collector that exposes a :class:`~inferwatch.core.registry.Registry`.

It yields fresh metric families on every scrape and implements ``describe()`` so
registering it does no work.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> from inferwatch.core.registry import Registry
>>> monitors = Registry()
>>> prom = CollectorRegistry()
>>> prom.register(InferwatchCollector(monitors))
>>> b"inferwatch_internal_errors_total" in generate_latest(prom)
True
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from inferwatch import faults
from inferwatch.catalogue import empty_family
from inferwatch.core.encode import Encoder, Page
from inferwatch.core.registry import Registry, default_registry
from inferwatch.core.render import (
    combine,
    describe_families,
    events_dropped_counts,
    loaded_ml_packages,
    process_families,
)
from inferwatch.forking import renew_at_fork
from inferwatch.serving.exposition import Prerendered, prerender_format

log = logging.getLogger("inferwatch.serving.bridge")

# Families collect() yields beyond describe_families(): an event log's and the merged view's.
_ALSO_YIELDED = ("inferwatch_event_values_dropped_total",
                 "inferwatch_multiproc_files_skipped_total")


class InferwatchCollector(Collector):
    """Drains pending calls, then renders every monitor of `registry`.

    Scraped through inferwatch's own :func:`~inferwatch.serving.exposition.render`, it
    writes the exposition text itself (:mod:`inferwatch.core.encode`); any other reader of
    ``collect()`` gets prometheus_client families with the same samples.
    """

    def __init__(self, registry: Registry | None = None,
                 events_dropped: Callable[[], dict[str, int]] | None = None) -> None:
        self.registry = registry or default_registry()
        self._events_dropped = events_dropped or events_dropped_counts
        self._encoder = Encoder()

    def describe(self) -> list[Metric]:
        # prometheus_client's `?name[]=` filter asks only the collectors that describe a
        # name, so every family collect() can yield is named here, the event log's and the
        # multi-worker view's included.
        return [*describe_families(), *(empty_family(name) for name in _ALSO_YIELDED)]

    def collect(self) -> Iterator[Metric]:
        wanted = prerender_format()
        if wanted is not None:
            page = self._encoder.page(openmetrics=wanted.openmetrics, escaping=wanted.escaping)
            self._fill(page)
            yield Prerendered(page.text())
            return
        if self.registry.multiproc is not None:
            # Multi-worker mode: every worker's snapshot merged, this one's included.
            yield from self.registry.multiproc.collect()
            return
        try:
            registry = self.registry
            registry.drain()
            now = time.time()
            families = combine(monitor.families(now) for monitor in registry.monitors())
        except Exception as exc:
            faults.record("collect", exc)
            families = []
        yield from families
        yield from process_families(faults.internal_error_counts(),
                                    self.registry.overflow_counts(),
                                    _guarded(self._events_dropped),
                                    _guarded(loaded_ml_packages))
        events = sys.modules.get("inferwatch.events.dropped")
        if events is not None:  # only a process with an event log has values to report
            yield events.values_dropped_family(_guarded(events.values_dropped_totals))

    def _fill(self, page: Page) -> None:
        """The same samples as collect() gives, written into `page`."""
        if self.registry.multiproc is not None:
            self.registry.multiproc.encode_into(page)
            return
        try:
            registry = self.registry
            registry.drain()
            now = time.time()
            for monitor in registry.monitors():
                # Under the monitor's lock, with its in-flight gauge set, as families() is,
                # and at the time the drain wrote its rolling windows: read at a wall clock
                # stepped back behind them, they would read empty and expire every bucket.
                monitor.encode_into(page, now)
        except Exception as exc:
            faults.record("collect", exc)
            page.clear()
        page.add_process(faults.internal_error_counts(), self.registry.overflow_counts(),
                         _guarded(self._events_dropped), _guarded(loaded_ml_packages))
        events = sys.modules.get("inferwatch.events.dropped")
        if events is not None:  # as collect(): only a process with an event log reports these
            page.add_families([events.values_dropped_family(
                _guarded(events.values_dropped_totals))])


def _guarded(fn: Callable[[], dict]) -> dict:
    try:
        return fn()
    except Exception as exc:
        faults.record("collect", exc)
        return {}


_prometheus_registry: CollectorRegistry | None = None
_prometheus_lock = threading.Lock()
renew_at_fork(globals(), "_prometheus_lock")


def prometheus_registry() -> CollectorRegistry:
    """The prometheus_client registry that serves inferwatch's metrics by default outside
    multi-worker mode (:func:`served_registry`).

    That is prometheus_client's global ``REGISTRY`` with inferwatch's collector added
    once, so the application's own prometheus_client metrics are served alongside.
    """
    global _prometheus_registry
    if _prometheus_registry is None:
        with _prometheus_lock:
            if _prometheus_registry is None:
                from prometheus_client import REGISTRY

                if not _serves_default_registry(REGISTRY):
                    try:
                        REGISTRY.register(InferwatchCollector())
                    except ValueError as exc:  # prometheus_client's DuplicateTimeseries
                        raise ValueError(
                            "inferwatch cannot add its metrics to prometheus_client's default "
                            f"registry: the application registered metrics there under the same "
                            f"names ({exc}); rename them, or serve a registry of your own with "
                            "make_wsgi_app(registry=...) / serve(registry=...)") from exc
                _prometheus_registry = REGISTRY
    return _prometheus_registry


def _serves_default_registry(registry: CollectorRegistry) -> bool:
    """Whether the application already registered a collector of inferwatch's own registry
    (``REGISTRY.register(InferwatchCollector())``): a second would clash on every name."""
    collectors = list(getattr(registry, "_collector_to_names", {}))
    own = default_registry()
    return any(isinstance(c, InferwatchCollector) and c.registry is own for c in collectors)


_merged_registry: CollectorRegistry | None = None
# prometheus_client switches to its multiprocess mode at import when either is set.
_PROMETHEUS_MULTIPROC_VARS = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")


def served_registry() -> CollectorRegistry:
    """What ``serve()``, ``make_wsgi_app()`` and ``make_asgi_app()`` serve when given no
    registry: :func:`prometheus_registry`, or in multi-worker mode (``INFERWATCH_MULTIPROC_DIR``)
    :func:`merged_registry`."""
    if default_registry().multiproc is None:
        return prometheus_registry()
    return merged_registry()


def merged_registry() -> CollectorRegistry:
    """The multi-worker view: inferwatch's merged metrics, and the application's own
    prometheus_client metrics only where prometheus_client merges them too.

    prometheus_client's default ``REGISTRY`` holds this worker's values alone (its process
    and GC collectors, the application's counters): served from whichever worker answers,
    they would go back and forth between scrapes, which Prometheus reads as counter resets.
    So with prometheus_client's multiprocess mode on (``PROMETHEUS_MULTIPROC_DIR``) the
    application's metrics come through its ``MultiProcessCollector``, summed over every
    worker; with it off they are left off, and a log line says how to get them.
    """
    global _merged_registry
    if _merged_registry is None:
        with _prometheus_lock:
            if _merged_registry is None:
                # Without names: `?name[]=` then asks it too, and filters its samples.
                merged = CollectorRegistry(support_collectors_without_names=True)
                merged.register(InferwatchCollector())
                directory = _prometheus_multiproc_dir()
                if directory is None:
                    _log_left_off()
                else:
                    _add_prometheus_multiproc(merged, directory)
                _merged_registry = merged
    return _merged_registry


def _prometheus_multiproc_dir() -> str | None:
    for name in _PROMETHEUS_MULTIPROC_VARS:
        if name in os.environ:
            return os.environ[name]
    return None


def _add_prometheus_multiproc(merged: CollectorRegistry, directory: str) -> None:
    from prometheus_client import REGISTRY
    from prometheus_client.multiprocess import MultiProcessCollector

    if not os.path.isdir(directory):
        raise ValueError(f"inferwatch cannot serve the application's prometheus_client metrics: "
                         f"PROMETHEUS_MULTIPROC_DIR={directory!r} is not a directory")
    # REGISTRY names the application's metrics, whose files the collector reads; an
    # InferwatchCollector the application added there for its own exposition is no clash.
    theirs = {name for collector, names in list(REGISTRY._collector_to_names.items())
              if not isinstance(collector, InferwatchCollector) for name in names}
    ours = frozenset(merged._names_to_collectors)
    clashes = sorted(ours & theirs)
    if clashes:
        raise ValueError(
            "inferwatch cannot serve its metrics beside the application's: prometheus_client "
            f"metrics use the same names ({', '.join(clashes)}); rename them")
    merged.register(_WithoutInferwatchNames(MultiProcessCollector(None, path=directory), ours))


# The sample names prometheus_client's registry takes a family of each type to hold, as it
# checks names for clashes (CollectorRegistry._get_names).
_TYPE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}


class _WithoutInferwatchNames(Collector):
    """`collector`'s families, less those holding a name of `reserved` (counted in
    ``inferwatch_internal_errors_total{component="collect"}``, and logged once per name).

    The application's metrics are checked against inferwatch's names once, when the merged
    view is built; a metric the application creates later under an inferwatch name reaches
    prometheus_client's multiprocess files all the same, and served beside inferwatch's
    family it made a duplicate that Prometheus and promtool reject with the whole scrape.
    """

    def __init__(self, collector: Collector, reserved: frozenset[str]) -> None:
        self._collector = collector
        self._reserved = reserved
        self._logged: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        for family in self._collector.collect():
            names = {family.name, *(family.name + suffix
                                    for suffix in _TYPE_SUFFIXES.get(family.type, ()))}
            clashes = sorted(names & self._reserved)
            if not clashes:
                yield family
                continue
            faults.record("collect")
            if family.name not in self._logged:
                self._logged.add(family.name)
                log.error("inferwatch: the application's prometheus_client metric %r shares "
                          "names with inferwatch's own metrics (%s), so it is left off /metrics "
                          "(counted in inferwatch_internal_errors_total{component=\"collect\"}); "
                          "rename it", family.name, ", ".join(clashes))


def _application_collectors() -> list[Collector]:
    """The collectors of prometheus_client's ``REGISTRY`` beyond its own defaults."""
    import prometheus_client
    from prometheus_client import REGISTRY

    defaults = (prometheus_client.PROCESS_COLLECTOR, prometheus_client.PLATFORM_COLLECTOR,
                prometheus_client.GC_COLLECTOR)
    return [c for c in list(getattr(REGISTRY, "_collector_to_names", {}))
            if not any(c is d for d in defaults) and not isinstance(c, InferwatchCollector)]


def _log_left_off() -> None:
    # Once per process, when the merged view is first built (at start-up, where the app mounts
    # /metrics). A warning where the application has metrics of its own: they vanish here.
    level = logging.WARNING if _application_collectors() else logging.INFO
    log.log(level, "inferwatch multi-worker mode: /metrics serves the merged view of every "
            "worker, without prometheus_client's default registry (the application's own "
            "metrics, process_*, python_gc_*), which holds this worker's values alone; to serve "
            "the application's metrics merged, set PROMETHEUS_MULTIPROC_DIR to an empty "
            "directory of their own before the workers start (prometheus_client's "
            "multiprocess mode)")
