"""A feature profiled as bools is checked alike when it is served as the numbers 0 and 1.

Training frames hold flags as bool columns, profiled as the categories ``False`` and
``True``; a service often builds its input as a float matrix, which cannot hold a bool, and
the model reads True as 1.0 anyway. Every served 0.0 and 1.0 was an unseen category, and
the feature's drift read PSI 17 on the training rows themselves. The numbers 0 and 1 are now
those two categories against such a profile; any other number is still unseen.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch

_RNG = np.random.default_rng(9)
_TRAIN = pd.DataFrame({"amount": _RNG.uniform(0, 10, 400),
                       "is_new": _RNG.choice([True, False], 400)})
_BOOLS = inferwatch.Reference.from_data(_TRAIN)
_NUMBERS = inferwatch.Reference.from_data(_TRAIN.astype({"is_new": float}))


def _figures(reference, calls: list) -> list:
    from conftest import Scraper

    scraper = Scraper()
    try:
        model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                      registry=scraper.registry, reference=reference)
        for x in calls:
            model(x)
        return sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                      for s in scraper.samples()
                      if s.name.startswith(("inferwatch_feature", "inferwatch_input")))
    finally:
        scraper.registry.close()


def _forms(rows: list[tuple[float, bool | None]]) -> dict[str, object]:
    flags = [flag for _, flag in rows]
    amounts = [amount for amount, _ in rows]
    return {
        "bool frame": pd.DataFrame({"amount": amounts, "is_new": pd.array(flags,
                                                                          dtype="boolean")}),
        "float matrix": np.array([[a, np.nan if f is None else float(f)] for a, f in rows]),
        "int records": [{"amount": a, "is_new": None if f is None else int(f)}
                        for a, f in rows],
        "bool records": [{"amount": a, "is_new": f} for a, f in rows],
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.tuples(st.floats(0, 10), st.one_of(st.booleans(), st.none())),
                         min_size=1, max_size=4), min_size=1, max_size=4),
       st.sampled_from(["float matrix", "int records", "bool records"]))
def test_flags_as_numbers_count_as_the_same_flags_as_bools(calls, form):
    for reference in (_BOOLS, _NUMBERS):
        as_bools = _figures(reference, [_forms(rows)["bool frame"] for rows in calls])
        assert _figures(reference, [_forms(rows)[form] for rows in calls]) == as_bools


def test_the_training_flags_served_as_floats_do_not_drift(scraper):
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry, reference=_BOOLS)
    model(_TRAIN.to_numpy(dtype=float))  # was PSI 17, every row an unseen category
    assert scraper.value("inferwatch_feature_drift", model="m", feature="is_new",
                         method="psi") < 0.01
    assert scraper.value("inferwatch_feature_unseen_category_total", model="m",
                         feature="is_new") in (None, 0)


def test_other_numbers_are_still_unseen_against_a_profile_of_bools(scraper):
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry, reference=_BOOLS)
    model(np.array([[1.0, 2.0], [1.0, 0.5], [1.0, 1.0]]))
    assert scraper.value("inferwatch_feature_unseen_category_total", model="m",
                         feature="is_new") == 2


def test_a_profile_of_other_categories_beside_true_keeps_numbers_unseen(scraper):
    reference = inferwatch.Reference.from_data(
        {"answer": np.array(["True", "maybe", "True"], dtype=object)})
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry, reference=reference)
    model([{"answer": 1}, {"answer": 0}, {"answer": "True"}])
    # Text that happens to read True among other words is no bool column.
    assert scraper.value("inferwatch_feature_unseen_category_total", model="m",
                         feature="answer") == 2
