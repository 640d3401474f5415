"""A job renamed in `selectors.model` / `selectors.exporter` alone moves the monitors' job.

A file setting `selectors.model: job="my-model"` and no `kubernetes.model_job` was accepted,
while the generated ServiceMonitor still relabelled its targets job="inferwatch-model": every
rule and panel read nothing. The job of a selector's one `job="X"` matcher is now the job the
monitor gives its targets, so the two agree; checked on the config, on the manifests the
`generate` command writes, on job names drawn by Hypothesis, and with a real Prometheus
relabelling a real model's target as the generated ServiceMonitor does.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import inferwatch
from config_errors import error_for
from conftest import free_port, require_binary
from inferwatch.core.registry import Registry
from inferwatch.generate import _yaml, render, rule_files
from inferwatch.generate import config_checks as check
from inferwatch.generate.config import DEFAULT, from_dict
from inferwatch.generate.kubernetes import pod_monitor, service_monitor
from inferwatch.generate.promql import quoted
from inferwatch.serving.bridge import InferwatchCollector
from processes import Prometheus, stop, wait_ready

HOST = "127.0.0.1"
# (selector key, job key, the monitor writing the job label) of each side.
SIDES = {"model": ("kubernetes.model_job", service_monitor, "endpoints"),
         "exporter": ("kubernetes.exporter_job", pod_monitor, "podMetricsEndpoints")}


def relabelled_job(cfg, side: str) -> str:
    """The job the generated monitor gives its targets, as Prometheus reads the replacement
    (the manifest doubles a $, which Prometheus would otherwise expand)."""
    _, monitor, endpoints = SIDES[side]
    endpoint = yaml.safe_load(_yaml(monitor(cfg)))["spec"][endpoints][0]
    relabel = next(r for r in endpoint["relabelings"] if r.get("targetLabel") == "job")
    return relabel["replacement"].replace("$$", "$")


@pytest.mark.parametrize("side", sorted(SIDES))
@pytest.mark.parametrize("selector", ['job="my-model"', 'job="my-model", cluster="eu"',
                                      'cluster=~"eu-.*", job="my-model"',
                                      '"job"="my-model"'])
def test_a_selector_naming_one_job_moves_the_monitor_job(side: str, selector: str) -> None:
    cfg = from_dict({"selectors": {side: selector}})
    assert getattr(cfg.selectors, side) == selector
    assert relabelled_job(cfg, side) == "my-model"
    other = "exporter" if side == "model" else "model"
    assert relabelled_job(cfg, other) == relabelled_job(DEFAULT, other)
    assert getattr(cfg.selectors, other) == getattr(DEFAULT.selectors, other)


def test_one_job_for_both_selectors_labels_both_monitors_alike() -> None:
    cfg = from_dict({"selectors": {"model": 'job="app"', "exporter": 'job="app"'}})
    assert relabelled_job(cfg, "model") == relabelled_job(cfg, "exporter") == "app"


@pytest.mark.parametrize("selector", ['cluster="eu"', 'job=~"ml-.*"', 'job!="batch"',
                                      'job=""', 'job=" ml "'])
def test_a_selector_naming_no_one_job_leaves_the_monitor_job(selector: str) -> None:
    """No single job a monitor could give: a regex or a negative matcher names none, and
    an empty or padded job name is one a monitor cannot give (kubernetes.model_job refuses
    it); the Kubernetes job is the default, as before."""
    cfg = from_dict({"selectors": {"model": selector}})
    assert cfg.kubernetes.model_job == DEFAULT.kubernetes.model_job


def test_a_job_the_file_sets_is_kept_and_still_checked_against_the_selector() -> None:
    cfg = from_dict({"selectors": {"model": 'job=~"ml-.*"'},
                     "kubernetes": {"model_job": "ml-model"}})
    assert relabelled_job(cfg, "model") == "ml-model"
    error = error_for({"selectors": {"model": 'job="a"'}, "kubernetes": {"model_job": "b"}})
    assert error.key == "selectors.model" and "kubernetes.model_job" in error.problem


def test_a_derived_job_the_selector_itself_refuses_is_reported() -> None:
    """job="a", job!="a" selects nothing: the job derived from it fails its other matcher."""
    error = error_for({"selectors": {"exporter": 'job="a", job!="a"'}})
    assert error.key == "selectors.exporter"
    assert 'job!="a"' in error.problem and "kubernetes.exporter_job" in error.problem


# Job names as users write them: any text a monitor can give (kubernetes.*_job accepts it).
_JOBS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=16).filter(
    lambda job: check.job_name(job) is None)


@settings(max_examples=50, deadline=None)
@given(job=_JOBS, side=st.sampled_from(sorted(SIDES)), extra=st.booleans())
def test_any_job_a_selector_names_is_the_job_its_monitor_gives(job: str, side: str,
                                                               extra: bool) -> None:
    selector = f"job={quoted(job)}" + (', cluster="eu"' if extra else "")
    cfg = from_dict({"selectors": {side: selector}})
    assert relabelled_job(cfg, side) == job
    # The rules select the targets the monitor labels: the selector's job matcher passes it.
    name, op, value, _, _ = check.label_matcher(getattr(cfg.selectors, side), 0)
    assert (name, op, value) == ("job", "=", job)


def test_the_generated_manifests_follow_a_renamed_selector() -> None:
    files = render(from_dict({"selectors": {"model": 'job="my-model"',
                                            "exporter": 'job="my-exporter"'}}))
    monitor = yaml.safe_load(files["alerts/kubernetes/servicemonitor.yaml"])
    pods = yaml.safe_load(files["alerts/kubernetes/podmonitor.yaml"])
    assert monitor["spec"]["endpoints"][0]["relabelings"][0]["replacement"] == "my-model"
    assert pods["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["replacement"] == \
        "my-exporter"
    rules = yaml.safe_load(files["alerts/kubernetes/prometheusrule.yaml"])
    text = yaml.safe_dump(rules)
    assert 'job="my-model"' in text and 'job="inferwatch-model"' not in text


# --- live: Prometheus relabelling a model's target as the generated ServiceMonitor does ---------



class _Model:
    def predict(self, x: Any) -> np.ndarray:
        return np.asarray(x, float)[:, 0]


@pytest.fixture()
def model_target() -> Iterator[str]:
    registry = Registry()
    model = inferwatch.instrument(_Model(), name="fraud", version="1", registry=registry)
    exposed = CollectorRegistry()
    exposed.register(InferwatchCollector(registry))
    port = free_port()
    server = inferwatch.serve(port=port, addr=HOST, registry=exposed)
    done = threading.Event()

    def traffic() -> None:
        while not done.is_set():
            model.predict(np.ones((2, 1)))
            done.wait(0.02)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        yield f"{HOST}:{port}"
    finally:
        done.set()
        thread.join(5)
        server.shutdown()


@pytest.mark.integration
def test_rules_read_the_target_the_generated_service_monitor_labels(
        tmp_path: Path, model_target: str) -> None:
    cfg = from_dict({"selectors": {"model": 'job="my-model"'}, "windows": {"rate": "4s"},
                     "kubernetes": {"scrape_interval": "1s"}})
    files = render(cfg)
    rule_paths = []
    for relative, content in rule_files(files).items():
        path = tmp_path / Path(relative).name
        path.write_text(content, encoding="utf-8")
        rule_paths.append(str(path))
    endpoint = yaml.safe_load(files["alerts/kubernetes/servicemonitor.yaml"])["spec"][
        "endpoints"][0]
    # The operator turns each relabeling into a relabel_config of the scrape job it writes,
    # which it names after the monitor, not after the job the rules select.
    relabel_configs = [{"action": r["action"], "target_label": r["targetLabel"],
                        "replacement": r["replacement"]} for r in endpoint["relabelings"]]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rule_paths,
        "scrape_configs": [{"job_name": "serviceMonitor/ml/inferwatch-model/0",
                            "static_configs": [{"targets": [model_target]}],
                            "relabel_configs": relabel_configs}]}))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [require_binary("prometheus"), f"--config.file={config}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address={HOST}:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://{HOST}:{port}/-/ready", process=process)
        prometheus = Prometheus(f"http://{HOST}:{port}")
        up = prometheus.wait_for(f"up{{{cfg.selectors.model}}} == 1")
        assert {s["metric"]["job"] for s in up} == {"my-model"}
        # A recording rule on the selector reads the relabelled target's calls.
        recorded = prometheus.wait_for("model:inferwatch_requests:rate4s > 0", timeout=60)
        assert {s["metric"]["model"] for s in recorded} == {"fraud"}
    finally:
        stop(process)
        log.close()



@pytest.mark.parametrize("job", ["0\x850", "a\u2028b", "line\nbreak", "0\x85\n1"])
def test_a_job_holding_a_line_break_reaches_the_monitor_unchanged(job: str) -> None:
    # YAML reads a NEL written plain as a line break and folded it into a space: the monitor
    # labelled its targets with another job than the rules select.
    files = render(from_dict({"kubernetes": {"model_job": job}}))
    monitor = yaml.safe_load(files["alerts/kubernetes/servicemonitor.yaml"])
    assert monitor["spec"]["endpoints"][0]["relabelings"][0]["replacement"] == job
