"""Stream proxies and shadows as servers meet them: an SDK stream that answers ``in``,
indexing, ``reversed()`` and ``format()`` itself; one with attributes named like the
proxy's own; one that is an async iterator too, advanced by ``asend()`` / ``athrow()``; a
server that exits with sampled calls still queued for its challenger."""

from __future__ import annotations

import asyncio
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from server_scripts import printed, run_server
from stream_totals import STREAM_EXAMPLES, stream_items, stream_outcomes


def _followed(make, registry: Registry):
    return inferwatch.instrument(make, name="gen", version="1", registry=registry)()


# --- in, [], reversed(), format() of a stream that answers them itself -------------------

class _Lookup:
    """A stream that knows its items without reading them (a response's parsed chunks)."""

    def __init__(self, items: list[str]) -> None:
        self.items = list(items)
        self.at = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.at >= len(self.items):
            raise StopIteration
        self.at += 1
        return self.items[self.at - 1]

    def __contains__(self, item: object) -> bool:
        return item in self.items

    def __getitem__(self, index: int) -> str:
        return self.items[index]

    def __reversed__(self):
        return iter(self.items[::-1])

    def __format__(self, spec: str) -> str:
        return f"<{len(self.items)} chunks>" if spec == "short" else str(self.items)


class _Plain:
    def __init__(self, items: list[str]) -> None:
        self.rest = iter(items)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        return next(self.rest)


@STREAM_EXAMPLES
@given(items=st.lists(st.text(max_size=5), min_size=1, max_size=8), probe=st.text(max_size=5))
def test_in_asks_the_stream_and_consumes_none_of_its_items(items, probe):
    registry = Registry()
    stream = _followed(lambda: _Lookup(items), registry)
    assert (probe in stream) == (probe in items)
    assert (items[0] in stream) is True
    assert list(stream) == items  # nothing was consumed by the look-ups
    assert stream_outcomes(registry) == {("ok",): 1.0}
    assert stream_items(registry) == len(items)
    registry.close()


@STREAM_EXAMPLES
@given(items=st.lists(st.text(max_size=5), min_size=1, max_size=8), data=st.data())
def test_indexing_and_reversed_are_the_streams_own_and_record_nothing(items, data):
    registry = Registry()
    stream = _followed(lambda: _Lookup(items), registry)
    index = data.draw(st.integers(-len(items), len(items) - 1))
    assert stream[index] == items[index]
    with pytest.raises(IndexError):
        stream[len(items)]
    assert list(reversed(stream)) == items[::-1]
    assert stream.at == 0
    assert list(stream) == items
    assert stream_items(registry) == len(items)
    registry.close()


def test_format_of_a_proxy_is_the_streams_own():
    registry = Registry()
    stream = _followed(lambda: _Lookup(["a", "b"]), registry)
    assert f"{stream:short}" == "<2 chunks>"
    assert format(stream) == "['a', 'b']"
    registry.close()


def test_a_stream_without_those_methods_gets_none_through_its_proxy():
    registry = Registry()
    stream = _followed(lambda: _Plain(["a", "b"]), registry)
    assert not hasattr(stream, "__getitem__") and not hasattr(stream, "__reversed__")
    with pytest.raises(TypeError):
        stream[0]
    with pytest.raises(TypeError):
        reversed(stream)
    assert f"{stream}" == str(stream)
    assert "b" in stream  # as unwrapped: ``in`` reads the items up to the one found
    assert list(stream) == []
    registry.close()


# --- a stream with attributes named like the proxy's own ------------------------------------

class _Wrapped:
    """A wrapper SDK's stream: its underlying stream and last chunk under private names."""

    def __init__(self, items: list[str]) -> None:
        self._stream = iter(items)
        self._last = None
        self._chars = "mine"
        self._clock = "server clock"
        self._on_item = "hook"
        self._tracker = "its own tracker"

    def __iter__(self):
        return self

    def __next__(self) -> str:
        self._last = next(self._stream)
        return self._last


def test_a_streams_private_attributes_are_read_and_set_through_its_proxy():
    registry = Registry()
    stream = _followed(lambda: _Wrapped(["x", "y"]), registry)
    assert next(stream) == "x"
    assert stream._last == "x"
    assert (stream._chars, stream._clock, stream._on_item, stream._tracker) == (
        "mine", "server clock", "hook", "its own tracker")
    assert next(iter(stream._stream)) == "y"  # the stream's own underlying iterator
    stream._last = "set by the caller"
    assert stream._last == "set by the caller"
    assert list(stream) == []
    assert stream_outcomes(registry) == {("ok",): 1.0}
    assert stream_items(registry) == 1
    registry.close()


# --- a sync stream that is an async iterator too, advanced by asend() and athrow() --------

class _BothWays:
    """LiteLLM-style: iterated or async-iterated, with asend() / athrow() / aclose()."""

    def __init__(self, items: list[str]) -> None:
        self.rest = list(items)
        self.sent: list[object] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if not self.rest:
            raise StopIteration
        return self.rest.pop(0)

    def __aiter__(self):
        return self

    async def __anext__(self) -> str:
        if not self.rest:
            raise StopAsyncIteration
        return self.rest.pop(0)

    async def asend(self, value: object) -> str:
        self.sent.append(value)
        return await self.__anext__()

    async def athrow(self, kind, value=None, tb=None) -> str:
        if self.rest:  # it recovers, and goes on with its next item
            return self.rest.pop(0)
        raise kind if value is None else value

    async def aclose(self) -> None:
        self.rest.clear()


@STREAM_EXAMPLES
@given(items=st.lists(st.text(max_size=4), min_size=2, max_size=8))
def test_items_of_asend_and_athrow_on_a_both_ways_stream_are_recorded(items):
    registry = Registry()
    stream = _followed(lambda: _BothWays(items), registry)

    async def consume() -> list[str]:
        got = [await stream.asend(None), await stream.athrow(ValueError)]
        while True:
            try:
                got.append(await stream.asend("more"))
            except StopAsyncIteration:
                return got

    assert asyncio.run(consume()) == items
    assert stream_outcomes(registry) == {("ok",): 1.0}
    assert stream_items(registry) == len(items)
    registry.close()


def test_athrow_before_the_first_item_of_a_both_ways_stream_is_cancelled():
    registry = Registry()
    stream = _followed(lambda: _BothWays([]), registry)

    async def abort() -> None:
        with pytest.raises(ValueError):
            await stream.athrow(ValueError("consumer gave up"))

    asyncio.run(abort())
    assert stream_outcomes(registry) == {("cancelled",): 1.0}
    registry.close()


# --- a server that exits with sampled calls still queued ------------------------------------

_EXITING_SERVER = textwrap.dedent("""
    import atexit, os, sys, threading, time

    # Registered first, so run last: a final push or publish at exit, which reads the counts
    # as they are once the call under way has ended.
    def report():
        handle = HANDLE[0]
        GATE.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            REGISTRY[0].drain()
            counters = handle.monitor.state.counters
            sampled = sum(counters["inferwatch_shadow_sampled_total"].values())
            compared = sum(counters["inferwatch_shadow_compared_total"].values())
            dropped = {k[1]: v for k, v in
                       counters["inferwatch_shadow_dropped_total"].items() if v}
            if sampled == compared + sum(dropped.values()):
                break
            time.sleep(0.01)
        print("SAMPLED", int(sampled), flush=True)
        print("COMPARED", int(compared), flush=True)
        print("DROPPED", sorted((k, int(v)) for k, v in dropped.items()), flush=True)

    HANDLE, REGISTRY, GATE = [], [], threading.Event()
    atexit.register(report)

    import inferwatch
    from inferwatch.core.registry import Registry

    class Slow:
        def __init__(self, marker):
            self.marker = marker
            self.calls = 0

        def predict(self, rows):
            self.calls += 1
            if self.calls == 1:
                with open(self.marker, "w") as f:
                    f.write("in")
                GATE.wait(60)  # released by the report, at exit
                return list(rows)
            time.sleep(3600)  # a challenger far behind its champion

    class Model:
        def predict(self, rows):
            return list(rows)

    if __name__ == "__main__":
        registry = Registry()
        champion = inferwatch.instrument(Model(), name="m", version="1", registry=registry)
        HANDLE.append(inferwatch.shadow(champion, Slow(sys.argv[1]), version="2",
                                        timeout=3600.0, registry=registry))
        REGISTRY.append(registry)
        champion.predict([1.0])
        while not os.path.exists(sys.argv[1]):
            time.sleep(0.01)
        for _ in range(9):
            champion.predict([2.0])
        # The server exits here, nine calls still queued for the challenger and one in it.
""")


def test_calls_still_queued_when_the_server_exits_are_dropped_as_shutdown(tmp_path):
    done = run_server(tmp_path, _EXITING_SERVER, str(tmp_path / "in_call"))
    lines = printed(done.stdout)
    assert lines["SAMPLED"] == "10", done.stdout
    # The call in the challenger is released only by a hook that runs after the shadows
    # closed: past the close's wait it counts as dropped too, so every call is accounted.
    assert lines["COMPARED"] == "0", done.stdout
    assert lines["DROPPED"] == "[('shutdown', 10)]", done.stdout


# --- a challenger that raises a TimeoutError of its own -------------------------------------

class _Champion:
    def predict(self, rows):
        return [1.0 for _ in rows]


class _OwnTimeout:
    """A challenger behind an HTTP client whose socket timed out: its error, at once."""

    def predict(self, rows):
        raise TimeoutError("read timed out")


class _AsyncOwnTimeout:
    async def predict(self, rows):
        raise TimeoutError("read timed out")


class _AsyncHanging:
    async def predict(self, rows):
        await asyncio.sleep(60)


def _shadow_counts(handle) -> tuple[dict[str, float], dict[str, float]]:
    handle.monitor.drain()
    counters = handle.monitor.state.counters
    dropped = {k[1]: v for k, v in counters["inferwatch_shadow_dropped_total"].items() if v}
    errors = {k[0]: v for k, v in counters.get("inferwatch_errors_total", {}).items() if v}
    return dropped, errors


@pytest.mark.parametrize("challenger", [_OwnTimeout(), _AsyncOwnTimeout()],
                         ids=["sync", "async"])
def test_a_challengers_own_timeout_error_is_its_error_not_a_shadow_timeout(challenger):
    registry = Registry()
    champion = inferwatch.instrument(_Champion(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, challenger, version="2", timeout=30.0,
                               registry=registry)
    try:
        champion.predict([[1.0]])
        assert handle.flush(30.0)
        dropped, errors = _shadow_counts(handle)
        assert dropped == {"error": 1.0}
        assert errors == {"TimeoutError": 1.0}
    finally:
        handle.close()
        registry.close()


def test_an_async_challenger_past_the_timeout_is_still_a_shadow_timeout():
    registry = Registry()
    champion = inferwatch.instrument(_Champion(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, _AsyncHanging(), version="2", timeout=0.05,
                               registry=registry)
    try:
        champion.predict([[1.0]])
        assert handle.flush(30.0)
        dropped, errors = _shadow_counts(handle)
        assert dropped == {"timeout": 1.0}
        assert errors == {"ShadowTimeout": 1.0}
    finally:
        handle.close()
        registry.close()
