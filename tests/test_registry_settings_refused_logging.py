"""The warning that instrument()'s settings came too late (calls recorded under other
settings already) is the application's logging's to handle: a filter or handler of the
app's that raises, or that reads the registry, must not break instrument()."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import inferwatch
from inferwatch.core.registry import Registry

REFUSED = "has recorded calls under other settings"


class RaisingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        raise RuntimeError("the application's logging filter failed")


class RegistryReadingHandler(logging.Handler):
    """A handler that looks at the registry as it emits (a status page's log panel, say)."""

    def __init__(self, registry: Registry) -> None:
        super().__init__()
        self.registry = registry
        self.lock_held_at_emit: list[bool] = []
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lock_held_at_emit.append(self.registry._lock.locked())
        self.messages.append(record.getMessage())


@pytest.fixture
def registry() -> Iterator[Registry]:
    registry = Registry(drain_interval=3600)
    yield registry
    registry.close()


@pytest.fixture
def inferwatch_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("inferwatch")
    filters, handlers, level = list(logger.filters), list(logger.handlers), logger.level
    yield logger
    logger.filters[:], logger.handlers[:] = filters, handlers
    logger.setLevel(level)


def _record_then_reinstrument(registry: Registry) -> None:
    predict = inferwatch.instrument(lambda x: 1.0, name="s", version="1", registry=registry)
    predict([1.0])
    inferwatch.instrument(lambda x: 1.0, name="s", version="1", registry=registry,
                          drift_window_seconds=60)


def test_a_raising_logging_filter_does_not_reach_instrument(registry, inferwatch_logger):
    inferwatch_logger.addFilter(RaisingFilter())
    _record_then_reinstrument(registry)  # raised RuntimeError before
    # The registry still works afterwards: its lock was not left held.
    assert registry.existing_monitor("s", "1") is not None
    assert registry.monitor("s", "2").version == "2"


def test_the_refused_settings_warning_is_logged_once_outside_the_registry_lock(
        registry, inferwatch_logger):
    handler = RegistryReadingHandler(registry)
    inferwatch_logger.addHandler(handler)
    inferwatch_logger.setLevel(logging.WARNING)
    _record_then_reinstrument(registry)
    inferwatch.instrument(lambda x: 1.0, name="s", version="1", registry=registry,
                          drift_window_seconds=120)
    refused = [message for message in handler.messages if REFUSED in message]
    assert len(refused) == 1 and "s version 1" in refused[0]
    assert handler.lock_held_at_emit == [False]
