"""HTML of reports and status pages: self-contained, static, every string escaped.

One inline style sheet (allowed by its hash in the Content-Security-Policy, nothing else
is), charts as inline SVG, no script: the page reads the same with JavaScript off. Every
number a test compares with ``/metrics`` carries ``data-key`` and ``data-value`` attributes
with its exact value.

>>> from inferwatch.report.model import ModelReport
>>> page = report_page(ModelReport("t<1>", "", "", 0.0, 0, [], [], {}))
>>> "t&lt;1&gt;" in page and "<script" not in page
True
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import math
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import unquote, urlencode

from inferwatch.generate.config_checks import duration_seconds
from inferwatch.report import svg
from inferwatch.report.flags import FIRING, NO_DATA
from inferwatch.report.model import Distribution, Flag, Live, ModelReport, edge_labels
from inferwatch.report.svg import escape

# A chart draws this many bars at most, the last summing the rest: a column of 40,000
# categories would otherwise draw 80,000 bars a hundredth of a pixel wide (the tables and
# drift scores still cover every category).
MAX_CHART_BARS = 40
RUNBOOKS = "https://github.com/inferwatch/inferwatch/blob/main/docs/runbooks.md#{anchor}"

CSS = """
.iw{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;color:#111827;max-width:1180px;
margin:0 auto;padding:12px 20px;line-height:1.35}
.iw h1{font-size:1.5em;margin:.2em 0}.iw h2{font-size:1.15em;margin:1.2em 0 .4em;
border-bottom:1px solid #e5e7eb}.iw h3{font-size:1em;margin:1em 0 .2em}
.iw table{border-collapse:collapse;font-size:.9em;margin:.3em 0}
.iw th,.iw td{border-bottom:1px solid #e5e7eb;padding:3px 8px;text-align:left;
vertical-align:top}.iw td.n{text-align:right;font-variant-numeric:tabular-nums}
.iw .firing{color:#fff;background:#b91c1c;padding:1px 6px;border-radius:3px}
.iw .ok{color:#fff;background:#15803d;padding:1px 6px;border-radius:3px}
.iw .nodata{color:#374151;background:#e5e7eb;padding:1px 6px;border-radius:3px}
.iw .cards{display:flex;flex-wrap:wrap;gap:10px}
.iw .card{border:1px solid #e5e7eb;border-radius:6px;padding:6px 10px;min-width:170px}
.iw .big{font-size:1.4em;font-weight:600}.iw .muted{color:#6b7280;font-size:.85em}
.iw .feature{margin:0 0 10px 0}
.iw a{color:#1d4ed8}
.iw .cols{display:flex;flex-wrap:wrap;gap:0 28px;align-items:flex-start}
"""
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
# No script, font, frame, form or connection anywhere; the one style sheet by its hash;
# images only inline (the favicon is an empty data: URL, so the browser asks for none).
CONTENT_SECURITY_POLICY = (f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; "
                           "img-src data:; base-uri 'none'; form-action 'none'")
# The header form may also forbid framing, which a <meta> policy cannot.
CSP_HEADER = CONTENT_SECURITY_POLICY + "; frame-ancestors 'none'"


def document(title: str, body: str) -> str:
    """A whole HTML document around `body`, with the policy in a <meta> as well (a report
    opened from disk gets no header)."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>"
            f'<body><div class="iw">{body}</div></body></html>\n')


def report_page(report: ModelReport, *, index_link: str | None = None) -> str:
    """One model version or one data file, as a whole document."""
    return document(report.title, report_body(report, index_link=index_link))


def report_fragment(report: ModelReport) -> str:
    """The same content for embedding (Jupyter): the style sheet and a <div>."""
    return f'<style>{CSS}</style><div class="iw">{report_body(report)}</div>'


def report_body(report: ModelReport, *, index_link: str | None = None) -> str:
    parts = []
    if index_link is not None:
        parts.append(f'<p><a href="{escape(index_link)}">All models</a></p>')
    parts.append(f"<h1>{escape(report.title)}</h1>")
    rows = report.live.drift_window_rows if report.live is not None else report.rows
    what = "rows in the drift window" if report.live is not None else "rows compared"
    parts.append(f'<p class="muted">Generated {escape(_stamp(report.generated_at))}; '
                 f'<span data-key="drift_rows" data-value="{_value(rows, str)}">'
                 f"{escape(rows)}</span> "
                 f"{what}.</p>")
    if report.flags:
        parts.append(_flags(report.flags))
    if report.live is not None:
        parts.append(_calls(report.live))
    # Tables beside the distributions, so the most drifted features' charts are in view.
    parts.append('<div class="cols"><div>')
    parts.append(_drift_table("Feature drift", "feature_drift", report.features))
    if report.outputs:
        parts.append(_drift_table("Prediction drift", "prediction_drift", report.outputs))
    parts.append("</div><div>")
    if report.features or report.outputs:
        parts.append("<h2>Distributions against the reference</h2>")
        for item in report.features:
            parts.append(_distribution(item, "feature_drift"))
        for item in report.outputs:
            parts.append(_distribution(item, "prediction_drift"))
    parts.append("</div></div>")
    parts.append('<h2>Details</h2><div class="cards">')
    if report.live is not None:
        parts.append(_live_details(report.live))
    parts.append(f'<div class="card">{_quality(report)}</div></div>')
    return "".join(parts)


def index_page(reports: Sequence[ModelReport], link: Callable[[ModelReport], str], *,
               metrics_link: str | None = None, rate_window: str = "5m",
               window_slack_seconds: float = 0.0) -> str:
    """The list of model versions, each linked to its page (``link(report)``); their calls
    per second and error ratio are over `rate_window` (the config's ``windows.rate``). A
    row read over another span (longer than `rate_window` by more than
    `window_slack_seconds`, or shorter) says which, as its page does."""
    rate_seconds = duration_seconds(rate_window)
    rows = []
    for report in reports:
        firing = [f.alert for f in report.flags if f.state == FIRING]
        flags = ", ".join(escape(a) for a in firing) or "none"
        live = report.live
        span = _other_span(live, rate_seconds, window_slack_seconds)
        rows.append(
            f'<tr><td><a href="{escape(link(report))}">{escape(report.model)}</a></td>'
            f"<td>{escape(report.version)}</td>"
            f'<td class="n">{_num(live.calls_per_second if live else math.nan)}{span}</td>'
            f'<td class="n">{_pct(live.error_ratio if live else math.nan)}{span}</td>'
            f'<td class="{"firing" if firing else "ok"}">{flags}</td></tr>')
    body = ("<h1>inferwatch</h1><p class=\"muted\">Model versions served by this process "
            "(in multi-worker mode: all workers merged)."
            # The href stays encoded; its text is what a reader knows the path as.
            + (f' Metrics: <a href="{escape(metrics_link)}">{escape(unquote(metrics_link))}'
               "</a>." if metrics_link else "") + "</p>"
            f"<table><tr><th>model</th><th>version</th><th>calls/s ({escape(rate_window)})</th>"
            "<th>error ratio</th><th>conditions holding</th></tr>"
            + ("".join(rows) or '<tr><td colspan="5">No model recorded yet.</td></tr>')
            + "</table>")
    return document("inferwatch", body)


def _other_span(live: Live | None, rate_seconds: float, slack_seconds: float) -> str:
    """" (last 40 s)" after an index row's numbers when they were read over a span other
    than the rate window the column names: since the process started, before the ring of
    recent totals reached back that far, or across a gap in the ring. A window read from
    the ring's sample at most `slack_seconds` before the rate window's start is the window
    as the ring can read it: nothing.

    >>> from inferwatch.report.model import Live
    >>> ring = Live(40.2, {}, 1.0, 0.0, 0.0, 0.0, {}, {}, {}, {}, {}, {}, {}, 0.0, 0.0, {},
    ...             0.0, 0.0, 0)
    >>> _other_span(ring, 30.0, 20.0), _other_span(ring, 300.0, 20.0)
    ('', ' <span class="muted">(last 40 s)</span>')
    >>> import dataclasses
    >>> _other_span(dataclasses.replace(ring, window_since_start=True), 30.0, 20.0)
    ' <span class="muted">(last 40 s)</span>'
    """
    if live is None or not 0 < live.window_seconds < math.inf:
        return ""
    if not live.window_since_start \
            and rate_seconds <= live.window_seconds <= rate_seconds + slack_seconds:
        return ""
    return f' <span class="muted">(last {escape(_duration(live.window_seconds))})</span>'


def model_link(model: str, version: str) -> str:
    """A link relative to wherever the page is mounted.

    >>> model_link("a b", "1&2")
    '?model=a+b&version=1%262'
    """
    return "?" + urlencode({"model": model, "version": version})


# --- sections ------------------------------------------------------------------------------

def _flags(flags: Iterable[Flag]) -> str:
    rows = []
    for flag in flags:
        css = {FIRING: "firing", NO_DATA: "nodata"}.get(flag.state, "ok")
        anchor = flag.alert.lower()
        rows.append(
            f'<tr><td><a href="{escape(RUNBOOKS.format(anchor=anchor))}">'
            f"{escape(flag.alert)}</a></td><td><span class=\"{css}\">{escape(flag.state)}"
            f"</span></td><td>{escape(flag.detail)}</td></tr>")
    return ("<h2>Alert conditions</h2><p class=\"muted\">Each alert rule's condition on "
            "these numbers, with the thresholds the rules are generated from; an alert "
            "fires once its condition has held for the rule's <code>for</code>.</p>"
            "<table><tr><th>alert</th><th>now</th><th>detail</th></tr>"
            + "".join(rows) + "</table>")


def _calls(live: Live) -> str:
    window = _duration(live.window_seconds)
    cards = []
    for label, value, text, line in (
            ("calls per second", live.calls_per_second, _num(live.calls_per_second),
             "calls per second"),
            ("error ratio", live.error_ratio, _pct(live.error_ratio), "error ratio"),
            ("p50 latency", live.latency_p50, _seconds(live.latency_p50), "p50 latency (s)"),
            ("p99 latency", live.latency_p99, _seconds(live.latency_p99), "p99 latency (s)")):
        cards.append(
            f'<div class="card"><div class="muted">{escape(label)} '
            f"(last {escape(window)})</div>"
            f'<div class="big" data-key="{escape(label)}" data-value="{_value(value)}">'
            f"{escape(text)}</div>"
            + svg.sparkline(live.sparklines.get(line, []), title=f"{line}, last hour")
            + "</div>")
    return "".join(['<h2>Calls</h2><div class="cards">', *cards, "</div>"])


def _live_details(live: Live) -> str:
    parts = []
    parts.append(_table("Calls by outcome (total)", ["outcome", "calls"],
                        [(k, v) for k, v in sorted(live.requests.items())], "requests", _count))
    if live.prediction_quantiles:
        rows = []
        for output, quantiles in sorted(live.prediction_quantiles.items()):
            rows.extend((f"{output} q{q}", v, f"quantile|{output}|{q}")
                        for q, v in quantiles.items())
        parts.append(_keyed_table("Prediction quantiles (rolling window)",
                                  ["output and quantile", "value"], rows, _num))
    if live.classes:
        labels = sorted(live.classes)
        shown, (counts,) = folded(labels, [live.classes[c] for c in labels])
        parts.append("<h3>Class mix</h3>" + svg.bars(shown, counts, title="predicted classes"))
        parts.append(_table("", ["class", "predictions"],
                            [(c, live.classes[c]) for c in labels], "class", _count))
    if live.confidence:
        parts.append(_table("Confidence (top-class probability, rolling window)",
                            ["quantile", "value"], sorted(live.confidence.items()),
                            "confidence", _num))
    parts.append(_table("Invalid predictions (total)", ["reason", "rows"],
                        sorted(live.invalid.items()), "invalid", _count))
    if live.input_errors:
        parts.append(_table("Input errors (total)", ["reason", "count"],
                            sorted(live.input_errors.items()), "input_errors", _count))
    outcome_rows = [(k, v) for k, v in sorted(live.outcomes.items())]
    parts.append(_table("Outcomes (ground truth, total)", ["result", "outcomes"], outcome_rows,
                        "outcomes", _count))
    parts.append(f'<p>Accuracy: <b data-key="accuracy" data-value="{_value(live.accuracy)}">'
                 f"{_pct(live.accuracy)}</b>; median label delay: "
                 f"<b>{_seconds(live.label_delay_p50)}</b>.</p>")
    return "".join(f'<div class="card">{part}</div>' for part in parts)


def _drift_table(title: str, key: str, items: Sequence[Distribution]) -> str:
    if not items:
        return f"<h2>{escape(title)}</h2><p>No reference profile: no drift to show.</p>"
    rows = []
    for item in items:
        anchor = _anchor(key, item.name)
        cells = "".join(
            f'<td class="n" data-key="{escape(f"{key}|{item.name}|{m}")}" '
            f'data-value="{_value(item.scores.get(m, math.nan))}">'
            f"{_num(item.scores.get(m, math.nan))}"
            "</td>" for m in ("psi", "js", "ks"))
        rows.append(f'<tr class="{key}"><td><a href="#{anchor}">{escape(item.name)}</a></td>'
                    f"{cells}<td class=\"n\">{_count(item.rows)}</td></tr>")
    return (f"<h2>{escape(title)}</h2><p class=\"muted\">Sorted by PSI, most drifted first.</p>"
            "<table><tr><th>name</th><th>PSI</th><th>JS</th><th>KS</th><th>rows</th></tr>"
            + "".join(rows) + "</table>")


def _quality(report: ModelReport) -> str:
    rows = []
    for feature in sorted(report.quality):
        counts = report.quality[feature]
        cells = "".join(
            f'<td class="n" data-key="{escape(f"{kind}|{feature}")}" '
            f'data-value="{_value(counts.get(kind, 0.0))}">{_count(counts.get(kind, 0.0))}</td>'
            for kind in ("missing", "out_of_range", "unseen_category"))
        rows.append(f"<tr><td>{escape(feature)}</td>{cells}</tr>")
    errors = "".join(f"<li>{escape(reason)}: {_count(count)}</li>"
                     for reason, count in sorted(report.input_errors.items()))
    return ("<h3>Data quality (total)</h3>"
            "<table><tr><th>feature</th><th>missing</th><th>out of range</th>"
            "<th>unseen category</th></tr>"
            + ("".join(rows) or '<tr><td colspan="4">No problem counted.</td></tr>')
            + "</table>" + (f"<p>Input errors:</p><ul>{errors}</ul>" if errors else ""))


def folded(labels: Sequence[str], *columns: Sequence[float],
           limit: int = MAX_CHART_BARS) -> tuple[list[str], list[list[float]]]:
    """At most `limit` bars: the labels with the largest value in any column, in their
    order, then one bar summing the rest (a column with no finite value there stays NaN).

    >>> folded(["a", "b", "c", "d"], [0.1, 0.5, 0.2, 0.2], limit=3)
    (['b', 'c', '2 others'], [[0.5, 0.2, 0.30000000000000004]])
    """
    if len(labels) <= limit:
        return list(labels), [list(column) for column in columns]

    def largest(i: int) -> float:
        finite = [column[i] for column in columns if math.isfinite(column[i])]
        return max(finite, default=-math.inf)

    kept = sorted(sorted(range(len(labels)), key=largest, reverse=True)[:limit - 1])
    rest = sorted(set(range(len(labels))) - set(kept))
    out = []
    for column in columns:
        finite = [column[i] for i in rest if math.isfinite(column[i])]
        out.append([column[i] for i in kept] + [sum(finite) if finite else math.nan])
    return [labels[i] for i in kept] + [f"{len(rest)} others"], out


def coarsened(labels: Sequence[str], edges: Sequence[float], *columns: Sequence[float],
              limit: int = MAX_CHART_BARS
              ) -> tuple[list[str], list[float], list[list[float]]]:
    """At most `limit` ordered bins: neighbours merged into runs of equal length, their
    shares summed (a run with no finite share stays NaN) and the cut points between runs
    kept. A profile of 10,000 quantile bins would otherwise draw 20,000 bars.

    >>> coarsened(["<1", "[1,2)", "[2,3)", ">=3"], [1.0, 2.0, 3.0], [0.1, 0.2, 0.3, 0.4],
    ...           limit=2)
    (['< 2', '>= 2'], [2.0], [[0.30000000000000004, 0.7]])
    """
    if len(labels) <= limit:
        return list(labels), list(edges), [list(column) for column in columns]
    size = math.ceil(len(labels) / limit)
    starts = range(0, len(labels), size)
    kept = [edges[start - 1] for start in starts if start > 0]
    out = []
    for column in columns:
        merged = []
        for start in starts:
            finite = [v for v in column[start:start + size] if math.isfinite(v)]
            merged.append(sum(finite) if finite else math.nan)
        out.append(merged)
    shown = edge_labels(kept)
    names = ([f"< {shown[0]}"] + [f"[{a}, {b})" for a, b in zip(shown, shown[1:])]
             + [f">= {shown[-1]}"]) if shown else ["all"]
    return names, kept, out


def _distribution(item: Distribution, key: str) -> str:
    scores = ", ".join(f"{m.upper()} {_num(item.scores.get(m, math.nan))}"
                       for m in ("psi", "js", "ks"))
    if item.edges:
        labels, edges, (reference, live) = coarsened(item.bins, item.edges, item.reference,
                                                     item.live_shares)
        chart = svg.overlaid_histogram(labels, reference, live,
                                       title=f"{item.name}: reference and live", edges=edges)
    else:
        labels, (reference, live) = folded(item.bins, item.reference, item.live_shares)
        chart = svg.overlaid_histogram(labels, reference, live,
                                       title=f"{item.name}: reference and live")
    return (f'<div class="feature {key}" id="{_anchor(key, item.name)}">'
            f"<h3>{escape(item.name)}</h3><div class=\"muted\">{escape(scores)}; "
            f"{_count(item.rows)} rows</div>{chart}</div>")


def _table(title: str, header: Sequence[str], rows: Iterable[tuple[str, float]],
           key: str, text: Callable[[float], str]) -> str:
    return _keyed_table(title, header, [(name, value, f"{key}|{name}") for name, value in rows],
                        text)


def _keyed_table(title: str, header: Sequence[str], rows: Iterable[tuple[str, float, str]],
                 text: Callable[[float], str]) -> str:
    """A table of named values, each shown by `text`: :func:`_count` for counts (exact),
    :func:`_num` for quantiles."""
    body = "".join(f'<tr><td>{escape(name)}</td><td class="n" data-key="{escape(key)}" '
                   f'data-value="{_value(value)}">{text(value)}</td></tr>'
                   for name, value, key in rows)
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    heading = f"<h3>{escape(title)}</h3>" if title else ""
    return f"{heading}<table><tr>{head}</tr>{body or '<tr><td>none</td></tr>'}</table>"


def _value(value: object, text: Callable[[object], str] = repr) -> str:
    """`value` exactly (its repr), safe inside a quoted attribute whatever its type: a
    count read from a snapshot may be a string holding quotes and markup."""
    return html.escape(text(value), quote=True)


def _anchor(prefix: str, name: str) -> str:
    # An id from the name's bytes: unique, and safe whatever the name holds.
    raw = name.encode("utf-8", "surrogatepass")
    return f"{prefix}-{hashlib.sha256(raw).hexdigest()[:16]}"


def _num(value: float) -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def _count(value: object) -> str:
    """A count as a whole number: ``:g`` wrote a million rows as 1e+06.

    >>> _count(1e6), _count(12.0), _count(float("nan")), _count("<b>")
    ('1000000', '12', 'n/a', 'n/a')
    """
    # A count read from a snapshot may be anything; formatting it must not cost the page.
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        return "n/a"
    return f"{value:.0f}"


def _pct(value: float) -> str:
    return f"{value * 100:.3g}%" if math.isfinite(value) else "n/a"


def _duration(seconds: float) -> str:
    """
    >>> _duration(12.3), _duration(300.0), _duration(float("nan"))
    ('12 s', '5 min', 'n/a')
    """
    if not math.isfinite(seconds):
        return "n/a"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.3g} min"


_YEAR_10000 = 253_402_300_800.0  # Unix seconds at 10000-01-01


def _stamp(at: float) -> str:
    """
    >>> _stamp(0.0), _stamp(float("nan")), _stamp(1.7e15), _stamp(-5e10)
    ('1970-01-01 00:00:00 UTC', 'at an unknown time', 'at an unknown time', 'at an unknown time')
    """
    # A time in milliseconds, NaN or infinity must not cost the whole page; one before 1970
    # or past 9999 (as status.read_snapshot refuses them) is no report's time either.
    if not 0 <= at < _YEAR_10000:
        return "at an unknown time"
    try:
        stamp = datetime.datetime.fromtimestamp(at, datetime.timezone.utc)
    except (ValueError, OverflowError, OSError):
        return "at an unknown time"
    return stamp.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def _seconds(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"


def layout_fingerprint() -> str:
    """A hash of the pages this module draws for fixed sample data: it changes when the
    layout, the style sheet or the charts change, not with live numbers (the README's
    pictures carry it, and a test tells when they are older than the layout).

    >>> layout_fingerprint() == layout_fingerprint()
    True
    """
    from inferwatch.report.model import Distribution, Flag, Live

    features = [Distribution("a", "numeric", ("< 1", ">= 1"), (0.5, 0.5), (10.0, 30.0),
                             {"psi": 0.2, "js": 0.1, "ks": 0.25}),
                Distribution("b", "categorical", ("x", "__other__"), (0.9, 0.1), (5.0, 5.0),
                             {"psi": 0.9, "js": 0.3, "ks": 0.4})]
    live = Live(300.0, {"ok": 9.0, "error": 1.0}, 2.0, 0.1, 0.01, 0.2,
                {"calls per second": [1.0, 2.0]}, {"value": {"0.5": 0.3}}, {"1": 4.0},
                {"0.5": 0.8}, {"nan": 0.0}, {}, {"correct": 3.0}, 0.75, 12.0, {}, 0.0, 0.0, 40)
    report = ModelReport("m 1", "m", "1", 0.0, 40, features, features[:1],
                         {"a": {"missing": 1.0}}, {}, live,
                         [Flag("InferwatchLatencyHigh", "ok", 0.2, 0.5, "detail")])
    text = report_page(report, index_link="?") + index_page([report], lambda r: "?x")
    return hashlib.sha256(text.encode()).hexdigest()[:16]
