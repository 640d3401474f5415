"""Charts as inline SVG strings: sparklines, overlaid histograms and bars. No script, no fonts
from elsewhere, no style attributes (the page's Content-Security-Policy allows none): colours
are presentation attributes. Every text is escaped.

>>> chart = sparkline([1.0, 2.0, float("nan"), 3.0], title="calls <per> second")
>>> chart.startswith("<svg") and "calls &lt;per&gt; second" in chart
True
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from html import escape as _html_escape

# Characters XML forbids (and HTML reads as errors): C0 controls but tab, newline and
# carriage return, DEL, lone surrogates and the two noncharacters. Also the bidi
# embeddings, overrides and isolates: unclosed in a name, they reverse the text after it
# (a version, a threshold, a share) and the page would show numbers that are not there.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff"
                        "\u202a-\u202e\u2066-\u2069]")


def clean(value: object) -> str:
    """`value` as text with the characters XML forbids (and the bidi controls) replaced by
    U+FFFD.

    >>> clean("a" + chr(0) + "b") == "a" + chr(0xFFFD) + "b"
    True
    """
    return _FORBIDDEN.sub("\ufffd", str(value))


def escape(value: object) -> str:
    """`value` safe as HTML or SVG text and as a quoted attribute value.

    >>> escape('</svg><b a="1">')
    '&lt;/svg&gt;&lt;b a=&quot;1&quot;&gt;'
    """
    return _html_escape(clean(value), quote=True)


REFERENCE_FILL = "#9aa5b1"
LIVE_STROKE = "#c2410c"
LIVE_FILL = "#f97316"
LINE = "#2563eb"
AXIS = "#6b7280"


def _number(value: float) -> str:
    return f"{value:.1f}"


def sparkline(values: Sequence[float], *, title: str, width: int = 160,
              height: int = 32) -> str:
    """A line through `values` (oldest first); NaN leaves a gap. An empty series draws a
    flat baseline.

    >>> sparkline([], title="empty").count("<polyline")
    0
    """
    finite = [v for v in values if math.isfinite(v)]
    parts = [f'<svg class="iw-spark" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img">'
             f"<title>{escape(title)}</title>"]
    parts.append(f'<line x1="0" y1="{height - 1}" x2="{width}" y2="{height - 1}" '
                 f'stroke="{AXIS}" stroke-width="0.5"/>')
    if finite:
        # Halved: the span of values near the float limits would overflow to infinity and
        # put NaN in the coordinates.
        low, high = min([*finite, 0.0]) / 2, max(finite) / 2
        span = high - low or 1.0
        step = width / max(len(values) - 1, 1)
        run: list[str] = []
        runs: list[list[str]] = []
        for i, value in enumerate(values):
            if not math.isfinite(value):
                if run:
                    runs.append(run)
                run = []
                continue
            y = (height - 2) - (value / 2 - low) / span * (height - 4)
            run.append(f"{_number(i * step)},{_number(y)}")
        if run:
            runs.append(run)
        for points in runs:
            if len(points) == 1:
                x, y = points[0].split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="1.5" fill="{LINE}"/>')
            else:
                parts.append(f'<polyline points="{" ".join(points)}" fill="none" '
                             f'stroke="{LINE}" stroke-width="1.5"/>')
    parts.append("</svg>")
    return "".join(parts)


def overlaid_histogram(labels: Sequence[str], reference: Sequence[float],
                       live: Sequence[float], *, title: str, width: int = 420,
                       height: int = 150, edges: Sequence[float] = ()) -> str:
    """Reference shares as grey bars with the live window's shares drawn over them, one slot
    per reference bin; each bar carries its numbers in a tooltip (<title>). Numeric bins
    (`edges` given: the cut points between them) are labelled with the cut points at the
    bin boundaries, categories under their bars.

    >>> chart = overlaid_histogram(["a", "b"], [0.5, 0.5], [0.9, 0.1], title="x")
    >>> chart.count("<rect"), "live 90.0%" in chart
    (4, True)
    """
    n = max(len(labels), 1)
    top = 8
    bottom = 30
    plot_height = height - top - bottom
    finite = [v for v in (*reference, *live) if math.isfinite(v)]
    peak = max([*finite, 1e-09])
    slot = width / n
    parts = [f'<svg class="iw-hist" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img">'
             f"<title>{escape(title)}</title>"]
    for i, label in enumerate(labels):
        ref = reference[i] if i < len(reference) else 0.0
        now = live[i] if i < len(live) else float("nan")
        x = i * slot
        ref_height = (max(ref, 0.0) / peak) * plot_height if math.isfinite(ref) else 0.0
        parts.append(
            f'<rect x="{_number(x + 1)}" y="{_number(top + plot_height - ref_height)}" '
            f'width="{_number(max(slot - 2, 1))}" height="{_number(ref_height)}" '
            f'fill="{REFERENCE_FILL}"><title>{escape(label)}: reference '
            f"{_percent(ref)}</title></rect>")
        live_height = (max(now, 0.0) / peak) * plot_height if math.isfinite(now) else 0.0
        parts.append(
            f'<rect x="{_number(x + slot * 0.25)}" '
            f'y="{_number(top + plot_height - live_height)}" '
            f'width="{_number(max(slot * 0.5, 1))}" height="{_number(live_height)}" '
            f'fill="{LIVE_FILL}" fill-opacity="0.75" stroke="{LIVE_STROKE}">'
            f"<title>{escape(label)}: live {_percent(now)}</title></rect>")
        if not edges and (n <= 12 or i % math.ceil(n / 12) == 0):
            parts.append(
                f'<text x="{_number(x + slot / 2)}" y="{height - bottom + 14}" '
                f'font-size="9" text-anchor="middle" fill="{AXIS}">'
                f"{escape(_shorten(label, max(int(slot / 5), 4)))}</text>")
    every = max(1, math.ceil(len(edges) / 6))
    shown = range(0, len(edges), every)
    for i, tick in zip(shown, _tick_labels([edges[i] for i in shown])):
        x = (i + 1) * slot
        parts.append(f'<line x1="{_number(x)}" y1="{top + plot_height}" x2="{_number(x)}" '
                     f'y2="{top + plot_height + 4}" stroke="{AXIS}" stroke-width="0.5"/>')
        parts.append(f'<text x="{_number(x)}" y="{height - bottom + 14}" font-size="9" '
                     f'text-anchor="middle" fill="{AXIS}">{escape(tick)}</text>')
    parts.append(f'<line x1="0" y1="{top + plot_height}" x2="{width}" '
                 f'y2="{top + plot_height}" stroke="{AXIS}" stroke-width="0.5"/>')
    parts.append(f'<text x="2" y="{height - 4}" font-size="9" fill="{AXIS}">grey: reference, '
                 f"orange: live (share of rows per reference bin)</text>")
    parts.append("</svg>")
    return "".join(parts)


def bars(labels: Sequence[str], values: Sequence[float], *, title: str,
         width: int = 320) -> str:
    """Horizontal bars, one row per label (class mix, error types).

    >>> bars(["<b>"], [3.0], title="t").count("&lt;b&gt;")
    2
    """
    row = 16
    height = row * max(len(labels), 1) + 4
    peak = max([v for v in values if math.isfinite(v)] + [1e-9])
    label_width = 110
    parts = [f'<svg class="iw-bars" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img">'
             f"<title>{escape(title)}</title>"]
    for i, (label, value) in enumerate(zip(labels, values)):
        y = 2 + i * row
        # A negative value draws no bar: SVG has no negative width.
        length = (max(value, 0.0) / peak) * (width - label_width - 50) \
            if math.isfinite(value) else 0.0
        parts.append(f'<text x="0" y="{y + 11}" font-size="10" fill="{AXIS}">'
                     f"{escape(_shorten(label, 18))}</text>")
        parts.append(f'<rect x="{label_width}" y="{y + 2}" width="{_number(length)}" '
                     f'height="{row - 5}" fill="{LINE}"><title>{escape(label)}: '
                     f"{_amount(value)}</title></rect>")
        parts.append(f'<text x="{_number(label_width + length + 4)}" y="{y + 11}" '
                     f'font-size="10" fill="{AXIS}">{_amount(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _amount(value: float) -> str:
    """A bar's value: a count in whole numbers (``:g`` wrote a million as 1e+06).

    >>> _amount(1e6), _amount(0.25), _amount(float("nan"))
    ('1000000', '0.25', 'nan')
    """
    if math.isfinite(value) and float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:g}"


def _tick_labels(edges: Sequence[float]) -> list[str]:
    """Short labels of the cut points, with as many significant digits as it takes for
    neighbours to read differently: a feature between 1000 and 1005 (or a Unix time) would
    otherwise label every tick "1e+03".

    >>> _tick_labels([1000.5, 1001.5, 1002.5])
    ['1000.5', '1001.5', '1002.5']
    """
    digits = 3
    labels = [f"{e:.{digits}g}" for e in edges]
    while digits < 17 and any(a == b for a, b in zip(labels, labels[1:])):
        digits += 1
        labels = [f"{e:.{digits}g}" for e in edges]
    return labels


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%" if math.isfinite(value) else "no data"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 1)] + "\u2026"
