"""Collectors by name, and the scrape that runs them each under a deadline.

A collector is a class with a ``name``, decorated with :func:`register`; the CLI turns
every registered name into ``--collector.<name>`` / ``--no-collector.<name>``. The
:class:`Scraper` is the one prometheus_client collector the exporter registers: on each
scrape it runs every enabled collector in its own worker thread, waits at most the
scrape timeout, and reports ``inferwatch_exporter_collector_success`` and
``inferwatch_exporter_collector_duration_seconds`` per collector. A collector that
raises or hangs costs its own series, never the scrape.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> registry = CollectorRegistry()
>>> registry.register(Scraper([], timeout=1.0))
>>> b"inferwatch_exporter_build_info" in generate_latest(registry)
True
"""

from __future__ import annotations

import argparse
import logging
import platform
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import ClassVar, TypeVar

from prometheus_client.metrics_core import Metric

from inferwatch._version import __version__
from inferwatch.catalogue import empty_family

log = logging.getLogger("inferwatch.standalone")

FAILURE_LOG_INTERVAL_SECONDS = 60.0


class CollectorError(Exception):
    """An expected failure (no driver, unreadable source): logged as one line, no traceback."""


class Collector:
    """Base class of the exporter's collectors; subclasses set ``name`` and ``collect()``.

    ``describe()`` lists the metric names without reading anything, so registering a
    collector costs nothing. ``collect()`` runs in a worker thread, never two at once
    for the same collector, and yields fresh families on every call.

    >>> class Hello(Collector):
    ...     name = "hello"
    ...     metric_names = ("inferwatch_exporter_build_info",)
    ...     def collect(self):
    ...         metrics = MetricSet()
    ...         metrics.add("inferwatch_exporter_build_info", {"version": "x"}, 1)
    ...         return metrics.families()
    >>> [sample.value for family in Hello().collect() for sample in family.samples]
    [1.0]
    """

    name: ClassVar[str] = ""
    default_enabled: ClassVar[bool] = True
    help: ClassVar[str] = ""
    # Catalogue names this collector may expose: describe() answers from them.
    metric_names: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        """Add this collector's own flags (``--<name>.<option>``) to the CLI."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Collector:
        """Build the collector from parsed CLI flags; raise ``ValueError`` naming a bad flag."""
        return cls()

    def describe(self) -> Iterable[Metric]:
        return describe_families(self.metric_names)

    def collect(self) -> Iterable[Metric]:
        raise NotImplementedError

    def start(self) -> None:
        """Called once when the exporter starts, after logging is set up; must not block.

        >>> Collector().start()  # most collectors have nothing to say before a scrape
        """

    def close(self) -> None:
        """Called once when the exporter stops, after the last scrape: release what the
        collector holds (NVML's init, its event set). It may block; the exporter waits a
        bounded time for it and logs what it raises.

        >>> Collector().close()  # most collectors hold nothing
        """


C = TypeVar("C", bound=type[Collector])
_REGISTERED: dict[str, type[Collector]] = {}


def register(cls: C) -> C:
    """Class decorator: make a collector available as ``--collector.<cls.name>``.

    >>> @register
    ... class Example(Collector):
    ...     name = "example_doc"
    >>> registered_collectors()["example_doc"] is Example
    True
    >>> _ = _REGISTERED.pop("example_doc")
    """
    name = cls.name
    if not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise ValueError(f"collector name {name!r} must be lower-case letters, digits and _")
    existing = _REGISTERED.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(f"collector {name!r} is already registered by {existing.__qualname__}")
    _REGISTERED[name] = cls
    return cls


def registered_collectors() -> dict[str, type[Collector]]:
    """Every known collector by name (imports the modules listed in ``collectors``)."""
    from inferwatch.standalone import collectors

    collectors.load_all()
    return dict(sorted(_REGISTERED.items()))


# --- metric families from the catalogue -------------------------------------------------------

def describe_families(names: Iterable[str]) -> list[Metric]:
    """Empty families (name, HELP, type) for catalogue names: what ``describe()`` returns."""
    return [empty_family(name) for name in names]


class MetricSet:
    """Samples gathered during one collect, grouped into families in first-seen order.

    Labels are a dict per sample, so one family may carry an extra label on some series
    (a MIG ``gpu_instance``) without a second family.

    >>> metrics = MetricSet()
    >>> metrics.add("inferwatch_gpu_up", {"gpu": "0", "uuid": "GPU-1"}, 1)
    >>> metrics.families()[0].samples[0].value
    1.0
    """

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def add(self, name: str, labels: Mapping[str, str], value: float) -> None:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = empty_family(name)
        family.add_sample(name, dict(labels), float(value))

    def families(self) -> list[Metric]:
        return list(self._families.values())


# --- running collectors under a deadline ----------------------------------------------------

class _Run:
    """One collect() of one collector in a daemon thread; the result lands here.

    The thread is started by :meth:`start`, which never raises.
    """

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.started = time.monotonic()
        self.finished = threading.Event()
        self.families: list[Metric] = []
        self.error: BaseException | None = None
        self.duration = 0.0
        self.scrapes = 1  # scrapes waiting on this run; written under the slot's lock
        self.thread = threading.Thread(
            target=self._run, name=f"inferwatch-collector-{collector.name}", daemon=True
        )

    def start(self) -> None:
        try:
            self.thread.start()
        except RuntimeError as exc:
            # "can't start new thread": a fork loop in the server's cgroup uses up
            # pids.max, or the user's RLIMIT_NPROC is reached. Raised here it would fail the
            # whole scrape just when the process metrics are wanted most.
            self.error = CollectorError(f"cannot start its thread: {exc}")
            self.finished.set()

    def _run(self) -> None:
        try:
            self.families = _renderable(list(self.collector.collect()))
        except BaseException as exc:  # a collector bug must not kill the thread silently
            self.error = exc
        finally:
            self.duration = time.monotonic() - self.started
            self.finished.set()


def _renderable(families: Sequence[Metric]) -> list[Metric]:
    """The families as the exposition can write them; CollectorError for what it cannot.

    Everything is rendered into one response, so a family that is not a Metric, or a name
    or label that is not a string, would fail every collector's series at once: that
    costs only this collector. Text that is not valid Unicode (lone surrogates, as
    ``surrogateescape`` leaves bytes that are not UTF-8, from /proc or a snapshot file)
    gets U+FFFD for them here, in the collector's own thread; left in, it would make the
    server collect everything a second time just to replace them.

    >>> family = describe_families(["inferwatch_process_threads"])[0]
    >>> family.add_sample(family.name, {"pid": "7", "process": "bad\\udcff"}, 1.0)
    >>> _renderable([family])[0].samples[0].labels["process"]
    'bad\\ufffd'
    """
    safe = []
    for family in families:
        if not isinstance(family, Metric):
            raise CollectorError(f"returned {type(family).__name__!r} where a metric family "
                                 "belongs")
        try:
            # One string per sample: a join is far cheaper than a check per label.
            texts = [family.name, family.documentation, family.unit]
            for sample in family.samples:
                texts.append("".join((sample.name, *sample.labels, *sample.labels.values())))
                if type(sample.value) is not float or sample.timestamp is not None:
                    _check_numbers(family.name, sample.value, sample.timestamp)
                if sample.exemplar is not None:
                    labels = sample.exemplar.labels
                    texts.append("".join((*labels, *labels.values())))
        except TypeError as exc:
            raise CollectorError(f"returned a name or label that is not text in "
                                 f"{family.name}: {exc}") from exc
        safe.append(family if all(map(_encodable, texts)) else _replaced(family))
    return safe


def _check_numbers(name: str, value: object, timestamp: object) -> None:
    """CollectorError for a sample value or timestamp the exposition cannot write: it would
    raise while rendering, failing every collector's series, not just this one's.

    >>> _check_numbers("x", 1, None)
    >>> _check_numbers("x", None, None)
    Traceback (most recent call last):
    ...
    inferwatch.standalone.scrape.CollectorError: returned a value that is not a number in x: None
    """
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CollectorError(f"returned a value that is not a number in {name}: "
                             f"{value!r}") from None
    except OverflowError:
        # An int past a double's range cannot be written either; named like the others,
        # not logged as a crash with a traceback.
        raise CollectorError(f"returned a value too large for a sample in {name}: "
                             f"a {type(value).__name__} past the largest float") from None
    if timestamp is None:
        return
    try:
        # Written as whole milliseconds: NaN or an infinity cannot be.
        int(float(timestamp) * 1000)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise CollectorError(f"returned a timestamp that is not a finite number in {name}: "
                             f"{timestamp!r}") from None


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _utf8(text: str) -> str:
    """Lone surrogates as U+FFFD: one per escaped byte, or per byte of any other surrogate.

    >>> _utf8("caf\\udce9"), _utf8("\\ud800x")
    ('caf\\ufffd', '\\ufffd\\ufffd\\ufffdx')
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate outside the escaped-byte range
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


def _replaced(family: Metric) -> Metric:
    clean = Metric(family.name, _utf8(family.documentation), family.type, family.unit)
    for sample in family.samples:
        exemplar = sample.exemplar
        if exemplar is not None:
            exemplar = exemplar._replace(
                labels={_utf8(k): _utf8(v) for k, v in exemplar.labels.items()})
        clean.samples.append(sample._replace(
            labels={_utf8(k): _utf8(v) for k, v in sample.labels.items()}, exemplar=exemplar))
    return clean


class _Exposition:
    """The families of one scrape, each name exposed once.

    Two families of one name (two collectors, or one collector twice) would write two
    ``# TYPE`` blocks, and Prometheus refuses the whole scrape for it. A later family of
    the same type is merged into the first, less the series the first already has; one of
    another type, or whose sample names another family writes (a gauge ``x_total`` next to
    a counter ``x``), is left out. :meth:`add` names what it could not keep whole.
    """

    def __init__(self, reserved: Iterable[Metric]) -> None:
        self.families: list[Metric] = []
        self._by_name: dict[str, int] = {}  # family or sample name -> index in families
        self.reserved = 0
        self.add(reserved)
        # The exporter's own families: rendered apart, never merged into.
        self.reserved = len(self.families)

    def add(self, families: Iterable[Metric]) -> list[str]:
        clashes: list[str] = []
        for family in families:
            names = {family.name, _written_name(family),
                     *(sample.name for sample in family.samples)}
            owners = {self._by_name[name] for name in names if name in self._by_name}
            if not owners:
                for name in names:
                    self._by_name[name] = len(self.families)
                self.families.append(family)
                continue
            index = owners.pop()
            first = self.families[index]
            if (owners or index < self.reserved or first.name != family.name
                    or first.type != family.type):
                clashes.append(family.name)
                continue
            merged, dropped = _merged(first, family)
            self.families[index] = merged
            for name in names:
                self._by_name.setdefault(name, index)
            if dropped:
                clashes.append(family.name)
        return clashes


def _written_name(family: Metric) -> str:
    """The name the text format writes a family's HELP and TYPE under, samples or not: a
    counter ``x`` is written as ``x_total``, an info ``x`` as ``x_info``. An empty counter
    and another collector's gauge ``x_total`` would otherwise both write ``# TYPE x_total``,
    and Prometheus refuses the whole scrape for it.

    >>> _written_name(Metric("x", "", "counter")), _written_name(Metric("y", "", "gauge"))
    ('x_total', 'y')
    """
    suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
    return family.name + suffix


def _merged(first: Metric, second: Metric) -> tuple[Metric, bool]:
    """A new family with the samples of both (the originals may be shared by other scrapes),
    and whether any of `second`'s were left out as series `first` already has."""
    merged = Metric(first.name, first.documentation, first.type, first.unit)
    merged.samples = list(first.samples)
    seen = {(sample.name, frozenset(sample.labels.items())) for sample in first.samples}
    dropped = False
    for sample in second.samples:
        key = (sample.name, frozenset(sample.labels.items()))
        if key in seen:
            dropped = True
            continue
        seen.add(key)
        merged.samples.append(sample)
    return merged, dropped


class _Slot:
    """At most one run per collector: concurrent scrapes share it, a hung one is not restarted."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.lock = threading.Lock()
        self.run: _Run | None = None
        self.healthy = True
        self.last_logged = float("-inf")
        self.suppressed = 0


class Scraper:
    """The prometheus_client collector that runs the enabled collectors on each scrape.

    Every collector runs in parallel in its own thread; the scrape waits for each at most
    until ``timeout`` seconds after it began. A collector still running from an earlier
    scrape past its deadline is reported at once with success 0 and is not started again
    until it returns, so a hung driver call costs one parked thread, never a pile-up.

    >>> scraper = Scraper([], timeout=2.0)
    >>> sorted(family.name for family in scraper.describe())[0]
    'inferwatch_exporter_build_info'
    """

    def __init__(self, collectors: Sequence[Collector], timeout: float = 5.0) -> None:
        if not 0 < timeout < float("inf"):
            # NaN would fail every collector at once; infinity would let a hung one hold
            # the scrape for ever.
            raise ValueError(f"scrape timeout must be a positive number of seconds, "
                             f"got {timeout}")
        names = [collector.name for collector in collectors]
        if len(set(names)) != len(names):
            raise ValueError(f"collector names must be unique, got {names}")
        self.timeout = timeout
        self._slots = [_Slot(collector) for collector in collectors]

    def describe(self) -> Iterator[Metric]:
        yield from describe_families(_HEALTH_METRICS)
        for slot in self._slots:
            yield from slot.collector.describe()

    def collect(self) -> Iterator[Metric]:
        deadline = time.monotonic() + self.timeout
        runs = [(slot, self._start(slot)) for slot in self._slots]
        health = MetricSet()
        health.add(
            "inferwatch_exporter_build_info",
            {"version": __version__, "python_version": platform.python_version()},
            1,
        )
        results = [(slot, *self._finish(slot, run, deadline)) for slot, run in runs]
        # The health families go first and keep their names whatever a collector returns.
        exposed = _Exposition(describe_families(_HEALTH_METRICS))
        for slot, ok, duration, collected in results:
            clashes = exposed.add(collected) if ok else []
            if clashes:
                ok = False
                self._failed(slot, "failed", CollectorError(
                    f"returned {', '.join(clashes)}, already exposed under that name by "
                    "another family; its series there are left out"))
            labels = {"collector": slot.collector.name}
            health.add("inferwatch_exporter_collector_success", labels, 1 if ok else 0)
            health.add("inferwatch_exporter_collector_duration_seconds", labels, duration)
        yield from health.families()
        yield from exposed.families[exposed.reserved:]

    def _start(self, slot: _Slot) -> tuple[_Run, bool]:
        """The run this scrape waits on, and whether it was already hung before the scrape."""
        with slot.lock:
            run = slot.run
            if run is not None and not run.finished.is_set():
                hung = time.monotonic() - run.started >= self.timeout
                run.scrapes += 1
                return run, hung
            slot.run = _Run(slot.collector)
            slot.run.start()
            return slot.run, False

    def scrapes_sharing(self, name: str) -> int:
        """How many scrapes are waiting on the unfinished run of collector `name` (0 if none).

        For diagnosis: a number that keeps growing means the collector is hung.

        >>> Scraper([], timeout=1.0).scrapes_sharing("gpu")
        0
        """
        for slot in self._slots:
            if slot.collector.name == name:
                with slot.lock:
                    run = slot.run
                    return run.scrapes if run is not None and not run.finished.is_set() else 0
        return 0

    def _finish(
        self, slot: _Slot, started: tuple[_Run, bool], deadline: float
    ) -> tuple[bool, float, list[Metric]]:
        run, already_hung = started
        if not already_hung:
            # A wait past threading.TIMEOUT_MAX raises OverflowError, which would fail the
            # whole scrape; no scrape lasts that long anyway.
            run.finished.wait(min(max(0.0, deadline - time.monotonic()),
                                  threading.TIMEOUT_MAX))
        duration = time.monotonic() - run.started
        if not run.finished.is_set():
            reason = (
                "is still running from an earlier scrape; not started again until it returns"
                if already_hung
                else f"did not finish within the scrape timeout of {self.timeout:g}s"
            )
            self._failed(slot, reason, None)
            return False, duration, []
        duration = run.duration
        if run.error is not None:
            self._failed(slot, "failed", run.error)
            return False, duration, []
        if not slot.healthy:
            slot.healthy = True
            log.info("collector %s recovered", slot.collector.name)
        return True, duration, run.families

    def _failed(self, slot: _Slot, reason: str, error: BaseException | None) -> None:
        """Log a collector failure at most once per interval per collector."""
        slot.healthy = False
        now = time.monotonic()
        if now - slot.last_logged < FAILURE_LOG_INTERVAL_SECONDS:
            slot.suppressed += 1
            return
        suppressed, slot.suppressed, slot.last_logged = slot.suppressed, 0, now
        extra = f" ({suppressed} similar failures not logged)" if suppressed else ""
        name = slot.collector.name
        if error is None:
            log.warning("collector %s %s%s", name, reason, extra)
        elif isinstance(error, CollectorError):
            log.warning("collector %s failed: %s%s", name, error, extra)
        else:
            log.error("collector %s raised %s%s", name, type(error).__name__, extra,
                      exc_info=error)


_HEALTH_METRICS = (
    "inferwatch_exporter_build_info",
    "inferwatch_exporter_collector_success",
    "inferwatch_exporter_collector_duration_seconds",
)
