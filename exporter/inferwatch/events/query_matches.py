"""The matches of an event-log query, kept to be printed oldest first in bounded memory.

A query reads each file of the log in turn and finds its matches in file order; they are
printed by time across files. :class:`QueryMatches` keeps their positions (never the events'
text) and gives them back in that order.

>>> matches = QueryMatches(limit=None)
>>> matches.add(20.0, 0, 0, 10); matches.add(30.0, 0, 10, 10); matches.end_file(0)
>>> matches.add(25.0, 1, 0, 12); matches.end_file(1)
>>> [(ts, number) for ts, number, _, _ in matches.ordered()]
[(20.0, 0), (25.0, 1), (30.0, 0)]
>>> matches.close()
"""

from __future__ import annotations

import heapq
import os
import tempfile
from array import array
from collections.abc import Iterator
from itertools import chain, repeat
from typing import BinaryIO

# Matches a query without a limit holds in memory (32 bytes each); past that they are
# written, sorted, to a temporary file and merged from there as they are printed.
_SPILL_MATCHES = 1 << 16
# Matches read back at a time from each sorted run in that file (32 KiB).
_RUN_READ = 1024
# Runs merged into one once there are this many, so that the buffers stay bounded too.
_MAX_RUNS = 32


class QueryMatches:
    """Where the matches of a query are, to print them oldest first, in bounded memory.

    With a limit, only the `limit` earliest are kept (a heap), however many match. Without
    one, matches are kept as packed arrays (no object per match), sorted by time file by
    file; every ``_SPILL_MATCHES`` of them are merged into one sorted run written to an
    unnamed temporary file (positions and times only, never event text), and the runs and
    what is still in memory are merged as they are printed. ``_MAX_RUNS`` runs of one
    level are merged into one run of the next, so each match is rewritten once per level
    (a level per factor of 32). Memory stays about 2 MiB plus 1 MiB per level, where
    holding every match took 24 bytes each: gigabytes for a log of hundreds of millions of
    events. The temporary files take 32 bytes a match.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._heap: list[tuple[float, int, int, int]] = []  # negated: the latest on top
        self._files: list[tuple[int, array, array, array]] = []
        self._held = 0
        # Sorted runs by level, each level's in one temporary file: (offset, matches).
        self._levels: list[tuple[BinaryIO, list[tuple[int, int]]]] = []
        self._new_file()

    def _new_file(self) -> None:
        self._ts, self._offsets, self._lengths = array("d"), array("q"), array("q")
        self._in_order = True

    def add(self, ts: float, number: int, offset: int, length: int) -> None:
        """A match at `offset` of file `number`, of `length` bytes and time `ts`."""
        if self.limit is not None:
            if self.limit <= 0:
                return
            key = (-ts, -number, -offset, length)
            if len(self._heap) < self.limit:
                heapq.heappush(self._heap, key)
            elif key > self._heap[0]:  # earlier than the latest kept
                heapq.heapreplace(self._heap, key)
            return
        if self._in_order and self._ts and ts < self._ts[-1]:
            self._in_order = False
        self._ts.append(ts)
        self._offsets.append(offset)
        self._lengths.append(length)
        self._held += 1
        if self._held >= _SPILL_MATCHES:
            # Later matches of the same file sort among these when the runs are merged.
            self.end_file(number)
            self._write_run()

    def end_file(self, number: int) -> None:
        """The matches added since the last call are those of file `number`."""
        ts, offsets, lengths = self._ts, self._offsets, self._lengths
        if ts:
            if not self._in_order:
                # A stable sort: equal times keep their order in the file.
                order = sorted(range(len(ts)), key=ts.__getitem__)
                ts = array("d", [ts[i] for i in order])
                offsets = array("q", [offsets[i] for i in order])
                lengths = array("q", [lengths[i] for i in order])
            self._files.append((number, ts, offsets, lengths))
        self._new_file()

    def _in_memory(self) -> Iterator[tuple[float, int, int, int]]:
        files, self._files, self._held = self._files, [], 0
        return heapq.merge(*(zip(ts, repeat(number), offsets, lengths)
                             for number, ts, offsets, lengths in files))

    def _write_run(self) -> None:
        columns = (array("d"), array("q"), array("q"), array("q"))
        for match in self._in_memory():
            for column, value in zip(columns, match):
                column.append(value)
        try:
            if not self._levels:
                self._levels.append((tempfile.TemporaryFile(), []))  # noqa: SIM115
            spill, runs = self._levels[0]
            start = spill.seek(0, os.SEEK_END)
            for column in columns:
                spill.write(column.tobytes())
            spill.flush()
            runs.append((start, len(columns[0])))
            level = 0
            while len(self._levels[level][1]) >= _MAX_RUNS:
                self._merge_level(level)
                level += 1
        except OSError as exc:  # a full disk: the matches would be lost unsaid
            raise OSError(f"cannot keep the query's matches in a temporary file: {exc}") \
                from exc

    def _merge_level(self, level: int) -> None:
        """Merge the runs of `level` into one run of the next level, and empty its file."""
        spill, runs = self._levels[level]
        if level + 1 == len(self._levels):
            self._levels.append((tempfile.TemporaryFile(), []))  # noqa: SIM115
        target, target_runs = self._levels[level + 1]
        total = sum(count for _, count in runs)
        start = target.seek(0, os.SEEK_END)
        columns = (array("d"), array("q"), array("q"), array("q"))
        written = 0
        merged = heapq.merge(*(self._run(spill.fileno(), *run) for run in runs))
        for match in chain(merged, [None]):
            if match is not None:
                for column, value in zip(columns, match):
                    column.append(value)
            if len(columns[0]) >= _RUN_READ or (match is None and columns[0]):
                for index, column in enumerate(columns):
                    os.pwrite(target.fileno(), column.tobytes(),
                              start + 8 * (index * total + written))
                written += len(columns[0])
                columns = (array("d"), array("q"), array("q"), array("q"))
        target_runs.append((start, total))
        runs.clear()
        spill.truncate(0)

    @staticmethod
    def _run(fd: int, start: int, count: int) -> Iterator[tuple[float, int, int, int]]:
        for first in range(0, count, _RUN_READ):
            size = min(_RUN_READ, count - first)
            columns = []
            for index, code in enumerate("dqqq"):
                column = array(code)
                column.frombytes(os.pread(fd, 8 * size, start + 8 * (index * count + first)))
                columns.append(column)
            yield from zip(*columns)

    def ordered(self) -> Iterator[tuple[float, int, int, int]]:
        """``(ts, file number, offset, length)`` of every match kept, by time, then by
        file and offset."""
        if self.limit is not None:
            heap, self._heap = self._heap, []
            return iter(sorted((-ts, -number, -offset, length)
                               for ts, number, offset, length in heap))
        runs = [self._run(spill.fileno(), *run) for spill, level in self._levels
                for run in level]
        if not runs:
            return self._in_memory()
        return heapq.merge(*runs, self._in_memory())

    def close(self) -> None:
        """Give back the temporary files, if any."""
        levels, self._levels = self._levels, []
        for spill, _ in levels:
            spill.close()
