"""Reference profiles and Pushgateway pushes as users meet them: columns given in the wrong
shape, a reference of nothing, saves onto links and restricted files, and a gateway behind
a proxy that asks for a retry at a date."""

from __future__ import annotations

import email.utils
import os
import stat
import threading
import time
import urllib.error
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.quality.reference import Reference, ReferenceError
from inferwatch.serving.pushgateway import _retry_after, _retry_wait
from loopback_http import LoopbackServer, QuietHandler

# --- a column that is not a sequence of values -----------------------------------------------


@pytest.mark.parametrize(("column", "kind", "hint"), [
    ("abc", "a str", "not \"ab\""),
    ({"red", "blue"}, "a set", "no row order"),
    ((v for v in [1.0, 2.0]), "a generator", "list(...)"),
])
def test_a_column_given_as_text_set_or_generator_is_named_as_such(column, kind, hint):
    with pytest.raises(ReferenceError) as caught:
        Reference.from_data({"n": [1.0, 2.0, 3.0], "colour": column})
    message = str(caught.value)
    assert f"column 'colour' is {kind}, not a sequence of values" in message
    assert hint in message
    assert "1-D" not in message and "shape" not in message


def test_a_column_of_text_values_is_still_profiled():
    ref = Reference.from_data({"colour": ["abc", "abc", "d"], "n": range(3)})
    assert ref.features["colour"].categories[:2] == ("abc", "d")


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=20))
def test_any_single_text_as_a_column_is_refused_clearly(text):
    with pytest.raises(ReferenceError, match="is a str, not a sequence of values"):
        Reference.from_data({"a": text})


# --- a reference of nothing ------------------------------------------------------------------


@pytest.mark.parametrize("empty", [{}, np.empty((0, 0)), pd.DataFrame(index=range(3))])
def test_a_reference_of_no_features_and_no_predictions_is_refused(empty):
    with pytest.raises(ReferenceError, match="nothing to profile"):
        Reference.from_data(empty)


def test_predictions_alone_still_make_a_reference():
    ref = Reference.from_data({}, predictions=np.linspace(0, 1, 20))
    assert ref.output_names == ["value"] and ref.rows == 20


# --- saving onto a link, and over a restricted file -----------------------------------------


def test_save_onto_a_symlink_writes_through_to_its_target(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    target = store / "churn-v3.json"
    Reference.from_data({"a": [1.0, 2.0]}).save(target)
    link = tmp_path / "reference.json"
    link.symlink_to(target)

    newer = Reference.from_data({"a": [5.0, 6.0, 7.0]})
    newer.save(link)

    assert link.is_symlink(), "the link was replaced by a regular file"
    assert os.readlink(link) == str(target)
    assert Reference.load(target) == newer
    assert sorted(p.name for p in store.iterdir()) == ["churn-v3.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reference.json", "store"]


def test_save_onto_a_dangling_symlink_creates_its_target(tmp_path):
    target = tmp_path / "real.json"
    link = tmp_path / "reference.json"
    link.symlink_to(target)
    ref = Reference.from_data({"a": [1.0, 2.0]})
    ref.save(link)
    assert link.is_symlink() and Reference.load(target) == ref


def test_save_keeps_the_permissions_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "reference.json"
    Reference.from_data({"a": [1.0, 2.0]}).save(path)
    os.chmod(path, 0o600)
    Reference.from_data({"a": [3.0, 4.0]}).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Reference.load(path).features["a"].min == 3.0


# --- a Retry-After given as an HTTP date -----------------------------------------------------


class Proxy:
    """A loopback HTTP server standing in for a proxy before the gateway: answers the first
    PUT 503 with a `Retry-After` made by `retry_after(now)`, and later ones 200."""

    def __init__(self, retry_after) -> None:
        self.puts: list[float] = []
        self.lock = threading.Lock()
        self.retry_after = retry_after
        proxy = self

        class Handler(QuietHandler):
            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy.lock:
                    proxy.puts.append(time.monotonic())
                    first = len(proxy.puts) == 1
                if first:
                    self.send_response(503)
                    self.send_header("Retry-After", proxy.retry_after(time.time()))
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.http = LoopbackServer(Handler)
        self.address = self.http.address

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def scored_registry() -> Iterator[Registry]:
    registry = Registry()
    score = inferwatch.instrument(lambda rows: 0.5, name="churn", version="3",
                                  registry=registry)
    score([1.0])
    yield registry
    registry.close()


def push_through(proxy: Proxy, registry: Registry) -> list[dict[str, str]]:
    try:
        return inferwatch.push(proxy.address, "nightly", registry=registry, retries=1,
                               retry_delay=0, timeout=10)
    finally:
        proxy.close()


def test_a_retry_after_date_is_waited_for(scored_registry):
    # Two seconds ahead, to the whole second an HTTP date holds: a wait of 1 to 2 s.
    proxy = Proxy(lambda now: email.utils.formatdate(now + 2, usegmt=True))
    pushed = push_through(proxy, scored_registry)
    assert [group["model"] for group in pushed] == ["churn"]
    assert len(proxy.puts) == 2
    assert proxy.puts[1] - proxy.puts[0] >= 0.9, "the Retry-After date was not honoured"


def test_a_retry_after_date_in_the_past_retries_at_once(scored_registry):
    proxy = Proxy(lambda now: email.utils.formatdate(now - 3600, usegmt=True))
    assert push_through(proxy, scored_registry)
    assert len(proxy.puts) == 2


def test_a_retry_after_of_non_ascii_digits_does_not_raise_into_the_job(
        scored_registry):
    # "²".isdigit() is true, yet float("²") raises: the push must still retry, not raise
    # ValueError into the job.
    proxy = Proxy(lambda now: "\u00b2")
    assert push_through(proxy, scored_registry)
    assert len(proxy.puts) == 2


def _refused(retry_after: str) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("http://gw/metrics", 503, "Service Unavailable",
                                  {"Retry-After": retry_after}, None)  # type: ignore[arg-type]


def test_a_far_retry_after_date_is_bounded_as_seconds_are():
    far = email.utils.formatdate(time.time() + 86400, usegmt=True)
    assert _retry_wait(0.5, 1, [_refused(far)]) == 30.0
    assert _retry_wait(0.5, 1, [_refused("86400")]) == 30.0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40) | st.from_regex(
    r"[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{1,5} \d\d:\d\d:\d\d (GMT|-0000|\+\d{4})",
    fullmatch=True))
def test_any_retry_after_gives_a_bounded_wait_never_an_exception(value):
    seconds = _retry_after(value)
    assert seconds is None or seconds >= 0.0
    wait = _retry_wait(0.5, 1, [_refused(value)])
    assert 0.5 <= wait <= 30.0
