"""Stream proxies and process challengers as servers meet them: an SDK stream that is awaited
as well as iterated, probed with ``dir()`` and ``length_hint()``; a server that exits with a
challenger's call under way; a child whose parent stops listening."""

from __future__ import annotations

import asyncio
import operator
import os
import pickle
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import inferwatch
from inferwatch.core import shadow_process
from inferwatch.core.registry import Registry
from server_scripts import printed, run_server
from stream_totals import STREAM_EXAMPLES, AsyncItems, stream_items, stream_outcomes

# --- a stream that is awaitable as well as an async iterator ------------------------------

class _AwaitableChunks(AsyncItems):
    """An async SDK stream that may also be awaited: to itself (ready to read), or to its
    response."""

    def __init__(self, items: list[str], awaits_to_self: bool = True) -> None:
        super().__init__(items)
        self.awaits_to_self = awaits_to_self
        self.awaited = 0

    async def _ready(self):
        await asyncio.sleep(0)
        self.awaited += 1
        return self if self.awaits_to_self else {"status": 200}

    def __await__(self):
        return self._ready().__await__()


class _AwaitableSyncChunks:
    """A sync iterator object that can be awaited too."""

    def __init__(self, items: list[str]) -> None:
        self.rest = iter(items)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.rest)

    def __await__(self):
        yield from asyncio.sleep(0).__await__()
        return "response"


@STREAM_EXAMPLES
@given(st.lists(st.text(max_size=5), max_size=8))
def test_an_awaitable_async_stream_is_awaited_through_its_proxy_and_its_items_recorded(items):
    registry = Registry()
    chat = inferwatch.instrument(lambda: _AwaitableChunks(items), name="gen", version="1",
                                 registry=registry)

    async def consume():
        stream = await chat()  # awaited to itself: the caller keeps the followed proxy
        return stream, [item async for item in stream]

    stream, got = asyncio.run(consume())
    assert got == items
    assert stream.awaited == 1
    assert isinstance(stream, _AwaitableChunks)
    # The await is no item; the items are.
    assert stream_outcomes(registry) == {("ok",): 1.0}
    assert stream_items(registry, drain=False) == len(items)
    registry.close()


def test_an_awaitable_stream_that_awaits_to_its_response_hands_that_response_back():
    registry = Registry()
    chat = inferwatch.instrument(lambda: _AwaitableChunks(["a"], awaits_to_self=False),
                                 name="gen", version="1", registry=registry)
    stream = chat()

    async def consume():
        return await stream, [item async for item in stream]

    assert asyncio.run(consume()) == ({"status": 200}, ["a"])
    assert stream_outcomes(registry) == {("ok",): 1.0}
    assert stream_items(registry, drain=False) == 1.0
    registry.close()


def test_an_awaitable_sync_stream_is_awaited_and_iterated_through_its_proxy():
    registry = Registry()
    chat = inferwatch.instrument(lambda: _AwaitableSyncChunks(["x", "y"]), name="gen",
                                 version="1", registry=registry)
    stream = chat()

    async def awaited():
        return await stream

    assert asyncio.run(awaited()) == "response"
    assert list(stream) == ["x", "y"]
    assert stream_outcomes(registry) == {("ok",): 1.0}
    assert stream_items(registry, drain=False) == 2.0
    registry.close()


def test_a_proxy_of_a_stream_that_cannot_be_awaited_is_not_awaitable_either():
    registry = Registry()
    stream = inferwatch.instrument(lambda: AsyncItems("ab"), name="gen", version="1",
                                   registry=registry)()
    assert not hasattr(stream, "__await__")

    async def awaited():
        await stream

    with pytest.raises(TypeError):
        asyncio.run(awaited())
    registry.close()


# --- dir() and length_hint() ----------------------------------------------------------------

class _Hinting:
    """An unsized stream that estimates what is left (as list() reads it)."""

    token_budget = 128

    def __init__(self, n: int) -> None:
        self.left = n

    def __iter__(self):
        return self

    def __next__(self):
        if not self.left:
            raise StopIteration
        self.left -= 1
        return "t"

    def __length_hint__(self):
        return self.left

    def usage_so_far(self):
        return 0

    # Attributes read through to the HTTP response, as a wrapping SDK stream offers them:
    # listed by its own __dir__, for a REPL's completion and for code that probes dir().
    _RESPONSE = {"headers": {"x-request-id": "r1"}, "status_code": 200}

    def __getattr__(self, name):
        try:
            return self._RESPONSE[name]
        except KeyError:
            raise AttributeError(name) from None

    def __dir__(self):
        return [*object.__dir__(self), *self._RESPONSE]


def test_dir_of_a_proxy_lists_the_streams_names():
    registry = Registry()
    raw = _Hinting(3)
    stream = inferwatch.instrument(lambda: raw, name="gen", version="1", registry=registry)()
    names = dir(stream)
    assert names == dir(raw)
    # The stream's own attributes too (openai's Stream sets .response in __init__).
    assert "usage_so_far" in names and "token_budget" in names and "left" in names
    assert "headers" in names and "status_code" in names
    assert all(hasattr(stream, name) for name in names)
    assert "_tracker" not in names and "_clock" not in names
    registry.close()


@STREAM_EXAMPLES
@given(st.integers(min_value=0, max_value=50), st.integers(min_value=0, max_value=50))
def test_length_hint_of_a_proxy_is_the_streams_own_as_it_is_read(n, read):
    registry = Registry()
    stream = inferwatch.instrument(lambda: _Hinting(n), name="gen", version="1",
                                   registry=registry)()
    assert operator.length_hint(stream, -1) == n
    taken = [next(stream) for _ in range(min(n, read))]
    assert operator.length_hint(stream, -1) == n - len(taken)
    assert len(list(stream)) == n - len(taken)
    assert stream_outcomes(registry) == {("ok",): 1.0}
    assert stream_items(registry, drain=False) == n
    registry.close()


def test_a_stream_without_a_length_hint_gives_the_default_through_its_proxy():
    class NoHint:
        def __iter__(self):
            return self

        def __next__(self):
            raise StopIteration

    class NotImplementedHint(NoHint):
        def __length_hint__(self):
            return NotImplemented

    registry = Registry()
    for cls in (NoHint, NotImplementedHint):
        stream = inferwatch.instrument(lambda cls=cls: cls(), name="gen", version="1",
                                       registry=registry)()
        assert operator.length_hint(stream, 7) == 7
        assert hasattr(stream, "__length_hint__") == hasattr(cls, "__length_hint__")
    registry.close()


# --- a server that exits with a process challenger's call under way ------------------------

_EXITING_SERVER = textwrap.dedent("""
    import atexit, os, sys, time

    # Registered first, so run last: after inferwatch's and multiprocessing's exit handlers.
    def report():
        handle = HANDLE[0]
        deadline = time.monotonic() + 60
        while handle._done < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        REGISTRY[0].drain()
        dropped = handle.monitor.state.counters["inferwatch_shadow_dropped_total"]
        errors = handle.monitor.state.counters.get("inferwatch_errors_total", {})
        print("DROPPED", sorted(k[1] for k, v in dropped.items() if v), flush=True)
        print("ERRORS", sorted(k[0] for k, v in errors.items() if v), flush=True)

    HANDLE, REGISTRY = [], []
    atexit.register(report)

    import inferwatch
    from inferwatch.core.registry import Registry

    class Slow:
        def __init__(self, marker):
            self.marker = marker

        def predict(self, rows):
            with open(self.marker, "w") as f:
                f.write("in")
            time.sleep(3600)

    class Model:
        def predict(self, rows):
            return list(rows)

    if __name__ == "__main__":
        registry = Registry()
        champion = inferwatch.instrument(Model(), name="m", version="1", registry=registry)
        HANDLE.append(inferwatch.shadow(champion, Slow(sys.argv[1]), version="2",
                                        mode="process", timeout=3600.0, registry=registry))
        REGISTRY.append(registry)
        champion.predict([1.0])
        while not os.path.exists(sys.argv[1]):
            time.sleep(0.01)
        # The server exits here, with the challenger's call under way.
""")


def test_a_call_cut_off_by_the_servers_exit_is_dropped_as_shutdown_not_crashed(tmp_path):
    done = run_server(tmp_path, _EXITING_SERVER, str(tmp_path / "in_call"))
    lines = printed(done.stdout)
    assert lines["DROPPED"] == "['shutdown']", done.stdout
    assert "ShadowCrashed" not in lines["ERRORS"], done.stdout


def test_a_call_after_the_interpreter_began_exiting_is_shutdown(monkeypatch):
    runner = shadow_process.ProcessRunner(pickle.dumps(abs))
    monkeypatch.setattr(shadow_process, "_exiting", True)
    try:
        assert runner.call("__call__", (-2,), {}, timeout=60.0)[0] == "shutdown"
    finally:
        runner.close()


# --- a child whose parent stopped listening -------------------------------------------------

class _Unpicklable:
    """Waits for the parent to go, then answers with a lock (which cannot be pickled)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def predict(self, rows):
        deadline = time.monotonic() + 60
        while not os.path.exists(self.marker) and time.monotonic() < deadline:
            time.sleep(0.01)
        return threading.Lock()


class _Picklable(_Unpicklable):
    def predict(self, rows):
        super().predict(rows)
        return [1.0]


@pytest.mark.parametrize("model", [_Unpicklable, _Picklable], ids=lambda m: m.__name__)
def test_a_child_whose_parent_closed_the_pipe_ends_quietly(tmp_path, capfd, model):
    marker = tmp_path / "gone"
    parent, child = shadow_process._CONTEXT.Pipe()
    process = shadow_process._CONTEXT.Process(
        target=shadow_process._child_main,
        args=(child, pickle.dumps(model(str(marker)))), daemon=True)
    process.start()
    child.close()
    try:
        assert parent.poll(120) and parent.recv()[0] == "ready"
        parent.send_bytes(pickle.dumps(("predict", ([1.0],), {})))
        parent.close()  # the server timed the call out, or shut its shadow
        marker.write_text("gone")
        process.join(60)
        assert process.exitcode == 0
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
    assert Path(marker).exists()
