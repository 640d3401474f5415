"""Data quality and drift: the training :class:`~inferwatch.quality.reference.Reference`, the
per-batch checks, the drift scores, the per-model tracker and ``inferwatch profile``.

Depends only on the catalogue and fault counting, never on the hot path.
"""
