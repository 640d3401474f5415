"""The prediction histogram's buckets with a reference profile: the ones instrument() is given
win; without any, bounds that fit the output's scale and stay the same between references."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from inferwatch.core.options import VALUE_BUCKETS
from inferwatch.multiproc.store import SnapshotDirectory

HISTOGRAM = "inferwatch_prediction_value"
WANTED = (0.0, 25.0, 50.0, 75.0, 100.0)


def _bounds(scraper, model: str, output: str = "value") -> tuple[float, ...]:
    """The finite `le` bounds of a model's prediction histogram, as a scrape shows them."""
    bounds = [float(s.labels["le"]) for s in scraper.samples()
              if s.name == f"{HISTOGRAM}_bucket" and s.labels["model"] == model
              and s.labels["output"] == output]
    assert bounds and bounds[-1] == math.inf, f"no histogram of {model} {output}"
    return tuple(bounds[:-1])


def _regressor_reference(seed: int, scale: float = 10.0, offset: float = 50.0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(1000, 2))
    return features, inferwatch.Reference.from_data(
        features, predictions=features[:, 0] * scale + offset)


# --- value_buckets given: used as given ---------------------------------------------------------

def test_value_buckets_given_win_over_the_reference(scraper):
    features, reference = _regressor_reference(0)
    for name, options in (("no_ref", {}), ("with_ref", {"reference": reference})):
        model = inferwatch.instrument(lambda x: x[:, 0] * 10 + 50, name=name, version="1",
                                      registry=scraper.registry, value_buckets=WANTED,
                                      **options)
        model(features[:100])
    assert _bounds(scraper, "no_ref") == WANTED
    assert _bounds(scraper, "with_ref") == WANTED


def test_the_default_buckets_given_explicitly_are_kept_with_a_reference(scraper):
    features, reference = _regressor_reference(1)
    model = inferwatch.instrument(lambda x: x[:, 0] * 10 + 50, name="m", version="1",
                                  registry=scraper.registry, reference=reference,
                                  value_buckets=list(VALUE_BUCKETS))
    model(features[:100])
    assert _bounds(scraper, "m") == VALUE_BUCKETS


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=12, unique=True))
def test_any_value_buckets_given_are_the_histograms_with_a_reference(given_bounds):
    from conftest import Scraper

    wanted = tuple(sorted(given_bounds))
    features, reference = _regressor_reference(2)
    scraper = Scraper()
    try:
        model = inferwatch.instrument(lambda x: x[:, 0] * 10 + 50, name="m", version="1",
                                      registry=scraper.registry, reference=reference,
                                      value_buckets=wanted)
        model(features[:20])
        assert _bounds(scraper, "m") == wanted
    finally:
        scraper.registry.close()


# --- no value_buckets: a default that fits the output ---------------------------------------

def test_a_confident_classifiers_probabilities_keep_the_fine_default_buckets(scraper):
    rng = np.random.default_rng(3)
    features = rng.normal(size=(1000, 3))
    # Nearly every probability at 0 or 1: the reference's quantile cut points collapse to
    # two or three distinct values.
    probabilities = 1 / (1 + np.exp(-40 * features[:, 0]))
    reference = inferwatch.Reference.from_data(features, predictions=probabilities)
    model = inferwatch.instrument(lambda x: 1 / (1 + np.exp(-40 * x[:, 0])), name="clf",
                                  version="1", registry=scraper.registry, reference=reference)
    model(features[:200])
    assert _bounds(scraper, "clf") == VALUE_BUCKETS


def test_a_regressor_on_another_scale_gets_bounds_around_its_values(scraper):
    from inferwatch.quality.tracker import scale_buckets

    features, reference = _regressor_reference(4, scale=20_000.0, offset=250_000.0)
    model = inferwatch.instrument(lambda x: x[:, 0] * 20_000 + 250_000, name="price",
                                  version="1", registry=scraper.registry, reference=reference)
    model(features[:200])
    bounds = _bounds(scraper, "price")
    assert bounds == scale_buckets(150_000.0, 350_000.0)
    # Values land in several buckets, not in +Inf as with the default bounds.
    assert sum(b > 200_000 for b in bounds) >= 2 and bounds[-1] >= 10 * 350_000


def test_versions_retrained_on_other_samples_share_their_buckets(scraper):
    for version, seed in (("1", 5), ("2", 6)):
        features, reference = _regressor_reference(seed)
        model = inferwatch.instrument(lambda x: x[:, 0] * 10 + 50, name="m", version=version,
                                      registry=scraper.registry, reference=reference)
        model(features[:100])
    by_version = {version: tuple(float(s.labels["le"]) for s in scraper.samples()
                                 if s.name == f"{HISTOGRAM}_bucket"
                                 and s.labels["model_version"] == version)
                  for version in ("1", "2")}
    assert by_version["1"] == by_version["2"]


@example(low=1.0, span=999999999999.002, factor=1.0)  # just past 1e12: log10 says 12
@given(low=st.floats(-1e12, 1e12), span=st.floats(0, 1e12), factor=st.floats(0.5, 2))
def test_scale_buckets_cover_the_values_and_depend_only_on_their_magnitude(low, span, factor):
    from inferwatch.quality.tracker import scale_buckets

    high = low + span
    bounds = scale_buckets(low, high)
    if bounds is None:  # zero, or too close to it for three decades below (1e-300 at most)
        assert max(abs(low), abs(high)) < 1e-299
        return
    assert list(bounds) == sorted(set(bounds)) and all(math.isfinite(b) for b in bounds)
    assert bounds[0] <= min(low, 0.0) and bounds[-1] >= 10 * max(abs(low), abs(high)) > 0
    assert len(bounds) <= 21
    # Another sample of the same data: bounds change only where its largest magnitude
    # crosses a power of ten.
    top = max(abs(low), abs(high))
    other_top = top * factor
    if math.ceil(math.log10(other_top)) == math.ceil(math.log10(top)):
        assert scale_buckets(-other_top if low < 0 else 0.0, other_top) == bounds


# --- workers of one version, each with its own reference -------------------------------------

WORKER = textwrap.dedent("""
    import sys

    import numpy as np

    import inferwatch
    from inferwatch.core.registry import Registry
    from inferwatch.multiproc import Publisher

    directory, seed = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(400, 2))
    reference = inferwatch.Reference.from_data(features, predictions=features[:, 0] * 10 + 50)
    registry = Registry(drain_interval=3600)
    publisher = Publisher(registry, directory, interval=0.0)
    model = inferwatch.instrument(lambda x: x[:, 0] * 10 + 50, name="m", version="1",
                                  registry=registry, reference=reference)
    model(features[:100])
    registry.drain()
    assert publisher.publish(force=True)
    print("published", flush=True)
    sys.stdin.read()  # alive, so its file is a live worker's, until the test is done
""")


def _merged_samples(directory: Path) -> list:
    now = time.time()
    families = SnapshotDirectory(str(directory)).read_view(now).families(now)

    class Source:
        def collect(self) -> list:
            return families

    text = generate_latest(Source()).decode()  # type: ignore[arg-type]
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


@pytest.mark.timeout(120)
def test_workers_whose_references_differ_merge_their_prediction_histograms(tmp_path: Path):
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(seed)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for seed in (11, 12)]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "published"
        samples = _merged_samples(tmp_path)
        count = sum(s.value for s in samples if s.name == f"{HISTOGRAM}_count")
        assert count == 200  # neither worker's series skipped as laid out differently
    finally:
        for worker in workers:
            worker.stdin.close()
            worker.wait(timeout=60)
