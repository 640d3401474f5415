"""The exporter's scrape and the command lines as users meet them: clashing collectors,
flags given twice, abbreviated flags, and --help everywhere."""

from __future__ import annotations

import argparse
import subprocess
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from conftest import require_binary
from inferwatch import cli as inferwatch_cli
from inferwatch.standalone import cli
from inferwatch.standalone.scrape import Collector, Scraper

# --- two collectors, one family name ----------------------------------------------------------


class Fixed(Collector):
    """Returns the families it was given, on every scrape."""

    def __init__(self, name: str, families: list[tuple[str, str, dict[str, str], float]]):
        self.name = name  # an instance attribute: each test names its own collectors
        self.spec = families

    def collect(self) -> list[Metric]:
        families: dict[tuple[str, str], Metric] = {}
        out = []
        for family_name, kind, labels, value in self.spec:
            key = (family_name, kind)
            if key not in families or out[-1] is not families[key]:
                families[key] = Metric(family_name, "doc", kind)
                out.append(families[key])
            sample = f"{family_name}_total" if kind == "counter" else family_name
            families[key].add_sample(sample, labels, value)
        return out


def exposition(*collectors: Collector) -> str:
    """The text exposition, after checking that it and the OpenMetrics one parse."""
    registry = CollectorRegistry()
    registry.register(Scraper(list(collectors), timeout=10.0))
    text = generate_latest(registry).decode()
    list(text_string_to_metric_families(text))
    list(parse_openmetrics(generate_openmetrics(registry).decode()))
    return text


def assert_valid(text: str) -> None:
    """One TYPE line per name and one sample per series, as Prometheus requires."""
    types = Counter(line.split()[2] for line in text.splitlines() if line.startswith("# TYPE"))
    assert all(count == 1 for count in types.values()), types
    series = Counter((s.name, tuple(sorted(s.labels.items())))
                     for family in text_string_to_metric_families(text) for s in family.samples)
    assert all(count == 1 for count in series.values()), series


def promtool_accepts(text: str) -> None:
    result = subprocess.run([require_binary("promtool"), "check", "metrics"], input=text,
                            capture_output=True, text=True, timeout=60)
    assert "error" not in (result.stdout + result.stderr).lower(), result.stdout + result.stderr


def success_of(text: str) -> dict[str, float]:
    return {s.labels["collector"]: s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "inferwatch_exporter_collector_success"}


def samples_of(text: str, name: str) -> list[dict[str, str]]:
    return [s.labels for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name]


def test_two_collectors_with_one_gauge_name_are_merged_into_one_valid_family() -> None:
    text = exposition(Fixed("first", [("shared_load", "gauge", {"host": "a"}, 1.0)]),
                      Fixed("second", [("shared_load", "gauge", {"host": "b"}, 2.0)]))
    assert_valid(text)
    promtool_accepts(text)
    assert sorted(labels["host"] for labels in samples_of(text, "shared_load")) == ["a", "b"]
    assert success_of(text) == {"first": 1.0, "second": 1.0}


def test_a_family_of_another_type_under_a_taken_name_is_left_out_and_fails_its_collector(
        caplog: pytest.LogCaptureFixture) -> None:
    text = exposition(Fixed("first", [("shared_load", "gauge", {"host": "a"}, 1.0)]),
                      Fixed("second", [("shared_load", "counter", {"host": "b"}, 2.0),
                                       ("own_metric", "gauge", {}, 3.0)]))
    assert_valid(text)
    promtool_accepts(text)
    assert samples_of(text, "shared_load") == [{"host": "a"}]
    assert samples_of(text, "own_metric") == [{}]  # what does not clash is kept
    assert success_of(text) == {"first": 1.0, "second": 0.0}
    assert any("second" in r.getMessage() and "shared_load" in r.getMessage()
               for r in caplog.records)


def test_the_same_series_from_two_collectors_is_exposed_once() -> None:
    text = exposition(Fixed("first", [("shared_load", "gauge", {"host": "a"}, 1.0)]),
                      Fixed("second", [("shared_load", "gauge", {"host": "a"}, 2.0)]))
    assert_valid(text)
    promtool_accepts(text)
    assert success_of(text) == {"first": 1.0, "second": 0.0}


def test_a_collector_cannot_take_over_the_exporters_own_families() -> None:
    text = exposition(Fixed("rogue", [("inferwatch_exporter_build_info", "gauge",
                                       {"version": "fake"}, 1.0)]))
    assert_valid(text)
    assert [labels["version"] for labels in samples_of(text, "inferwatch_exporter_build_info")
            ] != ["fake"]
    assert success_of(text) == {"rogue": 0.0}


_FAMILY = st.tuples(st.sampled_from(["m_a", "m_b", "m_a_total", "m_b_count"]),
                    st.sampled_from(["gauge", "counter", "untyped"]),
                    st.fixed_dictionaries({"k": st.sampled_from(["1", "2"])}),
                    st.floats(0, 10))


# A series given twice inside one family is the collector's own affair; across families
# (one collector twice, or two collectors) the scrape must keep it once.
_FAMILIES = st.lists(_FAMILY, max_size=4, unique_by=lambda f: (f[0], f[1], f[2]["k"]))


@settings(max_examples=60)
@given(first=_FAMILIES, second=_FAMILIES)
def test_whatever_collectors_return_the_exposition_stays_valid(first, second) -> None:
    text = exposition(Fixed("first", first), Fixed("second", second))
    assert_valid(text)
    assert set(success_of(text)) == {"first", "second"}


# --- flags given twice ------------------------------------------------------------------------

@pytest.mark.parametrize("flag, first, second", [
    ("--web.listen-address", "127.0.0.1:9500", "127.0.0.1:9501"),
    ("--web.telemetry-path", "/a", "/b"),
    ("--web.config.file", "/etc/a.yml", "/etc/b.yml"),
    ("--web.max-requests", "2", "8"),
    ("--scrape.timeout", "2", "10"),
    ("--scrape.timeout", "5", "5"),
    ("--log.level", "info", "debug"),
    ("--log.format", "logfmt", "json"),
    ("--multiproc.dir", "/tmp/a", "/tmp/b"),
])
def test_a_one_value_flag_given_twice_is_refused_naming_it(flag: str, first: str, second: str,
                                                           run_main) -> None:
    code, err = run_main([f"{flag}={first}", flag, second])
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert f"argument {flag}" in last and "more than once" in last
    assert "Traceback" not in err


def test_repeatable_flags_stay_repeatable() -> None:
    args = cli.build_parser().parse_args([
        "--process.pidfile=/run/a.pid", "--process.pidfile=/run/b.pid",
        "--process.pid=1", "--process.pid=2", "--process.name=a", "--process.name=b"])
    assert args.process_pidfiles == ["/run/a.pid", "/run/b.pid"]
    assert args.process_pids == [1, 2]
    assert args.process_names == ["a", "b"]


def _subcommand_parsers() -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    """Every (sub)command of `inferwatch`, nested ones too, with the words that reach it."""
    def walk(words: list[str], parser: argparse.ArgumentParser):
        yield words, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk([*words, name], child)

    yield from walk([], inferwatch_cli.build_parser())


SUBCOMMANDS = [pytest.param(words, parser, id=" ".join(words) or "inferwatch")
               for words, parser in _subcommand_parsers()]


def _a_value(action: argparse.Action) -> str:
    """A value the flag takes."""
    if action.choices:
        return str(next(iter(action.choices)))
    for candidate in ("1", "2024-01-01T00:00:00Z", "x"):
        try:
            if action.type is not None:
                action.type(candidate)
        except (argparse.ArgumentTypeError, ValueError, TypeError):
            continue
        return candidate
    raise AssertionError(f"no value for {action.option_strings}")


def _one_value_flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions
            if action.option_strings and isinstance(action, argparse._StoreAction)]


def test_every_subcommand_has_one_value_flags_to_check() -> None:
    assert sum(len(_one_value_flags(parser)) for _, parser in _subcommand_parsers()) >= 10


@pytest.mark.parametrize("words, parser", SUBCOMMANDS)
def test_a_one_value_flag_of_a_subcommand_given_twice_is_refused(
        words: list[str], parser: argparse.ArgumentParser,
        capsys: pytest.CaptureFixture[str]) -> None:
    for action in _one_value_flags(parser):
        flag, value = action.option_strings[-1], _a_value(action)
        with pytest.raises(SystemExit) as exit_info:
            inferwatch_cli.main([*words, flag, value, action.option_strings[0], value])
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert exit_info.value.code == 2, flag
        assert "more than once" in last and flag in last, last


# --- abbreviated flags ------------------------------------------------------------------------

# What a subcommand needs besides its flags, so that its error is about the flag.
REQUIRED = {"profile": ["data.csv", "-o", "profile.json"], "report": ["-o", "report.html"],
            "events": ["tail", "events.jsonl"], "events tail": ["events.jsonl"],
            "events query": ["events.jsonl"]}


@pytest.mark.parametrize("words, parser", SUBCOMMANDS)
def test_a_prefix_of_a_subcommand_flag_is_not_taken_for_it(
        words: list[str], parser: argparse.ArgumentParser) -> None:
    flags = [flag for action in parser._actions for flag in action.option_strings
             if flag.startswith("--") and len(flag) > 4]
    taken = set(parser._option_string_actions)
    for flag in flags:
        prefix = flag[:-2]
        if prefix in taken:
            continue
        # Parsed only, as main() parses it: taken for the flag, `demo --onc` would run.
        _, extra = inferwatch_cli.build_parser().parse_known_args(
            [*words, prefix, *REQUIRED.get(" ".join(words), [])])
        assert prefix in extra, (words, prefix)


def test_the_generate_flags_users_abbreviate_are_refused(
        tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["generate", "--conf", "x.yml", "--out", str(tmp_path)],
                 ["generate", "--rules", "--out", str(tmp_path)],
                 # -5: a rate --rate refuses, so that a demo never starts from here.
                 ["demo", "--rat", "-5"]):
        with pytest.raises(SystemExit) as exit_info:
            inferwatch_cli.main(argv)
        assert exit_info.value.code == 2
        assert "unrecognized arguments" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was generated from a half-read command


# --- --help ---------------------------------------------------------------------------------

@pytest.mark.parametrize("words, parser", SUBCOMMANDS)
def test_help_of_every_subcommand_works(words: list[str], parser: argparse.ArgumentParser,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        inferwatch_cli.main([*words, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and " ".join(["inferwatch", *words]) in out


# --- generate with an empty path ------------------------------------------------------------

@pytest.mark.parametrize("argv, flag", [
    (["generate", "--out", ""], "--out"),
    (["generate", "--out", "  "], "--out"),
    (["generate", "--config", "", "--out", "out"], "--config"),
    (["generate", "--check", "--out", ""], "--out"),
])
def test_generate_refuses_an_empty_path_instead_of_using_the_current_directory(
        argv: list[str], flag: str, tmp_path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # `--out "$UNSET"` run from somewhere that matters
    assert inferwatch_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"{flag} is empty" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


# --- logs one record per line -----------------------------------------------------------------

@given(message=st.text(max_size=40))
def test_a_logfmt_record_is_one_printable_line_whatever_the_message(message: str) -> None:
    import logging

    record = logging.makeLogRecord({"msg": "%s", "args": (message,), "levelno": 30,
                                    "levelname": "WARNING", "name": "inferwatch.standalone"})
    line = cli.LogfmtFormatter().format(record)
    assert len(line.splitlines()) == 1 and line.isprintable(), repr(line)
    assert line.split(" msg=", 1)[1].startswith(('"', message[:1]))


# --- a collector whose start-up fails ----------------------------------------------------------

class CannotStart(Collector):
    name = "cannot_start"

    def collect(self) -> list[Metric]:
        return []

    def start(self) -> None:
        raise RuntimeError("can't start new thread")


def test_a_collector_that_cannot_start_neither_crashes_the_exporter_nor_leaks_its_server(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import threading
    import urllib.error
    import urllib.request

    import inferwatch.serving.server

    servers = []
    real_serve = inferwatch.serving.server.serve

    def serve(*args, **kwargs):
        servers.append(real_serve(*args, **kwargs))
        return servers[-1]

    stop = threading.Event()
    stop.set()  # as if SIGTERM came at once
    monkeypatch.setattr(inferwatch.serving.server, "serve", serve)
    monkeypatch.setattr(cli, "registered_collectors", lambda: {"cannot_start": CannotStart})
    monkeypatch.setattr(cli, "configure_logging", lambda level, fmt: None)
    monkeypatch.setattr(cli, "_stop_on_signals", lambda: stop)
    try:
        assert cli.main(["--web.listen-address=127.0.0.1:0"]) == 0
        assert any("cannot_start could not start" in r.getMessage() for r in caplog.records)
        with pytest.raises(urllib.error.URLError):  # main itself closed it
            urllib.request.urlopen(servers[0].url, timeout=5)
    finally:
        for server in servers:
            server.shutdown()
