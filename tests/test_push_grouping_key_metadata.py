"""A grouping key label that a model's metadata also sets is refused, naming the label.

The Pushgateway puts a group's labels on every series of the group, replacing a label the
series carry: ``grouping_key={"team": "ml"}`` silently turned a model's
``metadata={"team": "risk"}`` into ``team="ml"`` on ``inferwatch_model_info``. Refused like
the labels the catalogue's series carry, before anything is pushed.
"""

from __future__ import annotations

import logging
import socket

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.serving.pushgateway import _PUSHED_LABELS, PushError
from test_pushgateway import gateway  # noqa: F401 (the fixture)


@pytest.mark.integration
def test_a_push_refuses_a_grouping_label_a_models_metadata_sets(gateway, scraper):  # noqa: F811
    registry = scraper.registry
    inferwatch.instrument(lambda x: 1, name="plain", version="1", registry=registry)([1.0])
    inferwatch.instrument(lambda x: 1, name="fraud", version="1", registry=registry,
                          metadata={"team": "risk"})([1.0])
    with pytest.raises(ValueError, match=r"grouping_key cannot set 'team'.*model 'fraud'"):
        inferwatch.push(gateway.address, "nightly", registry=registry,
                        grouping_key={"team": "ml"})
    # Refused before any group was sent, the model without that label included.
    assert gateway.samples("inferwatch_model_info", job="nightly") == []
    # Another label is no clash: the metadata arrives unchanged.
    inferwatch.push(gateway.address, "nightly", registry=registry,
                    grouping_key={"instance": "batch-7"})
    assert gateway.value("inferwatch_model_info", job="nightly", model="fraud",
                         instance="batch-7", team="risk") == 1


def test_a_job_refuses_the_clash_before_it_runs(scraper):
    registry = scraper.registry
    inferwatch.instrument(lambda x: 1, name="fraud", version="1", registry=registry,
                          metadata={"team": "risk"})
    ran = []
    job = inferwatch.push.on_exit("127.0.0.1:1", "nightly", registry=registry,
                                  grouping_key={"team": "ml"}, retries=0, timeout=0.5)
    with pytest.raises(ValueError, match=r"grouping_key cannot set 'team'"), job:
        ran.append(True)
    assert ran == []

    @job
    def nightly():
        ran.append(True)

    with pytest.raises(ValueError, match=r"grouping_key cannot set 'team'"):
        nightly()
    assert ran == []


def test_a_clashing_model_instrumented_during_the_job_is_logged_not_raised(scraper, caplog):
    registry = scraper.registry
    with caplog.at_level(logging.WARNING, logger="inferwatch.serving.pushgateway"), \
            inferwatch.push.on_exit("127.0.0.1:1", "nightly", registry=registry,
                                    grouping_key={"team": "ml"}, retries=0, timeout=0.5):
        inferwatch.instrument(lambda x: 1, name="fraud", version="1", registry=registry,
                              metadata={"team": "risk"})([1.0])
    assert "grouping_key cannot set 'team'" in caplog.text


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


LABELS = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda name: name not in _PUSHED_LABELS and name not in ("job", "model", "instance"))


@hypothesis_settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(metadata=st.lists(LABELS, max_size=4, unique=True),
       grouping=st.lists(LABELS, min_size=1, max_size=3, unique=True))
def test_a_push_is_refused_exactly_when_a_label_is_in_both(metadata, grouping):
    registry = Registry()
    try:
        inferwatch.instrument(lambda x: 1, name="m", version="1", registry=registry,
                              metadata=dict.fromkeys(metadata, "v"))([1.0])
        clash = sorted(set(metadata) & set(grouping))
        if clash:
            with pytest.raises(ValueError) as raised:
                inferwatch.push(closed_port(), "nightly", registry=registry,
                                grouping_key=dict.fromkeys(grouping, "g"), retries=0)
            assert any(f"'{label}'" in str(raised.value) for label in clash)
        else:
            # Nothing listens there: a PushError says the labels were let through.
            with pytest.raises(PushError):
                inferwatch.push(closed_port(), "nightly", registry=registry,
                                grouping_key=dict.fromkeys(grouping, "g"), retries=0)
    finally:
        registry.close()
