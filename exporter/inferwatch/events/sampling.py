"""Which events a log with ``sample_rate`` below 1 keeps.

An event that carries a request id is kept or dropped by that id: a stable hash of the id
(BLAKE2b, the same in every process, run and machine) is compared with the rate. The
prediction, its shadow comparison and the outcome recorded for it hours later, in
whichever worker, are therefore kept or dropped together, so that the sampled log still
joins predictions with their ground truth. An event without an id is kept by a random
draw.

>>> sampler = Sampler(0.5)
>>> sampler.keeps("r-17") == sampler.keeps("r-17") == sampler.keeps(b"r-17")
True
>>> Sampler(0.0).keeps("r-17"), Sampler(1.0).keeps("r-17")
(False, True)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from hashlib import blake2b

from inferwatch.faults import request_id_text

# An id is kept when the first 8 bytes of its digest, read as a big-endian integer, fall
# below rate * 2**64. Bytes compare as such integers do, and a longer digest with the same
# first 8 bytes sorts after them (dropped): the digest is compared as it comes, which
# spares a conversion on the request path.
_BOUND_BYTES = 8
# Every digest (64 bytes) sorts below this one: a rate of 1 keeps every id.
_KEEP_ALL = b"\xff" * (blake2b().digest_size + 1)


class Sampler:
    """Keeps an event with probability `rate`, by its request id when it has one."""

    __slots__ = ("_bound", "_draw", "rate")

    def __init__(self, rate: float, draw: Callable[[], float] = random.random) -> None:
        self.rate = rate
        below = int(rate * (1 << (8 * _BOUND_BYTES)))
        self._bound = _KEEP_ALL if below >> (8 * _BOUND_BYTES) else \
            below.to_bytes(_BOUND_BYTES, "big")
        self._draw = draw

    def keeps(self, request_id: object) -> bool:
        """Whether the event of `request_id` (None: an event without one) is kept.

        The id is read as :meth:`Monitor.record_outcome` reads the id it joins by: an id
        given as ``17``, ``17.0`` or ``b"17"`` is kept or dropped with one given as ``"17"``. An
        empty id is no id: a server that sends ``""`` for every request would otherwise
        keep all of its events or none.
        """
        if request_id.__class__ is not str:
            if request_id is None:
                return self._draw() < self.rate
            request_id = request_id_text(request_id, "events")
        if not request_id:
            return self._draw() < self.rate
        # The default digest size: asking for a shorter one makes the call slower.
        digest = blake2b(request_id.encode("utf-8", "surrogatepass")).digest()  # type: ignore[union-attr]
        return digest < self._bound
