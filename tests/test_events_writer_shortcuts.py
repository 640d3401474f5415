"""The event writer's shortcuts give the events they gave without them: the redaction's
plan of a mapping's keys, remembered by those keys (``redact._key_plan``), a mapping of
finite floats kept as it is by cleaning (``clean._plain_floats``), a list's finite floats
read inline, and the one JSON encoder every line is written with (``sinks._dumps``)."""

from __future__ import annotations

import copy
import enum
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from inferwatch.events import clean as cleaning
from inferwatch.events import redact
from inferwatch.events.clean import clean
from inferwatch.events.redact import Redaction
from inferwatch.events.sinks import Encoder, _dumps

SECRET = b"k" * 32


class Color(str, enum.Enum):
    RED = "red"
# Names a reader cannot tell apart (case, width, white space, invisible characters), dotted
# names, and the event's own fields: the keys whose plans must not be mixed up.
NAMES = ["ssn", "SSN", " ssn", "s\u200bsn", "\uff53\uff53\uff4e", "user.ssn", "user",
         "inputs", "Inputs", "features", "email", "e.mail", "age", "0", "1", "*x"]
PATHS = ["ssn", "inputs.ssn", "inputs.user.ssn", "features.email", "inputs.*", "user.*.ssn",
         "inputs.0", "age"]

leaves = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-1.0, 1.0) | \
    st.sampled_from(["jane@example.org", "078-05-1120", "free text"])
events = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(NAMES), children, max_size=5),
    max_leaves=25,
).map(lambda inputs: clean({"ts": 1.0, "inputs": inputs, "features": inputs}))


def _without_memo(policy: Redaction, event: dict) -> dict:
    """What `policy` makes of `event` with no plan remembered at any mapping."""
    kept = redact._WIDE_KEYS_MAX
    redact._PLANS.clear()
    redact._WIDE_PLANS.clear()
    redact._WIDE_KEYS_MAX = -1  # every mapping is planned afresh
    try:
        return policy.apply(event)
    finally:
        redact._WIDE_KEYS_MAX = kept


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=events, drop=st.lists(st.sampled_from(PATHS), max_size=2, unique=True),
       hashed=st.lists(st.sampled_from(PATHS), max_size=2, unique=True), data=st.data())
def test_remembered_plans_redact_what_fresh_ones_do(event, drop, hashed, data):
    hashed = [path for path in hashed if path not in drop]
    policy = Redaction(drop=drop, hash_fields=hashed, secret=SECRET)
    expected = _without_memo(policy, copy.deepcopy(event))
    # Plans remembered from other events first, whose mappings may share this one's keys.
    for other in data.draw(st.lists(events, max_size=3)):
        policy.apply(other)
    first, again = policy.apply(copy.deepcopy(event)), policy.apply(copy.deepcopy(event))
    assert first == expected
    assert again == expected


def test_one_mapping_layout_redacted_event_after_event():
    """The service's usual case: every event has the same keys, a reader-identical twin
    among them; each event loses both, whatever the one before it lost."""
    policy = Redaction(drop=["inputs.email"])
    for i in range(5):
        event = clean({"ts": 1.0, "inputs": {"email": f"a{i}@x.org", "Email ": "b@x.org",
                                             "age": i}, "features": {"e.mail": 1.0}})
        assert policy.apply(event)["inputs"] == {"age": i}


def test_the_plans_stay_bounded_and_the_widest_mappings_are_not_remembered():
    policy = Redaction(drop=["inputs.ssn"])
    redact._PLANS.clear()
    redact._WIDE_PLANS.clear()
    for i in range(redact._PLANS_MAX + 10):
        policy.apply(clean({"ts": 1.0, "inputs": {f"k{i}": 1, "ssn": 2}}))
    assert 0 < len(redact._PLANS) <= redact._PLANS_MAX
    wide = redact._PLAN_KEYS_MAX + 1
    for i in range(redact._WIDE_PLANS_MAX + 3):  # a model's many features, renamed
        event = policy.apply(clean({"ts": 1.0, "inputs": {
            **{f"v{i}-{k}": k for k in range(wide)}, "SSN": 1}}))
        assert "SSN" not in event["inputs"] and len(event["inputs"]) == wide
    assert 0 < len(redact._WIDE_PLANS) <= redact._WIDE_PLANS_MAX
    assert all(len(key) > wide for key in redact._WIDE_PLANS)
    redact._PLANS.clear()
    redact._WIDE_PLANS.clear()
    widest = {f"k{i}": i for i in range(redact._WIDE_KEYS_MAX + 1)}
    event = policy.apply(clean({"ts": 1.0, "inputs": {**widest, "S\u200bSN ": 1}}))
    assert event["inputs"] == widest
    assert not any(len(key) > redact._WIDE_KEYS_MAX for key in
                   [*redact._PLANS, *redact._WIDE_PLANS])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(st.sampled_from(NAMES), min_size=1, max_size=6),
       others=st.lists(st.sampled_from(NAMES), min_size=1, max_size=6),
       width=st.integers(redact._PLAN_KEYS_MAX + 1, 3 * redact._PLAN_KEYS_MAX),
       drop=st.sampled_from(["inputs.ssn", "features.email", "inputs.user.ssn", "inputs.*"]))
def test_wide_mappings_redact_what_fresh_plans_do(names, others, width, drop):
    """A model's hundreds of features: its plan is remembered apart, and gives what a fresh
    one gives, event after event, after events of other keys of the same width."""
    def event_of(named: list[str]) -> dict:
        features = {f"f{k}": float(k) for k in range(width)}
        features.update({name: 1.0 for name in named})
        return clean({"ts": 1.0, "inputs": dict(features), "features": dict(features)})

    policy = Redaction(drop=[drop])
    event = event_of(names)
    expected = _without_memo(policy, copy.deepcopy(event))
    policy.apply(event_of(others))
    for _ in range(3):
        assert policy.apply(copy.deepcopy(event)) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_a_line_is_what_json_dumps_writes(value):
    assert _dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                                       allow_nan=False).encode("utf-8")


@given(st.dictionaries(st.sampled_from(NAMES), json_values, max_size=5))
def test_encoded_events_parse_back_to_their_cleaned_fields(fields):
    record = Encoder().encode({"ts": 5.0, "model": "m", **fields})
    assert json.loads(record.line) == {**clean({"model": "m", **fields}), "ts": 5.0}


floats_keys = st.text(max_size=4) | st.integers(-2, 2) | st.sampled_from(["a\n", "b\x00"])
float_values = st.floats() | st.sampled_from([1e308, -1e308, 0.0, -0.0]) | st.integers(-3, 3)


@example({"a": float("nan"), "b": 0.5})
@example({"a": float("inf")})
@example({"a": 1e308, "b": 1e308})  # finite values whose sum is not
@example({"a\n": 0.5})
@example({1: 0.5})
@example({Color.RED: 0.5, "b": 1.0})  # a str Enum key is stored as plain text
@given(st.dictionaries(floats_keys, float_values, max_size=6))
def test_a_mapping_of_floats_cleans_as_the_item_loop_cleans_it(mapping):
    dropped_fast: dict[str, int] = {}
    fast = clean({"v": mapping}, dropped=dropped_fast)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cleaning, "_plain_floats", lambda value: False)
        dropped_loop: dict[str, int] = {}
        loop = clean({"v": mapping}, dropped=dropped_loop)
    assert json.dumps(fast) == json.dumps(loop)
    assert [type(key) for key in fast["v"]] == [type(key) for key in loop["v"]]
    assert dropped_fast == dropped_loop


@example([float("nan"), 1.0, float("-inf")])
@given(st.lists(st.floats() | st.integers(-3, 3) | st.none() | st.text(max_size=3),
                max_size=8))
def test_a_list_cleans_item_by_item(values):
    """A list's finite floats are read inline; each item still cleans as it does alone."""
    assert json.dumps(clean(values)) == json.dumps([clean(value) for value in values])
