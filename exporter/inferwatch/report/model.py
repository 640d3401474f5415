"""What a report or a status page shows, as plain data: distributions against the reference,
quality counts, live numbers and status flags. The HTML (:mod:`inferwatch.report.page`) is a
function of these objects only.

>>> import numpy as np
>>> from inferwatch.quality.reference import Reference
>>> ref = Reference.from_data({"amount": np.arange(1000.0)}, bins=4)
>>> report = from_data(ref, {"amount": np.arange(1000.0) + 600})
>>> report.rows, report.features[0].name, round(report.features[0].scores["ks"], 2)
(1000, 'amount', 0.6)
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.drift import DriftScorer
from inferwatch.quality.profile import Profile
from inferwatch.quality.reference import Reference, take_permissions

if TYPE_CHECKING:
    from inferwatch.report.flags import Thresholds


@dataclass(frozen=True)
class Distribution:
    """One feature or prediction output: reference shares and live counts per reference bin,
    and the drift scores between them (psi, js, ks; NaN without live rows)."""

    name: str
    kind: str
    bins: tuple[str, ...]
    reference: tuple[float, ...]
    live: tuple[float, ...]
    scores: Mapping[str, float]
    edges: tuple[float, ...] = ()  # numeric: the inner cut points between the bins

    @property
    def rows(self) -> float:
        return float(sum(self.live))

    @property
    def live_shares(self) -> tuple[float, ...]:
        total = self.rows
        return tuple(c / total if total else math.nan for c in self.live)

    @property
    def psi(self) -> float:
        return self.scores.get("psi", math.nan)


@dataclass(frozen=True)
class Flag:
    """One alert's condition evaluated on this page's numbers, with the config's threshold.

    ``state`` is "firing" (the condition holds now; the alert fires once it has held for
    the rule's ``for:``), "ok", or "no data" (too few rows, outcomes or history).
    """

    alert: str
    state: str
    value: float
    threshold: float
    detail: str


@dataclass
class Live:
    """Numbers only a running process has: calls, latency, predictions, outcomes."""

    window_seconds: float
    requests: dict[str, float]
    calls_per_second: float
    error_ratio: float
    latency_p50: float
    latency_p99: float
    sparklines: dict[str, list[float]]
    prediction_quantiles: dict[str, dict[str, float]]
    classes: dict[str, float]
    confidence: dict[str, float]
    invalid: dict[str, float]
    input_errors: dict[str, float]
    outcomes: dict[str, float]
    accuracy: float
    label_delay_p50: float
    info: dict[str, str]
    loaded_at: float
    trained_at: float
    drift_window_rows: int
    # Whether `window_seconds` runs from the process's start: the ring of recent totals
    # held no sample from the start of the rate window.
    window_since_start: bool = False


@dataclass
class ModelReport:
    """Everything one page shows about one model version (or one data file)."""

    title: str
    model: str
    version: str
    generated_at: float
    rows: int
    features: list[Distribution]
    outputs: list[Distribution]
    # feature -> {"missing": n, "out_of_range": n, "unseen_category": n}
    quality: dict[str, dict[str, float]]
    input_errors: dict[str, float] = field(default_factory=dict)
    live: Live | None = None
    flags: list[Flag] = field(default_factory=list)

    def html(self) -> str:
        """The whole page as one self-contained HTML document."""
        from inferwatch.report.page import report_page

        return report_page(self)

    def save_html(self, path: Any) -> None:
        """Write :meth:`html` to `path` (UTF-8), whole or not at all (see :func:`write_page`)."""
        write_page(path, self.html())

    def _repr_html_(self) -> str:
        from inferwatch.report.page import report_fragment

        return report_fragment(self)


def write_page(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` (UTF-8) through a file beside it, renamed over it once whole:
    a failed write (a full disk, a size limit) leaves the previous file as it was and
    nothing new beside it. A path that is not a regular file (``/dev/stdout``, a pipe) is
    written directly: there is nothing to rename over.

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "report.html")
    >>> write_page(path, "<p>é</p>"); open(path, encoding="utf-8").read()
    '<p>é</p>'
    """
    # Through a link, the file it points at is replaced, not the link by a file.
    target = os.path.realpath(os.fspath(path))
    if os.path.exists(target) and not os.path.isfile(target) and not os.path.isdir(target):
        with open(target, "w", encoding="utf-8", errors="replace") as out:
            out.write(text)
        return
    # A name of its own: a fixed "report.html.tmp" would overwrite (then remove) a file
    # the user keeps under that name, and two reports written at once would share it.
    directory, name = os.path.split(target)
    try:
        replaced: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        replaced = None
    # A report made private (its categories may name customers) must not turn
    # world-readable when written again: replacing a file, the new one is private while it
    # is written, then takes the old one's mode, as Reference.save does.
    handle, tmp = _new_file(directory, name, 0o666 if replaced is None else 0o600)
    try:
        with open(handle, "w", encoding="utf-8", errors="replace") as out:
            out.write(text)
            out.flush()
            if replaced is not None:
                take_permissions(out.fileno(), replaced)
        os.replace(tmp, target)
    except BaseException:
        # Only the file this call created is removed; the target keeps its old content.
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _new_file(directory: str, name: str, mode: int) -> tuple[int, str]:
    """A file descriptor and path of a new, empty file beside `name`, made with `mode`
    less the umask (for a new report the mode any new file gets: mkstemp's 0600 would hide
    a report meant to be served)."""
    while True:
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), tmp
        except FileExistsError:
            continue


def bin_labels(profile: Profile) -> tuple[str, ...]:
    """Readable names of a profile's bins.

    >>> bin_labels(Profile("x", "numeric", (0.2, 0.5, 0.3), edges=(1.0, 2.5)))
    ('< 1', '[1, 2.5)', '>= 2.5')
    """
    if not profile.is_numeric:
        return tuple(profile.categories)
    edges = edge_labels(profile.edges)
    if not edges:
        return ("all",)
    middle = [f"[{a}, {b})" for a, b in zip(edges, edges[1:])]
    return (f"< {edges[0]}", *middle, f">= {edges[-1]}")


def edge_labels(edges: Sequence[float], digits: int = 4) -> list[str]:
    """The cut points as short numbers, with as many significant digits as it takes for
    neighbours to read differently (two edges 1.00001 and 1.00002 are not both "1").

    >>> edge_labels([1.0, 2.5]), edge_labels([1.00001, 1.00002])
    (['1', '2.5'], ['1.00001', '1.00002'])
    """
    labels = [f"{e:.{digits}g}" for e in edges]
    while digits < 17 and any(a == b for a, b in zip(labels, labels[1:])):
        digits += 2
        labels = [f"{e:.{digits}g}" for e in edges]
    return labels


def distributions(profiles: Mapping[str, Profile], counts: list[np.ndarray],
                  scores: Mapping[tuple[str, str], float]) -> list[Distribution]:
    """One Distribution per profile, most drifted (by PSI) first; NaN PSI last."""
    out = []
    for (name, profile), live in zip(profiles.items(), counts):
        out.append(Distribution(
            name, profile.kind, bin_labels(profile), tuple(float(f) for f in profile.fractions),
            tuple(float(c) for c in np.asarray(live).tolist()),
            {method: float(scores.get((name, method), math.nan))
             for method in ("psi", "js", "ks")},
            tuple(float(e) for e in profile.edges) if profile.is_numeric else ()))
    return sorted(out, key=drift_order)


def drift_order(distribution: Distribution) -> tuple[bool, float, str]:
    """Sort key: scored before unscored, higher PSI first, then by name."""
    psi = distribution.psi
    return (math.isnan(psi), -psi if not math.isnan(psi) else 0.0, distribution.name)


def from_data(reference: Reference, data: Any, predictions: Any = None, *,
              range_tolerance: float = 0.0, title: str | None = None,
              thresholds: Thresholds | None = None) -> ModelReport:
    """Compare a batch of rows (a DataFrame, column dict, row dicts or 2-D array) with a
    reference: distributions on the reference bins, drift scores and quality counts.

    `predictions` (optional) are compared with the reference's prediction outputs; the
    drift conditions are judged by `thresholds` (the generator's defaults when None).

    >>> ref = Reference.from_data({"x": np.arange(100.0)}, predictions=np.arange(100.0))
    >>> report = from_data(ref, {"x": [1.0, None, 500.0]}, predictions=[3.0, 4.0, 5.0])
    >>> report.quality["x"]["missing"], report.quality["x"]["out_of_range"]
    (1.0, 1.0)
    >>> report.outputs[0].rows
    3.0
    """
    checker = BatchChecker(reference, range_tolerance=range_tolerance)
    result = checker.check(data)
    feature_scores = DriftScorer(reference.features).scores(result.flat_bin_counts)
    features = distributions(reference.features, result.bin_counts, feature_scores)
    outputs: list[Distribution] = []
    prediction_rows, prediction_quality = 0, {}
    if predictions is not None and reference.outputs:
        checked = checker.check_prediction_quality(predictions)
        counts = [np.asarray(checked.bin_counts.get(name, np.zeros(p.n_bins)))
                  for name, p in reference.outputs.items()]
        flat = np.concatenate(counts) if counts else np.zeros(0)
        output_scores = DriftScorer(reference.outputs).scores(flat)
        outputs = distributions(reference.outputs, counts, output_scores)
        # Missing predictions (NaN, None) are in no bin: without their own count the page
        # showed fewer rows than the file held.
        prediction_rows = checked.rows
        prediction_quality = {name: {"missing": float(checked.missing[name]),
                                     "out_of_range": float(checked.out_of_range[name]),
                                     "unseen_category": float(checked.unseen_category[name])}
                              for name in checked.missing}
    quality = {name: {"missing": float(result.missing[j]),
                      "out_of_range": float(result.out_of_range[j]),
                      "unseen_category": float(result.unseen_category[j])}
               for j, name in enumerate(reference.feature_names)}
    for name, counts in prediction_quality.items():
        quality.setdefault(name, counts)
    # A reference of prediction outputs only has no feature to count input rows by: its
    # rows are the predictions given (those without a value, NaN or None, included, and
    # counted missing), else the page said "0 rows compared", or fewer rows than the file
    # held, and the prediction drift alert "no data" however many rows there were.
    rows = max([int(result.rows), prediction_rows, *(int(item.rows) for item in outputs)])
    input_errors = {k: float(v) for k, v in result.input_errors.items()}
    if not reference.features:
        # No feature column was expected: the empty batch of features is no input error.
        input_errors.pop("empty_batch", None)
    report = ModelReport(title=title or "Drift report", model="", version="",
                         generated_at=time.time(), rows=rows, features=features,
                         outputs=outputs, quality=quality, input_errors=input_errors)
    from inferwatch.report.flags import Thresholds, evaluate

    report.flags = evaluate(report, thresholds or Thresholds.for_model(""))
    return report

