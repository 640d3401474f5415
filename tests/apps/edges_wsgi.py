"""A Flask server for the middleware edge tests: ``gunicorn edges_wsgi:app``.

Its model routes are spelled in non-ASCII letters (``/modèle/<int:n>``, ``/prédire``); the
endpoints call no model, so each request counted under ``m`` was opened by the middleware.
``/health`` is no model's route and ``/metrics`` serves inferwatch.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import inferwatch
from inferwatch.serving.middleware import WSGIInstrumentMiddleware

inferwatch.monitor("m", "1")  # the routes' model: only the middleware records it
app = Flask(__name__)


@app.get("/modèle/<int:n>")
def model_route(n: int) -> dict:
    return {"n": n}


@app.get("/prédire")
def predict_route() -> dict:
    return {}


@app.get("/health")
def health() -> dict:
    return {}


app.wsgi_app = WSGIInstrumentMiddleware(
    DispatcherMiddleware(app.wsgi_app, {"/metrics": inferwatch.make_wsgi_app()}),
    routes={"/modèle/<int:n>": "m", "/prédire": "m"})
