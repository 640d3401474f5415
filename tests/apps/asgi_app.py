"""A FastAPI model server for the multi-worker tests: ``gunicorn -k <uvicorn worker> asgi_app:app``.

``GET /predict?value=X`` awaits the instrumented async model on X (``&hold=1`` then holds
the worker: see ``barrier``); ``/metrics/`` serves inferwatch's merged view. The lifespan
shutdown publishes the worker's final counts: uvicorn workers end by re-raising SIGTERM, so
exit handlers never run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from barrier import hold_until_every_worker_arrived
from fastapi import FastAPI

import inferwatch
import inferwatch.multiproc


@inferwatch.instrument(name="echo", version="1")
async def predict(value: float) -> float:
    return value


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    inferwatch.multiproc.shutdown()


app = FastAPI(lifespan=lifespan)


@app.get("/predict")
async def handle_predict(value: float, hold: bool = False) -> dict:
    await predict(value)
    if hold:
        # Blocking on purpose: a worker whose event loop is stuck here accepts no other
        # connection, so the next one must go to a worker that has not arrived yet.
        hold_until_every_worker_arrived()
    return {"pid": os.getpid()}


app.mount("/metrics", inferwatch.make_asgi_app())
