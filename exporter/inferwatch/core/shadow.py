"""``inferwatch.shadow()``: a challenger model scores sampled inputs next to the champion.

The champion's instrumented methods are wrapped once more: after the champion's call has
returned (an exception passes straight through, untouched), a sampled call puts its input
and the champion's result on a bounded queue. That is the whole cost on the request path:
a random draw, and for a sampled call an input copy and a deque append. Worker threads
take the queue, call the challenger (in the thread, or in a child process with
``mode="process"``), record it as a model in its own right (its ``model_version``, its
latency, errors and predictions) and hand both results to a :class:`Comparison`, which
the challenger's drain folds into the comparison series.

A full queue drops the call, a call past `timeout` is dropped too (in process mode its
child is killed), and every drop is counted by reason. ``role`` goes into
``inferwatch_model_info`` only (primary or shadow), so no other series grows a label. A
closed shadow keeps ``role="shadow"`` (removing a failing challenger must not page);
``instrument()`` of its version as a champion (a promotion) makes it ``role="primary"``.

>>> import inferwatch
>>> from inferwatch.core.registry import Registry
>>> class Model:
...     def predict(self, rows):
...         return [sum(row) for row in rows]
>>> registry = Registry()
>>> champion = inferwatch.instrument(Model(), name="m", version="1", registry=registry)
>>> handle = shadow(champion, Model(), version="2", registry=registry)
>>> champion.predict([[1.0, 2.0]])
[3.0]
>>> handle.flush()
True
>>> registry.drain()
>>> handle.monitor.state.counters["inferwatch_shadow_compared_total"]
{('1',): 1.0}
>>> handle.close()

This module is the entry point, :func:`shadow`, and its argument checks. The running shadow
(:class:`~inferwatch.core.shadow_runtime.Shadow`: its queue, workers and drain) is in
:mod:`inferwatch.core.shadow_runtime`; what outlives any one shadow (the live shadows,
closing them at exit, a forked child's fresh start) is in :mod:`inferwatch.core.shadow_lifetime`.
"""

from __future__ import annotations

import math
import numbers
import pickle
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from inferwatch import faults
from inferwatch.catalogue import OTHER
from inferwatch.core import shadow_lifetime
from inferwatch.core.label_caps import clean_label_value
from inferwatch.core.monitor import Monitor
from inferwatch.core.predictions import class_names_of
from inferwatch.core.registry import UNVERSIONED, Registry, default_registry, version_text
from inferwatch.core.shadow_compare import DIFFERENCE_BUCKETS, DROP_REASONS, Comparison
from inferwatch.core.shadow_runtime import CHAMPIONS_LOG, ChallengerClasses, Shadow, is_number
from inferwatch.core.shadow_wrappers import shadow_route, shadowed

SHADOWED_METHODS = ("predict", "predict_proba", "_inferwatch_call")
MODES = ("thread", "process")
MAX_WORKERS = 64  # threads, or child processes each holding a copy of the model


def shadow(champion: Any, challenger: Any, *, version: str | Sequence[str],
           sample: float = 1.0, timeout: float = 5.0, queue_size: int = 1000,
           mode: str = "thread", workers: int = 1, max_classes: int = 20,
           difference_buckets: Sequence[float] = DIFFERENCE_BUCKETS, reference: Any = None,
           registry: Registry | None = None) -> Any:
    """Run `challenger` in the shadow of `champion` (a model, or a function, from
    ``inferwatch.instrument``).

    A share `sample` (0..1] of the champion's ``predict`` / ``predict_proba`` / ``__call__``
    calls is handed, after the champion has answered, to the challenger in the background:
    ``mode="thread"`` calls it in `workers` threads, ``mode="process"`` in as many child
    processes (for CPU-bound models, and ones that may hang or crash: a call past `timeout`
    seconds kills its child). At most `queue_size` calls, holding at most 128 MiB of inputs
    and results, wait; more are dropped and counted.
    The challenger is recorded as the champion's model name under its own `version`, with
    ``role="shadow"`` in ``inferwatch_model_info`` (the champion gets ``role="primary"``);
    the comparison series (``inferwatch_shadow_*``) carry ``champion_version``.
    `challenger` may be a list, with a list of versions. Outcomes given to the champion's
    ``record_outcome`` score every challenger that saw the request. The champion's input
    reference (or `reference`) makes drift of both comparable. An ``async def`` champion
    hands on its awaited result; an async challenger is awaited in the background (cancelled
    past `timeout`).

    The challenger is recorded in the champion's registry (``instrument(registry=...)``)
    unless `registry` names another.

    Returns the :class:`Shadow` (``flush()``, ``close()``), or a list of them.

    >>> import inferwatch
    >>> from inferwatch.core.registry import Registry
    >>> registry = Registry()
    >>> class Scorer:
    ...     def predict(self, rows):
    ...         return [0.5 for _ in rows]
    >>> champion = inferwatch.instrument(Scorer(), name="s", version="1", registry=registry)
    >>> handle = shadow(champion, Scorer(), version="2", sample=0.5, registry=registry)
    >>> handle.monitor.state.info["role"], registry.monitor("s").version
    ('shadow', '1')
    >>> handle.close()
    """
    if isinstance(challenger, (list, tuple)):
        if not challenger:  # a list built from a config that named none: not a silent no-op
            raise ValueError("inferwatch.shadow: challenger is an empty list; give at least "
                             "one challenger model")
        if not isinstance(version, (str, list, tuple)):
            # list(None) or list(2) would fail with a bare "not iterable".
            raise ValueError("inferwatch.shadow: version must be a string or a list of "
                             f"distinct versions, one per challenger, got {version!r}")
        versions = [version] * len(challenger) if isinstance(version, str) else list(version)
        # Distinct as the registry stores them: "2" and "2\n" would share one series.
        if len(versions) != len(challenger) or \
                len({version_text(v) for v in versions}) != len(versions):
            raise ValueError("inferwatch.shadow: version must be a list of distinct versions, "
                             "one per challenger")
        handles: list[Shadow] = []
        try:
            for one, v in zip(challenger, versions):
                handles.append(shadow(champion, one, version=v, sample=sample,
                                      timeout=timeout, queue_size=queue_size, mode=mode,
                                      workers=workers, max_classes=max_classes,
                                      difference_buckets=difference_buckets,
                                      reference=reference, registry=registry))
        except BaseException:
            # One challenger refused (a bad version, an unpicklable model): the ones before
            # it must not stay on the champion with no handle to close them by.
            for handle in handles:
                handle.close()
            raise
        return handles
    champion_monitor = getattr(champion, "__dict__", {}).get("_inferwatch_monitor")
    if champion_monitor is None:
        raise TypeError("inferwatch.shadow: champion must be a model returned by "
                        "inferwatch.instrument(model, ...)")
    _check(version=version, sample=sample, timeout=timeout, queue_size=queue_size, mode=mode,
           workers=workers, max_classes=max_classes, difference_buckets=difference_buckets)
    # Compared as the registry stores versions: " 1 " would record into the champion's own.
    if version_text(version) == champion_monitor.version:
        raise ValueError(f"inferwatch.shadow: version {version!r} is the champion's version; "
                         "a challenger needs a version of its own")
    # The champion's own registry unless told otherwise: its shadow's series belong beside it.
    registry = registry or champion_monitor.registry() or default_registry()
    _refuse_live(champion_monitor, version, registry)
    with shadow_lifetime.wiring_lock:  # made once, however many shadows start at once
        route = shadow_route(champion)
    # A function's wrapper takes the layers on its route; a model's, on its methods.
    layers_of = route if route is not None else champion.__dict__
    offered = [m for m in SHADOWED_METHODS if callable(layers_of.get(m))]
    methods = [m for m in offered if (callable(challenger) if m == "_inferwatch_call"
                                      else callable(getattr(challenger, m, None)))]
    if not methods:
        raise TypeError(_no_methods(champion_monitor, offered, challenger))
    model_bytes = b""
    if mode == "process":
        try:
            model_bytes = pickle.dumps(challenger)
        except Exception as exc:
            raise TypeError(f"inferwatch.shadow: mode='process' needs a picklable challenger "
                            f"({exc})") from exc
    # Checked again and set up under one lock: two threads shadowing one version at once
    # (both past the check above while pickling) must not both start, and a shadow being
    # closed must not take out, or put back, a layer of one being set up.
    with shadow_lifetime.wiring_lock:
        _refuse_live(champion_monitor, version, registry)
        return _start_shadow(champion, layers_of, champion_monitor, challenger, version,
                             methods, model_bytes, sample=sample, timeout=timeout,
                             queue_size=queue_size, mode=mode, workers=workers,
                             max_classes=max_classes, difference_buckets=difference_buckets,
                             reference=reference, registry=registry)


def _refuse_live(champion_monitor: Monitor, version: str, registry: Registry) -> None:
    _refuse_folded(champion_monitor, version, registry)
    target = registry.existing_monitor(champion_monitor.name, version)
    for live in list(shadow_lifetime.live_shadows):
        # Two live challengers under one version would count every comparison in one series.
        if live.champion_monitor is champion_monitor and not live.closed and (
                live.monitor is target or live.monitor.version == version_text(version)):
            raise ValueError(f"inferwatch.shadow: version {version!r} already shadows this "
                             "champion; close that shadow first or give another version")


def _refuse_folded(champion_monitor: Monitor, version: str, registry: Registry) -> None:
    """Refuse a challenger version the registry's version cap would fold into
    ``__other__``. That monitor is shared by every version past the cap: the champion's own
    when it was instrumented past the cap (its calls and the challenger's would be counted
    as one model, and ``role="shadow"`` would take the serving champion out of every
    alert), or another champion's, which would go the same way."""
    name = champion_monitor.name
    existing = registry.existing_monitor(name, version)
    if existing is not None:
        folded = existing.version == OTHER
    else:
        # No monitor yet: the cap says whether one would be made under its own version.
        cap = registry._version_caps.get(name)
        text = clean_label_value(version_text(version)) or UNVERSIONED
        folded = cap is not None and cap.stored_as(text) == OTHER
    if folded:
        raise ValueError(
            f"inferwatch.shadow: version {version!r} would be recorded as model_version="
            f"\"{OTHER}\": model {name!r} has reached the registry's cap of "
            f"{registry._max_versions} versions (max_versions_per_model), and a challenger "
            "there would share one monitor with the champion or other versions past the "
            "cap; reuse a version recorded before, or raise max_versions_per_model")


def _start_shadow(champion: Any, layers_of: dict, champion_monitor: Monitor, challenger: Any,
                  version: str, methods: list[str], model_bytes: bytes, *, sample: float,
                  timeout: float, queue_size: int, mode: str, workers: int, max_classes: int,
                  difference_buckets: Sequence[float], reference: Any,
                  registry: Registry) -> Shadow:
    settings = champion_monitor.settings
    classes = ChallengerClasses(challenger)
    monitor = registry.monitor(champion_monitor.name, str(version), settings, latest=False,
                               class_names=classes)
    if monitor is champion_monitor or monitor.version == OTHER:
        # The cap filled between the check and now (an instrument() in another thread).
        _refuse_folded(champion_monitor, version, registry)
        raise ValueError(f"inferwatch.shadow: version {version!r} would be recorded in the "
                         "champion's own monitor")
    monitor._class_names = classes  # a monitor kept from an earlier challenger: this one's
    tracker = champion_monitor.features
    reference = reference if reference is not None else (
        tracker.reference if tracker is not None else None)
    if reference is not None:
        monitor.configure(reference=reference)
    champion_monitor.update_state(lambda state: state.info.update(role="primary"))
    monitor.update_state(lambda state: state.info.update(role="shadow"))
    wrapped = champion.__dict__["__wrapped__"]
    comparison = Comparison(
        champion_monitor.version, max_classes=int(max_classes), task=settings.task,
        difference_buckets=difference_buckets,
        outcome_error_buckets=settings.outcome_error_buckets,
        cache_size=settings.outcome_cache_size, ttl_seconds=settings.outcome_ttl_seconds,
        max_bytes=settings.outcome_cache_bytes,
        champion_classes=lambda: class_names_of(wrapped),
        shadow_classes=classes,
        declared_classes=settings.classes)
    handle = Shadow(champion_monitor, challenger, monitor, classes, sample=float(sample),
                    timeout=float(timeout), queue_size=int(queue_size), mode=mode,
                    workers=int(workers), comparison=comparison,
                    events=CHAMPIONS_LOG, model_bytes=model_bytes)
    # Held weakly by the monitors, which live as long as the registry: a shadow whose
    # champion and handle are dropped without close() is freed, its workers stop, and the
    # challenger's classes are read and the challenger let go, as close() does.
    monitor.drain_listeners = (*monitor.drain_listeners, handle.before_drain)
    champion_monitor.outcome_listeners = (*champion_monitor.outcome_listeners,
                                          handle.on_outcome)
    # Not at exit: the exit hook closes every shadow still alive, and close() lets go.
    weakref.finalize(handle, _release_dropped, classes, handle._wake).atexit = False
    monitor.update_state(lambda state: _zero_series(state, champion_monitor.version))
    for method in methods:
        wrapper = shadowed(layers_of[method], handle, method)
        # The champion keeps its shadow running, whether or not the caller keeps the handle
        # (the wrapper itself holds it weakly, and the monitors' listeners do too): dropped
        # with the champion, the shadow is freed and its workers end.
        wrapper.__inferwatch_shadow__ = handle
        handle._layers.append((layers_of, method, wrapper))
        layers_of[method] = wrapper
    return handle


def _release_dropped(classes: ChallengerClasses, wake: threading.Event) -> None:
    """Let go of the challenger of a shadow freed without close(), and wake its idle
    workers, which then find it gone and end (else they would wait out their idle wake).
    Never raises."""
    try:
        wake.set()
        if classes._model is not None:  # not closed: close() read the names already
            classes.release()
    except Exception as exc:  # a class_names reader of the challenger's that fails
        faults.record("shadow", exc)


def _no_methods(champion_monitor: Monitor, offered: list[str], challenger: Any) -> str:
    """Why no method of the champion can be shadowed by `challenger`, naming both."""
    champion = f"{champion_monitor.name!r} version {champion_monitor.version!r}"
    names = ["__call__" if m == "_inferwatch_call" else m for m in offered]
    if not names:
        return (f"inferwatch.shadow: champion {champion} has no predict, predict_proba or "
                "__call__ a shadow can watch; wrap it in a class with one of them and "
                "instrument an object of that class")
    return (f"inferwatch.shadow: challenger {type(challenger).__name__} has none of the "
            f"methods champion {champion} is called by ({', '.join(names)})")


def _zero_series(state: Any, champion_version: str) -> None:
    # Ratios read 0, not "no data", before the first comparison or drop.
    state.inc("inferwatch_shadow_sampled_total", (champion_version,), 0)
    state.inc("inferwatch_shadow_compared_total", (champion_version,), 0)
    for reason in DROP_REASONS:
        state.inc("inferwatch_shadow_dropped_total", (champion_version, reason), 0)
    for result in ("agree", "disagree"):
        state.inc("inferwatch_shadow_agreement_total", (champion_version, result), 0)


def _check(**options: Any) -> None:
    problems = []
    if not isinstance(options["version"], str) or not options["version"].strip():
        problems.append("version must be a non-empty string")
    # A number of the wrong type ("0.5" from a config file, None) is named here too, not
    # left to a bare comparison error.
    sample, timeout = options["sample"], options["timeout"]
    if not is_number(sample) or not 0.0 < sample <= 1.0:
        problems.append(f"sample must be in (0, 1] (a number), got {sample!r}")
    if not is_number(timeout) or not timeout > 0:
        problems.append(f"timeout must be a positive number of seconds, got {timeout!r}")
    for name in ("queue_size", "workers", "max_classes"):
        # A numpy integer (read from an array or a config loaded with numpy) is an int too.
        if not isinstance(options[name], numbers.Integral) or \
                isinstance(options[name], (bool, np.bool_)) or options[name] < 1:
            problems.append(f"{name} must be an int >= 1, got {options[name]!r}")
    workers = options["workers"]
    if isinstance(workers, numbers.Integral) and workers > MAX_WORKERS:
        problems.append(f"workers must be at most {MAX_WORKERS}, got {workers!r}")
    if options["mode"] not in MODES:
        problems.append(f"mode must be one of {MODES}, got {options['mode']!r}")
    buckets = options["difference_buckets"]
    try:
        bounds = [float(b) for b in buckets if is_number(b)]
        valid = len(bounds) == len(buckets) > 0 and all(map(math.isfinite, bounds)) and \
            all(a < b for a, b in zip(bounds, bounds[1:]))
    except TypeError:  # not a sequence
        valid = False
    if not valid:
        problems.append("difference_buckets must be finite numbers in increasing order, got "
                        f"{buckets!r}")
    if problems:
        raise ValueError("inferwatch.shadow: " + "; ".join(problems))
