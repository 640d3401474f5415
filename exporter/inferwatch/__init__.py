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

from ._version import __version__

# public name -> module that defines it
_EXPORTS = {
    "instrument": "inferwatch.instrumentation",
    "monitor": "inferwatch.api",
    "Monitor": "inferwatch.monitors",
    "Settings": "inferwatch.settings",
    "Registry": "inferwatch.registry",
    "serve": "inferwatch.server",
    "make_asgi_app": "inferwatch.exposition",
    "make_wsgi_app": "inferwatch.exposition",
    "Reference": "inferwatch.reference",
    "push": "inferwatch.pushgateway",
    "InstrumentMiddleware": "inferwatch.middleware",
    "WSGIInstrumentMiddleware": "inferwatch.middleware",
}

__all__ = [
    "InstrumentMiddleware",
    "Monitor",
    "Reference",
    "Registry",
    "Settings",
    "WSGIInstrumentMiddleware",
    "__version__",
    "instrument",
    "make_asgi_app",
    "make_wsgi_app",
    "monitor",
    "push",
    "serve",
]

if TYPE_CHECKING:  # pragma: no cover
    from .api import monitor
    from .exposition import make_asgi_app, make_wsgi_app
    from .instrumentation import instrument
    from .middleware import InstrumentMiddleware, WSGIInstrumentMiddleware
    from .monitors import Monitor
    from .reference import Reference
    from .registry import Registry
    from .server import serve
    from .settings import Settings


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'inferwatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
