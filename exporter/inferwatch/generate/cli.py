"""`inferwatch generate`: write the dashboards, rules and manifests from a config file.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_arguments(parser)
>>> parser.parse_args([]).out
'.'
"""

from __future__ import annotations

import argparse
import sys


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

    from inferwatch.generate import render, rule_files, write
    from inferwatch.generate.config import ConfigError, load

    try:
        cfg = load(args.config)
    except ConfigError as exc:
        print(f"inferwatch generate: invalid config: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"inferwatch generate: --out {out} is not a directory", file=sys.stderr)
        return 2
    if args.check:
        files = rule_files(render(cfg)) if args.rules_only else render(cfg)
        stale = [path for path, content in files.items()
                 if not (out / path).is_file()
                 or (out / path).read_text(encoding="utf-8") != content]
        for path in stale:
            print(f"stale: {out / path}", file=sys.stderr)
        return 1 if stale else 0
    for path in write(out, cfg, rules_only=args.rules_only):
        print(path)
    return 0
