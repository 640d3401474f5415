"""The README and docs/ as a contract: every claim that can be checked against the code is.

Metric labels and reasons against the catalogue and a real scrape, options and their
defaults against ``Settings``, CLI flags against ``--help``, alerts against the rule files
and their runbooks, configuration keys against the schema, links and anchors, and the
python examples that stand on their own.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families as parse_text

import inferwatch
from inferwatch.catalogue import CATALOGUE
from inferwatch.core.options import Settings
from inferwatch.core.registry import Registry
from inferwatch.generate.config_schema import leaves
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.serving.exposition import render

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent

_ROW = re.compile(r"^\| `(inferwatch_[a-z_]+)` \| (\w+) \| ([^|]*) \| (.*) \|$", re.M)
METRIC_ROWS = {name: (kind, tuple(re.findall(r"`(\w+)`", labels)), meaning)
               for name, kind, labels, meaning in _ROW.findall(README)}


def _text_without_code(path: Path) -> str:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


# --- the metric reference ---------------------------------------------------------------

def _documented_labels(name: str) -> tuple[str, ...]:
    """The README's labels of a metric, as the catalogue states them."""
    labels = METRIC_ROWS[name][1]
    if CATALOGUE[name].kind == "summary":
        assert labels[-1:] == ("quantile",), f"{name}: a summary's rows carry quantile"
        labels = labels[:-1]
    return tuple(label for label in labels if label != "metadata")  # (+ `metadata`)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_readme_labels_are_the_catalogue_labels(name):
    assert _documented_labels(name) == CATALOGUE[name].labels


_UNITS = {"seconds": "second", "bytes": "bytes", "celsius": "celsius", "watts": "watts",
          "joules": "joules", "hertz": "hertz", "ratio": "0..1"}


@pytest.mark.parametrize("name", sorted(n for n in CATALOGUE
                                        if re.search(r"_(seconds|bytes|celsius|watts|joules|"
                                                     r"hertz|ratio)(_total)?$", n)))
def test_readme_and_help_state_the_unit_of_the_name(name):
    unit = re.search(r"_([a-z]+?)(?:_total)?$", name).group(1)
    word = _UNITS[unit]
    assert word in CATALOGUE[name].help.lower(), name
    assert word in METRIC_ROWS[name][2].lower(), name


def _invalid_reasons_in_code() -> set[str]:
    # Every module of the hot path: a reason counted in a new one is caught too.
    core = ROOT / "exporter" / "inferwatch" / "core"
    text = "".join(path.read_text() for path in sorted(core.glob("*.py")))
    return set(re.findall(r"(?:count_invalid|_invalid)\(\"(\w+)\"", text))


def _reasons_listed(text: str) -> set[str]:
    return set(re.findall(r"\w+", re.search(r"by reason \(([^)]*)\)", text).group(1)))


def test_every_invalid_prediction_reason_the_code_counts_is_documented():
    reasons = _invalid_reasons_in_code()
    assert {"nan", "inf", "out_of_range", "probability_sum", "unsupported_type"} <= reasons
    assert reasons <= _reasons_listed(CATALOGUE["inferwatch_invalid_predictions_total"].help)
    assert reasons <= _reasons_listed(METRIC_ROWS["inferwatch_invalid_predictions_total"][2])


def test_calls_dropped_names_both_bounds_that_drop():
    # max_pending_bytes drops calls too (README, "It never grows without bound").
    for text in (CATALOGUE["inferwatch_calls_dropped_total"].help,
                 METRIC_ROWS["inferwatch_calls_dropped_total"][2]):
        assert "max_pending calls" in text and "max_pending_bytes" in text


class _Broken:
    """A classifier whose probability matrices break every rule a scrape can report."""

    classes_ = np.array([0, 1])

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix

    def predict_proba(self, rows):
        return self.matrix


def _scrape(registry: Registry) -> list:
    prom = CollectorRegistry()
    prom.register(InferwatchCollector(registry))
    body, _ = render(prom, None, None)
    return list(parse_text(body.decode()))


def test_a_real_scrape_emits_only_documented_invalid_reasons():
    registry = Registry()
    try:
        for i, matrix in enumerate([np.array([[0.2, 1.5]]), np.array([[0.2, 0.2]]),
                                    np.array([[0.5 + 1j, 0.5]]), np.zeros((1, 2, 2)),
                                    np.array([[np.nan, 0.5]]), np.array([[np.inf, 0.5]])]):
            model = inferwatch.instrument(_Broken(matrix), name=f"broken-{i}", version="1",
                                          registry=registry, task="classification")
            model.predict_proba(np.zeros((1, 2)))
        price = inferwatch.instrument(lambda x: 99.0, name="price", version="1",
                                      registry=registry, output_range=(0.0, 10.0))
        price(1)
        seen = {sample.labels["reason"] for family in _scrape(registry)
                if family.name == "inferwatch_invalid_predictions" for sample in family.samples
                if sample.value > 0}
    finally:
        registry.close()
    assert {"probability_out_of_range", "probability_sum", "unsupported_type", "bad_shape",
            "nan", "inf", "out_of_range"} <= seen
    assert seen <= _reasons_listed(METRIC_ROWS["inferwatch_invalid_predictions_total"][2])
    assert seen <= _reasons_listed(CATALOGUE["inferwatch_invalid_predictions_total"].help)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    """A scrape of a classifier with a reference and an event log, a regressor, a stream
    and two shadows: the models that tests/test_every_family.py drives."""
    from test_every_family import _classifier, _regressor, _shadowed, _streamer

    registry = Registry()
    _classifier(registry)
    _regressor(registry)
    _streamer(registry, tmp_path_factory.mktemp("events"))
    _shadowed(registry)
    families = _scrape(registry)
    registry.close()
    return families


def test_every_scraped_family_is_in_the_readme_with_its_type_and_labels(scraped):
    by_family = {spec.family: name for name, spec in CATALOGUE.items()}
    seen = set()
    for family in scraped:
        if not family.samples or not family.name.startswith("inferwatch_"):
            continue
        name = by_family.get(family.name)
        assert name in METRIC_ROWS, f"{family.name} is emitted but not in the README"
        seen.add(name)
        kind, labels, _ = METRIC_ROWS[name]
        assert family.type == kind, name
        documented = set(labels) - {"metadata"}
        spec = CATALOGUE[name]
        model = set(("model", "model_version") if spec.per_model else ())
        for sample in family.samples:
            extra = set(sample.labels) - model - {"le"}
            expected = documented
            if kind == "summary" and sample.name != family.name:
                expected = documented - {"quantile"}  # _count and _sum
            if name == "inferwatch_model_info":
                # framework from instrument(), role with a shadow, (+ `metadata`): any other.
                assert "task" in extra, sample
                extra = expected
            assert extra == expected, (name, sample)
    assert len(seen) > 40


# --- options ----------------------------------------------------------------------------

def _options_rows() -> list[tuple[list[str], str]]:
    section = README.split("### Options", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ((?:`\w+`(?:, )?)+) \| ([^|]*) \|", section, flags=re.M)
    return [(re.findall(r"`(\w+)`", names), default.strip()) for names, default in rows]


_WORDS = {"none": None, "`{}`": {}, "follow OpenTelemetry": None, "see `core/options.py`": ...,
          "32 MiB": 32 * 1024 * 1024, "7 days": 7 * 86400, "268435456 (256 MiB)": 256 << 20}


def _default_values(text: str, count: int) -> list:
    if text in _WORDS:
        return [_WORDS[text]] * count
    parts = [part.strip().strip("`") for part in re.split(r", (?![^(]*\))", text)]
    parts = [_WORDS.get(part, part) for part in parts]
    assert len(parts) == count, text
    return [ast.literal_eval(part) if isinstance(part, str) else part for part in parts]


def test_the_options_table_lists_every_setting_and_nothing_else():
    listed = [name for names, _ in _options_rows() for name in names]
    assert len(listed) == len(set(listed))
    assert set(listed) == {f.name for f in dataclasses.fields(Settings)}


def test_the_options_table_states_each_default():
    settings = Settings()
    for names, text in _options_rows():
        for name, stated in zip(names, _default_values(text, len(names)), strict=True):
            actual = getattr(settings, name)
            if stated is ...:
                assert isinstance(actual, tuple) and actual, name
            elif isinstance(actual, Mapping):
                assert dict(actual) == stated, name
            else:
                assert actual == stated, name


def test_every_option_is_taken_by_instrument_and_configure():
    registry = Registry()
    try:
        defaults = {f.name: getattr(Settings(), f.name) for f in dataclasses.fields(Settings)}
        model = inferwatch.instrument(lambda x: 1.0, name="options", version="1",
                                      registry=registry, **defaults)
        model(1)
        registry.monitor("options", "1").configure(**defaults)
    finally:
        registry.close()


# --- the command line -------------------------------------------------------------------

COMMANDS = {
    "inferwatch-exporter": [str(BIN / "inferwatch-exporter")],
    **{f"inferwatch {sub}": [str(BIN / "inferwatch"), *sub.split()]
       for sub in ("generate", "profile", "demo", "report", "events tail", "events query")},
    **{f"python -m inferwatch.demo.{module}": [sys.executable, "-m", f"inferwatch.demo.{module}"]
       for module in ("streaming", "quiet_shift")},
    # The benchmarks' runner, from a checkout (docs/benchmarks.md).
    "python -m benchmarks": [sys.executable, "-c", "import runpy, sys; sys.path.insert(0, "
                             f"{str(ROOT)!r}); runpy.run_module('benchmarks', "
                             "run_name='__main__', alter_sys=True)"],
}
# Flags in the docs that belong to other programs (gunicorn, docker, Prometheus, ...).
FOREIGN = {"--enable-feature", "--workers", "--worker-class", "--build", "--profile",
           "--web.enable-remote-write-receiver", "--query-gpu", "--query-compute-apps", "--init",
           "--no-sendfile",
           "--preload", "--rule-file", "--query.replica-label", "--web.listen",
           # Prometheus' own, in docs/baselines.md's benchmark
           "--query.lookback-delta",
           # uWSGI's, in docs/integrations.md
           "--master", "--processes", "--lazy-apps", "--http", "--wsgi-file",
           "--py-call-osafterfork",
           # docs/exporter.md's "Adding a collector" example, a collector that does not exist
           "--collector.queue", "--queue.directory"}


@pytest.fixture(scope="module")
def help_flags() -> dict[str, list[set[str]]]:
    """Per command, each option of its --help as the set of its spellings (-n, --lines)."""
    found = {}
    for command, argv in COMMANDS.items():
        out = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60,
                             check=True).stdout
        options = []
        for line in out.split("\n"):
            spellings = re.findall(r"(?:^|, |\| |\[| )(--?[a-z][\w.-]*)", line.split("  ")[1]
                                   if line.startswith("  ") and len(line.split("  ")) > 1
                                   else "")
            if spellings:
                options.append(set(spellings))
        found[command] = options
    return found


def _documented_flags() -> set[str]:
    text = "\n".join(path.read_text() for path in DOCS)
    flags = set(re.findall(r"(?<![\w-])(--[a-z][\w.\-<>\[\]]*[\w>])", text))
    flags |= set(re.findall(r"(?<![\w-])(-[a-z])\b(?= [A-Z-])", text))
    expanded = set()
    for flag in flags:
        if flag.startswith("--[no-]"):
            expanded |= {"--" + flag[7:], "--no-" + flag[7:]}
        else:
            expanded.add(flag)
    return expanded


def test_every_flag_of_every_help_is_documented(help_flags):
    documented = _documented_flags()
    collectors = {f"--{prefix}collector.{name}" for prefix in ("", "no-")
                  for name in ("gpu", "process", "multiproc")}
    if "--collector.<name>" in documented:
        documented |= collectors
    missing = []
    for command, options in help_flags.items():
        for spellings in options:
            if spellings & {"-h", "--help", "--version"}:
                continue
            if not spellings & documented:
                missing.append((command, sorted(spellings)))
    assert missing == []


def test_every_documented_flag_exists(help_flags):
    known = {flag for options in help_flags.values() for spellings in options
             for flag in spellings}
    known |= {"--collector.<name>", "--no-collector.<name>"}
    unknown = {flag for flag in _documented_flags() if flag.startswith("--")} - known - FOREIGN
    # `--process.*`: every flag of a group.
    unknown = {flag for flag in unknown if not any(k.startswith(flag + ".") for k in known)}
    assert unknown == set()


def test_the_exporter_flag_table_states_the_help_defaults():
    table = (ROOT / "docs" / "exporter.md").read_text()
    out = subprocess.run([str(BIN / "inferwatch-exporter"), "--help"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    for flag, default in re.findall(r"^\| `(--[\w.-]+)=[^`]*` \| `([^`]+)` \|", table, flags=re.M):
        block = out.split("\n  " + flag, 1)[1].split("\n  --", 1)[0]
        assert default.lstrip(":") in " ".join(block.split()), (flag, default)


# --- alerts and runbooks ----------------------------------------------------------------

def _github_anchor(heading: str) -> str:
    heading = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.*)$", text, flags=re.M):
        slug = _github_anchor(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_readme_alerts_are_the_rule_files_with_their_severity_for_and_runbook():
    rules: dict[str, set[tuple[str, str]]] = {}
    for path in sorted((ROOT / "alerts").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rules.setdefault(rule["alert"], set()).add(
                        (rule["labels"]["severity"], rule.get("for", "0m")))
    row = r"^\| \[`(Inferwatch\w+)`\]\(docs/runbooks\.md#([\w-]+)\) \| (\w+) \| (\w+) \|"
    listed = re.findall(row, README, flags=re.M)
    assert {name for name, *_ in listed} == set(rules)
    anchors = _anchors(ROOT / "docs" / "runbooks.md")
    for name, anchor, severity, for_ in listed:
        assert rules[name] == {(severity, for_)}, name
        assert anchor in anchors, name


# --- the configuration reference --------------------------------------------------------

def _config_rows() -> dict[str, str]:
    text = (ROOT / "docs" / "configuration.md").read_text()
    return dict(re.findall(r"^\| `([a-z_]+(?:\.[a-z_0-9]+)+)` \| (.*?) \|", text, flags=re.M))


def _shown(value) -> str:
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value))
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return repr(value) if isinstance(value, float) else str(value)


def test_every_documented_config_key_is_in_the_schema_with_its_default():
    schema = {key: value for key, _, value in leaves() if key not in ("alerts", "models")}
    rows = _config_rows()
    assert set(rows) == set(schema)
    for key, default in rows.items():
        assert default.strip() == f"`{_shown(schema[key])}`".replace("|", "\\|"), key


# --- links ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(path):
    for target in re.findall(r"\]\(([^)\s]+)\)", _text_without_code(path)):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), (path.name, target)
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), (path.name, target)


# --- python examples --------------------------------------------------------------------

def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.M | re.S)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_python_block_is_python(path):
    for block in _python_blocks(path):
        ast.parse(block)


def _block(path: Path, marker: str) -> str:
    found = [block for block in _python_blocks(path) if marker in block]
    assert len(found) == 1, marker
    return found[0]


def test_the_event_log_example_of_docs_events_runs(tmp_path, monkeypatch):
    from inferwatch.events.redact import MIN_SECRET_BYTES

    monkeypatch.setenv("EVENT_SECRET", "0" * MIN_SECRET_BYTES)
    snippet = _block(ROOT / "docs" / "events.md", "events.emit(")
    assert "sample_rate=0.1," in snippet
    # Keep every event, so that the one emitted is written.
    snippet = snippet.replace("/var/log/model", str(tmp_path)).replace("sample_rate=0.1,",
                                                                        "sample_rate=1.0,")
    scope: dict = {}
    exec(compile(snippet, "events.md", "exec"), scope)
    assert scope["events"].flush(10)
    scope["events"].close()
    written = (tmp_path / "events.jsonl").read_text()
    assert "r-17" in written and "a@example.com" not in written and "078-05-1120" not in written


@pytest.mark.parametrize(("path", "marker"), [
    ("README.md", "app.add_middleware(inferwatch.InstrumentMiddleware"),
    ("README.md", "WSGIInstrumentMiddleware("),
    ("docs/multiprocess.md", "async def lifespan"),
])
def test_the_web_app_examples_run_as_written(path, marker):
    pytest.importorskip("fastapi")
    pytest.importorskip("flask")
    scope: dict = {"__name__": "docs_example"}
    exec(compile(_block(ROOT / path, marker), path, "exec"), scope)
    assert scope["app"] is not None


def test_the_process_wide_series_the_readme_names_are_those_without_model_labels():
    """The README names the in-process series that carry no model labels: a query summing
    them by model finds nothing, so the list must be the catalogue's, no more and no less."""
    sentence = README.split("The process-wide series carry", 1)[1].split("Base units", 1)[0]
    named = set(re.findall(r"`(inferwatch_[a-z_]+)`", sentence))
    process_wide = {name for name, spec in CATALOGUE.items()
                    if not spec.per_model and name in METRIC_ROWS
                    and README.index(f"| `{name}` |") < README.index("### Standalone exporter")}
    assert len(named) >= 5 and named == process_wide
