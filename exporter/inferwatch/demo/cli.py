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
import sys

DEFAULT_PORTS = {"api": 8080, "metrics": 8000, "exporter": 9400, "prometheus": 9090,
                 "alertmanager": 9093, "receiver": 9095}


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.0 < value <= 100.0:
        raise argparse.ArgumentTypeError(f"expected a number above 0 and at most 100, got {text!r}")
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
                             "at most --rate / 5 (and 6), so alerts stay in step with phases")
    parser.add_argument("--rate", type=float, default=10.0,
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
    from inferwatch.demo.scenario import check_speed
    from inferwatch.demo.stack import StackError, find_alertmanager

    if args.rate <= 0:
        print("inferwatch demo: --rate must be more than zero", file=sys.stderr)
        return 2
    try:
        check_speed(args.speed, args.rate)
    except ValueError as exc:
        print(f"inferwatch demo: --speed {args.speed:g}: {exc}", file=sys.stderr)
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
    demo = Demo(scenario=args.scenario, speed=args.speed, rate=args.rate, host=args.host,
                workdir=Path(args.workdir) if args.workdir else None,
                with_stack=not (args.no_stack or missing), gpu=args.gpu, once=args.once,
                preferred_ports=DEFAULT_PORTS)
    try:
        return demo.run()
    except StackError as exc:
        print(f"inferwatch demo: {exc}", file=sys.stderr)
        return 1
