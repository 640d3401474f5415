"""File downloads through inferwatch's WSGI middleware: ``gunicorn file_app:plain`` (a plain
WSGI app) or ``gunicorn file_app:flask_app``.

Both send the file named by ``FILE_APP_BODY`` for the ``files`` model: the plain app's
``GET /file`` answers with ``environ["wsgi.file_wrapper"]`` around it (``?status=503``
answers with that status), Flask's ``GET /download`` with ``send_file``. ``/health`` is no
model's route; ``/metrics/`` serves inferwatch (and is left out of its own metrics).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from flask import Flask, send_file
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import inferwatch
from inferwatch.serving.middleware import WSGIInstrumentMiddleware

BODY = os.environ["FILE_APP_BODY"]
inferwatch.monitor("files", "1")  # the middleware records models that are instrumented


def send_the_file(environ: dict[str, Any],
                  start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] != "/file":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    status = HTTPStatus(int(parse_qs(environ.get("QUERY_STRING", "")).get("status", [200])[0]))
    start_response(f"{status.value} {status.phrase}",
                   [("Content-Type", "application/octet-stream"),
                    ("Content-Length", str(os.path.getsize(BODY)))])
    # The server closes the file when it is done with the body.
    return environ["wsgi.file_wrapper"](open(BODY, "rb"))


plain = WSGIInstrumentMiddleware(
    DispatcherMiddleware(send_the_file, {"/metrics": inferwatch.make_wsgi_app()}),
    routes={"/file": "files"})

flask_app = Flask(__name__)


@flask_app.get("/download")
def download() -> Any:
    return send_file(BODY, mimetype="application/octet-stream")


@flask_app.get("/health")
def health() -> dict:
    return {"pid": os.getpid()}


flask_app.wsgi_app = WSGIInstrumentMiddleware(  # type: ignore[method-assign]
    DispatcherMiddleware(flask_app.wsgi_app, {"/metrics": inferwatch.make_wsgi_app()}),
    routes={"/download": "files"})
