"""A FastAPI model server for the multi-worker tests: ``gunicorn -k <uvicorn worker> asgi_app:app``.

``GET /predict?value=X`` awaits the instrumented async model on X; ``/metrics/`` serves
inferwatch's merged view. The lifespan shutdown publishes the worker's final counts:
uvicorn workers end by re-raising SIGTERM, so exit handlers never run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
async def handle_predict(value: float) -> dict:
    await predict(value)
    return {"pid": os.getpid()}


app.mount("/metrics", inferwatch.make_asgi_app())
