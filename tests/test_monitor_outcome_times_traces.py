"""The Monitor's public API as users reach it: outcome times of every kind, configure()'s
own arguments (traces, events=False), options given at creation, and token counts."""

from __future__ import annotations

import datetime
import json
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults
from inferwatch.core.call_paths import FAST, SLOW
from inferwatch.core.options import Settings
from inferwatch.core.registry import Registry
from inferwatch.core.timestamps import seconds_of

UTC = datetime.timezone.utc


@pytest.fixture
def tokyo_time(monkeypatch: pytest.MonkeyPatch):
    """The host's local time zone is nine hours off UTC, as on many servers."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _predicted(registry: Registry | None = None, request_id: str = "r-1"):
    monitor = (registry or Registry(drain_interval=3600)).monitor("fraud", "1")
    with monitor.request(request_id=request_id) as request:
        request.prediction("fraud")
    monitor.drain()
    return monitor


def _delay(monitor) -> tuple[int, float] | None:
    series = monitor.state.histograms.get("inferwatch_outcome_delay_seconds", {}).get(())
    return None if series is None else (int(series.count), float(series.sum))


# --- outcome times ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["datetime", "timestamp", "datetime64"])
def test_a_naive_outcome_time_is_utc_whatever_the_hosts_time_zone(tokyo_time, kind: str) -> None:
    """A labels table's naive timestamps (UTC, as pandas reads them) give the same delay
    whether a row is read as a datetime, a pd.Timestamp or an np.datetime64."""
    monitor = _predicted()
    label_time = datetime.datetime.now(UTC).replace(tzinfo=None) + datetime.timedelta(
        seconds=60)
    at = {"datetime": label_time, "timestamp": pd.Timestamp(label_time),
          "datetime64": np.datetime64(label_time)}[kind]
    monitor.record_outcome("r-1", "fraud", at=at)
    assert monitor.state.counters["inferwatch_outcomes_total"][("correct",)] == 1
    count, total = _delay(monitor)
    assert count == 1 and 50.0 < total < 70.0


@pytest.mark.parametrize("suffix", ["+00:00", "Z", "+05:30", "-08:00"])
def test_an_outcome_time_as_iso_text_with_an_offset_is_read(suffix: str) -> None:
    monitor = _predicted()
    label_time = datetime.datetime.now(UTC) + datetime.timedelta(seconds=60)
    offset = datetime.timezone(datetime.timedelta(0)) if suffix == "Z" else \
        datetime.datetime.strptime(suffix, "%z").tzinfo
    text = label_time.astimezone(offset).replace(tzinfo=None).isoformat() + suffix
    before = faults.internal_error_counts().get("outcome", 0)
    monitor.record_outcome("r-1", "fraud", at=text)
    count, total = _delay(monitor)
    assert count == 1 and 50.0 < total < 70.0
    assert faults.internal_error_counts().get("outcome", 0) == before


@pytest.mark.parametrize("text", ["2026-01-01T00:00:00", "2026-01-01 10:00"])
def test_iso_text_without_an_offset_is_refused_clearly_and_the_label_still_joined(
        text: str, caplog: pytest.LogCaptureFixture) -> None:
    monitor = _predicted()
    before = faults.internal_error_counts().get("outcome", 0)
    with caplog.at_level("WARNING", logger="inferwatch"):
        monitor.record_outcome("r-1", "fraud", at=text)  # never raises
    assert monitor.state.counters["inferwatch_outcomes_total"][("correct",)] == 1
    assert _delay(monitor) is None  # no delay known: none observed
    assert faults.internal_error_counts().get("outcome", 0) == before + 1


@settings(max_examples=60, deadline=None)
@given(st.datetimes(min_value=datetime.datetime(1971, 1, 1),
                    max_value=datetime.datetime(2200, 1, 1)),
       st.integers(-14 * 60, 14 * 60))
def test_one_instant_reads_as_the_same_seconds_in_every_form(moment: datetime.datetime,
                                                             offset_minutes: int) -> None:
    moment = moment.replace(microsecond=0)
    expected = moment.replace(tzinfo=UTC).timestamp()
    zone = datetime.timezone(datetime.timedelta(minutes=offset_minutes))
    local = moment.replace(tzinfo=UTC).astimezone(zone)
    forms = [moment, pd.Timestamp(moment), np.datetime64(moment), local, pd.Timestamp(local),
             local.isoformat(), moment.isoformat() + "Z", str(expected)]
    assert [seconds_of(form) for form in forms] == [expected] * len(forms)


# --- configure(traces=) ------------------------------------------------------------------------


@pytest.mark.parametrize("traces", ["no", "false", "False", 0, 1, "", [], "yes"])
def test_traces_must_be_a_bool_and_a_refused_one_changes_nothing(traces: object) -> None:
    monitor = Registry(drain_interval=3600).monitor("m", "1")
    with pytest.raises(TypeError, match="traces must be True or False"):
        monitor.configure(traces=traces, max_classes=7)
    with pytest.raises(ValueError, match="traces"):
        monitor.configure(traces=traces)
    assert monitor.traces is False and monitor.path is FAST
    assert monitor.settings.max_classes == Settings().max_classes


def test_traces_takes_numpy_bools() -> None:
    monitor = Registry(drain_interval=3600).monitor("m", "1")
    monitor.configure(traces=np.bool_(True))
    assert monitor.traces is True and monitor.path is SLOW
    monitor.configure(traces=np.bool_(False))
    assert monitor.traces is False and monitor.path is FAST


# --- trace_stages given at creation ------------------------------------------------------------


@pytest.fixture
def stage_spans():
    """A real OpenTelemetry SDK provider with an in-memory exporter, removed afterwards."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otel_provider import installed_provider

    spans = InMemorySpanExporter()
    with installed_provider(spans):
        yield spans


def test_trace_stages_given_to_instrument_adds_a_span_per_stage(stage_spans) -> None:
    """Stage spans without trace ids as exemplars: nothing else configures the monitor."""
    registry = Registry(drain_interval=3600)
    inferwatch.instrument(lambda x: 0.5, name="m", version="1", trace_stages=True,
                          exemplars=False, registry=registry)
    monitor = registry.monitor("m", "1")
    with monitor.request() as request:
        with request.stage("preprocess"):
            pass
        request.prediction(0.5)
    assert "inferwatch.preprocess" in [s.name for s in stage_spans.get_finished_spans()]


def test_trace_stages_is_taken_at_creation_and_by_a_late_instrument() -> None:
    registry = Registry(drain_interval=3600)
    assert registry.monitor("a", "1", Settings(trace_stages=True)).trace_stages is True
    # Asked for by name first (inferwatch.monitor), instrumented after: the options adopted.
    assert registry.monitor("b", "1").trace_stages is False
    inferwatch.instrument(lambda x: 0.5, name="b", version="1", trace_stages=True,
                          registry=registry)
    assert registry.monitor("b", "1").trace_stages is True


# --- tokens read from a usage reply -----------------------------------------------------------


class _Usage:
    def __init__(self, prompt: int, completion: int) -> None:
        self.prompt_tokens, self.completion_tokens = prompt, completion


class _Reply:
    def __init__(self, prompt: int, completion: int) -> None:
        self.usage = _Usage(prompt, completion)


def test_a_usage_reply_of_zero_prompt_tokens_shows_the_input_series_at_zero() -> None:
    registry = Registry(drain_interval=3600)
    complete = inferwatch.instrument(lambda prompt: _Reply(0, 5), name="llm", usage=True,
                                     registry=registry)
    complete("")
    monitor = registry.monitor("llm")
    monitor.drain()
    tokens = monitor.state.counters["inferwatch_tokens_total"]
    assert tokens == {("input",): 0.0, ("output",): 5.0}
    samples = {s.labels["kind"]: s.value for family in monitor.families(time.time())
               if family.name == "inferwatch_tokens" for s in family.samples}
    assert samples == {"input": 0.0, "output": 5.0}


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=8))
def test_token_counts_are_the_sums_of_the_replies(replies: list[tuple[int, int]]) -> None:
    registry = Registry(drain_interval=3600)
    queue = list(replies)
    complete = inferwatch.instrument(lambda prompt: _Reply(*queue.pop(0)), name="llm",
                                     usage=True, registry=registry)
    for _ in replies:
        complete("hi")
    monitor = registry.monitor("llm")
    monitor.drain()
    tokens = monitor.state.counters["inferwatch_tokens_total"]
    assert tokens[("input",)] == sum(p for p, _ in replies)
    assert tokens[("output",)] == sum(c for _, c in replies)


# --- switching the event log off ----------------------------------------------------------------


def test_events_false_closes_the_log_the_monitor_opened_and_takes_the_fast_path(
        tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    registry = Registry(drain_interval=3600)
    monitor = registry.monitor("m", "1").configure(events=path)
    log = monitor.events
    with monitor.request(request_id="r-1") as request:
        request.prediction(0.5)
    monitor.drain()
    monitor.configure(events=None)  # None: unchanged
    assert monitor.events is log and monitor.path is SLOW
    monitor.configure(events=False)
    assert monitor.events is None and monitor.path is FAST and monitor.keeps_inputs is False
    assert log._closed  # its writer thread and file are let go
    with monitor.request(request_id="r-2") as request:
        request.prediction(0.5)
    monitor.drain()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line.get("request_id") for line in lines] == ["r-1"]
    assert log.dropped_counts().get("closed", 0) == 0  # nothing emitted into the closed log


def test_events_false_detaches_a_log_passed_in_without_closing_it(tmp_path, make_log) -> None:
    log = make_log(tmp_path / "shared.jsonl")
    monitor = Registry(drain_interval=3600).monitor("m", "1").configure(events=log)
    monitor.configure(events=False)
    assert monitor.events is None and monitor.path is FAST
    assert not log._closed  # another model may still write to it
    log.emit({"still": "open"})
    assert log.flush(5)


def test_events_true_is_a_clear_error_that_changes_nothing() -> None:
    monitor = Registry(drain_interval=3600).monitor("m", "1")
    with pytest.raises(TypeError, match="events must be an EventLog, the path of one, or False"):
        monitor.configure(events=True, max_classes=7)
    assert monitor.events is None and monitor.settings.max_classes == Settings().max_classes


def test_an_outcome_time_given_as_a_date_is_its_midnight_utc() -> None:
    """A labels table with a DATE column: the day's start, not an unreadable time."""
    monitor = _predicted()
    before = faults.internal_error_counts().get("outcome", 0)
    tomorrow = datetime.datetime.now(UTC).date() + datetime.timedelta(days=1)
    monitor.record_outcome("r-1", "fraud", at=tomorrow)
    expected = datetime.datetime(tomorrow.year, tomorrow.month, tomorrow.day,
                                 tzinfo=UTC).timestamp() - time.time()
    count, total = _delay(monitor)
    assert count == 1 and abs(total - expected) < 10.0
    assert faults.internal_error_counts().get("outcome", 0) == before


def test_a_date_alone_as_text_is_its_midnight_utc_as_trained_at_reads_it() -> None:
    monitor = _predicted()
    predicted_at = time.time()
    tomorrow = datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=1)
    monitor.record_outcome("r-1", "fraud", at=f" {tomorrow.isoformat()} ")
    midnight = datetime.datetime.combine(tomorrow, datetime.time(),
                                         tzinfo=datetime.timezone.utc).timestamp()
    count, total = _delay(monitor)
    assert count == 1
    assert abs(total - (midnight - predicted_at)) < 60
