"""The generated Kubernetes manifests against the Prometheus Operator's own CRD schemas.

A cluster's API server prunes fields its schema does not know, silently: a misspelled
`relabelings` would simply vanish. So this check is stricter than the server: where a schema
lists properties and does not preserve unknown fields, an unknown field is an error.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from inferwatch.generate.config import DEFAULT, from_dict
from inferwatch.generate.kubernetes import pod_monitor, prometheus_rule, service_monitor

CRDS = Path(__file__).parent / "schema" / "prometheus-operator"


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        for value in node.values():
            if isinstance(value, dict):
                stack.append(value)
            elif isinstance(value, list):
                stack.extend(value)
    return schema


def _validators() -> dict[str, jsonschema.Draft7Validator]:
    found = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        schema = _strict(version["schema"]["openAPIV3Schema"])
        schema["properties"]["metadata"] = {"type": "object"}
        found[crd["spec"]["names"]["kind"]] = jsonschema.Draft7Validator(schema)
    return found


VALIDATORS = _validators()


def _errors(document: dict[str, Any]) -> list[str]:
    validator = VALIDATORS[document["kind"]]
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)]


def _documents(cfg) -> list[dict[str, Any]]:
    # Through YAML, as kubectl would read the files.
    return [yaml.safe_load(yaml.safe_dump(build(cfg)))
            for build in (service_monitor, pod_monitor, prometheus_rule)]


def test_the_committed_manifests_are_the_ones_checked_here() -> None:
    committed = [yaml.safe_load(p.read_text()) for p in
                 sorted((Path(__file__).parents[1] / "alerts" / "kubernetes").glob("*.yaml"))]
    assert sorted(map(str, committed)) == sorted(map(str, _documents(DEFAULT)))


def test_the_schemas_are_the_pinned_operator_release() -> None:
    assert set(VALIDATORS) == {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    versions = {yaml.safe_load(p.read_text())["metadata"]["annotations"]
                ["operator.prometheus.io/version"] for p in CRDS.glob("*.yaml")}
    assert versions == {"0.93.0"}


@pytest.mark.parametrize("cfg", [DEFAULT, from_dict({
    "kubernetes": {"namespace": "ml", "labels": {"release": "kube-prometheus"}},
    "models": {"fraud": {"slo": {"availability": 0.9999}}}})], ids=["default", "custom"])
def test_every_generated_manifest_matches_its_crd(cfg) -> None:
    documents = _documents(cfg)
    assert {d["kind"] for d in documents} == set(VALIDATORS)
    assert {d["apiVersion"] for d in documents} == {"monitoring.coreos.com/v1"}
    assert {name: _errors(d) for d in documents for name in [d["kind"]]} == \
        {d["kind"]: [] for d in documents}


def test_the_strict_check_catches_a_misspelled_field() -> None:
    document = service_monitor(DEFAULT)
    document["spec"]["endpoints"][0]["relabelling"] = document["spec"]["endpoints"][0].pop(
        "relabelings")
    assert any("relabelling" in e for e in _errors(document))
    document = prometheus_rule(DEFAULT)
    document["spec"]["groups"][0]["rules"][0]["for"] = 5  # a duration must be a string
    assert _errors(document)
