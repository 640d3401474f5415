"""inferwatch: Prometheus metrics for machine-learning models in production.

>>> import inferwatch
>>> model = inferwatch.instrument(lambda x: 0.5, name="fraud", version="1.4.2")
>>> model([1.0, 2.0])
0.5

The public API is loaded on first use, so ``import inferwatch`` stays cheap and pulls
in none of the dashboard, rule, NVML or exporter code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from inferwatch import exiting  # noqa: F401  (the exit flush's hook stands behind the app's)
from inferwatch._version import __version__

# public name -> module that defines it
_EXPORTS = {
    "instrument": "inferwatch.core.instrument",
    "monitor": "inferwatch.core.registry",
    "shadow": "inferwatch.core.shadow",
    "Monitor": "inferwatch.core.monitor",
    "Settings": "inferwatch.core.options",
    "Registry": "inferwatch.core.registry",
    "Request": "inferwatch.core.request",
    "serve": "inferwatch.serving.server",
    "make_asgi_app": "inferwatch.serving.exposition",
    "make_wsgi_app": "inferwatch.serving.exposition",
    "make_status_asgi_app": "inferwatch.serving.status_apps",
    "make_status_wsgi_app": "inferwatch.serving.status_apps",
    "Reference": "inferwatch.quality.reference",
    "push": "inferwatch.serving.pushgateway",
    "InstrumentMiddleware": "inferwatch.serving.middleware",
    "WSGIInstrumentMiddleware": "inferwatch.serving.middleware",
}

__all__ = [
    "InstrumentMiddleware",
    "Monitor",
    "Reference",
    "Registry",
    "Request",
    "Settings",
    "WSGIInstrumentMiddleware",
    "__version__",
    "instrument",
    "make_asgi_app",
    "make_status_asgi_app",
    "make_status_wsgi_app",
    "make_wsgi_app",
    "monitor",
    "push",
    "serve",
    "shadow",
]

if TYPE_CHECKING:  # pragma: no cover
    from inferwatch.core.instrument import instrument
    from inferwatch.core.monitor import Monitor
    from inferwatch.core.options import Settings
    from inferwatch.core.registry import Registry, monitor
    from inferwatch.core.request import Request
    from inferwatch.core.shadow import shadow
    from inferwatch.quality.reference import Reference
    from inferwatch.serving.exposition import make_asgi_app, make_wsgi_app
    from inferwatch.serving.middleware import InstrumentMiddleware, WSGIInstrumentMiddleware
    from inferwatch.serving.server import serve
    from inferwatch.serving.status_apps import make_status_asgi_app, make_status_wsgi_app


# Subpackages the docs call through the package (`inferwatch.multiproc.clear_directory()`,
# `inferwatch.events.hash_value(...)`): reachable after a plain `import inferwatch`.
_SUBPACKAGES = frozenset({"events", "multiproc"})


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"inferwatch.{name}")
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'inferwatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
