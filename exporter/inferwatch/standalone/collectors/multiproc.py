"""The model metrics of a multi-worker server, merged from its snapshot directory.

The workers (``INFERWATCH_MULTIPROC_DIR`` set) publish snapshots; this collector reads the
same directory and serves the merged view, exactly what any worker's ``/metrics`` serves,
so Prometheus can scrape the exporter instead of a worker. It only reads: it never
writes, folds or deletes, so it may run as another user with read access only.

On when a directory is given (``--multiproc.dir=DIR`` or the environment variable), off
otherwise; ``--no-collector.multiproc`` switches it off even then.

>>> import tempfile
>>> collector = MultiprocCollector(tempfile.mkdtemp())
>>> sorted(f.name for f in collector.collect())[0]
'inferwatch_dependency_info'
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Iterable

from prometheus_client.metrics_core import Metric

from inferwatch import faults
from inferwatch.core.render import describe_families
from inferwatch.multiproc.store import SnapshotDirectory, skipped_counts
from inferwatch.multiproc.worker import ENV_VAR, MultiprocError, check_directory
from inferwatch.standalone.scrape import Collector, CollectorError, register
from inferwatch.standalone.scrape import describe_families as catalogue_families

log = logging.getLogger("inferwatch.standalone.multiproc")

# What MergedView.families() exposes besides the in-process families.
VIEW_ONLY_METRICS = ("inferwatch_event_values_dropped_total",
                     "inferwatch_multiproc_files_skipped_total")

_NO_DIRECTORY = (f"no snapshot directory: pass --multiproc.dir=DIR or set {ENV_VAR} to the "
                 "directory the workers write to")


@register
class MultiprocCollector(Collector):
    """Every worker's model metrics, summed as the workers' own ``/metrics`` sums them."""

    name = "multiproc"
    default_enabled = False
    help = ("the merged model metrics of a multi-worker server, read from its snapshot "
            f"directory (--multiproc.dir or {ENV_VAR})")

    def __init__(self, directory: str | None) -> None:
        self.directory = None if directory is None else SnapshotDirectory(directory)

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--multiproc.dir", dest="multiproc_dir", metavar="DIR",
                           default=None,
                           help=f"the workers' snapshot directory (default: ${ENV_VAR})")

    @classmethod
    def enabled_by_arguments(cls, args: argparse.Namespace) -> bool:
        """A user who names the snapshot directory means the collector to read it."""
        # Given but empty counts as given: from_args refuses it, as the workers do.
        return getattr(args, "multiproc_dir", None) is not None or ENV_VAR in os.environ

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> MultiprocCollector:
        directory = getattr(args, "multiproc_dir", None)
        source = "--multiproc.dir"
        if directory is None:
            directory, source = os.environ.get(ENV_VAR), ENV_VAR
        if directory is not None and not directory.strip():
            raise ValueError(f"argument {source}: is empty; give the workers' snapshot "
                             "directory, or leave it unset")
        if directory is None:
            # Enabled with no directory at all: every scrape reports collector_success 0
            # with this reason; a directory given but unusable is refused at startup below.
            log.error("collector multiproc: %s", _NO_DIRECTORY)
            return cls(None)
        try:
            return cls(check_directory(directory, source=source, writable=False))
        except MultiprocError as exc:
            raise ValueError(f"argument {source}: {exc}") from exc

    def describe(self) -> Iterable[Metric]:
        # The merged view adds these to the in-process families; a name missing here is
        # one that `?name[]=` can never select, since the registry finds a collector by it.
        return [*describe_families(), *catalogue_families(VIEW_ONLY_METRICS)]

    def collect(self) -> Iterable[Metric]:
        if self.directory is None:
            raise CollectorError(_NO_DIRECTORY)
        now = time.time()
        try:
            view = self.directory.read_view(now)
        except OSError as exc:
            # The directory went away or became unreadable (a redeploy recreated the
            # volume, say): an operational state for one warning line, not a bug's traceback.
            raise CollectorError(
                f"cannot read the snapshot directory {self.directory.path}: "
                f"{exc.strerror or exc}") from exc
        if self.directory.nothing_readable():
            # Model series all gone with success 1 read as a server that serves nothing.
            raise CollectorError(
                f"cannot open any snapshot in {self.directory.path}: permission denied to "
                f"uid {os.geteuid()}; start the workers with umask 022 (or 027, with this "
                "user in their group)")
        # Damaged or hostile files this exporter skipped are its own, added to the workers'.
        return view.families(now, extra_internal_errors=faults.internal_error_counts(),
                             extra_files_skipped=skipped_counts())
