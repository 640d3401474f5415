"""Stream proxies and shadows as servers meet them: a stream whose ``__iter__`` /
``__aiter__`` does work and hands out an iterator object of its own; a server whose exit
hook, registered after ``shadow()``, still calls its champion."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from stream_totals import STREAM_EXAMPLES, AsyncItems, stream_items, stream_outcomes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- a stream whose __iter__ hands out a fresh iterator ----------------------------------

class _Cursor:
    """A result set: iterating opens a cursor (a fresh iterator object); the object's own
    __next__ is a legacy path that reads nothing."""

    def __init__(self, rows: list[str]) -> None:
        self.rows = list(rows)
        self.opened = 0

    def __iter__(self):
        self.opened += 1
        return iter(self.rows)

    def __next__(self) -> str:
        raise StopIteration  # nothing without a cursor


@STREAM_EXAMPLES
@given(rows=st.lists(st.text(max_size=5), max_size=8))
def test_a_streams_own_iter_is_called_and_its_iterator_read(rows):
    registry = Registry()
    made: list[_Cursor] = []

    def query() -> _Cursor:
        made.append(_Cursor(rows))
        return made[0]

    stream = inferwatch.instrument(query, name="gen", version="1", registry=registry)()
    assert list(stream) == rows
    assert made[0].opened == 1
    assert stream_outcomes(registry) == {("ok",): 1.0}
    assert stream_items(registry) == len(rows)  # each item counted once
    registry.close()


def test_a_for_loop_over_a_cursor_stream_counts_its_items_once():
    registry = Registry()
    stream = inferwatch.instrument(lambda: _Cursor(["a", "b", "c"]), name="gen",
                                   version="1", registry=registry)()
    seen = []
    for row in stream:
        seen.append(row)
    assert seen == ["a", "b", "c"] and stream.opened == 1
    assert stream_items(registry) == 3
    registry.close()


class _AsyncCursor:
    def __init__(self, rows: list[str]) -> None:
        self.rows = list(rows)
        self.opened = 0

    def __aiter__(self):
        self.opened += 1
        return AsyncItems(self.rows)

    async def __anext__(self) -> str:
        raise StopAsyncIteration


@STREAM_EXAMPLES
@given(rows=st.lists(st.text(max_size=5), max_size=8))
def test_an_async_streams_own_aiter_is_called_and_its_iterator_read(rows):
    registry = Registry()
    stream = inferwatch.instrument(lambda: _AsyncCursor(rows), name="gen", version="1",
                                   registry=registry)()

    async def read() -> list[str]:
        return [row async for row in stream]

    assert asyncio.run(read()) == rows
    assert stream.opened == 1
    assert stream_outcomes(registry) == {("ok",): 1.0}
    assert stream_items(registry) == len(rows)
    registry.close()


# --- an exit hook registered after shadow() ----------------------------------------------

_MODEL = """
class Model:
    def predict(self, rows):
        return [sum(row) for row in rows]
"""

_SERVER = """
import atexit
import inferwatch
from inferwatch.core.registry import Registry
from late_model import Model


def main():
    registry = Registry()
    champion = inferwatch.instrument(Model(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Model(), version="2", mode=MODE, timeout=60.0,
                               registry=registry)

    def last_requests():  # the server's own hook: a last batch scored at exit
        champion.predict([[1.0, 2.0]])
        answered = handle.flush(60)
        registry.drain()
        counters = handle.monitor.state.counters
        print("RESULT", answered, counters["inferwatch_shadow_compared_total"][("1",)],
              flush=True)

    atexit.register(last_requests)
    champion.predict([[3.0]])  # the first sampled call starts the workers
    assert handle.flush(60)


if __name__ == "__main__":
    main()
"""


def _run_server(tmp_path, mode: str) -> str:
    (tmp_path / "late_model.py").write_text(_MODEL)
    script = tmp_path / "server.py"
    script.write_text(textwrap.dedent(_SERVER).replace("MODE", repr(mode)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), os.path.join(ROOT, "exporter"),
                                         env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_process_shadow_answers_calls_from_an_exit_hook_registered_after_it(tmp_path):
    out = _run_server(tmp_path, "process")
    assert "RESULT True 2.0" in out, out


def test_a_thread_shadow_answers_calls_from_an_exit_hook_registered_after_it(tmp_path):
    out = _run_server(tmp_path, "thread")
    assert "RESULT True 2.0" in out, out


class _Unreachable:
    """A stream whose __iter__ opens its connection, and fails to."""

    def __iter__(self):
        raise ConnectionError("backend down")

    def __next__(self) -> str:
        raise StopIteration


def test_a_stream_that_fails_to_open_in_its_iter_is_an_error_not_a_cancel():
    registry = Registry()
    stream = inferwatch.instrument(lambda: _Unreachable(), name="gen", version="1",
                                   registry=registry)()
    with pytest.raises(ConnectionError):
        list(stream)
    del stream
    gc.collect()
    assert stream_outcomes(registry) == {("error",): 1.0}
    registry.close()
