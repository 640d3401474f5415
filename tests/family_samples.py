"""A helper of the multi-worker tests: sample values of rendered metric families."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families


def samples(families: list, name: str, **labels: str) -> list[float]:
    """Every value of `name` (with `labels`) in rendered `families`, read back through
    prometheus_client's own text encoder and parser."""
    class Source:
        def collect(self) -> list:
            return families

    text = generate_latest(Source()).decode()  # type: ignore[arg-type]
    return [s.value for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
