"""Generator config errors that used to mislead: runbook patterns Python's str.format reads
otherwise, keys YAML 1.1 reads as booleans, 08 and 09, tags PyYAML cannot build, and job
names padded with space."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.generate import cli, render, rule_files
from inferwatch.generate.config import ConfigError, from_dict, load

FIXTURE_OK = settings(max_examples=40, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


def cli_error(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> str:
    """The one line `inferwatch generate` prints for a config it refuses with status 2."""
    config = tmp_path / "inferwatch.yaml"
    config.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    assert run_cli("--config", str(config), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()
    return err


def load_error(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "inferwatch.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(path)
    return caught.value


# --- 1. runbook_url: only a bare {anchor} ------------------------------------------------------


@pytest.mark.parametrize(("pattern", "written"), [
    ("https://x/{anchor:>}", "{anchor:>}"),
    ("https://x/{anchor!z}", "{anchor!z}"),
    ("https://x/{anchor!r}", "{anchor!r}"),
    ("https://x/#{anchor:d}", "{anchor:d}"),
    ("https://x/{anchor:>40}", "{anchor:>40}"),
])
def test_a_format_spec_or_conversion_on_anchor_is_named_not_called_a_brace(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], pattern: str, written: str) -> None:
    """It read "must be an http(s) URL without spaces or braces", though {anchor} is braces."""
    err = cli_error(tmp_path, f'links:\n  runbook_url: "{pattern}"\n', capsys)
    assert "links.runbook_url: " in err
    assert f"writes {written}" in err and "format spec" in err and "conversion" in err
    assert "the only field allowed" in err and "{anchor}" in err


@pytest.mark.parametrize(("pattern", "written"), [
    ("https://x/{nme}", "{nme}"),
    ("https://x/{anchor[0]}", "{anchor[0]}"),
    ("https://x/{anchor.upper}", "{anchor.upper}"),
    ("https://x/{}", "{}"),
])
def test_an_unknown_field_is_named_with_the_one_allowed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], pattern: str, written: str) -> None:
    err = cli_error(tmp_path, f'links:\n  runbook_url: "{pattern}"\n', capsys)
    assert f"links.runbook_url: has the field {written}; the only field allowed is " \
           f"{{anchor}}" in err


def test_a_broken_pattern_names_the_key_and_the_allowed_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = cli_error(tmp_path, 'links:\n  runbook_url: "https://x/{anchor"\n', capsys)
    assert "links.runbook_url: is not a valid pattern" in err
    assert "the only field allowed is {anchor}" in err


_PATTERN_PARTS = st.sampled_from(["{anchor}", "{anchor:}", "{anchor!s}", "{anchor:>}", "{",
                                  "}", "{{", "}}", "{x}", "{0}", "{anchor", "!", ":", "a", "#",
                                  "/", "?q=", " ", "{anchor[0]}"])


@settings(max_examples=200, deadline=None)
@given(st.lists(_PATTERN_PARTS, max_size=6).map("".join))
def test_a_runbook_pattern_is_accepted_exactly_when_it_renders_a_url(tail: str) -> None:
    """Accepted: every alert's runbook_url is the URL with the anchor filled in, as written.
    Refused: a ConfigError naming the key, never another exception when the rules are made."""
    pattern = f"https://runbooks.example/{tail}"
    try:
        cfg = from_dict({"links": {"runbook_url": pattern}})
    except ConfigError as exc:
        assert exc.key == "links.runbook_url"
        assert "{anchor}" in exc.problem
        return
    urls = {rule["annotations"]["runbook_url"]
            for text in rule_files(render(cfg)).values()
            for group in yaml.safe_load(text)["groups"] for rule in group["rules"]
            if "alert" in rule}
    assert urls
    for url in urls:
        assert re.fullmatch(r"https?://[^\s{}]+", url), url
        assert url.startswith("https://runbooks.example/")


# --- 2. keys YAML 1.1 reads as booleans, null or another number --------------------------------


@pytest.mark.parametrize(("text", "key", "read_as"), [
    ("on: 1\n", "on", "True"),
    ("slo:\n  yes: 1\n", "slo.yes", "True"),
    ("models:\n  fraud:\n    off: 1\n", "models.fraud.off", "False"),
    ("alerts:\n  No: {}\n", "alerts.No", "False"),
    ("pushgateway:\n  jobs:\n    ~: 26h\n", "pushgateway.jobs.~", "None"),
    ("pushgateway:\n  jobs:\n    017: 26h\n", "pushgateway.jobs.017", "15"),
    ("on: 1\nyes: 2\n", "on", "True"),  # was "True: is given twice"
])
def test_a_key_yaml_misreads_is_shown_as_written(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 text: str, key: str, read_as: str) -> None:
    err = cli_error(tmp_path, text, capsys)
    assert f": {key}: is a key YAML 1.1 reads as " in err, err
    assert f"({read_as})" in err and "quote it" in err
    assert "given twice" not in err


_BOOL_SPELLINGS = [word for base in ("yes", "no", "true", "false", "on", "off")
                   for word in (base, base.capitalize(), base.upper())]


@FIXTURE_OK
@given(st.sampled_from(_BOOL_SPELLINGS),
       st.sampled_from(["", "slo:\n  ", "baselines:\n  traffic:\n    ",
                        "models:\n  fraud:\n    ", "kubernetes:\n  labels:\n    "]))
def test_every_yaml11_boolean_key_is_named_as_written(tmp_path: Path, word: str,
                                                      where: str) -> None:
    error = load_error(tmp_path, f"{where}{word}: 1\n")
    assert error.key.split(".")[-1] == word  # as written, not str(True)
    assert f"reads as a boolean ({word.lower() in ('yes', 'true', 'on')})" in error.problem


def test_a_quoted_on_is_an_unknown_key_named_on(tmp_path: Path) -> None:
    error = load_error(tmp_path, "slo:\n  'on': 1\n")
    assert error.key == "slo.on" and "unknown key" in error.problem


def test_text_keys_that_read_the_same_are_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "inferwatch.yaml"
    path.write_text("pushgateway:\n  jobs:\n    'on': 26h\n    nightly-2: 2d\n")
    assert dict(load(path).pushgateway.jobs) == {"on": "26h", "nightly-2": "2d"}


# --- tags PyYAML cannot build, and dates that do not exist --------------------------------------


@pytest.mark.parametrize(("text", "key"), [
    ("dashboards:\n  datasource: !!bool maybe\n", "dashboards.datasource"),
    ("latency:\n  p99_seconds: !!float ''\n", "latency.p99_seconds"),
    ("accuracy:\n  min_outcomes: !!int ''\n", "accuracy.min_outcomes"),
    ("dashboards:\n  time_from: !!timestamp soon\n", "dashboards.time_from"),
    ("!!bool slo:\n  availability: 0.99\n", "slo"),
    ("dashboards:\n  tags: [a, !!bool b]\n", "dashboards.tags[1]"),
])
def test_a_tag_its_text_cannot_be_is_a_config_error_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str) -> None:
    """PyYAML raised KeyError, IndexError or AttributeError for these, out of the CLI."""
    err = cli_error(tmp_path, text, capsys)
    assert f": {key}: is tagged !!" in err and "line" in err


def test_a_date_that_does_not_exist_names_its_key_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = cli_error(tmp_path, "dashboards:\n  time_from: 2026-02-30\n", capsys)
    assert "dashboards.time_from: is 2026-02-30" in err and "line 2" in err
    assert "quote it" in err


# --- 3. 08 and 09 ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "key", "meant"), [
    ("accuracy:\n  min_outcomes: 08\n", "accuracy.min_outcomes", "8"),
    ("latency:\n  p99_seconds: 09\n", "latency.p99_seconds", "9"),
    ("models:\n  fraud:\n    accuracy: {min_outcomes: 0089}\n",
     "models.fraud.accuracy.min_outcomes", "89"),
])
def test_08_and_09_say_why_they_are_text_and_what_to_write(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str,
        meant: str) -> None:
    err = cli_error(tmp_path, text, capsys)
    assert f"{key}: must be " in err
    assert "octal" in err and err.rstrip().endswith(f"write {meant})")


@FIXTURE_OK
@given(zeros=st.integers(1, 3), number=st.integers(8, 10**6),
       key=st.sampled_from(["drift.min_observations", "gpu.temperature_celsius"]))
def test_any_leading_zero_number_with_an_8_or_9_gets_the_number_to_write(
        tmp_path: Path, zeros: int, number: int, key: str) -> None:
    if not set(str(number)) & set("89"):
        return  # octal digits only: refused as octal when parsed (test_generate_config_numerals)
    section, name = key.split(".")
    error = load_error(tmp_path, f"{section}:\n  {name}: {'0' * zeros}{number}\n")
    assert error.key == key
    assert f"write {number})" in error.problem


# --- 4. job names ------------------------------------------------------------------------------


@pytest.mark.parametrize("job", [" nightly", "nightly ", "nightly\n", "\tnightly"])
def test_a_pushgateway_job_padded_with_space_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], job: str) -> None:
    """The rules match the job exactly: the period would apply to no group, and the job pushed
    as `nightly` would be judged by max_age."""
    quoted = job.replace("\n", "\\n").replace("\t", "\\t")
    err = cli_error(tmp_path, f'pushgateway:\n  jobs:\n    "{quoted}": 26h\n', capsys)
    assert "pushgateway.jobs: has the job name" in err
    assert "'nightly'" in err


def test_a_pushgateway_job_with_an_inner_newline_is_selected_exactly(tmp_path: Path) -> None:
    """A job holding a newline can be pushed (the Pushgateway's job@base64 path): the rules
    select it as written, escaped in the PromQL string, and the CLI writes them."""
    config = tmp_path / "inferwatch.yaml"
    config.write_text('pushgateway:\n  jobs:\n    "night\\nly": 26h\n', encoding="utf-8")
    assert run_cli("--config", str(config), "--out", str(tmp_path / "out"), "--rules-only") == 0
    rules = yaml.safe_load((tmp_path / "out" / "alerts" / "alerting-rules.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]
             if rule.get("alert") == "InferwatchPushgatewayGroupStale"]
    assert len(exprs) == 1
    assert 'job="night\\nly"' in exprs[0] and 'job!="night\\nly"' in exprs[0]
