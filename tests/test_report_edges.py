"""Reports and status pages on the data users have: many categories, close bin edges,
many classes."""

from __future__ import annotations

import math
import re
import time

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.quality.profile import Profile
from inferwatch.quality.reference import Reference
from inferwatch.report import model as report_model
from inferwatch.report.live import from_state
from inferwatch.report.page import MAX_CHART_BARS, folded, model_link
from inferwatch.report.status import StatusPages


def _chart_bars(page: str, feature: str) -> int:
    """Rectangles in the chart of one feature's section (two per bar: reference and live)."""
    section = page.split(f"<h3>{feature}</h3>", 1)[1].split("</svg>", 1)[0]
    return section.count("<rect")


def test_a_column_of_many_categories_draws_a_bounded_chart_and_keeps_its_scores() -> None:
    cities = [f"city-{i}" for i in range(20_000)]
    reference = Reference.from_data({"city": cities * 2, "amount": np.arange(40_000.0)},
                                    max_categories=50_000)
    live = {"city": ["city-1"] * 500 + cities[:500], "amount": np.arange(1000.0)}
    report = report_model.from_data(reference, live)
    page = report.html()
    assert _chart_bars(page, "city") == 2 * MAX_CHART_BARS
    # The live rows of the drawn bars and of the folded one add up to every live row.
    shares = [float(m) for m in re.findall(r"city-\d+: live ([\d.]+)%", page)]
    others = re.search(r"(\d+) others: live ([\d.]+)%", page)
    assert others is not None and int(others.group(1)) == len(
        reference.features["city"].categories) - (MAX_CHART_BARS - 1)
    assert math.isclose(sum(shares) + float(others.group(2)), 100.0, abs_tol=0.05 * MAX_CHART_BARS)
    assert "city-1: live 50.1%" in page  # the largest live share is among the drawn bars
    assert len(page) < 500_000
    distribution = next(f for f in report.features if f.name == "city")
    assert len(distribution.bins) == len(reference.features["city"].categories)
    assert math.isfinite(distribution.psi)


def test_close_bin_edges_read_differently() -> None:
    profile = Profile("x", "numeric", (0.25, 0.25, 0.25, 0.25), edges=(1.0, 1.00001, 1.00002))
    labels = report_model.bin_labels(profile)
    assert len(set(labels)) == len(labels), labels
    assert labels[1] == "[1, 1.00001)"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=2,
                max_size=12, unique=True))
def test_edge_labels_of_distinct_edges_are_distinct(edges: list[float]) -> None:
    edges = sorted(edges)
    if any(a == b for a, b in zip(edges, edges[1:])):  # -0.0 and 0.0
        return
    labels = report_model.edge_labels(edges)
    assert all(a != b for a, b in zip(labels, labels[1:])), (edges, labels)
    assert [float(label) for label in labels] == sorted(float(label) for label in labels)


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=200),
       st.integers(min_value=2, max_value=50))
def test_folding_keeps_every_value_and_at_most_limit_bars(values: list[float],
                                                           limit: int) -> None:
    labels = [f"c{i}" for i in range(len(values))]
    shown, (column,) = folded(labels, values, limit=limit)
    assert len(shown) == len(column) <= limit
    assert math.isclose(sum(column), sum(values), rel_tol=1e-9, abs_tol=1e-9)
    if len(values) > limit:
        kept = shown[:-1]
        smallest_kept = min(values[int(label[1:])] for label in kept)
        dropped = set(labels) - set(kept)
        assert all(values[int(label[1:])] <= smallest_kept for label in dropped)


def test_status_page_class_mix_of_many_classes_draws_a_bounded_chart() -> None:
    registry = Registry()
    labels = np.arange(300)

    def predict(x: np.ndarray) -> np.ndarray:
        return labels[: len(x)]

    model = inferwatch.instrument(predict, name="ranker", version="1", registry=registry)
    model(np.zeros((300, 1)))
    registry.drain()
    monitor = registry.monitor("ranker", "1")
    live = from_state(monitor.state, None, time.time()).live
    assert live is not None and len(live.classes) > MAX_CHART_BARS
    status, body, _ = StatusPages(registry).respond(model_link("ranker", "1")[1:])
    assert status == 200
    page = body.decode()
    chart = page.split("<h3>Class mix</h3>", 1)[1].split("</svg>", 1)[0]
    assert chart.count("<rect") == MAX_CHART_BARS
    # The table under the chart still lists every class with its count.
    assert all(f'data-key="class|{name}"' in page for name in live.classes)
    registry.close()
