"""A FastAPI server with an ``@app.middleware("http")`` (Starlette's ``BaseHTTPMiddleware``)
inside inferwatch's middleware: ``uvicorn ids_streams_asgi:app``.

It serves the routes of ``fraud_routes`` (``/score`` answers the request id the app read
from its headers, ``/outcome`` reports ground truth under it, ``/health``), and ``GET
/stream``, which streams three parts (the ``chat`` route, which only the middleware records).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from fraud_routes import add_fraud_routes

import inferwatch

inferwatch.monitor("chat", "1")
app = FastAPI()


@app.middleware("http")
async def served_by(request: Request, call_next):
    response = await call_next(request)
    response.headers["x-served-by"] = "app"
    return response


add_fraud_routes(app)


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def parts():
        for i in range(3):
            yield f"part{i} "

    return StreamingResponse(parts(), media_type="text/plain")


app.add_middleware(inferwatch.InstrumentMiddleware, routes={"/score": "fraud", "/stream": "chat"})
app.mount("/metrics", inferwatch.make_asgi_app())
