"""`inferwatch demo`: the model, its traffic and the monitoring stack, in one terminal.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_arguments(parser)
>>> args = parser.parse_args(["--scenario", "short", "--speed", "4"])
>>> args.scenario, args.speed, args.once
('short', 4.0, False)
"""

from __future__ import annotations

import argparse
import math
import os
import sys

DEFAULT_PORTS = {"api": 8080, "metrics": 8000, "exporter": 9400, "prometheus": 9090,
                 "alertmanager": 9093, "receiver": 9095}


def _speed(text: str) -> float:
    """`--speed` read as every demo command reads it (from 0.01 to 100; argparse names the
    flag and exits 2)."""
    from inferwatch.demo.scenario import speed_argument

    return speed_argument(text)


# Past this the traffic thread cannot keep the pace, and no speed needs more (see --speed).
MAX_RATE = 1000.0


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    # nan and inf parse as floats, but neither is a pace the traffic can keep.
    if not (0.0 < value <= MAX_RATE):
        raise argparse.ArgumentTypeError(
            f"expected requests per second above 0 and at most {MAX_RATE:g}, got {text!r}")
    return value


def _has_scikit_learn() -> bool:
    try:
        import sklearn  # noqa: F401 - the demo trains its model with it
    except ImportError:
        return False
    return True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of `inferwatch demo`."""
    from inferwatch.demo.scenario import SCENARIOS  # light: no numpy, no scikit-learn

    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="default",
                        help="default: about 10 minutes; short: about 3 (default: default)")
    parser.add_argument("--speed", type=_speed, default=1.0,
                        help="play phases, rule windows and `for:` this many times faster; "
                             "at most --rate / 5 (and 6), so alerts stay in step with phases "
                             "(default: 1)")
    parser.add_argument("--rate", type=_rate, default=10.0,
                        help="requests per second sent to the model (default: 10)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address every component listens on (default: 127.0.0.1)")
    parser.add_argument("--workdir", default=None,
                        help="keep configs, rules and logs here (default: a temporary "
                             "directory removed at exit)")
    parser.add_argument("--no-stack", action="store_true",
                        help="run only the model, the exporter and the traffic")
    parser.add_argument("--gpu", action="store_true",
                        help="enable the exporter's GPU collector (needs an NVIDIA driver)")
    parser.add_argument("--once", action="store_true",
                        help="exit when the scenario ends instead of continuing in recovery")


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C (or the end of the scenario with --once)."""
    import shutil
    from pathlib import Path

    from inferwatch.demo.runner import Demo
    from inferwatch.demo.scenario import check_speed, speed_problem
    from inferwatch.demo.stack import StackError, find_alertmanager

    if not (args.rate > 0 and math.isfinite(args.rate)):
        print("inferwatch demo: --rate must be more than zero", file=sys.stderr)
        return 2
    # A speed such as 1e-300 made rule windows of 1e302 seconds (argparse refuses it; this
    # is for a Namespace made by other code): bad CLI use, as argparse answers it.
    problem = speed_problem(args.speed)
    if problem:
        print(f"inferwatch demo: --speed {problem}", file=sys.stderr)
        return 2
    try:
        check_speed(args.speed, args.rate)
    except ValueError as exc:
        print(f"inferwatch demo: --speed {args.speed:g}: {exc}", file=sys.stderr)
        return 2
    problem = _check_host(args.host) or _check_workdir(args.workdir)
    if problem:
        print(f"inferwatch demo: {problem}", file=sys.stderr)
        return 2
    if not _has_scikit_learn():
        print("inferwatch demo: the demo model needs scikit-learn; install it with "
              "pip install 'inferwatch[demo]'", file=sys.stderr)
        return 1
    missing = [] if args.no_stack else [
        name for name, found in (("prometheus", shutil.which("prometheus")),
                                 ("prometheus-alertmanager", find_alertmanager()))
        if not found]
    if missing:
        print(f"inferwatch demo: {' and '.join(missing)} not found on PATH: running without "
              "alerts. Install them (`make tools`, or apt-get install prometheus "
              "prometheus-alertmanager), or run the compose stack "
              "(docker compose -f compose/docker-compose.yml up).", file=sys.stderr)
    with_stack = not (args.no_stack or missing)
    problem = _check_data_dirs(args.workdir) if with_stack else None
    if problem:
        print(f"inferwatch demo: {problem}", file=sys.stderr)
        return 2
    try:
        demo = Demo(scenario=args.scenario, speed=args.speed, rate=args.rate, host=args.host,
                    workdir=Path(args.workdir) if args.workdir is not None else None,
                    with_stack=with_stack, gpu=args.gpu, once=args.once,
                    preferred_ports=DEFAULT_PORTS)
        return demo.run()
    except StackError as exc:
        print(f"inferwatch demo: {exc}", file=sys.stderr)
        return 1


def _check_host(host: str) -> str | None:
    """Why the demo cannot listen on `host`, or None when it can."""
    import socket

    if not host.strip():
        return "--host is empty; give an address such as 127.0.0.1 or 0.0.0.0"
    try:
        with socket.socket() as sock:
            sock.bind((host, 0))
    except (OSError, UnicodeError) as exc:
        # The children and the URLs the demo prints speak IPv4 (host:port, no brackets).
        return (f"--host {host}: cannot listen there ({exc}); give an IPv4 address or a name "
                f"of this machine, such as 127.0.0.1 or 0.0.0.0")
    return None


def _check_workdir(workdir: str | None) -> str | None:
    """Why the demo cannot keep its files in `workdir`, or None when it can."""
    if workdir is None:
        return None
    if not workdir.strip():
        # Path("") is the current directory, yet the demo took the empty value for no
        # --workdir at all: a temporary directory, removed at exit with every log.
        return "--workdir is empty; give a directory, or leave the flag out for a temporary one"
    from pathlib import Path

    path = Path(workdir).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"--workdir {workdir}: cannot make that directory ({exc.strerror or exc})"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"--workdir {workdir}: cannot write there"
    return None


def _check_data_dirs(workdir: str | None) -> str | None:
    """Why the stack could not start fresh in `workdir`, or None when it can: asked before
    the model trains and the children start, not when Prometheus is about to."""
    if workdir is None:
        return None
    from pathlib import Path

    from inferwatch.demo.stack import DATA_DIRS, data_dir_problem

    path = Path(workdir).expanduser().absolute()
    for name in DATA_DIRS:
        problem = data_dir_problem(path / name)
        if problem:
            return problem
    return None
