"""What a model's inputs count against a reference, drained together or one call at a time.

The drain joins many calls' inputs before checking them (``quality/input_batches.py``);
every such join must count what checking each call alone counts. The tests of each join
compare the two with :func:`input_figures`.
"""

from __future__ import annotations

from collections.abc import Sequence

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.quality.reference import Reference


def input_figures(inputs: Sequence[object], alone: bool, reference: Reference) -> tuple:
    """The input counters, the drift scores and the observations per feature after a model
    with `reference` is called with each of `inputs`, drained once at the end or
    (`alone`) after every call."""
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                      registry=registry, reference=reference)
        monitor = registry.monitor("m", "1")
        for x in inputs:
            model(x)
            if alone:
                monitor.drain()
        monitor.drain()
        counters = {name: {k: v for k, v in series.items() if v}
                    for name, series in monitor.state.counters.items()
                    if name.startswith(("inferwatch_feature", "inferwatch_input"))}
        window = monitor.state.extras["drift"]
        now = monitor.window_time()
        return counters, window.scores(now)[0], window.observations(now)
    finally:
        registry.close()
