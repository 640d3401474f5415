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
    from inferwatch.generate.rules_alerts import ALERTS

    row = r"^\| \[`(Inferwatch\w+)`\]\(docs/runbooks\.md#(\w+)\) \| (\w+) \| (\w+) \|"
    listed = re.findall(row, README, flags=re.M)
    assert [(a.name, a.name.lower(), a.severity, a.for_) for a in ALERTS] == listed


def _python_block_with(marker: str) -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", README, flags=re.M | re.S)
    found = [block for block in blocks if marker in block]
    assert len(found) == 1, marker
    return found[0]


def test_readme_event_log_snippet_runs_as_written(tmp_path, monkeypatch):
    from inferwatch.core.registry import Registry

    snippet = _python_block_with("EventLog(")
    monkeypatch.setenv("EVENT_SECRET", "0123456789abcdef0123456789abcdef")
    snippet = snippet.replace("/var/log/model", str(tmp_path))

    class Classifier:
        def predict(self, row):
            return 0.5

    import inferwatch

    registry = Registry()
    monkeypatch.setattr(inferwatch.core.registry, "_default", registry, raising=False)
    scope = {"clf": Classifier()}
    exec(compile(snippet, "README.md", "exec"), scope)  # no import missing, no name undefined
    # sample_rate=0.1 keeps one call in ten or so: call until one is written.
    for _ in range(200):
        scope["model"].predict({"email": "a@example.com", "ssn": "078-05-1120"})
    registry.drain()
    assert scope["log"].flush(10)
    scope["log"].close()
    registry.close()
    written = (tmp_path / "events.jsonl").read_text()  # the link to the newest file
    assert written and "a@example.com" not in written and "078-05-1120" not in written


def test_readme_states_the_secret_length_the_code_requires():
    from inferwatch.events.redact import MIN_SECRET_BYTES

    assert f"at least {MIN_SECRET_BYTES} bytes" in _python_block_with("EventLog(")
