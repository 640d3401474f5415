"""A Flask model server for the middleware tests: ``gunicorn web_flask:app``.

``GET /score/<user_id>`` scores with the instrumented ``fraud`` classifier, ``/fail``
raises (Flask answers 500 itself), ``/health`` is no model's route, and ``/metrics``
serves inferwatch (and is left out of its own metrics).
"""

from __future__ import annotations

import os

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import inferwatch
from inferwatch.serving.middleware import WSGIInstrumentMiddleware


class FraudModel:
    classes_ = ("legit", "fraud")

    def predict_proba(self, rows: list[list[float]]) -> list[list[float]]:
        return [[1.0 - min(1.0, row[0] / 100.0), min(1.0, row[0] / 100.0)] for row in rows]


model = inferwatch.instrument(FraudModel(), name="fraud", version="1.4.2")
app = Flask(__name__)


@app.get("/score/<int:user_id>")
def score(user_id: int) -> dict:
    return {"pid": os.getpid(), "proba": model.predict_proba([[float(user_id)]])[0]}


@app.get("/fail")
def fail() -> dict:
    raise KeyError("no such user")


@app.get("/health")
def health() -> dict:
    return {"pid": os.getpid()}


app.wsgi_app = WSGIInstrumentMiddleware(
    DispatcherMiddleware(app.wsgi_app, {"/metrics": inferwatch.make_wsgi_app()}),
    routes={"/score/<int:user_id>": "fraud", "/fail": "fraud"})
