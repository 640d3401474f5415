"""A FastAPI server for the middleware edge tests: ``uvicorn edges_asgi:app``, serving the
routes of ``fraud_routes`` (``/score``, ``/outcome``, ``/health``) and inferwatch's
``/metrics``."""

from __future__ import annotations

from fastapi import FastAPI
from fraud_routes import add_fraud_routes

import inferwatch

app = FastAPI()
add_fraud_routes(app)
app.add_middleware(inferwatch.InstrumentMiddleware, routes={"/score": "fraud"})
app.mount("/metrics", inferwatch.make_asgi_app())
