"""Reconfiguring a running model: options that reach results already seen, and event logs
swapped while the model serves (its shadow's events included)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.events import EventLog


def _tokens(monitor) -> dict[str, float]:
    monitor.drain()
    return {sample.labels["kind"]: sample.value for family in monitor.families(0.0)
            if family.name == "inferwatch_tokens" for sample in family.samples
            if sample.name == "inferwatch_tokens_total"}


def _reply(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"text": "ok", "usage": {"prompt_tokens": prompt_tokens,
                                    "completion_tokens": completion_tokens}}


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _writer_threads() -> int:
    return sum(t.name == "inferwatch-events" and t.is_alive() for t in threading.enumerate())


# --- options given after the first calls reach the result classes already seen ------------

@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10**6), st.integers(1, 10**6)), min_size=1,
                max_size=5))
def test_usage_switched_on_after_calls_counts_every_later_reply(counts) -> None:
    registry = Registry(drain_interval=3600)
    chat = inferwatch.instrument(lambda prompt, reply: reply, name="llm", version="1",
                                 registry=registry)
    chat("warm-up", _reply(1, 1))  # a dict, remembered as an ordinary prediction
    monitor = registry.monitor("llm", "1")
    monitor.configure(usage=True)
    for prompt_tokens, completion_tokens in counts:
        chat("hello", _reply(prompt_tokens, completion_tokens))
    assert _tokens(monitor) == {"input": sum(c[0] for c in counts),
                                "output": sum(c[1] for c in counts)}


def test_usage_switched_on_after_calls_reaches_an_async_model_too() -> None:
    registry = Registry(drain_interval=3600)

    async def chat(prompt: str) -> dict:
        return _reply(7, 11)

    wrapped = inferwatch.instrument(chat, name="llm", version="1", registry=registry)
    asyncio.run(wrapped("warm-up"))
    monitor = registry.monitor("llm", "1")
    monitor.configure(usage=True)
    asyncio.run(wrapped("hello"))
    assert _tokens(monitor) == {"input": 7, "output": 11}


def test_token_counting_configured_after_text_was_read_as_labels_counts_text() -> None:
    registry = Registry(drain_interval=3600)
    generate = inferwatch.instrument(lambda prompt: "three words here", name="gen",
                                     version="1", registry=registry, classes=["yes", "no"])
    generate("warm-up")  # a str of a model that declared classes: a label, kept as plain
    monitor = registry.monitor("gen", "1")
    monitor.configure(classes=None, count_tokens=lambda text: len(text.split()))
    generate("two words")
    assert _tokens(monitor) == {"input": 2, "output": 3}


# --- the event log swapped on a running model ------------------------------------------

def test_a_log_opened_from_a_path_is_closed_when_configure_replaces_it(tmp_path) -> None:
    registry = Registry(drain_interval=3600)
    score = inferwatch.instrument(lambda rows: 0.5, name="fraud", version="1",
                                  registry=registry)
    monitor = registry.monitor("fraud", "1")
    before = _writer_threads()
    for index in range(5):
        monitor.configure(events=tmp_path / f"events-{index}.jsonl")
        score([index], request_id=f"r-{index}")
        registry.drain()
    # One writer for the log in use; each replaced one was flushed and stopped.
    assert _writer_threads() <= before + 1
    for index in range(4):
        records = _events(tmp_path / f"events-{index}.jsonl")
        assert [r["request_id"] for r in records] == [f"r-{index}"]
    current = monitor.events
    assert current.flush(10)
    assert [r["request_id"] for r in _events(tmp_path / "events-4.jsonl")] == ["r-4"]
    current.close()


def test_a_log_the_user_passed_in_stays_open_after_configure_replaces_it(tmp_path) -> None:
    registry = Registry(drain_interval=3600)
    mine = EventLog(tmp_path / "mine.jsonl")
    monitor = registry.monitor("fraud", "1").configure(events=mine)
    monitor.configure(events=tmp_path / "theirs.jsonl")
    opened = monitor.events
    mine.emit({"model": "other", "request_id": "still-mine"})
    assert mine.flush(10)
    assert [r["request_id"] for r in _events(tmp_path / "mine.jsonl")] == ["still-mine"]
    assert mine.dropped_counts()["closed"] == 0
    # The log the monitor opened itself is its own to close when replaced by the user's.
    monitor.configure(events=mine)
    opened.emit({"model": "fraud", "request_id": "late"})
    assert opened.dropped_counts()["closed"] == 1
    mine.close()


class _Scorer:
    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, rows: list) -> list:
        return [self.value for _ in rows]


def test_a_shadow_writes_to_the_log_its_champion_was_reconfigured_to(tmp_path) -> None:
    registry = Registry(drain_interval=3600)
    champion = inferwatch.instrument(_Scorer(0.5), name="fraud", version="1",
                                     registry=registry, events=tmp_path / "first.jsonl")
    handle = inferwatch.shadow(champion, _Scorer(0.7), version="2", registry=registry,
                               timeout=30.0)
    monitor = registry.monitor("fraud", "1")
    first = monitor.events
    monitor.configure(events=tmp_path / "second.jsonl")
    champion.predict([1, 2], request_id="after-swap")
    assert handle.flush(30)
    registry.drain()
    second = monitor.events
    assert second.flush(10)
    records = _events(tmp_path / "second.jsonl")
    shadow_events = [r for r in records if r.get("role") == "shadow"]
    assert [r["request_id"] for r in shadow_events] == ["after-swap"]
    assert shadow_events[0]["prediction"] == [0.7, 0.7]
    assert not [r for r in _events(tmp_path / "first.jsonl") if r.get("role") == "shadow"]
    assert first.dropped_counts()["closed"] == 0  # nothing was written into the closed log
    handle.close()
    second.close()


# --- identity options given to configure() on a running model ------------------------------

def _info(monitor) -> dict[str, str]:
    (sample,) = [s for family in monitor.families(0.0) if family.name == "inferwatch_model_info"
                 for s in family.samples]
    return sample.labels


def test_task_and_metadata_configured_on_a_running_model_reach_model_info() -> None:
    registry = Registry(drain_interval=3600)
    score = inferwatch.instrument(lambda rows: 0.5, name="fraud", version="1",
                                  registry=registry, metadata={"team": "risk", "tier": "1"})
    score([1])
    monitor = registry.monitor("fraud", "1")
    monitor.configure(task="classification", metadata={"team": "payments"})
    labels = _info(monitor)
    assert labels["task"] == "classification" and labels["team"] == "payments"
    assert "tier" not in labels


def test_an_output_range_configured_later_starts_its_series_at_zero() -> None:
    registry = Registry(drain_interval=3600)
    score = inferwatch.instrument(lambda rows: 0.5, name="fraud", version="1",
                                  registry=registry)
    score([1])
    monitor = registry.monitor("fraud", "1")
    monitor.configure(output_range=(0.0, 1.0))
    monitor.drain()
    reasons = {s.labels["reason"]: s.value for family in monitor.families(0.0)
               if family.name == "inferwatch_invalid_predictions"
               for s in family.samples if s.name.endswith("_total")}
    assert reasons.get("out_of_range") == 0.0
