"""The offline drift report at its edges: output files, inputs it cannot read, charts of
many bins, and pages that stay well-formed whatever the data."""

from __future__ import annotations

import json
import math
import os
import re
import stat
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon

from inferwatch.cli import main
from inferwatch.quality.reference import Reference
from inferwatch.report import page as report_page
from inferwatch.report.model import from_data, write_page
from inferwatch.report.svg import clean

_VOID = {"meta", "link", "br", "img", "input", "hr"}
_TAGS = {"html", "head", "meta", "link", "title", "style", "body", "div", "h1", "h2", "h3",
         "p", "span", "table", "tr", "th", "td", "a", "code", "ul", "li", "b", "svg", "rect",
         "line", "text", "polyline", "circle"}


class _Nesting(HTMLParser):
    """Start and end tags, checked to nest; the text of the page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(key for key, _ in attrs)
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def well_formed(page: str) -> str:
    """The page's text, after checking its tags nest and every chart is XML with finite
    coordinates."""
    parser = _Nesting()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    # Only the tags and attributes the page itself writes: no user text became markup.
    assert parser.tags <= _TAGS, parser.tags - _TAGS
    assert not any(a.startswith("on") for a in parser.attributes)
    for chart in re.findall(r"<svg.*?</svg>", page, re.S):
        for element in ET.fromstring(chart).iter():
            for key, value in element.attrib.items():
                if key in ("x", "y", "x1", "x2", "y1", "y2", "width", "height"):
                    assert math.isfinite(float(value)), (key, value)
    return "".join(parser.text)


def reference_of(tmp_path, columns: dict, **options) -> str:
    path = tmp_path / "reference.json"
    Reference.from_data(columns, **options).save(path)
    return str(path)


def write_rows(path, header: list[str], rows: list[list[object]]) -> str:
    path.write_text("\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n",
                    encoding="utf-8")
    return str(path)


# --- the output file ---------------------------------------------------------------------

def test_a_file_named_like_the_old_temporary_file_is_left_alone(tmp_path, capsys):
    # A user's own "report.html.tmp" (yesterday's draft) must not be overwritten and
    # removed by writing report.html.
    ref = reference_of(tmp_path, {"x": np.arange(100.0)})
    data = write_rows(tmp_path / "live.csv", ["x"], [[1.0], [2.0]])
    (tmp_path / "report.html.tmp").write_text("my draft\n", encoding="utf-8")

    assert main(["report", "--reference", ref, data, "-o", str(tmp_path / "report.html")]) == 0

    assert (tmp_path / "report.html.tmp").read_text(encoding="utf-8") == "my draft\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "live.csv", "reference.json", "report.html", "report.html.tmp"]
    assert (tmp_path / "report.html").read_text(encoding="utf-8").endswith("</html>\n")


def test_a_report_written_through_a_link_updates_the_file_it_points_at(tmp_path):
    # `report.html -> /srv/reports/latest.html`: the served file gets the new report; the
    # link stays a link.
    served = tmp_path / "served.html"
    served.write_text("old\n", encoding="utf-8")
    link = tmp_path / "report.html"
    link.symlink_to(served)

    write_page(link, "<p>new</p>")

    assert link.is_symlink()
    assert served.read_text(encoding="utf-8") == "<p>new</p>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "served.html"]


def test_a_new_report_gets_the_mode_of_any_new_file(tmp_path):
    mask = os.umask(0o022)
    try:
        write_page(tmp_path / "report.html", "<p>x</p>")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == 0o644


# --- inputs it cannot read ---------------------------------------------------------------

def test_json_lines_are_refused_not_read_as_csv(tmp_path, capsys):
    # Read as CSV, every JSON line is a row of columns named like no feature: a report of
    # nothing, exit 0. The user is told what to give instead.
    ref = reference_of(tmp_path, {"x": np.arange(100.0), "c": np.array(["a", "b"] * 50)})
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"x": float(i), "c": "a"}) + "\n" for i in range(5)),
                    encoding="utf-8")
    out = tmp_path / "report.html"

    assert main(["report", "--reference", ref, str(data), "-o", str(out)]) == 2

    err = capsys.readouterr().err
    assert err.startswith("inferwatch report: error: DATA ") and "JSON" in err
    assert "CSV or Parquet" in err and err.count("\n") == 1
    assert not out.exists()


def test_an_unreadable_file_is_named_once(tmp_path, capsys):
    ref = reference_of(tmp_path, {"x": np.arange(100.0)})
    data = tmp_path / "rows.csv"
    data.write_text("x\n", encoding="utf-8")  # a header and no row

    assert main(["report", "--reference", ref, str(data), "-o",
                 str(tmp_path / "report.html")]) == 2

    err = capsys.readouterr().err
    assert err == f"inferwatch report: error: cannot read {data}: no data rows\n"


# --- charts of many bins -----------------------------------------------------------------

def test_a_numeric_feature_of_many_bins_draws_a_bounded_chart_and_keeps_its_scores(tmp_path):
    rng = np.random.default_rng(3)
    train = rng.normal(size=50_000)
    ref = Reference.from_data({"x": train}, bins=5_000)
    live = rng.normal(0.3, 1.0, size=20_000)

    report = from_data(ref, {"x": live})
    page = report.html()

    well_formed(page)
    chart = re.search(r'<svg class="iw-hist".*?</svg>', page, re.S).group(0)
    assert chart.count("<rect") <= 2 * report_page.MAX_CHART_BARS
    assert len(page) < 100_000
    # The scores are those of all 5,000 bins, recomputed here.
    feature = report.features[0]
    assert len(feature.live) == 5_000
    p = np.asarray(ref.features["x"].fractions)
    q = np.asarray(feature.live) / sum(feature.live)
    assert math.isclose(feature.scores["js"], jensenshannon(p, q, base=2), rel_tol=1e-9)
    psi = np.sum((np.maximum(q, 1e-4) - np.maximum(p, 1e-4))
                 * np.log(np.maximum(q, 1e-4) / np.maximum(p, 1e-4)))
    assert math.isclose(feature.scores["psi"], psi, rel_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=300), st.integers(2, 50))
def test_coarsened_bins_keep_every_share_in_order(shares: list[float], limit: int) -> None:
    n = len(shares)
    edges = [float(i) for i in range(1, n)]
    labels = [f"bin{i}" for i in range(n)]
    names, kept, (merged,) = report_page.coarsened(labels, edges, shares, limit=limit)
    assert len(names) == len(merged) <= limit
    assert len(kept) == len(merged) - 1 or (n <= limit and kept == edges)
    assert kept == sorted(kept) and set(kept) <= set(edges)
    assert math.isclose(sum(merged), sum(shares), rel_tol=1e-9, abs_tol=1e-12)


# --- pages well-formed whatever the data ---------------------------------------------------

_hostile = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40) \
    | st.sampled_from(['</script><script>alert(1)</script>', '"><svg onload=x>',
                       "a\u202eb", "<!--", "]]>", "x" * 500])


@settings(max_examples=25, deadline=None)
@given(name=_hostile, category=_hostile,
       values=st.lists(st.sampled_from([1e308, -1e308, 5e-324, -0.0, 0.0, 1.0, math.nan]),
                       min_size=1, max_size=30))
def test_a_report_of_hostile_names_and_extreme_numbers_is_well_formed(name, category, values):
    numbers = np.resize(np.array(values), 120)
    columns = {name + "_n": numbers, name + "_c": np.array([category, "b"] * 60, dtype=object)}
    ref = Reference.from_data(columns)
    page = from_data(ref, {k: v[::-1] for k, v in columns.items()}).html()
    text = well_formed(page)
    assert "\u202e" not in page
    # Every name is on the page as text (escaped, not dropped).
    assert clean(name)[:10] in text
