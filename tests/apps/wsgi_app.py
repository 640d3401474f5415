"""A Flask model server for the multi-worker tests: ``gunicorn wsgi_app:app``.

``GET /predict?value=X`` runs the instrumented model on X (``&hold=1`` then holds the
worker: see ``barrier``); ``/metrics`` serves inferwatch's merged view. With ``WARMUP=1``
the model is called once at import, which under ``--preload`` happens in the gunicorn
master, before the workers are forked.
"""

from __future__ import annotations

import os

from barrier import hold_until_every_worker_arrived
from flask import Flask, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import inferwatch


def identity(value: float) -> float:
    return value


predict = inferwatch.instrument(identity, name="echo", version="1")
if os.environ.get("WARMUP") == "1":
    predict(1.0)

app = Flask(__name__)


@app.get("/predict")
def handle_predict() -> dict:
    predict(float(request.args["value"]))
    if request.args.get("hold"):
        hold_until_every_worker_arrived()
    return {"pid": os.getpid()}


app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/metrics": inferwatch.make_wsgi_app()})
