"""`inferwatch report` judged by the config the rules are generated from, and its column
flags read as `inferwatch profile` reads them."""

from __future__ import annotations

import csv
import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import inferwatch
from inferwatch.cli import main
from inferwatch.core.registry import Registry
from inferwatch.quality.reference import Reference
from inferwatch.report import status
from loopback_http import LoopbackServer, QuietHandler


class _Page(HTMLParser):
    """The `data-key` -> `data-value` pairs of a page and its alert rows' states."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.values: dict[str, str] = {}
        self.states: dict[str, str] = {}
        self._cells: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if "data-key" in found:
            self.values[found["data-key"] or ""] = found.get("data-value") or ""
        if tag == "tr":
            self._cells = []
        elif tag == "td" and self._cells is not None:
            self._cells.append("")

    def handle_data(self, data: str) -> None:
        if self._cells:
            self._cells[-1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._cells:
            if self._cells[0].startswith("Inferwatch") and len(self._cells) >= 2:
                self.states[self._cells[0]] = self._cells[1]
            self._cells = None


def parsed(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def write_csv(path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def moderate_drift(tmp_path):
    """A reference and a live file whose one feature drifted by a PSI between 0.1 and 0.2:
    over a config's 0.1, under the default 0.2."""
    rng = np.random.default_rng(11)
    Reference.from_data({"amount": rng.normal(size=20_000)}).save(tmp_path / "reference.json")
    write_csv(tmp_path / "live.csv", ["amount"],
              [[f"{v:.5f}"] for v in rng.normal(0.37, 1.0, size=20_000)])
    return tmp_path / "reference.json", tmp_path / "live.csv"


def _report(argv: list[str], out) -> tuple[int, _Page]:
    code = main(["report", *argv, "-o", str(out)])
    return code, parsed(out.read_text(encoding="utf-8")) if out.exists() else _Page()


def test_the_report_judges_drift_by_the_configs_threshold(tmp_path, moderate_drift, capsys):
    # The rules generated from this config fire at PSI 0.1; the report said "ok" at 0.15.
    reference, data = moderate_drift
    config = tmp_path / "inferwatch.yaml"
    config.write_text("drift:\n  feature_threshold: 0.1\n", encoding="utf-8")
    out = tmp_path / "report.html"

    code, page = _report(["--reference", str(reference), str(data)], out)
    assert code == 0
    psi = float(page.values["feature_drift|amount|psi"])
    assert 0.1 < psi < 0.2
    assert page.states["InferwatchFeatureDrift"] == "ok"

    code, page = _report(["--reference", str(reference), str(data), "--config", str(config)],
                         out)
    assert code == 0
    assert page.states["InferwatchFeatureDrift"] == "firing"
    assert "threshold 0.1" in out.read_text(encoding="utf-8")
    assert "InferwatchFeatureDrift" in capsys.readouterr().err


def test_the_report_follows_the_models_override_named_with_model(tmp_path, moderate_drift):
    reference, data = moderate_drift
    config = tmp_path / "inferwatch.yaml"
    config.write_text("models:\n  fraud:\n    drift:\n      feature_threshold: 0.1\n",
                      encoding="utf-8")
    out = tmp_path / "report.html"
    argv = ["--reference", str(reference), str(data), "--config", str(config)]

    assert _report([*argv, "--model", "fraud"], out)[1].states[
        "InferwatchFeatureDrift"] == "firing"
    assert _report([*argv, "--model", "churn"], out)[1].states["InferwatchFeatureDrift"] == "ok"


@pytest.mark.parametrize("yaml_text, key", [
    ("drift:\n  feature_treshold: 0.1\n", "drift.feature_treshold"),
    ("drift:\n  feature_threshold: lots\n", "drift.feature_threshold"),
    ("drift: [\n", "(file)"),
])
def test_a_bad_config_is_one_line_naming_the_key_and_exit_2(tmp_path, moderate_drift, capsys,
                                                            yaml_text, key):
    reference, data = moderate_drift
    config = tmp_path / "inferwatch.yaml"
    config.write_text(yaml_text, encoding="utf-8")
    out = tmp_path / "report.html"

    assert main(["report", "--reference", str(reference), str(data), "--config", str(config),
                 "-o", str(out)]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"inferwatch report: error: invalid config: {config}: {key}: ")
    assert err.count("\n") == 1
    assert not out.exists()


def test_a_missing_config_file_is_an_error_not_the_defaults(tmp_path, moderate_drift, capsys):
    reference, data = moderate_drift
    out = tmp_path / "report.html"
    assert main(["report", "--reference", str(reference), str(data), "--config",
                 str(tmp_path / "nope.yaml"), "-o", str(out)]) == 2
    assert "nope.yaml: (file): cannot be read" in capsys.readouterr().err
    assert not out.exists()


def test_model_without_config_is_still_refused_for_a_file(tmp_path, moderate_drift, capsys):
    reference, data = moderate_drift
    out = tmp_path / "report.html"
    assert main(["report", "--reference", str(reference), str(data), "--model", "fraud",
                 "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert "--model picks a model of --metrics URL" in error
    assert "give --config too" in error  # the flag that makes --model work with a file


def test_the_metrics_report_uses_the_config_per_model(tmp_path):
    # The report of a running process judged latency by the default 0.5 s whatever the
    # config the rules came from said.
    config = tmp_path / "inferwatch.yaml"
    config.write_text("models:\n  fraud:\n    latency:\n      p99_seconds: 0.05\n",
                      encoding="utf-8")
    registry = Registry()
    for model in ("fraud", "churn"):
        monitor = registry.monitor(model, "1")
        for _ in range(50):
            monitor.record_call(0.2, 0.5)
    out = tmp_path / "report.html"
    try:
        with inferwatch.serve(port=0, addr="127.0.0.1", registry=CollectorRegistry(),
                              status_page=registry) as server:
            code = main(["report", "--metrics", f"http://127.0.0.1:{server.port}/",
                         "--config", str(config), "-o", str(out)])
    finally:
        registry.close()
    assert code == 0
    page = out.read_text(encoding="utf-8")
    sections = {s.split("</h1>")[0]: s for s in page.split("<h1>")[1:]}
    assert parsed(sections["churn 1"]).states["InferwatchLatencyHigh"] == "ok"
    assert parsed(sections["fraud 1"]).states["InferwatchLatencyHigh"] == "firing"


# --- --predictions-column as `inferwatch profile` reads it ---------------------------------

def _comma_named(tmp_path, name: str):
    rng = np.random.default_rng(3)
    Reference.from_data({"a": rng.normal(size=2_000)},
                        predictions={name: rng.normal(size=2_000)}).save(
        tmp_path / "reference.json")
    write_csv(tmp_path / "live.csv", ["a", name],
              [[f"{a:.4f}", f"{p:.4f}"] for a, p in
               zip(rng.normal(size=1_000), rng.normal(size=1_000) + 3)])
    return tmp_path / "reference.json", tmp_path / "live.csv"


@pytest.mark.parametrize("given_as", ["whole", "escaped"])
def test_a_predictions_column_whose_name_holds_a_comma_can_be_named(tmp_path, capsys,
                                                                    given_as):
    name = "score,v2"
    reference, data = _comma_named(tmp_path, name)
    flag = name if given_as == "whole" else name.replace(",", "\\,")
    out = tmp_path / "report.html"

    code, page = _report(["--reference", str(reference), str(data),
                          "--predictions-column", flag], out)

    assert code == 0, capsys.readouterr().err
    assert float(page.values[f"prediction_drift|{name}|psi"]) > 1
    assert page.states["InferwatchPredictionDrift"] == "firing"


def test_an_unknown_predictions_column_is_named_as_profile_names_it(tmp_path, capsys):
    reference, data = _comma_named(tmp_path, "score")
    out = tmp_path / "report.html"
    assert main(["report", "--reference", str(reference), str(data), "--predictions-column",
                 "scroe", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == ("inferwatch report: error: unknown column 'scroe' in --predictions-column "
                   "(columns: 'a', 'score')\n")
    assert not out.exists()


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(st.sampled_from("ab ,;x\u00e9"), min_size=1, max_size=8).filter(
    lambda n: n.strip() == n and n.strip(", ") and "\\" not in n and n != "a"))
def test_any_predictions_column_name_given_escaped_is_compared(tmp_path_factory, name):
    tmp_path = tmp_path_factory.mktemp("names")
    reference, data = _comma_named(tmp_path, name)
    out = tmp_path / "report.html"

    code, page = _report(["--reference", str(reference), str(data),
                          "--predictions-column", name.replace(",", "\\,")], out)

    assert code == 0
    assert float(page.values[f"prediction_drift|{name}|psi"]) > 1


def test_class_codes_of_a_bare_array_output_stay_text(tmp_path, capsys):
    # A classifier profiled from a bare array of class codes ("01", "02") names its one
    # output "value"; the live file's column, given with --predictions-column, was read as
    # numbers (1.0, 2.0): every prediction an unseen class and a PSI of drift that is not.
    codes = [f"0{i % 3 + 1}" for i in range(1_200)]
    Reference.from_data({"a": np.arange(1_200.0)}, predictions=np.array(codes, dtype=object)
                        ).save(tmp_path / "reference.json")
    write_csv(tmp_path / "live.csv", ["a", "label"],
              [[i, code] for i, code in enumerate(codes)])
    out = tmp_path / "report.html"

    code, page = _report(["--reference", str(tmp_path / "reference.json"),
                          str(tmp_path / "live.csv"), "--predictions-column", "label"], out)

    assert code == 0, capsys.readouterr().err
    assert abs(float(page.values["prediction_drift|value|psi"])) < 1e-9
    assert page.states["InferwatchPredictionDrift"] == "ok"


# --- the output path -------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["data", "reference", "config", "data through a link"])
def test_an_output_naming_an_input_is_refused_and_the_input_kept(tmp_path, moderate_drift,
                                                                 capsys, which):
    # `-o live.csv` (a slip of the shell's completion) replaced the data file with the page.
    reference, data = moderate_drift
    config = tmp_path / "inferwatch.yaml"
    config.write_text("drift:\n  feature_threshold: 0.1\n", encoding="utf-8")
    target = {"data": data, "reference": reference, "config": config}.get(which)
    if target is None:
        target = tmp_path / "link.csv"
        target.symlink_to(data)
    before = {p: p.read_bytes() for p in (reference, data, config)}

    extra = ["--config", str(config)] if which == "config" else []
    code = main(["report", "--reference", str(reference), str(data), *extra, "-o",
                 str(target)])

    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"inferwatch report: error: -o {target} is the ")
    assert err.count("\n") == 1
    assert {p: p.read_bytes() for p in before} == before


# --- what --metrics reads ------------------------------------------------------------------

@contextmanager
def _streaming(chunks: int, chunk: bytes, headers: dict[str, str]) -> Iterator[tuple[str, dict]]:
    """A server answering every GET with `chunks` x `chunk` (no length given); `sent`
    counts the bytes it managed to write before the reader left."""
    sent = {"bytes": 0, "done": threading.Event()}

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            try:
                self.send_response(200)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Connection", "close")
                self.end_headers()
                for _ in range(chunks):
                    self.wfile.write(chunk)
                    sent["bytes"] += len(chunk)
            except OSError:
                pass  # the reader closed the connection
            finally:
                sent["done"].set()

    with LoopbackServer(Handler) as server:
        yield server.url, sent


def test_a_url_answering_far_more_than_a_snapshot_is_not_read_whole(tmp_path, capsys,
                                                                     monkeypatch):
    # A wrong URL (a model download, an endless stream) was read into memory whole before
    # being found not to be a snapshot.
    monkeypatch.setattr(status, "MAX_SNAPSHOT_BYTES", 1 << 20, raising=False)
    out = tmp_path / "report.html"
    with _streaming(1024, b"x" * (64 << 10), {"Content-Type": "application/octet-stream"}
                    ) as (url, sent):
        code = main(["report", "--metrics", url, "-o", str(out)])
        assert sent["done"].wait(30)
    assert code == 2
    err = capsys.readouterr().err
    assert "larger than 1 MiB" in err and err.count("\n") == 1
    assert sent["bytes"] < 32 << 20  # of the 64 MiB offered
    assert not out.exists()


def test_a_gzip_bomb_is_refused_before_it_is_unpacked_whole(monkeypatch):
    monkeypatch.setattr(status, "MAX_SNAPSHOT_BYTES", 1 << 20, raising=False)
    bomb = gzip.compress(b" " * (64 << 20))
    assert len(bomb) < 1 << 20
    with pytest.raises(ValueError, match="larger than 1 MiB once unpacked"):
        status.read_snapshot(bomb)
    body = status.snapshot_json([])
    assert status.read_snapshot(gzip.compress(body))[1] == []
