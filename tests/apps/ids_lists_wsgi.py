"""A Flask app and plain WSGI bodies behind one WSGI middleware: ``gunicorn
ids_lists_wsgi:application``.

``GET /score`` scores with the instrumented ``fraud`` classifier and answers the request id
Flask read from its headers; ``GET /outcome?id=...&label=...`` reports ground truth under
it. Below ``/raw`` (the ``bodies`` route, which only the middleware records), bodies as a
plain WSGI app returns them: ``big-list`` (one 32 MiB chunk in a list), ``big-iter`` (the
same chunk from an iterator), ``small-list`` and ``one-chunk-iter`` (one chunk of bytes
between empty ones). ``/metrics`` serves inferwatch; ``/health`` is no model's route.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import inferwatch
from inferwatch.serving.middleware import WSGIInstrumentMiddleware


class FraudModel:
    classes_ = ("legit", "fraud")

    def predict_proba(self, rows: list[list[float]]) -> list[list[float]]:
        return [[0.25, 0.75] for _ in rows]


model = inferwatch.instrument(FraudModel(), name="fraud", version="1")
inferwatch.monitor("bodies", "1")
BIG = b"x" * (32 * 2**20)
app = Flask(__name__)


@app.get("/score")
def score() -> dict:
    model.predict_proba([[1.0]])
    return {"request_id": request.headers.get("X-Request-ID")}


@app.get("/outcome")
def outcome() -> dict:
    inferwatch.monitor("fraud", "1").record_outcome(request.args["id"], request.args["label"])
    return {}


@app.get("/health")
def health() -> dict:
    return {}


def raw(environ, start_response):
    path = environ["PATH_INFO"]
    if path in ("/big-list", "/big-iter"):
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(BIG)))])
        return [BIG] if path == "/big-list" else iter([BIG])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"small"] if path == "/small-list" else iter([b"", b"one", b""])


application = WSGIInstrumentMiddleware(
    DispatcherMiddleware(app.wsgi_app, {"/metrics": inferwatch.make_wsgi_app(), "/raw": raw}),
    routes={"/score": "fraud", "/raw/{body}": "bodies"})
