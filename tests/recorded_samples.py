"""What a model's result is recorded as: the samples a scrape gives after calls of a model
that returns it, keyed by metric and labels (without the model's own), and readers of them."""

from __future__ import annotations

import inferwatch
from inferwatch import faults

Samples = dict[tuple[str, tuple], float]


def recorded(result: object, *, proba: bool = False, calls: int = 1,
             fault_kind: str | None = None, **options: object) -> tuple[Samples, int]:
    """The samples after `calls` calls returning `result` (by ``predict_proba`` when
    `proba`), and how many internal faults they raised (of `fault_kind` only, when given);
    asserts the caller got `result` itself."""
    from conftest import Scraper

    class Model:
        def predict(self, x: object) -> object:
            return result

        def predict_proba(self, x: object) -> object:
            return result

    def fault_count() -> int:
        counts = faults.internal_error_counts()
        return sum(counts.values()) if fault_kind is None else counts.get(fault_kind, 0)

    scraper = Scraper(drain_interval=3600)
    before = fault_count()
    try:
        model = inferwatch.instrument(Model(), name="m", version="1",
                                      registry=scraper.registry, **options)
        method = model.predict_proba if proba else model.predict
        for _ in range(calls):
            assert method(None) is result
        samples = {(s.name, tuple(sorted((k, v) for k, v in s.labels.items()
                                         if k not in ("model", "model_version")))): s.value
                   for s in scraper.samples()}
    finally:
        scraper.registry.close()
    return samples, fault_count() - before


def sample(samples: Samples, name: str, **labels: str) -> float:
    """The value of the series `name{labels}`, 0 when absent."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def predicted_classes(samples: Samples) -> dict[str, float]:
    """`inferwatch_predicted_class_total` by class, the non-zero ones."""
    return {dict(labels)["class"]: value for (name, labels), value in samples.items()
            if name == "inferwatch_predicted_class_total" and value}
