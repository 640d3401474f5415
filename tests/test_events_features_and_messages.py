"""The event log of instrumented calls and request blocks: features handed to
``r.features()`` are logged as ``features``, redaction rules on ``inputs`` and ``features``
reach the same key in both fields, and ``error_messages=True`` keeps the message of a
model's or a request block's exception (docs/events.md)."""

from __future__ import annotations

import asyncio
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.events import hash_value
from test_monitor_events import _read as read_events

SSN = "078-05-1120"
EMAIL = "jane@example.org"
SECRET = "s" * 32


def _all_text(directory: Path) -> str:
    return "".join(p.read_text() for p in sorted(directory.rglob("*"))
                   if p.is_file() and not p.is_symlink())


def _logged(scraper, tmp_path, make_log, requests, **options) -> dict[str, dict]:
    """Runs `requests(model, mon)` against a model logging to a fresh log; its events by
    request id."""
    log = make_log(tmp_path / "events.jsonl", **options)
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", events=log,
                                 registry=scraper.registry)
    requests(model, inferwatch.monitor("m", "1", registry=scraper.registry))
    scraper.registry.drain()
    assert log.flush(10)
    return {e["request_id"]: e for e in read_events(tmp_path)}


def test_features_without_inputs_are_logged_as_features_and_redacted_by_their_rules(
        scraper, tmp_path, make_log):
    def requests(model, mon):
        with mon.request(request_id="features-only") as r:
            r.features({"amount": 1.0, "ssn": SSN, "email": EMAIL})
            model([1.0])
        with mon.request(request_id="both") as r:
            r.inputs({"raw": "text"})
            r.features({"amount": 2.0, "ssn": SSN, "email": EMAIL})
            model([2.0])
        with mon.request(request_id="call-only"):
            model([3.0])

    events = _logged(scraper, tmp_path, make_log, requests, redact=["features.ssn"],
                     hash_fields=["features.email"], secret=SECRET)
    assert SSN not in _all_text(tmp_path) and EMAIL not in _all_text(tmp_path)
    hashed = hash_value(SECRET, EMAIL)
    assert events["features-only"]["features"] == {"amount": 1.0, "email": hashed}
    assert events["features-only"]["inputs"] is None
    assert events["both"]["inputs"] == {"raw": "text"}
    assert events["both"]["features"] == {"amount": 2.0, "email": hashed}
    # Without r.features(), the model call's argument is the request's input, logged once.
    # A bare list of numbers under a path naming a key inside it (features.ssn, and so
    # inputs.ssn) may hold that key unnamed: it is dropped whole.
    assert events["call-only"]["inputs"] == {"dropped": "unstructured"}
    assert "features" not in events["call-only"]


def test_a_rule_on_inputs_reaches_the_same_key_in_features_and_the_reverse(
        scraper, tmp_path, make_log):
    """Where a value lands depends on how the caller handed it over: a personal key named
    under either field is removed from both."""
    def requests(model, mon):
        with mon.request(request_id="features") as r:
            r.features({"amount": 1.0, "ssn": SSN})
            model([1.0])
        model({"amount": 2.0, "email": EMAIL}, request_id="call")

    events = _logged(scraper, tmp_path, make_log, requests, redact=["inputs.ssn"],
                     hash_fields=["features.email"], secret=SECRET)
    assert SSN not in _all_text(tmp_path) and EMAIL not in _all_text(tmp_path)
    assert events["features"]["features"] == {"amount": 1.0}
    assert events["call"]["inputs"] == {"amount": 2.0, "email": hash_value(SECRET, EMAIL)}


def test_rules_naming_both_fields_and_whole_fields_are_kept_as_written(scraper, tmp_path,
                                                                       make_log):
    """Dropping the raw SSN while keeping a hashed one among the features, or dropping the
    raw input wholesale while keeping the features, are choices: the twin rule leaves them."""
    def requests(model, mon):
        with mon.request(request_id="r-1") as r:
            r.inputs({"ssn": SSN, "note": "free text"})
            r.features({"amount": 1.0, "ssn": SSN})
            model([1.0])

    events = _logged(scraper, tmp_path, make_log, requests, redact=["inputs.ssn"],
                     hash_fields=["features.ssn"], secret=SECRET)
    assert events["r-1"]["inputs"] == {"note": "free text"}
    assert events["r-1"]["features"] == {"amount": 1.0, "ssn": hash_value(SECRET, SSN)}

    whole = tmp_path / "whole"
    whole.mkdir()
    events = _logged(scraper, whole, make_log, requests, redact=["inputs"])
    assert "inputs" not in events["r-1"]
    assert events["r-1"]["features"] == {"amount": 1.0, "ssn": SSN}


KEYS = st.text(alphabet=string.ascii_letters + "_", min_size=1, max_size=8)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(secret_key=KEYS, other_keys=st.lists(KEYS, max_size=4),
       rule_field=st.sampled_from(["inputs", "features"]),
       given_as=st.sampled_from(["features", "inputs", "call", "features and call"]))
def test_a_redacted_key_never_reaches_disk_however_it_was_handed_over(
        scraper, tmp_path_factory, make_log, secret_key, other_keys, rule_field, given_as):
    directory = tmp_path_factory.mktemp("events")
    value = "SECRET-" + secret_key
    row = {key: 1.0 for key in other_keys if key.lower() != secret_key.lower()}
    row[secret_key] = value

    def requests(model, mon):
        with mon.request(request_id="r-1") as r:
            if "features" in given_as:
                r.features(dict(row))
            if given_as == "inputs":
                r.inputs(dict(row))
            model(dict(row) if "call" in given_as else [0.0])

    events = _logged(scraper, directory, make_log, requests,
                     redact=[f"{rule_field}.{secret_key}"])
    assert value not in _all_text(directory)
    event = events["r-1"]
    for field in ("inputs", "features"):
        stored = event.get(field)
        if isinstance(stored, dict) and stored != {"dropped": "unstructured"}:
            assert set(stored) == {k for k in row if k != secret_key}


def _failing(message: object):
    class ModelError(Exception):
        def __str__(self) -> str:
            if isinstance(message, BaseException):
                raise message
            return str(message)

    def predict(x):
        raise ModelError()
    return predict


@pytest.mark.parametrize("keep", [True, False])
def test_error_messages_are_kept_for_model_calls_and_request_blocks_when_asked(
        scraper, tmp_path, make_log, keep):
    log = make_log(tmp_path / "events.jsonl", error_messages=keep)
    model = inferwatch.instrument(_failing("X has 3 features, but the model expects 4"),
                                  name="m", version="1", events=log, registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)

    async def async_predict(x):
        raise KeyError("unknown merchant m-17")

    async_model = inferwatch.instrument(async_predict, name="m", version="1", events=log,
                                        registry=scraper.registry)
    with pytest.raises(Exception, match="X has 3 features"):
        model([1.0], request_id="call")
    with pytest.raises(RuntimeError), mon.request(request_id="block"):
        raise RuntimeError("feature store timed out after 2 s")
    with pytest.raises(KeyError):
        asyncio.run(async_model([1.0], request_id="async"))
    scraper.registry.drain()
    assert log.flush(10)
    errors = {e["request_id"]: e["error"] for e in read_events(tmp_path)}
    if not keep:
        assert errors == {"call": {"type": "ModelError"}, "block": {"type": "RuntimeError"},
                          "async": {"type": "KeyError"}}
        assert "timed out" not in _all_text(tmp_path)
        return
    assert errors == {
        "call": {"type": "ModelError", "message": "X has 3 features, but the model expects 4"},
        "block": {"type": "RuntimeError", "message": "feature store timed out after 2 s"},
        "async": {"type": "KeyError", "message": "'unknown merchant m-17'"}}


def test_an_unreadable_or_huge_message_costs_neither_the_call_nor_the_event(
        scraper, tmp_path, make_log):
    log = make_log(tmp_path / "events.jsonl", error_messages=True)
    unreadable = inferwatch.instrument(_failing(ValueError("no str")), name="m", version="1",
                                       events=log, registry=scraper.registry)
    huge = inferwatch.instrument(_failing("x" * 5_000_000), name="m", version="1",
                                 events=log, registry=scraper.registry)
    # Both counts are the process's (other tests' logs and faults too): compared as deltas.
    dropped_before = scraper.total("inferwatch_event_values_dropped_total",
                                   reason="conversion_error")
    faults_before = [scraper.total("inferwatch_internal_errors_total", component=part)
                     for part in ("instrument", "request")]
    with pytest.raises(Exception) as raised:
        unreadable([1.0], request_id="unreadable")
    assert type(raised.value).__name__ == "ModelError"  # the model's own exception
    with pytest.raises(Exception, match=r"^x{5000000}$"):
        huge([1.0], request_id="huge")
    scraper.registry.drain()
    assert log.flush(10)
    errors = {e["request_id"]: e["error"] for e in read_events(tmp_path)}
    assert errors["unreadable"]["type"] == "ModelError"
    assert errors["unreadable"]["message"]["dropped"] == "conversion_error"
    assert errors["huge"]["message"] == "x" * 1024
    assert scraper.total("inferwatch_event_values_dropped_total",
                         reason="conversion_error") - dropped_before == 1
    assert [scraper.total("inferwatch_internal_errors_total", component=part)
            for part in ("instrument", "request")] == faults_before
