"""Batch jobs: push each model's metrics to a Prometheus Pushgateway.

A scoring job may end before Prometheus ever scrapes it, so it pushes instead. Each model
is its own group, ``{job, model}`` plus any `grouping_key` labels (``instance``, say), and
each push replaces that group (HTTP PUT, prometheus_client's ``push_to_gateway``), so the
gateway holds the last run of every model of every job.

Two forms:

- ``inferwatch.push(gateway, job)`` pushes now and raises :class:`PushError`, naming the
  gateway, when a push fails: the caller asked for exactly this push.
- ``with inferwatch.push.on_exit(gateway, job): ...`` and ``@inferwatch.push.on_exit(...)``
  push when the block or function ends, however it ends. A failing job is recorded first
  (see :meth:`JobPush.__exit__`) and its exception re-raised unchanged. A failing push is
  only logged: the job's own result must not be lost because the gateway is down. In
  multi-worker mode, the first job of a process clears the directory of what earlier
  processes left there (see :func:`_clear_earlier_runs`), so it pushes its own run.

>>> import inferwatch
>>> from inferwatch.core.registry import Registry
>>> registry = Registry()
>>> score = inferwatch.instrument(lambda x: 0.5, name="churn", version="3", registry=registry)
>>> with push.on_exit("127.0.0.1:1", "nightly", registry=registry, timeout=0.5, retries=0):
...     score([1.0])   # the gateway is down: the push is logged, the block's result stands
0.5
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import email.utils
import functools
import http.client
import inspect
import logging
import math
import multiprocessing
import os
import re
import signal
import time
import urllib.error
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import basic_auth_handler, default_handler, generate_latest

from inferwatch import faults
from inferwatch.catalogue import CATALOGUE, MODEL_LABELS
from inferwatch.core.render import combine, model_families
from inferwatch.serving.job_failures import counted_already, job_began, job_ended

if TYPE_CHECKING:
    from inferwatch.core.monitor import Monitor
    from inferwatch.core.registry import Registry
    from inferwatch.core.state import ModelState

log = logging.getLogger("inferwatch.serving.pushgateway")

F = TypeVar("F", bound=Callable[..., Any])
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_RESERVED_GROUPING_LABELS = ("job", "model")
# The labels of the per-model series a push sends: a grouping key may not set them.
_PUSHED_LABELS = frozenset({*MODEL_LABELS, "le", "quantile", *(
    label for spec in CATALOGUE.values()
    if spec.per_model and spec.source == "instrumentation" for label in spec.labels)})
# Grouping values sent as they are; any other goes base64url-encoded (see _group_url).
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.:-]+")
# The format generate_latest writes, as prometheus_client's push_to_gateway declares it.
_TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
# Enough of a refusal's body for the gateway's explanation, not a whole echoed payload.
_REASON_BYTES = 1024


class PushError(RuntimeError):
    """A push to the Pushgateway failed; the message names the gateway, job and models."""


def push(gateway: str, job: str, *, registry: Registry | None = None,
         grouping_key: Mapping[str, str] | None = None, timeout: float = 10.0,
         handler: Callable[..., Any] | None = None, retries: int = 3,
         retry_delay: float = 0.5) -> list[dict[str, str]]:
    """Push every model's metrics now, one group per model; returns the groups pushed.

    `gateway` is ``host:port`` or a URL; `grouping_key` adds labels to every group (not
    ``job`` or ``model``); `handler` is a prometheus_client push handler (basic auth, TLS).
    Each group replaces the last (HTTP PUT, as prometheus_client's ``push_to_gateway``), so
    a push may be repeated: a group that failed for a reason that may pass (no connection,
    a timeout, HTTP 408, 429 or 5xx, as while the gateway restarts) is tried again up to
    `retries` times, `retry_delay` seconds later and twice as long each time up to 30 s
    (or after the gateway's Retry-After, up to 30 s). A refusal (HTTP 400, 401, 403, 404)
    is not repeated. `timeout` bounds each attempt, its groups' requests together: a group
    the attempt has no time left for counts as failed (a timeout), so a gateway that never
    answers costs the retry delays plus ``retries + 1`` timeouts, however many models.
    Every model is attempted; then :class:`PushError` is raised if any push failed, with
    the gateway's own explanation of a refusal.

    The shadows of the registry's models get up to 1 s (one wait for all) to answer the
    calls queued so far, as their ``flush()``, and run on after the push: a call not
    answered by then is pushed as sampled only, and counts at a later push. (At the end of
    a ``push.on_exit`` job they are closed instead: see :meth:`JobPush.__exit__`.)

    In multi-worker mode (``INFERWATCH_MULTIPROC_DIR``, a registry attached to a directory)
    the groups hold every worker's calls merged, as ``/metrics`` serves them: a job that
    scores in a pool of processes pushes the pool's calls, this process's included.

    >>> from inferwatch.core.registry import Registry
    >>> push("127.0.0.1:9091", "nightly", registry=Registry())  # no model: nothing to push
    []
    """
    key = _check(gateway, job, grouping_key)
    _check_retries(retries, retry_delay)
    _check_timeout(timeout)
    target = _parse_gateway(gateway)
    if target.username is not None:
        if handler is not None:
            raise ValueError("inferwatch.push: give the gateway's credentials either in its URL "
                             "or through handler=, not both")
        handler = functools.partial(basic_auth_handler, username=target.username,
                                    password=target.password)
    from inferwatch.core import shadow_lifetime
    from inferwatch.core.registry import default_registry

    registry = registry or default_registry()
    # A push may come in the middle of a job: the shadows run on after it.
    shadow_lifetime.settle_before_push(registry.monitors(), close=False)
    registry.drain()
    pushed: list[dict[str, str]] = []
    bodies = {}
    collectors = _model_collectors(registry, target.shown, job)
    for model, collector in collectors.items():  # all refused before any group is sent
        _check_metadata_clash(key, model, collector.info_labels())
    for model, collector in collectors.items():
        source = CollectorRegistry(auto_describe=False)
        source.register(collector)
        bodies[model] = generate_latest(source)  # rendered once: every attempt sends the same
    failed: dict[str, tuple[Exception, int]] = {}
    tries: dict[str, int] = dict.fromkeys(bodies, 0)
    waiting = list(bodies)
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(_retry_wait(retry_delay, attempt, [exc for exc, _ in failed.values()]))
        # One deadline for all of an attempt's groups: a gateway that accepts connections
        # and never answers would otherwise hold the job for a timeout per model.
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        for model in waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                if model not in failed:  # else its last real failure says more
                    failed[model] = (TimeoutError(
                        f"not sent: the attempt's timeout of {timeout:g} s was spent on "
                        "other models"), tries[model])
                continue
            group = {"model": model, **key}
            tries[model] += 1
            try:
                (handler or default_handler)(
                    url=_group_url(target.url, job, group), method="PUT",
                    timeout=None if timeout is None else min(timeout, left),
                    headers=[("Content-Type", _TEXT_FORMAT)], data=bodies[model])()
            except Exception as exc:
                failed[model] = (exc, tries[model])
                continue
            failed.pop(model, None)
            pushed.append({"job": job, **group})
        waiting = [model for model, (exc, _) in failed.items() if _may_pass(exc)]
        if not waiting:
            break
    if failed:
        raise PushError(f"inferwatch.push: could not push job {job!r} to the Pushgateway at "
                        f"{target.shown}: " + "; ".join(
                            f"model {model!r}: {_failure(exc)}" + (
                                f" ({tries} attempts)" if tries > 1 else "")
                            for model, (exc, tries) in failed.items()))
    return pushed


# HTTP statuses a later attempt may not meet: the request timed out, too many requests,
# the gateway (or a proxy before it) failing or restarting.
_PASSING_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER = 30.0


def _may_pass(exc: Exception) -> bool:
    """Whether a failed push may succeed if repeated; a refusal will not."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in _PASSING_STATUSES
    # OSError: no connection, reset, timeout (URLError is an OSError). HTTPException: a
    # reply cut short or garbled (a proxy dropping the connection mid-answer, a gateway
    # restarting), which urllib lets through unwrapped.
    return isinstance(exc, (OSError, http.client.HTTPException))


def _retry_wait(delay: float, attempt: int, failures: list[Exception]) -> float:
    """Seconds before attempt `attempt` (1 for the first repeat): doubling from `delay` up
    to 30 s (or `delay`, when longer), or the longest Retry-After (seconds or an HTTP date)
    the gateway asked for, up to 30 s.

    >>> [_retry_wait(0.5, attempt, []) for attempt in (1, 2, 3, 7, 2000)]
    [0.5, 1.0, 2.0, 30.0, 30.0]
    """
    # Without the cap, retries=20 would wait days, and a large count overflow the float.
    wait = max(delay, min(delay * 2.0 ** min(attempt - 1, 64), _MAX_RETRY_AFTER))
    for exc in failures:
        if isinstance(exc, urllib.error.HTTPError) and exc.headers is not None:
            asked = _retry_after(exc.headers.get("Retry-After"))
            if asked is not None:
                wait = max(wait, min(asked, _MAX_RETRY_AFTER))
    return wait


def _retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` asks for: delay-seconds or an HTTP date (RFC 9110 10.2.3,
    what a proxy or load balancer in front of the gateway may send); None when unreadable.

    >>> _retry_after("7"), _retry_after("Thu, 01 Jan 1970 00:00:00 GMT"), _retry_after("soon")
    (7.0, 0.0, None)
    """
    asked = (value or "").strip()
    if asked.isascii() and asked.isdigit():
        return float(asked)
    try:
        when = email.utils.parsedate_to_datetime(asked)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": the date is in UTC, its zone merely unstated
        when = when.replace(tzinfo=datetime.timezone.utc)
    # A date already past (or a clock behind the gateway's) asks for no wait at all.
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


def _check_timeout(timeout: float | None) -> None:
    # Checked before the job runs: push.on_exit would otherwise find a bad value only when
    # the job ends, and merely log it.
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
            0 < timeout < float("inf")):
        raise ValueError(f"inferwatch.push: timeout must be seconds above 0, got {timeout!r}")


class _Gateway(NamedTuple):
    url: str  # without credentials
    shown: str  # as messages and logs name it: any password replaced
    username: str | None
    password: str | None


def _parse_gateway(gateway: str) -> _Gateway:
    """The gateway's URL, and the basic-auth credentials an ``http://user:pass@host`` URL
    carries (urllib would take them for part of the host name and fail to resolve it).

    >>> _parse_gateway("https://batch:s3cret@gw.example:9091")
    _Gateway(url='https://gw.example:9091', shown='https://batch:***@gw.example:9091', \
username='batch', password='s3cret')
    >>> _parse_gateway("pushgateway:9091").url
    'http://pushgateway:9091'
    """
    problem = "must be 'host:port' or an http(s) URL"
    if any(c.isspace() or not c.isprintable() for c in gateway):
        # Masked as every error here: a secret read with its newline (`$(cat file)`, a
        # mounted secret) is the usual way to land here.
        raise ValueError(f"inferwatch.push: gateway {problem}, got {redact_password(gateway)!r} "
                         "(it holds a space or control character)")
    scheme = urlsplit(gateway).scheme
    if "://" in gateway and scheme not in ("http", "https"):
        # Prefixed with http:// it would name a host called after the scheme.
        raise ValueError(f"inferwatch.push: gateway {problem}; the scheme {scheme!r} of "
                         f"{redact_password(gateway)!r} is not http or https")
    url = gateway if scheme in ("http", "https") else f"http://{gateway}"
    parts = urlsplit(url)
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        # Each group's path is appended to the gateway's URL: after a query or a fragment
        # it would be part of them, and every push would go to the gateway's root.
        raise ValueError(f"inferwatch.push: gateway {problem} without a query or fragment, "
                         f"got {redact_password(gateway)!r}")
    try:
        parts.port  # noqa: B018 (raises ValueError for a port that is no number)
    except ValueError:
        raise ValueError(f"inferwatch.push: gateway {problem}; the port of "
                         f"{redact_password(gateway)!r} is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"inferwatch.push: gateway {problem}, got {redact_password(gateway)!r}")
    if parts.username is None and parts.password is None:
        return _Gateway(url, gateway, None, None)
    host = parts.netloc.rpartition("@")[2]
    plain = urlunsplit(parts._replace(netloc=host))
    return _Gateway(plain, redact_password(gateway), unquote(parts.username or ""),
                    unquote(parts.password or ""))


def redact_password(gateway: str) -> str:
    """`gateway` (a URL or host:port) with any password in it replaced, fit for an error
    or a log line. Split at the last "@": a password holding "/" or "#" unescaped hides
    too (a query holding "@" is masked with it, which is safe).

    >>> redact_password("https://batch:s3cret@gw.example:9091/metrics")
    'https://batch:***@gw.example:9091/metrics'
    >>> redact_password("http://gw.example:9091")
    'http://gw.example:9091'
    """
    before, at, host = gateway.rpartition("@")
    if not at:
        return gateway
    scheme, sep, userinfo = before.rpartition("//")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}@{host}"


def _check_retries(retries: int, retry_delay: float) -> None:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"inferwatch.push: retries must be a whole number >= 0, got {retries!r}")
    if isinstance(retry_delay, bool) or not isinstance(retry_delay, (int, float)) or not (
            0 <= retry_delay <= 60):
        raise ValueError("inferwatch.push: retry_delay must be seconds from 0 to 60, got "
                         f"{retry_delay!r}")


class JobPush:
    """Pushes when a block or a decorated function ends; made by ``push.on_exit(...)``."""

    def __init__(self, gateway: str, job: str, *, registry: Registry | None = None,
                 grouping_key: Mapping[str, str] | None = None, timeout: float = 10.0,
                 handler: Callable[..., Any] | None = None, retries: int = 3,
                 retry_delay: float = 0.5) -> None:
        _check(gateway, job, grouping_key)
        _check_retries(retries, retry_delay)
        _check_timeout(timeout)
        if _parse_gateway(gateway).username is not None and handler is not None:
            raise ValueError("inferwatch.push: give the gateway's credentials either in its URL "
                             "or through handler=, not both")
        self.gateway = gateway
        self.job = job
        self._options = {"registry": registry, "grouping_key": grouping_key,
                         "timeout": timeout, "handler": handler, "retries": retries,
                         "retry_delay": retry_delay}

    def __enter__(self) -> JobPush:
        self._job_starts()
        job_began()
        return self

    def _job_starts(self) -> None:
        """Refuse, before the job runs, a grouping label that a model already instrumented
        has as metadata (one instrumented during the job is refused by its push)."""
        from inferwatch.core.registry import default_registry

        registry = self._options["registry"] or default_registry()
        key = _check(self.gateway, self.job, self._options["grouping_key"])
        for model, monitors in _by_model(registry).items():
            _check_metadata_clash(key, model, {
                label for monitor in monitors for label in monitor.state.info})
        _clear_earlier_runs(registry)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        """Record a failed job, push, and let the job's exception propagate unchanged.

        A job fails by an exception other than ``SystemExit(0)``. Unless a model counted it
        already (it came out of an instrumented model call, was raised from or while
        handling one that did, or a pool re-raised it from a worker's model call: see
        :func:`~inferwatch.serving.job_failures.counted_already`), each model in the
        registry counts one error of that exception's class, with zero latency, so the
        failure shows in the pushed ``inferwatch_errors_total`` and the error alerts.

        A job stopped by its operator (Ctrl-C, a cancelled task, a SIGTERM handler exiting
        with status 143) is pushed once, with a timeout of at most 2 s and no retries: the
        operator asked it to stop, and a gateway that is down must not hold the stop for
        the whole retry budget.

        Before the push, the shadows of the registry's models are closed after up to 1 s
        (none for a stopped job) for their challengers to answer: every sampled call is
        pushed compared or dropped (``shutdown``). See :meth:`_push_at_end`.
        """
        try:
            if exc is not None and _job_failed(exc):
                self._record_failure(exc)
        finally:
            job_ended()
        self._push_at_end(interrupted=exc is not None and _interrupted(exc))
        return False

    async def __aenter__(self) -> JobPush:
        self._job_starts()
        job_began()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        try:
            if exc is not None and _job_failed(exc):
                self._record_failure(exc)
        finally:
            job_ended()
        # The push blocks; the loop must not.
        await asyncio.to_thread(self._push_at_end,
                                interrupted=exc is not None and _interrupted(exc))
        return False

    def _push_at_end(self, *, interrupted: bool) -> None:
        """Close the shadows of the pushed models, then push. Never raises.

        The job is over, so a call its challengers have not answered never will be in this
        push: each shadow gets the wait the interpreter's exit gives it (one wait for all,
        none for a job its operator stopped), then is closed, what is left counting as
        dropped (``shutdown``). Without this, the group would show calls sampled and neither
        compared nor dropped, and the close at exit would come after the push.
        """
        try:
            from inferwatch.core import shadow_lifetime
            from inferwatch.core.registry import default_registry

            registry = self._options["registry"] or default_registry()
            shadow_lifetime.settle_before_push(registry.monitors(), close=True,
                                               wait=0.0 if interrupted else None)
        except Exception as exc:
            faults.record("pushgateway", exc)
        self.push_quietly(interrupted=interrupted)

    def __call__(self, fn: F) -> F:
        """Decorate a job function: push after every call of it.

        A generator function's call only makes the generator: its work runs while it is
        iterated, so the push waits until the generator ends (finished, failed or closed).
        """
        if _is(inspect.isasyncgenfunction, fn):
            @functools.wraps(fn)
            async def run_async_gen(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    async for item in fn(*args, **kwargs):
                        yield item
            return run_async_gen  # type: ignore[return-value]

        if _is(inspect.isgeneratorfunction, fn):
            @functools.wraps(fn)
            def run_gen(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return (yield from fn(*args, **kwargs))
            return run_gen  # type: ignore[return-value]

        if _is(inspect.iscoroutinefunction, fn):
            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    return await fn(*args, **kwargs)
            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            self.__enter__()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self.__exit__(type(exc), exc, exc.__traceback__)
                raise
            if inspect.iscoroutine(result):
                # A coroutine from a callable not declared async (a decorator without
                # functools.wraps, say): its job runs when awaited, so push after that
                # (which opens the job again while it runs).
                job_ended()
                return self._push_after(result)
            self.__exit__(None, None, None)
            return result
        return run  # type: ignore[return-value]

    async def _push_after(self, job: Any) -> Any:
        async with self:
            return await job

    def push_quietly(self, *, interrupted: bool = False) -> bool:
        """Push now; a failure is logged, never raised. True when every group was pushed.

        `interrupted`: the job was stopped by its operator, so one attempt, with a timeout
        of at most :data:`INTERRUPTED_TIMEOUT` seconds, and no retries.
        """
        options = dict(self._options)
        if interrupted:
            timeout = options["timeout"]
            options["retries"] = 0
            options["timeout"] = INTERRUPTED_TIMEOUT if timeout is None else min(
                timeout, INTERRUPTED_TIMEOUT)
        try:
            push(self.gateway, self.job, **options)
            return True
        except (PushError, ValueError) as exc:
            # ValueError: a model instrumented during the job has a metadata label the
            # grouping key sets too (the options were checked before the job ran).
            log.warning("%s (the job's own result is unaffected%s)", exc,
                        "; tried once, as the job was stopped" if interrupted else "")
        except Exception as exc:
            faults.record("pushgateway", exc)
        return False

    def _record_failure(self, exc: BaseException) -> None:
        try:
            from inferwatch.core.registry import default_registry

            registry = self._options["registry"] or default_registry()
            if counted_already(exc, workers_publish=registry.multiproc is not None):
                return
            for monitor in registry.monitors():
                monitor.record_error(0.0, exc.__class__)
        except Exception as fault:
            faults.record("pushgateway", fault)


# The multi-worker directories this process cleared of earlier runs as a job started.
_cleared_directories: set[str] = set()
# A forked process is part of the run that forked it, never the start of one.
_forked = False


def _note_forked() -> None:
    global _forked
    _forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_note_forked)


def _clear_earlier_runs(registry: Registry) -> None:
    """At the first job start of a process, delete from its multi-worker directory what
    processes no longer running left there: the archive a previous run's workers were
    folded into, their snapshots. Each push replaces its groups, so pushing them again
    would add every earlier run to this one's counts.

    Files of processes that still run (this run's workers started before the job, a pool
    kept between jobs) stay. Later jobs of the process do not clear: its own counts carry
    on from one job to the next, and so do those of the pools it ran before.
    """
    publisher = registry.multiproc
    if publisher is None or _forked or multiprocessing.parent_process() is not None:
        return
    directory = os.path.realpath(publisher.directory.path)
    if directory in _cleared_directories:
        return
    _cleared_directories.add(directory)
    try:
        publisher.directory.clear()
    except Exception as exc:
        # The job runs on; its push then holds the earlier runs' counts too.
        faults.record("multiproc_clear", exc)


def on_exit(gateway: str, job: str, *, registry: Registry | None = None,
            grouping_key: Mapping[str, str] | None = None, timeout: float = 10.0,
            handler: Callable[..., Any] | None = None, retries: int = 3,
            retry_delay: float = 0.5) -> JobPush:
    """A context manager and decorator that pushes when the job ends, success or failure.

    Also ``inferwatch.push.on_exit``. Options as for :func:`push`.

    >>> from inferwatch.core.registry import Registry
    >>> @on_exit("127.0.0.1:9091", "nightly", registry=Registry())
    ... def main():
    ...     return "scored"
    >>> main()   # nothing instrumented in this registry: nothing to push
    'scored'
    """
    return JobPush(gateway, job, registry=registry, grouping_key=grouping_key,
                   timeout=timeout, handler=handler, retries=retries, retry_delay=retry_delay)


push.on_exit = on_exit  # type: ignore[attr-defined]


def _model_collectors(registry: Registry, gateway: str, job: str
                      ) -> dict[str, _ModelCollector | _MergedModelCollector]:
    """What each model's group holds: the registry's monitors, or in multi-worker mode
    every worker's merged states, as the merged /metrics serves them (a job scoring in a
    pool of worker processes pushed only its own process's calls)."""
    publisher = registry.multiproc
    if publisher is None:
        return {model: _ModelCollector(monitors)
                for model, monitors in _by_model(registry).items()}
    try:
        publisher.publish(force=True)  # this process's calls up to the push, not a second ago
        view = publisher.merged_view()
    except Exception as exc:
        # Pushing this process's counts alone would replace the groups with lower ones,
        # which Prometheus reads as a counter reset.
        faults.record("multiproc_read", exc)
        raise PushError(f"inferwatch.push: could not push job {job!r} to the Pushgateway at "
                        f"{gateway}: reading the multi-worker directory "
                        f"{publisher.directory.path!r} failed: {exc}") from exc
    states: dict[str, list[ModelState]] = {}
    for state in view.states:
        states.setdefault(state.model, []).append(state)
    return {model: _MergedModelCollector(of_model, view.at) for model, of_model in states.items()}


class _MergedModelCollector:
    """The merged series of one model (all its versions) in multi-worker mode."""

    def __init__(self, states: list[ModelState], at: float) -> None:
        self._states = states
        self._at = at

    def info_labels(self) -> set[str]:
        return {label for state in self._states for label in state.info}

    def collect(self) -> Iterator[Metric]:
        # Never before the merged windows: see MergedView.at. As text: see _ModelCollector.
        yield from model_families(self._states, max(time.time(), self._at), text_format=True)


class _ModelCollector:
    """The series of one model (all its versions), rendered like /metrics renders them."""

    def __init__(self, monitors: list[Monitor]) -> None:
        self._monitors = monitors

    def info_labels(self) -> set[str]:
        return {label for monitor in self._monitors for label in monitor.state.info}

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        # Pushed as text, where a negative _sum is legal: a histogram without _count and
        # _sum (as OpenMetrics needs where a bucket is negative) would read 0 in the gateway.
        yield from combine(monitor.families(now, text_format=True) for monitor in self._monitors)


def _group_url(gateway: str, job: str, group: Mapping[str, str]) -> str:
    """The Pushgateway URL of one group, every value able to travel in a path segment.

    A value that is not plainly safe in a path goes base64url-encoded (the Pushgateway API's
    ``label@base64`` form): "." and ".." are dot-segments that clients and servers resolve
    away, "/" would split the segment, an empty value would leave no segment at all.

    >>> _group_url("pushgateway:9091", "nightly", {"model": "..", "instance": "host-1"})
    'http://pushgateway:9091/metrics/job/nightly/instance/host-1/model@base64/Li4='
    >>> _group_url("https://gw.example/", "a b", {"model": ""})
    'https://gw.example/metrics/job@base64/YSBi/model@base64/='
    """
    if urlsplit(gateway).scheme not in ("http", "https"):
        gateway = f"http://{gateway}"  # "host:port", as prometheus_client takes it
    segments = [_path_segment("job", job)]
    segments += [_path_segment(name, group[name]) for name in sorted(group)]
    return f"{gateway.rstrip('/')}/metrics/" + "/".join(segments)


def _path_segment(name: str, value: str) -> str:
    if _PLAIN_VALUE.fullmatch(value) and value not in (".", ".."):
        return f"{name}/{value}"
    # The Pushgateway reads "=" as the empty value, which base64 would write as nothing.
    encoded = base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii") or "="
    return f"{name}@base64/{encoded}"


def _failure(exc: Exception) -> str:
    """One failed push in words, with the gateway's explanation when it refused the push
    (the status line alone, "400 Bad Request", does not say which label or metric is wrong).
    """
    reason = ""
    if isinstance(exc, urllib.error.HTTPError):
        try:
            reason = exc.read(_REASON_BYTES).decode("utf-8", "replace")
        except Exception:  # the body is a bonus; the status line stands without it
            reason = ""
    text = f"{type(exc).__name__}: {exc}"
    reason = " ".join(reason.split())  # one log line, whatever the gateway wrote
    return f"{text}: {reason}" if reason else text


def _by_model(registry: Registry) -> dict[str, list[Monitor]]:
    models: dict[str, list[Monitor]] = {}
    for monitor in registry.monitors():
        models.setdefault(monitor.name, []).append(monitor)
    return models


def _check(gateway: str, job: str, grouping_key: Mapping[str, str] | None) -> dict[str, str]:
    if not isinstance(gateway, str) or not gateway:
        raise ValueError(f"inferwatch.push: gateway must be 'host:port' or a URL, got {gateway!r}")
    _parse_gateway(gateway)
    if not isinstance(job, str) or not job:
        raise ValueError(f"inferwatch.push: job must be a non-empty string, got {job!r}")
    if not _is_text(job):
        # A lone surrogate (an undecodable byte of os.fsdecode or sys.argv) cannot go into
        # the URL: every push would fail, the job's result logged as not pushed.
        raise ValueError(f"inferwatch.push: job {job!r} is not valid text (it holds a lone "
                         "surrogate, an undecodable byte)")
    if grouping_key is not None and not isinstance(grouping_key, Mapping):
        raise ValueError("inferwatch.push: grouping_key must be a mapping of label names to "
                         f"values, such as {{'instance': 'host-1'}}, got "
                         f"{type(grouping_key).__name__}")
    unset = [name for name, value in (grouping_key or {}).items() if value is None]
    if unset:
        # Usually an unset variable (os.environ.get("HOSTNAME")): str() would push every
        # run into one group labelled "None", each overwriting the last.
        raise ValueError(f"inferwatch.push: grouping_key label {unset[0]!r} has no value "
                         "(None); give it a string, or leave the label out")
    key = {}
    for raw_name, value in (grouping_key or {}).items():
        name = _key_text(raw_name, "label name")
        key[name] = _key_text(value, f"label {name!r}")
    for name in key:
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"inferwatch.push: grouping_key label {name!r} is not a valid "
                             "Prometheus label name")
        if name in _RESERVED_GROUPING_LABELS:
            raise ValueError(f"inferwatch.push: grouping_key cannot set {name!r}: the job is "
                             "the job argument and each model is pushed as its own group")
        if name in _PUSHED_LABELS:
            raise ValueError(f"inferwatch.push: grouping_key cannot set {name!r}: the pushed "
                             "series carry that label themselves, and the Pushgateway refuses"
                             " a group that sets it")
    return key


def _check_metadata_clash(key: Mapping[str, str], model: str, info_labels: set[str]) -> None:
    """Refuse a grouping label that `model`'s metadata sets too: the Pushgateway puts the
    group's labels on every series of the group, so the model's own value would silently
    give way to the group's on ``inferwatch_model_info``."""
    clash = sorted(set(key) & info_labels)
    if clash:
        raise ValueError(f"inferwatch.push: grouping_key cannot set {clash[0]!r}: model "
                         f"{model!r} has a metadata label of that name, which the group's "
                         "label would replace on the Pushgateway; rename one of them")


def _key_text(value: object, what: str) -> str:
    """A grouping key's name or value as the text pushed: bytes (socket.gethostname()'s
    kin, os.environb) decoded, not pushed as their repr "b'host-1'"; numbers as text.

    >>> _key_text(b"host-1", "label 'instance'"), _key_text(3, "label 'shard'")
    ('host-1', '3')
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"inferwatch.push: grouping_key {what} is bytes that are not "
                             f"UTF-8: {bytes(value)!r}; decode it to a string first") from None
    text = str(value)
    if not _is_text(text):
        raise ValueError(f"inferwatch.push: grouping_key {what} value {text!r} is not valid "
                         "text (it holds a lone surrogate, an undecodable byte)")
    return text


def _is_text(text: str) -> bool:
    """Whether `text` can be sent as UTF-8 (holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is(kind: Callable[[Any], bool], fn: Any) -> bool:
    """Whether `fn` is of `kind` (async, a generator), an object by its ``__call__``: one
    with ``async def __call__`` wrapped as a plain function would be pushed before its
    coroutine even started."""
    if kind(fn):
        return True
    return (callable(fn) and not inspect.isroutine(fn) and not isinstance(fn, type)
            and kind(type(fn).__call__))


def _job_failed(exc: BaseException) -> bool:
    # GeneratorExit: the consumer of a generator job stopped early (a break), which is its
    # choice, not the job failing.
    if isinstance(exc, GeneratorExit):
        return False
    return not (isinstance(exc, SystemExit) and exc.code in (0, None))


# How long the one push after an operator's stop may take (see JobPush.__exit__).
INTERRUPTED_TIMEOUT = 2.0
# The exit statuses of a job a SIGINT or SIGTERM handler ends with sys.exit(128 + signal).
_STOPPED_STATUSES = frozenset({128 + signal.SIGINT, 128 + signal.SIGTERM})


def _interrupted(exc: BaseException) -> bool:
    """Whether `exc` is a job stopped by its operator, not one that ended or failed."""
    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        return True
    return isinstance(exc, SystemExit) and exc.code in _STOPPED_STATUSES


__all__ = ["JobPush", "PushError", "on_exit", "push"]
