"""A Flask server streaming a toy model's tokens: ``gunicorn wsgi_streams:app``.

``GET /generate?n=N`` streams N tokens of the instrumented ``chat`` model (``&fail=K``
raises at token K; ``&hold=1`` first holds the worker: see ``barrier``); ``/metrics``
serves inferwatch's merged view.
"""

from __future__ import annotations

import os

from barrier import hold_until_every_worker_arrived
from flask import Flask, Response, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import inferwatch


@inferwatch.instrument(name="chat", version="1", count_tokens=lambda text: 1)
def generate(n: int, fail: int):
    for i in range(n):
        if i == fail:
            raise RuntimeError("the model failed mid-stream")
        yield f"tok{i} "


app = Flask(__name__)


@app.get("/generate")
def handle_generate() -> Response:
    if request.args.get("hold"):
        hold_until_every_worker_arrived()
    stream = generate(int(request.args["n"]), int(request.args.get("fail", -1)))
    return Response(stream, mimetype="text/plain", headers={"X-Worker": str(os.getpid())})


app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/metrics": inferwatch.make_wsgi_app()})
