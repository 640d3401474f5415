"""``inferwatch-exporter``: the standalone exporter, with node_exporter's flag style.

Every registered collector gets ``--collector.<name>`` / ``--no-collector.<name>``;
collectors add their own flags (``--collector.gpu.process-memory``, ``--process.pid``).
Logs are structured (logfmt or JSON) on stderr; SIGTERM, SIGINT and SIGHUP stop it cleanly.

>>> args = build_parser().parse_args(["--web.listen-address=127.0.0.1:9500", "--no-collector.gpu"])
>>> args.listen_address, args.collector_gpu
(('127.0.0.1', 9500), False)
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import string
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from inferwatch._version import __version__
from inferwatch.cli import StrictArgumentParser
from inferwatch.standalone.scrape import Collector, Scraper, registered_collectors

log = logging.getLogger("inferwatch.standalone")

DEFAULT_PORT = 9400
DEFAULT_PATH = "/metrics"
# The HTTP server's own deadline sits just past the scraper's, so the scraper's partial
# answer (with collector_success 0) is what Prometheus sees, not a 503.
SERVER_TIMEOUT_MARGIN_SECONDS = 1.0
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "warning": logging.WARNING, "error": logging.ERROR}


def _ascii_digits(text: str) -> bool:
    """Digits as a shell script writes them: ``str.isdigit`` also takes ``²`` (which ``int``
    refuses) and ``٩`` (which it reads as 9), neither of which belongs in a flag.

    >>> _ascii_digits("9400"), _ascii_digits("\u00b2"), _ascii_digits("")
    (True, False, False)
    """
    return text.isascii() and text.isdigit()


def listen_address(text: str) -> tuple[str, int]:
    """``host:port``, ``:port`` (every interface) or ``[v6]:port``, as node_exporter takes it.

    A host with spaces or control characters is refused here, so that a quoting slip
    (``" :9400"``) is a usage error naming the flag, not a failed name lookup at bind.

    >>> listen_address(":9400"), listen_address("[::1]:9401")
    (('', 9400), ('::1', 9401))
    """
    if "://" in text:
        # A URL pasted from a browser or a scrape config: its "http:" would otherwise be
        # read as an IPv6 address missing its brackets.
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT, not a URL (drop the scheme and any path), got {text!r}")
    host, sep, port = text.rpartition(":")
    if not sep or not _ascii_digits(port) or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT or :PORT with a port from 0 to 65535, got {text!r}")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
        if not host:
            # "[]" reads as no host, so it would listen on every interface: a template
            # whose IPv6 address came out empty must not expose the exporter everywhere.
            raise argparse.ArgumentTypeError(
                f"an IPv6 address belongs inside the brackets ([::1]:9400), got {text!r}")
    if "[" in host or "]" in host:
        # "[::1", "[host" or "[::1]]": left in, a bracket reaches the name lookup at bind
        # and fails there as an unknown host.
        raise argparse.ArgumentTypeError(
            f"brackets go around the whole IPv6 address ([::1]:9400), got {text!r}")
    if ":" in host and not bracketed:
        raise argparse.ArgumentTypeError(f"put an IPv6 address in brackets ([::1]:9400), "
                                         f"got {text!r}")
    if any(c.isspace() or not c.isprintable() for c in host):
        raise argparse.ArgumentTypeError(
            f"the host must not hold spaces or control characters, got {text!r}")
    try:
        # What the socket does with a name before any lookup: an empty label (a..b, .x)
        # or one over 63 characters raises UnicodeError there, a traceback past the
        # handler for failed binds, so it is refused here.
        host.encode("idna")
    except UnicodeError:
        raise argparse.ArgumentTypeError(
            f"{host!r} is not a valid host name (empty or over-long label), "
            f"got {text!r}") from None
    return host, int(port)


# Longer than any scrape interval makes sense for, and far inside what a thread can wait
# (threading.TIMEOUT_MAX): past that every scrape would fail with OverflowError.
MAX_SCRAPE_TIMEOUT_SECONDS = 86400.0


# Seconds as a shell script writes them (``5``, ``2.5``, ``.5``, with an optional ``s``):
# float() would also take ``1_0`` (10), ``\u0665`` (5), ``1e1`` and surrounding spaces, none
# of which the other number flags take.
_SECONDS = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)s?")


def _seconds(text: str) -> float:
    """A scrape timeout in seconds (``5`` or ``5s``), above 0 and at most a day.

    >>> _seconds("2.5s")
    2.5
    """
    seconds = float(text.removesuffix("s")) if _SECONDS.fullmatch(text) else float("nan")
    if not 0 < seconds <= MAX_SCRAPE_TIMEOUT_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds above 0 and at most "
            f"{MAX_SCRAPE_TIMEOUT_SECONDS:.0f}, got {text!r}")
    return seconds


def _positive_int(text: str) -> int:
    if not _ascii_digits(text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


# Paths the server answers itself; metrics there would shadow them or be shadowed.
RESERVED_PATHS = ("/", "/-/healthy", "/-/ready")


def _telemetry_path(text: str) -> str:
    """A path for the metrics: absolute, without a query, not one the server keeps.

    >>> _telemetry_path("/custom/metrics"), _telemetry_path("/m\u00e9triques")
    ('/custom/metrics', '/m%C3%A9triques')
    >>> _telemetry_path("/-/ready")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '/-/ready' is served by the exporter itself; pick another path
    >>> _telemetry_path("/-/%72eady")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '/-/%72eady' is served by the exporter itself; pick another path
    """
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"must start with '/', got {text!r}")
    # Compared as the server compares it, decoded: '/-/%72eady' is '/-/ready' to it, and
    # slipped past a comparison of the text as typed into a traceback at start-up.
    if text in RESERVED_PATHS or urllib.parse.unquote(text) in RESERVED_PATHS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is served by the exporter itself; pick another path")
    if any(c in text for c in "?#") or any(c.isspace() or not c.isprintable() for c in text):
        raise argparse.ArgumentTypeError(
            f"must be a plain path without '?', '#' or spaces, got {text!r}")
    # Clients send a path as UTF-8 percent-encoded (curl, browsers, Prometheus), and the
    # server compares the path as sent: kept raw, /métriques would answer 404 for ever.
    return urllib.parse.quote(text, safe=string.printable)


# Where a parsed namespace keeps the option strings typed on the command line, by dest (the
# first one typed for each): a flag's value cannot say whether it was typed (a switch given
# as its default, `--process.children`), nor in which form (`--no-process.children`).
TYPED_OPTIONS = "_inferwatch_options_typed"


class _RecordsTyped(argparse.Action):
    """Records the option string it was called with, under :data:`TYPED_OPTIONS`."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        if option_string is not None:
            typed = getattr(namespace, TYPED_OPTIONS, None)
            if typed is None:
                typed = {}
                setattr(namespace, TYPED_OPTIONS, typed)
            typed.setdefault(self.dest, option_string)
        super().__call__(parser, namespace, values, option_string)


def _recording(action_class: type[argparse.Action]) -> type[argparse.Action]:
    return type(f"Typed{action_class.__name__}", (_RecordsTyped, action_class), {})


# Every action a collector's flag can name; each is recorded when typed.
_ACTION_NAMES: tuple[object, ...] = (None, "store", "store_const", "store_true", "store_false",
                                     "append", "append_const", "count", "extend",
                                     argparse.BooleanOptionalAction)


class _SwitchOnce(argparse.BooleanOptionalAction):
    """A ``--x`` / ``--no-x`` switch that refuses to be given twice, as a one-value flag does:
    argparse keeps the last (``--collector.gpu --no-collector.gpu`` ran without the GPU
    collector), so a switch set in a unit file and again by the user silently lost one."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        # The parser's record of the flags given, which it empties before each command line.
        given = getattr(parser, "_given_once", None)
        if given is not None:
            if self in given:
                first = given[self]
                both = f" (as {first} and {option_string})" if first != option_string else ""
                raise argparse.ArgumentError(
                    self, f"given more than once{both}; it is one setting, on or off: give "
                          f"it once")
            given[self] = option_string
        super().__call__(parser, namespace, values, option_string)


def build_parser(collectors: dict[str, type[Collector]] | None = None) -> argparse.ArgumentParser:
    """The full command line, with a flag group per registered collector."""
    collectors = registered_collectors() if collectors is None else collectors
    # A one-value flag given twice (`--scrape.timeout=2 ... --scrape.timeout=10`) is
    # refused, not settled silently in favour of the last.
    parser = StrictArgumentParser(
        prog="inferwatch-exporter",
        # A prefix of a flag is not that flag: `--web.listen=...` must be refused as
        # unknown, and a flag added later must not turn a working prefix ambiguous.
        allow_abbrev=False,
        description="Prometheus exporter for the machines that serve ML models: GPUs through "
                    "NVML, the serving processes, and the exporter's own health.",
    )
    # So is a switch pair: `action=argparse.BooleanOptionalAction`, here and in every
    # collector's own flags (--process.children), makes a _SwitchOnce.
    parser.register("action", argparse.BooleanOptionalAction, _SwitchOnce)
    for action_name in _ACTION_NAMES:
        parser.register("action", action_name,
                        _recording(parser._registry_get("action", action_name, action_name)))
    parser.add_argument("--version", action="version",
                        version=f"inferwatch-exporter {__version__}")
    web = parser.add_argument_group("web")
    web.add_argument("--web.listen-address", dest="listen_address", type=listen_address,
                     default=("", DEFAULT_PORT), metavar="[HOST]:PORT",
                     help=f"address to listen on (default: :{DEFAULT_PORT}, every interface)")
    web.add_argument("--web.telemetry-path", dest="telemetry_path", type=_telemetry_path,
                     default=DEFAULT_PATH, metavar="PATH",
                     help=f"path of the metrics (default: {DEFAULT_PATH})")
    web.add_argument("--web.config.file", dest="web_config_file", metavar="FILE",
                     help="node_exporter web-config file: TLS and basic auth")
    web.add_argument("--web.max-requests", dest="max_requests", type=_positive_int, default=4,
                     metavar="N", help="scrapes rendered at once; more get a fast 503 "
                                       "(default: 4)")
    parser.add_argument("--scrape.timeout", dest="scrape_timeout", type=_seconds, default=5.0,
                        metavar="SECONDS",
                        help="how long a scrape waits for each collector; a slower one is "
                             "reported with collector_success 0 (default: 5)")
    logs = parser.add_argument_group("logging")
    logs.add_argument("--log.level", dest="log_level", choices=sorted(LOG_LEVELS),
                      default="info", help="default: info")
    logs.add_argument("--log.format", dest="log_format", choices=("logfmt", "json"),
                      default="logfmt", help="default: logfmt")
    parser.add_argument("--collector.disable-defaults", dest="disable_defaults",
                        action="store_true",
                        help="enable only the collectors named with --collector.<name>")
    for name, cls in collectors.items():
        group = parser.add_argument_group(f"collector {name}", cls.help or None)
        group.add_argument(f"--collector.{name}", dest=f"collector_{name}", default=None,
                           action=argparse.BooleanOptionalAction,
                           help=f"enable the {name} collector (default: "
                                f"{_default_text(cls)})")
        cls.add_arguments(group)
    return parser


def _default_text(cls: type[Collector]) -> str:
    if cls.default_enabled:
        return "on"
    return "on when its directory is given" if hasattr(cls, "enabled_by_arguments") else "off"


def enabled_collectors(args: argparse.Namespace,
                       collectors: dict[str, type[Collector]]) -> list[Collector]:
    """Instances of the collectors the flags enable; ValueError names a bad flag.

    A flag of a collector that is off would be silently ignored (``--process.name`` with
    ``--collector.disable-defaults`` and no ``--collector.process``): it is refused, so
    the user learns why the series they asked for never appear.
    """
    enabled = []
    for name, cls in collectors.items():
        explicit = getattr(args, f"collector_{name}", None)
        wanted = getattr(cls, "enabled_by_arguments", None)
        chosen = explicit
        if chosen is None:
            # A collector may turn itself on from its own flags (multiproc: a directory given).
            default = cls.default_enabled or (wanted is not None and wanted(args))
            chosen = default and not args.disable_defaults
        if chosen:
            enabled.append(cls.from_args(args))
        elif wanted is None or (explicit is None and args.disable_defaults):
            # Multiproc's own flag is what turns it on; an explicit --no- is documented to
            # win over it. Under --collector.disable-defaults its flag is checked as the
            # others' are: a directory given on the command line was meant to be read (the
            # environment variable alone, set for the workers, still leaves it off).
            why = f"--no-collector.{name}" if explicit is False else "--collector.disable-defaults"
            given = _options_given(cls, args)
            if given:
                raise ValueError(f"argument {given[0]}: the {name} collector is off ({why}); "
                                 f"add --collector.{name} or drop {given[0]}")
    return enabled


class _ActionsOf:
    """An argument group that keeps the actions its ``add_argument`` calls return."""

    def __init__(self, group: argparse._ArgumentGroup) -> None:
        self._group = group
        self.actions: list[argparse.Action] = []

    def add_argument(self, *names: str, **options: object) -> argparse.Action:
        action = self._group.add_argument(*names, **options)  # type: ignore[arg-type]
        self.actions.append(action)
        return action


def _options_given(cls: type[Collector], args: argparse.Namespace) -> list[str]:
    """The collector's own flags on the command line, each as it was typed.

    A flag whose typing was not recorded (an action class of the collector's own, a
    namespace built by hand) counts as given when its value differs from its default.
    """
    group = _ActionsOf(argparse.ArgumentParser(add_help=False).add_argument_group(cls.name))
    cls.add_arguments(group)  # type: ignore[arg-type]
    typed: dict[str, str] = getattr(args, TYPED_OPTIONS, None) or {}
    return [typed.get(action.dest, action.option_strings[0]) for action in group.actions
            if action.dest in typed
            or getattr(args, action.dest, action.default) != action.default]


# The shell's status for a process stopped by SIGINT, as the `inferwatch` command exits.
INTERRUPTED = 130
# How long shutdown waits for the collectors to let go of what they hold (NVML): a driver
# hung in a call must not keep a stopping exporter from exiting.
CLOSE_TIMEOUT_SECONDS = 5.0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter until SIGTERM, SIGINT or SIGHUP; returns the exit status.

    >>> main(["--web.listen-address=127.0.0.1:0"])  # doctest: +SKIP
    """
    try:
        return _run(argv)
    except KeyboardInterrupt:
        # Ctrl-C before the stop signals are handled (collectors loading, flags being
        # read) is the user's choice, not a fault: one line and 130, no traceback.
        if sys.stderr is not None:  # started with stderr closed: it has nowhere to go
            print("inferwatch-exporter: interrupted", file=sys.stderr)
        return INTERRUPTED


def _run(argv: Sequence[str] | None) -> int:
    collectors = registered_collectors()
    parser = build_parser(collectors)
    args = parser.parse_args(argv)
    # Before the collectors are built: what they log while being set up must come out in
    # the chosen format too (a plain line breaks a JSON log pipeline).
    configure_logging(args.log_level, args.log_format)
    try:
        enabled = enabled_collectors(args, collectors)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        from inferwatch.serving.server import serve
        from inferwatch.serving.web_config import WebConfigError
    except ImportError as exc:
        print(f"inferwatch-exporter: the HTTP server is not available: {exc}", file=sys.stderr)
        return 1
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(Scraper(enabled, timeout=args.scrape_timeout))
    host, port = args.listen_address
    stop = _stop_on_signals()
    try:
        try:
            server = serve(port, host, registry=registry,
                           web_config_file=args.web_config_file,
                           max_concurrency=args.max_requests,
                           collect_timeout=args.scrape_timeout + SERVER_TIMEOUT_MARGIN_SECONDS,
                           telemetry_path=args.telemetry_path)
        except WebConfigError as exc:
            parser.error(f"argument --web.config.file: {exc}")
        except OSError as exc:
            log.error("cannot listen (--web.listen-address): %s", exc)
            return 1
        log.info("inferwatch-exporter %s serving %s with collectors: %s", __version__,
                 server.url,
                 ", ".join(c.name for c in enabled) or "none")
        try:
            for collector in enabled:
                try:
                    collector.start()
                except Exception:
                    # Its scrapes still run and report it: a start-up probe that cannot
                    # even begin (no thread left in the cgroup) must not leave the server
                    # behind a traceback.
                    log.exception("collector %s could not start", collector.name)
            while not stop.wait(1.0):
                pass
        finally:
            received = getattr(stop, "signal_name", "")
            if received:
                log.info("received %s", received)
            log.info("shutting down")
            try:
                server.shutdown()
            finally:
                # After the server, so that no scrape starts on a collector being closed.
                close_collectors(enabled)
        return 0
    finally:
        # Called as a function (a wrapper script, a test), main must give Ctrl-C back to
        # its caller: left in place, the handlers would swallow every later SIGINT.
        _restore_signals(stop)


def close_collectors(collectors: Sequence[Collector],
                     timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
    """Call every collector's ``close()`` (NVML's shutdown, its event set), each on its own
    and all within ``timeout``: one that raises or hangs costs only its own release, never
    the others' nor the exit status."""
    threads = []
    for collector in collectors:
        def run(collector: Collector = collector) -> None:
            try:
                collector.close()
            except Exception:
                log.exception("collector %s could not be closed", collector.name)

        thread = threading.Thread(target=run, name=f"inferwatch-close-{collector.name}",
                                  daemon=True)
        thread.start()
        threads.append((collector, thread))
    deadline = time.monotonic() + timeout
    for collector, thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("collector %s did not close within %.0fs; exiting without it",
                        collector.name, timeout)


# SIGHUP (a closed terminal, `kill -HUP` from a reload hook) would otherwise kill the
# process outright: no log line, connections reset, a supervisor sees "killed by signal".
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _StopEvent(threading.Event):
    """Set by a stop signal; remembers which one, for the shutdown log line, and the
    handlers it replaced, to put back."""

    signal_name = ""
    previous: dict[int, Any]


def _stop_on_signals() -> threading.Event:
    stop = _StopEvent()
    stop.previous = {}

    def handle(signum: int, frame: object) -> None:
        stop.signal_name = signal.Signals(signum).name
        stop.set()

    for signum in STOP_SIGNALS:
        stop.previous[signum] = signal.signal(signum, handle)
    return stop


def _restore_signals(stop: threading.Event) -> None:
    for signum, handler in getattr(stop, "previous", {}).items():
        # None: a handler not set from Python, which cannot be put back from here.
        if handler is not None:
            signal.signal(signum, handler)


# --- structured logs ------------------------------------------------------------------------

def configure_logging(level: str, fmt: str) -> None:
    """Send every logger's records to stderr as logfmt or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LOG_LEVELS[level])


def _fields(record: logging.LogRecord) -> dict[str, str]:
    fields = {
        "ts": datetime.fromtimestamp(record.created, timezone.utc)
        .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": "warn" if record.levelno == logging.WARNING else record.levelname.lower(),
        "logger": str(record.name),
        "msg": record.getMessage(),
    }
    if record.exc_info:
        fields["err"] = logging.Formatter().formatException(record.exc_info)
    return fields


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=info logger=... msg="..."``, one record per line.

    >>> record = logging.makeLogRecord({"msg": 'say "hi"', "levelno": 20, "levelname": "INFO",
    ...                                 "name": "inferwatch"})
    >>> print(LogfmtFormatter().format(record).split(" ", 1)[1])
    level=info logger=inferwatch msg="say \\"hi\\""
    """

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in _fields(record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line with ts, level, logger, msg (and err)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), ensure_ascii=False)


def _logfmt_value(value: str) -> str:
    if value and not any(c in value for c in ' "=\\') and value.isprintable():
        return value
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    if not escaped.isprintable():
        # Any other control or separator character (ESC from a process name, NEL, U+2028
        # that log shippers split lines on) would reach the terminal or the pipeline raw.
        escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in escaped)
    return f'"{escaped}"'


if __name__ == "__main__":
    sys.exit(main())
