"""The exporter's collectors, one module each.

To add a collector: write ``collectors/<name>.py`` with a :class:`~..registry.Collector`
subclass decorated with :func:`~..registry.register`, and add ``"<name>"`` to
:data:`MODULES`. The CLI then offers ``--collector.<name>`` / ``--no-collector.<name>``
and any flags the class adds in ``add_arguments``.

>>> "gpu" in MODULES
True
"""

from __future__ import annotations

import importlib

# Module names under this package; each registers its collector when imported.
MODULES: tuple[str, ...] = (
    "gpu",
    "process",
    "multiproc",
)


def load_all() -> None:
    """Import every collector module so its ``@register`` runs (cheap: no I/O at import)."""
    for module in MODULES:
        importlib.import_module(f"{__name__}.{module}")
