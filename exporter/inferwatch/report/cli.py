"""`inferwatch report --reference reference.json DATA -o report.html`: a self-contained HTML
drift report of a data file (CSV or Parquet) against a reference profile, without a server.
`inferwatch report --metrics URL -o report.html` writes the same report of a running process
from its status page's snapshot (``URL?format=json``; ``http://user:password@host:8000/``
for basic auth; ``--cacert``, ``--cert`` and ``--key`` for a page served with TLS from a
private CA or requiring client certificates), read whole within ``--timeout`` seconds.

Columns named like the reference's prediction outputs (or given with
``--predictions-column``) are compared with the prediction profiles; the others with the
feature profiles. Reads files as ``inferwatch profile`` does.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="inferwatch report")
>>> add_arguments(parser)
>>> args = parser.parse_args(["--reference", "ref.json", "live.csv", "-o", "out.html"])
>>> args.reference, args.data, args.output
('ref.json', 'live.csv', 'out.html')
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import sys
from typing import Any

# The most seconds `--metrics` takes to read the whole snapshot (--timeout), and the most
# one socket operation of it may wait.
METRICS_TIMEOUT_SECONDS = 60.0
SOCKET_TIMEOUT_SECONDS = 30.0
# The options that read --metrics URL, and none of a DATA file.
_METRICS_ONLY = ("timeout", "cacert", "cert", "key")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `report` options to `parser`."""
    parser.add_argument("data", metavar="DATA", nargs="?",
                        help="rows to compare: a .csv (or .csv.gz) or .parquet file; - for stdin")
    parser.add_argument("--reference", metavar="FILE",
                        help="the reference profile (from `inferwatch profile`)")
    parser.add_argument("--metrics", metavar="URL",
                        help="instead of DATA: the status page of a running process (its / on "
                             "the metrics port); one section per model version")
    parser.add_argument("--timeout", metavar="SECONDS", default=None,
                        help="with --metrics: the most seconds reading the whole snapshot "
                             f"may take (default {METRICS_TIMEOUT_SECONDS:g})")
    parser.add_argument("--cacert", metavar="FILE", default=None,
                        help="with an https:// --metrics URL: the CA certificates (PEM) to "
                             "trust instead of the system's (a status page whose "
                             "certificate a private CA signed)")
    parser.add_argument("--cert", metavar="FILE", default=None,
                        help="with an https:// --metrics URL: the client certificate (PEM) "
                             "to present, for a page that requires one; its key may follow "
                             "it in the same file")
    parser.add_argument("--key", metavar="FILE", default=None,
                        help="the private key (PEM, not encrypted) of --cert")
    parser.add_argument("--model", default=None,
                        help="with --metrics: only this model; with --config and DATA: the "
                             "model whose models: overrides the thresholds follow")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="the YAML config the alert rules are generated from "
                             "(`inferwatch generate --config`): its thresholds judge the "
                             "alert conditions (default: the defaults)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="where to write the report (HTML); - for stdout")
    parser.add_argument("--predictions-column", action="append", default=[], metavar="COL",
                        help="a column holding predictions, compared with the reference "
                             "output of the same name (default: columns named like them)")
    parser.add_argument("--title", default=None, help="the report's title")
    parser.add_argument("--format", choices=("csv", "parquet"), default=None,
                        help="input format (default: from the file name)")


def run(args: argparse.Namespace) -> int:
    """Write the report; 0 on success, 2 on a usage or input error."""
    from inferwatch.quality.column_flags import column_list
    from inferwatch.quality.data_files import (
        PARQUET_SUFFIXES,
        MissingExtra,
        ProfileError,
        Progress,
        csv_header,
        read_csv,
        read_parquet,
        seekable_copy,
    )
    from inferwatch.quality.profile_cli import json_refusal
    from inferwatch.quality.reference import Reference, ReferenceError
    from inferwatch.report.flags import Thresholds
    from inferwatch.report.model import from_data

    # The page's conditions must be the alerts' own: judged by default thresholds, a drift
    # the rules fire on (threshold 0.1 in the config) read "ok" on the report.
    if args.model is not None and not args.model.strip():
        # An unset shell variable (`--model "$MODEL"`): read as no --model, the report held
        # every model version of --metrics, or judged DATA by no model's overrides.
        return _error("--model is empty; give a model name, or leave the flag out")
    config = _config(args.config)
    if isinstance(config, int):
        return config
    if args.metrics is not None:
        if args.data is not None or args.reference is not None:
            return _error("give either --metrics URL or --reference FILE with DATA, not both")
        # Options of a file's report would be silently ignored: the user meant something.
        for given, option in ((args.predictions_column, "--predictions-column"),
                              (args.format, "--format")):
            if given:
                return _error(f"{option} reads DATA; with --metrics there is none")
        return _from_metrics(args, config)
    for name in _METRICS_ONLY:
        if getattr(args, name, None) is not None:
            return _error(f"--{name} is for --metrics URL; a DATA file is read from disk")
    if args.model is not None and config is None:
        return _error("--model picks a model of --metrics URL, or the model whose thresholds "
                      "--config gives a DATA file; with DATA alone give --config too, or "
                      "leave --model out")
    if args.data is None or args.reference is None:
        return _error("give --reference FILE and DATA (or --metrics URL)")
    unwritable = _unwritable(args.output)
    if unwritable:
        return _error(unwritable)
    try:
        reference = Reference.load(args.reference)
    except ReferenceError as exc:
        return _error(str(exc))
    # `-`, `/dev/stdin` and `<(zcat live.csv.gz)` are read through a copy on disk, as
    # `inferwatch profile` reads them: only a path naming nothing or a folder is refused.
    if args.data != "-" and not os.path.exists(args.data):
        return _error(f"DATA file not found: {args.data}")
    if os.path.isdir(args.data):
        return _error(f"DATA file is a directory: {args.data}")
    # The page replaces the file at -o: naming an input there lost the data it reports on.
    # `-` is stdin, which no -o names.
    for given, what in ((None if args.data == "-" else args.data, "the DATA file"),
                        (args.reference, "the reference"), (args.config, "the config")):
        if given is not None and _same_file(given, args.output):
            return _error(f"-o {args.output} is {what}: the report would replace it; write "
                          "it to another file")
    refusal = None if args.format else json_refusal(args.data, "report")
    if refusal is not None:
        return _error(refusal)
    fmt = args.format or ("parquet" if args.data.lower().endswith(PARQUET_SUFFIXES) else "csv")
    progress = Progress("reading", enabled=False)
    # A CSV cell is typed by the profile it is compared with, not by its column's content:
    # categories keep their text ("01" stays "01"), numbers are read where they parse.
    profiles = {**reference.features, **reference.outputs}
    outputs = reference.output_names
    shown = "stdin" if args.data == "-" else args.data
    try:
        with seekable_copy(args.data) as readable:
            try:
                # The header first: whether "a,b" names one column or two depends on it, as
                # in `inferwatch profile`.
                if fmt == "csv":
                    names = csv_header(readable, name=shown)
                else:
                    columns = read_parquet(readable, progress, name=shown)
                    names = list(columns)
            except MissingExtra as exc:  # nothing wrong with the file: say what to install
                return _error(str(exc))
            except ProfileError as exc:  # its message names the file already
                return _error(f"cannot read {exc}")
            except Exception as exc:  # a malformed file: one line, not a traceback
                return _error(f"cannot read {shown}: {exc}")
            try:
                wanted = column_list(args.predictions_column, names, "--predictions-column")
            except ProfileError as exc:  # names the flag and the file's columns
                return _error(str(exc))
            if fmt == "csv":
                # The one output of a bare-array reference ("value") is compared with the one
                # column given: a categorical output's codes ("01") must stay text there too.
                if len(wanted) == len(outputs) == 1 and wanted[0] not in profiles:
                    profiles[wanted[0]] = reference.outputs[outputs[0]]
                categorical = {n for n, p in profiles.items() if not p.is_numeric}
                try:
                    # Category cells keyed as the profile keyed them (10115.0 is 10115).
                    columns = read_csv(readable, progress, text_columns=categorical,
                                       name=shown, category_keys=True)
                except ProfileError as exc:
                    return _error(f"cannot read {exc}")
                except Exception as exc:
                    return _error(f"cannot read {shown}: {exc}")
                columns = {n: numbers_where_they_parse(v)
                           if n in profiles and profiles[n].is_numeric else v
                           for n, v in columns.items()}
    except ProfileError as exc:  # the copy of a pipe failed: names the pipe
        return _error(str(exc))
    predictions: Any
    if wanted and len(wanted) == len(outputs) == 1:
        # The one output of a reference profiled from a bare array is called "value", a
        # name no CSV column has: the one column given is what it is compared with.
        predictions = columns.pop(wanted[0])
    else:
        # A column matched to no output would be compared with nothing, silently.
        stray = [n for n in wanted if n not in outputs]
        if stray:
            return _error(f"--predictions-column {stray[0]!r} names no prediction output of "
                          f"{args.reference}" + (f" (its outputs: {_names(outputs, 20)})"
                                                 if outputs else " (it has none)"))
        predictions = {n: columns.pop(n) for n in wanted or
                       [n for n in outputs if n in columns]} or None
    if predictions is None and not any(name in reference.features for name in columns):
        # Compared with nothing, the page would only list every column as missing or extra,
        # and exit 0: a wrong file or a wrong --reference looked like a report.
        return _error(f"{shown} shares no column with the reference {args.reference} "
                      f"(its columns: {_names(names)}; the reference's: "
                      f"{_names([*reference.features, *outputs])})")
    title = args.title or f"Drift report: {os.path.basename(shown)}"
    thresholds = Thresholds.for_model(args.model or "", config)
    report = from_data(reference, columns, predictions, title=title, thresholds=thresholds)
    try:
        _write(args.output, report.html())
    except BrokenPipeError:
        raise  # `-o - | head`: the reader left; ends quietly, as in every command (cli.main)
    except OSError as exc:
        return _cannot_write(args.output, exc)
    firing = [f"{f.alert} ({f.detail})" for f in report.flags if f.state == "firing"]
    print(f"wrote {_where(args.output)}: {report.rows} rows, {len(report.features)} features"
          + "".join(f"; {detail}" for detail in firing), file=sys.stderr)
    return 0


def numbers_where_they_parse(values: Any) -> Any:
    """A CSV column of a numeric profile with its cells read as numbers where they parse.

    A column with one cell that is not a number comes out of the reader as text, and the
    checks count every text cell of a numeric feature as a wrong type: one "oops" would
    make the whole column wrong and its drift unknown. Here only that cell stays text (one
    ``wrong_type``); missing cells stay None. Columns the reader already made numbers pass
    unchanged.

    >>> import numpy as np
    >>> numbers_where_they_parse(np.array(["1.5", None, "oops", "2"], dtype=object)).tolist()
    [1.5, None, 'oops', 2.0]
    """
    import numpy as np

    if values.dtype != object:
        return values
    return np.fromiter((_number_or_text(v) for v in values), dtype=object, count=len(values))


def _number_or_text(cell: str | None) -> float | str | None:
    if cell is None:
        return None
    try:
        return float(cell)
    except ValueError:
        return cell


def _names(names: list[str], limit: int = 5) -> str:
    """
    >>> _names(["a", "b", "c"], limit=2)
    "'a', 'b' and 1 more"
    """
    shown = ", ".join(repr(n) for n in names[:limit]) or "none"
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _unwritable(output: str) -> str | None:
    """Why the page cannot be written to `output` (None if it may be), known before DATA is
    read: a long read, or a pipe read once (``-``, ``<(zcat ...)``), was lost to a typo in -o.
    """
    if output == "-":
        return None
    if os.path.isdir(output):
        return f"cannot write {output}: it is a directory"
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        why = "is not a directory" if os.path.exists(folder) else "does not exist"
        return f"cannot write {output}: No such file or directory ({folder} {why})"
    return None


def _same_file(path: str, output: str) -> bool:
    if output == "-":
        return False
    try:
        return os.path.samefile(path, output)
    except OSError:  # an output that does not exist yet is no input
        return False


def _config(path: str | None) -> Any:
    """The generator config at `path` (None without one), or the exit status of its error."""
    if path is None:
        return None
    from inferwatch.generate.cli import one_line
    from inferwatch.generate.config import ConfigError, load

    if not path.strip():
        # An unset shell variable (`--config "$CONFIG"`): read as the current directory,
        # it failed as "(file): cannot be read: Is a directory", naming no flag.
        return _error("--config is empty; give the YAML file the rules are generated "
                      "from, or leave the flag out")
    try:
        return load(path)
    except ConfigError as exc:  # names the file and the key
        return _error(f"invalid config: {one_line(str(exc))}")


# What a URL path keeps as it is when encoded: RFC 3986's pchar delimiters and "/", and "%"
# so that a path given encoded already ("/m%C3%A9triques") is not encoded twice.
_PATH_SAFE = "/%:@!$&'()*+,;=~"


def _from_metrics(args: argparse.Namespace, config: Any = None) -> int:
    import base64
    import http.client
    import urllib.error
    import urllib.parse
    import urllib.request

    from inferwatch.generate.cli import one_line
    from inferwatch.report.conditions import Peer
    from inferwatch.report.flags import Thresholds
    from inferwatch.report.live import from_state
    from inferwatch.report.page import document, report_body
    from inferwatch.report.status import DownloadTooSlow, read_snapshot
    from inferwatch.serving.pushgateway import redact_password

    try:
        parts = urllib.parse.urlsplit(args.metrics)
        port = parts.port  # parsed on access: a port out of range or not a number raises
    except ValueError as exc:
        return _error(f"--metrics {redact_password(args.metrics)!r} is not a URL: {exc}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return _error(f"--metrics must be an http(s) URL, got "
                      f"{redact_password(args.metrics)!r}")
    if any(c.isspace() or not c.isprintable() for c in parts.hostname):
        return _error(f"--metrics {redact_password(args.metrics)!r}: the host "
                      f"{parts.hostname!r} holds a space or control character")
    seconds = _timeout(getattr(args, "timeout", None))
    if isinstance(seconds, str):
        return _error(seconds)
    tls = {flag: getattr(args, flag, None) for flag in ("cacert", "cert", "key")}
    if parts.scheme != "https":
        given = [f"--{flag}" for flag, path in tls.items() if path is not None]
        if given:
            # Read over plain HTTP, the files would be silently ignored: the URL is wrong.
            return _error(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for "
                          f"an https:// --metrics URL; {redact_password(args.metrics)!r} "
                          "is not one")
    context = _tls_context(**tls)
    if isinstance(context, str):
        return _error(context)
    # The URL's own query stays: a model page's address (?model=fraud&version=2) names the
    # model version the user wants, and a proxy in front may need its parameters.
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
             if k != "format" and not (args.model and k == "model")]
    query += [("format", "json"), *([("model", args.model)] if args.model else [])]
    netloc = parts.hostname + (f":{port}" if port else "")
    if ":" in parts.hostname:
        netloc = f"[{parts.hostname}]" + (f":{port}" if port else "")
    # A space or non-ASCII text in the path cannot go into a request line as it is. Bytes
    # of the command line that are not UTF-8 (read as surrogate escapes) go as those bytes.
    try:
        path = urllib.parse.quote(parts.path or "/", safe=_PATH_SAFE, errors="surrogateescape")
        encoded_query = urllib.parse.urlencode(query, errors="surrogateescape")
    except UnicodeEncodeError:
        return _error(f"--metrics {redact_password(args.metrics)!r} is not valid text")
    url = urllib.parse.urlunsplit((parts.scheme, netloc, path, encoded_query, ""))
    request = urllib.request.Request(url)
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    asked = dict(query)
    try:
        generated_at, states = read_snapshot(_download(_opener(context), request, seconds))
    except DownloadTooSlow:
        return _error(f"no complete status snapshot from {url} within {seconds:g} s: the "
                      "host answers too slowly, or not at all; a longer --timeout waits "
                      "longer")
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and ("model" in asked or "version" in asked):
            # The status page answers 404 for a model or version it does not serve.
            named = " ".join(f"{key}={asked[key]!r}" for key in ("model", "version")
                             if key in asked)
            return _error(f"{url} holds no model version with {named}")
        return _error(f"cannot read the status snapshot at {url}: {one_line(str(exc))}")
    except (OSError, ValueError, http.client.HTTPException) as exc:
        # HTTPException: an answer that is not HTTP (BadStatusLine), a broken chunked body
        # (IncompleteRead), a URL http.client refuses (InvalidURL). Their text is the
        # server's, line breaks and terminal escapes included: escaped, it stays one line.
        return _error(f"cannot read the status snapshot at {url}: "
                      f"{one_line(str(exc) or type(exc).__name__)}"
                      + (_tls_hint(exc, tls) if parts.scheme == "https" else ""))
    if not states:
        return _error(f"{url} holds no model version" + (
            f" named {args.model!r}" if args.model else ""))
    peers: dict[str, list[Peer]] = {}
    for state in states:
        peers.setdefault(state.model, []).append(Peer.of(state))
    reports = [from_state(state, None, generated_at, peers=peers[state.model],
                          thresholds=Thresholds.for_model(state.model, config))
               for state in sorted(states, key=lambda s: (s.model, s.version))]
    title = args.title or f"inferwatch report: {netloc}"
    body = "".join(f"<section>{report_body(report)}</section>" for report in reports)
    try:
        _write(args.output, document(title, body))
    except BrokenPipeError:
        raise  # `-o - | head`: the reader left; ends quietly, as in every command (cli.main)
    except OSError as exc:
        return _cannot_write(args.output, exc)
    print(f"wrote {_where(args.output)}: {len(reports)} model versions", file=sys.stderr)
    return 0


def _timeout(given: str | None) -> float | str:
    """The seconds of --timeout `given` (the default without one), or why it is none.

    >>> _timeout(None) == METRICS_TIMEOUT_SECONDS, _timeout("2.5")
    (True, 2.5)
    >>> print(_timeout("0"))
    --timeout must be a positive number of seconds, got '0'
    """
    if given is None:
        return METRICS_TIMEOUT_SECONDS
    try:
        seconds = float(given)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        return f"--timeout must be a positive number of seconds, got {given!r}"
    return seconds


def _tls_context(cacert: str | None, cert: str | None, key: str | None) -> Any:
    """The ssl.SSLContext of the https:// --metrics URL (None without any of the files:
    urllib's default), or why the files given cannot make one: the CAs of `cacert` trusted
    instead of the system's (as curl's --cacert), `cert` (with `key`) presented to a page
    that asks for a client certificate."""
    import ssl

    given = {"--cacert": cacert, "--cert": cert, "--key": key}
    if all(path is None for path in given.values()):
        return None
    for flag, path in given.items():
        if path is None:
            continue
        if not path.strip():
            # An unset shell variable (`--cacert "$CA"`): read as the current directory.
            return f"{flag} is empty; give a PEM file, or leave the flag out"
        if os.path.isdir(path):
            return f"cannot read {flag} {path}: it is a directory"
        if not os.path.exists(path):
            return f"cannot read {flag} {path}: No such file or directory"
    if key is not None and cert is None:
        return "--key is the private key of a client certificate: give the certificate with --cert"
    try:
        context = ssl.create_default_context(cafile=cacert)
    except ssl.SSLError as exc:
        return f"--cacert {cacert} holds no certificate (PEM) to trust: {exc.reason or exc}"
    except OSError as exc:
        return f"cannot read --cacert {cacert}: {exc.strerror or exc}"
    # Python 3.13 checks certificates strictly by default: a private CA as `openssl req -x509`
    # makes one (no key usage extension) is refused, which curl and Prometheus accept for
    # the same page. The chain, its dates and the host name are verified all the same.
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    if cert is None:
        return context

    class Encrypted(Exception):
        pass

    def no_passphrase() -> bytes:
        # Without it, OpenSSL asks for the passphrase on the terminal and waits.
        raise Encrypted

    files = f"--cert {cert}" + (f" and --key {key}" if key is not None else "")
    try:
        context.load_cert_chain(cert, key, password=no_passphrase)
    except Encrypted:
        return (f"{'--key ' + key if key is not None else '--cert ' + cert}: the private "
                "key is encrypted; give it unencrypted (openssl pkey -in KEY -out FILE)")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return f"{files} do not match: the key is not the certificate's"
        if key is None:
            return (f"--cert {cert}: no private key found in it (give the key with --key), "
                    "or it is no PEM certificate")
        return f"cannot load a certificate and its key from {files}: not PEM files of both"
    except OSError as exc:
        return f"cannot read {files}: {exc.strerror or exc}"
    return context


def _tls_hint(exc: BaseException, given: dict[str, str | None]) -> str:
    """What the failure of an https:// --metrics URL may want of the TLS options not given:
    the CA of a certificate the system does not trust, or a client certificate (a server
    requiring one closes the connection once the handshake shows none)."""
    import http.client
    import ssl

    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return "" if given["cacert"] is not None else (
            " (a certificate signed by a private CA? give the CA with --cacert)")
    refused = isinstance(reason, http.client.RemoteDisconnected) or (
        isinstance(reason, ssl.SSLError) and "CERTIFICATE_REQUIRED" in str(reason.reason))
    if refused and given["cert"] is None:
        return " (a page that requires a client certificate? give it with --cert and --key)"
    return ""


def _download(opener: Any, request: Any, seconds: float) -> bytes:
    """The answer to `request`, read whole within `seconds`, else
    :class:`~inferwatch.report.status.DownloadTooSlow`.

    Each socket operation has its own timeout, but one that a host answers a byte at a time
    (a stuck proxy, a slowloris), in the body or in its headers, never expires: the download
    runs in a thread this one stops waiting for at the deadline. That thread stops too: at
    its next read past the deadline, or when a read waits longer than its timeout.
    """
    import threading
    import time

    from inferwatch.report.status import DownloadTooSlow, read_limited

    deadline = time.monotonic() + seconds
    outcome: list[Any] = []

    def download() -> None:
        try:
            with opener.open(request, timeout=min(SOCKET_TIMEOUT_SECONDS, seconds)) as response:
                outcome.append(read_limited(response, deadline=deadline))
        except BaseException as exc:  # handed to the waiting thread, which reports it
            outcome.append(exc)

    worker = threading.Thread(target=download, name="inferwatch-report-download",
                              daemon=True)
    worker.start()
    worker.join(min(seconds, threading.TIMEOUT_MAX))
    if not outcome:
        raise DownloadTooSlow()
    if isinstance(outcome[0], BaseException):
        failure = outcome[0]
        # A socket operation that timed out at the deadline (its timeout is no longer than
        # the whole download's): the deadline's, which names --timeout.
        if isinstance(getattr(failure, "reason", failure), TimeoutError) \
                and time.monotonic() >= deadline:
            raise DownloadTooSlow() from failure
        raise failure
    return outcome[0]


def _opener(context: Any = None) -> Any:
    """A urllib opener whose redirects keep the credentials only within the same origin,
    and whose https:// connections use `context` (an ssl.SSLContext) when given.

    urllib copies every header onto a redirect, so a status page (or whatever answered
    there) redirecting elsewhere received the user's basic-auth password; curl and requests
    drop it when the host, the port or the scheme changes, and so does this.
    """
    import urllib.parse
    import urllib.request

    def origin(url: str) -> tuple[str, str | None, int | None]:
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1  # no port a request could have gone to: never the same origin
        return (parts.scheme, parts.hostname,
                port or {"http": 80, "https": 443}.get(parts.scheme))

    class CredentialsStayHome(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                             newurl: str) -> Any:
            moved = super().redirect_request(req, fp, code, msg, headers, newurl)
            if moved is not None and origin(newurl) != origin(req.full_url):
                moved.remove_header("Authorization")
            return moved

    handlers: list[Any] = [CredentialsStayHome]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def _write(output: str, page: str) -> None:
    """The page to `output`, whole or not at all; ``-`` is stdout."""
    from inferwatch.report.model import write_page

    if output == "-":
        if sys.stdout is None:  # started with stdout closed
            raise OSError(errno.EBADF, "stdout is closed")
        # The page says <meta charset="utf-8">: its bytes are UTF-8 whatever the locale's
        # encoding (ASCII under LANG=C, Latin-1...), which could not even encode a title.
        sys.stdout.flush()
        sys.stdout.buffer.write(page.encode("utf-8"))
        sys.stdout.buffer.flush()
    else:
        write_page(output, page)


def _where(output: str) -> str:
    return "the report to stdout" if output == "-" else output


def _cannot_write(path: str, exc: OSError) -> int:
    return _error(f"cannot write {path}: {exc.strerror or exc}")


def _error(message: str) -> int:
    print(f"inferwatch report: error: {message}", file=sys.stderr)
    return 2
