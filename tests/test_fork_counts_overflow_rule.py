"""inferwatch_series_overflow_total and inferwatch_internal_errors_total in a forked child,
and what the overflow counter counts: each distinct label value a cap folds, once, however
often the drain runs and however often a folded model or version is looked up."""

from __future__ import annotations

import json
import os
import signal
import traceback
from collections.abc import Callable

import pytest

import inferwatch
from inferwatch import faults
from inferwatch.core import label_caps
from inferwatch.core.label_caps import LabelCap
from inferwatch.core.registry import Registry

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def _in_forked_child(check: Callable[[], object], limit: int = 60) -> object:
    """What `check` returns in a forked child (JSON over a pipe); its traceback if it raises.
    The child's alarm ends it if a lock left held at fork hangs it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        signal.alarm(limit)
        code = 0
        try:
            payload = json.dumps({"result": check()})
        except BaseException:
            payload = json.dumps({"error": traceback.format_exc()})
            code = 1
        with os.fdopen(write_end, "w") as pipe:
            pipe.write(payload)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:  # EOF once the child exits, or its alarm kills it
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert text, f"the child wrote nothing (exit {os.waitstatus_to_exitcode(status)})"
    report = json.loads(text)
    assert "error" not in report, report["error"]
    return report["result"]


def _classifier(registry: Registry, version: str = "1"):
    return inferwatch.instrument(lambda x: x, name="m", version=version, registry=registry,
                                 task="classification", max_classes=3)


@needs_fork
def test_a_forked_child_counts_only_its_own_folds_and_faults() -> None:
    registry = Registry(drain_interval=3600, max_versions_per_model=2)
    model = _classifier(registry)
    for value in range(10):  # 7 classes past the cap, folded in the parent
        model(value)
    for version in ("2", "3"):  # "3" is past the version cap
        _classifier(registry, version)(0)
    registry.drain()
    faults.record("fork_counts_test_parent")
    parent = {"inferwatch_predicted_class_total": 7, "inferwatch_model_info": 1}
    assert registry.overflow_counts() == parent

    def child() -> dict:
        before = registry.overflow_counts()
        errors_before = faults.internal_error_counts()
        model(50)  # a class nobody folded before
        model(5)  # one the parent folded: this process folds it too, so it counts here
        registry.drain()
        faults.record("fork_counts_test_child")
        return {"before": before,
                "parent_fault": errors_before.get("fork_counts_test_parent", 0),
                "after": registry.overflow_counts(),
                "own_fault": faults.internal_error_counts().get("fork_counts_test_child", 0)}

    seen = _in_forked_child(child)
    assert seen == {"before": {}, "parent_fault": 0,
                    "after": {"inferwatch_predicted_class_total": 2},
                    "own_fault": 1}
    # The parent keeps what it counted.
    assert registry.overflow_counts() == parent
    assert faults.internal_error_counts()["fork_counts_test_parent"] >= 1


@pytest.mark.parametrize("drain_each", [False, True])
def test_one_class_past_the_cap_counts_once_however_often_drained(drain_each: bool) -> None:
    registry = Registry(drain_interval=3600)
    model = _classifier(registry)
    monitor = registry.monitor("m", "1")
    for value in [0, 1, 2] + [7] * 100 + list(range(10, 20)):
        model(value)
        if drain_each:
            monitor.drain()
    monitor.drain()
    assert registry.overflow_counts() == {"inferwatch_predicted_class_total": 11}
    # No count is lost: every one of the 110 folded predictions is under __other__.
    classes = monitor.state.counters["inferwatch_predicted_class_total"]
    assert classes[("__other__",)] == 110


def test_lookups_of_a_folded_version_or_model_count_it_once() -> None:
    registry = Registry(drain_interval=3600, max_versions_per_model=2, max_models=1)
    for version in ("1", "2", "3"):
        registry.monitor("fraud", version)
    registry.monitor("churn", "1")  # past max_models
    assert registry.overflow_counts() == {"inferwatch_model_info": 2}
    for i in range(1000):  # a feedback handler looking its monitor up per outcome
        registry.monitor("fraud", "3").record_outcome(f"r{i}", 1.0)
        registry.monitor("churn", "1")
    assert registry.overflow_counts() == {"inferwatch_model_info": 2}


def test_a_cap_counts_each_folded_value_once_within_a_bounded_memory() -> None:
    memory = label_caps.FOLDED_MEMORY
    cap = LabelCap(1)
    cap.fold("kept")
    for _ in range(3):
        for value in ("a", "b", "__other__"):
            cap.fold(value)
    assert cap.overflowed == 3
    # Unbounded values (ids) keep counting, and what the cap remembers stays bounded.
    for i in range(3 * memory):
        cap.fold(f"id-{i}")
    assert cap.overflowed == 3 + 3 * memory
    assert len(cap._folded) <= memory
