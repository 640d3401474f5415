"""A shadow is recorded in its champion's registry: a champion instrumented with
``registry=`` whose challenger went to the process-wide registry had its comparison series
missing from the very /metrics that served the champion."""

from __future__ import annotations

import inferwatch
from inferwatch.core.registry import Registry, default_registry


class Scorer:
    def __init__(self, offset: float) -> None:
        self.offset = offset

    def predict(self, rows):
        return [float(sum(row)) + self.offset for row in rows]


def _shadow_series(scraper) -> list[dict[str, str]]:
    return scraper.series("inferwatch_shadow_compared_total")


def test_a_shadow_is_recorded_beside_its_champion(scraper):
    champion = inferwatch.instrument(Scorer(0.0), name="scored", version="1",
                                     registry=scraper.registry)
    handle = inferwatch.shadow(champion, Scorer(0.5), version="2")
    try:
        for _ in range(5):
            champion.predict([[1.0, 2.0]])
        handle.flush()
        assert scraper.value("inferwatch_shadow_compared_total", model="scored",
                             model_version="2", champion_version="1") == 5
        roles = {s["model_version"]: s.get("role") for s in
                 scraper.series("inferwatch_model_info") if s["model"] == "scored"}
        assert roles == {"1": "primary", "2": "shadow"}
        assert default_registry().existing_monitor("scored", "2") is None
    finally:
        handle.close()


def test_a_registry_named_to_the_shadow_still_wins(scraper):
    elsewhere = Registry()
    try:
        champion = inferwatch.instrument(Scorer(0.0), name="elsewhere", version="1",
                                         registry=scraper.registry)
        handle = inferwatch.shadow(champion, Scorer(0.5), version="2", registry=elsewhere)
        try:
            champion.predict([[1.0]])
            handle.flush()
            assert elsewhere.existing_monitor("elsewhere", "2") is not None
            assert scraper.registry.existing_monitor("elsewhere", "2") is None
        finally:
            handle.close()
    finally:
        elsewhere.close()
