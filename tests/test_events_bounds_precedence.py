"""Which rule wins where a redaction path and a hash path reach the same field: the more
specific one, whether the field is nested or spelled as one dotted key."""

from __future__ import annotations

import json

import pytest

from inferwatch.events.redact import HASH_PREFIX, Redaction
from inferwatch.events.sinks import Encoder

SECRET = "s" * 32


def _stored(event: dict, drop: list[str], hash_fields: list[str]) -> dict:
    policy = Redaction(drop=drop, hash_fields=hash_fields, secret=SECRET)
    return json.loads(Encoder(policy).encode(event, now=1.0).line)


def _hashed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(HASH_PREFIX)


def test_every_key_dropped_but_one_named_for_hashing():
    stored = _stored({"inputs": {"user_id": "u-1", "name": "Jane"},
                      "features": {"user_id": "u-1", "age": 3}},
                     drop=["inputs.*"], hash_fields=["inputs.user_id"])
    assert list(stored["inputs"]) == ["user_id"] and _hashed(stored["inputs"]["user_id"])
    # The hash rule's twin reaches the features; `inputs.*` has no twin.
    assert _hashed(stored["features"]["user_id"]) and stored["features"]["age"] == 3


# (drop, hash_fields, the field the hash rule keeps, as a path)
CASES = [
    (["inputs.*"], ["inputs.user_id"], ("inputs", "user_id")),
    (["inputs.*.ssn"], ["inputs.user.ssn"], ("inputs", "user", "ssn")),
    # The wildcard drop's twin (features.*.ssn) must not undo an explicit hash rule.
    (["inputs.*.ssn"], ["features.user.ssn"], ("features", "user", "ssn")),
    # An explicit rule for a field beats the twin of a rule for the other field.
    (["inputs.user.ssn"], ["features.*.ssn"], ("features", "user", "ssn")),
    # Twin against twin: the more specific twin wins, as on the field the rules name.
    (["inputs.*.ssn"], ["inputs.user.ssn"], ("features", "user", "ssn")),
]


def _nested(path: tuple[str, ...], value: object) -> dict:
    for key in reversed(path[1:]):
        value = {key: value}
    return value


@pytest.mark.parametrize("nesting", ["nested", "dotted"])
@pytest.mark.parametrize(("drop", "hash_fields", "kept"), CASES)
def test_the_more_specific_rule_wins_nested_or_dotted(drop, hash_fields, kept, nesting):
    field, rest = kept[0], kept[1:]
    inner = _nested(kept, "SECRET") if nesting == "nested" else {".".join(rest): "SECRET"}
    stored = _stored({field: inner}, drop, hash_fields)
    assert "SECRET" not in json.dumps(stored)
    node = stored[field]
    if nesting == "nested":
        for key in rest:
            node = node[key]
    else:
        node = node[".".join(rest)]
    assert _hashed(node)


@pytest.mark.parametrize("nesting", ["nested", "dotted"])
def test_overlapping_rules_that_neither_contains_drop(nesting):
    # inputs.*.ssn and inputs.user.* both reach inputs.user.ssn; neither is more specific.
    inner = {"user": {"ssn": "SECRET"}} if nesting == "nested" else {"user.ssn": "SECRET"}
    stored = _stored({"inputs": inner}, ["inputs.*.ssn"], ["inputs.user.*"])
    assert stored["inputs"] == ({"user": {}} if nesting == "nested" else {})


def test_a_drop_of_the_containing_field_still_removes_everything_inside():
    for inner in ({"user": {"ssn": "SECRET", "x": 1}}, {"user.ssn": "SECRET", "user.x": 1}):
        stored = _stored({"inputs": inner}, ["inputs.*"], ["inputs.user.ssn"])
        assert stored["inputs"] == {}
