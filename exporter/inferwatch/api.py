"""Module-level helpers of the public API.

>>> import inferwatch
>>> mon = inferwatch.monitor("fraud", version="1.4.2")
>>> mon.name, mon.version
('fraud', '1.4.2')
"""

from __future__ import annotations

from .monitors import Monitor
from .registry import Registry, default_registry


def monitor(name: str, version: str | None = None, *, registry: Registry | None = None) -> Monitor:
    """The Monitor behind a model name (and version), created on first use.

    Without `version`, the version most recently instrumented under `name`.
    """
    return (registry or default_registry()).monitor(name, version)
