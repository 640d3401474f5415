"""`inferwatch generate`: write the dashboards, rules and manifests from a config file.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_arguments(parser)
>>> parser.parse_args([]).out
'.'
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from inferwatch.generate.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of `inferwatch generate`."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="YAML config overriding the defaults (default: none)")
    parser.add_argument("--out", metavar="DIR", default=".",
                        help="directory receiving dashboards/ and alerts/ (default: .)")
    parser.add_argument("--rules-only", action="store_true",
                        help="write (or check) only alerts/*.yml, the Prometheus rule files")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the files under --out differ")


def run(args: argparse.Namespace) -> int:
    """Render and write (or with --check, compare) every generated file; returns the status."""
    from pathlib import Path

    from inferwatch.generate.config import ConfigError, load

    for flag, value in (("--config", args.config), ("--out", args.out)):
        if value is not None and not value.strip():
            # An unset shell variable (`--out "$DIR"`): read as ".", the files would land in
            # the current directory, and the config would be "cannot be read: Is a directory".
            print(f"inferwatch generate: {flag} is empty; give a path, or leave the flag out",
                  file=sys.stderr)
            return 2
    try:
        cfg = load(args.config)
    except ConfigError as exc:
        print(f"inferwatch generate: invalid config: {one_line(str(exc))}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if args.check:
        try:
            os.stat(out)
        except OSError as exc:
            # A mistyped --out: every file would read as stale, and status 1 says "generate
            # again", which would write them into the mistyped directory.
            print(f"inferwatch generate: cannot read {one_line(str(out))}: {exc.strerror}",
                  file=sys.stderr)
            return 2
    if not args.check and out.is_symlink() and not out.exists():
        # Left to the writer, this reads "cannot write out: Not a directory".
        print(f"inferwatch generate: --out {one_line(str(out))} is a symbolic link to "
              f"{one_line(os.readlink(out))}, which does not exist", file=sys.stderr)
        return 2
    if out.exists() and not out.is_dir():
        print(f"inferwatch generate: --out {one_line(str(out))} is not a directory",
              file=sys.stderr)
        return 2
    action = _check if args.check else _write
    try:
        return action(cfg, out, args.rules_only)
    except BrokenPipeError:
        # `inferwatch generate | head`: every file is written and only the listing's reader
        # left, which the dispatcher answers with status 0 like every other command.
        raise
    except _ListingError as exc:
        cause = exc.__cause__
        why = cause.strerror if isinstance(cause, OSError) and cause.strerror else cause
        print(f"inferwatch generate: wrote the files under {one_line(str(out))} but cannot "
              f"list them on stdout: {why}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = one_line(str(exc.filename or out))
        print(f"inferwatch generate: cannot {'read' if args.check else 'write'} {where}: "
              f"{exc.strerror}", file=sys.stderr)
        return 2


class _ListingError(Exception):
    """stdout refused the list of written files (``> /dev/full``): the files are fine."""


def one_line(text: str) -> str:
    r"""`text` with what is not printable escaped, so an error stays one line that any terminal
    can print: a model name or YAML key may hold a line break, or a lone surrogate from YAML's
    ``\ud800`` escape that UTF-8 cannot encode.

    >>> print(one_line("models.fraud\nranker: unknown key"))
    models.fraud\nranker: unknown key
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _check(cfg: Config, out: Path, rules_only: bool) -> int:
    from inferwatch.generate import left_out, render, rule_files

    rendered = render(cfg)
    files = rule_files(rendered) if rules_only else rendered
    # Bytes, not text: a file that is not even UTF-8 is simply stale.
    stale = [path for path, content in files.items()
             if not (out / path).is_file()
             or (out / path).read_bytes() != content.encode("utf-8")]
    for path in stale:
        print(f"stale: {out / path}", file=sys.stderr)
    # A generated file this config no longer renders, which a write deletes: left in place,
    # `kubectl apply -f alerts/kubernetes/` loads its rules a second time. Only where a write
    # would delete it (--rules-only writes leave the manifests alone).
    extra = [] if rules_only else left_out(out, rendered)
    for path in extra:
        print(f"left over: {path} (generated, but not by this config; "
              f"`inferwatch generate` deletes it)", file=sys.stderr)
    return 1 if stale or extra else 0


def _write(cfg: Config, out: Path, rules_only: bool) -> int:
    from inferwatch.generate import write

    written = write(out, cfg, rules_only=rules_only)
    try:
        if sys.stdout is None:  # started with stdout closed (`>&-`)
            raise OSError(errno.EBADF, "stdout is closed")
        for path in written:
            print(path)
        # Now, while a failure can still be told apart from one writing the files.
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise _ListingError from exc
    return 0
