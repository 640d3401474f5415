"""A FastAPI model server for the middleware tests: ``uvicorn web_fastapi:app``.

``GET /score/{user_id}`` scores with the instrumented ``fraud`` classifier (``?hold=1`` first
holds the worker until every worker has arrived: see ``barrier``), ``/fail``
raises, ``/stream`` streams its answer, ``/health`` is no model's route, and ``/metrics``
serves inferwatch (and is left out of its own metrics).
"""

from __future__ import annotations

import os

from barrier import hold_until_every_worker_arrived
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

import inferwatch


class FraudModel:
    classes_ = ("legit", "fraud")

    def predict_proba(self, rows: list[list[float]]) -> list[list[float]]:
        return [[1.0 - min(1.0, row[0] / 100.0), min(1.0, row[0] / 100.0)] for row in rows]


model = inferwatch.instrument(FraudModel(), name="fraud", version="1.4.2")
app = FastAPI()


@app.get("/score/{user_id}")
async def score(user_id: int, hold: bool = False) -> dict:
    if hold:
        hold_until_every_worker_arrived()  # blocks this worker's event loop on purpose
    return {"pid": os.getpid(), "proba": model.predict_proba([[float(user_id)]])[0]}


@app.get("/fail")
async def fail() -> dict:
    raise KeyError("no such user")


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks():
        for row in range(3):
            yield f"{model.predict_proba([[float(row)]])[0][1]}\n".encode()
    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/health")
async def health() -> dict:
    return {"pid": os.getpid()}


app.add_middleware(inferwatch.InstrumentMiddleware, model="fraud")
app.mount("/metrics", inferwatch.make_asgi_app())
