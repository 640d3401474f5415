"""A FastAPI server streaming a toy model's tokens: ``uvicorn web_streams:app``.

``GET /generate/{n}`` streams `n` tokens of the instrumented ``chat`` model, one every
10 ms; ``GET /events/{n}`` sends them as server-sent events from a plain (uninstrumented)
generator, so only the middleware sees that stream; ``/health`` is no model's route.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

import inferwatch


@inferwatch.instrument(name="chat", version="1")
async def generate(n: int):
    for i in range(n):
        await asyncio.sleep(0.01)
        yield f"tok{i} "


inferwatch.monitor("sse", "1")  # the events route's model: the middleware records it
app = FastAPI()


@app.get("/generate/{n}")
async def generate_route(n: int) -> StreamingResponse:
    return StreamingResponse(generate(n), media_type="text/plain")


@app.get("/events/{n}")
async def events_route(n: int) -> StreamingResponse:
    async def events():
        for i in range(n):
            await asyncio.sleep(0.01)
            yield f"data: tok{i}\n\n"
    return StreamingResponse(events(), media_type="text/event-stream")


@app.get("/health")
async def health() -> dict:
    return {"ok": True}


app.add_middleware(inferwatch.InstrumentMiddleware,
                   routes={"/generate/{n}": "chat", "/events/{n}": "sse"})
app.mount("/metrics", inferwatch.make_asgi_app())
