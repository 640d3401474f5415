"""Generated YAML is read as the same strings by Go's YAML 1.1 reader (kubectl, the
Kubernetes API) as by PyYAML: text Go would take for a bool or a number is quoted."""

from __future__ import annotations

import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.generate import _go_reads_as_no_string, _yaml, render
from inferwatch.generate.config import from_dict


@pytest.mark.parametrize("value", ["y", "Y", "n", "N", "1e3", "1234e56", "0o17", "0x1f",
                                   "1_000", "08", ".5", "+.inf", ".NaN", "~", "null"])
def test_text_go_reads_as_no_string_is_quoted(value: str) -> None:
    text = _yaml({"label": value})
    line = text.splitlines()[-1]
    assert line == f"label: '{value}'", line
    assert yaml.safe_load(text) == {"label": value}


@pytest.mark.parametrize("value", ["5m", "canary", "v1.2.3", "fraud-model", "1.2.3", "e5",
                                   "0x", "1e", "yes-please"])
def test_ordinary_text_stays_plain(value: str) -> None:
    assert not _go_reads_as_no_string(value)
    assert _yaml({"label": value}).splitlines()[-1] == f"label: {value}"


@settings(max_examples=300, deadline=None)
@given(value=st.text(alphabet="0123456789eE+-._xXoObByYnN~abf", max_size=8))
def test_any_text_reads_back_the_same_and_go_specials_are_never_plain(value: str) -> None:
    text = _yaml({"label": value})
    assert yaml.safe_load(text) == {"label": value}
    body = text.split("label:", 1)[1].strip()
    if _go_reads_as_no_string(value):
        assert body[:1] in ("'", '"'), body


def test_manifest_labels_go_would_misread_are_quoted_in_every_manifest() -> None:
    cfg = from_dict({"kubernetes": {"labels": {"canary": "y", "build": "1234e56",
                                               "app.kubernetes.io/part-of": "inferwatch"}}})
    files = render(cfg)
    manifests = {path: text for path, text in files.items() if path.endswith(".yaml")}
    assert manifests
    for path, text in manifests.items():
        assert re.search(r"^\s*canary: 'y'$", text, re.M), path
        assert re.search(r"^\s*build: '1234e56'$", text, re.M), path
        loaded = yaml.safe_load(text)
        assert loaded["metadata"]["labels"]["canary"] == "y"
