"""The status page's formats, its version-less model links and its index, read over HTTP as
a user does, and the `--config` flag of `inferwatch report` / `generate` given empty."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import inferwatch
from inferwatch.cli import main
from inferwatch.core.registry import Registry
from inferwatch.report.page import index_page, model_link
from inferwatch.report.status import StatusPages, read_snapshot


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


@pytest.fixture(scope="module")
def served():
    """A server of one registry holding fraud 1 and 2: (its root URL, the registry)."""
    registry = Registry(drain_interval=3600)
    registry.monitor("fraud", "1").record_call(0.01, 0.5)
    registry.monitor("fraud", "2").record_call(0.02, 0.5)
    try:
        with inferwatch.serve(port=0, addr="127.0.0.1", registry=CollectorRegistry(),
                              status_page=registry) as server:
            yield server.url.rsplit("/", 1)[0] + "/", registry
    finally:
        registry.close()


# --- ?format= --------------------------------------------------------------------------------

def _cased(word: str) -> st.SearchStrategy[str]:
    return st.tuples(*[st.sampled_from([c.lower(), c.upper()]) for c in word]).map("".join)


@settings(max_examples=20, deadline=None)
@given(fmt=_cased("json"), repeat=st.integers(1, 3))
def test_format_json_in_any_case_or_repeated_answers_the_snapshot(served, fmt, repeat):
    base, _ = served
    status, content_type, body = _get(base + "?" + "&".join([f"format={fmt}"] * repeat))
    assert status == 200
    assert content_type == "application/json"
    _, states = read_snapshot(body)
    assert {(s.model, s.version) for s in states} == {("fraud", "1"), ("fraud", "2")}


@settings(max_examples=20, deadline=None)
@given(fmt=_cased("html"))
def test_format_html_in_any_case_answers_the_page(served, fmt):
    base, _ = served
    status, content_type, body = _get(base + f"?format={fmt}")
    assert status == 200 and content_type.startswith("text/html")
    assert b"<table>" in body


@settings(max_examples=25, deadline=None)
@given(fmt=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                   min_size=1, max_size=12).filter(
                       lambda s: s.strip().lower() not in ("json", "html")))
def test_an_unknown_format_is_a_400_naming_the_supported_ones(served, fmt):
    base, _ = served
    status, content_type, body = _get(
        base + "?" + urllib.parse.urlencode({"format": fmt, "model": "fraud"}))
    assert status == 400, body[:200]
    assert content_type.startswith("text/plain")
    assert b"html, json" in body


def test_two_different_formats_are_a_400(served):
    base, _ = served
    status, _, body = _get(base + "?format=json&format=html")
    assert status == 400 and b"html, json" in body


# --- ?model= without a version ---------------------------------------------------------------

def _title(html: bytes) -> str:
    found = re.search(rb"<title>(.*?)</title>", html)
    assert found is not None
    return found.group(1).decode()


def test_a_model_link_without_a_version_shows_the_latest_version():
    registry = Registry(drain_interval=3600)
    try:
        for version in ("1", "2"):
            registry.monitor("fraud", version).record_call(0.01, 0.5)
        # A shadow of the next version is monitored, but is not what the model serves.
        registry.monitor("fraud", "3-shadow", latest=False).record_call(0.01, 0.5)
        with inferwatch.serve(port=0, addr="127.0.0.1", registry=CollectorRegistry(),
                              status_page=registry) as server:
            base = server.url.rsplit("/", 1)[0] + "/"
            status, _, body = _get(base + "?model=fraud")
            assert status == 200
            assert "fraud 2" in _title(body)
            # Back to version 1 (a rollback): that is what the link shows now.
            registry.monitor("fraud", "1")
            assert "fraud 1" in _title(_get(base + "?model=fraud")[2])
            assert _get(base + "?model=nobody")[0] == 404
    finally:
        registry.close()


# --- the index reads only what it shows -------------------------------------------------------

def _reference() -> inferwatch.Reference:
    rng = np.random.default_rng(5)
    return inferwatch.Reference.from_data(
        {"amount": rng.normal(0, 1, 2000), "country": rng.choice(["fr", "de", "it"], 2000)},
        predictions=rng.random(2000))


def _registry_of_many(n_models: int, versions: int) -> Registry:
    """Versions with drift (some shifted far), errors, bad inputs, a shadow and one
    without a reference: every condition the index can show."""
    rng = np.random.default_rng(1)
    registry = Registry(drain_interval=3600)
    reference = _reference()
    for m in range(n_models):
        for v in range(versions):
            monitor = registry.monitor(f"model-{m}", str(v), latest=v != 2)
            if (m + v) % 4 != 3:
                monitor.configure(reference=reference)
            shift = 3.0 if (m * versions + v) % 3 == 0 else 0.0
            for i in range(120):
                try:
                    with monitor.request() as r:
                        r.features({"amount": float(rng.normal(shift, 1)) if i % 7 else None,
                                    "country": "es" if shift and i % 2 else "fr"})
                        r.prediction(np.array([float(rng.random())]))
                        if (m + i) % 11 == 0:
                            raise RuntimeError("model failed")
                except RuntimeError:
                    pass
    registry.drain()
    return registry


def test_the_index_copies_no_state_and_encodes_no_reference(monkeypatch):
    from inferwatch.core.monitor import Monitor

    registry = _registry_of_many(3, 3)
    try:
        pages = StatusPages(registry)
        copies, encoded = [], []
        copy_state, to_dict = Monitor.copy_state, inferwatch.Reference.to_dict
        monkeypatch.setattr(Monitor, "copy_state",
                            lambda self: copies.append(self.name) or copy_state(self))
        monkeypatch.setattr(inferwatch.Reference, "to_dict",
                            lambda self, *a, **k: encoded.append(1) or to_dict(self, *a, **k))
        status, body, _ = pages.respond("")
        assert status == 200 and body.count(b"<tr>") == 1 + 9
        assert copies == [] and encoded == []
    finally:
        registry.close()


def test_the_index_shows_what_every_model_page_shows(monkeypatch, tmp_path):
    """The summary the index reads gives each row the numbers and conditions of the whole
    page of that version, read at the same time."""
    registry = _registry_of_many(4, 3)
    config = tmp_path / "inferwatch.yaml"
    config.write_text("drift:\n  min_observations: 100\n")
    try:
        pages = StatusPages(registry, config=str(config))
        wall, mono = time.time(), time.monotonic()
        monkeypatch.setattr(time, "time", lambda: wall)
        monkeypatch.setattr(time, "monotonic", lambda: mono)
        status, body, _ = pages.respond("")
        states, now = registry.states_at()
        full = index_page([pages._report(s, now) for s in
                           sorted(states, key=lambda s: (s.model, s.version))],
                          lambda r: model_link(r.model, r.version),
                          metrics_link=pages.metrics_link)
        assert status == 200
        assert body.decode() == full
        # Not a page of nothing: drift and errors hold on some rows and not on others.
        assert b"InferwatchFeatureDrift" in body and b"none" in body
    finally:
        registry.close()


# --- --config "" -----------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["", "  "])
@pytest.mark.parametrize("source", ["metrics", "data"])
def test_report_refuses_an_empty_config_naming_the_flag(tmp_path, capsys, value, source):
    out = tmp_path / "report.html"
    reference = tmp_path / "reference.json"
    _reference().save(reference)
    data = tmp_path / "rows.csv"
    data.write_text("amount,country\n1.0,fr\n")
    given = (["--metrics", "http://127.0.0.1:9/"] if source == "metrics"
             else ["--reference", str(reference), str(data)])
    status = main(["report", "--config", value, *given, "-o", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    assert "--config is empty" in err
    assert "Is a directory" not in err
    assert not out.exists()


@pytest.mark.parametrize("value", ["", "  "])
def test_generate_refuses_an_empty_config_naming_the_flag(tmp_path, capsys, value):
    status = main(["generate", "--config", value, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and "--config is empty" in err
    assert not (tmp_path / "out").exists()


def test_a_json_snapshot_is_still_read_by_report_metrics(served, tmp_path, capsys):
    base, _ = served
    out = tmp_path / "live.html"
    assert main(["report", "--metrics", base + "?format=JSON", "-o", str(out)]) == 0
    assert "2 model versions" in capsys.readouterr().err
    assert json.dumps("fraud")[1:-1] in out.read_text()


@pytest.mark.parametrize("value", ["", " "])
def test_report_refuses_an_empty_model_rather_than_reporting_every_model(
        served, tmp_path, capsys, value):
    base, _ = served
    out = tmp_path / "live.html"
    status = main(["report", "--metrics", base, "--model", value, "-o", str(out)])
    assert status == 2
    assert "--model is empty" in capsys.readouterr().err
    assert not out.exists()
