"""The README documents every metric of the catalogue, and its quick start runs."""

from __future__ import annotations

import re
from pathlib import Path

from inferwatch.catalogue import CATALOGUE

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_catalogue_metric_is_in_the_readme_metric_reference():
    documented = set(re.findall(r"^\| `(inferwatch_[a-z_]+)` \|", README, flags=re.M))
    assert documented == set(CATALOGUE)


def test_readme_types_match_the_catalogue():
    rows = re.findall(r"^\| `(inferwatch_[a-z_]+)` \| (\w+) \|", README, flags=re.M)
    for name, kind in rows:
        assert CATALOGUE[name].kind == kind, name


def test_readme_alert_list_is_the_generated_alert_list():
    from inferwatch.generate.rules import ALERTS

    row = r"^\| \[`(Inferwatch\w+)`\]\(docs/runbooks\.md#(\w+)\) \| (\w+) \| (\w+) \|"
    listed = re.findall(row, README, flags=re.M)
    assert [(a.name, a.name.lower(), a.severity, a.for_) for a in ALERTS] == listed
