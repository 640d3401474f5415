"""`inferwatch report --reference reference.json DATA -o report.html`: a self-contained HTML
drift report of a data file (CSV or Parquet) against a reference profile, without a server.
`inferwatch report --metrics URL -o report.html` writes the same report of a running process
from its status page's snapshot (``URL?format=json``; ``http://user:password@host:8000/``
for basic auth).

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
import os
import sys
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `report` options to `parser`."""
    parser.add_argument("data", metavar="DATA", nargs="?",
                        help="rows to compare: a .csv (or .csv.gz) or .parquet file; - for stdin")
    parser.add_argument("--reference", metavar="FILE",
                        help="the reference profile (from `inferwatch profile`)")
    parser.add_argument("--metrics", metavar="URL",
                        help="instead of DATA: the status page of a running process (its / on "
                             "the metrics port); one section per model version")
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
    from inferwatch.quality.profile_cli import (
        PARQUET_SUFFIXES,
        MissingExtra,
        ProfileError,
        Progress,
        _column_list,
        _seekable_copy,
        csv_header,
        json_refusal,
        read_csv,
        read_parquet,
    )
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
        with _seekable_copy(args.data) as readable:
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
                wanted = _column_list(args.predictions_column, names, "--predictions-column")
            except ProfileError as exc:  # names the flag and the file's columns
                return _error(str(exc))
            if fmt == "csv":
                # The one output of a bare-array reference ("value") is compared with the one
                # column given: a categorical output's codes ("01") must stay text there too.
                if len(wanted) == len(outputs) == 1 and wanted[0] not in profiles:
                    profiles[wanted[0]] = reference.outputs[outputs[0]]
                categorical = {n for n, p in profiles.items() if not p.is_numeric}
                try:
                    columns = read_csv(readable, progress, text_columns=categorical,
                                       name=shown)
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
    from inferwatch.report.status import read_limited, read_snapshot
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
        with _opener().open(request, timeout=30) as response:
            generated_at, states = read_snapshot(read_limited(response))
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
                      f"{one_line(str(exc) or type(exc).__name__)}")
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


def _opener() -> Any:
    """A urllib opener whose redirects keep the credentials only within the same origin.

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

    return urllib.request.build_opener(CredentialsStayHome)


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
