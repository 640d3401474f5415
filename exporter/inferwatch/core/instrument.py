"""``instrument()``: wrap a model object, a function or an async function.

Here are instrument()'s checks of what it is given, the spec a pickled model keeps, and
what is read off a model once (its framework, its classes, its version as a label, when
it was trained). A model instrumented again under a name and version (a retrained model
reloaded) replaces what was read off the one before: its framework and its classes.
The wrappers of each call are in :mod:`inferwatch.core.call_wrappers`, the proxy of a
model object in :mod:`inferwatch.core.model_proxy`.

>>> import inferwatch
>>> from inferwatch.core.registry import Registry
>>> predict = inferwatch.instrument(lambda x: x * 2.0, name="double", version="1",
...                                 registry=Registry())
>>> predict(2.0)
4.0
"""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
import logging
import math
import numbers
import os
import threading
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np

from inferwatch import faults
from inferwatch.core.call_wrappers import wrap_callable
from inferwatch.core.callable_kinds import method_of
from inferwatch.core.model_proxy import WRAPPED_METHODS, InstrumentedModel, unwrapped
from inferwatch.core.monitor import Monitor
from inferwatch.core.monitor_configure import _logs_to
from inferwatch.core.options import FRAMEWORK_LABEL, Settings
from inferwatch.core.predictions import class_names_of
from inferwatch.core.registry import Registry, default_registry, is_finite_version, version_text
from inferwatch.core.state import ModelState
from inferwatch.core.timestamps import epoch_seconds
from inferwatch.core.tracing import otel_configured

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("inferwatch")
_SETTINGS_FIELDS = frozenset(Settings.__dataclass_fields__)


class _Spec(NamedTuple):
    """Everything instrument() was given besides the model: what a pickle stores, as the
    model's monitor has it when pickled (see ``model_proxy._current_spec``)."""

    name: str
    version: str
    settings: Settings
    trained_at: float | None = None
    reference: Any = None  # a Reference; the path of one in pickles of earlier releases
    request_id: Callable[..., object] | bool | None = None  # False: none
    # a live event log (a thread and open files) is not picklable: its path is (False: none)
    events: str | os.PathLike | bool | None = None
    # EventLog.options() of that log, never its secret; None: opened with the defaults
    event_options: Mapping[str, Any] | None = None
    # registry_token() of the registry recorded into; None: the default registry
    registry: str | None = None


# Registries by a random token of their own, for as long as they live: a model pickled on
# one is loaded into it in the same process (or a fork of it), and into the default
# registry where the token is not known (another process, or the registry is gone).
_registry_tokens: weakref.WeakKeyDictionary[Registry, str] = weakref.WeakKeyDictionary()
_registries_by_token: weakref.WeakValueDictionary[str, Registry] = \
    weakref.WeakValueDictionary()
_tokens_lock = threading.Lock()


def _renew_tokens_lock() -> None:
    # A fork while another thread pickled a model would otherwise leave the lock held.
    global _tokens_lock
    _tokens_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_tokens_lock)


def registry_token(registry: Registry) -> str:
    """The token a pickle names `registry` by (see :func:`_restore`)."""
    with _tokens_lock:
        token = _registry_tokens.get(registry)
        if token is None:
            token = _registry_tokens[registry] = uuid.uuid4().hex
            _registries_by_token[token] = registry
        return token


def _registry_of(token: str | None) -> Registry | None:
    """The registry named by `token` if this process has it; else None: the default."""
    if token is None:
        return None
    with _tokens_lock:
        return _registries_by_token.get(token)


def _restore(model: Any, spec: _Spec) -> Any:
    """The instrumented model of a pickle, loaded: never raises for inferwatch's own
    reasons (a reference file gone, an event log that cannot be opened here), so that a
    model still loads and serves; what is left out is logged and counted."""
    try:
        return _instrument(model, spec, is_function=False,
                           registry=_registry_of(spec.registry), restoring=True)
    except Exception as exc:
        _restored_without(spec, "instrumentation", exc)
        return model


def _restored_without(spec: _Spec, what: str, cause: object) -> None:
    """One clear line for a loaded model that goes without `what`, and a count in
    ``inferwatch_internal_errors_total{component="restore"}``."""
    log.warning("inferwatch: %s version %s was loaded without its %s: %s", spec.name,
                spec.version, what, cause)
    faults.record("restore")


def _timestamp(value: Any) -> float | None:
    """`trained_at` as Unix seconds, or ValueError / TypeError naming what is wrong.

    Read by the rule ``record_outcome(at=)`` reads times by (``timestamps.seconds_of``): a
    naive datetime is UTC; a number of 1e11 or more is epoch ms, us or ns by its size;
    ISO 8601 text that names a time of day needs an offset. A training pipeline writes
    ``datetime.now().isoformat()`` in its host's local time as readily as an event stream
    does, and read as UTC either would be off by the zone's hours without a word (a model's
    age, a label's delay); here the mistake is refused where the model is instrumented. A
    date alone (``"2026-10-01"``) is that day's midnight UTC, as a ``date`` is: a model's
    age is read in days.

    >>> _timestamp("2026-01-01T02:00:00+02:00"), _timestamp("2026-01-01")
    (1767225600.0, 1767225600.0)
    >>> _timestamp(1767225600000)  # epoch milliseconds
    1767225600.0
    """
    if value is None:
        return None
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise ValueError("NaT is no time")
        value = value.astype("datetime64[us]").item()  # a naive datetime: UTC, below
    if isinstance(value, _dt.datetime):
        if value != value:  # pd.NaT
            raise ValueError("NaT is no time")
        if value.utcoffset() is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.timestamp()
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day,
                            tzinfo=_dt.timezone.utc).timestamp()
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)  # Unix seconds as text, as record_outcome(at=) reads them
        except ValueError:
            pass
        else:
            return _timestamp(number)
        try:
            day = _dt.date.fromisoformat(text)
        except ValueError:
            pass
        else:
            return _timestamp(day)
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.utcoffset() is None:
            raise ValueError("ISO 8601 text with a time of day needs an offset ('Z' or "
                             "'+02:00'): its time zone is not known")
        return moment.timestamp()
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("a bool is no time")
    seconds = epoch_seconds(float(value))
    if not math.isfinite(seconds):
        raise ValueError("not a finite time")
    return seconds


# Packages whose classes a user's model subclasses; the first one in the class's bases wins.
FRAMEWORKS = ("sklearn", "torch", "xgboost", "lightgbm", "catboost", "statsmodels",
              "onnxruntime", "tensorflow", "keras", "jax", "flax", "transformers")


def _framework(target: Any, is_function: bool) -> str:
    """The package the model comes from: sklearn, torch, xgboost, ...

    Read from the class and its bases, so that a user's ``nn.Module`` subclass defined in
    ``__main__`` is ``torch``; a class with no known base gives its own top-level package.

    >>> _framework(len, is_function=True)
    'python'
    """
    if is_function:
        return "python"
    own = (type(target).__module__ or "unknown").split(".")[0]
    for base in type(target).__mro__:
        package = (getattr(base, "__module__", None) or "").split(".")[0]
        if package in FRAMEWORKS:
            return package
    return own


def _version_text(version: object) -> str:
    """The ``model_version`` label of `version`: a string, or a number written as one.

    None (an unset environment variable, ``os.environ.get("MODEL_VERSION")``) is
    "unversioned", as an empty string is, rather than the label "None"; any other type
    is refused, since its ``str()`` (an object's address) would change every restart.

    >>> _version_text(None), _version_text(3), _version_text(" 1.4.2\\n")
    ('unversioned', '3', '1.4.2')
    """
    if version is None:
        return "unversioned"
    if not is_finite_version(version):
        raise ValueError("inferwatch.instrument: version must be a finite number or a "
                         f"string, got {version!r}")
    if isinstance(version, (str, numbers.Real)) and not isinstance(version, bool):
        # Outer whitespace (a version read from a file ends in a newline) would make a
        # series of its own beside the version's.
        return version_text(version) or "unversioned"
    raise TypeError("inferwatch.instrument: version must be a string (or a number), "
                    f"got {type(version).__name__}")


def instrument(target: Any = None, /, *, name: str, version: str = "unversioned",
               trained_at: Any = None, reference: Any = None, request_id: Any = None,
               events: Any = None, registry: Registry | None = None, **options: Any) -> Any:
    """Record latency, errors, versions and predictions of a model or function.

    `target` is a model object (its ``predict``, ``predict_proba`` and ``__call__`` are
    wrapped), a plain or ``async`` function, or omitted to get a decorator.
    `trained_at` is a datetime (naive: UTC), a date, ISO 8601 text (a date alone, or a
    time with an offset) or Unix seconds (ms, us or ns from 1e11 up, by size). `reference` (a
    :class:`~inferwatch.Reference` or the path of a saved one) switches on data-quality
    counters and drift; `request_id` is a function of the call's arguments returning the id
    that ``record_outcome`` joins on; `events` (an ``EventLog`` or a path ending in
    ``.jsonl`` / ``.sqlite``) logs every prediction. ``events=False`` and
    ``request_id=False`` mean none, as they do for ``configure()``. ``range_tolerance``,
    ``drift_window_seconds`` and ``drift_age_buckets`` tune the reference checks. When the
    application has configured OpenTelemetry tracing (an SDK tracer provider) before this
    call, or with ``exemplars=True``, each call's trace id becomes an exemplar on the latency
    histogram and goes into the event log (``exemplars=False`` turns that off,
    ``trace_stages=True`` adds a span per ``r.stage()``). Other
    keyword options are :class:`~inferwatch.core.options.Settings` fields (``task``,
    ``quantiles``, ``output_range``, ``max_classes``, ...).

    >>> from inferwatch.core.registry import Registry
    >>> @instrument(name="scorer", version="2", registry=Registry())
    ... def score(x):
    ...     return 0.5
    >>> score(1)
    0.5
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("inferwatch.instrument: name must be a non-empty string, "
                         f"got {name!r}")
    version = _version_text(version)
    if registry is not None and not isinstance(registry, Registry):
        raise TypeError("inferwatch.instrument: registry must be an inferwatch Registry, "
                        f"got {type(registry).__name__}")
    if reference is not None and not isinstance(reference, (str, os.PathLike)):
        from inferwatch.quality.reference import Reference

        if not isinstance(reference, Reference):
            raise TypeError("inferwatch.instrument: reference must be a Reference or the "
                            f"path of a saved one, got {type(reference).__name__}")
    metadata_given = options.get("metadata")
    if metadata_given is not None and not isinstance(metadata_given, Mapping):
        raise TypeError("inferwatch.instrument: metadata must be a mapping of label names "
                        f"to values, got {type(metadata_given).__name__}")
    if metadata_given is not None and FRAMEWORK_LABEL in metadata_given:
        # Read off the model and kept in the metadata (see _take_framework): given as well,
        # the model's own would be lost from inferwatch_model_info.
        raise ValueError(f"inferwatch: invalid settings: metadata must not name "
                         f"{FRAMEWORK_LABEL!r}: inferwatch_model_info sets it itself, to the "
                         f"framework of the model")
    unknown = sorted(set(options) - _SETTINGS_FIELDS)
    if unknown:
        raise TypeError(f"inferwatch.instrument: unknown option(s) {', '.join(unknown)}; "
                        f"valid options: {', '.join(sorted(_SETTINGS_FIELDS))}")
    try:
        trained = _timestamp(trained_at)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"inferwatch.instrument: trained_at {trained_at!r} is not a datetime, "
                         f"ISO date string or Unix timestamp ({exc})") from exc
    # False is "none", as configure() reads it: a setting read from a config file or flag
    # is passed the same way to both.
    if events is not None and events is not False and \
            not isinstance(events, (str, os.PathLike)) and not hasattr(events, "emit"):
        raise TypeError("inferwatch.instrument: events must be an EventLog, a path, or False "
                        f"for no event log, got {events!r:.80}")
    if request_id is not None and request_id is not False and not callable(request_id):
        raise TypeError("inferwatch.instrument: request_id must be a function of the call's "
                        f"arguments, or False for none, got {request_id!r:.80}")
    if target is None:
        Settings(**options)  # a bad option is refused where the decorator is made

        def decorator(fn: F) -> F:
            return instrument(fn, name=name, version=version, trained_at=trained_at,
                              reference=reference, request_id=request_id, events=events,
                              registry=registry, **options)
        return decorator
    if isinstance(target, type):
        raise TypeError("inferwatch.instrument: pass a model instance or a function, "
                        f"not the class {target.__name__}")
    target = unwrapped(target)
    is_function = _is_function(target)
    if not is_function and not callable(target) and not any(
            callable(method_of(target, method)) for method, _ in WRAPPED_METHODS):
        # Nothing would ever be recorded: a mistake (an id, a path) rather than a model.
        raise TypeError("inferwatch.instrument: pass a model (with predict, predict_proba "
                        "or __call__) or a function (such as an ONNX session's run), not a "
                        f"{type(target).__name__}")
    metadata = {"framework": _framework(target, is_function), **(options.pop("metadata", None)
                                                                  or {})}
    spec = _Spec(name, version, Settings(**options, metadata=metadata), trained,
                 reference, request_id, events)
    return _instrument(target, spec, is_function=is_function, registry=registry)


def _is_function(target: Any) -> bool:
    """Whether `target` is a function (wrapped as it is) rather than a model object."""
    if inspect.isfunction(target) or inspect.ismethod(target) or inspect.isbuiltin(
            target) or isinstance(target, functools.partial):
        return True
    try:
        return inspect.iscoroutinefunction(target)
    except Exception:  # an object whose __getattr__ raises KeyError for __name__: a model
        return False


def _class_names_reader(target: Any) -> Callable[[], Sequence[object] | None]:
    """What reads the model's classes at each drain, without keeping the model alive: the
    registry keeps every monitor for the life of the process, and a server that loads a new
    version and drops the old one must get the old one's memory back. Once the model is
    gone, the classes last read stand (its last calls may still wait for the drain), until
    another model is instrumented under its name and version: that one's reader replaces
    this one (see ``Registry.monitor``).

    >>> class Model:
    ...     classes_ = ["no", "yes"]
    >>> model = Model(); read = _class_names_reader(model); read()
    ['no', 'yes']
    >>> del model; read()
    ['no', 'yes']
    """
    try:
        held = weakref.ref(target)
    except TypeError:  # a type without weak references: held as before
        return lambda: class_names_of(target)
    # Read now as well: calls made just before the model is dropped are drained after.
    last: list[Sequence[object] | None] = [_names_or_none(target)]

    def read() -> Sequence[object] | None:
        model = held()
        if model is not None:
            last[0] = class_names_of(model)
        return last[0]

    return read


def _names_or_none(model: Any) -> Sequence[object] | None:
    try:
        return class_names_of(model)
    except Exception:  # read again at the drain, which counts what fails
        return None


def _take_framework(registry: Registry, spec: _Spec) -> None:
    """Show the framework of the model instrumented now on a monitor that a model (or
    anything) recorded calls under before: a model of another framework reloaded under the
    same name and version is what ``inferwatch_model_info`` must name. Set here, before
    the registry compares the settings, which it can no longer change once calls are
    counted: the framework is read off the model, not an option, and must not be refused
    as one (with a warning about settings the user never changed).
    """
    framework = spec.settings.metadata.get("framework")
    monitor = registry.existing_monitor(spec.name, spec.version)
    if monitor is None or framework is None:
        return
    metadata = monitor.settings.metadata
    if metadata.get("framework") != framework:
        monitor.configure(metadata={**metadata, "framework": framework})


def _serving_as_champion(state: ModelState) -> None:
    """Make a version that ran as a shadow the primary, now that it serves calls itself.

    A version never shadowed gets no role (``role`` appears once a shadow is attached);
    a shadow closed and not instrumented again keeps its role, so that removing a failing
    challenger does not page.
    """
    if state.info.get("role") == "shadow":
        state.info["role"] = "primary"


def _configure_restored(monitor: Monitor, spec: _Spec) -> None:
    """Give a loaded model's monitor the reference, request ids and event log of its
    pickle; each one that cannot be had here is left out (logged and counted), the rest
    still apply."""
    for what, options in (("reference", {"reference": spec.reference}),
                          ("request_id function", {"request_id": spec.request_id})):
        if next(iter(options.values())) is None:
            continue
        try:
            monitor.configure(**options)
        except Exception as exc:
            _restored_without(spec, what, exc)
    events = spec.events
    if events is None:
        return
    if isinstance(events, (str, os.PathLike)) and spec.event_options is not None and \
            not _logs_to(monitor, events):
        _open_restored_events(monitor, spec, events)
        return
    # Off (False), the log written to already (loaded in the process that pickled it), or
    # a pickle of an earlier release, which kept the path alone.
    try:
        monitor.configure(events=events)
    except Exception as exc:
        _restored_without(spec, f"event log {events}", exc)


def _open_restored_events(monitor: Monitor, spec: _Spec, path: str | os.PathLike) -> None:
    """Open the pickled event log at `path` with its own redaction, hashing and bounds.

    Its secret is never pickled: a log that hashes fields takes it from
    ``INFERWATCH_EVENT_SECRET`` here. Without it the model goes without its event log
    rather than write those fields unhashed.
    """
    from inferwatch.events import EventLog
    from inferwatch.events.log import SECRET_ENV

    options = dict(spec.event_options or {})
    where = f"event log {os.fspath(path)}"
    if options.get("hash_fields") and not os.environ.get(SECRET_ENV):
        _restored_without(spec, where, f"it hashes {', '.join(options['hash_fields'])}, and "
                          f"{SECRET_ENV} is not set in this process (a secret is never "
                          "pickled); no event is written unhashed")
        return
    try:
        events = EventLog(path, **options)
    except Exception as exc:
        _restored_without(spec, where, exc)
        return
    try:
        monitor.configure(events=events)
    except Exception as exc:
        _restored_without(spec, where, exc)
        events.close()
        return
    with monitor._lock:
        if monitor.events is events:
            # Opened for this monitor: closed when configure() replaces or switches it
            # off, as a log it opens from a path is.
            monitor._own_events = events


def _instrument(target: Any, spec: _Spec, *, is_function: bool,
                registry: Registry | None, restoring: bool = False) -> Any:
    registry = registry or default_registry()
    if not is_function:
        _take_framework(registry, spec)
    monitor = registry.monitor(
        spec.name, spec.version, spec.settings, trained_at=spec.trained_at,
        class_names=None if is_function else _class_names_reader(target),
    )
    # Instrumented as a model that serves: a challenger promoted to champion is judged by
    # the serving alerts, which leave role="shadow" versions out.
    monitor.update_state(_serving_as_champion)
    exemplars = spec.settings.exemplars
    if exemplars or (exemplars is None and otel_configured()):
        monitor.configure(traces=True)
    if restoring:
        _configure_restored(monitor, spec)
    elif spec.reference is not None or spec.request_id is not None or spec.events is not None:
        monitor.configure(reference=spec.reference, request_id=spec.request_id,
                          events=spec.events)
    if is_function:
        return wrap_callable(target, monitor)
    if spec.events is not None and not isinstance(spec.events, (str, os.PathLike)):
        spec = spec._replace(events=getattr(spec.events, "path", None))
    return InstrumentedModel(target, monitor, spec, registry)
