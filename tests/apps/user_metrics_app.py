"""A Flask model server with a prometheus_client metric of its own, for the multi-worker
tests of what /metrics serves beside inferwatch's merged view: ``gunicorn user_metrics_app:app``.

``GET /predict?value=X`` runs the instrumented model and counts one ``shop_orders``
(``&hold=1`` then holds the worker: see ``barrier``).
"""

from __future__ import annotations

import os

from barrier import hold_until_every_worker_arrived
from flask import Flask, request
from prometheus_client import Counter
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import inferwatch


def identity(value: float) -> float:
    return value


predict = inferwatch.instrument(identity, name="echo", version="1")
orders = Counter("shop_orders", "Orders scored: the application's own metric.")
app = Flask(__name__)


@app.get("/predict")
def handle_predict() -> dict:
    predict(float(request.args["value"]))
    orders.inc()
    if request.args.get("hold"):
        hold_until_every_worker_arrived()
    return {"pid": os.getpid()}


app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/metrics": inferwatch.make_wsgi_app()})
