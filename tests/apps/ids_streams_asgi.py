"""A FastAPI server with an ``@app.middleware("http")`` (Starlette's ``BaseHTTPMiddleware``)
inside inferwatch's middleware: ``uvicorn ids_streams_asgi:app``.

``GET /score`` answers plain JSON scored by the instrumented ``fraud`` classifier, with the
request id the app itself read from its headers; ``GET /outcome?id=...&label=...`` reports
ground truth under that id; ``GET /stream`` streams three parts (the ``chat`` route, which
only the middleware records); ``/health`` is no model's route.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

import inferwatch


class FraudModel:
    classes_ = ("legit", "fraud")

    def predict_proba(self, rows: list[list[float]]) -> list[list[float]]:
        return [[0.25, 0.75] for _ in rows]


model = inferwatch.instrument(FraudModel(), name="fraud", version="1")
inferwatch.monitor("chat", "1")
app = FastAPI()


@app.middleware("http")
async def served_by(request: Request, call_next):
    response = await call_next(request)
    response.headers["x-served-by"] = "app"
    return response


@app.get("/score")
async def score(request: Request) -> dict:
    model.predict_proba([[1.0]])
    return {"request_id": request.headers.get("x-request-id")}


@app.get("/outcome")
async def outcome(id: str, label: str) -> dict:
    inferwatch.monitor("fraud", "1").record_outcome(id, label)
    return {}


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def parts():
        for i in range(3):
            yield f"part{i} "

    return StreamingResponse(parts(), media_type="text/plain")


@app.get("/health")
async def health() -> dict:
    return {}


app.add_middleware(inferwatch.InstrumentMiddleware, routes={"/score": "fraud", "/stream": "chat"})
app.mount("/metrics", inferwatch.make_asgi_app())
