"""What :meth:`Monitor.configure` does: check the options it is given, then apply them.

Apart from the monitor because checking and applying options is a job of its own, done
when a model is set up and never on the request path; the monitor keeps the method and
what a call touches.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from inferwatch import faults
from inferwatch.core.call_paths import FAST, SLOW, WITH_INPUTS
from inferwatch.core.label_caps import clean_label_value
from inferwatch.core.options import Settings, SettingsTypeError
from inferwatch.core.state import SummaryState

if TYPE_CHECKING:
    from inferwatch.core.monitor import Monitor
    from inferwatch.events import EventLog
    from inferwatch.quality.reference import Reference
    from inferwatch.quality.tracker import FeatureTracker


# The label cap of each capped family, by the Settings field that sizes it.
CAP_OPTIONS = {
    "inferwatch_errors_total": "max_error_types",
    "inferwatch_predicted_class_total": "max_classes",
    "inferwatch_prediction": "max_outputs",
    "inferwatch_actions_total": "max_actions",
    "inferwatch_stage_duration_seconds": "max_stages",
}


# Settings a FeatureTracker is built with: a change to one needs a new tracker.
_TRACKER_OPTIONS = ("range_tolerance", "drift_window_seconds", "drift_age_buckets",
                    "max_features")
# configure()'s own keywords, besides the Settings fields it takes as options.
_CONFIGURE_KEYWORDS = ("reference", "request_id", "events", "traces")


def _check_option_names(options: dict[str, Any]) -> None:
    """A TypeError naming configure(), each option it does not know and the valid options
    closest to it (a misspelt option would otherwise name Settings.__init__, or be lost).

    >>> try:
    ...     _check_option_names({"drift_window_secs": 60})
    ... except TypeError as exc:
    ...     "'drift_window_secs' (did you mean 'drift_window_seconds' or" in str(exc)
    True
    """
    fields = [field.name for field in dataclasses.fields(Settings) if field.init]
    unknown = [name for name in options if name not in fields]
    if not unknown:
        return
    valid = [*fields, *_CONFIGURE_KEYWORDS]
    problems = []
    for name in unknown:
        close = difflib.get_close_matches(str(name), valid, n=3)
        hint = (" (did you mean " + " or ".join(map(repr, close)) + "?)") if close else ""
        problems.append(f"{name!r}{hint}")
    what = "an unknown option" if len(problems) == 1 else "unknown options"
    raise TypeError(f"inferwatch: configure() got {what} {'; '.join(problems)}")


def tracker_changed(old: Settings, new: Settings) -> bool:
    """Whether a FeatureTracker built with `old` needs rebuilding for `new`."""
    return any(getattr(old, name) != getattr(new, name) for name in _TRACKER_OPTIONS)


def tracker_of(reference: Reference, settings: Settings) -> FeatureTracker:
    """A tracker of `reference` with the drift window, range tolerance and label cap of
    `settings`."""
    from inferwatch.quality.tracker import FeatureTracker

    return FeatureTracker(reference, range_tolerance=settings.range_tolerance,
                          window_seconds=settings.drift_window_seconds,
                          age_buckets=settings.drift_age_buckets,
                          max_labels=settings.max_features)


def configure(monitor: Monitor, *, reference: Reference | str | os.PathLike | None = None,
              request_id: Callable[..., object] | bool | None = None,
              events: EventLog | str | os.PathLike | bool | None = None,
              traces: bool | None = None, **options: Any) -> None:
    """Check and apply what :meth:`Monitor.configure` was given (see there); raises
    before anything changes. One configure() of a monitor at a time: each applies its
    options to the settings the one before it left."""
    with monitor._configure_lock:
        _configure(monitor, reference=reference, request_id=request_id, events=events,
                   traces=traces, pin_traces=True, **options)


def follow_otel(monitor: Monitor) -> None:
    """Trace `monitor`'s calls now that OpenTelemetry is set up (see
    ``Registry.follow_tracing``), unless it traces already, its ``exemplars`` option says
    whether it does, or its owner set ``traces`` with configure()."""
    with monitor._configure_lock:
        if monitor.traces or monitor._traces_pinned or monitor.settings.exemplars is not None:
            return
        _configure(monitor, traces=True, pin_traces=False)


def _configure(monitor: Monitor, *, reference: Reference | str | os.PathLike | None = None,
               request_id: Callable[..., object] | bool | None = None,
               events: EventLog | str | os.PathLike | bool | None = None,
               traces: bool | None = None, pin_traces: bool, **options: Any) -> None:
    """:func:`configure` under the monitor's configure lock; `pin_traces`: a `traces`
    given here is its owner's, which following OpenTelemetry leaves as set."""
    # Everything that can refuse the call is checked before anything changes: a
    # configure() that raised leaves the monitor as it was, not half configured.
    if options:
        _check_option_names(options)
        settings = dataclasses.replace(monitor.settings, **options)
    else:
        settings = monitor.settings
    # None means "unchanged", so switching the function off needs a value of its own,
    # as for events: False.
    drop_request_id = False
    if isinstance(request_id, (bool, np.bool_)):
        if request_id:
            raise TypeError("inferwatch: request_id must be a function of the call's "
                            "arguments, or False to switch it off, got True")
        drop_request_id, request_id = True, None
    if request_id is not None and not callable(request_id):
        raise TypeError("inferwatch: request_id must be a function of the call's "
                        f"arguments, or False to switch it off, got "
                        f"{type(request_id).__name__}")
    # Any text is truthy: traces="no" or "false" (read from an environment variable)
    # would switch tracing on, and the slow path with it.
    if traces is not None and not isinstance(traces, (bool, np.bool_)):
        raise SettingsTypeError("inferwatch: invalid settings: traces must be True or "
                                f"False, got {traces!r}")
    detach_events = False
    if isinstance(events, (bool, np.bool_)):
        if events:
            raise TypeError("inferwatch: events must be an EventLog, the path of one, "
                            "or False to switch the event log off, got True")
        detach_events, events = True, None
    tracker = None
    if reference is not None:
        from inferwatch.quality.reference import Reference

        if not isinstance(reference, Reference):
            reference = Reference.load(reference)
        current = monitor.features
        if current is None or tracker_changed(monitor.settings, settings) or \
                current.reference != reference:
            tracker = tracker_of(reference, settings)
        # else the same reference again (an instrumented model unpickled or instrumented
        # anew in the process that serves it): its drift window keeps the rows it holds.
    elif monitor.features is not None and tracker_changed(monitor.settings, settings):
        # The tracker was built with the old window, tolerance and label cap; a new one
        # from the same reference takes the new ones. Its drift window starts empty:
        # buckets of another width cannot be carried over.
        tracker = tracker_of(monitor.features.reference, settings)
    swaps_events = (events is not None and not _logs_to(monitor, events)) or (
        detach_events and monitor.events is not None)
    if options or tracker is not None or swaps_events:
        # The calls waiting for the drain were made under the settings, reference and event
        # log in force: they are folded, checked and logged with those, as a model
        # instrumented again drains its predecessor's calls with the old classes_
        # (registry._read_classes_with). A call that finishes while this runs is folded
        # with the new ones.
        monitor.drain()
    opened = False
    if events is not None and not _logs_to(monitor, events) and not hasattr(events, "emit"):
        from inferwatch.events import EventLog

        events = EventLog(events)
        opened = True
    if options:
        # Under the lock: a scrape or a drain sees the old settings or the new, with the
        # state, caps and bounds that go with them.
        with monitor._lock:
            old_settings, monitor.settings = monitor.settings, settings
            monitor._forget_plain_results()
            _take_identity_settings(monitor, old_settings, settings)
            monitor.state.objectives = dict(monitor.settings.objectives)
            _take_summary_settings(monitor)
            monitor._fit_pending()
            for metric, option in CAP_OPTIONS.items():
                # Values admitted already stay (their series exist); a new limit decides
                # whether more are.
                monitor._caps[metric].limit = getattr(monitor.settings, option)
            # The join cache was sized when the monitor started: new bounds and a new
            # time-to-live must reach it too, or they would be silently ignored.
            s = monitor.settings
            monitor.outcomes.resize(s.outcome_cache_size, s.outcome_ttl_seconds,
                                    s.outcome_cache_bytes)
    pin = pin_traces and traces is not None
    if traces is None and "exemplars" in options:
        # The option instrument() traces by: given here, it must take effect too. None
        # follows OpenTelemetry again; True or False is the owner's word.
        from inferwatch.core.tracing import otel_configured

        exemplars = options["exemplars"]
        traces = otel_configured() if exemplars is None else exemplars
        pin = pin_traces and exemplars is not None
        if exemplars is None:
            monitor._traces_pinned = False
    if traces is not None:
        monitor.traces = bool(traces)
        if pin:
            monitor._traces_pinned = True
    monitor.trace_stages = monitor.settings.trace_stages
    if tracker is not None:
        _install_tracker(monitor, tracker)
    if request_id is not None:
        monitor.request_id_fn = request_id
    elif drop_request_id:
        monitor.request_id_fn = None
    if events is not None and not _logs_to(monitor, events):
        _swap_events(monitor, events, opened)
    elif detach_events and monitor.events is not None:
        _swap_events(monitor, None, False)
    monitor.keeps_inputs = monitor.features is not None or monitor.events is not None
    if monitor.events or monitor.request_id_fn or monitor.traces:
        monitor.path = SLOW
    else:
        monitor.path = FAST if monitor.features is None else WITH_INPUTS
    monitor.fast_settings = monitor.settings if monitor.path is FAST else None


def _take_identity_settings(monitor: Monitor, old: Settings, new: Settings) -> None:
    """A task, metadata or output range given to configure() on a running model: the
    state was built with the old ones, and ``inferwatch_model_info`` kept showing them."""
    with monitor._lock:
        state = monitor.state
        info = dict(state.info)
        if new.metadata != old.metadata:
            for key in old.metadata:
                info.pop(key, None)
            info.update({k: clean_label_value(v) for k, v in new.metadata.items()})
        # Back to "auto": the task its predictions showed already stays.
        if new.task != old.task and new.task != "auto":
            info["task"] = new.task
        if info != state.info:
            state.info = info
            monitor._revision += 1
        if new.output_range and not old.output_range:
            # Ratios of out-of-range predictions read 0 from here on, not "no data".
            state.inc("inferwatch_invalid_predictions_total", ("out_of_range",), 0)
            monitor._revision += 1


def _swap_events(monitor: Monitor, events: EventLog | None, opened: bool) -> None:
    """Write to `events` from here on; close the log it replaces when this monitor
    opened that one itself, or each reconfiguration would leave a writer thread and an
    open file behind."""
    # Under the lock: a drain emits under it, so none writes into the old log once it
    # is closed (a shadow reads the champion's current log when it writes).
    with monitor._lock:
        old, monitor.events = monitor._own_events, events
        monitor._own_events = events if opened else None
    if old is not None and old is not events:
        try:
            old.close()  # flushes what was queued before the swap
        except Exception as exc:
            faults.record("events", exc)


def _install_tracker(monitor: Monitor, tracker: FeatureTracker) -> None:
    """Check inputs and predictions with `tracker` from the next drain on; the series of
    features it does not count under are retired."""
    from inferwatch.quality.tracker import retire_feature_series

    with monitor._lock:
        monitor.features = tracker
        monitor.state.extras["drift"] = tracker.drift
        # Each reload of renamed features would add its series to the old ones for good:
        # a process reloading daily grows past max_features without bound.
        retire_feature_series(monitor.state)
        validation = tracker.reference.validation
        monitor.state.validation = {} if validation is None else {
            validation.metric: validation.value}
        monitor._revision += 1


def _take_summary_settings(monitor: Monitor) -> None:
    """Quantiles and the rolling window given to configure() on a running model: the
    state was built with the old ones, and kept rendering them. Series that exist
    restart their window in the new shape (their count and sum go on)."""
    new = monitor.settings.summary
    with monitor._lock:
        old, monitor.state.summary_settings = monitor.state.summary_settings, new
        if (old.max_age_seconds, old.age_buckets, old.relative_accuracy) == (
                new.max_age_seconds, new.age_buckets, new.relative_accuracy):
            return
        for series in monitor.state.summaries.values():
            for labels, summary in series.items():
                fresh = SummaryState(new, summary.probabilities)
                fresh.count, fresh.sum = summary.count, summary.sum
                series[labels] = fresh


def _logs_to(monitor: Monitor, events: object) -> bool:
    """Whether `events` is the log this monitor writes already (the path of its log,
    given again when a pickled model is loaded in this process): opening a second
    writer on one file would interleave their lines and leak the first one's thread."""
    current = monitor.events
    if current is None or hasattr(events, "emit"):
        return current is events
    path = getattr(current, "path", None)
    try:
        return path is not None and os.path.abspath(os.fspath(events)) == \
            os.path.abspath(os.fspath(path))
    except TypeError:
        return False
