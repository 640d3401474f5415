"""``python -m inferwatch.multiproc``: check the multi-worker directory before the workers
start, as each worker would at its start-up (``uvicorn --workers N`` restarts a worker that
fails there without end, so the check belongs before it).

Prints the directory and exits 0 when workers can publish there; prints why not, one line
on stderr, and exits 1 when ``INFERWATCH_MULTIPROC_DIR`` is unset or the directory is
unusable; ``-h`` or ``--help`` prints the usage and exits 0; any other argument exits 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from inferwatch.multiproc.worker import ENV_VAR, MultiprocError, check_directory

USAGE = ("usage: python -m inferwatch.multiproc\n"
         f"checks the directory {ENV_VAR} names, as each worker does when it starts")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Check ``INFERWATCH_MULTIPROC_DIR``; the exit status (0 usable or help asked, 1 not
    usable, 2 bad usage).

    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     status = main([], {ENV_VAR: "/nonexistent/inferwatch"})
    >>> status, err.getvalue().split(": ", 2)[2].strip()
    (1, 'the directory does not exist; create it before the workers start')
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    environ = os.environ if environ is None else environ
    if argv in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if argv:
        print(USAGE, file=sys.stderr)
        return 2
    value = environ.get(ENV_VAR)
    if value is None:
        print(f"inferwatch.multiproc: {ENV_VAR} is not set; set it to the directory every "
              "worker publishes to", file=sys.stderr)
        return 1
    try:
        path = check_directory(value, source=ENV_VAR)
    except MultiprocError as exc:
        print(f"inferwatch.multiproc: {exc}", file=sys.stderr)
        return 1
    print(f"{ENV_VAR}={path}: workers can publish there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
