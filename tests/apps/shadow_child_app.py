"""A plain WSGI model server with a process-mode shadow and a warm-up call at import:
``gunicorn --preload shadow_child_app:app``.

``GET /predict?x=1,2`` runs the champion on the digits; ``/metrics`` serves inferwatch's
merged view. The challenger's child process imports this module to rebuild the challenger,
and so runs its warm-up and its ``shadow()`` again. The challenger answers the class
``worker`` where its process publishes to the multi-worker directory as a worker would.
"""

from __future__ import annotations

import json
import os
import urllib.parse

import inferwatch
from inferwatch.core.registry import default_registry


class Champion:
    classes_ = ["a", "b"]

    def predict(self, rows: list[int]) -> list[str]:
        return ["a" if x % 2 == 0 else "b" for x in rows]


class Challenger:
    classes_ = ["a", "b"]

    def predict(self, rows: list[int]) -> list[str]:
        if default_registry().multiproc is not None:
            return ["worker" for _ in rows]
        return ["a" if x % 3 == 0 else "b" for x in rows]


model = inferwatch.instrument(Champion(), name="clf", version="1", task="classification")
shadow = inferwatch.shadow(model, Challenger(), version="1-rc", sample=1.0, mode="process")
model.predict([0, 1])  # the warm-up: under --preload, once in the master
# Compared before gunicorn forks the workers: a fork while the master's shadow thread is
# starting its child copies multiprocessing's resource-tracker lock held, and the worker's
# own shadow then never starts a child.
shadow.flush()

_metrics = inferwatch.make_wsgi_app()


def app(environ: dict, start_response) -> list[bytes]:
    if environ["PATH_INFO"].startswith("/metrics"):
        return _metrics(environ, start_response)
    query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
    rows = [int(x) for x in query["x"].split(",")]
    body = json.dumps({"pid": os.getpid(), "y": model.predict(rows)}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
