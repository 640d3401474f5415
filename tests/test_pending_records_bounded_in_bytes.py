"""``max_pending_bytes`` bounds what waiting request records hold, as it bounds fast-path
calls: a call with ``request_id=`` or an event log, or a ``mon.request()`` block, keeps its
result and inputs until the drain (docs/reliability.md). They escaped the bound: with the
drain stalled, 1,000 calls each holding an 80 kB result waited whole (80 MB for a 2 MiB
bound)."""

from __future__ import annotations

import numpy as np
import pytest

import inferwatch
from inferwatch.events import EventLog

BOUND = 2 * 1024 * 1024
EACH = 80_000  # the bytes of one result below
AT_MOST = BOUND // EACH


def _shapes(registry, tmp_path):
    def with_request_id():
        model = inferwatch.instrument(lambda x: np.zeros(10_000), name="m", version="1",
                                      max_pending_bytes=BOUND, registry=registry)
        return lambda: model(0, request_id="r-1")

    def with_event_log():
        log = EventLog(tmp_path / "events.jsonl")
        model = inferwatch.instrument(lambda x: np.zeros(10_000), name="m", version="1",
                                      max_pending_bytes=BOUND, events=log, registry=registry)
        return lambda: model(0)

    def request_block():
        mon = inferwatch.monitor("m", "1", registry=registry).configure(
            max_pending_bytes=BOUND)

        def call():
            with mon.request() as r:
                r.features(np.zeros(10_000))
                r.prediction(0.5)
        return call

    return {"request_id": with_request_id, "event log": with_event_log,
            "request block": request_block}


@pytest.mark.parametrize("shape", ["request_id", "event log", "request block"])
@pytest.mark.parametrize("learned", [True, False], ids=["after a drain", "stalled from start"])
def test_waiting_records_stay_within_max_pending_bytes(scraper, tmp_path, shape, learned):
    call = _shapes(scraper.registry, tmp_path)[shape]()
    scraper.registry.close()  # no background drain
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    if learned:
        for _ in range(10):
            call()
        mon.drain()  # learns what a record holds
    with mon._lock:  # a stalled drain
        for _ in range(1000):
            call()
        assert 8 <= mon.pending() <= AT_MOST
    mon.drain()
    dropped = scraper.value("inferwatch_calls_dropped_total")
    made = 1010 if learned else 1000
    assert scraper.value("inferwatch_requests_total", outcome="ok") + dropped == made
    assert dropped >= 1000 - AT_MOST


def test_small_records_keep_the_bound_in_calls(scraper):
    """Records of scalars hold about nothing: the bound stays ``max_pending`` calls."""
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", max_pending=3000,
                                  registry=scraper.registry)
    scraper.registry.close()
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    for _ in range(10):
        model(1.0, request_id="r")
    mon.drain()
    with mon._lock:
        for _ in range(2000):
            model(1.0, request_id="r")
        assert mon.pending() == 2000
    mon.drain()
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 2010


@pytest.mark.parametrize("id_chars", [36, 1000])
def test_the_record_and_its_request_id_count_toward_the_bound(scraper, id_chars):
    """Records of a scalar still hold themselves and their request id: sized as nothing,
    calls with uuid-long ids held 1.6 times the bound, ids of a kilobyte 11 times."""
    import tracemalloc

    bound = 4 * 1024 * 1024
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  max_pending_bytes=bound, registry=scraper.registry)
    scraper.registry.close()
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    for i in range(10):
        model([1.0], request_id=f"warm-{i}")
    mon.drain()
    pad = "x" * id_chars
    tracemalloc.start()
    try:
        with mon._lock:  # a stalled drain
            before = tracemalloc.get_traced_memory()[0]
            for i in range(40_000):
                model([1.0], request_id=f"{i}-{pad}")
            held = tracemalloc.get_traced_memory()[0] - before
            assert mon.pending() >= 8
    finally:
        tracemalloc.stop()
    assert held <= bound, f"{held / 2**20:.1f} MiB held by {mon.pending()} waiting calls"
    mon.drain()
