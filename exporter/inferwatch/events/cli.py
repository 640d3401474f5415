"""`inferwatch events tail|query PATH`: read the prediction event log back as JSON lines.

PATH is what the log was configured with: ``events.jsonl`` (its per-process files beside
it are read together), a directory of ``.jsonl`` files, one file, or an SQLite ``.db``.

    inferwatch events tail logs/events.jsonl -n 20 --follow
    inferwatch events query events.db --model fraud --since 1h --errors
    inferwatch events query events.db --request-id r-17
    inferwatch events query events.db --since 2024-05-01T08:00:00+02:00 --until 2024-05-01T09:00

Times are Unix seconds (epoch milliseconds, microseconds and nanoseconds are told by their
size), ISO 8601 (without an offset: UTC), or an age such as ``90s``, ``15m``, ``2h``, ``7d``
(that long ago).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inferwatch.events.sinks import ReadStats

FOLLOW_POLL_SECONDS = 0.5
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_time(text: str, now: float | None = None) -> float:
    """Unix seconds from Unix seconds, ISO 8601 or an age (``15m``: fifteen minutes ago).

    >>> parse_time("1700000000.5"), parse_time("2023-11-14T22:13:20Z")
    (1700000000.5, 1700000000.0)
    >>> parse_time("2h", now=10_000.0)
    2800.0
    """
    text = text.strip()
    age = _AGE.fullmatch(text)
    if age:
        now = time.time() if now is None else now
        return now - float(age.group(1)) * _UNIT_SECONDS[age.group(2)]
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isnan(seconds):  # compares false with every time: it would match nothing
            raise argparse.ArgumentTypeError(f"{text!r} is not a time")
        # Imported here: `inferwatch --help` and the other subcommands need no numpy.
        from inferwatch.core.timestamps import epoch_seconds

        return epoch_seconds(seconds)
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use Unix seconds, ISO 8601 (2024-05-01T08:00:00Z) "
            "or an age such as 15m, 2h, 7d") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


class _DashedValues(argparse.ArgumentParser):
    """Takes ``--request-id -V1St`` as ``--request-id=-V1St``: after a flag that takes a
    value, the next word is that value.

    argparse reads a word starting with "-" after a flag as another flag unless it looks
    like a plain negative number (``-5``), so ``--since -1.5e12`` and ``--request-id -V1St``
    (nanoid and base64url ids start with "-" about 1 in 32) failed with "expected one
    argument" while ``--since -5`` worked. A word that is one of this parser's flags
    (``--since --errors``) is still a missing value; anything else is the value, judged by
    the flag's own type with its own clear error (``--until -2h``: not a time; ``--limit
    -1e3``: not a whole number).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Every flag this parser takes (the help flag included), and those that take one
        # value, recorded as added: what argparse keeps of them is not public.
        self.known_flags: set[str] = set()
        self.value_flags: set[str] = set()
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.known_flags.update(action.option_strings)
        if action.nargs is None:  # exactly one value (a switch such as --errors takes 0)
            self.value_flags.update(action.option_strings)
        return action

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if args is None:
            args = sys.argv[1:]
        return super().parse_known_args(
            _join_dashed_values(list(args), self.value_flags, self.known_flags), namespace)


def _join_dashed_values(args: list[str], value_flags: set[str],
                        known_flags: set[str]) -> list[str]:
    """`args` with each flag of `value_flags` followed by a word starting with "-" joined
    to it by "=", unless that word is "--" or one of `known_flags`."""
    joined: list[str] = []
    index = 0
    while index < len(args):
        word = args[index]
        if word == "--":  # the rest is positional, as given
            return joined + args[index:]
        following = args[index + 1] if index + 1 < len(args) else None
        if (word in value_flags and following is not None and following.startswith("-")
                and following != "--" and following.split("=", 1)[0] not in known_flags):
            joined.append(f"{word}={following}")
            index += 2
            continue
        joined.append(word)
        index += 1
    return joined


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``tail`` and ``query`` actions to the ``events`` subcommand's parser."""
    # The actions' parsers are of the events parser's own class (the top level's strict
    # one), with values starting with "-" (negative times, ids) taken as values.
    parser_class = type("EventsActionParser", (_DashedValues, type(parser)), {})
    actions = parser.add_subparsers(dest="events_action", metavar="ACTION", required=True,
                                    parser_class=parser_class)
    tail = actions.add_parser("tail", help="the latest events",
                              description="Print the latest events, oldest first.")
    tail.add_argument("path", metavar="PATH", help="the event log (.jsonl, directory or .db)")
    tail.add_argument("-n", "--lines", type=_count, default=10, metavar="N",
                      help="how many events (default 10)")
    tail.add_argument("-f", "--follow", action="store_true",
                      help="keep printing new events until interrupted")
    query = actions.add_parser("query", help="events matching filters",
                               description="Print matching events, oldest first.")
    query.add_argument("path", metavar="PATH", help="the event log (.jsonl, directory or .db)")
    query.add_argument("--request-id", metavar="ID", help="only this request")
    query.add_argument("--model", metavar="NAME", help="only this model")
    query.add_argument("--since", type=parse_time, metavar="TIME",
                       help="only events at or after TIME")
    query.add_argument("--until", type=parse_time, metavar="TIME",
                       help="only events at or before TIME")
    query.add_argument("--errors", action="store_true", help="only failed predictions")
    query.add_argument("--limit", type=_count, metavar="N", help="at most N events")
    for sub in (tail, query):
        sub.set_defaults(_parser=sub)  # the usage shown for an unknown flag (inferwatch.cli)
        sub.add_argument("--format", choices=("jsonl", "sqlite"),
                         help="the log's format (default: from PATH's suffix)")


def run(args: argparse.Namespace) -> int:
    """Print the requested events as JSON lines; 2 for a missing log or bad flags."""
    from inferwatch.events.sinks import Query, ReadStats, infer_format

    if args.events_action == "query":
        for flag, value in (("--request-id", args.request_id), ("--model", args.model)):
            if value is not None and not value.strip():
                # An unset shell variable (`--model "$MODEL"`): no event has that value,
                # so the query printed nothing and exited 0, as if none had happened.
                what = "a request id" if flag == "--request-id" else "a model name"
                return _fail(f"{flag} is empty; give {what}, or leave the flag out")
    path = Path(args.path)
    try:
        fmt = infer_format(path, args.format)
    except ValueError as exc:
        return _fail(f"{exc} (use --format)")
    if not _exists(path, fmt):
        return _fail(f"no event log at {path}")
    stats = ReadStats()
    try:
        if args.events_action == "tail":
            _tail(path, fmt, args.lines, args.follow, stats)
        else:
            if args.since is not None and args.until is not None and args.since > args.until:
                return _fail("--since is later than --until")
            query = Query(request_id=args.request_id, model=args.model, since=args.since,
                          until=args.until, errors_only=args.errors, limit=args.limit)
            from inferwatch.events.sinks import query_events

            _print(query_events(path, query, fmt, stats))
    except KeyboardInterrupt:
        if args.events_action == "tail" and args.follow:
            # Ctrl-C is how --follow ends: everything asked for was printed, and what was
            # skipped must still be told (the files were, as they were found).
            _report_unreadable(stats, files=False)
            return 0
        raise  # a cut-short answer must not pass for a whole one: the dispatcher's 130
    except BrokenPipeError:  # `| head`: the reader is gone, which is fine
        sys.stderr.close()
        return 0
    except _OutputError as exc:  # not the log's fault: `> /dev/full`, `>&-`
        return _fail(f"cannot write to stdout: {exc}")
    except sqlite3.OperationalError as exc:
        if str(exc).startswith("no such "):  # SQLite without our table or columns
            return _fail(f"{path} is not an inferwatch event log ({exc})")
        return _fail(f"cannot read {path}: {exc}")  # locked, unreadable: the log may be fine
    except sqlite3.DatabaseError as exc:  # not SQLite at all, or another application's rows
        return _fail(f"{path} is not an inferwatch event log ({exc})")
    except OSError as exc:
        return _fail(f"cannot read {path}: {exc}")
    if stats.unreadable_files and not stats.files_read:  # nothing printed is no answer
        _report_unreadable(stats)
        return _fail(f"cannot read {path}: no file of it could be opened")
    _report_unreadable(stats)
    return 0


def _report_unreadable(stats: ReadStats, files: bool = True) -> None:
    if files:
        _report_files(stats)
    if stats.unreadable:
        print(f"inferwatch events: skipped {stats.unreadable} unreadable lines",
              file=sys.stderr)


def _report_files(stats: ReadStats, told: set[Path] | None = None) -> None:
    """Name on stderr each file that could not be opened (those in `told` not again)."""
    for file, reason in stats.unreadable_files.items():
        if told is not None:
            if file in told:
                continue
            told.add(file)
        print(f"inferwatch events: skipped unreadable file {file}: {reason}", file=sys.stderr)


def _exists(path: Path, fmt: str) -> bool:
    if fmt == "sqlite":
        return path.is_file()
    from inferwatch.events.jsonl import exists

    return exists(path)


def _tail(path: Path, fmt: str, count: int, follow: bool, stats: ReadStats) -> None:
    if fmt == "sqlite":
        from inferwatch.events.sqlite import Cursor, follow_sqlite_batch, tail_and_last_id

        identity = _file_identity(path)
        lines, after = tail_and_last_id(path, count, stats)
        _print(lines)
        behind = False
        while follow:
            if not behind:  # a backlog is read in bounded pieces, one right after another
                time.sleep(FOLLOW_POLL_SECONDS)
            behind = False
            current = _file_identity(path)
            if current is None:  # deleted: the writer makes it again, as `tail -F` waits
                continue
            if current != identity:  # replaced: its row ids start again from 1
                identity, after = current, Cursor(0)
            try:
                lines, after, behind = follow_sqlite_batch(path, after, stats=stats)
            except FileNotFoundError:
                continue
            _print(lines)
        return
    from inferwatch.events.jsonl import follow_jsonl_batch, tail_jsonl

    offsets: dict = {}
    _print(tail_jsonl(path, count, stats, offsets))
    # Following runs until Ctrl-C: a file that cannot be opened is told when found, once.
    told: set[Path] = set()
    if follow:
        _report_files(stats, told)
    behind = False
    while follow:
        if not behind:  # a backlog is read in bounded pieces, one right after another
            time.sleep(FOLLOW_POLL_SECONDS)
        lines, behind = follow_jsonl_batch(path, offsets, stats)
        _print(lines)
        _report_files(stats, told)


def _file_identity(path: Path) -> tuple[int, int] | None:
    """The database file's identity, None while it is missing or not yet initialised."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    if stat.st_size == 0:  # created, its schema not yet written
        return None
    return (stat.st_dev, stat.st_ino)


class _OutputError(Exception):
    """Stdout refused the events; the message says why."""


def _print(lines: Iterable[bytes]) -> None:
    if sys.stdout is None:  # started with stdout closed
        raise _OutputError("it is closed")
    out = sys.stdout.buffer
    for line in lines:  # the log's read errors come from here: OSError, told as such
        _write(out.write, line + b"\n")
    _write(out.flush)


def _write(operation: Callable[..., object], *data: bytes) -> None:
    try:
        operation(*data)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise _OutputError(exc.strerror or str(exc)) from exc


def _fail(message: str) -> int:
    print(f"inferwatch events: {message}", file=sys.stderr)
    return 2
