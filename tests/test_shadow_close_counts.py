"""What a shadow's close() counts: a process challenger's call cut off by close() is a
dropped comparison (``shutdown``), never an error of the challenger, and every sampled call
still ends compared or dropped, as the exposition shows it.
"""

from __future__ import annotations

import os
import threading

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from shadow_models import Hanging, Summing
from waiting import wait_until

WAIT = 30.0  # generous: a condition that holds is met at once


def _read(path):
    with open(path) as f:
        return f.read()


def _join_workers(handle):
    for thread in handle._threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in handle._threads)


def _accounts(scraper, version="2"):
    sampled = scraper.total("inferwatch_shadow_sampled_total", model_version=version)
    compared = scraper.total("inferwatch_shadow_compared_total", model_version=version)
    dropped = scraper.total("inferwatch_shadow_dropped_total", model_version=version)
    return sampled, compared + dropped


# --- a process challenger's call cut off by close() ---------------------------------------

def test_a_process_call_cut_off_by_close_is_no_error_of_the_challenger(scraper, tmp_path):
    marker = str(tmp_path / "started")
    registry = scraper.registry
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Hanging(marker), version="2", mode="process",
                               timeout=600.0, registry=registry)
    champion.predict(np.ones((1, 2)))
    wait_until(lambda: os.path.exists(marker) and _read(marker), WAIT, "the child's call")
    handle.close()
    _join_workers(handle)
    registry.drain()
    assert scraper.value("inferwatch_shadow_dropped_total", model_version="2",
                         reason="shutdown") == 1.0
    # The user closed the shadow: the challenger did not fail, so nothing in its errors
    # (which alert rules and error ratios read) and no error outcome.
    assert scraper.series("inferwatch_errors_total") == []
    assert scraper.total("inferwatch_requests_total", model_version="2", outcome="error") == 0
    assert scraper.value("inferwatch_requests_in_flight", model_version="2") == 0
    assert scraper.value("inferwatch_requests_in_flight", model_version="1") == 0
    assert _accounts(scraper) == (1.0, 1.0)


# --- a challenger whose predict reuses a buffer of its own --------------------------------

class Reusing(Summing):
    """Writes every answer into one output buffer it keeps (a preallocated output, as an
    inference runtime binding does) and returns that buffer."""

    def __init__(self) -> None:
        self.out = np.zeros(0)

    def predict(self, X=None):
        answer = super().predict(X)
        if self.out.shape != answer.shape:
            self.out = np.zeros(answer.shape)
        self.out[:] = answer
        return self.out


@settings(max_examples=15, deadline=None)
@given(values=st.lists(st.integers(-1000, 1000), min_size=2, max_size=8, unique=True))
def test_a_thread_challenger_that_reuses_its_output_buffer_is_compared_on_each_answer(values):
    from conftest import Scraper

    scraper = Scraper()
    registry = scraper.registry
    try:
        champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
        handle = inferwatch.shadow(champion, Reusing(), version="2", registry=registry,
                                   difference_buckets=(-0.5, 0.5))
        for value in values:
            champion.predict(np.array([[float(value), 0.0]]))
            assert handle.flush(WAIT)
        registry.drain()
        # The challenger answered each call as the champion did: every difference is 0,
        # none read from the buffer as a later call left it.
        count = scraper.value("inferwatch_shadow_difference_bucket", model_version="2",
                              le="+Inf")
        assert count == len(values)
        assert scraper.value("inferwatch_shadow_difference_bucket", model_version="2",
                             le="-0.5") == 0
        assert scraper.value("inferwatch_shadow_difference_bucket", model_version="2",
                             le="0.5") == len(values)
        # Its own predictions too: the same values as the champion's, not the last one.
        assert scraper.value("inferwatch_prediction_sum", model_version="2") == \
            scraper.value("inferwatch_prediction_sum", model_version="1") == sum(values)
        handle.close()
    finally:
        registry.close()


# --- shadow() called from two threads at once -----------------------------------------------

class Meeting(Summing):
    """Pickled for its child process only after every thread shadowing with one has begun
    (a challenger whose pickling takes a while: a large model)."""

    barrier: threading.Barrier | None = None

    def __getstate__(self):
        Meeting.barrier.wait(WAIT)
        return {}


def test_two_threads_shadowing_one_version_at_once_start_one_shadow(scraper):
    registry = scraper.registry
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    Meeting.barrier = threading.Barrier(2)
    handles, refused = [], []

    def start():
        try:
            handles.append(inferwatch.shadow(champion, Meeting(), version="2", mode="process",
                                             registry=registry))
        except ValueError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    try:
        # Two live challengers under one version would count every call twice in one series.
        assert len(handles) == 1 and len(refused) == 1
        assert "already shadows this champion" in refused[0]
        champion.predict(np.ones((1, 2)))
        registry.drain()
        assert scraper.value("inferwatch_shadow_sampled_total", model_version="2") == 1.0
    finally:
        for handle in handles:
            handle.close()
    assert getattr(champion.__dict__["predict"], "__inferwatch_link__", None) is None
