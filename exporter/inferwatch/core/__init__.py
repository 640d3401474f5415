"""The hot path: ``instrument()``, the per-model :class:`~inferwatch.core.monitor.Monitor`,
its background drain, and the state it renders on every scrape.

Nothing here imports the quality, serving, multi-worker, exporter or generator packages at
import time; the drift stack loads only when a model is given a reference.
"""
