"""Config checks between the Kubernetes output and the rest, where a wrong value made alerts
silently read nothing or a manifest fail to apply.

- A selector whose job matchers (a regex, a negative or repeated one) the job the generated
  monitors give their targets fails was accepted whenever the file left that job at its
  default: with a `kubernetes:` section every job matcher is now checked against it, the
  regex anchored as Prometheus anchors it; two `job="..."` of different jobs are refused.
- Text Go's YAML reader takes for a number once it drops `_` (`1_0e3`) was written plain:
  checked against a port of go-yaml's resolver and Go's strconv syntax.
- A Secret key `.` was accepted, which Kubernetes refuses as a data key.
"""

from __future__ import annotations

import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from config_errors import error_for
from inferwatch.generate import _go_reads_as_no_string, _yaml, render
from inferwatch.generate.config import DEFAULT, from_dict

MODEL_JOB = DEFAULT.kubernetes.model_job
EXPORTER_JOB = DEFAULT.kubernetes.exporter_job

# --- selectors against the job of the monitors -----------------------------------------------


@pytest.mark.parametrize(("side", "selector", "matcher"), [
    ("model", 'job=~"ml-.*"', 'job=~"ml-.*"'),
    # Anchored as Prometheus anchors it: a part of the job is no match.
    ("model", 'job=~"inferwatch"', 'job=~"inferwatch"'),
    ("model", 'job=~"model"', 'job=~"model"'),
    ("model", f'job!="{MODEL_JOB}"', f'job!="{MODEL_JOB}"'),
    ("model", 'job!~"inferwatch-.*"', 'job!~"inferwatch-.*"'),
    ("model", f'job=~"{MODEL_JOB}", job!~".*-model"', 'job!~".*-model"'),
    ("model", 'cluster="eu", "job"=~`ml|serving`', '"job"=~`ml|serving`'),
    ("exporter", 'job=~"gpu.*"', 'job=~"gpu.*"'),
    ("exporter", f'job=~"{EXPORTER_JOB}|dcgm", job!="{EXPORTER_JOB}"',
     f'job!="{EXPORTER_JOB}"'),
])
@pytest.mark.parametrize("kubernetes", [{"scrape_interval": "15s"}, {"namespace": "ml"}, {}])
def test_a_job_matcher_the_default_monitor_job_fails_is_refused(
        side: str, selector: str, matcher: str, kubernetes: dict) -> None:
    error = error_for({"selectors": {side: selector}, "kubernetes": kubernetes})
    job = MODEL_JOB if side == "model" else EXPORTER_JOB
    monitor = "ServiceMonitor" if side == "model" else "PodMonitor"
    assert error.key == f"selectors.{side}"
    assert f"has the matcher {matcher}," in error.problem
    assert f"the job {job!r} the {monitor} gives its targets" in error.problem
    assert f"kubernetes.{side}_job, its default" in error.problem
    assert "read nothing" in error.problem


@pytest.mark.parametrize("selector", [
    'job=~"inferwatch-.*"', f'job=~"{MODEL_JOB}|ml"', 'job!="batch"', 'job!~"ml-.*"',
    'cluster="eu"', f'job="{MODEL_JOB}", job=~"inferwatch-m.*"', f'job=~"(?i){MODEL_JOB.upper()}"',
])
def test_a_selector_the_default_monitor_job_passes_loads(selector: str) -> None:
    cfg = from_dict({"selectors": {"model": selector}, "kubernetes": {"namespace": "ml"}})
    assert cfg.selectors.model == selector
    assert cfg.kubernetes.model_job == MODEL_JOB


@pytest.mark.parametrize("selector", ['job=~"ml-.*"', 'job!="inferwatch-model"'])
def test_without_the_kubernetes_section_the_monitor_job_is_not_held_against_a_selector(
        selector: str) -> None:
    """A file without a kubernetes: section scrapes its targets its own way."""
    assert from_dict({"selectors": {"model": selector}}).selectors.model == selector


def test_a_job_taken_from_the_selector_is_checked_against_its_other_matchers() -> None:
    error = error_for({"selectors": {"model": 'job="ml", job=~"ml-.*"'}})
    assert error.key == "selectors.model"
    assert 'has the matcher job=~"ml-.*",' in error.problem
    assert "(kubernetes.model_job, from the selector's job=\"ml\")" in error.problem


@pytest.mark.parametrize("kubernetes", [None, {"namespace": "ml"}, {"model_job": "a"}])
def test_two_job_equalities_of_different_jobs_are_refused(kubernetes: dict | None) -> None:
    data: dict = {"selectors": {"model": 'job="a", cluster="eu", job="b"'}}
    if kubernetes is not None:
        data["kubernetes"] = kubernetes
    error = error_for(data)
    assert error.key == "selectors.model"
    assert 'has the matchers job="a" and job="b", which no series passes both' in error.problem


def test_one_job_named_twice_is_that_job() -> None:
    cfg = from_dict({"selectors": {"model": 'job="ml", job="ml"'}})
    assert cfg.kubernetes.model_job == "ml"
    monitor = yaml.safe_load(render(cfg)["alerts/kubernetes/servicemonitor.yaml"])
    relabel = monitor["spec"]["endpoints"][0]["relabelings"][0]
    assert relabel["replacement"] == "ml"


@settings(max_examples=150, deadline=None)
@given(prefix=st.one_of(st.integers(0, len(MODEL_JOB)).map(lambda n: MODEL_JOB[:n]),
                        st.text(alphabet="inferwatch-model", max_size=6)),
       op=st.sampled_from(["=~", "!~"]), job=st.sampled_from([None, "ml", "inferwatch-ml"]))
def test_a_prefix_regex_is_judged_as_prometheus_matches_it(prefix: str, op: str,
                                                           job: str | None) -> None:
    kubernetes = {"scrape_interval": "15s"} if job is None else {"model_job": job}
    selector = f'job{op}"{prefix}.*"'
    data = {"selectors": {"model": selector}, "kubernetes": kubernetes}
    target = job or MODEL_JOB
    if target.startswith(prefix) == (op == "=~"):
        assert from_dict(data).kubernetes.model_job == target
    else:
        error = error_for(data)
        assert error.key == "selectors.model" and f"has the matcher {selector}," in error.problem
        assert repr(target) in error.problem


# --- text Go's YAML reader takes for a number ------------------------------------------------
# A port of go-yaml v2's resolve() (sigs.k8s.io/yaml/goyaml.v2, which kubectl and the API
# server read manifests with) and of the strconv syntax it calls, range errors left out (a
# value out of range is quoted all the same, which costs nothing).

_GO_MAP = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No", "NO", "off",
           "Off", "OFF", "true", "True", "TRUE", "false", "False", "FALSE", "", "~", "null",
           "Null", "NULL", ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf",
           "+.INF", "-.inf", "-.Inf", "-.INF"}
_YAML_STYLE_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
DIGITS = "0123456789"


def _underscore_ok(s: str) -> bool:
    saw, i = "^", 0
    if s[:1] in ("-", "+"):
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1] in "bBoOxX":
        i, saw, hexa = 2, "0", s[1] in "xX"
    for c in s[i:]:
        if c in DIGITS or (hexa and c in "abcdefABCDEF"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def _parse_uint(s: str, base: int) -> bool:
    """strconv.ParseUint's syntax, for `s` without underscores."""
    if not s:
        return False
    if base == 0:
        base = 10
        if s[0] == "0":
            if len(s) >= 3 and s[1] in "bBoOxX":
                base, s = {"b": 2, "o": 8, "x": 16}[s[1].lower()], s[2:]
            else:
                base, s = 8, s[1:]
    return all(c.lower() in "0123456789abcdef"[:base] for c in s)


def _parse_int(s: str, base: int) -> bool:
    if s[:1] in ("-", "+"):
        s = s[1:]
    return _parse_uint(s, base)


def _parse_float(s: str) -> bool:
    """strconv.ParseFloat's syntax (readFloat) for text starting with a dot."""
    i, n, underscores, sawdot, sawdigits = 0, len(s), False, False, False
    while i < n:
        c = s[i]
        if c == "_":
            underscores = True
        elif c == ".":
            if sawdot:
                break
            sawdot = True
        elif c in DIGITS:
            sawdigits = True
        else:
            break
        i += 1
    if not sawdigits:
        return False
    if i < n and s[i] in "eE":
        i += 1
        if i < n and s[i] in "+-":
            i += 1
        if i >= n or s[i] not in DIGITS:
            return False
        while i < n and (s[i] in DIGITS or s[i] == "_"):
            underscores = underscores or s[i] == "_"
            i += 1
    if underscores and not _underscore_ok(s[:i]):
        return False
    return i == n


def go_yaml_reads_as_no_string(value: str) -> bool:
    """What go-yaml v2's resolve() makes of a plain scalar: True unless a string (a
    timestamp stays a string where a string is expected)."""
    if value in _GO_MAP:
        return True
    if value[0] == ".":
        return _parse_float(value)
    if value[0] not in "+-" + DIGITS:
        return False
    plain = value.replace("_", "")
    return (_parse_int(plain, 0) or _YAML_STYLE_FLOAT.match(plain) is not None
            or (plain.startswith("0b") and _parse_int(plain[2:], 2))
            or (plain.startswith("-0b") and _parse_int("-" + plain[3:], 2)))


@pytest.mark.parametrize(("value", "number"), [
    ("1_0e3", True), ("1_.5", True), ("1e1_0", True), ("1__0.5", True), ("-1_0.5", True),
    ("+_1", True), ("1_", True), ("0x_1F", True), (".5_5", True), (".5e1_0", True),
    ("0b-1", True), ("08_1", True),
    ("_1", False), ("._5", False), (".5_", False), (".5__5", False), (".5_e1", False),
    ("-0b-1", False), ("1_e", False), ("v1_0", False),
])
def test_the_port_reads_these_as_go_does(value: str, number: bool) -> None:
    """Each case worked through go-yaml's resolve() and strconv by hand, so that the port
    the property test below compares with is itself checked."""
    assert go_yaml_reads_as_no_string(value) is number


@pytest.mark.parametrize("value", ["1_0e3", "1_.5", "1e1_0", "1__0.5", ".5_5", "0b-1"])
def test_text_go_reads_as_a_number_after_dropping_underscores_is_quoted(value: str) -> None:
    assert _go_reads_as_no_string(value)
    text = _yaml({"label": value})
    assert text.splitlines()[-1] == f"label: '{value}'"
    assert yaml.safe_load(text) == {"label": value}


@settings(max_examples=1500, deadline=None)
@given(value=st.text(alphabet="0123456789_.eE+-xXoObBaf~yYnN", min_size=1, max_size=8))
def test_quoting_matches_go_yaml_on_any_short_text(value: str) -> None:
    assert _go_reads_as_no_string(value) == go_yaml_reads_as_no_string(value), value


def test_a_label_go_reads_as_a_float_is_quoted_in_the_manifests() -> None:
    cfg = from_dict({"kubernetes": {"labels": {"build": "1_0e3",
                                               "app.kubernetes.io/part-of": "inferwatch"}}})
    manifests = {path: text for path, text in render(cfg).items() if path.endswith(".yaml")}
    assert manifests
    for path, text in manifests.items():
        assert re.search(r"^\s*build: '1_0e3'$", text, re.M), path
        assert yaml.safe_load(text)["metadata"]["labels"]["build"] == "1_0e3"


# --- Secret and ConfigMap keys Kubernetes refuses ----------------------------------------------


def _ref(key: str, kind: str = "secret") -> dict:
    return {"kubernetes": {"model_scrape": {"scheme": "https",
                                            "tls_ca": {kind: "ca", "key": key}}}}


@pytest.mark.parametrize("kind", ["secret", "config_map"])
@pytest.mark.parametrize("key", [".", "..", "..ca.crt"])
def test_a_data_key_kubernetes_refuses_is_refused_saying_why(key: str, kind: str) -> None:
    error = error_for(_ref(key, kind))
    assert error.key == "kubernetes.model_scrape.tls_ca"
    assert "Kubernetes refuses to be '.' or '..' or to start with '..'" in error.problem
    assert repr(key) in error.problem


def test_a_basic_auth_key_of_a_dot_is_refused() -> None:
    ref = {"secret": "auth", "key": "."}
    error = error_for({"kubernetes": {"exporter_scrape": {
        "basic_auth_username": ref, "basic_auth_password": {"secret": "auth", "key": "p"}}}})
    assert error.key == "kubernetes.exporter_scrape.basic_auth_username"
    assert "'.'" in error.problem


@pytest.mark.parametrize("key", [".ca", "a..b", "ca.crt", "_", "-", "a.", ".a."])
def test_data_keys_kubernetes_takes_still_load(key: str) -> None:
    cfg = from_dict(_ref(key))
    assert cfg.kubernetes.model_scrape.tls_ca["key"] == key
