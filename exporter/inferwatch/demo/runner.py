"""The demo run: start everything, print where to look and a live summary, stop cleanly.

Order of start: the page receiver (in this process), the model service, the exporter
watching it, Alertmanager, Prometheus with the rules rendered for the scenario's speed,
then the traffic (a thread here). Ctrl-C or SIGTERM stops the traffic first, then every
child process, newest first.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from inferwatch.demo.console import say
from inferwatch.demo.model import MODEL_NAME, MODEL_VERSION
from inferwatch.demo.quiet_shift import MODEL_NAME as QUIET_SHIFT_MODEL
from inferwatch.demo.receiver import PageReceiver
from inferwatch.demo.scenario import Phase, drift_window_seconds, rule_config, scenario
from inferwatch.demo.stack import (
    PortInUse,
    Stack,
    StackError,
    alertmanager_config,
    alerts_page,
    free_port,
    prometheus_config,
    query,
    stop_signals_held,
    wait_scraped,
)
from inferwatch.demo.stack import write_yaml as _write_yaml
from inferwatch.demo.streaming import MODEL_NAME as STREAMING_MODEL

_T = TypeVar("_T")
_PORTS = ("api", "metrics", "streaming", "quiet-shift", "exporter", "prometheus",
          "alertmanager", "receiver")
# The components only a run with the stack starts.
_STACK_PORTS = ("prometheus", "alertmanager", "receiver")
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Tries to start a component when another program keeps taking the ports chosen for it.
PORT_ATTEMPTS = 3
# Seconds between two looks at the children, whatever the summary's interval.
CHILD_CHECK_SECONDS = 1.0


class _Stop(BaseException):
    """Raised in the main thread by SIGTERM, so it unwinds like Ctrl-C.

    A BaseException, as KeyboardInterrupt is: an ``except Exception`` on the way must not
    swallow it, since later stop signals are ignored once the first has been raised."""


class Demo:
    """One demo run; `run()` blocks until Ctrl-C, SIGTERM or (with `once`) the end."""

    def __init__(self, *, scenario: str = "default", speed: float = 1.0, rate: float = 10.0,
                 host: str = "127.0.0.1", workdir: Path | None = None,
                 with_stack: bool = True, gpu: bool = False, once: bool = False,
                 preferred_ports: Mapping[str, int] | None = None,
                 out: Any = None) -> None:
        self.phases = _scenario(scenario, speed)
        self.speed = speed
        self.rate = rate
        self.host = host
        if not (rate > 0 and math.isfinite(rate)):
            raise StackError(f"--rate must be a number above 0, got {rate!r}")
        self.keep_workdir = workdir is not None
        # Absolute, because Prometheus reads the rule_files of its config relative to the
        # config file, and every child resolves paths against the demo's working directory.
        # The temporary one is made in run(), where a stop signal can no longer strand it.
        self.workdir: Path | None = Path(workdir).expanduser().absolute() if workdir else None
        self.with_stack = with_stack
        self.gpu = gpu
        self.once = once
        self.preferred = {name: port for name, port in (preferred_ports or {}).items() if port}
        self.ports = {name: free_port(host, self.preferred.get(name, 0)) for name in _PORTS}
        self.moved: dict[str, int] = {}  # component -> its preferred port, found taken
        self.out = out or say
        self.started = time.monotonic()
        self.traffic_started: float | None = None
        self.receiver: PageReceiver | None = None
        self.phase_name = ""
        self.alerts_path = "/alerts"  # until Prometheus says which page it serves
        self._phases_begun = 0
        # Set (by the traffic thread) once the last phase has run its time; the main
        # thread says what still fires, away from the traffic's pace.
        self._finished = threading.Event()

    # --- running ---------------------------------------------------------------------------

    def run(self) -> int:
        from inferwatch.demo.traffic import TrafficGenerator

        previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
        stack = None
        receiver = None
        generator = None
        thread = None
        status = 0
        # Everything after the first handler is inside the try: a SIGTERM between it and the
        # try (during mkdtemp, say) raised out of run() as a traceback, with the handlers
        # left in place.
        try:
            # A closed terminal (SIGHUP) stops the demo as Ctrl-C does, so its temporary
            # directory goes too. SIGINT gets the same handler only where it would raise
            # KeyboardInterrupt anyway (not where the caller ignores it).
            for sig in _STOP_SIGNALS:
                if sig != signal.SIGINT or previous[sig] is signal.default_int_handler:
                    signal.signal(sig, _raise_stop)
            if self.workdir is None:
                # Held, so the directory is known to the cleanup before a signal stops us.
                with stop_signals_held():
                    self.workdir = Path(tempfile.mkdtemp(prefix="inferwatch-demo-"))
            stack = Stack(self.workdir)
            if self.with_stack:
                receiver = self.receiver = self._on_free_port(("receiver",), lambda: PageReceiver(
                    self.host, self.ports["receiver"],
                    out=lambda line: self.out(f"{self._clock()} {line}")))
            self._start_processes(stack, receiver)
            self._await_prometheus()
            self._banner()
            generator = TrafficGenerator(
                f"http://{self.host}:{self.ports['api']}", self.phases, rate=self.rate,
                keep_going=not self.once, on_phase=self._announce)
            # Waited for through an Event, never Thread.join(timeout): Ctrl-C landing in
            # that join (Python 3.11 and older) released the running thread's lock and
            # marked it stopped, so the cleanup's join returned at once and the demo tore
            # the stack down under the traffic still running.
            traffic_done = threading.Event()

            def play() -> None:
                try:
                    generator.run()
                finally:
                    traffic_done.set()

            thread = threading.Thread(target=play, name="inferwatch-demo-traffic", daemon=True)
            self.traffic_started = time.monotonic()
            thread.start()
            interval = max(2.0, 10.0 / self.speed)
            next_summary = time.monotonic() + interval
            while not traffic_done.is_set():
                # The children are watched more often than the summary is printed: at
                # --speed 0.05 a dead model went unnoticed for 200 s, the traffic counting
                # `unreachable` alone.
                traffic_done.wait(min(CHILD_CHECK_SECONDS,
                                      max(0.0, next_summary - time.monotonic())))
                gone = self._exited(stack)
                playing = not traffic_done.is_set()
                if gone or not playing or time.monotonic() >= next_summary:
                    self.out(self._summary(generator))
                    next_summary = time.monotonic() + interval
                if gone:
                    status = 1
                    self.out(f"{self._clock()} {gone}")
                    break
                if self._finished.is_set() and playing:
                    self._finished.clear()
                    self.out(self._finished_line(going_on=True))
            else:
                self.out(self._finished_line(going_on=False))
        except (KeyboardInterrupt, _Stop):
            # A later stop signal is ignored from here on (see _raise_stop), and a reader
            # gone at this very line is no reason to skip the cleanup's last words.
            with contextlib.suppress(BrokenPipeError):
                self.out(f"{self._clock()} stopping")
        except BrokenPipeError:
            # Whoever read the output has gone (`inferwatch demo | head`): stop as on Ctrl-C.
            pass
        finally:
            # A second Ctrl-C must not cut the cleanup short and leave children behind.
            for sig in _STOP_SIGNALS:
                if signal.getsignal(sig) is not None:
                    signal.signal(sig, _ignore)
            if generator is not None:
                generator.stop()
            if thread is not None:
                thread.join(15)
            left = None
            if stack is not None:
                try:
                    stack.close()
                except StackError as exc:  # the rest of the cleanup still runs
                    left = str(exc)
            if receiver is not None:
                receiver.close()
            if not self.keep_workdir and self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
            for sig, handler in previous.items():
                if handler is not None:
                    signal.signal(sig, handler)
            with contextlib.suppress(BrokenPipeError):
                if left:
                    self.out(f"stopped, but {left}; they may still run")
                else:
                    self.out("stopped: every demo process has exited")
        # A child left running is a failure, whatever stopped the run: a caller reading 0
        # would take it that nothing of the demo remains.
        return 1 if left else status

    def _start_processes(self, stack: Stack, receiver: PageReceiver | None) -> None:
        from inferwatch.generate import write
        from inferwatch.generate.config import from_dict

        host, ports, workdir = self.host, self.ports, self.workdir
        assert workdir is not None
        self.out(f"training the demo model (logs in {workdir})")
        model = self._on_free_port(("api", "metrics"), lambda: stack.start_model(
            "model", host, ports["api"], ports["metrics"],
            drift_window=drift_window_seconds(self.speed, self.rate)))
        streaming = self._on_free_port(("streaming",), lambda: stack.start_streaming_model(
            host, ports["streaming"], speed=self.speed))
        quiet = self._on_free_port(("quiet-shift",), lambda: stack.start_quiet_shift_model(
            host, ports["quiet-shift"], speed=self.speed))
        self._on_free_port(("exporter",), lambda: stack.start_exporter(
            host, ports["exporter"], [model.pid, streaming.pid, quiet.pid], gpu=self.gpu))
        if receiver is None:
            return
        config = rule_config(self.speed)
        try:
            _write_yaml(workdir / "inferwatch.yaml", config)
            write(workdir, from_dict(config, source=str(workdir / "inferwatch.yaml")))
            am_config = _write_yaml(workdir / "alertmanager.yml", alertmanager_config(
                receiver.url, group_interval=f"{max(1, round(5 / self.speed))}s"))
        except OSError as exc:
            # A kept --workdir where one of these names is another user's file or a
            # directory ended the demo in a traceback.
            raise StackError(f"cannot write the demo's configs into {workdir}: "
                             f"{_os_error(exc)}") from exc
        self._on_free_port(("alertmanager",), lambda: stack.start_alertmanager(
            am_config, host, ports["alertmanager"]))

        def start_prometheus() -> Any:
            # The config names the ports the others ended up on, so it is written each try.
            try:
                prom_config = _write_yaml(workdir / "prometheus.yml", prometheus_config(
                    model_targets=[f"{host}:{ports[name]}"
                                   for name in ("metrics", "streaming", "quiet-shift")],
                    exporter_targets=[f"{host}:{ports['exporter']}"],
                    alertmanager=f"{host}:{ports['alertmanager']}",
                    rule_files=[str(workdir / "alerts" / "*.yml")]))
            except OSError as exc:
                raise StackError(f"cannot write the demo's configs into {workdir}: "
                                 f"{_os_error(exc)}") from exc
            return stack.start_prometheus("prometheus", prom_config, host, ports["prometheus"])

        self._on_free_port(("prometheus",), start_prometheus)

    def _await_prometheus(self) -> None:
        """Learn which alerts page Prometheus serves, and wait for its first scrapes, so the
        summary's figures and the rules' windows begin before the traffic does."""
        if not self.with_stack:
            return
        self.alerts_path = alerts_page(self._url("prometheus"))
        wait_scraped(self._url("prometheus"), [f"{self.host}:{self.ports[name]}"
                                               for name in ("metrics", "exporter")])

    def _exited(self, stack: Stack) -> str | None:
        """What to say when a child has died: the demo cannot go on without any of them
        (a dead model left the traffic counting `sent` alone, every figure frozen, until
        Ctrl-C), and its log goes with the temporary directory."""
        for process in stack.processes:
            if not process.alive():
                return (f"{process.name} exited with status {process.popen.returncode}; "
                        f"stopping the demo. Last lines of {process.log_path.name}:\n"
                        f"{process.log_tail()}")
        return None

    def _on_free_port(self, names: tuple[str, ...], start: Callable[[], _T]) -> _T:
        """`start()`, again on fresh ports when another program took one of `names` between
        the choice of ports and the bind (a second demo starting at the same time)."""
        for attempt in range(PORT_ATTEMPTS):
            try:
                return start()
            except (PortInUse, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno != errno.EADDRINUSE:
                    raise
                if attempt == PORT_ATTEMPTS - 1:
                    taken = ", ".join(f"{name} {self.ports[name]}" for name in names)
                    raise StackError(
                        f"ports taken by another program as the demo started them ({taken}),"
                        f" {PORT_ATTEMPTS} times; stop the other program (another demo?) or "
                        f"try again") from exc
                for name in names:
                    self.ports[name] = free_port(self.host)
        raise AssertionError("unreachable")

    # --- output ----------------------------------------------------------------------------

    def _url(self, name: str, path: str = "") -> str:
        return f"http://{self.host}:{self.ports[name]}{path}"

    def _banner(self) -> None:
        total = sum(p.seconds for p in self.phases)
        lines = ["", "inferwatch demo running; Ctrl-C stops everything.",
                 f"  model API      {self._url('api', '/predict')}",
                 f"  model metrics  {self._url('metrics', '/metrics')}",
                 f"  status page    {self._url('metrics', '/')}",
                 f"  streaming      {self._url('streaming', '/metrics')} (toy-llm, a token "
                 f"generator whose time to first token regresses and recovers, in a loop)",
                 f"  quiet shift    {self._url('quiet-shift', '/metrics')} (price-estimate, "
                 f"no reference profile: its outputs quietly rise by half and come back, "
                 f"in a loop)",
                 f"  exporter       {self._url('exporter', '/metrics')}"]
        if self.with_stack:
            lines += [f"  Prometheus     {self._url('prometheus', self.alerts_path)}",
                      f"  Alertmanager   {self._url('alertmanager')}",
                      f"  pages          printed here as PAGE lines "
                      f"(webhook {self._url('receiver', '/')})",
                      f"  rules          {self.workdir / 'alerts'} "
                      f"(windows and `for:` scaled, see {self.workdir / 'inferwatch.yaml'})"]
        lines.append(f"  scenario       {' -> '.join(p.name for p in self.phases)} "
                     f"({total:.0f}s)")
        # Whoever opens the usual port by habit would meet the other program (often a
        # first demo still running), so say which ports moved: of the components that run.
        moved = [f"{name} {port} -> {self.ports[name]}" for name, port in self.preferred.items()
                 if name in self.ports and self.ports[name] != port
                 and (name not in _STACK_PORTS or self.with_stack)]
        if moved:
            lines.append(f"  ports taken    {', '.join(moved)} (another program listens "
                         f"there; use the addresses above)")
        lines.append("")
        for line in lines:
            self.out(line)

    def _announce(self, phase: Phase) -> None:
        self._phases_begun += 1
        if self._phases_begun > len(self.phases):
            # The last phase again, without end: the scenario itself is over.
            self._finished.set()
            return
        self.phase_name = phase.name
        self.out(f"{self._clock()} phase {phase.name} ({phase.seconds:.0f}s): "
                 f"{phase.description}")

    def _clock(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"[{seconds // 60:02d}:{seconds % 60:02d}]"

    def _summary(self, generator: Any) -> str:
        stats = generator.stats
        line = (f"{self._clock()} {self.phase_name or '-'}: sent {stats.sent}, "
                f"ok {stats.ok}, failed {stats.failed}")
        if stats.unreachable:
            # Requests that got no answer at all: without this they vanished from the line.
            line += f", unreachable {stats.unreachable}"
        if not self.with_stack:
            return line
        elapsed = time.monotonic() - (self.traffic_started or self.started)
        window = f"{rate_window_seconds(elapsed, self.speed)}s"
        prom = self._url("prometheus")
        queries = summary_queries(window)
        values = {}
        try:
            for key, promql in queries.items():
                result = query(prom, promql, timeout=2)
                values[key] = float(result[0]["value"][1]) if result else None
            firing = sorted({r["metric"].get("alertname", "") for r in query(
                prom, 'ALERTS{alertstate="firing"}', timeout=2)})
        except StackError:
            return line + " | Prometheus not answering"
        parts = [_fmt(values["calls/s"], "{:.1f} calls/s"), _fmt(values["errors"], "errors {:.1%}"),
                 _fmt(values["p99"], "p99 {:.3f}s"), _fmt(values["drift"], "max psi {:.2f}")]
        shown = ", ".join(p for p in parts if p)
        if shown:
            line += f" | {shown}"
        line += f" | firing: {', '.join(firing) if firing else 'none'}"
        if self.receiver is not None and self.receiver.repeats:
            line += f" | {self.receiver.digest()}"
        return line


    def _finished_line(self, *, going_on: bool) -> str:
        """What the end of the scenario leaves: the alerts still firing, each with why.

        An alert reads a window of the past: the slow burn's short window (5 minutes at
        speed 1) still holds the end of error-burst when recovery ends, so "the scenario
        finished" alone read as if every alert had resolved."""
        line = f"{self._clock()} scenario finished"
        if not self.with_stack:
            return line
        try:
            firing = query(self._url("prometheus"), 'ALERTS{alertstate="firing"}', timeout=2)
        except StackError:
            return line + "; Prometheus not answering, so what still fires is unknown"
        reasons: dict[str, str] = {}
        for alert in firing:
            name = alert["metric"].get("alertname", "")
            reasons.setdefault(name, still_firing_reason(
                name, alert["metric"].get("model", ""), self.speed))
        if not reasons:
            return line + "; nothing is firing"
        line += "; still firing: " + ", ".join(f"{name} ({reason})"
                                                for name, reason in sorted(reasons.items()))
        them = "them" if len(reasons) > 1 else "it"
        if going_on:
            return line + f". The traffic goes on in recovery (Ctrl-C stops): watch {them} resolve"
        return line + f". Exiting (--once) with {them} still firing"


# The models that loop stories of their own, whatever phase the scenario is in.
_OWN_STORIES = {STREAMING_MODEL: "toy-llm loops its first-token regression",
                QUIET_SHIFT_MODEL: "price-estimate loops its quiet shift"}


def still_firing_reason(alert: str, model: str, speed: float) -> str:
    """Why `alert` of `model` may still fire when the scenario ends, in a few words.

    >>> slow_burn = "InferwatchErrorBudgetBurnSlow"
    >>> still_firing_reason(slow_burn, "breast-cancer", 1.0)  # doctest: +NORMALIZE_WHITESPACE
    'its 5m short window holds errors of error-burst for 5m, and it keeps firing for 5m
     after that (keep_firing_for)'
    >>> still_firing_reason("InferwatchAccuracyDrop", "breast-cancer", 1.0)
    'its 5m window still holds outcomes of feature-drift'
    """
    if model in _OWN_STORIES:
        return _OWN_STORIES[model]
    config = rule_config(speed)
    windows = {
        "InferwatchErrorBudgetBurnSlow": (config["slo"]["slow_burn"]["short_window"],
                                          "short window", "errors of error-burst"),
        "InferwatchErrorBudgetBurnFast": (config["slo"]["fast_burn"]["short_window"],
                                          "short window", "errors of error-burst"),
        "InferwatchAccuracyDrop": (config["accuracy"]["window"], "window",
                                   "outcomes of feature-drift"),
        "InferwatchShadowAgreementLow": (config["shadow"]["window"], "window",
                                         "comparisons of feature-drift"),
        "InferwatchShadowBetter": (config["shadow"]["outcome_window"], "window",
                                   "outcomes of feature-drift"),
    }
    # An alert with keep_firing_for fires on that long after its window has emptied (the
    # slow burn: a 5m window, then 5m more), so "its window still holds errors" alone
    # promised a resolution minutes before it came, and could name a window already empty.
    keep = _keep_firing_for(alert, speed)
    if keep is None:
        if alert in windows:
            window, kind, what = windows[alert]
            return f"its {window} {kind} still holds {what}"
        return "its window still holds part of an earlier phase"
    after = f"it keeps firing for {keep} after that (keep_firing_for)"
    if alert in windows:
        window, kind, what = windows[alert]
        return f"its {window} {kind} holds {what} for {window}, and {after}"
    return f"its window holds part of an earlier phase, and {after}"


@functools.lru_cache(maxsize=8)
def _rendered_config(speed: float) -> Any:
    from inferwatch.generate.config import from_dict

    return from_dict(rule_config(speed))


def _keep_firing_for(alert: str, speed: float) -> str | None:
    """The keep_firing_for of `alert` in the rules the demo renders at `speed`, if any."""
    from inferwatch.generate.rules_alerts import ALERTS

    for definition in ALERTS:
        if definition.name == alert:
            return definition.keep_firing_for(_rendered_config(speed))
    return None


def summary_queries(window: str) -> dict[str, str]:
    """The PromQL of the live summary's figures, each over `window`.

    The traffic line is about the model the traffic reaches; the streaming and
    quiet-shift models serve calls of their own, and the shadow challenger records a call
    of its own for each prediction (another `model_version`), which doubled calls/s and
    halved the error ratio. So every figure selects the champion alone.

    >>> 'model_version="1.0.0"' in summary_queries("30s")["calls/s"]
    True
    """
    model = f'model="{MODEL_NAME}",model_version="{MODEL_VERSION}"'
    return {
        "calls/s": f"sum(rate(inferwatch_requests_total{{{model}}}[{window}]))",
        "errors": f'sum(rate(inferwatch_requests_total{{{model},outcome="error"}}'
                  f"[{window}])) / sum(rate(inferwatch_requests_total{{{model}}}"
                  f"[{window}]))",
        "p99": "histogram_quantile(0.99, sum by (le) "
               f"(rate(inferwatch_request_duration_seconds_bucket{{{model}}}[{window}])))",
        "drift": f'max(inferwatch_feature_drift{{{model},method="psi"}})',
    }


def rate_window_seconds(elapsed: float, speed: float) -> int:
    """The window of the live calls/s figure: a minute (scaled by `speed`), but never
    longer than the traffic has run.

    A rate over a window reaching back before the first request divides the calls made so
    far by the whole window, so a steady 10 calls/s would read 1.0 and climb for a minute.

    >>> rate_window_seconds(3.4, 1.0), rate_window_seconds(600, 1.0), rate_window_seconds(600, 6)
    (3, 60, 10)
    """
    full = max(10, round(60 / speed))
    return max(2, min(full, int(elapsed)))


def _fmt(value: float | None, pattern: str) -> str:
    if value is None or value != value:  # no data or NaN (no calls in the window)
        return ""
    return pattern.format(value)


def _os_error(exc: OSError) -> str:
    """`exc` on one line, naming the file: `strerror` alone does not say which."""
    name = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{name}"


def _scenario(name: str, speed: float) -> list[Phase]:
    try:
        return scenario(name, speed)
    except ValueError as exc:
        raise StackError(str(exc)) from exc


def _raise_stop(signum: int, frame: Any) -> None:
    # The first stop signal ends the run; from here on the others are ignored, so a second
    # one arriving while "stopping" is printed, or before `finally` is reached, cannot cut
    # the cleanup short or raise out of run(). Held as stop_signals_held() holds them: as
    # Python handlers, swapped before anything else can run.
    for sig in _STOP_SIGNALS:
        if signal.getsignal(sig) is _raise_stop:
            signal.signal(sig, _ignore)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise _Stop()


def _ignore(signum: int, frame: Any) -> None:
    pass
