"""The demo traffic generator: plays a scenario against the model service.

Requests go out at a steady rate from a small thread pool (so a slow call does not slow the
traffic down), each a row drawn from the bundled dataset. During a drift phase a few
features are shifted and a new channel appears; at each phase start the model service is
told which faults to inject. Ground truth follows each prediction a few seconds later, the
way labels arrive in production.

    python -m inferwatch.demo.traffic --model-url http://127.0.0.1:8080 --scenario short
"""

from __future__ import annotations

import argparse
import heapq
import http.client
import importlib.util
import ipaddress
import itertools
import json
import math
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferwatch.demo.cli import MAX_RATE
from inferwatch.demo.console import say
from inferwatch.demo.model import Dataset, load_dataset
from inferwatch.demo.scenario import SCENARIOS, Phase, scenario, speed_argument

# Features the drift phase shifts: size, texture and concavity, so the predictions move too.
DRIFTED_FEATURES = ("mean radius", "mean texture", "mean area", "mean concave points",
                    "worst concave points", "worst perimeter")
UNSEEN_CHANNEL = "partner-api"
LABEL_DELAY_SECONDS = (1.0, 4.0)
# One outcome in this many names a request this replica never served (a restarted peer's).
UNKNOWN_OUTCOME_EVERY = 100
REQUEST_TIMEOUT_SECONDS = 10.0


@dataclass
class TrafficStats:
    """Counts of what the generator sent and got back (read by the live summary)."""

    sent: int = 0
    ok: int = 0
    failed: int = 0
    unreachable: int = 0
    outcomes: int = 0
    outcomes_dropped: int = 0  # not posted: as many outcome posts in flight as allowed
    phase: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


class TrafficGenerator:
    """Sends scenario traffic to one model service until the phases end or `stop()`.

    `on_phase(phase)` is called as each phase starts. With `loop`, the scenario repeats;
    otherwise the last phase's traffic goes on after the scenario ends when `keep_going`.
    """

    def __init__(self, model_url: str, phases: Sequence[Phase], *, rate: float = 10.0,
                 seed: int = 0, loop: bool = False, keep_going: bool = False,
                 on_phase: Callable[[Phase], None] | None = None,
                 data: Dataset | None = None) -> None:
        # inf passes `> 0` but paces nothing: the loop would spin without ever waiting.
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a number above zero, got {rate!r}")
        problem = url_problem(model_url)
        if problem:
            raise ValueError(f"model_url {model_url!r}: {problem}")
        self.model_url = model_url.rstrip("/")
        self._open = _opener_for(self.model_url)
        self.phases = list(phases)
        # With no phase, run() spun a core forever (loop) or raised IndexError (keep_going);
        # a phase of no time at all, looped, posted /faults as fast as it could.
        if not self.phases or not any(phase.seconds > 0 for phase in self.phases):
            raise ValueError("phases must hold at least one phase that lasts some time")
        self.rate = rate
        self.loop = loop
        self.keep_going = keep_going
        self.on_phase = on_phase
        self.data = data or load_dataset()
        self.stats = TrafficStats()
        self._rng = np.random.default_rng(seed)
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self._labels: list[tuple[float, str, str]] = []  # (due, request id, label)
        self._labels_lock = threading.Lock()
        self._std = self.data.numeric.std(axis=0)
        self._drift_columns = [self.data.feature_names.index(n) for n in DRIFTED_FEATURES]
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="demo-traffic")
        self._pending = threading.BoundedSemaphore(64)
        # Outcomes have their own cap: queued without one while the service was slow, their
        # posts (and the memory they held) grew without bound.
        self._pending_outcomes = threading.BoundedSemaphore(64)

    def stop(self) -> None:
        """Ask `run()` to return; in-flight requests finish or time out."""
        self._stop.set()

    def run(self) -> None:
        """Play the scenario (blocking)."""
        try:
            while not self._stop.is_set():
                for phase in self.phases:
                    self._play(phase, phase.seconds)
                    if self._stop.is_set():
                        return
                if not self.loop:
                    break
            if self.keep_going and not self._stop.is_set():
                self._play(self.phases[-1], float("inf"))
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _play(self, phase: Phase, seconds: float) -> None:
        self.stats.phase = phase.name
        self._post("/faults", phase.faults)
        if self.on_phase is not None:
            self.on_phase(phase)
        start = time.monotonic()
        for tick in itertools.count():
            due = start + tick / self.rate
            if due - start >= seconds:
                return
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            self._send_outcomes()
            if self._pending.acquire(blocking=False):  # never queue without bound
                self._pool.submit(self._predict, *self._draw(phase))

    def _draw(self, phase: Phase) -> tuple[str, dict[str, Any], str, float]:
        """The next request: (request id, instance, true label, label delay); one thread."""
        rng = self._rng
        row = int(rng.integers(len(self.data.labels)))
        instance = self.data.instances([row])[0]
        if phase.drift:
            for j in self._drift_columns:
                instance[self.data.feature_names[j]] += phase.drift * float(self._std[j])
            if rng.random() < 0.3:
                instance["channel"] = UNSEEN_CHANNEL
        if phase.malformed_ratio and rng.random() < phase.malformed_ratio:
            # Half miss the column (a schema violation), half send null (a missing value).
            if rng.random() < 0.5:
                del instance[DRIFTED_FEATURES[0]]
            else:
                instance[DRIFTED_FEATURES[-1]] = None
        low, high = LABEL_DELAY_SECONDS
        delay = low + (high - low) * float(rng.random())
        return f"demo-{next(self._ids)}", instance, str(self.data.labels[row]), delay

    def _predict(self, rid: str, instance: dict[str, Any], label: str, delay: float) -> None:
        try:
            self.stats.count("sent")
            status = self._post("/predict", {"request_id": rid, "instances": [instance]})
            if status == 200:
                self.stats.count("ok")
                with self._labels_lock:
                    heapq.heappush(self._labels, (time.monotonic() + delay, rid, label))
            elif status is None:
                self.stats.count("unreachable")
            else:
                self.stats.count("failed")
        finally:
            self._pending.release()

    def _send_outcomes(self) -> None:
        now = time.monotonic()
        due = []
        with self._labels_lock:
            while self._labels and self._labels[0][0] <= now:
                due.append(heapq.heappop(self._labels))
        for _, rid, label in due:
            if not self._pending_outcomes.acquire(blocking=False):
                # As a label can be lost in production: counted, never queued without bound.
                self.stats.count("outcomes_dropped")
                continue
            self.stats.count("outcomes")
            if self.stats.outcomes % UNKNOWN_OUTCOME_EVERY == 0:
                rid = f"restarted-peer-{rid}"
            self._pool.submit(self._outcome, rid, label)

    def _outcome(self, rid: str, label: str) -> None:
        try:
            self._post("/outcome", {"request_id": rid, "label": label})
        finally:
            self._pending_outcomes.release()

    def _post(self, path: str, payload: dict[str, Any]) -> int | None:
        try:
            # Inside the try: a URL urllib cannot use raised here, on a pool thread or out
            # of run(), instead of counting the request as unreachable.
            request = urllib.request.Request(
                self.model_url + path, data=json.dumps(payload).encode(), method="POST",
                headers={"Content-Type": "application/json"})
            with self._open(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as exc:
            exc.read()
            return exc.code
        except (OSError, ValueError, http.client.HTTPException):
            # HTTPException: whatever listens there does not answer HTTP (another program on
            # the port, a model dying mid-answer); it escaped the traffic thread, which died
            # with a traceback and sent nothing more.
            return None


def _opener_for(url: str) -> Callable[..., Any]:
    """How to open requests to `url`: directly when it is this machine, as Go's clients do.

    urllib sent even 127.0.0.1 through an http_proxy set in the environment, so behind a
    corporate proxy every request to the local demo model counted as unreachable.
    """
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return urllib.request.build_opener(urllib.request.ProxyHandler({})).open
    return urllib.request.urlopen


def url_problem(url: str) -> str | None:
    """Why `url` is not an ``http(s)://host[:port][/path]`` base URL, or None when it is.

    >>> url_problem("http://127.0.0.1:8080"), url_problem("127.0.0.1:8080")
    (None, 'expected http://HOST[:PORT][/PATH] or https://...')
    """
    expected = "expected http://HOST[:PORT][/PATH] or https://..."
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not one
    except ValueError:
        return expected
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return expected
    if parts.query or parts.fragment or not url.isprintable() or " " in url:
        # The generator appends /predict, /outcome and /faults to the URL.
        return "expected a base URL without a query, a fragment, spaces or control characters"
    return None


def _http_url(text: str) -> str:
    """A base URL the requests can be sent to: `127.0.0.1:8080` (no scheme) ended in a
    traceback on the first request."""
    problem = url_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}, got {text!r}")
    return text


def _positive(text: str) -> float:
    """A finite number above zero: 0, a negative, nan or inf ended in a traceback or a loop
    that sent as fast as it could."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def _rate(text: str) -> float:
    """Requests per second, bounded as `inferwatch demo --rate` is: 1e9 spun a core in a
    loop that could never keep that pace."""
    value = _positive(text)
    if value > MAX_RATE:
        raise argparse.ArgumentTypeError(
            f"expected requests per second above 0 and at most {MAX_RATE:g}, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Play a scenario against a model service (the compose stack's traffic container)."""
    parser = argparse.ArgumentParser(prog="python -m inferwatch.demo.traffic",
                                     description="Scenario traffic for the demo model.")
    parser.add_argument("--model-url", type=_http_url, default="http://127.0.0.1:8080",
                        help="base URL of the model service (default http://127.0.0.1:8080)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="default")
    parser.add_argument("--speed", type=speed_argument, default=1.0,
                        help="play the phases this many times faster (0.01 to 100, default 1)")
    parser.add_argument("--rate", type=_rate, default=10.0,
                        help=f"requests per second (above 0, at most {MAX_RATE:g}; default 10)")
    parser.add_argument("--loop", action="store_true", help="repeat the scenario forever")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("sklearn") is None:
        # The rows come from scikit-learn's bundled dataset: without it the first thing the
        # user saw was a ModuleNotFoundError traceback.
        print(f"{parser.prog}: the demo traffic needs scikit-learn; install it with "
              "pip install 'inferwatch[demo]'", file=sys.stderr)
        return 1
    phases = scenario(args.scenario, args.speed)

    def announce(phase: Phase) -> None:
        say(f"phase {phase.name} ({phase.seconds:.0f}s): {phase.description}")

    generator = TrafficGenerator(args.model_url, phases, rate=args.rate, loop=args.loop,
                                 on_phase=announce)
    # `kill` (and `docker stop`) sends SIGTERM: stopped as Ctrl-C stops it, through run()'s
    # cleanup, rather than killed mid-request with exit status 143.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        generator.run()
    except KeyboardInterrupt:
        generator.stop()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
