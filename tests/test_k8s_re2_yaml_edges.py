"""Edges of the generated Kubernetes monitors and of RE2 regex checks: a job name holding a $
keeps it once Prometheus relabels, parentheses RE2 refuses are refused, and anchors match and
repeat as RE2 reads them."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import free_port, require_binary
from inferwatch.generate import kubernetes
from inferwatch.generate.config import ConfigError, from_dict
from inferwatch.generate.promql import quoted
from inferwatch.generate.re2 import Unsupported, matches, python_regex
from processes import stop, wait_ready
from promtool_cases import assert_promtool_passes
from test_re2_syntax import accepted, promtool_refusals

# --- a $ in a job name -------------------------------------------------------------------------

_JOBS = ["model-$env", "exp-${1}x", "cost$", "$$double", "a$1b"]


def _relabel_config(relabelings: list[dict]) -> list[dict]:
    """The operator's relabelings as Prometheus config spells them."""
    names = {"targetLabel": "target_label", "sourceLabels": "source_labels"}
    return [{names.get(key, key): value for key, value in rule.items()} for rule in relabelings]


@pytest.mark.integration
def test_a_job_name_holding_a_dollar_keeps_it_once_prometheus_relabels(tmp_path: Path) -> None:
    """The monitors set job by relabeling, which expands $1 and ${name} in the replacement: a
    job `model-$env` became `model-`, and the rules selecting job="model-$env" read nothing."""
    cfg = from_dict({"kubernetes": {"model_job": _JOBS[0], "exporter_job": _JOBS[1]},
                     "selectors": {"model": f"job={quoted(_JOBS[0])}",
                                   "exporter": f"job={quoted(_JOBS[1])}"}})
    endpoints = [kubernetes.service_monitor(cfg)["spec"]["endpoints"][0],
                 kubernetes.pod_monitor(cfg)["spec"]["podMetricsEndpoints"][0]]
    others = [from_dict({"kubernetes": {"model_job": job}}) for job in _JOBS[2:]]
    endpoints += [kubernetes.service_monitor(other)["spec"]["endpoints"][0] for other in others]
    config = {"global": {"scrape_interval": "1h"}, "scrape_configs": [
        {"job_name": f"j{place}", "static_configs": [{"targets": [f"127.0.0.1:{free_port()}"]}],
         "relabel_configs": _relabel_config(endpoint["relabelings"])}
        for place, endpoint in enumerate(endpoints)]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [require_binary("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/-/ready", process=process)
        deadline, jobs = time.monotonic() + 30, {}
        while time.monotonic() < deadline and len(jobs) < len(endpoints):
            with urllib.request.urlopen(f"{url}/api/v1/targets", timeout=10) as response:
                active = json.load(response)["data"]["activeTargets"]
            jobs = {target["scrapePool"]: target["labels"]["job"] for target in active}
            time.sleep(0.2)
    finally:
        stop(process)
        log.close()
    assert jobs == {f"j{place}": job for place, job in enumerate(_JOBS)}


@given(st.text(st.sampled_from("ab$-{}1_"), min_size=1, max_size=12))
def test_every_dollar_of_a_job_name_is_escaped_for_relabeling(job: str) -> None:
    cfg = from_dict({"kubernetes": {"model_job": job}})
    replacement = kubernetes.service_monitor(cfg)["spec"]["endpoints"][0]["relabelings"][0][
        "replacement"]
    # Go's Expand reads $$ as a $ and any other $ as the start of a reference.
    assert replacement.replace("$$", "").count("$") == 0
    assert replacement.replace("$$", "$") == job


# --- parentheses RE2 refuses -------------------------------------------------------------------

_UNBALANCED = ["(?i)fraud)(churn", "(?i)(fraud", "(?i)a)b(?i:c", "(?m)(x|y", "fraud)|(?i)x",
               "(?i:a))"]


@pytest.mark.parametrize("pattern", _UNBALANCED)
def test_a_parenthesis_without_its_pair_is_refused(pattern: str) -> None:
    """Python read the ) as closing the group opened for (?i) and accepted the pattern: the
    rules then failed to load in Prometheus."""
    with pytest.raises(Unsupported, match="not a valid regex"):
        python_regex(pattern)
    with pytest.raises(ConfigError) as caught:
        from_dict({"models": {pattern: {"slo": {"availability": 0.99}}}})
    assert caught.value.key == f"models.{pattern}"


@pytest.mark.integration
def test_promtool_refuses_the_unbalanced_patterns_too() -> None:
    assert set(promtool_refusals(_UNBALANCED)) == set(_UNBALANCED)


_PIECES = st.sampled_from(["(", ")", "(?i)", "(?m)", "(?i:", "(?:", "a", "|"])


@settings(max_examples=300)
@given(st.lists(_PIECES, min_size=1, max_size=8))
def test_a_pattern_is_accepted_exactly_when_its_parentheses_pair_up(pieces: list[str]) -> None:
    depth, balanced = 0, True
    for piece in pieces:
        depth += piece.endswith(("(", ":")) - (piece == ")")
        balanced = balanced and depth >= 0
    assert accepted("".join(pieces)) == (balanced and depth == 0)


# --- anchors ---------------------------------------------------------------------------------

_NAMES = ["fraud", "fraud\n", "fraud\n\n", "\nfraud", "churn"]
_ANCHORED = ["fraud$\\n?", "fraud$\\n*", "fraud\\z\\n?", "(?m)fraud$\\n?", "fraud$(?m)\\n?",
             "(?m:fraud$)\\n?", "(?m)(fraud$)\\n?", "(?m)(?-m:fraud$)\\n?", "(?P<m>fraud)$\\n?",
             "fraud$|churn$", "\\n?^fraud", "(?m)\\n?^fraud"]


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("fraud$\\n?", "fraud\n", False), ("fraud$\\n?", "fraud", True),
    ("(?m)fraud$\\n?", "fraud\n", True), ("fraud$(?m)\\n?", "fraud\n", False),
    ("(?m)(?-m:fraud$)\\n?", "fraud\n", False), ("(?P<m>fraud)$\\n?", "fraud\n", False),
    ("(fraud$(?m))\\n?", "fraud\n", False),
])
def test_a_dollar_without_the_m_flag_matches_only_at_the_very_end(pattern: str, name: str,
                                                                   expected: bool) -> None:
    """Python's $ also matches before a final newline, RE2's only at the end of the text."""
    assert matches(pattern, name) is expected


@pytest.mark.integration
def test_promtool_matches_anchored_names_as_python_does() -> None:
    series = [{"series": f"up{{job={quoted(name)}, instance=\"i\"}}", "values": "1"}
              for name in _NAMES]
    cases = [{"interval": "1m", "input_series": series, "promql_expr_test": [{
        "expr": f"count by (job) (up{{job=~{quoted(pattern)}}})", "eval_time": "0m",
        "exp_samples": [{"labels": f"{{job={quoted(name)}}}", "value": 1}
                        for name in _NAMES if matches(pattern, name)]}]}
        for pattern in _ANCHORED]
    with tempfile.TemporaryDirectory() as tmp:
        assert_promtool_passes(Path(tmp), cases=cases)


_REPEATED_ANCHORS = ["^*fraud", "^?fraud", "fraud$?", "fraud$*", "\\A+fraud", "fraud\\z{0}",
                     "(?i)^{2}fraud$+"]


@pytest.mark.parametrize("pattern", _REPEATED_ANCHORS)
def test_a_repeated_anchor_is_accepted_as_re2_accepts_it(pattern: str) -> None:
    """Python refuses to repeat ^, $, \\A and \\z ("nothing to repeat"); RE2 does not."""
    assert matches(pattern, "fraud")
    assert not matches(pattern, "fraudx")


@pytest.mark.integration
def test_promtool_accepts_repeated_anchors() -> None:
    assert promtool_refusals(_REPEATED_ANCHORS) == {}
